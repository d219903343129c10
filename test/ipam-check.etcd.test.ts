import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdResourceStore } from '../src/adapters/datastore/etcd/etcd-resource-store.js';
import { formatCidr, formatIp, parseCidr, parseIp } from '../src/domain/cidr.js';
import type { CalicoNode } from '../src/domain/resources.js';
import type { IpamCheckReport } from '../src/services/ipam/ipam-check.js';
import { IpamService } from '../src/services/ipam/ipam-service.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { calicoctlOn } from './helpers/calicoctl-suite.js';
import { etcdForSuite, workloadEndpoint } from './helpers/ipam.js';

/**
 * `calicoctl ipam check` compares IPAM with what endpoints and nodes use, and `ipam release
 * --from-report` frees only what is still leaked, against a real etcd.
 */

const suite = etcdForSuite();
let env: Record<string, string>;
const { ctl, ok, datastore } = calicoctlOn(suite, () => env);
const dir = mkdtempSync(join(tmpdir(), 'ipam-check-'));
const reportFile = join(dir, 'report.json');

beforeAll(() => {
  env = { ETCD_ENDPOINTS: suite.etcd.endpoint, NODENAME: 'checker' };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function addEndpoint(id: string, addresses: string[]): Promise<string> {
  const endpoint = workloadEndpoint('host-1', id, addresses);
  expect(await new EtcdEndpointStore(suite.ctx.etcd).createEndpoint(endpoint)).toBe(true);
  return endpoint.metadata.name;
}

/** IPAM as the daemon of host-1 uses it (its block, its handles), for the length of `work`. */
async function withIpam<T>(work: (ipam: IpamService) => Promise<T>): Promise<T> {
  const ipam = new IpamService(suite.ctx.store, suite.ctx.source, { node: 'host-1' });
  try {
    return await work(ipam);
  } finally {
    await ipam.stop();
  }
}

/** Allocations made as the daemon makes them. */
function allocate(count: number, extra: { handleId?: string; attributes?: Record<string, string> } = {}): Promise<{ address: string; handleId: string; block: string }[]> {
  return withIpam(async (ipam) => {
    const made = [];
    for (let i = 0; i < count; i++) made.push(await ipam.requestAuto({ family: 4, ...extra }));
    return made.map((a) => ({ address: formatIp(a.address), handleId: a.handleId, block: formatCidr(a.block) }));
  });
}

/** Moves an allocation to another handle, as another tool might (a compare-and-swap on the block). */
async function rehandle(allocation: { handleId: string; block: string }, handleId: string): Promise<void> {
  const cidr = parseCidr(allocation.block);
  const block = (await suite.ctx.store.get({ kind: 'block', cidr }))!;
  const attributes = block.value.attributes.map((a) => (a.handle_id === allocation.handleId ? { ...a, handle_id: handleId } : a));
  const result = await suite.ctx.store.commit([
    { target: { kind: 'block', cidr }, expect: { modRevision: block.modRevision }, value: { ...block.value, attributes } },
    { target: { kind: 'handle', id: allocation.handleId }, expect: { any: true }, value: null },
  ]);
  expect(result.succeeded).toBe(true);
}

const allocated = async (address: string) => new IpamReport(suite.ctx.store).address(parseIp(address));

/**
 * One of each finding, beside healthy use: an address allocated with no endpoint (the leak), an
 * endpoint's address allocated nowhere, a handle whose block holds nothing of it, two endpoints on
 * one address; and, healthy, an endpoint on its own address and a node's VXLAN tunnel address.
 */
async function plantFindings() {
  await ok(['pool', 'add', '10.70.0.0/24', '--name', 'checked']);
  const [leak, used, shared] = await allocate(3);
  const [tunnel] = await allocate(1, { handleId: 'vxlan-tunnel-addr-host-1', attributes: { type: 'vxlanTunnelAddress' } });
  const usedBy = await addEndpoint('e1', [used!.address]);
  const sharedBy = [await addEndpoint('e2', [shared!.address]), await addEndpoint('e3', [shared!.address])];
  const unallocatedBy = await addEndpoint('e4', ['10.70.0.200']);
  const node: CalicoNode = { kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name: 'host-1' }, spec: { ipv4VXLANTunnelAddr: tunnel!.address } };
  await new EtcdResourceStore(suite.ctx.etcd).create(node);
  await suite.ctx.store.commit([{ target: { kind: 'handle', id: 'orphan-handle' }, expect: { absent: true }, value: { block: { [leak!.block]: 1 } } }]);
  return { leak: leak!, used: used!, shared: shared!, tunnel: tunnel!, usedBy, sharedBy, unallocatedBy };
}

async function checkToFile(file = reportFile): Promise<{ status: number; stdout: string; report: IpamCheckReport }> {
  const result = await ctl(['ipam', 'check', '-o', file]);
  return { status: result.status, stdout: result.stdout, report: JSON.parse(readFileSync(file, 'utf8')) as IpamCheckReport };
}

describe('calicoctl ipam check', () => {
  it('reports exactly the leak, the unallocated address, the empty handle and the shared address', async () => {
    const planted = await plantFindings();
    const { status, stdout, report } = await checkToFile();
    expect(status).toBe(1);
    expect(report).toMatchObject({
      kind: 'IPAMCheckReport',
      version: 1,
      counts: { pools: 1, blocks: 1, allocations: 4, handles: 5, endpoints: 4, tunnelAddresses: 1, addressesInUse: 4 },
      leakedAddresses: [{ address: planted.leak.address, block: planted.leak.block, handle: planted.leak.handleId, attributes: { node: 'host-1', poolID: 'checked' } }],
      inUseNotAllocated: [{ address: '10.70.0.200', pool: 'checked', owners: [{ kind: 'endpoint', name: planted.unallocatedBy, node: 'host-1' }] }],
      leakedHandles: [{ handle: 'orphan-handle', blocks: { [planted.leak.block]: 1 } }],
      multipleOwners: [{ address: planted.shared.address, owners: planted.sharedBy.map((name) => ({ kind: 'endpoint', name, node: 'host-1' })) }],
      problems: [],
    });
    expect(report.leakedAddresses).toHaveLength(1);
    expect(report.inUseNotAllocated).toHaveLength(1);
    expect(report.multipleOwners).toHaveLength(1);
    expect(report.leakedAddresses[0]!.sequenceNumber).toMatch(/^\d+$/);
    expect(stdout).toContain(`Found 1 addresses allocated in IPAM but not in use.\n  ${planted.leak.address}  block ${planted.leak.block}  handle ${planted.leak.handleId}  node host-1\n`);
    expect(stdout).toContain(`Found 1 addresses in use but not allocated in IPAM (0 of them in no IP pool).\n  10.70.0.200  pool checked  used by endpoint ${planted.unallocatedBy}\n`);
    expect(stdout).toContain(`Found 1 handles with no addresses.\n  orphan-handle  records {"${planted.leak.block}":1}\n`);
    expect(stdout).toContain(`Found 1 addresses with more than one owner.\n  ${planted.shared.address}  used by endpoint ${planted.sharedBy[0]}, endpoint ${planted.sharedBy[1]}\n`);
    expect(stdout).toContain('Check complete; found 4 problems.');
  });

  it('is clean when every allocation is in use by an endpoint or as a tunnel address', async () => {
    await ok(['pool', 'add', '10.71.0.0/24', '--name', 'clean']);
    const [a] = await allocate(1);
    const [tunnel] = await allocate(1, { handleId: 'vxlan-tunnel-addr-host-1', attributes: { type: 'vxlanTunnelAddress' } });
    await addEndpoint('c1', [a!.address]);
    await new EtcdResourceStore(suite.ctx.etcd).create({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name: 'host-1' }, spec: { ipv4VXLANTunnelAddr: tunnel!.address } });
    const result = await ctl(['ipam', 'check']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('Found 1 workload endpoints and 1 node tunnel addresses: 2 addresses in use.');
    expect(result.stdout).toContain('Check complete; no problems found.');
  });
});

describe('calicoctl ipam release --from-report', () => {
  it('frees the leaked address and the empty handle, and nothing else', async () => {
    const planted = await plantFindings();
    const { report } = await checkToFile();
    const blockCidr = parseCidr(planted.leak.block);
    const before = await suite.ctx.store.get({ kind: 'block', cidr: blockCidr });
    const released = await ok(['ipam', 'release', '--from-report', reportFile]);
    expect(released).toBe(`Released IP address ${planted.leak.address}\nReleased handle orphan-handle\nReleased 2, skipped 0.\n`);
    expect((await allocated(planted.leak.address)).allocated).toBe(false);
    expect(await suite.ctx.store.get({ kind: 'handle', id: planted.leak.handleId })).toBeNull();
    expect(await suite.ctx.store.get({ kind: 'handle', id: 'orphan-handle' })).toBeNull();
    for (const kept of [planted.used, planted.shared, planted.tunnel]) {
      expect(await allocated(kept.address)).toMatchObject({ allocated: true, handleId: kept.handleId });
      expect(await suite.ctx.store.get({ kind: 'handle', id: kept.handleId })).not.toBeNull();
    }
    // Only the leak's ordinal changed in the block.
    const after = await suite.ctx.store.get({ kind: 'block', cidr: blockCidr });
    const changed = after!.value.allocations.flatMap((a, i) => ((a === null) !== (before!.value.allocations[i] === null) ? [i] : []));
    expect(changed).toEqual([Number(parseIp(planted.leak.address).value - blockCidr.base)]);
    // What is left is what release must not touch: the unallocated and the shared address.
    const again = await checkToFile(join(dir, 'after-release.json'));
    expect(again.report.leakedAddresses).toEqual([]);
    expect(again.report.leakedHandles).toEqual([]);
    expect(again.report.inUseNotAllocated).toEqual(report.inUseNotAllocated);
    expect(again.report.multipleOwners).toEqual(report.multipleOwners);
    // A second release of the same report finds nothing left to free and writes nothing.
    const state = await datastore();
    expect(await ok(['ipam', 'release', '--from-report', reportFile])).toBe(
      `Skipped IP address ${planted.leak.address}: it is no longer allocated\nSkipped handle orphan-handle: it no longer exists\nReleased 0, skipped 2.\n`,
    );
    expect(await datastore()).toBe(state);
  });

  it('skips what stopped being leaked since the check: now in use, allocated again, or gone', async () => {
    await ok(['pool', 'add', '10.72.0.0/24', '--name', 'moving']);
    const [nowUsed, reallocated, freed, stillLeaked] = await allocate(4);
    await suite.ctx.store.commit([{ target: { kind: 'handle', id: 'filled-handle' }, expect: { absent: true }, value: { block: { [nowUsed!.block]: 1 } } }]);
    const { report } = await checkToFile();
    expect(report.leakedAddresses.map((l) => l.address)).toEqual([nowUsed, reallocated, freed, stillLeaked].map((a) => a!.address));
    expect(report.leakedHandles.map((h) => h.handle)).toEqual(['filled-handle']);

    // Between check and release: a container takes one address; another is freed and taken again
    // under a new handle; a third is freed; the empty handle gets an address.
    const user = await addEndpoint('m1', [nowUsed!.address]);
    const retaken = await withIpam(async (ipam) => {
      await ipam.release({ address: parseIp(reallocated!.address) });
      await ipam.release({ address: parseIp(freed!.address) });
      return ipam.requestExplicit({ address: parseIp(reallocated!.address) });
    });
    const [filled] = await allocate(1);
    await rehandle(filled!, 'filled-handle');

    const released = await ok(['ipam', 'release', '--from-report', reportFile]);
    expect(released).toBe(
      [
        `Skipped IP address ${nowUsed!.address}: it is in use by endpoint ${user}`,
        `Skipped IP address ${reallocated!.address}: it is allocated under handle ${retaken.handleId} now, not ${reallocated!.handleId}`,
        `Skipped IP address ${freed!.address}: it is no longer allocated`,
        `Released IP address ${stillLeaked!.address}`,
        `Skipped handle filled-handle: it holds ${filled!.address} now`,
        'Released 1, skipped 4.',
        '',
      ].join('\n'),
    );
    expect(await allocated(nowUsed!.address)).toMatchObject({ allocated: true, handleId: nowUsed!.handleId });
    expect(await allocated(reallocated!.address)).toMatchObject({ allocated: true, handleId: retaken.handleId });
    expect(await allocated(filled!.address)).toMatchObject({ allocated: true, handleId: 'filled-handle' });
    expect((await allocated(freed!.address)).allocated).toBe(false);
    expect((await allocated(stillLeaked!.address)).allocated).toBe(false);
  });

  it('skips an address allocated again under the same handle (a new allocation, not the leaked one)', async () => {
    await ok(['pool', 'add', '10.73.0.0/24', '--name', 'again']);
    const [leak] = await allocate(1, { handleId: 'reused-handle' });
    await checkToFile();
    // Freed and taken again under the same handle: the block's sequence number tells them apart.
    await withIpam(async (ipam) => {
      await ipam.release({ address: parseIp(leak!.address) });
      // The freed ordinal goes to the back of the free list: take the block's other addresses first.
      for (let i = 0; i < 63; i++) await ipam.requestAuto({ family: 4, handleId: `filler-${i}` });
      return ipam.requestAuto({ family: 4, handleId: 'reused-handle' });
    });
    expect(await allocated(leak!.address)).toMatchObject({ allocated: true, handleId: 'reused-handle' });
    const released = await ok(['ipam', 'release', '--from-report', reportFile]);
    expect(released).toBe(`Skipped IP address ${leak!.address}: it was allocated again since the check\nReleased 0, skipped 1.\n`);
    expect(await allocated(leak!.address)).toMatchObject({ allocated: true, handleId: 'reused-handle' });
  });

  it('releases amid allocations in the same block (its compare-and-swap retried), losing none of them', async () => {
    await ok(['pool', 'add', '10.74.0.0/24', '--name', 'busy']);
    const [leak] = await allocate(1);
    await checkToFile();
    const [released, concurrent] = await Promise.all([ok(['ipam', 'release', '--from-report', reportFile]), allocate(20)]);
    expect(released).toBe(`Released IP address ${leak!.address}\nReleased 1, skipped 0.\n`);
    expect(concurrent.every((a) => a.block === leak!.block)).toBe(true);
    expect((await allocated(leak!.address)).allocated).toBe(false);
    for (const kept of concurrent) expect(await allocated(kept.address)).toMatchObject({ allocated: true, handleId: kept.handleId });
    expect((await new IpamReport(suite.ctx.store).check()).problems).toEqual([]);
  });

  it('refuses a missing, non-JSON or wrongly shaped report, and writes nothing', async () => {
    await plantFindings();
    const { report } = await checkToFile();
    const state = await datastore();
    const write = (name: string, text: string): string => {
      const file = join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    const firstLeak = report.leakedAddresses[0]!;
    const cases: [string[], RegExp][] = [
      [['--from-report', join(dir, 'absent.json')], /open .*absent\.json: no such file or directory/],
      [['--from-report', dir], /is a directory/],
      [['--from-report', write('text.json', 'leaked: 10.70.0.1\n')], /text\.json is not an IPAM check report .*: it is not JSON/],
      [['--from-report', write('list.json', '[]')], /list\.json is not an IPAM check report .*: it is not a JSON object/],
      [['--from-report', write('kind.json', JSON.stringify({ ...report, kind: 'Other' }))], /"kind" is not "IPAMCheckReport"/],
      [['--from-report', write('version.json', JSON.stringify({ ...report, version: 2 }))], /"version" is 2; this calicoctl reads version 1/],
      [['--from-report', write('nolist.json', JSON.stringify({ ...report, leakedAddresses: {} }))], /"leakedAddresses" is not a list/],
      // The bad entry is the second: the first, good one must not be released either.
      [['--from-report', write('address.json', JSON.stringify({ ...report, leakedAddresses: [firstLeak, { ...firstLeak, address: '10.70.0.999' }] }))], /leakedAddresses\[1\]: "address" "10\.70\.0\.999" is not an IP address/],
      [['--from-report', write('sequence.json', JSON.stringify({ ...report, leakedAddresses: [{ ...firstLeak, sequenceNumber: 12 }] }))], /leakedAddresses\[0\]: "sequenceNumber" is neither a decimal string nor null/],
      [['--from-report', write('handle.json', JSON.stringify({ ...report, leakedHandles: [{ handle: '' }] }))], /leakedHandles\[0\]: "handle" is not a non-empty string/],
      [['--from-report', reportFile, '--ip', firstLeak.address], /give either --ip ADDRESS or --from-report FILE/],
      [[], /give either --ip ADDRESS or --from-report FILE/],
    ];
    for (const [args, message] of cases) {
      const result = await ctl(['ipam', 'release', ...args]);
      expect(result.status, args.join(' ')).toBe(1);
      expect(result.stderr, args.join(' ')).toMatch(message);
    }
    expect(await datastore()).toBe(state);
  });
});
