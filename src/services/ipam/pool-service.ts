import { Cidr, cidrsOverlap, formatCidr, IpFamily, parseCidr } from '../../domain/cidr.js';
import { inUseCount } from '../../domain/allocation-block.js';
import { randomUUID } from 'node:crypto';
import { AlreadyExistsError, ConflictError, InUseError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import type { IpPool } from '../../domain/ipam-model.js';
import type { IpamSnapshot, IpamStore, IpamWrite } from '../../ports/ipam-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { defaultBlockSize, describePool, encapsulationProblem, PoolView, viewOf } from './pool-view.js';

export interface PoolOptions {
  cidr: string;
  name?: string;
  blockSize?: number;
  ipipMode?: 'Always' | 'CrossSubnet';
  vxlanMode?: 'Always' | 'CrossSubnet';
  natOutgoing?: boolean;
  disabled?: boolean;
}

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const BLOCK_SIZE_RANGE: Record<IpFamily, [number, number]> = { 4: [20, 32], 6: [116, 128] };
const MAX_ATTEMPTS = 20;
/** Blocks deleted per transaction when a pool is removed (etcd allows 128 operations). */
const DELETE_CHUNK = 50;

/** Calico's name for a pool given only its CIDR: `10.1.0.0/16` becomes `pool-10-1-0-0-16`. */
export const poolNameFor = (cidr: string): string => `pool-${cidr.replace(/[.:/]/g, '-').replace(/-+/g, '-').replace(/-$/, '')}`;

/** Creating, listing and removing IP pools, with Calico's rules (no overlap, block size range). */
export class PoolService {
  constructor(
    private readonly store: IpamStore,
    private readonly log: Logger = silentLogger,
  ) {}

  async list(): Promise<PoolView[]> {
    const snapshot = await this.store.snapshot();
    return snapshot.pools.map((p) => viewOf(p.value)).filter((p): p is PoolView => p !== undefined);
  }

  /** Validates and creates a pool; refused when it overlaps a pool or existing blocks of another size. */
  async add(options: PoolOptions): Promise<IpPool> {
    const cidr = parseCidr(options.cidr, { strict: true });
    const name = options.name ?? poolNameFor(formatCidr(cidr));
    if (!NAME.test(name)) {
      throw new InvalidRequestError(`invalid pool name ${JSON.stringify(name)}: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`);
    }
    const pool = poolResource(name, formatCidr(cidr), options.blockSize ?? defaultBlockSize(cidr.family), options);
    return this.create(pool);
  }

  /**
   * Creates a pool given as a Calico v3 IPPool (calicoctl create/apply): Calico's defaults filled in,
   * refused when it overlaps another pool or blocks of another size, or its block size is out of range.
   */
  async create(resource: IpPool): Promise<IpPool> {
    const pool = withDefaults(resource);
    const cidr = checkShape(pool);
    const { name } = pool.metadata;
    const created = await this.createGuarded(pool, (snapshot) => {
      for (const existing of snapshot.pools) {
        const view = viewOf(existing.value);
        if (existing.value.metadata.name === name) throw new AlreadyExistsError(`resource already exists: IPPool(${name})`);
        if (view && cidrsOverlap(view.cidr, cidr)) {
          throw new ConflictError(`IP pool ${formatCidr(cidr)} overlaps IP pool ${describePool(view)}: remove that pool first or pick another CIDR`);
        }
      }
      const conflicting = snapshot.blocks.find((b) => {
        const block = parseCidr(b.value.cidr);
        return cidrsOverlap(block, cidr) && block.prefix !== pool.spec.blockSize;
      });
      if (conflicting) {
        throw new ConflictError(`IPPool blockSize conflicts with existing allocations: block ${conflicting.value.cidr} is in the way; release its addresses and remove it first`);
      }
      return true;
    });
    if (created) this.log.info({ pool: name, cidr: pool.spec.cidr }, 'created IP pool');
    return pool;
  }

  /**
   * Replaces a pool's settings (modes, NAT, disabled, selector), compared on its revision; its CIDR
   * and block size cannot change while it exists, as in Calico.
   */
  async update(resource: IpPool, revision: string): Promise<IpPool> {
    const pool = withDefaults(resource);
    checkShape(pool);
    const current = await this.store.get({ kind: 'pool', name: pool.metadata.name });
    if (!current) throw new NotFoundError(`resource does not exist: IPPool(${pool.metadata.name}) with error: <nil>`);
    if (formatCidr(parseCidr(current.value.spec.cidr)) !== formatCidr(parseCidr(pool.spec.cidr))) {
      throw new InvalidRequestError(`error with field IPPool.Spec.CIDR = '${pool.spec.cidr}' (IPPool CIDR cannot be modified: create a new pool and remove this one)`);
    }
    if ((current.value.spec.blockSize ?? defaultBlockSize(parseCidr(current.value.spec.cidr).family)) !== pool.spec.blockSize) {
      throw new InvalidRequestError(`error with field IPPool.Spec.BlockSize = '${pool.spec.blockSize}' (IPPool BlockSize cannot be modified)`);
    }
    const result = await this.store.commit([{ target: { kind: 'pool', name: pool.metadata.name }, expect: { modRevision: revision }, value: pool }]);
    if (!result.succeeded) throw new ConflictError(`update conflict: IPPool(${pool.metadata.name})`);
    this.log.info({ pool: pool.metadata.name, spec: pool.spec }, 'updated IP pool');
    return pool;
  }

  /**
   * Creates `pool` if `wanted(snapshot)` says so (it may also throw), and only if no other pool
   * appeared since that snapshot, so two concurrent creators cannot both win; retried on a lost race.
   * Resolves true when this call created it.
   */
  private async createGuarded(pool: IpPool, wanted: (snapshot: IpamSnapshot) => boolean): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snapshot = await this.store.snapshot();
      if (!wanted(snapshot)) return false;
      const target = { kind: 'pool' as const, name: pool.metadata.name };
      const result = await this.store.commit([{ target, expect: { absent: true }, value: pool }], { kind: 'pool', revision: snapshot.revision });
      if (result.succeeded) return true;
    }
    throw new ConflictError('Max retries hit - excessive concurrent pool changes');
  }

  /**
   * Creates `default-ipv4-ippool` / `default-ipv6-ippool` when no pool of that family exists, as
   * calico/node does at start. Safe when several daemons start at once: the pool guard lets one win.
   */
  async ensureDefaults(defaults: { ipv4?: string; ipv6?: string }): Promise<void> {
    for (const [family, cidr] of [[4, defaults.ipv4], [6, defaults.ipv6]] as const) {
      if (!cidr) continue;
      const pool = poolResource(`default-ipv${family}-ippool`, formatCidr(parseCidr(cidr, { strict: true })), defaultBlockSize(family), { natOutgoing: true });
      const created = await this.createGuarded(pool, (snapshot) => !snapshot.pools.some((p) => viewOf(p.value)?.cidr.family === family));
      if (created) this.log.info({ pool: pool.metadata.name, cidr: pool.spec.cidr }, 'created default IP pool');
    }
  }

  /** Removes a pool by CIDR or name, with its empty blocks and their affinities; refused while any address is in use. */
  async remove(cidrOrName: string): Promise<PoolView> {
    const snapshot = await this.store.snapshot();
    const pools = snapshot.pools.map((p) => ({ stored: p, view: viewOf(p.value) }));
    const found = pools.find(
      (p) => p.stored.value.metadata.name === cidrOrName || (p.view && cidrOrName.includes('/') && formatCidr(p.view.cidr) === safeFormat(cidrOrName)),
    );
    if (!found || !found.view) throw new NotFoundError(`IP pool ${cidrOrName} not found: 'calicoctl pool show' lists the pools`);
    const pool = found.view;
    const blocks = snapshot.blocks.filter((b) => cidrsOverlap(parseCidr(b.value.cidr), pool.cidr));
    const inUse = blocks.reduce((sum, b) => sum + inUseCount(b.value), 0);
    if (inUse > 0) {
      throw new InUseError(`IP pool ${describePool(pool)} has ${inUse} address(es) in use: remove the containers using it or release them ('calicoctl ipam show' lists them), then try again`);
    }
    for (let i = 0; i < blocks.length; i += DELETE_CHUNK) {
      const writes = blocks.slice(i, i + DELETE_CHUNK).flatMap((block): IpamWrite[] => {
        const cidr = parseCidr(block.value.cidr);
        const owner = block.value.affinity?.startsWith('host:') ? block.value.affinity.slice('host:'.length) : undefined;
        const dropBlock: IpamWrite = { target: { kind: 'block', cidr }, expect: { modRevision: block.modRevision }, value: null };
        // The affinity only names a block that is being deleted with it: no compare needed.
        return owner ? [dropBlock, { target: { kind: 'affinity', node: owner, cidr }, expect: { any: true }, value: null }] : [dropBlock];
      });
      const result = await this.store.commit(writes);
      if (!result.succeeded) throw new ConflictError(`IP pool ${describePool(pool)} changed while it was being removed (an address was just allocated?): try again`);
    }
    const result = await this.store.commit([{ target: { kind: 'pool', name: pool.name }, expect: { modRevision: found.stored.modRevision }, value: null }]);
    if (!result.succeeded) throw new ConflictError(`IP pool ${pool.name} changed while it was being removed: try again`);
    this.log.info({ pool: pool.name }, 'removed IP pool');
    return pool;
  }
}

