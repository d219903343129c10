import { createHash } from 'node:crypto';
import { computePeerings, nodeAddress } from '../../calc/bgp-peerings.js';
import { BIRD_ROUTE_PROTOCOL, BirdConfigInput, BirdPool, renderBirdConfig, strayRouteRanges } from '../../calc/bird-config.js';
import { poolRouting } from '../../calc/tunnel-routes.js';
import { Cidr, formatIp, parseIp } from '../../domain/cidr.js';
import type { IpPool } from '../../domain/ipam-model.js';
import { BgpConfiguration, BgpPeer, CalicoNode, DEFAULT_BGP_CONFIGURATION, Resource } from '../../domain/resources.js';
import type { BgpSpeaker } from '../../ports/bgp-speaker.js';
import type { Dataplane } from '../../ports/dataplane.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { ApplyLoop, type ApplyLoopObserver } from '../apply-loop.js';
import type { DatastoreSyncer, ViewChange } from '../sync/datastore-syncer.js';
import { followDatastore, Following } from '../sync/follow-datastore.js';

/** Changes arriving together are rendered together. */
const DEBOUNCE_MS = 5;
const KINDS = ['Node', 'BGPConfiguration', 'BGPPeer', 'IPPool'];

export interface BgpAgentOptions {
  node: string;
  /** CALICO_ROUTER_ID: an IPv4 address, `hash`, or unset for the node's IPv4 address. */
  routerId?: string;
  /** The blocks affine to this node, as IPAM knows them now. */
  ownedBlocks: () => Cidr[];
  /** Where stale `proto bird` routes are removed from. */
  kernel: Pick<Dataplane, 'deleteRoutes'>;
  log?: Logger;
  /** Told of syncs and applies (readiness, metrics). */
  observer?: ApplyLoopObserver;
}

/** Calico's `hash` router ID: the first 4 bytes of SHA-256(node name), kept out of the multicast range. */
export function hashedRouterId(node: string): string {
  const bytes = createHash('sha256').update(node).digest().subarray(0, 4);
  if (bytes[0]! > 223) bytes[0]! -= 32;
  return [...bytes].join('.');
}

/** Pools whose routes the daemon programs itself (VXLAN, IPIP) are still advertised, but BIRD keeps them out of the kernel. */
function birdPool(pool: IpPool): BirdPool | undefined {
  const routing = poolRouting(pool);
  if (!routing) return undefined;
  return { cidr: routing.cidr, kernelRoutes: routing.encapsulation === 'none', exported: (pool.spec as { disableBGPExport?: boolean }).disableBGPExport !== true };
}

/**
 * Keeps this host's BGP speaker configured from the datastore, as Calico's confd did: it follows the
 * Nodes, BGPConfiguration, BGPPeers, pools and blocks in the daemon's view (and hears from IPAM when
 * this node's blocks change, before the datastore echoes its own claims),
 * computes the whole configuration purely, and hands it to the speaker only when it changed.
 */
export class BgpAgent {
  private readonly log: Logger;
  private following: Following | undefined;
  private readonly loop: ApplyLoop;
  /** The last configuration handed to the speaker (applied or refused): not handed again until it changes. */
  private last: string | undefined;

  constructor(
    private readonly sync: DatastoreSyncer,
    private readonly speaker: BgpSpeaker,
    private readonly options: BgpAgentOptions,
  ) {
    this.log = options.log ?? silentLogger;
    this.loop = new ApplyLoop({
      apply: () => this.apply(),
      log: this.log,
      failed: 'could not apply the BGP configuration; retrying',
      observer: options.observer,
    });
  }

  /** Resolves once the first configuration was handed to the speaker. */
  async start(): Promise<void> {
    this.following ??= followDatastore(this.sync, this.loop, { changed: (changes) => this.onChanges(changes) });
    await this.sync.start();
    await this.following.firstApply;
  }

