import { describe, expect, it } from 'vitest';
import { parseCidr } from '../src/domain/cidr.js';
import { IpamCache } from '../src/services/ipam/ipam-cache.js';
import { DatastoreView } from '../src/services/sync/datastore-view.js';

/** An empty view of the datastore at `revision`. */
function snapshotAt(revision: string): DatastoreView {
  const view = new DatastoreView();
  view.load({ revision, resources: [], blocks: [], ipamConfig: null });
  return view;
}
const here = parseCidr('10.0.1.0/24');
const elsewhere = parseCidr('10.0.2.0/24');

describe('IpamCache: up to which revision it has every block of a claim scope', () => {
  it('learns a scope from a claim answered there, and nothing of other scopes', () => {
    const cache = new IpamCache();
    cache.load(snapshotAt('10'));
    cache.learnBlocksWithin(here, '10', '20');
    expect(cache.blocksKnownWithin(here)).toBe('20');
    expect(cache.blocksKnownWithin(elsewhere)).toBe('10');
    expect(cache.blocksKnownRevision).toBe('10');
  });

  it('learns nothing from an answer to a guard beyond what it knew (a reload came in between)', () => {
    const cache = new IpamCache();
    cache.load(snapshotAt('10'));
    cache.learnBlocksWithin(here, '10', '20');
    cache.load(snapshotAt('15'));
    expect(cache.blocksKnownWithin(here)).toBe('15');
    cache.learnBlocksWithin(here, '20', '30');
    expect(cache.blocksKnownWithin(here)).toBe('15');
  });

  it('takes the watch revision once it passes a scope, and never goes back', () => {
    const cache = new IpamCache();
    cache.load(snapshotAt('10'));
    cache.learnBlocksWithin(here, '10', '20');
    cache.learnBlocksWithin(here, '10', '18');
    expect(cache.blocksKnownWithin(here)).toBe('20');
    cache.learnBlocksUpTo('25');
    expect(cache.blocksKnownWithin(here)).toBe('25');
    expect(cache.blocksKnownWithin(elsewhere)).toBe('25');
  });
});
