import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from '../test/helpers/daemon.js';
import type { DockerHost } from '../test/helpers/docker-host.js';
import { TestEtcd } from '../test/helpers/etcd.js';
import { Underlay } from '../test/helpers/underlay.js';

/**
 * What the benchmarks share: an underlay with etcd for their hosts, clean-up on Ctrl-C, percentiles,
 * waiting, process memory and CPU, etcd's metrics, when each host's kernel first showed a route, and
 * the results file.
 */

/** What to undo if the run is interrupted, newest first; each entry leaves once its own `finally` ran. */
const cleanups: (() => unknown)[] = [];

/**
 * Runs `body`, then `cleanup` whatever happens; on Ctrl-C (SIGINT) or SIGTERM meanwhile, runs the
 * clean-ups of every `guarded` still running, innermost first, and exits: nothing is left behind.
 */
export async function guarded<T>(cleanup: () => unknown, body: () => Promise<T>): Promise<T> {
  if (cleanups.length === 0) {
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
  }
  cleanups.push(cleanup);
  try {
    return await body();
  } finally {
    cleanups.splice(cleanups.indexOf(cleanup), 1);
    await cleanup();
  }
}

async function interrupted(signal: NodeJS.Signals): Promise<void> {
  console.error(`\n${signal}: cleaning up`);
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  process.exit(130);
}

const ETCD_ADDRESS = '10.47.0.250';

/**
 * Runs `body` with an underlay bridge and an etcd on it (in the benchmark's own namespace, which
 * joins the underlay), both removed after it, whatever happens.
 */
export async function onUnderlay<T>(benchNetns: string, underlayName: string, body: (etcdEndpoint: string, underlay: Underlay, etcd: TestEtcd) => Promise<T>): Promise<T> {
  const underlay = new Underlay(underlayName);
  return guarded(
    () => underlay.stop(),
    async () => {
      underlay.start();
      underlay.join(benchNetns, 'bench', `${ETCD_ADDRESS}/24`);
      const etcd = new TestEtcd(undefined, false, { netns: benchNetns, address: ETCD_ADDRESS });
      return guarded(
        () => etcd.destroy(),
        async () => {
          await etcd.start();
          return body(etcd.endpoint, underlay, etcd);
        },
      );
    },
  );
}

/** Writes `bench/results/<bench>-<date>.json` with the commit and the machine's CPU count. */
export function saveReport(bench: string, results: object): object {
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const report = { bench, date: new Date().toISOString(), git, cpus: cpus().length, ...results };
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(resultFile(bench, report.date.slice(0, 10)), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

/** bench/results/<bench>-<day>.json, or -2, -3… after it: a second run the same day keeps the first. */
function resultFile(bench: string, day: string): string {
  const name = (n: number): string => join(ROOT, 'bench/results', `${bench}-${day}${n > 1 ? `-${n}` : ''}.json`);
  let n = 1;
  while (existsSync(name(n))) n++;
  return name(n);
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
export const CLK_TCK = 100;

/** CPU time (user + system) a process has used so far, in clock ticks; 0 when it is gone. */
export function processTicks(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

const statusKb = (pid: number, field: string): number => {
  try {
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
};

/** A process's resident memory in MB; 0 when it is gone. */
export const rssMb = (pid: number | undefined): number => (pid ? statusKb(pid, 'VmRSS') / 1024 : 0);

/** `pid` and every process below it, except `except` and what runs below that. */
export function processTree(pid: number | undefined, except?: number): number[] {
  if (!pid) return [];
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const parent = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const tree: number[] = [];
  const visit = (p: number): void => {
    if (p === except) return;
    tree.push(p);
    for (const child of children.get(p) ?? []) visit(child);
  };
  visit(pid);
  return tree;
}

export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

export const round = (n: number, digits = 1): number => Number(n.toFixed(digits));

/** BGP sessions a host's BIRD has up. */
export const established = (host: DockerHost): number =>
  (spawnSync('birdc', ['-s', host.runPath('bird.ctl'), 'show', 'protocols'], { encoding: 'utf8' }).stdout.match(/Established/g) ?? []).length;

/** etcd's Prometheus metrics (its client URL's /metrics), each series (`name{labels}`) with its value. */
export async function etcdMetrics(endpoint: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) series.set(match[1]!, Number(match[2]));
  }
  return series;
}

/** The sum of the series of metric `name` whose labels include every one of `labels` (`key="value"`). */
export function metricSum(series: Map<string, number>, name: string, ...labels: string[]): number {
  let total = 0;
  for (const [key, value] of series) {
    const [metric, rest = ''] = key.split('{');
    if (metric === name && labels.every((label) => rest.includes(label))) total += value;
  }
  return total;
}

/** First time each host's kernel showed each prefix (ip monitor route), by prefix, then host. */
export class RouteWatch {
  private readonly seen = new Map<string, Map<string, number>>();
  private readonly monitors: ChildProcess[] = [];

  watch(host: DockerHost): void {
    const monitor = spawn('ip', ['-n', host.netns, 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.monitors.push(monitor);
    createInterface({ input: monitor.stdout! }).on('line', (line) => {
      const prefix = /^(\d+\.\d+\.\d+\.\d+\/\d+) via /.exec(line)?.[1];
      if (!prefix) return;
      const hosts = this.seen.get(prefix) ?? new Map<string, number>();
      if (!hosts.has(host.node)) hosts.set(host.node, performance.now());
      this.seen.set(prefix, hosts);
    });
  }

  /** When the last of `hosts` first showed `prefix`, or undefined while one has not. */
  everywhere(prefix: string, hosts: DockerHost[]): number | undefined {
    const seen = this.seen.get(prefix);
    if (!seen || hosts.some((h) => !seen.has(h.node))) return undefined;
    return Math.max(...hosts.map((h) => seen.get(h.node)!));
  }

  forget(prefix: string): void {
    this.seen.delete(prefix);
  }

  stop(): void {
    for (const m of this.monitors) m.kill();
  }
}

/** Polls `probe` every `everyMs` until it gives a value; longer pauses leave the CPU to what is measured. */
export async function waitFor<T>(probe: () => T | undefined, limitMs: number, what: string, everyMs = 2): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

