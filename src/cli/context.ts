import { EtcdClient, type EtcdSettings } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { EtcdEndpointStore } from '../adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdResourceStore } from '../adapters/datastore/etcd/etcd-resource-store.js';
import { EtcdSyncSource } from '../adapters/datastore/etcd/etcd-sync-source.js';
import { DockerHttpApi, dockerTarget } from '../adapters/docker/docker-http-api.js';
import { supervisorFor } from '../adapters/host/daemon-supervisor.js';
import { pluginActivates } from '../adapters/host/plugin-probe.js';
import { HostSystemProbes } from '../adapters/host/system-probes.js';
import { RunDirHostStatus } from '../adapters/host/host-status-source.js';
import { daemonFiles, LocalHostDiagnostics, TarDiagnosticsArchive } from '../adapters/host/diagnostics.js';
import type { CalicoNode } from '../domain/resources.js';
import type { DockerApi } from '../ports/docker-api.js';
import type { HostStatusSource } from '../ports/host-status.js';
import type { EndpointStore } from '../ports/endpoint-store.js';
import { nodeNameFrom, withCalicoNodeNames } from '../config/calico-node-env.js';
import { readConfigFile } from '../config/config-file.js';
import { datastoreFrom } from '../config/datastore-config.js';
import { hostPaths } from '../config/paths.js';
import type { SyncSource } from '../ports/datastore-sync.js';
import type { IpamStore } from '../ports/ipam-store.js';
import type { ResourceStore } from '../ports/resource-store.js';
import { PoolService } from '../services/ipam/pool-service.js';
import { NetworkProfiles } from '../services/network/network-profiles.js';
import { NodeRemoval } from '../services/nodes/node-removal.js';
import { NodeRunner } from '../services/nodes/node-run.js';
import { SystemCheck } from '../services/nodes/checksystem.js';
import { NodeDiagnostics, type DiagnosticItem, type DiagnosticsResult } from '../services/nodes/diagnostics.js';
import { ResourceService } from '../services/resources/resource-service.js';

export interface CliContext {
  store: IpamStore;
  /** Where an IPAM service of calicoctl's own reads the datastore from. */
  syncSource: SyncSource;
  endpoints: EndpointStore;
  resourceStore: ResourceStore;
  docker: DockerApi;
  node: string;
  /** The etcd this calicoctl talks to (environment over config file over default). */
  datastore: EtcdSettings;
  /** calicoctl's environment, calico/node's CALICO_* names applied. */
  env: NodeJS.ProcessEnv;
  /** CALICO_RUN_DIR: where this host's BIRD socket and the daemon's PID file are. */
  runDir: string;
  resources(): ResourceService;
  nodeRemoval(): NodeRemoval;
  /** `calicoctl node run`'s service: this host's daemon, through systemd or in the background. */
  nodeRunner(): NodeRunner;
  /** This host's daemon and BIRD, for `node status`. */
  hostStatus(): HostStatusSource;
  /** `calicoctl node checksystem`'s checks, asked of this host. */
  systemCheck(): SystemCheck;
  /** `calicoctl node diags`: collects into a new archive in the temp directory, with calicoctl's own `reports`. */
  collectDiagnostics(reports: DiagnosticItem[], logDir: string | undefined, progress: (line: string) => void): Promise<DiagnosticsResult>;
  /** One line to standard output. */
  out(text: string): void;
  /** Text to standard output as it is. */
  write(text: string): void;
  /** All of standard input (for `-f -` and `rule update`). */
  stdin(): Promise<string>;
  close(): void;
}

/** Where calicoctl reads and writes: the process's own streams, or a test's. */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdout(text: string): void;
  stderr(text: string): void;
  stdin(): Promise<string>;
}

export async function processStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

/** A calicoctl failure whose text is Calico's own: printed to standard error as it is, exit status 1. */
export class CalicoctlFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CalicoctlFailure';
  }
}

/**
 * The datastore from the same settings as the daemon: the ETCD_* variables over the config file
 * (`-c FILE`, else /etc/calico/calicoctl.cfg if it exists); NODENAME, DOCKER_HOST.
 */
export function contextFrom(io: CliIo, configFile?: string): CliContext {
  const env = withCalicoNodeNames(io.env);
  const datastore = datastoreFrom(env, readConfigFile(configFile, env)).etcd;
  const etcd = new EtcdClient(datastore);
  const store = new EtcdIpamStore(etcd);
  const endpoints = new EtcdEndpointStore(etcd);
  const resourceStore = new EtcdResourceStore(etcd);
  const syncSource = new EtcdSyncSource(etcd);
  const nodeRemoval = (): NodeRemoval => new NodeRemoval(resourceStore, endpoints, store, new NetworkProfiles(endpoints), syncSource);
  return {
    store,
    syncSource,
    endpoints,
    resourceStore,
    docker: new DockerHttpApi(dockerTarget(env.DOCKER_HOST)),
    get node() {
      return nodeNameFrom(env);
    },
    datastore,
    env,
    runDir: hostPaths(env).runDir,
    resources: () => new ResourceService(resourceStore, new PoolService(store), nodeRemoval()),
    nodeRemoval,
    nodeRunner: () => {
      const paths = hostPaths(env);
      return new NodeRunner(supervisorFor(paths, env), {
        pluginAnswers: () => pluginActivates(`${paths.pluginDir}/calico.sock`),
        node: (name) => resourceStore.get<CalicoNode>({ kind: 'Node', name }),
      });
    },
    hostStatus: () => new RunDirHostStatus(hostPaths(env).runDir),
    systemCheck: () => {
      const { runDir, pluginDir } = hostPaths(env);
      return new SystemCheck(new HostSystemProbes({ env, runDir, pluginDir }), { backend: env.CALICO_NETWORKING_BACKEND?.trim() || 'bird' });
    },
    collectDiagnostics: async (reports, logDir, progress) => {
      const paths = hostPaths(env);
      const diagnostics = new NodeDiagnostics({
        node: nodeNameFrom(env),
        host: new LocalHostDiagnostics(paths.runDir),
        resources: resourceStore,
        endpoints,
        ipam: store,
        files: daemonFiles(paths, logDir),
        reports,
      });
      return diagnostics.collect(await TarDiagnosticsArchive.create(), progress);
    },
    out: (text) => io.stdout(`${text}\n`),
    write: (text) => io.stdout(text),
    stdin: () => io.stdin(),
    close: () => etcd.close(),
  };
}
