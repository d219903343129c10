import type { ApplyLoopObserver } from './apply-loop.js';

/** What one part of the daemon says of itself: ready, or not and why. */
export type Readiness = { ready: true } | { ready: false; reason: string };

export const READY: Readiness = { ready: true };
export const notReady = (reason: string): Readiness => ({ ready: false, reason });

/** Asked on every readiness probe; may ask the outside world (BIRD), so it may be slow or fail. */
export type ReadinessCheck = () => Readiness | Promise<Readiness>;

export interface HealthSummary {
  ready: boolean;
  /** The parts that are not ready, each with its reason. */
  notReady: { name: string; reason: string }[];
}

/** A check that has not answered by then counts as not ready: a probe must answer in time. */
const CHECK_TIMEOUT_MS = 2000;

/**
 * The daemon's readiness as Felix reports it: each part registers a check under its name, and the
 * daemon is ready only when every check says so. Checks are asked when a probe asks, never before,
 * so an unprobed daemon pays nothing.
 */
export class HealthAggregator {
  private readonly checks = new Map<string, ReadinessCheck>();

  register(name: string, check: ReadinessCheck): void {
    if (this.checks.has(name)) throw new Error(`health reporter ${name} is registered already`);
    this.checks.set(name, check);
  }

  /** Registers an apply loop (an agent between its watch and its writer) and returns the observer to hand it. */
  applyLoop(name: string): ApplyLoopObserver {
    const loop = new ApplyLoopHealth();
    this.register(name, () => loop.readiness());
    return loop;
  }

  async summary(): Promise<HealthSummary> {
    const results = await Promise.all([...this.checks].map(async ([name, check]) => ({ name, readiness: await withDeadline(check) })));
    const failing = results.flatMap(({ name, readiness }) => (readiness.ready ? [] : [{ name, reason: readiness.reason }]));
    return { ready: failing.length === 0, notReady: failing };
  }
}

async function withDeadline(check: ReadinessCheck): Promise<Readiness> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Readiness>((resolve) => (timer = setTimeout(() => resolve(notReady(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS)));
  try {
    return await Promise.race([Promise.resolve().then(check), late]);
  } catch (error) {
    return notReady(error instanceof Error ? error.message : String(error));
  } finally {
    clearTimeout(timer);
  }
}

/** Ready once the loop has its snapshot in and an apply has succeeded since; a lost watch or a failed apply makes it not ready. */
class ApplyLoopHealth implements ApplyLoopObserver {
  private synced = false;
  private lastApply = notReady('nothing applied yet');

  synchronised(synced: boolean): void {
    this.synced = synced;
  }

  applied(_seconds: number, error?: unknown): void {
    this.lastApply = error === undefined ? READY : notReady(`last apply failed: ${error instanceof Error ? error.message : String(error)}`);
  }

  readiness(): Readiness {
    return this.synced ? this.lastApply : notReady('not in sync with the datastore');
  }
}
