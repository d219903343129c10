import { formatCidr, formatIp, parseCidr, parseIp } from '../domain/cidr.js';
import { DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND, FailsafePort, HostEndpoint } from '../domain/policy-model.js';
import { byText } from '../domain/text-order.js';

/**
 * Host endpoints, pure: which of this host's interfaces each HostEndpoint polices (Felix's
 * resolveHostEndpoints), and the failsafe ports as iptables rules.
 */

/** One of the host's interfaces with its addresses (no prefix length). */
export interface HostInterfaceInfo {
  name: string;
  addresses: string[];
}

export interface ResolvedHostEndpoints {
  /** Interface → the host endpoint that polices it. */
  byInterface: Map<string, HostEndpoint>;
  /** `interfaceName: '*'`: every other interface of the host but workload ones and lo. */
  wildcard?: HostEndpoint;
}

/** Chain suffix of the wildcard host endpoint: longer than any interface name (15), so it names no interface. */
export const WILDCARD_SUFFIX = 'wildcard-endpoint';
const INTERFACE_NAME = /^[a-zA-Z0-9_.-]{1,15}$/;

const sameIp = (a: string, b: string): boolean => {
  try {
    return formatIp(parseIp(a)) === formatIp(parseIp(b));
  } catch {
    return false;
  }
};

/**
 * This node's host endpoints on its interfaces: an explicit interface name wins; otherwise the
 * interfaces holding one of its expectedIPs; one endpoint per interface, the alphabetically first
 * when several claim it; the first wildcard endpoint is the default for all the rest. Names that
 * are not interface names (written by others) are ignored: they would end up in iptables rules.
 */
export function resolveHostEndpoints(endpoints: HostEndpoint[], node: string, interfaces: HostInterfaceInfo[], workloadPrefix: string): ResolvedHostEndpoints {
  const local = endpoints.filter((e) => e.spec?.node === node).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  const byInterface = new Map<string, HostEndpoint>();
  let wildcard: HostEndpoint | undefined;
  for (const endpoint of local) {
    const name = endpoint.spec.interfaceName;
    if (name === '*') wildcard ??= endpoint;
    else if (name && INTERFACE_NAME.test(name) && !byInterface.has(name)) byInterface.set(name, endpoint);
  }
  for (const endpoint of local) {
    if (endpoint.spec.interfaceName) continue;
    const expected = endpoint.spec.expectedIPs ?? [];
    for (const iface of [...interfaces].sort((a, b) => byText(a.name, b.name))) {
      if (byInterface.has(iface.name) || iface.name.startsWith(workloadPrefix) || !INTERFACE_NAME.test(iface.name)) continue;
      if (iface.addresses.some((address) => expected.some((ip) => sameIp(ip, address)))) byInterface.set(iface.name, endpoint);
    }
  }
  return { byInterface, ...(wildcard ? { wildcard } : {}) };
}

/** The addresses of a host endpoint, as rule selectors match them: its expectedIPs that parse. */
export function hostEndpointAddresses(endpoint: HostEndpoint): string[] {
  return (endpoint.spec?.expectedIPs ?? []).flatMap((ip) => {
    try {
      return [formatIp(parseIp(ip))];
    } catch {
      return [];
    }
  });
}

export interface FailsafeRule {
  protocol: 'tcp' | 'udp' | 'sctp';
  port: number;
  net?: string;
}

/** A configured failsafe list as it can be programmed: entries that do not make sense are left out; none configured = Felix's defaults. */
export function failsafeList(configured: FailsafePort[] | undefined, direction: 'in' | 'out'): FailsafeRule[] {
  const list = Array.isArray(configured) ? configured : direction === 'in' ? DEFAULT_FAILSAFE_INBOUND : DEFAULT_FAILSAFE_OUTBOUND;
  const rules: FailsafeRule[] = [];
  for (const entry of list) {
    const protocol = String(entry?.protocol ?? 'tcp').toLowerCase();
    const port = Number(entry?.port);
    if ((protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    let net: string | undefined;
    if (entry.net) {
      try {
        net = formatCidr(parseCidr(entry.net.includes('/') ? entry.net : `${entry.net}/${entry.net.includes(':') ? 128 : 32}`));
      } catch {
        continue;
      }
    }
    rules.push({ protocol, port, ...(net ? { net } : {}) });
  }
  return rules;
}

/**
 * Failsafe accepts for one table: `ports` matched as destination ports (the connections the list
 * names), `replies` as source ports (raw only: untracked traffic has no conntrack to let replies
 * back). `netFlag` says which side `net` is.
 */
export function failsafeRules(ports: FailsafeRule[], replies: FailsafeRule[], netFlag: '-s' | '-d', family: 4 | 6): string[] {
  const ofFamily = (r: FailsafeRule): boolean => !r.net || r.net.includes(':') === (family === 6);
  const render = (r: FailsafeRule, side: 'dport' | 'sport'): string => `-p ${r.protocol} -m ${r.protocol} --${side} ${r.port}${r.net ? ` ${netFlag} ${r.net}` : ''} -j ACCEPT`;
  return [...ports.filter(ofFamily).map((r) => render(r, 'dport')), ...replies.filter(ofFamily).map((r) => render(r, 'sport'))];
}
