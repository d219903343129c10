import { describe, expect, it } from 'vitest';
import { MIN_RESYNC_INTERVAL_MS, Resync } from '../src/services/resync.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Resync (reload after a lost watch)', () => {
  it('one reload at a time; losses during one bring one more; starts at least 500 ms apart; retried after a failure', async () => {
    const starts: number[] = [];
    let failNext = false;
    let release: () => void = () => undefined;
    const resync = new Resync(
      () => {
        starts.push(Date.now());
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error('etcd away'));
        }
        return new Promise<void>((resolve) => (release = resolve));
      },
      () => false,
    );
    resync.request();
    resync.request();
    resync.request();
    expect(starts).toHaveLength(1);
    release();
    await sleep(MIN_RESYNC_INTERVAL_MS + 100);
    // The losses during the first reload brought exactly one more, not before 500 ms had passed.
    expect(starts).toHaveLength(2);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(MIN_RESYNC_INTERVAL_MS);
    release();
    await sleep(MIN_RESYNC_INTERVAL_MS + 100);
    expect(starts).toHaveLength(2);
    failNext = true;
    resync.request();
    await sleep(1200);
    // Failed, then tried again after a second.
    expect(starts).toHaveLength(4);
    release();
  });

  it('stops trying once stopped', async () => {
    let stopped = false;
    let reloads = 0;
    const resync = new Resync(
      () => {
        reloads++;
        return Promise.reject(new Error('etcd away'));
      },
      () => stopped,
    );
    resync.request();
    stopped = true;
    await sleep(1200);
    expect(reloads).toBe(1);
  });
});
