import { randomBytes } from 'node:crypto';
import {
  blockContaining,
  Cidr,
  cidrContains,
  formatCidr,
  formatIp,
  IpAddr,
  IpFamily,
  addressAt,
  ordinalOf,
} from '../../domain/cidr.js';
import {
  allocationAt,
  allocateFromBlock,
  allocateOrdinal,
  AllocationInfo,
  freeCount,
  inUseCount,
  isEmpty,
  newBlock,
  releaseFromBlock,
} from '../../domain/allocation-block.js';
import {
  AddressInUseError,
  ConflictError,
  DatastoreUnavailableError,
  InvalidRequestError,
  PoolExhaustedError,
} from '../../domain/errors.js';
import { AllocationAttribute, AllocationBlock, BlockAffinity, hostAffinity, IpamHandle } from '../../domain/ipam-model.js';
import type { CommitResult, CreationGuard, IpamStore, IpamWrite, Stored } from '../../ports/ipam-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { releaseBlockAffinity } from './affinity-release.js';
import { findFreeBlock } from './block-search.js';
import { CachedBlock, IpamCache } from './ipam-cache.js';
import { CommitTally } from './commit-tally.js';
import { handleCreate, handleReleases } from './handle-writes.js';
import { groupBy, Job, JobQueue, settleAll } from './job-queue.js';
import { describePool, PoolView } from './pool-view.js';
import type { SyncSource } from '../../ports/datastore-sync.js';
import { DatastoreSyncer, SyncListener, ViewChange } from '../sync/datastore-syncer.js';

export interface Allocation {
  address: IpAddr;
  handleId: string;
  block: Cidr;
  poolName: string;
}

export interface AutoRequest {
  family: IpFamily;
  /** Restrict to this pool; otherwise any enabled pool of the family. */
  poolName?: string;
  attributes?: Record<string, string>;
  /** The allocation's handle, when the caller names it (Calico's `vxlan-tunnel-addr-<node>`). */
  handleId?: string;
}

export interface ExplicitRequest {
  address: IpAddr;
  attributes?: Record<string, string>;
}

export interface ReleaseRequest {
  address: IpAddr;
  handleId?: string;
  sequenceNumber?: bigint;
}

export interface IpamServiceOptions {
  node: string;
  log?: Logger;
  now?: () => Date;
  /** A request that has not finished by then fails: Docker must hear back within 5 s, even with etcd gone. */
  requestTimeoutMs?: number;
  /** Called when a block becomes or stops being this node's (claims, releases, other tools). */
  onOwnedBlocksChanged?: () => void;
  /** Told of the blocks this node claims and the addresses it borrows (metrics). */
  observer?: IpamObserver;
}

export interface IpamObserver {
  blockClaimed(): void;
  /** `addresses` were assigned from a block affine to another node (or to none). */
  borrowed(addresses: number): void;
}

/** One pool as this node's cache sees it. */
export interface PoolUsage {
  pool: string;
  /** Addresses allocated in the pool's blocks, by every node. */
  inUse: number;
  /** The pool's blocks affine to this node. */
  ownedBlocks: number;
}

/**
 * One txn holds at most this many allocations: etcd's default limit is 128 operations per list of a txn,
 * and a claim adds the block, its affinity and up to 25 guard compares (see EtcdIpamStore's guardRanges).
 */
const MAX_BATCH = 100;
/** Pause before another attempt at a commit that failed for want of etcd (a member died; an election). */
const RETRY_AFTER_UNAVAILABLE_MS = 100;
/** Compare-and-swap attempts before a request gives up, as Calico's datastoreRetries. */
const MAX_ATTEMPTS = 100;

interface AutoJob extends Job<Allocation> {
  type: 'auto';
  request: AutoRequest;
}
interface ExplicitJob extends Job<Allocation> {
  type: 'explicit';
  request: ExplicitRequest;
}
interface ReleaseJob extends Job<AllocationInfo | undefined> {
  type: 'release';
  request: ReleaseRequest;
}
type AnyJob = AutoJob | ExplicitJob | ReleaseJob;

