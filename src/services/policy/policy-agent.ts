import { desiredDataplane, PolicyInput } from '../../calc/policy.js';
import { DEFAULT_VXLAN_PORT, poolRouting } from '../../calc/tunnel-routes.js';
import { DNS_NAMES_ANNOTATION, GATEWAY_ANNOTATION, Profile, SANDBOX_ANNOTATION, WORKLOAD_NAMESPACE, WorkloadEndpoint } from '../../domain/endpoint-model.js';
import type { IpPool } from '../../domain/ipam-model.js';
import type { CalicoNode } from '../../domain/resources.js';
import type { FailsafePort, GlobalNetworkPolicy, HostEndpoint, NetworkPolicy, NetworkSet, Tier } from '../../domain/policy-model.js';
import type { HostInterfaceInfo } from '../../calc/host-endpoints.js';
import type { PolicyDataplane } from '../../ports/policy-dataplane.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { ApplyLoop, type ApplyLoopObserver } from '../apply-loop.js';
import type { DatastoreView } from '../sync/datastore-view.js';
import type { DatastoreSyncer, ViewChange } from '../sync/datastore-syncer.js';
import { followDatastore, Following } from '../sync/follow-datastore.js';
import { byText } from '../../domain/text-order.js';

/**
 * Changes arriving together (in one tick) are applied together, at once: a lone change is programmed
 * without waiting, and changes that come while an apply runs are all in the next one.
 */
const DEBOUNCE_MS = 0;
/** How long after a change what it left unreachable in the kernel is tidied away: off the path of the change, and once for a burst. */
const TIDY_AFTER_MS = 2000;
/** While this host has host endpoints, its interfaces are re-read this often (an address moving moves an expectedIPs endpoint). */
const INTERFACES_EVERY_MS = 10_000;
/** The kinds the packet filter is computed from. */
const POLICY_KINDS = new Set([
  'Profile',
  'WorkloadEndpoint',
  'IPPool',
  'Node',
  'FelixConfiguration',
  'Tier',
  'GlobalNetworkPolicy',
  'NetworkPolicy',
  'GlobalNetworkSet',
  'NetworkSet',
  'HostEndpoint',
]);

export interface PolicyAgentOptions {
  /** The host's interfaces and their addresses: for host endpoints found by expectedIPs. */
  interfaces?: () => Promise<HostInterfaceInfo[]>;
  interfacesEveryMs?: number;
  /** Told when the agent is in sync and how each apply went (readiness, metrics). */
  observer?: ApplyLoopObserver;
}

/**
 * Keeps this host's iptables and ipsets in line with the profiles, policies, the endpoints of every
 * node (tag membership spans hosts) and the pools in the daemon's view of the datastore. Nothing is
 * written before the first full snapshot is in, so a restart never programs a half-loaded view.
 */
export class PolicyAgent {
  private interfaces: HostInterfaceInfo[] = [];
  private interfacesKey = '';
  private interfacesTimer: NodeJS.Timeout | undefined;
  private following: Following | undefined;
  private readonly loop: ApplyLoop;
  private dnsRedirects: { upstream: string; port: number }[] = [];
  private invalidReported = '';
  private tidyTimer: NodeJS.Timeout | undefined;
  private tidyDue = false;

  constructor(
    private readonly sync: DatastoreSyncer,
    private readonly dataplane: PolicyDataplane,
    private readonly node: string,
    private readonly log: Logger = silentLogger,
    private readonly options: PolicyAgentOptions = {},
  ) {
    this.loop = new ApplyLoop({ apply: () => this.apply(), log, failed: 'could not program policy; retrying', ...(options.observer ? { observer: options.observer } : {}) });
  }

  /** Resolves once the first full state was programmed (or failed, to be retried). */
  async start(): Promise<void> {
    await this.sync.start();
    await this.readInterfaces();
    this.interfacesTimer ??= setInterval(() => void this.interfacesChanged(), this.options.interfacesEveryMs ?? INTERFACES_EVERY_MS);
    this.interfacesTimer.unref?.();
    this.following ??= followDatastore(this.sync, this.loop, { changed: (changes) => this.onChanges(changes) });
    await this.following.firstApply;
  }

