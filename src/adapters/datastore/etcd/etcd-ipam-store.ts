import type * as RPC from './etcd-rpc.js';
import { Cidr, formatIp, makeCidr, parseCidr } from '../../../domain/cidr.js';
import type { AllocationBlock, BlockAffinity, IpamConfig, IpamHandle, IpPool } from '../../../domain/ipam-model.js';
import type {
  CommitResult,
  CreationGuard,
  IpamSnapshot,
  IpamStore,
  IpamTarget,
  IpamValues,
  IpamWrite,
  Stored,
} from '../../../ports/ipam-store.js';
import { decodeBlock, decodeJson, encodeValue } from './codec.js';
import type { EtcdClient } from './etcd-client.js';
import {
  affinityFromKey,
  blockCidrFromKey,
  blockPrefix,
  CONFIG_KEY,
  HANDLE_PREFIX,
  hostPrefix,
  keyOf,
  POOL_PREFIX,
  prefixEnd,
} from './keys.js';

const prefixRange = (prefix: string): RPC.RangeRequest => ({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });

function decode(kind: IpamTarget['kind'], text: string): unknown {
  switch (kind) {
    case 'block':
      return decodeBlock(text);
    case 'affinity':
      return decodeJson<BlockAffinity>(text, { state: 'confirmed' });
    default:
      return decodeJson<unknown>(text, {});
  }
}

function stored<T>(kind: IpamTarget['kind'], kv: RPC.KeyValue): Stored<T> {
  return { value: decode(kind, kv.value.toString()) as T, modRevision: kv.mod_revision, createRevision: kv.create_revision };
}

function compareFor(key: Buffer, expect: IpamWrite['expect']): RPC.Compare[] {
  if ('any' in expect) return [];
  return [compareOne(key, expect)];
}

function compareOne(key: Buffer, expect: Exclude<IpamWrite['expect'], { any: true }>): RPC.Compare {
  if ('absent' in expect) return { key, target: 'VERSION', result: 'EQUAL', version: 0 };
  if ('modRevision' in expect) return { key, target: 'MOD', result: 'EQUAL', mod_revision: expect.modRevision };
  return { key, target: 'VALUE', result: 'EQUAL', value: Buffer.from(encodeValue(expect.value)) };
}

/**
 * IPv4 block keys spell the base as a dotted quad, so the blocks inside a network of whole octets are
 * one key range (`…/block/10.200.3.` holds those inside 10.200.3.0/24): a claim is guarded on the
 * network of its block's whole octets. IPv6 keys are compressed text (`fd00:1::40-122`), with no such
 * ranges: a claim there is guarded on the whole family (Calico's IPv6 blocks are /116–/128, few claims).
 */
function claimScopeOf(block: Cidr): Cidr {
  return block.family === 4 ? makeCidr(4, block.base, 8 * Math.floor(block.prefix / 8)) : makeCidr(6, 0n, 0);
}

/** The key prefix of the blocks inside a claim scope. */
function keysInside(scope: Cidr): string {
  const octets = scope.prefix / 8;
  if (octets === 0) return blockPrefix(scope.family);
  const quad = formatIp({ family: 4, value: scope.base }).split('.').slice(0, octets).join('.');
  return `${blockPrefix(4)}${quad}${octets === 4 ? '-' : '.'}`;
}

/**
 * The keys a guard covers. For blocks: every block overlapping the claim scope of `within`, the ones
 * inside it by key prefix and each network containing it by its exact key (24 keys for a /24 scope;
 * with a claim's own compares that stays within etcd's 128 per txn, see MAX_BATCH in IpamService).
 */
function guardRanges(guard: CreationGuard): RPC.RangeRequest[] {
  if (guard.kind === 'pool') return [prefixRange(POOL_PREFIX)];
  const scope = claimScopeOf(guard.within);
  const containing = Array.from({ length: scope.prefix }, (_, prefix) => ({ key: Buffer.from(keyOf({ kind: 'block', cidr: makeCidr(scope.family, scope.base, prefix) })) }));
  return [prefixRange(keysInside(scope)), ...containing];
}

