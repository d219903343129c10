import { afterEach, describe, expect, it } from 'vitest';
import { newBlock } from '../src/domain/allocation-block.js';
import { Cidr, cidrSize, cidrsOverlap, formatCidr, formatIp, makeCidr, parseCidr, parseIp } from '../src/domain/cidr.js';
import type { SyncSource } from '../src/ports/datastore-sync.js';
import { findFreeBlock } from '../src/services/ipam/block-search.js';
import { Allocation, IpamService } from '../src/services/ipam/ipam-service.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { viewOf } from '../src/services/ipam/pool-view.js';
import { etcdForSuite } from './helpers/ipam.js';

/**
 * Block claims of many hosts at once. A claim is guarded against blocks created near it since its
 * cache saw them (an overlapping block of another size must not slip in, libcalico-go#1377); claims
 * of blocks far apart must not void each other.
 */
const suite = etcdForSuite();
const services: IpamService[] = [];

afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

function host(name: string, source: SyncSource = suite.ctx.source): IpamService {
  const service = new IpamService(suite.ctx.store, source, { node: name });
  services.push(service);
  return service;
}

/** The datastore without its watch: a service on it hears of other writers' blocks only from its claims' failed guards. */
function unwatched(source: SyncSource): SyncSource {
  return Object.assign(Object.create(source) as SyncSource, { watch: async () => ({ cancel: async () => undefined }) });
}

async function addPool(cidr: string, blockSize: number): Promise<void> {
  await new PoolService(suite.ctx.store).add({ cidr, name: 'p', blockSize });
}

/** The block `node` would claim first in an empty pool. */
async function firstCandidate(node: string): Promise<Cidr> {
  const pool = viewOf((await suite.ctx.store.snapshot()).pools[0]!.value)!;
  return findFreeBlock(pool, node, [])!;
}

/** Another tool (a Calico of another block size) creates a block directly in etcd. */
async function foreignBlock(cidr: Cidr): Promise<void> {
  const result = await suite.ctx.store.commit([{ target: { kind: 'block', cidr }, expect: { absent: true }, value: newBlock(cidr, null, 0n) }]);
  expect(result.succeeded).toBe(true);
}

/** Every block in etcd, checked pairwise for overlap. */
async function blocksInEtcd(): Promise<Cidr[]> {
  const blocks = (await suite.ctx.store.snapshot()).blocks.map((b) => parseCidr(b.value.cidr)).sort((a, b) => (a.base < b.base ? -1 : 1));
  blocks.slice(1).forEach((block, i) => expect(blocks[i]!.base + cidrSize(blocks[i]!)).toBeLessThanOrEqual(block.base));
  return blocks;
}

async function expectClean(): Promise<void> {
  expect((await new IpamReport(suite.ctx.store).check()).problems).toEqual([]);
}

