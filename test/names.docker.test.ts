import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterForSuite, Cluster, until } from './helpers/cluster.js';
import { DAEMON, ROOT } from './helpers/daemon.js';
import { docker26Root } from './helpers/docker26.js';
import type { DockerHost } from './helpers/docker-host.js';

/**
 * Container names across hosts: on a Calico network a container resolves the names of containers on
 * other hosts (name, aliases, NAME.NETWORK) in the networks it is on, and every other name exactly as
 * before, through the host's own upstream server: a DNS server in an "outside" namespace here.
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const SUBNET = '10.48.0';
const UPSTREAM = `${SUBNET}.53`;
const OUTSIDE_RECORDS = { 'outside.example': '192.0.2.7' };
const SLEEPER = ['busybox:local', 'sleep', '100000'];

/** A DNS server in a namespace of its own on the cluster's underlay: the hosts' upstream. */
function startUpstream(cluster: Cluster): ChildProcess {
  const netns = cluster.underlay.namespace('dns', `${UPSTREAM}/24`);
  return spawn('ip', ['netns', 'exec', netns, process.execPath, join(ROOT, 'test/helpers/dns-server.mjs'), UPSTREAM, '53', JSON.stringify(OUTSIDE_RECORDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** What `nslookup NAME` in a container answers: its addresses, or [] when the name is not found. */
function lookup(on: DockerHost, container: string, name: string): string[] {
  const out = on.docker(['exec', container, 'nslookup', '-type=a', name], 15_000).stdout;
  const answer = out.split(/Non-authoritative answer:|Name:/).slice(1).join('\n');
  return [...answer.matchAll(/Address: (\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!).sort();
}

function addressOf(on: DockerHost, container: string, network: string): string {
  return JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, container])).IPAddress;
}

const meshUp = (h: DockerHost, peers: number): boolean => (h.calicoctl(['node', 'status']).stdout.match(/Established/g) ?? []).length === peers;

/** How long after `since` a poll that started then first saw `probe` hold. */
async function firstSeen(probe: () => boolean, since: number, limitMs = 10_000): Promise<number> {
  for (;;) {
    const started = Date.now();
    if (probe()) return started - since;
    if (started - since > limitMs) throw new Error('never seen');
  }
}

describe('Docker 20.10, local scope, three hosts', () => {
  let upstream: ChildProcess | undefined;
  const cluster = clusterForSuite({
    name: 'dn',
    hosts: 3,
    subnet: SUBNET,
    pools: [{ cidr: '10.54.0.0/16', name: 'dn-pool' }],
    env: { CALICO_LIBNETWORK_LABEL_ENDPOINTS: 'true' },
    hostOptions: () => ({ resolvConf: `nameserver ${UPSTREAM}\n` }),
  });
  const host = (n: number): DockerHost => cluster.hosts[n - 1]!;

  beforeAll(async () => {
    upstream = startUpstream(cluster);
    await new Promise((resolve) => upstream!.stdout!.once('data', resolve));
    for (const h of cluster.hosts) await until(`${h.node} mesh`, () => meshUp(h, 2), 30_000);
    for (const h of cluster.hosts) h.dockerOk(['network', 'create', 'cal_net1', ...CALICO]);
    for (const h of [host(1), host(3)]) h.dockerOk(['network', 'create', 'cal_net2', ...CALICO]);
  }, 90_000);
  afterAll(() => upstream?.kill('SIGKILL'));

  it('resolves a container on another host by name, alias and NAME.NETWORK, and pings it by name', async () => {
    host(1).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'bbox1', ...SLEEPER]);
    host(2).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'bbox2', '--network-alias', 'db', '--label', 'org.projectcalico.label.role=db', ...SLEEPER]);
    const bbox2 = addressOf(host(2), 'bbox2', 'cal_net1');
    for (const name of ['bbox2', 'db', 'bbox2.cal_net1', 'db.cal_net1']) await until(`bbox1 resolves ${name}`, () => lookup(host(1), 'bbox1', name).join() === bbox2, 5_000);
    expect(host(1).docker(['exec', 'bbox1', 'ping', '-c', '2', 'bbox2'], 15_000).status).toBe(0);
    // The endpoint knows its container: its name in calicoctl's WORKLOAD column, its Calico labels.
    const table = host(1).calicoctl(['get', 'workloadendpoints']).stdout;
    expect(table).toMatch(/^WORKLOAD\s+NODE\s+NETWORKS\s+INTERFACE/);
    expect(table).toMatch(new RegExp(`^bbox2\\s+dn2\\s+${bbox2.replace(/\./g, '\\.')}/32\\s+cali`, 'm'));
    const endpoints = (await cluster.endpoints.listEndpoints()).map((e) => e.value);
    expect(endpoints.find((e) => e.spec.workload === 'bbox2')).toMatchObject({ metadata: { labels: { role: 'db' } }, spec: { containerID: expect.stringMatching(/^[0-9a-f]{64}$/) } });
  });

  it('does not answer names of a network the container is not on; other names resolve as before, with the same answer', async () => {
    host(3).dockerOk(['run', '-d', '--net', 'cal_net2', '--name', 'bbox3', ...SLEEPER]);
    host(1).dockerOk(['run', '-d', '--net', 'cal_net2', '--name', 'bbox4', ...SLEEPER]);
    const bbox3 = addressOf(host(3), 'bbox3', 'cal_net2');
    await until('bbox4 resolves bbox3', () => lookup(host(1), 'bbox4', 'bbox3').join() === bbox3, 5_000);
    expect(lookup(host(1), 'bbox1', 'bbox3')).toEqual([]);
    expect(lookup(host(1), 'bbox1', 'bbox3.cal_net2')).toEqual([]);
    expect(lookup(host(3), 'bbox3', 'bbox2')).toEqual([]);
    // Upstream names: the same answer in the container as on the host itself, from the same server.
    const direct = host(1).onHost(['busybox', 'nslookup', 'outside.example', UPSTREAM]).stdout;
    expect(direct).toContain('192.0.2.7');
    expect(lookup(host(1), 'bbox1', 'outside.example')).toEqual(['192.0.2.7']);
    expect(host(1).docker(['exec', 'bbox1', 'nslookup', 'nowhere.example']).stdout + host(1).docker(['exec', 'bbox1', 'nslookup', 'nowhere.example']).stderr).toMatch(/NXDOMAIN/);
    // Names on the same host are still Docker's own.
    host(1).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'bbox1b', ...SLEEPER]);
    expect(lookup(host(1), 'bbox1', 'bbox1b')).toEqual([addressOf(host(1), 'bbox1b', 'cal_net1')]);
  });

  it('a new container resolves on every host within 1 s of `docker run -d`, and a removed one stops within 1 s', async () => {
    host(2).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'late', ...SLEEPER]);
    const started = Date.now();
    const address = addressOf(host(2), 'late', 'cal_net1');
    const seen = await firstSeen(() => lookup(host(1), 'bbox1', 'late').join() === address, started);
    expect(seen).toBeLessThanOrEqual(1000);
    expect(lookup(host(1), 'bbox1b', 'late')).toEqual([address]);
    host(2).dockerOk(['rm', '-f', 'late']);
    const removed = Date.now();
    const gone = await firstSeen(() => lookup(host(1), 'bbox1', 'late').length === 0, removed);
    expect(gone).toBeLessThanOrEqual(1000);
  });

  it('names still resolve after the daemon restarts (same ports, the redirects never point at nothing for long)', async () => {
    const bbox2 = addressOf(host(2), 'bbox2', 'cal_net1');
    await host(1).stopDaemon();
    await host(1).startDaemon();
    await until('bbox1 resolves bbox2 again', () => lookup(host(1), 'bbox1', 'bbox2').join() === bbox2, 5_000);
    expect(lookup(host(1), 'bbox1', 'outside.example')).toEqual(['192.0.2.7']);
    // One set of redirects, not one per start.
    const nat = spawnSync('ip', ['netns', 'exec', host(1).netns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' }).stdout;
    expect(nat.match(/--dport 53 -j DNAT/g)).toHaveLength(2);
  });

  it('a container on two networks keeps a default route when it leaves the first, and reaches the second across hosts; any order, nothing left', async () => {
    host(1).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'multi', ...SLEEPER]);
    const peer = addressOf(host(3), 'bbox3', 'cal_net2');
    const routes = (): string => host(1).dockerOk(['exec', 'multi', 'ip', 'route']);
    const reaches = (): boolean => host(1).docker(['exec', 'multi', 'ping', '-c', '1', '-W', '2', peer], 15_000).status === 0;
    const linksBefore = host(1).ip('-o link show').stdout.split('\n').filter((l) => / cali/.test(l)).length;
    for (let round = 0; round < 2; round++) {
      host(1).dockerOk(['network', 'connect', 'cal_net2', 'multi']);
      host(1).dockerOk(['network', 'disconnect', 'cal_net1', 'multi']);
      expect(routes()).toMatch(/^default via 169\.254\.1\.\d+ dev cali\d/m);
      await until('multi reaches bbox3 over cal_net2', reaches, 10_000);
      expect(lookup(host(1), 'multi', 'bbox3')).toEqual([peer]);
      // And back, the other way round: cal_net1 sorts first, so Docker moves the default route to it,
      // and the container's traffic leaves with its cal_net1 address (its routes move with it).
      host(1).dockerOk(['network', 'connect', 'cal_net1', 'multi']);
      expect(routes()).toMatch(/^default via 169\.254\.1\.\d+ dev cali\d/m);
      const reachesBbox2 = (): boolean => host(1).docker(['exec', 'multi', 'ping', '-c', '1', '-W', '2', 'bbox2'], 15_000).status === 0;
      await until('multi reaches bbox2 over cal_net1', reachesBbox2, 10_000);
      host(1).dockerOk(['network', 'disconnect', 'cal_net2', 'multi']);
      expect(routes()).toMatch(/^default via 169\.254\.1\.\d+ dev cali\d/m);
      await until('multi still reaches bbox2', reachesBbox2, 10_000);
    }
    host(1).dockerOk(['rm', '-f', 'multi']);
    await until('no veth left', () => host(1).ip('-o link show').stdout.split('\n').filter((l) => / cali/.test(l)).length === linksBefore - 1, 5_000);
    const left = (await cluster.endpoints.listEndpoints()).filter((e) => e.value.spec.workload === 'multi');
    expect(left).toEqual([]);
  });

  it('`calico-libnetwork uninstall` takes away the routes the host programmed: blackholes, and the routes BIRD learnt', async () => {
    const h3 = host(3);
    const routes = (): string => h3.ip('route').stdout;
    expect(routes()).toMatch(/^blackhole 10\.54\.\S+ proto static/m);
    expect(routes()).toMatch(/ proto bird /);
    await h3.stopDaemon();
    const [command, ...args] = h3.enter([process.execPath, DAEMON, 'uninstall']);
    const result = spawnSync('env', [`NODENAME=${h3.node}`, 'ETCD_ENDPOINTS=http://127.0.0.1:2379', command!, ...args], { encoding: 'utf8', timeout: 30_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/blackholes of this host's blocks and \d+ route\(s\) BIRD had learnt/);
    expect(routes()).not.toMatch(/blackhole|proto bird/);
    expect(spawnSync('ip', ['netns', 'exec', h3.netns, 'iptables-save'], { encoding: 'utf8' }).stdout).not.toMatch(/cali/);
    // Back, so that Docker can remove the host's containers at the end without waiting for a plugin.
    await h3.startDaemon();
  });
});

