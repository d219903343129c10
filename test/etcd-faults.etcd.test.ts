import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EtcdClient } from '../src/adapters/datastore/etcd/etcd-client.js';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdIpamStore } from '../src/adapters/datastore/etcd/etcd-ipam-store.js';
import { prefixEnd } from '../src/adapters/datastore/etcd/keys.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { until } from './helpers/cluster.js';
import { calicoctlHere, post, TestDaemon } from './helpers/daemon.js';
import { TestEtcd, TestEtcdCluster } from './helpers/etcd.js';
import { workloadEndpoint } from './helpers/ipam.js';

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
  // A test that stopped members must not leave them stopped for the next one, nor its data.
  await Promise.all(cluster.members.filter((m) => !m.running).map((m) => m.start()));
  await etcd.deleteRange({ key: Buffer.from('/calico/'), range_end: prefixEnd('/calico/') });
});

async function startDaemons(names: string[], env: Record<string, string> = {}): Promise<TestDaemon[]> {
  const started = names.map((node) => new TestDaemon({ node, etcd: cluster.endpoints, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock', ...env } }));
  daemons.push(...started);
  await Promise.all(started.map((d) => d.start()));
  await Promise.all(started.map((d) => d.ready()));
  return started;
}

const requestAddress = (d: TestDaemon) => post(d.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });

const inNamespace = (d: TestDaemon, command: string[]) => spawnSync('ip', ['netns', 'exec', d.namespace!, ...command], { encoding: 'utf8', timeout: 10_000 });

/** GET /readiness inside the daemon's namespace: its status and body. */
function readiness(d: TestDaemon): { status: number; body: string } {
  const reply = inNamespace(d, ['curl', '-s', '-m', '3', '-w', '\n%{http_code}', 'http://127.0.0.1:9099/readiness']).stdout;
  const at = reply.lastIndexOf('\n');
  return { status: Number(reply.slice(at + 1)) || 0, body: reply.slice(0, at) };
}

/**
 * The daemon's dataplane as the kernel holds it: iptables' filter table (each chain's rules in their
 * order, the chains sorted, no counters), ipsets and routes.
 */
function dataplaneOf(d: TestDaemon): string {
  const chains = new Map<string, string[]>();
  for (const line of inNamespace(d, ['iptables-save', '-t', 'filter']).stdout.split('\n')) {
    const chain = /^(?::(\S+)|-A (\S+))/.exec(line);
    if (chain) chains.set(chain[1] ?? chain[2]!, [...(chains.get(chain[1] ?? chain[2]!) ?? []), line.replace(/\[\d+:\d+\]/, '')]);
  }
  const iptables = [...chains.keys()].sort().flatMap((c) => chains.get(c)!);
  const ipsets = inNamespace(d, ['ipset', 'save']).stdout.split('\n').sort();
  return [...iptables, ...ipsets, inNamespace(d, ['ip', 'route']).stdout].join('\n');
}

const uniqueLines = (text: string): string[] => [...new Set(text.split('\n'))].sort();

/** An endpoint on the daemon's node, as Docker's CreateEndpoint makes it (no container behind it). */
async function createEndpoint(d: TestDaemon, id: string): Promise<{ status: number; text: string; ms: number }> {
  const started = Date.now();
  const address = await requestAddress(d);
  if (address.status !== 200) return { ...address, ms: Date.now() - started };
  const reply = await post(d.networkSocket, 'NetworkDriver.CreateEndpoint', { NetworkID: 'faults-net', EndpointID: id.repeat(64).slice(0, 64), Interface: { Address: address.body.Address, MacAddress: '' }, Options: {} });
  return { ...reply, ms: Date.now() - started };
}

const INGRESS_POLICY = (name: string) =>
  `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: ${name}}\nspec: {selector: all(), ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]}\n`;

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
    let answered = 0;
    const timed = nodes.flatMap((d) =>
      Array.from({ length: 250 }, async () => {
        const reply = await requestAddress(d);
        answered++;
        return { reply, ms: Date.now() - started };
      }),
    );
    // Killed once the first answers are in: the rest are in flight or still queued.
    await until('the first answers', () => answered >= 50, 20_000);
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
    expect(results.filter((r) => r.ms > killedAt).length).toBeGreaterThan(500);
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

describe('etcd outage: every member down for 20 s', () => {
  it('requests fail within 5 s, clearly; the dataplane stays; a daemon restarted meanwhile comes up not ready; all converge once etcd is back', async () => {
    await new PoolService(store).add({ cidr: '10.81.0.0/16', name: 'outage' });
    const [a, b] = await startDaemons(['out-a', 'out-b']);
    for (const [i, d] of [a!, b!].entries()) expect((await createEndpoint(d, `${i + 1}`)).status).toBe(200);
    await until('both daemons ready with their endpoint programmed', () => [a!, b!].every((d) => readiness(d).status === 200 && dataplaneOf(d).includes('cali-tw-')), 20_000);
    const before = [a!, b!].map(dataplaneOf);

    await Promise.all(cluster.members.map((m) => m.stop()));
    const downAt = Date.now();
    const [address, endpoint] = await Promise.all([
      (async () => {
        const started = Date.now();
        return { ...(await requestAddress(a!)), ms: Date.now() - started };
      })(),
      createEndpoint(a!, '3'),
    ]);
    expect(address.status).toBe(500);
    expect(address.body.Err).toMatch(/etcd/);
    expect(endpoint.status).toBe(500);
    expect(endpoint.text).toMatch(/etcd/);
    expect(Math.max(address.ms, endpoint.ms)).toBeLessThan(5000);

    // Restarted during the outage: it comes up, says it is not ready, and leaves the kernel as it was.
    await b!.stop();
    await b!.start();
    const restarted = await until('the restarted daemon to answer not ready', () => {
      const r = readiness(b!);
      return r.status === 503 && r;
    }, 10_000);
    expect(restarted.body).toMatch(/datastore|ipam/);
    const notReadyA = readiness(a!);
    expect(notReadyA.status).toBe(503);
    await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - downAt))));
    // Both keep every rule, set and route they had (a rewrite meanwhile may drop a rule left twice).
    for (const [i, d] of [a!, b!].entries()) expect(uniqueLines(dataplaneOf(d))).toEqual(uniqueLines(before[i]!));

    await Promise.all(cluster.members.map((m) => m.start()));
    const backAt = Date.now();
    // Another host's changes, made as etcd comes back: a policy, and an endpoint of a third daemon.
    const applied = await calicoctlHere(['apply', '-f', '-'], { ETCD_ENDPOINTS: cluster.endpoints }, INGRESS_POLICY('after-outage'));
    expect(applied.status, applied.stderr).toBe(0);
    await until('both daemons ready, with the new policy programmed', () => [a!, b!].every((d) => readiness(d).status === 200 && dataplaneOf(d).includes('cali-pi-')), 10_000);
    const converged = Date.now() - backAt;
    // And they serve again.
    expect((await createEndpoint(a!, '4')).status).toBe(200);
    expect((await requestAddress(b!)).status).toBe(200);
    figures.outage = { requestFailedMs: address.ms, createEndpointFailedMs: endpoint.ms, error: address.body.Err, restartedReadiness: restarted.body, convergedMs: converged };
    expect(converged).toBeLessThan(10_000);
    expect((await new IpamReport(store).check()).problems).toEqual([]);
  }, 90_000);
});

