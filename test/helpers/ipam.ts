import { afterAll, beforeAll, beforeEach } from 'vitest';
import { EtcdClient } from '../../src/adapters/datastore/etcd/etcd-client.js';
import { TestEtcd } from './etcd.js';
import { EtcdIpamStore } from '../../src/adapters/datastore/etcd/etcd-ipam-store.js';
import { EtcdSyncSource } from '../../src/adapters/datastore/etcd/etcd-sync-source.js';
import { prefixEnd } from '../../src/adapters/datastore/etcd/keys.js';
import { workloadEndpointName, type WorkloadEndpoint } from '../../src/domain/endpoint-model.js';

/** A store on a real etcd, plus a way to wipe everything Calico wrote between tests. */
export function storeOn(endpoint: string, tls?: { caCertFile: string; certFile: string; keyFile: string }) {
  const etcd = new EtcdClient({ endpoints: [endpoint], ...tls });
  const store = new EtcdIpamStore(etcd);
  const source = new EtcdSyncSource(etcd);
  const wipe = async (): Promise<void> => void (await etcd.deleteRange({ key: Buffer.from('/calico/'), range_end: prefixEnd('/calico/') }));
  return { etcd, store, source, wipe };
}

export type EtcdContext = ReturnType<typeof storeOn>;

/**
 * A real etcd for the test file: started before the first test, removed after the last, and (unless
 * told otherwise) wiped of everything Calico wrote before each test. Read `ctx` inside tests and hooks.
 */
export function etcdForSuite(options: { wipeEachTest?: boolean } = {}): { etcd: TestEtcd; readonly ctx: EtcdContext } {
  const suite = { etcd: new TestEtcd(), ctx: undefined as unknown as EtcdContext };
  beforeAll(async () => {
    await suite.etcd.start();
    suite.ctx = storeOn(suite.etcd.endpoint);
    await suite.ctx.wipe();
  });
  afterAll(async () => {
    suite.ctx?.etcd.close();
    await suite.etcd.destroy();
  });
  if (options.wipeEachTest !== false) beforeEach(async () => suite.ctx.wipe());
  return suite;
}

/** A workload endpoint as the network driver writes it, on `node`, holding `addresses` (each a /32). */
export function workloadEndpoint(node: string, id: string, addresses: string[]): WorkloadEndpoint {
  return {
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: workloadEndpointName(node, id), namespace: 'libnetwork', labels: {} },
    spec: {
      orchestrator: 'libnetwork',
      workload: 'libnetwork',
      node,
      endpoint: id,
      interfaceName: `cali${id}`,
      ipNetworks: addresses.map((a) => `${a}/32`),
      mac: 'ee:ee:ee:ee:ee:ee',
      profiles: [],
    },
  };
}
