import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkLibnetworkEnabled, withCalicoNodeNames } from '../src/config/calico-node-env.js';
import { ConfigError, datastoreFrom, parseConfigFile } from '../src/config/datastore-config.js';
import { configFrom } from '../src/daemon/config.js';
import { systemdEnvironmentFile, unitText } from '../src/adapters/host/daemon-supervisor.js';
import { DAEMON_ENVIRONMENT, DAEMON_NODE_FLAGS } from '../src/adapters/host/installation.js';
import { nodeRunSettings, nodeShowsSettings } from '../src/services/nodes/node-run.js';
import type { CalicoNode } from '../src/domain/resources.js';

const V1 = `apiVersion: v1
kind: calicoApiConfig
metadata: {}
spec:
  datastoreType: etcdv3
  etcdEndpoints: "http://10.0.0.1:2379, http://10.0.0.2:2379/"
  etcdUsername: calico
  etcdPassword: secret
  etcdKeyFile: /etc/calico/key.pem
  etcdCertFile: /etc/calico/cert.pem
  etcdCACertFile: /etc/calico/ca.pem
`;

const V3 = `apiVersion: projectcalico.org/v3
kind: CalicoAPIConfig
metadata:
spec:
  datastoreType: "etcdv3"
  etcdEndpoints: https://etcd1:2379
`;

/** An EnvironmentFile as systemd reads it: comments skipped, a double-quoted value unquoted and unescaped. */
function readAsSystemd(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    const quoted = /^"((?:[^"\\]|\\.)*)"$/.exec(match[2]!);
    env[match[1]!] = quoted ? quoted[1]!.replace(/\\(.)/g, '$1') : match[2]!;
  }
  return env;
}

