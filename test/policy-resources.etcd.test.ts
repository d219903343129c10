import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calicoctlOn } from './helpers/calicoctl-suite.js';
import { etcdForSuite } from './helpers/ipam.js';

/** calicoctl's verbs on Calico v3's policy kinds, against a real etcd, stored in Calico's layout. */

const suite = etcdForSuite({ wipeEachTest: false });
let env: Record<string, string>;
const dir = mkdtempSync(join(tmpdir(), 'policy-resources-'));
const { ctl, ok, datastore } = calicoctlOn(suite, () => env);
const ROOT = '/calico/resources/v3/projectcalico.org/';



async function stored(key: string): Promise<Record<string, any> | undefined> {
  const kv = (await suite.ctx.etcd.range({ key: Buffer.from(`${ROOT}${key}`) })).kvs[0];
  return kv ? JSON.parse(kv.value.toString()) : undefined;
}

const GNP = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-dns
spec:
  order: 100
  selector: has(web)
  types: [Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
      nets: [10.0.0.10]
`;

const NP = `{"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": "db-in"},
 "spec": {"selector": "role == \\"db\\"", "ingress": [{"action": "Allow", "protocol": "tcp", "source": {"selector": "role == \\"app\\""}, "destination": {"ports": [5432, "6000:6010", "pg"]}}]}}`;

beforeAll(() => {
  env = { ETCD_ENDPOINTS: suite.etcd.endpoint, NODENAME: 'node1', CALICO_RUN_DIR: join(dir, 'run') };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tiers', () => {
  it('the default tier exists on an empty datastore and cannot be deleted', async () => {
    expect(await ok(['get', 'tiers'])).toBe('NAME      ORDER   \ndefault   1e+06   \n\n');
    expect(JSON.parse(await ok(['get', 'tier', 'default', '-o', 'json']))).toEqual({
      kind: 'Tier',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name: 'default' },
      spec: { order: 1000000, defaultAction: 'Deny' },
    });
    const before = await datastore();
    expect(await ctl(['delete', 'tier', 'default'])).toMatchObject({ status: 1, stderr: "Failed to delete 'Tier' resource: operation Delete is not supported on default: Cannot delete default tier\n" });
    expect(await ctl(['create', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {}\n')).toMatchObject({
      status: 1,
      stderr: "Failed to create 'Tier' resource: resource already exists: Tier(default)\n",
    });
    expect(await ctl(['apply', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {order: 5}\n')).toMatchObject({
      status: 1,
      stderr: "Failed to apply 'Tier' resource: error with field Order = '5' (the default tier's order is 1000000)\n",
    });
    expect(await datastore()).toBe(before);
  });

  it('creates a tier with Calico’s defaults filled in; labels and patches it', async () => {
    expect(await ok(['create', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n')).toBe("Successfully created 1 'Tier' resource(s)\n");
    expect((await stored('tiers/security'))?.spec).toEqual({ order: 100, defaultAction: 'Deny' });
    expect(await ok(['get', 'tier'])).toBe('NAME       ORDER   \ndefault    1e+06   \nsecurity   100     \n\n');
    expect(await ok(['get', 'tier', '-o', 'wide'])).toBe('NAME       ORDER   \ndefault    1e+06   \nsecurity   100     \n\n');
    expect(await ok(['patch', 'tier', 'security', '-p', '{"spec":{"defaultAction":"Pass"}}'])).toBe("Successfully patched 1 'Tier' resource\n");
    expect(await ok(['label', 'tier', 'security', 'team=sec'])).toBe('Successfully set label team on tier security\n');
    const tier = await stored('tiers/security');
    expect(tier?.spec).toEqual({ order: 100, defaultAction: 'Pass' });
    expect(tier?.metadata.labels).toEqual({ team: 'sec' });
    expect(await ok(['get', 'tier', 'security', '-o', 'yaml', '--export'])).toBe(
      'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  labels:\n    team: sec\n  name: security\nspec:\n  defaultAction: Pass\n  order: 100\n',
    );
  });

  it('labelling the default tier stores it', async () => {
    expect(await ok(['label', 'tier', 'default', 'x=y'])).toBe('Successfully set label x on tier default\n');
    expect(await stored('tiers/default')).toMatchObject({ kind: 'Tier', metadata: { name: 'default', labels: { x: 'y' } }, spec: { order: 1000000, defaultAction: 'Deny' } });
  });
});

describe('GlobalNetworkPolicy and NetworkPolicy', () => {
  it('creates a GlobalNetworkPolicy, stored under its plain name with the tier label; tables ps and wide', async () => {
    expect(await ok(['create', '-f', '-'], GNP)).toBe("Successfully created 1 'GlobalNetworkPolicy' resource(s)\n");
    const value = await stored('globalnetworkpolicies/allow-dns');
    expect(Object.keys(value!)).toEqual(['kind', 'apiVersion', 'metadata', 'spec']);
    expect(value?.metadata).toMatchObject({ name: 'allow-dns', labels: { 'projectcalico.org/tier': 'default' } });
    expect(value?.spec).toEqual({
      order: 100,
      selector: 'has(web)',
      types: ['Egress'],
      egress: [{ action: 'Allow', protocol: 'UDP', destination: { ports: [53], nets: ['10.0.0.10'] } }],
      tier: 'default',
    });
    expect(await ok(['get', 'gnp'])).toBe('NAME        TIER      \nallow-dns   default   \n\n');
    expect(await ok(['get', 'globalnetworkpolicies', '-o', 'wide'])).toBe('NAME        TIER      ORDER   SELECTOR   \nallow-dns   default   100     has(web)   \n\n');
  });

  it('a policy in another tier is named <tier>.<name>; the tier then cannot be deleted', async () => {
    const tiered = (name: string, tier: string) => `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: ${name}}\nspec: {tier: ${tier}, selector: all(), types: []}\n`;
    expect(await ok(['apply', '-f', '-'], tiered('security.block', 'security'))).toBe("Successfully applied 1 'GlobalNetworkPolicy' resource(s)\n");
    expect(await stored('globalnetworkpolicies/security.block')).toMatchObject({ metadata: { labels: { 'projectcalico.org/tier': 'security' } }, spec: { tier: 'security', types: [] } });
    expect(await ok(['get', 'gnps', '-o', 'wide'])).toBe('NAME             TIER       ORDER   SELECTOR   \nallow-dns        default    100     has(web)   \nsecurity.block   security   <nil>   all()      \n\n');
    const before = await datastore();
    expect(await ctl(['delete', 'tier', 'security'])).toMatchObject({ status: 1, stderr: "Failed to delete 'Tier' resource: operation delete is not supported on security: Cannot delete a non-empty tier\n" });
    expect(await datastore()).toBe(before);
  });

  it('a NetworkPolicy (JSON) lands in namespace libnetwork; get, replace, patch, label, delete', async () => {
    expect(await ok(['create', '-f', '-'], NP)).toBe("Successfully created 1 'NetworkPolicy' resource(s)\n");
    const value = await stored('networkpolicies/libnetwork/db-in');
    expect(value?.metadata).toMatchObject({ name: 'db-in', namespace: 'libnetwork', labels: { 'projectcalico.org/tier': 'default' } });
    expect(value?.spec.ingress[0].destination.ports).toEqual([5432, '6000:6010', 'pg']);
    expect(await ok(['get', 'networkpolicy'])).toBe('NAME    TIER      \ndb-in   default   \n\n');
    expect(await ok(['get', 'netpol', '-A', '-o', 'wide'])).toBe('NAMESPACE    NAME    TIER      ORDER   SELECTOR       \nlibnetwork   db-in   default   <nil>   role == "db"   \n\n');
    const json = JSON.parse(await ok(['get', 'policy', 'db-in', '-o', 'json']));
    expect(json.metadata.namespace).toBe('libnetwork');
    const yaml = await ok(['get', 'policies', 'db-in', '-o', 'yaml']);
    expect(yaml).toMatch(/^apiVersion: projectcalico\.org\/v3\nkind: NetworkPolicy\nmetadata:\n[\s\S]*  namespace: libnetwork\n[\s\S]*spec:\n[\s\S]*  selector: role == "db"\n/);
    expect(await ok(['replace', '-f', '-'], NP.replace('"role == \\"db\\""', '"role == \\"db2\\""'))).toBe("Successfully replaced 1 'NetworkPolicy' resource(s)\n");
    expect((await stored('networkpolicies/libnetwork/db-in'))?.spec.selector).toBe('role == "db2"');
    expect(await ok(['patch', 'netpol', 'db-in', '-p', '{"spec":{"order":5}}'])).toBe("Successfully patched 1 'NetworkPolicy' resource\n");
    expect(await ok(['label', 'netpol', 'db-in', 'app=pg'])).toBe('Successfully set label app on netpol db-in\n');
    expect((await stored('networkpolicies/libnetwork/db-in'))?.metadata.labels).toEqual({ 'projectcalico.org/tier': 'default', app: 'pg' });
    expect((await stored('networkpolicies/libnetwork/db-in'))?.spec.order).toBe(5);
    expect(await ok(['delete', 'netpol', 'db-in'])).toBe("Successfully deleted 1 'NetworkPolicy' resource(s)\n");
    expect(await stored('networkpolicies/libnetwork/db-in')).toBeUndefined();
  });

  it('accepts what Calico accepts: global() alone in a namespaceSelector, preDNAT with applyOnForward, protocols by name or number, ICMP type and code', async () => {
    const policy = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: edge}
spec:
  preDNAT: true
  applyOnForward: true
  selector: ""
  ingress:
  - {action: Deny, protocol: "6", source: {namespaceSelector: global()}, destination: {ports: [22]}}
  - {action: Allow, protocol: icmp, icmp: {type: 8, code: 0}, ipVersion: 4}
  - {action: Pass, protocol: 132, notProtocol: UDPLite, destination: {notPorts: ["1000:2000"]}}
  - {action: Log, ipVersion: 6, source: {notNets: ["fd00::1"]}}
`;
    expect(await ok(['create', '-f', '-'], policy)).toBe("Successfully created 1 'GlobalNetworkPolicy' resource(s)\n");
    const spec = (await stored('globalnetworkpolicies/edge'))?.spec;
    expect(spec.ingress[0].protocol).toBe(6);
    expect(spec.ingress[1]).toEqual({ action: 'Allow', protocol: 'icmp', icmp: { type: 8, code: 0 }, ipVersion: 4 });
    expect(await ok(['delete', 'gnp', 'edge'])).toBe("Successfully deleted 1 'GlobalNetworkPolicy' resource(s)\n");
  });

  it('the README’s NetworkPolicy for Docker’s endpoints applies as written', async () => {
    const readme = 'apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db-from-app, namespace: libnetwork}\nspec:\n  selector: role == "db"\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {selector: has(appnet)}\n    destination: {ports: [5432]}\n';
    expect(await ok(['apply', '-f', '-'], readme)).toBe("Successfully applied 1 'NetworkPolicy' resource(s)\n");
    expect((await stored('networkpolicies/libnetwork/db-from-app'))?.spec.selector).toBe('role == "db"');
    expect(await ok(['delete', 'policy', 'db-from-app', '-n', 'libnetwork'])).toBe("Successfully deleted 1 'NetworkPolicy' resource(s)\n");
  });

  it('GNP: patch, label, delete; then the tier can go', async () => {
    expect(await ok(['patch', 'gnp', 'allow-dns', '-p', '{"spec":{"order":50}}'])).toBe("Successfully patched 1 'GlobalNetworkPolicy' resource\n");
    expect(await ok(['label', 'gnp', 'allow-dns', 'owner=net'])).toBe('Successfully set label owner on gnp allow-dns\n');
    expect(await stored('globalnetworkpolicies/allow-dns')).toMatchObject({ metadata: { labels: { owner: 'net', 'projectcalico.org/tier': 'default' } }, spec: { order: 50 } });
    expect(await ok(['delete', 'gnp', 'security.block'])).toBe("Successfully deleted 1 'GlobalNetworkPolicy' resource(s)\n");
    expect(await ok(['delete', 'tier', 'security'])).toBe("Successfully deleted 1 'Tier' resource(s)\n");
    expect(await stored('tiers/security')).toBeUndefined();
  });
});

