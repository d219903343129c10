import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import type { Node, Pair, Scalar, YAMLMap } from 'yaml';
import type { EtcdSettings } from '../adapters/datastore/etcd/etcd-client.js';

/** yaml takes ~40 ms of CPU to load: loaded when a config file is read, which most daemons never do. */
let yamlModule: typeof Yaml | undefined;
const yaml = (): typeof Yaml => (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml);
const isMap = (node: unknown): node is YAMLMap => yaml().isMap(node);
const isScalar = (node: unknown): node is Scalar => yaml().isScalar(node);

/** calicoctl's default config file, read only when it exists. */
export const DEFAULT_CONFIG_FILE = '/etc/calico/calicoctl.cfg';
const DEFAULT_ENDPOINT = 'http://127.0.0.1:2379';

/** A setting or config file that cannot be used; the message names the file (and line) or variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The datastore part of a calicoctl config file: only what it sets. */
export interface DatastoreFileSettings {
  endpoints?: string[];
  username?: string;
  password?: string;
  keyFile?: string;
  certFile?: string;
  caCertFile?: string;
}

export interface ConfigFile {
  path: string;
  settings: DatastoreFileSettings;
}

/** The two formats calicoctl has read: 1.x's v1 API and v3's. */
const FORMATS: Record<string, string> = { v1: 'calicoApiConfig', 'projectcalico.org/v3': 'CalicoAPIConfig' };

const SPEC_FIELDS = {
  etcdEndpoints: 'endpoints',
  etcdUsername: 'username',
  etcdPassword: 'password',
  etcdKeyFile: 'keyFile',
  etcdCertFile: 'certFile',
  etcdCACertFile: 'caCertFile',
} as const satisfies Record<string, keyof DatastoreFileSettings>;

const ETCDV2_ADVICE =
  "datastoreType etcdv2 is not supported: calico-libnetwork keeps Calico's v3 data layout on etcd's v3 API. " +
  'Write "datastoreType: etcdv3" (the endpoints stay as they are), or use apiVersion: projectcalico.org/v3, kind: CalicoAPIConfig, spec: {datastoreType: etcdv3, etcdEndpoints: ...}';

const ENDPOINT = /^https?:\/\/[^/\s]+\/?$/;

/** Parses `text`, the contents of the calicoctl config file at `path` (YAML or JSON, either format). */
export function parseConfigFile(text: string, path: string): ConfigFile {
  const lines = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const fail = (node: Node | Pair | null | undefined, message: string): never => {
    const offset = node && 'range' in node && node.range ? node.range[0] : node && 'key' in node && isScalar(node.key) && node.key.range ? node.key.range[0] : 0;
    throw new ConfigError(`${path}:${lines.linePos(offset).line}: ${message}`);
  };
  const [syntax] = doc.errors;
  if (syntax) throw new ConfigError(`${path}:${syntax.linePos?.[0].line ?? 1}: not valid YAML or JSON: ${syntax.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
  const root = doc.contents;
  if (!isMap(root)) fail(root, `expected a calicoctl config (apiVersion, kind, spec), not ${root ? 'a list or a scalar' : 'an empty file'}`);

  const top = fieldsOf(root as YamlMap, fail, ['apiVersion', 'kind', 'metadata', 'spec'], '');
  const apiVersion = stringField(top.apiVersion, 'apiVersion', fail);
  const kind = stringField(top.kind, 'kind', fail);
  const expectedKind = apiVersion === undefined ? undefined : FORMATS[apiVersion];
  if (expectedKind === undefined) fail(top.apiVersion?.pair ?? root, `apiVersion ${JSON.stringify(apiVersion ?? null)} is not a calicoctl config: expected v1 (kind: calicoApiConfig) or projectcalico.org/v3 (kind: CalicoAPIConfig)`);
  if (kind !== expectedKind) fail(top.kind?.pair ?? root, `kind ${JSON.stringify(kind ?? null)} does not go with apiVersion ${apiVersion}: expected kind: ${expectedKind}`);
  if (top.metadata && !isMap(top.metadata.pair.value) && !isEmpty(top.metadata.pair.value)) fail(top.metadata.pair, 'metadata must be a map (e.g. metadata: {})');
  if (!top.spec || isEmpty(top.spec.pair.value)) return { path, settings: {} };
  if (!isMap(top.spec.pair.value)) fail(top.spec.pair, 'spec must be a map of datastore settings');

  const spec = fieldsOf(top.spec.pair.value as YamlMap, fail, ['datastoreType', ...Object.keys(SPEC_FIELDS)], 'spec.');
  const datastoreType = stringField(spec.datastoreType, 'spec.datastoreType', fail);
  if (datastoreType === 'etcdv2') fail(spec.datastoreType!.pair, ETCDV2_ADVICE);
  if (datastoreType !== undefined && datastoreType !== 'etcdv3') {
    fail(spec.datastoreType!.pair, `datastoreType ${JSON.stringify(datastoreType)} is not supported: calico-libnetwork keeps its data in etcd (datastoreType: etcdv3)`);
  }
  const settings: DatastoreFileSettings = {};
  for (const [field, setting] of Object.entries(SPEC_FIELDS)) {
    const value = stringField(spec[field], `spec.${field}`, fail);
    if (value === undefined || value === '') continue;
    if (setting === 'endpoints') {
      const endpoints = splitEndpoints(value);
      const bad = endpoints.find((e) => !ENDPOINT.test(e));
      if (bad !== undefined) fail(spec[field]!.pair, `spec.etcdEndpoints entry ${JSON.stringify(bad)} is not an etcd URL: expected http://host:port or https://host:port`);
      settings.endpoints = endpoints.map(withoutSlash);
    } else {
      settings[setting] = value;
    }
  }
  return { path, settings };
}