/** Result of one attempt at a write: done, or lost a compare-and-swap (the cache is refreshed; try again). */
type Attempt<T> = { done: true; value: T } | { done: false };
const retry = { done: false } as const;

/**
 * This node's IPAM: hands out addresses from blocks affine to the node, claims new blocks, borrows
 * from other nodes' blocks when the pool has no block left, and releases. All requests of the node go
 * through one queue, so they never race each other for the same block; requests waiting together
 * are served by one etcd transaction per block (block and handles change atomically).
 */
export class IpamService {
  private readonly cache = new IpamCache();
  private readonly node: string;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly requestTimeoutMs: number;
  private readonly onOwnedBlocksChanged: () => void;
  private readonly observer: IpamObserver | undefined;
  private readonly queue: JobQueue<AnyJob>;
  private readonly listener: SyncListener = {
    loaded: (view) => {
      this.cache.load(view);
      this.log.info({ pools: this.cache.allPools().length, blocks: this.cache.allBlocks().length, revision: view.revision }, 'IPAM cache loaded');
      this.onOwnedBlocksChanged();
    },
    changed: (changes) => this.follow(changes),
  };
  private subscribed = false;
  /** This node's affinities left half-way by a crash are settled once, before the first request. */
  private affinitiesSettled: Promise<void> | undefined;
  /** Counted as they happen; a request that runs out of time reports those since it came in. */
  private readonly commits = new CommitTally();
  /** Affinity keys learnt from failed claims (a left-over affinity whose block is gone). */
  private readonly knownAffinities = new Map<string, Stored<BlockAffinity> | null>();
  private readonly sync: DatastoreSyncer;
  /** Made for this service alone (a tool that runs once): stopped with it. */
  private readonly ownSync: boolean;

  /** `sync`: the daemon's syncer, or a source for a syncer of this service's own. */
  constructor(
    private readonly store: IpamStore,
    sync: DatastoreSyncer | SyncSource,
    options: IpamServiceOptions,
  ) {
    this.ownSync = !(sync instanceof DatastoreSyncer);
    this.sync = sync instanceof DatastoreSyncer ? sync : new DatastoreSyncer(sync);
    this.node = options.node;
    this.log = options.log ?? silentLogger;
    this.now = options.now ?? (() => new Date());
    this.requestTimeoutMs = options.requestTimeoutMs ?? 4500;
    this.queue = new JobQueue((batch) => this.process(batch), this.requestTimeoutMs);
    this.onOwnedBlocksChanged = options.onOwnedBlocksChanged ?? (() => undefined);
    this.observer = options.observer;
  }

  /** Whether the cache holds a snapshot and follows the datastore's changes (not while a lost watch is reloaded). */
  inSync(): boolean {
    return this.subscribed && this.sync.inSync();
  }

  /** Addresses in use and blocks held per pool, from the cache: no datastore read. */
  usage(): PoolUsage[] {
    const pools = this.cache.allPools();
    const mine = hostAffinity(this.node);
    const usage = new Map(pools.map((p): [string, PoolUsage] => [p.name, { pool: p.name, inUse: 0, ownedBlocks: 0 }]));
    for (const block of this.cache.allBlocks()) {
      const entry = usage.get(poolOf(pools, block.cidr)?.name ?? '');
      if (!entry) continue;
      entry.inUse += inUseCount(block.stored.value);
      if (block.stored.value.affinity === mine) entry.ownedBlocks++;
    }
    return [...usage.values()];
  }

  /** Loads the cache from the daemon's view and settles left-over affinities. Safe to call again after a failure. */
  async start(): Promise<void> {
    if (!this.subscribed) this.sync.subscribe(this.listener);
    this.subscribed = true;
    await this.sync.start();
    this.affinitiesSettled ??= this.recoverAffinities().catch((error) => {
      this.affinitiesSettled = undefined;
      throw error;
    });
    await this.affinitiesSettled;
  }

