import { desiredDataplane, PolicyInput } from '../../calc/policy.js';
import { DEFAULT_VXLAN_PORT, poolRouting } from '../../calc/tunnel-routes.js';
import { DNS_NAMES_ANNOTATION, GATEWAY_ANNOTATION, Profile, SANDBOX_ANNOTATION, WorkloadEndpoint } from '../../domain/endpoint-model.js';
import type { IpPool } from '../../domain/ipam-model.js';
import type { CalicoNode, Resource } from '../../domain/resources.js';
import type { FailsafePort, GlobalNetworkPolicy, HostEndpoint, NetworkPolicy, NetworkSet, Tier } from '../../domain/policy-model.js';
import type { HostInterfaceInfo } from '../../calc/host-endpoints.js';
import type { PolicyDataplane } from '../../ports/policy-dataplane.js';
import type { PolicyChange, PolicyStore } from '../../ports/policy-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { ApplyLoop, type ApplyLoopObserver } from '../apply-loop.js';

/**
 * Changes arriving together (in one tick) are applied together, at once: a lone change is programmed
 * without waiting, and changes that come while an apply runs are all in the next one.
 */
const DEBOUNCE_MS = 0;
/** How long after a change what it left unreachable in the kernel is tidied away: off the path of the change, and once for a burst. */
const TIDY_AFTER_MS = 2000;
/** While this host has host endpoints, its interfaces are re-read this often (an address moving moves an expectedIPs endpoint). */
const INTERFACES_EVERY_MS = 10_000;

export interface PolicyAgentOptions {
  /** The host's interfaces and their addresses: for host endpoints found by expectedIPs. */
  interfaces?: () => Promise<HostInterfaceInfo[]>;
  interfacesEveryMs?: number;
  /** Told when the agent is in sync and how each apply went (readiness, metrics). */
  observer?: ApplyLoopObserver;
}

/**
 * Keeps this host's iptables and ipsets in line with the profiles, the endpoints of every node (tag
 * membership spans hosts) and the pools in etcd. Nothing is written before the first full snapshot is
 * in, so a restart never programs a half-loaded view.
 */
export class PolicyAgent {
  private readonly profiles = new Map<string, Profile>();
  private readonly endpoints = new Map<string, WorkloadEndpoint>();
  private readonly pools = new Map<string, IpPool>();
  private readonly nodes = new Map<string, CalicoNode>();
  private readonly felix = new Map<string, Resource>();
  private readonly tiers = new Map<string, Tier>();
  private readonly policies = new Map<string, GlobalNetworkPolicy | NetworkPolicy>();
  private readonly networkSets = new Map<string, NetworkSet>();
  private readonly hostEndpoints = new Map<string, HostEndpoint>();
  private interfaces: HostInterfaceInfo[] = [];
  private interfacesKey = '';
  private interfacesTimer: NodeJS.Timeout | undefined;
  private watch: { cancel(): Promise<void> } | undefined;
  private readonly loop: ApplyLoop;
  private dnsRedirects: { upstream: string; port: number }[] = [];
  private invalidReported = '';
  private tidyTimer: NodeJS.Timeout | undefined;
  private tidyDue = false;

  constructor(
    private readonly store: PolicyStore,
    private readonly dataplane: PolicyDataplane,
    private readonly node: string,
    private readonly log: Logger = silentLogger,
    private readonly options: PolicyAgentOptions = {},
  ) {
    this.loop = new ApplyLoop({ apply: () => this.apply(), reload: () => this.start(), log, failed: 'could not program policy; retrying', lost: 'policy watch lost; reloading', ...(options.observer ? { observer: options.observer } : {}) });
  }

  async start(): Promise<void> {
    const snapshot = await this.store.snapshot();
    for (const map of [this.profiles, this.endpoints, this.pools, this.nodes, this.felix, this.tiers, this.policies, this.networkSets, this.hostEndpoints] as Map<string, unknown>[]) map.clear();
    for (const p of snapshot.profiles) this.profiles.set(p.metadata.name, p);
    for (const e of snapshot.endpoints) this.endpoints.set(e.metadata.name, e);
    for (const p of snapshot.pools) this.pools.set(p.metadata.name, p);
    for (const n of snapshot.nodes) this.nodes.set(n.metadata.name, n);
    for (const f of snapshot.felixConfigurations) this.felix.set(f.metadata.name, f);
    for (const t of snapshot.tiers) this.tiers.set(t.metadata.name, t);
    for (const p of snapshot.policies) this.policies.set(kindKey(p), p);
    for (const n of snapshot.networkSets) this.networkSets.set(kindKey(n), n);
    for (const h of snapshot.hostEndpoints) this.hostEndpoints.set(h.metadata.name, h);
    await this.readInterfaces();
    this.interfacesTimer ??= setInterval(() => void this.interfacesChanged(), this.options.interfacesEveryMs ?? INTERFACES_EVERY_MS);
    this.interfacesTimer.unref?.();
    await this.watch?.cancel().catch(() => undefined);
    this.watch = await this.store.watch(snapshot.revision, (change) => this.onChange(change), (error) => this.loop.watchLost(error));
    await this.loop.synchronised();
  }

