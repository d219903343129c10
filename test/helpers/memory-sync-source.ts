import type { Resource } from '../../src/domain/resources.js';
import type { SyncedChange, SyncSnapshot, SyncSource } from '../../src/ports/datastore-sync.js';

const refOf = (r: Resource) => ({ kind: r.kind, name: r.metadata.name, ...(r.metadata.namespace ? { namespace: r.metadata.namespace } : {}) });
const keyOf = (r: { kind: string; name: string; namespace?: string }): string => `${r.kind}/${r.namespace ?? ''}/${r.name}`;

/**
 * The datastore's sync port in memory, for unit tests of what follows it: a snapshot of the resources
 * put so far, and a watch that hears each put and remove. `loseWatch` ends the watch as a compaction does.
 */
export class MemorySyncSource implements SyncSource {
  revision = 1;
  snapshots = 0;
  watches = 0;
  private readonly resources = new Map<string, Resource>();
  private onChanges: ((changes: SyncedChange[]) => void) | undefined;
  private onLost: ((error: Error) => void) | undefined;
  /** When set, snapshots fail with it (the datastore away). */
  failSnapshots: Error | undefined;

  constructor(resources: Resource[] = []) {
    for (const r of resources) this.resources.set(keyOf(refOf(r)), r);
  }

  async snapshot(): Promise<SyncSnapshot> {
    if (this.failSnapshots) throw this.failSnapshots;
    this.snapshots++;
    return { revision: String(this.revision), resources: [...this.resources.values()], blocks: [], ipamConfig: null };
  }

  async watch(_revision: string, onChanges: (changes: SyncedChange[]) => void, onLost: (error: Error) => void): Promise<{ cancel(): Promise<void> }> {
    this.watches++;
    this.onChanges = onChanges;
    this.onLost = onLost;
    return {
      cancel: async () => {
        if (this.onChanges === onChanges) this.onChanges = this.onLost = undefined;
      },
    };
  }

  /** Writes resources in one change message; a watch (if any) hears them. */
  put(...resources: Resource[]): void {
    this.emit(resources.map((r) => ({ ref: refOf(r), value: r })));
  }

  remove(...refs: { kind: string; name: string; namespace?: string }[]): void {
    this.emit(refs.map((ref) => ({ ref, value: null })));
  }

  /** Writes without telling the watch: what a compaction hides from a watch that was away. */
  putUnseen(resource: Resource): void {
    this.revision++;
    this.resources.set(keyOf(refOf(resource)), resource);
  }

  loseWatch(error = new Error('required revision has been compacted')): void {
    const lost = this.onLost;
    this.onChanges = this.onLost = undefined;
    lost?.(error);
  }

  private emit(items: { ref: { kind: string; name: string; namespace?: string }; value: Resource | null }[]): void {
    const changes: SyncedChange[] = items.map(({ ref, value }) => {
      this.revision++;
      if (value) this.resources.set(keyOf(ref), value);
      else this.resources.delete(keyOf(ref));
      return { kind: 'resource', ref, value, revision: String(this.revision) };
    });
    this.onChanges?.(changes);
  }
}
