import { afterEach, describe, expect, it } from 'vitest';
import { formatCidr, formatIp, parseCidr, parseIp } from '../src/domain/cidr.js';
import { encodeValue } from '../src/adapters/datastore/etcd/codec.js';
import { IpamService } from '../src/services/ipam/ipam-service.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { TestEtcd } from './helpers/etcd.js';
import { etcdForSuite, storeOn } from './helpers/ipam.js';

const suite = etcdForSuite();
const etcd = suite.etcd;
const services: IpamService[] = [];

function node(name: string): IpamService {
  const service = new IpamService(suite.ctx.store, suite.ctx.source, { node: name });
  services.push(service);
  return service;
}

async function expectClean(): Promise<void> {
  const check = await new IpamReport(suite.ctx.store).check();
  expect(check.problems).toEqual([]);
}

afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

describe('IPAM against a real etcd', () => {
  it('gives one node 200 concurrent distinct addresses from exactly the blocks it needs', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.10.0.0/16', name: 'p' });
    const n1 = node('n1');
    const rounds = suite.ctx.etcd.roundTrips;
    const allocations = await Promise.all(Array.from({ length: 200 }, () => n1.requestAuto({ family: 4 })));
    expect(new Set(allocations.map((a) => formatIp(a.address))).size).toBe(200);
    const affinities = await suite.ctx.store.listAffinities('n1');
    expect(affinities).toHaveLength(4);
    // Batched: far fewer transactions than requests.
    expect(suite.ctx.etcd.roundTrips - rounds).toBeLessThan(40);
    await expectClean();
  });

  it('assigns an explicit address once, refuses it the second time, and refuses one outside every pool', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.20.0.0/24', name: 'p' });
    const n1 = node('n1');
    const first = await n1.requestExplicit({ address: parseIp('10.20.0.77') });
    expect(formatIp(first.address)).toBe('10.20.0.77');
    await expect(n1.requestExplicit({ address: parseIp('10.20.0.77') })).rejects.toThrow(/Address already assigned in block/);
    await expect(node('n2').requestExplicit({ address: parseIp('10.20.0.77') })).rejects.toThrow(/already assigned/);
    await expect(n1.requestExplicit({ address: parseIp('10.99.0.1') })).rejects.toThrow(/not in a configured pool/);
    await expectClean();
  });

  it('never hands out an address from a leftover block of another size', async () => {
    const pools = new PoolService(suite.ctx.store);
    await pools.add({ cidr: '10.30.0.0/24', name: 'p', blockSize: 26 });
    const n1 = node('n1');
    await n1.requestExplicit({ address: parseIp('10.30.0.5') });
    await n1.stop();
    // A pool re-created with another block size is refused while the old block holds addresses.
    await expect(pools.remove('p')).rejects.toThrow(/in use/);
    const leftover = (await suite.ctx.store.snapshot()).blocks[0]!;
    await suite.ctx.store.commit([{ target: { kind: 'pool', name: 'p' }, expect: { any: true }, value: null }]);
    await expect(pools.add({ cidr: '10.30.0.0/24', name: 'p2', blockSize: 28 })).rejects.toThrow(/blockSize conflicts with existing allocations/);
    // Even if the datastore has such a pool (written by another tool), new /28 blocks avoid the old /26.
    await suite.ctx.store.commit([
      {
        target: { kind: 'pool', name: 'p2' },
        expect: { absent: true },
        value: { kind: 'IPPool', apiVersion: 'projectcalico.org/v3', metadata: { name: 'p2' }, spec: { cidr: '10.30.0.0/24', blockSize: 28 } },
      },
    ]);
    const n2 = node('n2');
    const got = await Promise.all(Array.from({ length: 40 }, () => n2.requestAuto({ family: 4 })));
    const oldBlock = parseCidr(leftover.value.cidr);
    for (const a of got) expect(formatCidr(a.block)).not.toBe(formatCidr(oldBlock));
    const addresses = got.map((a) => formatIp(a.address));
    expect(addresses).not.toContain('10.30.0.5');
    expect(new Set(addresses).size).toBe(40);
  });

  it('keeps node1 and node10 apart', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.40.0.0/24', name: 'p' });
    await node('node1').requestAuto({ family: 4 });
    await node('node10').requestAuto({ family: 4 });
    expect((await suite.ctx.store.listAffinities('node1')).map((a) => a.node)).toEqual(['node1']);
    expect((await suite.ctx.store.listAffinities('node10')).map((a) => a.node)).toEqual(['node10']);
  });

  it('borrows when no block is left, and not under strict affinity', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.50.0.0/26', name: 'tiny' });
    await node('a').requestAuto({ family: 4 });
    const borrowed = await node('b').requestAuto({ family: 4 });
    expect(formatCidr(borrowed.block)).toBe('10.50.0.0/26');
    expect((await suite.ctx.store.listAffinities('b'))).toHaveLength(0);
    await suite.ctx.store.commit([{ target: { kind: 'config' }, expect: { any: true }, value: { strict_affinity: true, auto_allocate_blocks: true, maxBlocksPerHost: 0 } }]);
    const c = node('c');
    await c.start();
    await expect(c.requestAuto({ family: 4 })).rejects.toThrow(/IP pool tiny \(10\.50\.0\.0\/26\) has no free addresses/);
  });

  it('a release with a stale sequence number leaves the new owner its address (no ABA)', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.60.0.0/24', name: 'p' });
    const n1 = node('n1');
    const first = await n1.requestExplicit({ address: parseIp('10.60.0.9') });
    const block = (await suite.ctx.store.get({ kind: 'block', cidr: first.block }))!;
    const staleSequence = block.value.sequenceNumberForAllocation!['9']!;
    await n1.release({ address: first.address });
    const second = await n1.requestExplicit({ address: parseIp('10.60.0.9') });
    await expect(n1.release({ address: first.address, sequenceNumber: staleSequence })).rejects.toThrow(/re-allocated/);
    await expect(n1.release({ address: first.address, handleId: first.handleId })).rejects.toThrow(/belongs to handle/);
    const info = await n1.release({ address: second.address, handleId: second.handleId });
    expect(info?.handleId).toBe(second.handleId);
    await expectClean();
  });

  it('settles a pending affinity a crashed tool left: confirmed when the block is ours, deleted when it is gone', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.70.0.0/24', name: 'p' });
    const n1 = node('n1');
    const a = await n1.requestAuto({ family: 4 });
    await n1.stop();
    await suite.ctx.store.commit([
      { target: { kind: 'affinity', node: 'n1', cidr: a.block }, expect: { any: true }, value: { state: 'pending' } },
      { target: { kind: 'affinity', node: 'n1', cidr: parseCidr('10.70.0.192/26') }, expect: { absent: true }, value: { state: 'pending' } },
    ]);
    await node('n1').start();
    const affinities = await suite.ctx.store.listAffinities('n1');
    expect(affinities.map((x) => [formatCidr(x.cidr), x.stored.value.state])).toEqual([[formatCidr(a.block), 'confirmed']]);
    await expectClean();
  });

  it('releases idempotently and deletes the handle with the allocation', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.80.0.0/24', name: 'p' });
    const n1 = node('n1');
    const a = await n1.requestAuto({ family: 4 });
    expect(await suite.ctx.store.get({ kind: 'handle', id: a.handleId })).not.toBeNull();
    expect((await n1.release({ address: a.address }))?.handleId).toBe(a.handleId);
    expect(await n1.release({ address: a.address })).toBeUndefined();
    expect(await suite.ctx.store.get({ kind: 'handle', id: a.handleId })).toBeNull();
    await expectClean();
  });

  it('handles a block changed behind its back (stale cache) with one retry, not a duplicate', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.90.0.0/24', name: 'p' });
    const n1 = node('n1');
    const a = await n1.requestAuto({ family: 4 });
    // Another writer takes the next free ordinal directly in etcd.
    const stored = (await suite.ctx.store.get({ kind: 'block', cidr: a.block }))!;
    const next = stored.value.unallocated[0]!;
    const changed = { ...stored.value, allocations: stored.value.allocations.map((x, i) => (i === next ? 0 : x)), unallocated: stored.value.unallocated.slice(1) };
    expect(encodeValue(changed)).toContain('"cidr"');
    await suite.ctx.store.commit([{ target: { kind: 'block', cidr: a.block }, expect: { modRevision: stored.modRevision }, value: changed }]);
    const b = await n1.requestAuto({ family: 4 });
    expect(formatIp(b.address)).not.toBe(formatIp({ family: 4, value: a.block.base + BigInt(next) }));
    expect(formatIp(b.address)).not.toBe(formatIp(a.address));
  });

  it('uses IPv6 /122 blocks from an IPv6 pool', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: 'fd00:1::/64', name: 'v6' });
    const n6 = node('n6');
    const got = await Promise.all(Array.from({ length: 70 }, () => n6.requestAuto({ family: 6 })));
    expect(new Set(got.map((g) => formatIp(g.address))).size).toBe(70);
    expect(new Set(got.map((g) => g.block.prefix))).toEqual(new Set([122]));
    expect(await suite.ctx.store.listAffinities('n6')).toHaveLength(2);
    await expectClean();
  });

  it('refuses pool removal while addresses are in use, then removes pool, blocks and affinities', async () => {
    const pools = new PoolService(suite.ctx.store);
    await pools.add({ cidr: '10.100.0.0/24', name: 'p' });
    const n1 = node('n1');
    const a = await n1.requestAuto({ family: 4 });
    await expect(pools.remove('10.100.0.0/24')).rejects.toThrow(/has 1 address\(es\) in use/);
    await n1.release({ address: a.address });
    await pools.remove('10.100.0.0/24');
    const snapshot = await suite.ctx.store.snapshot();
    expect(snapshot.pools).toHaveLength(0);
    expect(snapshot.blocks).toHaveLength(0);
    expect(await suite.ctx.store.listAffinities()).toHaveLength(0);
  });
});

describe('IPAM against an etcd that takes fewer operations per transaction than a batch needs', () => {
  it('fails the requests at once, saying what etcd refused, instead of retrying until they time out', async () => {
    const small = new TestEtcd(undefined, false, undefined, undefined, ['--max-txn-ops', '8']);
    await small.start();
    const ctx = storeOn(small.endpoint);
    try {
      await new PoolService(ctx.store).add({ cidr: '10.11.0.0/16', name: 'p' });
      const service = new IpamService(ctx.store, ctx.source, { node: 'n1' });
      services.push(service);
      await service.start();
      const started = Date.now();
      // 20 at once: one claim with 20 handles, more than 8 operations.
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => service.requestAuto({ family: 4 })));
      const errors = results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'allocated'));
      expect(new Set(errors)).toEqual(new Set([expect.stringMatching(/too many operations.*--max-txn-ops/)]));
      expect(Date.now() - started).toBeLessThan(2000);
      // Nothing was written.
      expect((await ctx.store.snapshot()).blocks).toEqual([]);
    } finally {
      ctx.etcd.close();
      await small.destroy();
    }
  });
});
