import { describe, expect, it } from 'vitest';
import { ALL_POOLS, chainName, desiredDataplane, MASQ_POOLS, policyChainName, selectorSetName } from '../src/calc/policy.js';
import type { GlobalNetworkPolicy, NetworkPolicy, NetworkSet, Tier } from '../src/domain/policy-model.js';
import { parseSelector } from '../src/calc/selector.js';
import { defaultProfile, PORT_MAP_ANNOTATION, Profile, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import { endpointChain, endpointRules } from './helpers/endpoint-chains.js';

const endpoint = (node: string, id: string, ips: string[], profiles: string[], labels: Record<string, string> = {}): WorkloadEndpoint => ({
  kind: 'WorkloadEndpoint',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name: `${node}-libnetwork-libnetwork-${id}`, namespace: 'libnetwork', labels },
  spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node, endpoint: id, interfaceName: `cali${id.slice(0, 11)}`, ipNetworks: ips, mac: 'ee:ee:ee:ee:ee:ee', profiles },
});

describe('selectors', () => {
  it('evaluates has, equality, negation, && and || with parentheses', () => {
    const labels = { web: '', tier: 'front' };
    const cases: [string, boolean][] = [
      ['has(web)', true], ['!has(web)', false], ['has(db)', false], ['all()', true], ["tier == 'front'", true], ['tier != "front"', false],
      ['has(web) && has(db)', false], ['has(web) || has(db)', true], ["!(has(db) || tier == 'back')", true],
    ];
    for (const [text, expected] of cases) expect(parseSelector(text)(labels), text).toBe(expected);
  });

  it('refuses malformed selectors', () => {
    for (const bad of ['has(', 'web ==', 'has(a) &&', '(has(a)', "x = 'y'", 'has(a) has(b)']) expect(() => parseSelector(bad), bad).toThrow(/invalid selector/);
  });

  it('reads the empty selector as all(), as Calico does', () => {
    expect(parseSelector('')({})).toBe(true);
  });
});

