import type { EtcdSettings } from '../adapters/datastore/etcd/etcd-client.js';
import { checkLibnetworkEnabled, nodeNameFrom, withCalicoNodeNames } from '../config/calico-node-env.js';
import { datastoreFrom, type ConfigFile } from '../config/datastore-config.js';
import { hostPaths } from '../config/paths.js';
import type { NetworkDriverOptions } from '../services/network/network-driver.js';
import { parseAsNumber } from '../domain/resources.js';
import { parseDetectionMethod } from '../services/nodes/address-detection.js';
import type { AddressSetting } from '../services/nodes/node-registration.js';
import type { HttpSettings } from './observability-http.js';

export interface DaemonConfig {
  etcd: EtcdSettings;
  /** False when no ETCD_* variable and no config file say anything: the daemon then runs its own etcd. */
  etcdConfigured: boolean;
  embeddedEtcdDataDir: string;
  etcdBinary: string;
  nodeName: string;
  pluginDir: string;
  logLevel: string;
  defaultPools: { ipv4?: string; ipv6?: string };
  network: Omit<NetworkDriverOptions, 'node'>;
  /** CALICO_LIBNETWORK_LABEL_ENDPOINTS: containers' Calico labels copied onto their endpoints. */
  labelEndpoints: boolean;
  dockerHost: string | undefined;
  /** CALICO_LIBNETWORK_MANAGED_PLUGIN: running as Docker's managed plugin (its config.json sets it). */
  managedPlugin: boolean;
  gcIntervalMs: number;
  gcGraceMs: number;
  /** CALICO_RUN_DIR: BIRD's config and control socket, the daemon's PID file. */
  runDir: string;
  node: { ipv4: AddressSetting; ipv6: AddressSetting; asNumber?: number };
  /** CALICO_NETWORKING_BACKEND: `bird` runs BIRD; `vxlan` and `none` no BGP (tunnel routes only). */
  backend: 'bird' | 'vxlan' | 'none';
  routerId?: string;
  /** Container names across hosts: the name service and where it listens. */
  dns: { enabled: boolean; basePort: number; resolvConf: string };
  /** Felix's health endpoints, /liveness and /readiness. */
  health: HttpSettings;
  /** Prometheus metrics on /metrics: off unless enabled, as in Felix. */
  metrics: HttpSettings;
}

export { DAEMON_PID_FILE } from '../config/paths.js';

/** IP / IP6 as calico/node reads them: `autodetect`, `none`, or an address (optionally ADDR/len). */
function addressSetting(env: NodeJS.ProcessEnv, variable: 'IP' | 'IP6', fallback: 'autodetect' | 'none'): AddressSetting {
  const text = (env[variable] ?? '').trim() || fallback;
  const method = parseDetectionMethod(env[`${variable}_AUTODETECTION_METHOD`], `${variable}_AUTODETECTION_METHOD`);
  if (text === 'autodetect') return { kind: 'autodetect', method };
  if (text === 'none') return { kind: 'none' };
  return { kind: 'address', text };
}

function routerIdFrom(env: NodeJS.ProcessEnv): string | undefined {
  const text = env.CALICO_ROUTER_ID?.trim();
  if (!text) return undefined;
  if (text !== 'hash' && !/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) {
    throw new Error(`invalid CALICO_ROUTER_ID=${JSON.stringify(text)}: expected an IPv4 address such as 10.0.0.1, or hash`);
  }
  return text;
}

function backendFrom(env: NodeJS.ProcessEnv): DaemonConfig['backend'] {
  const backend = (env.CALICO_NETWORKING_BACKEND ?? '').trim() || 'bird';
  if (backend !== 'bird' && backend !== 'vxlan' && backend !== 'none') {
    throw new Error(`invalid CALICO_NETWORKING_BACKEND=${JSON.stringify(backend)}: expected bird, vxlan or none`);
  }
  return backend;
}

const isTrue = (value: string | undefined): boolean => /^(true|1|yes)$/i.test(value ?? '');

/** Whether the daemon runs as Docker's managed plugin (its config.json sets this). */
export const isManagedPlugin = (env: NodeJS.ProcessEnv): boolean => isTrue(env.CALICO_LIBNETWORK_MANAGED_PLUGIN);

function positiveInteger(env: NodeJS.ProcessEnv, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0 || value > max) throw new Error(`invalid ${name}=${JSON.stringify(text)}: expected a whole number between 1 and ${max}`);
  return value;
}

/** Of a setting's names (ours, then Felix's), the one that is set: to read, and to name in an error. */
const firstSet = (env: NodeJS.ProcessEnv, names: string[]): string => names.find((n) => (env[n] ?? '').trim() !== '') ?? names[0]!;

function booleanSetting(env: NodeJS.ProcessEnv, names: string[], fallback: boolean): boolean {
  const name = firstSet(env, names);
  const text = (env[name] ?? '').trim();
  if (text === '') return fallback;
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  throw new Error(`invalid ${name}=${JSON.stringify(text)}: expected true or false`);
}

/** An HTTP endpoint's switch, host and port, under our names (CALICO_LIBNETWORK_<WHAT>_*) or Felix's. */
function httpSettings(env: NodeJS.ProcessEnv, what: string, felix: { enabled: string; host: string; port: string }, defaults: HttpSettings): HttpSettings {
  const names = (suffix: string, felixName: string): string[] => [`CALICO_LIBNETWORK_${what}_${suffix}`, felixName];
  return {
    enabled: booleanSetting(env, names('ENABLED', felix.enabled), defaults.enabled),
    host: (env[firstSet(env, names('HOST', felix.host))] ?? '').trim() || defaults.host,
    port: positiveInteger(env, firstSet(env, names('PORT', felix.port)), defaults.port, 65535),
  };
}

