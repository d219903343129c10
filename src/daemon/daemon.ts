import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ownPluginId } from '../adapters/docker/managed-plugin.js';
import { installedVersion } from '../adapters/host/installation.js';
import { AppError } from '../domain/errors.js';
import { recordClusterInformation } from '../services/nodes/cluster-information.js';
import { NodeAddressConflictError } from '../services/nodes/node-registration.js';
import { composeDaemon, DaemonParts } from './compose.js';
import { DAEMON_PID_FILE, DaemonConfig } from './config.js';
import { EmbeddedEtcd, somethingListens } from './embedded-etcd.js';
import { closeServer, listenInBackground } from './observability-http.js';
import { listenOnSocket } from './sockets.js';

/**
 * The daemon as one thing that starts and stops itself: Docker's sockets first (Docker waits for
 * them), then, in the background, the datastore, this node's registration, IPAM, the kernel brought
 * in line and the agents; garbage collection now and then. `fatal` hears of what retrying cannot fix.
 */
export class Daemon {
  private parts: DaemonParts | undefined;
  private embedded: EmbeddedEtcd | undefined;
  private gc: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly config: DaemonConfig,
    private readonly log: Logger,
    private readonly fatal: (error: Error) => void,
  ) {}

  async start(): Promise<void> {
    const { config, log } = this;
    this.embedded = config.etcdConfigured ? undefined : await singleHostEtcd(config, log);
    // Without metrics nothing is wrapped or counted, and prom-client is not even loaded (~3 MB).
    const metrics = config.metrics.enabled ? new (await import('./metrics.js')).DaemonMetrics() : undefined;
    const parts = composeDaemon(config, log, metrics);
    this.parts = parts;
    await listenOnSocket(parts.ipamApp, `${config.pluginDir}/calico-ipam.sock`);
    await listenOnSocket(parts.networkApp, `${config.pluginDir}/calico.sock`);
    writePidFile(config.runDir);
    if (parts.healthServer) listenInBackground(parts.healthServer, config.health, 'health (/liveness, /readiness)', log);
    if (parts.metricsServer) listenInBackground(parts.metricsServer, config.metrics, 'Prometheus metrics (/metrics)', log);
    if (config.managedPlugin) {
      log.warn({ limits: MANAGED_PLUGIN_LIMITS }, `running as a managed Docker plugin, which cannot: ${MANAGED_PLUGIN_LIMITS.join('; ')}`);
      void learnPluginName(parts, log)
        .then(() => parts.dockerWatcher.start())
        .catch((error: unknown) => this.fatal(error as Error));
    } else {
      parts.dockerWatcher.start();
    }
    log.info({ pluginDir: config.pluginDir, etcd: config.etcd.endpoints, embeddedEtcd: Boolean(this.embedded), backend: config.backend }, 'calico-libnetwork serving');
    void startServices(parts, config, log).catch((error: unknown) => this.fatal(error as Error));
    this.gc = setInterval(() => this.collectGarbage(), config.gcIntervalMs);
    this.gc.unref();
  }

  /** Stops serving and every agent; BIRD keeps running and keeps this host's routes: the next daemon adopts it. */
  stop(): Promise<void> {
    this.stopping ??= this.stopParts();
    return this.stopping;
  }

  private async stopParts(): Promise<void> {
    clearInterval(this.gc);
    const parts = this.parts;
    if (parts) {
      await Promise.allSettled([parts.ipamApp.close(), parts.networkApp.close()]);
      for (const server of [parts.healthServer, parts.metricsServer]) if (server) closeServer(server);
      parts.dockerWatcher.stop();
      await parts.names?.stop();
      await parts.dnsProxy?.close();
      await parts.ipam.stop();
      await parts.policy.stop();
      await parts.bgp?.stop();
      await parts.tunnels.stop();
      await parts.sync.stop();
      await parts.bird.detach();
      // The dataplane's veth deletions under way run through the command helper: they end first.
      await parts.dataplane.close();
      parts.commands.close();
      parts.etcd.close();
    }
    await this.embedded?.stop();
    rmSync(join(this.config.runDir, DAEMON_PID_FILE), { force: true });
  }

  private collectGarbage(): void {
    const { reconciler } = this.parts!;
    reconciler
      .reconcileDataplane()
      .then(() => reconciler.collectGarbage())
      .then((removed) => (removed.endpoints || removed.addresses || removed.blocks) && this.log.info(removed, 'garbage collected'))
      .catch((error) => this.log.warn({ err: error }, 'garbage collection failed'));
  }
}

/**
 * Nothing configures a datastore: this host is on its own. An etcd already answering on the default
 * address is used (Debian's etcd-server runs one there); otherwise the daemon runs its own. A
 * configured etcd never gets here, however long it is away: a private etcd would split the cluster.
 */
