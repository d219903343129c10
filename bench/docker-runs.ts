import type { DockerHost } from '../test/helpers/docker-host.js';
import { percentile } from './measure.js';

/** What bench/docker-run and bench/docker-run-plugin share: one timed `docker run`, and a ratio's interval. */

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

