import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from './helpers/cluster.js';
import { DockerHost } from './helpers/docker-host.js';
import { TestEtcd } from './helpers/etcd.js';
import { storeOn, EtcdContext } from './helpers/ipam.js';
import { BirdRouter, Underlay } from './helpers/underlay.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { birdSessions, blockOf, ctl, established, releaseAddress, requestAddress, routes, torConfig } from './helpers/bgp-hosts.js';

/**
 * Three hosts (network namespaces with their own /run/calico, daemon and BIRD, no dockerd) on one
 * underlay bridge, plus a plain BIRD as top-of-rack router: the node-to-node mesh, borrowed
 * addresses, released blocks, a global and a per-node peer, hosts in different AS, route reflectors,
 * restarts of the daemon and of BIRD, a configuration BIRD refuses, node removal and conflicts.
 */

const POOL = '10.48.0.0/16';
/** One /26: the second host to ask must borrow from the first. */
const SMALL_POOL = '10.49.0.0/26';
const ROUTER_AS = 64567;
const etcd = new TestEtcd();
const underlay = new Underlay('bgpul');
const router = new BirdRouter('bgptor', '10.47.0.254/24');
let ctx: EtcdContext;
let hosts: DockerHost[] = [];
const [h1, h2, h3] = [0, 1, 2].map((i) => () => hosts[i]!);
const hostIp = (n: number): string => `10.47.0.${n}`;

/** `calicoctl node status` rows: address → [type, state, info]. */
function sessions(host: DockerHost): Map<string, { type: string; state: string; since: string; info: string }> {
  const out = host.calicoctl(['node', 'status']).stdout;
  const rows = new Map<string, { type: string; state: string; since: string; info: string }>();
  for (const line of out.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length === 7 && /^\d+\.\d+\.\d+\.\d+$/.test(cells[1]!)) rows.set(cells[1]!, { type: cells[2]!, state: cells[3]!, since: cells[4]!, info: cells[5]! });
  }
  return rows;
}

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  const pools = new PoolService(ctx.store);
  await pools.add({ cidr: POOL, name: 'bgp-pool' });
  await pools.add({ cidr: SMALL_POOL, name: 'small-pool' });
  underlay.start();
  const env = { CALICO_LIBNETWORK_GC_INTERVAL: '1s', CALICO_LIBNETWORK_GC_GRACE: '2s' };
  hosts = [1, 2, 3].map((n) => new DockerHost(`bgp${n}`, etcd, { ...env, IP6: 'autodetect' }, { docker: false, underlay: { underlay, address: `${hostIp(n)}/24`, address6: `fd00:47::${n}/64` } }));
  await Promise.all(hosts.map((h) => h.start()));
  await router.start(underlay, torConfig(router.address.split('/')[0]!, ROUTER_AS, [1, 2, 3].map(hostIp)));
}, 120_000);

afterAll(async () => {
  for (const host of hosts) await host.stop();
  router.stop();
  underlay.stop();
  ctx?.etcd.close();
  await etcd.destroy();
});

