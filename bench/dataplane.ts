/**
 * bench/dataplane: between two hosts on one underlay (network namespaces with their own dockerd,
 * daemon and BIRD), in one run and interleaved:
 *
 * - TCP throughput (iperf3, one stream) and request/response latency (1-byte TCP round trips, and
 *   ICMP echo) host to host on the underlay: the limit;
 * - the same container to container, routed (a pool without encapsulation, routed by BGP);
 * - the same container to container over VXLAN (a pool in vxlanMode Always);
 * - the plain-Linux floor of each container path (bench/floor.ts: the same veths, routes and
 *   VXLAN device with no Calico and no iptables), so each path is also compared with what its
 *   topology costs by itself;
 *
 * and, at N = 20 hosts with CALICO_NETWORKING_BACKEND=vxlan (no BIRD: every route from the
 * datastore), the time from a RequestAddress that claims a block on one host until its VXLAN route is
 * in every other host's kernel, against the RequestAddress's own reply time (the claim committed).
 *
 * Not part of the test run: `npm run bench:dataplane`. Knobs: ROUNDS (default 5), SECONDS (iperf3
 * seconds per measure, default 5), TRANSACTIONS (default 5000), HOSTS (default 20), CLAIMS (default 30),
 * PARTS (`paths`, `claims`, or both, the default).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { formatCidr, formatIp, parseCidr } from '../src/domain/cidr.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { post } from '../test/helpers/daemon.js';
import { DockerHost } from '../test/helpers/docker-host.js';
import { storeOn } from '../test/helpers/ipam.js';
import { Underlay } from '../test/helpers/underlay.js';
import { BareFloor, Ends, enterNs } from './floor.js';
import { runInOwnNetns } from './in-netns.js';
import { CLK_TCK, onUnderlay, percentile, processTicks, round, RouteWatch, saveReport, waitFor } from './measure.js';

const BENCH_NETNS = 'calico-bench-dataplane';
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const SECONDS = Number(process.env.SECONDS ?? 5);
const TRANSACTIONS = Number(process.env.TRANSACTIONS ?? 5000);
const HOSTS = Number(process.env.HOSTS ?? 20);
const CLAIMS = Number(process.env.CLAIMS ?? 30);
const PARTS = (process.env.PARTS ?? 'paths,claims').split(',');
const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];

const PATHS = ['host', 'floorRouted', 'routed', 'floorVxlan', 'vxlan'] as const;
type Path = (typeof PATHS)[number];
/** Each container path and the plain-Linux floor it is fairly compared with. */
const FLOOR_OF = { routed: 'floorRouted', vxlan: 'floorVxlan' } as const;

const median = (values: number[]): number => percentile(values, 50);

const PINNED = cpus().length >= 2;

/**
 * A command at one end of a path. Client and server are pinned to CPUs 0 and 1: on a small machine
 * the scheduler otherwise moves them (and the softirq work they cause) around, and runs of the same
 * path differed by a fifth.
 */
function at(prefix: string[], side: 'client' | 'server', command: string[]): [string, string[]] {
  const argv = [...prefix, ...(PINNED ? ['taskset', '-c', side === 'client' ? '0' : '1'] : []), ...command];
  return [argv[0]!, argv.slice(1)];
}

/** Starts a server at the far end and waits until it listens on `port`. */
function serve(ends: Ends, port: number, command: string[]): ReturnType<typeof spawn> {
  const server = spawn(...at(ends.server, 'server', command), { stdio: 'ignore' });
  const [ss, args] = [ends.server[0]!, [...ends.server.slice(1), 'ss', '-Hltn', `sport = :${port}`]];
  for (let tries = 0; tries < 100 && !spawnSync(ss, args, { encoding: 'utf8' }).stdout.trim(); tries++) spawnSync('sleep', ['0.05']);
  return server;
}

