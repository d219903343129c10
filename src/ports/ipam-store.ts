import type { Cidr } from '../domain/cidr.js';
import type { AllocationBlock, BlockAffinity, IpamConfig, IpamHandle, IpPool } from '../domain/ipam-model.js';

/** Which IPAM object a read or write is about. The adapter owns the key layout. */
export type IpamTarget =
  | { kind: 'pool'; name: string }
  | { kind: 'block'; cidr: Cidr }
  | { kind: 'affinity'; node: string; cidr: Cidr }
  | { kind: 'handle'; id: string }
  | { kind: 'config' };

export interface IpamValues {
  pool: IpPool;
  block: AllocationBlock;
  affinity: BlockAffinity;
  handle: IpamHandle;
  config: IpamConfig;
}

export interface Stored<T> {
  value: T;
  modRevision: string;
  createRevision: string;
}

/** What the stored object must look like for a write to apply. */
export type Expectation = { absent: true } | { modRevision: string } | { value: unknown } | { any: true };

export interface IpamWrite {
  target: IpamTarget;
  expect: Expectation;
  /** The new value, or null to delete. */
  value: unknown | null;
}

/**
 * Holds only if no object it covers was created after `revision`: closes the claim race. A pool guard
 * covers every pool; a block guard every block overlapping `within` (a claim scope, see `claimScope`).
 */
export type CreationGuard = { kind: 'pool'; revision: string } | { kind: 'block'; within: Cidr; revision: string };

export interface CommitResult {
  succeeded: boolean;
  revision: string;
  /** On failure: what each written target holds now (null when absent), read in the same round trip. */
  current: Map<IpamWrite, Stored<unknown> | null>;
  /** On a failed guard: the objects it covers created after the guard's revision. */
  created: Stored<unknown>[];
}

export interface IpamSnapshot {
  revision: string;
  pools: Stored<IpPool>[];
  blocks: Stored<AllocationBlock>[];
  config: Stored<IpamConfig> | null;
}

export interface IpamStore {
  /** Pools, blocks and config at one revision, in one round trip. */
  snapshot(): Promise<IpamSnapshot>;
  get<K extends IpamTarget['kind']>(target: Extract<IpamTarget, { kind: K }>): Promise<Stored<IpamValues[K]> | null>;
  listHandles(): Promise<Map<string, Stored<IpamHandle>>>;
  listAffinities(node?: string): Promise<{ node: string; cidr: Cidr; stored: Stored<BlockAffinity> }[]>;
  /**
   * The network a guard for a claim of `block` covers: the store checks every block overlapping it in
   * the claim's transaction, so claims conflict only with blocks created nearby. Contains `block`.
   */
  claimScope(block: Cidr): Cidr;
  /** One etcd transaction: all writes apply, or none do. */
  commit(writes: IpamWrite[], guard?: CreationGuard): Promise<CommitResult>;
}
