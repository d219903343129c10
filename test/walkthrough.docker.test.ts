import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clusterForSuite, until } from './helpers/cluster.js';
import { CALICOCTL } from './helpers/daemon.js';
import type { DockerHost, Run } from './helpers/docker-host.js';
import { docker26Root } from './helpers/docker26.js';

/**
 * Calico's first Docker walkthrough, word for word, on two hosts, with Docker 20.10 and with Docker 26: a calico.cfg,
 * `calicoctl node run --ip=… -c …` on each host, one network, a container on each host, then
 * `docker exec bbox1 ping -c 2 bbox2` and `calicoctl node status`. Only two things differ from a
 * real pair of machines: each host's name is given as NODENAME (they share one kernel hostname), and
 * DOCKER_HOST names the host's own dockerd.
 */

const logDir = mkdtempSync(join(tmpdir(), 'calico-walkthrough-'));
afterAll(() => rmSync(logDir, { recursive: true, force: true }));

/** calicoctl as a user types it on the host: no ETCD_* in the environment, the datastore from `-c`. */
function calicoctl(host: DockerHost, args: string[]): Run {
  const [command, ...rest] = host.enter([process.execPath, CALICOCTL, ...args]);
  // TMPDIR: the daemon's command helper keeps its files there, and the host's stop kills that shell
  // before it can remove them; the test's own directory goes with the test.
  const tmp = join(logDir, host.node, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const env = [`NODENAME=${host.node}`, `DOCKER_HOST=unix://${host.dockerSocket}`, `TMPDIR=${tmp}`, `CALICO_LOG_DIR=${join(logDir, host.node)}`, 'CALICO_SERVICE_MANAGER=background', `CALICO_DEFAULT_CONFIG_FILE=${join(logDir, 'none.cfg')}`];
  const result = spawnSync('env', ['-i', `PATH=${process.env.PATH}`, ...env, command!, ...rest], { encoding: 'utf8', timeout: 120_000 });
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

describe.each([
  ['Docker 20.10', 'wt', undefined],
  ['Docker 26', 'wt26', docker26Root()],
])('the walkthrough on %s', (_engine, name, engineRoot) => {
  const cluster = clusterForSuite({ name, hosts: 2, subnet: '10.58.0', pools: [], hostOptions: () => ({ daemon: false, ...(engineRoot ? { engineRoot } : {}) }) });

  it('calico.cfg, calicoctl node run on each host, a network, a container on each, ping by name, node status', async () => {
    const [h1, h2] = cluster.hosts as [DockerHost, DockerHost];
    // 1. The calico.cfg, as the walkthrough writes it (the host's etcd is reached on its loopback here).
    const config = join(logDir, `${name}.cfg`);
    writeFileSync(config, ['apiVersion: projectcalico.org/v3', 'kind: CalicoAPIConfig', 'metadata:', 'spec:', '  datastoreType: "etcdv3"', '  etcdEndpoints: "http://127.0.0.1:2379"', ''].join('\n'));
    // 2. calicoctl node run --ip=… -c … on each host.
    for (const [h, address] of [[h1, '10.58.0.1'], [h2, '10.58.0.2']] as const) {
      const started = calicoctl(h, ['node', 'run', `--ip=${address}`, '-c', config]);
      expect(started.status, started.stderr).toBe(0);
      expect(started.stdout.trimEnd().split('\n').at(-1)).toBe('Calico node started successfully');
    }
    // 3. One network, created on each host (local scope).
    for (const h of [h1, h2]) h.dockerOk(['network', 'create', '--driver', 'calico', '--ipam-driver', 'calico-ipam', 'cal_net1']);
    // 4. bbox1 and bbox2 on different hosts.
    h1.dockerOk(['run', '--net', 'cal_net1', '--name', 'bbox1', '-tid', 'busybox:local']);
    h2.dockerOk(['run', '--net', 'cal_net1', '--name', 'bbox2', '-tid', 'busybox:local']);
    // 5. docker exec bbox1 ping -c 2 bbox2
    await until('BGP between the hosts', () => /Established/.test(calicoctl(h1, ['node', 'status', '-c', config]).stdout), 30_000);
    const ping = h1.docker(['exec', 'bbox1', 'ping', '-c', '2', 'bbox2'], 30_000);
    expect(ping.status, ping.stdout + ping.stderr).toBe(0);
    expect(ping.stdout).toMatch(/2 packets transmitted, 2 packets received/);
    // 6. calicoctl node status
    const status = calicoctl(h1, ['node', 'status', '-c', config]);
    expect(status.stdout).toContain('Calico process is running.');
    expect(status.stdout).toMatch(/\| 10\.58\.0\.2\s+\| node-to-node mesh \| up\s+\| \S+\s+\| Established \|/);
  });
});
