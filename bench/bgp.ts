/**
 * bench/bgp: BGP routing between N hosts (network namespaces with their own daemon and BIRD, no
 * dockerd, IPAM driven over the plugin socket) in a full mesh at N = 3, 10, 20, and at N = 20 with
 * two route reflectors. Per setup:
 *
 * - convergence: all N daemons launched at once, with one block each already in etcd, until every
 *   host's kernel routes every other host's block;
 * - claim latency: a RequestAddress that claims a new block on one host, until that block's route is
 *   in every other host's kernel (p50, p99), interleaved with the same for a route BIRD originates on
 *   its own (a static route loaded with `configure`: no daemon, no etcd), the floor of this path;
 * - sessions per host, and memory and CPU per host (daemon + BIRD).
 *
 * Then, on two Docker hosts: `docker run -d` on host 1 until a container on host 2 gets its first
 * ping reply, against the same from a container on host 1.
 *
 * Not part of the test run: `npm run bench:bgp`. Knobs: SIZES (default 3,10,20), CLAIMS (default
 * 30), RUNS (docker rounds, default 10), SKIP_DOCKER.
 */
import { spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { birdCommand } from '../src/adapters/bird/bird-control.js';
import { RECONFIGURED } from '../src/adapters/bird/bird-speaker.js';
import { EtcdResourceStore } from '../src/adapters/datastore/etcd/etcd-resource-store.js';
import { API_VERSION } from '../src/domain/resources.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { post } from '../test/helpers/daemon.js';
import { DockerHost } from '../test/helpers/docker-host.js';
import { storeOn } from '../test/helpers/ipam.js';
import { Underlay } from '../test/helpers/underlay.js';
import { benchHosts, preclaimBlocks, routedEverywhere, startDaemons, withHosts } from './hosts.js';
import { runInOwnNetns } from './in-netns.js';
import { CLK_TCK, established, onUnderlay, percentile, processTicks, round, RouteWatch, rssMb, saveReport, waitFor } from './measure.js';

const BENCH_NETNS = 'calico-bench-bgp';
const SIZES = (process.env.SIZES ?? '3,10,20').split(',').map(Number);
const CLAIMS = Number(process.env.CLAIMS ?? 30);
const RUNS = Number(process.env.RUNS ?? 10);
const POOL = '10.200.0.0/16';
/** The floor's routes: inside a pool, so BIRD exports them. */
const FLOOR_POOL = '10.201.0.0/16';

interface SetupResult {
  hosts: number;
  mode: 'mesh' | 'route reflectors';
  /** From launching every daemon at once until every block is routed everywhere. */
  convergenceMs: number;
  /** The same, from the moment the last daemon was serving (registered, BIRD started). */
  convergenceAfterAllReadyMs: number;
  allReadyMs: number;
  claims: { p50: number; p99: number; max: number; samples: number };
  floor: { p50: number; p99: number };
  ratioP50: number;
  sessionsPerHost: { min: number; max: number; routeReflectors?: number };
  perHost: { daemonMb: number; birdMb: number; startupCpuSeconds: number; idleCpuPercent: number };
}

async function setup(n: number, mode: SetupResult['mode'], etcdEndpoint: string, underlay: Underlay): Promise<SetupResult> {
  const ctx = storeOn(etcdEndpoint);
  await ctx.wipe();
  const pools = new PoolService(ctx.store);
  await pools.add({ cidr: POOL, name: 'bench-pool' });
  await pools.add({ cidr: FLOOR_POOL, name: 'floor-pool' });
  const names = Array.from({ length: n }, (_, i) => `b${i + 1}`);
  const reflectors = mode === 'route reflectors' ? names.slice(0, 2) : [];
  const resources = new EtcdResourceStore(ctx.etcd);
  if (reflectors.length) {
    await resources.create({ kind: 'BGPConfiguration', apiVersion: API_VERSION, metadata: { name: 'default' }, spec: { nodeToNodeMeshEnabled: false } });
    for (const [i, name] of reflectors.entries()) {
      await resources.create({ kind: 'Node', apiVersion: API_VERSION, metadata: { name, labels: { rr: 'true' } }, spec: { bgp: { ipv4Address: `10.47.0.${i + 1}/24`, routeReflectorClusterID: '1.0.0.1' } } });
    }
    await resources.create({ kind: 'BGPPeer', apiVersion: API_VERSION, metadata: { name: 'to-rr' }, spec: { nodeSelector: '!has(rr)', peerSelector: 'has(rr)' } });
    await resources.create({ kind: 'BGPPeer', apiVersion: API_VERSION, metadata: { name: 'rr-mesh' }, spec: { nodeSelector: 'has(rr)', peerSelector: 'has(rr)' } });
  }
  // One block per host in etcd before any daemon starts: what convergence has to spread.
  const blocks = await preclaimBlocks(ctx, names, 'bench-pool');
  const hosts = benchHosts(n, etcdEndpoint, underlay);
  try {
    return await withHosts(hosts, async (watch) => {
      const launched = performance.now();
      const ready = await startDaemons(hosts);
      const converged = await routedEverywhere(watch, new Map([...blocks].map(([node, block]) => [block, node])), hosts, 120_000);
      const startupTicks = hosts.map((h) => processTicks(h.daemon?.pid) + processTicks(h.birdPid()));
      const idleStart = hosts.map((h) => processTicks(h.daemon?.pid) + processTicks(h.birdPid()));
      const idleFrom = performance.now();
      await new Promise((r) => setTimeout(r, 5000));
      const idleSeconds = (performance.now() - idleFrom) / 1000;
      const idleTicks = hosts.map((h, i) => processTicks(h.daemon?.pid) + processTicks(h.birdPid()) - idleStart[i]!);

      const claims: number[] = [];
      const floors: number[] = [];
      for (let k = 0; k < CLAIMS; k++) {
        const host = hosts[k % n]!;
        const others = hosts.filter((h) => h !== host);
        // An address of a block nobody has: the request claims it.
        const address = `10.200.${100 + Math.floor(k / 4)}.${(k % 4) * 64 + 1}`;
        const block = `10.200.${100 + Math.floor(k / 4)}.${(k % 4) * 64}/26`;
        const asked = performance.now();
        const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: address });
        if (reply.status !== 200) throw new Error(`RequestAddress ${address} on ${host.node}: ${reply.text}`);
        claims.push((await waitFor(() => watch.everywhere(block, others), 30_000, `${block} everywhere`)) - asked);
        // The floor edits BIRD's config behind the daemon: only once the daemon has loaded its own.
        await waitFor(() => (host.runFile('bird.cfg').includes(`route ${block} blackhole;`) ? true : undefined), 10_000, `${block} in bird.cfg`);
        floors.push(await birdAloneLatency(host, others, `10.201.${k}.0/26`, watch));
      }
      const sessions = hosts.map(established);
      return {
        hosts: n,
        mode,
        convergenceMs: round(converged - launched, 0),
        convergenceAfterAllReadyMs: round(converged - ready, 0),
        allReadyMs: round(ready - launched, 0),
        claims: { p50: round(percentile(claims, 50)), p99: round(percentile(claims, 99)), max: round(Math.max(...claims)), samples: claims.length },
        floor: { p50: round(percentile(floors, 50)), p99: round(percentile(floors, 99)) },
        ratioP50: round(percentile(claims, 50) / percentile(floors, 50), 2),
        sessionsPerHost: {
          min: Math.min(...sessions.slice(reflectors.length)),
          max: Math.max(...sessions.slice(reflectors.length)),
          ...(reflectors.length ? { routeReflectors: Math.max(...sessions.slice(0, reflectors.length)) } : {}),
        },
        perHost: {
          daemonMb: round(hosts.reduce((sum, h) => sum + rssMb(h.daemon?.pid), 0) / n),
          birdMb: round(hosts.reduce((sum, h) => sum + rssMb(h.birdPid()), 0) / n),
          startupCpuSeconds: round(startupTicks.reduce((a, b) => a + b, 0) / n / CLK_TCK, 2),
          idleCpuPercent: round((idleTicks.reduce((a, b) => a + b, 0) / n / CLK_TCK / idleSeconds) * 100, 2),
        },
      };
    });
  } finally {
    ctx.etcd.close();
  }
}

