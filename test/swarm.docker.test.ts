import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inUseCount } from '../src/domain/allocation-block.js';
import { cidrContains, parseCidr, parseIp } from '../src/domain/cidr.js';
import { clusterForSuite, until } from './helpers/cluster.js';
import type { DockerHost } from './helpers/docker-host.js';
import { docker26Root } from './helpers/docker26.js';
import { buildPlugin, publishAndInstall } from './helpers/managed-plugin.js';
import { oneAtATime } from './helpers/one-at-a-time.js';
import { TestRegistry } from './helpers/registry.js';

/**
 * Swarm services on a Calico network: the managed plugin (built here, pushed to a real registry,
 * installed on three Docker 26 hosts), a swarm of one manager and two workers, a config-only network
 * naming the plugin's IPAM on each host, and a swarm-scope network made from it.
 */

const engineRoot = docker26Root();
const registry = new TestRegistry('10.49.0.100');
const PLUGIN = `${registry.host}/calico-libnetwork:swarm`;
const NET = 'swnet';
const SERVICE = 'swsvc';
/** busybox's sleep, as PID 1, ignores SIGTERM: without this each task takes Docker's 10 s grace period to stop. */
const FAST_STOP = ['--stop-grace-period', '1s'];

// Before the hosts start: the other file that builds the plugin waits for this one, and the other way round.
oneAtATime('managed-plugin');
const cluster = clusterForSuite({
  name: 'sw',
  hosts: 3,
  subnet: '10.49.0',
  pools: [{ cidr: '10.54.0.0/16', name: 'sw-pool' }],
  hostOptions: () => ({ engineRoot, daemon: false, dockerdArgs: ['--insecure-registry', registry.host] }),
});
const hosts = (): [DockerHost, DockerHost, DockerHost] => cluster.hosts as [DockerHost, DockerHost, DockerHost];
const manager = (): DockerHost => hosts()[0];

const settings = (host: DockerHost, n: number): string[] => [
  'ETCD_ENDPOINTS=http://127.0.0.1:2379',
  `NODENAME=${host.node}`,
  `IP=10.49.0.${n}`,
  // Tasks' org.projectcalico.label.* container labels onto their endpoints, for policy by label.
  'CALICO_LIBNETWORK_LABEL_ENDPOINTS=true',
  `docker-socket.source=${host.dockerSocket}`,
];
const POLICY_SERVICES = ['swdb', 'swweb', 'swother'];

/** Addresses Calico has allocated, per block: its CIDR and the host it is affine to. */
async function blocks(): Promise<{ cidr: string; node: string; used: number }[]> {
  const snapshot = await cluster.ctx.store.snapshot();
  return snapshot.blocks.map((b) => ({ cidr: b.value.cidr, node: (b.value.affinity ?? '').replace(/^host:/, ''), used: inUseCount(b.value) }));
}
const allocated = async (): Promise<number> => (await blocks()).reduce((sum, b) => sum + b.used, 0);

interface Task {
  name: string;
  node: string;
  address: string;
}

