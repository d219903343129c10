import { execFileSync, spawnSync } from 'node:child_process';

/**
 * Runs `main` inside a network namespace made for this run and removed after it, by re-executing
 * this script there: whatever the benchmark starts (etcd, the daemon with its policy agent, rules,
 * ipsets) touches only that namespace, and talks over its loopback.
 */
export function runInOwnNetns(name: string, main: () => Promise<void>): void {
  if (process.env.CALICO_BENCH_NETNS === name) {
    main().catch((error) => {
      console.error(error);
      process.exit(1);
    });
    return;
  }
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  try {
    execFileSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    // Ctrl-C reaches the run too, which cleans up after itself; this process waits for it and removes the namespace.
    process.on('SIGINT', () => undefined);
    // nsenter, not `ip netns exec`: that remounts /sys, and a dockerd started from inside then finds no cgroups.
    const run = spawnSync('nsenter', [`--net=/run/netns/${name}`, '--', process.execPath, process.argv[1]!], { stdio: 'inherit', env: { ...process.env, CALICO_BENCH_NETNS: name } });
    process.exitCode = run.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', name]);
  }
}
