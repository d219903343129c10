/**
 * bench/scale: many hosts on one etcd, without dockerd: each host a network namespace on one underlay
 * bridge with its own daemon and BIRD, in a BGP full mesh, at N = 3 (the baseline) and N = 50 in the
 * same run. Per N:
 *
 * - the watches etcd holds (its own /metrics: watchers, watch streams, open gRPC watch streams) and
 *   its client connections, in total and per daemon (what N daemons added to what etcd held before);
 * - etcd's memory and CPU, idle and during the allocations;
 * - each daemon's memory (its process and children, BIRD apart) and BIRD's, and their CPU, idle and
 *   during ALLOCATIONS RequestAddress calls spread over the hosts' plugin sockets, all at once;
 * - the time until every host routes every block: from launching the daemons (one block each already
 *   in etcd), and from the first allocation (the blocks they claimed).
 *
 * Daemons start WAVE at a time (default 10): two cores do not start fifty at once within their
 * start-up limit. The machine's ARP table limits are raised for the run (and put back): one table
 * serves every namespace, and fifty hosts in a mesh overflow Linux's default.
 *
 * Not part of the test run: `flock /tmp/calico-tests.lock npm run bench:scale`. Knobs: SIZES (default
 * 3,50), ALLOCATIONS (default 1000), IN_FLIGHT (calls at once per host; default all), WAVE,
 * IDLE_SECONDS (default 10), BACKEND (`bird`, the default, or `vxlan`: no BIRD, routes over VXLAN).
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { post } from '../test/helpers/daemon.js';
import type { DockerHost } from '../test/helpers/docker-host.js';
import type { TestEtcd } from '../test/helpers/etcd.js';
import { storeOn } from '../test/helpers/ipam.js';
import type { Underlay } from '../test/helpers/underlay.js';
import { benchHosts, blockOwners, preclaimBlocks, routedEverywhere, startDaemons, withHosts } from './hosts.js';
import { runInOwnNetns } from './in-netns.js';
import { CLK_TCK, established, etcdMetrics, guarded, metricSum, onUnderlay, percentile, processTicks, processTree, round, rssMb, saveReport, sum } from './measure.js';

const BENCH_NETNS = 'calico-bench-scale';
const SIZES = (process.env.SIZES ?? '3,50').split(',').map(Number);
const ALLOCATIONS = Number(process.env.ALLOCATIONS ?? 1000);
const WAVE = Number(process.env.WAVE ?? 10);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 10);
/** RequestAddress calls in flight on each host at once (default: all of its share). */
const IN_FLIGHT = Number(process.env.IN_FLIGHT ?? ALLOCATIONS);
/** `bird` (a BGP full mesh) or `vxlan` (routes over VXLAN from etcd alone, no BIRD). */
const BACKEND = process.env.BACKEND ?? 'bird';
const POOL = '10.200.0.0/16';
/** Small blocks, so the allocations claim new ones (and new routes) at every N: 8 addresses each. */
const BLOCK_SIZE = 29;
const LIMIT_MS = 15 * 60_000;

/** The processes measured on one host: the daemon with its children but BIRD, and BIRD. */
interface HostProcesses {
  daemon: number[];
  bird: number[];
}

function processesOf(host: DockerHost): HostProcesses {
  const bird = host.birdPid();
  return { daemon: processTree(host.daemon?.pid, bird), bird: processTree(bird) };
}

const ticksOf = (pids: number[]): number => sum(pids.map(processTicks));
const mbOf = (pids: number[]): number => sum(pids.map(rssMb));

/** CPU ticks so far of each host's daemon and BIRD, and of etcd. */
function cpuNow(hosts: HostProcesses[], etcdPid: number | undefined): { daemon: number[]; bird: number[]; etcd: number; at: number } {
  return { daemon: hosts.map((h) => ticksOf(h.daemon)), bird: hosts.map((h) => ticksOf(h.bird)), etcd: processTicks(etcdPid), at: performance.now() };
}

/** Average CPU % per host (daemon, BIRD) and etcd's, between two readings. */
function cpuBetween(from: ReturnType<typeof cpuNow>, to: ReturnType<typeof cpuNow>): { daemonPercent: number; birdPercent: number; etcdPercent: number } {
  const seconds = (to.at - from.at) / 1000;
  const percent = (ticks: number): number => round((ticks / CLK_TCK / seconds) * 100, 2);
  const n = from.daemon.length;
  return {
    daemonPercent: percent(sum(to.daemon.map((t, i) => t - from.daemon[i]!)) / n),
    birdPercent: percent(sum(to.bird.map((t, i) => t - from.bird[i]!)) / n),
    etcdPercent: percent(to.etcd - from.etcd),
  };
}

