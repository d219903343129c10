import { InvalidRequestError } from './errors.js';

/**
 * Calico v3 resources as Calico stores them in etcd (`/calico/resources/v3/projectcalico.org/<plural>/…`,
 * libcalico-go `api/pkg/apis/projectcalico/v3`): the same kinds, names and JSON fields, so Calico's
 * own tools read what we write and we read what they write.
 */

export const API_VERSION = 'projectcalico.org/v3';

export interface ResourceMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  creationTimestamp?: string;
  /** Never stored: the key's etcd ModRevision, filled in on every read (as Calico does). */
  resourceVersion?: string;
}

export interface Resource<K extends string = string, S extends object = object> {
  kind: K;
  apiVersion: typeof API_VERSION;
  metadata: ResourceMetadata;
  spec: S;
  status?: Record<string, unknown>;
}

export interface NodeBgpSpec {
  asNumber?: number;
  /** `ADDR/prefix`, the prefix of the interface holding it (cross-subnet and Felix depend on it). */
  ipv4Address?: string;
  ipv6Address?: string;
  ipv4IPIPTunnelAddr?: string;
  /** Set by a user to make the node a route reflector. */
  routeReflectorClusterID?: string;
}

export interface NodeSpec {
  bgp?: NodeBgpSpec;
  ipv4VXLANTunnelAddr?: string;
  vxlanTunnelMACAddr?: string;
  orchRefs?: { nodeName?: string; orchestrator: string }[];
}

export type CalicoNode = Resource<'Node', NodeSpec>;

export interface BgpConfigurationSpec {
  logSeverityScreen?: string;
  nodeToNodeMeshEnabled?: boolean;
  asNumber?: number;
  listenPort?: number;
}

export type BgpConfiguration = Resource<'BGPConfiguration', BgpConfigurationSpec>;

export interface BgpPeerSpec {
  node?: string;
  peerIP?: string;
  asNumber?: number;
  nodeSelector?: string;
  peerSelector?: string;
  keepOriginalNextHop?: boolean;
}

export type BgpPeer = Resource<'BGPPeer', BgpPeerSpec>;

/** What calico/node (and confd) assume when BGPConfiguration `default` says nothing. */
export interface ClusterInformationSpec {
  calicoVersion?: string;
  clusterGUID?: string;
  /** Comma list, e.g. `docker,bgp`. */
  clusterType?: string;
  datastoreReady?: boolean;
}
export type ClusterInformation = Resource<'ClusterInformation', ClusterInformationSpec>;
/** The one ClusterInformation Calico keeps. */
export const CLUSTER_INFORMATION_NAME = 'default';

export const DEFAULT_AS_NUMBER = 64512;
export const DEFAULT_BGP_CONFIGURATION = 'default';
export const nodeBgpConfigurationName = (node: string): string => `node.${node}`;

export interface KindInfo {
  kind: string;
  plural: string;
  namespaced: boolean;
  /** The words calicoctl takes for the kind (lower-cased), besides the kind itself. */
  aliases: string[];
}

/** The kinds this project reads and writes, with calicoctl's names for them (resourcemgr). */
export const KINDS: KindInfo[] = [
  { kind: 'IPPool', plural: 'ippools', namespaced: false, aliases: ['ippool', 'ippools', 'ipp', 'ipps', 'pool', 'pools'] },
  { kind: 'Node', plural: 'nodes', namespaced: false, aliases: ['node', 'nodes', 'no', 'nos'] },
  {
    kind: 'BGPConfiguration',
    plural: 'bgpconfigurations',
    namespaced: false,
    aliases: ['bgpconfiguration', 'bgpconfigurations', 'bgpconfig', 'bgpconfigs'],
  },
  { kind: 'BGPPeer', plural: 'bgppeers', namespaced: false, aliases: ['bgppeer', 'bgppeers', 'bgpp', 'bgpps', 'bp', 'bps'] },
  { kind: 'Profile', plural: 'profiles', namespaced: false, aliases: ['profile', 'profiles', 'pro', 'pros'] },
  {
    kind: 'WorkloadEndpoint',
    plural: 'workloadendpoints',
    namespaced: true,
    aliases: ['workloadendpoint', 'workloadendpoints', 'wep', 'weps'],
  },
  { kind: 'ClusterInformation', plural: 'clusterinformations', namespaced: false, aliases: ['clusterinformation', 'clusterinformations', 'clusterinfo', 'clusterinfos'] },
  { kind: 'FelixConfiguration', plural: 'felixconfigurations', namespaced: false, aliases: ['felixconfiguration', 'felixconfigurations', 'felixconfig', 'felixconfigs'] },
  {
    kind: 'GlobalNetworkPolicy',
    plural: 'globalnetworkpolicies',
    namespaced: false,
    aliases: ['globalnetworkpolicy', 'globalnetworkpolicies', 'gnp', 'gnps'],
  },
  {
    kind: 'NetworkPolicy',
    plural: 'networkpolicies',
    namespaced: true,
    aliases: ['networkpolicy', 'networkpolicies', 'netpol', 'netpols', 'policy', 'policies'],
  },
  { kind: 'Tier', plural: 'tiers', namespaced: false, aliases: ['tier', 'tiers'] },
  { kind: 'GlobalNetworkSet', plural: 'globalnetworksets', namespaced: false, aliases: ['globalnetworkset', 'globalnetworksets', 'gns'] },
  { kind: 'NetworkSet', plural: 'networksets', namespaced: true, aliases: ['networkset', 'networksets', 'netset', 'netsets'] },
  { kind: 'HostEndpoint', plural: 'hostendpoints', namespaced: false, aliases: ['hostendpoint', 'hostendpoints', 'hep', 'heps'] },
];

export function kindInfo(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind === kind);
}

/** A kind as a user types it (`bgpPeer`, `nodes`, `ipp`), or undefined. */
export function kindFromWord(word: string): KindInfo | undefined {
  const lower = word.toLowerCase();
  return KINDS.find((k) => k.kind.toLowerCase() === lower || k.aliases.includes(lower));
}

/** `Kind(name)` or `Kind(namespace/name)`: how Calico's errors name a resource. */
export const resourceId = (kind: string, name: string, namespace?: string): string => `${kind}(${namespace ? `${namespace}/` : ''}${name})`;

export const MAX_AS_NUMBER = 4294967295;

/**
 * An AS number as Calico takes it: a plain number 1–4294967295, or asdot `high.low` (both 16-bit).
 * Throws an error that names the input.
 */
export function parseAsNumber(input: unknown, what = 'AS number'): number {
  const text = typeof input === 'number' ? String(input) : typeof input === 'string' ? input.trim() : '';
  let value: number | undefined;
  const dot = /^(\d{1,5})\.(\d{1,5})$/.exec(text);
  if (dot) {
    const [high, low] = [Number(dot[1]), Number(dot[2])];
    if (high <= 65535 && low <= 65535) value = high * 65536 + low;
  } else if (/^\d{1,10}$/.test(text)) {
    value = Number(text);
  }
  if (value === undefined || value < 1 || value > MAX_AS_NUMBER) {
    throw new InvalidRequestError(`invalid ${what} ${JSON.stringify(input)}: expected a number from 1 to ${MAX_AS_NUMBER} (or asdot, e.g. 1.10)`);
  }
  return value;
}