describe('policy rendering', () => {
  const web = defaultProfile('net-web', 'web');
  const db: Profile = {
    ...defaultProfile('net-db', 'db'),
    spec: {
      labelsToApply: { db: '' },
      egress: [{ action: 'Allow' }],
      ingress: [
        { action: 'Deny', protocol: 'tcp', source: { selector: 'has(web)' }, destination: { ports: [22] } },
        { action: 'Allow', protocol: 'tcp', source: { selector: 'has(web)', nets: ['10.0.0.0/8', '192.168.0.0/16', 'fd00::/8'] }, destination: { ports: [3306, '8000:8080'] } },
        { action: 'Allow', protocol: 'icmp', icmp: { type: 8, code: 0 } },
        { action: 'Allow', protocol: 'icmpv6' },
        { action: 'Log', notProtocol: 'udp', source: { notNets: ['1.2.3.0/24', '5.6.0.0/16'], notSelector: 'has(db)' } },
      ],
    },
  };
  const input = {
    node: 'h1',
    profiles: [web, db],
    pools: [{ cidr: '10.0.0.0/16', natOutgoing: true }, { cidr: '10.1.0.0/16', natOutgoing: false }, { cidr: 'fd00::/64', natOutgoing: false }],
    endpoints: [
      endpoint('h1', 'aaaaaaaaaaaaaaaa', ['10.0.0.1/32', 'fd00::1/128'], ['net-web']),
      endpoint('h1', 'bbbbbbbbbbbbbbbb', ['10.0.0.2/32', 'fd00::2/128'], ['net-db']),
      endpoint('h2', 'cccccccccccccccc', ['10.0.1.1/32'], ['net-web']),
    ],
  };
  const desired = desiredDataplane(input);
  const filter = desired.tables[4].filter;

  it('dispatches by workload address to endpoint chains that end in DROP', () => {
    const [tw1, tw2, fw1, fw2] = [endpointChain(filter, 'tw', '10.0.0.1'), endpointChain(filter, 'tw', '10.0.0.2'), endpointChain(filter, 'fw', '10.0.0.1'), endpointChain(filter, 'fw', '10.0.0.2')];
    expect(filter.get('cali-to-wl-dispatch')).toEqual([`-d 10.0.0.1/32 -g ${tw1}`, `-d 10.0.0.2/32 -g ${tw2}`, '-j DROP']);
    expect(filter.get('cali-from-wl-dispatch')).toEqual([`-s 10.0.0.1/32 -g ${fw1}`, `-s 10.0.0.2/32 -g ${fw2}`, '-j DROP']);
    // Different profiles, different chains; every name within iptables' 28 characters.
    expect(new Set([tw1, tw2, fw1, fw2]).size).toBe(4);
    for (const chain of [tw1, tw2, fw1, fw2]) expect(chain!.length).toBeLessThanOrEqual(28);
    expect(filter.get(tw1!)).toEqual([
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-m conntrack --ctstate INVALID -j DROP',
      '-j MARK --set-mark 0x0/0x1000000',
      `-j ${chainName('cali-pri-', 'net-web')}`,
      '-m mark --mark 0x1000000/0x1000000 -j RETURN',
      '-j DROP',
    ]);
    // Remote endpoints get no chains here, only set membership.
    expect(endpointChain(filter, 'tw', '10.0.1.1')).toBeUndefined();
  });

  it('shares one chain between endpoints whose chains are the same, and gives one with published ports its own', () => {
    const alike = [1, 2, 3].map((i) => endpoint('h1', `${i}`.repeat(16), [`10.0.2.${i}/32`], ['net-web']));
    const plain = endpoint('h1', '4'.repeat(16), ['10.0.2.4/32'], ['net-web']);
    const published: WorkloadEndpoint = { ...plain, metadata: { ...plain.metadata, annotations: { [PORT_MAP_ANNOTATION]: JSON.stringify([{ protocol: 'tcp', hostIp: '', hostPort: 8080, port: 80 }]) } } };
    const f = desiredDataplane({ ...input, endpoints: [...alike, published] }).tables[4].filter;
    const chains = ['10.0.2.1', '10.0.2.2', '10.0.2.3', '10.0.2.4'].map((a) => endpointChain(f, 'tw', a));
    expect(new Set(chains.slice(0, 3)).size).toBe(1);
    expect(chains[3]).not.toBe(chains[0]);
    // A chain is its content: the same endpoints give the same name in another calculation.
    expect(endpointChain(desiredDataplane({ ...input, endpoints: alike }).tables[4].filter, 'tw', '10.0.2.1')).toBe(chains[0]);
  });

  it('renders the default profile as "inbound from its own tag, outbound anywhere" through one ipset of every member', () => {
    const set = selectorSetName(4, 'has(web)');
    expect(filter.get('cali-pri-net-web')).toEqual([`-m set --match-set ${set} src -j MARK --set-mark 0x1000000/0x1000000`, '-m mark --mark 0x1000000/0x1000000 -j RETURN']);
    expect(filter.get('cali-pro-net-web')).toEqual(['-j MARK --set-mark 0x1000000/0x1000000', '-m mark --mark 0x1000000/0x1000000 -j RETURN']);
    expect(desired.ipsets.get(set)).toEqual({ family: 4, type: 'hash:ip', members: ['10.0.0.1', '10.0.1.1'] });
    expect(desired.ipsets.get(selectorSetName(6, 'has(web)'))?.members).toEqual(['fd00::1']);
  });

  it('renders ports, icmp, nets of the right family, negations, deny before allow, and log', () => {
    const rules = filter.get('cali-pri-net-db')!;
    const web = selectorSetName(4, 'has(web)');
    expect(rules[0]).toBe(`-p tcp -m set --match-set ${web} src -m multiport --dports 22 -j DROP`);
    expect(rules.slice(1, 5)).toEqual([
      `-p tcp -s 10.0.0.0/8 -m set --match-set ${web} src -m multiport --dports 3306,8000:8080 -j MARK --set-mark 0x1000000/0x1000000`,
      '-m mark --mark 0x1000000/0x1000000 -j RETURN',
      `-p tcp -s 192.168.0.0/16 -m set --match-set ${web} src -m multiport --dports 3306,8000:8080 -j MARK --set-mark 0x1000000/0x1000000`,
      '-m mark --mark 0x1000000/0x1000000 -j RETURN',
    ]);
    expect(rules[5]).toBe('-p icmp -m icmp --icmp-type 8/0 -j MARK --set-mark 0x1000000/0x1000000');
    expect(rules.some((r) => r.includes('ipv6-icmp'))).toBe(false);
    expect(rules.at(-1)).toMatch(/^! -p udp -m set ! --match-set cali4-n:\S+ src -m set ! --match-set cali4-s:\S+ src -j LOG --log-prefix "calico-packet: " --log-level 5$/);
    expect(desired.tables[6].filter.get('cali-pri-net-db')!.some((r) => r.startsWith('-p ipv6-icmp'))).toBe(true);
    expect(desired.tables[6].filter.get('cali-pri-net-db')!.some((r) => r.includes('-s fd00::/8'))).toBe(true);
  });

  it('masquerades from natOutgoing pools to anything outside every pool, and never pool to pool', () => {
    expect(desired.tables[4].nat.get('cali-nat-outgoing')).toEqual([`-m set --match-set ${MASQ_POOLS(4)} src -m set ! --match-set ${ALL_POOLS(4)} dst -j MASQUERADE`]);
    expect(desired.ipsets.get(MASQ_POOLS(4))?.members).toEqual(['10.0.0.0/16']);
    expect(desired.ipsets.get(ALL_POOLS(4))?.members).toEqual(['10.0.0.0/16', '10.1.0.0/16']);
    expect(desired.tables[6].nat.get('cali-nat-outgoing')).toEqual([]);
  });

  it('writes no chains of a family for endpoints without an address of it', () => {
    const v4only = desiredDataplane({ ...input, endpoints: [endpoint('h1', 'dddddddddddddddd', ['10.0.0.9/32'], ['net-web'])] });
    expect([...v4only.tables[6].filter.keys()].filter((c) => /^cali-(tw|fw|pri|pro)-/.test(c))).toEqual([]);
    expect([...v4only.tables[4].filter.keys()].filter((c) => /^cali-(tw|fw|pri|pro)-/.test(c))).toHaveLength(4);
  });

  it('keeps chain names within 28 characters and is deterministic', () => {
    const long = chainName('cali-pri-', 'f'.repeat(64));
    expect(long.length).toBeLessThanOrEqual(28);
    expect(long.startsWith('cali-pri-')).toBe(true);
    expect(desiredDataplane(input)).toEqual(desired);
  });

  it("an endpoint's profiles of its own: its chains run each in order, and their tags hold it on every host", () => {
    const own: Profile = { kind: 'Profile', apiVersion: 'projectcalico.org/v3', metadata: { name: 'PROF_A_C_E' }, spec: { ingress: [{ action: 'Allow', source: { selector: 'has(PROF_A_C_E)' } }], egress: [{ action: 'Allow' }], labelsToApply: { PROF_A_C_E: '' } } };
    const endpoints = [
      endpoint('h1', 'aaaaaaaaaaaaaaaa', ['10.0.0.1/32'], ['net-web', 'PROF_A_C_E']),
      endpoint('h1', 'bbbbbbbbbbbbbbbb', ['10.0.0.2/32'], []),
      endpoint('h2', 'cccccccccccccccc', ['10.0.1.1/32'], ['PROF_A_C_E']),
    ];
    const tw = (node: string, address: string) => endpointRules(desiredDataplane({ ...input, node, profiles: [web, own], endpoints }).tables[4].filter, 'tw', address);
    const jumps = (chain: string[] | undefined) => chain?.filter((r) => r.startsWith('-j cali-p') || r === '-j DROP');
    expect(jumps(tw('h1', '10.0.0.1'))).toEqual([`-j ${chainName('cali-pri-', 'net-web')}`, `-j ${chainName('cali-pri-', 'PROF_A_C_E')}`, '-j DROP']);
    // No profile left: nothing gets in.
    expect(jumps(tw('h1', '10.0.0.2'))).toEqual(['-j DROP']);
    // On h2, where only c has the profile, the tag's set holds a (h1) as well; web's tag does not hold c.
    const h2 = desiredDataplane({ ...input, node: 'h2', profiles: [web, own], endpoints });
    expect(h2.tables[4].filter.get(chainName('cali-pri-', 'PROF_A_C_E'))?.[0]).toContain(selectorSetName(4, 'has(PROF_A_C_E)'));
    expect(h2.ipsets.get(selectorSetName(4, 'has(PROF_A_C_E)'))?.members).toEqual(['10.0.0.1', '10.0.1.1']);
    expect(desiredDataplane({ ...input, profiles: [web, own], endpoints }).ipsets.get(selectorSetName(4, 'has(web)'))?.members).toEqual(['10.0.0.1']);
  });

  it('grows linearly: a dispatch rule each way per endpoint of a known kind, not per tag member', () => {
    const many = (n: number) => {
      const endpoints = Array.from({ length: n }, (_, i) => endpoint('h1', `${String(i).padStart(11, '0')}fffff`, [`10.0.${Math.floor(i / 250)}.${(i % 250) + 1}/32`], ['net-web']));
      const d = desiredDataplane({ ...input, endpoints });
      return [...d.tables[4].filter.values()].reduce((sum, rules) => sum + rules.length, 0);
    };
    const per = (many(200) - many(100)) / 100;
    expect(Math.abs(per - (many(400) - many(300)) / 100)).toBeLessThan(0.5);
    // Endpoints alike share their chains: one dispatch rule each way, and a fraction of a rule for the dispatch tree.
    expect(per).toBeGreaterThanOrEqual(2);
    expect(per).toBeLessThan(3);
  });

  it('dispatches through a tree: the 2000th endpoint costs the few dozen rules the first does', () => {
    const endpoints = Array.from({ length: 2000 }, (_, i) => endpoint('h1', `${String(i).padStart(11, '0')}fffff`, [`10.0.${Math.floor(i / 250)}.${(i % 250) + 1}/32`], ['net-web']));
    const filter = desiredDataplane({ ...input, endpoints }).tables[4].filter;
    /** Rules a packet to `address` is tested against, from the root of the tree to its endpoint's jump. */
    const walked = (address: string): number => {
      let chain = 'cali-to-wl-dispatch';
      let count = 0;
      for (;;) {
        const rules = filter.get(chain)!;
        const index = rules.findIndex((r) => {
          const [, cidr] = /^-d (\S+)/.exec(r) ?? [];
          return cidr !== undefined && inCidr(address, cidr);
        });
        count += index + 1;
        const target = rules[index]!.split(' -g ')[1]!;
        if (target.startsWith('cali-tw-')) return count;
        chain = target;
      }
    };
    const first = walked('10.0.0.1');
    const last = walked('10.0.7.250');
    expect(last).toBeLessThanOrEqual(48);
    expect(first).toBeLessThanOrEqual(48);
    expect(Math.max(...['10.0.3.17', '10.0.5.99', '10.0.7.1'].map(walked))).toBeLessThanOrEqual(48);
  });
});

