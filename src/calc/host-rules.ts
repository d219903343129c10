import { portMappings, WorkloadEndpoint } from '../domain/endpoint-model.js';
import { formatIp, parseIp } from '../domain/cidr.js';

/**
 * The host side of the packet filter beyond profiles: ports published with `docker run -p` (DNAT to
 * the container from the host's addresses, localhost included, let through whatever the profile
 * says), and the tunnels between hosts (VXLAN and IPIP only from other Calico hosts). Pure.
 */

export const PUBLISH_CHAIN = 'cali-publish';
export const VXLAN_HOSTS_SET = 'cali4-all-vxlan-net';
export const IPIP_HOSTS_SET = 'cali4-all-hosts-net';

export interface TunnelFirewall {
  /** Other hosts' addresses (Calico nodes). */
  hosts: string[];
  vxlanPort?: number;
  ipip: boolean;
}

/** DNAT rules of `cali-publish` for this host's endpoints (IPv4). */
export function publishRules(local: WorkloadEndpoint[]): string[] {
  const rules: string[] = [];
  const publishing = local.map((endpoint) => ({ endpoint, mappings: portMappings(endpoint) })).filter((p) => p.mappings.length > 0);
  // In the order of their interfaces: the same endpoints, the same chain, whatever order they came in.
  publishing.sort((a, b) => (a.endpoint.spec.interfaceName < b.endpoint.spec.interfaceName ? -1 : a.endpoint.spec.interfaceName > b.endpoint.spec.interfaceName ? 1 : 0));
  for (const { endpoint, mappings } of publishing) {
    const address = endpoint.spec.ipNetworks.find((n) => !n.includes(':'))?.split('/')[0];
    if (!address) continue;
    for (const mapping of mappings) {
      if (mapping.hostIp.includes(':')) continue;
      const destination = mapping.hostIp && mapping.hostIp !== '0.0.0.0' ? `-d ${formatIp(parseIp(mapping.hostIp))}/32 ` : '';
      rules.push(`${destination}-p ${mapping.protocol} -m ${mapping.protocol} --dport ${mapping.hostPort} -j DNAT --to-destination ${address}:${mapping.port}`);
    }
  }
  return rules;
}

/** What the endpoint's inbound chain lets through before its profiles: connections to its published ports. */
export function publishedAccepts(endpoint: WorkloadEndpoint): string[] {
  return portMappings(endpoint).map((m) => `-p ${m.protocol} -m ${m.protocol} --dport ${m.port} -m conntrack --ctstate DNAT --ctorigdstport ${m.hostPort} -j ACCEPT`);
}

/**
 * Traffic to `localhost:<published port>` leaves towards the container with source 127.0.0.1, which
 * the container cannot answer: it gets the host's address instead (cali veths have none of their own).
 */
export function localhostSnat(hostAddress: string | undefined, anyPublished: boolean, workloads: string): string[] {
  return hostAddress && anyPublished ? [`-o ${workloads} -s 127.0.0.0/8 -j SNAT --to-source ${hostAddress}`] : [];
}

/** VXLAN and IPIP packets are taken from other Calico hosts only, as Felix does. */
export function tunnelInputRules(tunnels: TunnelFirewall | undefined): string[] {
  if (!tunnels) return [];
  const rules: string[] = [];
  if (tunnels.vxlanPort) {
    rules.push(
      `-p udp -m udp --dport ${tunnels.vxlanPort} -m set --match-set ${VXLAN_HOSTS_SET} src -m addrtype --dst-type LOCAL -j ACCEPT`,
      `-p udp -m udp --dport ${tunnels.vxlanPort} -m addrtype --dst-type LOCAL -j DROP`,
    );
  }
  if (tunnels.ipip) rules.push(`-p 4 -m set --match-set ${IPIP_HOSTS_SET} src -j ACCEPT`, '-p 4 -j DROP');
  return rules;
}

export function tunnelOutputRules(tunnels: TunnelFirewall | undefined): string[] {
  if (!tunnels) return [];
  const rules: string[] = [];
  if (tunnels.vxlanPort) rules.push(`-p udp -m udp --dport ${tunnels.vxlanPort} -m set --match-set ${VXLAN_HOSTS_SET} dst -j ACCEPT`);
  if (tunnels.ipip) rules.push(`-p 4 -m set --match-set ${IPIP_HOSTS_SET} dst -j ACCEPT`);
  return rules;
}

/**
 * Containers' DNS queries to an upstream server, sent from their own namespace (Docker's embedded
 * resolver forwards there), go to the name service's port for that server instead. cali veths have
 * route_localnet, so 127.0.0.1 is a valid destination from them.
 */
export function dnsRedirectRules(redirects: { upstream: string; port: number }[], workloads: string): string[] {
  return redirects.flatMap(({ upstream, port }) =>
    (['udp', 'tcp'] as const).map((p) => `-i ${workloads} -d ${upstream}/32 -p ${p} -m ${p} --dport 53 -j DNAT --to-destination 127.0.0.1:${port}`),
  );
}