describe('network sets and host endpoints', () => {
  it('GlobalNetworkSet and NetworkSet', async () => {
    const sets = `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: office, labels: {role: office}}\nspec: {nets: [192.168.0.0/16, 10.1.2.3]}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: partners}\nspec: {nets: ['fd00::/64']}\n`;
    expect(await ok(['apply', '-f', '-'], sets)).toBe('Successfully applied 2 resource(s)\n');
    expect(await stored('globalnetworksets/office')).toMatchObject({ kind: 'GlobalNetworkSet', metadata: { labels: { role: 'office' } }, spec: { nets: ['192.168.0.0/16', '10.1.2.3'] } });
    expect(await stored('networksets/libnetwork/partners')).toMatchObject({ kind: 'NetworkSet', metadata: { namespace: 'libnetwork' }, spec: { nets: ['fd00::/64'] } });
    expect(await ok(['get', 'gns'])).toBe('NAME     \noffice   \n\n');
    expect(await ok(['get', 'globalnetworksets', '-o', 'wide'])).toBe('NAME     NETS                      \noffice   192.168.0.0/16,10.1.2.3   \n\n');
    expect(await ok(['get', 'netsets', '-o', 'wide'])).toBe('NAME       NETS        \npartners   fd00::/64   \n\n');
    expect(await ok(['label', 'netset', 'partners', 'tier=gold'])).toBe('Successfully set label tier on netset partners\n');
    expect(await ok(['patch', 'gns', 'office', '-p', '{"spec":{"nets":["192.168.1.0/24"]}}'])).toBe("Successfully patched 1 'GlobalNetworkSet' resource\n");
    expect((await stored('globalnetworksets/office'))?.spec).toEqual({ nets: ['192.168.1.0/24'] });
    expect(await ok(['delete', 'networkset', 'partners'])).toBe("Successfully deleted 1 'NetworkSet' resource(s)\n");
  });

  it('HostEndpoint', async () => {
    const hep = `apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: node1-eth0, labels: {role: host}}\nspec:\n  node: node1\n  interfaceName: eth0\n  expectedIPs: [10.0.0.11]\n  profiles: [web]\n  ports:\n  - {name: ssh, protocol: TCP, port: 22}\n`;
    expect(await ok(['create', '-f', '-'], hep)).toBe("Successfully created 1 'HostEndpoint' resource(s)\n");
    expect((await stored('hostendpoints/node1-eth0'))?.spec).toEqual({ node: 'node1', interfaceName: 'eth0', expectedIPs: ['10.0.0.11'], profiles: ['web'], ports: [{ name: 'ssh', protocol: 'TCP', port: 22 }] });
    expect(await ok(['get', 'hep'])).toBe('NAME         NODE    \nnode1-eth0   node1   \n\n');
    expect(await ok(['get', 'heps', '-o', 'wide'])).toBe('NAME         NODE    INTERFACE   IPS         PROFILES   \nnode1-eth0   node1   eth0        10.0.0.11   web        \n\n');
    expect(await ok(['label', 'hostendpoint', 'node1-eth0', 'zone=a'])).toBe('Successfully set label zone on hostendpoint node1-eth0\n');
    expect(await ok(['patch', 'hostendpoints', 'node1-eth0', '-p', '{"spec":{"interfaceName":"*"}}'])).toBe("Successfully patched 1 'HostEndpoint' resource\n");
    expect((await stored('hostendpoints/node1-eth0'))?.spec.interfaceName).toBe('*');
    expect(JSON.parse(await ok(['get', 'hep', 'node1-eth0', '-o', 'json'])).metadata.labels).toEqual({ role: 'host', zone: 'a' });
  });

  it('FelixConfiguration: failsafe ports and defaultEndpointToHostAction', async () => {
    const felix = `apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  defaultEndpointToHostAction: Return\n  failsafeInboundHostPorts: [{protocol: tcp, port: 22}, {port: 179, net: 10.0.0.0/8}]\n  failsafeOutboundHostPorts: []\n  vxlanVNI: 4096\n`;
    expect(await ok(['apply', '-f', '-'], felix)).toBe("Successfully applied 1 'FelixConfiguration' resource(s)\n");
    expect((await stored('felixconfigurations/default'))?.spec).toEqual({
      defaultEndpointToHostAction: 'Return',
      failsafeInboundHostPorts: [{ protocol: 'tcp', port: 22 }, { port: 179, net: '10.0.0.0/8' }],
      failsafeOutboundHostPorts: [],
      vxlanVNI: 4096,
    });
  });
});