  async stop(): Promise<void> {
    if (this.following) this.sync.unsubscribe(this.following.listener);
    await this.loop.stop();
  }

  /** A block changed (a claim, a release, on any node): render again. */
  blocksChanged(): void {
    this.loop.schedule(0);
  }

  private onChanges(changes: ViewChange[]): void {
    if (changes.some((c) => c.kind === 'block')) this.loop.schedule(0);
    else if (changes.some((c) => c.kind === 'resource' && KINDS.includes(c.ref.kind))) this.loop.schedule(DEBOUNCE_MS);
  }

  private of<R extends Resource>(kind: string): R[] {
    return this.sync.view.list<R>(kind);
  }

  /** What the datastore asks the configuration to be made of now, or undefined (with the reason logged) when none can be made. */
  private desiredInput(): BirdConfigInput | undefined {
    const nodes = this.of<CalicoNode>('Node');
    const me = nodes.find((n) => n.metadata.name === this.options.node);
    if (!me) return undefined;
    const config = this.of<BgpConfiguration>('BGPConfiguration').find((c) => c.metadata.name === DEFAULT_BGP_CONFIGURATION)?.spec ?? {};
    const peerings = computePeerings({ node: this.options.node, nodes, peers: this.of<BgpPeer>('BGPPeer'), config });
    for (const problem of peerings.problems) this.log.warn({ problem }, 'BGP peer skipped');
    const routerId = this.routerId(me);
    if (!routerId) {
      this.log.error({ node: this.options.node }, 'Cannot determine a BGP router ID: the node has no IPv4 address; set IP or CALICO_ROUTER_ID');
      return undefined;
    }
    const addresses = { 4: nodeAddress(me, 4), 6: nodeAddress(me, 6) };
    return {
      routerId,
      asNumber: peerings.asNumber,
      ...(peerings.clusterId ? { clusterId: peerings.clusterId } : {}),
      addresses: Object.fromEntries(Object.entries(addresses).filter(([, a]) => a !== undefined)),
      // Disabled pools too: their blocks still hold workloads.
      pools: this.of<IpPool>('IPPool')
        .map(birdPool)
        .filter((p): p is BirdPool => p !== undefined),
      blocks: this.options.ownedBlocks(),
      knownBlocks: this.sync.view.allBlocks().map((b) => b.cidr),
      peerings: peerings.peerings,
      ...(config.logSeverityScreen ? { logSeverity: config.logSeverityScreen } : {}),
    };
  }

  private routerId(me: CalicoNode): string | undefined {
    const configured = this.options.routerId;
    if (configured === 'hash') return hashedRouterId(this.options.node);
    if (configured) return formatIp(parseIp(configured));
    const v4 = nodeAddress(me, 4);
    return v4 ? formatIp(v4) : undefined;
  }

  /**
   * Hands the speaker the configuration, unless it is the one it already has; then removes the
   * kernel routes BIRD's filter now keeps out. BIRD removes those itself, except while it does not
   * sync the kernel: dead and not yet restarted, or in graceful-restart recovery (up to
   * GRACEFUL_RESTART_WAIT_S), when the routes a dead BIRD left would stay.
   */
  private async apply(): Promise<void> {
    const input = this.desiredInput();
    if (!input) return;
    const config = renderBirdConfig(input);
    if (config !== this.last) {
      const started = performance.now();
      const result = await this.speaker.apply(config);
      this.last = config;
      if (result.applied) this.log.info({ ms: Number((performance.now() - started).toFixed(1)) }, 'BGP configuration applied');
    }
    const stray = strayRouteRanges(input.pools, input.knownBlocks);
    const removed = stray.length > 0 ? await this.options.kernel.deleteRoutes(BIRD_ROUTE_PROTOCOL, stray) : 0;
    if (removed > 0) this.log.info({ removed }, 'stale BGP routes removed from the kernel: no block in the datastore holds them');
  }
}
