import { formatIp, IpAddr, IpFamily, parseIp } from '../domain/cidr.js';
import { BgpConfigurationSpec, BgpPeer, CalicoNode, DEFAULT_AS_NUMBER, MAX_AS_NUMBER } from '../domain/resources.js';
import { parseSelector, Selector } from './selector.js';
import { byText } from '../domain/text-order.js';

/**
 * Which BGP sessions this node runs, from the Nodes, the BGPPeers and BGPConfiguration `default`, as
 * Calico's confd derives them: the node-to-node mesh (unless switched off), global peers, peers of
 * this node (by name or nodeSelector), the reverse side of peerings that select this node, and
 * route-reflector clauses. Pure: the same inputs always give the same sessions.
 */

export type PeeringType = 'Mesh' | 'Global' | 'Node';

export interface Peering {
  /** BIRD's protocol name, which `calicoctl node status` parses: `Mesh_10_0_0_2`, `Global_fd00__1`. */
  name: string;
  type: PeeringType;
  address: IpAddr;
  port?: number;
  asNumber: number;
  /** Only the peer connects: for two Calico nodes, the one whose address sorts higher waits. */
  passive: boolean;
  /** This node reflects routes to the peer (`rr client; rr cluster id <ours>`). */
  routeReflectorClient: boolean;
  /** eBGP peers, and peers asking for it, keep the original next hop. */
  keepNextHop: boolean;
}

export interface PeeringInput {
  node: string;
  nodes: CalicoNode[];
  peers: BgpPeer[];
  /** BGPConfiguration `default`. */
  config: BgpConfigurationSpec;
}

export interface PeeringResult {
  peerings: Peering[];
  /** This node's AS, and whether it is a route reflector (its cluster ID). */
  asNumber: number;
  clusterId?: string;
  /** Resources that could not be used, and why (bad data written by others). */
  problems: string[];
}

interface Target {
  address: IpAddr;
  port?: number;
  asNumber: number;
  /** The Calico node behind the address, when it is one. */
  node?: CalicoNode;
}

const ipOf = (cidr: string | undefined): IpAddr | undefined => {
  if (!cidr) return undefined;
  try {
    return parseIp(cidr.split('/')[0]!);
  } catch {
    return undefined;
  }
};

export const nodeAddress = (node: CalicoNode, family: IpFamily): IpAddr | undefined =>
  ipOf(family === 4 ? node.spec?.bgp?.ipv4Address : node.spec?.bgp?.ipv6Address);

/** `10.0.0.2` → `10_0_0_2`, `fd00::2` → `fd00__2`: Calico's protocol-name form of an address. */
export const protocolSuffix = (ip: IpAddr): string => formatIp(ip).replace(/[.:]/g, '_');

