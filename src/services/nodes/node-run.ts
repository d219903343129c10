import { isIPv4, isIPv6 } from 'node:net';
import type { EtcdSettings } from '../../adapters/datastore/etcd/etcd-client.js';
import { nodeNameFrom } from '../../config/calico-node-env.js';
import { InvalidRequestError } from '../../domain/errors.js';
import { CalicoNode, parseAsNumber } from '../../domain/resources.js';
import { parseDetectionMethod } from './address-detection.js';

/** `calicoctl node run`'s flags (and calicoctl 0.x `node`'s), as typed; undefined when not given. */
export interface NodeRunRequest {
  ip?: string | undefined;
  ip6?: string | undefined;
  as?: string | undefined;
  name?: string | undefined;
  ipAutodetectionMethod?: string | undefined;
  ip6AutodetectionMethod?: string | undefined;
  backend?: string | undefined;
  noDefaultIppools?: boolean | undefined;
}

/** The daemon's environment, by the daemon's variable names. */
export type DaemonSettings = Record<string, string>;

const BACKENDS = ['bird', 'vxlan', 'none'];

/** A setting with the flag it came from, or else the variable: errors name what the user typed. */
function pick(flag: string | undefined, flagName: string, env: NodeJS.ProcessEnv, variable: string): { value: string; source: string } | undefined {
  if (flag !== undefined) return { value: flag.trim(), source: flagName };
  const value = env[variable]?.trim();
  return value ? { value, source: variable } : undefined;
}

function checkAddress(setting: { value: string; source: string }, family: 4 | 6): void {
  const { value, source } = setting;
  if (value === 'autodetect' || value === 'none') return;
  const [address, length, ...rest] = value.split('/');
  const max = family === 4 ? 32 : 128;
  const validAddress = family === 4 ? isIPv4(address ?? '') : isIPv6(address ?? '');
  const validLength = length === undefined || (/^\d{1,3}$/.test(length) && Number(length) <= max);
  if (!validAddress || !validLength || rest.length > 0) {
    const example = family === 4 ? '10.0.0.5 or 10.0.0.5/24' : 'fd00::5 or fd00::5/64';
    throw new InvalidRequestError(`invalid ${source} ${JSON.stringify(value)}: expected an IPv${family} address (${example}), autodetect or none`);
  }
}

/**
 * The daemon's settings for `calicoctl node run`: each flag over calicoctl's environment (calico/node's
 * CALICO_* names applied), absent ones left to the daemon's defaults; the datastore calicoctl itself
 * uses. Throws, naming the flag or variable, before anything is started.
 */
export function nodeRunSettings(request: NodeRunRequest, env: NodeJS.ProcessEnv, datastore: EtcdSettings): DaemonSettings {
  const settings: DaemonSettings = {};
  const set = (variable: string, value: string | undefined): void => {
    if (value !== undefined && value !== '') settings[variable] = value;
  };
  const name = pick(request.name, '--name', env, 'NODENAME');
  if (name) set('NODENAME', nodeNameFrom({ NODENAME: name.value }));
  for (const [flag, flagName, variable, family] of [
    [request.ip, '--ip', 'IP', 4],
    [request.ip6, '--ip6', 'IP6', 6],
  ] as const) {
    const address = pick(flag, flagName, env, variable);
    if (address) checkAddress(address, family);
    set(variable, address?.value);
  }
  for (const [flag, flagName, variable] of [
    [request.ipAutodetectionMethod, '--ip-autodetection-method', 'IP_AUTODETECTION_METHOD'],
    [request.ip6AutodetectionMethod, '--ip6-autodetection-method', 'IP6_AUTODETECTION_METHOD'],
  ] as const) {
    const method = pick(flag, flagName, env, variable);
    if (method) parseDetectionMethod(method.value, method.source);
    set(variable, method?.value);
  }
  const as = pick(request.as, '--as', env, 'AS');
  if (as) parseAsNumber(as.value, as.source);
  set('AS', as?.value);
  const backend = pick(request.backend, '--backend', env, 'CALICO_NETWORKING_BACKEND');
  if (backend && !BACKENDS.includes(backend.value)) {
    throw new InvalidRequestError(`invalid ${backend.source} ${JSON.stringify(backend.value)}: expected ${BACKENDS.join(', ')}`);
  }
  set('CALICO_NETWORKING_BACKEND', backend?.value);
  set('NO_DEFAULT_POOLS', request.noDefaultIppools ? 'true' : env.NO_DEFAULT_POOLS);
  set('ETCD_ENDPOINTS', datastore.endpoints.join(','));
  set('ETCD_CA_CERT_FILE', datastore.caCertFile);
  set('ETCD_CERT_FILE', datastore.certFile);
  set('ETCD_KEY_FILE', datastore.keyFile);
  set('ETCD_USERNAME', datastore.username);
  set('ETCD_PASSWORD', datastore.password);
  return settings;
}

