import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EtcdResourceStore } from '../src/adapters/datastore/etcd/etcd-resource-store.js';
import type { CalicoNode } from '../src/domain/resources.js';
import { DockerHost, Run, startDatastore } from './helpers/docker-host.js';
import { TestEtcd } from './helpers/etcd.js';
import type { EtcdContext } from './helpers/ipam.js';

/**
 * `calicoctl node diags` on a Docker host of its own (network and mount namespaces, a real dockerd),
 * whose daemon `calicoctl node run` started in the background with BIRD, a mesh peer in etcd and one
 * container: the archive holds every item with this host's real state, an item that cannot be
 * collected is a file saying why, and an unreachable etcd still gives an archive.
 */

const POOL = '10.66.0.0/16';
const NODE = 'diag-host';
const PEER_IP = '198.18.0.2';
const etcd = new TestEtcd();
const logDir = mkdtempSync(join(tmpdir(), 'calico-diags-log-'));
const ENV = { CALICO_LOG_DIR: logDir, CALICO_SERVICE_MANAGER: 'background' };
const ITEMS = [
  'routes.txt',
  'routes6.txt',
  'addresses.txt',
  'iptables-save.txt',
  'ip6tables-save.txt',
  'ipset.txt',
  'bird-protocols.txt',
  'bird-routes.txt',
  'bird.cfg',
  'bird.log',
  'daemon-journal.txt',
  'daemon.log',
  'resources.yaml',
  'node-status.txt',
  'checksystem.txt',
];
let ctx: EtcdContext;
let host: DockerHost;
const extracted: string[] = [];

async function until(condition: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; daemon log:\n${readLog().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const readLog = (): string => {
  const file = join(logDir, 'calico-libnetwork.log');
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
};

function ok(result: Run, what: string): string {
  if (result.status !== 0) throw new Error(`${what} failed (${result.status}): ${result.stderr}${result.stdout}`);
  return result.stdout;
}

/** Runs `calicoctl node diags`, extracts the archive it names, and returns the progress and the files. */
function diags(extraEnv: Record<string, string> = {}): { stdout: string; archive: string; files: Map<string, string> } {
  const stdout = ok(host.calicoctl(['node', 'diags'], undefined, { ...ENV, ...extraEnv }), 'calicoctl node diags');
  const archive = /^Diags saved to (\/\S+\.tar\.gz)$/m.exec(stdout)?.[1];
  if (!archive) throw new Error(`no archive named in: ${stdout}`);
  extracted.push(dirname(archive));
  const into = mkdtempSync(join(tmpdir(), 'calico-diags-x-'));
  extracted.push(into);
  expect(spawnSync('tar', ['-xzf', archive, '-C', into]).status).toBe(0);
  const [top, ...others] = readdirSync(into);
  expect(others).toEqual([]);
  expect(top).toMatch(/^diags-\d{8}_\d{6}$/);
  const dir = join(into, top!);
  return { stdout, archive, files: new Map(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name), 'utf8')])) };
}

beforeAll(async () => {
  ({ ctx } = await startDatastore(etcd, [{ cidr: POOL }]));
  // A second node: BIRD's mesh has a peer to show.
  await new EtcdResourceStore(ctx.etcd).create<CalicoNode>({ apiVersion: 'projectcalico.org/v3', kind: 'Node', metadata: { name: 'diag-peer' }, spec: { bgp: { ipv4Address: `${PEER_IP}/24` } } });
  host = new DockerHost(NODE, etcd, {}, { daemon: false });
  await host.start();
  ok(host.calicoctl(['node', 'run', '--ip=198.18.0.1', '--no-default-ippools'], undefined, ENV), 'calicoctl node run');
  await until(() => readLog().includes('dataplane reconciled'), 'the daemon');
  await until(() => host.birdPid() !== undefined, 'BIRD');
  host.dockerOk(['network', 'create', '--driver', 'calico', '--ipam-driver', 'calico-ipam', 'net1']);
  host.dockerOk(['run', '-d', '--net', 'net1', '--name', 'web', 'busybox:local', 'sleep', '3600']);
}, 180_000);

