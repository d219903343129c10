import { blockProblems, inUseCount, allocationAt } from '../../domain/allocation-block.js';
import { Cidr, cidrContains, cidrSize, cidrsOverlap, formatCidr, formatIp, IpAddr, ordinalOf, parseCidr } from '../../domain/cidr.js';
import { hostAffinity, IpamHandle } from '../../domain/ipam-model.js';
import type { IpamSnapshot, IpamStore, Stored } from '../../ports/ipam-store.js';
import { PoolView, viewOf } from './pool-view.js';
import { byText } from '../../domain/text-order.js';

export interface BlockUsage {
  cidr: string;
  pool: string | undefined;
  affinity: string | null;
  total: number;
  inUse: number;
}

export interface PoolUsage {
  pool: PoolView;
  total: bigint;
  inUse: number;
}

export interface AddressReport {
  address: string;
  pool: string | undefined;
  block: string | undefined;
  affinity: string | null | undefined;
  allocated: boolean;
  handleId?: string | null;
  attributes?: Record<string, string> | null;
}

export const parsedBlocks = (snapshot: IpamSnapshot): { cidr: Cidr; value: IpamSnapshot['blocks'][number]['value'] }[] =>
  snapshot.blocks.map((b) => ({ cidr: parseCidr(b.value.cidr), value: b.value }));

export const poolViews = (snapshot: IpamSnapshot): PoolView[] =>
  snapshot.pools.map((p) => viewOf(p.value)).filter((p): p is PoolView => p !== undefined);

/** Read-only views of IPAM state for calicoctl: usage per pool and block, one address, and consistency. */
export class IpamReport {
  constructor(private readonly store: IpamStore) {}

  async usage(): Promise<{ pools: PoolUsage[]; blocks: BlockUsage[] }> {
    const snapshot = await this.store.snapshot();
    const pools = poolViews(snapshot);
    const blocks = parsedBlocks(snapshot).map(({ cidr, value }) => ({
      cidr: formatCidr(cidr),
      pool: pools.find((p) => cidrsOverlap(p.cidr, cidr))?.name,
      affinity: value.affinity,
      total: value.allocations.length,
      inUse: inUseCount(value),
    }));
    return {
      pools: pools.map((pool) => ({
        pool,
        total: cidrSize(pool.cidr),
        inUse: blocks.filter((b) => b.pool === pool.name).reduce((sum, b) => sum + b.inUse, 0),
      })),
      blocks: blocks.sort((a, b) => byText(a.affinity ?? '', b.affinity ?? '') || byText(a.cidr, b.cidr)),
    };
  }

  async address(ip: IpAddr): Promise<AddressReport> {
    const snapshot = await this.store.snapshot();
    const pool = poolViews(snapshot).find((p) => cidrContains(p.cidr, ip));
    const block = parsedBlocks(snapshot).find((b) => cidrContains(b.cidr, ip));
    const info = block ? allocationAt(block.value, ordinalOf(block.cidr, ip)) : undefined;
    return {
      address: formatIp(ip),
      pool: pool?.name,
      block: block ? formatCidr(block.cidr) : undefined,
      affinity: block?.value.affinity,
      allocated: info !== undefined,
      ...(info ? { handleId: info.handleId, attributes: info.secondary } : {}),
    };
  }

  /**
   * Calico's `ipam check` invariants (see `consistency`), with each handle that no allocation uses
   * reported as leaked. Returns one line per problem.
   */
  async check(): Promise<{ problems: string[]; blocks: number; allocations: number; handles: number }> {
    const result = consistency(await readIpamData(this.store));
    const leaked = result.unusedHandles.map(({ id, handle }) => `handle ${id} is leaked: no allocation uses it (records ${JSON.stringify(handle.block)})`);
    return { problems: [...result.problems, ...leaked], blocks: result.blocks, allocations: result.allocations, handles: result.handles };
  }
}

/** Everything Calico's IPAM keeps: pools, blocks and config at one revision, then handles and affinities. */
export interface IpamData {
  snapshot: IpamSnapshot;
  handles: Map<string, Stored<IpamHandle>>;
  affinities: Awaited<ReturnType<IpamStore['listAffinities']>>;
}