function memory(hosts: HostProcesses[], etcdPid: number | undefined): { daemonMb: number; daemonProcessMb: number; birdMb: number; etcdMb: number; daemonMaxMb: number } {
  const daemons = hosts.map((h) => mbOf(h.daemon));
  return {
    daemonMb: round(sum(daemons) / hosts.length),
    daemonProcessMb: round(sum(hosts.map((h) => rssMb(h.daemon[0]))) / hosts.length),
    daemonMaxMb: round(Math.max(...daemons)),
    birdMb: round(sum(hosts.map((h) => mbOf(h.bird))) / hosts.length),
    etcdMb: round(rssMb(etcdPid)),
  };
}

/** Client TCP connections etcd has, in the benchmark's namespace where it listens. */
const etcdConnections = (): number => spawnSync('ss', ['-Htn', 'state', 'established', '( sport = :2379 )'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).length;

interface WatchLoad {
  watchers: number;
  watchStreams: number;
  grpcWatchStreams: number;
  connections: number;
}

async function watchLoad(endpoint: string): Promise<WatchLoad> {
  const m = await etcdMetrics(endpoint);
  const watch = ['grpc_method="Watch"'];
  return {
    watchers: metricSum(m, 'etcd_debugging_mvcc_watcher_total'),
    watchStreams: metricSum(m, 'etcd_debugging_mvcc_watch_stream_total'),
    grpcWatchStreams: metricSum(m, 'grpc_server_started_total', ...watch) - metricSum(m, 'grpc_server_handled_total', ...watch),
    connections: etcdConnections(),
  };
}

/** etcd's counters that grow with the work it does: writes, reads, bytes (replies and watch events) sent and received. */
async function etcdWork(endpoint: string): Promise<Record<string, number>> {
  const m = await etcdMetrics(endpoint);
  return {
    txns: metricSum(m, 'etcd_debugging_mvcc_txn_total'),
    puts: metricSum(m, 'etcd_debugging_mvcc_put_total'),
    ranges: metricSum(m, 'etcd_debugging_mvcc_range_total'),
    sentBytes: metricSum(m, 'etcd_network_client_grpc_sent_bytes_total'),
    receivedBytes: metricSum(m, 'etcd_network_client_grpc_received_bytes_total'),
  };
}

const difference = (to: Record<string, number>, from: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(to).map(([k, v]) => [k, v - (from[k] ?? 0)]));

/**
 * `count` RequestAddress calls, spread evenly over the hosts' IPAM sockets, all hosts at once, at most
 * `inFlight` at a time on each host.
 */
async function allocate(hosts: DockerHost[], count: number, inFlight: number): Promise<{ latencies: number[]; failures: string[] }> {
  const latencies: number[] = [];
  const failures: string[] = [];
  const request = async (host: DockerHost): Promise<void> => {
    const asked = performance.now();
    const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4' }).catch((error: Error) => ({ status: 0, text: error.message }));
    if (reply.status === 200) latencies.push(performance.now() - asked);
    else failures.push(reply.text.trim());
  };
  await Promise.all(
    hosts.map(async (host, i) => {
      let left = Math.floor(count / hosts.length) + (i < count % hosts.length ? 1 : 0);
      const worker = async (): Promise<void> => {
        while (left > 0) {
          left--;
          await request(host);
        }
      };
      await Promise.all(Array.from({ length: Math.min(inFlight, left) }, worker));
    }),
  );
  return { latencies, failures };
}

/** How often each text occurs. */
const countBy = (texts: string[]): Record<string, number> => texts.reduce<Record<string, number>>((counts, text) => ({ ...counts, [text]: (counts[text] ?? 0) + 1 }), {});


async function scale(n: number, etcd: TestEtcd, underlay: Underlay): Promise<object> {
  const ctx = storeOn(etcd.endpoint);
  try {
    await ctx.wipe();
    await new PoolService(ctx.store).add({ cidr: POOL, name: 'bench-pool', blockSize: BLOCK_SIZE, ...(BACKEND === 'vxlan' ? { vxlanMode: 'Always' as const } : {}) });
    const hosts = benchHosts(n, etcd.endpoint, underlay, { CALICO_NETWORKING_BACKEND: BACKEND });
    // One block per host before any daemon starts: what convergence at start-up has to spread (with
    // VXLAN, the blocks of the hosts' tunnel addresses too).
    await preclaimBlocks(
      ctx,
      hosts.map((h) => h.node),
      'bench-pool',
    );
    const before = await watchLoad(etcd.endpoint);
    const etcdMbBefore = round(rssMb(etcd.pid));
    return await withHosts(hosts, async (watch) => {
      const launched = performance.now();
      const ready = await startDaemons(hosts, WAVE);
      const startBlocks = await blockOwners(ctx);
      const converged = await routedEverywhere(watch, startBlocks, hosts, LIMIT_MS);
      console.error(`${n} hosts: all serving after ${round((ready - launched) / 1000)} s, converged after ${round((converged - launched) / 1000)} s`);
      // Settled: the mesh is up and the start-up writes are done.
      await sleep(2000);
      const held = await watchLoad(etcd.endpoint);
      const processes = hosts.map(processesOf);
      const idleFrom = cpuNow(processes, etcd.pid);
      await sleep(IDLE_SECONDS * 1000);
      const idle = cpuBetween(idleFrom, cpuNow(processes, etcd.pid));
      const idleMemory = memory(processes, etcd.pid);
      const sessions = BACKEND === 'bird' ? hosts.map(established) : [0];

      const workFrom = await etcdWork(etcd.endpoint);
      const busyFrom = cpuNow(processes, etcd.pid);
      const { latencies, failures } = await allocate(hosts, ALLOCATIONS, IN_FLIGHT);
      const allocated = performance.now();
      const owners = await blockOwners(ctx);
      const routed = await routedEverywhere(watch, owners, hosts, LIMIT_MS);
      const busy = cpuBetween(busyFrom, cpuNow(processes, etcd.pid));
      const work = difference(await etcdWork(etcd.endpoint), workFrom);
      const busyMemory = memory(processes, etcd.pid);
      const afterAllocations = await watchLoad(etcd.endpoint);
      console.error(`${n} hosts: ${latencies.length} allocations in ${round((allocated - busyFrom.at) / 1000)} s, ${owners.size} blocks routed everywhere after ${round((routed - busyFrom.at) / 1000)} s`);
      const failedBecause = countBy(failures.map((text) => text.replace(/\d+/g, 'N')));
      for (const [reason, count] of Object.entries(failedBecause)) console.error(`${count} allocations failed: ${reason}`);
      const added = (key: keyof WatchLoad): number => held[key] - before[key];
      return {
        hosts: n,
        backend: BACKEND,
        wave: WAVE,
        allServingMs: round(ready - launched, 0),
        convergedMs: round(converged - launched, 0),
        sessionsPerHost: { min: Math.min(...sessions), max: Math.max(...sessions) },
        etcdHeld: { before, withDaemons: held, afterAllocations },
        perDaemon: { watchers: round(added('watchers') / n, 2), watchStreams: round(added('watchStreams') / n, 2), grpcWatchStreams: round(added('grpcWatchStreams') / n, 2), connections: round(added('connections') / n, 2) },
        idle: { ...idle, ...idleMemory, etcdMbBeforeDaemons: etcdMbBefore, seconds: IDLE_SECONDS },
        allocations: {
          requested: ALLOCATIONS,
          inFlightPerHost: Math.min(IN_FLIGHT, Math.ceil(ALLOCATIONS / n)),
          succeeded: latencies.length,
          failed: failures.length,
          failedBecause,
          wallMs: round(allocated - busyFrom.at, 0),
          latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)), max: round(Math.max(...latencies)) },
          blocks: owners.size,
          newBlocks: owners.size - startBlocks.size,
          routedEverywhereMs: round(routed - busyFrom.at, 0),
          routedAfterLastReplyMs: round(routed - allocated, 0),
          cpu: busy,
          memory: busyMemory,
          etcdWork: work,
        },
      };
    });
  } finally {
    ctx.etcd.close();
  }
}

