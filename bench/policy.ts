/**
 * bench/policy: Calico's policy model at scale, against the real iptables-restore and ipset in a
 * network namespace made for the run. At 200, 1000 and 2000 local endpoints with 100 and 500
 * GlobalNetworkPolicies (two selectors each), it measures: programming everything at start; one
 * policy edited until programmed; one endpoint added until programmed; the bytes handed to
 * iptables-restore and ipset per change; and UDP request/response latency through the host to the
 * first and to the last endpoint of the dispatch (real veths and namespaces for those two). Baseline in
 * the same run: one bare iptables-restore of a one-rule chain (the floor of any write). Not part of
 * the test run: `npm run bench:policy`. Knobs: SIZES (e.g. "200x100,2000x500"), ROUNDS (edits per size, 10).
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { CommandHelper } from '../src/adapters/dataplane/command-helper.js';
import { IptablesPolicyDataplane } from '../src/adapters/dataplane/iptables/policy-dataplane.js';
import { desiredDataplane, PolicyInput } from '../src/calc/policy.js';
import { defaultProfile, PORT_MAP_ANNOTATION, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import type { GlobalNetworkPolicy } from '../src/domain/policy-model.js';
import { runInOwnNetns } from './in-netns.js';
import { percentile, round, saveReport } from './measure.js';

const NETNS = 'calico-bench-policy';
const SIZES = (process.env.SIZES ?? '200x100,200x500,1000x100,1000x500,2000x100,2000x500').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const ROUNDS = Number(process.env.ROUNDS ?? 10);
const ROLES = 50;
const APPS = 20;
const CLIENT_NETNS = `${NETNS}-client`;
const CLIENT = { host: '10.99.0.1', client: '10.99.0.2' };

function endpoint(i: number): WorkloadEndpoint {
  const id = i.toString(16).padStart(11, '0') + 'f'.repeat(53);
  return {
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: `bench-libnetwork-libnetwork-${id}`, namespace: 'libnetwork', labels: { role: `r${i % ROLES}`, app: `a${i % APPS}` } },
    spec: { orchestrator: 'libnetwork', workload: `w${i}`, node: 'bench', endpoint: id, interfaceName: `cali${id.slice(0, 11)}`, ipNetworks: [`${addressOf(i)}/32`], mac: 'ee:ee:ee:ee:ee:ee', profiles: ['net'] },
  };
}

/** Endpoint i with a published port: an inbound chain of its own. */
function published(i: number): WorkloadEndpoint {
  const e = endpoint(i);
  return { ...e, metadata: { ...e.metadata, annotations: { [PORT_MAP_ANNOTATION]: JSON.stringify([{ protocol: 'tcp', hostIp: '', hostPort: 30_000 + i, port: 80 }]) } } };
}

const addressOf = (i: number): string => `10.200.${Math.floor(i / 250)}.${(i % 250) + 1}`;

/** Policy k selects role r(k mod ROLES) and lets in TCP from app a(k mod APPS) on a port of its own: two selectors. */
function policy(k: number, port = 8000 + k): GlobalNetworkPolicy {
  return {
    kind: 'GlobalNetworkPolicy',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: `p${k}` },
    spec: { order: k, selector: `role == "r${k % ROLES}"`, ingress: [{ action: 'Allow', protocol: 'tcp', source: { selector: `app == "a${k % APPS}"` }, destination: { ports: [port] } }] },
  };
}

/** The bench's own client is let in everywhere, last: its packets walk every policy that selects the endpoint. */
const clientAllowed: GlobalNetworkPolicy = {
  kind: 'GlobalNetworkPolicy',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name: 'zz-bench-client' },
  spec: { order: 1e6, selector: 'all()', ingress: [{ action: 'Allow', source: { nets: [`${CLIENT.client}/32`] } }] },
};

const input = (endpoints: WorkloadEndpoint[], policies: GlobalNetworkPolicy[]): PolicyInput => ({
  node: 'bench',
  profiles: [defaultProfile('net', 'net')],
  endpoints,
  pools: [{ cidr: '10.200.0.0/16', natOutgoing: false }],
  policies,
});

async function timed<T>(work: () => Promise<T> | T): Promise<[T, number]> {
  const start = performance.now();
  const value = await work();
  return [value, performance.now() - start];
}

const sh = (command: string): void => void execFileSync('sh', ['-c', command]);