export async function readIpamData(store: IpamStore): Promise<IpamData> {
  const snapshot = await store.snapshot();
  const [handles, affinities] = await Promise.all([store.listHandles(), store.listAffinities()]);
  return { snapshot, handles, affinities };
}

export interface Consistency {
  /** One line per broken invariant. */
  problems: string[];
  /** Handles that no allocation in any block names (Calico's leaked handles). */
  unusedHandles: { id: string; handle: IpamHandle }[];
  blocks: number;
  allocations: number;
  handles: number;
}

/**
 * Every block valid (calicoctl `validateBlock`), no two blocks overlapping, every block inside a pool,
 * affinities and blocks agreeing, and handle counts equal to the allocations that name them.
 */
export function consistency({ snapshot, handles, affinities }: IpamData): Consistency {
  const pools = poolViews(snapshot);
  const blocks = parsedBlocks(snapshot);
  const problems: string[] = [];
  const counted = new Map<string, Map<string, number>>();
  let allocations = 0;
  blocks.forEach(({ cidr, value }, i) => {
    const name = formatCidr(cidr);
    for (const problem of blockProblems(value, Number(cidrSize(cidr)))) problems.push(`block ${name}: ${problem}`);
    for (const other of blocks.slice(i + 1)) {
      if (cidrsOverlap(cidr, other.cidr)) problems.push(`block ${name} overlaps block ${formatCidr(other.cidr)}`);
    }
    if (!pools.some((p) => cidrsOverlap(p.cidr, cidr))) problems.push(`block ${name} is in no IP pool`);
    value.allocations.forEach((index) => {
      if (index === null) return;
      allocations++;
      const handle = value.attributes[index]?.handle_id;
      if (!handle) return;
      const perBlock = counted.get(handle) ?? new Map<string, number>();
      perBlock.set(name, (perBlock.get(name) ?? 0) + 1);
      counted.set(handle, perBlock);
    });
    const owner = value.affinity?.startsWith('host:') ? value.affinity.slice('host:'.length) : undefined;
    if (owner && !affinities.some((a) => a.node === owner && formatCidr(a.cidr) === name)) {
      problems.push(`block ${name} is affine to ${owner} but ${owner} has no affinity record for it`);
    }
  });
  for (const affinity of affinities) {
    const name = formatCidr(affinity.cidr);
    const block = blocks.find((b) => formatCidr(b.cidr) === name);
    if (!block) problems.push(`affinity of ${affinity.node} names block ${name}, which does not exist`);
    else if (block.value.affinity !== hostAffinity(affinity.node)) problems.push(`affinity of ${affinity.node} names block ${name}, which belongs to ${block.value.affinity ?? 'no host'}`);
    if (affinity.stored.value.state !== 'confirmed') problems.push(`affinity of ${affinity.node} for block ${name} is ${affinity.stored.value.state}`);
  }
  for (const [id, perBlock] of counted) {
    const handle = handles.get(id);
    if (!handle) {
      problems.push(`handle ${id} is used by ${[...perBlock.values()].reduce((a, b) => a + b, 0)} allocation(s) but does not exist`);
      continue;
    }
    for (const [block, count] of perBlock) {
      const recorded = handle.value.block?.[block] ?? 0;
      if (recorded !== count) problems.push(`handle ${id} records ${recorded} allocation(s) in block ${block}, the block has ${count}`);
    }
  }
  const unusedHandles: Consistency['unusedHandles'] = [];
  for (const [id, handle] of handles) {
    const perBlock = counted.get(id);
    if (!perBlock) {
      unusedHandles.push({ id, handle: handle.value });
      continue;
    }
    for (const block of Object.keys(handle.value.block ?? {})) {
      if (!perBlock.has(block)) problems.push(`handle ${id} records allocations in block ${block}, the block has none`);
    }
  }
  return { problems, unusedHandles, blocks: blocks.length, allocations, handles: handles.size };
}
