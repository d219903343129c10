/** Where this host's daemon keeps its files, each overridable by environment (tests, unusual layouts). */
export interface HostPaths {
  /** CALICO_RUN_DIR: BIRD's config and socket, the daemon's PID file. */
  runDir: string;
  /** CALICO_LIBNETWORK_PLUGIN_DIR: where Docker finds calico.sock and calico-ipam.sock. */
  pluginDir: string;
  /** CALICO_LOG_DIR: the daemon's log when `calicoctl node run` starts it without systemd. */
  logDir: string;
  /** CALICO_ENV_FILE: the settings file the systemd unit reads. */
  envFile: string;
}

export const DEFAULT_RUN_DIR = '/run/calico';
/** In CALICO_RUN_DIR while the daemon runs. */
export const DAEMON_PID_FILE = 'calico-libnetwork.pid';
/** In CALICO_LOG_DIR. */
export const DAEMON_LOG_FILE = 'calico-libnetwork.log';

export function hostPaths(env: NodeJS.ProcessEnv): HostPaths {
  return {
    runDir: env.CALICO_RUN_DIR || DEFAULT_RUN_DIR,
    pluginDir: env.CALICO_LIBNETWORK_PLUGIN_DIR || '/run/docker/plugins',
    logDir: env.CALICO_LOG_DIR || '/var/log/calico',
    envFile: env.CALICO_ENV_FILE || '/etc/calico/calico.env',
  };
}
