/**
 * bench/dns: container names across hosts, in one run and interleaved, between three hosts on one
 * underlay (network namespaces with their own Docker 20.10, daemon and BIRD), the hosts' upstream DNS
 * server in an "outside" namespace on the underlay:
 *
 * - a remote container's name looked up from a container (A on host 1 asks for B of host 2: Docker's
 *   embedded resolver forwards it, our proxy answers), against a local container's name from the same
 *   container (Docker answers it itself, never reaching us): remote/local is what we add;
 * - an upstream name through the container (Docker's resolver, then our proxy, then the upstream),
 *   against the same container path on host 3, whose daemon runs with CALICO_LIBNETWORK_DNS=false
 *   (Docker's resolver then asks the upstream from the container, masqueraded by the pool's
 *   natOutgoing): with − without is our overhead; and the host itself asking the upstream directly;
 * - the daemon's RSS before and after 1000 synthetic workload endpoints of other (absent) hosts are
 *   written to etcd, with names in A's network (the resolver only sees etcd), on host 1 and on host 3
 *   (resolver off: what the rest of the daemon takes for them), and lookups with the 1000 present.
 *
 * Latencies come from ONE long-lived node process per network namespace (entered with nsenter, the
 * host's node binary) that sends UDP queries one after another and times each (µs): no `docker exec`.
 *
 * Not part of the test run: `npm run bench:dns`. Knobs: ROUNDS (default 5), QUERIES (per path and
 * round, default 300), SYNTHETIC (default 1000).
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInterface, Interface } from 'node:readline';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { DNS_NAMES_ANNOTATION, GATEWAY_ANNOTATION, HANDLES_ANNOTATION, SANDBOX_ANNOTATION, WorkloadEndpoint, workloadEndpointName } from '../src/domain/endpoint-model.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { ROOT } from '../test/helpers/daemon.js';
import { DockerHost } from '../test/helpers/docker-host.js';
import { storeOn } from '../test/helpers/ipam.js';
import type { Underlay } from '../test/helpers/underlay.js';
import { runInOwnNetns } from './in-netns.js';
import { onUnderlay, percentile, round, saveReport } from './measure.js';

const BENCH_NETNS = 'calico-bench-dns';
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const QUERIES = Number(process.env.QUERIES ?? 300);
const SYNTHETIC = Number(process.env.SYNTHETIC ?? 1000);
const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const NETWORK = 'dnsnet';
const POOL = '10.210.0.0/16';
const UPSTREAM = '10.47.0.53';
const OUTSIDE = { name: 'outside.example', address: '192.0.2.7' };
const EMBEDDED = '127.0.0.11';
/** Synthetic endpoints: addresses from here on, far from the blocks the hosts claim first. */
const SYNTHETIC_BASE = [10, 210, 240, 0];
const GHOST_NODES = 8;

/**
 * The measuring process, run inside a namespace: reads jobs (JSON lines: server, port, name, count,
 * expect), sends `count` A queries for `name` one after another, and prints each job's latencies in µs
 * (only answers that carry exactly `expect`; others, and timeouts, are counted as failures).
 */
const PROBE = `
const dgram = require('dgram');
const packet = require(${JSON.stringify(join(ROOT, 'node_modules/dns-packet'))});
const socket = dgram.createSocket('udp4');
let pending;
socket.on('message', (m) => {
  const t = process.hrtime.bigint();
  if (pending && m.length >= 2 && m.readUInt16BE(0) === pending.id) { const p = pending; pending = undefined; p.done(m, t); }
});
let id = 0;
function ask(server, port, name) {
  return new Promise((resolve) => {
    id = (id + 1) & 0xffff;
    const message = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
    const timer = setTimeout(() => { pending = undefined; resolve(undefined); }, 2000);
    let start;
    pending = { id, done: (m, t) => { clearTimeout(timer); resolve({ us: Number(t - start) / 1000, m }); } };
    start = process.hrtime.bigint();
    socket.send(message, port, server);
  });
}
const lines = require('readline').createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  const job = JSON.parse(line);
  const us = [];
  let failures = 0, answer = '';
  for (let i = 0; i < job.count; i++) {
    const r = await ask(job.server, job.port, job.name);
    if (!r) { failures++; answer = 'timeout'; continue; }
    const d = packet.decode(r.m);
    answer = d.answers.filter((a) => a.type === 'A').map((a) => a.data).sort().join(',') || d.rcode;
    if (job.expect !== undefined && answer !== job.expect) { failures++; continue; }
    us.push(r.us);
  }
  process.stdout.write(JSON.stringify({ us, failures, answer }) + '\\n');
});
socket.bind(0, () => process.stdout.write('ready\\n'));
`;