/** A real workload for endpoint i: a namespace behind its cali veth, with a UDP echo server. */
function workload(i: number): { netns: string; server: ChildProcess } {
  const e = endpoint(i);
  const netns = `${NETNS}-w${i}`;
  spawnSync('ip', ['netns', 'del', netns]);
  sh(`ip netns add ${netns} && ip link add ${e.spec.interfaceName} type veth peer name eth0 netns ${netns}`);
  sh(`ip link set ${e.spec.interfaceName} up && ip -n ${netns} link set eth0 up && ip -n ${netns} link set lo up && ip -n ${netns} addr add ${addressOf(i)}/32 dev eth0`);
  sh(`ip -n ${netns} route add 169.254.1.1 dev eth0 scope link && ip -n ${netns} route add default via 169.254.1.1 dev eth0`);
  sh(`sysctl -qw net.ipv4.conf.${e.spec.interfaceName}.proxy_arp=1 net.ipv4.neigh.${e.spec.interfaceName}.proxy_delay=0 && ip route add ${addressOf(i)}/32 dev ${e.spec.interfaceName}`);
  const script = "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7777,()=>console.log('up'))";
  const server = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { netns, server };
}

/** UDP round trips from the client namespace through the host to each target, interleaved; median µs each. */
function latencies(targets: string[], count: number): number[] {
  const script = `
    const s = require('dgram').createSocket('udp4');
    const targets = ${JSON.stringify(targets)};
    const samples = targets.map(() => []);
    let i = 0, sent = 0n;
    const next = () => {
      if (i >= ${count} * targets.length) {
        const median = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
        console.log(JSON.stringify(samples.map(median)));
        process.exit(0);
      }
      sent = process.hrtime.bigint();
      s.send('x', 7777, targets[i % targets.length]);
    };
    s.on('message', () => { samples[i % targets.length].push(Number(process.hrtime.bigint() - sent) / 1000); i++; next(); });
    s.bind(() => { for (let w = 0; w < 200; w++) {} next(); });
    setTimeout(() => { console.log('[]'); process.exit(1); }, 60000);`;
  return JSON.parse(execFileSync('ip', ['netns', 'exec', CLIENT_NETNS, process.execPath, '-e', script], { encoding: 'utf8' }).trim().split('\n').at(-1)!);
}

function setUpClient(): void {
  spawnSync('ip', ['netns', 'del', CLIENT_NETNS]);
  sh(`ip netns add ${CLIENT_NETNS} && ip link add bench-c type veth peer name eth0 netns ${CLIENT_NETNS}`);
  sh(`ip addr add ${CLIENT.host}/24 dev bench-c && ip link set bench-c up && ip -n ${CLIENT_NETNS} link set eth0 up && ip -n ${CLIENT_NETNS} link set lo up`);
  sh(`ip -n ${CLIENT_NETNS} addr add ${CLIENT.client}/24 dev eth0 && ip -n ${CLIENT_NETNS} route add default via ${CLIENT.host}`);
  sh('sysctl -qw net.ipv4.ip_forward=1');
  // A default route nobody answers: proxy ARP for 169.254.1.1 needs the host to have one.
  sh('ip link add bench-up type veth peer name bench-up-peer && ip addr add 198.18.0.1/24 dev bench-up && ip link set bench-up up && ip link set bench-up-peer up && ip route add default via 198.18.0.254');
}

