/**
 * bench/policy: programming time and rule count for ENDPOINTS endpoints (default 500) in 20 networks
 * with 10 rules each, and the time of one rule change at that size, against the real iptables-restore
 * and ipset in a network namespace made for the run. Baseline in the same run: one bare
 * iptables-restore of a one-rule chain (the floor of any write). Not part of the test run:
 * `npm run bench:policy`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { CommandHelper } from '../src/adapters/dataplane/command-helper.js';
import { IptablesPolicyDataplane } from '../src/adapters/dataplane/iptables/policy-dataplane.js';
import { desiredDataplane, PolicyInput } from '../src/calc/policy.js';
import { defaultProfile, Profile, Rule, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import { runInOwnNetns } from './in-netns.js';

const NETNS = 'calico-bench-policy';
const ENDPOINTS = Number(process.env.ENDPOINTS ?? 500);
const NETWORKS = 20;
const RULES = 10;

function profiles(): Profile[] {
  return Array.from({ length: NETWORKS }, (_, n) => {
    const profile = defaultProfile(`net-${n}`.padEnd(64, '0'), `net-${n}`);
    const rules: Rule[] = Array.from({ length: RULES - 1 }, (_, r) => {
      switch (r % 3) {
        case 0:
          return { action: 'Allow', protocol: 'tcp', source: { selector: `has(net-${(n + r + 1) % NETWORKS})` }, destination: { ports: [8000 + r, `${9000 + r}:${9100 + r}`] } };
        case 1:
          return { action: 'Deny', protocol: 'udp', source: { nets: [`10.${r}.0.0/16`] } };
        default:
          return { action: 'Allow', protocol: 'icmp', icmp: { type: 8 }, source: { notSelector: `has(net-${n})` } };
      }
    });
    profile.spec.ingress = [...profile.spec.ingress, ...rules];
    return profile;
  });
}

function endpoints(count: number): WorkloadEndpoint[] {
  return Array.from({ length: count }, (_, i) => {
    const id = i.toString(16).padStart(11, '0') + 'f'.repeat(53);
    return {
      kind: 'WorkloadEndpoint',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name: `bench-libnetwork-libnetwork-${id}`, namespace: 'libnetwork', labels: {} },
      spec: {
        orchestrator: 'libnetwork',
        workload: 'libnetwork',
        node: 'bench',
        endpoint: id,
        interfaceName: `cali${id.slice(0, 11)}`,
        ipNetworks: [`10.200.${Math.floor(i / 250)}.${(i % 250) + 1}/32`],
        mac: 'ee:ee:ee:ee:ee:ee',
        profiles: [`net-${i % NETWORKS}`.padEnd(64, '0')],
      },
    };
  });
}

const input = (count: number, profileList = profiles()): PolicyInput => ({ node: 'bench', profiles: profileList, endpoints: endpoints(count), pools: [{ cidr: '10.200.0.0/16', natOutgoing: true }] });

async function timed<T>(work: () => Promise<T> | T): Promise<[T, number]> {
  const start = performance.now();
  const value = await work();
  return [value, performance.now() - start];
}

const ruleCount = (count: number): number => {
  const desired = desiredDataplane(input(count));
  return [4, 6].reduce((sum, f) => sum + [...desired.tables[f as 4 | 6].filter.values(), ...desired.tables[f as 4 | 6].nat.values()].reduce((n, r) => n + r.length, 0), 0);
};

async function inside(): Promise<void> {
  // Baseline: the cost of one iptables-restore call at all.
  const baseline: number[] = [];
  for (let i = 0; i < 10; i++) {
    const [, ms] = await timed(() => execFileSync('iptables-restore', ['--noflush'], { input: '*filter\n:bench-floor - [0:0]\n-F bench-floor\n-A bench-floor -j RETURN\nCOMMIT\n' }));
    baseline.push(ms);
  }
  baseline.sort((a, b) => a - b);
  const floor = baseline[5]!;

  // As the daemon runs it: kernel tools started by the small helper process.
  const commands = new CommandHelper();
  const dataplane = new IptablesPolicyDataplane(commands.run);
  const profileList = profiles();
  const [desired, calcMs] = await timed(() => desiredDataplane(input(ENDPOINTS, profileList)));
  const [full, applyMs] = await timed(() => dataplane.apply(desired));
  const [idle, idleMs] = await timed(() => dataplane.apply(desiredDataplane(input(ENDPOINTS, profileList))));
  const changes: number[] = [];
  let changed = { chainsWritten: 0, setsWritten: 0, rules: 0 };
  for (let i = 0; i < 10; i++) {
    const edited = structuredClone(profileList);
    edited[3]!.spec.ingress.push({ action: 'Allow', protocol: 'tcp', destination: { ports: [10_000 + i] } });
    const [result, ms] = await timed(() => dataplane.apply(desiredDataplane(input(ENDPOINTS, edited))));
    changes.push(ms);
    changed = result;
  }
  changes.sort((a, b) => a - b);
  const perEndpoint = (ruleCount(ENDPOINTS * 2) - ruleCount(ENDPOINTS)) / ENDPOINTS;
  const result = {
    when: new Date().toISOString(),
    machine: `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown cpu'}`,
    iptables: execFileSync('iptables', ['--version']).toString().trim(),
    git: execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim(),
    endpoints: ENDPOINTS,
    networks: NETWORKS,
    rulesPerProfile: RULES,
    fullSync: { calcMs, applyMs, totalMs: calcMs + applyMs, chainsWritten: full.chainsWritten, setsWritten: full.setsWritten, rules: full.rules },
    idleApply: { ms: idleMs, chainsWritten: idle.chainsWritten },
    oneRuleChange: { p50Ms: changes[5]!, maxMs: changes.at(-1)!, chainsWritten: changed.chainsWritten, setsWritten: changed.setsWritten },
    restoreFloorMs: floor,
    ruleCountByEndpoints: { [ENDPOINTS / 2]: ruleCount(ENDPOINTS / 2), [ENDPOINTS]: ruleCount(ENDPOINTS), [ENDPOINTS * 2]: ruleCount(ENDPOINTS * 2) },
    rulesPerExtraEndpoint: perEndpoint,
  };
  console.log(`machine        ${result.machine}; ${result.iptables}; git ${result.git}`);
  console.log(`full sync      ${ENDPOINTS} endpoints, ${NETWORKS} networks x ${RULES} rules: ${result.fullSync.totalMs.toFixed(0)} ms (calc ${calcMs.toFixed(0)} ms, write ${applyMs.toFixed(0)} ms), ${full.rules} rules, ${full.chainsWritten} chains, ${full.setsWritten} sets (target < 1000 ms)`);
  console.log(`nothing changed ${idleMs.toFixed(1)} ms, ${idle.chainsWritten} chains written`);
  console.log(`one rule change p50 ${result.oneRuleChange.p50Ms.toFixed(1)} ms, max ${result.oneRuleChange.maxMs.toFixed(1)} ms, ${changed.chainsWritten} chain(s) written (target < 100 ms); one bare iptables-restore: ${floor.toFixed(1)} ms (ratio ${(result.oneRuleChange.p50Ms / floor).toFixed(2)})`);
  console.log(`rule count     ${Object.entries(result.ruleCountByEndpoints).map(([n, r]) => `${n} endpoints: ${r}`).join(', ')}; ${perEndpoint} rules per extra endpoint (linear; tags are ipsets)`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/policy-${result.when.slice(0, 10)}.json`, `${JSON.stringify(result, null, 2)}\n`);
  commands.close();
}

runInOwnNetns(NETNS, inside);
