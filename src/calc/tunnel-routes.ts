import { createHash } from 'node:crypto';
import { Cidr, cidrContains, formatCidr, formatIp, IpAddr, parseCidr, parseIp } from '../domain/cidr.js';
import type { AllocationBlock, IpPool } from '../domain/ipam-model.js';
import type { CalicoNode } from '../domain/resources.js';
import { byText, naturalOrder } from '../domain/text-order.js';

/**
 * What the daemon programs for pools in VXLAN or IPIP mode, from the datastore alone (no BGP), as
 * Felix's VXLAN manager and route resolver do: the tunnel device, for each remote node with a VTEP a
 * permanent neighbour and FDB entry, and for each remote block of such a pool (and each address
 * borrowed from one) a route through the tunnel, or, in CrossSubnet mode to a node inside this
 * node's subnet, straight to that node. Pure: tested table-driven, written by the adapter.
 */

export const VXLAN_DEVICE = 'vxlan.calico';
export const IPIP_DEVICE = 'tunl0';
export const VXLAN_OVERHEAD = 50;
export const IPIP_OVERHEAD = 20;
export const DEFAULT_VXLAN_VNI = 4096;
export const DEFAULT_VXLAN_PORT = 4789;

export type Encapsulation = 'vxlan' | 'ipip' | 'none';

export interface PoolRouting {
  cidr: Cidr;
  encapsulation: Encapsulation;
  crossSubnet: boolean;
}

/** A pool's mode as routing sees it: VXLAN or IPIP (Always or CrossSubnet), or plain. */
export function poolRouting(pool: IpPool): PoolRouting | undefined {
  let cidr: Cidr;
  try {
    cidr = parseCidr(pool.spec.cidr);
  } catch {
    return undefined;
  }
  const mode = (value: string | undefined): 'Always' | 'CrossSubnet' | undefined => (value === 'Always' || value === 'CrossSubnet' ? value : undefined);
  const vxlan = mode(pool.spec.vxlanMode);
  const ipip = mode(pool.spec.ipipMode);
  if (cidr.family !== 4 || (!vxlan && !ipip)) return { cidr, encapsulation: 'none', crossSubnet: false };
  return vxlan ? { cidr, encapsulation: 'vxlan', crossSubnet: vxlan === 'CrossSubnet' } : { cidr, encapsulation: 'ipip', crossSubnet: ipip === 'CrossSubnet' };
}