/** One iperf3 run (one stream, SECONDS long): received bits per second. */
function throughput(ends: Ends): number {
  const server = serve(ends, 5201, ['iperf3', '-s', '-1', '-p', '5201']);
  try {
    const client = spawnSync(...at(ends.client, 'client', ['iperf3', '-c', ends.target, '-p', '5201', '-t', String(SECONDS), '-J']), { encoding: 'utf8', timeout: (SECONDS + 20) * 1000 });
    const result = JSON.parse(client.stdout) as { end?: { sum_received?: { bits_per_second: number } }; error?: string };
    if (!result.end?.sum_received) throw new Error(`iperf3 to ${ends.target}: ${result.error ?? client.stderr}`);
    return result.end.sum_received.bits_per_second;
  } finally {
    server.kill();
  }
}

/** TRANSACTIONS sequential 1-byte TCP request/responses (netperf's TCP_RR): the median round trip, µs. */
function requestResponse(ends: Ends): number {
  const serverScript = "require('net').createServer((s) => { s.setNoDelay(true); s.on('data', (d) => s.write(d)); }).listen(7001)";
  const server = serve(ends, 7001, [process.execPath, '-e', serverScript]);
  try {
    const clientScript = `const s = require('net').connect(7001, '${ends.target}', () => { s.setNoDelay(true); const times = []; let t = process.hrtime.bigint(); s.on('data', () => { const now = process.hrtime.bigint(); times.push(Number(now - t) / 1000); if (times.length === ${TRANSACTIONS}) { times.sort((a, b) => a - b); console.log(times[Math.floor(times.length / 2)]); process.exit(0); } t = process.hrtime.bigint(); s.write('x'); }); s.write('x'); });`;
    const client = spawnSync(...at(ends.client, 'client', [process.execPath, '-e', clientScript]), { encoding: 'utf8', timeout: 120_000 });
    const value = Number(client.stdout.trim());
    if (!Number.isFinite(value) || value <= 0) throw new Error(`request/response to ${ends.target}: ${client.stderr}`);
    return value;
  } finally {
    server.kill();
  }
}

/** 500 pings 10 ms apart: the average round trip, µs. */
function icmp(ends: Ends): number {
  const out = spawnSync(...at(ends.client, 'client', ['ping', '-q', '-i', '0.01', '-c', '500', ends.target]), { encoding: 'utf8', timeout: 60_000 }).stdout;
  const avg = /= [\d.]+\/([\d.]+)\//.exec(out)?.[1];
  if (!avg) throw new Error(`ping ${ends.target}: ${out}`);
  return Number(avg) * 1000;
}

