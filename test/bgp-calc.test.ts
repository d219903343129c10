import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computePeerings, Peering, PeeringInput } from '../src/calc/bgp-peerings.js';
import { renderBirdConfig, strayRouteRanges } from '../src/calc/bird-config.js';
import { cidrsOverlap, formatCidr, parseCidr, parseIp } from '../src/domain/cidr.js';
import type { BgpPeer, CalicoNode } from '../src/domain/resources.js';
import { hashedRouterId } from '../src/services/routing/bgp-agent.js';

const node = (name: string, ip: string, extra: { as?: number; rr?: string; labels?: Record<string, string>; ip6?: string } = {}): CalicoNode => ({
  kind: 'Node',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name, ...(extra.labels ? { labels: extra.labels } : {}) },
  spec: {
    bgp: {
      ...(extra.as ? { asNumber: extra.as } : {}),
      ipv4Address: `${ip}/24`,
      ...(extra.ip6 ? { ipv6Address: `${extra.ip6}/64` } : {}),
      ...(extra.rr ? { routeReflectorClusterID: extra.rr } : {}),
    },
  },
});
const peer = (name: string, spec: BgpPeer['spec']): BgpPeer => ({ kind: 'BGPPeer', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec });
const brief = (p: Peering): string =>
  `${p.name} as ${p.asNumber}${p.passive ? ' passive' : ''}${p.routeReflectorClient ? ' rr-client' : ''}${p.keepNextHop ? ' keep-next-hop' : ''}`;
const sessions = (input: Partial<PeeringInput> & { node: string; nodes: CalicoNode[] }): string[] =>
  computePeerings({ peers: [], config: {}, ...input }).peerings.map(brief);

const nodes = [node('a', '10.0.0.1'), node('b', '10.0.0.2'), node('c', '10.0.0.10')];

describe('which sessions a node runs', () => {
  it('full mesh to every other node; only one side of each pair connects, by the addresses as strings', () => {
    expect(sessions({ node: 'a', nodes })).toEqual(['Mesh_10_0_0_2 as 64512 passive', 'Mesh_10_0_0_10 as 64512 passive']);
    // "10.0.0.10" sorts before "10.0.0.2": c connects to b, and b waits for c.
    expect(sessions({ node: 'b', nodes })).toEqual(['Mesh_10_0_0_1 as 64512', 'Mesh_10_0_0_10 as 64512']);
    expect(sessions({ node: 'c', nodes })).toEqual(['Mesh_10_0_0_1 as 64512', 'Mesh_10_0_0_2 as 64512 passive']);
  });

  it('the global AS from BGPConfiguration, a per-node AS, and eBGP keeping the original next hop', () => {
    const mixed = [node('a', '10.0.0.1'), node('b', '10.0.0.2', { as: 64600 })];
    expect(sessions({ node: 'a', nodes: mixed, config: { asNumber: 65000 } })).toEqual(['Mesh_10_0_0_2 as 64600 passive keep-next-hop']);
    expect(computePeerings({ node: 'b', nodes: mixed, peers: [], config: { asNumber: 65000 } }).asNumber).toBe(64600);
  });

  it('mesh off: global peers, this node by name or selector, and the reverse side of peerings that select it', () => {
    const labelled = [node('a', '10.0.0.1'), node('b', '10.0.0.2'), node('rr', '10.0.0.3', { rr: '1.0.0.1', labels: { rr: 'true' } })];
    const peers = [
      peer('tor', { peerIP: '10.0.0.254', asNumber: 64567 }),
      peer('to-rr', { nodeSelector: '!has(rr)', peerSelector: 'has(rr)' }),
      peer('a-only', { node: 'a', peerIP: '10.0.0.250', asNumber: 64512 }),
    ];
    const config = { nodeToNodeMeshEnabled: false };
    expect(sessions({ node: 'a', nodes: labelled, peers, config })).toEqual([
      'Global_10_0_0_254 as 64567 keep-next-hop',
      'Node_10_0_0_250 as 64512',
      'Node_10_0_0_3 as 64512 passive',
    ]);
    expect(sessions({ node: 'b', nodes: labelled, peers, config })).toEqual(['Global_10_0_0_254 as 64567 keep-next-hop', 'Node_10_0_0_3 as 64512 passive']);
    // The reflector serves each client (same AS, other cluster) and the router; eBGP peers are never RR clients.
    expect(sessions({ node: 'rr', nodes: labelled, peers, config })).toEqual([
      'Global_10_0_0_254 as 64567 keep-next-hop',
      'Node_10_0_0_1 as 64512 rr-client',
      'Node_10_0_0_2 as 64512 rr-client',
    ]);
  });

  it('skips its own address, duplicates, and peers it cannot use, saying why', () => {
    const result = computePeerings({
      node: 'a',
      nodes,
      config: {},
      peers: [peer('self', { peerIP: '10.0.0.1', asNumber: 1 }), peer('dup', { peerIP: '10.0.0.2', asNumber: 64512 }), peer('bad', { peerIP: 'banana', asNumber: 1 }), peer('sel', { peerSelector: 'has(' })],
    });
    expect(result.peerings.map(brief)).toEqual(['Mesh_10_0_0_2 as 64512 passive', 'Mesh_10_0_0_10 as 64512 passive']);
    expect(result.problems).toEqual([expect.stringContaining('BGPPeer bad: peerIP "banana" unusable'), expect.stringContaining('BGPPeer sel: invalid selector "has("')]);
  });

  it('IPv6 sessions between nodes with IPv6 addresses, named with _ for :', () => {
    const six = [node('a', '10.0.0.1', { ip6: 'fd00::1' }), node('b', '10.0.0.2', { ip6: 'fd00::2' })];
    expect(sessions({ node: 'a', nodes: six })).toEqual(['Mesh_10_0_0_2 as 64512 passive', 'Mesh_fd00__2 as 64512 passive']);
  });

  it("Calico's hash router ID stays out of the multicast range", () => {
    expect(hashedRouterId('node-1')).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    for (const name of ['a', 'b', 'c', 'node-1', 'x'.repeat(40)]) expect(Number(hashedRouterId(name).split('.')[0])).toBeLessThan(224);
  });
});

