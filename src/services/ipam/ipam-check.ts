import { allocationAt, AllocationInfo } from '../../domain/allocation-block.js';
import { addressAt, cidrContains, formatCidr, formatIp, IpAddr, parseCidr, parseIp } from '../../domain/cidr.js';
import { endpointAddresses } from '../../domain/endpoint-model.js';
import { ConflictError, InvalidRequestError } from '../../domain/errors.js';
import type { CalicoNode } from '../../domain/resources.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import type { IpamSnapshot, IpamStore } from '../../ports/ipam-store.js';
import type { ResourceStore } from '../../ports/resource-store.js';
import { IPIP_ADDRESS, VXLAN_ADDRESS } from '../nodes/tunnel-addresses.js';
import { consistency, parsedBlocks, poolViews, readIpamData } from './ipam-report.js';
import type { IpamService } from './ipam-service.js';

/** Who uses an address: a workload endpoint, or a node as its VXLAN or IPIP tunnel address. */
export type AddressOwner = { kind: 'endpoint'; name: string; node: string } | { kind: 'tunnel'; node: string; type: string };

export interface LeakedAddress {
  address: string;
  block: string;
  handle: string | null;
  /** The block's sequence number when the address was allocated (a decimal string: it exceeds 2^53). */
  sequenceNumber: string | null;
  attributes: Record<string, string> | null;
}

export interface UnallocatedAddress {
  address: string;
  /** The IP pool the address is in, or null when it is in none. */
  pool: string | null;
  owners: AddressOwner[];
}

export interface LeakedHandle {
  handle: string;
  /** What the handle records: allocations per block. */
  blocks: Record<string, number>;
}

export interface SharedAddress {
  address: string;
  owners: AddressOwner[];
}

/** What `calicoctl ipam check -o FILE` writes and `ipam release --from-report FILE` reads. */
export interface IpamCheckReport {
  kind: 'IPAMCheckReport';
  version: 1;
  checkedAt: string;
  counts: { pools: number; blocks: number; allocations: number; handles: number; endpoints: number; tunnelAddresses: number; addressesInUse: number };
  /** Allocated in a block, used by no endpoint and no node. */
  leakedAddresses: LeakedAddress[];
  /** Used by an endpoint or node, allocated in no block. */
  inUseNotAllocated: UnallocatedAddress[];
  /** Handles whose blocks hold none of their allocations. */
  leakedHandles: LeakedHandle[];
  /** Used by more than one endpoint or node. */
  multipleOwners: SharedAddress[];
  /** Broken block, affinity and handle invariants, and owners whose addresses cannot be read. */
  problems: string[];
}

export const problemCount = (report: IpamCheckReport): number =>
  report.leakedAddresses.length + report.inUseNotAllocated.length + report.leakedHandles.length + report.multipleOwners.length + report.problems.length;

interface InUse {
  owners: Map<string, AddressOwner[]>;
  endpoints: number;
  tunnelAddresses: number;
  problems: string[];
}

export type ReleaseOutcome = { target: 'address' | 'handle'; id: string; released: true } | { target: 'address' | 'handle'; id: string; released: false; reason: string };

const HANDLE_DELETE_ATTEMPTS = 10;

export const describeOwner = (owner: AddressOwner): string =>
  owner.kind === 'endpoint' ? `endpoint ${owner.name}` : `${owner.type} of node ${owner.node}`;

/**
 * Calico's `ipam check` against what is in use: the addresses of workload endpoints and the tunnel
 * addresses of nodes, compared with the allocations, handles and blocks of IPAM; and the release of
 * what a check found leaked, each item checked again against the datastore as it is then.
 */
export class IpamCheck {
  constructor(
    private readonly ipam: IpamStore,
    private readonly endpoints: EndpointStore,
    private readonly resources: ResourceStore,
  ) {}