/** Felix's VTEP MAC: 0x66 then the first five bytes of SHA-1(node name), unless the Node sets one. */
export function vtepMac(node: CalicoNode): string {
  if (node.spec?.vxlanTunnelMACAddr) return node.spec.vxlanTunnelMACAddr.toLowerCase();
  const digest = createHash('sha1').update(node.metadata.name).digest();
  return ['66', ...[...digest.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export interface TunnelInput {
  node: string;
  nodes: CalicoNode[];
  pools: IpPool[];
  blocks: AllocationBlock[];
  /** FelixConfiguration overrides. */
  vxlan?: { vni?: number; port?: number; mtu?: number };
  /** The interface holding this node's address, and its MTU (the underlay). */
  underlay?: { interfaceName: string; mtu: number };
  /** False on a kernel without the ipip module: IPIP routes are left out. */
  ipipAvailable: boolean;
}

export interface TunnelRoute {
  cidr: string;
  via: string;
  device: string;
}

export interface TunnelPlan {
  vxlan?: { vni: number; port: number; mtu: number; localIp: string; parent: string; mac: string; address?: string };
  ipip?: { mtu: number; address?: string };
  neighbors: { ip: string; mac: string }[];
  fdb: { mac: string; dst: string }[];
  routes: TunnelRoute[];
  /** The MTU a workload's veth should have with the encapsulation in use here. */
  workloadMtu?: number;
  /** Encapsulated pools this kernel cannot serve (IPIP without the ipip module). */
  unavailable: Encapsulation[];
}

interface NodeView {
  name: string;
  ip: IpAddr;
  vtep?: { ip: string; mac: string };
}

function view(node: CalicoNode): NodeView | undefined {
  const address = node.spec?.bgp?.ipv4Address;
  if (!address) return undefined;
  try {
    const ip = parseIp(address.split('/')[0]!);
    const vtepIp = node.spec?.ipv4VXLANTunnelAddr;
    return { name: node.metadata.name, ip, ...(vtepIp ? { vtep: { ip: vtepIp, mac: vtepMac(node) } } : {}) };
  } catch {
    return undefined;
  }
}

const hostOf = (block: AllocationBlock): string | undefined => (block.affinity?.startsWith('host:') ? block.affinity.slice('host:'.length) : undefined);

/** What routing needs of a block: its CIDR, its owner, and the addresses other nodes use in it. */
interface BlockSummary {
  cidr: Cidr;
  text: string;
  owner: string | undefined;
  /** Addresses used by a node that does not own the block, as /32s (Felix routes them by the allocation's `node` attribute). */
  borrowed: { address: string; node: string }[];
}

/**
 * Blocks are immutable values (each change is a new one), so each is summarized once: every host
 * plans again for every block claimed anywhere, and walking all allocations of all blocks each time
 * cost milliseconds per plan.
 */
const summaries = new WeakMap<AllocationBlock, BlockSummary | null>();

function blockSummary(block: AllocationBlock): BlockSummary | null {
  const known = summaries.get(block);
  if (known !== undefined) return known;
  let summary: BlockSummary | null = null;
  try {
    const cidr = parseCidr(block.cidr);
    const owner = hostOf(block);
    const borrowed: BlockSummary['borrowed'] = [];
    block.allocations.forEach((index, ordinal) => {
      const attributes = index === null ? undefined : block.attributes[index]?.secondary;
      const node = attributes?.node;
      if (!node || node === owner || attributes?.type?.endsWith('TunnelAddress')) return;
      borrowed.push({ address: `${formatIp({ family: cidr.family, value: cidr.base + BigInt(ordinal) })}/32`, node });
    });
    summary = { cidr, text: formatCidr(cidr), owner, borrowed };
  } catch {
    summary = null;
  }
  summaries.set(block, summary);
  return summary;
}

export function planTunnels(input: TunnelInput): TunnelPlan {
  const plan: TunnelPlan = { neighbors: [], fdb: [], routes: [], unavailable: [] };
  const meNode = input.nodes.find((n) => n.metadata.name === input.node);
  const me = meNode && view(meNode);
  const pools = input.pools.map(poolRouting).filter((p): p is PoolRouting => p !== undefined && p.encapsulation !== 'none');
  if (!meNode || !me || !input.underlay || pools.length === 0) return plan;
  let mySubnet: Cidr | undefined;
  try {
    mySubnet = parseCidr(meNode.spec.bgp!.ipv4Address!);
  } catch {
    mySubnet = undefined;
  }
  const underlayMtu = input.underlay.mtu;
  if (pools.some((p) => p.encapsulation === 'vxlan')) {
    plan.vxlan = {
      vni: input.vxlan?.vni ?? DEFAULT_VXLAN_VNI,
      port: input.vxlan?.port ?? DEFAULT_VXLAN_PORT,
      mtu: input.vxlan?.mtu ?? underlayMtu - VXLAN_OVERHEAD,
      localIp: formatIp(me.ip),
      parent: input.underlay.interfaceName,
      mac: vtepMac(meNode),
      ...(me.vtep ? { address: me.vtep.ip } : {}),
    };
  }
  if (pools.some((p) => p.encapsulation === 'ipip')) {
    if (input.ipipAvailable) {
      plan.ipip = { mtu: underlayMtu - IPIP_OVERHEAD, ...(meNode.spec.bgp?.ipv4IPIPTunnelAddr ? { address: meNode.spec.bgp.ipv4IPIPTunnelAddr } : {}) };
    } else {
      plan.unavailable.push('ipip');
    }
  }
  const mtus = [plan.vxlan?.mtu, plan.ipip?.mtu].filter((m): m is number => m !== undefined);
  if (mtus.length) plan.workloadMtu = Math.min(...mtus);

  const others = new Map<string, NodeView>();
  for (const node of input.nodes) {
    const v = node.metadata.name !== input.node ? view(node) : undefined;
    if (v) others.set(v.name, v);
  }
  if (plan.vxlan) {
    for (const other of [...others.values()].sort((a, b) => byText(a.name, b.name))) {
      if (!other.vtep) continue;
      plan.neighbors.push({ ip: other.vtep.ip, mac: other.vtep.mac });
      plan.fdb.push({ mac: other.vtep.mac, dst: formatIp(other.ip) });
    }
  }

  const routeTo = (cidr: string, pool: PoolRouting, target: NodeView): TunnelRoute | undefined => {
    if (pool.crossSubnet && mySubnet && cidrContains(mySubnet, target.ip)) return { cidr, via: formatIp(target.ip), device: input.underlay!.interfaceName };
    if (pool.encapsulation === 'vxlan') return plan.vxlan && target.vtep ? { cidr, via: target.vtep.ip, device: VXLAN_DEVICE } : undefined;
    return plan.ipip ? { cidr, via: formatIp(target.ip), device: IPIP_DEVICE } : undefined;
  };
  const routes = new Map<string, TunnelRoute>();
  for (const block of input.blocks) {
    const summary = blockSummary(block);
    if (!summary) continue;
    const pool = pools.find((p) => cidrContains(p.cidr, { family: summary.cidr.family, value: summary.cidr.base }));
    if (!pool) continue;
    const ownerView = summary.owner ? others.get(summary.owner) : undefined;
    if (ownerView) {
      const route = routeTo(summary.text, pool, ownerView);
      if (route) routes.set(route.cidr, route);
    }
    for (const { address, node } of summary.borrowed) {
      const target = node !== input.node ? others.get(node) : undefined;
      const route = target && routeTo(address, pool, target);
      if (route) routes.set(route.cidr, route);
    }
  }
  plan.routes = [...routes.values()].sort((a, b) => naturalOrder(a.cidr, b.cidr));
  return plan;
}