/** The error `parseConfigFile` throws for `text`, as text. */
function parseError(text: string): string {
  try {
    parseConfigFile(text, '/etc/calico/calicoctl.cfg');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('parsed without an error');
}

describe('calicoctl config files', () => {
  it('reads calicoctl 1.x files (apiVersion v1, kind calicoApiConfig): every datastore field', () => {
    expect(parseConfigFile(V1, 'f.cfg').settings).toEqual({
      endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
      username: 'calico',
      password: 'secret',
      keyFile: '/etc/calico/key.pem',
      certFile: '/etc/calico/cert.pem',
      caCertFile: '/etc/calico/ca.pem',
    });
  });

  it('reads v3 files (projectcalico.org/v3, CalicoAPIConfig), and JSON as well', () => {
    expect(parseConfigFile(V3, 'f.cfg').settings).toEqual({ endpoints: ['https://etcd1:2379'] });
    const json = JSON.stringify({ apiVersion: 'projectcalico.org/v3', kind: 'CalicoAPIConfig', spec: { etcdEndpoints: 'http://e:2379' } });
    expect(parseConfigFile(json, 'f.json').settings).toEqual({ endpoints: ['http://e:2379'] });
  });

  it('refuses etcdv2 with what to write instead, naming the file and line', () => {
    const message = parseError(V1.replace('etcdv3', 'etcdv2'));
    expect(message).toMatch(/^\/etc\/calico\/calicoctl\.cfg:5: datastoreType etcdv2 is not supported/);
    expect(message).toContain("Calico's v3 data layout on etcd's v3 API");
    expect(message).toContain('datastoreType: etcdv3');
    expect(message).toContain('apiVersion: projectcalico.org/v3');
  });

  it('refuses unknown fields, wrong types, mismatched kinds and broken YAML, naming file and line', () => {
    expect(parseError(V3.replace('etcdEndpoints', 'etcdEndpoint'))).toMatch(/^\/etc\/calico\/calicoctl\.cfg:6: unknown field spec\.etcdEndpoint: expected .*spec\.etcdEndpoints/);
    expect(parseError(`${V3}kubeconfig: /x\n`)).toMatch(/:7: unknown field kubeconfig/);
    expect(parseError(V3.replace('https://etcd1:2379', '[a, b]'))).toMatch(/:6: spec\.etcdEndpoints must be a string/);
    expect(parseError(V3.replace('https://etcd1:2379', 'etcd1:2379'))).toMatch(/:6: spec\.etcdEndpoints entry "etcd1:2379" is not an etcd URL/);
    expect(parseError(V1.replace('calicoApiConfig', 'CalicoAPIConfig'))).toMatch(/:2: kind "CalicoAPIConfig" does not go with apiVersion v1: expected kind: calicoApiConfig/);
    expect(parseError(V3.replace('projectcalico.org/v3', 'v2'))).toMatch(/:1: apiVersion "v2" is not a calicoctl config/);
    expect(parseError(V3.replace('etcdv3', 'kubernetes'))).toMatch(/:5: datastoreType "kubernetes" is not supported/);
    expect(parseError('apiVersion: v1\nkind: calicoApiConfig\nspec:\n  etcdEndpoints: [a\n')).toMatch(/^\/etc\/calico\/calicoctl\.cfg:\d+: not valid YAML or JSON/);
    expect(parseError('spec: 1\nspec: 2\n')).toMatch(/:2: not valid YAML or JSON/);
    expect(parseError('')).toMatch(/:1: expected a calicoctl config/);
  });
});

describe('which etcd: environment over the file over the default', () => {
  const file = parseConfigFile(V1, 'f.cfg');

  it('defaults to http://127.0.0.1:2379, and counts as configured only when something says so', () => {
    expect(datastoreFrom({})).toEqual({ etcd: { endpoints: ['http://127.0.0.1:2379'] }, configured: false });
    expect(datastoreFrom({ ETCD_ENDPOINTS: '' }).configured).toBe(false);
    expect(datastoreFrom({}, parseConfigFile('apiVersion: v1\nkind: calicoApiConfig\n', 'f')).configured).toBe(true);
    expect(datastoreFrom({ ETCD_CA_CERT_FILE: '/ca' }).configured).toBe(true);
  });

  it('takes the file over the default, and each variable over the file', () => {
    expect(datastoreFrom({}, file).etcd.endpoints).toEqual(['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
    const mixed = datastoreFrom({ ETCD_ENDPOINTS: 'http://env:2379', ETCD_USERNAME: 'envuser' }, file).etcd;
    expect(mixed).toEqual({
      endpoints: ['http://env:2379'],
      username: 'envuser',
      password: 'secret',
      keyFile: '/etc/calico/key.pem',
      certFile: '/etc/calico/cert.pem',
      caCertFile: '/etc/calico/ca.pem',
    });
  });

  it('reads calicoctl 0.x ETCD_SCHEME://ETCD_AUTHORITY, ETCD_ENDPOINTS winning over them', () => {
    expect(datastoreFrom({ ETCD_AUTHORITY: '10.0.0.9:4001' }, file).etcd.endpoints).toEqual(['http://10.0.0.9:4001']);
    expect(datastoreFrom({ ETCD_AUTHORITY: 'etcd:2379', ETCD_SCHEME: 'https' }).etcd.endpoints).toEqual(['https://etcd:2379']);
    expect(datastoreFrom({ ETCD_SCHEME: 'https' }).etcd.endpoints).toEqual(['https://127.0.0.1:2379']);
    expect(datastoreFrom({ ETCD_AUTHORITY: 'etcd:2379', ETCD_ENDPOINTS: 'http://e2:2379' }).etcd.endpoints).toEqual(['http://e2:2379']);
    expect(() => datastoreFrom({ ETCD_SCHEME: 'ftp' })).toThrow(/invalid ETCD_SCHEME="ftp": expected http or https/);
    expect(() => datastoreFrom({ ETCD_AUTHORITY: 'http://etcd:2379' })).toThrow(/invalid ETCD_AUTHORITY="http:\/\/etcd:2379": expected host:port/);
    expect(() => datastoreFrom({ ETCD_ENDPOINTS: 'etcd:2379' })).toThrow(/invalid ETCD_ENDPOINTS entry "etcd:2379"/);
  });

  it('gives the daemon the same datastore, and says when nothing configured one', () => {
    expect(configFrom({ NODENAME: 'n' }, file).etcd.endpoints).toEqual(['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
    expect(configFrom({ NODENAME: 'n' }, file).etcdConfigured).toBe(true);
    expect(configFrom({ NODENAME: 'n' }).etcdConfigured).toBe(false);
    expect(configFrom({ NODENAME: 'n', ETCD_AUTHORITY: 'e:2379' }).etcdConfigured).toBe(true);
  });

  it('refuses a managed plugin with no datastore set: it has no etcd to run', () => {
    expect(() => configFrom({ NODENAME: 'n', CALICO_LIBNETWORK_MANAGED_PLUGIN: 'true', ETCD_ENDPOINTS: '' })).toThrow(/managed plugin needs a datastore: docker plugin set <plugin> ETCD_ENDPOINTS=/);
    expect(configFrom({ NODENAME: 'n', CALICO_LIBNETWORK_MANAGED_PLUGIN: 'true', ETCD_ENDPOINTS: 'http://10.0.0.1:2379' }).managedPlugin).toBe(true);
    expect(configFrom({ NODENAME: 'n' }).managedPlugin).toBe(false);
  });
});

describe("calico/node's variable names (the walkthroughs' calico.env)", () => {
  it('are read as the daemon names, the plain names winning, empty values counting as unset', () => {
    const env = { CALICO_NODENAME: 'host-1', CALICO_IP: '10.0.0.5', CALICO_IP6: '', CALICO_AS: '64513', CALICO_NO_DEFAULT_POOLS: 'true', IP: '10.0.0.6' };
    expect(withCalicoNodeNames(env)).toMatchObject({ NODENAME: 'host-1', IP: '10.0.0.6', AS: '64513', NO_DEFAULT_POOLS: 'true' });
    expect(withCalicoNodeNames(env).IP6).toBeUndefined();
    const config = configFrom(env);
    expect(config.nodeName).toBe('host-1');
    expect(config.node).toMatchObject({ ipv4: { kind: 'address', text: '10.0.0.6' }, ipv6: { kind: 'none' }, asNumber: 64513 });
    expect(config.defaultPools).toEqual({});
    expect(configFrom({ ...env, NODENAME: 'plain' }).nodeName).toBe('plain');
  });

  it('systemd/calico.env.example, read as systemd reads an EnvironmentFile, configures the daemon', () => {
    const text = readFileSync(join(import.meta.dirname, '../systemd/calico.env.example'), 'utf8');
    const config = configFrom({ HOSTNAME: 'host-from-env', ...readAsSystemd(text) });
    expect(config).toMatchObject({ nodeName: 'host-from-env', backend: 'bird', etcdConfigured: true });
    expect(config.etcd).toEqual({ endpoints: ['http://10.0.0.10:2379'] });
    expect(config.node.ipv4).toMatchObject({ kind: 'autodetect' });
  });

  it('CALICO_LIBNETWORK_ENABLED: true or unset is fine, false is refused with the reason', () => {
    expect(() => checkLibnetworkEnabled({ CALICO_LIBNETWORK_ENABLED: 'true' })).not.toThrow();
    expect(() => checkLibnetworkEnabled({})).not.toThrow();
    expect(() => configFrom({ NODENAME: 'n', CALICO_LIBNETWORK_ENABLED: 'false' })).toThrow(/CALICO_LIBNETWORK_ENABLED=false: this daemon is the libnetwork plugin/);
    expect(() => checkLibnetworkEnabled({ CALICO_LIBNETWORK_ENABLED: 'maybe' })).toThrow(/invalid CALICO_LIBNETWORK_ENABLED="maybe"/);
  });
});

describe('health and metrics endpoints: our names or Felix\'s', () => {
  it('health on 127.0.0.1:9099 and metrics off (port 9091, every interface) by default', () => {
    const config = configFrom({ NODENAME: 'n' });
    expect(config.health).toEqual({ enabled: true, host: '127.0.0.1', port: 9099 });
    expect(config.metrics).toEqual({ enabled: false, host: '', port: 9091 });
  });

  it("Felix's variables are read; ours win over them; an empty value counts as unset", () => {
    const felix = { NODENAME: 'n', FELIX_HEALTHENABLED: 'false', FELIX_HEALTHHOST: '0.0.0.0', FELIX_HEALTHPORT: '9100', FELIX_PROMETHEUSMETRICSENABLED: 'true', FELIX_PROMETHEUSMETRICSHOST: '10.0.0.5', FELIX_PROMETHEUSMETRICSPORT: '9191' };
    expect(configFrom(felix)).toMatchObject({ health: { enabled: false, host: '0.0.0.0', port: 9100 }, metrics: { enabled: true, host: '10.0.0.5', port: 9191 } });
    const ours = { ...felix, CALICO_LIBNETWORK_HEALTH_ENABLED: 'TRUE', CALICO_LIBNETWORK_HEALTH_PORT: '9200', CALICO_LIBNETWORK_METRICS_HOST: '', CALICO_LIBNETWORK_METRICS_PORT: '9201' };
    expect(configFrom(ours)).toMatchObject({ health: { enabled: true, host: '0.0.0.0', port: 9200 }, metrics: { enabled: true, host: '10.0.0.5', port: 9201 } });
  });

  it('bad values are refused naming the variable; health and metrics may not share a port', () => {
    expect(() => configFrom({ NODENAME: 'n', FELIX_HEALTHENABLED: 'maybe' })).toThrow('invalid FELIX_HEALTHENABLED="maybe": expected true or false');
    expect(() => configFrom({ NODENAME: 'n', CALICO_LIBNETWORK_METRICS_PORT: '9091.5' })).toThrow('invalid CALICO_LIBNETWORK_METRICS_PORT="9091.5": expected a whole number between 1 and 65535');
    expect(() => configFrom({ NODENAME: 'n', FELIX_HEALTHPORT: '0' })).toThrow('invalid FELIX_HEALTHPORT="0"');
    expect(() => configFrom({ NODENAME: 'n', FELIX_PROMETHEUSMETRICSENABLED: 'true', FELIX_PROMETHEUSMETRICSPORT: '9099' })).toThrow(/both listen on port 9099/);
    // Metrics off: the port is not in use, so no conflict.
    expect(configFrom({ NODENAME: 'n', FELIX_PROMETHEUSMETRICSPORT: '9099' }).metrics.port).toBe(9099);
  });
});

describe('calicoctl node run: the daemon settings', () => {
  const datastore = { endpoints: ['http://10.0.0.1:2379'], caCertFile: '/ca.pem' };

  it('turns flags into the daemon variables, flags over the environment, absent ones left to the daemon', () => {
    const env = { NODENAME: 'from-env', AS: '64600', CALICO_IP: '10.0.0.7', ETCD_ENDPOINTS: 'http://ignored:2379' };
    const settings = nodeRunSettings({ ip: '10.0.0.5/24', as: '64513', backend: 'vxlan', noDefaultIppools: true, ipAutodetectionMethod: 'can-reach=8.8.8.8' }, withCalicoNodeNames(env), datastore);
    expect(settings).toEqual({
      NODENAME: 'from-env',
      IP: '10.0.0.5/24',
      AS: '64513',
      IP_AUTODETECTION_METHOD: 'can-reach=8.8.8.8',
      CALICO_NETWORKING_BACKEND: 'vxlan',
      NO_DEFAULT_POOLS: 'true',
      ETCD_ENDPOINTS: 'http://10.0.0.1:2379',
      ETCD_CA_CERT_FILE: '/ca.pem',
    });
    expect(nodeRunSettings({ name: 'flag-name' }, withCalicoNodeNames(env), datastore)).toMatchObject({ NODENAME: 'flag-name', IP: '10.0.0.7', AS: '64600' });
    expect(nodeRunSettings({}, {}, datastore)).toEqual({ ETCD_ENDPOINTS: 'http://10.0.0.1:2379', ETCD_CA_CERT_FILE: '/ca.pem' });
  });

  it('refuses bad flags, naming the flag (or the variable) and the value', () => {
    expect(() => nodeRunSettings({ ip: '10.0.0.300' }, {}, datastore)).toThrow('invalid --ip "10.0.0.300": expected an IPv4 address');
    expect(() => nodeRunSettings({ ip: 'fd00::1' }, {}, datastore)).toThrow(/invalid --ip "fd00::1"/);
    expect(() => nodeRunSettings({ ip: '10.0.0.1/33' }, {}, datastore)).toThrow(/invalid --ip "10.0.0.1\/33"/);
    expect(() => nodeRunSettings({ ip6: '10.0.0.1' }, {}, datastore)).toThrow(/invalid --ip6 "10.0.0.1": expected an IPv6 address/);
    expect(() => nodeRunSettings({}, { IP: 'bogus' }, datastore)).toThrow(/invalid IP "bogus"/);
    expect(() => nodeRunSettings({ as: '4294967296' }, {}, datastore)).toThrow(/invalid --as "4294967296": expected a number from 1 to 4294967295/);
    expect(() => nodeRunSettings({ as: '0' }, {}, datastore)).toThrow(/invalid --as "0"/);
    expect(() => nodeRunSettings({ backend: 'gobgp' }, {}, datastore)).toThrow('invalid --backend "gobgp": expected bird, vxlan, none');
    expect(() => nodeRunSettings({ ipAutodetectionMethod: 'magic' }, {}, datastore)).toThrow(/--ip-autodetection-method/);
    expect(() => nodeRunSettings({ name: 'a b' }, {}, datastore)).toThrow(/invalid node name "a b"/);
  });

  it('waits for a Node that shows the requested address and AS', () => {
    const node = (bgp: object): CalicoNode => ({ apiVersion: 'projectcalico.org/v3', kind: 'Node', metadata: { name: 'n' }, spec: { bgp } });
    expect(nodeShowsSettings(null, {})).toBe(false);
    expect(nodeShowsSettings(node({}), {})).toBe(true);
    expect(nodeShowsSettings(node({ ipv4Address: '10.0.0.5/24', asNumber: 64513 }), { IP: '10.0.0.5', AS: '64513' })).toBe(true);
    expect(nodeShowsSettings(node({ ipv4Address: '10.0.0.5/24', asNumber: 64512 }), { IP: '10.0.0.5', AS: '64513' })).toBe(false);
    expect(nodeShowsSettings(node({ ipv4Address: '10.0.0.6/24' }), { IP: '10.0.0.5/24' })).toBe(false);
    expect(nodeShowsSettings(node({ ipv4Address: '10.0.0.6/24' }), { IP: 'autodetect' })).toBe(true);
  });

  it('through systemd: an env file that reads back as written, and the shipped unit pointed at it and at this daemon', () => {
    const settings = { NODENAME: 'host 1', IP_AUTODETECTION_METHOD: 'interface=eth\\d+,"quoted"', ETCD_ENDPOINTS: 'http://10.0.0.1:2379' };
    expect(readAsSystemd(systemdEnvironmentFile(settings))).toEqual(settings);
    const unit = unitText(readFileSync(join(import.meta.dirname, '../systemd/calico-libnetwork.service'), 'utf8'), '/tmp/x/calico.env');
    expect(unit).toMatch(/^EnvironmentFile=-\/tmp\/x\/calico\.env$/m);
    expect(unit).toMatch(new RegExp(`^ExecStart=${process.execPath} ${DAEMON_NODE_FLAGS.join(' ')} \\S+/dist/src/daemon/main\\.js$`, 'm'));
    expect(unit).toMatch(/^KillMode=process$/m);
  });

  it('every shipped way of starting the daemon gives Node.js the same flags and environment', () => {
    const read = (path: string): string => readFileSync(join(import.meta.dirname, '..', path), 'utf8');
    const startLines = {
      unit: /^ExecStart=\S+ (.*) \S+main\.js$/m.exec(read('systemd/calico-libnetwork.service'))?.[1],
      runScript: /^exec node (.*) dist\/src\/daemon\/main\.js$/m.exec(read('scripts/run.sh'))?.[1],
      plugin: /^exec \S+node (.*) \S+main\.js$/m.exec(read('managed-plugin/entrypoint.sh'))?.[1],
      image: /^ENTRYPOINT \["node", (.*), "[^"]+main\.js"\]$/m.exec(read('Dockerfile'))?.[1]?.replace(/"/g, '').split(', ').join(' '),
    };
    const flags = DAEMON_NODE_FLAGS.join(' ');
    expect(startLines).toEqual({ unit: flags, runScript: flags, plugin: flags, image: flags });
    const settings = (path: string, line: RegExp): string[] => [...read(path).matchAll(line)].map((m) => m[1]!);
    const environments = {
      unit: settings('systemd/calico-libnetwork.service', /^Environment=(.*)$/gm),
      runScript: settings('scripts/run.sh', /^export (.*)$/gm),
      plugin: settings('managed-plugin/entrypoint.sh', /^export (.*)$/gm),
      image: settings('Dockerfile', /^ENV (.*)$/gm),
    };
    const environment = Object.entries(DAEMON_ENVIRONMENT).map(([name, value]) => `${name}=${value}`);
    expect(environments).toEqual({ unit: environment, runScript: environment, plugin: environment, image: environment });
  });
});
