import { blockAt, blockCount, Cidr, cidrSize, cidrsOverlap, fnv32a } from '../../domain/cidr.js';
import type { PoolView } from './pool-view.js';

const lastAddress = (cidr: Cidr): bigint => cidr.base + cidrSize(cidr) - 1n;

/**
 * Finds a block-sized CIDR of `pool` that overlaps no existing block (of any size: a leftover block of
 * an older block size must not be handed out twice, libcalico-go#1377). The walk starts at an index
 * seeded by the node name, so one node keeps picking the same region and nodes spread out, and it
 * jumps over existing blocks instead of stepping through them, so it stays O(existing blocks) even in
 * an IPv6 pool of 2^58 blocks.
 */
export function findFreeBlock(pool: PoolView, node: string, existing: Cidr[]): Cidr | undefined {
  const total = blockCount(pool.cidr, pool.blockSize);
  const inPool = existing.filter((b) => cidrsOverlap(b, pool.cidr));
  const step = cidrSize(blockAt(pool.cidr, pool.blockSize, 0n));
  let index = BigInt(fnv32a(node)) % total;
  let visited = 0n;
  while (visited < total) {
    const candidate = blockAt(pool.cidr, pool.blockSize, index);
    const blocker = inPool.find((b) => cidrsOverlap(b, candidate));
    if (!blocker) return candidate;
    const blockedTo = lastAddress(blocker) < lastAddress(pool.cidr) ? lastAddress(blocker) : lastAddress(pool.cidr);
    const skip = (blockedTo - pool.cidr.base) / step - index + 1n;
    visited += skip;
    index = (index + skip) % total;
  }
  return undefined;
}
