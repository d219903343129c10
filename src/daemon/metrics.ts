import { basename } from 'node:path';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';
import type { BirdProtocol } from '../adapters/bird/bird-control.js';
import type { CommandRunner } from '../adapters/dataplane/command.js';
import type { EtcdCallObserver } from '../adapters/datastore/etcd/etcd-client.js';
import type { RequestOutcome } from '../plugin/docker-plugin.js';
import type { ApplyLoopObserver } from '../services/apply-loop.js';
import type { IpamObserver, PoolUsage } from '../services/ipam/ipam-service.js';
import { peerStatuses } from '../services/routing/bgp-status.js';

/** What the daemon knows at the moment of a scrape, read only then. */
export interface MetricsSources {
  localEndpoints: () => number;
  clusterHosts: () => number;
  ipamUsage: () => PoolUsage[];
  /** BIRD's protocols, when this host runs BIRD. */
  birdProtocols?: () => Promise<BirdProtocol[]>;
}

/** Agents whose applies are Felix's "int dataplane" (iptables, ipsets, routes); BGP's are BIRD's. */
const DATAPLANE_LOOPS = new Set(['policy', 'tunnels']);
const PREFIX = 'calico_libnetwork_';
/** Docker waits up to 10 s per request; most take milliseconds. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A kernel tool's calls and errors under Felix's names, by the tool's name. */
function toolCounters(registry: Registry): Map<string, { calls: Counter; errors: Counter }> {
  const pair = (felixName: string, what: string) => ({
    calls: new Counter({ name: `felix_${felixName}_calls`, help: `Number of ${what} calls.`, registers: [registry] }),
    errors: new Counter({ name: `felix_${felixName}_errors`, help: `Number of ${what} errors.`, registers: [registry] }),
  });
  const restore = pair('iptables_restore', 'iptables-restore');
  const save = pair('iptables_save', 'iptables-save');
  const ipset = pair('ipset', 'ipset');
  return new Map([
    ['iptables-restore', restore],
    ['ip6tables-restore', restore],
    ['iptables-save', save],
    ['ip6tables-save', save],
    ['ipset', ipset],
  ]);
}

