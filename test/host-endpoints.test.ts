import { describe, expect, it } from 'vitest';
import { chainName, desiredDataplane, PolicyInput, policyChainName, selectorSetName } from '../src/calc/policy.js';
import { failsafeList, resolveHostEndpoints, WILDCARD_SUFFIX } from '../src/calc/host-endpoints.js';
import type { GlobalNetworkPolicy, HostEndpoint } from '../src/domain/policy-model.js';
import { defaultProfile, Profile, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import type { DesiredDataplane } from '../src/calc/policy.js';
import { DatastoreSyncer } from '../src/services/sync/datastore-syncer.js';
import { MemorySyncSource } from './helpers/memory-sync-source.js';
import type { PolicyDataplane } from '../src/ports/policy-dataplane.js';
import { PolicyAgent } from '../src/services/policy/policy-agent.js';
import { until } from './helpers/cluster.js';
import { endpointRules } from './helpers/endpoint-chains.js';

const hep = (name: string, spec: Partial<HostEndpoint['spec']>, labels: Record<string, string> = {}): HostEndpoint => ({
  kind: 'HostEndpoint',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name, labels },
  spec: { node: 'h1', ...spec },
});
const gnp = (name: string, spec: GlobalNetworkPolicy['spec']): GlobalNetworkPolicy => ({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec });
const workload: WorkloadEndpoint = {
  kind: 'WorkloadEndpoint',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name: 'h1-libnetwork-libnetwork-aaaa', namespace: 'libnetwork', labels: { role: 'gateway' } },
  spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node: 'h1', endpoint: 'aaaa', interfaceName: 'caliaaaaaaaaaaa', ipNetworks: ['10.0.0.1/32'], mac: '', profiles: ['net-web'] },
};
const base: PolicyInput = { node: 'h1', profiles: [defaultProfile('net-web', 'web')], pools: [], endpoints: [workload] };
const interfaces = [
  { name: 'lo', addresses: ['127.0.0.1'] },
  { name: 'eth0', addresses: ['192.0.2.1', 'fd00::1'] },
  { name: 'eth1', addresses: ['198.51.100.1'] },
  { name: 'caliaaaaaaaaaaa', addresses: [] },
];
const ACCEPT = '-m mark --mark 0x1000000/0x1000000';
const allowWeb = gnp('allow-web', { selector: "role == 'gateway'", ingress: [{ action: 'Allow', protocol: 'tcp', destination: { ports: [80] } }] });

describe('host endpoints: resolution', () => {
  it('an explicit name wins, then expectedIPs find the interface, the first name of several; only this node; `*` is the default', () => {
    const resolved = resolveHostEndpoints(
      [
        hep('b-eth0', { interfaceName: 'eth0' }),
        hep('a-by-ip', { expectedIPs: ['192.0.2.1', '198.51.100.1'] }),
        hep('a-eth0', { interfaceName: 'eth0' }),
        hep('other-node', { node: 'h2', interfaceName: 'eth1' }),
        hep('z-all', { interfaceName: '*' }),
        hep('y-all', { interfaceName: '*' }),
        hep('bad', { interfaceName: 'eth0 -j ACCEPT' }),
        hep('lo-ip', { expectedIPs: ['10.9.9.9'] }),
      ],
      'h1',
      interfaces,
      'cali',
    );
    expect(Object.fromEntries([...resolved.byInterface].map(([i, e]) => [i, e.metadata.name]))).toEqual({ eth0: 'a-eth0', eth1: 'a-by-ip' });
    expect(resolved.wildcard?.metadata.name).toBe('y-all');
  });

  it('failsafe lists: Felix defaults when none, the configured list else, nonsense left out', () => {
    expect(failsafeList(undefined, 'in').map((r) => `${r.protocol}:${r.port}`)).toEqual(['tcp:22', 'udp:68', 'tcp:179', 'tcp:2379', 'tcp:2380', 'tcp:5473', 'tcp:6443', 'tcp:6666', 'tcp:6667']);
    expect(failsafeList([], 'in')).toEqual([]);
    expect(failsafeList([{ port: 2222 }, { protocol: 'UDP', port: 53, net: '10.0.0.0/8' }, { protocol: 'icmp', port: 1 }, { port: 70000 }, { port: 1, net: 'x' }], 'out')).toEqual([
      { protocol: 'tcp', port: 2222 },
      { protocol: 'udp', port: 53, net: '10.0.0.0/8' },
    ]);
  });
});

