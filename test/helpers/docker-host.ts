import { ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DAEMON_ENVIRONMENT, DAEMON_NODE_FLAGS } from '../../src/adapters/host/installation.js';
import { CALICOCTL, DAEMON } from './daemon.js';
import { relayEtcdInto } from './relay.js';
import { TestEtcd } from './etcd.js';
import type { Underlay } from './underlay.js';
import { afterAll, beforeAll } from 'vitest';
import { EtcdEndpointStore } from '../../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { PoolOptions, PoolService } from '../../src/services/ipam/pool-service.js';
import { EtcdContext, storeOn } from './ipam.js';

/** The CLI of Debian's docker.io, matching its engine (a newer CLI on PATH refuses some flags against 20.10). */
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
/** Where a test host's daemon finds etcd: its own loopback, relayed to the shared etcd. */
const ETCD_IN_HOST = '127.0.0.1:2379';
/**
 * `embedded`: no shared etcd; the daemon starts its embedded etcd on the host's own loopback, as a
 * single host runs, with no relay hop in each etcd call (for benchmarks; tests look into the shared one).
 */
export type HostEtcd = TestEtcd | 'embedded' | ReachableEtcd;

/** An etcd the host reaches over its own network (on the underlay): no relay. */
export interface ReachableEtcd {
  reachable: string;
}

const isReachable = (etcd: HostEtcd): etcd is ReachableEtcd => typeof etcd === 'object' && 'reachable' in etcd;

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { input?: string; timeout?: number } = {}): Run {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: options.timeout ?? 60_000, killSignal: 'SIGKILL', ...(options.input !== undefined ? { input: options.input } : {}) });
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

const readLog = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '');

const BUSYBOX_TOOLS = ['sh', 'ip', 'ping', 'nc', 'sleep', 'cat', 'true', 'echo', 'ifconfig', 'route', 'ls', 'timeout', 'nslookup', 'killall'];

/** A link from the host into a shared underlay: the host's "eth0", with its address. */
export interface UnderlayLink {
  underlay: Pick<Underlay, 'join'>;
  /** `ADDR/len` of the host on the underlay. */
  address: string;
  /** An IPv6 `ADDR/len` as well. */
  address6?: string;
  /** The underlay's router, when hosts reach other subnets through it. */
  gateway?: string;
}

export interface HostOptions {
  /** Run a dockerd on the host (default true); without it the host runs only the daemon (and BIRD). */
  docker?: boolean;
  /** Start the daemon with the host (default true); false leaves it to the test (`calicoctl node run`). */
  daemon?: boolean;
  underlay?: UnderlayLink;
  /** Other engines than Debian's 20.10: the directory whose usr/bin and usr/sbin hold dockerd and docker. */
  engineRoot?: string;
  /** Extra dockerd flags (e.g. the cluster store). */
  dockerdArgs?: string[];
  /**
   * The host's /etc/resolv.conf (what dockerd and the daemon read). Default: a nameserver on the
   * uplink that nobody holds, so no query ever leaves the test world.
   */
  resolvConf?: string;
  /**
   * Relay etcd on its own port too, inside the host: clients that sync etcd's member list (Docker's
   * cluster store) dial the address etcd advertises.
   */
  relayEtcdPort?: boolean;
}

/**
 * A Docker host of its own for a test: a network namespace (with a default route, as real hosts
 * have, so proxy ARP answers for 169.254.1.1), a mount namespace with its own /run/docker/plugins,
 * a real dockerd, and our daemon in both namespaces. Nothing it does touches the machine's network.
 */
export class DockerHost {
  readonly netns: string;
  readonly dir = mkdtempSync(join(tmpdir(), 'calico-dockerhost-'));
  /**
   * The TMPDIR of the daemons this host runs (started here or by `calicoctl node run`): stop() kills
   * everything in the namespace at once, the daemon's command helper too, before that shell could
   * remove its directory; this one goes with the host's.
   */
  private readonly tmp = mkdtempSync(join(this.dir, 'tmp-'));
  private holder: ChildProcess | undefined;
  private dockerd: ChildProcess | undefined;
  daemon: ChildProcess | undefined;
  /** Extra environment for the daemon, read at each (re)start. */

