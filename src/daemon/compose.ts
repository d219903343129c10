import type { Logger } from 'pino';
import { BirdSpeaker } from '../adapters/bird/bird-speaker.js';
import { CommandHelper } from '../adapters/dataplane/command-helper.js';
import { IptablesPolicyDataplane } from '../adapters/dataplane/iptables/policy-dataplane.js';
import { NetlinkDataplane } from '../adapters/dataplane/netlink/netlink-dataplane.js';
import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdEndpointStore } from '../adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { EtcdResourceStore } from '../adapters/datastore/etcd/etcd-resource-store.js';
import { EtcdSyncSource } from '../adapters/datastore/etcd/etcd-sync-source.js';
import { DockerHttpApi, dockerTarget } from '../adapters/docker/docker-http-api.js';
import { KernelHostNetwork } from '../adapters/host/host-network.js';
import { writeHostStatus } from '../adapters/host/status-file.js';
import { buildDockerPlugin } from '../plugin/docker-plugin.js';
import { ipamMethods } from '../plugin/ipam-methods.js';
import { networkMethods } from '../plugin/network-methods.js';
import { DockerIpamDriver } from '../services/ipam/docker-ipam-driver.js';
import { DockerReleases } from '../services/ipam/docker-releases.js';
import { IpamService } from '../services/ipam/ipam-service.js';
import { PoolService } from '../services/ipam/pool-service.js';
import { BlockRoutes } from '../services/network/block-routes.js';
import { EndpointReconciler } from '../services/network/endpoint-reconciler.js';
import { DockerWatcher } from '../services/network/docker-watcher.js';
import { NetworkDriver } from '../services/network/network-driver.js';
import { NetworkProfiles } from '../services/network/network-profiles.js';
import { PublishedPorts } from '../services/network/published-ports.js';
import { NodeRegistration } from '../services/nodes/node-registration.js';
import { TunnelAddresses } from '../services/nodes/tunnel-addresses.js';
import { PolicyAgent } from '../services/policy/policy-agent.js';
import { NameService } from '../services/dns/name-service.js';
import { DnsProxy } from '../adapters/dns/dns-proxy.js';
import { readFileSync } from 'node:fs';
import { formatIp } from '../domain/cidr.js';
import { BgpAgent } from '../services/routing/bgp-agent.js';
import { TunnelAgent } from '../services/routing/tunnel-agent.js';
import { everyObserver } from '../services/apply-loop.js';
import { HealthAggregator, notReady, READY } from '../services/health.js';
import { DatastoreSyncer } from '../services/sync/datastore-syncer.js';
import type { DaemonConfig } from './config.js';
import type { DaemonMetrics } from './metrics.js';
import { healthServer, metricsServer } from './observability-http.js';

/** The name Docker knows the network driver by: the socket file's name. */
export const DRIVER_NAME = 'calico';

/** BIRD must answer a readiness probe well within the probe's own deadline. */
const BIRD_PROBE_MS = 1500;

/**
 * Every part of the daemon, built from its configuration: adapters on the outside, services in the
 * middle, the two plugin apps Docker talks to, and the health and metrics servers. Nothing runs until
 * main starts it.
 */
