import { EtcdClient } from '../../src/adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../../src/adapters/datastore/etcd/etcd-ipam-store.js';
import { prefixEnd } from '../../src/adapters/datastore/etcd/keys.js';

/** A store on a real etcd, plus a way to wipe everything Calico wrote between tests. */
export function storeOn(endpoint: string, tls?: { caCertFile: string; certFile: string; keyFile: string }) {
  const etcd = new EtcdClient({ endpoints: [endpoint], ...tls });
  const store = new EtcdIpamStore(etcd);
  const wipe = async (): Promise<void> => void (await etcd.deleteRange({ key: Buffer.from('/calico/'), range_end: prefixEnd('/calico/') }));
  return { etcd, store, wipe };
}
