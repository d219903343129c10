import type * as RPC from 'etcd3/lib/rpc.js';
import type { PolicyChange, PolicySnapshot, PolicyStore } from '../../../ports/policy-store.js';
import type { EtcdClient } from './etcd-client.js';
import { ENDPOINT_PREFIX, PROFILE_PREFIX } from './etcd-endpoint-store.js';
import { POOL_PREFIX, prefixEnd } from './keys.js';

const RESOURCES = '/calico/resources/v3/projectcalico.org/';
/** Key prefix → the kind of change, and the name it is kept under (both policy kinds in one map). */
const KINDS: [string, PolicyChange['kind'], string][] = [
  [PROFILE_PREFIX, 'profile', ''],
  [ENDPOINT_PREFIX, 'endpoint', ''],
  [POOL_PREFIX, 'pool', ''],
  [`${RESOURCES}nodes/`, 'node', ''],
  [`${RESOURCES}felixconfigurations/`, 'felix', ''],
  [`${RESOURCES}tiers/`, 'tier', ''],
  [`${RESOURCES}globalnetworkpolicies/`, 'policy', 'GlobalNetworkPolicy/'],
  [`${RESOURCES}networkpolicies/`, 'policy', 'NetworkPolicy/'],
  [`${RESOURCES}globalnetworksets/`, 'networkSet', 'GlobalNetworkSet/'],
  [`${RESOURCES}networksets/`, 'networkSet', 'NetworkSet/'],
  [`${RESOURCES}hostendpoints/`, 'hostEndpoint', ''],
];
const LISTS: Record<PolicyChange['kind'], Exclude<keyof PolicySnapshot, 'revision'>> = {
  profile: 'profiles',
  endpoint: 'endpoints',
  pool: 'pools',
  node: 'nodes',
  felix: 'felixConfigurations',
  tier: 'tiers',
  policy: 'policies',
  networkSet: 'networkSets',
  hostEndpoint: 'hostEndpoints',
};

function classify(key: string): { kind: PolicyChange['kind']; name: string } | undefined {
  for (const [prefix, kind, namePrefix] of KINDS) if (key.startsWith(prefix)) return { kind, name: namePrefix + key.slice(prefix.length) };
  return undefined;
}

const parse = (kv: RPC.IKeyValue): unknown => {
  try {
    return JSON.parse(kv.value.toString());
  } catch {
    return null;
  }
};

/** The Calico v3 resources policy depends on, read and watched under one prefix. */
export class EtcdPolicyStore implements PolicyStore {
  constructor(private readonly etcd: EtcdClient) {}

  async snapshot(): Promise<PolicySnapshot> {
    const response = await this.etcd.range({ key: Buffer.from(RESOURCES), range_end: prefixEnd(RESOURCES) });
    const snapshot: PolicySnapshot = { revision: response.header.revision, profiles: [], endpoints: [], pools: [], nodes: [], felixConfigurations: [], tiers: [], policies: [], networkSets: [], hostEndpoints: [] };
    for (const kv of response.kvs) {
      const found = classify(kv.key.toString());
      const value = parse(kv);
      if (!found || !value) continue;
      (snapshot[LISTS[found.kind]] as unknown[]).push(value);
    }
    return snapshot;
  }

  async watch(revision: string, onChange: (change: PolicyChange) => void, onLost: (error: Error) => void): Promise<{ cancel(): Promise<void> }> {
    const onEvent = (event: RPC.IEvent): void => {
      const found = classify(event.kv.key.toString());
      if (found) onChange({ ...found, value: event.type === 'Delete' ? null : (parse(event.kv) as never) } as PolicyChange);
    };
    return this.etcd.watchGroup([{ prefix: RESOURCES }], String(BigInt(revision) + 1n), onEvent, onLost);
  }
}
