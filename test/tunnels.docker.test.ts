import { ChildProcess, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCidr } from '../src/domain/cidr.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { routesOf, until } from './helpers/cluster.js';
import { DockerHost } from './helpers/docker-host.js';
import { TestEtcd } from './helpers/etcd.js';
import { EtcdContext, storeOn } from './helpers/ipam.js';
import { peerEchoServer, SubnetRouter, udpAsk, udpPongServer, Underlay } from './helpers/underlay.js';

/**
 * Hosts in two subnets joined by a router that knows nothing of the pools (a cloud network): hosts 1
 * and 2 in subnet A, host 3 (and later host 4) in subnet B, and an "outside" network beyond the
 * router. Plain routing reaches only inside a subnet; VXLAN reaches everywhere; cross-subnet mode
 * tunnels only between subnets; IPIP is reported unavailable on this kernel; published ports and NAT
 * outgoing work from and to anywhere.
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const SERVER = 'for p in 80 81 8080; do nc -ll -p $p -e echo hello & done; sleep 100000';
const OUTSIDE = '192.0.2.1';
const subnetA = new Underlay('tunA');
const subnetB = new Underlay('tunB');
const outside = new Underlay('tunO');
const router = new SubnetRouter('tunrt');
const etcd = new TestEtcd();
let ctx: EtcdContext;
let outsideNetns: string;
let echo: ChildProcess | undefined;
const hosts: DockerHost[] = [];
const host = (n: number): DockerHost => hosts[n - 1]!;
const ip = new Map<string, string>();
const where = new Map<string, DockerHost>();
const hostAddress = (n: number): string => (n <= 2 ? `10.47.1.${n}` : `10.47.2.${n}`);

function newHost(n: number, env: Record<string, string> = {}): DockerHost {
  const subnet = n <= 2 ? subnetA : subnetB;
  return new DockerHost(`tun${n}`, etcd, { CALICO_LIBNETWORK_GC_INTERVAL: '1s', CALICO_LIBNETWORK_GC_GRACE: '3s', ...env }, {
    underlay: { underlay: subnet, address: `${hostAddress(n)}/24`, gateway: n <= 2 ? '10.47.1.254' : '10.47.2.254' },
  });
}

function run(on: DockerHost, name: string, network: string, extra: string[] = []): void {
  on.dockerOk(['run', '-d', '--net', network, '--name', name, ...extra, 'busybox:local', 'sh', '-c', SERVER]);
  ip.set(name, JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])).IPAddress);
  where.set(name, on);
}

const ping = (from: string, to: string): boolean => where.get(from)!.docker(['exec', from, 'ping', '-c', '1', '-W', '1', ip.get(to)!], 15_000).status === 0;
const tcp = (from: string, to: string, port = 8080): boolean => where.get(from)!.docker(['exec', from, 'sh', '-c', `nc -w 2 ${ip.get(to)} ${port} </dev/null`], 15_000).stdout.includes('hello');
const pidOf = (name: string): string => where.get(name)!.dockerOk(['inspect', '--format', '{{.State.Pid}}', name]);
/** Packets sent through the host's vxlan.calico so far (0 when it has none). */
function vxlanTx(on: DockerHost): number {
  const out = spawnSync('ip', ['-n', on.netns, '-s', '-j', 'link', 'show', 'vxlan.calico'], { encoding: 'utf8' });
  return out.status === 0 ? Number(JSON.parse(out.stdout)[0].stats64.tx.packets) : 0;
}
const ctl = (on: DockerHost, ...args: string[]): string => {
  const result = on.calicoctl(args);
  if (result.status !== 0) throw new Error(`calicoctl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
};
const setMode = (mode: string): string => ctl(host(1), 'patch', 'ippool', 'tun-pool', '-p', JSON.stringify({ spec: { vxlanMode: mode } }));
/** What a host gets from ADDRESS:PORT: `nc` for TCP, a datagram for UDP. */
const fromHost = (on: DockerHost, address: string, port: number, udp = false): string =>
  udp ? udpAsk(['ip', 'netns', 'exec', on.netns], address, port) : on.onHost(['sh', '-c', `busybox nc -w 2 ${address} ${port} </dev/null`], 10_000).stdout;

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  const pools = new PoolService(ctx.store);
  await pools.add({ cidr: '10.90.0.0/16', name: 'tun-pool', natOutgoing: true });
  await pools.add({ cidr: '10.91.0.0/26', name: 'tun-small', vxlanMode: 'Always' });
  for (const u of [subnetA, subnetB, outside]) u.start();
  router.start([
    { underlay: subnetA, address: '10.47.1.254/24' },
    { underlay: subnetB, address: '10.47.2.254/24' },
    { underlay: outside, address: '192.0.2.254/24' },
  ]);
  outsideNetns = outside.namespace('tunout', `${OUTSIDE}/24`);
  spawnSync('ip', ['-n', outsideNetns, 'route', 'add', 'default', 'via', '192.0.2.254']);
  echo = peerEchoServer(['ip', 'netns', 'exec', outsideNetns], 8000);
  hosts.push(newHost(1), newHost(2), newHost(3));
  await Promise.all(hosts.map((h) => h.start()));
  for (const h of hosts) for (const [network, subnet] of [['tunnet', '10.90.0.0/16'], ['smallnet', '10.91.0.0/26']]) h.dockerOk(['network', 'create', network, ...CALICO, '--subnet', subnet!]);
  run(host(1), 'c1', 'tunnet');
  run(host(2), 'c2', 'tunnet');
  run(host(3), 'c3', 'tunnet');
}, 240_000);

afterAll(async () => {
  echo?.kill();
  await Promise.all(hosts.map((h) => h.stop()));
  router.stop();
  for (const u of [subnetA, subnetB, outside]) u.stop();
  ctx?.etcd.close();
  await etcd.destroy();
}, 120_000);

describe('a network between hosts that does not route the pools', () => {
  it('without encapsulation, hosts in one subnet reach each other and the router drops the rest', async () => {
    await until('BGP between the subnets', () => /Established[\s\S]*Established/.test(host(1).calicoctl(['node', 'status']).stdout), 30_000);
    await until('c1 reaches c2', () => ping('c1', 'c2'), 15_000);
    expect(tcp('c2', 'c1')).toBe(true);
    expect(ping('c1', 'c3')).toBe(false);
    expect(tcp('c3', 'c1')).toBe(false);
  });

  it('vxlanMode Always, set on running hosts: every pair reaches, through vxlan.calico', async () => {
    setMode('Always');
    await until('c1 reaches c3', () => ping('c1', 'c3'), 15_000);
    const before = [1, 2, 3].map((n) => vxlanTx(host(n)));
    for (const [a, b] of [['c1', 'c2'], ['c1', 'c3'], ['c2', 'c3']] as const) {
      expect(ping(a, b), `${a} → ${b}`).toBe(true);
      expect(tcp(b, a), `${b} → ${a} TCP`).toBe(true);
    }
    const after = [1, 2, 3].map((n) => vxlanTx(host(n)));
    after.forEach((tx, i) => expect(tx, `host ${i + 1} vxlan.calico tx`).toBeGreaterThan(before[i]!));
    // What Felix programs: the device, a neighbour and FDB entry per remote VTEP, block routes onlink.
    const link = host(1).ip('-d link show vxlan.calico').stdout;
    expect(link).toMatch(/vxlan id 4096 local 10\.47\.1\.1 dev eth0 .*dstport 4789 nolearning/s);
    expect(link).toMatch(/mtu 1450/);
    const vtep3 = JSON.parse(ctl(host(1), 'get', 'node', 'tun3', '-o', 'json')).spec.ipv4VXLANTunnelAddr as string;
    expect(host(1).ip('neigh show dev vxlan.calico').stdout).toMatch(new RegExp(`^${vtep3.replace(/\./g, '\\.')} lladdr 66:[0-9a-f:]{14} PERMANENT`, 'm'));
    expect(host(1).onHost(['bridge', 'fdb', 'show', 'dev', 'vxlan.calico']).stdout).toMatch(/^66:[0-9a-f:]{14} dst 10\.47\.2\.3 self permanent/m);
    expect(routesOf(host(1).netns)).toMatch(new RegExp(`via ${vtep3.replace(/\./g, '\\.')} dev vxlan\\.calico proto 80 onlink`));
  });

  it('CrossSubnet: inside subnet A without the tunnel, to subnet B through it', async () => {
    setMode('CrossSubnet');
    await until('c1 to c2 routed plainly', () => routesOf(host(1).netns).includes('via 10.47.1.2 dev eth0 proto 80 onlink'), 10_000);
    const sameSubnet = vxlanTx(host(1));
    for (let i = 0; i < 3; i++) expect(ping('c1', 'c2')).toBe(true);
    expect(vxlanTx(host(1))).toBe(sameSubnet);
    expect(ping('c1', 'c3')).toBe(true);
    expect(tcp('c3', 'c1')).toBe(true);
    expect(vxlanTx(host(1))).toBeGreaterThan(sameSubnet);
  });

  it('Never again, on running hosts: BGP takes the pool back inside subnet A; across the router it stops', async () => {
    setMode('Never');
    await until('no tunnel route for the pool on host 1', () => !/^10\.90\.\S+ via \S+ dev vxlan\.calico/m.test(routesOf(host(1).netns)), 10_000);
    await until('c1 reaches c2 by BGP', () => ping('c1', 'c2'), 15_000);
    expect(routesOf(host(1).netns)).toMatch(/^10\.90\.\S+ via 10\.47\.1\.2 dev eth0 proto bird/m);
    const before = vxlanTx(host(1));
    expect(tcp('c2', 'c1')).toBe(true);
    expect(ping('c1', 'c3')).toBe(false);
    expect(vxlanTx(host(1))).toBe(before);
  });

  it('a 1400-byte ping with DF set passes through VXLAN; new containers get the tunnel MTU', async () => {
    setMode('Always');
    run(host(1), 'm1', 'tunnet');
    expect(host(1).dockerOk(['exec', 'm1', 'cat', '/sys/class/net/cali0/mtu'])).toBe('1450');
    await until('m1 reaches c3 through the tunnel', () => ping('m1', 'c3'), 10_000);
    const big = spawnSync('nsenter', ['-t', pidOf('m1'), '-n', 'ping', '-M', 'do', '-s', '1372', '-c', '1', '-W', '2', ip.get('c3')!], { encoding: 'utf8' });
    expect(big.stdout).toMatch(/1380 bytes from/);
  });

  it('an address borrowed from another host’s block is reachable from every host', async () => {
    // tun-small is one /26, claimed by whichever host allocated its VTEP address there first.
    const owner = (await ctx.store.listAffinities()).find((a) => formatCidr(a.cidr) === '10.91.0.0/26')!.node;
    const o = [1, 2, 3].find((n) => host(n).node === owner)!;
    const [a, b] = [1, 2, 3].filter((n) => n !== o) as [number, number];
    run(host(o), 'so', 'smallnet');
    run(host(a), 'sa', 'smallnet');
    run(host(b), 'sb', 'smallnet');
    const vtepA = JSON.parse(ctl(host(1), 'get', 'node', host(a).node, '-o', 'json')).spec.ipv4VXLANTunnelAddr as string;
    await until(`the /32 host ${a} borrowed routed to it on host ${b}`, () => routesOf(host(b).netns).includes(`${ip.get('sa')} via ${vtepA} dev vxlan.calico proto 80 onlink`), 10_000);
    expect(ping('sb', 'sa')).toBe(true);
    expect(ping('so', 'sa')).toBe(true);
    expect(tcp('sa', 'sb')).toBe(true);
  });
});

describe('hosts coming and going', () => {
  it('a fourth host joining later reaches and is reached; deleted, it leaves no route, neighbour or FDB entry behind', async () => {
    const h4 = newHost(4);
    hosts.push(h4);
    await h4.start();
    for (const [network, subnet] of [['tunnet', '10.90.0.0/16']]) h4.dockerOk(['network', 'create', network!, ...CALICO, '--subnet', subnet!]);
    run(h4, 'c4', 'tunnet');
    await until('c4 reaches c1 and c1 reaches c4', () => ping('c4', 'c1') && ping('c1', 'c4'), 20_000);
    expect(tcp('c2', 'c4')).toBe(true);
    const vtep4 = JSON.parse(ctl(host(1), 'get', 'node', 'tun4', '-o', 'json')).spec.ipv4VXLANTunnelAddr as string;
    h4.dockerOk(['rm', '-f', 'c4']);
    await h4.stopDaemon('SIGKILL');
    ctl(host(1), 'delete', 'node', 'tun4');
    for (const n of [1, 2, 3]) {
      await until(`host ${n} forgets host 4`, () => {
        const routes = routesOf(host(n).netns);
        return !routes.includes(`via ${vtep4} `) && !host(n).ip('neigh show dev vxlan.calico').stdout.includes(vtep4) && !host(n).onHost(['bridge', 'fdb', 'show', 'dev', 'vxlan.calico']).stdout.includes('dst 10.47.2.4 ');
      }, 10_000);
    }
  });

  it('a released block takes its routes with it', async () => {
    // A pool of its own (the tunnel addresses live in the first VXLAN pool, whose blocks never empty).
    ctl(host(1), 'pool', 'add', '10.94.0.0/26', '--vxlan');
    host(1).dockerOk(['network', 'create', 'gonenet', ...CALICO, '--subnet', '10.94.0.0/26']);
    run(host(1), 'g1', 'gonenet');
    await until('the block routed on hosts 2 and 3', () => [2, 3].every((n) => routesOf(host(n).netns).includes('10.94.0.0/26 via')), 10_000);
    host(1).dockerOk(['rm', '-f', 'g1']);
    // Empty for the grace period (3 s here), the block is given up: routes go on every host.
    await until('10.94.0.0/26 gone everywhere', () => [1, 2, 3].every((n) => !routesOf(host(n).netns).includes('10.94.0.')), 20_000);
  });
});

describe('backends and restarts', () => {
  it('CALICO_NETWORKING_BACKEND=vxlan: no BIRD at all, every route from the datastore', async () => {
    for (const h of hosts.slice(0, 3)) {
      h.daemonEnv.CALICO_NETWORKING_BACKEND = 'vxlan';
      await h.stopDaemon();
      await h.startDaemon();
      expect(h.birdPid()).toBeUndefined();
      expect(h.calicoctl(['node', 'status']).stdout).toBe('Calico process is running.\n\nThe BGP backend process (BIRD) is not running.\n\n');
    }
    expect(spawnSync('pgrep', ['-a', 'bird'], { encoding: 'utf8' }).stdout).not.toMatch(/tun\d/);
    run(host(3), 'v3', 'tunnet');
    await until('c1 reaches a new container on host 3', () => ping('c1', 'v3'), 15_000);
    expect(tcp('v3', 'c2')).toBe(true);
  });

  it('a daemon restart with VXLAN traffic flowing loses at most one packet', async () => {
    const pinger = host(1).dockerAsync(['exec', 'c1', 'ping', '-i', '0.1', '-W', '1', '-w', '12', ip.get('c3')!], 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await host(3).stopDaemon(signal);
      await host(3).startDaemon();
    }
    const stats = /(\d+) packets transmitted, (\d+) packets received/.exec((await pinger).stdout);
    expect(Number(stats?.[1])).toBeGreaterThan(50);
    expect(Number(stats?.[1]) - Number(stats?.[2])).toBeLessThanOrEqual(1);
  });
});

describe('IPIP on a kernel without ipip', () => {
  it("the seed's pool add --ipip --nat-outgoing works; the daemon says once that IPIP is unavailable and the rest keeps working", async () => {
    expect(ctl(host(1), 'pool', 'add', '10.92.0.0/16', '--ipip', '--nat-outgoing')).toBe('Successfully created IP pool pool-10-92-0-0-16 (10.92.0.0/16)\n');
    expect(JSON.parse(ctl(host(1), 'get', 'ippool', 'pool-10-92-0-0-16', '-o', 'json')).spec).toMatchObject({ ipipMode: 'Always', natOutgoing: true });
    expect(ctl(host(1), 'pool', 'show')).toMatch(/\| pool-10-92-0-0-16 +\| 10\.92\.0\.0\/16 +\| 26 +\| ipip:Always,nat-outgoing +\|/);
    expect(ctl(host(1), 'get', 'ippool', '-o', 'wide')).toMatch(/pool-10-92-0-0-16 +10\.92\.0\.0\/16 +true +Always +Never +false +all\(\)/);
    await until('the daemon to say so', () => host(1).daemonLog.includes('IPIP is not available: this kernel has no ipip module'), 10_000);
    expect(host(1).daemonLog.split('IPIP is not available').length - 1).toBe(1);
    expect(host(1).calicoctl(['node', 'status']).stdout).toContain('IPIP is not available on this host: this kernel has no ipip module');
    expect(ping('c1', 'c3')).toBe(true);
    expect(host(1).calicoctl(['pool', 'add', '10.93.0.0/16', '--ipip', '--vxlan'])).toMatchObject({ status: 1, stderr: 'Error: IPIPMode and VXLANMode cannot both be enabled on the same IP pool\n' });
  });
});

describe('the outside world', () => {
  it('published ports: from another host and from the host itself (localhost too), TCP and UDP, gone after docker rm; others stay closed', async () => {
    run(host(1), 'pub', 'tunnet', ['-p', '8080:80', '-p', '5353:53/udp', '-p', '10.47.1.1:8082:81', '-p', '9000-9001:80-81', '-P', '--expose', '8080']);
    const dns = udpPongServer(['nsenter', '-t', pidOf('pub'), '-n'], 53);
    await new Promise((r) => dns.stdout!.once('data', r));
    const h1 = hostAddress(1);
    await until('published from host 2', () => fromHost(host(2), h1, 8080).includes('hello'), 10_000);
    expect(fromHost(host(3), h1, 8080)).toContain('hello');
    expect(fromHost(host(1), h1, 8080)).toContain('hello');
    expect(fromHost(host(1), '127.0.0.1', 8080)).toContain('hello');
    expect(fromHost(host(2), h1, 5353, true)).toContain('pong');
    expect(fromHost(host(2), h1, 8082)).toContain('hello');
    expect(fromHost(host(1), '127.0.0.1', 8082)).toBe('');
    expect(fromHost(host(2), h1, 9000)).toContain('hello');
    expect(fromHost(host(2), h1, 9001)).toContain('hello');
    const wep = (await ctx.etcd.range({ key: Buffer.from('/calico/resources/v3/projectcalico.org/workloadendpoints/libnetwork/'), range_end: Buffer.from('/calico/resources/v3/projectcalico.org/workloadendpoints/libnetwork0') })).kvs
      .map((kv) => JSON.parse(kv.value.toString()))
      .find((w) => w.spec.ipNetworks[0] === `${ip.get('pub')}/32`);
    const mappings = JSON.parse(wep.metadata.annotations['libnetwork.projectcalico.org/port-map']) as { hostPort: number; port: number }[];
    const dynamic = mappings.find((m) => m.port === 8080)!;
    expect(dynamic.hostPort).toBeGreaterThanOrEqual(49153);
    expect(fromHost(host(2), h1, dynamic.hostPort)).toContain('hello');
    // Not published, and the profile keeps other hosts and networks out: closed.
    expect(fromHost(host(2), h1, 8081)).toBe('');
    expect(fromHost(host(2), ip.get('pub')!, 80)).toBe('');
    dns.kill();
    host(1).dockerOk(['rm', '-f', 'pub']);
    await until('unpublished', () => fromHost(host(2), h1, 8080) === '', 10_000);
    // The DNAT is unreachable at once (the test above); the tidy-up, 2 s after the change, removes its text too.
    await until('DNAT tidied away', () => !/-A cali-publish .*DNAT/.test(host(1).onHost(['iptables-save', '-t', 'nat']).stdout), 5000);
  });

  it('NAT outgoing: the outside sees the hosts’ addresses; containers across hosts see each other’s', async () => {
    for (const name of ['c1', 'c3']) {
      const seen = where.get(name)!.docker(['exec', name, 'sh', '-c', `nc -w 2 ${OUTSIDE} 8000 </dev/null`], 15_000).stdout.trim();
      expect(seen, name).toBe(name === 'c1' ? hostAddress(1) : hostAddress(3));
    }
    const inC2 = peerEchoServer(['nsenter', '-t', pidOf('c2'), '-n'], 7000);
    try {
      await new Promise((r) => inC2.stdout!.once('data', r));
      for (const name of ['c1', 'c3']) {
        expect(where.get(name)!.docker(['exec', name, 'sh', '-c', `nc -w 2 ${ip.get('c2')} 7000 </dev/null`], 15_000).stdout.trim(), name).toBe(ip.get(name));
      }
    } finally {
      inC2.kill();
    }
  });
});

describe('clean up', () => {
  it('leaves nothing behind', async () => {
    await Promise.all(hosts.map((h) => h.stop()));
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toMatch(new RegExp(`calit-${process.pid}-tun\\d`));
    hosts.length = 0;
  });
});
