import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import type { Logger } from 'pino';

/** True when something accepts TCP connections on host:port within `timeoutMs`. */
export function somethingListens(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (answer: boolean): void => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * A single-member etcd on 127.0.0.1:2379 run as a supervised child, for a host with no datastore
 * configured. It is restarted if it dies and stopped with the daemon.
 */
export class EmbeddedEtcd {
  private child: ChildProcess | undefined;
  private stopping = false;

  constructor(
    private readonly binary: string,
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    this.spawn();
    for (let i = 0; i < 100; i++) {
      if (await somethingListens('127.0.0.1', 2379)) return;
      if (!this.child || this.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`embedded etcd (${this.binary}) did not start listening on 127.0.0.1:2379; is etcd-server installed?`);
  }

  private spawn(): void {
    const peer = 'http://127.0.0.1:2380';
    const child = spawn(
      this.binary,
      [
        '--name', 'calico-embedded',
        '--data-dir', this.dataDir,
        '--listen-client-urls', 'http://127.0.0.1:2379',
        '--advertise-client-urls', 'http://127.0.0.1:2379',
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `calico-embedded=${peer}`,
      ],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    this.child = child;
    this.log.info({ pid: child.pid, dataDir: this.dataDir }, 'started embedded etcd');
    child.once('error', (error) => this.log.error({ err: error }, 'embedded etcd could not be started'));
    child.once('exit', (code, signal) => {
      if (this.stopping) return;
      this.log.error({ code, signal }, 'embedded etcd exited; restarting in 1 s');
      setTimeout(() => this.stopping || this.spawn(), 1000).unref();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