describe('etcd silently lost (packets dropped, no reset)', () => {
  it('is detected within 30 s (readiness fails) and the daemon recovers when the path is back', async () => {
    await new PoolService(store).add({ cidr: '10.82.0.0/16', name: 'silent' });
    const [d] = await startDaemons(['silent-a']);
    await until('ready', () => readiness(d!).status === 200, 20_000);
    const ports = cluster.members.map((m) => new URL(m.endpoint).port).join(',');
    // mangle's OUTPUT: a chain the policy agent does not hook, so no Calico rule comes before this one.
    const blackhole = ['-t', 'mangle', 'OUTPUT', '-p', 'tcp', '-m', 'multiport', '--dports', ports, '-j', 'DROP'];
    expect(inNamespace(d!, ['iptables', ...blackhole.slice(0, 2), '-I', ...blackhole.slice(2)]).status).toBe(0);
    const droppedAt = Date.now();
    let restored = false;
    try {
      const lost = await until('readiness to fail', () => {
        const r = readiness(d!);
        return r.status === 503 && r;
      }, 35_000);
      const detectedMs = Date.now() - droppedAt;
      expect(lost.body).toMatch(/datastore|not in sync/);
      // A request meanwhile fails within 5 s, as with etcd down.
      const started = Date.now();
      const reply = await requestAddress(d!);
      const requestMs = Date.now() - started;
      expect(reply.status).toBe(500);
      expect(requestMs).toBeLessThan(5000);
      expect(inNamespace(d!, ['iptables', ...blackhole.slice(0, 2), '-D', ...blackhole.slice(2)]).status).toBe(0);
      restored = true;
      const restoredAt = Date.now();
      await until('readiness to come back', () => readiness(d!).status === 200, 30_000);
      const recoveredMs = Date.now() - restoredAt;
      expect((await requestAddress(d!)).status).toBe(200);
      figures.silentLoss = { detectedMs, requestFailedMs: requestMs, error: reply.body.Err, recoveredMs };
      expect(detectedMs).toBeLessThan(30_000);
    } finally {
      if (!restored) inNamespace(d!, ['iptables', ...blackhole.slice(0, 2), '-D', ...blackhole.slice(2)]);
    }
  }, 90_000);
});

