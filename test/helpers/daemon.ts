import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { DAEMON_ENVIRONMENT, DAEMON_NODE_FLAGS } from '../../src/adapters/host/installation.js';
import { relayEtcdInto } from './relay.js';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The repository root, found upwards from here: this file also runs compiled, from dist/test/helpers. */
function findRoot(dir: string): string {
  return existsSync(join(dir, 'package.json')) ? dir : findRoot(resolve(dir, '..'));
}

export const ROOT = findRoot(import.meta.dirname);
export const DAEMON = join(ROOT, 'dist/src/daemon/main.js');
export const CALICOCTL = join(ROOT, 'dist/src/cli/main.js');

export interface Reply {
  status: number;
  body: any;
  text: string;
}

/** POSTs to a plugin socket exactly as Docker does: no Content-Type, empty body for argument-less calls. */
export function post(socketPath: string, method: string, body?: unknown, rawBody?: string | Buffer): Promise<Reply> {
  const payload = rawBody ?? (body === undefined ? '' : `${JSON.stringify(body)}\n`);
  return new Promise((resolvePromise, reject) => {
    const req = request(
      { socketPath, path: `/${method}`, method: 'POST', headers: { Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolvePromise({ status: res.statusCode ?? 0, body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export interface DaemonOptions {
  node: string;
  etcd?: string;
  env?: Record<string, string>;
  /** Wrap the daemon, e.g. ['unshare', '-n', ...] to give it a network namespace of its own. */
  wrap?: string[];
  /** Relay this etcd into the daemon's namespace without telling the daemon (a config file does). */
  relayEtcd?: string;
}

/** The real daemon as a child process, serving in a plugin dir of its own. */
/**
 * The real daemon as a child process, serving in a plugin dir of its own and, unless `wrap` says
 * otherwise, in a network namespace of its own (its policy agent and reconciler touch only that
 * namespace's iptables and links), with etcd's port relayed in over loopback.
 */
export class TestDaemon {
  readonly pluginDir = mkdtempSync(join(tmpdir(), 'calico-test-plugins-'));
  /** The daemon's log and the etcd relay's socket. */
  private readonly workDir = mkdtempSync(join(tmpdir(), 'calico-test-daemon-'));
  child: ChildProcess | undefined;
  private netns: string | undefined;
  private relays: ChildProcess[] = [];

  constructor(readonly options: DaemonOptions) {}

  get ipamSocket(): string {
    return join(this.pluginDir, 'calico-ipam.sock');
  }

  get networkSocket(): string {
    return join(this.pluginDir, 'calico.sock');
  }

  /** To a file, never a pipe: a test blocked in a synchronous call would not drain it. */
  /** The daemon's network namespace, when it has one of the helper's. */
  get namespace(): string | undefined {
    return this.netns;
  }

  /** CALICO_RUN_DIR: BIRD's files, the daemon's PID file. */
  get runDir(): string {
    return join(this.workDir, 'run');
  }

  get log(): string {
    const file = join(this.workDir, 'daemon.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Each etcd endpoint (a cluster's members) is relayed in on its own port. */
  private async isolation(endpoints: string[]): Promise<string[]> {
    if (this.options.wrap) return this.options.wrap;
    if (!this.netns) {
      this.netns = `calid-${process.pid}-${this.options.node}`.slice(0, 30);
      spawnSync('ip', ['netns', 'del', this.netns]);
      spawnSync('ip', ['netns', 'add', this.netns]);
      spawnSync('ip', ['netns', 'exec', this.netns, 'ip', 'link', 'set', 'lo', 'up']);
      for (const [i, endpoint] of endpoints.entries()) {
        const port = new URL(endpoint).port;
        this.relays.push(...(await relayEtcdInto(['ip', 'netns', 'exec', this.netns], endpoint, join(this.workDir, `etcd-relay-${i}.sock`), `127.0.0.1:${port}`)));
      }
    }
    return ['ip', 'netns', 'exec', this.netns];
  }

  async start(): Promise<void> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      NODENAME: this.options.node,
      CALICO_LIBNETWORK_PLUGIN_DIR: this.pluginDir,
      NO_DEFAULT_POOLS: 'true',
      // A namespace of its own with only loopback: no address to register and no BGP, unless a test asks.
      IP: 'none',
      CALICO_NETWORKING_BACKEND: 'none',
      CALICO_RUN_DIR: this.runDir,
      // Never the machine's /etc/calico/calicoctl.cfg.
      CALICO_DEFAULT_CONFIG_FILE: join(this.workDir, 'no-calicoctl.cfg'),
      ...(this.options.etcd ? { ETCD_ENDPOINTS: this.options.etcd } : {}),
      ...this.options.env,
    };
    const relayed = env.ETCD_ENDPOINTS ?? this.options.relayEtcd;
    const wrap = await this.isolation(relayed ? relayed.split(',') : []);
    const logFile = join(this.workDir, 'daemon.log');
    writeFileSync(logFile, '');
    const fd = openSync(logFile, 'a');
    // With the flags and environment it is shipped with.
    const command = [...wrap, process.execPath, ...DAEMON_NODE_FLAGS, DAEMON];
    const child = spawn(command[0]!, command.slice(1), { env: { ...DAEMON_ENVIRONMENT, ...env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.child = child;
    const deadline = Date.now() + 20000;
    while (!(existsSync(this.ipamSocket) && this.log.includes('calico-libnetwork serving'))) {
      if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${this.log}`);
      if (Date.now() > deadline) throw new Error(`daemon did not start: ${this.log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Resolves once the daemon has loaded the IPAM cache from etcd. */
  async ready(): Promise<void> {
    const deadline = Date.now() + 20000;
    while (!this.log.includes('IPAM cache loaded')) {
      if (Date.now() > deadline) throw new Error(`daemon never loaded IPAM state: ${this.log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The TCP addresses listening in the daemon's namespace (`127.0.0.1:9099`), as `ss` lists them. */
  listeningTcp(): string[] {
    const ss = spawnSync('ip', ['netns', 'exec', this.netns!, 'ss', '-Hltn'], { encoding: 'utf8' });
    return ss.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => line.trim().split(/\s+/)[3]!);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill(signal);
    return exited;
  }

  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    for (const relay of this.relays) relay.kill('SIGKILL');
    if (this.netns) spawnSync('ip', ['netns', 'del', this.netns]);
    rmSync(this.pluginDir, { recursive: true, force: true });
    rmSync(this.workDir, { recursive: true, force: true });
  }
}

/** calicoctl's default config file in tests: never the machine's /etc/calico/calicoctl.cfg. */
const NO_CONFIG_FILE = '/nonexistent/calicoctl.cfg';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function calicoctl(args: string[], env: Record<string, string>): CliResult {
  const result = spawnSync(process.execPath, [CALICOCTL, ...args], { env: { PATH: process.env.PATH ?? '', CALICO_DEFAULT_CONFIG_FILE: NO_CONFIG_FILE, ...env }, encoding: 'utf8', timeout: 30000 });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/**
 * calicoctl run in this process (the same program the binary runs), for tests that run many
 * commands: no Node.js start-up per command.
 */
export async function calicoctlHere(args: string[], env: Record<string, string>, input = ''): Promise<CliResult> {
  const { runCalicoctl } = await import('../../src/cli/program.js');
  let stdout = '';
  let stderr = '';
  const status = await runCalicoctl(args, {
    env: { PATH: process.env.PATH ?? '', CALICO_DEFAULT_CONFIG_FILE: NO_CONFIG_FILE, ...env },
    stdout: (text) => void (stdout += text),
    stderr: (text) => void (stderr += text),
    stdin: async () => input,
  });
  return { status, stdout, stderr };
}
