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
 * A TCP relay between two network namespaces, each entered with a command prefix ([] for this one):
 * `listen` (host:port) in the first reaches `target` (host:port) in the second, through a unix socket
 * at `socketPath`. Only loopback and the unix socket carry the traffic. Returns the relay processes,
 * to kill when done.
 */
async function relayAcross(listenIn: string[], listen: string, dialIn: string[], target: string, socketPath: string): Promise<ChildProcess[]> {
  const RELAY = join(ROOT, 'test/helpers/relay.mjs');
  const start = async (enter: string[], args: string[], what: string): Promise<ChildProcess> => {
    const command = [...enter, process.execPath, RELAY, ...args];
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    await started(child, what);
    return child;
  };
  const dialSide = await start(dialIn, ['unix', socketPath, target], 'relay (unix side)');
  const listenSide = await start(listenIn, ['tcp', listen, socketPath], 'relay (TCP side)');
  return [dialSide, listenSide];
}

/** Makes the etcd at `endpoint` (on this namespace's loopback) reachable as `listen` inside the namespace entered with `enter`. */
export function relayEtcdInto(enter: string[], endpoint: string, socketPath: string, listen: string): Promise<ChildProcess[]> {
  return relayAcross(enter, listen, [], new URL(endpoint).host, socketPath);
}

/** Makes `target` (host:port inside the namespace entered with `enter`) reachable here as `listen`. */
export function relayOutOf(enter: string[], target: string, socketPath: string, listen: string): Promise<ChildProcess[]> {
  return relayAcross([], listen, enter, target, socketPath);
}
