import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { PoolService } from '../src/services/ipam/pool-service.js';
import type { TestEtcd } from './helpers/etcd.js';
import { DockerHost, dockerHostForSuite } from './helpers/docker-host.js';
import { CALICOCTL, calicoctl } from './helpers/daemon.js';
import type { EtcdContext } from './helpers/ipam.js';

let etcd: TestEtcd;
let ctx: EtcdContext;
let host: DockerHost;
const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const PORTS = [80, 443, 3306, 8080];
const SERVER = `for p in ${PORTS.join(' ')}; do (while true; do nc -l -p $p </dev/null; done) & done; sleep 100000`;
const ip = new Map<string, string>();

const ctl = (...args: string[]) => calicoctl(args, { ETCD_ENDPOINTS: etcd.endpoint, DOCKER_HOST: `unix://${host.dockerSocket}` });
function ctlOk(...args: string[]): string {
  const result = ctl(...args);
  if (result.status !== 0) throw new Error(`calicoctl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** A TCP connection from a container to another's port: true when the handshake completes within 1 s. */
const tcp = (from: string, to: string, port: number): boolean => host.docker(['exec', from, 'sh', '-c', `nc -w 1 ${ip.get(to)} ${port} </dev/null`], 10_000).status === 0;
const ping = (from: string, to: string): boolean => host.docker(['exec', from, 'ping', '-c', '1', '-W', '1', ip.get(to) ?? to], 10_000).status === 0;

/**
 * When `probe` first held, in ms after the call, by the start of the probe that saw it. A probe takes up to
 * 1.3 s itself (a dropped SYN waits out `nc -w 1`), so the limit bounds when a probe starts: one that
 * starts past `limitMs` and fails is the failure.
 */
async function within(limitMs: number, probe: () => boolean): Promise<number> {
  const start = Date.now();
  for (;;) {
    const startedAt = Date.now() - start;
    if (probe()) return startedAt;
    if (startedAt > limitMs) throw new Error(`not true within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function run(name: string, network: string): void {
  host.dockerOk(['run', '-d', '--net', network, '--name', name, 'busybox:local', 'sh', '-c', SERVER]);
  ip.set(name, JSON.parse(host.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])).IPAddress);
}

/** The policy agent's tidy-up comes 2 s after a change; this is past it. */
const TIDY_MS = 3000;

async function settle(): Promise<void> {
  // The policy agent applies at once; give it a moment after containers start.
  await new Promise((r) => setTimeout(r, 500));
}

const suite = dockerHostForSuite('dock-pol', { pools: [{ cidr: '192.171.0.0/16', name: 'policy-pool', natOutgoing: true }] });
beforeAll(async () => {
  ({ etcd, ctx, host } = suite);
  for (const network of ['net-a', 'net-b', 'web', 'app', 'app2', 'mysqldb']) host.dockerOk(['network', 'create', network, ...CALICO]);
  run('a1', 'net-a');
  run('a2', 'net-a');
  run('b1', 'net-b');
  run('web1', 'web');
  run('app1', 'app');
  run('app2-1', 'app2');
  run('db1', 'mysqldb');
  await settle();
}, 180_000);

describe('default profiles', () => {
  it('inside a network everything flows; between networks nothing, either way, ping included; the host reaches all', () => {
    expect(ping('a1', 'a2')).toBe(true);
    expect(tcp('a1', 'a2', 8080)).toBe(true);
    expect(ping('a1', 'b1')).toBe(false);
    expect(ping('b1', 'a1')).toBe(false);
    expect(tcp('a1', 'b1', 80)).toBe(false);
    expect(tcp('b1', 'a1', 80)).toBe(false);
    for (const name of ['a1', 'b1', 'db1']) expect(host.onHost(['busybox', 'ping', '-c', '1', '-W', '1', ip.get(name)!]).status, name).toBe(0);
  });

  it('shows profiles by network name with the seed-era default rules', () => {
    expect(ctlOk('profile', 'show')).toMatch(/\| net-a\s+\|[\s\S]*\| web\s+\|/);
    expect(ctlOk('profile', 'web', 'rule', 'show')).toBe('Inbound rules:\n   1 allow from tag web\nOutbound rules:\n   1 allow\n');
    expect(JSON.parse(ctlOk('profile', 'web', 'rule', 'json'))).toEqual({ inbound_rules: [{ action: 'allow', src_tag: 'web' }], outbound_rules: [{ action: 'allow' }] });
    expect(ctlOk('profile', 'web', 'tag', 'show')).toBe('web\n');
    expect(ctlOk('profile', 'show', '--detailed')).toMatch(/\| web\s+\| dock-pol\s+\| libnetwork\s+\| web1\s+\| [0-9a-f]{64} \| active \|/);
  });
});