describe('bad input: an error naming the field, exit 1, nothing written', () => {
  const gnp = (spec: string, name = 'bad') => `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
  const rule = (text: string) => gnp(`  ingress:\n  - ${text}\n`);
  const failed = (kind: string, reason: string) => `Failed to create '${kind}' resource: error with field ${reason}\n`;
  const cases: [string, string, string | RegExp][] = [
    ['a selector that does not parse', gnp('  selector: "role == "\n'), /^Failed to create 'GlobalNetworkPolicy' resource: error with field Selector = 'role == ' \(.+\)\n$/],
    ['global() in the policy selector', gnp('  selector: global()\n'), failed('GlobalNetworkPolicy', "Selector = 'global()' (global() can only be used in an EntityRule namespaceSelector)")],
    ['global() combined in a namespaceSelector', rule('{action: Allow, source: {namespaceSelector: "global() && has(a)"}}'), failed('GlobalNetworkPolicy', "Ingress[0].Source.NamespaceSelector = 'global() && has(a)' (global() cannot be combined with other selectors)")],
    ['a rule selector that does not parse', rule('{action: Allow, source: {selector: "has(a"}}'), /^Failed to create 'GlobalNetworkPolicy' resource: error with field Ingress\[0\]\.Source\.Selector = 'has\(a' \(/],
    ['global() in a rule selector', rule('{action: Allow, source: {selector: "global()"}}'), failed('GlobalNetworkPolicy', "Ingress[0].Source.Selector = 'global()' (global() can only be used in an EntityRule namespaceSelector)")],
    ['an unknown field', gnp('  selectr: all()\n'), 'Failed to execute command: error parsing document: field in document is not recognized or is in the wrong location: selectr\n'],
    ['an order that is no number', gnp('  order: high\n'), "Failed to execute command: error parsing document: cannot parse string 'high' into field GlobalNetworkPolicySpec.order of type float64\n"],
    ['an unknown field in a rule', rule('{action: Allow, port: 80}'), 'Failed to execute command: error parsing document: field in document is not recognized or is in the wrong location: port\n'],
    ['a rule with ports and no protocol', rule('{action: Allow, destination: {ports: [80]}}'), failed('GlobalNetworkPolicy', "Ingress[0].Protocol = '' (rules that specify ports must set protocol to TCP or UDP or SCTP)")],
    ['a rule with ports and protocol ICMP', rule('{action: Allow, protocol: ICMP, destination: {ports: [80]}}'), failed('GlobalNetworkPolicy', "Ingress[0].Protocol = 'ICMP' (rules that specify ports must set protocol to TCP or UDP or SCTP)")],
    ['an unknown tier', gnp('  tier: nosuch\n', 'nosuch.p'), "Failed to create 'GlobalNetworkPolicy' resource: resource does not exist: Tier(nosuch) with error: <nil>\n"],
    ['a name without its tier prefix', gnp('  tier: default\n', 'security.p'), /error with field Metadata\.Name = 'security\.p' \(a policy named security\.<name> must be in tier security/],
    ['an action that does not exist', rule('{action: allow}'), failed('GlobalNetworkPolicy', "Ingress[0].Action = 'allow' (expected Allow, Deny, Log, Pass)")],
    ['a protocol that does not exist', rule('{action: Allow, protocol: tcpp}'), failed('GlobalNetworkPolicy', "Ingress[0].Protocol = 'tcpp' (expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255)")],
    ['protocol 0', rule('{action: Allow, protocol: 0}'), failed('GlobalNetworkPolicy', "Ingress[0].Protocol = '0' (a protocol number is 1-255)")],
    ['ICMP fields with TCP', rule('{action: Allow, protocol: TCP, icmp: {type: 8}}'), failed('GlobalNetworkPolicy', 'Ingress[0].ICMP (rules that specify ICMP fields must set protocol to ICMP)')],
    ['an ICMP code without a type', rule('{action: Allow, protocol: ICMP, icmp: {code: 0}}'), failed('GlobalNetworkPolicy', "Ingress[0].ICMP.Code = '0' (ICMP code specified without an ICMP type)")],
    ['an ICMP type 255', rule('{action: Allow, protocol: ICMP, icmp: {type: 255}}'), failed('GlobalNetworkPolicy', "Ingress[0].ICMP.Type = '255' (an ICMP type is 0-254)")],
    ['ICMPv6 with ipVersion 4', rule('{action: Allow, protocol: ICMPv6, ipVersion: 4}'), failed('GlobalNetworkPolicy', "Ingress[0].IPVersion = '4' (protocol ICMPv6 needs ipVersion 6)")],
    ['CIDRs of both families', rule('{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: ["fd00::/8"]}}'), failed('GlobalNetworkPolicy', 'Ingress[0] (rule contains both IPv4 and IPv6 CIDRs)')],
    ['a CIDR that does not match ipVersion', rule('{action: Allow, ipVersion: 6, source: {nets: [10.0.0.0/8]}}'), failed('GlobalNetworkPolicy', "Ingress[0].IPVersion = '6' (rule contains an IPv4 CIDR)")],
    ['a bad CIDR', rule('{action: Allow, source: {nets: [10.0.0.0/33]}}'), failed('GlobalNetworkPolicy', "Ingress[0].Source.Nets = '10.0.0.0/33' (expected a CIDR such as 10.0.0.0/8, or an IP address)")],
    ['a port range upside down', rule('{action: Allow, protocol: TCP, destination: {ports: ["90:80"]}}'), failed('GlobalNetworkPolicy', "Ingress[0].Destination.Ports = '90:80' (a port is 1-65535, a range a:b with a <= b)")],
    ['a bad port name', rule('{action: Allow, protocol: TCP, destination: {ports: ["Web_Port"]}}'), /error with field Ingress\[0\]\.Destination\.Ports = 'Web_Port' \(a port name/],
    ['duplicate types', gnp('  types: [Ingress, Ingress]\n'), failed('GlobalNetworkPolicy', 'Types = \'["Ingress","Ingress"]\' (duplicate policy types)')],
    ['preDNAT with doNotTrack', gnp('  preDNAT: true\n  doNotTrack: true\n  applyOnForward: true\n'), failed('GlobalNetworkPolicy', 'PreDNAT (PreDNAT and DoNotTrack cannot both be true, for a given PolicySpec)')],
    ['preDNAT with egress', gnp('  preDNAT: true\n  applyOnForward: true\n  types: [Egress]\n'), failed('GlobalNetworkPolicy', "PreDNAT (PreDNAT PolicySpec types field cannot include 'egress')")],
    ['doNotTrack without applyOnForward', gnp('  doNotTrack: true\n'), failed('GlobalNetworkPolicy', "ApplyOnForward = 'false' (ApplyOnForward must be true if either PreDNAT or DoNotTrack is true, for a given PolicySpec)")],
    ['a tier name with a dot', 'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: a.b}\nspec: {}\n', failed('Tier', "Metadata.Name = 'a.b' (a tier name is a lower-case DNS label (letters, digits and -, no dots))")],
    ['a tier defaultAction Allow', 'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {defaultAction: Allow}\n', failed('Tier', "DefaultAction = 'Allow' (expected Deny or Pass)")],
    ['a network set with the reserved label', 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, labels: {projectcalico.org/namespace: x}}\nspec: {nets: [10.0.0.0/8]}\n', failed('GlobalNetworkSet', "Metadata.Labels = 'projectcalico.org/namespace' (this label is reserved: Calico sets it)")],
    ['a network set with a bad net', 'apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s}\nspec: {nets: [banana]}\n', failed('NetworkSet', "Nets = 'banana' (expected a CIDR such as 10.0.0.0/8, or an IP address)")],
    ['a host endpoint without node', 'apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {interfaceName: eth0}\n', failed('HostEndpoint', 'Node (a HostEndpoint needs its node)')],
    ['a host endpoint without interface or IPs', 'apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: node1}\n', failed('HostEndpoint', 'InterfaceName (at least one of interfaceName or expectedIPs must be specified)')],
    ['a host endpoint interface name too long', 'apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: node1, interfaceName: abcdefghijklmnop}\n', /error with field InterfaceName = 'abcdefghijklmnop'/],
    ['a host endpoint port with ICMP', 'apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: node1, interfaceName: eth0, ports: [{name: p, protocol: ICMP, port: 1}]}\n', failed('HostEndpoint', "Ports[0].Protocol = 'ICMP' (the protocol of a named port must support ports: TCP, UDP or SCTP)")],
    ['a failsafe port 0', 'apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {failsafeInboundHostPorts: [{port: 0}]}\n', /error with field FailsafeInboundHostPorts\[0\]\.Port = '0' \(a port is 1-65535\)/],
    ['a failsafe protocol icmp', 'apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.x}\nspec: {failsafeOutboundHostPorts: [{protocol: icmp, port: 1}]}\n', /error with field FailsafeOutboundHostPorts\[0\]\.Protocol = 'icmp' \(expected tcp, udp or sctp\)/],
    ['a defaultEndpointToHostAction Deny', 'apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.x}\nspec: {defaultEndpointToHostAction: Deny}\n', /error with field DefaultEndpointToHostAction = 'Deny' \(expected Drop, Accept or Return\)/],
  ];
  for (const [what, input, expected] of cases) {
    it(what, async () => {
      const before = await datastore();
      const result = await ctl(['create', '-f', '-'], input);
      expect(result.status).toBe(1);
      if (typeof expected === 'string') expect(result.stderr).toBe(expected);
      else expect(result.stderr).toMatch(expected);
      expect(await datastore()).toBe(before);
    });
  }

  it('a patch that breaks a policy, and a Profile rule with ports but no protocol, are refused', async () => {
    const before = await datastore();
    expect(await ctl(['patch', 'gnp', 'allow-dns', '-p', '{"spec":{"egress":[{"action":"Allow","destination":{"ports":[53]}}]}}'])).toMatchObject({
      status: 1,
      stderr: "Hit error: error with field Egress[0].Protocol = '' (rules that specify ports must set protocol to TCP or UDP or SCTP)\n",
    });
    expect(await ctl(['create', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, destination: {ports: [80]}}]}\n')).toMatchObject({
      status: 1,
      stderr: "Failed to create 'Profile' resource: error with field Ingress[0].Protocol = '' (rules that specify ports must set protocol to TCP or UDP or SCTP)\n",
    });
    expect(await datastore()).toBe(before);
  });
});