  async stop(): Promise<void> {
    this.sync.unsubscribe(this.listener);
    this.subscribed = false;
    if (this.ownSync) await this.sync.stop();
  }

  private follow(changes: ViewChange[]): void {
    const mine = hostAffinity(this.node);
    let owned = false;
    for (const change of changes) {
      const before = change.kind === 'block' && this.cache.block(change.cidr)?.stored.value.affinity === mine;
      this.cache.apply(change);
      if (change.kind !== 'block') continue;
      this.cache.learnBlocksUpTo(change.revision);
      if (before !== (this.cache.block(change.cidr)?.stored.value.affinity === mine)) owned = true;
    }
    if (owned) this.onOwnedBlocksChanged();
  }

  /**
   * Settles this node's affinities left half-way by a crashed Calico tool: pending ones whose block is
   * ours are confirmed, the rest (block gone or someone else's) are deleted.
   */
  private async recoverAffinities(): Promise<void> {
    for (const affinity of await this.store.listAffinities(this.node)) {
      const block = this.cache.block(affinity.cidr);
      const ours = block?.stored.value.affinity === hostAffinity(this.node);
      if (ours && affinity.stored.value.state === 'confirmed') continue;
      const value: BlockAffinity | null = ours ? { state: 'confirmed', deleted: false } : null;
      await this.store.commit([
        { target: { kind: 'affinity', node: this.node, cidr: affinity.cidr }, expect: { modRevision: affinity.stored.modRevision }, value },
      ]);
      this.log.info({ block: formatCidr(affinity.cidr), state: affinity.stored.value.state, action: value ? 'confirmed' : 'deleted' }, 'settled left-over block affinity');
    }
  }

  requestAuto(request: AutoRequest): Promise<Allocation> {
    return this.submit<Allocation>((job) => ({ ...job, type: 'auto', request }) as AutoJob);
  }

  requestExplicit(request: ExplicitRequest): Promise<Allocation> {
    return this.submit<Allocation>((job) => ({ ...job, type: 'explicit', request }) as ExplicitJob);
  }

  /** What the cache knows of one address: its handle and attributes, or undefined when it is free. */
  allocationOf(address: IpAddr): AllocationInfo | undefined {
    const block = this.cache.blockContaining(address);
    return block ? allocationAt(block.stored.value, ordinalOf(block.cidr, address)) : undefined;
  }

  /** Every pool, as the cache has it now: no datastore read. */
  pools(): PoolView[] {
    return this.cache.allPools();
  }

  pool(name: string): PoolView | undefined {
    return this.cache.pool(name);
  }

  /** Every allocation block, as the cache has it now (this node's writes included): no datastore read. */
  blocks(): readonly CachedBlock[] {
    return this.cache.allBlocks();
  }

  /** The blocks affine to this node, for the dataplane's blackhole routes. */
  ownedBlocks(): Cidr[] {
    const mine = hostAffinity(this.node);
    return this.cache.allBlocks().filter((b) => b.stored.value.affinity === mine).map((b) => b.cidr);
  }

  /**
   * Gives up one of this node's blocks if nothing is allocated in it, so its route is withdrawn
   * everywhere. Compared on the block's revision: an allocation that lands first keeps the block.
   * The watch brings the change into the cache (and tells the routes).
   */
  async releaseEmptyBlock(cidr: Cidr): Promise<boolean> {
    const released = (await releaseBlockAffinity(this.store, cidr, this.node, { onlyIfEmpty: true })) === 'released';
    if (released) this.log.info({ block: formatCidr(cidr) }, 'released empty block');
    return released;
  }