interface Job {
  server: string;
  port: number;
  name: string;
  count: number;
  expect?: string;
}

interface JobResult {
  us: number[];
  failures: number;
  answer: string;
}

/** One measuring process in a namespace (`enter` is the command prefix that enters it). */
class Probe {
  private readonly child: ChildProcess;
  private readonly lines: Interface;
  private readonly unread: string[] = [];
  private readonly waiting: { resolve: (line: string) => void; reject: (error: Error) => void }[] = [];

  constructor(
    readonly what: string,
    enter: string[],
  ) {
    this.child = spawn(enter[0]!, [...enter.slice(1), process.execPath, '-e', PROBE], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout! });
    this.lines.on('line', (line) => {
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(line);
      else this.unread.push(line);
    });
    this.child.once('exit', (code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`probe in ${this.what} exited ${code}`));
    });
  }

  private next(): Promise<string> {
    const line = this.unread.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.child.exitCode !== null) return Promise.reject(new Error(`probe in ${this.what} exited ${this.child.exitCode}`));
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  ready(): Promise<string> {
    return this.next();
  }

  async run(job: Job): Promise<JobResult> {
    const line = this.next();
    this.child.stdin!.write(`${JSON.stringify(job)}\n`);
    return JSON.parse(await line) as JobResult;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** The daemon's node process: the child of nsenter when nsenter forked, else the process itself. */
function daemonPid(host: DockerHost): number {
  const pid = host.daemon!.pid!;
  if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node') return pid;
  const child = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  if (!child) throw new Error(`no node process under ${pid}`);
  return Number(child);
}

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const begun = performance.now();
const step = (what: string): void => console.log(`[${round((performance.now() - begun) / 1000, 1)} s] ${what}`);

/** RSS after a settle: the median of 7 readings 300 ms apart, MiB. */
async function settledRss(pids: Record<string, number>, settleMs = 3000): Promise<Record<string, number>> {
  await sleep(settleMs);
  const readings: Record<string, number[]> = Object.fromEntries(Object.keys(pids).map((k) => [k, []]));
  for (let i = 0; i < 7; i++) {
    for (const [k, pid] of Object.entries(pids)) readings[k]!.push(rssKb(pid));
    await sleep(300);
  }
  return Object.fromEntries(Object.entries(readings).map(([k, v]) => [k, round(percentile(v, 50) / 1024, 1)]));
}

const stats = (us: number[]): { n: number; p50Us: number; p90Us: number; p99Us: number } => ({ n: us.length, p50Us: round(percentile(us, 50), 0), p90Us: round(percentile(us, 90), 0), p99Us: round(percentile(us, 99), 0) });

/** Runs each path QUERIES times per round, paths interleaved, after a warm-up: latencies per path. */
async function measure(paths: Record<string, [Probe, Job]>, rounds = ROUNDS, queries = QUERIES): Promise<Record<string, { us: number[]; failures: number }>> {
  const out = Object.fromEntries(Object.keys(paths).map((p) => [p, { us: [] as number[], failures: 0 }]));
  for (const [probe, job] of Object.values(paths)) await probe.run({ ...job, count: 50 });
  for (let r = 0; r < rounds; r++) {
    for (const [path, [probe, job]] of Object.entries(paths)) {
      const result = await probe.run({ ...job, count: queries });
      out[path]!.us.push(...result.us);
      out[path]!.failures += result.failures;
      if (result.failures) console.log(`${path}: ${result.failures} failed (last answer ${result.answer})`);
    }
  }
  return out;
}

/** Waits until `probe` gets `expect` for `name` (or, with `gone`, anything else): ms it took. */
async function resolvesWithin(probe: Probe, job: Omit<Job, 'count'>, limitMs: number, gone = false): Promise<number> {
  const started = performance.now();
  for (;;) {
    const result = await probe.run({ ...job, count: 1 });
    if ((result.failures === 0) !== gone) return performance.now() - started;
    if (performance.now() - started > limitMs) throw new Error(`${job.name} ${gone ? 'still resolves' : 'does not resolve'} after ${limitMs} ms (answer ${result.answer})`);
    await sleep(5);
  }
}

/** Endpoint `i` of a host that is not there, as the driver and DockerWatcher of that host write it, cloned from a real one. */
function synthetic(real: WorkloadEndpoint, i: number): WorkloadEndpoint {
  const node = `ghost${(i % GHOST_NODES) + 1}`;
  const endpointId = (i.toString(16).padStart(8, '0') + real.spec.endpoint.slice(8)).slice(0, 64);
  const containerId = (i.toString(16).padStart(8, '0') + (real.spec.containerID ?? '0'.repeat(64)).slice(8)).slice(0, 64);
  const n = SYNTHETIC_BASE[3]! + i;
  const address = `${SYNTHETIC_BASE[0]}.${SYNTHETIC_BASE[1]}.${SYNTHETIC_BASE[2]! + Math.floor(n / 256)}.${n % 256}`;
  const annotations: Record<string, string> = { ...real.metadata.annotations, [DNS_NAMES_ANNOTATION]: JSON.stringify([`svc${i}`, containerId.slice(0, 12)]) };
  delete annotations[HANDLES_ANNOTATION];
  delete annotations[SANDBOX_ANNOTATION];
  delete annotations[GATEWAY_ANNOTATION];
  return {
    ...real,
    metadata: { ...real.metadata, name: workloadEndpointName(node, endpointId), annotations, creationTimestamp: new Date().toISOString() },
    spec: { ...real.spec, node, endpoint: endpointId, containerID: containerId, workload: `svc${i}`, interfaceName: `cali${endpointId.slice(0, 11)}`, ipNetworks: [`${address}/32`] },
  };
}

const syntheticAddress = (e: WorkloadEndpoint): string => e.spec.ipNetworks[0]!.split('/')[0]!;

async function inChunks<T>(items: T[], size: number, each: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(each));
}

