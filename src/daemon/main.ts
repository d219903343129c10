#!/usr/bin/env node
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { installedVersion } from '../adapters/host/installation.js';
import { readConfigFile } from '../config/config-file.js';
import { AppError } from '../domain/errors.js';
import { recordClusterInformation } from '../services/nodes/cluster-information.js';
import { NodeAddressConflictError } from '../services/nodes/node-registration.js';
import { composeDaemon, Daemon } from './compose.js';
import { configFrom, DAEMON_PID_FILE, DaemonConfig } from './config.js';
import { EmbeddedEtcd, somethingListens } from './embedded-etcd.js';
import { listenOnSocket } from './sockets.js';
import { silenceGrpcTlsWarning } from './warnings.js';

silenceGrpcTlsWarning();

async function main(): Promise<void> {
  const config = daemonConfig();
  const log = pino({ level: config.logLevel, base: { node: config.nodeName } });

  const embedded = config.etcdConfigured ? undefined : await singleHostEtcd(config, log);
  const daemon = composeDaemon(config, log);
  await listenOnSocket(daemon.ipamApp, `${config.pluginDir}/calico-ipam.sock`);
  await listenOnSocket(daemon.networkApp, `${config.pluginDir}/calico.sock`);
  writePidFile(config.runDir);
  daemon.dockerWatcher.start();
  log.info({ pluginDir: config.pluginDir, etcd: config.etcd.endpoints, embeddedEtcd: Boolean(embedded), backend: config.backend }, 'calico-libnetwork serving');

  void startServices(daemon, config, log).catch((error: unknown) => {
    // A node that cannot be what it says (another node holds its address) must not run at all.
    log.fatal({ err: error }, 'cannot start');
    process.stderr.write(`calico-libnetwork: ${(error as Error).message}\n`);
    process.exit(1);
  });
  const gc = setInterval(() => {
    daemon.reconciler
      .reconcileDataplane()
      .then(() => daemon.reconciler.collectGarbage())
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
    await Promise.allSettled([daemon.ipamApp.close(), daemon.networkApp.close()]);
    daemon.dockerWatcher.stop();
    await daemon.names?.stop();
    await daemon.dnsProxy?.close();
    await daemon.ipam.stop();
    await daemon.policy.stop();
    await daemon.bgp?.stop();
    await daemon.tunnels.stop();
    // BIRD keeps running and keeps this host's routes: the next daemon adopts it.
    await daemon.bird.detach();
    daemon.commands.close();
    daemon.etcd.close();
    await daemon.dataplane.close();
    await embedded?.stop();
    rmSync(join(config.runDir, DAEMON_PID_FILE), { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** The environment, and the calicoctl config file it names (CALICO_CONFIG) or the default one if present. */
function daemonConfig(): DaemonConfig {
  return configFrom(process.env, readConfigFile(process.env.CALICO_CONFIG, process.env));
}

/**
 * Nothing configures a datastore: this host is on its own. An etcd already answering on the default
 * address is used (Debian's etcd-server runs one there); otherwise the daemon runs its own. A
 * configured etcd never gets here, however long it is away: a private etcd would split the cluster.
 */
async function singleHostEtcd(config: DaemonConfig, log: pino.Logger): Promise<EmbeddedEtcd | undefined> {
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

/** Waits for the datastore, saying plainly which etcd it waits for (and never starting one of its own). */
async function waitForDatastore(daemon: Daemon, config: DaemonConfig, log: pino.Logger): Promise<void> {
  const where = config.etcd.endpoints.join(',');
  await untilDone(log.child({ etcd: config.etcd.endpoints }), `etcd at ${where} does not answer; waiting for it and retrying`, () =>
    daemon.etcd.range({ key: Buffer.from('/calico/'), limit: 1 }),
  );
}

/** Register the node, load IPAM, bring the kernel in line, then the agents: policy, BGP, tunnels. */
async function startServices(daemon: Daemon, config: DaemonConfig, log: pino.Logger): Promise<void> {
  await waitForDatastore(daemon, config, log);
  const node = await untilDone(log, 'node not registered', () =>
    daemon.registration.register({ node: config.nodeName, ipv4: config.node.ipv4, ipv6: config.node.ipv6, ...(config.node.asNumber ? { asNumber: config.node.asNumber } : {}) }),
  );
  log.info({ bgp: node.spec.bgp ?? {} }, 'node registered');
  await untilDone(log, 'cluster information not recorded', () =>
    recordClusterInformation(daemon.resources, installedVersion(), config.backend === 'bird' ? 'docker,bgp' : 'docker'),
  );
  await untilDone(log, 'datastore not ready', async () => {
    await daemon.pools.ensureDefaults(config.defaultPools);
    await daemon.ipam.start();
  });
  await daemon.reconciler.reconcileDataplane().catch((error) => log.error({ err: error }, 'could not reconcile the dataplane'));
  await daemon.reconciler.restoreSandboxes(daemon.networkDriver).catch((error) => log.error({ err: error }, 'could not restore the containers of this host'));
  await untilDone(log, 'policy agent not ready', () => daemon.policy.start());
  if (daemon.names) await untilDone(log, 'name service not ready', () => daemon.names!.start());
  if (daemon.bgp) await untilDone(log, 'BGP agent not ready', () => daemon.bgp!.start());
  // Another backend than bird: a BIRD left running from before goes (its peers withdraw at once).
  else if (await daemon.bird.shutdown()) log.info({ backend: config.backend }, 'stopped the BIRD of the earlier backend');
  await untilDone(log, 'tunnel agent not ready', () => daemon.tunnels.start());
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

/** `uninstall` is loaded only for that command: the daemon starts without it. */
async function runUninstall(): Promise<void> {
  const { uninstall } = await import('./uninstall.js');
  await uninstall(daemonConfig(), (line) => process.stdout.write(`${line}\n`));
}

(process.argv[2] === 'uninstall' ? runUninstall() : main()).catch((error: unknown) => {
  process.stderr.write(`calico-libnetwork: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