describe('full mesh', () => {
  it('calicoctl node status on each host shows the other two Established, node-to-node mesh', async () => {
    for (const [host, others] of [[h1(), [2, 3]], [h2(), [1, 3]], [h3(), [1, 2]]] as const) {
      await until(`${host.node} mesh`, async () => (await established(host, others.map(hostIp))) && [...(await birdSessions(host)).values()].every((i) => i === 'Established'));
      const out = host.calicoctl(['node', 'status']).stdout;
      expect(out).toMatch(/^Calico process is running\.\n\nIPv4 BGP status\n\+-+\+-+\+-+\+-+\+-+\+\n\| PEER ADDRESS \|     PEER TYPE     \| STATE \|  SINCE   \|    INFO     \|\n/);
      expect(out).toContain(`| ${hostIp(others[0]).padEnd(12)} | node-to-node mesh | up    |`);
      // IPv6 sessions between the nodes' IPv6 addresses, in their own table, in whatever order BIRD lists them.
      const ipv6 = out.slice(out.indexOf('\n\nIPv6 BGP status\n'));
      expect(ipv6).toMatch(/^\n\nIPv6 BGP status\n[+-]+\n\| +PEER ADDRESS +\|/);
      for (const other of others) expect(ipv6).toMatch(new RegExp(`\\n\\| fd00:47::${other} +\\| node-to-node mesh \\| up +\\|`));
      expect(out.endsWith('+\n\n')).toBe(true);
    }
  });

  it("a claimed block is routed on every other host via its owner, proto bird; its /32s are not", async () => {
    const address = await requestAddress(h1());
    const block = blockOf(address);
    for (const other of [h2(), h3()]) await until(`${block} on ${other.node}`, () => routes(other).includes(`${block} via ${hostIp(1)} dev eth0 proto bird`));
    expect(routes(h1())).toMatch(new RegExp(`blackhole ${block.replace(/\./g, '\\.')} proto static`));
    expect(routes(h2())).not.toContain(`${address} via`);
  });

  it('a borrowed address is routed as a /32 to the host that borrowed it, on the owner too', async () => {
    const owned = await requestAddress(h1(), 'small-pool');
    const borrowed = await requestAddress(h2(), 'small-pool');
    expect(blockOf(borrowed)).toBe(blockOf(owned));
    // The borrower's host route to its workload is what BIRD learns and exports (named outside cali*, which the
    // daemon's reconciler would take for a stale veth).
    h2().ip('link add wlborrow type veth peer name wlborrow2');
    h2().ip('link set wlborrow up');
    h2().ip(`route add ${borrowed}/32 dev wlborrow proto boot scope link`);
    await until('borrowed /32 on h3', () => routes(h3()).includes(`${borrowed} via ${hostIp(2)} dev eth0 proto bird`));
    await until('borrowed /32 on the owner', () => routes(h1()).includes(`${borrowed} via ${hostIp(2)} dev eth0 proto bird`));
    expect(routes(h3())).toContain(`${blockOf(owned)} via ${hostIp(1)} dev eth0 proto bird`);
    h2().ip('link del wlborrow');
    await until('borrowed /32 withdrawn', () => !routes(h3()).includes(`${borrowed} via`));
    await releaseAddress(h2(), borrowed);
    await releaseAddress(h1(), owned);
  });

  it('a released block is withdrawn everywhere', async () => {
    const address = await requestAddress(h3());
    const block = blockOf(address);
    await until('block routed', () => routes(h1()).includes(`${block} via ${hostIp(3)}`) && routes(h2()).includes(`${block} via ${hostIp(3)}`));
    await releaseAddress(h3(), address);
    // Empty for the grace period (2 s here), the block is given up: no blackhole, no route anywhere.
    await until('block withdrawn', () => !routes(h1()).includes(block) && !routes(h2()).includes(block) && !routes(h3()).includes(block), 15_000);
  });
});