type Result = Awaited<ReturnType<typeof scale>> & Record<string, any>;

/** `value` at N over the baseline's, two digits. */
const ratio = (value: number, baseline: number): string => (baseline ? `${round(value / baseline, 2)}x` : '-');

function printTable(results: Result[]): void {
  const base = results[0]!;
  const rows: [string, (r: Result) => number][] = [
    ['all daemons serving, s', (r) => r.allServingMs / 1000],
    ['every block routed after launch, s', (r) => r.convergedMs / 1000],
    ['BGP sessions per host', (r) => r.sessionsPerHost.max],
    ['etcd watchers, total', (r) => r.etcdHeld.withDaemons.watchers],
    ['etcd watchers per daemon', (r) => r.perDaemon.watchers],
    ['etcd watch streams per daemon', (r) => r.perDaemon.watchStreams],
    ['etcd gRPC watch streams per daemon', (r) => r.perDaemon.grpcWatchStreams],
    ['etcd connections per daemon', (r) => r.perDaemon.connections],
    ['etcd MB (idle, with daemons)', (r) => r.idle.etcdMb],
    ['etcd CPU % idle', (r) => r.idle.etcdPercent],
    ['daemon MB per host', (r) => r.idle.daemonMb],
    ["daemon's own process MB per host", (r) => r.idle.daemonProcessMb],
    ['BIRD MB per host', (r) => r.idle.birdMb],
    ['daemon CPU % per host, idle', (r) => r.idle.daemonPercent],
    ['BIRD CPU % per host, idle', (r) => r.idle.birdPercent],
    ['allocations: wall s', (r) => r.allocations.wallMs / 1000],
    ['allocations: p50 ms', (r) => r.allocations.latencyMs.p50],
    ['allocations: p99 ms', (r) => r.allocations.latencyMs.p99],
    ['allocations: new blocks', (r) => r.allocations.newBlocks],
    ['new blocks routed everywhere, s', (r) => r.allocations.routedEverywhereMs / 1000],
    ['daemon CPU % per host, allocating', (r) => r.allocations.cpu.daemonPercent],
    ['BIRD CPU % per host, allocating', (r) => r.allocations.cpu.birdPercent],
    ['etcd CPU %, allocating', (r) => r.allocations.cpu.etcdPercent],
    ['etcd MB after allocations', (r) => r.allocations.memory.etcdMb],
    ['daemon MB per host after allocations', (r) => r.allocations.memory.daemonMb],
    ['etcd txns per allocation', (r) => r.allocations.etcdWork.txns / r.allocations.succeeded],
    ['etcd ranges per allocation', (r) => r.allocations.etcdWork.ranges / r.allocations.succeeded],
    ['etcd MB sent to clients, allocating', (r) => r.allocations.etcdWork.sentBytes / 1e6],
    ['etcd kB sent per allocation', (r) => r.allocations.etcdWork.sentBytes / 1e3 / r.allocations.succeeded],
  ];
  console.log(`\n${'figure'.padEnd(40)}${results.map((r) => `${r.hosts} hosts`.padStart(12)).join('')}${results.slice(1).map((r) => `${r.hosts}/${base.hosts}`.padStart(10)).join('')}`);
  for (const [name, value] of rows) {
    console.log(`${name.padEnd(40)}${results.map((r) => String(round(value(r), 2)).padStart(12)).join('')}${results.slice(1).map((r) => ratio(value(r), value(base)).padStart(10)).join('')}`);
  }
}

