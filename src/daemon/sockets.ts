import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function dockerGroupId(): number | undefined {
  try {
    const line = execFileSync('getent', ['group', 'docker'], { encoding: 'utf8' });
    const gid = Number(line.split(':')[2]);
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Listens on `path`, root-only: 0660 root:docker when a docker group exists, else 0600. A socket file
 * left by a crashed daemon is replaced; one that still answers belongs to a live daemon and is an error.
 */
export async function listenOnSocket(app: Pick<FastifyInstance, 'listen'>, path: string): Promise<void> {
  mkdirSync(path.slice(0, path.lastIndexOf('/')) || '/', { recursive: true, mode: 0o755 });
  if (existsSync(path)) {
    if (await socketAnswers(path)) throw new Error(`${path} is served by another running process: stop it first`);
    unlinkSync(path);
  }
  await app.listen({ path });
  const gid = dockerGroupId();
  if (gid === undefined) {
    chmodSync(path, 0o600);
  } else {
    chownSync(path, 0, gid);
    chmodSync(path, 0o660);
  }
}
