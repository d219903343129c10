import type { Profile, WorkloadEndpoint } from '../domain/endpoint-model.js';
import type { IpPool } from '../domain/ipam-model.js';
import type { CalicoNode, Resource } from '../domain/resources.js';
import type { GlobalNetworkPolicy, HostEndpoint, NetworkPolicy, NetworkSet, Tier } from '../domain/policy-model.js';

export interface PolicySnapshot {
  revision: string;
  profiles: Profile[];
  endpoints: WorkloadEndpoint[];
  pools: IpPool[];
  nodes: CalicoNode[];
  felixConfigurations: Resource[];
  tiers: Tier[];
  policies: (GlobalNetworkPolicy | NetworkPolicy)[];
  networkSets: NetworkSet[];
  hostEndpoints: HostEndpoint[];
}

export type PolicyChange =
  | { kind: 'profile'; name: string; value: Profile | null }
  | { kind: 'endpoint'; name: string; value: WorkloadEndpoint | null }
  | { kind: 'pool'; name: string; value: IpPool | null }
  | { kind: 'node'; name: string; value: CalicoNode | null }
  | { kind: 'felix'; name: string; value: Resource | null }
  | { kind: 'tier'; name: string; value: Tier | null }
  /** Keyed by kind and name (`GlobalNetworkPolicy/x`, `NetworkPolicy/<ns>/x`): the two kinds share no names. */
  | { kind: 'policy'; name: string; value: GlobalNetworkPolicy | NetworkPolicy | null }
  | { kind: 'networkSet'; name: string; value: NetworkSet | null }
  | { kind: 'hostEndpoint'; name: string; value: HostEndpoint | null };

/** Profiles, endpoints of every node, pools, nodes and Felix's configuration, with a stream of their changes. */
export interface PolicyStore {
  snapshot(): Promise<PolicySnapshot>;
  watch(revision: string, onChange: (change: PolicyChange) => void, onLost: (error: Error) => void): Promise<{ cancel(): Promise<void> }>;
}
