import { Cidr, formatCidr } from '../../domain/cidr.js';
import type { AllocationInfo } from '../../domain/allocation-block.js';
import type { AllocationAttribute, IpamHandle } from '../../domain/ipam-model.js';
import type { IpamWrite, Stored } from '../../ports/ipam-store.js';

/** The handle of a new allocation: created with it, in the same transaction, so the two never disagree. */
export function handleCreate(attribute: AllocationAttribute, cidr: Cidr): IpamWrite {
  return {
    target: { kind: 'handle', id: attribute.handle_id! },
    expect: { absent: true },
    value: { block: { [formatCidr(cidr)]: 1 } } satisfies IpamHandle,
  };
}

/**
 * Handle updates for freed allocations. A handle we created holds exactly one allocation, so the
 * first attempt expects that value and deletes it; when the handle turns out to be shared or
 * written by another tool, the retry works from the value read back on failure.
 */
export function handleReleases(released: AllocationInfo[], cidr: Cidr, known: Map<string, Stored<IpamHandle> | null>): IpamWrite[] {
  const counts = new Map<string, number>();
  for (const r of released) if (r.handleId) counts.set(r.handleId, (counts.get(r.handleId) ?? 0) + 1);
  const blockKey = formatCidr(cidr);
  const writes: IpamWrite[] = [];
  for (const [id, count] of counts) {
    const current = known.get(id);
    if (current === null) continue;
    if (current === undefined) {
      writes.push({ target: { kind: 'handle', id }, expect: { value: { block: { [blockKey]: count } } }, value: null });
      continue;
    }
    const blocks = { ...current.value.block };
    const left = (blocks[blockKey] ?? 0) - count;
    if (left > 0) blocks[blockKey] = left;
    else delete blocks[blockKey];
    const value = Object.keys(blocks).length === 0 ? null : { ...current.value, block: blocks };
    writes.push({ target: { kind: 'handle', id }, expect: { modRevision: current.modRevision }, value });
  }
  return writes;
}