/** Go-style durations as Calico took them (`5s`, `500ms`), or plain seconds. */
function durationMs(env: NodeJS.ProcessEnv, name: string, fallbackMs: number): number {
  const text = env[name];
  if (!text) return fallbackMs;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new Error(`invalid ${name}=${JSON.stringify(text)}: expected a duration such as 5s or 500ms`);
  return Number(match[1]) * (match[2] === 'ms' ? 1 : match[2] === 'm' ? 60_000 : 1000);
}

/** Health and metrics on one address would take turns failing to listen: refused at start instead. */
function checkDistinct(health: HttpSettings, metrics: HttpSettings): void {
  const overlap = health.host === metrics.host || health.host === '' || metrics.host === '';
  if (health.enabled && metrics.enabled && health.port === metrics.port && overlap) {
    throw new Error(`the health endpoints and the metrics would both listen on port ${health.port}: set CALICO_LIBNETWORK_METRICS_PORT (or FELIX_PROMETHEUSMETRICSPORT) to another port`);
  }
}

/**
 * The daemon's settings from its environment (calico/node's CALICO_* names included) and, for the
 * datastore, the calicoctl config file when there is one (the environment wins over it).
 */
export function configFrom(processEnv: NodeJS.ProcessEnv, file?: ConfigFile): DaemonConfig {
  const env = withCalicoNodeNames(processEnv);
  checkLibnetworkEnabled(env);
  const noDefaults = isTrue(env.NO_DEFAULT_POOLS);
  const datastore = datastoreFrom(env, file);
  const paths = hostPaths(env);
  const health = httpSettings(env, 'HEALTH', { enabled: 'FELIX_HEALTHENABLED', host: 'FELIX_HEALTHHOST', port: 'FELIX_HEALTHPORT' }, { enabled: true, host: '127.0.0.1', port: 9099 });
  const metrics = httpSettings(
    env,
    'METRICS',
    { enabled: 'FELIX_PROMETHEUSMETRICSENABLED', host: 'FELIX_PROMETHEUSMETRICSHOST', port: 'FELIX_PROMETHEUSMETRICSPORT' },
    { enabled: false, host: '', port: 9091 },
  );
  checkDistinct(health, metrics);
  const managedPlugin = isManagedPlugin(env);
  // A plugin's root filesystem holds no etcd to run, and a private one would split the cluster anyway.
  if (managedPlugin && !datastore.configured) throw new Error('the managed plugin needs a datastore: docker plugin set <plugin> ETCD_ENDPOINTS=http://<etcd host>:2379');
  return {
    etcd: datastore.etcd,
    etcdConfigured: datastore.configured,
    embeddedEtcdDataDir: env.CALICO_ETCD_DATA_DIR || '/var/lib/calico/etcd',
    etcdBinary: env.CALICO_ETCD_BINARY || 'etcd',
    nodeName: nodeNameFrom(env),
    pluginDir: paths.pluginDir,
    logLevel: env.CALICO_LIBNETWORK_LOG_LEVEL || (env.CALICO_DEBUG ? 'debug' : 'info'),
    network: {
      containerInterfacePrefix: env.CALICO_LIBNETWORK_IFPREFIX || 'cali',
      ...(env.CALICO_LIBNETWORK_VETH_MTU ? { vethMtu: positiveInteger(env, 'CALICO_LIBNETWORK_VETH_MTU', 1500, 65535) } : {}),
      scope: env.CALICO_LIBNETWORK_SCOPE === 'global' ? 'global' : 'local',
      createProfiles: !/^false$/i.test(env.CALICO_LIBNETWORK_CREATE_PROFILES ?? ''),
    },
    labelEndpoints: isTrue(env.CALICO_LIBNETWORK_LABEL_ENDPOINTS),
    dockerHost: env.DOCKER_HOST,
    managedPlugin,
    runDir: paths.runDir,
    node: {
      ipv4: addressSetting(env, 'IP', 'autodetect'),
      ipv6: addressSetting(env, 'IP6', 'none'),
      ...(env.AS ? { asNumber: parseAsNumber(env.AS, 'AS') } : {}),
    },
    backend: backendFrom(env),
    ...(routerIdFrom(env) ? { routerId: routerIdFrom(env)! } : {}),
    dns: {
      enabled: !/^false$/i.test(env.CALICO_LIBNETWORK_DNS ?? ''),
      basePort: positiveInteger(env, 'CALICO_LIBNETWORK_DNS_PORT', 8553, 65000),
      resolvConf: env.CALICO_LIBNETWORK_RESOLV_CONF || '/etc/resolv.conf',
    },
    health,
    metrics,
    gcIntervalMs: durationMs(env, 'CALICO_LIBNETWORK_GC_INTERVAL', 60_000),
    gcGraceMs: durationMs(env, 'CALICO_LIBNETWORK_GC_GRACE', 300_000),
    defaultPools: noDefaults
      ? {}
      : { ipv4: env.CALICO_IPV4POOL_CIDR || '192.168.0.0/16', ipv6: env.CALICO_IPV6POOL_CIDR || 'fd80:24e2:f998:72d6::/64' },
  };
}