describe('the web / app / mysqldb scenario', () => {
  it('web takes 80 and 443 from anyone, and nothing else', async () => {
    expect(tcp('app1', 'web1', 80)).toBe(false);
    ctlOk('profile', 'web', 'rule', 'add', 'inbound', 'allow', 'tcp', 'to', 'ports', '80,443');
    const ms = await within(1000, () => tcp('app1', 'web1', 80));
    expect(ms).toBeLessThan(1000);
    expect(tcp('db1', 'web1', 443)).toBe(true);
    expect(tcp('app1', 'web1', 8080)).toBe(false);
    expect(ctlOk('profile', 'web', 'rule', 'show')).toBe('Inbound rules:\n   1 allow from tag web\n   2 allow tcp to ports 80,443\nOutbound rules:\n   1 allow\n');
  });

  it('app takes anything from web only', async () => {
    expect(tcp('web1', 'app1', 8080)).toBe(false);
    ctlOk('profile', 'app', 'rule', 'add', 'inbound', 'allow', 'from', 'tag', 'web');
    await within(1000, () => tcp('web1', 'app1', 8080));
    expect(ping('web1', 'app1')).toBe(true);
    expect(tcp('db1', 'app1', 8080)).toBe(false);
  });

  it('mysqldb takes 3306 from app only; then from the db-users tag too', async () => {
    ctlOk('profile', 'mysqldb', 'rule', 'add', 'inbound', 'allow', 'tcp', 'from', 'tag', 'app', 'to', 'ports', '3306');
    await within(1000, () => tcp('app1', 'db1', 3306));
    expect(tcp('app1', 'db1', 8080)).toBe(false);
    expect(tcp('web1', 'db1', 3306)).toBe(false);
    expect(tcp('app2-1', 'db1', 3306)).toBe(false);
    ctlOk('profile', 'app2', 'tag', 'add', 'db-users');
    ctlOk('profile', 'mysqldb', 'rule', 'add', 'inbound', 'allow', 'tcp', 'from', 'tag', 'db-users', 'to', 'ports', '3306');
    await within(1000, () => tcp('app2-1', 'db1', 3306));
    expect(tcp('app2-1', 'db1', 8080)).toBe(false);
    ctlOk('profile', 'app2', 'tag', 'remove', 'db-users');
    await new Promise((r) => setTimeout(r, 1000));
    expect(tcp('app2-1', 'db1', 3306)).toBe(false);
  });
});

