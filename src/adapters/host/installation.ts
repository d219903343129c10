import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** This installation's root: the directory of its package.json, found upwards (code runs from src/ or dist/src/). */
function findRoot(dir: string): string {
  if (existsSync(join(dir, 'package.json'))) return dir;
  const parent = resolve(dir, '..');
  if (parent === dir) throw new Error(`no package.json above ${import.meta.dirname}`);
  return findRoot(parent);
}

export const INSTALL_ROOT = findRoot(import.meta.dirname);
/** The daemon of this installation, as `calicoctl node run` starts it. */
export const DAEMON_MAIN = join(INSTALL_ROOT, 'dist/src/daemon/main.js');
/**
 * Node.js flags of the daemon (also in systemd/calico-libnetwork.service, the Dockerfile,
 * scripts/run.sh and managed-plugin/entrypoint.sh), each keeping memory resident while idle at no
 * cost measured in start-up CPU, request latency or bench/policy (bench/footprint, README):
 * - a young generation of 1 MB instead of up to 16 MB: ~20 MB;
 * - V8's optimising compiler on the daemon's own thread instead of a background one, whose memory
 *   allocator arenas stay large once it is done: ~5 MB.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1', '--no-concurrent-recompilation'];
/**
 * The daemon's environment besides its settings (set by the same files as its flags). glibc's
 * malloc raises its threshold for mmap to the size of each mmapped block freed (mallopt(3)): after
 * start-up's large blocks (the bundle's source alone is 1.1 MB), blocks up to that size come from
 * the brk heap, whose freed holes stay resident. A threshold set stays at 128 KiB, so such blocks
 * are mapped and returned whole when freed: ~1.3 MB idle (bench/footprint). The tools the daemon
 * runs inherit it, to no effect but the same.
 */
export const DAEMON_ENVIRONMENT: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '131072' };
/** The systemd unit shipped with this installation. */
export const SYSTEMD_UNIT_TEMPLATE = join(INSTALL_ROOT, 'systemd/calico-libnetwork.service');

/** package.json's version, as Calico prints versions: `v0.1.0`. */
export function installedVersion(): string {
  return `v${(JSON.parse(readFileSync(join(INSTALL_ROOT, 'package.json'), 'utf8')) as { version: string }).version}`;
}

/** The git commit of this installation, when it is a git checkout. */
export function installedCommit(): string {
  try {
    return execFileSync('git', ['-C', INSTALL_ROOT, 'rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}
