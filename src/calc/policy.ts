import { createHash } from 'node:crypto';
import { formatCidr, IpFamily, parseCidr } from '../domain/cidr.js';
import type { Profile, Rule, RuleEntity, WorkloadEndpoint } from '../domain/endpoint-model.js';
import { dnsRedirectRules, localhostSnat, IPIP_HOSTS_SET, PUBLISH_CHAIN, publishedAccepts, publishRules, TunnelFirewall, tunnelInputRules, tunnelOutputRules, VXLAN_HOSTS_SET } from './host-rules.js';
import { parseSelector, Selector } from './selector.js';
import { DispatchEntry, dispatchTree } from './dispatch.js';
import { applicableTiers, hostTiers, namespaced, NAMESPACE_LABEL, orderedTiers, PolicyView, TierView } from './tiers.js';
import type { EndpointPort, FailsafePort, GlobalNetworkPolicy, HostEndpoint, NetworkPolicy, NetworkSet, Tier } from '../domain/policy-model.js';
import { failsafeList, failsafeRules, FailsafeRule, hostEndpointAddresses, HostInterfaceInfo, resolveHostEndpoints, WILDCARD_SUFFIX } from './host-endpoints.js';
import { byText } from '../domain/text-order.js';

/**
 * Profiles, endpoints and pools in; the iptables chains and ipsets that enforce them out. Pure: no
 * I/O, so the whole mapping is tested table-driven and the adapter only diffs and writes.
 *
 * Chains follow Felix: FORWARD/INPUT/OUTPUT jump to cali-FORWARD/-INPUT/-OUTPUT; packets from and to
 * workloads are dispatched to endpoint chains (cali-fw-<hash> outbound, cali-tw-<hash> inbound,
 * named by their content and shared by the endpoints they fit) which run the endpoint's tiers and
 * profiles (cali-pro-/cali-pri-<profile>) and drop what nothing allows. Dispatch is by the
 * workload's address, so an address routed through a sibling's veth (a
 * container on two networks) is still policed as its own endpoint. Tags and selectors become ipsets
 * holding the addresses of every matching endpoint of every node: one rule per rule, never one per member.
 */

export const ACCEPT_MARK = '0x1000000';
const MARK = `${ACCEPT_MARK}/${ACCEPT_MARK}`;
/** Set by a Pass rule: the rest of the tier is skipped, and so is its default action. */
export const PASS_MARK = '0x2000000';
const PASS = `${PASS_MARK}/${PASS_MARK}`;
const NOT_PASSED = `0x0/${PASS_MARK}`;
/** Both of our bits cleared: what raw and mangle do before host endpoint policy. */
const CLEAR_MARKS = '0x0/0x3000000';
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
  /** Calico v3's policy model: tiers, policies of both kinds, and the network sets rule selectors match. */
  tiers?: Tier[];
  policies?: (GlobalNetworkPolicy | NetworkPolicy)[];
  networkSets?: NetworkSet[];
  /** HostEndpoints of every node: this node's police its interfaces; all are members of the sets rule selectors make. */
  hostEndpoints?: HostEndpoint[];
  /** The host's interfaces and addresses: how a host endpoint without an interface name finds its interface. */
  interfaces?: HostInterfaceInfo[];
  /** FelixConfiguration's failsafe ports (none given = Felix's defaults; BGP always passes). */
  failsafeInbound?: FailsafePort[];
  failsafeOutbound?: FailsafePort[];
  /** The verdict after a workload's egress policy for packets to the host itself (default Return, as calico/node sets it). */
  defaultEndpointToHostAction?: 'Drop' | 'Accept' | 'Return';
}

export interface IpSet {
  family: IpFamily;
  type: 'hash:ip' | 'hash:net' | 'hash:ip,port';
  members: string[];
}

/** Chain name → rules (each rule the text after `-A <chain> `). */
export type Chains = Map<string, string[]>;

export interface DesiredDataplane {
  /** Policies that could not be rendered (written by others, unvalidated): each denies all it selects, and says why. */
  invalid: string[];
  ipsets: Map<string, IpSet>;
  /** Per family, per table. */
  tables: Record<IpFamily, Record<IptablesTable, Chains>>;
}

export type IptablesTable = 'filter' | 'nat' | 'raw' | 'mangle';

/** Jumps from the kernel's chains into ours, inserted once at the top. */
export const HOOKS: { table: IptablesTable; chain: string; target: string }[] = [
  { table: 'filter', chain: 'FORWARD', target: 'cali-FORWARD' },
  { table: 'filter', chain: 'INPUT', target: 'cali-INPUT' },
  { table: 'filter', chain: 'OUTPUT', target: 'cali-OUTPUT' },
  { table: 'nat', chain: 'POSTROUTING', target: 'cali-POSTROUTING' },
  { table: 'nat', chain: 'PREROUTING', target: 'cali-PREROUTING' },
  { table: 'nat', chain: 'OUTPUT', target: 'cali-OUTPUT' },
  // Host endpoints' untracked (doNotTrack) and pre-DNAT policies, as Felix hooks them.
  { table: 'raw', chain: 'PREROUTING', target: 'cali-PREROUTING' },
  { table: 'raw', chain: 'OUTPUT', target: 'cali-OUTPUT' },
  { table: 'mangle', chain: 'PREROUTING', target: 'cali-PREROUTING' },
];

const hash = (text: string, length: number): string => createHash('sha224').update(text).digest('base64url').slice(0, length);

/** Chain names are limited to 28 characters: longer ones keep their prefix and get a hash. */
export function chainName(prefix: string, name: string): string {
  const full = `${prefix}${name}`;
  if (full.length <= 28) return full;
  let hashed = hashedNames.get(full);
  if (hashed === undefined) {
    hashed = `${prefix}${hash(name, 28 - prefix.length)}`;
    // Every apply names the same chains again: their hashes are kept (a bounded cache, emptied when full).
    if (hashedNames.size > 100_000) hashedNames.clear();
    hashedNames.set(full, hashed);
  }
  return hashed;
}
const hashedNames = new Map<string, string>();