describe('rule changes', () => {
  it('rule update from JSON, remove by position and by text, each visible within 1 s', async () => {
    const update = (document: object) => {
      return spawnSync(process.execPath, [CALICOCTL, 'profile', 'net-b', 'rule', 'update'], {
        input: JSON.stringify(document),
        encoding: 'utf8',
        env: { PATH: process.env.PATH, ETCD_ENDPOINTS: etcd.endpoint, DOCKER_HOST: `unix://${host.dockerSocket}` },
      });
    };
    const updated = update({ inbound_rules: [{ action: 'allow', src_tag: 'net-b' }, { action: 'allow', protocol: 'tcp', src_tag: 'net-a', dst_ports: [8080] }], outbound_rules: [{ action: 'allow' }] });
    expect(updated.stdout + updated.stderr).toContain('Rules of profile net-b updated');
    await within(1000, () => tcp('a1', 'b1', 8080));
    expect(tcp('a1', 'b1', 80)).toBe(false);
    ctlOk('profile', 'net-b', 'rule', 'remove', 'inbound', '--at=2');
    await new Promise((r) => setTimeout(r, 1000));
    expect(tcp('a1', 'b1', 8080)).toBe(false);
    ctlOk('profile', 'net-b', 'rule', 'add', 'inbound', 'allow', 'from', 'tag', 'net-a');
    await within(1000, () => ping('a1', 'b1'));
    ctlOk('profile', 'net-b', 'rule', 'remove', 'inbound', 'allow', 'from', 'tag', 'net-a');
    await new Promise((r) => setTimeout(r, 1000));
    expect(ping('a1', 'b1')).toBe(false);
    const bad = update({ inbound_rules: [{ action: 'allow', protocol: 'icmp', dst_ports: [80] }] });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/Ports are not valid with protocol icmp/);
    expect(JSON.parse(ctlOk('profile', 'net-b', 'rule', 'json')).inbound_rules).toEqual([{ action: 'allow', src_tag: 'net-b' }]);
  });

  it('ICMP rules, negations, and a deny before an allow', async () => {
    // net-a members: deny ping from net-a itself, allow everything else from net-a.
    ctlOk('profile', 'net-a', 'rule', 'add', 'inbound', '--at=1', 'deny', 'icmp', 'type', '8', 'from', 'tag', 'net-a');
    await within(1000, () => !ping('a1', 'a2'));
    expect(tcp('a1', 'a2', 80)).toBe(true);
    // Negation: allow anything from outside net-a (so net-b may now ping).
    ctlOk('profile', 'net-a', 'rule', 'add', 'inbound', 'allow', 'from', '!tag', 'net-a');
    await within(1000, () => ping('b1', 'a1'));
    expect(ping('a2', 'a1')).toBe(false);
    ctlOk('profile', 'net-a', 'rule', 'remove', 'inbound', '--at=1');
    await within(1000, () => ping('a1', 'a2'));
  });

  it('refuses bad commands and changes nothing', () => {
    const before = ctlOk('profile', 'web', 'rule', 'json');
    for (const [args, message] of [
      [['profile', 'web', 'rule', 'add', 'inbound', 'allow', 'icmp', 'to', 'ports', '80'], /Ports are not valid with protocol icmp/],
      [['profile', 'web', 'rule', 'add', 'inbound', 'allow', 'tcp', 'to', 'ports', '99999'], /out of range/],
      [['profile', 'web', 'rule', 'add', 'sideways', 'allow'], /say inbound or outbound/],
      [['profile', 'web', 'rule', 'remove', 'inbound', '--at=9'], /there is no inbound rule 9/],
      [['profile', 'nonesuch', 'rule', 'show'], /Profile nonesuch not found/],
      [['profile', 'remove', 'web'], /is used by 1 endpoint\(s\)/],
      [['profile', 'add', 'bad name!'], /invalid profile name/],
    ] as [string[], RegExp][]) {
      const result = ctl(...args);
      expect(result.status, args.join(' ')).toBe(1);
      expect(result.stderr).toMatch(message);
    }
    expect(ctlOk('profile', 'web', 'rule', 'json')).toBe(before);
  });
});

describe('NAT outgoing and restarts', () => {
  it('masquerades from a natOutgoing pool to an address outside every pool', async () => {
    const outside = `${host.netns}-out`.slice(0, 30);
    spawnSync('ip', ['netns', 'del', outside]);
    spawnSync('ip', ['netns', 'add', outside]);
    try {
      host.ip(`link add natout type veth peer name natout-peer netns ${outside}`);
      host.ip('addr add 203.0.113.1/24 dev natout');
      host.ip('link set natout up');
      spawnSync('ip', ['-n', outside, 'addr', 'add', '203.0.113.2/24', 'dev', 'natout-peer']);
      spawnSync('ip', ['-n', outside, 'link', 'set', 'natout-peer', 'up']);
      // The outside knows no route to the pool: only a masqueraded ping can come back.
      expect(ping('a1', '203.0.113.2')).toBe(true);
      await new PoolService(ctx.store).add({ cidr: '192.172.0.0/16', name: 'no-nat' });
      host.dockerOk(['network', 'create', 'plain-net', ...CALICO, '--subnet', '192.172.0.0/16']);
      run('plain1', 'plain-net');
      await settle();
      expect(ping('plain1', '203.0.113.2')).toBe(false);
      expect(ping('a1', 'plain1')).toBe(false);
    } finally {
      spawnSync('ip', ['netns', 'del', outside]);
    }
  });

  it('a daemon restart leaves iptables-save identical and the rules enforced', async () => {
    const save = () => host.onHost(['iptables-save']).stdout.replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '');
    // A change is tidied up two seconds after it is written (old rules under the new ones until then):
    // compared once both sides are tidy.
    await new Promise((r) => setTimeout(r, TIDY_MS));
    const before = save();
    await host.stopDaemon('SIGKILL');
    await host.startDaemon();
    await settle();
    await new Promise((r) => setTimeout(r, TIDY_MS));
    expect(save()).toBe(before);
    expect(tcp('app1', 'web1', 80)).toBe(true);
    expect(tcp('app1', 'web1', 8080)).toBe(false);
    expect(ping('b1', 'web1')).toBe(false);
  });
});
