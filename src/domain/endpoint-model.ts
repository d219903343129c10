import { IpAddr, parseIp } from './cidr.js';

/**
 * Calico v3 WorkloadEndpoint and Profile, with the field names Calico writes
 * (libcalico-go `api/pkg/apis/projectcalico/v3`), so Calico's tools can read them.
 */

/** The namespace every endpoint of this plugin is in, as Calico's libnetwork plugin put them. */
export const WORKLOAD_NAMESPACE = 'libnetwork';

export interface WorkloadEndpoint {
  kind: 'WorkloadEndpoint';
  apiVersion: 'projectcalico.org/v3';
  metadata: {
    name: string;
    namespace: typeof WORKLOAD_NAMESPACE;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
  };
  spec: {
    orchestrator: 'libnetwork';
    /** The container's name once Docker has told it (events and inspect, in the background); `libnetwork` until then. */
    workload: string;
    /** The container's ID, learnt with its name. */
    containerID?: string;
    node: string;
    endpoint: string;
    interfaceName: string;
    ipNetworks: string[];
    mac: string;
    profiles: string[];
    /** Named ports rules may refer to (Calico's `{name, protocol, port}`). */
    ports?: { name: string; protocol?: string; port: number }[];
  };
}

export interface RuleEntity {
  selector?: string;
  notSelector?: string;
  nets?: string[];
  notNets?: string[];
  ports?: (number | string)[];
  notPorts?: (number | string)[];
}

export interface Rule {
  action: 'Allow' | 'Deny' | 'Log' | 'Pass';
  ipVersion?: 4 | 6;
  protocol?: string | number;
  notProtocol?: string | number;
  icmp?: { type?: number; code?: number };
  notICMP?: { type?: number; code?: number };
  source?: RuleEntity;
  destination?: RuleEntity;
}

export interface Profile {
  kind: 'Profile';
  apiVersion: 'projectcalico.org/v3';
  metadata: { name: string; annotations?: Record<string, string>; creationTimestamp?: string };
  spec: { ingress: Rule[]; egress: Rule[]; labelsToApply: Record<string, string> };
}

/** The addresses of an endpoint, without their /32 or /128. */
export const endpointAddresses = (endpoint: WorkloadEndpoint | undefined): IpAddr[] =>
  (endpoint?.spec.ipNetworks ?? []).map((n) => parseIp(n.split('/')[0]!));

/** Annotations of ours on Calico objects. */
export const NETWORK_NAME_ANNOTATION = 'libnetwork.projectcalico.org/network-name';
/** On an endpoint: the name of its Docker network (its profiles may be changed; this stays). */
export const NETWORK_ANNOTATION = 'libnetwork.projectcalico.org/network';
/** On an endpoint: the names Docker resolves to it in its network (name, aliases, short ID), a JSON list. */
export const DNS_NAMES_ANNOTATION = 'libnetwork.projectcalico.org/dns-names';
/** On an endpoint: the DNS servers the container was given (`--dns`, daemon.json `dns`), comma separated. */
export const DNS_SERVERS_ANNOTATION = 'libnetwork.projectcalico.org/dns-servers';
/** On an endpoint: the container's network namespace (Docker's sandbox key) and the gateway it was given. */
export const SANDBOX_ANNOTATION = 'libnetwork.projectcalico.org/sandbox';
export const GATEWAY_ANNOTATION = 'libnetwork.projectcalico.org/gateway';
export const HANDLES_ANNOTATION = 'libnetwork.projectcalico.org/ipam-handles';
/** The ports `docker run -p` published for an endpoint, host ports resolved. */
export const PORT_MAP_ANNOTATION = 'libnetwork.projectcalico.org/port-map';

export type PortProtocol = 'tcp' | 'udp' | 'sctp';

export interface PortMapping {
  protocol: PortProtocol;
  /** The host address it is published on; '' for every address of the host. */
  hostIp: string;
  hostPort: number;
  port: number;
}

const isPort = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;

/** An endpoint's published ports; entries that are not well formed (written by others) are left out. */
export function portMappings(endpoint: WorkloadEndpoint): PortMapping[] {
  const text = endpoint.metadata.annotations?.[PORT_MAP_ANNOTATION];
  // Most endpoints publish nothing: the policy agent asks for every endpoint on every apply.
  if (text === undefined || text === '[]') return [];
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(
      (m): m is PortMapping => ['tcp', 'udp', 'sctp'].includes(m?.protocol) && isPort(m.hostPort) && isPort(m.port) && typeof (m.hostIp ?? '') === 'string',
    );
  } catch {
    return [];
  }
}

/** The names an endpoint answers to in DNS; entries that are not strings (written by others) are left out. */
export function dnsNames(endpoint: WorkloadEndpoint): string[] {
  try {
    const parsed = JSON.parse(endpoint.metadata.annotations?.[DNS_NAMES_ANNOTATION] ?? '[]') as unknown;
    return Array.isArray(parsed) ? parsed.filter((n): n is string => typeof n === 'string' && n !== '') : [];
  } catch {
    return [];
  }
}

/** Calico's name for a libnetwork endpoint: `<node>-libnetwork-libnetwork-<EndpointID>`, a `-` in the node doubled. */
export const workloadEndpointName = (node: string, endpointId: string): string =>
  `${node.replace(/-/g, '--')}-libnetwork-libnetwork-${endpointId}`;

/** Host side of the veth, as Calico names it: IFNAMSIZ allows 15 characters. */
export const hostInterfaceName = (endpointId: string): string => `cali${endpointId.slice(0, 11)}`;
export const tempInterfaceName = (endpointId: string): string => `temp${endpointId.slice(0, 11)}`;

/** The default profile of a Docker network: members may reach each other, and anything outbound. */
export function defaultProfile(networkId: string, networkName: string): Profile {
  return {
    kind: 'Profile',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: networkId, annotations: { [NETWORK_NAME_ANNOTATION]: networkName }, creationTimestamp: new Date().toISOString() },
    spec: {
      ingress: [{ action: 'Allow', source: { selector: `has(${networkName})` } }],
      egress: [{ action: 'Allow' }],
      labelsToApply: { [networkName]: '' },
    },
  };
}