  async stop(): Promise<void> {
    clearTimeout(this.tidyTimer);
    this.tidyTimer = undefined;
    clearInterval(this.interfacesTimer);
    this.interfacesTimer = undefined;
    const finished = this.loop.stop();
    const watch = this.watch;
    this.watch = undefined;
    await watch?.cancel().catch(() => undefined);
    await finished;
  }

  /** Where the name service takes containers' DNS queries: in the next apply. */
  setDnsRedirects(redirects: { upstream: string; port: number }[]): void {
    this.dnsRedirects = redirects;
    this.loop.schedule(DEBOUNCE_MS);
  }

  private onChange(change: PolicyChange): void {
    const maps: Record<PolicyChange['kind'], Map<string, unknown>> = {
      profile: this.profiles,
      endpoint: this.endpoints,
      pool: this.pools,
      node: this.nodes,
      felix: this.felix,
      tier: this.tiers,
      policy: this.policies,
      networkSet: this.networkSets,
      hostEndpoint: this.hostEndpoints,
    };
    const map = maps[change.kind];
    const before = map.get(change.name);
    if (change.value === null) map.delete(change.name);
    else map.set(change.name, change.value);
    // An endpoint learning its container's name, sandbox or DNS names changes nothing the filter uses.
    if (change.kind === 'endpoint' && before && change.value && policyView(before as WorkloadEndpoint) === policyView(change.value)) return;
    // A host endpoint may name an address the last reading of the interfaces does not show yet.
    if (change.kind === 'hostEndpoint') void this.readInterfaces().finally(() => this.loop.schedule(DEBOUNCE_MS));
    else this.loop.schedule(DEBOUNCE_MS);
  }

  private hasLocalHostEndpoints(): boolean {
    return [...this.hostEndpoints.values()].some((h) => h.spec?.node === this.node);
  }

  /** Reads the host's interfaces when some host endpoint of this host may need them; true when they changed. */
  private async readInterfaces(): Promise<boolean> {
    if (!this.options.interfaces || !this.hasLocalHostEndpoints()) return false;
    try {
      const interfaces = (await this.options.interfaces()).map((i) => ({ name: i.name, addresses: [...i.addresses].sort() })).sort((a, b) => a.name.localeCompare(b.name));
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
    const pools = [...this.pools.values()];
    const address = (node: CalicoNode | undefined): string | undefined => node?.spec?.bgp?.ipv4Address?.split('/')[0];
    const encapsulations = new Set(pools.map((p) => poolRouting(p)?.encapsulation));
    const vxlanPort = (this.felix.get('default')?.spec as { vxlanPort?: number } | undefined)?.vxlanPort ?? DEFAULT_VXLAN_PORT;
    const hosts = [...this.nodes.values()].filter((n) => n.metadata.name !== this.node).map(address).filter((a): a is string => a !== undefined);
    const hostAddress = address(this.nodes.get(this.node));
    return {
      node: this.node,
      profiles: [...this.profiles.values()],
      endpoints: [...this.endpoints.values()],
      pools: pools.map((p) => ({ cidr: p.spec.cidr, natOutgoing: p.spec.natOutgoing === true })),
      tiers: [...this.tiers.values()],
      policies: [...this.policies.values()],
      networkSets: [...this.networkSets.values()],
      hostEndpoints: [...this.hostEndpoints.values()],
      interfaces: this.interfaces,
      ...this.felixPolicy(),
      ...(hostAddress ? { hostAddress } : {}),
      ...(this.dnsRedirects.length ? { dnsRedirects: this.dnsRedirects } : {}),
      ...(encapsulations.has('vxlan') || encapsulations.has('ipip')
        ? { tunnels: { hosts, ...(encapsulations.has('vxlan') ? { vxlanPort } : {}), ipip: encapsulations.has('ipip') } }
        : {}),
    };
  }

  /** FelixConfiguration's policy settings: the node's own (`node.<name>`) over `default`, as Felix reads them. */
  private felixPolicy(): Pick<PolicyInput, 'failsafeInbound' | 'failsafeOutbound' | 'defaultEndpointToHostAction'> {
    type Spec = { failsafeInboundHostPorts?: FailsafePort[]; failsafeOutboundHostPorts?: FailsafePort[]; defaultEndpointToHostAction?: string };
    const specs = [this.felix.get(`node.${this.node}`), this.felix.get('default')].map((f) => (f?.spec ?? {}) as Spec);
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

/** How the store names policies and network sets in its changes: `<Kind>/[<namespace>/]<name>` (two kinds share one map). */
function kindKey(resource: { kind: string; metadata: { name: string; namespace?: string } }): string {
  return `${resource.kind}/${resource.metadata.namespace ? `${resource.metadata.namespace}/` : ''}${resource.metadata.name}`;
}
