import { Cidr, formatCidr, parseCidr } from '../../domain/cidr.js';
import { AllocationBlock, DEFAULT_IPAM_CONFIG, IpamConfig } from '../../domain/ipam-model.js';
import type { Resource } from '../../domain/resources.js';
import type { SyncedChange, SyncSnapshot } from '../../ports/datastore-sync.js';
import type { Stored } from '../../ports/ipam-store.js';

export interface ViewBlock {
  cidr: Cidr;
  stored: Stored<AllocationBlock>;
}

/** The IPAM config as stored (absent: Calico's defaults), every field present. */
const withDefaults = (stored: Stored<IpamConfig> | null): IpamConfig => ({ ...DEFAULT_IPAM_CONFIG, ...(stored?.value ?? {}) });

const nameOf = (ref: { name: string; namespace?: string | undefined }): string => (ref.namespace ? `${ref.namespace}/${ref.name}` : ref.name);

/**
 * The datastore as this daemon last saw it: every Calico resource by kind, every allocation block and
 * the IPAM config, all at one revision. One copy per daemon; every agent reads it, none keeps its own.
 */
export class DatastoreView {
  revision = '0';
  /**
   * Every block created up to this revision is in the view. Not `revision`: each prefix has its own
   * watch, so a resource's change may arrive before an older block's.
   */
  blocksRevision = '0';
  private readonly kinds = new Map<string, Map<string, Resource>>();
  private readonly blocks = new Map<string, ViewBlock>();
  ipamConfig: IpamConfig = DEFAULT_IPAM_CONFIG;

  load(snapshot: SyncSnapshot): void {
    this.kinds.clear();
    this.blocks.clear();
    for (const resource of snapshot.resources) this.kindMap(resource.kind).set(nameOf(resource.metadata), resource);
    for (const stored of snapshot.blocks) this.putBlock(stored);
    this.ipamConfig = withDefaults(snapshot.ipamConfig);
    this.revision = snapshot.revision;
    this.blocksRevision = snapshot.revision;
  }

  /** Applies one change; returns what the key held before (undefined when it was absent). */
  apply(change: SyncedChange): Resource | undefined {
    if (BigInt(change.revision) > BigInt(this.revision)) this.revision = change.revision;
    switch (change.kind) {
      case 'resource': {
        const map = this.kindMap(change.ref.kind);
        const key = nameOf(change.ref);
        const before = map.get(key);
        if (change.value) map.set(key, change.value);
        else map.delete(key);
        return before;
      }
      case 'block':
        this.blocksRevision = change.revision;
        if (change.stored) this.putBlock(change.stored);
        else this.blocks.delete(formatCidr(change.cidr));
        return undefined;
      case 'ipamConfig':
        this.ipamConfig = withDefaults(change.stored);
        return undefined;
    }
  }

  /** The resources of one kind (`WorkloadEndpoint`, `IPPool`, ...), in no particular order. */
  list<R extends Resource>(kind: string): R[] {
    return [...(this.kinds.get(kind)?.values() ?? [])] as R[];
  }

  get<R extends Resource>(kind: string, name: string, namespace?: string): R | undefined {
    return this.kinds.get(kind)?.get(nameOf({ name, namespace })) as R | undefined;
  }

  allBlocks(): ViewBlock[] {
    return [...this.blocks.values()];
  }

  private kindMap(kind: string): Map<string, Resource> {
    let map = this.kinds.get(kind);
    if (!map) this.kinds.set(kind, (map = new Map()));
    return map;
  }

  private putBlock(stored: Stored<AllocationBlock>): void {
    const cidr = parseCidr(stored.value.cidr);
    this.blocks.set(formatCidr(cidr), { cidr, stored });
  }
}
