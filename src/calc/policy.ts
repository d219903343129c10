import { createHash } from 'node:crypto';
import { formatCidr, IpFamily, parseCidr } from '../domain/cidr.js';
import type { Profile, Rule, RuleEntity, WorkloadEndpoint } from '../domain/endpoint-model.js';
import { dnsRedirectRules, localhostSnat, IPIP_HOSTS_SET, PUBLISH_CHAIN, publishedAccepts, publishRules, TunnelFirewall, tunnelInputRules, tunnelOutputRules, VXLAN_HOSTS_SET } from './host-rules.js';
import { parseSelector, Selector } from './selector.js';

/**
 * Profiles, endpoints and pools in; the iptables chains and ipsets that enforce them out. Pure: no
 * I/O, so the whole mapping is tested table-driven and the adapter only diffs and writes.
 *
 * Chains follow Felix: FORWARD/INPUT/OUTPUT jump to cali-FORWARD/-INPUT/-OUTPUT; packets from and to
 * workloads are dispatched to per-endpoint chains (cali-fw-<iface> outbound, cali-tw-<iface>
 * inbound) which run the endpoint's profiles (cali-pro-/cali-pri-<profile>) and drop what no profile
 * allows. Dispatch is by the workload's address, so an address routed through a sibling's veth (a
 * container on two networks) is still policed as its own endpoint. Tags and selectors become ipsets
 * holding the addresses of every matching endpoint of every node: one rule per rule, never one per member.
 */

export const ACCEPT_MARK = '0x1000000';
const MARK = `${ACCEPT_MARK}/${ACCEPT_MARK}`;
export const WORKLOAD_PREFIX = 'cali';
const BGP_PORT = 179;

export interface PoolInfo {
  cidr: string;
  natOutgoing: boolean;
}

export interface PolicyInput {
  node: string;
  endpoints: WorkloadEndpoint[];
  profiles: Profile[];
  pools: PoolInfo[];
  /** This host's IPv4 address: the source of published-port traffic that came from localhost. */
  hostAddress?: string;
  /** VXLAN and IPIP in use between hosts, and the other hosts allowed to send them. */
  tunnels?: TunnelFirewall;
  /** Containers' DNS queries to these servers go to the daemon's name service on 127.0.0.1 instead. */
  dnsRedirects?: { upstream: string; port: number }[];
}

export interface IpSet {
  family: IpFamily;
  type: 'hash:ip' | 'hash:net';
  members: string[];
}

/** Chain name → rules (each rule the text after `-A <chain> `). */
export type Chains = Map<string, string[]>;

export interface DesiredDataplane {
  ipsets: Map<string, IpSet>;
  /** Per family, per table. */
  tables: Record<IpFamily, { filter: Chains; nat: Chains }>;
}

/** Jumps from the kernel's chains into ours, inserted once at the top. */
export const HOOKS: { table: 'filter' | 'nat'; chain: string; target: string }[] = [
  { table: 'filter', chain: 'FORWARD', target: 'cali-FORWARD' },
  { table: 'filter', chain: 'INPUT', target: 'cali-INPUT' },
  { table: 'filter', chain: 'OUTPUT', target: 'cali-OUTPUT' },
  { table: 'nat', chain: 'POSTROUTING', target: 'cali-POSTROUTING' },
  { table: 'nat', chain: 'PREROUTING', target: 'cali-PREROUTING' },
  { table: 'nat', chain: 'OUTPUT', target: 'cali-OUTPUT' },
];

const hash = (text: string, length: number): string => createHash('sha224').update(text).digest('base64url').slice(0, length);

/** Chain names are limited to 28 characters: longer ones keep their prefix and get a hash. */
export function chainName(prefix: string, name: string): string {
  const full = `${prefix}${name}`;
  return full.length <= 28 ? full : `${prefix}${hash(name, 28 - prefix.length)}`;
}

/** ipset names are limited to 31 characters. */
export const selectorSetName = (family: IpFamily, selector: string): string => `cali${family}-s:${hash(`s:${selector}`, 23)}`;
const netSetName = (family: IpFamily, nets: string[]): string => `cali${family}-n:${hash(`n:${nets.join(',')}`, 23)}`;
export const MASQ_POOLS = (family: IpFamily): string => `cali${family}-masq-ipam-pools`;
export const ALL_POOLS = (family: IpFamily): string => `cali${family}-all-ipam-pools`;

