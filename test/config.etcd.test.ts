import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calicoctlHere, post, ROOT, TestDaemon } from './helpers/daemon.js';
import { freePort, TestEtcd } from './helpers/etcd.js';

/** Config files for calicoctl and the daemon, against a real etcd; the daemon's choice of etcd. */

const dir = mkdtempSync(join(tmpdir(), 'calico-config-'));
const etcd = new TestEtcd();
const daemons: TestDaemon[] = [];
let deadEndpoint: string;

const v1File = (endpoints: string): string =>
  `apiVersion: v1\nkind: calicoApiConfig\nmetadata: {}\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: ${endpoints}\n`;
const v3File = (endpoints: string): string => `apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: ${endpoints}\n`;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Until `condition` holds, or fail with `what` after `ms`. */
async function until(what: () => string, condition: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await etcd.start();
  deadEndpoint = `http://127.0.0.1:${await freePort()}`;
}, 30_000);
afterAll(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.destroy()));
  await etcd.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('calicoctl -c FILE and the default config file', () => {
  it('reads the datastore from -c (v1 format) and from the default file (v3 format), the environment winning over both', async () => {
    const v1 = file('v1.cfg', v1File(etcd.endpoint));
    const added = await calicoctlHere(['pool', 'add', '10.91.0.0/24', '-c', v1], {});
    expect(added.stderr).toBe('');
    expect(added.status).toBe(0);
    expect((await calicoctlHere(['-c', v1, 'get', 'ippools'], {})).stdout).toMatch(/10\.91\.0\.0\/24/);

    const defaultFile = file('calicoctl.cfg', v3File(etcd.endpoint));
    const fromDefault = await calicoctlHere(['get', 'ippools'], { CALICO_DEFAULT_CONFIG_FILE: defaultFile });
    expect(fromDefault.stdout).toMatch(/10\.91\.0\.0\/24/);

    // ETCD_ENDPOINTS over the file: the dead endpoint is the one tried.
    const overridden = await calicoctlHere(['get', 'ippools', '-c', v1], { ETCD_ENDPOINTS: deadEndpoint });
    expect(overridden.status).toBe(1);
    expect(overridden.stderr).toContain(deadEndpoint);
    // calicoctl 0.x's ETCD_AUTHORITY over the file too.
    const authority = await calicoctlHere(['get', 'ippools', '-c', file('dead.cfg', v1File(deadEndpoint))], { ETCD_AUTHORITY: new URL(etcd.endpoint).host });
    expect(authority.stdout).toMatch(/10\.91\.0\.0\/24/);
  });

  it('refuses a missing -c file, an etcdv2 file and an unknown field, naming file and line, touching nothing', async () => {
    const missing = await calicoctlHere(['get', 'ippools', '-c', join(dir, 'nope.cfg')], {});
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe(`Error: cannot read the config file ${join(dir, 'nope.cfg')}: no such file\n`);
    const v2 = file('v2.cfg', v1File(etcd.endpoint).replace('etcdv3', 'etcdv2'));
    const refused = await calicoctlHere(['pool', 'add', '10.92.0.0/24', '-c', v2], {});
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^Error: ${v2}:5: datastoreType etcdv2 is not supported`));
    const typo = file('typo.cfg', v3File(etcd.endpoint).replace('etcdEndpoints', 'etcdEndpoint'));
    expect((await calicoctlHere(['get', 'ippools'], { CALICO_DEFAULT_CONFIG_FILE: typo })).stderr).toMatch(new RegExp(`^Error: ${typo}:5: unknown field spec.etcdEndpoint`));
    expect((await calicoctlHere(['get', 'ippools', '-c', file('v1-again.cfg', v1File(etcd.endpoint))], {})).stdout).not.toMatch(/10\.92\.0\.0/);
  });
});

describe('the daemon and its etcd', () => {
  it('with a configured etcd that does not answer: no embedded etcd, says what it waits for, serves once that etcd is up', async () => {
    const waiting = new TestEtcd();
    await waiting.start();
    await waiting.stop();
    const config = file('daemon.cfg', v1File(waiting.endpoint));
    const daemon = new TestDaemon({ node: 'cfg-node', env: { CALICO_CONFIG: config }, relayEtcd: waiting.endpoint });
    daemons.push(daemon);
    try {
      await daemon.start();
      const warning = `etcd at ${waiting.endpoint} does not answer; waiting for it and retrying`;
      await until(() => `no warning: ${daemon.log}`, () => daemon.log.includes(warning));
      expect(daemon.log).not.toContain('embedded etcd');
      expect(daemon.log).not.toContain('single-host mode');
      const inside = execFileSync('ip', ['netns', 'pids', daemon.namespace!], { encoding: 'utf8' }).split('\n').filter(Boolean);
      const commands = inside.map((pid) => execFileSync('ps', ['-o', 'comm=', '-p', pid], { encoding: 'utf8' }).trim());
      expect(commands).not.toContain('etcd');
      const listening = execFileSync('ip', ['netns', 'exec', daemon.namespace!, 'ss', '-ltnH'], { encoding: 'utf8' });
      expect(listening).not.toMatch(/:2379\b/);

      await waiting.start();
      await until(() => `never registered: ${daemon.log}`, () => daemon.log.includes('node registered'));
      const reply = await post(daemon.networkSocket, 'Plugin.Activate');
      expect(reply.status).toBe(200);
      expect(execFileSync('ip', ['netns', 'exec', daemon.namespace!, 'ss', '-ltnH'], { encoding: 'utf8' })).not.toMatch(/:2379\b/);

      // The daemon recorded ClusterInformation: calicoctl version reads it.
      await until(() => `no cluster information: ${daemon.log}`, async () => (await calicoctlHere(['version', '-c', config], {})).stdout.includes('Cluster Version:   v'));
      const version = await calicoctlHere(['version', '-c', config], {});
      const packageVersion = (await import('../package.json', { with: { type: 'json' } })).default.version;
      expect(version.stdout).toMatch(new RegExp(`^Client Version: {4}v${packageVersion}\nGit commit: {8}\\S+\nCluster Version: {3}v${packageVersion}\nCluster Type: {6}docker\n$`));
      expect(version.status).toBe(0);
      expect((await calicoctlHere(['--version', '-c', config], {})).stdout).toBe(version.stdout);
    } finally {
      await daemon.destroy();
      await waiting.destroy();
    }
  }, 90_000);

  it('calicoctl version with etcd away: the client version, Cluster Version unknown, the error on stderr', async () => {
    const result = await calicoctlHere(['version'], { ETCD_ENDPOINTS: deadEndpoint });
    expect(result.stdout).toMatch(/^Client Version: {4}v\d+\.\d+\.\d+\nGit commit: {8}\S+\nCluster Version: {3}unknown\nCluster Type: {6}unknown\n$/);
    expect(result.stderr).toMatch(new RegExp(`^Unable to retrieve Cluster Version or Type: etcd .* at ${deadEndpoint} failed`));
    expect(result.status).toBe(1);
  });

  it('with nothing configured: runs its own etcd and says once, plainly, that this host is alone', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'calico-test-alone-'));
    const daemon = new TestDaemon({
      node: 'alone',
      env: { CALICO_ETCD_DATA_DIR: dataDir },
      wrap: ['unshare', '--net', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"'],
    });
    daemons.push(daemon);
    try {
      await daemon.start();
      await daemon.ready();
      const lines = daemon.log.split('\n').filter((l) => l.includes('single-host mode'));
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({ level: 40, embeddedEtcd: true, etcd: ['http://127.0.0.1:2379'] });
      expect(lines[0]).toContain('this host is alone: other hosts will not see it');
    } finally {
      await daemon.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('calicoctl on PATH', () => {
  it('scripts/install-commands.sh links calicoctl and calico-libnetwork, runnable from anywhere', () => {
    const bin = mkdtempSync(join(tmpdir(), 'calico-bin-'));
    try {
      execFileSync('bash', [join(ROOT, 'scripts/install-commands.sh'), bin], { stdio: 'ignore' });
      const config = file('path.cfg', v3File(etcd.endpoint));
      const result = spawnSync('calicoctl', ['get', 'ippools', '-c', config], { cwd: '/', encoding: 'utf8', env: { PATH: `${bin}:${process.env.PATH}`, CALICO_DEFAULT_CONFIG_FILE: '/nonexistent' } });
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(/10\.91\.0\.0\/24/);
      expect(spawnSync(join(bin, 'calico-libnetwork'), ['--help-is-not-an-option'], { env: { PATH: process.env.PATH ?? '', CALICO_LIBNETWORK_ENABLED: 'false' }, encoding: 'utf8' }).stderr).toMatch(
        /^calico-libnetwork: CALICO_LIBNETWORK_ENABLED=false: this daemon is the libnetwork plugin/,
      );
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
