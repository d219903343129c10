import { readFileSync } from 'node:fs';
import { Etcd3, IOptions } from 'etcd3';
import { ExponentialBackoff, noop } from 'cockatiel';
import type * as RPC from 'etcd3/lib/rpc.js';
import { DatastoreUnavailableError } from '../../../domain/errors.js';

export interface EtcdSettings {
  endpoints: string[];
  caCertFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /** Deadline of one etcd call. Requests must fail within 10 s when etcd is down, so keep it well under that. */
  callTimeoutMs?: number;
}

/**
 * The one place that talks gRPC to etcd: builds the client from Calico's ETCD_* settings, puts a
 * deadline on every call, counts round trips, and turns every library error into
 * DatastoreUnavailableError.
 */
export class EtcdClient {
  readonly raw: Etcd3;
  /** Unary calls made so far (range, txn, ...): the unit the benchmarks count. */
  roundTrips = 0;
  private readonly where: string;

  constructor(readonly settings: EtcdSettings) {
    this.where = settings.endpoints.join(',');
    const timeout = settings.callTimeoutMs ?? 4000;
    const options: IOptions = {
      hosts: settings.endpoints,
      dialTimeout: timeout,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
      // Our services retry conflicts themselves; the library's retries and breaker only add latency.
      faultHandling: { host: () => noop, global: noop, watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as never },
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

  close(): void {
    this.raw.close();
  }

  /** Translates a library error into ours, with the endpoint and the reason an operator can act on. */
  unavailable(operation: string, error: unknown): DatastoreUnavailableError {
    const reason = error instanceof Error ? error.message.replace(/^\d+ [A-Z_]+: /, '') : String(error);
    return new DatastoreUnavailableError(`etcd ${operation} at ${this.where} failed: ${reason}`, error);
  }

  private async call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    this.roundTrips++;
    try {
      return await run();
    } catch (error) {
      throw this.unavailable(operation, error);
    }
  }
}
