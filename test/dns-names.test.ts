import { describe, expect, it } from 'vitest';
import { addressOfReverseName, NameIndex } from '../src/calc/dns-names.js';
import { dnsRedirectRules } from '../src/calc/host-rules.js';
import { desiredDataplane } from '../src/calc/policy.js';
import { DNS_NAMES_ANNOTATION, NETWORK_ANNOTATION, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import { namedPorts, withContainer } from '../src/services/network/docker-watcher.js';
import { gatewayMember, Sandboxes } from '../src/services/network/sandboxes.js';
import { containerSideServers, NameService } from '../src/services/dns/name-service.js';
import { DatastoreSyncer } from '../src/services/sync/datastore-syncer.js';
import { MemorySyncSource } from './helpers/memory-sync-source.js';

function endpoint(id: string, network: string, names: string[], addresses: string[], node = 'h1'): WorkloadEndpoint {
  return {
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: {
      name: `${node}-libnetwork-libnetwork-${id}`,
      namespace: 'libnetwork',
      labels: {},
      annotations: { [NETWORK_ANNOTATION]: network, ...(names.length ? { [DNS_NAMES_ANNOTATION]: JSON.stringify(names) } : {}) },
    },
    spec: { orchestrator: 'libnetwork', workload: names[0] ?? 'libnetwork', node, endpoint: id, interfaceName: `cali${id}`, ipNetworks: addresses, mac: 'ee:ee:ee:ee:ee:ee', profiles: [network] },
  };
}

describe('container names across hosts (NameIndex)', () => {
  const index = new NameIndex([
    endpoint('a', 'net1', ['bbox2', 'web'], ['10.0.0.2/32', 'fd00::2/128']),
    endpoint('b', 'net1', ['other', 'web'], ['10.0.0.3/32'], 'h2'),
    endpoint('c', 'net2', ['bbox2'], ['10.1.0.9/32'], 'h2'),
    endpoint('d', 'my.net', ['x'], ['10.2.0.1/32']),
    endpoint('e', 'net1', [], ['10.0.0.99/32']),
  ]);

  it('answers a name, an alias shared by several containers, and NAME.NETWORK, case aside', () => {
    expect(index.resolve('bbox2', ['net1'])).toEqual({ ipv4: ['10.0.0.2'], ipv6: ['fd00::2'] });
    expect(index.resolve('BBOX2.', ['net1'])?.ipv4).toEqual(['10.0.0.2']);
    expect(index.resolve('web', ['net1'])?.ipv4.sort()).toEqual(['10.0.0.2', '10.0.0.3']);
    expect(index.resolve('bbox2.net2', ['net1', 'net2'])?.ipv4).toEqual(['10.1.0.9']);
    expect(index.resolve('bbox2.net1', ['net1', 'net2'])?.ipv4).toEqual(['10.0.0.2']);
    // A network name with a dot in it: `a` in network `b.c`.
    expect(index.resolve('x.my.net', ['my.net'])?.ipv4).toEqual(['10.2.0.1']);
  });

  it('answers only names of the networks the asking container is on', () => {
    expect(index.resolve('other', ['net2'])).toBeUndefined();
    expect(index.resolve('bbox2.net2', ['net1'])).toBeUndefined();
    expect(index.resolve('bbox2', ['net2'])?.ipv4).toEqual(['10.1.0.9']);
    expect(index.resolve('example.com', ['net1'])).toBeUndefined();
  });

  it('reverse lookups give name.network to containers on that network only', () => {
    expect(addressOfReverseName('2.0.0.10.in-addr.arpa.')).toBe('10.0.0.2');
    expect(addressOfReverseName('example.com')).toBeUndefined();
    expect(index.reverse('10.0.0.2', ['net1'])).toBe('bbox2.net1');
    expect(index.reverse('10.0.0.2', ['net2'])).toBeUndefined();
    expect(index.reverse('10.0.0.99', ['net1'])).toBeUndefined();
  });
});

describe('the endpoints of a container (Sandboxes)', () => {
  it('gives each endpoint a gateway of its own, the lowest free, and frees it when it leaves', () => {
    const s = new Sandboxes();
    expect(s.freeGateway('sb')).toBe('169.254.1.1');
    s.join('sb', { endpointId: 'e1', gateway: '169.254.1.1', network: 'net1', dualStack: false });
    expect(s.freeGateway('sb')).toBe('169.254.1.2');
    s.join('sb', { endpointId: 'e2', gateway: '169.254.1.2', network: 'net2', dualStack: false });
    expect(s.freeGateway('other')).toBe('169.254.1.1');
    s.leave('e1');
    expect(s.freeGateway('sb')).toBe('169.254.1.1');
  });

  it("routes a container's addresses through the endpoint Docker sends its default route through", () => {
    const s = new Sandboxes();
    expect(s.join('sb', { endpointId: 'z', gateway: '169.254.1.1', network: 'zeta', dualStack: false }).via.endpointId).toBe('z');
    // `alpha` sorts first: Docker moves the default route to it, and the addresses follow.
    const joined = s.join('sb', { endpointId: 'a', gateway: '169.254.1.2', network: 'alpha', dualStack: false });
    expect(joined.via.endpointId).toBe('a');
    expect(joined.members.map((m) => m.endpointId)).toEqual(['z', 'a']);
    // A non-carrier leaving moves nothing; the carrier leaving moves the rest to the next one.
    s.join('sb', { endpointId: 'm', gateway: '169.254.1.3', network: 'mid', dualStack: false });
    expect(s.leave('z')).toBeUndefined();
    expect(s.leave('a')).toMatchObject({ via: { endpointId: 'm' }, members: [{ endpointId: 'm' }] });
    expect(s.leave('m')).toBeUndefined();
    // Dual-stack endpoints come first, whatever their names.
    expect(gatewayMember([{ endpointId: '1', gateway: '', network: 'a', dualStack: false }, { endpointId: '2', gateway: '', network: 'b', dualStack: true }])?.endpointId).toBe('2');
  });
});

describe('what Docker tells of a container, on its endpoint', () => {
  const container = { id: 'c0ffee', name: 'bbox1', labels: { 'org.projectcalico.label.role': 'db', other: 'x' }, sandboxKey: '/var/run/docker/netns/abc', networks: {} };
  const network = { networkId: 'n1', endpointId: 'a', aliases: ['db', 'c0ffee', 'bbox1'], gateway: '169.254.1.2' };

  it('records name, ID, DNS names, sandbox and gateway, and Calico labels only when asked', () => {
    const updated = withContainer(endpoint('a', 'net1', [], ['10.0.0.2/32']), container, network, true);
    expect(updated.spec.workload).toBe('bbox1');
    expect(updated.spec.containerID).toBe('c0ffee');
    expect(JSON.parse(updated.metadata.annotations![DNS_NAMES_ANNOTATION]!)).toEqual(['bbox1', 'db', 'c0ffee']);
    expect(updated.metadata.annotations).toMatchObject({ 'libnetwork.projectcalico.org/sandbox': '/var/run/docker/netns/abc', 'libnetwork.projectcalico.org/gateway': '169.254.1.2' });
    expect(updated.metadata.labels).toEqual({ role: 'db' });
    expect(withContainer(endpoint('a', 'net1', [], []), container, network, false).metadata.labels).toEqual({});
  });
});

describe('which DNS servers are intercepted', () => {
  it('takes the first three nameservers, IPv4 and not loopback (Docker asks those from the host itself)', () => {
    const conf = 'search example\nnameserver 10.0.0.53\n# nameserver 10.9.9.9\nnameserver 127.0.0.53\nnameserver fd00::53\nnameserver 10.0.0.54\n';
    expect(containerSideServers(conf)).toEqual(['10.0.0.53']);
    expect(containerSideServers('nameserver 192.0.2.1\nnameserver 192.0.2.2')).toEqual(['192.0.2.1', '192.0.2.2']);
  });

  it('DNATs queries from workloads to each server to its port, UDP and TCP, and lets them in after the outbound rules', () => {
    expect(dnsRedirectRules([{ upstream: '10.0.0.53', port: 8553 }], 'cali+')).toEqual([
      '-i cali+ -d 10.0.0.53/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.1:8553',
      '-i cali+ -d 10.0.0.53/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.1:8553',
    ]);
    const desired = desiredDataplane({ node: 'h1', endpoints: [], profiles: [], pools: [], dnsRedirects: [{ upstream: '10.0.0.53', port: 8553 }] });
    expect(desired.tables[4].nat.get('cali-PREROUTING')![0]).toContain('--to-destination 127.0.0.1:8553');
    expect(desired.tables[4].filter.get('cali-wl-to-host')).toEqual(['-j cali-from-wl-dispatch', '-m conntrack --ctstate DNAT --ctorigdstport 53 -d 127.0.0.1/32 -j ACCEPT', '-j RETURN']);
    expect(desired.tables[6].nat.get('cali-PREROUTING')!.join()).not.toContain('DNAT');
    const without = desiredDataplane({ node: 'h1', endpoints: [], profiles: [], pools: [] });
    expect(without.tables[4].filter.get('cali-wl-to-host')).toEqual(['-j cali-from-wl-dispatch', '-j RETURN']);
  });
});

describe('the name index follows changes without a rebuild', () => {
  it('adds, renames, moves and removes names as endpoints change', () => {
    const a = endpoint('a', 'net1', ['bbox2', 'web'], ['10.0.0.2/32']);
    const b = endpoint('b', 'net1', ['web'], ['10.0.0.3/32'], 'h2');
    const index = new NameIndex([a]);
    index.update(undefined, b);
    expect(index.resolve('web', ['net1'])?.ipv4.sort()).toEqual(['10.0.0.2', '10.0.0.3']);
    const renamed = endpoint('a', 'net1', ['bbox9'], ['10.0.0.2/32']);
    index.update(a, renamed);
    expect(index.resolve('bbox2', ['net1'])).toBeUndefined();
    expect(index.resolve('bbox9', ['net1'])?.ipv4).toEqual(['10.0.0.2']);
    expect(index.resolve('web', ['net1'])?.ipv4).toEqual(['10.0.0.3']);
    expect(index.reverse('10.0.0.2', ['net1'])).toBe('bbox9.net1');
    index.update(b, undefined);
    expect(index.resolve('web', ['net1'])).toBeUndefined();
    expect(index.reverse('10.0.0.3', ['net1'])).toBeUndefined();
  });
});

describe("a container's named ports", () => {
  it('come from org.projectcalico.port.<name>=<port>[/<protocol>] labels; malformed ones are left out', () => {
    expect(namedPorts({ 'org.projectcalico.port.pg': '5432/tcp', 'org.projectcalico.port.dns': '53/UDP', 'org.projectcalico.port.web': '80', other: '1' })).toEqual([
      { name: 'dns', protocol: 'UDP', port: 53 },
      { name: 'pg', protocol: 'TCP', port: 5432 },
      { name: 'web', protocol: 'TCP', port: 80 },
    ]);
    expect(namedPorts({ 'org.projectcalico.port.Bad': '1', 'org.projectcalico.port.123': '1', 'org.projectcalico.port.x': '70000', 'org.projectcalico.port.y': 'http', 'org.projectcalico.port.z': '80/icmp' })).toEqual([]);
  });
});

describe('the name service (with an in-memory store)', () => {
  it("intercepts every container's own servers (the first three of each), and reads resolv.conf on its timer, not on each change", async () => {
    const withServers = (id: string, node: string, servers: string[]): WorkloadEndpoint => {
      const e = endpoint(id, 'net1', [id], [`10.0.0.${id.charCodeAt(0)}/32`], node);
      e.metadata.annotations = { ...e.metadata.annotations, 'libnetwork.projectcalico.org/dns-servers': servers.join(',') };
      return e;
    };
    const source = new MemorySyncSource([withServers('a', 'h1', ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.9'])]);
    const sync = new DatastoreSyncer(source);
    let reads = 0;
    const seen: string[][] = [];
    const service = new NameService(sync, { node: 'h1', basePort: 9000, readResolvConf: () => (reads++, 'nameserver 10.0.0.53\n'), onListeners: (l) => seen.push(l.map((x) => x.upstream)) });
    await service.start();
    expect(seen.at(-1)).toEqual(['10.0.0.53', '192.0.2.1', '192.0.2.2', '192.0.2.3']);
    source.put(withServers('b', 'h1', ['192.0.2.4']));
    source.put(withServers('c', 'h2', ['192.0.2.5']));
    expect(seen.at(-1)).toEqual(['10.0.0.53', '192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']);
    expect(reads).toBe(1);
    await service.stop();
    await sync.stop();
  });
});
