import { AddressInUseError, ConflictError } from './errors.js';
import { Cidr, cidrSize, formatCidr } from './cidr.js';
import type { AllocationAttribute, AllocationBlock } from './ipam-model.js';

/**
 * Pure operations on an AllocationBlock. Each returns a new block and never touches its input, so a
 * cached block stays intact when the compare-and-swap that would have stored the result fails
 * (calico#12697 came from mutating the cached copy before a failed write).
 */

export function newBlock(cidr: Cidr, affinity: string | null, nowNanos: bigint): AllocationBlock {
  const size = Number(cidrSize(cidr));
  return {
    cidr: formatCidr(cidr),
    affinity,
    strictAffinity: false,
    allocations: new Array<number | null>(size).fill(null),
    unallocated: Array.from({ length: size }, (_, i) => i),
    attributes: [],
    deleted: false,
    // Starts at wall-clock nanoseconds, as Calico does, so a deleted and re-created block never repeats a number.
    sequenceNumber: nowNanos,
    sequenceNumberForAllocation: {},
  };
}

function cloneBlock(block: AllocationBlock): AllocationBlock {
  return {
    ...block,
    allocations: [...block.allocations],
    unallocated: [...block.unallocated],
    attributes: block.attributes.map((a) => ({ handle_id: a.handle_id, secondary: a.secondary ? { ...a.secondary } : null })),
    sequenceNumberForAllocation: { ...(block.sequenceNumberForAllocation ?? {}) },
  };
}

export const freeCount = (block: AllocationBlock): number => block.unallocated.length;

export const isEmpty = (block: AllocationBlock): boolean => block.allocations.every((a) => a === null);

export const inUseCount = (block: AllocationBlock): number => block.allocations.filter((a) => a !== null).length;

function bumpSequence(block: AllocationBlock): bigint {
  const next = (block.sequenceNumber ?? 0n) + 1n;
  block.sequenceNumber = next;
  return next;
}

function attributeIndex(block: AllocationBlock, attribute: AllocationAttribute): number {
  block.attributes.push({ handle_id: attribute.handle_id, secondary: attribute.secondary ? { ...attribute.secondary } : null });
  return block.attributes.length - 1;
}

/** Takes up to `attributes.length` ordinals from the head of `unallocated` (FIFO reuse, as Calico). */
export function allocateFromBlock(
  block: AllocationBlock,
  attributes: AllocationAttribute[],
): { block: AllocationBlock; ordinals: number[] } {
  const next = cloneBlock(block);
  const sequence = bumpSequence(next);
  const ordinals = next.unallocated.splice(0, attributes.length);
  ordinals.forEach((ordinal, i) => {
    next.allocations[ordinal] = attributeIndex(next, attributes[i]!);
    next.sequenceNumberForAllocation![String(ordinal)] = sequence;
  });
  return { block: next, ordinals };
}

/** Allocates exactly `ordinal`, wherever it sits in `unallocated`. */
export function allocateOrdinal(block: AllocationBlock, ordinal: number, attribute: AllocationAttribute, address: string): AllocationBlock {
  const position = block.unallocated.indexOf(ordinal);
  if (position < 0) throw new AddressInUseError(`Address already assigned in block: ${address} is in use`);
  const next = cloneBlock(block);
  const sequence = bumpSequence(next);
  next.unallocated.splice(position, 1);
  next.allocations[ordinal] = attributeIndex(next, attribute);
  next.sequenceNumberForAllocation![String(ordinal)] = sequence;
  return next;
}

export interface AllocationInfo {
  ordinal: number;
  handleId: string | null;
  secondary: Record<string, string> | null;
  sequenceNumber: bigint | undefined;
}

export function allocationAt(block: AllocationBlock, ordinal: number): AllocationInfo | undefined {
  const index = block.allocations[ordinal];
  if (index === null || index === undefined) return undefined;
  const attribute = block.attributes[index];
  return {
    ordinal,
    handleId: attribute?.handle_id ?? null,
    secondary: attribute?.secondary ?? null,
    sequenceNumber: block.sequenceNumberForAllocation?.[String(ordinal)],
  };
}

