import type { ClientRequest, IncomingMessage } from 'node:http';
import { decodeWatch, encodeRequest, type WatchEvent, type WatchResponse } from './etcd-rpc.js';
import type { Member } from './etcd-client.js';
import { prefixEnd } from './keys.js';

/** What a watch follows: every key under a prefix, or one key. */
export type WatchTarget = { prefix: string } | { key: string };

/** How often a stream checks that it still hears from etcd. */
const KEEPALIVE_CHECK_MS = 5000;
/** A stream silent this long is asked whether its member still answers (a cheap call, with the call deadline). */
const SILENT_AFTER_MS = 10_000;
const FIRST_RECONNECT_DELAY_MS = 100;
const MAX_RECONNECT_DELAY_MS = 2000;

export interface WatchStreamHooks {
  onEvents(events: WatchEvent[]): void;
  /** etcd ended a watch (compacted revision, or cancelled): the stream has stopped. */
  onLost(reason: string): void;
  open(body: string): Promise<{ member: Member; request: ClientRequest; response: IncomingMessage }>;
  ping(member: Member): Promise<void>;
  failed(member: Member, error: unknown): void;
}

/**
 * Several watches on one HTTP stream of etcd's gateway (`POST /v3/watch`, one create request per
 * line; etcd answers one JSON message per line). A stream that breaks, or goes silent and whose
 * member then does not answer (packets dropped: TCP alone would wait for minutes), is reopened with
 * a growing pause, and each watch resumes after the last revision it delivered: nothing is missed
 * and nothing comes twice.
 */
export class WatchStream {
  /** Why the stream is down now; undefined while it is connected. */
  problem: Error | undefined;
  /** The revision each target resumes from. */
  private readonly next: string[];
  /** etcd's watch ids on the current stream, in the order the creates were sent. */
  private readonly ids = new Map<string, number>();
  private connection?: { member: Member; request: ClientRequest };
  private heardAt = Date.now();
  private reconnectDelay = FIRST_RECONNECT_DELAY_MS;
  private stopped = false;
  private readonly keepalive: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;

  constructor(
    private readonly targets: WatchTarget[],
    startRevision: string,
    private readonly hooks: WatchStreamHooks,
  ) {
    this.next = targets.map(() => startRevision);
    this.keepalive = setInterval(() => void this.checkAlive(), KEEPALIVE_CHECK_MS).unref();
  }

  /** The first connection: its failure is the caller's (the stream then stays stopped). */
  async start(): Promise<void> {
    await this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.problem = undefined;
    clearInterval(this.keepalive);
    clearTimeout(this.reconnectTimer);
    this.connection?.request.destroy();
    this.connection = undefined;
  }

  private async connect(): Promise<void> {
    const body = this.targets.map((target, i) => encodeRequest({ create_request: { ...range(target), start_revision: this.next[i] } })).join('\n');
    const { member, request, response } = await this.hooks.open(body);
    if (this.stopped) return void request.destroy();
    this.ids.clear();
    this.connection = { member, request };
    this.heardAt = Date.now();
    this.problem = undefined;
    this.reconnectDelay = FIRST_RECONNECT_DELAY_MS;
    this.read(response, request);
  }

  private read(response: IncomingMessage, request: ClientRequest): void {
    let pending = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      this.heardAt = Date.now();
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.trim() && !this.stopped) this.handle(line);
    });
    const broken = (error?: Error) => this.broken(request, error ?? new Error('etcd closed the watch stream'));
    response.on('end', () => broken());
    response.on('error', broken);
    request.on('error', broken);
    request.on('close', () => broken());
  }

  private handle(line: string): void {
    let message: Record<string, any>;
    try {
      message = JSON.parse(line) as Record<string, any>;
    } catch {
      return this.broken(this.connection?.request, new Error(`etcd sent a watch message that is not JSON: ${line.slice(0, 200)}`));
    }
    if (!message.result) return this.broken(this.connection?.request, new Error(String(message.error?.message ?? 'etcd ended the watch stream with an error')));
    const result = decodeWatch(message.result);
    if (result.created && !result.canceled) this.ids.set(result.watch_id, this.ids.size);
    if (result.canceled) return this.lost(result);
    const index = this.ids.get(result.watch_id);
    if (index === undefined || result.events.length === 0) return;
    this.next[index] = String(BigInt(result.events.at(-1)!.kv.mod_revision) + 1n);
    this.hooks.onEvents(result.events);
  }

  private lost(result: WatchResponse): void {
    const reason =
      result.compact_revision !== '0'
        ? `its revision was compacted: etcd keeps revisions from ${result.compact_revision} on`
        : `cancelled${result.cancel_reason ? `: ${result.cancel_reason}` : ''}`;
    this.stop();
    this.hooks.onLost(reason);
  }

  /** The stream broke (only the current one counts): reconnect after a pause that grows to 2 s. */
  private broken(request: ClientRequest | undefined, error: Error): void {
    if (this.stopped || !this.connection || request !== this.connection.request) return;
    const { member } = this.connection;
    this.connection = undefined;
    request.destroy();
    this.problem = error;
    this.hooks.failed(member, error);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, MAX_RECONNECT_DELAY_MS);
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((error: Error) => {
        if (this.stopped) return;
        this.problem = error;
        this.scheduleReconnect();
      });
    }, delay);
  }

  /** A silent stream may be one whose packets are dropped: if its member does not answer either, reopen it. */
  private async checkAlive(): Promise<void> {
    const connection = this.connection;
    if (!connection || Date.now() - this.heardAt < SILENT_AFTER_MS) return;
    try {
      await this.hooks.ping(connection.member);
      this.heardAt = Date.now();
    } catch (error) {
      this.broken(connection.request, new Error(`etcd did not answer a keepalive: ${(error as Error).message}`));
    }
  }
}

function range(target: WatchTarget): { key: Buffer; range_end?: Buffer } {
  return 'prefix' in target ? { key: Buffer.from(target.prefix), range_end: prefixEnd(target.prefix) } : { key: Buffer.from(target.key) };
}