/** Chains of one kind (`cali-tw-`: to an endpoint; `cali-pi-`: a policy inbound) in the daemon's filter table. */
const chainsOf = (d: TestDaemon, prefix: string): string[] =>
  inNamespace(d, ['iptables-save', '-t', 'filter']).stdout.split('\n').flatMap((line) => (line.startsWith(`:${prefix}`) ? [line.slice(1).split(' ')[0]!] : []));

/** The workload addresses the daemon dispatches to (one `cali-to-wl-dispatch` rule each). */
const dispatchedTo = (d: TestDaemon): string[] =>
  [...inNamespace(d, ['iptables-save', '-t', 'filter']).stdout.matchAll(/^-A cali-to-wl-dispatch -d (\S+) /gm)].map((m) => m[1]!).sort();

/** The members of one ipset in the daemon's namespace. */
const ipsetMembers = (d: TestDaemon, set: string): string[] =>
  inNamespace(d, ['ipset', 'list', set]).stdout.split('Members:\n')[1]?.split('\n').filter(Boolean).sort() ?? [];

describe('etcd compaction', () => {
  it('compacting while policies, pools and endpoints change (the daemon cut off): no change lost, nothing stale left, resyncs at most once per 500 ms', async () => {
    const pools = new PoolService(store);
    const endpoints = new EtcdEndpointStore(etcd);
    const apply = async (yaml: string, verb = 'apply') => expect((await calicoctlHere([verb, '-f', '-'], { ETCD_ENDPOINTS: cluster.endpoints }, yaml)).status).toBe(0);
    await pools.add({ cidr: '10.83.0.0/16', name: 'comp-1' });
    await pools.add({ cidr: '10.85.0.0/16', name: 'comp-9' });
    await apply(INGRESS_POLICY('comp-p1'));
    const [d] = await startDaemons(['comp-a']);
    expect((await createEndpoint(d!, '5')).status).toBe(200);
    await until('the endpoint and policy programmed', () => dispatchedTo(d!).length === 1 && chainsOf(d!, 'cali-pi-').length === 1, 20_000);
    const [oldPolicyChain] = chainsOf(d!, 'cali-pi-');
    expect(ipsetMembers(d!, 'cali4-all-ipam-pools')).toEqual(['10.83.0.0/16', '10.85.0.0/16']);

    // Cut the daemon off (no new connection, and its open ones dropped), so its watches fall behind.
    const ports = cluster.members.map((m) => new URL(m.endpoint).port).join(',');
    const cut = ['-t', 'mangle', 'OUTPUT', '-p', 'tcp', '-m', 'multiport', '--dports', ports, '-j', 'DROP'];
    expect(inNamespace(d!, ['iptables', ...cut.slice(0, 2), '-I', ...cut.slice(2)]).status).toBe(0);
    try {
      for (const port of ports.split(',')) inNamespace(d!, ['ss', '-K', 'dst', '127.0.0.1', 'dport', '=', `:${port}`]);
      await until('the daemon to notice', () => readiness(d!).status === 503, 10_000);
      // Changes meanwhile: a policy replaced, a pool replaced, an endpoint replaced by two others.
      await apply(INGRESS_POLICY('comp-p2'));
      await apply(INGRESS_POLICY('comp-p1'), 'delete');
      await pools.add({ cidr: '10.84.0.0/16', name: 'comp-2' });
      await pools.remove('comp-9');
      const [old] = (await endpoints.listEndpoints()).filter((e) => e.value.spec.node === 'comp-a');
      await endpoints.deleteEndpoint(old!.value.metadata.name);
      for (const [id, address] of [['6'.repeat(64), '10.84.0.6'], ['7'.repeat(64), '10.84.0.7']] as const) {
        const endpoint = workloadEndpoint('comp-a', id, [address]);
        endpoint.spec.interfaceName = `cali${id.slice(0, 11)}`;
        expect(await endpoints.createEndpoint(endpoint)).toBe(true);
      }
      const revision = (await etcd.range({ key: Buffer.from('/calico/') })).header.revision;
      const compact = spawnSync('etcdctl', ['--endpoints', cluster.endpoints, 'compact', revision], { encoding: 'utf8', timeout: 10_000 });
      expect(compact.status, compact.stderr).toBe(0);
    } finally {
      inNamespace(d!, ['iptables', ...cut.slice(0, 2), '-D', ...cut.slice(2)]);
    }
    const backAt = Date.now();
    // And one more change as it comes back.
    await apply(INGRESS_POLICY('comp-p3'));
    let last: unknown;
    await until('the daemon to converge on what etcd holds', () => {
      const policies = chainsOf(d!, 'cali-pi-');
      const workloads = dispatchedTo(d!);
      last = { policies, workloads, pools: ipsetMembers(d!, 'cali4-all-ipam-pools'), ready: readiness(d!) };
      return (
        readiness(d!).status === 200 &&
        policies.length === 2 &&
        !policies.includes(oldPolicyChain!) &&
        workloads.join() === '10.84.0.6/32,10.84.0.7/32' &&
        ipsetMembers(d!, 'cali4-all-ipam-pools').join() === '10.83.0.0/16,10.84.0.0/16'
      );
    }, 20_000).catch((error) => {
      throw new Error(`${error.message}: ${JSON.stringify(last)}\n${inNamespace(d!, ['iptables-save', '-t', 'filter']).stdout}`);
    });
    const convergedMs = Date.now() - backAt;
    // Resyncs: each part's reloads at least 500 ms apart.
    const lost = d!.log
      .split('\n')
      .filter((line) => line.includes('watch lost; reloading'))
      .map((line) => JSON.parse(line) as { msg: string; time: number });
    const byPart = new Map<string, { time: number }[]>();
    for (const entry of lost) byPart.set(entry.msg, [...(byPart.get(entry.msg) ?? []), entry]);
    for (const entries of byPart.values()) {
      for (let i = 1; i < entries.length; i++) expect(entries[i]!.time - entries[i - 1]!.time).toBeGreaterThanOrEqual(500);
    }
    figures.compaction = { convergedMs, watchesLost: Object.fromEntries([...byPart].map(([msg, entries]) => [msg, entries.length])) };
    // The daemon did resync from a compacted watch (etcd ends such a watch when it reconnects).
    expect(lost.some((entry) => /ended by etcd/.test(JSON.stringify(entry)))).toBe(true);
  }, 90_000);
});