  /**
   * Frees every address a handle holds (a tunnel address by its Calico handle), and the handle with
   * them, even one left holding nothing by a crash. Resolves with how many addresses were freed.
   */
  async releaseHandle(handleId: string): Promise<number> {
    await this.start();
    let freed = 0;
    for (const block of this.cache.allBlocks()) {
      const value = block.stored.value;
      for (let ordinal = 0; ordinal < value.allocations.length; ordinal++) {
        const index = value.allocations[ordinal];
        if (index === null || index === undefined || value.attributes[index]?.handle_id !== handleId) continue;
        if (await this.release({ address: addressAt(block.cidr, ordinal), handleId })) freed++;
      }
    }
    const left = await this.store.get({ kind: 'handle', id: handleId });
    if (left) await this.store.commit([{ target: { kind: 'handle', id: handleId }, expect: { modRevision: left.modRevision }, value: null }]);
    return freed;
  }

  /** Frees one address. Resolves with what was freed, or undefined when it was not allocated. */
  release(request: ReleaseRequest): Promise<AllocationInfo | undefined> {
    return this.submit<AllocationInfo | undefined>((job) => ({ ...job, type: 'release', request }) as ReleaseJob);
  }

  private async submit<T>(make: (job: Job<T>) => AnyJob): Promise<T> {
    await this.start();
    const commitsBefore = this.commits.now();
    return this.queue.submit(make, () => this.commits.timedOut(commitsBefore, this.requestTimeoutMs));
  }

  /** The store's commit, tallied for the errors of requests that time out. */
  private async commit(writes: IpamWrite[], guard?: CreationGuard): Promise<CommitResult> {
    try {
      const result = await this.store.commit(writes, guard);
      this.commits.count(result.succeeded ? 'applied' : guard ? 'lostClaims' : 'lostUpdates');
      return result;
    } catch (error) {
      if (error instanceof DatastoreUnavailableError) this.commits.count('unanswered');
      throw error;
    }
  }

  private async process(batch: AnyJob[]): Promise<void> {
    const releases = batch.filter((j): j is ReleaseJob => j.type === 'release');
    const explicit = batch.filter((j): j is ExplicitJob => j.type === 'explicit');
    const autos = batch.filter((j): j is AutoJob => j.type === 'auto');
    for (const group of groupBy(releases, (j) => this.cache.blockContaining(j.request.address)?.cidr)) {
      await settleAll(group.items, () => this.releaseGroup(group.key, group.items));
    }
    for (const job of explicit) await settleAll([job], () => this.explicitJob(job));
    for (const group of groupBy(autos, (j) => `${j.request.family}/${j.request.poolName ?? ''}`)) {
      await settleAll(group.items, () => this.autoGroup(group.items));
    }
  }

  // ---- automatic assignment ----

  private async autoGroup(jobs: AutoJob[]): Promise<void> {
    const { family, poolName } = jobs[0]!.request;
    for (let attempt = 0; ; attempt++) {
      const pending = jobs.filter((j) => !j.settled).slice(0, MAX_BATCH);
      if (pending.length === 0) return;
      if (attempt >= MAX_ATTEMPTS) throw maxRetriesHit();
      const pools = this.eligiblePools(family, poolName);
      const result = await this.assignSomewhere(pools, pending);
      if (result === 'exhausted') throw exhausted(family, pools);
      if (result.done) attempt = -1;
    }
  }

  private async assignSomewhere(pools: PoolView[], jobs: AutoJob[]): Promise<Attempt<void> | 'exhausted'> {
    const affine = this.affineBlockWithSpace(pools);
    if (affine) return this.assignInBlock(affine, poolOf(pools, affine.cidr)!, jobs);
    const claim = this.claimCandidate(pools);
    if (claim) return this.claimBlock(claim.pool, claim.cidr, jobs);
    const borrowed = this.sync.view.ipamConfig.strict_affinity ? undefined : this.borrowCandidate(pools);
    if (!borrowed) return 'exhausted';
    const attempt = await this.assignInBlock(borrowed, poolOf(pools, borrowed.cidr)!, jobs);
    // The jobs come in unsettled: those settled now got an address from the borrowed block.
    if (attempt.done) this.observer?.borrowed(jobs.filter((j) => j.settled).length);
    return attempt;
  }

