import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { birdCommand } from '../src/adapters/bird/bird-control.js';
import { GRACEFUL_RESTART_WAIT_S } from '../src/calc/bird-config.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { birdSessions, blockOf, ctl, established, requestAddress, routes, torConfig } from './helpers/bgp-hosts.js';
import { until } from './helpers/cluster.js';
import { DockerHost } from './helpers/docker-host.js';
import { TestEtcd } from './helpers/etcd.js';
import { EtcdContext, storeOn } from './helpers/ipam.js';
import { BirdRouter, Underlay } from './helpers/underlay.js';

/**
 * Stale routes after BIRD restarts (real BIRD, real namespaces): three hosts and a top-of-rack BIRD.
 * A BIRD restarted with `-R` recovers without touching a route when its peers are healthy; when a
 * peer cannot come back, the routes the dead BIRD left go once the live peers have converged, and a
 * route to a deleted node goes at once, recovery or not.
 */

const POOL = '10.58.0.0/16';
/** Added in the middle of a test, for a block claimed then. */
const LATER_POOL = '10.59.0.0/16';
const TOR_AS = 64567;
const TOR_IP = '10.57.0.254';
const hostIp = (n: number): string => `10.57.0.${n}`;
const etcd = new TestEtcd();
const underlay = new Underlay('grul');
const tor = new BirdRouter('grtor', `${TOR_IP}/24`);
let ctx: EtcdContext;
let hosts: DockerHost[] = [];
const [h1, h2, h3] = [0, 1, 2].map((i) => () => hosts[i]!);
/** One block per host, host n's at index n - 1. */
let blocks: string[] = [];
/** h1's second block, claimed during the first test. */
let laterBlock = '';
const timings: Record<string, number> = {};

/** BIRD's `show status` says so while it waits for its peers after a restart with -R. */
async function recovering(host: DockerHost): Promise<boolean | undefined> {
  const reply = await birdCommand(host.runPath('bird.ctl'), 'show status', 1000).catch(() => undefined);
  return reply && reply.lines.some((l) => l.text.includes('Graceful restart recovery in progress'));
}

/** `proto bird` routes of the host's kernel, one per line (`ip` leaves out the protocol it was asked for). */
const birdRoutes = (host: DockerHost): string[] =>
  spawnSync('ip', ['-n', host.netns, 'route', 'show', 'proto', 'bird'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.trim()).filter(Boolean);

/** Every change to the pools' routes in a namespace, as `ip monitor` reports it, from now until `stop`. */
function watchRoutes(netns: string): { changes: () => string[]; stop: () => void } {
  const child: ChildProcess = spawn('ip', ['-n', netns, 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => void (out += chunk.toString()));
  return { changes: () => out.split('\n').filter((l) => /^(Deleted )?10\.5[89]\./.test(l)), stop: () => child.kill('SIGKILL') };
}

/** Kills the host's BIRD and waits for the one its daemon starts in its place; returns when it was killed. */
async function killBird(host: DockerHost): Promise<number> {
  const pid = host.birdPid()!;
  const log = host.runFile('bird.log');
  process.kill(pid, 'SIGKILL');
  const killed = Date.now();
  await until(`a new BIRD on ${host.node}`, () => (host.birdPid() ?? pid) !== pid, 5000);
  // Started with -R: a recovery, not a cold start.
  await until(`${host.node} BIRD recovering`, () => host.runFile('bird.log').slice(log.length).includes('Graceful restart started'), 5000);
  return killed;
}

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  await new PoolService(ctx.store).add({ cidr: POOL, name: 'stale-pool' });
  underlay.start();
  hosts = [1, 2, 3].map((n) => new DockerHost(`gr${n}`, etcd, {}, { docker: false, underlay: { underlay, address: `${hostIp(n)}/24` } }));
  await Promise.all(hosts.map((h) => h.start()));
  await tor.start(underlay, torConfig(TOR_IP, TOR_AS, [1, 2, 3].map(hostIp)));
  blocks = (await Promise.all(hosts.map((h) => requestAddress(h)))).map(blockOf);
  await until('every block on every other host', () => hosts.every((h, i) => blocks.every((b, j) => i === j || routes(h).includes(`${b} via ${hostIp(j + 1)} dev eth0 proto bird`))));
  ctl(h1(), ['bgp', 'peer', 'add', TOR_IP, 'as', String(TOR_AS)]);
  await until('every host to its peers and the ToR', async () => {
    const all = [1, 2, 3].map(hostIp);
    return (await Promise.all(hosts.map((h, i) => established(h, [...all.filter((_, j) => j !== i), TOR_IP])))).every(Boolean);
  });
}, 120_000);

afterAll(async () => {
  await Promise.all(hosts.map((h) => h.stop()));
  tor.stop();
  underlay.stop();
  ctx?.etcd.close();
  await etcd.destroy();
  console.log('stale-route timings (ms):', JSON.stringify(timings));
}, 60_000);