type YamlMap = { items: Pair[] };
type Fail = (node: Node | Pair | null | undefined, message: string) => never;
interface Field {
  pair: Pair;
}

/** The map's fields by name, refusing names not in `known` (with the line of the first unknown one). */
function fieldsOf(map: YamlMap, fail: Fail, known: string[], prefix: string): Record<string, Field | undefined> {
  const fields: Record<string, Field | undefined> = {};
  for (const pair of map.items) {
    const name = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!known.includes(name)) fail(pair, `unknown field ${prefix}${name}: expected ${known.map((k) => prefix + k).join(', ')}`);
    fields[name] = { pair };
  }
  return fields;
}

function stringField(field: Field | undefined, name: string, fail: Fail): string | undefined {
  if (!field) return undefined;
  const value = field.pair.value;
  if (isEmpty(value)) return undefined;
  if (!isScalar(value) || typeof value.value !== 'string') fail(field.pair, `${name} must be a string${name === 'spec.etcdEndpoints' ? ' (a comma-separated list of URLs)' : ''}`);
  return ((value as { value: string }).value).trim();
}

const isEmpty = (value: unknown): boolean => value === null || value === undefined || (isScalar(value) && value.value === null);
const splitEndpoints = (text: string): string[] => text.split(',').map((e) => e.trim()).filter((e) => e !== '');
const withoutSlash = (endpoint: string): string => endpoint.replace(/\/$/, '');

/** The datastore a process uses, and whether anything at all chose it (the daemon's embedded etcd needs nothing to have). */
export interface DatastoreChoice {
  etcd: EtcdSettings;
  /** False when neither an ETCD_* variable nor a config file says anything. */
  configured: boolean;
}

const DATASTORE_VARIABLES = ['ETCD_ENDPOINTS', 'ETCD_AUTHORITY', 'ETCD_SCHEME', 'ETCD_CA_CERT_FILE', 'ETCD_CERT_FILE', 'ETCD_KEY_FILE', 'ETCD_USERNAME', 'ETCD_PASSWORD'];

/**
 * The etcd to use, with calicoctl's precedence: the environment over the config file, the file over
 * the default (http://127.0.0.1:2379). ETCD_ENDPOINTS wins over calicoctl 0.x's ETCD_SCHEME://ETCD_AUTHORITY.
 */
export function datastoreFrom(env: NodeJS.ProcessEnv, file?: ConfigFile): DatastoreChoice {
  const fromFile = file?.settings ?? {};
  const endpoints = endpointsFromEnv(env) ?? fromFile.endpoints ?? [DEFAULT_ENDPOINT];
  const pick = (variable: string, fileValue: string | undefined): string | undefined => env[variable] || fileValue;
  const optional = {
    caCertFile: pick('ETCD_CA_CERT_FILE', fromFile.caCertFile),
    certFile: pick('ETCD_CERT_FILE', fromFile.certFile),
    keyFile: pick('ETCD_KEY_FILE', fromFile.keyFile),
    username: pick('ETCD_USERNAME', fromFile.username),
    password: pick('ETCD_PASSWORD', fromFile.password),
  };
  const etcd: EtcdSettings = { endpoints };
  for (const [key, value] of Object.entries(optional)) if (value) (etcd as unknown as Record<string, string>)[key] = value;
  return { etcd, configured: file !== undefined || DATASTORE_VARIABLES.some((v) => Boolean(env[v])) };
}

function endpointsFromEnv(env: NodeJS.ProcessEnv): string[] | undefined {
  if (env.ETCD_ENDPOINTS) {
    const endpoints = splitEndpoints(env.ETCD_ENDPOINTS);
    const bad = endpoints.find((e) => !ENDPOINT.test(e));
    if (bad !== undefined || endpoints.length === 0) {
      throw new ConfigError(`invalid ETCD_ENDPOINTS entry ${JSON.stringify(bad ?? env.ETCD_ENDPOINTS)}: expected http://host:port or https://host:port`);
    }
    return endpoints.map(withoutSlash);
  }
  if (!env.ETCD_AUTHORITY && !env.ETCD_SCHEME) return undefined;
  // calicoctl 0.x: one etcd, as SCHEME://AUTHORITY (defaults http and 127.0.0.1:2379).
  const scheme = (env.ETCD_SCHEME || 'http').trim();
  if (scheme !== 'http' && scheme !== 'https') throw new ConfigError(`invalid ETCD_SCHEME=${JSON.stringify(scheme)}: expected http or https`);
  const authority = (env.ETCD_AUTHORITY || '127.0.0.1:2379').trim();
  if (!/^[^/\s:,]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(authority)) {
    throw new ConfigError(`invalid ETCD_AUTHORITY=${JSON.stringify(authority)}: expected host:port, e.g. 10.0.0.1:2379`);
  }
  return [`${scheme}://${authority}`];
}
