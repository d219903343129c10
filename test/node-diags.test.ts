import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { DiagnosticsArchive, HostDiagnostics } from '../src/ports/diagnostics.js';
import type { EndpointStore } from '../src/ports/endpoint-store.js';
import type { IpamStore } from '../src/ports/ipam-store.js';
import type { ResourceStore } from '../src/ports/resource-store.js';
import { NodeDiagnostics } from '../src/services/nodes/diagnostics.js';

/**
 * `calicoctl node diags`' collection on stand-ins: every item a file, a failed item a file saying
 * why, one progress line an item, only this node's resources, and nothing left when no archive can
 * be made. The real tools, BIRD and etcd: node-diags.docker.test.ts.
 */

class MemoryArchive implements DiagnosticsArchive {
  readonly files = new Map<string, string>();
  discarded = false;
  constructor(private readonly sealFails = false) {}
  async add(file: string, content: string): Promise<void> {
    this.files.set(file, content);
  }
  async seal(): Promise<string> {
    if (this.sealFails) throw new Error('tar -czf failed (exit 2): No space left on device');
    return '/tmp/calico-diags-test/diags.tar.gz';
  }
  async discard(): Promise<void> {
    this.discarded = true;
  }
}

const host: HostDiagnostics = {
  command: async (command, args) => `${command} ${args.join(' ')} output\n`,
  bird: async () => {
    throw new Error('unable to connect to BIRD socket /run/calico/bird.ctl: no such file or directory');
  },
  daemonJournal: async () => {
    throw new Error('the journal has no entries for calico-libnetwork.service: the daemon is not run by systemd here');
  },
  file: async (path) => {
    if (path === '/var/log/calico/calico-libnetwork.log') return 'node registered\n';
    throw new Error(`${path} does not exist`);
  },
};

const endpoint = (name: string, node: string) => ({ value: { metadata: { name }, spec: { node } }, modRevision: '1', createRevision: '1' });

function diagnostics(): NodeDiagnostics {
  return new NodeDiagnostics({
    node: 'host-1',
    host,
    resources: {
      get: async () => ({ kind: 'Node', metadata: { name: 'host-1' }, spec: {} }),
      list: async () => [{ kind: 'HostEndpoint', metadata: { name: 'eth0-host-2' }, spec: { node: 'host-2' } }],
    } as unknown as ResourceStore,
    endpoints: { listEndpoints: async () => [endpoint('mine', 'host-1'), endpoint('theirs', 'host-2')] } as unknown as EndpointStore,
    ipam: { listAffinities: async () => [], snapshot: async () => ({ revision: '1', pools: [], blocks: [], config: null }) } as unknown as IpamStore,
    files: { daemonLog: '/var/log/calico/calico-libnetwork.log', birdLog: '/run/calico/bird.log', birdConfig: '/run/calico/bird.cfg' },
    reports: [{ file: 'node-status.txt', what: 'calicoctl node status', collect: async () => 'Calico process is running.\n' }],
  });
}

describe('node diags collection', () => {
  it('writes every item, failed ones as a file saying why, with one progress line an item, and seals the archive', async () => {
    const archive = new MemoryArchive();
    const progress: string[] = [];
    const result = await diagnostics().collect(archive, (line) => progress.push(line));
    const items = diagnostics().items();
    expect(result).toEqual({ path: '/tmp/calico-diags-test/diags.tar.gz', failed: ['bird-protocols.txt', 'bird-routes.txt', 'bird.cfg', 'bird.log', 'daemon-journal.txt'] });
    expect([...archive.files.keys()]).toEqual([...items.map((i) => i.file), 'index.txt']);
    expect(progress).toHaveLength(items.length);
    expect(archive.files.get('index.txt')).toBe(`${progress.join('\n')}\n`);
    expect(archive.files.get('routes.txt')).toBe('ip route show table all output\n');
    expect(archive.files.get('daemon.log')).toBe('node registered\n');
    expect(archive.files.get('bird-routes.txt')).toBe(
      "calicoctl node diags could not collect BIRD's routes (BIRD: show route all): unable to connect to BIRD socket /run/calico/bird.ctl: no such file or directory\n",
    );
    expect(progress).toContain("bird.cfg: BIRD's configuration (/run/calico/bird.cfg): not collected, /run/calico/bird.cfg does not exist");
    expect(archive.files.get('node-status.txt')).toBe('Calico process is running.\n');
    const resources = parse(archive.files.get('resources.yaml')!);
    expect(resources.node.metadata.name).toBe('host-1');
    expect(resources.workloadEndpoints.map((w: { metadata: { name: string } }) => w.metadata.name)).toEqual(['mine']);
    expect(resources.hostEndpoints).toEqual([]);
    expect(archive.discarded).toBe(false);
  });

  it('when the archive cannot be made, what was written is removed and the error says why', async () => {
    const archive = new MemoryArchive(true);
    await expect(diagnostics().collect(archive, () => undefined)).rejects.toThrow('No space left on device');
    expect(archive.discarded).toBe(true);
  });
});