  async stop(): Promise<void> {
    clearTimeout(this.tidyTimer);
    this.tidyTimer = undefined;
    clearInterval(this.interfacesTimer);
    this.interfacesTimer = undefined;
    if (this.following) this.sync.unsubscribe(this.following.listener);
    await this.loop.stop();
  }

  /** Where the name service takes containers' DNS queries: in the next apply. */
  setDnsRedirects(redirects: { upstream: string; port: number }[]): void {
    this.dnsRedirects = redirects;
    this.loop.schedule(DEBOUNCE_MS);
  }

  private onChanges(changes: ViewChange[]): void {
    const relevant = changes.filter((c): c is Extract<ViewChange, { kind: 'resource' }> => c.kind === 'resource' && POLICY_KINDS.has(c.ref.kind));
    // An endpoint learning its container's name, sandbox or DNS names changes nothing the filter uses.
    const matters = relevant.filter((c) => !(c.ref.kind === 'WorkloadEndpoint' && c.before && c.value && policyView(c.before as WorkloadEndpoint) === policyView(c.value as WorkloadEndpoint)));
    if (matters.length === 0) return;
    // A host endpoint may name an address the last reading of the interfaces does not show yet.
    if (matters.some((c) => c.ref.kind === 'HostEndpoint')) void this.readInterfaces().finally(() => this.loop.schedule(DEBOUNCE_MS));
    else this.loop.schedule(DEBOUNCE_MS);
  }

  private hasLocalHostEndpoints(): boolean {
    return this.sync.view.list<HostEndpoint>('HostEndpoint').some((h) => h.spec?.node === this.node);
  }

  /** Reads the host's interfaces when some host endpoint of this host may need them; true when they changed. */
  private async readInterfaces(): Promise<boolean> {
    if (!this.options.interfaces || !this.hasLocalHostEndpoints()) return false;
    try {
      const interfaces = (await this.options.interfaces()).map((i) => ({ name: i.name, addresses: [...i.addresses].sort() })).sort((a, b) => byText(a.name, b.name));
      const key = JSON.stringify(interfaces);
      if (key === this.interfacesKey) return false;
      this.interfaces = interfaces;
      this.interfacesKey = key;
      return true;
    } catch (error) {
      this.log.warn({ err: error }, 'could not read the host\'s interfaces for host endpoints');
      return false;
    }
  }

  private async interfacesChanged(): Promise<void> {
    if (await this.readInterfaces()) this.loop.schedule(DEBOUNCE_MS);
  }

  /** What the packet filter is computed from: the datastore as last seen. */
  private input(): PolicyInput {
    const view = this.sync.view;
    const pools = view.list<IpPool>('IPPool');
    const nodes = view.list<CalicoNode>('Node');
    const address = (node: CalicoNode | undefined): string | undefined => node?.spec?.bgp?.ipv4Address?.split('/')[0];
    const encapsulations = new Set(pools.map((p) => poolRouting(p)?.encapsulation));
    const vxlanPort = (view.get('FelixConfiguration', 'default')?.spec as { vxlanPort?: number } | undefined)?.vxlanPort ?? DEFAULT_VXLAN_PORT;
    const hosts = nodes.filter((n) => n.metadata.name !== this.node).map(address).filter((a): a is string => a !== undefined);
    const hostAddress = address(view.get<CalicoNode>('Node', this.node));
    return {
      node: this.node,
      profiles: view.list<Profile>('Profile'),
      endpoints: view.list<WorkloadEndpoint>('WorkloadEndpoint').filter((e) => e.metadata.namespace === WORKLOAD_NAMESPACE),
      pools: pools.map((p) => ({ cidr: p.spec.cidr, natOutgoing: p.spec.natOutgoing === true })),
      tiers: view.list<Tier>('Tier'),
      policies: [...view.list<GlobalNetworkPolicy>('GlobalNetworkPolicy'), ...view.list<NetworkPolicy>('NetworkPolicy')],
      networkSets: [...view.list<NetworkSet>('GlobalNetworkSet'), ...view.list<NetworkSet>('NetworkSet')],
      hostEndpoints: view.list<HostEndpoint>('HostEndpoint'),
      interfaces: this.interfaces,
      ...this.felixPolicy(view),
      ...(hostAddress ? { hostAddress } : {}),
      ...(this.dnsRedirects.length ? { dnsRedirects: this.dnsRedirects } : {}),
      ...(encapsulations.has('vxlan') || encapsulations.has('ipip')
        ? { tunnels: { hosts, ...(encapsulations.has('vxlan') ? { vxlanPort } : {}), ipip: encapsulations.has('ipip') } }
        : {}),
    };
  }