async function singleHostEtcd(config: DaemonConfig, log: Logger): Promise<EmbeddedEtcd | undefined> {
  let embedded: EmbeddedEtcd | undefined;
  if (!(await somethingListens('127.0.0.1', 2379))) {
    embedded = new EmbeddedEtcd(config.etcdBinary, config.embeddedEtcdDataDir, log);
    await embedded.start();
  }
  log.warn(
    { etcd: config.etcd.endpoints, embeddedEtcd: Boolean(embedded) },
    'single-host mode: no datastore configured (ETCD_ENDPOINTS, ETCD_AUTHORITY, CALICO_CONFIG or /etc/calico/calicoctl.cfg), so this host is alone: other hosts will not see it, its networks or its containers',
  );
  return embedded;
}

/** What running inside Docker's plugin container takes away, said at every start (and in the README). */
const MANAGED_PLUGIN_LIMITS = [
  'keep BIRD running while the plugin is disabled, upgraded or restarted with dockerd (without --live-restore): BIRD stops with it, and its peers keep this host\'s routes by graceful restart for 120 s, no longer (the systemd daemon leaves BIRD running)',
  'change its settings while enabled: docker plugin set needs it disabled, and while it is disabled no container on its networks can start or stop',
  'run an etcd of its own: ETCD_ENDPOINTS must name one',
  'read files of the host but those mounted (Docker\'s socket, /run): no etcd TLS certificates, no calicoctl config file',
  'load kernel modules: what it needs must be built in or loaded by the kernel on demand',
];

/**
 * A managed plugin's networks carry its reference (NAME:TAG), not `calico`. Its ID is in its mounts;
 * Docker gives the name once its API answers (not while dockerd starts up): until then the Docker
 * watcher and garbage collection wait.
 */
async function learnPluginName(parts: DaemonParts, log: Logger): Promise<void> {
  const id = ownPluginId();
  if (!id) throw new Error('CALICO_LIBNETWORK_MANAGED_PLUGIN is set, but /run/docker/plugins is not a managed plugin\'s own directory: unset it outside Docker\'s plugins');
  parts.driver.name = await untilDone(log, 'Docker\'s API does not tell this plugin\'s name yet; retrying', () => parts.docker.pluginName(id));
  log.info({ driver: parts.driver.name, plugin: id }, 'managed plugin: its networks are those of this driver');
}

/** Waits for the datastore, saying plainly which etcd it waits for (and never starting one of its own). */
async function waitForDatastore(parts: DaemonParts, config: DaemonConfig, log: Logger): Promise<void> {
  const where = config.etcd.endpoints.join(',');
  await untilDone(log.child({ etcd: config.etcd.endpoints }), `etcd at ${where} does not answer; waiting for it and retrying`, () =>
    parts.etcd.range({ key: Buffer.from('/calico/'), limit: 1 }),
  );
}

/** Register the node, load IPAM, bring the kernel in line, then the agents: policy, BGP, tunnels. */
async function startServices(parts: DaemonParts, config: DaemonConfig, log: Logger): Promise<void> {
  await waitForDatastore(parts, config, log);
  const node = await untilDone(log, 'node not registered', () =>
    parts.registration.register({ node: config.nodeName, ipv4: config.node.ipv4, ipv6: config.node.ipv6, ...(config.node.asNumber ? { asNumber: config.node.asNumber } : {}) }),
  );
  log.info({ bgp: node.spec.bgp ?? {} }, 'node registered');
  await untilDone(log, 'cluster information not recorded', () =>
    recordClusterInformation(parts.resources, installedVersion(), config.backend === 'bird' ? 'docker,bgp' : 'docker'),
  );
  await untilDone(log, 'datastore not ready', async () => {
    await parts.pools.ensureDefaults(config.defaultPools);
    await parts.ipam.start();
  });
  await parts.reconciler.reconcileDataplane().catch((error) => log.error({ err: error }, 'could not reconcile the dataplane'));
  await parts.reconciler.restoreSandboxes(parts.networkDriver).catch((error) => log.error({ err: error }, 'could not restore the containers of this host'));
  await untilDone(log, 'policy agent not ready', () => parts.policy.start());
  if (parts.names) await untilDone(log, 'name service not ready', () => parts.names!.start());
  if (parts.bgp) await untilDone(log, 'BGP agent not ready', () => parts.bgp!.start());
  // Another backend than bird: a BIRD left running from before goes (its peers withdraw at once).
  else if (await parts.bird.shutdown()) log.info({ backend: config.backend }, 'stopped the BIRD of the earlier backend');
  await untilDone(log, 'tunnel agent not ready', () => parts.tunnels.start());
  log.info({}, 'dataplane reconciled');
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
async function untilDone<T>(log: Logger, what: string, step: () => Promise<T>): Promise<T> {
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
