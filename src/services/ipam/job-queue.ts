import { Cidr, formatCidr } from '../../domain/cidr.js';
import { AppError, DatastoreUnavailableError } from '../../domain/errors.js';

/** One request in the queue: settled once, by its batch or by its timer, whichever comes first. */
export interface Job<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
  settled: boolean;
}

/**
 * The queue a node's IPAM requests go through: the requests waiting when a batch starts are served
 * together (so they never race each other for the same block, and share transactions), one batch at
 * a time. A request not settled within `timeoutMs` fails then, whatever its batch is still doing:
 * Docker must hear back in time.
 */
export class JobQueue<J extends { settled: boolean }> {
  private waiting: J[] = [];
  private draining = false;

  constructor(
    private readonly serve: (batch: J[]) => Promise<void>,
    private readonly timeoutMs: number,
  ) {}

  /** Queues the job `make` builds around the settle functions; `timedOut` says why when its time runs out. */
  submit<T>(make: (job: Job<T>) => J, timedOut: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // The queued job is the one `make` returns: the batch reads and settles that one.
      const settle = (then: () => void): void => {
        queued.settled = true;
        clearTimeout(timer);
        then();
      };
      const queued = make({ resolve: (value) => settle(() => resolve(value)), reject: (error) => settle(() => reject(error)), settled: false });
      const timer = setTimeout(() => {
        if (queued.settled) return;
        queued.settled = true;
        reject(timedOut());
      }, this.timeoutMs);
      this.waiting.push(queued);
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.filter((j) => !j.settled);
        this.waiting = [];
        await this.serve(batch);
      }
    } finally {
      this.draining = false;
    }
  }
}

/** Runs `work`; any error it throws fails the jobs it has not settled. */
export async function settleAll(jobs: Pick<Job<unknown>, 'settled' | 'reject'>[], work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const reported = error instanceof AppError ? error : new DatastoreUnavailableError(String(error), error);
    for (const job of jobs) if (!job.settled) job.reject(reported);
  }
}

/** The jobs of a batch by what they have in common (a block, a pool), in the order first seen. */
export function groupBy<T, K>(items: T[], keyOf: (item: T) => K): { key: K; items: T[] }[] {
  const groups = new Map<string, { key: K; items: T[] }>();
  for (const item of items) {
    const key = keyOf(item);
    const id = typeof key === 'object' && key !== null ? formatCidr(key as unknown as Cidr) : String(key);
    const group = groups.get(id) ?? { key, items: [] };
    group.items.push(item);
    groups.set(id, group);
  }
  return [...groups.values()];
}