async function twoHosts(etcdEndpoint: string, underlay: Underlay): Promise<object> {
  const ctx = storeOn(etcdEndpoint);
  await ctx.wipe();
  const pools = new PoolService(ctx.store);
  await pools.add({ cidr: '10.200.0.0/16', name: 'routed-pool' });
  const hosts = [1, 2].map((i) => new DockerHost(`p${i}`, { reachable: etcdEndpoint }, {}, { underlay: { underlay, address: `10.47.0.${i}/24` } }));
  const floor = new BareFloor(underlay, ['10.47.0.11', '10.47.0.12']);
  try {
    await Promise.all(hosts.map((h) => h.start()));
    const [h1, h2] = hosts as [DockerHost, DockerHost];
    const container = (on: DockerHost, name: string, network: string): { pid: string; ip: string; mtu: string } => {
      on.dockerOk(['run', '-d', '--net', network, '--name', name, 'busybox:local', 'sleep', '36000']);
      return {
        pid: on.dockerOk(['inspect', '--format', '{{.State.Pid}}', name]),
        ip: JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])).IPAddress,
        mtu: on.dockerOk(['exec', name, 'cat', '/sys/class/net/cali0/mtu']),
      };
    };
    for (const h of hosts) h.dockerOk(['network', 'create', 'routednet', ...CALICO, '--subnet', '10.200.0.0/16']);
    // Routed containers first: with no VXLAN pool yet their veths keep the underlay's MTU.
    const r1 = container(h1, 'r1', 'routednet');
    const r2 = container(h2, 'r2', 'routednet');
    await pools.add({ cidr: '10.201.0.0/16', name: 'vxlan-pool', vxlanMode: 'Always' });
    await waitFor(() => (spawnSync('ip', ['-n', h1.netns, 'link', 'show', 'vxlan.calico']).status === 0 ? true : undefined), 20_000, 'vxlan.calico');
    for (const h of hosts) h.dockerOk(['network', 'create', 'vxnet', ...CALICO, '--subnet', '10.201.0.0/16']);
    const v1 = container(h1, 'v1', 'vxnet');
    const v2 = container(h2, 'v2', 'vxnet');
    const enterPid = (pid: string): string[] => ['nsenter', '-t', pid, '-n', '--'];
    const floorEnds = floor.build();
    const paths: Record<Path, Ends> = {
      host: { client: enterNs(h1.netns), server: enterNs(h2.netns), target: '10.47.0.2' },
      floorRouted: floorEnds.routed,
      floorVxlan: floorEnds.vxlan,
      routed: { client: enterPid(r1.pid), server: enterPid(r2.pid), target: r2.ip },
      vxlan: { client: enterPid(v1.pid), server: enterPid(v2.pid), target: v2.ip },
    };
    for (const path of PATHS.filter((p) => p !== 'host')) {
      const { client, target } = paths[path];
      await waitFor(() => (spawnSync(client[0]!, [...client.slice(1), 'ping', '-c', '1', '-W', '1', target]).status === 0 ? true : undefined), 20_000, `${path} path`);
    }
    const results = Object.fromEntries(PATHS.map((path) => [path, { bps: [] as number[], rrUs: [] as number[], icmpUs: [] as number[] }])) as Record<Path, { bps: number[]; rrUs: number[]; icmpUs: number[] }>;
    for (let round = 0; round < ROUNDS; round++) {
      for (const path of PATHS) {
        results[path].bps.push(throughput(paths[path]));
        results[path].rrUs.push(requestResponse(paths[path]));
        results[path].icmpUs.push(icmp(paths[path]));
        console.log(JSON.stringify({ round, path, gbps: round2(results[path].bps.at(-1)! / 1e9), rrUs: round2(results[path].rrUs.at(-1)!), icmpUs: round2(results[path].icmpUs.at(-1)!) }));
      }
    }
    const ratios = (path: Path, base: Path) => ({
      throughput: round2(median(results[path].bps) / median(results[base].bps), 3),
      requestResponse: round2(median(results[path].rrUs) / median(results[base].rrUs), 3),
      icmp: round2(median(results[path].icmpUs) / median(results[base].icmpUs), 3),
    });
    const summary = (path: Path) => ({
      gbps: round2(median(results[path].bps) / 1e9),
      requestResponseUs: round2(median(results[path].rrUs)),
      icmpUs: round2(median(results[path].icmpUs)),
      vsHost: ratios(path, 'host'),
      ...(path in FLOOR_OF ? { vsFloor: ratios(path, FLOOR_OF[path as keyof typeof FLOOR_OF]) } : {}),
    });
    return { rounds: ROUNDS, secondsPerThroughput: SECONDS, transactions: TRANSACTIONS, mtu: { routed: r1.mtu, vxlan: v1.mtu }, ...Object.fromEntries(PATHS.map((path) => [path, summary(path)])) };
  } finally {
    floor.destroy();
    for (const host of hosts) await host.stop();
    ctx.etcd.close();
  }
}

const round2 = (n: number, digits = 2): number => round(n, digits);

