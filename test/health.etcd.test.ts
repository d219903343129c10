import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdClient, type WatchTarget } from '../src/adapters/datastore/etcd/etcd-client.js';
import { EtcdResourceStore } from '../src/adapters/datastore/etcd/etcd-resource-store.js';
import { until } from './helpers/cluster.js';
import { TestDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/etcd.js';
import { etcdForSuite } from './helpers/ipam.js';
import { relayOutOf } from './helpers/relay.js';

const suite = etcdForSuite();
const daemons: TestDaemon[] = [];
const relays: ChildProcess[] = [];
const dirs: string[] = [];
let etcdStopped = false;
/** BIRDs outlive their daemon by design: the test ends them. */
const birdPidFiles: string[] = [];

afterEach(async () => {
  for (const relay of relays.splice(0)) relay.kill('SIGKILL');
  for (const file of birdPidFiles.splice(0)) {
    const pid = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : 0;
    if (pid > 0) for (const signal of ['SIGCONT', 'SIGKILL'] as const) process.kill(pid, signal);
  }
  await Promise.all(daemons.splice(0).map((d) => d.destroy()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  // A test that stopped etcd must not leave it stopped for the next one.
  if (etcdStopped) await suite.etcd.start();
  etcdStopped = false;
});

/** A daemon that cannot see Docker's socket (unix sockets cross network namespaces). */
async function startDaemon(node: string, env: Record<string, string> = {}, etcd = suite.etcd.endpoint): Promise<TestDaemon> {
  const daemon = new TestDaemon({ node, etcd, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock', ...env } });
  daemons.push(daemon);
  await daemon.start();
  return daemon;
}

const enter = (daemon: TestDaemon): string[] => ['ip', 'netns', 'exec', daemon.namespace!];

/** The daemon's health port (inside its namespace) as a URL here. */
async function healthUrl(daemon: TestDaemon, port = 9099): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'calico-test-health-'));
  dirs.push(dir);
  const here = await freePort();
  relays.push(...(await relayOutOf(enter(daemon), `127.0.0.1:${port}`, join(dir, 'relay.sock'), `127.0.0.1:${here}`)));
  return `http://127.0.0.1:${here}`;
}

async function probe(url: string): Promise<{ status: number; body: string }> {
  try {
    const reply = await fetch(url, { signal: AbortSignal.timeout(3000) });
    return { status: reply.status, body: await reply.text() };
  } catch (error) {
    return { status: 0, body: String(error) };
  }
}

/** Probes until `status` comes back; returns the reply and how long it took. */
async function probeUntil(url: string, status: number, withinMs: number): Promise<{ body: string; ms: number }> {
  const started = Date.now();
  const reply = await until(`${url} answering ${status}`, async () => {
    const answer = await probe(url);
    return answer.status === status && answer;
  }, withinMs);
  return { body: reply.body, ms: Date.now() - started };
}

describe("EtcdClient's watch problem (the datastore reporter)", () => {
  it('set while etcd is away, cleared when the watches reconnect; one cancelled meanwhile is forgotten', async () => {
    const client = new EtcdClient({ endpoints: [suite.etcd.endpoint], callTimeoutMs: 1000 });
    try {
      const revision = (await client.range({ key: Buffer.from('/calico/') })).header.revision;
      const watch = (target: WatchTarget) => client.watchGroup([target], revision, () => undefined, () => undefined);
      const kept = await watch({ prefix: '/calico/kept/' });
      const cancelled = await watch({ key: '/calico/cancelled' });
      expect(client.watchProblem()).toBeUndefined();
      etcdStopped = true;
      await suite.etcd.stop();
      await until('the watches to disconnect', () => client.watchProblem(), 5000);
      expect(client.watchProblem()).toMatch(/^etcd watch at http:\/\/127\.0\.0\.1:\d+ disconnected: /);
      // Cancelled while disconnected: it must not stay a problem.
      await cancelled.cancel();
      await suite.etcd.start();
      etcdStopped = false;
      await until('the kept watch to reconnect', () => client.watchProblem() === undefined, 10_000);
      await kept.cancel();
    } finally {
      client.close();
    }
  });
});

describe('health endpoints (Felix: /liveness, /readiness on 127.0.0.1:9099)', () => {
  it('live at once, ready once in sync; readiness turns 503 (naming the datastore) when etcd stops and 200 when it is back', async () => {
    const daemon = await startDaemon('health-a');
    const url = await healthUrl(daemon);
    expect(await probeUntil(`${url}/liveness`, 200, 5000)).toMatchObject({ body: 'live\n' });
    const synced = await probeUntil(`${url}/readiness`, 200, 30_000);
    expect(synced.body).toBe('ready\n');
    expect(daemon.listeningTcp()).toContain('127.0.0.1:9099');

    etcdStopped = true;
    await suite.etcd.stop();
    const lost = await probeUntil(`${url}/readiness`, 503, 10_000);
    expect(lost.body).toMatch(/^not ready\n/);
    expect(lost.body).toMatch(/^datastore: etcd watch at .* disconnected/m);
    // Still live: the event loop answers while etcd is away.
    expect((await probe(`${url}/liveness`)).status).toBe(200);

    await suite.etcd.start();
    etcdStopped = false;
    const back = await probeUntil(`${url}/readiness`, 200, 20_000);
    console.log(`readiness: 200 ${synced.ms} ms after start; 503 ${lost.ms} ms after etcd stopped; 200 again ${back.ms} ms after etcd restarted`);
    expect(lost.ms).toBeLessThan(10_000);
  });

  it('pointed at a dead etcd: live, and not ready, saying which parts are not', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon('health-dead', {}, dead);
    const url = await healthUrl(daemon);
    expect((await probeUntil(`${url}/liveness`, 200, 5000)).body).toBe('live\n');
    // Give it time it would need to sync, then it must still say no.
    await new Promise((r) => setTimeout(r, 3000));
    const reply = await probe(`${url}/readiness`);
    expect(reply.status).toBe(503);
    expect(reply.body).toContain('sync: the datastore view is not loaded, or its watch is being reloaded\n');
    expect(reply.body).toContain('tunnels: not in sync with the datastore\n');
    expect((await probe(`${url}/nothing`)).status).toBe(404);
  });

  it('FELIX_HEALTHENABLED=false: nothing listens; CALICO_LIBNETWORK_HEALTH_PORT moves it', async () => {
    const off = await startDaemon('health-off', { FELIX_HEALTHENABLED: 'false' });
    const moved = await startDaemon('health-moved', { CALICO_LIBNETWORK_HEALTH_PORT: '9199' });
    await Promise.all([off.ready(), moved.ready()]);
    await probeUntil(`${await healthUrl(moved, 9199)}/liveness`, 200, 5000);
    expect(moved.listeningTcp()).toContain('127.0.0.1:9199');
    expect(moved.listeningTcp()).not.toContain('127.0.0.1:9099');
    expect(off.listeningTcp().filter((a) => /:(9099|9199|9091)$/.test(a))).toEqual([]);
  });

  it('a bad setting stops the daemon with a message naming it', async () => {
    const daemon = new TestDaemon({ node: 'health-bad', etcd: suite.etcd.endpoint, env: { FELIX_HEALTHPORT: '99999' } });
    daemons.push(daemon);
    await expect(daemon.start()).rejects.toThrow(/invalid FELIX_HEALTHPORT="99999": expected a whole number between 1 and 65535/);
  });

  it('with BIRD: ready once BIRD is up, 503 naming bird while BIRD does not answer; its BGP session is in the metrics', async () => {
    const resources = new EtcdResourceStore(suite.ctx.etcd);
    // The node's address comes from the datastore (IP=none keeps it); a peer that never answers.
    await resources.create({ apiVersion: 'projectcalico.org/v3', kind: 'Node', metadata: { name: 'health-bird' }, spec: { bgp: { ipv4Address: '127.0.0.1/8' } } });
    await resources.create({ apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'silent-peer' }, spec: { peerIP: '127.0.0.2', asNumber: 64513 } });
    const daemon = new TestDaemon({
      node: 'health-bird',
      etcd: suite.etcd.endpoint,
      env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock', CALICO_NETWORKING_BACKEND: 'bird', CALICO_LIBNETWORK_METRICS_ENABLED: 'true', CALICO_LIBNETWORK_METRICS_HOST: '127.0.0.1' },
    });
    daemons.push(daemon);
    birdPidFiles.push(join(daemon.runDir, 'bird.pid'));
    await daemon.start();
    const url = await healthUrl(daemon);
    await probeUntil(`${url}/readiness`, 200, 30_000);
    const metrics = await healthUrl(daemon, 9091);
    const scrape = await probeUntil(`${metrics}/metrics`, 200, 5000);
    expect(scrape.body).toMatch(/^calico_libnetwork_bgp_sessions\{state="(Idle|Connect|Active)"\} 1$/m);

    const bird = Number(readFileSync(join(daemon.runDir, 'bird.pid'), 'utf8').trim());
    process.kill(bird, 'SIGSTOP');
    const stuck = await probeUntil(`${url}/readiness`, 503, 10_000);
    expect(stuck.body).toMatch(/^bird: unable to connect to BIRD socket .*: no answer within 1500 ms$/m);
    process.kill(bird, 'SIGCONT');
    await probeUntil(`${url}/readiness`, 200, 10_000);
  });
});
