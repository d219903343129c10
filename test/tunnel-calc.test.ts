import { createHash } from 'node:crypto';
import { endpointRules } from './helpers/endpoint-chains.js';
import { describe, expect, it } from 'vitest';
import { desiredDataplane } from '../src/calc/policy.js';
import { planTunnels, TunnelInput, vtepMac } from '../src/calc/tunnel-routes.js';
import { PORT_MAP_ANNOTATION, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import type { AllocationBlock, IpPool } from '../src/domain/ipam-model.js';
import type { CalicoNode } from '../src/domain/resources.js';

const node = (name: string, ip: string, extra: { vtep?: string; ipip?: string; mac?: string } = {}): CalicoNode => ({
  kind: 'Node',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name },
  spec: {
    bgp: { ipv4Address: ip, ...(extra.ipip ? { ipv4IPIPTunnelAddr: extra.ipip } : {}) },
    ...(extra.vtep ? { ipv4VXLANTunnelAddr: extra.vtep } : {}),
    ...(extra.mac ? { vxlanTunnelMACAddr: extra.mac } : {}),
  },
});
const pool = (cidr: string, vxlanMode = 'Never', ipipMode = 'Never'): IpPool =>
  ({ kind: 'IPPool', apiVersion: 'projectcalico.org/v3', metadata: { name: cidr }, spec: { cidr, vxlanMode, ipipMode } }) as IpPool;
/** A block of `owner` whose ordinals are used by the nodes given (null: free). */
const block = (cidr: string, owner: string | null, users: (string | null)[] = []): AllocationBlock => ({
  cidr,
  affinity: owner ? `host:${owner}` : null,
  allocations: users.map((u, i) => (u ? i : null)),
  unallocated: [],
  attributes: users.map((u) => ({ handle_id: 'h', secondary: u ? { node: u } : null })),
});

const nodes = [node('a', '10.0.1.1/24', { vtep: '192.168.0.1' }), node('b', '10.0.1.2/24', { vtep: '192.168.0.65' }), node('c', '10.0.2.3/24', { vtep: '192.168.0.129' })];
const plan = (overrides: Partial<TunnelInput>) =>
  planTunnels({ node: 'a', nodes, pools: [pool('192.168.0.0/16', 'Always')], blocks: [], underlay: { interfaceName: 'eth0', mtu: 1500 }, ipipAvailable: true, ...overrides });

describe('tunnel routes from the datastore', () => {
  it("VXLAN Always: the device on the node's address, a neighbour and FDB entry per remote VTEP, remote blocks and borrowed /32s onlink", () => {
    const p = plan({ blocks: [block('192.168.0.64/26', 'b'), block('192.168.0.128/26', 'c', [null, 'b']), block('192.168.0.0/26', 'a', [null, null, 'c'])] });
    expect(p.vxlan).toEqual({ vni: 4096, port: 4789, mtu: 1450, localIp: '10.0.1.1', parent: 'eth0', mac: vtepMac(nodes[0]!), address: '192.168.0.1' });
    expect(p.neighbors).toEqual([
      { ip: '192.168.0.65', mac: vtepMac(nodes[1]!) },
      { ip: '192.168.0.129', mac: vtepMac(nodes[2]!) },
    ]);
    expect(p.fdb).toEqual([
      { mac: vtepMac(nodes[1]!), dst: '10.0.1.2' },
      { mac: vtepMac(nodes[2]!), dst: '10.0.2.3' },
    ]);
    expect(p.routes).toEqual([
      { cidr: '192.168.0.2/32', via: '192.168.0.129', device: 'vxlan.calico' },
      { cidr: '192.168.0.64/26', via: '192.168.0.65', device: 'vxlan.calico' },
      { cidr: '192.168.0.128/26', via: '192.168.0.129', device: 'vxlan.calico' },
      { cidr: '192.168.0.129/32', via: '192.168.0.65', device: 'vxlan.calico' },
    ]);
    expect(p.workloadMtu).toBe(1450);
  });

  it('CrossSubnet: a node inside this subnet straight via its address, the others through the tunnel', () => {
    const p = plan({ pools: [pool('192.168.0.0/16', 'CrossSubnet')], blocks: [block('192.168.0.64/26', 'b'), block('192.168.0.128/26', 'c')] });
    expect(p.routes).toEqual([
      { cidr: '192.168.0.64/26', via: '10.0.1.2', device: 'eth0' },
      { cidr: '192.168.0.128/26', via: '192.168.0.129', device: 'vxlan.calico' },
    ]);
  });

  it('IPIP via each node address on tunl0, MTU underlay - 20; on a kernel without ipip only the cross-subnet routes', () => {
    const ipip = [pool('10.244.0.0/16', 'Never', 'CrossSubnet')];
    const blocks = [block('10.244.1.0/26', 'b'), block('10.244.2.0/26', 'c')];
    expect(plan({ pools: ipip, blocks }).routes).toEqual([
      { cidr: '10.244.1.0/26', via: '10.0.1.2', device: 'eth0' },
      { cidr: '10.244.2.0/26', via: '10.0.2.3', device: 'tunl0' },
    ]);
    expect(plan({ pools: ipip, blocks }).ipip).toEqual({ mtu: 1480 });
    const without = plan({ pools: ipip, blocks, ipipAvailable: false });
    expect(without.routes).toEqual([{ cidr: '10.244.1.0/26', via: '10.0.1.2', device: 'eth0' }]);
    expect(without.unavailable).toEqual(['ipip']);
    expect(without.ipip).toBeUndefined();
  });

  it('plain pools, our own blocks, nodes without a VTEP and IPv6 pools get nothing; FelixConfiguration overrides the device', () => {
    const p = plan({
      pools: [pool('192.168.0.0/16', 'Always'), pool('10.10.0.0/16'), pool('fd00::/64', 'Always')],
      nodes: [...nodes.slice(0, 2), node('d', '10.0.1.4/24')],
      blocks: [block('192.168.0.0/26', 'a'), block('192.168.1.0/26', 'd'), block('10.10.0.0/26', 'b'), block('fd00::/122', 'b')],
      vxlan: { vni: 77, port: 8472, mtu: 1400 },
    });
    expect(p.routes).toEqual([]);
    expect(p.vxlan).toMatchObject({ vni: 77, port: 8472, mtu: 1400 });
    expect(plan({ pools: [pool('10.10.0.0/16')] })).toEqual({ neighbors: [], fdb: [], routes: [], unavailable: [] });
  });

  it("the VTEP MAC is Felix's: 0x66 and five bytes of SHA-1(node name), unless the Node sets one", () => {
    const sha = createHash('sha1').update('host-1').digest('hex');
    expect(vtepMac(node('host-1', '10.0.0.1/24'))).toBe(`66:${sha.slice(0, 10).match(/../g)!.join(':')}`);
    expect(vtepMac(node('x', '10.0.0.1/24', { mac: 'AA:BB:CC:DD:EE:FF' }))).toBe('aa:bb:cc:dd:ee:ff');
  });
});

