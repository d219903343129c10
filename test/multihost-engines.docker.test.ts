import { describe, expect, it } from 'vitest';
import { clusterForSuite, routesOf, until } from './helpers/cluster.js';
import { docker26Root } from './helpers/docker26.js';
import type { DockerHost } from './helpers/docker-host.js';

/**
 * The two ways Docker shares a network between hosts: Docker 20.10's global scope (one network, one
 * ID, kept in a cluster store on etcd's v2 API), and local scope on a current engine (Docker 26,
 * which has no cluster store: each host creates the network of that name).
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const SERVER = '(while true; do echo hello | nc -l -p 8080; done) & sleep 100000';

function run(on: DockerHost, name: string, network: string): string {
  on.dockerOk(['run', '-d', '--net', network, '--name', name, 'busybox:local', 'sh', '-c', SERVER]);
  return JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])).IPAddress;
}

const ping = (on: DockerHost, from: string, to: string): boolean => on.docker(['exec', from, 'ping', '-c', '1', '-W', '2', to], 15_000).status === 0;
const tcp = (on: DockerHost, from: string, to: string): boolean => on.docker(['exec', from, 'sh', '-c', `nc -w 2 ${to} 8080 </dev/null`], 15_000).stdout.includes('hello');
const meshUp = (h: DockerHost): boolean => /Established/.test(h.calicoctl(['node', 'status']).stdout);

describe('Docker 20.10, global scope (cluster store on etcd v2)', () => {
  const cluster = clusterForSuite({
    name: 'gs',
    hosts: 2,
    etcdV2: true,
    pools: [{ cidr: '10.51.0.0/16', name: 'gs-pool' }],
    env: { CALICO_LIBNETWORK_SCOPE: 'global' },
    hostOptions: (n, c) => ({ relayEtcdPort: true, dockerdArgs: [`--cluster-store=etcd://127.0.0.1:${c.etcd.clientPort}`, `--cluster-advertise=10.47.0.${n}:2376`] }),
  });

  it('a network made once is seen on every host with one ID and one profile; containers on both reach each other', async () => {
    const [h1, h2] = cluster.hosts as [DockerHost, DockerHost];
    for (const h of cluster.hosts) await until(`${h.node} BGP`, () => meshUp(h), 30_000);
    const id = h1.dockerOk(['network', 'create', 'gnet', ...CALICO]);
    await until('the network on host 2', () => h2.docker(['network', 'inspect', '--format', '{{.Id}} {{.Scope}}', 'gnet']).stdout.trim() === `${id} global`, 20_000);
    const a = run(h1, 'ga', 'gnet');
    const b = run(h2, 'gb', 'gnet');
    await until('ga pings gb', () => ping(h1, 'ga', b), 15_000);
    expect(tcp(h2, 'gb', a)).toBe(true);
    const profile = (await cluster.endpoints.getProfile('gnet'))!.value;
    expect(Object.values(JSON.parse(profile.metadata.annotations!['libnetwork.projectcalico.org/networks']!))).toEqual(expect.arrayContaining([id]));
    expect(profile.spec.labelsToApply).toEqual({ gnet: '' });
    // Removed once, the network is gone on every host, and its profile with it.
    h1.dockerOk(['rm', '-f', 'ga']);
    h2.dockerOk(['rm', '-f', 'gb']);
    h1.dockerOk(['network', 'rm', 'gnet']);
    await until('profile gone', async () => (await cluster.endpoints.getProfile('gnet')) === null, 10_000);
  });
});

describe('Docker 26, local scope', () => {
  const engineRoot = docker26Root();
  const cluster = clusterForSuite({ name: 'd26', hosts: 2, pools: [{ cidr: '10.52.0.0/16', name: 'd26-pool' }], hostOptions: () => ({ engineRoot }) });

  it('each host creates the network; containers on the two hosts ping and talk TCP; one profile', async () => {
    const [h1, h2] = cluster.hosts as [DockerHost, DockerHost];
    expect(h1.dockerOk(['version', '--format', '{{.Server.Version}}'])).toMatch(/^26\./);
    for (const h of cluster.hosts) await until(`${h.node} BGP`, () => meshUp(h), 30_000);
    for (const h of cluster.hosts) h.dockerOk(['network', 'create', 'net26', ...CALICO]);
    const a = run(h1, 'a26', 'net26');
    const b = run(h2, 'b26', 'net26');
    await until('a26 pings b26', () => ping(h1, 'a26', b), 15_000);
    expect(tcp(h2, 'b26', a)).toBe(true);
    expect(routesOf(h2.netns)).toMatch(new RegExp(`${a.split('.').slice(0, 2).join('\\.')}\\.\\d+\\.\\d+/26 via 10\\.47\\.0\\.1 dev eth0 proto bird`));
    const holders = JSON.parse((await cluster.endpoints.getProfile('net26'))!.value.metadata.annotations!['libnetwork.projectcalico.org/networks']!);
    expect(Object.keys(holders).sort()).toEqual(['d261', 'd262']);
  });
});
