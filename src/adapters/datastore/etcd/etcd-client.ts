import { readFileSync } from 'node:fs';
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import { DatastoreFullError, DatastoreUnavailableError, InvalidRequestError } from '../../../domain/errors.js';
import {
  decodeDeleteRange,
  decodeRange,
  decodeTxn,
  encodeRequest,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type RangeRequest,
  type RangeResponse,
  type TxnRequest,
  type TxnResponse,
  type WatchEvent,
} from './etcd-rpc.js';
import { WatchStream, type WatchTarget } from './etcd-watch.js';

export type { WatchTarget } from './etcd-watch.js';

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

/** How long a member that failed a call is skipped before a call tries it again. */
const MEMBER_RETRY_AFTER_MS = 1000;
/**
 * How long a call that is safe to repeat keeps being tried (on another member, or once an election is
 * over: a few seconds at most) before its error is reported; well within Docker's 5 s.
 */
const RETRY_BUDGET_MS = 3000;
/** The first pause between attempts; each next one is twice as long. */
const FIRST_RETRY_DELAY_MS = 100;
/** Calls in flight to one member at most (HTTP/1.1: one connection each); more wait their turn. */
const MAX_CONNECTIONS_PER_MEMBER = 32;
/** Idle connections kept open per member after a burst: enough for the steady state, not a burst's worth on etcd. */
const IDLE_CONNECTIONS_PER_MEMBER = 4;
/** gRPC's code for "unavailable" and "deadline exceeded", as etcd's gateway reports them. */
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;

/**
 * A failed round trip. `unreachable`: the member itself did not answer (refused, reset, or silent
 * until the deadline), as opposed to a member that answered with an error (`etcdserver: no leader`,
 * a full quota). `unsent`: the request cannot have reached etcd, so even a write may be sent again.
 */
class EtcdCallError extends Error {
  constructor(
    message: string,
    readonly unreachable: boolean,
    readonly unsent: boolean,
    readonly code?: number,
  ) {
    super(message);
  }
}

/** An etcd member, and until when it is skipped after failing a call. */
export interface Member {
  url: string;
  skipUntil: number;
  /** Its auth token, when etcd has authentication on (simple tokens are only valid on the member that issued them). */
  token?: Promise<string>;
}

/** Told of every round trip (metrics): its operation, how long it took, and whether it failed. */
export type EtcdCallObserver = (operation: string, seconds: number, failed: boolean) => void;

type Http = typeof import('node:http');
type Wire = Record<string, any>;

/**
 * Whether a failed call can be sent again without the risk of applying a write twice: reads always;
 * writes only when they never left this process. A token etcd no longer knows was refused outright.
 */
const safeToRetry = (operation: string, error: unknown): boolean =>
  error instanceof EtcdCallError &&
  (error.unsent || isAuthExpired(error) || (operation === 'range' && (error.unreachable || error.code === UNAVAILABLE || error.code === DEADLINE_EXCEEDED)));

const isAuthExpired = (error: unknown): boolean => error instanceof Error && /invalid auth token|auth token is expired/.test(error.message);

/** Node's words for a connection that never got to etcd. */
const NEVER_CONNECTED = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|no member of .* is reachable/;

/**
 * The one place that talks to etcd, over its v3 JSON gateway (HTTP/1.1 on the client port; no gRPC
 * stack in the daemon): builds the client from Calico's ETCD_* settings, puts a deadline on every
 * call, skips a dead member and retries what is safe to retry, counts round trips, follows watches
 * (etcd-watch.ts) and knows whether they are connected, and turns every failure into
 * DatastoreUnavailableError (or DatastoreFullError when etcd's space quota is used up).
 */
export class EtcdClient {
  /** Unary calls made so far (range, txn, ...): the unit the benchmarks count. */
  roundTrips = 0;
  private readonly where: string;
  private readonly members: Member[];
  private current: Member;
  private readonly timeoutMs: number;
  private readonly transport: Promise<{ http: Http; calls: Agent; streams: Agent }>;
  private readonly watches = new Set<WatchStream>();

  constructor(
    readonly settings: EtcdSettings,
    private readonly onCall?: EtcdCallObserver,
  ) {
    this.where = settings.endpoints.join(',');
    this.members = settings.endpoints.map((url) => ({ url: url.replace(/\/+$/, ''), skipUntil: 0 }));
    this.current = this.members[0]!;
    this.timeoutMs = settings.callTimeoutMs ?? 2000;
    this.transport = this.makeTransport();
    // A failed TLS setup (an unreadable certificate) is reported by the first call, not as an unhandled rejection.
    this.transport.catch(() => undefined);
  }

  range(request: RangeRequest): Promise<RangeResponse> {
    return this.call('range', '/v3/kv/range', request, decodeRange);
  }

