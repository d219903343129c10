import type { DockerHost } from '../test/helpers/docker-host.js';
import { percentile } from './measure.js';

/** What bench/docker-run and bench/docker-run-plugin share: timed `docker run`s in interleaved rounds, and a ratio's interval. */

/**
 * 95 % interval of median(a) / median(b) over rounds resampled with replacement (a round keeps its
 * runs together): how far one run's ratio can be trusted on a machine that shares its cores.
 */
export function ratioInterval(a: number[], b: number[], resamples = 2000): [number, number] {
  const ratios: number[] = [];
  for (let r = 0; r < resamples; r++) {
    const picks = a.map(() => Math.floor(Math.random() * a.length));
    ratios.push(percentile(picks.map((i) => a[i]!), 50) / percentile(picks.map((i) => b[i]!), 50));
  }
  return [percentile(ratios, 2.5), percentile(ratios, 97.5)];
}

/**
 * One timed `docker run`, or undefined when the engine failed it. Docker 20.10 in this setup now and
 * then loses a short-lived container's exit (exit 255 after ~100 s) on either network; such a pair
 * is dropped and counted, not timed.
 */
export function timedRun(host: DockerHost, network: string): number | undefined {
  const start = process.hrtime.bigint();
  const result = host.docker(['run', '--rm', '--net', network, 'busybox:local', 'true'], 15_000);
  if (result.status === 0) return Number(process.hrtime.bigint() - start) / 1e6;
  process.stderr.write(`docker run on ${network} failed (exit ${result.status}); dockerd said:\n${host.dockerdLog().split('\n').filter((l) => /level=(error|warn)/.test(l)).slice(-5).join('\n')}\n`);
  // The lost container stays "Up" with no process in it: remove it so it does not pile up.
  const stuck = host.docker(['ps', '-q']).stdout.split('\n').filter(Boolean);
  if (stuck.length) host.docker(['rm', '-f', ...stuck]);
  return undefined;
}


/** A way to run a container: a label, the engine, the network. */
export interface RunWay {
  label: string;
  host: DockerHost;
  network: string;
}

/**
 * `rounds` rounds of one timed run per way (after three warm-up rounds), each round starting with the
 * next way, so none always runs on a warmer engine. A round where the engine failed a run is dropped
 * and counted (at most `rounds` of them). Samples by label.
 */
export function interleavedRuns(ways: RunWay[], rounds: number): { samples: Map<string, number[]>; dropped: number } {
  for (let i = 0; i < 3; i++) ways.forEach((way) => timedRun(way.host, way.network));
  const samples = new Map<string, number[]>(ways.map((way) => [way.label, []]));
  let dropped = 0;
  for (let i = 0; samples.get(ways[0]!.label)!.length < rounds && i < rounds * 2; i++) {
    const rotated = [...ways.slice(i % ways.length), ...ways.slice(0, i % ways.length)];
    const times = rotated.map((way) => [way.label, timedRun(way.host, way.network)] as const);
    if (times.some(([, t]) => t === undefined)) {
      dropped++;
      continue;
    }
    for (const [label, time] of times) samples.get(label)!.push(time!);
  }
  return { samples, dropped };
}
