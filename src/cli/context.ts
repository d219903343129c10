import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { etcdSettingsFrom, nodeNameFrom } from '../daemon/config.js';
import type { IpamStore } from '../ports/ipam-store.js';

export interface CliContext {
  store: IpamStore;
  node: string;
  out(text: string): void;
  close(): void;
}

/** The datastore from the same environment as the daemon: ETCD_ENDPOINTS, the TLS files, NODENAME. */
export function contextFromEnv(env: NodeJS.ProcessEnv): CliContext {
  const etcd = new EtcdClient(etcdSettingsFrom(env));
  return {
    store: new EtcdIpamStore(etcd),
    node: nodeNameFrom(env),
    out: (text) => process.stdout.write(`${text}\n`),
    close: () => etcd.close(),
  };
}