  txn(request: TxnRequest): Promise<TxnResponse> {
    return this.call('txn', '/v3/kv/txn', request, decodeTxn);
  }

  deleteRange(request: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    return this.call('delete', '/v3/kv/deleterange', request, decodeDeleteRange);
  }

  /** A write for tools and tests: puts one key, whatever it holds. */
  async put(key: string, value: string | Buffer): Promise<void> {
    await this.txn({ success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value) } }] });
  }

  /**
   * Watches several prefixes or keys from `startRevision` as one stream. The events of each message
   * go to `onEvents`. While etcd is away the stream reconnects by itself (to another member when
   * there is one) and resumes where each watch was, counting meanwhile in `watchProblem`. When etcd
   * ends a watch (its revision compacted away while disconnected), `onLost` is called once for the
   * group and the group stops: the caller resyncs. Resolves once etcd has the watches.
   */
  async watchGroup(
    targets: WatchTarget[],
    startRevision: string,
    onEvents: (events: WatchEvent[]) => void,
    onLost: (error: DatastoreUnavailableError) => void,
  ): Promise<{ cancel(): Promise<void> }> {
    const stream = new WatchStream(targets, startRevision, {
      onEvents,
      onLost: (reason) => {
        this.watches.delete(stream);
        onLost(new DatastoreUnavailableError(`etcd watch at ${this.where} ended by etcd (${reason})`));
      },
      open: (body) => this.openWatch(body),
      ping: (member) => this.post(member, '/v3/maintenance/status', '{}').then(() => undefined),
      failed: (member, error) => this.noteFailure(member, error),
    });
    this.watches.add(stream);
    const cancel = async (): Promise<void> => {
      this.watches.delete(stream);
      stream.stop();
    };
    try {
      await stream.start();
    } catch (error) {
      await cancel();
      throw this.unavailable('watch', error);
    }
    return { cancel };
  }

  /** Why a watch is not receiving changes now (etcd unreachable), or undefined when every watch is connected. */
  watchProblem(): string | undefined {
    for (const stream of this.watches) if (stream.problem) return `etcd watch at ${this.where} disconnected: ${reasonOf(stream.problem)}`;
    return undefined;
  }

  close(): void {
    for (const stream of this.watches) stream.stop();
    this.watches.clear();
    this.transport.then(({ calls, streams }) => (calls.destroy(), streams.destroy()), () => undefined);
  }

  /** Translates a failure into ours, with the endpoint and the reason an operator can act on. */
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
    if (/no member of .* is reachable/.test(reason)) return new DatastoreUnavailableError(`etcd ${operation} failed: ${reason}`, error);
    if (NEVER_CONNECTED.test(reason)) return new DatastoreUnavailableError(`etcd ${operation} at ${this.where} failed: cannot connect (etcd is down or unreachable)`, error);
    return new DatastoreUnavailableError(`etcd ${operation} at ${this.where} failed: ${reason}`, error);
  }

  private async call<T>(operation: string, path: string, request: object, decode: (wire: Wire) => T): Promise<T> {
    const body = encodeRequest(request);
    const giveUpAt = Date.now() + RETRY_BUDGET_MS;
    for (let delay = FIRST_RETRY_DELAY_MS; ; delay *= 2) {
      this.roundTrips++;
      const started = performance.now();
      const observe = (failed: boolean): void => this.onCall?.(operation, (performance.now() - started) / 1000, failed);
      try {
        const result = decode(await this.roundTrip(path, body));
        observe(false);
        return result;
      } catch (error) {
        observe(true);
        if (Date.now() + delay > giveUpAt || !safeToRetry(operation, error)) throw this.unavailable(operation, error);
        // A moment for an election to finish or a member to be skipped, then another member.
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async roundTrip(path: string, body: string): Promise<Wire> {
    const member = this.pick();
    return this.post(member, path, body).catch((error: unknown) => {
      this.noteFailure(member, error);
      throw error;
    });
  }

  /** The member calls go to: the same one while it works, so that one dead member costs one failure. */
  private pick(): Member {
    const now = Date.now();
    if (this.current.skipUntil <= now) return this.current;
    const next = this.members.find((m) => m.skipUntil <= now);
    if (!next) throw new EtcdCallError(`no member of ${this.where} is reachable`, true, true);
    this.current = next;
    return next;
  }

  private noteFailure(member: Member, error: unknown): void {
    if (isAuthExpired(error)) member.token = undefined;
    // With one member there is nothing to skip to.
    if (error instanceof EtcdCallError && error.unreachable && this.members.length > 1) member.skipUntil = Date.now() + MEMBER_RETRY_AFTER_MS;
  }

  /** One POST to a member, answered within the deadline, its JSON answer or its error. */
  private async post(member: Member, path: string, body: string, authenticate = true): Promise<Wire> {
    const request = await this.send(member, path, body, 'calls', authenticate);
    return new Promise((resolve, reject) => {
      // Whether the request may have reached etcd: only then could a write have been applied.
      let connected = false;
      const timer = setTimeout(() => request.destroy(new EtcdCallError(`no answer in ${this.timeoutMs} ms (deadline exceeded)`, true, !connected)), this.timeoutMs);
      request.on('socket', (socket) => (socket.connecting ? socket.once('connect', () => (connected = true)) : (connected = true)));
      request.on('error', (error) => {
        clearTimeout(timer);
        reject(error instanceof EtcdCallError ? error : new EtcdCallError(socketReason(error), true, !connected));
      });
      request.on('response', (response) =>
        readJson(response).then(
          (wire) => (clearTimeout(timer), response.statusCode === 200 ? resolve(wire) : reject(serverError(wire, response.statusCode))),
          (error: Error) => (clearTimeout(timer), reject(new EtcdCallError(error.message, true, false))),
        ),
      );
      request.end(body);
    });
  }

  /** Opens a watch stream on a member: its request, and its response once etcd answers (within the deadline). */
  private async openWatch(body: string): Promise<{ member: Member; request: ClientRequest; response: IncomingMessage }> {
    const member = this.pick();
    const request = await this.send(member, '/v3/watch', body, 'streams', true);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => request.destroy(new EtcdCallError(`no answer in ${this.timeoutMs} ms`, true, true)), this.timeoutMs);
      request.once('error', (error) => {
        clearTimeout(timer);
        const failure = error instanceof EtcdCallError ? error : new EtcdCallError(socketReason(error), true, true);
        this.noteFailure(member, failure);
        reject(failure);
      });
      request.on('response', (response) => {
        clearTimeout(timer);
        if (response.statusCode === 200) return resolve({ member, request, response });
        void readJson(response).then((wire) => reject(serverError(wire, response.statusCode)), reject);
      });
      request.end(body);
    });
  }

  private async send(member: Member, path: string, body: string, agent: 'calls' | 'streams', authenticate: boolean): Promise<ClientRequest> {
    const transport = await this.transport;
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    if (authenticate && this.settings.username) headers.authorization = await this.tokenFor(member);
    return transport.http.request(`${member.url}${path}`, { method: 'POST', agent: transport[agent], headers });
  }

  private tokenFor(member: Member): Promise<string> {
    member.token ??= this.post(member, '/v3/auth/authenticate', JSON.stringify({ name: this.settings.username, password: this.settings.password ?? '' }), false).then(
      (wire) => String(wire.token ?? ''),
      (error: unknown) => {
        member.token = undefined;
        throw error;
      },
    );
    return member.token;
  }

  /** node:http, or node:https with Calico's ETCD_*_FILE settings (loaded only then: TLS is not free). */
  private async makeTransport(): Promise<{ http: Http; calls: Agent; streams: Agent }> {
    const { settings } = this;
    const tls = Boolean(settings.caCertFile || settings.certFile || settings.keyFile) || settings.endpoints.some((e) => e.startsWith('https:'));
    if (!tls) {
      const http = await import('node:http');
      return { http, calls: new http.Agent({ keepAlive: true, maxSockets: MAX_CONNECTIONS_PER_MEMBER, maxFreeSockets: IDLE_CONNECTIONS_PER_MEMBER }), streams: new http.Agent() };
    }
    const https = await import('node:https');
    const files = {
      ...(settings.caCertFile ? { ca: readFileSync(settings.caCertFile) } : {}),
      ...(settings.certFile ? { cert: readFileSync(settings.certFile) } : {}),
      ...(settings.keyFile ? { key: readFileSync(settings.keyFile) } : {}),
    };
    return {
      http: https as unknown as Http,
      calls: new https.Agent({ keepAlive: true, maxSockets: MAX_CONNECTIONS_PER_MEMBER, maxFreeSockets: IDLE_CONNECTIONS_PER_MEMBER, ...files }),
      streams: new https.Agent(files),
    };
  }
}

async function readJson(response: IncomingMessage): Promise<Wire> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString();
  try {
    return JSON.parse(text) as Wire;
  } catch {
    throw new Error(`etcd answered HTTP ${response.statusCode} with something that is not JSON: ${text.slice(0, 200)}`);
  }
}

/** An error etcd answered with: `{"error": "...", "code": 14}` (gRPC's codes) and an HTTP status. */
function serverError(wire: Wire, status: number | undefined): EtcdCallError {
  const message = String(wire.message ?? wire.error ?? `HTTP ${status}`);
  return new EtcdCallError(message, false, false, typeof wire.code === 'number' ? wire.code : undefined);
}

/** Node's words for a connection lost mid-call, in an operator's. */
const socketReason = (error: Error): string =>
  /socket hang up|ECONNRESET/.test(error.message) ? `the connection closed before etcd answered (etcd stopped or restarted?): ${error.message}` : error.message;

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