/** `10.0.0.1:179`, `[fd00::1]:179` or a bare address. */
export function parsePeerAddress(text: string): { address: IpAddr; port?: number } {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  const dotted = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(text);
  const match = bracketed ?? dotted;
  if (!match) return { address: parseIp(text) };
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${match[2]} is out of range`);
  return { address: parseIp(match[1]!), port };
}

export function computePeerings(input: PeeringInput): PeeringResult {
  const problems: string[] = [];
  const me = input.nodes.find((n) => n.metadata.name === input.node);
  const globalAs = input.config.asNumber ?? DEFAULT_AS_NUMBER;
  const asOf = (node: CalicoNode): number => node.spec?.bgp?.asNumber ?? globalAs;
  const myAs = me ? asOf(me) : globalAs;
  const clusterId = me?.spec?.bgp?.routeReflectorClusterID || undefined;
  const result: PeeringResult = { peerings: [], asNumber: myAs, ...(clusterId ? { clusterId } : {}), problems };
  if (!me) return result;
  const others = input.nodes.filter((n) => n.metadata.name !== input.node);
  const selectorCache = new Map<string, Selector | null>();
  const selects = (text: string, node: CalicoNode, peer: BgpPeer): boolean => {
    if (!selectorCache.has(text)) {
      try {
        selectorCache.set(text, parseSelector(text));
      } catch {
        selectorCache.set(text, null);
        problems.push(`BGPPeer ${peer.metadata.name}: invalid selector ${JSON.stringify(text)}`);
      }
    }
    return selectorCache.get(text)?.(node.metadata.labels ?? {}) ?? false;
  };
  const used = new Set<string>();

  const add = (type: PeeringType, target: Target, keepOriginalNextHop = false): void => {
    const mine = nodeAddress(me, target.address.family);
    const key = `${formatIp(target.address)}:${target.port ?? ''}`;
    if (!mine || mine.value === target.address.value || used.has(key)) return;
    used.add(key);
    const peerCluster = target.node?.spec?.bgp?.routeReflectorClusterID || undefined;
    result.peerings.push({
      name: `${type}_${protocolSuffix(target.address)}${target.port ? `_port_${target.port}` : ''}`,
      type,
      address: target.address,
      ...(target.port ? { port: target.port } : {}),
      asNumber: target.asNumber,
      // Compared as strings, as confd's template does, so exactly one side of a pair connects.
      passive: target.node !== undefined && formatIp(target.address) > formatIp(mine),
      routeReflectorClient: clusterId !== undefined && target.asNumber === myAs && peerCluster !== clusterId,
      keepNextHop: keepOriginalNextHop || target.asNumber !== myAs,
    });
  };

  const nodeTargets = (nodes: CalicoNode[]): Target[] =>
    nodes.flatMap((n) =>
      ([4, 6] as const).flatMap((family) => {
        const address = nodeAddress(n, family);
        return address ? [{ address, asNumber: asOf(n), node: n }] : [];
      }),
    );
  const targetsOf = (peer: BgpPeer): Target[] => {
    const spec = peer.spec ?? {};
    if (spec.peerSelector) return nodeTargets(others.filter((n) => selects(spec.peerSelector!, n, peer)));
    if (!spec.peerIP) return [];
    try {
      const { address, port } = parsePeerAddress(spec.peerIP);
      if (!Number.isInteger(spec.asNumber) || spec.asNumber! < 1 || spec.asNumber! > MAX_AS_NUMBER) throw new Error(`asNumber ${JSON.stringify(spec.asNumber)} is not 1-${MAX_AS_NUMBER}`);
      const node = others.find((n) => nodeAddress(n, address.family)?.value === address.value);
      return [{ address, ...(port ? { port } : {}), asNumber: spec.asNumber!, ...(node ? { node } : {}) }];
    } catch (error) {
      problems.push(`BGPPeer ${peer.metadata.name}: peerIP ${JSON.stringify(spec.peerIP)} unusable (${(error as Error).message})`);
      return [];
    }
  };
  const isGlobal = (peer: BgpPeer): boolean => !peer.spec?.node && !peer.spec?.nodeSelector;
  const localNodesOf = (peer: BgpPeer): CalicoNode[] =>
    input.nodes.filter((n) => (peer.spec?.node ? n.metadata.name === peer.spec.node : peer.spec?.nodeSelector ? selects(peer.spec.nodeSelector, n, peer) : true));
  const keep = (peer: BgpPeer): boolean => peer.spec?.keepOriginalNextHop === true;
  const peers = [...input.peers].sort((a, b) => byText(a.metadata.name, b.metadata.name));

  if (input.config.nodeToNodeMeshEnabled !== false) for (const target of nodeTargets(others)) add('Mesh', target);
  for (const peer of peers.filter(isGlobal)) for (const target of targetsOf(peer)) add('Global', target, keep(peer));
  for (const peer of peers.filter((p) => !isGlobal(p) && localNodesOf(p).includes(me))) {
    for (const target of targetsOf(peer)) add('Node', target, keep(peer));
  }
  // The other side of a peering that names this node (by selector or address) as the peer.
  for (const peer of peers) {
    const targetsMe = peer.spec?.peerSelector
      ? selects(peer.spec.peerSelector, me, peer)
      : peer.spec?.peerIP !== undefined && ([4, 6] as const).some((f) => nodeAddress(me, f) && formatIp(nodeAddress(me, f)!) === safeAddress(peer.spec!.peerIP!));
    if (!targetsMe) continue;
    for (const target of nodeTargets(localNodesOf(peer).filter((n) => n !== me))) add('Node', target, keep(peer));
  }
  return result;
}

function safeAddress(text: string): string | undefined {
  try {
    return formatIp(parsePeerAddress(text).address);
  } catch {
    return undefined;
  }
}
