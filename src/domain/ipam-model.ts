/**
 * Calico's IPAM objects with the JSON field names Calico writes (libcalico-go `model/*.go`,
 * `api/pkg/apis/projectcalico/v3/ippool.go`), so Calico's own tools can read our data.
 */

export interface IpPoolSpec {
  cidr: string;
  blockSize?: number;
  ipipMode?: 'Never' | 'Always' | 'CrossSubnet';
  vxlanMode?: 'Never' | 'Always' | 'CrossSubnet';
  natOutgoing?: boolean;
  disabled?: boolean;
  nodeSelector?: string;
}

export interface IpPool {
  kind: 'IPPool';
  apiVersion: 'projectcalico.org/v3';
  metadata: { name: string; creationTimestamp?: string; uid?: string; annotations?: Record<string, string> };
  spec: IpPoolSpec;
}

export interface AllocationAttribute {
  handle_id: string | null;
  secondary: Record<string, string> | null;
}

export interface AllocationBlock {
  cidr: string;
  affinity: string | null;
  strictAffinity?: boolean;
  allocations: (number | null)[];
  unallocated: number[];
  attributes: AllocationAttribute[];
  deleted?: boolean;
  /** uint64 in Calico, often above 2^53: kept as a bigint. */
  sequenceNumber?: bigint;
  sequenceNumberForAllocation?: Record<string, bigint>;
}

export type AffinityState = 'pending' | 'confirmed' | 'pendingDeletion';

export interface BlockAffinity {
  state: AffinityState;
  deleted?: boolean;
}

export interface IpamHandle {
  block: Record<string, number>;
  deleted?: boolean;
}

export interface IpamConfig {
  strict_affinity: boolean;
  auto_allocate_blocks: boolean;
  maxBlocksPerHost: number;
}

export const DEFAULT_IPAM_CONFIG: IpamConfig = { strict_affinity: false, auto_allocate_blocks: true, maxBlocksPerHost: 0 };

export const hostAffinity = (node: string): string => `host:${node}`;