async function threeHosts(etcdEndpoint: string, underlay: Underlay): Promise<object> {
  const ctx = storeOn(etcdEndpoint);
  await ctx.wipe();
  await new PoolService(ctx.store).add({ cidr: POOL, name: 'dns-pool', natOutgoing: true });
  const endpoints = new EtcdEndpointStore(ctx.etcd);
  const upstreamNs = underlay.namespace('dnsup', `${UPSTREAM}/24`);
  const upstream = spawn('ip', ['netns', 'exec', upstreamNs, process.execPath, join(ROOT, 'test/helpers/dns-server.mjs'), UPSTREAM, '53', JSON.stringify({ [OUTSIDE.name]: OUTSIDE.address })], { stdio: ['ignore', 'pipe', 'inherit'] });
  const hostOptions = (i: number) => ({ resolvConf: `nameserver ${UPSTREAM}\n`, underlay: { underlay, address: `10.47.0.${i}/24` } });
  const hosts = [1, 2, 3].map((i) => new DockerHost(`dns${i}`, { reachable: etcdEndpoint }, i === 3 ? { CALICO_LIBNETWORK_DNS: 'false' } : {}, hostOptions(i)));
  const probes: Probe[] = [];
  let written: WorkloadEndpoint[] = [];
  cleanups.push(() => void upstream.kill('SIGKILL'), async () => {
    for (const p of probes) p.stop();
    await Promise.all(hosts.map((h) => h.stop()));
  });
  try {
    await new Promise((resolve) => upstream.stdout!.once('data', resolve));
    await Promise.all(hosts.map((h) => h.start()));
    step('hosts up');
    const [h1, h2, h3] = hosts as [DockerHost, DockerHost, DockerHost];
    for (const h of hosts) h.dockerOk(['network', 'create', NETWORK, ...CALICO]);
    const container = (on: DockerHost, name: string): { pid: string; ip: string } => {
      on.dockerOk(['run', '-d', '--net', NETWORK, '--name', name, 'busybox:local', 'sleep', '36000']);
      return {
        pid: on.dockerOk(['inspect', '--format', '{{.State.Pid}}', name]),
        ip: JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${NETWORK}")}}`, name])).IPAddress,
      };
    };
    const a = container(h1, 'a1');
    const local = container(h1, 'l1');
    const b = container(h2, 'b2');
    const c = container(h3, 'c3');
    const inPid = (pid: string): string[] => ['nsenter', `--net=/proc/${pid}/ns/net`, '--'];
    const probeA = new Probe('container A (host 1)', inPid(a.pid));
    const probeC = new Probe('container C (host 3, DNS off)', inPid(c.pid));
    const probeHost = new Probe('host 1', ['nsenter', `--net=/run/netns/${h1.netns}`, '--']);
    probes.push(probeA, probeC, probeHost);
    for (const p of probes) await p.ready();
    step('containers and probes ready');
    const remoteJob = { server: EMBEDDED, port: 53, name: 'b2', expect: b.ip };
    const upstreamJob = { server: EMBEDDED, port: 53, name: OUTSIDE.name, expect: OUTSIDE.address };
    // B's name reaches host 1 through etcd once host 2's DockerWatcher has recorded it.
    await resolvesWithin(probeA, remoteJob, 20_000);
    await resolvesWithin(probeC, upstreamJob, 20_000);
    // The hosts have just started (BGP, policy, the watchers' catch-up): measured once they are idle, as
    // a host serving names usually is; the first runs measured straight away had p99s 2-3x the later ones.
    await sleep(Number(process.env.SETTLE_MS ?? 10_000));
    step('names resolve; measuring');
    const paths = {
      remote: [probeA, { ...remoteJob, count: 0 }],
      local: [probeA, { server: EMBEDDED, port: 53, name: 'l1', expect: local.ip, count: 0 }],
      upstreamContainer: [probeA, { ...upstreamJob, count: 0 }],
      upstreamContainerDnsOff: [probeC, { ...upstreamJob, count: 0 }],
      upstreamHost: [probeHost, { server: UPSTREAM, port: 53, name: OUTSIDE.name, expect: OUTSIDE.address, count: 0 }],
    } satisfies Record<string, [Probe, Job]>;
    const latencies = await measure(paths);
    const s = Object.fromEntries(Object.entries(latencies).map(([p, v]) => [p, { ...stats(v.us), failures: v.failures }])) as Record<keyof typeof paths, ReturnType<typeof stats> & { failures: number }>;
    console.log(JSON.stringify(s));

    // Memory: 1000 endpoints of other hosts, as their daemons would write them, in A's network.
    const pids = { dnsOn: daemonPid(h1), dnsOff: daemonPid(h3) };
    const rssBefore = await settledRss(pids);
    step(`writing ${SYNTHETIC} synthetic endpoints`);
    const real = (await endpoints.listEndpoints()).find((e) => e.value.spec.workload === 'b2')!.value;
    const fakes = Array.from({ length: SYNTHETIC }, (_, i) => synthetic(real, i));
    const writeStarted = performance.now();
    await inChunks(fakes, 50, async (e) => {
      if (!(await endpoints.createEndpoint(e))) throw new Error(`${e.metadata.name} exists`);
      written.push(e);
    });
    const writeMs = performance.now() - writeStarted;
    const last = fakes.at(-1)!;
    const lastResolvesMs = await resolvesWithin(probeA, { server: EMBEDDED, port: 53, name: last.spec.workload, expect: syntheticAddress(last) }, 30_000);
    const middle = fakes[Math.floor(SYNTHETIC / 2)]!;
    const withMany = await measure({
      synthetic: [probeA, { server: EMBEDDED, port: 53, name: middle.spec.workload, expect: syntheticAddress(middle), count: 0 }],
      remote: paths.remote,
      local: paths.local,
    });
    const rssWith = await settledRss(pids);
    step('removing them');
    const deleteStarted = performance.now();
    await inChunks(written, 50, (e) => endpoints.deleteEndpoint(e.metadata.name));
    written = [];
    const goneMs = await resolvesWithin(probeA, { server: EMBEDDED, port: 53, name: last.spec.workload, expect: syntheticAddress(last) }, 30_000, true);
    const deleteMs = performance.now() - deleteStarted;
    const rssAfter = await settledRss(pids);
    const m = Object.fromEntries(Object.entries(withMany).map(([p, v]) => [p, { ...stats(v.us), failures: v.failures }])) as Record<'synthetic' | 'remote' | 'local', ReturnType<typeof stats> & { failures: number }>;

    const ratio = (x: number, y: number): number => round(x / y, 2);
    const results = {
      rounds: ROUNDS,
      queriesPerPathAndRound: QUERIES,
      lookups: s,
      remoteVsLocal: { p50: ratio(s.remote.p50Us, s.local.p50Us), p99: ratio(s.remote.p99Us, s.local.p99Us), addedP50Us: s.remote.p50Us - s.local.p50Us },
      upstream: {
        overheadP50Us: s.upstreamContainer.p50Us - s.upstreamContainerDnsOff.p50Us,
        overheadP99Us: s.upstreamContainer.p99Us - s.upstreamContainerDnsOff.p99Us,
        containerVsHostP50Us: s.upstreamContainer.p50Us - s.upstreamHost.p50Us,
        dnsOffContainerVsHostP50Us: s.upstreamContainerDnsOff.p50Us - s.upstreamHost.p50Us,
        withVsWithoutP50: ratio(s.upstreamContainer.p50Us, s.upstreamContainerDnsOff.p50Us),
      },
      synthetic: {
        endpoints: SYNTHETIC,
        note: 'synthetic WorkloadEndpoints of absent hosts written straight to etcd (the resolver only sees etcd)',
        writeMs: round(writeMs, 0),
        lastResolvesAfterWritesMs: round(lastResolvesMs, 0),
        deleteAndGoneMs: round(deleteMs, 0),
        goneAfterDeletesMs: round(goneMs, 0),
        rssMiB: { before: rssBefore, with: rssWith, afterCleanup: rssAfter },
        rssGrowthMiB: { dnsOn: round(rssWith.dnsOn! - rssBefore.dnsOn!, 1), dnsOff: round(rssWith.dnsOff! - rssBefore.dnsOff!, 1) },
        lookups: m,
        remoteP50WithVsWithout: ratio(m.remote.p50Us, s.remote.p50Us),
      },
    };
    return results;
  } finally {
    for (const p of probes) p.stop();
    await inChunks(written, 50, (e) => endpoints.deleteEndpoint(e.metadata.name)).catch(() => undefined);
    await Promise.all(hosts.map((h) => h.stop()));
    upstream.kill('SIGKILL');
    ctx.etcd.close();
  }
}

