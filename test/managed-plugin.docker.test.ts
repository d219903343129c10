import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterForSuite, routesOf, until } from './helpers/cluster.js';
import type { DockerHost } from './helpers/docker-host.js';
import { docker26Root } from './helpers/docker26.js';
import { buildPlugin, publishAndInstall } from './helpers/managed-plugin.js';
import { oneAtATime } from './helpers/one-at-a-time.js';
import { TestRegistry } from './helpers/registry.js';
import { relayEtcdInto } from './helpers/relay.js';

/**
 * calico-libnetwork as Docker's managed plugin, the way a Docker user gets it: built from this
 * checkout (scripts/build-plugin.sh) on one host, pushed to a real registry, installed with settings
 * on three hosts (each its own dockerd, etcd shared): two run Docker 26, the third Docker 20.10.
 */

const engineRoot = docker26Root();
const registry = new TestRegistry('10.48.0.100');
const PLUGIN = `${registry.host}/calico-libnetwork:test`;
const DRIVER = ['--driver', PLUGIN, '--ipam-driver', PLUGIN];
const SERVER = '(while true; do echo hello | nc -l -p 8080; done) & sleep 100000';

// Before the hosts start: the other file that builds the plugin waits for this one, and the other way round.
oneAtATime('managed-plugin');
const cluster = clusterForSuite({
  name: 'mp',
  hosts: 3,
  subnet: '10.48.0',
  pools: [{ cidr: '10.53.0.0/16', name: 'mp-pool' }],
  // Host 2's dockerd keeps containers (and plugins) running across its restarts: --live-restore.
  hostOptions: (n) => ({ ...(n < 3 ? { engineRoot } : {}), daemon: false, dockerdArgs: ['--insecure-registry', registry.host, ...(n === 2 ? ['--live-restore'] : [])] }),
});
const hosts = (): [DockerHost, DockerHost, DockerHost] => cluster.hosts as [DockerHost, DockerHost, DockerHost];

/** What the plugin of `host` logged: dockerd writes its output, tagged with the plugin's ID. */
const pluginLog = (host: DockerHost): string =>
  host
    .dockerdLog()
    .split('\n')
    .filter((line) => line.includes(' plugin='))
    .join('\n');
const count = (text: string, what: string): number => text.split(what).length - 1;

/** Waits until the plugin of `host` has reconciled the dataplane once more than `before` times. */
const reconciled = (host: DockerHost, before: number, limitMs = 60_000): Promise<boolean> =>
  until(`the plugin on ${host.node} reconciled`, () => count(pluginLog(host), 'dataplane reconciled') > before, limitMs);

function run(on: DockerHost, name: string, network: string, flags: string[] = []): string {
  on.dockerOk(['run', '-d', ...flags, '--net', network, '--name', name, 'busybox:local', 'sh', '-c', SERVER]);
  return JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])).IPAddress;
}

const ping = (on: DockerHost, from: string, to: string): boolean => on.docker(['exec', from, 'ping', '-c', '1', '-W', '2', to], 15_000).status === 0;
const tcp = (on: DockerHost, from: string, to: string): boolean => on.docker(['exec', from, 'sh', '-c', `nc -w 2 ${to} 8080 </dev/null`], 15_000).stdout.includes('hello');

/**
 * Pings `to` from container `from` on `on` every 200 ms while `during` runs; resolves with sent and
 * received. Five of these are one second: one ping at ping's (and the issue's) one per second.
 */
async function pingsDuring(on: DockerHost, from: string, to: string, during: () => Promise<void>): Promise<{ sent: number; received: number }> {
  const pinger = on.dockerAsync(['exec', from, 'ping', '-i', '0.2', '-W', '1', to], 300_000);
  await new Promise((r) => setTimeout(r, 1000));
  await during();
  await new Promise((r) => setTimeout(r, 2000));
  // Interrupted, busybox's ping prints its statistics.
  on.docker(['exec', from, 'killall', '-INT', 'ping']);
  const out = (await pinger).stdout;
  const stats = /(\d+) packets transmitted, (\d+) packets received/.exec(out);
  if (!stats) throw new Error(`no ping statistics: ${out.slice(-500)}`);
  return { sent: Number(stats[1]), received: Number(stats[2]) };
}

/** The settings a host's plugin is installed with: etcd relayed onto its loopback, its own name, address and Docker socket. */
const settings = (host: DockerHost, n: number): string[] => [
  'ETCD_ENDPOINTS=http://127.0.0.1:2379',
  `NODENAME=${host.node}`,
  `IP=10.48.0.${n}`,
  `docker-socket.source=${host.dockerSocket}`,
];

