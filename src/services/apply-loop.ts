import type { Logger } from '../ports/logger.js';

const RETRY_MS = 1000;

export interface ApplyLoopSteps {
  /** Computes the whole desired state and writes it. Throwing means: try again in RETRY_MS. */
  apply: () => Promise<void>;
  log: Logger;
  /** Logged with the error when an apply fails, e.g. `could not program policy; retrying`. */
  failed: string;
  /** Told of syncs and applies: readiness and metrics. */
  observer?: ApplyLoopObserver;
}

/** What a loop tells those watching it (readiness, metrics); nothing it does waits on them. */
export interface ApplyLoopObserver {
  /** The first snapshot is in (true), or the watch was lost and a fresh snapshot is awaited (false). */
  synchronised(synced: boolean): void;
  /** An apply ended after `seconds`: successfully, or with `error`. */
  applied(seconds: number, error?: unknown): void;
}

/** One observer that tells each of `observers`. */
export function everyObserver(observers: (ApplyLoopObserver | undefined)[]): ApplyLoopObserver {
  const present = observers.filter((o): o is ApplyLoopObserver => o !== undefined);
  return {
    synchronised: (synced) => present.forEach((o) => o.synchronised(synced)),
    applied: (seconds, error) => present.forEach((o) => o.applied(seconds, error)),
  };
}

/**
 * The loop each agent runs between its watch and its writer: changes schedule one apply after a
 * short debounce (a burst becomes one write); one apply runs at a time, and another follows when
 * something changed meanwhile; a failed apply is retried after RETRY_MS (it recomputes everything, so
 * the changes that came in during the failed one are in it). Nothing is scheduled before the first
 * snapshot is in, so a restart never writes a half-loaded view.
 */
export class ApplyLoop {
  private synced = false;
  private stopped = false;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private applying: Promise<void> | undefined;
  constructor(private readonly steps: ApplyLoopSteps) {}

  /** The (first, or a fresh) snapshot is in: applies now, and lets changes schedule applies from here on. */
  synchronised(): Promise<void> {
    this.synced = true;
    this.steps.observer?.synchronised(true);
    return this.run();
  }

  schedule(delay: number): void {
    if (!this.synced || this.stopped) return;
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, delay);
  }

  /** Applies now, or (while an apply runs) once more after it. */
  run(): Promise<void> {
    if (this.applying) {
      this.dirty = true;
      return this.applying;
    }
    this.dirty = false;
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    this.applying = this.steps
      .apply()
      .then(
        () => this.steps.observer?.applied(seconds()),
        (error: unknown) => {
          this.steps.observer?.applied(seconds(), error);
          this.steps.log.error({ err: error }, this.steps.failed);
          this.dirty = false;
          setTimeout(() => this.schedule(0), RETRY_MS).unref();
        },
      )
      .finally(() => {
        this.applying = undefined;
        if (this.dirty) this.schedule(0);
      });
    return this.applying;
  }

  /** The datastore's watch is gone: nothing is applied until a fresh snapshot is in. */
  lost(): void {
    if (this.stopped) return;
    this.synced = false;
    this.steps.observer?.synchronised(false);
  }

  /** Schedules nothing more; resolves when the apply under way (if any) has finished. */
  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    return this.applying ?? Promise.resolve();
  }
}
