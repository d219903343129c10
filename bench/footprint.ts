/**
 * bench/footprint: what the daemon costs the host while it waits. A real daemon (no BGP, as the
 * tests run it) against a real etcd, both in a network namespace of this run's own:
 *
 * - CPU (user + system, from /proc/<pid>/stat) of the daemon and every process it runs, from its
 *   start until its plugin socket answers Activate, and until its log says "dataplane reconciled";
 * - resident memory (VmRSS) of the daemon and of each process it runs, BIRD apart: 5 s after it
 *   reconciled (start-up's garbage may not be collected yet: V8 shrinks an idle heap ~8 s after its
 *   last allocations), once idle, IDLE_S after it reconciled (default 30), and IDLE_S after the
 *   requests below;
 * - the latency of a plugin request (RequestAddress then ReleaseAddress, p50 and p99), so that a
 *   smaller footprint is not bought with slower answers, and the daemon's CPU per request.
 *
 * The floor, measured in the same run: a bare Node.js process that answers one HTTP route on a unix
 * socket (its CPU until it answers, its idle RSS, its request latency).
 *
 * Not part of the test run: `npm run bench:footprint`. Knobs: RUNS (default 5), REQUESTS (default
 * 300), IDLE_S (default 30), NODE_FLAGS (node's flags for the daemon, to try others; default: the shipped ones, DAEMON_NODE_FLAGS),
 * DAEMON_ENV (its environment besides its settings, as JSON; default: the shipped one, DAEMON_ENVIRONMENT),
 * COMPARE (another build's daemon entry, e.g. a worktree's dist/src/daemon/main.js: run in the same
 * rounds, interleaved with this one, and reported beside it with the ratio).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DAEMON_ENVIRONMENT, DAEMON_NODE_FLAGS } from '../src/adapters/host/installation.js';
import { DAEMON, post } from '../test/helpers/daemon.js';
import { TestEtcd } from '../test/helpers/etcd.js';
import { runInOwnNetns } from './in-netns.js';
import { CLK_TCK, percentile, processTicks, round, saveReport, sum, waitFor } from './measure.js';

const RUNS = Number(process.env.RUNS ?? 5);
const REQUESTS = Number(process.env.REQUESTS ?? 300);
/** The daemon's node flags: the shipped ones, or NODE_FLAGS ('' for none). */
const NODE_FLAGS = process.env.NODE_FLAGS === undefined ? DAEMON_NODE_FLAGS : process.env.NODE_FLAGS.split(' ').filter(Boolean);
/** The daemon's environment besides its settings: the shipped one, or DAEMON_ENV (JSON, '{}' for none). */
const ENVIRONMENT: Record<string, string> = process.env.DAEMON_ENV === undefined ? { ...DAEMON_ENVIRONMENT } : JSON.parse(process.env.DAEMON_ENV);
/** The daemons measured, one of each per round: this build's, and COMPARE's when given. */
const ENTRIES = [DAEMON, ...(process.env.COMPARE ? [process.env.COMPARE] : [])];
/** Long enough for the policy writer's tidy-up (2 s after a change) and a garbage collection to pass. */
const SETTLE_MS = 5000;
/** Idle: past V8's idle-time heap shrinking and the command helper's idle exit (10 s). */
const IDLE_MS = Number(process.env.IDLE_S ?? 30) * 1000;

interface Proc {
  pid: number;
  name: string;
  rssMb: number;
  /** Of which mapped from files (the node binary's code, shared libraries), shared with other processes running them. */
  fileMb: number;
  /** Its pages no other process maps (smaps_rollup's Private_Clean + Private_Dirty): what the host gets back when it ends. */
  privateMb: number;
}