const familyOf = (cidr: string): IpFamily => (cidr.includes(':') ? 6 : 4);
const hostAddress = (cidr: string): string => cidr.split('/')[0]!;

interface EndpointView {
  endpoint: WorkloadEndpoint;
  labels: Record<string, string>;
}

/** Endpoint labels as selectors see them: the profiles' labelsToApply, then the endpoint's own (which win). */
function labelled(endpoints: WorkloadEndpoint[], profiles: Map<string, Profile>): EndpointView[] {
  return endpoints.map((endpoint) => {
    const inherited = Object.assign({}, ...endpoint.spec.profiles.map((p) => profiles.get(p)?.spec.labelsToApply ?? {}));
    return { endpoint, labels: { ...inherited, ...endpoint.metadata.labels } };
  });
}

class Renderer {
  readonly ipsets = new Map<string, IpSet>();
  private readonly selectors = new Map<string, Selector>();

  constructor(
    private readonly views: EndpointView[],
    private readonly family: IpFamily,
  ) {}

  /** The ipset of a selector, filled with the addresses (of this family) of every matching endpoint. */
  selectorSet(selector: string): string {
    const name = selectorSetName(this.family, selector);
    if (this.ipsets.has(name)) return name;
    let predicate = this.selectors.get(selector);
    if (!predicate) {
      predicate = parseSelector(selector);
      this.selectors.set(selector, predicate);
    }
    const members = this.views
      .filter((v) => predicate(v.labels))
      .flatMap((v) => v.endpoint.spec.ipNetworks.filter((n) => familyOf(n) === this.family).map(hostAddress));
    this.ipsets.set(name, { family: this.family, type: 'hash:ip', members: [...new Set(members)].sort() });
    return name;
  }

  private netSet(nets: string[]): string {
    const name = netSetName(this.family, nets);
    this.ipsets.set(name, { family: this.family, type: 'hash:net', members: [...nets].sort() });
    return name;
  }

  /** Match fragments for one side of a rule; undefined when the rule cannot apply to this family. */
  private entity(entity: RuleEntity | undefined, side: 'src' | 'dst', protocol: string | undefined): string[][] | undefined {
    const flag = side === 'src' ? '-s' : '-d';
    let alternatives: string[][] = [[]];
    if (entity?.nets?.length) {
      const nets = entity.nets.filter((n) => familyOf(n) === this.family);
      if (nets.length === 0) return undefined;
      alternatives = nets.map((n) => [`${flag} ${formatCidr(parseCidr(n))}`]);
    }
    const extra: string[] = [];
    if (entity?.notNets?.length) {
      const nets = entity.notNets.filter((n) => familyOf(n) === this.family).map((n) => formatCidr(parseCidr(n)));
      if (nets.length === 1) extra.push(`! ${flag} ${nets[0]}`);
      else if (nets.length > 1) extra.push(`-m set ! --match-set ${this.netSet(nets)} ${side}`);
    }
    if (entity?.selector) extra.push(`-m set --match-set ${this.selectorSet(entity.selector)} ${side}`);
    if (entity?.notSelector) extra.push(`-m set ! --match-set ${this.selectorSet(entity.notSelector)} ${side}`);
    if (entity?.ports?.length) extra.push(`-m multiport --${side === 'src' ? 'sports' : 'dports'} ${portList(entity.ports)}`);
    if (entity?.notPorts?.length) extra.push(`-m multiport ! --${side === 'src' ? 'sports' : 'dports'} ${portList(entity.notPorts)}`);
    if ((entity?.ports?.length || entity?.notPorts?.length) && protocol !== 'tcp' && protocol !== 'udp') return undefined;
    return alternatives.map((a) => [...a, ...extra]);
  }