describe('host endpoints: filter chains', () => {
  it('without policy or profile: failsafes, then default deny, both ways; only traffic to and from the host', () => {
    const desired = desiredDataplane({ ...base, hostEndpoints: [hep('gw', { interfaceName: 'eth0' }, { role: 'gateway' })] });
    const filter = desired.tables[4].filter;
    expect(filter.get('cali-fh-eth0')).toEqual([
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-m conntrack --ctstate INVALID -j DROP',
      '-j cali-failsafe-in',
      '-j MARK --set-mark 0x0/0x1000000',
      '-j DROP',
    ]);
    expect(filter.get('cali-th-eth0')).toContain('-j cali-failsafe-out');
    expect(filter.get('cali-th-eth0')!.at(-1)).toBe('-j DROP');
    expect(filter.get('cali-from-host-endpoint')).toEqual(['-i eth0 -g cali-fh-eth0']);
    expect(filter.get('cali-to-host-endpoint')).toEqual(['-o eth0 -g cali-th-eth0']);
    const input = filter.get('cali-INPUT')!;
    // The failsafes come before the host endpoint's chain; workloads' packets never reach it.
    expect(input.indexOf('! -i cali+ -j cali-failsafe-in')).toBeLessThan(input.indexOf('! -i cali+ -j cali-from-host-endpoint'));
    expect(input.at(-1)).toBe(`! -i cali+ ${ACCEPT} -j ACCEPT`);
    expect(filter.get('cali-OUTPUT')).toContain('-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint');
    // Felix's default failsafes, and BGP always.
    const failsafeIn = filter.get('cali-failsafe-in')!;
    for (const rule of ['-p tcp -m tcp --dport 22 -j ACCEPT', '-p tcp -m tcp --dport 2379 -j ACCEPT', '-p tcp --dport 179 -j ACCEPT']) expect(failsafeIn).toContain(rule);
    expect(filter.get('cali-failsafe-out')).toContain('-p udp -m udp --dport 53 -j ACCEPT');
    // IPv6: neighbour discovery passes before the host endpoint's chains.
    const input6 = desired.tables[6].filter.get('cali-INPUT')!;
    expect(input6.indexOf('! -i cali+ -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT')).toBeLessThan(input6.indexOf('! -i cali+ -j cali-from-host-endpoint'));
    expect(desired.tables[6].filter.get('cali-fh-eth0')!.at(-1)).toBe('-j DROP');
    // Workloads are not affected, nor forwarded traffic.
    expect(filter.get('cali-FORWARD')).toEqual(['-i cali+ -j cali-from-wl-dispatch', '-o cali+ -j cali-to-wl-dispatch', '-i cali+ -j ACCEPT', '-o cali+ -j ACCEPT']);
    expect(endpointRules(filter, 'tw', '10.0.0.1')).toEqual(endpointRules(desiredDataplane(base).tables[4].filter, 'tw', '10.0.0.1'));
    // No untracked or pre-DNAT policy: raw and mangle have nothing to do.
    expect(desired.tables[4].raw).toEqual(new Map([['cali-PREROUTING', []], ['cali-OUTPUT', []]]));
    expect(desired.tables[4].mangle).toEqual(new Map([['cali-PREROUTING', []]]));
  });

  it('policies selecting the endpoint by label run in their tiers, then its profiles; a policy for workloads only is not there', () => {
    const profile: Profile = { ...defaultProfile('hosts', 'hosts'), spec: { ingress: [{ action: 'Allow', protocol: 'udp' }], egress: [{ action: 'Allow' }] } };
    const desired = desiredDataplane({
      ...base,
      profiles: [...base.profiles, profile],
      policies: [allowWeb, gnp('db-only', { selector: "role == 'db'", ingress: [{ action: 'Allow' }] })],
      hostEndpoints: [hep('gw', { interfaceName: 'eth0', profiles: ['hosts'] }, { role: 'gateway' })],
    });
    const filter = desired.tables[4].filter;
    const fh = filter.get('cali-fh-eth0')!;
    const policy = policyChainName('tw', 'default', 'allow-web');
    expect(fh.slice(4)).toEqual([
      '-j MARK --set-mark 0x0/0x2000000',
      `-m mark --mark 0x0/0x2000000 -j ${policy}`,
      `${ACCEPT} -j RETURN`,
      '-m mark --mark 0x0/0x2000000 -j DROP',
      '-j cali-pri-hosts',
      `${ACCEPT} -j RETURN`,
      '-j DROP',
    ]);
    expect(filter.get(policy)).toEqual(['-p tcp -m multiport --dports 80 -j MARK --set-mark 0x1000000/0x1000000', `${ACCEPT} -j RETURN`]);
    expect(filter.get('cali-th-eth0')).toContain('-j cali-pro-hosts');
    expect(filter.get('cali-pri-hosts')).toBeDefined();
    expect(fh.join('\n')).not.toContain(policyChainName('tw', 'default', 'db-only'));
  });

  it('`*` polices every interface but loopback and workloads; expectedIPs find theirs and are members of rule selector sets', () => {
    const desired = desiredDataplane({
      ...base,
      interfaces,
      policies: [gnp('from-gateways', { selector: 'has(role)', ingress: [{ action: 'Allow', source: { selector: "role == 'gateway'" } }] })],
      hostEndpoints: [hep('all', { interfaceName: '*' }, { role: 'gateway' }), hep('by-ip', { expectedIPs: ['198.51.100.1'] }, { role: 'gateway' }), hep('far', { node: 'h2', expectedIPs: ['203.0.113.9'] }, { role: 'gateway' })],
    });
    const filter = desired.tables[4].filter;
    const wildcard = chainName('cali-fh-', WILDCARD_SUFFIX);
    expect(filter.get('cali-from-host-endpoint')).toEqual(['-i eth1 -g cali-fh-eth1', '-i lo -j RETURN', '-i cali+ -j RETURN', `-g ${wildcard}`]);
    expect(filter.get(wildcard)!.at(-1)).toBe('-j DROP');
    expect(desired.ipsets.get(selectorSetName(4, "role == 'gateway'"))?.members).toEqual(['10.0.0.1', '198.51.100.1', '203.0.113.9']);
  });

  it('FelixConfiguration: failsafe lists replace the defaults (BGP stays), with nets; defaultEndpointToHostAction', () => {
    const desired = desiredDataplane({
      ...base,
      hostEndpoints: [hep('gw', { interfaceName: 'eth0' })],
      failsafeInbound: [{ protocol: 'tcp', port: 2222, net: '10.1.0.0/16' }],
      failsafeOutbound: [],
      defaultEndpointToHostAction: 'Drop',
    });
    const filter = desired.tables[4].filter;
    expect(filter.get('cali-failsafe-in')).toEqual(['-p tcp --dport 179 -j ACCEPT', '-p tcp --sport 179 -m conntrack --ctstate ESTABLISHED -j ACCEPT', '-p tcp -m tcp --dport 2222 -s 10.1.0.0/16 -j ACCEPT']);
    expect(filter.get('cali-failsafe-out')).toEqual(['-p tcp --dport 179 -j ACCEPT', '-p tcp --sport 179 -m conntrack --ctstate ESTABLISHED -j ACCEPT']);
    // An IPv4 net's failsafe is not in the IPv6 table.
    expect(desired.tables[6].filter.get('cali-failsafe-in')).not.toContain('-p tcp -m tcp --dport 2222 -s 10.1.0.0/16 -j ACCEPT');
    expect(filter.get('cali-wl-to-host')).toEqual(['-j cali-from-wl-dispatch', '-j DROP']);
    expect(desiredDataplane({ ...base, defaultEndpointToHostAction: 'Accept' }).tables[4].filter.get('cali-wl-to-host')).toEqual(['-j cali-from-wl-dispatch', '-j ACCEPT']);
    expect(desiredDataplane(base).tables[4].filter.get('cali-wl-to-host')).toEqual(['-j cali-from-wl-dispatch', '-j RETURN']);
    // Without host endpoints the failsafes stay BGP only: the host's own firewall keeps the say.
    expect(desiredDataplane(base).tables[4].filter.get('cali-failsafe-in')).toEqual(['-p tcp --dport 179 -j ACCEPT', '-p tcp --sport 179 -m conntrack --ctstate ESTABLISHED -j ACCEPT']);
  });
});

