import type { ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clusterForSuite, etcdRetrying, until } from './helpers/cluster.js';
import type { DockerHost } from './helpers/docker-host.js';
import { peerEchoServer } from './helpers/underlay.js';

/**
 * Host endpoints with real packets, on three Docker hosts: a HostEndpoint on host 1's underlay
 * interface (eth0) and policies selecting it by label, written to etcd as Calico's tools write them.
 * Servers run on host 1 itself (its network namespace) and behind a published port; hosts 2 and 3
 * are the clients.
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const RESOURCES = '/calico/resources/v3/projectcalico.org/';
const SUBNET = '10.63.0';
const cluster = clusterForSuite({ name: 'hep', hosts: 3, subnet: SUBNET, pools: [{ cidr: '10.64.0.0/16', name: 'hep-pool' }] });
const host = (n: number): DockerHost => cluster.hosts[n - 1]!;
const address = (n: number): string => `${SUBNET}.${n}`;
const servers: ChildProcess[] = [];
let pubAddress = '';
let c2Address = '';
const written: string[] = [];

type Spec = Record<string, unknown>;
const gnp = (name: string, spec: Spec) => ({ key: `${RESOURCES}globalnetworkpolicies/${name}`, value: { kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec } });
/** Host 1's eth0 as a host endpoint: by name, or (`byAddress`) found by its address alone. */
const gateway = (byAddress = false) => ({
  key: `${RESOURCES}hostendpoints/gateway`,
  value: {
    kind: 'HostEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: 'gateway', labels: { role: 'gateway' } },
    spec: { node: host(1).node, ...(byAddress ? {} : { interfaceName: 'eth0' }), expectedIPs: [address(1)] },
  },
});

async function apply(...resources: { key: string; value: object }[]): Promise<void> {
  for (const r of resources) {
    await etcdRetrying(() => cluster.ctx.etcd.put(r.key, JSON.stringify(r.value)));
    if (!written.includes(r.key)) written.push(r.key);
  }
}

async function remove(key: string): Promise<void> {
  await etcdRetrying(() => cluster.ctx.etcd.deleteRange({ key: Buffer.from(key) }));
  written.splice(written.indexOf(key), 1);
}

/** The local port of a TCP connection from host `from` (its own namespace) to `to:port`, when it connects. */
function connection(from: number, to: string, port: number): number | undefined {
  const script = `const s = require('net').connect(${port}, '${to}'); s.on('connect', () => { console.log('connected ' + s.localPort); s.end(); setTimeout(() => process.exit(0), 100); }); s.on('error', () => process.exit(1)); setTimeout(() => process.exit(1), 1500);`;
  const port_ = /connected (\d+)/.exec(host(from).onHost([process.execPath, '-e', script], 10_000).stdout)?.[1];
  return port_ === undefined ? undefined : Number(port_);
}
const connects = (from: number, to: string, port: number): boolean => connection(from, to, port) !== undefined;

/** What a published port answers from host `from`: busybox nc, as a user would. */
const published = (from: number, port: number): boolean => host(from).onHost(['sh', '-c', `busybox nc -w 2 ${address(1)} ${port} </dev/null`], 10_000).stdout.includes('hello');

const established = (n: number): number => (host(n).calicoctl(['node', 'status']).stdout.match(/Established/g) ?? []).length;

