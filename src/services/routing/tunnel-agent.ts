import { planTunnels, poolRouting, TunnelPlan } from '../../calc/tunnel-routes.js';
import { parseIp } from '../../domain/cidr.js';
import type { IpPool } from '../../domain/ipam-model.js';
import { CalicoNode, nodeBgpConfigurationName, Resource } from '../../domain/resources.js';
import type { TunnelDataplane } from '../../ports/dataplane.js';
import type { HostNetwork } from '../../ports/host-network.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { interfaceAddress } from '../nodes/address-detection.js';
import { ApplyLoop, type ApplyLoopObserver } from '../apply-loop.js';
import type { DatastoreSyncer, ViewChange } from '../sync/datastore-syncer.js';
import { followDatastore, Following } from '../sync/follow-datastore.js';
import { IPIP_ADDRESS, TunnelAddresses, VXLAN_ADDRESS } from '../nodes/tunnel-addresses.js';

const DEBOUNCE_MS = 5;
/** How often the kernel itself is compared with the plan (Felix refreshes its routes every 90 s). */
const RESYNC_MS = 90_000;
const KINDS = ['Node', 'IPPool', 'FelixConfiguration'];

export const IPIP_UNAVAILABLE = 'this kernel has no ipip module: pools in IPIP mode are not routed through this host (VXLAN works)';

export interface TunnelAgentOptions {
  node: string;
  addresses: TunnelAddresses;
  host: HostNetwork;
  /** Told when what `calicoctl node status` should say changes. */
  onStatus?: (status: { ipipUnavailable?: string }) => void;
  log?: Logger;
  /** Told of syncs and applies (readiness, metrics). */
  observer?: ApplyLoopObserver;
}

type TunnelUnderlay = { interfaceName: string; mtu: number };

interface FelixVxlan {
  vxlanVNI?: number;
  vxlanPort?: number;
  vxlanMTU?: number;
}

/**
 * Routes for pools in VXLAN or IPIP mode, computed from the datastore alone, as Felix does: it
 * follows the Nodes, pools, FelixConfiguration and blocks in the daemon's view of the datastore, keeps
 * this node's tunnel addresses, computes the tunnel plan purely, and has the dataplane make the kernel
 * match it. With BIRD, BGP routes the other pools; without BIRD these are all the routes there are.
 * Between resyncs (at start, after a failure, every RESYNC_MS) only what changed is written, and the
 * underlay interface is looked up again only when the node's address changes.
 */
export class TunnelAgent {
  private readonly log: Logger;
  private following: Following | undefined;
  private readonly loop: ApplyLoop;
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncDue = true;
  private underlay: { address: string; found: TunnelUnderlay | undefined } | undefined;
  private addressesDirty = true;
  private ipipAvailable = true;
  private plan: TunnelPlan | undefined;
  private reported: boolean | undefined;

  constructor(
    private readonly sync: DatastoreSyncer,
    private readonly dataplane: TunnelDataplane,
    private readonly options: TunnelAgentOptions,
  ) {
    this.log = options.log ?? silentLogger;
    this.loop = new ApplyLoop({ apply: () => this.apply(), log: this.log, failed: 'could not program tunnel routes; retrying', observer: options.observer });
  }

  /** The Calico nodes in the datastore, as the view has them: Felix's cluster size. */
  nodeCount(): number {
    return this.of('Node').length;
  }

  /** The MTU a new workload's veth should have with the encapsulation this host uses now. */
  workloadMtu(): number | undefined {
    return this.plan?.workloadMtu;
  }

  /** Resolves once the first plan was written (or failed, to be retried). */
  async start(): Promise<void> {
    this.following ??= followDatastore(this.sync, this.loop, {
      // After a resync the kernel and the addresses are compared again, not only what changed.
      loaded: () => {
        this.addressesDirty = true;
        this.resyncDue = true;
      },
      changed: (changes) => this.onChanges(changes),
    });
    this.resyncTimer ??= setInterval(() => {
      this.resyncDue = true;
      this.loop.schedule(0);
    }, RESYNC_MS).unref();
    await this.sync.start();
    await this.following.firstApply;
  }

  async stop(): Promise<void> {
    if (this.following) this.sync.unsubscribe(this.following.listener);
    clearInterval(this.resyncTimer);
    await this.loop.stop();
  }

