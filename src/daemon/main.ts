#!/usr/bin/env node
import { pino, type Logger } from 'pino';
import { readConfigFile } from '../config/config-file.js';
import { configFrom, DaemonConfig, isManagedPlugin } from './config.js';
import { Daemon } from './daemon.js';
import { serveSettingsRefusal } from './settings-refusal.js';

/** The daemon's process: its configuration and logger, the signals that stop it, and its exit. */
async function main(): Promise<void> {
  let config: DaemonConfig;
  try {
    config = daemonConfig();
  } catch (error) {
    if (!isManagedPlugin(process.env)) throw error;
    return refuseRequests((error as Error).message);
  }
  const log = pino({ level: config.logLevel, base: { node: config.nodeName } });
  const daemon = new Daemon(config, log, (error) => {
    // A node that cannot be what it says (another node holds its address) must not run at all.
    log.fatal({ err: error }, 'cannot start');
    process.stderr.write(`calico-libnetwork: ${error.message}\n`);
    process.exit(1);
  });
  await daemon.start();
  exitOnStopSignals(log, () => daemon.stop());
}

/** SIGTERM or SIGINT: said in the log, `stop` awaited, then a clean exit. */
function exitOnStopSignals(log: Logger, stop: () => Promise<void>): void {
  const shutdown = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    void stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** A managed plugin with wrong settings: exiting would have Docker start it again and again, so it stays and says why. */
async function refuseRequests(reason: string): Promise<void> {
  const log = pino({ level: 'info' });
  process.stderr.write(`calico-libnetwork: ${reason}\n`);
  exitOnStopSignals(log, await serveSettingsRefusal(reason, process.env, log));
}

/** The environment, and the calicoctl config file it names (CALICO_CONFIG) or the default one if present. */
function daemonConfig(): DaemonConfig {
  return configFrom(process.env, readConfigFile(process.env.CALICO_CONFIG, process.env));
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
