import type { Logger } from 'pino';
import { hostPaths } from '../config/paths.js';
import { buildDockerPlugin } from '../plugin/docker-plugin.js';
import { refusingMethods } from '../plugin/refusing-methods.js';
import { listenOnSocket } from './sockets.js';

/**
 * A managed plugin whose settings are wrong stays enabled and answers every Docker request with the
 * reason, on the one socket its config.json names, until Docker stops it (`docker plugin disable`).
 */
export async function serveSettingsRefusal(reason: string, env: NodeJS.ProcessEnv, log: Logger): Promise<() => Promise<void>> {
  const app = buildDockerPlugin({ implements: ['NetworkDriver', 'IpamDriver'], methods: refusingMethods(reason), logger: log.child({ socket: 'calico' }) });
  await listenOnSocket(app, `${hostPaths(env).pluginDir}/calico.sock`);
  log.error({ reason }, `settings refused; every request is answered with the reason until the plugin is disabled, set and enabled again: ${reason}`);
  return () => app.close();
}