  async check(now = new Date()): Promise<IpamCheckReport> {
    // What is in use is read before IPAM: an address allocated in between shows as a leak, which
    // release checks again, never as an endpoint without an allocation.
    const inUse = await this.addressesInUse();
    const data = await readIpamData(this.ipam);
    const allocated = allocatedAddresses(data.snapshot);
    const invariants = consistency(data);
    const pools = poolViews(data.snapshot);
    const inUseNotAllocated: UnallocatedAddress[] = [];
    const multipleOwners: SharedAddress[] = [];
    for (const [address, owners] of inUse.owners) {
      if (owners.length > 1) multipleOwners.push({ address, owners });
      if (allocated.has(address)) continue;
      const ip = parseIp(address);
      inUseNotAllocated.push({ address, pool: pools.find((p) => cidrContains(p.cidr, ip))?.name ?? null, owners });
    }
    return {
      kind: 'IPAMCheckReport',
      version: 1,
      checkedAt: now.toISOString(),
      counts: {
        pools: pools.length,
        blocks: invariants.blocks,
        allocations: invariants.allocations,
        handles: invariants.handles,
        endpoints: inUse.endpoints,
        tunnelAddresses: inUse.tunnelAddresses,
        addressesInUse: inUse.owners.size,
      },
      leakedAddresses: [...allocated.values()].filter((a) => !inUse.owners.has(a.address)),
      inUseNotAllocated,
      leakedHandles: invariants.unusedHandles.map(({ id, handle }) => ({ handle: id, blocks: handle.block ?? {} })),
      multipleOwners,
      problems: [...invariants.problems, ...inUse.problems],
    };
  }

  /**
   * Frees what `report` found leaked and is leaked still: an address only while it is allocated under
   * the same handle and allocation (sequence number) and no endpoint or node uses it, a handle only
   * while no block holds an allocation of it. Addresses go through `ipam`, a compare-and-swap on the
   * block's revision retried on conflict; a handle is deleted at the revision it was checked at.
   */
  async release(report: IpamCheckReport, ipam: IpamService): Promise<ReleaseOutcome[]> {
    await ipam.start();
    const inUse = await this.addressesInUse();
    const outcomes: ReleaseOutcome[] = [];
    // One at a time: the IPAM queue serves releases waiting together in one transaction, all or none.
    for (const leak of report.leakedAddresses) outcomes.push(await releaseAddress(leak, inUse, ipam));
    for (const leak of report.leakedHandles) outcomes.push(await this.releaseHandle(leak.handle));
    return outcomes;
  }

  private async releaseHandle(id: string): Promise<ReleaseOutcome> {
    const skip = (reason: string): ReleaseOutcome => ({ target: 'handle', id, released: false, reason });
    for (let attempt = 0; attempt < HANDLE_DELETE_ATTEMPTS; attempt++) {
      const handle = await this.ipam.get({ kind: 'handle', id });
      if (!handle) return skip('it no longer exists');
      const held = allocatedAddresses(await this.ipam.snapshot());
      const address = [...held.values()].find((a) => a.handle === id);
      if (address) return skip(`it holds ${address.address} now`);
      const result = await this.ipam.commit([{ target: { kind: 'handle', id }, expect: { modRevision: handle.modRevision }, value: null }]);
      if (result.succeeded) return { target: 'handle', id, released: true };
    }
    return skip(`it changed ${HANDLE_DELETE_ATTEMPTS} times while being released`);
  }

  private async addressesInUse(): Promise<InUse> {
    const [endpoints, nodes] = await Promise.all([this.endpoints.listEndpoints(), this.resources.list<CalicoNode>('Node')]);
    const inUse: InUse = { owners: new Map(), endpoints: endpoints.length, tunnelAddresses: 0, problems: [] };
    const add = (ip: IpAddr, owner: AddressOwner): void => {
      const key = formatIp(ip);
      const owners = inUse.owners.get(key) ?? [];
      owners.push(owner);
      inUse.owners.set(key, owners);
    };
    for (const { value: endpoint } of endpoints) {
      const owner: AddressOwner = { kind: 'endpoint', name: endpoint.metadata.name, node: endpoint.spec.node };
      const addresses = readable(() => endpointAddresses(endpoint), `endpoint ${endpoint.metadata.name}`, inUse.problems);
      // An endpoint listing one address twice still owns it once.
      for (const text of new Set((addresses ?? []).map(formatIp))) add(parseIp(text), owner);
    }
    for (const node of nodes) {
      for (const kind of [VXLAN_ADDRESS, IPIP_ADDRESS]) {
        const text = kind.get(node);
        if (!text) continue;
        const ip = readable(() => parseIp(text), `node ${node.metadata.name}'s ${kind.type}`, inUse.problems);
        if (!ip) continue;
        inUse.tunnelAddresses++;
        add(ip, { kind: 'tunnel', node: node.metadata.name, type: kind.type });
      }
    }
    return inUse;
  }
}

