import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The kernel's range for the local ports of outgoing connections (and of listen on port 0). */
function ephemeralPorts(): [number, number] {
  const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  return [low!, high!];
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free TCP port on loopback, below the kernel's ephemeral range: a port the kernel picked for us could be
 * handed to some outgoing connection before etcd binds it (seen in CI: "bind: address already in use").
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = ephemeralPorts();
  const low = 10000;
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (ephemeralLow - low));
    if (await bindable(port)) return port;
  }
  throw new Error('no free loopback port below the ephemeral range');
}

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  /** etcd's --initial-cluster: every member's name=peer URL. */
  initialCluster: string;
}

export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * A real single-member etcd (Debian's etcd-server) on loopback ports of its own, with its data in a
 * temp dir: stop() and start() again keep the data, so tests can take etcd away under a daemon.
 */
export class TestEtcd {
  readonly dataDir = mkdtempSync(join(tmpdir(), 'calico-test-etcd-'));
  private child: ChildProcess | undefined;
  clientPort = 0;
  private peerPort = 0;

  constructor(
    private readonly tls?: EtcdTls,
    /** etcd's v2 API as well: Docker 20.10's cluster store speaks only that. */
    private readonly enableV2 = false,
    /** Run it in this network namespace, on this address (etcd on the test hosts' network), ports 2379/2380. */
    private readonly placement?: { netns: string; address: string },
    /** One member of a cluster on loopback (see TestEtcdCluster), or a single-member etcd of its own. */
    private readonly member?: EtcdMember,
    /** Extra etcd flags (e.g. --quota-backend-bytes). */
    private readonly extraArgs: string[] = [],
  ) {
    if (member) [this.clientPort, this.peerPort] = [member.clientPort, member.peerPort];
  }

  /** etcd's process (`ip netns exec` becomes etcd), while it runs. */
  get pid(): number | undefined {
    return this.running ? this.child!.pid : undefined;
  }

  get endpoint(): string {
    return `${this.tls ? 'https' : 'http'}://${this.placement?.address ?? '127.0.0.1'}:${this.clientPort}`;
  }

  async start(): Promise<void> {
    const portsOfOurOwn = this.clientPort === 0 && !this.placement;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce();
      } catch (err) {
        // Another test's process may take a port between our check and etcd's bind: pick again.
        if (!(portsOfOurOwn && attempt < 5 && /address already in use/.test((err as Error).message))) throw err;
        this.clientPort = 0;
      }
    }
  }

  private async startOnce(): Promise<void> {
    if (this.clientPort === 0) {
      this.clientPort = this.placement ? 2379 : await freePort();
      this.peerPort = this.placement ? 2380 : await freePort();
    }
    const peer = `http://${this.placement?.address ?? '127.0.0.1'}:${this.peerPort}`;
    const args = [
      '--name', this.member?.name ?? 'test',
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.endpoint,
      '--advertise-client-urls', this.endpoint,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', this.member?.initialCluster ?? `test=${peer}`,
      ...this.extraArgs,
      ...(this.enableV2 ? ['--enable-v2=true'] : []),
      ...(this.tls ? ['--client-cert-auth', '--trusted-ca-file', this.tls.caFile, '--cert-file', this.tls.certFile, '--key-file', this.tls.keyFile] : []),
    ];
    // To a file, never a pipe: a test blocked in a synchronous call would not drain it, and etcd would stall.
    const logFile = join(this.dataDir, '..', `${this.dataDir.split('/').pop()}.log`);
    writeFileSync(logFile, '');
    const fd = openSync(logFile, 'a');
    const [command, ...rest] = this.placement ? ['ip', 'netns', 'exec', this.placement.netns, 'etcd', ...args] : ['etcd', ...args];
    const child = spawn(command!, rest, { stdio: ['ignore', 'ignore', fd] });
    closeSync(fd);
    this.child = child;
    this.logFile = logFile;
    const deadline = Date.now() + 15000;
    let log = '';
    while (!(log = readFileSync(logFile, 'utf8')).includes('ready to serve client requests')) {
      if (child.exitCode !== null) throw new Error(`etcd exited: ${log.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`etcd did not start: ${log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private logFile: string | undefined;

  /** Neither exited nor killed (a Ctrl-C reaches etcd too: then it has a signal and no exit code). */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
    if (this.logFile) rmSync(this.logFile, { force: true });
  }
}

/** A cluster of real etcd members on loopback, each on ports of its own. */
export class TestEtcdCluster {
  members: TestEtcd[] = [];

  /** ETCD_ENDPOINTS: every member's client URL. */
  get endpoints(): string {
    return this.members.map((m) => m.endpoint).join(',');
  }

  async start(size: number): Promise<void> {
    const ports = [];
    for (let i = 0; i < size; i++) ports.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort() });
    const initialCluster = ports.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(',');
    this.members = ports.map((p) => new TestEtcd(undefined, false, undefined, { ...p, initialCluster }));
    // Together: a new cluster's members serve only once a quorum has met.
    await Promise.all(this.members.map((m) => m.start()));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.destroy()));
  }
}
