import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { EtcdEndpointStore } from '../adapters/datastore/etcd/etcd-endpoint-store.js';
import { DockerHttpApi, dockerTarget } from '../adapters/docker/docker-http-api.js';
import type { DockerApi } from '../ports/docker-api.js';
import type { EndpointStore } from '../ports/endpoint-store.js';
import { etcdSettingsFrom, nodeNameFrom } from '../daemon/config.js';
import type { IpamStore } from '../ports/ipam-store.js';

export interface CliContext {
  store: IpamStore;
  endpoints: EndpointStore;
  docker: DockerApi;
  node: string;
  out(text: string): void;
  close(): void;
}

/** The datastore from the same environment as the daemon: ETCD_ENDPOINTS, the TLS files, NODENAME, DOCKER_HOST. */
export function contextFromEnv(env: NodeJS.ProcessEnv): CliContext {
  const etcd = new EtcdClient(etcdSettingsFrom(env));
  return {
    store: new EtcdIpamStore(etcd),
    endpoints: new EtcdEndpointStore(etcd),
    docker: new DockerHttpApi(dockerTarget(env.DOCKER_HOST)),
    node: nodeNameFrom(env),
    out: (text) => process.stdout.write(`${text}\n`),
    close: () => etcd.close(),
  };
}
