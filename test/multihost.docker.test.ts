import { beforeAll, describe, expect, it } from 'vitest';
import { clusterForSuite, routesOf, until } from './helpers/cluster.js';
import type { DockerHost } from './helpers/docker-host.js';

/**
 * Three Docker 20.10 hosts in local scope (each creates its own networks) on one underlay, routed by
 * BGP: containers reach each other across hosts over plain routed IP, a network name is one Calico
 * network with one policy, and restarts under traffic lose at most a packet.
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const PORTS = [80, 443, 3306, 8080];
const SERVER = `for p in ${PORTS.join(' ')}; do (while true; do echo hello | nc -l -p $p; done) & done; sleep 100000`;
const cluster = clusterForSuite({
  name: 'mh',
  hosts: 3,
  // One /26 in mh-small: the second host to use it borrows from the first.
  pools: [{ cidr: '10.50.0.0/16', name: 'mh-pool', natOutgoing: true }, { cidr: '10.53.0.0/26', name: 'mh-small' }],
  // Idle blocks are given up after 3 s here (300 s by default).
  env: { CALICO_LIBNETWORK_GC_INTERVAL: '1s', CALICO_LIBNETWORK_GC_GRACE: '3s' },
});
const host = (n: number): DockerHost => cluster.hosts[n - 1]!;
const ip = new Map<string, string>();
const where = new Map<string, DockerHost>();

function run(on: DockerHost, name: string, network: string): void {
  on.dockerOk(['run', '-d', '--net', network, '--name', name, 'busybox:local', 'sh', '-c', SERVER]);
  ip.set(name, JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])).IPAddress);
  where.set(name, on);
}

const tcp = (from: string, to: string, port: number): boolean => where.get(from)!.docker(['exec', from, 'sh', '-c', `nc -w 2 ${ip.get(to)} ${port} </dev/null`], 15_000).stdout.includes('hello');
const ping = (from: string, to: string): boolean => where.get(from)!.docker(['exec', from, 'ping', '-c', '1', '-W', '2', ip.get(to)!], 15_000).status === 0;
const blockOf = (address: string): string => {
  const [a, b, c, d] = address.split('.').map(Number);
  return `${a}.${b}.${c}.${d! & ~63}/26`;
};

function calicoctl(on: DockerHost, ...args: string[]): string {
  const result = on.calicoctl(args);
  if (result.status !== 0) throw new Error(`calicoctl ${args.join(' ')} on ${on.node}: ${result.stderr}`);
  return result.stdout;
}

beforeAll(async () => {
  // BGP up everywhere before any container starts.
  for (const h of cluster.hosts) await until(`${h.node} mesh`, () => (h.calicoctl(['node', 'status']).stdout.match(/Established/g) ?? []).length === 2, 30_000);
}, 60_000);

describe('containers on different hosts', () => {
  it('ping and talk TCP to each other through plain routed IP, the block routed via its host by BIRD', async () => {
    for (const h of cluster.hosts) h.dockerOk(['network', 'create', 'net1', ...CALICO]);
    run(host(1), 'c1', 'net1');
    run(host(2), 'c2', 'net1');
    await until("h2 routes h1's block", () => routesOf(host(2).netns).includes(`${blockOf(ip.get('c1')!)} via 10.47.0.1 dev eth0 proto bird`));
    await until('c2 pings c1', () => ping('c2', 'c1'), 10_000);
    expect(ping('c1', 'c2')).toBe(true);
    expect(tcp('c2', 'c1', 8080)).toBe(true);
    expect(tcp('c1', 'c2', 80)).toBe(true);
    // No overlay: no tunnel device, and the route is the plain block route.
    expect(host(2).ip('-o link show').stdout).not.toMatch(/vxlan|tunl/);
  });

  it('a borrowed address is reachable from the other hosts; a released block is withdrawn everywhere', async () => {
    for (const h of cluster.hosts) h.dockerOk(['network', 'create', 'small', ...CALICO, '--subnet', '10.53.0.0/26']);
    run(host(1), 's1', 'small');
    run(host(2), 's2', 'small');
    run(host(3), 's3', 'small');
    expect([ip.get('s2'), ip.get('s3')].map((a) => blockOf(a!))).toEqual(['10.53.0.0/26', '10.53.0.0/26']);
    await until("the borrowed /32 routed via its host, on the owner too", () => routesOf(host(3).netns).includes(`${ip.get('s2')} via 10.47.0.2 dev eth0 proto bird`) && routesOf(host(1).netns).includes(`${ip.get('s2')} via 10.47.0.2 dev eth0 proto bird`));
    await until('s3 pings s2', () => ping('s3', 's2'), 10_000);
    expect(ping('s1', 's2')).toBe(true);
    expect(tcp('s2', 's3', 8080)).toBe(true);
    for (const [h, name] of [[host(1), 's1'], [host(2), 's2'], [host(3), 's3']] as const) h.dockerOk(['rm', '-f', name]);
    // Empty for the grace period, the block is given up: no route, blackhole or /32 left anywhere.
    await until('the block withdrawn everywhere', () => cluster.hosts.every((h) => !routesOf(h.netns).includes('10.53.0.')), 20_000);
  });

  it('the same network name on every host is one Calico network with one profile', async () => {
    const profile = (await cluster.endpoints.getProfile('net1'))!.value;
    const holders = JSON.parse(profile.metadata.annotations!['libnetwork.projectcalico.org/networks']!);
    expect(Object.keys(holders).sort()).toEqual(['mh1', 'mh2', 'mh3']);
    // Each host has its own Docker network ID (local scope).
    expect(new Set(Object.values(holders)).size).toBe(3);
    expect(calicoctl(host(3), 'profile', 'show')).toMatch(/\| net1 +\|/);
  });
});

describe('policy across hosts: the web / app / mysqldb scenario', () => {
  beforeAll(() => {
    for (const h of cluster.hosts) for (const network of ['web', 'app', 'other']) h.dockerOk(['network', 'create', network, ...CALICO]);
    // mysqldb exists on host 1 only for now.
    host(1).dockerOk(['network', 'create', 'mysqldb', ...CALICO]);
    run(host(1), 'web1', 'web');
    run(host(2), 'app1', 'app');
    run(host(2), 'ext1', 'other');
    run(host(3), 'web3', 'web');
  }, 120_000);

  it('members of a network reach each other across hosts by default; other networks do not', async () => {
    await until('web members across hosts', () => tcp('web3', 'web1', 8080), 10_000);
    expect(ping('web1', 'web3')).toBe(true);
    expect(tcp('ext1', 'web1', 8080)).toBe(false);
    expect(ping('app1', 'web3')).toBe(false);
  });

  it('rules set with calicoctl on one host hold on every host; a host that creates the network later gets them as they are', async () => {
    calicoctl(host(1), 'profile', 'web', 'rule', 'add', 'inbound', 'allow', 'tcp', 'to', 'ports', '80');
    calicoctl(host(2), 'profile', 'app', 'rule', 'add', 'inbound', 'allow', 'from', 'tag', 'web');
    calicoctl(host(1), 'profile', 'mysqldb', 'rule', 'add', 'inbound', 'allow', 'tcp', 'from', 'tag', 'app', 'to', 'ports', '3306');
    // Host 3 creates mysqldb only now: its database gets today's rules, not the defaults.
    host(3).dockerOk(['network', 'create', 'mysqldb', ...CALICO]);
    run(host(3), 'db3', 'mysqldb');
    expect(calicoctl(host(3), 'profile', 'mysqldb', 'rule', 'show')).toBe('Inbound rules:\n   1 allow from tag mysqldb\n   2 allow tcp from tag app to ports 3306\nOutbound rules:\n   1 allow\n');
    await until('web takes 80 from another network, on both hosts', () => tcp('ext1', 'web1', 80) && tcp('ext1', 'web3', 80), 10_000);
    expect(tcp('ext1', 'web1', 443)).toBe(false);
    expect(tcp('web1', 'app1', 8080)).toBe(true);
    expect(tcp('web3', 'app1', 443)).toBe(true);
    expect(tcp('ext1', 'app1', 8080)).toBe(false);
    expect(tcp('app1', 'db3', 3306)).toBe(true);
    expect(tcp('app1', 'db3', 80)).toBe(false);
    expect(tcp('web1', 'db3', 3306)).toBe(false);
  });

  it('a rule removed on one host stops traffic on another within 2 s; docker network rm on one host leaves the others working', async () => {
    calicoctl(host(3), 'profile', 'web', 'rule', 'remove', 'inbound', 'allow', 'tcp', 'to', 'ports', '80');
    await until('web closed to others again', () => !tcp('ext1', 'web1', 80), 2000);
    host(1).dockerOk(['network', 'rm', 'mysqldb']);
    expect(await cluster.endpoints.getProfile('mysqldb')).not.toBeNull();
    expect(tcp('app1', 'db3', 3306)).toBe(true);
    // The last host to remove its network takes the profile with it.
    host(3).dockerOk(['rm', '-f', 'db3']);
    host(3).dockerOk(['network', 'rm', 'mysqldb']);
    expect(await cluster.endpoints.getProfile('mysqldb')).toBeNull();
  });
});

describe('restarts under cross-host traffic', () => {
  /** Pings c1 (host 1) from c2 (host 2) every 100 ms while `during` runs; resolves with sent and received. */
  async function pingsDuring(during: () => Promise<void>): Promise<{ sent: number; received: number }> {
    const pinger = host(2).dockerAsync(['exec', 'c2', 'ping', '-i', '0.1', '-W', '1', '-w', '14', ip.get('c1')!], 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    await during();
    const out = (await pinger).stdout;
    const stats = /(\d+) packets transmitted, (\d+) packets received/.exec(out);
    return { sent: Number(stats?.[1]), received: Number(stats?.[2]) };
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`daemon ${signal === 'SIGTERM' ? 'restart' : 'kill -9'} on both ends: at most one ping lost, BIRD's sessions not reset`, async () => {
      const birds = [host(1).birdPid(), host(2).birdPid()];
      const since = /\| 10\.47\.0\.1 +\| node-to-node mesh \| up +\| (\S+)/.exec(host(2).calicoctl(['node', 'status']).stdout)?.[1];
      const result = await pingsDuring(async () => {
        for (const h of [host(1), host(2)]) {
          await h.stopDaemon(signal);
          await h.startDaemon();
        }
      });
      expect(result.sent).toBeGreaterThan(50);
      expect(result.sent - result.received).toBeLessThanOrEqual(1);
      expect([host(1).birdPid(), host(2).birdPid()]).toEqual(birds);
      expect(host(2).calicoctl(['node', 'status']).stdout).toMatch(new RegExp(`\\| 10\\.47\\.0\\.1 +\\| node-to-node mesh \\| up +\\| ${since} +\\| Established`));
      // And the restarted daemons serve: a new container on host 1 is reached from host 2.
      run(host(1), `after-${signal.toLowerCase()}`, 'net1');
      await until('the new container answers across hosts', () => ping('c2', `after-${signal.toLowerCase()}`), 10_000);
    });
  }
});