  private eligiblePools(family: IpFamily, poolName?: string): PoolView[] {
    if (poolName === undefined) {
      const pools = this.cache.enabledPools(family);
      if (pools.length === 0) throw new PoolExhaustedError(`IP assignment error: no configured Calico IPv${family} pools`);
      return pools;
    }
    const pool = this.cache.pool(poolName);
    if (!pool) throw new InvalidRequestError(`Invalid Pool - ${poolName}: IP pool ${poolName} does not exist`);
    if (pool.disabled) throw new PoolExhaustedError(`IP assignment error: IP pool ${describePool(pool)} is disabled`);
    if (pool.cidr.family !== family) throw new InvalidRequestError(`Invalid Pool - ${poolName}: it is an IPv${pool.cidr.family} pool`);
    return [pool];
  }

  private affineBlockWithSpace(pools: PoolView[]): CachedBlock | undefined {
    const mine = hostAffinity(this.node);
    return this.cache
      .allBlocks()
      .filter((b) => b.stored.value.affinity === mine && freeCount(b.stored.value) > 0 && poolOf(pools, b.cidr))
      .sort((a, b) => (a.cidr.base < b.cidr.base ? -1 : 1))[0];
  }

  private claimCandidate(pools: PoolView[]): { pool: PoolView; cidr: Cidr } | undefined {
    const config = this.sync.view.ipamConfig;
    if (config.auto_allocate_blocks === false) return undefined;
    const mine = hostAffinity(this.node);
    const existing = this.cache.allBlocks();
    const owned = existing.filter((b) => b.stored.value.affinity === mine).length;
    if (config.maxBlocksPerHost > 0 && owned >= config.maxBlocksPerHost) return undefined;
    const cidrs = existing.map((b) => b.cidr);
    for (const pool of pools) {
      const cidr = findFreeBlock(pool, this.node, cidrs);
      if (cidr) return { pool, cidr };
    }
    return undefined;
  }

  /** Another node's (or no node's) block with free addresses. */
  private borrowCandidate(pools: PoolView[]): CachedBlock | undefined {
    const candidates = this.cache
      .allBlocks()
      .filter((b) => freeCount(b.stored.value) > 0 && poolOf(pools, b.cidr))
      .sort((a, b) => (a.cidr.base < b.cidr.base ? -1 : 1));
    if (candidates.length === 0) return undefined;
    // A random pick, so several borrowing nodes do not all queue on the same block's revision.
    return candidates[Math.floor(Math.random() * candidates.length)];
  }

  private async assignInBlock(cached: CachedBlock, pool: PoolView, jobs: AutoJob[]): Promise<Attempt<void>> {
    const take = jobs.slice(0, freeCount(cached.stored.value));
    const attributes = take.map((job) => this.attributesFor(pool, job.request.attributes, job.request.handleId));
    const { block, ordinals } = allocateFromBlock(cached.stored.value, attributes);
    const writes = [this.blockWrite(cached.cidr, { modRevision: cached.stored.modRevision }, block), ...attributes.map((a) => handleCreate(a, cached.cidr))];
    const committed = await this.commitBlock(cached.cidr, writes, block, attributes);
    if (!committed) return retry;
    take.forEach((job, i) => job.resolve(this.allocation(cached.cidr, ordinals[i]!, attributes[i]!, pool)));
    return { done: true, value: undefined };
  }