export class EtcdIpamStore implements IpamStore {
  constructor(private readonly etcd: EtcdClient) {}

  claimScope(block: Cidr): Cidr {
    return claimScopeOf(block);
  }

  async snapshot(): Promise<IpamSnapshot> {
    const response = await this.etcd.txn({
      success: [
        { request_range: prefixRange(POOL_PREFIX) },
        { request_range: prefixRange(blockPrefix()) },
        { request_range: { key: Buffer.from(CONFIG_KEY) } },
      ],
    });
    const [pools, blocks, config] = response.responses.map((r) => r.response_range.kvs);
    return {
      revision: response.header.revision,
      pools: pools!.map((kv) => stored<IpPool>('pool', kv)),
      blocks: blocks!.filter((kv) => blockCidrFromKey(kv.key.toString())).map((kv) => stored<AllocationBlock>('block', kv)),
      config: config!.length ? stored<IpamConfig>('config', config![0]!) : null,
    };
  }

  async get<K extends IpamTarget['kind']>(target: Extract<IpamTarget, { kind: K }>): Promise<Stored<IpamValues[K]> | null> {
    const response = await this.etcd.range({ key: Buffer.from(keyOf(target)) });
    const kv = response.kvs[0];
    return kv ? stored<IpamValues[K]>(target.kind, kv) : null;
  }

  async listHandles(): Promise<Map<string, Stored<IpamHandle>>> {
    const response = await this.etcd.range(prefixRange(HANDLE_PREFIX));
    return new Map(response.kvs.map((kv) => [kv.key.toString().slice(HANDLE_PREFIX.length), stored<IpamHandle>('handle', kv)]));
  }

  async listAffinities(node?: string): Promise<{ node: string; cidr: ReturnType<typeof parseCidr>; stored: Stored<BlockAffinity> }[]> {
    const response = await this.etcd.range(prefixRange(hostPrefix(node)));
    return response.kvs.flatMap((kv) => {
      const parsed = affinityFromKey(kv.key.toString());
      return parsed ? [{ ...parsed, stored: stored<BlockAffinity>('affinity', kv) }] : [];
    });
  }

  async commit(writes: IpamWrite[], guard?: CreationGuard): Promise<CommitResult> {
    const keys = writes.map((w) => Buffer.from(keyOf(w.target)));
    const compare = writes.flatMap((w, i) => compareFor(keys[i]!, w.expect));
    const failure: RPC.RequestOp[] = keys.map((key) => ({ request_range: { key } }));
    if (guard) {
      const after = String(BigInt(guard.revision) + 1n);
      for (const range of guardRanges(guard)) {
        // True when every key in the range was created at or before the guard's revision (an absent key: at 0).
        compare.push({ ...range, target: 'CREATE', result: 'LESS', create_revision: after });
        failure.push({ request_range: { ...range, min_create_revision: after } });
      }
    }
    const success: RPC.RequestOp[] = writes.map((w, i) =>
      w.value === null
        ? { request_delete_range: { key: keys[i]! } }
        : { request_put: { key: keys[i]!, value: Buffer.from(encodeValue(w.value)) } },
    );
    const response = await this.etcd.txn({ compare, success, failure });
    const result: CommitResult = { succeeded: response.succeeded, revision: response.header.revision, current: new Map(), created: [] };
    if (!response.succeeded) {
      writes.forEach((w, i) => {
        const kv = response.responses[i]?.response_range.kvs[0];
        result.current.set(w, kv ? stored(w.target.kind, kv) : null);
      });
      if (guard) {
        result.created = response.responses
          .slice(writes.length)
          .flatMap((r) => r.response_range.kvs)
          .filter((kv) => guard.kind === 'pool' || blockCidrFromKey(kv.key.toString()))
          .map((kv) => stored(guard.kind, kv));
      }
    }
    return result;
  }
}