const signed = (n: number): string => (n >= 0 ? `+${n}` : `${n}`);

function table(r: any): string {
  const row = (what: string, x: { p50Us: number; p90Us: number; p99Us: number; n: number; failures: number }, vs: string): string =>
    `${what.padEnd(46)} ${String(x.p50Us).padStart(7)} ${String(x.p90Us).padStart(7)} ${String(x.p99Us).padStart(7)} ${String(x.n).padStart(6)} ${String(x.failures).padStart(4)}  ${vs}`;
  const l = r.lookups;
  const ms = r.synthetic;
  return [
    `${'lookup (µs)'.padEnd(46)} ${'p50'.padStart(7)} ${'p90'.padStart(7)} ${'p99'.padStart(7)} ${'n'.padStart(6)} fail`,
    row('remote name (B, host 2) from A', l.remote, `×${r.remoteVsLocal.p50} / ×${r.remoteVsLocal.p99} of local (p50/p99)`),
    row('local name (Docker answers) from A', l.local, 'baseline'),
    row('upstream name via container, DNS on', l.upstreamContainer, `${signed(r.upstream.overheadP50Us)} µs p50, ${signed(r.upstream.overheadP99Us)} µs p99 vs DNS off`),
    row('upstream name via container, DNS off (host 3)', l.upstreamContainerDnsOff, 'baseline (Docker resolver → upstream)'),
    row('upstream name from host 1 directly', l.upstreamHost, 'floor'),
    row(`with ${ms.endpoints} synthetic: a synthetic name`, ms.lookups.synthetic, ''),
    row(`with ${ms.endpoints} synthetic: remote name B`, ms.lookups.remote, `×${ms.remoteP50WithVsWithout} of p50 without`),
    row(`with ${ms.endpoints} synthetic: local name`, ms.lookups.local, ''),
    `RSS MiB (DNS on host 1 / off host 3): before ${ms.rssMiB.before.dnsOn} / ${ms.rssMiB.before.dnsOff}, with ${ms.endpoints}: ${ms.rssMiB.with.dnsOn} / ${ms.rssMiB.with.dnsOff}, after cleanup ${ms.rssMiB.afterCleanup.dnsOn} / ${ms.rssMiB.afterCleanup.dnsOff}`,
    `growth: DNS on ${signed(ms.rssGrowthMiB.dnsOn)} MiB, DNS off ${signed(ms.rssGrowthMiB.dnsOff)} MiB; writes ${ms.writeMs} ms, last name resolves ${ms.lastResolvesAfterWritesMs} ms after; deleted and gone in ${ms.deleteAndGoneMs} ms`,
  ].join('\n');
}