describe('Docker 26, local scope; one host resolving through a loopback stub (systemd-resolved)', () => {
  const engineRoot = docker26Root();
  const subnet = '10.49.0';
  const upstreamAddress = `${subnet}.53`;
  let upstream: ChildProcess | undefined;
  const cluster = clusterForSuite({
    name: 'd26n',
    hosts: 2,
    subnet,
    pools: [{ cidr: '10.55.0.0/16', name: 'd26n-pool' }],
    // Host 1 as most hosts are; host 2 as a systemd-resolved host: its file names only 127.0.0.53, and
    // Docker is given the real upstream (daemon.json "dns", here the same flag), as the README says.
    hostOptions: (n) => ({
      engineRoot,
      ...(n === 1 ? { resolvConf: `nameserver ${upstreamAddress}\n` } : { resolvConf: 'nameserver 127.0.0.53\n', dockerdArgs: ['--dns', upstreamAddress] }),
    }),
  });
  const host = (n: number): DockerHost => cluster.hosts[n - 1]!;

  beforeAll(async () => {
    const netns = cluster.underlay.namespace('dns', `${upstreamAddress}/24`);
    upstream = spawn('ip', ['netns', 'exec', netns, process.execPath, join(ROOT, 'test/helpers/dns-server.mjs'), upstreamAddress, '53', JSON.stringify(OUTSIDE_RECORDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => upstream!.stdout!.once('data', resolve));
    // Host 2's own stub on loopback knows one name of its own: the host's resolution stays its own.
    host(2).spawnInside([process.execPath, join(ROOT, 'test/helpers/dns-server.mjs'), '127.0.0.53', '53', JSON.stringify({ 'stub.example': '192.0.2.53' })]);
    for (const h of cluster.hosts) await until(`${h.node} mesh`, () => meshUp(h, 1), 30_000);
    for (const h of cluster.hosts) h.dockerOk(['network', 'create', 'cal_net1', ...CALICO]);
  }, 90_000);
  afterAll(() => upstream?.kill('SIGKILL'));

  it('names resolve across hosts both ways, upstream names too, with no change to Docker on the first host', async () => {
    expect(host(1).dockerOk(['version', '--format', '{{.Server.Version}}'])).toMatch(/^26\./);
    host(1).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'bbox1', ...SLEEPER]);
    host(2).dockerOk(['run', '-d', '--net', 'cal_net1', '--name', 'bbox2', '--network-alias', 'db', ...SLEEPER]);
    const bbox1 = addressOf(host(1), 'bbox1', 'cal_net1');
    const bbox2 = addressOf(host(2), 'bbox2', 'cal_net1');
    await until('bbox1 resolves bbox2', () => lookup(host(1), 'bbox1', 'bbox2').join() === bbox2, 5_000);
    await until('bbox2 resolves bbox1', () => lookup(host(2), 'bbox2', 'bbox1.cal_net1').join() === bbox1, 5_000);
    expect(lookup(host(1), 'bbox1', 'db')).toEqual([bbox2]);
    expect(host(1).docker(['exec', 'bbox1', 'ping', '-c', '2', 'bbox2'], 15_000).status).toBe(0);
    expect(lookup(host(1), 'bbox1', 'outside.example')).toEqual(['192.0.2.7']);
    expect(lookup(host(2), 'bbox2', 'outside.example')).toEqual(['192.0.2.7']);
    // The host itself still resolves through its own stub.
    const [command, ...args] = host(2).enter(['busybox', 'nslookup', 'stub.example']);
    expect(spawnSync(command!, args, { encoding: 'utf8', timeout: 10_000 }).stdout).toContain('192.0.2.53');
  });
});

