import { EventEmitter } from 'node:events';
import { ExponentialBackoff } from 'cockatiel';
import { WatchManager } from 'etcd3/lib/watch.js';
import { describe, expect, it } from 'vitest';
// Loading the client is what guards etcd3's dispatch.
import '../src/adapters/datastore/etcd/etcd-client.js';

describe("etcd3's watch dispatch, as the daemon loads it", () => {
  it('delivers a message to its watch, and drops one for a watch this process no longer has instead of throwing from the stream', () => {
    const manager = new WatchManager({} as never, new ExponentialBackoff()) as unknown as {
      watchers: unknown[];
      handleResponse(response: object): void;
    };
    const watcher = Object.assign(new EventEmitter(), { id: '5' });
    const delivered: unknown[] = [];
    watcher.on('data', (response) => delivered.push(response));
    manager.watchers.push(watcher);
    const message = (id: string) => ({ watch_id: id, canceled: false, events: [], header: {} });
    manager.handleResponse(message('5'));
    expect(delivered).toHaveLength(1);
    // Unguarded, etcd3 throws "Failed to find watcher for IWatchResponse" here, from a stream handler no one can catch.
    expect(() => manager.handleResponse(message('6'))).not.toThrow();
    expect(delivered).toHaveLength(1);
  });
});