describe('managed plugin (docker plugin install) on Docker 26 and 20.10', () => {
  const relays: ChildProcess[] = [];

  beforeAll(async () => {
    await registry.start(cluster.underlay);
    buildPlugin(PLUGIN, engineRoot, hosts()[0]!);
  }, 300_000);

  afterAll(async () => {
    for (const relay of relays) relay.kill('SIGKILL');
    for (const host of hosts()) {
      await host.clear();
      for (const id of host.docker(['network', 'ls', '-q', '--filter', `driver=${PLUGIN}`]).stdout.split('\n').filter(Boolean)) host.docker(['network', 'rm', id]);
      host.docker(['plugin', 'rm', '-f', PLUGIN]);
    }
    registry.stop();
  }, 120_000);

  it('is built here, pushed to a registry, and installed from it with settings on every host', async () => {
    const [h1] = hosts();
    expect(h1.dockerOk(['plugin', 'inspect', '--format', '{{.Enabled}} {{json .Config.Interface.Types}}', PLUGIN])).toBe('false ["docker.networkdriver/1.0","docker.ipamdriver/1.0"]');
    await publishAndInstall(PLUGIN, h1, hosts().map((host, i) => ({ host, settings: settings(host, i + 1) })));
    for (const host of hosts()) {
      expect(host.dockerOk(['plugin', 'ls', '--format', '{{.Name}} {{.Enabled}}'])).toBe(`${PLUGIN} true`);
      expect(JSON.parse(host.dockerOk(['plugin', 'inspect', '--format', '{{json .Settings.Env}}', PLUGIN]))).toContain(`NODENAME=${host.node}`);
      await reconciled(host, 0);
      // It learnt the driver name Docker gives its networks, and says what it cannot do in there.
      expect(pluginLog(host)).toContain(`driver\\":\\"${PLUGIN}`);
      expect(pluginLog(host)).toContain('running as a managed Docker plugin, which cannot');
    }
  });

  it('networks and containers on three hosts reach each other (ping, TCP), routed by the plugins\' BIRD', async () => {
    const [h1, h2, h3] = hosts();
    expect([h1, h2, h3].map((h) => h.dockerOk(['version', '--format', '{{.Server.Version}}']).split('.')[0])).toEqual(['26', '26', '20']);
    for (const host of hosts()) host.dockerOk(['network', 'create', ...DRIVER, 'mpnet']);
    const a = run(h1, 'mpa', 'mpnet');
    const b = run(h2, 'mpb', 'mpnet');
    const e = run(h3, 'mpe', 'mpnet');
    expect(a).toMatch(/^10\.53\./);
    await until('mpa pings mpb', () => ping(h1, 'mpa', b), 30_000);
    expect(tcp(h2, 'mpb', a)).toBe(true);
    // Docker 20.10's host and Docker 26's, both ways.
    await until('mpe pings mpa', () => ping(h3, 'mpe', a), 30_000);
    expect(tcp(h1, 'mpa', e)).toBe(true);
    expect(routesOf(h2.netns)).toMatch(/10\.53\.\d+\.\d+\/26 via 10\.48\.0\.1 dev eth0 proto bird/);
    // calicoctl on the host sees the plugin's BIRD through the shared /run/calico.
    expect(h1.calicoctl(['node', 'status']).stdout).toMatch(/Established/);
    // The endpoints carry the container names, learnt from Docker's events under the plugin's driver name.
    await until('mpa named on its endpoint', async () => (await cluster.endpoints.listEndpoints()).some((e) => e.value.spec.workload === 'mpa'), 10_000);
  });

  it('takes settings while disabled (refused while enabled), is upgraded, and carries on', async () => {
    const [h1, h2] = hosts();
    const set = h2.docker(['plugin', 'set', PLUGIN, 'CALICO_LIBNETWORK_LOG_LEVEL=debug']);
    expect(set.status).not.toBe(0);
    expect(set.stderr).toMatch(/cannot set on an active plugin/);
    // Its network holds a reference: a plain disable is refused, a forced one goes through.
    expect(h2.docker(['plugin', 'disable', PLUGIN]).stderr).toMatch(/in use/);
    h2.dockerOk(['plugin', 'disable', '-f', PLUGIN]);
    h2.dockerOk(['plugin', 'set', PLUGIN, 'CALICO_LIBNETWORK_LOG_LEVEL=debug']);
    const before = count(pluginLog(h2), 'dataplane reconciled');
    h2.dockerOk(['plugin', 'upgrade', '--grant-all-permissions', PLUGIN, PLUGIN]);
    // An upgrade keeps the env settings but takes the new config's mounts: a moved Docker socket is set again.
    h2.dockerOk(['plugin', 'set', PLUGIN, `docker-socket.source=${h2.dockerSocket}`]);
    h2.dockerOk(['plugin', 'enable', PLUGIN]);
    await reconciled(h2, before);
    expect(JSON.parse(h2.dockerOk(['plugin', 'inspect', '--format', '{{json .Settings.Env}}', PLUGIN]))).toEqual(expect.arrayContaining([`NODENAME=${h2.node}`, 'CALICO_LIBNETWORK_LOG_LEVEL=debug']));
    const a = JSON.parse(h1.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpa'])).IPAddress;
    await until('mpb pings mpa again', () => ping(h2, 'mpb', a), 30_000);
    const c = run(h2, 'mpc', 'mpnet');
    await until('mpa pings the new mpc', () => ping(h1, 'mpa', c), 30_000);
  });

  it('with no datastore set, says why on every request (and stays up); with none answering, says why in its log; works once etcd answers', async () => {
    const [h1, h2] = hosts();
    h2.dockerOk(['rm', '-f', 'mpb', 'mpc']);
    h2.dockerOk(['plugin', 'disable', '-f', PLUGIN]);
    // No datastore at all: enabled, the plugin answers every request with the reason (a plugin that
    // exits is started again by Docker, and that restart raced the next enable).
    h2.dockerOk(['plugin', 'set', PLUGIN, 'ETCD_ENDPOINTS=']);
    h2.dockerOk(['plugin', 'enable', PLUGIN]);
    const reason = 'the managed plugin needs a datastore: docker plugin set <plugin> ETCD_ENDPOINTS=';
    expect(pluginLog(h2)).toContain(reason);
    const told = h2.docker(['run', '--rm', '--net', 'mpnet', 'busybox:local', 'true'], 60_000);
    expect(told.status).not.toBe(0);
    expect(told.stderr).toContain(reason);
    h2.dockerOk(['plugin', 'disable', '-f', PLUGIN]);
    // Nothing listens on port 2390 of the host yet.
    h2.dockerOk(['plugin', 'set', PLUGIN, 'ETCD_ENDPOINTS=http://127.0.0.1:2390']);
    const before = count(pluginLog(h2), 'dataplane reconciled');
    h2.dockerOk(['plugin', 'enable', PLUGIN]);
    await until('the plugin says etcd does not answer', () => pluginLog(h2).includes('etcd at http://127.0.0.1:2390 does not answer'), 30_000);
    const refused = h2.docker(['run', '--rm', '--net', 'mpnet', 'busybox:local', 'true'], 60_000);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/etcd|datastore/i);
    relays.push(...(await relayEtcdInto(h2.enter([]), cluster.etcd.endpoint, join(h2.dir, 'etcd-2390.sock'), '127.0.0.1:2390')));
    await reconciled(h2, before);
    const d = run(h2, 'mpd', 'mpnet');
    await until('mpa pings mpd', () => ping(h1, 'mpa', d), 30_000);
  });

  it('a dockerd restart: no hang at shutdown, the plugin enabled again, a restart=always container back on its network\'s profile and reached, a stopped one\'s endpoint gone', async () => {
    const [h1, h2] = hosts();
    const mprBefore = run(h1, 'mpr', 'mpnet', ['--restart=always']);
    const d = JSON.parse(h2.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpd'])).IPAddress;
    await until('mpr pings mpd', () => ping(h1, 'mpr', d), 30_000);
    const before = count(pluginLog(h1), 'dataplane reconciled');
    let stopMs = 0;
    // Traffic between the other hosts goes on untouched while host 1's dockerd, plugin and BIRD restart.
    const elsewhere = await pingsDuring(hosts()[2], 'mpe', d, async () => {
      stopMs = await h1.restartDockerd();
    });
    expect(elsewhere.sent - elsewhere.received).toBeLessThanOrEqual(1);
    expect(stopMs).toBeLessThan(15_000);
    expect(h1.dockerOk(['plugin', 'ls', '--format', '{{.Name}} {{.Enabled}}'])).toBe(`${PLUGIN} true`);
    await reconciled(h1, before);
    await until('mpr running again', () => h1.docker(['inspect', '--format', '{{.State.Running}}', 'mpr']).stdout.trim() === 'true', 60_000);
    const again = JSON.parse(h1.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpr'])).IPAddress;
    await until('host 1 pings mpr after the restart', () => h1.onHost(['ping', '-c', '1', '-W', '1', again]).status === 0, 30_000);
    await until('mpd on host 2 pings mpr after the restart', () => ping(h2, 'mpd', again), 60_000);
    // Stopped and started again by Docker, it has a new address from the same host's block (Docker asks for none in particular).
    expect(again.split('.').slice(0, 3)).toEqual(mprBefore.split('.').slice(0, 3));
    // Docker restores containers before its API answers: the network's name came from its profile in etcd.
    // The container's name reaches its endpoint from Docker's events, in the background: wait for it.
    const mpr = await until('mpr named on its endpoint', async () => (await cluster.endpoints.listEndpoints()).find((e) => e.value.spec.workload === 'mpr'), 20_000);
    expect(mpr.value.spec.profiles).toEqual(['mpnet']);
    // mpa has no restart policy: stopped with dockerd, its endpoint left through the still-running plugin.
    expect(h1.dockerOk(['inspect', '--format', '{{.State.Running}}', 'mpa'])).toBe('false');
    const h1Endpoints = async (): Promise<string[]> => (await cluster.endpoints.listEndpoints()).filter((e) => e.value.spec.node === h1.node).map((e) => e.value.spec.workload);
    await until('only mpr has an endpoint on host 1', async () => (await h1Endpoints()).join() === 'mpr', 20_000);
  }, 120_000);

  it('a dockerd restart with --live-restore under cross-host traffic: the plugin, BIRD and the containers run on; their addresses kept, at most one ping lost', async () => {
    const [, h2, h3] = hosts();
    const d = JSON.parse(h2.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpd'])).IPAddress;
    await until('mpe pings mpd', () => ping(h3, 'mpe', d), 60_000);
    const starts = count(pluginLog(h2), 'calico-libnetwork serving');
    // Host 3's session to host 2: its "since" moves only if host 2's BIRD went away.
    const session = (): string | undefined => /\| 10\.48\.0\.2 +\| node-to-node mesh \| up +\| (\S+) +\| Established/.exec(h3.calicoctl(['node', 'status']).stdout)?.[1];
    const since = await until('host 3 in session with host 2', session, 30_000);
    // From host 3 (a `docker exec` on host 2 would lose its stream with dockerd): each reply crosses back too.
    const result = await pingsDuring(h3, 'mpe', d, async () => {
      await h2.restartDockerd();
    });
    console.log(`dockerd restart with --live-restore: ${JSON.stringify(result)}`);
    expect(result.sent - result.received).toBeLessThanOrEqual(1);
    expect(count(pluginLog(h2), 'calico-libnetwork serving')).toBe(starts);
    expect(session()).toBe(since);
    expect(JSON.parse(h2.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpd'])).IPAddress).toBe(d);
    // And the plugin Docker re-attached to serves: a new container on host 2 is reached from host 3.
    const g = run(h2, 'mpg', 'mpnet');
    await until('mpe pings the new mpg', () => ping(h3, 'mpe', g), 30_000);
  }, 180_000);

  it('a plugin upgrade under cross-host traffic: at most one ping lost each way, the upgraded plugin serves', async () => {
    const [h1, h2, h3] = hosts();
    const mpr = JSON.parse(h1.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpr'])).IPAddress;
    const e = JSON.parse(h3.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.mpnet}}', 'mpe'])).IPAddress;
    await until('mpe pings mpr', () => ping(h3, 'mpe', mpr), 60_000);
    await until('mpr pings mpe', () => ping(h1, 'mpr', e), 60_000);
    const before = count(pluginLog(h1), 'dataplane reconciled');
    let upgradeMs = 0;
    const toUpgraded = pingsDuring(h3, 'mpe', mpr, async () => {
      const fromUpgraded = pingsDuring(h1, 'mpr', e, async () => {
        const started = Date.now();
        h1.dockerOk(['plugin', 'disable', '-f', PLUGIN]);
        h1.dockerOk(['plugin', 'upgrade', '--grant-all-permissions', PLUGIN, PLUGIN]);
        h1.dockerOk(['plugin', 'set', PLUGIN, `docker-socket.source=${h1.dockerSocket}`]);
        h1.dockerOk(['plugin', 'enable', PLUGIN]);
        await reconciled(h1, before);
        upgradeMs = Date.now() - started;
        await new Promise((r) => setTimeout(r, 5000));
      });
      const result = await fromUpgraded;
      console.log(`plugin upgrade took ${upgradeMs} ms; from the upgraded host: ${JSON.stringify(result)}`);
      expect(result.sent - result.received).toBeLessThanOrEqual(5);
    });
    const result = await toUpgraded;
    console.log(`to the upgraded host: ${JSON.stringify(result)}`);
    expect(result.sent - result.received).toBeLessThanOrEqual(5);
    // The upgraded plugin serves: a new container on host 1 is reached from host 3.
    const f = run(h1, 'mpf', 'mpnet');
    await until('mpe pings the new mpf', () => ping(h3, 'mpe', f), 30_000);
  }, 180_000);
});