async function size(endpointCount: number, policyCount: number, floor: number) {
  const commands = new CommandHelper();
  const dataplane = new IptablesPolicyDataplane(commands.run);
  const endpoints = Array.from({ length: endpointCount }, (_, i) => endpoint(i));
  const policies = [...Array.from({ length: policyCount }, (_, k) => policy(k)), clientAllowed];
  const [desired, calcMs] = await timed(() => desiredDataplane(input(endpoints, policies)));
  const [full, applyMs] = await timed(() => dataplane.apply(desired));
  const tidies: number[] = [];
  /** Back to the starting state, tidied (what the agent does 2 s after a change): timed apart from the change. */
  const reset = async (): Promise<void> => {
    await dataplane.apply(desiredDataplane(input(endpoints, policies)));
    tidies.push((await timed(() => dataplane.apply(desiredDataplane(input(endpoints, policies)), { tidy: true })))[1]);
  };
  /** One change, ROUNDS times: calculated and written until programmed (tidy-up apart). */
  const change = async (changed: (r: number) => PolicyInput) => {
    const ms: number[] = [];
    const calc: number[] = [];
    const bytes: number[] = [];
    const chains: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const changedInput = changed(r);
      const start = performance.now();
      const desired = desiredDataplane(changedInput);
      calc.push(performance.now() - start);
      const result = await dataplane.apply(desired);
      ms.push(performance.now() - start);
      bytes.push(result.bytes);
      chains.push(result.chainsWritten);
      await reset();
    }
    return { p50Ms: round(percentile(ms, 50)), calcP50Ms: round(percentile(calc, 50)), maxMs: round(Math.max(...ms)), chainsWritten: percentile(chains, 50), bytes: percentile(bytes, 50) };
  };
  // One policy edited: its port changes.
  const policyEdit = await change((r) => {
    const edited = [...policies];
    edited[r % policyCount] = policy(r % policyCount, 20_000 + r);
    return input(endpoints, edited);
  });
  // One endpoint added whose labels others have: its chains are there already.
  const endpointAdd = await change((r) => input([...endpoints, endpoint(endpointCount + r)], policies));
  // One endpoint added that is like no other (a published port): chains of its own.
  const endpointAddNewKind = await change((r) => input([...endpoints, published(endpointCount + r)], policies));
  const first = workload(0);
  const last = workload(endpointCount - 1);
  try {
    await Promise.all([first, last].map((w) => new Promise((resolve) => w.server.stdout!.once('data', resolve))));
    const rr = latencies([addressOf(0), addressOf(endpointCount - 1)], 3000);
    const result = {
      endpoints: endpointCount,
      policies: policyCount,
      start: { calcMs: round(calcMs), writeMs: round(applyMs), totalMs: round(calcMs + applyMs), rules: full.rules, chains: full.chainsWritten, sets: full.setsWritten, bytes: full.bytes },
      policyEdit,
      endpointAdd,
      endpointAddNewKind,
      tidyMs: round(percentile(tidies, 50)),
      latencyUs: { first: round(rr[0]!), last: round(rr[1]!), lastOverFirst: round(rr[1]! / rr[0]!, 3) },
      restoreFloorMs: round(floor),
    };
    console.log(
      `${String(endpointCount).padStart(5)} endpoints x ${String(policyCount).padStart(3)} policies: start ${result.start.totalMs} ms (calc ${result.start.calcMs}, write ${result.start.writeMs}; ${full.rules} rules, ${full.bytes} B)` +
        ` | policy edit p50 ${result.policyEdit.p50Ms} ms (calc ${result.policyEdit.calcP50Ms}; ${result.policyEdit.chainsWritten} chains, ${result.policyEdit.bytes} B)` +
        ` | endpoint add p50 ${result.endpointAdd.p50Ms} ms (calc ${result.endpointAdd.calcP50Ms}; ${result.endpointAdd.bytes} B; one like no other ${result.endpointAddNewKind.p50Ms} ms)` +
        ` | tidy-up p50 ${result.tidyMs} ms` +
        ` | RR first ${result.latencyUs.first} µs, last ${result.latencyUs.last} µs (x${result.latencyUs.lastOverFirst})`,
    );
    return result;
  } finally {
    for (const w of [first, last]) {
      w.server.kill('SIGKILL');
      spawnSync('ip', ['netns', 'del', w.netns]);
    }
    await dataplane.uninstall();
    commands.close();
  }
}

async function inside(): Promise<void> {
  const baseline: number[] = [];
  for (let i = 0; i < 10; i++) {
    const [, ms] = await timed(() => execFileSync('iptables-restore', ['--noflush'], { input: '*filter\n:bench-floor - [0:0]\n-F bench-floor\n-A bench-floor -j RETURN\nCOMMIT\n' }));
    baseline.push(ms);
  }
  const floor = percentile(baseline, 50);
  setUpClient();
  try {
    const results = [];
    for (const [endpoints, policies] of SIZES) results.push(await size(endpoints, policies, floor));
    console.log(`floor: one bare iptables-restore ${round(floor)} ms. Targets: 2000 x 500 at start <= 1000 ms; a policy edit <= 50 ms; an endpoint added <= 20 ms; last endpoint's latency within 5 % of the first's.`);
    saveReport('policy', { iptables: execFileSync('iptables', ['--version']).toString().trim(), rounds: ROUNDS, results });
  } finally {
    spawnSync('ip', ['netns', 'del', CLIENT_NETNS]);
  }
}

runInOwnNetns(NETNS, inside);
