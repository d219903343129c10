import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './daemon.js';


function started(child: ChildProcess, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`${what} exited ${code}`)));
  });
}

/**
 * Makes the etcd at `endpoint` (on this namespace's loopback) reachable as `listen` (host:port) inside
 * another network namespace, entered with the command prefix `enter`: a relay from a unix socket at
 * `socketPath` to etcd here, and one from `listen` there to that socket. Only loopback and a unix
 * socket carry the traffic. Returns the relay processes, to kill when done.
 */
export async function relayEtcdInto(enter: string[], endpoint: string, socketPath: string, listen: string): Promise<ChildProcess[]> {
  const RELAY = join(ROOT, 'test/helpers/relay.mjs');
  const target = new URL(endpoint).host;
  const outside = spawn(process.execPath, [RELAY, 'unix', socketPath, target], { stdio: ['ignore', 'pipe', 'inherit'] });
  await started(outside, 'etcd relay (unix side)');
  const inside = spawn(enter[0]!, [...enter.slice(1), process.execPath, RELAY, 'tcp', listen, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  await started(inside, 'etcd relay (namespace side)');
  return [outside, inside];
}