/** Runs `read`; a value written by another tool that does not parse becomes a problem line, not a failure. */
function readable<T>(read: () => T, what: string, problems: string[]): T | undefined {
  try {
    return read();
  } catch (error) {
    problems.push(`${what} has an address that is not an IP address: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  }
}

/** Every allocation of every block, keyed by its address. */
function allocatedAddresses(snapshot: IpamSnapshot): Map<string, LeakedAddress> {
  const allocated = new Map<string, LeakedAddress>();
  for (const { cidr, value } of parsedBlocks(snapshot)) {
    value.allocations.forEach((_, ordinal) => {
      const info = allocationAt(value, ordinal);
      if (!info) return;
      const address = formatIp(addressAt(cidr, ordinal));
      allocated.set(address, describeAllocation(address, formatCidr(cidr), info));
    });
  }
  return allocated;
}

const describeAllocation = (address: string, block: string, info: AllocationInfo): LeakedAddress => ({
  address,
  block,
  handle: info.handleId,
  sequenceNumber: info.sequenceNumber === undefined ? null : String(info.sequenceNumber),
  attributes: info.secondary,
});

async function releaseAddress(leak: LeakedAddress, inUse: InUse, ipam: IpamService): Promise<ReleaseOutcome> {
  const skip = (reason: string): ReleaseOutcome => ({ target: 'address', id: leak.address, released: false, reason });
  const address = parseIp(leak.address);
  const owners = inUse.owners.get(formatIp(address));
  if (owners) return skip(`it is in use by ${owners.map(describeOwner).join(', ')}`);
  const current = ipam.allocationOf(address);
  if (!current) return skip('it is no longer allocated');
  if (current.handleId !== leak.handle) return skip(`it is allocated under handle ${current.handleId ?? '(none)'} now, not ${leak.handle ?? '(none)'}`);
  const sequenceNumber = leak.sequenceNumber === null ? undefined : BigInt(leak.sequenceNumber);
  if (sequenceNumber !== undefined && current.sequenceNumber !== sequenceNumber) return skip('it was allocated again since the check');
  try {
    const released = await ipam.release({ address, ...(leak.handle !== null ? { handleId: leak.handle } : {}), ...(sequenceNumber !== undefined ? { sequenceNumber } : {}) });
    return released ? { target: 'address', id: leak.address, released: true } : skip('it is no longer allocated');
  } catch (error) {
    // The block changed between the look above and the compare-and-swap, to another allocation.
    if (error instanceof ConflictError) return skip(`it changed while being released: ${error.message}`);
    throw error;
  }
}

/**
 * Reads a report written by `check`, refusing anything else: release acts only on a report whose
 * every entry it can understand, so a wrong file never frees half of what it lists.
 */
export function parseCheckReport(text: string, source: string): IpamCheckReport {
  const fail = (why: string): never => {
    throw new InvalidRequestError(`${source} is not an IPAM check report (from 'calicoctl ipam check -o FILE'): ${why}`);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return fail(`it is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const report = parsed as Partial<IpamCheckReport> | null;
  if (typeof report !== 'object' || report === null || Array.isArray(report)) return fail('it is not a JSON object');
  if (report.kind !== 'IPAMCheckReport') return fail('its "kind" is not "IPAMCheckReport"');
  if (report.version !== 1) return fail(`its "version" is ${JSON.stringify(report.version)}; this calicoctl reads version 1`);
  if (!Array.isArray(report.leakedAddresses)) return fail('"leakedAddresses" is not a list');
  if (!Array.isArray(report.leakedHandles)) return fail('"leakedHandles" is not a list');
  report.leakedAddresses.forEach((leak, i) => {
    const problem = leakedAddressProblem(leak);
    if (problem) fail(`leakedAddresses[${i}]: ${problem}`);
  });
  report.leakedHandles.forEach((leak, i) => {
    if (typeof leak?.handle !== 'string' || leak.handle === '') fail(`leakedHandles[${i}]: "handle" is not a non-empty string`);
  });
  return report as IpamCheckReport;
}

function leakedAddressProblem(leak: Partial<LeakedAddress> | null): string | undefined {
  if (typeof leak !== 'object' || leak === null) return 'not an object';
  if (typeof leak.address !== 'string' || !parses(() => parseIp(leak.address!))) return `"address" ${JSON.stringify(leak.address)} is not an IP address`;
  if (typeof leak.block !== 'string' || !parses(() => parseCidr(leak.block!))) return `"block" ${JSON.stringify(leak.block)} is not a CIDR`;
  if (leak.handle !== null && typeof leak.handle !== 'string') return '"handle" is neither a string nor null';
  if (leak.sequenceNumber !== null && !(typeof leak.sequenceNumber === 'string' && /^\d+$/.test(leak.sequenceNumber))) {
    return '"sequenceNumber" is neither a decimal string nor null';
  }
  return undefined;
}

function parses(read: () => unknown): boolean {
  try {
    read();
    return true;
  } catch {
    return false;
  }
}