async function main(): Promise<void> {
  await onUnderlay(BENCH_NETNS, 'dnsul', async (etcdEndpoint, underlay) => {
    const started = performance.now();
    const results = await threeHosts(etcdEndpoint, underlay);
    console.log(table(results));
    saveReport('dns', { ...results, seconds: round((performance.now() - started) / 1000, 0) });
  });
}

/**
 * Interrupted (Ctrl-C, a timeout's SIGTERM): the outer process waits for the inner one, which stops
 * what it started (hosts, the upstream, etcd, the namespaces) before it exits.
 */
const cleanups: (() => Promise<void> | void)[] = [];
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (process.env.CALICO_BENCH_NETNS !== BENCH_NETNS || interrupted) return;
    interrupted = true;
    console.error(`${signal}: tearing down`);
    void (async () => {
      for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch(() => undefined);
      // etcd (the one process of the benchmark's namespace besides this one) and the underlay's namespaces.
      for (const pid of spawnSync('ip', ['netns', 'pids', BENCH_NETNS], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)) {
        if (pid === process.pid) continue;
        try {
          // `ip netns pids` lists itself too, gone by now.
          const dataDir = /--data-dir\0([^\0]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1];
          process.kill(pid, 'SIGKILL');
          if (dataDir?.includes('calico-test-etcd-')) rmSync(dataDir, { recursive: true, force: true });
        } catch {
          // Gone already.
        }
      }
      for (const name of ['dnsul', 'dnsup']) spawnSync('ip', ['netns', 'del', `calit-${process.pid}-${name}`.slice(0, 30)]);
      process.exit(130);
    })();
  });
}

runInOwnNetns(BENCH_NETNS, main);
