#!/usr/bin/env node
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { AppError } from '../domain/errors.js';
import { NodeAddressConflictError } from '../services/nodes/node-registration.js';
import { composeDaemon, Daemon } from './compose.js';
import { configFrom, DAEMON_PID_FILE, DaemonConfig } from './config.js';
import { EmbeddedEtcd, somethingListens } from './embedded-etcd.js';
import { listenOnSocket } from './sockets.js';
import { uninstall } from './uninstall.js';
import { silenceGrpcTlsWarning } from './warnings.js';

silenceGrpcTlsWarning();

async function main(): Promise<void> {
  const config = configFrom(process.env);
  const log = pino({ level: config.logLevel, base: { node: config.nodeName } });

  let embedded: EmbeddedEtcd | undefined;
  if (!config.etcdConfigured && !(await somethingListens('127.0.0.1', 2379))) {
    embedded = new EmbeddedEtcd(config.etcdBinary, config.embeddedEtcdDataDir, log);
    await embedded.start();
  }
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

/** Register the node, load IPAM, bring the kernel in line, then the agents: policy, BGP, tunnels. */
async function startServices(daemon: Daemon, config: DaemonConfig, log: pino.Logger): Promise<void> {
  const node = await untilDone(log, 'node not registered', () =>
    daemon.registration.register({ node: config.nodeName, ipv4: config.node.ipv4, ipv6: config.node.ipv6, ...(config.node.asNumber ? { asNumber: config.node.asNumber } : {}) }),
  );
  log.info({ bgp: node.spec.bgp ?? {} }, 'node registered');
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

(process.argv[2] === 'uninstall' ? uninstall(configFrom(process.env), (line) => process.stdout.write(`${line}\n`)) : main()).catch((error: unknown) => {
  process.stderr.write(`calico-libnetwork: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
