import { afterEach, describe, expect, it } from 'vitest';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { post, TestDaemon } from './helpers/daemon.js';
import { etcdForSuite } from './helpers/ipam.js';

const suite = etcdForSuite();
const etcd = suite.etcd;
const daemons: TestDaemon[] = [];

async function startDaemons(names: string[], env?: Record<string, string>): Promise<TestDaemon[]> {
  const started = names.map((node) => new TestDaemon({ node, etcd: etcd.endpoint, ...(env ? { env } : {}) }));
  daemons.push(...started);
  await Promise.all(started.map((d) => d.start()));
  await Promise.all(started.map((d) => d.ready()));
  return started;
}

const requestAddress = (d: TestDaemon, poolId = 'CalicoPoolIPv4') => post(d.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null });

async function ipamProblems(): Promise<string[]> {
  return (await new IpamReport(suite.ctx.store).check()).problems;
}

afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.destroy()));
});

describe('several daemons on one etcd', () => {
  it('4 daemons x 250 concurrent RequestAddress: 1000 distinct addresses, 4 blocks per node, check clean', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.64.0.0/16', name: 'race' });
    const nodes = await startDaemons(['host-a', 'host-b', 'host-c', 'host-d']);
    const replies = await Promise.all(nodes.flatMap((d) => Array.from({ length: 250 }, () => requestAddress(d))));
    for (const reply of replies) expect(reply.status, reply.text).toBe(200);
    const addresses = replies.map((r) => r.body.Address as string);
    expect(new Set(addresses).size).toBe(1000);
    for (const d of nodes) expect(await suite.ctx.store.listAffinities(d.options.node)).toHaveLength(4);
    expect(await ipamProblems()).toEqual([]);
  });

  it('8 nodes racing for a /24 of four /26 blocks: 256 distinct, then a clear error, then all released', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.65.0.0/24', name: 'small-pool' });
    const nodes = await startDaemons(Array.from({ length: 8 }, (_, i) => `racer-${i}`));
    const replies = await Promise.all(nodes.flatMap((d) => Array.from({ length: 32 }, () => requestAddress(d))));
    for (const reply of replies) expect(reply.status, reply.text).toBe(200);
    const addresses = replies.map((r) => (r.body.Address as string).split('/')[0]!);
    expect(new Set(addresses).size).toBe(256);
    expect((await suite.ctx.store.listAffinities()).length).toBe(4);
    const next = await requestAddress(nodes[0]!);
    expect(next.status).toBe(500);
    expect(next.body.Err).toBe('IP assignment error: IP pool small-pool (10.65.0.0/24) has no free addresses');
    expect(await ipamProblems()).toEqual([]);
    const released = await Promise.all(
      addresses.map((address, i) => post(nodes[i % 8]!.ipamSocket, 'IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: address })),
    );
    for (const reply of released) expect(reply.status, reply.text).toBe(200);
    const snapshot = await suite.ctx.store.snapshot();
    expect(snapshot.blocks).toHaveLength(4);
    for (const block of snapshot.blocks) expect(block.value.allocations.every((a) => a === null)).toBe(true);
    expect((await suite.ctx.store.listHandles()).size).toBe(0);
    expect(await ipamProblems()).toEqual([]);
  });

  it('kill -9 in the middle of allocations leaves no half-written block or handle', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.66.0.0/16', name: 'p' });
    const [victim] = await startDaemons(['victim']);
    const inFlight = Array.from({ length: 400 }, () => requestAddress(victim!).catch(() => undefined));
    await new Promise((r) => setTimeout(r, 40));
    await victim!.stop('SIGKILL');
    const answered = (await Promise.all(inFlight)).filter((r) => r?.status === 200);
    expect(answered.length).toBeLessThan(400);
    expect(await ipamProblems()).toEqual([]);
    await victim!.start();
    await victim!.ready();
    const after = await Promise.all(Array.from({ length: 50 }, () => requestAddress(victim!)));
    for (const reply of after) expect(reply.status).toBe(200);
    const all = new Set([...answered.map((r) => r!.body.Address), ...after.map((r) => r.body.Address)]);
    expect(all.size).toBe(answered.length + 50);
    expect(await ipamProblems()).toEqual([]);
  });

  it('two daemons starting at once create each default pool once', async () => {
    await startDaemons(['boot-a', 'boot-b'], { NO_DEFAULT_POOLS: 'false', CALICO_IPV4POOL_CIDR: '10.67.0.0/16', CALICO_IPV6POOL_CIDR: 'fd00:67::/64' });
    const pools = (await suite.ctx.store.snapshot()).pools.map((p) => [p.value.metadata.name, p.value.spec.cidr, p.value.spec.natOutgoing]);
    expect(pools.sort()).toEqual([
      ['default-ipv4-ippool', '10.67.0.0/16', true],
      ['default-ipv6-ippool', 'fd00:67::/64', true],
    ]);
  });

  it('NO_DEFAULT_POOLS=true creates none', async () => {
    await startDaemons(['no-pools'], { NO_DEFAULT_POOLS: 'true' });
    expect((await suite.ctx.store.snapshot()).pools).toHaveLength(0);
  });
});

describe('etcd going away under a running daemon', () => {
  it('fails each request with a clear Err within 5 s and serves again when etcd is back', async () => {
    await new PoolService(suite.ctx.store).add({ cidr: '10.68.0.0/16', name: 'p' });
    const [d] = await startDaemons(['survivor']);
    expect((await requestAddress(d!)).status).toBe(200);
    await etcd.stop();
    try {
      const started = Date.now();
      const down = await requestAddress(d!);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(down.status).toBe(500);
      expect(down.body.Err).toMatch(/etcd|timed out/);
      expect(d!.child!.exitCode).toBeNull();
    } finally {
      await etcd.start();
    }
    const deadline = Date.now() + 15_000;
    let reply = await requestAddress(d!);
    while (reply.status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      reply = await requestAddress(d!);
    }
    expect(reply.status, reply.text).toBe(200);
    expect(await ipamProblems()).toEqual([]);
  });
});
