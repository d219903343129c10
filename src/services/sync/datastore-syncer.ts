import type { Resource } from '../../domain/resources.js';
import type { SyncedChange, SyncSource } from '../../ports/datastore-sync.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { Resync } from '../resync.js';
import { DatastoreView } from './datastore-view.js';

/** A change as listeners hear it: with what the key held before, for those that compare. */
export type ViewChange = SyncedChange & { before?: Resource };

/** What an agent (or IPAM) hears from the syncer. Calls are synchronous and must not throw. */
export interface SyncListener {
  /** The whole view is (again) in: at subscription when it already is, at start, and after each resync. */
  loaded(view: DatastoreView): void;
  /** Changes of one message from the datastore, already in the view. */
  changed(changes: ViewChange[], view: DatastoreView): void;
  /** The watch was lost: the view is stale until `loaded` comes again. */
  lost?(): void;
}

/**
 * The daemon's one view of the datastore, as Felix's syncer keeps it for its whole calculation graph:
 * one snapshot, one watch per key prefix, and every listener fed from them, so all see the same
 * revision and changes carry their data. A lost watch (a compaction, a long outage) resyncs from a
 * fresh snapshot at most once per 500 ms; listeners then get `loaded` again and write only what differs.
 */
export class DatastoreSyncer {
  readonly view = new DatastoreView();
  private readonly listeners = new Set<SyncListener>();
  private synced = false;
  /** A snapshot has been loaded (it may be stale while a lost watch is reloaded). */
  private hasView = false;
  private stopped = false;
  private started: Promise<void> | undefined;
  private watch: { cancel(): Promise<void> } | undefined;
  private readonly resync = new Resync(() => this.load(), () => this.stopped);

  constructor(
    private readonly source: SyncSource,
    private readonly log: Logger = silentLogger,
    /** Told each time a lost watch starts a resync (metrics). */
    private readonly onResync: () => void = () => undefined,
  ) {}

  /** Adds a listener; one added after the view is in hears `loaded` at once. */
  subscribe(listener: SyncListener): void {
    this.listeners.add(listener);
    if (this.hasView) this.tell(listener, (l) => l.loaded(this.view));
  }

  unsubscribe(listener: SyncListener): void {
    this.listeners.delete(listener);
  }

  /** Loads the view and starts following the datastore; resolves once the view is in. Safe to call again. */
  start(): Promise<void> {
    this.started ??= this.load().catch((error) => {
      this.started = undefined;
      throw error;
    });
    return this.started;
  }

  /** Whether the view holds a snapshot and follows the datastore's changes (not while a lost watch is reloaded). */
  inSync(): boolean {
    return this.synced;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const watch = this.watch;
    this.watch = undefined;
    await watch?.cancel().catch(() => undefined);
  }

  private async load(): Promise<void> {
    const snapshot = await this.source.snapshot();
    await this.watch?.cancel().catch(() => undefined);
    this.watch = undefined;
    if (this.stopped) return;
    this.view.load(snapshot);
    this.hasView = true;
    // Listeners have the view before the watch starts: its changes come after the snapshot's revision.
    for (const listener of this.listeners) this.tell(listener, (l) => l.loaded(this.view));
    this.watch = await this.source.watch(snapshot.revision, (changes) => this.onChanges(changes), (error) => this.onLost(error));
    this.synced = true;
    this.log.info({ revision: snapshot.revision, resources: snapshot.resources.length, blocks: snapshot.blocks.length }, 'datastore view loaded');
  }

  private onChanges(changes: SyncedChange[]): void {
    if (this.stopped) return;
    const told: ViewChange[] = changes.map((change) => {
      const before = this.view.apply(change);
      return before ? { ...change, before } : change;
    });
    for (const listener of this.listeners) this.tell(listener, (l) => l.changed(told, this.view));
  }

  private onLost(error: Error): void {
    if (this.stopped) return;
    this.log.warn({ err: error }, 'datastore watch lost; reloading');
    this.synced = false;
    for (const listener of this.listeners) this.tell(listener, (l) => l.lost?.());
    this.onResync();
    this.resync.request();
  }

  /** One listener's mistake is logged, never passed to the others or to the watch. */
  private tell(listener: SyncListener, call: (l: SyncListener) => void): void {
    try {
      call(listener);
    } catch (error) {
      this.log.error({ err: error }, 'a datastore listener failed');
    }
  }
}