function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.bench`, text);
  renameSync(`${path}.bench`, path);
}

/**
 * The floor: the same route originated by BIRD alone, a static blackhole added to the host's running
 * config and loaded with `configure` (no etcd, no daemon), until every other host's kernel has it.
 */
async function birdAloneLatency(host: DockerHost, others: DockerHost[], prefix: string, watch: RouteWatch): Promise<number> {
  const config = host.runPath('bird.cfg');
  const original = readFileSync(config, 'utf8');
  // Whole files only: the daemon's own `configure` may read it at any moment.
  writeAtomically(config, original.replace('protocol static static4 {\n  ipv4;\n', `protocol static static4 {\n  ipv4;\n  route ${prefix} blackhole;\n`));
  const added = performance.now();
  const reply = await birdCommand(host.runPath('bird.ctl'), 'configure');
  if (!RECONFIGURED.has(reply.code)) throw new Error(`configure on ${host.node}: ${JSON.stringify(reply)}`);
  const latency = (await waitFor(() => watch.everywhere(prefix, others), 30_000, `${prefix} everywhere`)) - added;
  writeAtomically(config, original);
  await birdCommand(host.runPath('bird.ctl'), 'configure');
  return latency;
}

/** `docker run -d --ip` on host 1 until a pinger container on `pingerHost` gets its first reply; and when docker run returned. */
async function runUntilPinged(h1: DockerHost, pingerHost: DockerHost, pinger: string, address: string, name: string): Promise<{ replyMs: number; runMs: number }> {
  const ping = pingerHost.dockerSpawn(['exec', pinger, 'ping', '-i', '0.01', '-W', '1', '-w', '20', address]);
  const reply = new Promise<number>((resolve) => {
    createInterface({ input: ping.stdout! }).on('line', (line) => {
      if (line.includes('bytes from')) resolve(performance.now());
    });
  });
  await new Promise((r) => setTimeout(r, 300));
  const start = performance.now();
  h1.dockerOk(['run', '-d', '--net', 'benchnet', '--ip', address, '--name', name, 'busybox:local', 'sleep', '3600']);
  const runMs = performance.now() - start;
  const replyMs = (await reply) - start;
  ping.kill();
  return { replyMs, runMs };
}

async function dockerRun(etcdEndpoint: string, underlay: Underlay): Promise<object> {
  const ctx = storeOn(etcdEndpoint);
  await ctx.wipe();
  await new PoolService(ctx.store).add({ cidr: POOL, name: 'bench-pool' });
  const hosts = [1, 2].map((i) => new DockerHost(`d${i}`, { reachable: etcdEndpoint }, {}, { underlay: { underlay, address: `10.47.0.${i}/24` } }));
  try {
    await Promise.all(hosts.map((h) => h.start()));
    const [h1, h2] = hosts as [DockerHost, DockerHost];
    // --subnet = the pool's CIDR, so Docker lets containers ask for an address (--ip).
    for (const h of hosts) h.dockerOk(['network', 'create', 'benchnet', '--driver', 'calico', '--ipam-driver', 'calico-ipam', '--subnet', POOL]);
    h1.dockerOk(['run', '-d', '--net', 'benchnet', '--name', 'near', 'busybox:local', 'sleep', '3600']);
    h2.dockerOk(['run', '-d', '--net', 'benchnet', '--name', 'far', 'busybox:local', 'sleep', '3600']);
    // Addresses of host 1's block, advertised already (its first container claimed it).
    const nearIp = JSON.parse(h1.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.benchnet}}', 'near'])).IPAddress as string;
    const base = nearIp.split('.').map(Number);
    const rounds: { cross: number; same: number; run: number }[] = [];
    for (let r = 0; r < RUNS; r++) {
      const crossIp = `${base[0]}.${base[1]}.${base[2]}.${(base[3]! & ~63) + 10 + 2 * r}`;
      const sameIp = `${base[0]}.${base[1]}.${base[2]}.${(base[3]! & ~63) + 11 + 2 * r}`;
      const cross = await runUntilPinged(h1, h2, 'far', crossIp, `cross${r}`);
      const same = await runUntilPinged(h1, h1, 'near', sameIp, `same${r}`);
      rounds.push({ cross: cross.replyMs, same: same.replyMs, run: cross.runMs });
    }
    return {
      rounds: RUNS,
      dockerRunMs: { p50: round(percentile(rounds.map((x) => x.run), 50)) },
      firstReplyFromHost2Ms: { p50: round(percentile(rounds.map((x) => x.cross), 50)), max: round(Math.max(...rounds.map((x) => x.cross))) },
      firstReplyFromHost1Ms: { p50: round(percentile(rounds.map((x) => x.same), 50)), max: round(Math.max(...rounds.map((x) => x.same))) },
      replyAfterDockerRunReturnedMs: { p50: round(percentile(rounds.map((x) => x.cross - x.run), 50)), max: round(Math.max(...rounds.map((x) => x.cross - x.run))) },
      ratioCrossToSameHostP50: round(percentile(rounds.map((x) => x.cross), 50) / percentile(rounds.map((x) => x.same), 50), 2),
    };
  } finally {
    for (const host of hosts) await host.stop();
    ctx.etcd.close();
  }
}

async function main(): Promise<void> {
  const results: SetupResult[] = [];
  await onUnderlay(BENCH_NETNS, 'benchul', async (etcdEndpoint, underlay) => {
    for (const n of SIZES) {
      results.push(await setup(n, 'mesh', etcdEndpoint, underlay));
      console.log(JSON.stringify(results.at(-1)));
    }
    if (SIZES.includes(20)) {
      results.push(await setup(20, 'route reflectors', etcdEndpoint, underlay));
      console.log(JSON.stringify(results.at(-1)));
    }
    let docker: object | undefined;
    if (!process.env.SKIP_DOCKER) {
      docker = await dockerRun(etcdEndpoint, underlay);
      console.log(JSON.stringify({ dockerRunToFirstPing: docker }));
    }
    saveReport('bgp', { bird: spawnSync('bird', ['--version'], { encoding: 'utf8' }).stderr.trim(), claimsPerSetup: CLAIMS, results, docker });
  });
  console.log('\nsetup                   all up ms   converged ms (after all up)   claim p50/p99 ms   floor p50/p99 ms   ratio   sessions   daemon+bird MB   idle CPU %');
  for (const r of results) {
    console.log(
      `${`${r.hosts} hosts, ${r.mode}`.padEnd(24)}${String(r.allReadyMs).padStart(9)}   ${`${r.convergenceMs} (${r.convergenceAfterAllReadyMs})`.padStart(27)}   ${`${r.claims.p50} / ${r.claims.p99}`.padStart(16)}   ${`${r.floor.p50} / ${r.floor.p99}`.padStart(16)}   ${String(r.ratioP50).padStart(5)}   ${`${r.sessionsPerHost.min}-${r.sessionsPerHost.max}${r.sessionsPerHost.routeReflectors ? ` (RR ${r.sessionsPerHost.routeReflectors})` : ''}`.padStart(8)}   ${`${r.perHost.daemonMb}+${r.perHost.birdMb}`.padStart(14)}   ${String(r.perHost.idleCpuPercent).padStart(9)}`,
    );
  }
}

runInOwnNetns(BENCH_NETNS, main);