const NEIGHBOUR_LIMITS = ['gc_thresh2', 'gc_thresh3'].map((name) => `net.ipv4.neigh.default.${name}`);

/**
 * sysctl in the machine's own network namespace, where the neighbour table's limits are set: the
 * namespace of the process that started this run in its own (runInOwnNetns).
 */
function machineSysctl(args: string[]): string {
  const run = spawnSync('nsenter', [`--net=/proc/${process.ppid}/ns/net`, '--', 'sysctl', ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`sysctl ${args.join(' ')}: ${run.stderr}`);
  return run.stdout.trim();
}

/**
 * Runs `body` with room for `entries` ARP entries, then puts the limits back. The kernel's neighbour
 * table is one for all network namespaces, and a full mesh of N hosts on one machine fills N × (N − 1)
 * entries: 2450 at 50 hosts, over Linux's default hard limit of 1024 (then ARP fails now and then,
 * "neighbor table overflow", and sessions wait). Separate machines have 49 entries each.
 */
function withNeighbourRoom<T>(entries: number, body: () => Promise<T>): Promise<T> {
  const before = NEIGHBOUR_LIMITS.map((name) => machineSysctl(['-n', name]));
  const wanted = [entries, 2 * entries];
  return guarded(
    () => NEIGHBOUR_LIMITS.forEach((name, i) => machineSysctl(['-qw', `${name}=${before[i]}`])),
    () => {
      NEIGHBOUR_LIMITS.forEach((name, i) => machineSysctl(['-qw', `${name}=${Math.max(Number(before[i]), wanted[i]!)}`]));
      return body();
    },
  );
}

async function main(): Promise<void> {
  const results: Result[] = [];
  const largest = Math.max(...SIZES);
  await withNeighbourRoom(2 * largest * largest, () =>
    onUnderlay(BENCH_NETNS, 'scaleul', async (_endpoint, underlay, etcd) => {
      for (const n of SIZES) {
        results.push((await scale(n, etcd, underlay)) as Result);
        console.log(JSON.stringify(results.at(-1)));
      }
    }),
  );
  saveReport('scale', { backend: BACKEND, etcd: spawnSync('etcd', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0], allocations: ALLOCATIONS, blockSize: BLOCK_SIZE, results });
  printTable(results);
}

runInOwnNetns(BENCH_NETNS, main);
