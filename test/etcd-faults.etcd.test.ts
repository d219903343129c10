import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EtcdClient } from '../src/adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../src/adapters/datastore/etcd/etcd-ipam-store.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { post, TestDaemon } from './helpers/daemon.js';
import { TestEtcd, TestEtcdCluster } from './helpers/etcd.js';

/** Figures the tests measure, printed at the end (the README's "etcd faults" section quotes them). */
const figures: Record<string, unknown> = {};
const cluster = new TestEtcdCluster();
const daemons: TestDaemon[] = [];
let etcd: EtcdClient;
let store: EtcdIpamStore;

beforeAll(async () => {
  await cluster.start(3);
  etcd = new EtcdClient({ endpoints: cluster.endpoints.split(',') });
  store = new EtcdIpamStore(etcd);
}, 60_000);

afterAll(async () => {
  console.log(`etcd fault figures: ${JSON.stringify(figures)}`);
  etcd?.close();
  await cluster.destroy();
});

afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.destroy()));
  // A test that stopped members must not leave them stopped for the next one.
  await Promise.all(cluster.members.filter((m) => !m.running).map((m) => m.start()));
});

async function startDaemons(names: string[], env: Record<string, string> = {}): Promise<TestDaemon[]> {
  const started = names.map((node) => new TestDaemon({ node, etcd: cluster.endpoints, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock', ...env } }));
  daemons.push(...started);
  await Promise.all(started.map((d) => d.start()));
  await Promise.all(started.map((d) => d.ready()));
  return started;
}

const requestAddress = (d: TestDaemon) => post(d.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });

/** The member that leads now, as the members themselves report it. */
function leader(): TestEtcd {
  const status = spawnSync('etcdctl', ['--endpoints', cluster.endpoints, 'endpoint', 'status', '-w', 'json'], { encoding: 'utf8', timeout: 10_000 });
  const members = JSON.parse(status.stdout) as { Endpoint: string; Status: { header: { member_id: number }; leader: number } }[];
  const leading = members.find((m) => m.Status.header.member_id === m.Status.leader);
  if (!leading) throw new Error(`no leader: ${status.stdout}${status.stderr}`);
  return cluster.members.find((m) => m.endpoint === leading.Endpoint)!;
}

/** Every allocated address in etcd's blocks, and the handles. */
async function allocatedInEtcd(): Promise<{ addresses: string[]; handles: number }> {
  const snapshot = await store.snapshot();
  const addresses = snapshot.blocks.flatMap((b) => {
    const base = b.value.cidr.split('/')[0]!.split('.').map(Number);
    return b.value.allocations.flatMap((a, ordinal) => (a === null ? [] : [[base[0], base[1], base[2], base[3]! + ordinal].join('.')]));
  });
  return { addresses, handles: (await store.listHandles()).size };
}

describe('etcd member loss', () => {
  it('killing the leader during 4 hosts x 250 allocations: 1000 distinct addresses, none leaked, daemons keep serving', async () => {
    await new PoolService(store).add({ cidr: '10.80.0.0/16', name: 'loss' });
    const nodes = await startDaemons(['loss-a', 'loss-b', 'loss-c', 'loss-d']);
    const victim = leader();
    const started = Date.now();
    const timed = nodes.flatMap((d) =>
      Array.from({ length: 250 }, async () => {
        const reply = await requestAddress(d);
        return { reply, ms: Date.now() - started };
      }),
    );
    await new Promise((r) => setTimeout(r, 150));
    const killedAt = Date.now() - started;
    await victim.stop('SIGKILL');
    const results = await Promise.all(timed);
    const failed = results.filter((r) => r.reply.status !== 200);
    figures.memberLoss = {
      killedAtMs: killedAt,
      answeredBeforeKill: results.filter((r) => r.ms < killedAt).length,
      failed: failed.length,
      errors: [...new Set(failed.map((f) => f.reply.body?.Err))].slice(0, 3),
      slowestMs: Math.max(...results.map((r) => r.ms)),
    };
    expect(failed.map((f) => f.reply.text)).toEqual([]);
    // The kill fell in the middle of the allocations.
    expect(results.filter((r) => r.ms > killedAt).length).toBeGreaterThan(0);
    const addresses = results.map((r) => (r.reply.body.Address as string).split('/')[0]!);
    expect(new Set(addresses).size).toBe(1000);
    const inEtcd = await allocatedInEtcd();
    expect(inEtcd.addresses.sort()).toEqual([...addresses].sort());
    expect(inEtcd.handles).toBe(1000);
    expect((await new IpamReport(store).check()).problems).toEqual([]);
    // Still serving, every daemon, with the member still dead.
    const after = await Promise.all(nodes.flatMap((d) => Array.from({ length: 25 }, () => requestAddress(d))));
    expect(after.filter((r) => r.status !== 200).map((r) => r.text)).toEqual([]);
  }, 120_000);
});