  /** One profile rule as iptables rules (several when it lists several nets). */
  rule(rule: Rule): string[] {
    if (rule.ipVersion !== undefined && rule.ipVersion !== this.family) return [];
    const protocol = rule.protocol === undefined ? undefined : String(rule.protocol).toLowerCase();
    if ((protocol === 'icmp' && this.family === 6) || ((protocol === 'icmpv6' || protocol === '58') && this.family === 4)) return [];
    const base: string[] = [];
    if (protocol) base.push(`-p ${protocol === 'icmpv6' ? 'ipv6-icmp' : protocol}`);
    if (rule.notProtocol !== undefined) base.push(`! -p ${String(rule.notProtocol).toLowerCase()}`);
    for (const [icmp, negate] of [[rule.icmp, ''], [rule.notICMP, '! ']] as const) {
      if (icmp?.type === undefined) continue;
      const value = icmp.code === undefined ? `${icmp.type}` : `${icmp.type}/${icmp.code}`;
      base.push(this.family === 4 ? `-m icmp ${negate}--icmp-type ${value}` : `-m icmp6 ${negate}--icmpv6-type ${value}`);
    }
    const sources = this.entity(rule.source, 'src', protocol);
    const destinations = this.entity(rule.destination, 'dst', protocol);
    if (!sources || !destinations) return [];
    const matches = sources.flatMap((s) => destinations.map((d) => [...base, ...s, ...d].join(' ')));
    return matches.flatMap((match) => {
      const m = match === '' ? '' : `${match} `;
      switch (rule.action) {
        case 'Allow':
          return [`${m}-j MARK --set-mark ${MARK}`, `-m mark --mark ${MARK} -j RETURN`];
        case 'Deny':
          return [`${m}-j DROP`];
        case 'Log':
          return [`${m}-j LOG --log-prefix "calico-packet: " --log-level 5`];
        default:
          return [];
      }
    });
  }
}

/** Ports as multiport takes them: ranges `a:b`. Calico writes ranges as "a:b" or "a-b". */
function portList(ports: (number | string)[]): string {
  return ports.map((p) => String(p).replace('-', ':')).join(',');
}

/** `published`: the endpoint's published ports, let in before any profile has its say. */
function endpointChain(direction: 'tw' | 'fw', profiles: string[], known: Set<string>, published: string[] = []): string[] {
  const rules = ['-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-m conntrack --ctstate INVALID -j DROP', ...published, `-j MARK --set-mark 0x0/${ACCEPT_MARK}`];
  for (const profile of profiles) {
    if (!known.has(profile)) continue;
    rules.push(`-j ${chainName(direction === 'tw' ? 'cali-pri-' : 'cali-pro-', profile)}`, `-m mark --mark ${MARK} -j RETURN`);
  }
  rules.push('-j DROP');
  return rules;
}

