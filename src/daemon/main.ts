#!/usr/bin/env node
import { pino } from 'pino';
import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdEndpointStore } from '../adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { NetlinkDataplane } from '../adapters/dataplane/netlink/netlink-dataplane.js';
import { CommandHelper } from '../adapters/dataplane/command-helper.js';
import { IptablesPolicyDataplane } from '../adapters/dataplane/iptables/policy-dataplane.js';
import { EtcdPolicyStore } from '../adapters/datastore/etcd/etcd-policy-store.js';
import { PolicyAgent } from '../services/policy/policy-agent.js';
import { DockerHttpApi, dockerTarget } from '../adapters/docker/docker-http-api.js';
import { buildDockerPlugin } from '../plugin/docker-plugin.js';
import { ipamMethods } from '../plugin/ipam-methods.js';
import { networkMethods } from '../plugin/network-methods.js';
import { DockerIpamDriver } from '../services/ipam/docker-ipam-driver.js';
import { IpamService } from '../services/ipam/ipam-service.js';
import { PoolService } from '../services/ipam/pool-service.js';
import { BlockRoutes } from '../services/network/block-routes.js';
import { EndpointReconciler } from '../services/network/endpoint-reconciler.js';
import { NetworkDriver } from '../services/network/network-driver.js';
import { configFrom } from './config.js';
import { EmbeddedEtcd, somethingListens } from './embedded-etcd.js';
import { listenOnSocket } from './sockets.js';
import { silenceGrpcTlsWarning } from './warnings.js';

silenceGrpcTlsWarning();

/** The name Docker knows the network driver by: the socket file's name. */
const DRIVER_NAME = 'calico';

async function main(): Promise<void> {
  const config = configFrom(process.env);
  const log = pino({ level: config.logLevel, base: { node: config.nodeName } });

  let embedded: EmbeddedEtcd | undefined;
  if (!config.etcdConfigured && !(await somethingListens('127.0.0.1', 2379))) {
    embedded = new EmbeddedEtcd(config.etcdBinary, config.embeddedEtcdDataDir, log);
    await embedded.start();
  }

  const etcd = new EtcdClient(config.etcd);
  const store = new EtcdIpamStore(etcd);
  const endpointStore = new EtcdEndpointStore(etcd);
  const dataplane = new NetlinkDataplane();
  const commands = new CommandHelper();
  const docker = new DockerHttpApi(dockerTarget(config.dockerHost));
  const pools = new PoolService(store, log);
  let blockRoutes: BlockRoutes | undefined;
  const ipam = new IpamService(store, { node: config.nodeName, log, onOwnedBlocksChanged: () => void blockRoutes?.sync() });
  blockRoutes = new BlockRoutes(ipam, dataplane, log);
  const ipamDriver = new DockerIpamDriver(ipam, pools);
  const networkDriver = new NetworkDriver(endpointStore, dataplane, docker, ipam, { node: config.nodeName, ...config.network }, log);
  const policy = new PolicyAgent(new EtcdPolicyStore(etcd), new IptablesPolicyDataplane(commands.run), config.nodeName, log.child({ component: 'policy' }));
  const reconciler = new EndpointReconciler(endpointStore, dataplane, docker, ipam, { node: config.nodeName, driverName: DRIVER_NAME, graceMs: config.gcGraceMs, busyInterfaces: () => networkDriver.busyInterfaces() }, log);

  const ipamApp = buildDockerPlugin({ implements: ['IpamDriver'], methods: ipamMethods(ipamDriver), logger: log.child({ socket: 'calico-ipam' }) });
  const networkApp = buildDockerPlugin({
    implements: ['NetworkDriver', 'IpamDriver'],
    methods: { ...networkMethods(networkDriver), ...ipamMethods(ipamDriver) },
    logger: log.child({ socket: 'calico' }),
  });
  await listenOnSocket(ipamApp, `${config.pluginDir}/calico-ipam.sock`);
  await listenOnSocket(networkApp, `${config.pluginDir}/calico.sock`);
  log.info({ pluginDir: config.pluginDir, etcd: config.etcd.endpoints, embeddedEtcd: Boolean(embedded) }, 'calico-libnetwork serving');

  void prepareDatastore(pools, ipam, config.defaultPools, log).then(async () => {
    await reconciler.reconcileDataplane().catch((error) => log.error({ err: error }, 'could not reconcile the dataplane'));
    await startPolicy(policy, log);
    log.info({}, 'dataplane reconciled');
  });
  const gc = setInterval(() => {
    reconciler
      .reconcileDataplane()
      .then(() => reconciler.collectGarbage())
      .then((removed) => (removed.endpoints || removed.addresses) && log.info(removed, 'garbage collected'))
      .catch((error) => log.warn({ err: error }, 'garbage collection failed'));
  }, config.gcIntervalMs);
  gc.unref();

  let closing = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down');
    clearInterval(gc);
    await Promise.allSettled([ipamApp.close(), networkApp.close()]);
    await ipam.stop();
    await policy.stop();
    commands.close();
    etcd.close();
    await dataplane.close();
    await embedded?.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function startPolicy(policy: PolicyAgent, log: pino.Logger): Promise<void> {
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await policy.start();
    } catch (error) {
      log.warn({ err: error, retryInMs: delay }, 'policy agent not ready');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Creates the default pools and loads the IPAM cache, retrying until etcd answers; requests meanwhile get a clear error. */
async function prepareDatastore(pools: PoolService, ipam: IpamService, defaults: { ipv4?: string; ipv6?: string }, log: pino.Logger): Promise<void> {
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      await pools.ensureDefaults(defaults);
      await ipam.start();
      return;
    } catch (error) {
      log.warn({ err: error, retryInMs: delay }, 'datastore not ready');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** `calico-libnetwork uninstall`: removes every iptables chain, hook and ipset the daemon made. */
async function uninstall(): Promise<void> {
  await new IptablesPolicyDataplane().uninstall();
  process.stdout.write('Removed the iptables chains, hooks and ipsets of calico-libnetwork.\n');
}

(process.argv[2] === 'uninstall' ? uninstall() : main()).catch((error: unknown) => {
  process.stderr.write(`calico-libnetwork: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