describe('peers outside the mesh', () => {
  it('the router as a global peer learns exactly the blocks in the pools: no host route, nothing outside the pools', async () => {
    const extra = await requestAddress(h2());
    ctl(h1(), ['bgp', 'peer', 'add', router.address.split('/')[0]!, 'as', String(ROUTER_AS)]);
    try {
      expect(ctl(h1(), ['bgp', 'peer', 'show'])).toMatch(new RegExp(`\\| Global IPv4 BGP Peer \\| AS Num \\|\\n[+-]+\\n\\| 10\\.47\\.0\\.254 +\\| ${ROUTER_AS}  \\|`));
      for (const host of hosts) await until(`${host.node} to the router`, async () => (await birdSessions(host)).get('10.47.0.254') === 'Established');
      expect(sessions(h3()).get('10.47.0.254')?.type).toBe('global');
      const blocks = async (): Promise<string> => (await ctx.store.snapshot()).blocks.map((b) => b.value.cidr).sort().join(' ');
      const learnt = (): string => router.birdRoutes().map((r) => r.split(' ')[0]!).sort().join(' ');
      await until('the router to learn every block', async () => learnt() === (await blocks()));
      expect(router.birdRoutes().filter((r) => !/^\S+\/26 via 10\.47\.0\.\d dev eth0 /.test(r))).toEqual([]);
      expect(routes(router)).not.toMatch(/198\.18\.0\.0/);
    } finally {
      await releaseAddress(h2(), extra);
      ctl(h1(), ['bgp', 'peer', 'remove', router.address.split('/')[0]!]);
    }
    expect(h1().calicoctl(['bgp', 'peer', 'remove', '10.47.0.254'])).toMatchObject({ status: 1, stderr: '10.47.0.254 is not a globally configured peer.\n' });
    for (const host of hosts) await until(`${host.node} session to the router gone`, async () => !(await birdSessions(host)).has('10.47.0.254'));
  });

  it('a per-node peer: only that node peers with the router', async () => {
    ctl(h3(), ['node', 'bgp', 'peer', 'add', '10.47.0.254', 'as', String(ROUTER_AS)]);
    await until('h3 to the router', async () => (await birdSessions(h3())).get('10.47.0.254') === 'Established');
    expect(sessions(h3()).get('10.47.0.254')?.type).toBe('node specific');
    expect(sessions(h1()).has('10.47.0.254')).toBe(false);
    expect(ctl(h3(), ['node', 'bgp', 'peer', 'show'])).toMatch(/Node specific IPv4 BGP Peer[\s\S]*10\.47\.0\.254/);
    expect(ctl(h1(), ['node', 'bgp', 'peer', 'show'])).toBe('No IPv4 BGP Peers defined for this node.\n\nNo IPv6 BGP Peers defined for this node.\n\n');
    expect(ctl(h3(), ['node', 'bgp', 'peer', 'remove', '10.47.0.254'])).toBe('BGP peer removed from node configuration\n');
  });

  it('hosts in different AS still exchange routes, with the original next hop', async () => {
    ctl(h3(), ['patch', 'node', 'bgp3', '-p', JSON.stringify({ spec: { bgp: { asNumber: 64513 } } })]);
    expect(ctl(h1(), ['get', 'nodes', '-o', 'wide'])).toMatch(/bgp3\s+64513\s+10\.47\.0\.3\/24/);
    await until('eBGP sessions', async () => (await established(h1(), [hostIp(2), hostIp(3)])) && (await established(h3(), [hostIp(1), hostIp(2)])));
    const address = await requestAddress(h3());
    await until('h3 block on h1 via h3', () => routes(h1()).includes(`${blockOf(address)} via ${hostIp(3)} dev eth0 proto bird`));
    await releaseAddress(h3(), address);
    ctl(h3(), ['patch', 'node', 'bgp3', '-p', JSON.stringify({ spec: { bgp: { asNumber: null } } })]);
    await until('back to one AS', async () => (await established(h1(), [hostIp(2), hostIp(3)])) && (await established(h3(), [hostIp(1), hostIp(2)])));
  });

  it('mesh off, h2 a route reflector: one session per client, routes still everywhere', async () => {
    ctl(h1(), ['label', 'nodes', 'bgp2', 'rr=true']);
    ctl(h1(), ['patch', 'node', 'bgp2', '-p', JSON.stringify({ spec: { bgp: { routeReflectorClusterID: '1.0.0.1' } } })]);
    ctl(h1(), ['apply', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: peer-with-rr\nspec:\n  nodeSelector: "!has(rr)"\n  peerSelector: has(rr)\n');
    ctl(h1(), ['bgp', 'node-mesh', 'off']);
    expect(ctl(h1(), ['bgp', 'node-mesh'])).toBe('off\n');
    await until('clients to the reflector', async () => (await established(h1(), [hostIp(2)])) && (await established(h3(), [hostIp(2)])));
    expect(sessions(h1()).get(hostIp(2))?.type).toBe('node specific');
    await until('reflector to both clients', () => established(h2(), [hostIp(1), hostIp(3)]));
    expect(h2().runFile('bird.cfg')).toContain('rr client; rr cluster id 1.0.0.1;');
    const address = await requestAddress(h1());
    await until('h1 block reflected to h3, next hop h1', () => routes(h3()).includes(`${blockOf(address)} via ${hostIp(1)} dev eth0 proto bird`));
    await releaseAddress(h1(), address);
    ctl(h1(), ['delete', 'bgppeer', 'peer-with-rr']);
    ctl(h1(), ['bgp', 'node-mesh', 'on']);
    for (const [host, others] of [[h1(), [2, 3]], [h2(), [1, 3]], [h3(), [1, 2]]] as const) await until(`${host.node} mesh again`, () => established(host, others.map(hostIp)));
  });
});

describe('restarts', () => {
  it('daemon SIGTERM and kill -9: the same BIRD keeps running, no session is reset, routes stay', async () => {
    const address = await requestAddress(h1());
    const block = blockOf(address);
    await until('routed', () => routes(h2()).includes(`${block} via ${hostIp(1)}`));
    const pid = h1().birdPid();
    const since = sessions(h2()).get(hostIp(1))!.since;
    expect(pid).toBeDefined();
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await h1().stopDaemon(signal);
      expect(h1().birdPid()).toBe(pid);
      expect(routes(h2())).toContain(`${block} via ${hostIp(1)}`);
      await h1().startDaemon();
      expect(h1().birdPid()).toBe(pid);
      expect(h1().daemonLog).toContain('adopted running BIRD');
    }
    expect(sessions(h2()).get(hostIp(1))).toMatchObject({ since, info: 'Established' });
    // A change in etcd afterwards is loaded into that same BIRD.
    ctl(h1(), ['node', 'bgp', 'peer', 'add', '10.47.0.253', 'as', '64999']);
    await until('reloaded', () => h1().runFile('bird.cfg').includes('Node_10_47_0_253'));
    await until('new session listed', async () => (await birdSessions(h1())).has('10.47.0.253'));
    expect(h1().birdPid()).toBe(pid);
    ctl(h1(), ['node', 'bgp', 'peer', 'remove', '10.47.0.253']);
    await releaseAddress(h1(), address);
  });

  it('BIRD killed: restarted by the daemon, sessions and routes back within 5 s', async () => {
    const address = await requestAddress(h2());
    const block = blockOf(address);
    await until('routed', () => routes(h1()).includes(`${block} via ${hostIp(2)}`));
    const pid = h2().birdPid()!;
    const killed = Date.now();
    process.kill(pid, 'SIGKILL');
    await until('a new BIRD', () => (h2().birdPid() ?? pid) !== pid, 5000);
    // Graceful restart: the peers keep the route all along, and this host's kernel keeps its own.
    await until('routes', () => routes(h1()).includes(`${block} via ${hostIp(2)}`) && routes(h3()).includes(`${block} via ${hostIp(2)}`), 5000);
    expect(Date.now() - killed).toBeLessThan(5000);
    await until('sessions back', async () => (await established(h2(), [hostIp(1), hostIp(3)])) && (await established(h1(), [hostIp(2), hostIp(3)])), 10_000);
    expect(routes(h1())).toContain(`${block} via ${hostIp(2)}`);
    await releaseAddress(h2(), address);
  });
});

describe('bad configuration', () => {
  it('a BGPPeer BIRD refuses leaves the running configuration, with the reason logged', async () => {
    const before = h1().runFile('bird.cfg');
    const pid = h1().birdPid();
    // calicoctl takes it (Calico's does too), but BIRD refuses a link-local neighbour without an interface.
    ctl(h1(), ['create', '-f', '-'], JSON.stringify({ apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'link-local' }, spec: { peerIP: 'fe80::1', asNumber: 64512 } }));
    await until('refusal logged', () => h1().daemonLog.includes('Link-local addresses require defined interface'));
    expect(h1().daemonLog).toContain('BIRD refused the new configuration; the running one stays');
    expect(h1().runFile('bird.cfg')).toBe(before);
    expect(h1().birdPid()).toBe(pid);
    expect(await established(h1(), [hostIp(2), hostIp(3)])).toBe(true);
    ctl(h1(), ['delete', 'bgppeer', 'link-local']);
  });

  it('BGP passes a host firewall that drops everything else', async () => {
    // A host firewall that lets only loopback through, on top of ours.
    for (const chain of ['INPUT', 'OUTPUT']) {
      h3().onHost(['iptables', '-A', chain, ...(chain === 'INPUT' ? ['-i'] : ['-o']), 'lo', '-j', 'ACCEPT']);
      h3().onHost(['iptables', '-P', chain, 'DROP']);
    }
    try {
      // Sessions torn down and built again through the firewall.
      process.kill(h3().birdPid()!, 'SIGKILL');
      await until('h3 sessions through the firewall', () => established(h3(), [hostIp(1), hostIp(2)]), 15_000);
    } finally {
      for (const chain of ['INPUT', 'OUTPUT']) {
        h3().onHost(['iptables', '-P', chain, 'ACCEPT']);
        h3().onHost(['iptables', '-D', chain, ...(chain === 'INPUT' ? ['-i'] : ['-o']), 'lo', '-j', 'ACCEPT']);
      }
    }
  });

  it('a daemon whose address another node holds refuses to start, naming that node', async () => {
    const impostor = new DockerHost('bgp-impostor', etcd, { IP: hostIp(1) }, { docker: false });
    try {
      await expect(impostor.start()).rejects.toThrow(/Calico node 'bgp1' is already using the IPv4 address 10\.47\.0\.1/);
    } finally {
      await impostor.stop();
    }
  });
});