  /**
   * Claims a free block for this node and allocates from it, all in one transaction: the block is
   * created only if its key is absent and no block near it (in its claim scope) was created since the
   * cache last saw all of those (so no overlapping block can slip in), and the affinity is written
   * confirmed in the same commit, so no pending or orphaned affinity can ever be left behind.
   */
  private async claimBlock(pool: PoolView, cidr: Cidr, jobs: AutoJob[]): Promise<Attempt<void>> {
    const empty = newBlock(cidr, hostAffinity(this.node), this.nowNanos());
    const take = jobs.slice(0, freeCount(empty));
    const attributes = take.map((job) => this.attributesFor(pool, job.request.attributes, job.request.handleId));
    const { block, ordinals } = allocateFromBlock(empty, attributes);
    const committed = await this.commitClaim(cidr, block, attributes);
    if (!committed) return retry;
    this.observer?.blockClaimed();
    this.log.info({ block: formatCidr(cidr), pool: pool.name }, 'claimed block');
    take.forEach((job, i) => job.resolve(this.allocation(cidr, ordinals[i]!, attributes[i]!, pool)));
    return { done: true, value: undefined };
  }

  private async commitClaim(cidr: Cidr, block: AllocationBlock, attributes: AllocationAttribute[]): Promise<boolean> {
    const affinityKey = formatCidr(cidr);
    const knownAffinity = this.knownAffinities.get(affinityKey);
    const affinityWrite: IpamWrite = {
      target: { kind: 'affinity', node: this.node, cidr },
      expect: knownAffinity ? { modRevision: knownAffinity.modRevision } : { absent: true },
      value: { state: 'confirmed', deleted: false } satisfies BlockAffinity,
    };
    const writes = [this.blockWrite(cidr, { absent: true }, block), affinityWrite, ...attributes.map((a) => handleCreate(a, cidr))];
    // Guarded on the blocks of its scope only, so claims elsewhere do not void it. Still no overlap:
    // a block overlapping `cidr` overlaps the scope; the guard holds only if every such block is older
    // than the revision up to which the cache has them all, so findFreeBlock saw it and `cidr` avoids it.
    const scope = this.store.claimScope(cidr);
    const guard = { kind: 'block' as const, within: scope, revision: this.cache.blocksKnownWithin(scope) };
    const result = await this.commit(writes, guard).catch((error) => this.recoverAmbiguous(error, cidr, attributes));
    if (result === 'recovered') return true;
    if (result === 'not-applied') return false;
    if (result.succeeded) {
      this.cache.putBlock({ value: block, modRevision: result.revision, createRevision: result.revision });
      this.knownAffinities.delete(affinityKey);
    } else {
      for (const created of result.created) this.cache.putBlock(created as Stored<AllocationBlock>);
      const currentBlock = result.current.get(writes[0]!);
      if (currentBlock) this.cache.putBlock(currentBlock as Stored<AllocationBlock>);
      this.knownAffinities.set(affinityKey, (result.current.get(affinityWrite) ?? null) as Stored<BlockAffinity> | null);
    }
    // Either way the cache now has the scope's blocks up to the commit's revision: on success the guard
    // held and the one block created is ours (so this node's next claim nearby does not wait for its
    // watch); on failure etcd reported the scope's blocks created since the guard's revision.
    this.cache.learnBlocksWithin(scope, guard.revision, result.revision);
    if (result.succeeded) this.onOwnedBlocksChanged();
    return result.succeeded;
  }

  // ---- explicit assignment (docker run --ip) ----

