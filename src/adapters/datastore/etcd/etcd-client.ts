import { readFileSync } from 'node:fs';
import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, IOptions, Watcher } from 'etcd3';
import { WatchManager } from 'etcd3/lib/watch.js';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, isBrokenCircuitError, noop } from 'cockatiel';
import type * as RPC from 'etcd3/lib/rpc.js';
import { DatastoreFullError, DatastoreUnavailableError, InvalidRequestError } from '../../../domain/errors.js';

export interface EtcdSettings {
  endpoints: string[];
  caCertFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /**
   * Deadline of one attempt at an etcd call. A Docker request must fail within 5 s when etcd is down,
   * and a call that timed out on a dead member is tried once more on another: keep it near 2 s.
   */
  callTimeoutMs?: number;
}

/** How long a member that failed a call is skipped before one call tries it again. */
const MEMBER_RETRY_AFTER_MS = 1000;
/**
 * How long a call that is safe to repeat keeps being tried (on another member, or once an election is
 * over: a few seconds at most) before its error is reported; well within Docker's 5 s.
 */
const RETRY_BUDGET_MS = 3000;
/** The first pause between attempts; each next one is twice as long. */
const FIRST_RETRY_DELAY_MS = 100;

/**
 * The member itself is unreachable (refused, dropped, or silent until the deadline), as opposed to a
 * reachable member saying `etcdserver: ...` (no leader yet, quota): only the former should send calls elsewhere.
 */
const memberUnreachable = (error: Error): boolean =>
  (error instanceof GRPCUnavailableError || error instanceof GRPCDeadlineExceededError) && !/etcdserver:/.test(error.message);

/** gRPC's words for a call that found no connection to send it on. */
const NEVER_CONNECTED = /No connection established|ECONNREFUSED/;

/**
 * Whether a failed call can be sent again without the risk of applying a write twice: reads always;
 * writes only when they never left this process (no connection, or every member's breaker open).
 */
const safeToRetry = (operation: string, error: unknown): boolean =>
  isBrokenCircuitError(error) ||
  ((error instanceof GRPCUnavailableError || error instanceof GRPCDeadlineExceededError) &&
    (operation === 'range' || NEVER_CONNECTED.test(error.message)));

/**
 * etcd can still send a message for a watch this process has just dropped (cancelled here, or ended
 * by etcd). etcd3 then throws "Failed to find watcher for IWatchResponse" from its stream handler,
 * where no caller can catch it, and the daemon dies. A message for no watch is for nobody: dropped.
 */
type WatchDispatch = { watchers: { id: string | null }[]; handleResponse(response: RPC.IWatchResponse): void };
const dispatch = WatchManager.prototype as unknown as WatchDispatch;
const dispatchToWatcher = dispatch.handleResponse;
dispatch.handleResponse = function (this: WatchDispatch, response: RPC.IWatchResponse) {
  if (this.watchers.some((w) => w.id === response.watch_id)) dispatchToWatcher.call(this, response);
};

/** What a watch follows: every key under a prefix, or one key. */
export type WatchTarget = { prefix: string } | { key: string };

/** Told of every round trip (metrics): its operation, how long it took, and whether it failed. */
export type EtcdCallObserver = (operation: string, seconds: number, failed: boolean) => void;

/**
 * The one place that talks gRPC to etcd: builds the client from Calico's ETCD_* settings, puts a
 * deadline on every call, skips a dead member and retries what is safe to retry, counts round trips,
 * knows whether its watches are connected, and turns every library error into DatastoreUnavailableError
 * (or DatastoreFullError when etcd's space quota is used up).
 */
export class EtcdClient {
  readonly raw: Etcd3;
  /** Unary calls made so far (range, txn, ...): the unit the benchmarks count. */
  roundTrips = 0;
  private readonly where: string;
  /** Watches whose stream is down (etcd unreachable), with the error that took it down. */
  private readonly disconnected = new Map<Watcher, Error>();

  constructor(
    readonly settings: EtcdSettings,
    private readonly onCall?: EtcdCallObserver,
  ) {
    this.where = settings.endpoints.join(',');
    const timeout = settings.callTimeoutMs ?? 2000;
    // With several members, one that fails a call is skipped for a while: the library then picks
    // another instead of sending a third of all calls to a dead member. One member: nothing to skip to.
    const memberBreaker = () =>
      settings.endpoints.length > 1 ? circuitBreaker(handleWhen(memberUnreachable), { halfOpenAfter: MEMBER_RETRY_AFTER_MS, breaker: new ConsecutiveBreaker(1) }) : noop;
    const options: IOptions = {
      hosts: settings.endpoints,
      dialTimeout: timeout,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
      // Retries are ours (see call): only those that cannot apply a write twice. Conflicts are the services'.
      faultHandling: { host: memberBreaker, global: noop, watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as never },
      grpcOptions: {
        // Reconnect fast once etcd is back, instead of gRPC's default backoff of up to two minutes.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.keepalive_time_ms': 10000,
        'grpc.keepalive_timeout_ms': 3000,
      },
    };
    if (settings.caCertFile || settings.certFile || settings.keyFile || settings.endpoints.some((e) => e.startsWith('https:'))) {
      options.credentials = {
        rootCertificate: settings.caCertFile ? readFileSync(settings.caCertFile) : (undefined as unknown as Buffer),
        ...(settings.certFile ? { certChain: readFileSync(settings.certFile) } : {}),
        ...(settings.keyFile ? { privateKey: readFileSync(settings.keyFile) } : {}),
      };
    }
    if (settings.username) options.auth = { username: settings.username, password: settings.password ?? '' };
    this.raw = new Etcd3(options);
  }

