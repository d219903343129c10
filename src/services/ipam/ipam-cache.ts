import { Cidr, cidrContains, cidrsOverlap, formatCidr, IpAddr, IpFamily, parseCidr } from '../../domain/cidr.js';
import type { AllocationBlock, IpPool } from '../../domain/ipam-model.js';
import type { SyncedChange } from '../../ports/datastore-sync.js';
import type { Stored } from '../../ports/ipam-store.js';
import type { DatastoreView } from '../sync/datastore-view.js';
import { PoolView, viewOf } from './pool-view.js';
import { byText } from '../../domain/text-order.js';

export interface CachedBlock {
  cidr: Cidr;
  stored: Stored<AllocationBlock>;
}

const newer = (incoming: string, cached: string | undefined): boolean => cached === undefined || BigInt(incoming) >= BigInt(cached);

/**
 * Pools and every allocation block, from the daemon's view of the datastore and ahead of
 * it by this node's own writes. It is only a hint: every write made from it is a compare-and-swap, so a
 * stale entry costs a retry, never a duplicate.
 */
export class IpamCache {
  private readonly pools = new Map<string, PoolView>();
  private readonly blocks = new Map<string, CachedBlock>();
  /** Every block created up to this revision is in the cache (the snapshot's, then the watch's). */
  blocksKnownRevision = '0';
  /**
   * Claim scopes known further than blocksKnownRevision: every block overlapping the scope and created
   * up to this revision is in the cache. Learnt from claims' answers, dropped once the watch passes.
   */
  private readonly scopesKnownRevision = new Map<string, bigint>();
  /** Revisions of deletions seen, so a late watch event cannot resurrect a deleted block. */
  private readonly deletedAt = new Map<string, string>();

  load(view: DatastoreView): void {
    this.pools.clear();
    this.blocks.clear();
    this.deletedAt.clear();
    for (const pool of view.list<IpPool>('IPPool')) this.putPool(pool);
    for (const block of view.allBlocks()) this.putBlock(block.stored);
    this.blocksKnownRevision = view.blocksRevision;
    this.scopesKnownRevision.clear();
  }

  /** Follows one change of the view. */
  apply(change: SyncedChange): void {
    switch (change.kind) {
      case 'resource':
        if (change.ref.kind !== 'IPPool') return;
        if (change.value) this.putPool(change.value as IpPool);
        else this.pools.delete(change.ref.name);
        return;
      case 'ipamConfig':
        return;
      case 'block':
        if (!change.stored) this.removeBlock(change.cidr, change.revision);
        else if (!this.holds(change.cidr, change.revision)) this.putBlock(change.stored);
        return;
    }
  }

  private putPool(pool: IpPool): void {
    const view = viewOf(pool);
    if (view) this.pools.set(view.name, view);
  }

  /** Stores a block value unless the cache already holds a newer one. */
  putBlock(stored: Stored<AllocationBlock>): void {
    let cidr: Cidr;
    try {
      cidr = parseCidr(stored.value.cidr);
    } catch {
      return;
    }
    const key = formatCidr(cidr);
    const deleted = this.deletedAt.get(key);
    if (deleted && BigInt(deleted) >= BigInt(stored.modRevision)) return;
    if (!newer(stored.modRevision, this.blocks.get(key)?.stored.modRevision)) return;
    this.blocks.set(key, { cidr, stored });
  }

  /** True when the cache already has this block at `revision` or later (typically our own write). */
  private holds(cidr: Cidr, revision: string): boolean {
    const cached = this.blocks.get(formatCidr(cidr));
    return cached !== undefined && BigInt(cached.stored.modRevision) >= BigInt(revision);
  }

  removeBlock(cidr: Cidr, revision: string): void {
    const key = formatCidr(cidr);
    const cached = this.blocks.get(key);
    if (cached && !newer(revision, cached.stored.modRevision)) return;
    this.blocks.delete(key);
    this.deletedAt.set(key, revision);
  }

  /** The watch has brought every change up to `revision`. */
  learnBlocksUpTo(revision: string): void {
    if (BigInt(revision) <= BigInt(this.blocksKnownRevision)) return;
    this.blocksKnownRevision = revision;
    for (const [scope, known] of this.scopesKnownRevision) if (known <= BigInt(revision)) this.scopesKnownRevision.delete(scope);
  }

  /** Every block overlapping `scope` and created up to this revision is in the cache: the guard revision of a claim there. */
  blocksKnownWithin(scope: Cidr): string {
    const known = this.scopesKnownRevision.get(formatCidr(scope));
    return known !== undefined && known > BigInt(this.blocksKnownRevision) ? String(known) : this.blocksKnownRevision;
  }

  /**
   * A claim guarded on `scope` at revision `from` was answered at revision `to`, and the cache holds
   * what the answer told of the scope: the claimed block if it committed (the guard held, so no other
   * block of the scope is newer than `from`), or every block of the scope created after `from` if it
   * failed. If the cache still knew the scope up to `from` (no reload came in between), it now knows
   * it up to `to`. Only this scope: the answer said nothing of blocks elsewhere.
   */
  learnBlocksWithin(scope: Cidr, from: string, to: string): void {
    const known = BigInt(this.blocksKnownWithin(scope));
    if (known >= BigInt(from) && BigInt(to) > known) this.scopesKnownRevision.set(formatCidr(scope), BigInt(to));
  }

  allPools(): PoolView[] {
    return [...this.pools.values()].sort((a, b) => byText(a.name, b.name));
  }

  pool(name: string): PoolView | undefined {
    return this.pools.get(name);
  }

  enabledPools(family: IpFamily): PoolView[] {
    return this.allPools().filter((p) => p.cidr.family === family && !p.disabled);
  }

  poolContaining(ip: IpAddr): PoolView | undefined {
    return this.allPools().find((p) => !p.disabled && cidrContains(p.cidr, ip));
  }

  allBlocks(): CachedBlock[] {
    return [...this.blocks.values()];
  }

  block(cidr: Cidr): CachedBlock | undefined {
    return this.blocks.get(formatCidr(cidr));
  }

  blockContaining(ip: IpAddr): CachedBlock | undefined {
    for (const block of this.blocks.values()) if (cidrContains(block.cidr, ip)) return block;
    return undefined;
  }

  blocksOverlapping(cidr: Cidr): CachedBlock[] {
    return this.allBlocks().filter((b) => cidrsOverlap(b.cidr, cidr));
  }
}