describe("etcd's space quota exceeded", () => {
  it('a clear error on the plugin request, and no half-written IPAM state (calicoctl ipam check is clean)', async () => {
    const small = new TestEtcd(undefined, false, undefined, undefined, ['--quota-backend-bytes', String(4 * 1024 * 1024)]);
    let client: EtcdClient | undefined;
    try {
      await small.start();
      client = new EtcdClient({ endpoints: [small.endpoint] });
      const smallStore = new EtcdIpamStore(client);
      await new PoolService(smallStore).add({ cidr: '10.86.0.0/16', name: 'quota' });
      const d = new TestDaemon({ node: 'quota-a', etcd: small.endpoint, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
      daemons.push(d);
      await d.start();
      await d.ready();
      // Fill etcd until it refuses: its NOSPACE alarm is then raised.
      let full = false;
      for (let i = 0; i < 100 && !full; i++) full = await client.put(`/filler/${i}`, Buffer.alloc(512 * 1024, 1)).then(() => false, (error: Error) => /is full \(its space quota is used up/.test(error.message));
      expect(full).toBe(true);
      const started = Date.now();
      const reply = await requestAddress(d);
      const ms = Date.now() - started;
      expect(reply.status).toBe(500);
      expect(reply.body.Err).toMatch(/^etcd at .* is full \(its space quota is used up; nothing was written\)/);
      expect(ms).toBeLessThan(5000);
      const check = await calicoctlHere(['ipam', 'check'], { ETCD_ENDPOINTS: small.endpoint });
      expect(check.status, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toContain('Check complete; no problems found.');
      const snapshot = await smallStore.snapshot();
      expect(snapshot.blocks).toHaveLength(0);
      expect((await smallStore.listHandles()).size).toBe(0);
      figures.quota = { failedMs: ms, error: reply.body.Err };
    } finally {
      client?.close();
      await small.destroy();
    }
  }, 60_000);
});
