import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdResourceStore } from '../src/adapters/datastore/etcd/etcd-resource-store.js';
import type { CalicoNode } from '../src/domain/resources.js';
import { post } from './helpers/daemon.js';
import { DockerHost, Run } from './helpers/docker-host.js';
import { TestEtcd } from './helpers/etcd.js';
import { EtcdContext, storeOn } from './helpers/ipam.js';

/**
 * `calicoctl node run` and calicoctl 0.x's `node --ip=...` on a test host (its own network namespace,
 * /run/calico and /run/docker/plugins; no daemon started by the helper): the daemon they start in the
 * background, its Node in etcd, restarts with other flags, and what starts nothing.
 */

const etcd = new TestEtcd();
const logDir = mkdtempSync(join(tmpdir(), 'calico-node-run-'));
/** The host's daemon log goes to a temp dir; never systemd, even on a machine that runs it. */
const ENV = { CALICO_LOG_DIR: logDir, CALICO_SERVICE_MANAGER: 'background' };
const HOST_IP = '198.18.0.1';
let ctx: EtcdContext;
let host: DockerHost;

const nodeRun = (args: string[]): Run => host.calicoctl(args, undefined, ENV);
const storedNode = async (name = 'runner'): Promise<CalicoNode | null> => new EtcdResourceStore(ctx.etcd).get<CalicoNode>({ kind: 'Node', name });
const daemonPid = (): number => Number(host.runFile('calico-libnetwork.pid').trim());
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/status`, 'utf8').includes('State:\tZ');
  } catch {
    return false;
  }
};

async function until(condition: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out; daemon log:\n${readFileSync(join(logDir, 'calico-libnetwork.log'), 'utf8').slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function started(result: Run): string {
  if (result.status !== 0) throw new Error(`node run failed (${result.status}): ${result.stderr}${result.stdout}`);
  expect(result.stdout.trimEnd().split('\n').at(-1)).toBe('Calico node started successfully');
  return result.stdout;
}

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  host = new DockerHost('runner', etcd, {}, { docker: false });
  await host.prepare();
}, 60_000);
afterAll(async () => {
  // Kills everything in the host's namespace: the daemons node run started, and BIRD.
  await host?.stop();
  ctx?.etcd.close();
  await etcd.destroy();
  rmSync(logDir, { recursive: true, force: true });
}, 60_000);

describe('calicoctl node run', () => {
  it('starts the daemon with --ip and --as, notes --node-image, and restarts it when run again with another --as', async () => {
    const out = started(nodeRun(['node', 'run', `--ip=${HOST_IP}`, '--as=64601', '--backend=none', '--no-default-ippools', '--node-image=calico/node:v3.8.9']));
    expect(out).toContain('Note: --node-image=calico/node:v3.8.9 is ignored');
    expect(out).toContain(join(logDir, 'calico-libnetwork.log'));
    expect((await storedNode())?.spec.bgp).toMatchObject({ ipv4Address: `${HOST_IP}/24`, asNumber: 64601 });
    const first = daemonPid();
    expect(alive(first)).toBe(true);
    expect((await post(host.pluginSocket('calico'), 'Plugin.Activate')).status).toBe(200);
    expect(readFileSync(join(logDir, 'calico-libnetwork.log'), 'utf8')).toContain('node registered');
    // Past the point where it would have made default pools: --no-default-ippools reached it.
    await until(() => readFileSync(join(logDir, 'calico-libnetwork.log'), 'utf8').includes('dataplane reconciled'));
    expect(await new EtcdResourceStore(ctx.etcd).list('IPPool')).toEqual([]);

    started(nodeRun(['node', 'run', `--ip=${HOST_IP}`, '--as=64602', '--backend=none']));
    expect((await storedNode())?.spec.bgp?.asNumber).toBe(64602);
    await until(async () => (await new EtcdResourceStore(ctx.etcd).list('IPPool')).length > 0);
    const second = daemonPid();
    expect(second).not.toBe(first);
    expect(alive(first)).toBe(false);
    expect(alive(second)).toBe(true);
  }, 120_000);

  it('starts nothing for a bad --ip, AS or backend, and names what is wrong', async () => {
    const running = daemonPid();
    for (const [flag, message] of [
      ['--ip=198.18.0.300', 'Error: invalid --ip "198.18.0.300": expected an IPv4 address'],
      ['--as=4294967296', 'Error: invalid --as "4294967296": expected a number from 1 to 4294967295'],
      ['--backend=gobgp', 'Error: invalid --backend "gobgp": expected bird, vxlan, none'],
    ]) {
      const result = nodeRun(['node', 'run', flag!]);
      expect(result.status).toBe(1);
      expect(result.stderr.startsWith(message!), result.stderr).toBe(true);
      expect(result.stdout).toBe('');
    }
    expect(daemonPid()).toBe(running);
    expect(alive(running)).toBe(true);
  });

  it('calicoctl 0.x: `node --ip --as --libnetwork` starts the daemon (with BIRD) the same way', async () => {
    const before = daemonPid();
    started(nodeRun(['node', `--ip=${HOST_IP}`, '--as=64603', '--libnetwork']));
    expect((await storedNode())?.spec.bgp).toMatchObject({ ipv4Address: `${HOST_IP}/24`, asNumber: 64603 });
    expect(alive(before)).toBe(false);
    expect(alive(daemonPid())).toBe(true);
  }, 120_000);

  it('a daemon that exits during start: node run fails with the end of its log', async () => {
    // Another node holds the address: the daemon refuses to run, as calico/node does.
    await new EtcdResourceStore(ctx.etcd).create<CalicoNode>({
      apiVersion: 'projectcalico.org/v3',
      kind: 'Node',
      metadata: { name: 'other' },
      spec: { bgp: { ipv4Address: '198.18.0.77/24' } },
    });
    host.ip('addr add 198.18.0.77/24 dev uplink');
    const result = nodeRun(['node', 'run', '--ip=198.18.0.77', '--backend=none']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^Error: calico-libnetwork exited during start\. The end of its log:\n/);
    expect(result.stderr).toContain('198.18.0.77');
    expect(result.stdout).not.toContain('Calico node started successfully');
  }, 120_000);
});