export interface ReleaseRequest {
  ordinal: number;
  /** When given, the release happens only if the ordinal still carries this handle. */
  handleId?: string;
  /** When given, the release happens only if the ordinal was allocated at this sequence number (no ABA). */
  sequenceNumber?: bigint;
}

/**
 * Frees the given ordinals (free ones are skipped: release is idempotent). A handle or sequence
 * number that does not match refuses the whole request and leaves the block as it was.
 * Returns the handles that lost an allocation, one entry per freed ordinal.
 */
export function releaseFromBlock(block: AllocationBlock, requests: ReleaseRequest[]): { block: AllocationBlock; released: AllocationInfo[] } {
  const released: AllocationInfo[] = [];
  const seen = new Set<number>();
  for (const request of requests) {
    if (seen.has(request.ordinal)) continue;
    seen.add(request.ordinal);
    const info = allocationAt(block, request.ordinal);
    if (!info) continue;
    if (request.handleId !== undefined && request.handleId !== info.handleId) {
      throw new ConflictError(`ordinal ${request.ordinal} of block ${block.cidr} belongs to handle ${info.handleId}, not ${request.handleId}`);
    }
    if (request.sequenceNumber !== undefined && request.sequenceNumber !== info.sequenceNumber) {
      throw new ConflictError(`ordinal ${request.ordinal} of block ${block.cidr} was re-allocated since sequence number ${request.sequenceNumber}`);
    }
    released.push(info);
  }
  if (released.length === 0) return { block, released };
  const next = cloneBlock(block);
  bumpSequence(next);
  for (const info of released) {
    next.allocations[info.ordinal] = null;
    next.unallocated.push(info.ordinal);
    delete next.sequenceNumberForAllocation![String(info.ordinal)];
  }
  compactAttributes(next);
  return { block: next, released };
}

/** Drops attributes nothing points at and renumbers `allocations` to match. */
function compactAttributes(block: AllocationBlock): void {
  const used = new Set(block.allocations.filter((a): a is number => a !== null));
  const renumber = new Map<number, number>();
  const kept: AllocationAttribute[] = [];
  block.attributes.forEach((attribute, index) => {
    if (!used.has(index)) return;
    renumber.set(index, kept.length);
    kept.push(attribute);
  });
  block.attributes = kept;
  block.allocations = block.allocations.map((a) => (a === null ? null : renumber.get(a)!));
}

/** Calico's `validateBlock` invariants (calicoctl ipam check). Returns one message per problem. */
export function blockProblems(block: AllocationBlock, size: number): string[] {
  const problems: string[] = [];
  const referenced = new Set<number>();
  if (block.allocations.length !== size) problems.push(`has ${block.allocations.length} allocation slots, expected ${size}`);
  block.allocations.forEach((index, ordinal) => {
    if (index === null) return;
    if (!Number.isInteger(index) || index < 0 || index >= block.attributes.length) {
      problems.push(`ordinal ${ordinal} points at missing attribute ${index}`);
    } else {
      referenced.add(index);
    }
  });
  block.attributes.forEach((_, index) => {
    if (!referenced.has(index)) problems.push(`attribute ${index} is not used by any allocation`);
  });
  const seen = new Set<number>();
  for (const ordinal of block.unallocated) {
    if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= size) problems.push(`unallocated ordinal ${ordinal} is out of range`);
    else if (seen.has(ordinal)) problems.push(`ordinal ${ordinal} is listed twice in unallocated`);
    else if (block.allocations[ordinal] !== null && block.allocations[ordinal] !== undefined) problems.push(`ordinal ${ordinal} is both allocated and unallocated`);
    seen.add(ordinal);
  }
  const allocated = block.allocations.filter((a) => a !== null).length;
  if (allocated + seen.size !== size) {
    problems.push(`${allocated} allocated + ${seen.size} unallocated != ${size} addresses`);
  }
  return problems;
}
