import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ownPluginId } from '../src/adapters/docker/managed-plugin.js';
import { DAEMON, post } from './helpers/daemon.js';
import { until } from './helpers/until.js';

const ID = '3ae150a5c9b6786acb47b29b0ce4343393d02b993d7bf94df5aeaee7ae52ea3b';

describe("a managed plugin's own ID, from its mount table", () => {
  it('is the host directory Docker mounts at /run/docker/plugins, under the default exec root or another', () => {
    const mounts = (root: string): string =>
      [
        '90 54 254:0 /var/lib/docker/plugins/x/rootfs / rw,relatime master:25 - ext4 /dev/vda rw',
        '705 90 0:102 / /run/calico rw,relatime - tmpfs tmpfs rw',
        `752 90 0:101 ${root} /run/docker/plugins rw,relatime shared:4 - tmpfs tmpfs rw`,
      ].join('\n');
    expect(ownPluginId(mounts(`/docker/plugins/${ID}`))).toBe(ID);
    expect(ownPluginId(mounts(`/${ID}`))).toBe(ID);
  });

  it('is not there outside a plugin: a host mounting /run/docker/plugins whole, or not at all', () => {
    expect(ownPluginId('752 90 0:101 / /run/docker/plugins rw,relatime - tmpfs tmpfs rw')).toBeUndefined();
    expect(ownPluginId('90 54 254:0 / / rw,relatime - ext4 /dev/vda rw')).toBeUndefined();
  });
});

describe('a managed plugin enabled with settings it cannot run on', () => {
  it('stays up, answers every Docker request with the reason (Docker restarts a plugin that exits), and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'calico-refusal-'));
    const env = { PATH: process.env.PATH, CALICO_LIBNETWORK_MANAGED_PLUGIN: 'true', ETCD_ENDPOINTS: '', CALICO_LIBNETWORK_PLUGIN_DIR: dir, CALICO_RUN_DIR: join(dir, 'run') };
    const child = spawn(process.execPath, [DAEMON], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const socket = join(dir, 'calico.sock');
      await until('the refusing plugin listens', () => existsSync(socket) || child.exitCode !== null, 10_000);
      expect(child.exitCode).toBeNull();
      expect((await post(socket, 'Plugin.Activate')).body).toEqual({ Implements: ['NetworkDriver', 'IpamDriver'] });
      const reason = 'the managed plugin needs a datastore: docker plugin set <plugin> ETCD_ENDPOINTS=http://<etcd host>:2379';
      for (const method of ['NetworkDriver.GetCapabilities', 'IpamDriver.RequestAddress', 'NetworkDriver.CreateEndpoint']) {
        const reply = await post(socket, method, { PoolID: 'x' });
        expect([reply.status, reply.body]).toEqual([500, { Err: reason }]);
      }
      expect(stderr).toContain(reason);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
