#!/usr/bin/env node
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdEndpointStore } from '../adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { EtcdResourceStore } from '../adapters/datastore/etcd/etcd-resource-store.js';
import { NetlinkDataplane } from '../adapters/dataplane/netlink/netlink-dataplane.js';
import { CommandHelper } from '../adapters/dataplane/command-helper.js';
import { IptablesPolicyDataplane } from '../adapters/dataplane/iptables/policy-dataplane.js';
import { EtcdPolicyStore } from '../adapters/datastore/etcd/etcd-policy-store.js';
import { BirdSpeaker } from '../adapters/bird/bird-speaker.js';
import { KernelHostNetwork } from '../adapters/host/host-network.js';
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
import { NetworkProfiles } from '../services/network/network-profiles.js';
import { NodeAddressConflictError, NodeRegistration } from '../services/nodes/node-registration.js';
import { BgpAgent } from '../services/routing/bgp-agent.js';
import { AppError } from '../domain/errors.js';
import { configFrom, DAEMON_PID_FILE, DaemonConfig } from './config.js';
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
  const resources = new EtcdResourceStore(etcd);
  const endpointStore = new EtcdEndpointStore(etcd);
  const dataplane = new NetlinkDataplane();
  const commands = new CommandHelper();
  const docker = new DockerHttpApi(dockerTarget(config.dockerHost));
  const pools = new PoolService(store, log);
  let blockRoutes: BlockRoutes | undefined;
  let bgp: BgpAgent | undefined;
  const ipam = new IpamService(store, {
    node: config.nodeName,
    log,
    onOwnedBlocksChanged: () => {
      void blockRoutes?.sync();
      bgp?.blocksChanged();
    },
  });
  blockRoutes = new BlockRoutes(ipam, dataplane, log);
  const bird = config.backend === 'bird' ? new BirdSpeaker({ runDir: config.runDir, run: commands.run, log: log.child({ component: 'bird' }) }) : undefined;
  bgp = bird
    ? new BgpAgent(resources, bird, { node: config.nodeName, ...(config.routerId ? { routerId: config.routerId } : {}), ownedBlocks: () => ipam.ownedBlocks(), log: log.child({ component: 'bgp' }) })
    : undefined;
  const registration = new NodeRegistration(resources, new KernelHostNetwork(dataplane), log.child({ component: 'node' }));
  const ipamDriver = new DockerIpamDriver(ipam, pools);
  const networkDriver = new NetworkDriver(endpointStore, dataplane, docker, ipam, new NetworkProfiles(endpointStore, log), { node: config.nodeName, ...config.network }, log);
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
  writePidFile(config.runDir);
  log.info({ pluginDir: config.pluginDir, etcd: config.etcd.endpoints, embeddedEtcd: Boolean(embedded), backend: config.backend }, 'calico-libnetwork serving');

  void (async () => {
    const node = await untilDone(log, 'node not registered', () =>
      registration.register({ node: config.nodeName, ipv4: config.node.ipv4, ipv6: config.node.ipv6, ...(config.node.asNumber ? { asNumber: config.node.asNumber } : {}) }),
    );
    log.info({ bgp: node.spec.bgp ?? {} }, 'node registered');
    await untilDone(log, 'datastore not ready', async () => {
      await pools.ensureDefaults(config.defaultPools);
      await ipam.start();
    });
    await reconciler.reconcileDataplane().catch((error) => log.error({ err: error }, 'could not reconcile the dataplane'));
    await untilDone(log, 'policy agent not ready', () => policy.start());
    if (bgp) await untilDone(log, 'BGP agent not ready', () => bgp.start());
    log.info({}, 'dataplane reconciled');
  })().catch((error: unknown) => {
    // A node that cannot be what it says (another node holds its address) must not run at all.
    log.fatal({ err: error }, 'cannot start');
    process.stderr.write(`calico-libnetwork: ${(error as Error).message}\n`);
    process.exit(1);
  });
  const gc = setInterval(() => {
    reconciler
      .reconcileDataplane()
      .then(() => reconciler.collectGarbage())
      .then((removed) => (removed.endpoints || removed.addresses || removed.blocks) && log.info(removed, 'garbage collected'))
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
    await bgp?.stop();
    // BIRD keeps running and keeps this host's routes: the next daemon adopts it.
    await bird?.detach();
    commands.close();
    etcd.close();
    await dataplane.close();
    await embedded?.stop();
    rmSync(join(config.runDir, DAEMON_PID_FILE), { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** `calicoctl node status` tells from this file whether the daemon of this host runs. */
function writePidFile(runDir: DaemonConfig['runDir']): void {
  mkdirSync(runDir, { recursive: true, mode: 0o755 });
  writeFileSync(join(runDir, DAEMON_PID_FILE), `${process.pid}\n`);
}

/**
 * Runs `step` until it succeeds, backing off while the datastore is away; errors that retrying
 * cannot fix (a conflicting node, bad settings) end the attempt.
 */
async function untilDone<T>(log: pino.Logger, what: string, step: () => Promise<T>): Promise<T> {
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await step();
    } catch (error) {
      if (error instanceof NodeAddressConflictError || (error instanceof AppError && error.code === 'E_INVALID_REQUEST')) throw error;
      log.warn({ err: error, retryInMs: delay }, what);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** `calico-libnetwork uninstall`: removes every iptables chain, hook and ipset the daemon made, and stops BIRD. */
async function uninstall(): Promise<void> {
  await new IptablesPolicyDataplane().uninstall();
  const config = configFrom(process.env);
  const helper = new CommandHelper();
  await new BirdSpeaker({ runDir: config.runDir, run: helper.run }).shutdown();
  helper.close();
  process.stdout.write('Removed the iptables chains, hooks and ipsets of calico-libnetwork and stopped BIRD.\n');
}

(process.argv[2] === 'uninstall' ? uninstall() : main()).catch((error: unknown) => {
  process.stderr.write(`calico-libnetwork: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
