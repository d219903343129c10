import { describe, expect, it } from 'vitest';
import { Job, JobQueue } from '../src/services/ipam/job-queue.js';

type Request = Job<string> & { name: string };

describe("IPAM's job queue (in memory)", () => {
  it('serves what waits together as one batch, one batch at a time; a request its batch does not settle in time fails with the reason it is given', async () => {
    const batches: string[][] = [];
    let release: () => void = () => undefined;
    const queue = new JobQueue<Request>(async (batch) => {
      batches.push(batch.map((j) => j.name));
      // The first batch is slow; `stuck` is never settled by any batch.
      if (batches.length === 1) await new Promise<void>((r) => (release = r));
      for (const job of batch) if (job.name !== 'stuck') job.resolve(`done ${job.name}`);
    }, 200);
    const submit = (name: string) => queue.submit<string>((job) => ({ ...job, name }), () => new Error(`${name} timed out`));
    const first = submit('a');
    const waiting = [submit('b'), submit('c'), submit('stuck')];
    release();
    expect(await first).toBe('done a');
    const settled = await Promise.allSettled(waiting);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual(['done b', 'done c', 'stuck timed out']);
    expect(batches).toEqual([['a'], ['b', 'c', 'stuck']]);
    // A request that timed out is not served later.
    expect(await submit('d')).toBe('done d');
    expect(batches.at(-1)).toEqual(['d']);
  });
});