/** ipset names are limited to 31 characters. */
export const selectorSetName = (family: IpFamily, selector: string): string => `cali${family}-s:${hash(`s:${selector}`, 23)}`;
/** A selector that also matches network sets holds networks: a set of another type, so another name. */
const selectorNetSetName = (family: IpFamily, selector: string): string => `cali${family}-s:${hash(`sn:${selector}`, 23)}`;
const namedPortSetName = (family: IpFamily, key: string): string => `cali${family}-p:${hash(`p:${key}`, 23)}`;
const netSetName = (family: IpFamily, nets: string[]): string => `cali${family}-n:${hash(`n:${nets.join(',')}`, 23)}`;
export const MASQ_POOLS = (family: IpFamily): string => `cali${family}-masq-ipam-pools`;
export const ALL_POOLS = (family: IpFamily): string => `cali${family}-all-ipam-pools`;

const familyOf = (cidr: string): IpFamily => (cidr.includes(':') ? 6 : 4);
const hostAddress = (cidr: string): string => {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
};

interface EndpointView {
  endpoint: WorkloadEndpoint;
  labels: Record<string, string>;
  /** The labels as one canonical text: endpoints with the same key are the same to every selector. */
  labelsKey: string;
  /** Its addresses by family, without prefix lengths. */
  addresses: Record<IpFamily, string[]>;
}

/** A host endpoint as rule selectors see it: its labels, its expectedIPs and named ports. */
interface HostView {
  labels: Record<string, string>;
  addresses: string[];
  ports: EndpointPort[];
}

interface SetView {
  labels: Record<string, string>;
  nets: string[];
}

/** Network sets as selectors see them: a NetworkSet carries its namespace as a label, as Calico adds it. */
function networkSetViews(sets: NetworkSet[]): SetView[] {
  return sets.map((set) => ({
    labels: { ...set.metadata.labels, ...(set.kind === 'NetworkSet' && set.metadata.namespace ? { [NAMESPACE_LABEL]: set.metadata.namespace } : {}) },
    nets: (set.spec.nets ?? []).map(normalNet).filter((n): n is string => n !== undefined),
  }));
}

/** Calico takes a bare address as a net: its host prefix. */
const withPrefix = (net: string): string => (net.includes('/') ? net : `${net}/${net.includes(':') ? 128 : 32}`);

/** A net as ipset takes it; one that does not parse (written by others) is left out. */
function normalNet(net: string): string | undefined {
  try {
    return formatCidr(parseCidr(withPrefix(net)));
  } catch {
    return undefined;
  }
}

/** Views kept from earlier calculations: an endpoint unchanged, with its profiles' labels unchanged, is not labelled again. */
const viewMemo = new WeakMap<WorkloadEndpoint, { inherited: (Record<string, string> | undefined)[]; view: EndpointView }>();

/** Endpoint labels as selectors see them: the profiles' labelsToApply, then the endpoint's own (which win). */
function labelled(endpoints: WorkloadEndpoint[], profiles: Map<string, Profile>): EndpointView[] {
  return endpoints.map((endpoint) => {
    const inherited = endpoint.spec.profiles.map((p) => profiles.get(p)?.spec.labelsToApply);
    const known = viewMemo.get(endpoint);
    if (known && known.inherited.length === inherited.length && known.inherited.every((l, i) => sameLabels(l, inherited[i]))) return known.view;
    // Calico's client gives every endpoint its namespace as a label; endpoints written by others may lack it.
    const labels = { ...Object.assign({}, ...inherited), ...endpoint.metadata.labels, [NAMESPACE_LABEL]: endpoint.metadata.namespace } as Record<string, string>;
    const addresses = { 4: [] as string[], 6: [] as string[] };
    for (const network of endpoint.spec.ipNetworks) addresses[familyOf(network)].push(hostAddress(network));
    const view = { endpoint, labels, labelsKey: labelsKey(labels), addresses };
    viewMemo.set(endpoint, { inherited, view });
    return view;
  });
}

function sameLabels(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  if (a === b) return true;
  const keys = Object.keys(a ?? {});
  return keys.length === Object.keys(b ?? {}).length && keys.every((k) => a![k] === b?.[k]);
}

const labelsKey = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** A selector's endpoint addresses (counted: two endpoints may share one) as of a calculation. */
interface SelectorMembers {
  generation: number;
  counts: Map<string, number>;
  set: IpSet;
}

const selectorMembers = new Map<string, SelectorMembers>();
const SELECTOR_MEMBERS_LIMIT = 100_000;

/**
 * The endpoints that came and went between the last two calculations. Each calculation compares its
 * endpoints with the last one's and moves the generation on when they differ; members kept for the
 * generation before are moved on by this delta, older ones are made again.
 */
let endpointDelta: { generation: number; added: EndpointView[]; removed: EndpointView[]; views: Set<EndpointView> } = { generation: 0, added: [], removed: [], views: new Set() };

function advanceEndpoints(views: EndpointView[]): void {
  const last = endpointDelta.views;
  const current = new Set(views);
  const added = views.filter((v) => !last.has(v));
  const removed = [...last].filter((v) => !current.has(v));
  endpointDelta = added.length || removed.length ? { generation: endpointDelta.generation + 1, added, removed, views: current } : { ...endpointDelta, views: current };
}

/** What a set in a rule was made from: rendered rules are reused while each names the same set again. */
type SetUse =
  | { kind: 'selector'; selector: string }
  | { kind: 'namedPort'; port: string; protocol: string; selector: string | undefined }
  | { kind: 'nets'; nets: string[] };

interface RenderedRules {
  rules: string[];
  uses: { use: SetUse; name: string }[];
}

/** Rules rendered by earlier calculations, by the rule list (the same object while its resource is unchanged) and context. */
const renderedMemo = new WeakMap<Rule[], Map<string, RenderedRules>>();

class Renderer {
  readonly ipsets = new Map<string, IpSet>();
  private readonly selectors = new Map<string, Selector>();
  /** Endpoints by labels: a selector is evaluated once per distinct set of labels. */
  private classes: EndpointView[][] | undefined;
  /** Selector sets made in this calculation, by selector. */
  private readonly selectorSets = new Map<string, string>();
  /** The sets the rules being rendered use, while rendering for the memo. */
  private uses: { use: SetUse; name: string }[] | undefined;