/** Packets counted by host 1's raw table rules that DROP. */
function rawDrops(): number {
  const out = host(1).onHost(['iptables', '-t', 'raw', '-L', '-v', '-n', '-x']).stdout;
  return [...out.matchAll(/^\s*(\d+)\s+\d+\s+DROP /gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Whether host 1's conntrack holds the connection from `source`:`sourcePort` to its `port`. */
const tracked = (source: string, sourcePort: number, port: number): boolean =>
  host(1)
    .onHost(['cat', '/proc/net/nf_conntrack'])
    .stdout.split('\n')
    .some((l) => l.includes(`src=${source} dst=${address(1)} sport=${sourcePort} dport=${port} `));

beforeAll(async () => {
  for (const h of cluster.hosts) await until(`${h.node} mesh`, () => established(Number(h.node.slice(-1))) === 2, 30_000);
  // Servers on host 1 itself: an ordinary service (8000), one a policy opens (9000), and "SSH" (22).
  for (const port of [8000, 9000, 22]) {
    const server = peerEchoServer(['ip', 'netns', 'exec', host(1).netns], port);
    servers.push(server);
    await new Promise((r) => server.stdout!.once('data', r));
  }
  for (const n of [1, 2]) host(n).dockerOk(['network', 'create', 'hepnet', ...CALICO]);
  host(1).dockerOk(['run', '-d', '--net', 'hepnet', '--name', 'pub', '-p', '8080:80', 'busybox:local', 'sh', '-c', 'nc -ll -p 80 -e echo hello']);
  host(2).dockerOk(['run', '-d', '--net', 'hepnet', '--name', 'c2', 'busybox:local', 'sleep', '100000']);
  const addressOf = (n: number, name: string): string => JSON.parse(host(n).dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.hepnet}}', name])).IPAddress;
  pubAddress = addressOf(1, 'pub');
  c2Address = addressOf(2, 'c2');
  await until('published port reachable', () => published(2, 8080), 15_000);
}, 180_000);

afterAll(() => {
  for (const server of servers) server.kill();
});

afterEach(async () => {
  for (const key of written.splice(0)) await etcdRetrying(() => cluster.ctx.etcd.deleteRange({ key: Buffer.from(key) }));
  await until('host endpoint gone', () => connects(2, address(1), 8000) && published(2, 8080), 10_000);
});

describe('host endpoints, real packets', () => {
  it('a host endpoint on eth0 denies what no policy allows, but the failsafes (SSH, BGP); a policy by label opens a port; removing it restores all', async () => {
    expect([8000, 9000, 22].map((p) => connects(2, address(1), p))).toEqual([true, true, true]);
    await apply(gateway());
    await until('default deny', () => !connects(2, address(1), 8000), 5_000);
    expect(connects(3, address(1), 9000)).toBe(false);
    // Failsafes: SSH and BGP still open, the BIRD sessions stay up, new BGP connections get through.
    expect(connects(2, address(1), 22)).toBe(true);
    expect(connects(3, address(1), 179)).toBe(true);
    // Forwarded traffic to a workload (the published port) is not the host endpoint's business.
    expect(published(3, 8080)).toBe(true);
    // A policy selecting the endpoint by its label.
    await apply(gnp('gateway-in', { selector: "role == 'gateway'", ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [9000] } }] }));
    await until('the policy opens 9000', () => connects(2, address(1), 9000), 5_000);
    expect(connects(2, address(1), 8000)).toBe(false);
    // A wrong policy denying everything cannot cut SSH off.
    await apply(gnp('deny-all', { order: 1, selector: "role == 'gateway'", ingress: [{ action: 'Deny' }] }));
    await until('the deny holds', () => !connects(2, address(1), 9000), 5_000);
    expect(connects(2, address(1), 22)).toBe(true);
    expect(connects(3, address(1), 179)).toBe(true);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(established(1)).toBe(2);
    await remove(`${RESOURCES}hostendpoints/gateway`);
    await until('no host endpoint: all open', () => connects(2, address(1), 8000), 5_000);
    expect(connects(3, address(1), 9000)).toBe(true);
  });

  it('a preDNAT policy closes a published port to one source host and leaves it open to another', async () => {
    expect(published(2, 8080) && published(3, 8080)).toBe(true);
    // No interface name: the daemon finds eth0 by the address.
    await apply(
      gateway(true),
      gnp('no-published-from-2', {
        selector: "role == 'gateway'",
        preDNAT: true,
        applyOnForward: true,
        ingress: [{ action: 'Deny', protocol: 'TCP', source: { nets: [`${address(2)}/32`] }, destination: { ports: [8080] } }],
      }),
    );
    await until('host 2 shut out', () => !published(2, 8080), 5_000);
    expect(published(3, 8080)).toBe(true);
    const mangle = host(1).onHost(['iptables-save', '-t', 'mangle']).stdout;
    expect(mangle).toMatch(/-A cali-pi-.* -s 10\.63\.0\.2\/32 .*--dports 8080 -j DROP/);
    expect(mangle).toContain('-A cali-from-host-endpoint -i eth0 -g cali-fh-eth0');
    await remove(`${RESOURCES}hostendpoints/gateway`);
    await until('host 2 back', () => published(2, 8080), 5_000);
  });

  it('doNotTrack policies run in raw, before conntrack and any other policy: a Deny beats a normal Allow; an Allow leaves no conntrack entry', async () => {
    await apply(gateway(), gnp('gateway-in', { selector: "role == 'gateway'", ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [9000] } }] }));
    await until('9000 allowed', () => connects(2, address(1), 9000), 5_000);
    // Tracked as usual: host 3's connection is in host 1's conntrack.
    const before = connection(3, address(1), 9000);
    expect(before).toBeDefined();
    expect(tracked(address(3), before!, 9000)).toBe(true);
    const drops = rawDrops();
    await apply(
      gnp('untracked-deny', {
        selector: "role == 'gateway'",
        doNotTrack: true,
        applyOnForward: true,
        ingress: [{ action: 'Deny', protocol: 'TCP', source: { nets: [`${address(2)}/32`] }, destination: { ports: [9000] } }],
      }),
    );
    await until('the untracked deny holds', () => !connects(2, address(1), 9000), 5_000);
    expect(connects(3, address(1), 9000)).toBe(true);
    expect(rawDrops()).toBeGreaterThan(drops);
    // Untracked Allow both ways (the replies are not tracked either): accepted, and never in conntrack.
    await apply(
      gnp('untracked-deny', {
        selector: "role == 'gateway'",
        doNotTrack: true,
        applyOnForward: true,
        ingress: [{ action: 'Allow', protocol: 'TCP', source: { nets: [`${address(2)}/32`] }, destination: { ports: [9000] } }],
        egress: [{ action: 'Allow', protocol: 'TCP', destination: { nets: [`${address(2)}/32`] }, source: { ports: [9000] } }],
      }),
    );
    await until('the untracked allow holds', () => connects(2, address(1), 9000), 5_000);
    const untracked = connection(2, address(1), 9000);
    expect(untracked).toBeDefined();
    expect(tracked(address(2), untracked!, 9000)).toBe(false);
    expect(host(1).onHost(['iptables-save', '-t', 'raw']).stdout).toMatch(/-A cali-PREROUTING .*-j CT --notrack/);
  });

  it('applyOnForward: traffic forwarded through the host endpoint (container to container across hosts) meets those policies, and only those', async () => {
    const c2ToPub = (): boolean => host(2).docker(['exec', 'c2', 'sh', '-c', `nc -w 2 ${pubAddress} 80 </dev/null`], 15_000).stdout.includes('hello');
    await until('c2 reaches pub', c2ToPub, 10_000);
    await apply(gateway(), gnp('gateway-in', { selector: "role == 'gateway'", ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [9000] } }] }));
    await until('the host endpoint holds', () => !connects(2, address(1), 8000), 5_000);
    // An ordinary policy of the host endpoint: forwarded traffic is not its business.
    expect(c2ToPub()).toBe(true);
    await apply(
      gnp('forward-guard', {
        order: 1,
        selector: "role == 'gateway'",
        applyOnForward: true,
        ingress: [{ action: 'Deny', protocol: 'TCP', source: { nets: [`${c2Address}/32`] }, destination: { ports: [80] } }, { action: 'Allow' }],
      }),
    );
    await until('forwarded traffic denied', () => !c2ToPub(), 5_000);
    expect(host(1).onHost(['iptables-save', '-t', 'filter']).stdout).toContain('-A cali-from-hep-forward -i eth0 -g cali-fhfw-eth0');
    // The rest is allowed by the policy (a Pass would meet the end of the endpoint's profiles: none, so
    // dropped, as in Calico), and then still meets the workload's own chain: the published port, forwarded
    // too, stays open from host 3.
    expect(published(3, 8080)).toBe(true);
  });
});