describe('removing a node', () => {
  it('calicoctl delete node: its blocks, addresses and peers go, the others withdraw its routes and drop the session', async () => {
    const address = await requestAddress(h3());
    const block = blockOf(address);
    await until('routed', () => routes(h1()).includes(`${block} via ${hostIp(3)}`));
    await h3().stopDaemon('SIGKILL');
    process.kill(h3().birdPid()!, 'SIGKILL');
    expect(ctl(h1(), ['delete', 'node', 'bgp3'])).toBe("Successfully deleted 1 'Node' resource(s)\n");
    await until('route withdrawn', () => !routes(h1()).includes(block) && !routes(h2()).includes(block), 10_000);
    await until('session gone', async () => !(await birdSessions(h1())).has(hostIp(3)) && !(await birdSessions(h2())).has(hostIp(3)));
    const snapshot = await ctx.store.snapshot();
    expect(snapshot.blocks.filter((b) => b.value.affinity === 'host:bgp3')).toEqual([]);
    expect(await ctx.store.listAffinities('bgp3')).toEqual([]);
    expect(h1().calicoctl(['get', 'node', 'bgp3'])).toMatchObject({ status: 1, stderr: 'resource does not exist: Node(bgp3) with error: <nil>\n' });
  });

  it('leaves no BIRD, namespace or route behind', async () => {
    const birds = hosts.map((h) => h.birdPid()).filter((pid): pid is number => pid !== undefined);
    expect(birds.length).toBeGreaterThan(0);
    for (const host of hosts) await host.stop();
    router.stop();
    hosts = [];
    // Gone, or a zombie waiting for init.
    const alive = birds.filter((pid) => /\) [^Z]/.test(spawnSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8' }).stdout));
    expect(alive).toEqual([]);
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toMatch(new RegExp(`calit-${process.pid}-bgp(\\d|tor)`));
  });
});