  constructor(
    private readonly views: EndpointView[],
    private readonly sets: SetView[],
    private readonly family: IpFamily,
    private readonly hosts: HostView[] = [],
  ) {}

  private predicate(selector: string): Selector {
    let predicate = this.selectors.get(selector);
    if (!predicate) {
      predicate = parseSelector(selector);
      this.selectors.set(selector, predicate);
    }
    return predicate;
  }

  /**
   * The ipset of a selector: the addresses (of this family) of every matching endpoint, and the nets
   * of every matching network set (then a hash:net set).
   */
  private selectorSet(selector: string): string {
    const made = this.selectorSets.get(selector);
    if (made !== undefined) return made;
    const predicate = this.predicate(selector);
    const nets = this.sets.filter((s) => predicate(s.labels)).flatMap((s) => s.nets.filter((n) => familyOf(n) === this.family));
    const name = nets.length ? selectorNetSetName(this.family, selector) : selectorSetName(this.family, selector);
    this.selectorSets.set(selector, name);
    const endpoints = this.endpointMembers(selector, predicate);
    const hosts = this.hosts.filter((h) => predicate(h.labels)).flatMap((h) => h.addresses.filter((a) => familyOf(a) === this.family));
    if (nets.length) this.ipsets.set(name, { family: this.family, type: 'hash:net', members: [...new Set([...endpoints.set.members, ...hosts, ...nets])].sort() });
    else if (hosts.length) this.ipsets.set(name, { family: this.family, type: 'hash:ip', members: [...new Set([...endpoints.set.members, ...hosts])].sort() });
    else this.ipsets.set(name, endpoints.set);
    return name;
  }

  /**
   * The addresses of this family of the endpoints a selector matches: kept from the last calculation
   * and moved on by the endpoints that came and went since (a new endpoint costs a test per selector,
   * not a pass over every endpoint per selector). Unchanged, the set is the same object as before.
   */
  private endpointMembers(selector: string, predicate: Selector): SelectorMembers {
    const key = `${this.family}|${selector}`;
    let members = selectorMembers.get(key);
    const delta = endpointDelta;
    if (members && members.generation === delta.generation - 1) {
      const change = (views: EndpointView[], by: number): boolean => {
        let changed = false;
        for (const view of views) {
          if (!predicate(view.labels)) continue;
          for (const address of view.addresses[this.family]) {
            const count = (members!.counts.get(address) ?? 0) + by;
            if (count > 0) members!.counts.set(address, count);
            else members!.counts.delete(address);
            changed = true;
          }
        }
        return changed;
      };
      const removed = change(delta.removed, -1);
      if (change(delta.added, 1) || removed) members.set = { family: this.family, type: 'hash:ip', members: [...members.counts.keys()].sort() };
      members.generation = delta.generation;
    } else if (!members || members.generation !== delta.generation) {
      const counts = new Map<string, number>();
      for (const view of this.matching(predicate)) for (const address of view.addresses[this.family]) counts.set(address, (counts.get(address) ?? 0) + 1);
      members = { generation: delta.generation, counts, set: { family: this.family, type: 'hash:ip', members: [...counts.keys()].sort() } };
      if (selectorMembers.size >= SELECTOR_MEMBERS_LIMIT) selectorMembers.clear();
      selectorMembers.set(key, members);
    }
    return members;
  }

  /** The (address, port) pairs of a named port on the endpoints a selector matches (all, without one). */
  private namedPortSet(portName: string, protocol: string, selector: string | undefined): string {
    const name = namedPortSetName(this.family, `${selector ?? ''}|${protocol}|${portName}`);
    if (this.ipsets.has(name)) return name;
    const predicate = selector === undefined ? () => true : this.predicate(selector);
    const members = this.matching(predicate).flatMap((v) => {
        const port = v.endpoint.spec.ports?.find((p) => p.name === portName && (p.protocol ?? 'tcp').toLowerCase() === protocol);
        return port ? v.endpoint.spec.ipNetworks.filter((n) => familyOf(n) === this.family).map((n) => `${hostAddress(n)},${protocol}:${port.port}`) : [];
      });
    for (const host of this.hosts.filter((h) => predicate(h.labels))) {
      const port = host.ports.find((p) => p.name === portName && (p.protocol ?? 'tcp').toLowerCase() === protocol);
      if (port) members.push(...host.addresses.filter((a) => familyOf(a) === this.family).map((a) => `${a},${protocol}:${port.port}`));
    }
    this.ipsets.set(name, { family: this.family, type: 'hash:ip,port', members: [...new Set(members)].sort() });
    return name;
  }

  private netSet(nets: string[]): string {
    const name = netSetName(this.family, nets);
    this.ipsets.set(name, { family: this.family, type: 'hash:net', members: [...nets].sort() });
    return name;
  }

  /** The endpoints a selector matches, evaluated once per distinct set of labels. */
  private matching(predicate: Selector): EndpointView[] {
    if (!this.classes) {
      const byKey = new Map<string, EndpointView[]>();
      for (const view of this.views) {
        const members = byKey.get(view.labelsKey);
        if (members) members.push(view);
        else byKey.set(view.labelsKey, [view]);
      }
      this.classes = [...byKey.values()];
    }
    return this.classes.filter((members) => predicate(members[0]!.labels)).flat();
  }

  /** The set a rule uses, made (with its members) for this calculation; recorded when rendering for the memo. */
  private set(use: SetUse): string {
    const name = use.kind === 'selector' ? this.selectorSet(use.selector) : use.kind === 'namedPort' ? this.namedPortSet(use.port, use.protocol, use.selector) : this.netSet(use.nets);
    this.uses?.push({ use, name });
    return name;
  }

