import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { birdCommand, BirdReply } from '../../src/adapters/bird/bird-control.js';

const ip = (args: string[]): void => void execFileSync('ip', args);

/**
 * The network between test hosts: a namespace of its own holding a bridge, which each host (and
 * each router) joins with a veth. Nothing on it reaches the machine's own network.
 */
export class Underlay {
  readonly netns: string;
  readonly bridge = 'br0';

  constructor(name: string) {
    this.netns = `calit-${process.pid}-${name}`.slice(0, 30);
  }

  start(): void {
    spawnSync('ip', ['netns', 'del', this.netns]);
    ip(['netns', 'add', this.netns]);
    ip(['-n', this.netns, 'link', 'set', 'lo', 'up']);
    ip(['-n', this.netns, 'link', 'add', this.bridge, 'type', 'bridge']);
    ip(['-n', this.netns, 'link', 'set', this.bridge, 'up']);
  }

  /** Gives namespace `netns` an `eth0` on the bridge with `address` (ADDR/len). */
  join(netns: string, name: string, address: string): void {
    const outside = `u-${name}`.slice(0, 15);
    ip(['link', 'add', 'eth0', 'netns', netns, 'type', 'veth', 'peer', 'name', outside, 'netns', this.netns]);
    ip(['-n', this.netns, 'link', 'set', outside, 'master', this.bridge, 'up']);
    ip(['-n', netns, 'addr', 'add', address, 'dev', 'eth0']);
    ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
  }

  /** A namespace of its own on the underlay (for etcd, a router, "outside"), removed with `stop`. */
  namespace(name: string, address: string): string {
    const netns = `calit-${process.pid}-${name}`.slice(0, 30);
    spawnSync('ip', ['netns', 'del', netns]);
    ip(['netns', 'add', netns]);
    ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    this.join(netns, name, address);
    this.extra.push(netns);
    return netns;
  }

  private readonly extra: string[] = [];

  stop(): void {
    for (const netns of [...this.extra, this.netns]) spawnSync('ip', ['netns', 'del', netns]);
  }
}

/**
 * A plain BIRD 2 in a namespace of its own on the underlay: the top-of-rack router of the tests.
 * Its config is the test's; its kernel table shows what it learnt.
 */
export class BirdRouter {
  readonly netns: string;
  readonly dir = mkdtempSync(join(tmpdir(), 'calico-router-'));
  private bird: ChildProcess | undefined;

  constructor(
    readonly name: string,
    readonly address: string,
  ) {
    this.netns = `calit-${process.pid}-${name}`.slice(0, 30);
  }

  get socket(): string {
    return join(this.dir, 'bird.ctl');
  }

  async start(underlay: Underlay, config: string): Promise<void> {
    spawnSync('ip', ['netns', 'del', this.netns]);
    ip(['netns', 'add', this.netns]);
    ip(['-n', this.netns, 'link', 'set', 'lo', 'up']);
    underlay.join(this.netns, this.name, this.address);
    writeFileSync(join(this.dir, 'bird.cfg'), config);
    const log = openSync(join(this.dir, 'bird.log'), 'a');
    this.bird = spawn('ip', ['netns', 'exec', this.netns, 'bird', '-f', '-c', join(this.dir, 'bird.cfg'), '-s', this.socket, '-P', join(this.dir, 'bird.pid')], {
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    for (let i = 0; i < 100; i++) {
      if ((await this.command('show status').catch(() => undefined))?.code === 13) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`router BIRD did not start: ${readFileSync(join(this.dir, 'bird.log'), 'utf8')}`);
  }

  command(text: string): Promise<BirdReply> {
    return birdCommand(this.socket, text);
  }

  /** The router's kernel routes learnt from BGP, as `ip route` prints them. */
  birdRoutes(): string[] {
    const out = spawnSync('ip', ['-n', this.netns, 'route', 'show', 'proto', 'bird'], { encoding: 'utf8' }).stdout;
    return out.split('\n').filter(Boolean);
  }

  stop(): void {
    this.bird?.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', this.netns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A router between underlays (subnets) that knows nothing of the pools, as a cloud network is: it
 * forwards between the subnets it joins and drops pool addresses (it has no route to them).
 */
export class SubnetRouter {
  readonly netns: string;

  constructor(name: string) {
    this.netns = `calit-${process.pid}-${name}`.slice(0, 30);
  }

  start(links: { underlay: Underlay; address: string }[]): void {
    spawnSync('ip', ['netns', 'del', this.netns]);
    ip(['netns', 'add', this.netns]);
    ip(['-n', this.netns, 'link', 'set', 'lo', 'up']);
    links.forEach(({ underlay, address }, i) => {
      const name = `r${i}-${this.netns.slice(-6)}`;
      ip(['link', 'add', `eth${i}`, 'netns', this.netns, 'type', 'veth', 'peer', 'name', name, 'netns', underlay.netns]);
      ip(['-n', underlay.netns, 'link', 'set', name, 'master', underlay.bridge, 'up']);
      ip(['-n', this.netns, 'addr', 'add', address, 'dev', `eth${i}`]);
      ip(['-n', this.netns, 'link', 'set', `eth${i}`, 'up']);
    });
    execFileSync('ip', ['netns', 'exec', this.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }

  stop(): void {
    spawnSync('ip', ['netns', 'del', this.netns]);
  }
}

/**
 * A TCP server in a namespace that answers every connection with the address it came from: what
 * "outside" (or another container) sees as the source.
 */
export function peerEchoServer(enter: string[], port: number): ChildProcess {
  const script = `require('net').createServer((s) => s.end(s.remoteAddress.replace(/^::ffff:/, '') + '\\n')).listen(${port}, () => console.log('listening'))`;
  return spawn(enter[0]!, [...enter.slice(1), process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
}

/** A UDP server (busybox's nc has no UDP) that answers every datagram with `pong`. */
export function udpPongServer(enter: string[], port: number): ChildProcess {
  const script = `const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => s.send('pong\\n', r.port, r.address)); s.bind(${port}, () => console.log('listening'))`;
  return spawn(enter[0]!, [...enter.slice(1), process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
}

/** Sends one UDP datagram from a namespace and returns the answer, or '' when none came within a second. */
export function udpAsk(enter: string[], address: string, port: number): string {
  const script = `const s = require('dgram').createSocket('udp4'); const t = setTimeout(() => process.exit(0), 1000); s.on('message', (m) => { process.stdout.write(m); clearTimeout(t); process.exit(0); }); s.send('ping', ${port}, '${address}')`;
  return spawnSync(enter[0]!, [...enter.slice(1), process.execPath, '-e', script], { encoding: 'utf8', timeout: 5000 }).stdout;
}
