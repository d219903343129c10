import type { Cidr } from '../domain/cidr.js';
import type { AllocationBlock, IpamConfig } from '../domain/ipam-model.js';
import type { Resource } from '../domain/resources.js';
import type { Stored } from './ipam-store.js';
import type { ResourceRef } from './resource-store.js';

/** One key of the datastore changed, with its new value (null: deleted) and the revision of the change. */
export type SyncedChange =
  | { kind: 'resource'; ref: ResourceRef; value: Resource | null; revision: string }
  | { kind: 'block'; cidr: Cidr; stored: Stored<AllocationBlock> | null; revision: string }
  | { kind: 'ipamConfig'; stored: Stored<IpamConfig> | null; revision: string };

/** Everything the daemon follows, read at one revision. */
export interface SyncSnapshot {
  revision: string;
  /** Every Calico v3 resource (resourceVersion set). */
  resources: Resource[];
  blocks: Stored<AllocationBlock>[];
  ipamConfig: Stored<IpamConfig> | null;
}

/**
 * Where a daemon's one view of the datastore comes from: a snapshot in one round trip, then one watch
 * per key prefix. Values another tool wrote that cannot be read are left out, never fatal.
 */
export interface SyncSource {
  snapshot(): Promise<SyncSnapshot>;
  /**
   * Changes after `revision`, one batch per message from the datastore, in revision order per prefix.
   * `onLost` fires once when the changes cannot resume (the revision was compacted away).
   */
  watch(revision: string, onChanges: (changes: SyncedChange[]) => void, onLost: (error: Error) => void): Promise<{ cancel(): Promise<void> }>;
}