function familyTables(input: PolicyInput, views: EndpointView[], profiles: Map<string, Profile>, family: IpFamily, ipsets: Map<string, IpSet>) {
  const renderer = new Renderer(views, family);
  const filter: Chains = new Map();
  // Only endpoints with an address of this family need chains here: an IPv4-only host writes no IPv6 rules.
  const local = views
    .filter((v) => v.endpoint.spec.node === input.node && v.endpoint.spec.ipNetworks.some((n) => familyOf(n) === family))
    .sort((a, b) => a.endpoint.spec.interfaceName.localeCompare(b.endpoint.spec.interfaceName));
  const usedProfiles = new Set(local.flatMap((v) => v.endpoint.spec.profiles).filter((p) => profiles.has(p)));
  const toDispatch: string[] = [];
  const fromDispatch: string[] = [];
  for (const { endpoint } of local) {
    const networks = endpoint.spec.ipNetworks.filter((n) => familyOf(n) === family);
    const iface = endpoint.spec.interfaceName;
    const tw = chainName('cali-tw-', iface);
    const fw = chainName('cali-fw-', iface);
    filter.set(tw, endpointChain('tw', endpoint.spec.profiles, usedProfiles, family === 4 ? publishedAccepts(endpoint) : []));
    filter.set(fw, endpointChain('fw', endpoint.spec.profiles, usedProfiles));
    for (const network of networks) {
      toDispatch.push(`-d ${network} -g ${tw}`);
      fromDispatch.push(`-s ${network} -g ${fw}`);
    }
  }
  for (const name of [...usedProfiles].sort()) {
    const profile = profiles.get(name)!;
    filter.set(chainName('cali-pri-', name), profile.spec.ingress.flatMap((r) => renderer.rule(r)));
    filter.set(chainName('cali-pro-', name), profile.spec.egress.flatMap((r) => renderer.rule(r)));
  }
  const w = `${WORKLOAD_PREFIX}+`;
  filter.set('cali-to-wl-dispatch', [...toDispatch, '-j DROP']);
  filter.set('cali-from-wl-dispatch', [...fromDispatch, '-j DROP']);
  filter.set('cali-FORWARD', [`-i ${w} -j cali-from-wl-dispatch`, `-o ${w} -j cali-to-wl-dispatch`, `-i ${w} -j ACCEPT`, `-o ${w} -j ACCEPT`]);
  // Workload to host: the workload's outbound rules, then the host's own INPUT rules. BGP between
  // hosts always passes, whatever the host's own firewall does with the rest (Felix's failsafe ports).
  const tunnels = family === 4 ? input.tunnels : undefined;
  filter.set('cali-INPUT', [`-i ${w} -j cali-wl-to-host`, ...tunnelInputRules(tunnels), `! -i ${w} -j cali-failsafe-in`]);
  const failsafe = [`-p tcp --dport ${BGP_PORT} -j ACCEPT`, `-p tcp --sport ${BGP_PORT} -m conntrack --ctstate ESTABLISHED -j ACCEPT`];
  filter.set('cali-failsafe-in', failsafe);
  filter.set('cali-failsafe-out', failsafe);
  // IPv6 neighbour discovery and multicast listener messages always pass (Felix allows 130-133, 135, 136).
  const icmpv6 = family === 6 ? [130, 131, 132, 133, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`) : [];
  // A DNS query redirected to the name service, once the workload's outbound rules let it go to its server.
  const redirected = family === 4 && input.dnsRedirects?.length ? ['-m conntrack --ctstate DNAT --ctorigdstport 53 -d 127.0.0.1/32 -j ACCEPT'] : [];
  filter.set('cali-wl-to-host', [...icmpv6, '-j cali-from-wl-dispatch', ...redirected, '-j RETURN']);
  // Host to its own workloads is not policed (as Felix): contacting them from the host is useful.
  filter.set('cali-OUTPUT', [`-o ${w} -j RETURN`, ...tunnelOutputRules(tunnels), '-j cali-failsafe-out']);
  if (tunnels?.vxlanPort) ipsets.set(VXLAN_HOSTS_SET, { family, type: 'hash:net', members: [...tunnels.hosts].sort() });
  if (tunnels?.ipip) ipsets.set(IPIP_HOSTS_SET, { family, type: 'hash:net', members: [...tunnels.hosts].sort() });

  const nat: Chains = new Map();
  const pools = input.pools.filter((p) => familyOf(p.cidr) === family);
  const masq = pools.filter((p) => p.natOutgoing);
  // Published ports: to any of the host's addresses, from outside (PREROUTING) or from the host itself (OUTPUT).
  const published = family === 4 ? publishRules(local.map((v) => v.endpoint)) : [];
  nat.set('cali-PREROUTING', [...(family === 4 ? dnsRedirectRules(input.dnsRedirects ?? [], w) : []), `-m addrtype --dst-type LOCAL -j ${PUBLISH_CHAIN}`]);
  nat.set('cali-OUTPUT', [`-m addrtype --dst-type LOCAL -j ${PUBLISH_CHAIN}`]);
  nat.set(PUBLISH_CHAIN, published);
  nat.set('cali-POSTROUTING', ['-j cali-nat-outgoing', ...(family === 4 ? localhostSnat(input.hostAddress, published.length > 0, w) : [])]);
  nat.set('cali-nat-outgoing', masq.length ? [`-m set --match-set ${MASQ_POOLS(family)} src -m set ! --match-set ${ALL_POOLS(family)} dst -j MASQUERADE`] : []);
  ipsets.set(MASQ_POOLS(family), { family, type: 'hash:net', members: masq.map((p) => formatCidr(parseCidr(p.cidr))).sort() });
  ipsets.set(ALL_POOLS(family), { family, type: 'hash:net', members: pools.map((p) => formatCidr(parseCidr(p.cidr))).sort() });
  for (const [name, set] of renderer.ipsets) ipsets.set(name, set);
  return { filter, nat };
}

export function desiredDataplane(input: PolicyInput): DesiredDataplane {
  const profiles = new Map(input.profiles.map((p) => [p.metadata.name, p]));
  const views = labelled(input.endpoints, profiles);
  const ipsets = new Map<string, IpSet>();
  return {
    ipsets,
    tables: { 4: familyTables(input, views, profiles, 4, ipsets), 6: familyTables(input, views, profiles, 6, ipsets) },
  };
}
