import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calicoctlOn } from './helpers/calicoctl-suite.js';
import { etcdForSuite } from './helpers/ipam.js';

/** calicoctl's Calico v3 verbs and the seed-era BGP words, against a real etcd, in Calico's words. */

const suite = etcdForSuite({ wipeEachTest: false });
let env: Record<string, string>;
const dir = mkdtempSync(join(tmpdir(), 'calicoctl-v3-'));
const { ctl, ok, datastore } = calicoctlOn(suite, () => env);



const RESOURCES = `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.60.0.0/16
  vxlanMode: Never
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor1
spec:
  peerIP: 10.0.0.1
  asNumber: 64567
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rr-mesh
spec:
  nodeSelector: has(rr)
  peerSelector: has(rr)
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 64512
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
spec:
  bgp:
    ipv4Address: 10.0.0.11/24
---
{"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "node2"}, "spec": {"bgp": {"asNumber": 64513, "ipv4Address": "10.0.0.12/24"}}}
`;

beforeAll(() => {
  env = { ETCD_ENDPOINTS: suite.etcd.endpoint, NODENAME: 'node1', CALICO_RUN_DIR: join(dir, 'run') };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('create, get, apply, replace, delete', () => {
  it('creates several kinds from one multi-document file and lists them in Calico’s table layouts', async () => {
    const file = join(dir, 'resources.yaml');
    writeFileSync(file, RESOURCES);
    expect(await ok(['create', '-f', file])).toBe('Successfully created 6 resource(s)\n');
    // tabwriter: min width 5, padding 3, trailing spaces, a blank line after the table.
    expect(await ok(['get', 'nodes', '-o', 'wide'])).toBe(
      'NAME    ASN       IPV4           IPV6   \nnode1   (64512)   10.0.0.11/24          \nnode2   64513     10.0.0.12/24          \n\n',
    );
    expect(await ok(['get', 'nodes'])).toBe('NAME    \nnode1   \nnode2   \n\n');
    expect(await ok(['get', 'bgpPeer'])).toBe('NAME      PEERIP     NODE       ASN     \nrr-mesh              has(rr)    0       \ntor1      10.0.0.1   (global)   64567   \n\n');
    expect(await ok(['get', 'bgpconfig'])).toBe('NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \ndefault   Info          false         64512      \n\n');
    expect(await ok(['get', 'ipp', '-o', 'wide'])).toBe(
      'NAME     CIDR           NAT    IPIPMODE   VXLANMODE   DISABLED   SELECTOR   \npool-a   10.60.0.0/16   true   Never      Never       false      all()      \n\n',
    );
    expect(await ok(['get', 'ippools'])).toBe('NAME     CIDR           SELECTOR   \npool-a   10.60.0.0/16   all()      \n\n');
  });

  it('prints one resource, or a <Kind>List, as YAML with sorted keys or JSON in Calico’s order; --export drops what is local', async () => {
    const yaml = await ok(['get', 'bgppeer', 'tor1', '-o', 'yaml']);
    expect(yaml).toMatch(/^apiVersion: projectcalico\.org\/v3\nkind: BGPPeer\nmetadata:\n  creationTimestamp: \S+Z\n  name: tor1\n  resourceVersion: "\d+"\n  uid: [0-9a-f-]{36}\nspec:\n  asNumber: 64567\n  peerIP: 10\.0\.0\.1\n$/);
    const json = JSON.parse(await ok(['get', 'node', 'node2', '-o', 'json']));
    expect(Object.keys(json)).toEqual(['kind', 'apiVersion', 'metadata', 'spec']);
    expect(json.spec).toEqual({ bgp: { asNumber: 64513, ipv4Address: '10.0.0.12/24' } });
    const list = await ok(['get', 'bgppeers', '-o', 'yaml']);
    expect(list).toMatch(/^apiVersion: projectcalico\.org\/v3\nitems:\n- apiVersion: projectcalico\.org\/v3\n  kind: BGPPeer\n[\s\S]*kind: BGPPeerList\nmetadata:\n  resourceVersion: "\d+"\n$/);
    expect(await ok(['get', 'bgppeer', 'tor1', '-o', 'yaml', '--export'])).toBe('apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor1\nspec:\n  asNumber: 64567\n  peerIP: 10.0.0.1\n');
  });

  it('apply creates or replaces; replace refuses a missing resource and a stale resourceVersion; uid and creation time are kept', async () => {
    const before = JSON.parse(await ok(['get', 'bgppeer', 'tor1', '-o', 'json']));
    const peer = (as: number, extra = '') => `apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor1\n${extra}spec:\n  peerIP: 10.0.0.1\n  asNumber: ${as}\n`;
    expect(await ok(['apply', '-f', '-'], peer(64568))).toBe("Successfully applied 1 'BGPPeer' resource(s)\n");
    const after = JSON.parse(await ok(['get', 'bgppeer', 'tor1', '-o', 'json']));
    expect(after.spec.asNumber).toBe(64568);
    expect(after.metadata.uid).toBe(before.metadata.uid);
    expect(after.metadata.creationTimestamp).toBe(before.metadata.creationTimestamp);
    const stale = await ctl(['replace', '-f', '-'], peer(64569, `  resourceVersion: "${before.metadata.resourceVersion}"\n`));
    expect(stale).toMatchObject({
      status: 1,
      stderr: `Failed to replace 'BGPPeer' resource: Resource version '${before.metadata.resourceVersion}' is out of date (latest: ${after.metadata.resourceVersion}). Update the resource YAML/JSON in order to make changes.\n`,
    });
    expect(await ok(['replace', '-f', '-'], peer(64570))).toBe("Successfully replaced 1 'BGPPeer' resource(s)\n");
    const missing = await ctl(['replace', '-f', '-'], peer(1).replace('tor1', 'nobody'));
    expect(missing).toMatchObject({ status: 1, stderr: "Failed to replace 'BGPPeer' resource: resource does not exist: BGPPeer(nobody) with error: <nil>\n" });
    expect(await ok(['apply', '-f', '-'], peer(1).replace('tor1', 'tor2'))).toBe("Successfully applied 1 'BGPPeer' resource(s)\n");
  });

  it('create stops at the first failure and says what it did', async () => {
    const twoPools = (second: string) =>
      `apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool-b}\nspec: {cidr: 10.61.0.0/16}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: ${second}}\nspec: {cidr: 10.62.0.0/16}\n`;
    const partial = await ctl(['create', '-f', '-'], twoPools('pool-a'));
    expect(partial).toEqual({ status: 1, stdout: "Partial success: created the first 1 out of 2 'IPPool' resources:\n", stderr: 'Hit error: resource already exists: IPPool(pool-a)\n' });
    expect(await ctl(['create', '-f', '-'], twoPools('pool-a'))).toMatchObject({ status: 1, stderr: "Failed to create any 'IPPool' resources: resource already exists: IPPool(pool-b)\n" });
    expect(await ok(['create', '--skip-exists', '-f', '-'], twoPools('pool-c'))).toBe("Successfully created 2 'IPPool' resource(s)\n");
    expect(JSON.parse(await ok(['get', 'ippool', 'pool-b', '-o', 'json'])).spec).toEqual({ cidr: '10.61.0.0/16', vxlanMode: 'Never', ipipMode: 'Never', natOutgoing: false, disabled: false, blockSize: 26, nodeSelector: 'all()' });
  });

  it('delete by name or from a file; a missing one is an error unless skipped', async () => {
    expect(await ok(['delete', 'bgppeer', 'tor2'])).toBe("Successfully deleted 1 'BGPPeer' resource(s)\n");
    expect(await ctl(['delete', 'bgppeer', 'tor2'])).toMatchObject({ status: 1, stderr: "Failed to delete 'BGPPeer' resource: resource does not exist: BGPPeer(tor2) with error: <nil>\n" });
    expect(await ok(['delete', 'bgppeer', 'tor2', '--skip-not-exists'])).toBe("Successfully deleted 1 'BGPPeer' resource(s)\n");
    expect(await ok(['delete', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool-c}\nspec: {cidr: 10.62.0.0/16}\n')).toBe("Successfully deleted 1 'IPPool' resource(s)\n");
    expect(await ctl(['get', 'ippool', 'pool-c'])).toEqual({ status: 1, stdout: '', stderr: 'resource does not exist: IPPool(pool-c) with error: <nil>\n' });
  });
});

describe('patch and label', () => {
  it('a JSON merge patch changes fields and null removes one', async () => {
    expect(await ok(['patch', 'node', 'node1', '-p', '{"spec":{"bgp":{"asNumber":64600}}}'])).toBe("Successfully patched 1 'Node' resource\n");
    expect(JSON.parse(await ok(['get', 'node', 'node1', '-o', 'json'])).spec.bgp).toEqual({ asNumber: 64600, ipv4Address: '10.0.0.11/24' });
    await ok(['patch', 'nodes', 'node1', '--patch', '{"spec":{"bgp":{"asNumber":null}}}']);
    expect(JSON.parse(await ok(['get', 'node', 'node1', '-o', 'json'])).spec.bgp).toEqual({ ipv4Address: '10.0.0.11/24' });
  });

  it('labels: set, refused without --overwrite, updated, removed', async () => {
    expect(await ok(['label', 'nodes', 'node1', 'rack=a'])).toBe('Successfully set label rack on nodes node1\n');
    expect(await ctl(['label', 'nodes', 'node1', 'rack=b'])).toMatchObject({
      status: 1,
      stderr: "failed to update label of node node1, key rack is already present. please use '--overwrite' to set a new value.\n",
    });
    expect(await ok(['label', 'nodes', 'node1', 'rack=b', '--overwrite'])).toBe('Successfully updated label rack on nodes node1\n');
    expect(JSON.parse(await ok(['get', 'node', 'node1', '-o', 'json'])).metadata.labels).toEqual({ rack: 'b' });
    expect(await ok(['label', 'nodes', 'node1', 'rack', '--remove'])).toBe('Successfully removed label rack from nodes node1\n');
    expect(await ctl(['label', 'nodes', 'node1', 'rack', '--remove'])).toMatchObject({ status: 1, stderr: 'can not remove label of node node1, key rack does not exist\n' });
    expect(await ctl(['label', 'nodes', 'node9', 'rack=a'])).toMatchObject({ status: 1, stderr: 'nodes node9 not found\n' });
    expect(await ok(['label', 'ippool', 'pool-a', 'zone=east'])).toBe('Successfully set label zone on ippool pool-a\n');
  });
});

describe('bad input: a clear error naming what is wrong, and nothing written', () => {
  const peer = (spec: string) => `apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: bad\nspec:\n${spec}`;
  const cases: [string, string[], string | undefined, string | RegExp][] = [
    ['a peer IP that is no address', ['create', '-f', '-'], peer('  peerIP: banana\n  asNumber: 1\n'), "Failed to create 'BGPPeer' resource: error with field PeerIP = 'banana' (expected an IP address, or IP:port ([IPv6]:port))\n"],
    ['an AS above 4294967295', ['create', '-f', '-'], peer('  peerIP: 10.0.0.9\n  asNumber: 4294967296\n'), "Failed to create 'BGPPeer' resource: error with field ASNumber = '4294967296' (an AS number is from 1 to 4294967295, or asdot such as 1.10)\n"],
    ['an AS of 0', ['apply', '-f', '-'], peer('  peerIP: 10.0.0.9\n  asNumber: 0\n'), /error with field ASNumber = '0'/],
    ['YAML that does not parse', ['create', '-f', '-'], 'kind: BGPPeer\nmetadata:\n  name: [x\n', /^Failed to execute command: error parsing document: yaml: line \d+: /],
    ['an unknown kind in a file', ['create', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: Banana\nmetadata: {name: x}\n', 'Failed to execute command: Unknown resource type (Banana) and/or version (projectcalico.org/v3)\n'],
    ['an unknown field', ['create', '-f', '-'], peer('  peerIP: 10.0.0.9\n  asNumber: 1\n  peerIp2: 1\n'), 'Failed to execute command: error parsing document: field in document is not recognized or is in the wrong location: peerIp2\n'],
    ['a value of the wrong type', ['create', '-f', '-'], peer('  peerIP: 10.0.0.9\n  asNumber: 1\n  keepOriginalNextHop: maybe\n'), "Failed to execute command: error parsing document: cannot parse string 'maybe' into field BGPPeerSpec.keepOriginalNextHop of type bool\n"],
    ['peerIP with peerSelector', ['create', '-f', '-'], peer('  peerIP: 10.0.0.9\n  peerSelector: has(rr)\n'), /error with field PeerIP = '10\.0\.0\.9' \(PeerIP field must be empty when PeerSelector is specified\)/],
    ['an unknown kind on the command line', ['get', 'banana'], undefined, "Failed to get resources: resource type 'banana' is not supported\n"],
    ['a file that does not exist', ['create', '-f', '/nonexistent/x.yaml'], undefined, 'Failed to execute command: open /nonexistent/x.yaml: no such file or directory\n'],
    ['an empty file', ['apply', '-f', '-'], '\n', 'Failed to execute command: No resources specified in file (standard input)\n'],
    ['a patch that is not JSON', ['patch', 'node', 'node1', '-p', '{spec'], undefined, /^Hit error: performing merge patch: invalid JSON document/],
    ['a patch adding an unknown field', ['patch', 'node', 'node1', '-p', '{"spec":{"http":1}}'], undefined, 'Hit error: error parsing document: field in document is not recognized or is in the wrong location: http\n'],
    ['a patch making the node invalid', ['patch', 'node', 'node1', '-p', '{"spec":{"bgp":{"ipv4Address":"10.0.0.11"}}}'], undefined, /^Hit error: error with field IPv4Address = '10\.0\.0\.11' \(expected an IPv4 address with its prefix length/],
    ['a pool that overlaps another', ['create', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: over}\nspec: {cidr: 10.60.1.0/24}\n', /overlaps IP pool pool-a \(10\.60\.0\.0\/16\)/],
    ['a pool in VXLAN and IPIP mode', ['create', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: both}\nspec: {cidr: 10.70.0.0/16, vxlanMode: Always, ipipMode: Always}\n', /IPIPMode and VXLANMode cannot both be enabled on the same IP pool/],
    ['a pool whose CIDR changes', ['apply', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool-a}\nspec: {cidr: 10.61.0.0/16}\n', /IPPool CIDR cannot be modified/],
    ['a second resource that is bad (nothing of the first written)', ['create', '-f', '-'], `${peer('  peerIP: 10.0.0.8\n  asNumber: 1\n').replace('name: bad', 'name: good')}---\n${peer('  peerIP: 10.0.0.9\n  asNumber: 1\n  what: 1\n')}`, /field in document is not recognized or is in the wrong location: what/],
    ['a seed-era peer that is no address', ['bgp', 'peer', 'add', 'banana', 'as', '64567'], undefined, 'Error: invalid IP address "banana"\n'],
    ['a seed-era AS out of range', ['bgp', 'peer', 'add', '10.0.0.9', 'as', '4294967296'], undefined, /^Error: invalid AS number "4294967296": expected a number from 1 to 4294967295/],
    ['a seed-era default AS that is no number', ['bgp', 'default-node-as', 'lots'], undefined, /^Error: invalid AS number "lots"/],
    ['a seed-era mesh word', ['bgp', 'node-mesh', 'maybe'], undefined, 'Error: node-mesh takes on or off, not "maybe"\n'],
  ];
  for (const [what, args, input, expected] of cases) {
    it(what, async () => {
      const before = await datastore();
      const result = await ctl(args, input);
      expect(result.status).toBe(1);
      if (typeof expected === 'string') expect(result.stderr).toBe(expected);
      else expect(result.stderr).toMatch(expected);
      expect(await datastore()).toBe(before);
    });
  }
});

describe('seed-era BGP words, stored as Calico v3 resources', () => {
  it('bgp peer add/show/remove, node-mesh, default-node-as; node bgp peer for this node only', async () => {
    await ok(['delete', 'bgpconfiguration', 'default']);
    expect(await ok(['bgp', 'node-mesh'])).toBe('on\n');
    expect(await ok(['bgp', 'default-node-as'])).toBe('64512\n');
    expect(await ok(['bgp', 'peer', 'add', '10.0.0.5', 'as', '64567'])).toBe('');
    expect(await ok(['bgp', 'peer', 'add', 'fd00::5', 'as', '1.10'])).toBe('');
    expect(await ok(['bgp', 'peer', 'show', '--ipv6'])).toBe(
      '+----------------------+--------+\n| Global IPv6 BGP Peer | AS Num |\n+----------------------+--------+\n| fd00::5              | 65546  |\n+----------------------+--------+\n\n',
    );
    const stored = JSON.parse(await ok(['get', 'bgppeer', 'bgppeer-global-10-0-0-5', '-o', 'json']));
    expect(stored.spec).toEqual({ peerIP: '10.0.0.5', asNumber: 64567 });
    await ok(['bgp', 'node-mesh', 'off']);
    await ok(['bgp', 'default-node-as', '64513']);
    expect(JSON.parse(await ok(['get', 'bgpconfig', 'default', '-o', 'json'])).spec).toEqual({ nodeToNodeMeshEnabled: false, asNumber: 64513 });
    expect(await ok(['bgp', 'node-mesh'])).toBe('off\n');
    expect(await ok(['bgp', 'default-node-as'])).toBe('64513\n');
    await ok(['node', 'bgp', 'peer', 'add', '10.0.0.6', 'as', '64567']);
    expect(JSON.parse(await ok(['get', 'bgppeer', 'bgppeer-node-node1-10-0-0-6', '-o', 'json'])).spec).toEqual({ node: 'node1', peerIP: '10.0.0.6', asNumber: 64567 });
    expect(await ok(['node', 'bgp', 'peer', 'show', '--ipv4'])).toMatch(/\| Node specific IPv4 BGP Peer \| AS Num \|[\s\S]*\| 10\.0\.0\.6 +\| 64567  \|/);
    expect(await ctl(['node', 'bgp', 'peer', 'remove', '10.0.0.5'])).toMatchObject({ status: 1, stderr: '10.0.0.5 is not a configured peer for this node.\n' });
    expect(await ok(['bgp', 'peer', 'remove', '10.0.0.5'])).toBe('BGP peer removed from global configuration\n');
    expect(await ok(['bgp', 'peer', 'show', '--ipv4'])).toBe('+----------------------+--------+\n| Global IPv4 BGP Peer | AS Num |\n+----------------------+--------+\n| 10.0.0.1             | 64570  |\n+----------------------+--------+\n\n');
  });
});

describe('workload endpoints and node status', () => {
  it('lists workload endpoints in the libnetwork namespace; refuses to write them', async () => {
    const wep = {
      kind: 'WorkloadEndpoint',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name: 'node1-libnetwork-libnetwork-abc', namespace: 'libnetwork', labels: {} },
      spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node: 'node1', endpoint: 'abc', interfaceName: 'caliabc', ipNetworks: ['10.60.0.1/32'], mac: 'ee:ee:ee:ee:ee:ee', profiles: ['web'] },
    };
    await suite.ctx.etcd.put('/calico/resources/v3/projectcalico.org/workloadendpoints/libnetwork/node1-libnetwork-libnetwork-abc', JSON.stringify(wep));
    expect(await ok(['get', 'workloadendpoints'])).toBe('WORKLOAD     NODE    NETWORKS       INTERFACE   \nlibnetwork   node1   10.60.0.1/32   caliabc     \n\n');
    expect(await ok(['get', 'weps', '-A', '-o', 'wide'])).toMatch(/^NAMESPACE    NAME +WORKLOAD +NODE +NETWORKS +INTERFACE +PROFILES +NATS +\nlibnetwork   node1-libnetwork-libnetwork-abc +libnetwork +node1 +10\.60\.0\.1\/32 +caliabc +web +\n\n$/);
    expect(await ctl(['create', '-f', '-'], JSON.stringify(wep))).toMatchObject({ status: 1, stderr: expect.stringContaining('operation create is not supported on WorkloadEndpoint') });
    expect(await ctl(['get', 'ippools', '-n', 'x'])).toMatchObject({ status: 1, stderr: 'IPPool is not namespaced\n' });
  });

  it('node status with no daemon running on this host', async () => {
    expect(await ctl(['node', 'status'])).toEqual({ status: 1, stdout: '', stderr: 'Calico process is not running.\n' });
  });
});