describe('host endpoints: raw, mangle and forward', () => {
  const gateway = hep('gw', { interfaceName: 'eth0' }, { role: 'gateway' });

  it('preDNAT policies in mangle PREROUTING, before DNAT: Deny drops, no default deny, failsafes first; the filter table still decides', () => {
    const preDnat = gnp('no-h2', { selector: "role == 'gateway'", preDNAT: true, applyOnForward: true, ingress: [{ action: 'Deny', protocol: 'tcp', source: { nets: ['10.63.0.2/32'] }, destination: { ports: [8080] } }] });
    const desired = desiredDataplane({ ...base, policies: [preDnat], hostEndpoints: [gateway] });
    const mangle = desired.tables[4].mangle;
    const chain = policyChainName('tw', 'default', 'no-h2');
    expect(mangle.get('cali-PREROUTING')).toEqual([`${ACCEPT} -j RETURN`, '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN', '-i cali+ -j RETURN', '-j cali-from-host-endpoint', '-j MARK --set-mark 0x0/0x3000000']);
    expect(mangle.get('cali-from-host-endpoint')).toEqual(['-i eth0 -g cali-fh-eth0']);
    expect(mangle.get('cali-fh-eth0')).toEqual(['-j cali-failsafe-in', '-j MARK --set-mark 0x0/0x3000000', '-j MARK --set-mark 0x0/0x2000000', `-m mark --mark 0x0/0x2000000 -j ${chain}`, `${ACCEPT} -j RETURN`]);
    expect(mangle.get(chain)).toEqual(['-p tcp -s 10.63.0.2/32 -m multiport --dports 8080 -j DROP']);
    expect(mangle.get('cali-failsafe-in')).toContain('-p tcp -m tcp --dport 22 -j ACCEPT');
    // Not in the filter table's chains, nor on workloads.
    expect(desired.tables[4].filter.has(chain)).toBe(false);
    expect(desired.tables[4].raw.get('cali-PREROUTING')).toEqual([]);
  });

  it('doNotTrack policies in raw PREROUTING and OUTPUT: an Allow is NOTRACKed and accepted; failsafes let replies of the other way back', () => {
    const untracked = gnp('dnt', {
      selector: "role == 'gateway'",
      doNotTrack: true,
      applyOnForward: true,
      ingress: [{ action: 'Allow', protocol: 'tcp', destination: { ports: [9000] } }, { action: 'Deny', protocol: 'tcp', destination: { ports: [9001] } }],
      egress: [{ action: 'Allow', protocol: 'tcp', source: { ports: [9000] } }],
    });
    const desired = desiredDataplane({ ...base, policies: [untracked], hostEndpoints: [gateway] });
    const raw = desired.tables[4].raw;
    expect(raw.get('cali-PREROUTING')).toEqual(['-j MARK --set-mark 0x0/0x3000000', '-i cali+ -j RETURN', '-j cali-from-host-endpoint', `${ACCEPT} -j CT --notrack`, `${ACCEPT} -j ACCEPT`]);
    expect(raw.get('cali-OUTPUT')).toEqual(['-j MARK --set-mark 0x0/0x3000000', '-o cali+ -j RETURN', '-j cali-to-host-endpoint', `${ACCEPT} -j CT --notrack`, `${ACCEPT} -j ACCEPT`]);
    expect(raw.get(policyChainName('tw', 'default', 'dnt'))).toEqual(['-p tcp -m multiport --dports 9000 -j MARK --set-mark 0x1000000/0x1000000', `${ACCEPT} -j RETURN`, '-p tcp -m multiport --dports 9001 -j DROP']);
    expect(raw.get('cali-th-eth0')).toContain(`-m mark --mark 0x0/0x2000000 -j ${policyChainName('fw', 'default', 'dnt')}`);
    expect(raw.get('cali-failsafe-in')).toEqual(expect.arrayContaining(['-p tcp -m tcp --dport 22 -j ACCEPT', '-p udp -m udp --sport 53 -j ACCEPT']));
    expect(raw.get('cali-failsafe-out')).toEqual(expect.arrayContaining(['-p udp -m udp --dport 53 -j ACCEPT', '-p tcp -m tcp --sport 22 -j ACCEPT']));
    // Accepted in raw: accepted by filter too (untracked packets have no conntrack state to match).
    expect(desired.tables[4].filter.get('cali-INPUT')).toContain(`! -i cali+ ${ACCEPT} -j ACCEPT`);
    expect(desired.tables[4].filter.get('cali-fh-eth0')!.join('\n')).not.toContain('dnt');
  });

  it('applyOnForward: forwarded traffic through the endpoint meets those policies (also on the host\'s own traffic); other policies do not apply to forwarding', () => {
    const forward = gnp('fwd', { selector: "role == 'gateway'", applyOnForward: true, ingress: [{ action: 'Deny', protocol: 'tcp', destination: { ports: [25] } }, { action: 'Allow' }] });
    const desired = desiredDataplane({ ...base, policies: [forward, allowWeb], hostEndpoints: [gateway] });
    const filter = desired.tables[4].filter;
    expect(filter.get('cali-FORWARD')).toEqual([
      '-j MARK --set-mark 0x0/0x3000000',
      '-j cali-from-hep-forward',
      '-i cali+ -j cali-from-wl-dispatch',
      '-o cali+ -j cali-to-wl-dispatch',
      '-i cali+ -j ACCEPT',
      '-o cali+ -j ACCEPT',
    ]);
    expect(filter.get('cali-from-hep-forward')).toEqual(['-i eth0 -g cali-fhfw-eth0']);
    const fhfw = filter.get('cali-fhfw-eth0')!.join('\n');
    expect(fhfw).toContain(policyChainName('tw', 'default', 'fwd'));
    expect(fhfw).not.toContain(policyChainName('tw', 'default', 'allow-web'));
    expect(filter.get('cali-fh-eth0')!.join('\n')).toContain(policyChainName('tw', 'default', 'fwd'));
    expect(filter.has('cali-to-hep-forward')).toBe(false);
  });
});

