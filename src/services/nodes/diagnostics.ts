import { stringify } from 'yaml';
import { formatCidr } from '../../domain/cidr.js';
import { hostAffinity } from '../../domain/ipam-model.js';
import type { HostEndpoint } from '../../domain/policy-model.js';
import type { CalicoNode } from '../../domain/resources.js';
import type { DiagnosticsArchive, HostDiagnostics } from '../../ports/diagnostics.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import type { IpamStore } from '../../ports/ipam-store.js';
import type { ResourceStore } from '../../ports/resource-store.js';

/** One file of the archive: what it holds, and how to get it. */
export interface DiagnosticItem {
  file: string;
  what: string;
  collect(): Promise<string>;
}

export interface DiagnosticsSources {
  node: string;
  host: HostDiagnostics;
  resources: ResourceStore;
  endpoints: EndpointStore;
  ipam: IpamStore;
  /** The files the daemon and BIRD write (CALICO_LOG_DIR, CALICO_RUN_DIR). */
  files: { daemonLog: string; birdLog: string; birdConfig: string };
  /** calicoctl's own reports (node status, checksystem), as they print. */
  reports: DiagnosticItem[];
}

export interface DiagnosticsResult {
  path: string;
  /** The files that hold why their item could not be collected. */
  failed: string[];
}

const reason = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * `calicoctl node diags`: what someone debugging this host asks for first (routes, addresses,
 * iptables, ipsets, BIRD's view, the logs, this node's resources in etcd), one file an item, in
 * one archive. An item that cannot be collected becomes a file saying why; the archive is made anyway.
 */
export class NodeDiagnostics {
  constructor(private readonly sources: DiagnosticsSources) {}

  items(): DiagnosticItem[] {
    const { host, files } = this.sources;
    const command = (file: string, what: string, tool: string, args: string[]): DiagnosticItem => ({
      file,
      what: `${what} (${[tool, ...args].join(' ')})`,
      collect: () => host.command(tool, args),
    });
    const bird = (file: string, what: string, birdCommand: string): DiagnosticItem => ({ file, what: `${what} (BIRD: ${birdCommand})`, collect: () => host.bird(birdCommand) });
    const file = (name: string, what: string, path: string): DiagnosticItem => ({ file: name, what: `${what} (${path})`, collect: () => host.file(path) });
    return [
      command('routes.txt', 'IPv4 routes, every table', 'ip', ['route', 'show', 'table', 'all']),
      command('routes6.txt', 'IPv6 routes, every table', 'ip', ['-6', 'route', 'show', 'table', 'all']),
      command('addresses.txt', 'interfaces and addresses', 'ip', ['addr']),
      command('iptables-save.txt', 'IPv4 iptables with counters', 'iptables-save', ['-c']),
      command('ip6tables-save.txt', 'IPv6 iptables with counters', 'ip6tables-save', ['-c']),
      command('ipset.txt', 'ipsets', 'ipset', ['list']),
      bird('bird-protocols.txt', "BIRD's protocols", 'show protocols all'),
      bird('bird-routes.txt', "BIRD's routes", 'show route all'),
      file('bird.cfg', "BIRD's configuration", files.birdConfig),
      file('bird.log', "BIRD's log", files.birdLog),
      { file: 'daemon-journal.txt', what: "the daemon's systemd journal", collect: () => host.daemonJournal() },
      file('daemon.log', "the daemon's log file, where calicoctl node run has it without systemd", files.daemonLog),
      { file: 'resources.yaml', what: `node ${this.sources.node}'s resources in etcd`, collect: () => this.nodeResources() },
      ...this.sources.reports,
    ];
  }

  /** Collects every item into `archive`, telling `progress` one line an item, and seals it. */
  async collect(archive: DiagnosticsArchive, progress: (line: string) => void): Promise<DiagnosticsResult> {
    const failed: string[] = [];
    const index: string[] = [];
    try {
      for (const item of this.items()) {
        let content: string;
        let outcome: string;
        try {
          content = await item.collect();
          outcome = `${item.file}: ${item.what}`;
        } catch (error) {
          content = `calicoctl node diags could not collect ${item.what}: ${reason(error)}\n`;
          outcome = `${item.file}: ${item.what}: not collected, ${reason(error)}`;
          failed.push(item.file);
        }
        await archive.add(item.file, content);
        index.push(outcome);
        progress(outcome);
      }
      await archive.add('index.txt', `${index.join('\n')}\n`);
      return { path: await archive.seal(), failed };
    } catch (error) {
      await archive.discard();
      throw error;
    }
  }

  /** The Node, its block affinities and blocks, its workload and host endpoints, as YAML. */
  private async nodeResources(): Promise<string> {
    const { node, resources, endpoints, ipam } = this.sources;
    const [found, hostEndpoints, workloads, affinities, snapshot] = await Promise.all([
      resources.get<CalicoNode>({ kind: 'Node', name: node }),
      resources.list<HostEndpoint>('HostEndpoint'),
      endpoints.listEndpoints(),
      ipam.listAffinities(node),
      ipam.snapshot(),
    ]);
    return stringify({
      node: found ?? `no Node named ${node} in the datastore`,
      blockAffinities: affinities.map((a) => ({ cidr: formatCidr(a.cidr), ...a.stored.value })),
      blocks: snapshot.blocks.filter((b) => b.value.affinity === hostAffinity(node)).map((b) => b.value),
      workloadEndpoints: workloads.filter((w) => w.value.spec.node === node).map((w) => w.value),
      hostEndpoints: hostEndpoints.filter((h) => h.spec.node === node),
    });
  }
}