/** What the started daemon must have written to its Node before `node run` reports success. */
export function nodeShowsSettings(node: CalicoNode | null, settings: DaemonSettings): boolean {
  if (!node) return false;
  const bgp = node.spec.bgp ?? {};
  const addressOf = (cidr: string | undefined): string | undefined => cidr?.split('/')[0];
  for (const [variable, stored] of [
    ['IP', bgp.ipv4Address],
    ['IP6', bgp.ipv6Address],
  ] as const) {
    const wanted = settings[variable];
    if (wanted && wanted !== 'autodetect' && wanted !== 'none' && addressOf(wanted) !== addressOf(stored)) return false;
  }
  return settings.AS === undefined || bgp.asNumber === parseAsNumber(settings.AS);
}

function registeredAnew(node: CalicoNode | null, earlier: CalicoNode | null, settings: DaemonSettings): boolean {
  return nodeShowsSettings(node, settings) && node?.metadata.resourceVersion !== earlier?.metadata.resourceVersion;
}

/** A daemon `node run` has started, watched until it is ready or gone. */
export interface StartedDaemon {
  /** One line for the user: how it runs and where its log is. */
  summary: string;
  exited(): Promise<boolean>;
  /** The last lines of its log since this start. */
  logTail(lines: number): Promise<string>;
}

/** How this host runs its daemon: systemd's unit, or a background process. */
export interface DaemonSupervisor {
  readonly description: string;
  /** Stops this host's daemon if one runs (waiting for it to exit), then starts one with `settings`. */
  restart(settings: DaemonSettings): Promise<StartedDaemon>;
}

export interface NodeRunProbes {
  /** True when the network plugin's socket answers Plugin.Activate. */
  pluginAnswers(): Promise<boolean>;
  node(name: string): Promise<CalicoNode | null>;
}

/** The daemon died or never became ready: the message carries the end of its log. */
export class NodeRunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeRunError';
  }
}

/** `calicoctl node run`: (re)starts this host's daemon with the given settings and waits until it serves. */
export class NodeRunner {
  constructor(
    private readonly supervisor: DaemonSupervisor,
    private readonly probes: NodeRunProbes,
    private readonly options: { timeoutMs: number; pollMs?: number } = { timeoutMs: 90_000 },
  ) {}

  async run(settings: DaemonSettings, env: NodeJS.ProcessEnv, say: (line: string) => void): Promise<void> {
    const node = nodeNameFrom({ ...env, ...settings });
    // Every start writes the Node: a new revision tells this daemon's registration from an earlier one's.
    const earlier = await this.probes.node(node).catch(() => null);
    say(`Starting calico-libnetwork for node ${node} ${this.supervisor.description}.`);
    const daemon = await this.supervisor.restart(settings);
    say(daemon.summary);
    say('Waiting for the plugin sockets to answer and the Node to be registered.');
    const deadline = Date.now() + this.options.timeoutMs;
    let lastError: unknown;
    for (;;) {
      if (await daemon.exited()) {
        throw new NodeRunError(`calico-libnetwork exited during start. The end of its log:\n${await daemon.logTail(20)}`);
      }
      try {
        if ((await this.probes.pluginAnswers()) && registeredAnew(await this.probes.node(node), earlier, settings)) break;
      } catch (error) {
        lastError = error;
      }
      if (Date.now() > deadline) {
        const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
        throw new NodeRunError(`calico-libnetwork did not become ready within ${this.options.timeoutMs / 1000} s${why}. The end of its log:\n${await daemon.logTail(20)}`);
      }
      await new Promise((r) => setTimeout(r, this.options.pollMs ?? 250));
    }
    say('Calico node started successfully');
  }
}