  private onChanges(changes: ViewChange[]): void {
    let relevant = false;
    for (const change of changes) {
      if (change.kind === 'block') relevant = true;
      if (change.kind !== 'resource' || !KINDS.includes(change.ref.kind)) continue;
      relevant = true;
      if (change.ref.kind === 'IPPool' || (change.ref.kind === 'Node' && change.ref.name === this.options.node)) this.addressesDirty = true;
    }
    if (relevant) this.loop.schedule(DEBOUNCE_MS);
  }

  private of<R extends Resource>(kind: string): R[] {
    return this.sync.view.list<R>(kind);
  }

  private felixVxlan(): FelixVxlan {
    const configs = this.of<Resource<'FelixConfiguration', FelixVxlan>>('FelixConfiguration');
    const global = configs.find((c) => c.metadata.name === 'default')?.spec ?? {};
    const mine = configs.find((c) => c.metadata.name === nodeBgpConfigurationName(this.options.node))?.spec ?? {};
    return { ...global, ...mine };
  }

  /** Makes sure of this node's tunnel addresses when they may be due (and runs again), else writes the plan. */
  private async apply(): Promise<void> {
    try {
      const pools = this.of<IpPool>('IPPool');
      if (this.addressesDirty) {
        this.addressesDirty = false;
        await this.options.addresses.ensure(VXLAN_ADDRESS, pools);
        // An IPIP address only where IPIP can be served.
        await this.options.addresses.ensure(IPIP_ADDRESS, this.ipipAvailable ? pools : []);
        return this.loop.schedule(0);
      }
      const resync = this.resyncDue;
      this.resyncDue = false;
      const plan = await this.computePlan(pools, resync);
      const result = await this.dataplane.applyTunnels(plan, { resync });
      this.plan = plan;
      if (result.ipipUnavailable && this.ipipAvailable) {
        this.ipipAvailable = false;
        this.addressesDirty = true;
        this.log.error({}, `IPIP is not available: ${IPIP_UNAVAILABLE}`);
        this.loop.schedule(0);
      }
      this.report(!this.ipipAvailable && pools.some((p) => poolRouting(p)?.encapsulation === 'ipip'));
      if (result.changes) this.log.info({ changes: result.changes, routes: plan.routes.length }, 'tunnel routes programmed');
    } catch (error) {
      // What the kernel holds is unknown after a failed write: the retry compares with it.
      this.resyncDue = true;
      throw error;
    }
  }

  /** What `calicoctl node status` says about IPIP: written when it changes. */
  private report(ipipUnavailable: boolean): void {
    if (ipipUnavailable === this.reported) return;
    this.reported = ipipUnavailable;
    this.options.onStatus?.(ipipUnavailable ? { ipipUnavailable: IPIP_UNAVAILABLE } : {});
  }

  private async computePlan(pools: IpPool[], resync: boolean): Promise<TunnelPlan> {
    const nodes = this.of<CalicoNode>('Node');
    const me = nodes.find((n) => n.metadata.name === this.options.node);
    const encapsulated = pools.some((p) => (poolRouting(p)?.encapsulation ?? 'none') !== 'none');
    const address = me?.spec.bgp?.ipv4Address;
    const underlay = encapsulated && address ? await this.underlayOf(address, resync) : undefined;
    const felix = this.felixVxlan();
    return planTunnels({
      node: this.options.node,
      nodes,
      pools,
      blocks: this.sync.view.allBlocks().map((b) => b.stored.value),
      vxlan: { ...(felix.vxlanVNI ? { vni: felix.vxlanVNI } : {}), ...(felix.vxlanPort ? { port: felix.vxlanPort } : {}), ...(felix.vxlanMTU ? { mtu: felix.vxlanMTU } : {}) },
      ...(underlay ? { underlay } : {}),
      ipipAvailable: this.ipipAvailable,
    });
  }

  /** The interface holding the node's address, and its MTU: what the tunnel devices sit on. */
  private async underlayOf(address: string, resync: boolean): Promise<TunnelUnderlay | undefined> {
    if (!resync && this.underlay?.address === address && this.underlay.found) return this.underlay.found;
    const interfaces = await this.options.host.interfaces();
    const holder = interfaceAddress(interfaces, parseIp(address.split('/')[0]!));
    const mtu = interfaces.find((i) => i.name === holder?.interfaceName)?.mtu;
    const found = holder && mtu ? { interfaceName: holder.interfaceName, mtu } : undefined;
    this.underlay = { address, found };
    return found;
  }
}