afterAll(async () => {
  // Kills everything in the host's namespaces: dockerd, the daemon node run started, BIRD.
  await host?.stop();
  ctx?.etcd.close();
  await etcd.destroy();
  for (const dir of [logDir, ...extracted]) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('calicoctl node diags', () => {
  it("writes one archive holding each item with this host's real state, a progress line an item", () => {
    const address = host.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.net1.IPAddress}}', 'web']);
    expect(address).toMatch(/^10\.66\.\d+\.\d+$/);
    const { stdout, files } = diags();

    const progress = stdout.trimEnd().split('\n');
    expect(progress[0]).toBe(`Collecting diagnostics of node ${NODE}`);
    for (const item of ITEMS) expect(progress.filter((line) => line.startsWith(`${item}: `)), item).toHaveLength(1);
    expect([...files.keys()].sort()).toEqual([...ITEMS, 'index.txt'].sort());

    expect(files.get('routes.txt')).toContain('default via 198.18.0.254 dev uplink');
    expect(files.get('routes.txt')).toMatch(new RegExp(`^${address.replace(/\./g, '\\.')} dev cali\\w+ `, 'm'));
    expect(files.get('routes.txt')).toMatch(/^local 198\.18\.0\.1 dev uplink table local/m);
    expect(files.get('addresses.txt')).toContain('inet 198.18.0.1/24');
    expect(files.get('iptables-save.txt')).toMatch(/^:cali-\S+ - \[\d+:\d+\]$/m);
    expect(files.get('iptables-save.txt')).toMatch(/^\[\d+:\d+\] -A \S+ .*-j cali-/m);
    expect(files.get('ip6tables-save.txt')).toMatch(/^\*filter$/m);
    expect(files.get('ipset.txt')).toMatch(/^Name: cali\S+$/m);
    expect(files.get('ipset.txt')).toContain(address);
    expect(files.get('bird-protocols.txt')).toMatch(/^Mesh_198_18_0_2 +BGP /m);
    expect(files.get('bird-routes.txt')).toMatch(/^10\.66\.\d+\.\d+\/26 +blackhole \[static4 /m);
    expect(files.get('bird-routes.txt')).toMatch(new RegExp(`^${address.replace(/\./g, '\\.')}/32 +unicast \\[kernel4 `, 'm'));
    expect(files.get('bird.cfg')).toContain('protocol bgp Mesh_198_18_0_2');
    expect(files.get('bird.log')).toBeDefined();
    expect(files.get('daemon.log')).toContain('node registered');
    // No systemd here: the file says so instead of holding a journal.
    expect(files.get('daemon-journal.txt')).toMatch(/^calicoctl node diags could not collect the daemon's systemd journal: /);

    const resources = parse(files.get('resources.yaml')!);
    expect(resources.node.metadata.name).toBe(NODE);
    expect(resources.node.spec.bgp.ipv4Address).toBe('198.18.0.1/24');
    expect(resources.workloadEndpoints).toHaveLength(1);
    expect(resources.workloadEndpoints[0].spec.ipNetworks).toEqual([`${address}/32`]);
    expect(resources.blocks.length).toBeGreaterThan(0);
    expect(resources.blocks.every((b: { affinity: string }) => b.affinity === `host:${NODE}`)).toBe(true);
    expect(resources.blockAffinities.map((a: { cidr: string }) => a.cidr)).toEqual(resources.blocks.map((b: { cidr: string }) => b.cidr));
    expect(resources.hostEndpoints).toEqual([]);

    expect(files.get('node-status.txt')).toContain('Calico process is running.');
    expect(files.get('node-status.txt')).toMatch(new RegExp(`\\| ${PEER_IP.replace(/\./g, '\\.')} +\\| node-to-node mesh \\|`));
    expect(files.get('checksystem.txt')).toMatch(/^WARNING  kernel module ipip: /m);
    expect(files.get('checksystem.txt')).toMatch(/^OK {7}Docker: \S+ \(API [\d.]+\) at unix:\/\//m);
    expect(files.get('index.txt')!.trimEnd().split('\n')).toEqual(progress.filter((line) => ITEMS.some((item) => line.startsWith(`${item}: `))));
  }, 120_000);

  it('with etcd unreachable the archive is still made, and resources.yaml says why', () => {
    const { stdout, files } = diags({ ETCD_ENDPOINTS: 'http://127.0.0.1:9' });
    expect(stdout).toMatch(/^resources\.yaml: node diag-host's resources in etcd: not collected, /m);
    expect(files.get('resources.yaml')).toMatch(/^calicoctl node diags could not collect node diag-host's resources in etcd: .*127\.0\.0\.1:9/);
    expect(files.get('routes.txt')).toContain('default via 198.18.0.254 dev uplink');
    expect(stdout).toMatch(/^Not collected \(each file says why\): .*resources\.yaml/m);
  }, 60_000);
});
