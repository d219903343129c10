import { describe, expect, it } from 'vitest';
import { ApplyLoop } from '../src/services/apply-loop.js';
import { HealthAggregator, notReady, READY } from '../src/services/health.js';
import { silentLogger } from '../src/ports/logger.js';

describe('HealthAggregator', () => {
  it('is ready only when every reporter is; each one that is not is named with its reason', async () => {
    const health = new HealthAggregator();
    let datastore = notReady('etcd watch disconnected');
    health.register('datastore', () => datastore);
    health.register('bird', async () => READY);
    expect(await health.summary()).toEqual({ ready: false, notReady: [{ name: 'datastore', reason: 'etcd watch disconnected' }] });
    datastore = READY;
    expect(await health.summary()).toEqual({ ready: true, notReady: [] });
    expect(() => health.register('bird', () => READY)).toThrow('health reporter bird is registered already');
  });

  it('a check that throws or does not answer in 2 s counts as not ready', async () => {
    const health = new HealthAggregator();
    health.register('throws', () => {
      throw new Error('unable to connect to BIRD socket');
    });
    health.register('hangs', () => new Promise(() => undefined));
    const started = Date.now();
    const summary = await health.summary();
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(summary.notReady).toEqual([
      { name: 'throws', reason: 'unable to connect to BIRD socket' },
      { name: 'hangs', reason: 'no answer within 2000 ms' },
    ]);
  });

  it('an apply loop is ready once synced and applied; a failed apply or a lost watch makes it not ready until it recovers', async () => {
    const health = new HealthAggregator();
    let failures = 1;
    let applies = 0;
    const loop = new ApplyLoop({
      apply: async () => {
        applies++;
        if (failures-- > 0) throw new Error('iptables-restore exited 1');
      },
      log: silentLogger,
      failed: 'failed',
      observer: health.applyLoop('policy'),
    });
    const reason = async (): Promise<string | undefined> => (await health.summary()).notReady[0]?.reason;
    expect(await reason()).toBe('not in sync with the datastore');
    await loop.synchronised();
    expect(await reason()).toBe('last apply failed: iptables-restore exited 1');
    // The loop retries after a second, and succeeds.
    while (applies < 2) await new Promise((r) => setTimeout(r, 50));
    await loop.run();
    expect(await reason()).toBeUndefined();
    loop.lost();
    expect(await reason()).toBe('not in sync with the datastore');
    await loop.synchronised();
    expect(await reason()).toBeUndefined();
    await loop.stop();
  });
});
