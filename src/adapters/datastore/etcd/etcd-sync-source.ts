import type * as RPC from './etcd-rpc.js';
import type { AllocationBlock, IpamConfig } from '../../../domain/ipam-model.js';
import type { Resource } from '../../../domain/resources.js';
import type { SyncedChange, SyncSnapshot, SyncSource } from '../../../ports/datastore-sync.js';
import type { Stored } from '../../../ports/ipam-store.js';
import { decodeBlock, decodeJson } from './codec.js';
import type { EtcdClient } from './etcd-client.js';
import { decodeResource, refFromKey, RESOURCE_ROOT, resourceOf } from './etcd-resource-store.js';
import { blockCidrFromKey, blockPrefix, CONFIG_KEY, prefixEnd } from './keys.js';

const prefixRange = (prefix: string): RPC.RangeRequest => ({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
const storedOf = <T>(kv: RPC.KeyValue, value: T): Stored<T> => ({ value, modRevision: kv.mod_revision, createRevision: kv.create_revision });

/** A block another tool wrote that cannot be read is left out of the view (IPAM reports it if it meets it). */
function block(kv: RPC.KeyValue): Stored<AllocationBlock> | undefined {
  try {
    return blockCidrFromKey(kv.key.toString()) ? storedOf(kv, decodeBlock(kv.value.toString())) : undefined;
  } catch {
    return undefined;
  }
}

function ipamConfig(kv: RPC.KeyValue): Stored<IpamConfig> | null {
  try {
    return storedOf(kv, decodeJson<IpamConfig>(kv.value.toString(), {} as IpamConfig));
  } catch {
    return null;
  }
}

function toChange(event: RPC.WatchEvent): SyncedChange | undefined {
  const { kv } = event;
  const key = kv.key.toString();
  const deleted = event.type === 'DELETE';
  const revision = kv.mod_revision;
  if (key === CONFIG_KEY) return { kind: 'ipamConfig', stored: deleted ? null : ipamConfig(kv), revision };
  const cidr = blockCidrFromKey(key);
  if (cidr) return { kind: 'block', cidr, stored: deleted ? null : (block(kv) ?? null), revision };
  const ref = refFromKey(key);
  if (ref) return { kind: 'resource', ref, value: deleted ? null : (decodeResource(kv) ?? null), revision };
  return undefined;
}

/**
 * The daemon's view from etcd: every Calico v3 resource, every allocation block and the IPAM config,
 * read in one transaction (one revision), then followed by three watches (one per prefix or key).
 * Handles and affinities are not followed: only the service that writes them reads them, from etcd.
 */
export class EtcdSyncSource implements SyncSource {
  constructor(private readonly etcd: EtcdClient) {}

  async snapshot(): Promise<SyncSnapshot> {
    const response = await this.etcd.txn({
      success: [{ request_range: prefixRange(RESOURCE_ROOT) }, { request_range: prefixRange(blockPrefix()) }, { request_range: { key: Buffer.from(CONFIG_KEY) } }],
    });
    const [resources, blocks, config] = response.responses.map((r) => r.response_range.kvs);
    return {
      revision: response.header.revision,
      resources: resources!.map(resourceOf).filter((r): r is Resource => r !== undefined),
      blocks: blocks!.map(block).filter((b): b is Stored<AllocationBlock> => b !== undefined),
      ipamConfig: config![0] ? ipamConfig(config![0]) : null,
    };
  }

  watch(revision: string, onChanges: (changes: SyncedChange[]) => void, onLost: (error: Error) => void): Promise<{ cancel(): Promise<void> }> {
    const targets = [{ prefix: RESOURCE_ROOT }, { prefix: blockPrefix() }, { key: CONFIG_KEY }];
    const onEvents = (events: RPC.WatchEvent[]): void => {
      const changes = events.map(toChange).filter((c): c is SyncedChange => c !== undefined);
      if (changes.length > 0) onChanges(changes);
    };
    return this.etcd.watchGroup(targets, String(BigInt(revision) + 1n), onEvents, onLost);
  }
}