/** The service's running tasks, from each host's own containers: name, host and Calico address. */
function tasks(service = SERVICE): Task[] {
  return hosts().flatMap((host) =>
    host
      .docker(['ps', '--filter', `label=com.docker.swarm.service.name=${service}`, '--format', '{{.Names}}'])
      .stdout.split('\n')
      .filter(Boolean)
      .map((name) => ({ name, node: host.node, address: host.dockerOk(['inspect', '--format', `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, name]) })),
  );
}
const hostOf = (task: Task): DockerHost => hosts().find((h) => h.node === task.node)!;
const ping = (from: Task, to: string): boolean => hostOf(from).docker(['exec', from.name, 'ping', '-c', '1', '-W', '2', to], 15_000).status === 0;

/** Waits until the service runs exactly `replicas` tasks, each with an address. */
const converged = (replicas: number, limitMs = 60_000, service = SERVICE): Promise<Task[]> =>
  until(`${replicas} tasks of ${service} running`, () => {
    const now = tasks(service);
    return now.length === replicas && now.every((t) => t.address) && now;
  }, limitMs);

describe('swarm services on a Calico network (managed plugin, Docker 26)', () => {
  beforeAll(async () => {
    await registry.start(cluster.underlay);
    buildPlugin(PLUGIN, engineRoot, manager());
    await publishAndInstall(PLUGIN, manager(), hosts().map((host, i) => ({ host, settings: settings(host, i + 1) })));
  }, 400_000);

  afterAll(async () => {
    const h1 = manager();
    h1?.docker(['service', 'rm', SERVICE, 'swvip', ...POLICY_SERVICES]);
    h1?.docker(['stack', 'rm', 'swst']);
    for (const host of cluster.hosts) {
      host.docker(['swarm', 'leave', '--force'], 30_000);
      await host.clear();
      for (const id of host.docker(['network', 'ls', '-q', '--filter', `driver=${PLUGIN}`]).stdout.split('\n').filter(Boolean)) host.docker(['network', 'rm', id]);
      host.docker(['network', 'rm', `${NET}-cfg`]);
      host.docker(['plugin', 'rm', '-f', PLUGIN]);
    }
    registry.stop();
  }, 120_000);

  it('a swarm network made from config-only networks: tasks on every host, addresses from their own host\'s blocks, reaching each other', async () => {
    const [h1, h2, h3] = hosts();
    h1.dockerOk(['swarm', 'init', '--advertise-addr', h1.address]);
    const token = h1.dockerOk(['swarm', 'join-token', '-q', 'worker']);
    for (const worker of [h2, h3]) worker.dockerOk(['swarm', 'join', '--advertise-addr', worker.address, '--token', token, `${h1.address}:2377`]);
    await until('three nodes ready', () => h1.dockerOk(['node', 'ls', '--format', '{{.Status}}']).split('\n').filter((s) => s === 'Ready').length === 3, 30_000);
    // Two managers and a worker: host 2 is promoted (a later test creates services from it).
    h1.dockerOk(['node', 'promote', h2.dockerOk(['info', '--format', '{{.Swarm.NodeID}}'])]);
    await until('host 2 a manager', () => h2.docker(['info', '--format', '{{.Swarm.ControlAvailable}}']).stdout.trim() === 'true', 30_000);

    // Without --config-from swarm's node-local networks would use Docker's default IPAM on each node.
    for (const host of hosts()) host.dockerOk(['network', 'create', '--config-only', '--ipam-driver', PLUGIN, `${NET}-cfg`]);
    h1.dockerOk(['network', 'create', '--driver', PLUGIN, '--scope', 'swarm', '--config-from', `${NET}-cfg`, '--attachable', NET]);

    const started = Date.now();
    h1.dockerOk(['service', 'create', '--detach', '--no-resolve-image', '--name', SERVICE, '--replicas', '6', '--endpoint-mode', 'dnsrr', '--network', NET, ...FAST_STOP, 'busybox:local', 'sleep', '100000']);
    const running = await converged(6, 90_000);
    console.log(`6 tasks running in ${Date.now() - started} ms`);
    expect(new Set(running.map((t) => t.node)).size).toBe(3);
    const known = await blocks();
    for (const task of running) {
      const block = known.find((b) => cidrContains(parseCidr(b.cidr), parseIp(task.address)));
      expect(block?.node, `${task.name} at ${task.address}`).toBe(task.node);
    }
    expect(await allocated()).toBe(6);

    // Every task reaches one task on each other host, routed by the plugins' BIRD.
    for (const from of running) {
      for (const to of running.filter((t) => t.node !== from.node)) {
        if (to === running.find((t) => t.node === to.node)) await until(`${from.name} pings ${to.name}`, () => ping(from, to.address), 30_000);
      }
    }
    console.log(`all pings done at ${Date.now() - started} ms`);
  }, 180_000);

  it('names: from another host, the service (dnsrr), tasks.<service> and a task\'s full name resolve to task addresses', async () => {
    const running = tasks();
    const from = running[0]!;
    const remote = running.find((t) => t.node !== from.node)!;
    const lookup = (name: string): string => hostOf(from).docker(['exec', from.name, 'nslookup', name], 15_000).stdout;
    await until(`${SERVICE} resolves to all 6 tasks`, () => running.every((t) => lookup(SERVICE).includes(t.address)), 30_000);
    expect(running.every((t) => lookup(`tasks.${SERVICE}`).includes(t.address))).toBe(true);
    await until(`${remote.name} resolves to ${remote.address}`, () => lookup(remote.name).includes(remote.address), 30_000);
    expect(ping(from, SERVICE)).toBe(true);
  });

  it('the tasks\' endpoints carry the network\'s profile', async () => {
    const profiles = async (): Promise<string[][]> => (await cluster.endpoints.listEndpoints()).map((e) => e.value.spec.profiles);
    await until('6 endpoints on the profile swnet', async () => (await profiles()).filter((p) => p.join() === NET).length === 6, 20_000).catch(async (error) => {
      throw new Error(`${(error as Error).message}: ${JSON.stringify(await profiles())}`);
    });
  });

  it('a rolling update and a drained node: each replaced task\'s address released, none left on the drained host', async () => {
    const [h1, , h3] = hosts();
    const before = tasks().map((t) => t.name);
    h1.dockerOk(['service', 'update', '--detach', '--force', '--update-parallelism', '3', '--update-monitor', '1s', SERVICE]);
    await until('the update completed', () => h1.docker(['service', 'inspect', '--format', '{{.UpdateStatus.State}}', SERVICE]).stdout.trim() === 'completed', 90_000);
    const updated = await converged(6);
    expect(updated.filter((t) => before.includes(t.name))).toEqual([]);
    await until('6 addresses in etcd after the update', async () => (await allocated()) === 6, 30_000);

    // Swarm names nodes by hostname, which the test hosts share: drain by node ID.
    h1.dockerOk(['node', 'update', '--availability', 'drain', h3.dockerOk(['info', '--format', '{{.Swarm.NodeID}}'])]);
    const drained = await until('no task on the drained host', async () => {
      const now = await converged(6);
      return now.every((t) => t.node !== h3.node) && now;
    }, 60_000);
    await until('6 addresses, none on the drained host', async () => {
      const known = await blocks();
      return known.reduce((sum, b) => sum + b.used, 0) === 6 && known.filter((b) => b.node === h3.node).every((b) => b.used === 0);
    }, 30_000);
    expect(new Set(drained.map((t) => t.node))).toEqual(new Set([hosts()[0].node, hosts()[1].node]));
  }, 180_000);

  it('scale down then rm: the addresses in etcd drop to what remains, then to none', async () => {
    const h1 = manager();
    h1.dockerOk(['service', 'scale', '--detach', `${SERVICE}=2`]);
    await converged(2);
    await until('2 addresses left in etcd', async () => (await allocated()) === 2, 30_000);
    h1.dockerOk(['service', 'rm', SERVICE]);
    await until('no task left', () => tasks().length === 0, 30_000);
    await until('no address left in etcd', async () => (await allocated()) === 0, 30_000);
  });

  it('VIP mode (swarm\'s default) on a node-local network: no virtual IP; the service name resolves to the tasks, as with dnsrr', async () => {
    const h1 = manager();
    h1.dockerOk(['service', 'create', '--detach', '--no-resolve-image', '--name', 'swvip', '--replicas', '2', '--network', NET, ...FAST_STOP, 'busybox:local', 'sleep', '100000']);
    const running = await converged(2, 60_000, 'swvip');
    const endpoint = JSON.parse(h1.dockerOk(['service', 'inspect', '--format', '{{json .Endpoint}}', 'swvip']));
    expect(endpoint.Spec.Mode).toBe('vip');
    expect(endpoint.VirtualIPs.map((v: { Addr?: string }) => v.Addr ?? '')).toEqual(['']);
    const from = running.find((t) => t.node !== running[1]!.node) ?? running[0]!;
    const lookup = (): string => hostOf(from).docker(['exec', from.name, 'nslookup', 'swvip'], 15_000).stdout;
    await until('swvip resolves to both tasks', () => running.every((t) => lookup().includes(t.address)), 30_000);
    expect(ping(from, 'swvip')).toBe(true);
    h1.dockerOk(['service', 'rm', 'swvip']);
    await until('no swvip task left', () => tasks('swvip').length === 0, 30_000);
    await until('no address left in etcd', async () => (await allocated()) === 0, 30_000);
  });

  it('docker stack deploy: two services on the network, one resolving the other by its name in the stack; stack rm releases every address', async () => {
    const h1 = manager();
    const service = (replicas: number): string =>
      `    image: busybox:local\n    command: sleep 100000\n    stop_grace_period: 1s\n    networks: [${NET}]\n    deploy: { replicas: ${replicas}, endpoint_mode: dnsrr }\n`;
    const compose = join(h1.dir, 'stack.yml');
    writeFileSync(compose, `version: "3.8"\nservices:\n  a:\n${service(2)}  b:\n${service(1)}networks:\n  ${NET}:\n    external: true\n`);
    h1.dockerOk(['stack', 'deploy', '--resolve-image', 'never', '-c', compose, 'swst']);
    const a = await converged(2, 60_000, 'swst_a');
    const [b] = await converged(1, 60_000, 'swst_b');
    await until('a resolves to both of its tasks from b', () => {
      const answer = hostOf(b!).docker(['exec', b!.name, 'nslookup', 'a'], 15_000).stdout;
      return a.every((t) => answer.includes(t.address));
    }, 30_000);
    expect(await allocated()).toBe(3);
    h1.dockerOk(['stack', 'rm', 'swst']);
    await until('no stack task left', () => tasks('swst_a').length + tasks('swst_b').length === 0, 30_000);
    await until('no address left in etcd', async () => (await allocated()) === 0, 30_000);
  });

  it('policy between services, by their tasks\' labels: only web reaches db (across hosts); other still reaches web; services made on the second manager', async () => {
    const [, h2] = hosts();
    const create = (name: string, role: string): void =>
      void h2.dockerOk(['service', 'create', '--detach', '--no-resolve-image', '--name', name, '--replicas', '2', '--endpoint-mode', 'dnsrr', '--network', NET, '--container-label', `org.projectcalico.label.role=${role}`, ...FAST_STOP, 'busybox:local', 'sleep', '100000']);
    create('swdb', 'db');
    create('swweb', 'web');
    create('swother', 'other');
    const [db, web, other] = await Promise.all([converged(2, 60_000, 'swdb'), converged(2, 60_000, 'swweb'), converged(2, 60_000, 'swother')]);
    const policy = 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db-from-web}\nspec:\n  selector: role == "db"\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source: {selector: role == "web"}\n';
    const applied = h2.calicoctl(['apply', '-f', '-'], policy);
    expect(applied.status, applied.stderr).toBe(0);
    // Every pair across hosts where there is one (tasks spread, so there is).
    const pairs = (from: Task[], to: Task[]): [Task, Task][] => from.flatMap((f) => to.filter((t) => t.node !== f.node).map((t) => [f, t] as [Task, Task]));
    for (const [from, to] of pairs(web, db)) await until(`${from.name} (web) reaches ${to.name} (db)`, () => ping(from, to.address), 30_000);
    for (const [from, to] of pairs(other, db)) await until(`${from.name} (other) no longer reaches ${to.name} (db)`, () => !ping(from, to.address), 30_000);
    for (const [from, to] of pairs(other, web)) expect(ping(from, to.address), `${from.name} (other) reaches ${to.name} (web)`).toBe(true);
    expect(pairs(other, db).length).toBeGreaterThan(0);
    h2.calicoctl(['delete', 'globalnetworkpolicy', 'db-from-web']);
    for (const [from, to] of pairs(other, db)) await until(`${from.name} (other) reaches ${to.name} (db) again`, () => ping(from, to.address), 30_000);
    h2.dockerOk(['service', 'rm', ...POLICY_SERVICES]);
    await until('no address left in etcd', async () => (await allocated()) === 0, 60_000);
  }, 240_000);
});
