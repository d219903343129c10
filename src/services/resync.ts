/** Resyncs start at most this often, however often watches are lost (a compaction can end many at once). */
export const MIN_RESYNC_INTERVAL_MS = 500;
/** A resync that failed (etcd still away) is tried again after this long. */
const RETRY_MS = 1000;

/**
 * Reloads a snapshot after a lost watch: one reload at a time, retried until it succeeds, and
 * started at most once per MIN_RESYNC_INTERVAL_MS. A watch lost while a reload runs (the new watch
 * itself) brings one more reload after it, never a parallel one.
 */
export class Resync {
  private running = false;
  private again = false;
  private lastStart = 0;

  constructor(
    private readonly reload: () => Promise<void>,
    private readonly stopped: () => boolean,
  ) {}

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.again = false;
    this.attempt();
  }

  private attempt(): void {
    if (this.stopped()) {
      this.running = false;
      return;
    }
    const wait = this.lastStart + MIN_RESYNC_INTERVAL_MS - Date.now();
    if (wait > 0) {
      setTimeout(() => this.attempt(), wait).unref();
      return;
    }
    this.lastStart = Date.now();
    this.reload().then(
      () => {
        this.running = false;
        if (this.again) this.request();
      },
      () => setTimeout(() => this.attempt(), RETRY_MS).unref(),
    );
  }
}
