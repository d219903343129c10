import type { ApplyLoop } from '../apply-loop.js';
import type { DatastoreView } from './datastore-view.js';
import type { DatastoreSyncer, SyncListener, ViewChange } from './datastore-syncer.js';

export interface DatastoreFollower {
  /** Told of every (re)load before the loop applies it. */
  loaded?(view: DatastoreView): void;
  /** Looks at a batch of changes, already in the view; schedules applies on the loop for those that matter. */
  changed(changes: ViewChange[], view: DatastoreView): void;
}

/** An agent's subscription to the syncer: unsubscribe on stop; `firstApply` settles once the first apply ran. */
export interface Following {
  listener: SyncListener;
  firstApply: Promise<void>;
}

/**
 * How every agent follows the datastore: each load (the first, and after each resync) applies at once,
 * changes schedule applies as the agent decides, and a lost watch stops applies until the next load.
 */
export function followDatastore(sync: DatastoreSyncer, loop: ApplyLoop, follower: DatastoreFollower): Following {
  let firstApplied: () => void;
  const firstApply = new Promise<void>((resolve) => (firstApplied = resolve));
  const listener: SyncListener = {
    loaded: (view) => {
      follower.loaded?.(view);
      void loop.synchronised().then(firstApplied);
    },
    changed: (changes, view) => follower.changed(changes, view),
    lost: () => loop.lost(),
  };
  sync.subscribe(listener);
  return { listener, firstApply };
}