describe('Docker 20.10, global scope (cluster store)', () => {
  const subnet = '10.56.0';
  let upstream: ChildProcess | undefined;
  const cluster = clusterForSuite({
    name: 'gsn',
    hosts: 2,
    subnet,
    etcdV2: true,
    pools: [{ cidr: '10.57.0.0/16', name: 'gsn-pool' }],
    env: { CALICO_LIBNETWORK_SCOPE: 'global' },
    hostOptions: (n, c) => ({
      resolvConf: `nameserver ${subnet}.53\n`,
      relayEtcdPort: true,
      dockerdArgs: [`--cluster-store=etcd://127.0.0.1:${c.etcd.clientPort}`, `--cluster-advertise=${subnet}.${n}:2376`],
    }),
  });
  const host = (n: number): DockerHost => cluster.hosts[n - 1]!;

  beforeAll(async () => {
    const netns = cluster.underlay.namespace('dns', `${subnet}.53/24`);
    upstream = spawn('ip', ['netns', 'exec', netns, process.execPath, join(ROOT, 'test/helpers/dns-server.mjs'), `${subnet}.53`, '53', JSON.stringify(OUTSIDE_RECORDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => upstream!.stdout!.once('data', resolve));
    for (const h of cluster.hosts) await until(`${h.node} mesh`, () => meshUp(h, 1), 30_000);
  }, 90_000);
  afterAll(() => upstream?.kill('SIGKILL'));

  it('a network made once: its containers on both hosts resolve each other', async () => {
    host(1).dockerOk(['network', 'create', 'gnames', ...CALICO]);
    await until('the network on host 2', () => host(2).docker(['network', 'inspect', 'gnames']).status === 0, 20_000);
    host(1).dockerOk(['run', '-d', '--net', 'gnames', '--name', 'ga', ...SLEEPER]);
    host(2).dockerOk(['run', '-d', '--net', 'gnames', '--name', 'gb', ...SLEEPER]);
    const gb = addressOf(host(2), 'gb', 'gnames');
    const ga = addressOf(host(1), 'ga', 'gnames');
    await until('ga resolves gb', () => lookup(host(1), 'ga', 'gb').join() === gb, 5_000);
    await until('gb resolves ga', () => lookup(host(2), 'gb', 'ga.gnames').join() === ga, 5_000);
    expect(host(1).docker(['exec', 'ga', 'ping', '-c', '2', 'gb'], 15_000).status).toBe(0);
    expect(lookup(host(2), 'gb', 'outside.example')).toEqual(['192.0.2.7']);
    // The endpoint on the host that did not create the network knows the network's name.
    const endpoints = (await cluster.endpoints.listEndpoints()).map((e) => e.value);
    expect(endpoints.find((e) => e.spec.workload === 'gb')?.metadata.annotations?.['libnetwork.projectcalico.org/network']).toBe('gnames');
  });
});