/**
 * The daemon's Prometheus metrics, in a registry of their own (nothing global): Felix's names where
 * the meaning is Felix's, so its dashboards work, and `calico_libnetwork_*` for the plugin's own.
 * Built only when metrics are enabled; each part of the daemon is handed the small observer it needs.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly tools = toolCounters(this.registry);
  private readonly applyTime = new Summary({
    name: 'felix_int_dataplane_apply_time_seconds',
    help: 'Time in seconds that it took to apply a dataplane update (policy and tunnel routes).',
    percentiles: [0.5, 0.9, 0.99],
    maxAgeSeconds: 600,
    ageBuckets: 5,
    registers: [this.registry],
  });
  private readonly applyFailures = new Counter({ name: 'felix_int_dataplane_failures', help: 'Number of times dataplane updates failed and will be retried.', registers: [this.registry] });
  private readonly resyncs = new Counter({ name: 'felix_resyncs_started', help: 'Number of times the daemon lost its datastore watch and started reading the datastore again.', registers: [this.registry] });
  private readonly agentApplies = new Histogram({
    name: `${PREFIX}apply_time_seconds`,
    help: 'Time in seconds each agent took to apply its desired state, by agent and outcome.',
    labelNames: ['agent', 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly dockerRequests = new Counter({ name: `${PREFIX}docker_requests_total`, help: 'Docker plugin requests answered, by method and outcome (served, refused, failed).', labelNames: ['method', 'outcome'], registers: [this.registry] });
  private readonly dockerLatency = new Histogram({ name: `${PREFIX}docker_request_duration_seconds`, help: 'Time in seconds to answer a Docker plugin request, by method.', labelNames: ['method'], buckets: REQUEST_BUCKETS, registers: [this.registry] });
  private readonly etcdCalls = new Counter({ name: `${PREFIX}etcd_round_trips_total`, help: 'etcd round trips (range, txn, delete), by operation.', labelNames: ['operation'], registers: [this.registry] });
  private readonly etcdErrors = new Counter({ name: `${PREFIX}etcd_errors_total`, help: 'etcd round trips that failed (etcd unreachable or too slow), by operation.', labelNames: ['operation'], registers: [this.registry] });
  private readonly etcdLatency = new Histogram({ name: `${PREFIX}etcd_round_trip_seconds`, help: 'Time in seconds of one etcd round trip, by operation.', labelNames: ['operation'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 4], registers: [this.registry] });
  private readonly claims = new Counter({ name: `${PREFIX}ipam_block_claims_total`, help: 'Allocation blocks this node claimed.', registers: [this.registry] });
  private readonly borrows = new Counter({ name: `${PREFIX}ipam_borrowed_addresses_total`, help: "Addresses this node assigned from another node's block.", registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** The gauges read at each scrape, from parts built after this registry (its counters are handed out first). */
  collectFrom(sources: MetricsSources): void {
    const gauge = (name: string, help: string, collect: (g: Gauge) => void | Promise<void>, labelNames: string[] = []) =>
      new Gauge({ name, help, labelNames, registers: [this.registry], collect() { return collect(this); } });
    gauge('felix_active_local_endpoints', 'Number of active endpoints on this host.', (g) => g.set(sources.localEndpoints()));
    gauge('felix_cluster_num_hosts', 'Total number of Calico hosts in the cluster.', (g) => g.set(sources.clusterHosts()));
    gauge(`${PREFIX}ipam_addresses_in_use`, 'Addresses allocated in each pool, by every node.', (g) => setEach(g, sources.ipamUsage(), (u) => u.inUse), ['pool']);
    gauge(`${PREFIX}ipam_blocks_owned`, "Allocation blocks of each pool affine to this node.", (g) => setEach(g, sources.ipamUsage(), (u) => u.ownedBlocks), ['pool']);
    if (sources.birdProtocols) {
      const protocols = sources.birdProtocols;
      gauge(`${PREFIX}bgp_sessions`, "BGP sessions of this host's BIRD, by BGP state (Established, Active, Connect, ...).", async (g) => {
        g.reset();
        // BIRD not answering: no sessions to report, and the readiness probe says why.
        const rows = await protocols().catch(() => []);
        for (const peer of peerStatuses(rows, (since) => since)) g.inc({ state: peer.info.split(' ')[0]! });
      }, ['state']);
    }
  }

  /** The runner that counts each iptables-restore, iptables-save and ipset call, and each that exits non-zero. */
  countedCommands(run: CommandRunner): CommandRunner {
    return async (command, args, input) => {
      const counters = this.tools.get(basename(command));
      counters?.calls.inc();
      const result = await run(command, args, input);
      if (result.code !== 0) counters?.errors.inc();
      return result;
    };
  }

  /** The daemon's syncer started reading the datastore again after losing its watch. */
  readonly resyncStarted = (): void => this.resyncs.inc();

  /** The observer of one agent's apply loop. */
  applyLoop(agent: string): ApplyLoopObserver {
    const dataplane = DATAPLANE_LOOPS.has(agent);
    return {
      synchronised: () => undefined,
      applied: (seconds, error) => {
        this.agentApplies.observe({ agent, outcome: error === undefined ? 'ok' : 'failed' }, seconds);
        if (!dataplane) return;
        this.applyTime.observe(seconds);
        if (error !== undefined) this.applyFailures.inc();
      },
    };
  }

  readonly dockerRequest = (method: string, outcome: RequestOutcome, seconds: number): void => {
    this.dockerRequests.inc({ method, outcome });
    this.dockerLatency.observe({ method }, seconds);
  };

  readonly etcdCall: EtcdCallObserver = (operation, seconds, failed) => {
    this.etcdCalls.inc({ operation });
    this.etcdLatency.observe({ operation }, seconds);
    if (failed) this.etcdErrors.inc({ operation });
  };

  readonly ipam: IpamObserver = {
    blockClaimed: () => this.claims.inc(),
    borrowed: (addresses) => this.borrows.inc(addresses),
  };
}

/** A labelled gauge holding exactly the current pools: a deleted pool's series goes. */
function setEach(gauge: Gauge, usage: PoolUsage[], value: (u: PoolUsage) => number): void {
  gauge.reset();
  for (const u of usage) gauge.set({ pool: u.pool }, value(u));
}
