import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from '../test/helpers/daemon.js';
import type { DockerHost } from '../test/helpers/docker-host.js';
import { TestEtcd } from '../test/helpers/etcd.js';
import { Underlay } from '../test/helpers/underlay.js';

/**
 * What the benchmarks share: an underlay with etcd for their hosts, percentiles, waiting, when each
 * host's kernel first showed a route, and the results file.
 */

const ETCD_ADDRESS = '10.47.0.250';

/**
 * Runs `body` with an underlay bridge and an etcd on it (in the benchmark's own namespace, which
 * joins the underlay), both removed after it, whatever happens.
 */
export async function onUnderlay<T>(benchNetns: string, underlayName: string, body: (etcdEndpoint: string, underlay: Underlay) => Promise<T>): Promise<T> {
  const underlay = new Underlay(underlayName);
  underlay.start();
  try {
    underlay.join(benchNetns, 'bench', `${ETCD_ADDRESS}/24`);
    const etcd = new TestEtcd(undefined, false, { netns: benchNetns, address: ETCD_ADDRESS });
    await etcd.start();
    try {
      return await body(etcd.endpoint, underlay);
    } finally {
      await etcd.destroy();
    }
  } finally {
    underlay.stop();
  }
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

export const round = (n: number, digits = 1): number => Number(n.toFixed(digits));

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

export async function waitFor<T>(probe: () => T | undefined, limitMs: number, what: string): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