  private relays: ChildProcess[] = [];
  private readonly extra: ChildProcess[] = [];

  constructor(
    readonly node: string,
    readonly etcd: HostEtcd,
    readonly daemonEnv: Record<string, string> = {},
    readonly options: HostOptions = {},
  ) {
    this.netns = `calit-${process.pid}-${node}`.slice(0, 30);
  }

  /** The host's address on the underlay, without the prefix length. */
  get address(): string {
    return this.options.underlay?.address.split('/')[0] ?? '198.18.0.1';
  }

  /** A path in the host's CALICO_RUN_DIR (its private /run/calico), seen from outside. */
  runPath(name: string): string {
    return `/proc/${this.holder!.pid}/root/run/calico/${name}`;
  }

  /** A file of the host's CALICO_RUN_DIR, or '' when it is not there. */
  runFile(name: string): string {
    return readLog(this.runPath(name));
  }

  /** The PID of the host's BIRD, from its PID file, when one runs. */
  birdPid(): number | undefined {
    const pid = Number(this.runFile('bird.pid').trim());
    if (!pid) return undefined;
    try {
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  }

  /** The daemon's plugin sockets, seen from outside the host's mount namespace. */
  pluginSocket(name: 'calico' | 'calico-ipam'): string {
    return `/proc/${this.holder!.pid}/root/run/docker/plugins/${name}.sock`;
  }

  /**
   * The daemon's and dockerd's logs go to files, never to pipes: a test blocked in a synchronous
   * docker call does not drain a pipe, and a daemon blocked on a full pipe stalls Docker itself.
   */
  get daemonLog(): string {
    return readLog(join(this.dir, 'daemon.log'));
  }

  dockerdLog(): string {
    return readLog(join(this.dir, 'dockerd.log'));
  }

  get dockerSocket(): string {
    return join(this.dir, 'docker.sock');
  }

  async start(): Promise<void> {
    await this.prepare();
    if (this.options.daemon !== false) await this.startDaemon();
    if (this.options.docker === false) return;
    await this.startDockerd();
    this.importBusybox();
  }

  /** The namespaces, links and etcd relay, without the daemon (start() runs both). */
  async prepare(): Promise<void> {
    run('ip', ['netns', 'del', this.netns]);
    execFileSync('ip', ['netns', 'add', this.netns]);
    this.ip('link set lo up');
    // An "uplink" whose far end stays inside the namespace: nothing leaves the machine.
    this.ip('link add uplink type veth peer name uplink-peer');
    this.ip('addr add 198.18.0.1/24 dev uplink');
    this.ip('link set uplink up');
    this.ip('link set uplink-peer up');
    if (this.options.underlay) this.attachUnderlay(this.options.underlay);
    else this.ip('route add default via 198.18.0.254 dev uplink');
    const resolvConf = join(this.dir, 'resolv.conf');
    writeFileSync(resolvConf, this.options.resolvConf ?? 'nameserver 198.18.0.53\n');
    const mounts = [...['/run/docker/plugins', '/run/calico'].map((dir) => `mkdir -p ${dir} && mount -t tmpfs tmpfs ${dir}`), `mount --bind ${resolvConf} /etc/resolv.conf`].join(' && ');
    const holder = spawn('nsenter', [`--net=/run/netns/${this.netns}`, 'unshare', '-m', '--', 'sh', '-c', `mount --make-rprivate / && ${mounts} && echo ready && exec sleep 100000`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.holder = holder;
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`namespace holder exited ${code}`)));
    });
    if (this.etcd instanceof TestEtcd) {
      const enter = ['nsenter', `--net=/run/netns/${this.netns}`, '--'];
      this.relays = await relayEtcdInto(enter, this.etcd.endpoint, join(this.dir, 'etcd.sock'), ETCD_IN_HOST);
      if (this.options.relayEtcdPort) {
        this.relays.push(...(await relayEtcdInto(enter, this.etcd.endpoint, join(this.dir, 'etcd-own.sock'), `127.0.0.1:${this.etcd.clientPort}`)));
      }
    }
  }

  /** Where the daemon and calicoctl on this host find etcd. */
  private get etcdEndpoint(): string {
    return isReachable(this.etcd) ? this.etcd.reachable : `http://${ETCD_IN_HOST}`;
  }

  /**
   * `eth0` on the shared underlay bridge. The default route goes through the underlay's router when
   * there is one, else through an address nobody holds: real hosts have one (proxy ARP needs it), and
   * nothing leaves the test world through it.
   */
  private attachUnderlay(link: UnderlayLink): void {
    link.underlay.join(this.netns, this.node, link.address);
    if (link.address6) this.ip(`addr add ${link.address6} dev eth0 nodad`);
    this.ip(`route add default via ${link.gateway ?? '198.18.0.254'} dev ${link.gateway ? 'eth0' : 'uplink'}`);
  }

  /** calicoctl as run on this host: its network and mount namespaces (its /run/calico), its etcd. */
  calicoctl(args: string[], input?: string, extraEnv: Record<string, string> = {}): Run {
    const [command, ...rest] = this.enter([process.execPath, CALICOCTL, ...args]);
    const env = `ETCD_ENDPOINTS=${this.etcdEndpoint}`;
    const extra = Object.entries(extraEnv).map(([name, value]) => `${name}=${value}`);
    return run('env', [env, `TMPDIR=${this.tmp}`, `NODENAME=${this.node}`, `DOCKER_HOST=unix://${this.dockerSocket}`, `CALICO_DEFAULT_CONFIG_FILE=${join(this.dir, 'no-calicoctl.cfg')}`, ...extra, command!, ...rest], {
      ...(input !== undefined ? { input } : {}),
      timeout: 120_000,
    });
  }

  /** Runs a command inside the host's network and mount namespaces. */
  enter(args: string[]): string[] {
    return ['nsenter', '-t', String(this.holder!.pid), '-m', '-n', '--', ...args];
  }

  ip(args: string): Run {
    const result = run('ip', ['-n', this.netns, ...args.split(' ')]);
    if (result.status !== 0) throw new Error(`ip ${args}: ${result.stderr}`);
    return result;
  }

  /** A command in the host's network namespace: what "the host" runs. */
  onHost(command: string[], timeout = 20_000): Run {
    return run('ip', ['netns', 'exec', this.netns, ...command], { timeout });
  }

  /** The engine's own CLI: Debian's 20.10 one, or the one unpacked with another engine. */
  private get cli(): string {
    return this.options.engineRoot ? join(this.options.engineRoot, 'usr/bin/docker') : DOCKER;
  }

  docker(args: string[], timeout = 60_000): Run {
    return run(this.cli, ['-H', `unix://${this.dockerSocket}`, ...args], { timeout });
  }

  /** The docker CLI without blocking the test: for several commands at once. */
  dockerAsync(args: string[], timeout = 60_000): Promise<Run> {
    return new Promise((resolve) => {
      execFile(this.cli, ['-H', `unix://${this.dockerSocket}`, ...args], { encoding: 'utf8', timeout, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
        const status = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ status, stdout, stderr });
      });
    });
  }

  /** The docker CLI as a child process, its output streamed (for long-running commands). */
  dockerSpawn(args: string[]): ChildProcess {
    return spawn(this.cli, ['-H', `unix://${this.dockerSocket}`, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  }

  dockerOk(args: string[]): string {
    const result = this.docker(args);
    if (result.status !== 0) throw new Error(`docker ${args.join(' ')} failed (exit ${result.status}): ${result.stderr}${result.stdout}`);
    return result.stdout.trim();
  }

  async startDaemon(): Promise<void> {
    const logFile = join(this.dir, 'daemon.log');
    writeFileSync(logFile, '');
    const logFd = openSync(logFile, 'a');
    // With the flags and environment it is shipped with.
    const [command, ...args] = this.enter([process.execPath, ...DAEMON_NODE_FLAGS, DAEMON]);
    const daemon = spawn(command!, args, {
      env: {
        ...DAEMON_ENVIRONMENT,
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        TMPDIR: this.tmp,
        ...(this.etcd === 'embedded' ? { CALICO_ETCD_DATA_DIR: join(this.dir, 'etcd') } : { ETCD_ENDPOINTS: this.etcdEndpoint, NO_DEFAULT_POOLS: 'true' }),
        NODENAME: this.node,
        DOCKER_HOST: `unix://${this.dockerSocket}`,
        CALICO_DEFAULT_CONFIG_FILE: join(this.dir, 'no-calicoctl.cfg'),
        ...this.daemonEnv,
      },
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    this.daemon = daemon;
    // Generous: twenty daemons starting at once on two cores take a while.
    const deadline = Date.now() + 90_000;
    while (!this.daemonLog.includes('dataplane reconciled')) {
      if (daemon.exitCode !== null) throw new Error(`daemon exited: ${this.daemonLog}`);
      if (Date.now() > deadline) throw new Error(`daemon not ready: ${this.daemonLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Starts another process inside the host's network and mount namespaces (stopped with the host). */
  spawnInside(args: string[]): ChildProcess {
    const [command, ...rest] = this.enter(args);
    const child = spawn(command!, rest, { stdio: 'ignore' });
    this.extra.push(child);
    return child;
  }

  get daemonRunning(): boolean {
    return this.daemon !== undefined && this.daemon.exitCode === null && this.daemon.signalCode === null;
  }

  async stopDaemon(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const daemon = this.daemon;
    if (!daemon || !this.daemonRunning) return;
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill(signal);
    const killLater = setTimeout(() => daemon.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(killLater);
  }

  private async startDockerd(): Promise<void> {
    const engine = this.options.engineRoot;
    const [command, ...args] = this.enter([
      ...(engine ? ['env', `PATH=${engine}/usr/sbin:${engine}/usr/bin:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`] : []),
      'dockerd',
      '--data-root', join(this.dir, 'data'),
      '--exec-root', join(this.dir, 'exec'),
      '-H', `unix://${this.dockerSocket}`,
      '--pidfile', join(this.dir, 'docker.pid'),
      '--userland-proxy=false',
      ...(this.options.dockerdArgs ?? []),
    ]);
    const logFd = openSync(join(this.dir, 'dockerd.log'), 'a');
    this.dockerd = spawn(command!, args, { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    const log = (): string => this.dockerdLog().slice(-3000);
    const deadline = Date.now() + 60_000;
    while (this.docker(['version', '--format', '{{.Server.Version}}'], 5000).status !== 0) {
      if (this.dockerd.exitCode !== null) throw new Error(`dockerd exited: ${log()}`);
      if (Date.now() > deadline) throw new Error(`dockerd did not start: ${log()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private importBusybox(): void {
    const root = join(this.dir, 'image');
    mkdirSync(join(root, 'bin'), { recursive: true });
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    for (const tool of BUSYBOX_TOOLS) symlinkSync('busybox', join(root, 'bin', tool));
    const imported = run('sh', ['-c', `tar -C '${root}' -c . | ${this.cli} -H 'unix://${this.dockerSocket}' import --change 'CMD ["sh"]' - busybox:local`]);
    if (imported.status !== 0) throw new Error(`docker import failed: ${imported.stderr}`);
  }

  /** Every process in the host's network namespace but the holder of its mount namespace. */
  pidsInside(): number[] {
    return run('ip', ['netns', 'pids', this.netns]).stdout.split('\n').filter(Boolean).map(Number).filter((pid) => pid !== this.holder?.pid);
  }

  private killAllInside(): void {
    for (const pid of this.pidsInside()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  }

  /** Removes every container and every Calico network of this host. */
  /**
   * Removes every container and Calico network. Asynchronous, so hosts stopped together clear
   * together; without a running plugin daemon the networks stay (Docker would wait for the plugin).
   */
  async clear(): Promise<void> {
    if (this.options.docker === false) return;
    const lines = async (args: string[]): Promise<string[]> => (await this.dockerAsync(args)).stdout.split('\n').filter(Boolean);
    const ids = await lines(['ps', '-aq']);
    if (ids.length) await this.dockerAsync(['rm', '-f', ...ids]);
    if (!this.daemonRunning) return;
    const networks = await lines(['network', 'ls', '--filter', 'driver=calico', '-q']);
    if (networks.length) await this.dockerAsync(['network', 'rm', ...networks]);
  }

  /** Stops dockerd as systemd does (SIGTERM, SIGKILL after `limitMs`); returns how long it took to exit. */
  async stopDockerd(limitMs = 20_000): Promise<number> {
    const dockerd = this.dockerd;
    if (!dockerd || dockerd.exitCode !== null || dockerd.signalCode !== null) return 0;
    const started = Date.now();
    const exited = new Promise((r) => dockerd.once('exit', r));
    dockerd.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, limitMs))]);
    if (dockerd.exitCode === null && dockerd.signalCode === null) dockerd.kill('SIGKILL');
    return Date.now() - started;
  }

  /** `systemctl restart docker`: dockerd stopped, then started again on the same data; returns how long the stop took. */
  async restartDockerd(): Promise<number> {
    const stopMs = await this.stopDockerd();
    await this.startDockerd();
    return stopMs;
  }

  async stop(): Promise<void> {
    await this.clear();
    await this.stopDockerd();
    // An embedded etcd is the daemon's child: only a clean stop takes it along.
    await this.stopDaemon(this.etcd === 'embedded' ? 'SIGTERM' : 'SIGKILL');
    // BIRD outlives the daemon on purpose, and containerd's shims outlive dockerd: whatever still runs
    // in the namespace goes.
    this.killAllInside();
    this.holder?.kill('SIGKILL');
    for (const relay of this.relays) relay.kill('SIGKILL');
    for (const child of this.extra) child.kill('SIGKILL');
    run('ip', ['netns', 'del', this.netns]);
    // containerd shims of this host, if any survived dockerd.
    const pidFile = join(this.dir, 'docker.pid');
    if (existsSync(pidFile)) run('kill', ['-9', readFileSync(pidFile, 'utf8').trim()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts `etcd` holding nothing but `pools`, and the clients a suite reads it through. */
export async function startDatastore(etcd: TestEtcd, pools: PoolOptions[]): Promise<{ ctx: EtcdContext; endpoints: EtcdEndpointStore }> {
  await etcd.start();
  const ctx = storeOn(etcd.endpoint);
  try {
    await ctx.wipe();
    for (const pool of pools) await new PoolService(ctx.store).add(pool);
  } catch (error) {
    ctx.etcd.close();
    throw error;
  }
  return { ctx, endpoints: new EtcdEndpointStore(ctx.etcd) };
}

export interface DockerSuite {
  etcd: TestEtcd;
  ctx: EtcdContext;
  endpoints: EtcdEndpointStore;
  host: DockerHost;
}

/**
 * A real etcd with `pools`, and a Docker host (`node`, daemon environment `env`) on it, for one test
 * file: set up before its first test, torn down after its last, whatever happened in between.
 */
export function dockerHostForSuite(node: string, options: { pools: PoolOptions[]; env?: Record<string, string> }): DockerSuite {
  const suite = { etcd: new TestEtcd() } as DockerSuite;
  beforeAll(async () => {
    Object.assign(suite, await startDatastore(suite.etcd, options.pools));
    suite.host = new DockerHost(node, suite.etcd, options.env ?? {});
    await suite.host.start();
  }, 120_000);
  afterAll(async () => {
    await suite.host?.stop();
    suite.ctx?.etcd.close();
    await suite.etcd.destroy();
  }, 60_000);
  return suite;
}