  private async explicitJob(job: ExplicitJob): Promise<void> {
    const ip = job.request.address;
    for (let attempt = 0; attempt < MAX_ATTEMPTS && !job.settled; attempt++) {
      const pool = this.cache.poolContaining(ip);
      if (!pool) throw new InvalidRequestError(`IP assignment error: The provided IP address ${formatIp(ip)} is not in a configured pool`);
      const attribute = this.attributesFor(pool, job.request.attributes);
      const cached = this.cache.blockContaining(ip);
      if (cached) {
        const affinity = cached.stored.value.affinity;
        if (this.sync.view.ipamConfig.strict_affinity && affinity !== hostAffinity(this.node)) {
          throw new AddressInUseError(`IP assignment error: ${formatIp(ip)} is in block ${formatCidr(cached.cidr)} owned by ${affinity ?? 'no host'} and strict affinity is on`);
        }
        const ordinal = ordinalOf(cached.cidr, ip);
        const block = allocateOrdinal(cached.stored.value, ordinal, attribute, formatIp(ip));
        const writes = [this.blockWrite(cached.cidr, { modRevision: cached.stored.modRevision }, block), handleCreate(attribute, cached.cidr)];
        if (await this.commitBlock(cached.cidr, writes, block, [attribute])) return job.resolve(this.allocation(cached.cidr, ordinal, attribute, pool));
        continue;
      }
      const cidr = blockContaining(ip, pool.blockSize);
      // A leftover block of another size next to the address: claiming around it would hand its addresses out twice.
      const leftover = this.cache.blocksOverlapping(cidr)[0];
      if (leftover) throw new AddressInUseError(`IP assignment error: ${formatIp(ip)} needs block ${formatCidr(cidr)}, which overlaps block ${formatCidr(leftover.cidr)} of another block size`);
      const ordinal = ordinalOf(cidr, ip);
      const block = allocateOrdinal(newBlock(cidr, hostAffinity(this.node), this.nowNanos()), ordinal, attribute, formatIp(ip));
      if (await this.commitClaim(cidr, block, [attribute])) return job.resolve(this.allocation(cidr, ordinal, attribute, pool));
    }
    if (!job.settled) throw maxRetriesHit();
  }

  // ---- release ----