  async range(request: RPC.IRangeRequest): Promise<RPC.IRangeResponse> {
    return this.call('range', () => this.raw.kv.range(request));
  }

  async txn(request: RPC.ITxnRequest): Promise<RPC.ITxnResponse> {
    return this.call('txn', () => this.raw.kv.txn(request));
  }

  async deleteRange(request: RPC.IDeleteRangeRequest): Promise<RPC.IDeleteRangeResponse> {
    return this.call('delete', () => this.raw.kv.deleteRange(request));
  }

  /**
   * Watches a key prefix (or one key) from `startRevision`. While etcd is away the library reconnects
   * and resumes by itself; meanwhile the watch counts in `watchProblem`.
   */
  async watch(target: WatchTarget, startRevision: string): Promise<Watcher> {
    const builder = this.raw.watch().startRevision(startRevision);
    const watcher = await ('prefix' in target ? builder.prefix(target.prefix) : builder.key(target.key)).create();
    watcher.on('disconnected', (error: Error) => this.disconnected.set(watcher, error));
    watcher.on('connected', () => this.disconnected.delete(watcher));
    // Ended by etcd (its revision compacted): the library has dropped it. Cancelling it then would ask
    // etcd to cancel an unknown watch, wait for an answer that never comes, or crash on an unexpected one.
    let endedByEtcd = false;
    watcher.on('error', () => {
      endedByEtcd = true;
      this.disconnected.delete(watcher);
    });
    // A watch cancelled while disconnected ends without an 'end' event: forget it on cancel.
    const cancel = watcher.cancel.bind(watcher);
    watcher.cancel = () => {
      this.disconnected.delete(watcher);
      return endedByEtcd ? Promise.resolve() : cancel();
    };
    return watcher;
  }

  /**
   * Watches several prefixes or keys from `startRevision` as one. The events of each message go to
   * `onEvents` together; the
   * first watch that etcd ends (its revision compacted away while it was disconnected) calls `onLost`,
   * once for the group, so one compaction costs one resync, not one per prefix. The caller cancels the
   * group as it resyncs (etcd ends the others of a compacted group by itself).
   */
  async watchGroup(
    targets: WatchTarget[],
    startRevision: string,
    onEvents: (events: RPC.IEvent[]) => void,
    onLost: (error: DatastoreUnavailableError) => void,
  ): Promise<{ cancel(): Promise<void> }> {
    let lost = false;
    const watchers = await Promise.all(
      targets.map(async (target) => {
        const watcher = await this.watch(target, startRevision);
        watcher.on('data', (response: RPC.IWatchResponse) => response.events.length > 0 && onEvents(response.events));
        watcher.on('error', (error: Error) => {
          if (lost) return;
          lost = true;
          const what = 'prefix' in target ? target.prefix : target.key;
          onLost(new DatastoreUnavailableError(`etcd watch of ${what} ended by etcd (revision compacted, or cancelled): ${error.message}`, error));
        });
        return watcher;
      }),
    );
    return { cancel: async () => void (await Promise.all(watchers.map((w) => w.cancel()))) };
  }

  /** Why a watch is not receiving changes now (etcd unreachable), or undefined when every watch is connected. */
  watchProblem(): string | undefined {
    const [error] = this.disconnected.values();
    return error && `etcd watch at ${this.where} disconnected: ${reasonOf(error)}`;
  }

  close(): void {
    this.raw.close();
  }

  /** Translates a library error into ours, with the endpoint and the reason an operator can act on. */
  unavailable(operation: string, error: unknown): DatastoreUnavailableError | DatastoreFullError | InvalidRequestError {
    const reason = reasonOf(error);
    if (reason.includes('database space exceeded')) {
      return new DatastoreFullError(
        `etcd at ${this.where} is full (its space quota is used up; nothing was written): compact and defragment etcd and disarm its NOSPACE alarm, or raise --quota-backend-bytes`,
        error,
      );
    }
    if (reason.includes('too many operations in txn request')) {
      // etcd answered, and will answer the same again: not a fault to wait out.
      return new InvalidRequestError(`etcd at ${this.where} refused the ${operation}: too many operations in one transaction (nothing was written): raise etcd's --max-txn-ops (its default is 128)`);
    }
    if (isBrokenCircuitError(error)) return new DatastoreUnavailableError(`etcd ${operation} failed: no member of ${this.where} is reachable`, error);
    if (NEVER_CONNECTED.test(reason)) return new DatastoreUnavailableError(`etcd ${operation} at ${this.where} failed: cannot connect (etcd is down or unreachable)`, error);
    return new DatastoreUnavailableError(`etcd ${operation} at ${this.where} failed: ${reason}`, error);
  }

  private async call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const giveUpAt = Date.now() + RETRY_BUDGET_MS;
    for (let delay = FIRST_RETRY_DELAY_MS; ; delay *= 2) {
      this.roundTrips++;
      const started = this.onCall && performance.now();
      const observe = (failed: boolean): void => this.onCall?.(operation, (performance.now() - started!) / 1000, failed);
      try {
        const result = await run();
        observe(false);
        return result;
      } catch (error) {
        observe(true);
        if (Date.now() + delay > giveUpAt || !safeToRetry(operation, error)) throw this.unavailable(operation, error);
        // A moment for an election to finish or a breaker to open, then another member.
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}

/** A gRPC error's message without its `14 UNAVAILABLE: ` prefix. */
const reasonOf = (error: unknown): string => (error instanceof Error ? error.message.replace(/^\d+ [A-Z_]+: /, '') : String(error));