  /** FelixConfiguration's policy settings: the node's own (`node.<name>`) over `default`, as Felix reads them. */
  private felixPolicy(view: DatastoreView): Pick<PolicyInput, 'failsafeInbound' | 'failsafeOutbound' | 'defaultEndpointToHostAction'> {
    type Spec = { failsafeInboundHostPorts?: FailsafePort[]; failsafeOutboundHostPorts?: FailsafePort[]; defaultEndpointToHostAction?: string };
    const specs = [view.get('FelixConfiguration', `node.${this.node}`), view.get('FelixConfiguration', 'default')].map((f) => (f?.spec ?? {}) as Spec);
    const pick = <K extends keyof Spec>(key: K): Spec[K] => specs.find((s) => s[key] !== undefined && s[key] !== null)?.[key];
    const inbound = pick('failsafeInboundHostPorts');
    const outbound = pick('failsafeOutboundHostPorts');
    const action = pick('defaultEndpointToHostAction');
    const normal = typeof action === 'string' ? ({ drop: 'Drop', accept: 'Accept', return: 'Return' } as const)[action.toLowerCase() as 'drop' | 'accept' | 'return'] : undefined;
    return {
      ...(Array.isArray(inbound) ? { failsafeInbound: inbound } : {}),
      ...(Array.isArray(outbound) ? { failsafeOutbound: outbound } : {}),
      ...(normal ? { defaultEndpointToHostAction: normal } : {}),
    };
  }

  /** Computes and writes the whole desired state; the dataplane writes only what changed. */
  private async apply(): Promise<void> {
    const started = performance.now();
    const desired = desiredDataplane(this.input());
    const invalid = desired.invalid.join('; ');
    if (invalid !== this.invalidReported && invalid !== '') this.log.warn({ invalid: desired.invalid }, 'policies that cannot be programmed deny what they select');
    this.invalidReported = invalid;
    const tidy = this.tidyDue;
    this.tidyDue = false;
    const result = await this.dataplane.apply(desired, { tidy });
    const ms = performance.now() - started;
    if (result.chainsWritten || result.setsWritten) this.log.info({ ...result, ...(tidy ? { tidy } : {}), ms: Number(ms.toFixed(1)) }, 'policy programmed');
    if (result.untidy > 0) this.scheduleTidy();
  }

  private scheduleTidy(): void {
    if (this.tidyTimer) return;
    this.tidyTimer = setTimeout(() => {
      this.tidyTimer = undefined;
      this.tidyDue = true;
      this.loop.schedule(0);
    }, TIDY_AFTER_MS);
    this.tidyTimer.unref?.();
  }
}

/** What of an endpoint the packet filter is computed from: all of it but what only names it. */
function policyView(endpoint: WorkloadEndpoint): string {
  const { workload: _workload, containerID: _containerID, ...spec } = endpoint.spec;
  const annotations = Object.fromEntries(Object.entries(endpoint.metadata.annotations ?? {}).filter(([k]) => !NAMING_ANNOTATIONS.has(k)));
  return JSON.stringify([endpoint.metadata.labels, endpoint.metadata.namespace, annotations, spec]);
}

const NAMING_ANNOTATIONS = new Set([DNS_NAMES_ANNOTATION, SANDBOX_ANNOTATION, GATEWAY_ANNOTATION]);