function inCidr(address: string, cidr: string): boolean {
  const [base, length] = cidr.split('/');
  const value = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const bits = Number(length);
  const mask = bits === 0 ? 0 : 2 ** 32 - 2 ** (32 - bits);
  return (value(address) & mask) >>> 0 === (value(base!) & mask) >>> 0;
}

describe("Calico's policy model: tiers, policies, network sets", () => {
  const web = defaultProfile('net-web', 'web');
  const gnp = (name: string, spec: GlobalNetworkPolicy['spec']): GlobalNetworkPolicy => ({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec });
  const tier = (name: string, order: number, defaultAction: 'Deny' | 'Pass' = 'Deny'): Tier => ({ kind: 'Tier', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: { order, defaultAction } });
  const endpoints = [
    endpoint('h1', 'aaaaaaaaaaaaaaaa', ['10.0.0.1/32'], ['net-web'], { role: 'frontend' }),
    endpoint('h1', 'bbbbbbbbbbbbbbbb', ['10.0.0.2/32'], ['net-web'], { role: 'db' }),
    endpoint('h2', 'cccccccccccccccc', ['10.0.1.1/32'], ['net-web'], { role: 'backend' }),
  ];
  const base = { node: 'h1', profiles: [web], pools: [], endpoints };
  const jumps = (rules: string[] | undefined): string[] => (rules ?? []).filter((r) => !r.startsWith('-m conntrack') && (/ -j cali-p|^-j cali-p/.test(r) || r.endsWith('-j DROP')));

  it('runs tiers in order, policies by order then name, each tier ending in its default action, before the profiles', () => {
    const policies = [
      gnp('b-allow', { order: 10, selector: 'role == "db"', ingress: [{ action: 'Allow', protocol: 'tcp', source: { selector: 'role == "backend"' }, destination: { ports: [5432] } }] }),
      gnp('a-allow', { order: 10, selector: 'role == "db"', ingress: [{ action: 'Allow' }] }),
      gnp('first', { order: 1, selector: 'has(role)', types: ['Ingress'] }),
      gnp('security.pass', { tier: 'security', selector: 'all()', ingress: [{ action: 'Pass', source: { nets: ['10.0.0.0/8'] } }] }),
    ];
    const d = desiredDataplane({ ...base, tiers: [tier('security', 100)], policies });
    const tw = endpointRules(d.tables[4].filter, 'tw', '10.0.0.2')!;
    expect(jumps(tw)).toEqual([
      `-m mark --mark 0x0/0x2000000 -j ${policyChainName('tw', 'security', 'security.pass')}`,
      '-m mark --mark 0x0/0x2000000 -j DROP',
      `-m mark --mark 0x0/0x2000000 -j ${policyChainName('tw', 'default', 'first')}`,
      `-m mark --mark 0x0/0x2000000 -j ${policyChainName('tw', 'default', 'a-allow')}`,
      `-m mark --mark 0x0/0x2000000 -j ${policyChainName('tw', 'default', 'b-allow')}`,
      '-m mark --mark 0x0/0x2000000 -j DROP',
      `-j ${chainName('cali-pri-', 'net-web')}`,
      '-j DROP',
    ]);
    expect(d.tables[4].filter.get(policyChainName('tw', 'security', 'security.pass'))).toEqual(['-s 10.0.0.0/8 -j MARK --set-mark 0x2000000/0x2000000', '-m mark --mark 0x2000000/0x2000000 -j RETURN']);
    // The frontend is selected only by `first` (has(role)) and the security tier; nothing outbound applies.
    expect(jumps(endpointRules(d.tables[4].filter, 'tw', '10.0.0.1')).filter((r) => r.includes('cali-pi-')).length).toBe(2);
    expect(jumps(endpointRules(d.tables[4].filter, 'fw', '10.0.0.1'))).toEqual([`-j ${chainName('cali-pro-', 'net-web')}`, '-j DROP']);
  });

  it('a tier with defaultAction Pass goes on to the next; types are inferred as Calico infers them; Log logs and goes on', () => {
    const policies = [
      gnp('ops.watch', { tier: 'ops', selector: 'all()', ingress: [{ action: 'Log' }], egress: [{ action: 'Log', protocol: 'icmp', icmp: { type: 8 } }] }),
      gnp('egress-only', { selector: 'role == "db"', egress: [{ action: 'Deny', destination: { nets: ['192.0.2.0/24'] } }] }),
    ];
    const d = desiredDataplane({ ...base, tiers: [tier('ops', 1, 'Pass')], policies });
    const tw = jumps(endpointRules(d.tables[4].filter, 'tw', '10.0.0.2'));
    expect(tw).toEqual([`-m mark --mark 0x0/0x2000000 -j ${policyChainName('tw', 'ops', 'ops.watch')}`, `-j ${chainName('cali-pri-', 'net-web')}`, '-j DROP']);
    expect(jumps(endpointRules(d.tables[4].filter, 'fw', '10.0.0.2'))).toEqual([
      `-m mark --mark 0x0/0x2000000 -j ${policyChainName('fw', 'ops', 'ops.watch')}`,
      `-m mark --mark 0x0/0x2000000 -j ${policyChainName('fw', 'default', 'egress-only')}`,
      '-m mark --mark 0x0/0x2000000 -j DROP',
      `-j ${chainName('cali-pro-', 'net-web')}`,
      '-j DROP',
    ]);
    expect(d.tables[4].filter.get(policyChainName('tw', 'ops', 'ops.watch'))).toEqual(['-j LOG --log-prefix "calico-packet: " --log-level 5']);
    expect(d.tables[4].filter.get(policyChainName('fw', 'ops', 'ops.watch'))).toEqual(['-p icmp -m icmp --icmp-type 8 -j LOG --log-prefix "calico-packet: " --log-level 5']);
    // A policy of a tier nobody created applies nowhere.
    const orphan = desiredDataplane({ ...base, policies: [gnp('ghost.p', { tier: 'ghost', selector: 'all()', ingress: [{ action: 'Deny' }] })] });
    expect([...orphan.tables[4].filter.keys()].some((c) => c.startsWith('cali-pi-'))).toBe(false);
  });

  it('rule selectors match network sets by label (a hash:net set), notNets, named ports, and a NetworkPolicy stays in its namespace', () => {
    // A NetworkSet of the policy's namespace is matched; a GlobalNetworkSet is not (Calico's namespacing).
    const sets: NetworkSet[] = [
      { kind: 'NetworkSet', apiVersion: 'projectcalico.org/v3', metadata: { name: 'partners', namespace: 'libnetwork', labels: { trusted: 'yes' } }, spec: { nets: ['198.51.100.0/24', '203.0.113.7'] } },
      { kind: 'GlobalNetworkSet', apiVersion: 'projectcalico.org/v3', metadata: { name: 'elsewhere', labels: { trusted: 'yes' } }, spec: { nets: ['192.0.2.0/24'] } },
    ];
    const withPort = { ...endpoints[1]!, spec: { ...endpoints[1]!.spec, ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] } };
    const np: NetworkPolicy = {
      kind: 'NetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'db-in', namespace: 'libnetwork' },
      spec: { selector: 'role == "db"', ingress: [{ action: 'Allow', protocol: 'tcp', source: { selector: 'trusted == "yes" || role == "backend"', notNets: ['198.51.100.128/25'] }, destination: { ports: ['pg', 22] } }] },
    };
    const d = desiredDataplane({ ...base, endpoints: [endpoints[0]!, withPort, endpoints[2]!], networkSets: sets, policies: [np] });
    const rules = d.tables[4].filter.get(policyChainName('tw', 'default', 'libnetwork/db-in'))!;
    expect(rules).toHaveLength(4);
    const [set] = /cali4-s:\S+/.exec(rules[0]!)!;
    expect(d.ipsets.get(set)).toEqual({ family: 4, type: 'hash:net', members: ['10.0.1.1', '198.51.100.0/24', '203.0.113.7/32'] });
    expect(rules[0]).toMatch(/^-p tcp ! -s 198\.51\.100\.128\/25 -m set --match-set cali4-s:\S+ src -m multiport --dports 22 -j MARK/);
    expect(rules[2]).toMatch(/-m set --match-set cali4-p:\S+ dst,dst -j MARK/);
    const [portSet] = /cali4-p:\S+/.exec(rules[2]!)!;
    expect(d.ipsets.get(portSet)).toEqual({ family: 4, type: 'hash:ip,port', members: ['10.0.0.2,tcp:5432'] });
  });
});
