import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { EtcdEndpointStore } from '../adapters/datastore/etcd/etcd-endpoint-store.js';
import { EtcdResourceStore } from '../adapters/datastore/etcd/etcd-resource-store.js';
import { DockerHttpApi, dockerTarget } from '../adapters/docker/docker-http-api.js';
import type { DockerApi } from '../ports/docker-api.js';
import type { EndpointStore } from '../ports/endpoint-store.js';
import { DEFAULT_RUN_DIR, etcdSettingsFrom, nodeNameFrom } from '../daemon/config.js';
import type { IpamStore } from '../ports/ipam-store.js';
import type { ResourceStore } from '../ports/resource-store.js';
import { PoolService } from '../services/ipam/pool-service.js';
import { NetworkProfiles } from '../services/network/network-profiles.js';
import { NodeRemoval } from '../services/nodes/node-removal.js';
import { ResourceService } from '../services/resources/resource-service.js';

export interface CliContext {
  store: IpamStore;
  endpoints: EndpointStore;
  resourceStore: ResourceStore;
  docker: DockerApi;
  node: string;
  /** CALICO_RUN_DIR: where this host's BIRD socket and the daemon's PID file are. */
  runDir: string;
  resources(): ResourceService;
  nodeRemoval(): NodeRemoval;
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

/** The datastore from the same environment as the daemon: ETCD_ENDPOINTS, the TLS files, NODENAME, DOCKER_HOST. */
export function contextFrom(io: CliIo): CliContext {
  const env = io.env;
  const etcd = new EtcdClient(etcdSettingsFrom(env));
  const store = new EtcdIpamStore(etcd);
  const endpoints = new EtcdEndpointStore(etcd);
  const resourceStore = new EtcdResourceStore(etcd);
  const nodeRemoval = (): NodeRemoval => new NodeRemoval(resourceStore, endpoints, store, new NetworkProfiles(endpoints));
  return {
    store,
    endpoints,
    resourceStore,
    docker: new DockerHttpApi(dockerTarget(env.DOCKER_HOST)),
    get node() {
      return nodeNameFrom(env);
    },
    runDir: env.CALICO_RUN_DIR || DEFAULT_RUN_DIR,
    resources: () => new ResourceService(resourceStore, new PoolService(store), nodeRemoval()),
    nodeRemoval,
    out: (text) => io.stdout(`${text}\n`),
    write: (text) => io.stdout(text),
    stdin: () => io.stdin(),
    close: () => etcd.close(),
  };
}
