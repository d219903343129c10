import { Cidr } from '../../domain/cidr.js';
import { isEmpty } from '../../domain/allocation-block.js';
import { ConflictError } from '../../domain/errors.js';
import { AllocationBlock, hostAffinity } from '../../domain/ipam-model.js';
import type { IpamStore, IpamWrite } from '../../ports/ipam-store.js';

const MAX_ATTEMPTS = 20;

export type AffinityRelease = 'released' | 'not-affine' | 'in-use';

/**
 * Takes a block away from `node`, as Calico's ReleaseAffinity does: the block loses its affinity
 * (and is deleted when nothing is allocated in it) and the node's affinity key goes, in one
 * transaction that compares the block's revision, so an allocation that lands meanwhile is never
 * lost. With `onlyIfEmpty`, a block that holds an address is left alone.
 */
export async function releaseBlockAffinity(store: IpamStore, cidr: Cidr, node: string, options: { onlyIfEmpty?: boolean } = {}): Promise<AffinityRelease> {
  const dropAffinity: IpamWrite = { target: { kind: 'affinity', node, cidr }, expect: { any: true }, value: null };
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const stored = await store.get({ kind: 'block', cidr });
    if (!stored || stored.value.affinity !== hostAffinity(node)) {
      await store.commit([dropAffinity]);
      return 'not-affine';
    }
    const empty = isEmpty(stored.value);
    if (options.onlyIfEmpty && !empty) return 'in-use';
    const next: AllocationBlock | null = empty ? null : { ...stored.value, affinity: null };
    const result = await store.commit([{ target: { kind: 'block', cidr }, expect: { modRevision: stored.modRevision }, value: next }, dropAffinity]);
    if (result.succeeded) return 'released';
  }
  throw new ConflictError('Max retries hit - excessive concurrent IPAM requests');
}