/** N bare hosts, backend vxlan: a claim on one host until its VXLAN route is on all the others. */
async function vxlanClaimTimes(etcdEndpoint: string, underlay: Underlay): Promise<object> {
  const ctx = storeOn(etcdEndpoint);
  await ctx.wipe();
  await new PoolService(ctx.store).add({ cidr: '10.202.0.0/16', name: 'vx-claims', vxlanMode: 'Always' });
  const hosts = Array.from({ length: HOSTS }, (_, i) => new DockerHost(`x${i + 1}`, { reachable: etcdEndpoint }, { CALICO_NETWORKING_BACKEND: 'vxlan' }, { docker: false, underlay: { underlay, address: `10.47.0.${i + 1}/24` } }));
  const watch = new RouteWatch();
  try {
    for (const host of hosts) await host.prepare();
    for (const host of hosts) watch.watch(host);
    await Promise.all(hosts.map((h) => h.startDaemon()));
    // Every host knows every other host's VTEP before claims are timed.
    await waitFor(() => (hosts.every((h) => spawnSync('ip', ['-n', h.netns, 'neigh', 'show', 'dev', 'vxlan.calico'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes('PERMANENT')).length === HOSTS - 1) ? true : undefined), 120_000, 'every VTEP everywhere');
    const samples: number[] = [];
    // The baseline: the claim itself, committed to etcd and answered on its host.
    const replies: number[] = [];
    const ticksBefore = hosts.reduce((sum, h) => sum + processTicks(h.daemon?.pid), 0);
    // Blocks nobody has: the hosts' VTEP addresses took blocks of the same pool, spread over it.
    const taken = new Set((await ctx.store.listAffinities()).map((a) => formatCidr(a.cidr)));
    const free = Array.from({ length: 1024 }, (_, i) => `10.202.${Math.floor(i / 4)}.${(i % 4) * 64}/26`).filter((b) => !taken.has(b));
    for (let k = 0; k < CLAIMS; k++) {
      const host = hosts[k % HOSTS]!;
      const block = free[k]!;
      const address = formatIp({ family: 4, value: parseCidr(block).base + 1n });
      const asked = performance.now();
      const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: address });
      replies.push(performance.now() - asked);
      if (reply.status !== 200) throw new Error(`RequestAddress ${address}: ${reply.text}`);
      const others = hosts.filter((h) => h !== host);
      const routed = await waitFor(() => watch.everywhere(block, others), 30_000, `${block} everywhere`).catch((error: Error) => {
        const missing = others.filter((h) => !spawnSync('ip', ['-n', h.netns, 'route', 'show', block], { encoding: 'utf8' }).stdout.trim());
        throw new Error(`${error.message}; not on ${missing.map((h) => h.node).join(', ')}:\n${missing.map((h) => h.daemonLog.split('\n').slice(-15).join('\n')).join('\n---\n')}`);
      });
      samples.push(routed - asked);
    }
    // Every daemon's CPU over the claims, per claim and host: what each claim costs each host.
    const cpuMsPerClaimPerHost = ((hosts.reduce((sum, h) => sum + processTicks(h.daemon?.pid), 0) - ticksBefore) / CLK_TCK / CLAIMS / HOSTS) * 1000;
    const p50 = percentile(samples, 50);
    const claimReply = { p50Ms: round2(percentile(replies, 50), 1), p99Ms: round2(percentile(replies, 99), 1) };
    return {
      hosts: HOSTS,
      claims: samples.length,
      p50Ms: round2(p50, 1),
      p99Ms: round2(percentile(samples, 99), 1),
      maxMs: round2(Math.max(...samples), 1),
      claimReply,
      p50VsClaimReply: round2(p50 / percentile(replies, 50)),
      cpuMsPerClaimPerHost: round2(cpuMsPerClaimPerHost, 1),
    };
  } finally {
    watch.stop();
    for (const host of hosts) await host.stop();
    ctx.etcd.close();
  }
}

async function main(): Promise<void> {
  const iperf = spawnSync('iperf3', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  await onUnderlay(BENCH_NETNS, 'dpul', async (etcdEndpoint, underlay) => {
    const paths = PARTS.includes('paths') ? await twoHosts(etcdEndpoint, underlay) : undefined;
    console.log(JSON.stringify({ paths }));
    const vxlanClaims = PARTS.includes('claims') ? await vxlanClaimTimes(etcdEndpoint, underlay) : undefined;
    console.log(JSON.stringify({ vxlanClaims }));
    saveReport('dataplane', { iperf, paths, vxlanClaims });
  });
}

runInOwnNetns(BENCH_NETNS, main);