describe('the BIRD configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'calico-birdcfg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const birdAccepts = (text: string): { ok: boolean; error: string } => {
    const file = join(dir, 'bird.cfg');
    writeFileSync(file, text);
    const result = spawnSync('bird', ['-p', '-c', file], { encoding: 'utf8' });
    return { ok: result.status === 0, error: result.stderr };
  };
  const labelled = [node('a', '10.0.0.1', { ip6: 'fd00::1' }), node('b', '10.0.0.2', { ip6: 'fd00::2' }), node('rr', '10.0.0.3', { rr: '1.0.0.1' })];
  const peerings = computePeerings({ node: 'rr', nodes: labelled, peers: [peer('tor', { peerIP: '10.0.0.254', asNumber: 64567 })], config: {} });
  const text = renderBirdConfig({
    routerId: '10.0.0.3',
    asNumber: peerings.asNumber,
    clusterId: '1.0.0.1',
    addresses: { 4: parseIp('10.0.0.3'), 6: parseIp('fd00::3') },
    pools: [
      { cidr: parseCidr('192.168.0.0/16'), kernelRoutes: true, exported: true },
      { cidr: parseCidr('10.244.0.0/16'), kernelRoutes: false, exported: true },
      { cidr: parseCidr('fd80::/64'), kernelRoutes: true, exported: true },
    ],
    blocks: [parseCidr('192.168.7.0/26'), parseCidr('fd80::40/122')],
    knownBlocks: [parseCidr('192.168.7.0/26'), parseCidr('192.168.9.64/26'), parseCidr('10.244.1.0/26'), parseCidr('fd80::40/122')],
    peerings: peerings.peerings,
  });

  it('is accepted by BIRD 2 (bird -p)', () => {
    expect(birdAccepts(text)).toEqual({ ok: true, error: '' });
  });

  it('originates local blocks as blackholes, exports them whole and nothing outside the pools', () => {
    expect(text).toContain('route 192.168.7.0/26 blackhole;');
    expect(text).toContain('route fd80::40/122 blackhole;');
    expect(text).toMatch(/function calico_aggr4\(\) \{\n  if net = 192\.168\.7\.0\/26 then accept;\n  if net ~ 192\.168\.7\.0\/26 then reject;\n\}/);
    expect(text).toMatch(/filter calico_export_to_bgp_peers4 \{\n  calico_aggr4\(\);\n  if net ~ 192\.168\.0\.0\/16 then accept;\n  if net ~ 10\.244\.0\.0\/16 then accept;\n  reject;\n\}/);
  });

  it('writes to the kernel only routes inside known blocks of pools BIRD routes, never direct or static ones', () => {
    expect(text).toMatch(/filter calico_kernel_programming4 \{\n  if source = RTS_DEVICE then reject;\n  if source = RTS_STATIC then reject;\n  if net ~ \[ 192\.168\.7\.0\/26\+, 192\.168\.9\.64\/26\+ \] then accept;\n  reject;\n\}/);
    expect(text).toMatch(/filter calico_kernel_programming6 \{\n  if source = RTS_DEVICE then reject;\n  if source = RTS_STATIC then reject;\n  if net ~ \[ fd80::40\/122\+ \] then accept;\n  reject;\n\}/);
    expect(text).toContain('interface -"cali*", -"vxlan.calico", -"tunl0", "*"');
    expect(text).toContain(
      'protocol kernel kernel4 {\n  ipv4 { import filter { if krt_source = 80 then reject; accept; }; export filter calico_kernel_programming4; };\n  learn;\n  persist;\n  scan time 2;\n  graceful restart;',
    );
  });

  it('has route reflector clauses for same-AS clients only, next hop keep for eBGP, no next hop self', () => {
    expect(text).toContain('protocol bgp Mesh_10_0_0_1 from bgp_template4 { neighbor 10.0.0.1 as 64512; rr client; rr cluster id 1.0.0.1; }');
    expect(text).toContain('protocol bgp Global_10_0_0_254 from bgp_template4 { neighbor 10.0.0.254 as 64567; ipv4 { next hop keep; }; }');
    expect(text).not.toContain('next hop self');
    expect(text).toContain('graceful restart;');
  });

  it('bounds the graceful-restart recovery: a peer that never comes back holds stale routes 10 s at most', () => {
    expect(text).toContain('\ngraceful restart wait 10;\n');
  });

  it('refuses what BIRD refuses: a link-local peer without an interface', () => {
    const bad = renderBirdConfig({
      routerId: '10.0.0.1',
      asNumber: 64512,
      addresses: { 4: parseIp('10.0.0.1'), 6: parseIp('fd00::1') },
      pools: [],
      blocks: [],
      knownBlocks: [],
      peerings: [{ name: 'Global_fe80__1', type: 'Global', address: parseIp('fe80::1'), asNumber: 64512, passive: false, routeReflectorClient: false, keepNextHop: false }],
    });
    expect(birdAccepts(bad)).toMatchObject({ ok: false, error: expect.stringContaining('Link-local addresses require defined interface') });
  });
});

