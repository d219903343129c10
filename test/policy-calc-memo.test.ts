import { describe, expect, it, vi } from 'vitest';
import type { PolicyInput } from '../src/calc/policy.js';
import { defaultProfile, PORT_MAP_ANNOTATION, Profile, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import type { GlobalNetworkPolicy, GlobalNetworkSet, Tier } from '../src/domain/policy-model.js';

/**
 * The calculation keeps what it worked out before (labels, rendered rules, selector members,
 * endpoint chains, dispatch trees) and reuses it while its inputs are the same objects. Whatever
 * came before, its answer must be the one a calculation from nothing gives: a random walk of changes,
 * each answer compared with that of a fresh copy of the module.
 */

/** A small deterministic generator: the walk is the same on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
}

describe('the calculation, reusing what it kept', () => {
  it('gives the answer of a calculation from nothing after every change of a random walk', async () => {
    const next = random(7);
    const pick = <T>(items: T[]): T => items[Math.floor(next() * items.length)]!;
    const warm = await import('../src/calc/policy.js');
    let serial = 0;
    const endpoint = (): WorkloadEndpoint => {
      const n = ++serial;
      const labels: Record<string, string> = {};
      for (const key of ['role', 'app', 'tier']) if (next() < 0.7) labels[key] = pick(['a', 'b', 'c']);
      const annotations = next() < 0.2 ? { [PORT_MAP_ANNOTATION]: JSON.stringify([{ protocol: 'tcp', hostIp: '', hostPort: 30_000 + n, port: 80 }]) } : undefined;
      const ips = [`10.0.${n >> 8}.${n & 255}/32`, ...(next() < 0.2 ? [`fd00::${n.toString(16)}/128`] : [])];
      return {
        kind: 'WorkloadEndpoint',
        apiVersion: 'projectcalico.org/v3',
        metadata: { name: `e${n}`, namespace: 'libnetwork', labels, ...(annotations ? { annotations } : {}) },
        spec: { orchestrator: 'libnetwork', workload: `w${n}`, node: next() < 0.7 ? 'h1' : 'h2', endpoint: `${n}`, interfaceName: `cali${n}`, ipNetworks: ips, mac: '', profiles: [pick(['net-a', 'net-b', 'gone'])] },
      };
    };
    const policy = (name: string): GlobalNetworkPolicy => ({
      kind: 'GlobalNetworkPolicy',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name },
      spec: {
        ...(next() < 0.3 ? { tier: 'security' } : {}),
        order: Math.floor(next() * 5),
        selector: pick(['all()', "role == 'a'", "app in {'b', 'c'}", '!has(tier)', "role == 'b' && tier == 'c'"]),
        ingress: [{ action: pick(['Allow', 'Deny', 'Pass'] as const), protocol: 'tcp', source: { selector: pick(["app == 'a'", 'has(tier)', "role == 'c'", "kind == 'outside'"]) }, destination: { ports: [Math.floor(next() * 3) + 80] } }],
        ...(next() < 0.5 ? { egress: [{ action: 'Allow' as const, destination: { selector: pick(["role == 'a'", 'has(app)']) } }] } : {}),
      },
    });
    const profile = (name: string, tag: string): Profile => ({ ...defaultProfile(name, tag), spec: { ...defaultProfile(name, tag).spec, labelsToApply: { [tag]: '', ...(next() < 0.5 ? { tier: pick(['a', 'c']) } : {}) } } });
    const outside = (): GlobalNetworkSet => ({ kind: 'GlobalNetworkSet', apiVersion: 'projectcalico.org/v3', metadata: { name: 'outside', labels: { kind: 'outside' } }, spec: { nets: [pick(['192.0.2.0/24', '198.51.100.0/24'])] } });
    const security: Tier = { kind: 'Tier', apiVersion: 'projectcalico.org/v3', metadata: { name: 'security' }, spec: { order: 10, defaultAction: 'Pass' } };
    let endpoints = Array.from({ length: 50 }, endpoint);
    let policies = Array.from({ length: 8 }, (_, i) => policy(`p${i}`));
    let profiles = [profile('net-a', 'a'), profile('net-b', 'b')];
    let networkSets: GlobalNetworkSet[] = [];
    let tiers: Tier[] = [];
    const changes: (() => void)[] = [
      () => (endpoints = [...endpoints, endpoint()]),
      () => (endpoints = endpoints.filter((_, i) => i !== Math.floor(next() * endpoints.length))),
      () => {
        const i = Math.floor(next() * endpoints.length);
        endpoints = endpoints.map((e, j) => (j === i ? { ...e, metadata: { ...e.metadata, labels: { ...e.metadata.labels, role: pick(['a', 'b', 'c']) } } } : e));
      },
      () => {
        const i = Math.floor(next() * policies.length);
        policies = policies.map((p, j) => (j === i ? policy(p.metadata.name) : p));
      },
      () => (policies = next() < 0.5 && policies.length > 1 ? policies.slice(1) : [...policies, policy(`p${++serial}`)]),
      () => (profiles = profiles.length === 2 ? [profiles[0]!] : [profiles[0]!, profile('net-b', 'b')]),
      () => (profiles = profiles.map((p) => (next() < 0.5 ? profile(p.metadata.name, p.metadata.name.slice(4)) : p))),
      () => (networkSets = networkSets.length ? [] : [outside()]),
      () => (tiers = tiers.length ? [] : [security]),
      () => undefined,
    ];
    const input = (): PolicyInput => ({ node: 'h1', profiles, endpoints, pools: [{ cidr: '10.0.0.0/16', natOutgoing: true }], policies, networkSets, tiers });
    for (let step = 0; step < 120; step++) {
      pick(changes)();
      const kept = warm.desiredDataplane(input());
      vi.resetModules();
      const fresh = (await import('../src/calc/policy.js')).desiredDataplane(input());
      expect(kept, `step ${step}`).toEqual(fresh);
    }
  });

  it('keeps the chains of a dispatch tree whose leaves did not change, and builds the same tree as from nothing', async () => {
    const next = random(11);
    const warm = await import('../src/calc/dispatch.js');
    let entries = Array.from({ length: 300 }, (_, i) => ({ address: `10.${i % 3}.${Math.floor(i / 7)}.${(i * 37) % 256}`, target: `t${i % 5}` }));
    entries = [...new Map(entries.map((e) => [e.address, e])).values()];
    let previous = warm.dispatchTree('root', '-d', 4, entries);
    for (let step = 0; step < 60; step++) {
      const i = Math.floor(next() * entries.length);
      const change = next();
      if (change < 0.4) entries = [...entries, { address: `10.${Math.floor(next() * 3)}.${Math.floor(next() * 50)}.${Math.floor(next() * 256)}`, target: `t${step}` }];
      else if (change < 0.7) entries = entries.filter((_, j) => j !== i);
      else entries = entries.map((e, j) => (j === i ? { ...e, target: `u${step}` } : e));
      entries = [...new Map(entries.map((e) => [e.address, e])).values()];
      const kept = warm.dispatchTree('root', '-d', 4, entries);
      vi.resetModules();
      const fresh = (await import('../src/calc/dispatch.js')).dispatchTree('root', '-d', 4, entries);
      expect(kept, `step ${step}`).toEqual(fresh);
      // A chain whose leaves did not change is the same array as before: the writer skips it at once.
      const same = [...kept].filter(([chain, rules]) => previous.get(chain) === rules).length;
      if (change >= 0.7) expect(same).toBeGreaterThan(0);
      previous = kept;
    }
  });
});