  private async releaseGroup(cidr: Cidr | undefined, jobs: ReleaseJob[]): Promise<void> {
    if (!cidr) return jobs.forEach((j) => j.resolve(undefined));
    const handles = new Map<string, Stored<IpamHandle> | null>();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const cached = this.cache.block(cidr);
      if (!cached) return jobs.forEach((j) => j.resolve(undefined));
      const requests = jobs.map((j) => ({
        ordinal: ordinalOf(cidr, j.request.address),
        ...(j.request.handleId !== undefined ? { handleId: j.request.handleId } : {}),
        ...(j.request.sequenceNumber !== undefined ? { sequenceNumber: j.request.sequenceNumber } : {}),
      }));
      const { block, released } = releaseFromBlock(cached.stored.value, requests);
      if (released.length === 0) return jobs.forEach((j) => j.resolve(undefined));
      const drop = isEmpty(block) && block.affinity === null;
      const blockWrite = this.blockWrite(cidr, { modRevision: cached.stored.modRevision }, drop ? null : block);
      const handleWrites = handleReleases(released, cidr, handles);
      const result = await this.commit([blockWrite, ...handleWrites]).catch(async (error) => {
        // Reading the block back shows whether the release landed: if it did, nothing is left to free.
        await this.readBackAfter(error, cidr);
        return undefined;
      });
      if (!result) continue;
      if (result.succeeded) {
        if (drop) this.cache.removeBlock(cidr, result.revision);
        else this.cache.putBlock({ value: block, modRevision: result.revision, createRevision: cached.stored.createRevision });
        for (const job of jobs) job.resolve(released.find((r) => r.ordinal === ordinalOf(cidr, job.request.address)));
        return;
      }
      this.refreshBlock(cidr, result.current.get(blockWrite) as Stored<AllocationBlock> | null, result.revision);
      for (const write of handleWrites) {
        if (write.target.kind === 'handle') handles.set(write.target.id, (result.current.get(write) ?? null) as Stored<IpamHandle> | null);
      }
    }
    throw maxRetriesHit();
  }

  // ---- shared pieces ----

  private blockWrite(cidr: Cidr, expect: IpamWrite['expect'], value: AllocationBlock | null): IpamWrite {
    return { target: { kind: 'block', cidr }, expect, value };
  }

  /** Commits a block update; on a lost compare-and-swap refreshes the cached block and returns false. */
  private async commitBlock(cidr: Cidr, writes: IpamWrite[], block: AllocationBlock, attributes: AllocationAttribute[]): Promise<boolean> {
    const previous = this.cache.block(cidr)!;
    const result = await this.commit(writes).catch((error) => this.recoverAmbiguous(error, cidr, attributes));
    if (result === 'recovered') return true;
    if (result === 'not-applied') return false;
    if (result.succeeded) {
      this.cache.putBlock({ value: block, modRevision: result.revision, createRevision: previous.stored.createRevision });
      return true;
    }
    this.refreshBlock(cidr, result.current.get(writes[0]!) as Stored<AllocationBlock> | null, result.revision);
    return false;
  }

  private refreshBlock(cidr: Cidr, current: Stored<AllocationBlock> | null, revision: string): void {
    if (current) this.cache.putBlock(current);
    else this.cache.removeBlock(cidr, revision);
  }

  /**
   * A commit that failed in transit may still have been applied. Our handles are unique, so reading
   * the block back tells which: if every new handle is in it, the allocation stands; otherwise nothing
   * of ours is in etcd, and the caller tries again (an etcd member died, or an election was under way).
   */
  private async recoverAmbiguous(error: unknown, cidr: Cidr, attributes: AllocationAttribute[]): Promise<'recovered' | 'not-applied'> {
    const current = await this.readBackAfter(error, cidr);
    const handles = new Set(current?.value.attributes.map((a) => a.handle_id));
    return attributes.length > 0 && attributes.every((a) => handles.has(a.handle_id)) ? 'recovered' : 'not-applied';
  }

  /**
   * After a commit failed for want of etcd, reads the block back into the cache, so the caller can
   * see what landed and try again. Any other failure (etcd full), or etcd still unreachable, is
   * the request's error: the caller's job timer bounds how long this goes on.
   */
  private async readBackAfter(error: unknown, cidr: Cidr): Promise<Stored<AllocationBlock> | null> {
    if (!(error instanceof DatastoreUnavailableError)) throw error;
    const current = await this.store.get({ kind: 'block', cidr }).catch(() => undefined);
    if (current === undefined) throw error;
    if (current) this.cache.putBlock(current);
    // A moment for the election to end, rather than a burst of attempts at a cluster without a leader.
    await new Promise((r) => setTimeout(r, RETRY_AFTER_UNAVAILABLE_MS));
    return current;
  }

  private attributesFor(pool: PoolView, extra: Record<string, string> | undefined, handleId?: string): AllocationAttribute {
    return {
      handle_id: handleId ?? `libnetwork.${randomBytes(12).toString('hex')}`,
      secondary: { node: this.node, timestamp: this.now().toISOString(), poolID: pool.name, ...extra },
    };
  }

  private allocation(cidr: Cidr, ordinal: number, attribute: AllocationAttribute, pool: PoolView): Allocation {
    return { address: addressAt(cidr, ordinal), handleId: attribute.handle_id!, block: cidr, poolName: pool.name };
  }

  private nowNanos(): bigint {
    return BigInt(this.now().getTime()) * 1_000_000n;
  }
}

function maxRetriesHit(): ConflictError {
  return new ConflictError(`Max retries hit - excessive concurrent IPAM requests: ${MAX_ATTEMPTS} attempts in a row found the block changed or claimed by another writer first`);
}

function poolOf(pools: PoolView[], cidr: Cidr): PoolView | undefined {
  return pools.find((p) => cidrContains(p.cidr, { family: cidr.family, value: cidr.base }));
}

function exhausted(family: IpFamily, pools: PoolView[]): PoolExhaustedError {
  const names = pools.map(describePool).join(', ');
  return new PoolExhaustedError(
    pools.length === 1
      ? `IP assignment error: IP pool ${names} has no free addresses`
      : `IP assignment error: all IPv${family} pools are exhausted: ${names}`,
  );
}