describe('BIRD restarted with -R', () => {
  it('with every peer healthy: no route changes on any host or the ToR, the peers end the recovery; a block claimed later adds its route and touches no other', async () => {
    const watches = [...hosts.map((h) => h.netns), tor.netns].map(watchRoutes);
    try {
      // The monitors need a moment to subscribe.
      await new Promise((r) => setTimeout(r, 500));
      const killed = await killBird(h2());
      await until('h2 recovered', async () => (await recovering(h2())) === false, 15_000);
      timings.healthyRecovery = Date.now() - killed;
      expect(await established(h2(), [hostIp(1), hostIp(3), TOR_IP])).toBe(true);
      // Two kernel scans after the recovery: a route BIRD meant to replace or remove would show by now.
      await new Promise((r) => setTimeout(r, 4500));
      expect(watches.map((w) => w.changes())).toEqual([[], [], [], []]);
      expect(birdRoutes(h2()).sort()).toEqual([`${blocks[0]} via ${hostIp(1)} dev eth0 metric 32`, `${blocks[2]} via ${hostIp(3)} dev eth0 metric 32`]);
      // A block claimed on h1 reloads every host's kernel filter: the new route is added, no other is touched.
      await new PoolService(ctx.store).add({ cidr: LATER_POOL, name: 'later-pool' });
      const later = blockOf(await until('an address in the new pool', () => requestAddress(h1(), 'later-pool').catch(() => undefined)));
      laterBlock = later;
      await until('the new block on h2 and h3', () => [h2(), h3()].every((h) => routes(h).includes(`${later} via ${hostIp(1)} dev eth0 proto bird`)));
      await new Promise((r) => setTimeout(r, 2500));
      const added = `${later} via ${hostIp(1)} dev eth0 proto bird metric 32 `;
      expect(watches.map((w) => w.changes())).toEqual([[], [added], [added], [expect.stringMatching(new RegExp(`^${later.replace(/\./g, '\\.')} via ${hostIp(1)} `))]]);
    } finally {
      for (const w of watches) w.stop();
    }
    // Ended by the peers coming back, not by the wait timer.
    expect(timings.healthyRecovery).toBeLessThan(GRACEFUL_RESTART_WAIT_S * 1000);
  });

  it('a peer that never comes back, then a node deleted: its route goes at once, the recovery ends within 10 s of the live peers converging', async () => {
    // 1. A wrong AS on h2: the ToR refuses it at every attempt, with an error wait in between.
    ctl(h1(), ['patch', 'node', h2().node, '-p', JSON.stringify({ spec: { bgp: { asNumber: 64513 } } })]);
    await until('the ToR refusing h2', async () => (await birdSessions(h2())).get(TOR_IP)?.includes('Bad peer AS'));
    await until('the mesh again, in two AS', async () => (await established(h1(), [hostIp(2), hostIp(3), TOR_IP])) && (await birdSessions(h2())).get(hostIp(1)) === 'Established');

    // 2. h2's BIRD killed; its daemon restarts it with -R. The ToR session cannot come back.
    const killed = await killBird(h2());
    await until('h2 and its live peers converged', async () => (await birdSessions(h2())).get(hostIp(1)) === 'Established' && (await birdSessions(h2())).get(hostIp(3)) === 'Established', 10_000);
    const converged = Date.now();
    timings.liveConverged = converged - killed;
    expect(await recovering(h2())).toBe(true);

    // 3. h3 goes (daemon and BIRD killed) and is deleted: its block is released. First, h2 routes it
    // (on a loaded machine the check once came before the kernel showed it: wait, do not race it).
    const b3 = blocks[2]!;
    await until("h2 routes h3's block through h3", () => birdRoutes(h2()).some((r) => r.startsWith(`${b3} via ${hostIp(3)}`)), 10_000);
    await h3().stopDaemon('SIGKILL');
    process.kill(h3().birdPid()!, 'SIGKILL');
    expect(birdRoutes(h2()).some((r) => r.startsWith(`${b3} via ${hostIp(3)}`))).toBe(true);
    ctl(h1(), ['delete', 'node', h3().node]);
    const deleted = Date.now();
    await until("h3's block gone from every host", () => !routes(h1()).includes(b3) && !routes(h2()).includes(b3), 10_000);
    timings.deletedNodeRouteGone = Date.now() - deleted;
    // h2's BIRD does not sync its kernel until its recovery ends: the daemon removed that route itself.
    expect(await recovering(h2())).toBe(true);

    await until('h2 recovered', async () => (await recovering(h2())) === false, 15_000);
    timings.recoveryEndAfterConverged = Date.now() - converged;
    timings.recoveryEndAfterKill = Date.now() - killed;
    expect(timings.recoveryEndAfterConverged).toBeLessThan(10_000);
    // What is left is what the live peers route: h1's blocks, nothing of the dead BIRD's.
    const h1Routes = [blocks[0]!, laterBlock].map((b) => `${b} via ${hostIp(1)} dev eth0 metric 32`).sort();
    await until("h2's kernel exactly what its BIRD routes", () => birdRoutes(h2()).sort().join('\n') === h1Routes.join('\n'), 3000);
    expect(routes(h2())).not.toContain(b3);
    expect(routes(h1())).not.toContain(b3);
    // Recorded, not asserted: the ToR is not ours, and keeps h3's routes for h3's graceful restart time.
    timings.torStillHasDeletedBlock = tor.birdRoutes().some((r) => r.startsWith(b3)) ? 1 : 0;
  });
});