describe('stray route ranges', () => {
  const pools = [
    { cidr: parseCidr('10.48.0.0/24'), kernelRoutes: true, exported: true },
    { cidr: parseCidr('10.244.0.0/16'), kernelRoutes: false, exported: true },
  ];

  it('are the parts of the pools BIRD routes that no known block covers', () => {
    const known = [parseCidr('10.48.0.64/26'), parseCidr('10.244.0.0/26'), parseCidr('10.99.0.0/26')];
    expect(strayRouteRanges(pools, known).map(formatCidr)).toEqual(['10.48.0.0/26', '10.48.0.128/25']);
  });

  it('are the whole pool with no block, and nothing with every block known', () => {
    expect(strayRouteRanges(pools, []).map(formatCidr)).toEqual(['10.48.0.0/24']);
    const all = [0, 64, 128, 192].map((o) => parseCidr(`10.48.0.${o}/26`));
    expect(strayRouteRanges(pools, all)).toEqual([]);
  });

  it('leave routes inside a known block alone, a borrowed /32 too, and catch those of a released one', () => {
    const known = [parseCidr('10.48.0.0/26'), parseCidr('10.48.0.128/26')];
    const stray = strayRouteRanges(pools, known);
    const isStray = (route: string): boolean => stray.some((r) => cidrsOverlap(r, parseCidr(route)));
    expect(['10.48.0.0/26', '10.48.0.7/32', '10.48.0.128/26'].filter(isStray)).toEqual([]);
    expect(['10.48.0.64/26', '10.48.0.200/32', '10.48.0.0/24'].filter(isStray)).toEqual(['10.48.0.64/26', '10.48.0.200/32', '10.48.0.0/24']);
  });
});