describe('block claims against a real etcd', () => {
  it('serves 30 hosts claiming /30 blocks at once: every request succeeds, each from a block of its own host, none overlapping', async () => {
    const HOSTS = 30;
    const PER_HOST = 16;
    await addPool('10.120.0.0/16', 30);
    const hosts = Array.from({ length: HOSTS }, (_, i) => host(`claimer-${i}`));
    await Promise.all(hosts.map((h) => h.start()));
    const started = performance.now();
    const outcomes = await Promise.allSettled(hosts.flatMap((h, i) => Array.from({ length: PER_HOST }, () => h.requestAuto({ family: 4 }).then((a) => ({ node: `claimer-${i}`, a })))));
    const seconds = (performance.now() - started) / 1000;
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []));
    expect(failures.slice(0, 3), `${failures.length} of ${outcomes.length} requests failed in ${seconds.toFixed(1)} s`).toEqual([]);
    const allocations = outcomes.map((o) => (o as PromiseFulfilledResult<{ node: string; a: Allocation }>).value);
    expect(new Set(allocations.map(({ a }) => formatIp(a.address))).size).toBe(HOSTS * PER_HOST);
    const blocks = await blocksInEtcd();
    expect(blocks).toHaveLength((HOSTS * PER_HOST) / 4);
    const owners = new Map((await suite.ctx.store.listAffinities()).map((x) => [formatCidr(x.cidr), x.node]));
    for (const { node, a } of allocations) expect(owners.get(formatCidr(a.block))).toBe(node);
    await expectClean();
  });

  it.each([
    ['a /28 inside it', (c: Cidr) => makeCidr(4, c.base + 16n, 28)],
    ['a /25 around it (its /24)', (c: Cidr) => makeCidr(4, c.base, 25)],
    ['a /22 around it (beyond its /24)', (c: Cidr) => makeCidr(4, c.base, 22)],
  ])('never claims a block that overlaps %s, created by another tool after the cache loaded', async (_, overlapping) => {
    await addPool('10.121.0.0/16', 26);
    const service = host('a', unwatched(suite.ctx.source));
    await service.start();
    const foreign = overlapping(await firstCandidate('a'));
    await foreignBlock(foreign);
    const rounds = suite.ctx.etcd.roundTrips;
    const got = await service.requestAuto({ family: 4 });
    expect(cidrsOverlap(got.block, foreign), `${formatCidr(got.block)} overlaps ${formatCidr(foreign)}`).toBe(false);
    // The guard failed once, and what it reported was enough (no watch here): the next attempt committed.
    expect(suite.ctx.etcd.roundTrips - rounds).toBe(2);
    expect(await blocksInEtcd()).toHaveLength(2);
  });

  it("claims a /24 block with 100 allocations in one transaction, its guard's compares within etcd's 128", async () => {
    await addPool('10.124.0.0/16', 24);
    await new PoolService(suite.ctx.store).add({ cidr: '10.125.0.0/24', name: 'x' });
    const service = host('a');
    await service.start();
    const rounds = suite.ctx.etcd.roundTrips;
    // The queue is busy with this one, so the 100 wait together and go in one claim.
    const first = service.requestExplicit({ address: parseIp('10.125.0.1') });
    const got = await Promise.all(Array.from({ length: 100 }, () => service.requestAuto({ family: 4, poolName: 'p' })));
    await first;
    expect(suite.ctx.etcd.roundTrips - rounds).toBe(2);
    expect(new Set(got.map((a) => formatIp(a.address))).size).toBe(100);
    expect(new Set(got.map((a) => formatCidr(a.block))).size).toBe(1);
  });

  it('refuses an explicit address whose block would overlap a leftover block of another size', async () => {
    await addPool('10.123.0.0/24', 26);
    await foreignBlock(parseCidr('10.123.0.8/29'));
    await expect(host('a').requestExplicit({ address: parseIp('10.123.0.20') })).rejects.toThrow(
      'IP assignment error: 10.123.0.20 needs block 10.123.0.0/26, which overlaps block 10.123.0.8/29 of another block size',
    );
    expect((await blocksInEtcd()).map(formatCidr)).toEqual(['10.123.0.8/29']);
  });

  it('says how often its attempts lost when it gives up, not that etcd is slow', async () => {
    await addPool('10.126.0.0/16', 26);
    // Another writer holds the handle the request names: every claim's compare on it fails.
    await suite.ctx.store.commit([{ target: { kind: 'handle', id: 'taken' }, expect: { absent: true }, value: { block: {} } }]);
    await expect(host('a').requestAuto({ family: 4, handleId: 'taken' })).rejects.toThrow(
      'Max retries hit - excessive concurrent IPAM requests: 100 attempts in a row found the block changed or claimed by another writer first',
    );
  });

  it('commits a claim in one round trip when another host created a block in another /24 meanwhile', async () => {
    await addPool('10.122.0.0/16', 26);
    const service = host('a', unwatched(suite.ctx.source));
    await service.start();
    const candidate = await firstCandidate('a');
    await foreignBlock(makeCidr(4, candidate.base ^ 0x100n, 26));
    const rounds = suite.ctx.etcd.roundTrips;
    const got = await service.requestAuto({ family: 4 });
    expect(suite.ctx.etcd.roundTrips - rounds).toBe(1);
    expect(formatCidr(got.block)).toBe(formatCidr(candidate));
  });

  it('guards IPv6 claims on the whole family, and learns from the failure', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: 'fd00:7::/64', name: 'v6' });
    const service = host('a', unwatched(suite.ctx.source));
    await service.start();
    const candidate = await firstCandidate('a');
    await foreignBlock(makeCidr(6, candidate.base ^ (1n << 40n), 122));
    const rounds = suite.ctx.etcd.roundTrips;
    const first = await service.requestAuto({ family: 6 });
    expect(suite.ctx.etcd.roundTrips - rounds).toBe(2);
    expect(formatCidr(first.block)).toBe(formatCidr(candidate));
    await expectClean();
  });
});
