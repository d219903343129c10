import { describe, expect, it } from 'vitest';
import type { Resource } from '../src/domain/resources.js';
import { MIN_RESYNC_INTERVAL_MS } from '../src/services/resync.js';
import { DatastoreSyncer, SyncListener, ViewChange } from '../src/services/sync/datastore-syncer.js';
import type { DatastoreView } from '../src/services/sync/datastore-view.js';
import { MemorySyncSource } from './helpers/memory-sync-source.js';
import { until } from './helpers/until.js';

const node = (name: string, address: string): Resource => ({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: { bgp: { ipv4Address: address } } }) as Resource;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A listener that records what it hears. */
function recorder() {
  const heard: { loaded: string[][]; changes: ViewChange[][]; lost: number } = { loaded: [], changes: [], lost: 0 };
  const names = (view: DatastoreView) => view.list('Node').map((n) => n.metadata.name).sort();
  const listener: SyncListener = {
    loaded: (view) => heard.loaded.push(names(view)),
    changed: (changes) => heard.changes.push(changes),
    lost: () => heard.lost++,
  };
  return { heard, listener };
}

describe('the datastore syncer (one view per daemon, in memory)', () => {
  it('takes one snapshot and one watch for every listener, and hands each change with its data and what it replaced', async () => {
    const source = new MemorySyncSource([node('h1', '192.0.2.1/24')]);
    const sync = new DatastoreSyncer(source);
    const first = recorder();
    sync.subscribe(first.listener);
    await Promise.all([sync.start(), sync.start()]);
    // A listener that comes later gets the view at once, without another snapshot.
    const late = recorder();
    sync.subscribe(late.listener);
    expect(source.snapshots).toBe(1);
    expect(source.watches).toBe(1);
    expect(first.heard.loaded).toEqual([['h1']]);
    expect(late.heard.loaded).toEqual([['h1']]);
    source.put(node('h1', '192.0.2.9/24'), node('h2', '192.0.2.2/24'));
    for (const heard of [first.heard, late.heard]) {
      expect(heard.changes).toHaveLength(1);
      const [moved, added] = heard.changes[0]!;
      expect(moved).toMatchObject({ kind: 'resource', ref: { kind: 'Node', name: 'h1' }, value: { spec: { bgp: { ipv4Address: '192.0.2.9/24' } } }, before: { spec: { bgp: { ipv4Address: '192.0.2.1/24' } } } });
      expect(added).toMatchObject({ ref: { name: 'h2' } });
      expect(added!.before).toBeUndefined();
    }
    expect(sync.view.get<Resource>('Node', 'h1')!.spec).toEqual({ bgp: { ipv4Address: '192.0.2.9/24' } });
    expect(sync.view.revision).toBe(String(source.revision));
    await sync.stop();
  });

  it('resyncs from a fresh snapshot when the watch is lost, at most once per 500 ms however often it is lost, and misses nothing written meanwhile', async () => {
    const source = new MemorySyncSource([node('h1', '192.0.2.1/24')]);
    const sync = new DatastoreSyncer(source);
    const { heard, listener } = recorder();
    sync.subscribe(listener);
    await sync.start();
    // Written while the watch was away (the events compacted): only a fresh snapshot shows it.
    source.putUnseen(node('h2', '192.0.2.2/24'));
    source.loseWatch();
    expect(heard.lost).toBe(1);
    expect(sync.inSync()).toBe(false);
    await until('the view back in sync', () => sync.inSync(), 2000);
    expect(heard.loaded.at(-1)).toEqual(['h1', 'h2']);
    // Lost again and again: reloads are spaced, never in parallel.
    const started = Date.now();
    const snapshotsBefore = source.snapshots;
    for (let i = 0; i < 5; i++) {
      source.loseWatch();
      await sleep(20);
    }
    await until('the view back in sync', () => sync.inSync(), 2000);
    await sleep(MIN_RESYNC_INTERVAL_MS + 100);
    const reloads = source.snapshots - snapshotsBefore;
    expect(reloads).toBeGreaterThanOrEqual(1);
    expect(reloads).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / MIN_RESYNC_INTERVAL_MS) + 1);
    // And it follows changes again.
    source.put(node('h3', '192.0.2.3/24'));
    expect(sync.view.list('Node')).toHaveLength(3);
    await sync.stop();
  });

  it('keeps trying a resync while the datastore is away, and one listener that throws does not keep the change from the others', async () => {
    const source = new MemorySyncSource([node('h1', '192.0.2.1/24')]);
    const sync = new DatastoreSyncer(source);
    sync.subscribe({ loaded: () => undefined, changed: () => { throw new Error('a broken listener'); } });
    const { heard, listener } = recorder();
    sync.subscribe(listener);
    source.failSnapshots = new Error('etcd unreachable');
    await expect(sync.start()).rejects.toThrow('etcd unreachable');
    source.failSnapshots = undefined;
    await sync.start();
    source.put(node('h2', '192.0.2.2/24'));
    expect(heard.changes).toHaveLength(1);
    source.failSnapshots = new Error('etcd unreachable');
    source.loseWatch();
    await sleep(1200);
    expect(sync.inSync()).toBe(false);
    source.failSnapshots = undefined;
    await until('the view back in sync', () => sync.inSync(), 3000);
    expect(heard.loaded.at(-1)).toEqual(['h1', 'h2']);
    await sync.stop();
  });
});