  /**
   * A list of rules as iptables rules. The text depends only on the rules, the context and the names
   * of the sets they use, so it is reused from an earlier calculation while those names hold; the
   * sets' members are made anew every time.
   */
  rules(rules: Rule[], context: { namespace?: string; inPolicy?: boolean } = {}): string[] {
    const key = `${this.family}|${context.inPolicy ? 'p' : ''}|${context.namespace ?? ''}`;
    const byContext = renderedMemo.get(rules) ?? new Map<string, RenderedRules>();
    renderedMemo.set(rules, byContext);
    const known = byContext.get(key);
    if (known && known.uses.every((u) => this.set(u.use) === u.name)) return known.rules;
    this.uses = [];
    try {
      const rendered = { rules: rules.flatMap((r) => this.rule(r, context)), uses: this.uses };
      byContext.set(key, rendered);
      return rendered.rules;
    } finally {
      this.uses = undefined;
    }
  }

  /** Match fragments for one side of a rule; undefined when the rule cannot apply to this family. */
  private entity(entity: RuleEntity | undefined, side: 'src' | 'dst', protocol: string | undefined, namespace: string | undefined): string[][] | undefined {
    const flag = side === 'src' ? '-s' : '-d';
    let alternatives: string[][] = [[]];
    if (entity?.nets?.length) {
      const nets = entity.nets.filter((n) => familyOf(n) === this.family);
      if (nets.length === 0) return undefined;
      alternatives = nets.map((n) => [`${flag} ${formatCidr(parseCidr(withPrefix(n)))}`]);
    }
    const extra: string[] = [];
    if (entity?.notNets?.length) {
      const nets = entity.notNets.filter((n) => familyOf(n) === this.family).map((n) => formatCidr(parseCidr(withPrefix(n))));
      if (nets.length === 1) extra.push(`! ${flag} ${nets[0]}`);
      else if (nets.length > 1) extra.push(`-m set ! --match-set ${this.set({ kind: 'nets', nets })} ${side}`);
    }
    const selector = entity?.selector ? namespaced(entity.selector, namespace) : undefined;
    if (selector) extra.push(`-m set --match-set ${this.set({ kind: 'selector', selector })} ${side}`);
    if (entity?.notSelector) extra.push(`-m set ! --match-set ${this.set({ kind: 'selector', selector: namespaced(entity.notSelector, namespace) })} ${side}`);
    if ((entity?.ports?.length || entity?.notPorts?.length) && protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') return undefined;
    const multiport = side === 'src' ? 'sports' : 'dports';
    const pair = `${side},${side}`;
    const { numbers: notNumbers, names: notNames } = splitPorts(entity?.notPorts);
    if (notNumbers.length) extra.push(`-m multiport ! --${multiport} ${portList(notNumbers)}`);
    for (const port of notNames) extra.push(`-m set ! --match-set ${this.set({ kind: 'namedPort', port, protocol: protocol!, selector })} ${pair}`);
    if (entity?.ports?.length) {
      // Ports OR-ed: the numbers in one multiport match, each named port as a rule of its own.
      const { numbers, names } = splitPorts(entity.ports);
      const portMatches = [...(numbers.length ? [`-m multiport --${multiport} ${portList(numbers)}`] : []), ...names.map((port) => `-m set --match-set ${this.set({ kind: 'namedPort', port, protocol: protocol!, selector })} ${pair}`)];
      return alternatives.flatMap((a) => portMatches.map((p) => [...a, ...extra, p]));
    }
    return alternatives.map((a) => [...a, ...extra]);
  }

  /**
   * One rule as iptables rules (several when it lists several nets or named ports). `namespace`: a
   * NetworkPolicy's, whose rule selectors match only that namespace. Pass only means something in a
   * policy: in a profile it does nothing, as in Felix.
   */
  private rule(rule: Rule, context: { namespace?: string; inPolicy?: boolean }): string[] {
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
    const sources = this.entity(rule.source, 'src', protocol, context.namespace);
    const destinations = this.entity(rule.destination, 'dst', protocol, context.namespace);
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
        case 'Pass':
          return context.inPolicy ? [`${m}-j MARK --set-mark ${PASS}`, `-m mark --mark ${PASS} -j RETURN`] : [];
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

/** Numbers and ranges apart from named ports (any other string). */
function splitPorts(ports: (number | string)[] | undefined): { numbers: (number | string)[]; names: string[] } {
  const numbers: (number | string)[] = [];
  const names: string[] = [];
  for (const port of ports ?? []) {
    if (typeof port === 'number' || /^\d+([:-]\d+)?$/.test(port)) numbers.push(port);
    else names.push(port);
  }
  return { numbers, names };
}

/** The chain of a policy for one direction: `cali-pi-` inbound, `cali-po-` outbound, by its tier and key. */
export function policyChainName(direction: 'tw' | 'fw', tier: string, key: string): string {
  const prefix = direction === 'tw' ? 'cali-pi-' : 'cali-po-';
  const text = `${tier}.${key}`;
  // A NetworkPolicy's key has its namespace and a `/`: such names are always hashed.
  return key.includes('/') ? `${prefix}${hash(`np:${text}`, 28 - prefix.length)}` : chainName(prefix, text);
}

const tierRulesMemo = { tw: new WeakMap<TierView[], string[]>(), fw: new WeakMap<TierView[], string[]>() };

/**
 * The tiers' part of an endpoint's chain, as Felix lays it out: per tier, the pass mark cleared, then
 * each policy jumped to unless a Pass already came, returning at once on Allow; a tier none of whose
 * policies passed the packet ends in its default action (Deny drops; Pass goes on).
 */
function tierRules(direction: 'tw' | 'fw', tiers: TierView[]): string[] {
  // Endpoints with the same labels share `tiers` (applicableByLabels), and so these rules.
  const memo = tierRulesMemo[direction];
  const known = memo.get(tiers);
  if (known) return known;
  const rules: string[] = [];
  memo.set(tiers, rules);
  for (const tier of tiers) {
    rules.push(`-j MARK --set-mark ${NOT_PASSED}`);
    for (const policy of tier.policies) rules.push(`-m mark --mark ${NOT_PASSED} -j ${policyChainName(direction, tier.name, policy.key)}`, `-m mark --mark ${MARK} -j RETURN`);
    if (tier.defaultAction === 'Deny') rules.push(`-m mark --mark ${NOT_PASSED} -j DROP`);
  }
  return rules;
}

const endpointChainNames = { 'cali-tw-': new WeakMap<string[], string>(), 'cali-fw-': new WeakMap<string[], string>() };

/**
 * An endpoint chain is named by its content: endpoints whose chains would be the same (the same
 * policies apply, the same profiles, no published ports of their own) share one chain in the
 * kernel. The kernel then holds a chain per kind of endpoint, not per endpoint, and a new endpoint
 * of a known kind adds only its dispatch entry.
 */
function endpointChainName(prefix: 'cali-tw-' | 'cali-fw-', rules: string[]): string {
  const memo = endpointChainNames[prefix];
  let name = memo.get(rules);
  if (name === undefined) {
    name = `${prefix}${hash(rules.join('\n'), 28 - prefix.length)}`;
    memo.set(rules, name);
  }
  return name;
}

/**
 * `profiles`: those of the endpoint that exist; `published`: its published ports, let in before any
 * policy or profile has its say.
 */
function endpointChain(direction: 'tw' | 'fw', profiles: string[], published: string[] = [], tiers: TierView[] = []): string[] {
  const rules = ['-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-m conntrack --ctstate INVALID -j DROP', ...published, `-j MARK --set-mark 0x0/${ACCEPT_MARK}`, ...tierRules(direction, tiers)];
  for (const profile of profiles) {
    rules.push(`-j ${chainName(direction === 'tw' ? 'cali-pri-' : 'cali-pro-', profile)}`, `-m mark --mark ${MARK} -j RETURN`);
  }
  rules.push('-j DROP');
  return rules;
}

/** The policies of each direction that apply to an endpoint of these labels; endpoints with the same labels share one answer. */
type Applicable = (view: EndpointView) => { inbound: TierView[]; outbound: TierView[] };

/**
 * The answers of the last calculation, kept while the tiers choose as they did: same tiers, same
 * policies in the same order with the same selectors and types (a change of rules alone keeps
 * them). Kept answers hold the views of the calculation that made them: only their names and tiers'
 * default actions are read from them; rules come from the current views (`current`).
 */
let applicableMemo: { shape: string; memo: Map<string, { inbound: TierView[]; outbound: TierView[] }> } = { shape: '', memo: new Map() };

/** The tiers' choices as text: equal shapes, equal answers for every endpoint. */
function tiersShape(tiers: TierView[]): string {
  return JSON.stringify(tiers.map((t) => [t.name, t.defaultAction, t.policies.map((p) => [p.key, p.selection])]));
}

function applicableByLabels(tiers: TierView[]): Applicable {
  const shape = tiersShape(tiers);
  if (applicableMemo.shape !== shape) applicableMemo = { shape, memo: new Map() };
  const memo = applicableMemo.memo;
  return ({ labels, labelsKey }) => {
    let found = memo.get(labelsKey);
    if (!found) {
      found = { inbound: applicableTiers(tiers, labels, 'Ingress'), outbound: applicableTiers(tiers, labels, 'Egress') };
      memo.set(labelsKey, found);
    }
    return found;
  };
}

/** This host's host endpoints, each with the interface it polices (none: the wildcard's default) and its labels. */
interface LocalHostEndpoint {
  iface: string | undefined;
  suffix: string;
  endpoint: HostEndpoint;
  labels: Record<string, string>;
}

type UsedPolicies = Map<string, { key: string; direction: 'tw' | 'fw' }>;

function usePolicies(used: UsedPolicies, direction: 'tw' | 'fw', tiers: TierView[]): void {
  for (const tier of tiers) for (const policy of tier.policies) used.set(policyChainName(direction, tier.name, policy.key), { key: policy.key, direction });
}

/** Each used policy's chain, from the policy's current view (`current`, by key). */
function renderPolicies(chains: Chains, used: UsedPolicies, current: Map<string, PolicyView>, renderer: Renderer, invalid: string[]): void {
  for (const [chain, { key, direction }] of [...used].sort(([a], [b]) => byText(a, b))) {
    const policy = current.get(key)!;
    const context = { inPolicy: true, ...(policy.namespace !== undefined ? { namespace: policy.namespace } : {}) };
    try {
      chains.set(chain, renderer.rules(direction === 'tw' ? policy.ingress : policy.egress, context));
    } catch (error) {
      // Fail closed: a policy whose rules cannot be understood lets nothing through where it applies.
      chains.set(chain, ['-j DROP']);
      invalid.push(`${policy.key}: ${(error as Error).message}`);
    }
  }
}

/**
 * Dispatch of a host endpoint chain kind by interface (`-i` inbound, `-o` outbound); what no host
 * endpoint names goes to the wildcard endpoint's chain, if any, but loopback and workloads.
 */
function hostDispatch(flag: '-i' | '-o', entries: { iface: string | undefined; chain: string }[]): string[] {
  const named = entries.filter((e) => e.iface !== undefined).sort((a, b) => byText(a.iface!, b.iface!));
  const wildcard = entries.find((e) => e.iface === undefined);
  return [...named.map((e) => `${flag} ${e.iface} -g ${e.chain}`), ...(wildcard ? [`${flag} lo -j RETURN`, `${flag} ${WORKLOAD_PREFIX}+ -j RETURN`, `-g ${wildcard.chain}`] : [])];
}

/** The chain of a host endpoint in raw (untracked) or mangle (preDNAT): failsafes, then the tiers alone: no profiles, no default deny. */
function hostPolicyOnlyChain(direction: 'tw' | 'fw', tiers: TierView[], failsafe: string): string[] {
  return [`-j ${failsafe}`, `-j MARK --set-mark ${CLEAR_MARKS}`, ...tierRules(direction, tiers)];
}

interface Failsafes {
  inbound: FailsafeRule[];
  outbound: FailsafeRule[];
}

/**
 * Host endpoints' chains in filter (traffic to and from the host, and applyOnForward policies on
 * forwarded traffic), raw (doNotTrack) and mangle (preDNAT), and the hooks from our base chains
 * into them. Returns what cali-INPUT, cali-OUTPUT and cali-FORWARD need added.
 */
function hostEndpointChains(
  heps: LocalHostEndpoint[],
  tiers: TierView[],
  usedProfiles: Set<string>,
  profiles: Map<string, Profile>,
  tables: { filter: Chains; raw: Chains; mangle: Chains },
  used: { filter: UsedPolicies; raw: UsedPolicies; mangle: UsedPolicies },
  failsafes: Failsafes,
  family: IpFamily,
): { input: string[]; output: string[]; forwardFrom: string[]; forwardTo: string[] } {
  const { filter, raw, mangle } = tables;
  const dispatch = { fh: [], th: [], fhfw: [], thfw: [], rawFh: [], rawTh: [], mangleFh: [] } as Record<string, { iface: string | undefined; chain: string }[]>;
  for (const hep of heps) {
    const known = (hep.endpoint.spec.profiles ?? []).filter((p) => profiles.has(p));
    for (const p of known) usedProfiles.add(p);
    const labelsOf = hep.labels;
    const normalIn = hostTiers(tiers, labelsOf, 'Ingress', 'normal');
    const normalOut = hostTiers(tiers, labelsOf, 'Egress', 'normal');
    usePolicies(used.filter, 'tw', normalIn);
    usePolicies(used.filter, 'fw', normalOut);
    const fh = chainName('cali-fh-', hep.suffix);
    const th = chainName('cali-th-', hep.suffix);
    filter.set(fh, endpointChain('tw', known, ['-j cali-failsafe-in'], normalIn));
    filter.set(th, endpointChain('fw', known, ['-j cali-failsafe-out'], normalOut));
    dispatch.fh!.push({ iface: hep.iface, chain: fh });
    dispatch.th!.push({ iface: hep.iface, chain: th });
    // Forwarded traffic: only applyOnForward policies, and only where some select this endpoint (no failsafes here).
    for (const [direction, prefix, key] of [['tw', 'cali-fhfw-', 'fhfw'], ['fw', 'cali-thfw-', 'thfw']] as const) {
      const forward = hostTiers(tiers, labelsOf, direction === 'tw' ? 'Ingress' : 'Egress', 'forward');
      if (forward.length === 0) continue;
      usePolicies(used.filter, direction, forward);
      const chain = chainName(prefix, hep.suffix);
      filter.set(chain, endpointChain(direction, known, [], forward));
      dispatch[key]!.push({ iface: hep.iface, chain });
    }
    for (const [direction, prefix, key, failsafe] of [['tw', 'cali-fh-', 'rawFh', 'cali-failsafe-in'], ['fw', 'cali-th-', 'rawTh', 'cali-failsafe-out']] as const) {
      const untracked = hostTiers(tiers, labelsOf, direction === 'tw' ? 'Ingress' : 'Egress', 'untracked');
      if (untracked.length === 0) continue;
      usePolicies(used.raw, direction, untracked);
      const chain = chainName(prefix, hep.suffix);
      raw.set(chain, hostPolicyOnlyChain(direction, untracked, failsafe));
      dispatch[key]!.push({ iface: hep.iface, chain });
    }
    const preDnat = hostTiers(tiers, labelsOf, 'Ingress', 'preDNAT');
    if (preDnat.length > 0) {
      usePolicies(used.mangle, 'tw', preDnat);
      mangle.set(fh, hostPolicyOnlyChain('tw', preDnat, 'cali-failsafe-in'));
      dispatch.mangleFh!.push({ iface: hep.iface, chain: fh });
    }
  }
  const w = `${WORKLOAD_PREFIX}+`;
  filter.set('cali-from-host-endpoint', hostDispatch('-i', dispatch.fh!));
  filter.set('cali-to-host-endpoint', hostDispatch('-o', dispatch.th!));
  const forwardFrom: string[] = [];
  const forwardTo: string[] = [];
  if (dispatch.fhfw!.length) {
    filter.set('cali-from-hep-forward', hostDispatch('-i', dispatch.fhfw!));
    forwardFrom.push(`-j MARK --set-mark ${CLEAR_MARKS}`, '-j cali-from-hep-forward');
  }
  if (dispatch.thfw!.length) {
    filter.set('cali-to-hep-forward', hostDispatch('-o', dispatch.thfw!));
    forwardTo.push('-j cali-to-hep-forward');
  }
  // Untracked: an Allow marks the packet, which then skips conntrack and is accepted here and in filter.
  if (dispatch.rawFh!.length) {
    raw.set('cali-from-host-endpoint', hostDispatch('-i', dispatch.rawFh!));
    raw.set('cali-PREROUTING', [`-j MARK --set-mark ${CLEAR_MARKS}`, `-i ${w} -j RETURN`, '-j cali-from-host-endpoint', `-m mark --mark ${MARK} -j CT --notrack`, `-m mark --mark ${MARK} -j ACCEPT`]);
  }
  if (dispatch.rawTh!.length) {
    raw.set('cali-to-host-endpoint', hostDispatch('-o', dispatch.rawTh!));
    raw.set('cali-OUTPUT', [`-j MARK --set-mark ${CLEAR_MARKS}`, `-o ${w} -j RETURN`, '-j cali-to-host-endpoint', `-m mark --mark ${MARK} -j CT --notrack`, `-m mark --mark ${MARK} -j ACCEPT`]);
  }
  if (dispatch.rawFh!.length || dispatch.rawTh!.length) {
    // Untracked traffic has no conntrack to let replies back in: the other list's source ports pass too.
    raw.set('cali-failsafe-in', failsafeRules(failsafes.inbound, failsafes.outbound, '-s', family));
    raw.set('cali-failsafe-out', failsafeRules(failsafes.outbound, failsafes.inbound, '-d', family));
  }
  // Before DNAT: a Deny drops; an Allow only ends the pre-DNAT policies, the filter table still has its say.
  if (dispatch.mangleFh!.length) {
    mangle.set('cali-from-host-endpoint', hostDispatch('-i', dispatch.mangleFh!));
    mangle.set('cali-failsafe-in', failsafeRules(failsafes.inbound, [], '-s', family));
    mangle.set('cali-PREROUTING', [
      `-m mark --mark ${MARK} -j RETURN`,
      '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      `-i ${w} -j RETURN`,
      '-j cali-from-host-endpoint',
      `-j MARK --set-mark ${CLEAR_MARKS}`,
    ]);
  }
  const n = `! -i ${w}`;
  // IPv6 neighbour and router discovery keep working on a host endpoint whatever its policy says.
  const ndp = family === 6 ? [133, 134, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`) : [];
  return {
    input: [`${n} -m mark --mark ${MARK} -j ACCEPT`, ...ndp.map((r) => `${n} ${r}`), `${n} -j MARK --set-mark ${CLEAR_MARKS}`, `${n} -j cali-from-host-endpoint`, `${n} -m mark --mark ${MARK} -j ACCEPT`],
    output: [`-m mark --mark ${MARK} -j ACCEPT`, ...ndp, `-j MARK --set-mark ${CLEAR_MARKS}`, '-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint', `-m mark --mark ${MARK} -j ACCEPT`],
    forwardFrom,
    forwardTo,
  };
}

/** A local endpoint's chains in one family, as calculated while the tiers chose as `applicable` and these profiles existed. */
interface EndpointChains {
  applicable: object;
  profiles: object;
  inbound: TierView[];
  outbound: TierView[];
  twRules: string[];
  fwRules: string[];
  tw: string;
  fw: string;
  /** Its dispatch entries, inbound and outbound. */
  to: DispatchEntry[];
  from: DispatchEntry[];
}

const endpointChainsMemo = new WeakMap<EndpointView, Partial<Record<IpFamily, EndpointChains>>>();

/** The profiles that exist, as a token: the same object while the same names exist (chains name profiles, nothing more of them). */
let profilesToken = { names: '', token: {} };
function profilesVersion(profiles: Map<string, Profile>): object {
  const names = [...profiles.keys()].sort().join('\u0001');
  if (names !== profilesToken.names) profilesToken = { names, token: {} };
  return profilesToken.token;
}

/** Endpoint chains of earlier calculations, by the tiers that apply (kept while the tiers choose as they did) and profiles and published ports. */
const chainsByTiers = new WeakMap<TierView[], Map<string, string[]>>();

function familyTables(input: PolicyInput, views: EndpointView[], sets: SetView[], tiers: TierView[], applicable: Applicable, profiles: Map<string, Profile>, family: IpFamily, ipsets: Map<string, IpSet>, invalid: string[], hosts: HostView[], heps: LocalHostEndpoint[], failsafes: Failsafes) {
  const renderer = new Renderer(views, sets, family, hosts);
  const filter: Chains = new Map();
  // Only endpoints with an address of this family need chains here: an IPv4-only host writes no IPv6 rules.
  const local = views.filter((v) => v.addresses[family].length > 0 && v.endpoint.spec.node === input.node);
  const usedProfiles = new Set<string>();
  for (const view of local) for (const profile of view.endpoint.spec.profiles) if (profiles.has(profile)) usedProfiles.add(profile);
  const toDispatch: DispatchEntry[] = [];
  const fromDispatch: DispatchEntry[] = [];
  const usedPolicies: UsedPolicies = new Map();
  // Endpoints with the same labels share their tiers (applicableByLabels): their chains, when their
  // profiles and published ports are the same too, are one array, built once per apply.
  const seenTiers = { tw: new Set<TierView[]>(), fw: new Set<TierView[]>() };
  const sharedChain = (direction: 'tw' | 'fw', endpointProfiles: string[], published: string[], tiers: TierView[]): string[] => {
    const known = endpointProfiles.filter((p) => profiles.has(p));
    const key = `${direction}\u0001${known.join('\u0001')}\u0002${published.join('\u0001')}`;
    const byKey = chainsByTiers.get(tiers) ?? new Map<string, string[]>();
    chainsByTiers.set(tiers, byKey);
    let chain = byKey.get(key);
    if (!chain) {
      chain = endpointChain(direction, known, published, tiers);
      byKey.set(key, chain);
    }
    return chain;
  };
  const profilesNow = profilesVersion(profiles);
  for (const view of local) {
    let byFamily = endpointChainsMemo.get(view);
    if (!byFamily) {
      byFamily = {};
      endpointChainsMemo.set(view, byFamily);
    }
    let chains = byFamily[family];
    if (!chains || chains.applicable !== applicableMemo.memo || chains.profiles !== profilesNow) {
      const { endpoint } = view;
      const { inbound, outbound } = applicable(view);
      const twRules = sharedChain('tw', endpoint.spec.profiles, family === 4 ? publishedAccepts(endpoint) : [], inbound);
      const fwRules = sharedChain('fw', endpoint.spec.profiles, [], outbound);
      const tw = endpointChainName('cali-tw-', twRules);
      const fw = endpointChainName('cali-fw-', fwRules);
      const addresses = view.addresses[family];
      chains = {
        applicable: applicableMemo.memo,
        profiles: profilesNow,
        inbound,
        outbound,
        twRules,
        fwRules,
        tw,
        fw,
        to: addresses.map((address) => ({ address, target: tw })),
        from: addresses.map((address) => ({ address, target: fw })),
      };
      byFamily[family] = chains;
    }
    if (!seenTiers.tw.has(chains.inbound)) usePolicies(usedPolicies, 'tw', chains.inbound);
    if (!seenTiers.fw.has(chains.outbound)) usePolicies(usedPolicies, 'fw', chains.outbound);
    seenTiers.tw.add(chains.inbound);
    seenTiers.fw.add(chains.outbound);
    filter.set(chains.tw, chains.twRules);
    filter.set(chains.fw, chains.fwRules);
    toDispatch.push(...chains.to);
    fromDispatch.push(...chains.from);
  }
  const raw: Chains = new Map([['cali-PREROUTING', []], ['cali-OUTPUT', []]]);
  const mangle: Chains = new Map([['cali-PREROUTING', []]]);
  const rawPolicies: UsedPolicies = new Map();
  const manglePolicies: UsedPolicies = new Map();
  const hep = heps.length ? hostEndpointChains(heps, tiers, usedProfiles, profiles, { filter, raw, mangle }, { filter: usedPolicies, raw: rawPolicies, mangle: manglePolicies }, failsafes, family) : undefined;
  for (const name of [...usedProfiles].sort()) {
    const profile = profiles.get(name)!;
    filter.set(chainName('cali-pri-', name), renderer.rules(profile.spec.ingress));
    filter.set(chainName('cali-pro-', name), renderer.rules(profile.spec.egress));
  }
  const current = new Map(tiers.flatMap((t) => t.policies.map((p) => [p.key, p] as const)));
  renderPolicies(filter, usedPolicies, current, renderer, invalid);
  renderPolicies(raw, rawPolicies, current, renderer, invalid);
  renderPolicies(mangle, manglePolicies, current, renderer, invalid);
  const w = `${WORKLOAD_PREFIX}+`;
  for (const [chain, rules] of dispatchTree('cali-to-wl-dispatch', '-d', family, toDispatch)) filter.set(chain, rules);
  for (const [chain, rules] of dispatchTree('cali-from-wl-dispatch', '-s', family, fromDispatch)) filter.set(chain, rules);
  // applyOnForward policies of host endpoints: forwarded traffic in through one before the workload's chains, out through one after.
  filter.set('cali-FORWARD', [...(hep?.forwardFrom ?? []), `-i ${w} -j cali-from-wl-dispatch`, `-o ${w} -j cali-to-wl-dispatch`, ...(hep?.forwardTo ?? []), `-i ${w} -j ACCEPT`, `-o ${w} -j ACCEPT`]);
  // Workload to host: the workload's outbound rules, then the host's own INPUT rules. BGP between
  // hosts always passes, whatever the host's own firewall does with the rest (Felix's failsafe ports).
  const tunnels = family === 4 ? input.tunnels : undefined;
  // Host endpoints: the failsafes first, then the endpoint's policies and profiles, default deny.
  filter.set('cali-INPUT', [`-i ${w} -j cali-wl-to-host`, ...tunnelInputRules(tunnels), `! -i ${w} -j cali-failsafe-in`, ...(hep?.input ?? [])]);
  const bgp = [`-p tcp --dport ${BGP_PORT} -j ACCEPT`, `-p tcp --sport ${BGP_PORT} -m conntrack --ctstate ESTABLISHED -j ACCEPT`];
  // Without host endpoints only BGP: the host's own firewall keeps the say over everything else.
  filter.set('cali-failsafe-in', hep ? [...bgp, ...failsafeRules(failsafes.inbound, [], '-s', family)] : bgp);
  filter.set('cali-failsafe-out', hep ? [...bgp, ...failsafeRules(failsafes.outbound, [], '-d', family)] : bgp);
  // IPv6 neighbour discovery and multicast listener messages always pass (Felix allows 130-133, 135, 136).
  const icmpv6 = family === 6 ? [130, 131, 132, 133, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`) : [];
  // A DNS query redirected to the name service, once the workload's outbound rules let it go to its server.
  const redirected = family === 4 && input.dnsRedirects?.length ? ['-m conntrack --ctstate DNAT --ctorigdstport 53 -d 127.0.0.1/32 -j ACCEPT'] : [];
  const toHost = input.defaultEndpointToHostAction === 'Drop' ? 'DROP' : input.defaultEndpointToHostAction === 'Accept' ? 'ACCEPT' : 'RETURN';
  filter.set('cali-wl-to-host', [...icmpv6, '-j cali-from-wl-dispatch', ...redirected, `-j ${toHost}`]);
  // Host to its own workloads is not policed (as Felix): contacting them from the host is useful.
  filter.set('cali-OUTPUT', [`-o ${w} -j RETURN`, ...tunnelOutputRules(tunnels), '-j cali-failsafe-out', ...(hep?.output ?? [])]);
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
  return { filter, nat, raw, mangle };
}

/** A host endpoint's labels as policy selectors see them: its profiles' labelsToApply, then its own. */
function hostLabels(endpoint: HostEndpoint, profiles: Map<string, Profile>): Record<string, string> {
  const inherited = Object.assign({}, ...(endpoint.spec?.profiles ?? []).map((p) => profiles.get(p)?.spec.labelsToApply ?? {}));
  return { ...inherited, ...endpoint.metadata.labels };
}

export function desiredDataplane(input: PolicyInput): DesiredDataplane {
  const profiles = new Map(input.profiles.map((p) => [p.metadata.name, p]));
  const views = labelled(input.endpoints, profiles);
  advanceEndpoints(views);
  const sets = networkSetViews(input.networkSets ?? []);
  const invalid: string[] = [];
  const tiers = orderedTiers(input.tiers ?? [], input.policies ?? [], (key, error) => invalid.push(`${key}: ${error.message}`));
  const ipsets = new Map<string, IpSet>();
  const applicable = applicableByLabels(tiers);
  const hosts: HostView[] = (input.hostEndpoints ?? []).map((e) => ({ labels: hostLabels(e, profiles), addresses: hostEndpointAddresses(e), ports: e.spec?.ports ?? [] }));
  const resolved = resolveHostEndpoints(input.hostEndpoints ?? [], input.node, input.interfaces ?? [], WORKLOAD_PREFIX);
  const heps: LocalHostEndpoint[] = [...resolved.byInterface].map(([iface, endpoint]) => ({ iface, suffix: iface, endpoint, labels: hostLabels(endpoint, profiles) }));
  if (resolved.wildcard) heps.push({ iface: undefined, suffix: WILDCARD_SUFFIX, endpoint: resolved.wildcard, labels: hostLabels(resolved.wildcard, profiles) });
  const failsafes = { inbound: failsafeList(input.failsafeInbound, 'in'), outbound: failsafeList(input.failsafeOutbound, 'out') };
  const tables = {
    4: familyTables(input, views, sets, tiers, applicable, profiles, 4, ipsets, invalid, hosts, heps, failsafes),
    6: familyTables(input, views, sets, tiers, applicable, profiles, 6, ipsets, invalid, hosts, heps, failsafes),
  };
  return { invalid: [...new Set(invalid)], ipsets, tables };
}