/** An IPPool resource as Calico writes it. */
function poolResource(name: string, cidr: string, blockSize: number, options: Pick<PoolOptions, 'ipipMode' | 'vxlanMode' | 'natOutgoing' | 'disabled'>): IpPool {
  return {
    kind: 'IPPool',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name, creationTimestamp: new Date().toISOString() },
    spec: {
      cidr,
      vxlanMode: options.vxlanMode ?? 'Never',
      ipipMode: options.ipipMode ?? 'Never',
      natOutgoing: options.natOutgoing === true,
      disabled: options.disabled === true,
      blockSize,
      nodeSelector: 'all()',
    },
  };
}

/** Calico's stored defaults for what a pool leaves out; never a resourceVersion in the stored value. */
function withDefaults(resource: IpPool): IpPool {
  const { resourceVersion: _notStored, ...metadata } = resource.metadata as IpPool['metadata'] & { resourceVersion?: string };
  const { cidr, vxlanMode, ipipMode, natOutgoing, disabled, blockSize, nodeSelector, ...rest } = resource.spec;
  const family = cidr?.includes(':') ? 6 : 4;
  return {
    kind: 'IPPool',
    apiVersion: 'projectcalico.org/v3',
    metadata: { ...metadata, uid: metadata.uid ?? randomUUID(), creationTimestamp: metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
    // Calico's field order.
    spec: {
      cidr,
      vxlanMode: vxlanMode ?? 'Never',
      ipipMode: ipipMode ?? 'Never',
      natOutgoing: natOutgoing ?? false,
      disabled: disabled ?? false,
      ...rest,
      blockSize: blockSize ?? defaultBlockSize(family),
      nodeSelector: nodeSelector ?? 'all()',
    },
  };
}

/** The pool's CIDR, strictly masked, with a block size that fits it. */
function checkShape(pool: IpPool): Cidr {
  const cidr = parseCidr(pool.spec.cidr, { strict: true });
  const blockSize = pool.spec.blockSize!;
  const [min, max] = BLOCK_SIZE_RANGE[cidr.family];
  if (!Number.isInteger(blockSize) || blockSize < min || blockSize > max) {
    throw new InvalidRequestError(`block size ${blockSize} is not valid for IPv${cidr.family}: it must be between ${min} and ${max}`);
  }
  if (blockSize < cidr.prefix) {
    throw new InvalidRequestError(`block size /${blockSize} is larger than the pool ${formatCidr(cidr)}: use a block size of at least ${cidr.prefix}`);
  }
  const problem = encapsulationProblem(pool.spec, cidr.family);
  if (problem) throw new InvalidRequestError(problem);
  return cidr;
}

function safeFormat(text: string): string {
  try {
    return formatCidr(parseCidr(text));
  } catch {
    return text;
  }
}
