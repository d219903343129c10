import type { Profile, WorkloadEndpoint } from '../domain/endpoint-model.js';
import type { IpPool } from '../domain/ipam-model.js';

export interface PolicySnapshot {
  revision: string;
  profiles: Profile[];
  endpoints: WorkloadEndpoint[];
  pools: IpPool[];
}

export type PolicyChange =
  | { kind: 'profile'; name: string; value: Profile | null }
  | { kind: 'endpoint'; name: string; value: WorkloadEndpoint | null }
  | { kind: 'pool'; name: string; value: IpPool | null };

/** Profiles, endpoints of every node, and pools, with a stream of their changes. */
export interface PolicyStore {
  snapshot(): Promise<PolicySnapshot>;
  watch(revision: string, onChange: (change: PolicyChange) => void, onLost: (error: Error) => void): Promise<{ cancel(): Promise<void> }>;
}