describe('host rules: published ports and tunnels', () => {
  const endpoint = (iface: string, address: string, node: string, ports?: object[]): WorkloadEndpoint => ({
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: iface, namespace: 'libnetwork', labels: {}, ...(ports ? { annotations: { [PORT_MAP_ANNOTATION]: JSON.stringify(ports) } } : {}) },
    spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node, endpoint: iface, interfaceName: iface, ipNetworks: [`${address}/32`], mac: '', profiles: [] },
  });
  const desired = desiredDataplane({
    node: 'a',
    profiles: [],
    pools: [{ cidr: '192.168.0.0/16', natOutgoing: true }],
    endpoints: [
      endpoint('cali1', '192.168.0.5', 'a', [
        { protocol: 'tcp', hostIp: '', hostPort: 8080, port: 80 },
        { protocol: 'udp', hostIp: '10.0.1.1', hostPort: 5353, port: 53 },
        { protocol: 'gopher', hostIp: '', hostPort: 1, port: 1 },
      ]),
      endpoint('cali2', '192.168.0.70', 'b', [{ protocol: 'tcp', hostIp: '', hostPort: 9090, port: 90 }]),
    ],
    hostAddress: '10.0.1.1',
    tunnels: { hosts: ['10.0.1.2', '10.0.2.3'], vxlanPort: 4789, ipip: false },
  });
  const nat = desired.tables[4].nat;
  const filter = desired.tables[4].filter;

  it("DNATs this host's published ports from any of its addresses (or the one given), and not another host's", () => {
    expect(nat.get('cali-publish')).toEqual([
      '-p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.0.5:80',
      '-d 10.0.1.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 192.168.0.5:53',
    ]);
    expect(nat.get('cali-PREROUTING')).toEqual(['-m addrtype --dst-type LOCAL -j cali-publish']);
    expect(nat.get('cali-OUTPUT')).toEqual(['-m addrtype --dst-type LOCAL -j cali-publish']);
    expect(nat.get('cali-POSTROUTING')).toEqual(['-j cali-nat-outgoing', '-o cali+ -s 127.0.0.0/8 -j SNAT --to-source 10.0.1.1']);
  });

  it('lets published connections in before the profiles, whatever they say', () => {
    expect(endpointRules(filter, 'tw', '192.168.0.5')!.slice(0, 4)).toEqual([
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-m conntrack --ctstate INVALID -j DROP',
      '-p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -j ACCEPT',
      '-p udp -m udp --dport 53 -m conntrack --ctstate DNAT --ctorigdstport 5353 -j ACCEPT',
    ]);
  });

  it('takes VXLAN only from the other Calico hosts', () => {
    expect(filter.get('cali-INPUT')).toEqual([
      '-i cali+ -j cali-wl-to-host',
      '-p udp -m udp --dport 4789 -m set --match-set cali4-all-vxlan-net src -m addrtype --dst-type LOCAL -j ACCEPT',
      '-p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j DROP',
      '! -i cali+ -j cali-failsafe-in',
    ]);
    expect(desired.ipsets.get('cali4-all-vxlan-net')).toEqual({ family: 4, type: 'hash:net', members: ['10.0.1.2', '10.0.2.3'] });
    expect(desired.tables[6].filter.get('cali-INPUT')).toEqual(['-i cali+ -j cali-wl-to-host', '! -i cali+ -j cali-failsafe-in']);
  });
});