function statusField(pid: number, field: string): string | undefined {
  try {
    return new RegExp(`^${field}:\\s+(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function privateMb(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? 0);
    return round((kb('Private_Clean') + kb('Private_Dirty')) / 1024);
  } catch {
    return 0;
  }
}

/** `pid` and every process below it, BIRD apart (it is not ours to shrink). */
function processTree(pid: number): Proc[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(statusField(Number(entry), 'PPid'));
    parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
  }
  const tree: Proc[] = [];
  const visit = (p: number): void => {
    const name = statusField(p, 'Name') ?? '?';
    if (name === 'bird' || name === 'bird6') return;
    const mb = (field: string): number => round(Number(statusField(p, field)?.split(' ')[0] ?? 0) / 1024);
    tree.push({ pid: p, name, rssMb: mb('VmRSS'), fileMb: mb('RssFile'), privateMb: privateMb(p) });
    for (const child of parents.get(p) ?? []) visit(child);
  };
  visit(pid);
  return tree;
}

/** CPU seconds of the tree; a child that has ended is counted by its parent's cutime/cstime. */
const treeCpuSeconds = (pid: number): number => processTree(pid).reduce((sum, p) => sum + processTicks(p.pid) + childTicks(p.pid), 0) / CLK_TCK;

function childTicks(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[13]) + Number(fields[14]);
  } catch {
    return 0;
  }
}

async function answersActivate(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return false;
  return post(socket, 'Plugin.Activate').then(
    (reply) => reply.status === 200,
    () => false,
  );
}

async function untilServing(child: ChildProcess, socket: string, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await answersActivate(socket))) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${what} did not serve in 30 s`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** REQUESTS requests one after the other: their latency, and the CPU the process tree of `pid` spent per request. */
async function latency(pid: number, request: () => Promise<void>): Promise<Pick<Run, 'requestMs' | 'cpuPerRequestMs'>> {
  const samples: number[] = [];
  const cpuBefore = treeCpuSeconds(pid);
  for (let i = 0; i < REQUESTS; i++) {
    const start = performance.now();
    await request();
    samples.push(performance.now() - start);
  }
  return {
    requestMs: { p50: round(percentile(samples, 50), 2), p99: round(percentile(samples, 99), 2) },
    cpuPerRequestMs: round(((treeCpuSeconds(pid) - cpuBefore) * 1000) / REQUESTS, 3),
  };
}

interface Run {
  cpuToServingS: number;
  cpuToReconciledS: number;
  /** SETTLE_MS after start-up. */
  afterStart: Proc[];
  /** IDLE_MS after start-up. */
  processes: Proc[];
  totalRssMb: number;
  /** IDLE_MS after the requests. */
  afterRequests: Proc[];
  requestMs: { p50: number; p99: number };
  /** The daemon's CPU per RequestAddress + ReleaseAddress pair (the floor's: per round trip). */
  cpuPerRequestMs: number;
}

/** A bare Node.js serving one route on a unix socket: what any Node.js daemon costs at least. */
async function floor(dir: string): Promise<Run> {
  const socket = join(dir, 'floor.sock');
  const script = `require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('{}')); }).listen(${JSON.stringify(socket)})`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  try {
    await untilServing(child, socket, 'the floor');
    const cpuToServingS = treeCpuSeconds(child.pid!);
    const memory = await memoryWhileIdle(child.pid!);
    const requests = await latency(child.pid!, async () => void (await post(socket, 'Plugin.Activate')));
    return { cpuToServingS, cpuToReconciledS: cpuToServingS, ...memory, ...requests, afterRequests: await idleAgain(child.pid!) };
  } finally {
    child.kill('SIGKILL');
    rmSync(socket, { force: true });
  }
}

const totalRss = (processes: Proc[]): number => round(sum(processes.map((p) => p.rssMb)));

/** The process tree's memory SETTLE_MS and IDLE_MS from now. */
async function memoryWhileIdle(pid: number): Promise<Pick<Run, 'afterStart' | 'processes' | 'totalRssMb'>> {
  const start = Date.now();
  await sleep(SETTLE_MS);
  const afterStart = processTree(pid);
  await sleep(IDLE_MS - (Date.now() - start));
  const processes = processTree(pid);
  return { afterStart, processes, totalRssMb: totalRss(processes) };
}

/** The process tree IDLE_MS from now. */
async function idleAgain(pid: number): Promise<Proc[]> {
  await sleep(IDLE_MS);
  return processTree(pid);
}

async function daemon(dir: string, etcd: string, run: number, entry: string): Promise<Run> {
  const work = join(dir, `daemon-${run}`);
  const logFile = join(work, 'daemon.log');
  const pluginDir = join(work, 'plugins');
  const socket = join(pluginDir, 'calico-ipam.sock');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...NODE_FLAGS, entry], {
    env: {
      ...ENVIRONMENT,
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      NODENAME: 'footprint',
      ETCD_ENDPOINTS: etcd,
      CALICO_LIBNETWORK_PLUGIN_DIR: pluginDir,
      IP: 'none',
      CALICO_NETWORKING_BACKEND: 'none',
      CALICO_RUN_DIR: join(work, 'run'),
      CALICO_DEFAULT_CONFIG_FILE: join(work, 'no-calicoctl.cfg'),
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  try {
    await untilServing(child, socket, 'the daemon');
    const cpuToServingS = treeCpuSeconds(child.pid!);
    await waitFor(() => (readFileSync(logFile, 'utf8').includes('dataplane reconciled') ? true : undefined), 30_000, 'the daemon to reconcile');
    const cpuToReconciledS = treeCpuSeconds(child.pid!);
    const memory = await memoryWhileIdle(child.pid!);
    const requests = await latency(child.pid!, async () => {
      const reply = await post(socket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '' });
      if (reply.status !== 200) throw new Error(`RequestAddress: ${reply.text}`);
      const released = await post(socket, 'IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: reply.body.Address.split('/')[0] });
      if (released.status !== 200) throw new Error(`ReleaseAddress: ${released.text}`);
    });
    return { cpuToServingS, cpuToReconciledS, ...memory, ...requests, afterRequests: await idleAgain(child.pid!) };
  } catch (error) {
    process.stderr.write(readFileSync(logFile, 'utf8').slice(-3000));
    throw error;
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

const median = (values: number[]): number => round(percentile(values, 50), 2);

function summary(runs: Run[]) {
  const names = runs[0]!.processes.map((p) => p.name);
  return {
    cpuToServingS: median(runs.map((r) => r.cpuToServingS)),
    cpuToReconciledS: median(runs.map((r) => r.cpuToReconciledS)),
    rssAfterStartMb: median(runs.map((r) => totalRss(r.afterStart))),
    afterStart: runs[0]!.afterStart.map((p) => p.name).join(' + '),
    idleRssMb: median(runs.map((r) => r.totalRssMb)),
    idleAfterRequestsMb: median(runs.map((r) => totalRss(r.afterRequests))),
    privateMb: median(runs.map((r) => r.processes.reduce((s, p) => s + p.privateMb, 0))),
    processes: names.map((name, i) => {
      const field = (key: 'rssMb' | 'fileMb' | 'privateMb'): number => median(runs.map((r) => r.processes[i]?.[key] ?? 0));
      return { name, rssMb: field('rssMb'), fileMb: field('fileMb'), privateMb: field('privateMb') };
    }),
    requestMs: { p50: median(runs.map((r) => r.requestMs.p50)), p99: median(runs.map((r) => r.requestMs.p99)) },
    cpuPerRequestMs: median(runs.map((r) => r.cpuPerRequestMs)),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'calico-bench-footprint-'));
  const etcd = new TestEtcd();
  await etcd.start();
  try {
    const floors: Run[] = [];
    const daemons: Run[][] = ENTRIES.map(() => []);
    for (let run = 1; run <= RUNS; run++) {
      floors.push(await floor(dir));
      for (const [i, entry] of ENTRIES.entries()) daemons[i]!.push(await daemon(dir, etcd.endpoint, run, entry));
    }
    const bare = summary(floors);
    const measured = daemons.map(summary);
    const ratio = (a: number, b: number): number => round(a / b, 2);
    console.log(`runs: ${RUNS}, medians, node flags: ${NODE_FLAGS.join(' ') || 'none'}, environment: ${JSON.stringify(ENVIRONMENT)}`);
    for (const [i, ours] of measured.entries()) {
      console.log(`daemon ${ENTRIES[i]}`);
      console.log(`RSS ${SETTLE_MS / 1000} s after start: daemon ${ours.rssAfterStartMb} MB (${ours.afterStart}), bare node ${bare.rssAfterStartMb} MB, x${ratio(ours.rssAfterStartMb, bare.rssAfterStartMb)}`);
      console.log(`idle RSS (${IDLE_MS / 1000} s):    daemon ${ours.idleRssMb} MB (${ours.processes.map((p) => `${p.name} ${p.rssMb} of which files ${p.fileMb}`).join(', ')}), bare node ${bare.idleRssMb} MB, x${ratio(ours.idleRssMb, bare.idleRssMb)}`);
      console.log(`idle RSS ${IDLE_MS / 1000} s after the requests: daemon ${ours.idleAfterRequestsMb} MB, bare node ${bare.idleAfterRequestsMb} MB`);
      console.log(`private (not shared): daemon ${ours.privateMb} MB (${ours.processes.map((p) => `${p.name} ${p.privateMb}`).join(', ')}), bare node ${bare.privateMb} MB`);
      console.log(`CPU until serving:   daemon ${ours.cpuToServingS} s, bare node ${bare.cpuToServingS} s, x${ratio(ours.cpuToServingS, bare.cpuToServingS)}`);
      console.log(`CPU until reconciled: daemon ${ours.cpuToReconciledS} s`);
      console.log(`request latency:     RequestAddress+ReleaseAddress p50 ${ours.requestMs.p50} ms, p99 ${ours.requestMs.p99} ms; bare node round trip p50 ${bare.requestMs.p50} ms, p99 ${bare.requestMs.p99} ms`);
      console.log(`CPU per request:     daemon ${ours.cpuPerRequestMs} ms (RequestAddress+ReleaseAddress), bare node ${bare.cpuPerRequestMs} ms`);
    }
    if (measured.length === 2) {
      const [ours, other] = measured as [ReturnType<typeof summary>, ReturnType<typeof summary>];
      console.log(`this build / COMPARE: idle RSS x${ratio(ours.idleRssMb, other.idleRssMb)}, after the requests x${ratio(ours.idleAfterRequestsMb, other.idleAfterRequestsMb)}, ${SETTLE_MS / 1000} s after start x${ratio(ours.rssAfterStartMb, other.rssAfterStartMb)}, private x${ratio(ours.privateMb, other.privateMb)}, CPU until serving x${ratio(ours.cpuToServingS, other.cpuToServingS)}, request p50 x${ratio(ours.requestMs.p50, other.requestMs.p50)}`);
    }
    saveReport('footprint', { runs: RUNS, settleMs: SETTLE_MS, idleMs: IDLE_MS, nodeFlags: NODE_FLAGS, environment: ENVIRONMENT, entries: ENTRIES, daemons: measured, floor: bare, perRun: daemons });
  } finally {
    await etcd.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

runInOwnNetns('calico-bench-footprint', main);