export function composeDaemon(config: DaemonConfig, log: Logger, metrics?: DaemonMetrics) {
  const health = new HealthAggregator();
  const observeLoop = (agent: string) => everyObserver([health.applyLoop(agent), metrics?.applyLoop(agent)]);
  const etcd = new EtcdClient(config.etcd, metrics?.etcdCall);
  const store = new EtcdIpamStore(etcd);
  const resources = new EtcdResourceStore(etcd);
  const endpointStore = new EtcdEndpointStore(etcd);
  const sync = new DatastoreSyncer(new EtcdSyncSource(etcd), log.child({ component: 'datastore' }), metrics?.resyncStarted);
  const commands = new CommandHelper();
  const run = metrics ? metrics.countedCommands(commands.run) : commands.run;
  const dataplane = new NetlinkDataplane(run);
  const docker = new DockerHttpApi(dockerTarget(config.dockerHost));
  const hostNetwork = new KernelHostNetwork(dataplane);
  const pools = new PoolService(store, log);
  const node = config.nodeName;
  // The speaker of this host, or, for the other backends, one to stop if a BIRD was left running.
  const bird = new BirdSpeaker({ runDir: config.runDir, run, log: log.child({ component: 'bird' }) });
  let blockRoutes: BlockRoutes | undefined;
  let bgp: BgpAgent | undefined;
  const ipam = new IpamService(store, sync, {
    node,
    log,
    onOwnedBlocksChanged: () => {
      void blockRoutes?.sync();
      bgp?.blocksChanged();
    },
    observer: metrics?.ipam,
  });
  blockRoutes = new BlockRoutes(ipam, dataplane, log);
  if (config.backend === 'bird') {
    bgp = new BgpAgent(sync, bird, {
      node,
      ...(config.routerId ? { routerId: config.routerId } : {}),
      ownedBlocks: () => ipam.ownedBlocks(),
      kernel: dataplane,
      log: log.child({ component: 'bgp' }),
      observer: observeLoop('bgp'),
    });
  }
  const tunnels = new TunnelAgent(sync, dataplane, {
    node,
    addresses: new TunnelAddresses(resources, ipam, node, log.child({ component: 'tunnels' })),
    host: hostNetwork,
    onStatus: (status) => writeHostStatus(config.runDir, status),
    log: log.child({ component: 'tunnels' }),
    observer: observeLoop('tunnels'),
  });
  const releases = new DockerReleases(ipam);
  const ipamDriver = new DockerIpamDriver(ipam, pools, releases);
  // A managed plugin's networks carry its reference (NAME:TAG), which only Docker knows: learnt after start.
  const driver: { name: string | undefined } = { name: config.managedPlugin ? undefined : DRIVER_NAME };
  const dockerWatcher = new DockerWatcher(
    docker,
    endpointStore,
    {
      node,
      get driverName() {
        return driver.name;
      },
      labelEndpoints: config.labelEndpoints,
    },
    log.child({ component: 'docker' }),
  );
  const networkDriver = new NetworkDriver(
    endpointStore,
    dataplane,
    dockerWatcher,
    ipam,
    releases,
    new NetworkProfiles(endpointStore, log),
    { node, ...config.network, encapsulationMtu: () => tunnels.workloadMtu() },
    log,
  );
  const policy = new PolicyAgent(sync, new IptablesPolicyDataplane(run), node, log.child({ component: 'policy' }), {
    // Host endpoints found by their expectedIPs: the interfaces holding them.
    interfaces: async () => (await dataplane.listInterfaces()).map((i) => ({ name: i.name, addresses: i.addresses.map((a) => formatIp(a.address)) })),
    observer: observeLoop('policy'),
  });
  const dnsLog = log.child({ component: 'dns' });
  let dnsProxy: DnsProxy | undefined;
  const names = config.dns.enabled
    ? new NameService(
        sync,
        {
          node,
          basePort: config.dns.basePort,
          readResolvConf: () => readFileSync(config.dns.resolvConf, 'utf8'),
          // The ports listen before any query is sent to them.
          onListeners: (listeners) =>
            void dnsProxy!
              .serve(listeners)
              .then(() => policy.setDnsRedirects(listeners))
              .catch((error) => dnsLog.error({ err: error, listeners }, 'could not listen for containers\' DNS queries; they go to their servers directly')),
        },
        dnsLog,
      )
    : undefined;
  if (names) dnsProxy = new DnsProxy((question, source) => names.answer(question, source), dnsLog);
  const reconciler = new EndpointReconciler(
    endpointStore,
    dataplane,
    docker,
    ipam,
    {
      node,
      get driverName() {
        return driver.name;
      },
      graceMs: config.gcGraceMs,
      busyInterfaces: () => networkDriver.busyInterfaces(),
    },
    log,
  );
  const ipamApp = buildDockerPlugin({ implements: ['IpamDriver'], methods: ipamMethods(ipamDriver), logger: log.child({ socket: 'calico-ipam' }), onRequestDone: metrics?.dockerRequest });
  const networkApp = buildDockerPlugin({
    implements: ['NetworkDriver', 'IpamDriver'],
    methods: { ...networkMethods(networkDriver, new PublishedPorts(endpointStore, node)), ...ipamMethods(ipamDriver) },
    logger: log.child({ socket: 'calico' }),
    onRequestDone: metrics?.dockerRequest,
  });
  health.register('datastore', () => {
    const problem = etcd.watchProblem();
    return problem ? notReady(problem) : READY;
  });
  health.register('sync', () => (sync.inSync() ? READY : notReady('the datastore view is not loaded, or its watch is being reloaded')));
  if (config.backend === 'bird') {
    health.register('bird', async () => {
      const status = await bird.status(BIRD_PROBE_MS);
      return status.up ? READY : notReady(`BIRD is not up: ${status.detail}`);
    });
  }
  metrics?.collectFrom({
    localEndpoints: () => networkDriver.localEndpointCount(),
    clusterHosts: () => tunnels.nodeCount(),
    ipamUsage: () => ipam.usage(),
    ...(config.backend === 'bird' ? { birdProtocols: () => bird.protocols(BIRD_PROBE_MS) } : {}),
  });
  return {
    etcd,
    sync,
    docker,
    driver,
    resources,
    commands,
    dataplane,
    pools,
    ipam,
    registration: new NodeRegistration(resources, hostNetwork, log.child({ component: 'node' })),
    reconciler,
    policy,
    dockerWatcher,
    networkDriver,
    names,
    dnsProxy,
    bird,
    bgp,
    tunnels,
    ipamApp,
    networkApp,
    healthServer: config.health.enabled ? healthServer(health) : undefined,
    metricsServer: metrics && metricsServer(metrics.registry),
  };
}

export type DaemonParts = ReturnType<typeof composeDaemon>;