describe('the policy agent and host endpoints', () => {
  const felix = (name: string, spec: Record<string, unknown>) => ({ kind: 'FelixConfiguration', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec }) as never;

  it("reads FelixConfiguration (the node's own over default), finds an expectedIPs endpoint's interface, and follows host endpoint changes and interface moves", async () => {
    const source = new MemorySyncSource([
      felix('default', { failsafeInboundHostPorts: [{ protocol: 'tcp', port: 2222 }], defaultEndpointToHostAction: 'Drop' }),
      felix('node.h1', { failsafeOutboundHostPorts: [{ protocol: 'udp', port: 5353 }], defaultEndpointToHostAction: 'ACCEPT' }),
      felix('node.h2', { defaultEndpointToHostAction: 'Return' }),
      hep('by-ip', { expectedIPs: ['192.0.2.1'] }),
    ]);
    const sync = new DatastoreSyncer(source);
    const applied: DesiredDataplane[] = [];
    const dataplane: PolicyDataplane = { apply: async (d) => (applied.push(d), { chainsWritten: 1, setsWritten: 0, rules: 0 }), uninstall: async () => undefined };
    let ifaces = [{ name: 'eth0', addresses: ['192.0.2.1'] }, { name: 'eth1', addresses: [] as string[] }];
    const agent = new PolicyAgent(sync, dataplane, 'h1', undefined, { interfaces: async () => ifaces, interfacesEveryMs: 50 });
    await agent.start();
    try {
      const filter = () => applied.at(-1)!.tables[4].filter;
      expect(filter().get('cali-from-host-endpoint')).toEqual(['-i eth0 -g cali-fh-eth0']);
      expect(filter().get('cali-failsafe-in')).toContain('-p tcp -m tcp --dport 2222 -j ACCEPT');
      expect(filter().get('cali-failsafe-in')).not.toContain('-p tcp -m tcp --dport 22 -j ACCEPT');
      expect(filter().get('cali-failsafe-out')).toContain('-p udp -m udp --dport 5353 -j ACCEPT');
      expect(filter().get('cali-wl-to-host')!.at(-1)).toBe('-j ACCEPT');
      // The address moves to eth1: the agent notices on its next reading of the interfaces.
      ifaces = [{ name: 'eth0', addresses: [] }, { name: 'eth1', addresses: ['192.0.2.1'] }];
      await until('follows the address', () => filter().get('cali-from-host-endpoint')?.[0] === '-i eth1 -g cali-fh-eth1', 2_000);
      source.remove({ kind: 'HostEndpoint', name: 'by-ip' });
      await until('host endpoint gone', () => !filter().has('cali-from-host-endpoint'), 2_000);
      expect(filter().get('cali-failsafe-in')).toEqual(['-p tcp --dport 179 -j ACCEPT', '-p tcp --sport 179 -m conntrack --ctstate ESTABLISHED -j ACCEPT']);
    } finally {
      await agent.stop();
      await sync.stop();
    }
  });
});
