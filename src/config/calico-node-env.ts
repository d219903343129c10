import { hostname } from 'node:os';

/**
 * calico/node's own variable names, as the walkthroughs' calico.env sets them, for the names this
 * daemon reads. The plain name wins when both are set; an empty value counts as unset (systemd turns
 * `CALICO_IP=""` into an empty string).
 */
const CALICO_NODE_ALIASES = {
  NODENAME: 'CALICO_NODENAME',
  IP: 'CALICO_IP',
  IP6: 'CALICO_IP6',
  AS: 'CALICO_AS',
  NO_DEFAULT_POOLS: 'CALICO_NO_DEFAULT_POOLS',
} as const;

export function withCalicoNodeNames(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const merged = { ...env };
  for (const [plain, alias] of Object.entries(CALICO_NODE_ALIASES)) {
    if (!merged[plain] && env[alias]) merged[plain] = env[alias];
  }
  return merged;
}

/**
 * calico/node ran the libnetwork plugin only with CALICO_LIBNETWORK_ENABLED=true; this daemon *is*
 * that plugin, so `false` is a contradiction the operator must resolve rather than a mode to run in.
 */
export function checkLibnetworkEnabled(env: NodeJS.ProcessEnv): void {
  const value = (env.CALICO_LIBNETWORK_ENABLED ?? '').trim();
  if (value === '' || /^(true|1|yes)$/i.test(value)) return;
  if (/^(false|0|no)$/i.test(value)) {
    throw new Error(
      'CALICO_LIBNETWORK_ENABLED=false: this daemon is the libnetwork plugin (and the node agent), so it would have nothing to do; ' +
        'remove the setting or set it to true',
    );
  }
  throw new Error(`invalid CALICO_LIBNETWORK_ENABLED=${JSON.stringify(value)}: expected true or false`);
}

/** The node name, from one source for everything: NODENAME (or CALICO_NODENAME), else HOSTNAME, else the OS hostname. */
export function nodeNameFrom(env: NodeJS.ProcessEnv): string {
  const name = (env.NODENAME || env.CALICO_NODENAME || env.HOSTNAME || hostname()).trim();
  if (name === '' || /[/\s]/.test(name)) throw new Error(`invalid node name ${JSON.stringify(name)}: set NODENAME to a name without '/' or spaces`);
  return name;
}
