/**
 * The part of etcd's v3 KV and Watch API the datastore uses, as etcd's JSON gateway speaks it: the
 * protobuf field names, int64 as decimal strings, bytes as base64, and fields at their default
 * (empty, zero, false) left out. Requests here carry Buffers; answers come back with every default
 * filled in, as protobuf would give them.
 */

export interface RangeRequest {
  key: Buffer;
  range_end?: Buffer;
  limit?: number;
  keys_only?: boolean;
  count_only?: boolean;
  min_create_revision?: string;
}

export interface PutRequest {
  key: Buffer;
  value: Buffer;
}

export interface DeleteRangeRequest {
  key: Buffer;
  range_end?: Buffer;
  prev_kv?: boolean;
}

export interface Compare {
  key: Buffer;
  range_end?: Buffer;
  target: 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';
  result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';
  version?: number;
  create_revision?: string;
  mod_revision?: string;
  value?: Buffer;
}

export interface RequestOp {
  request_range?: RangeRequest;
  request_put?: PutRequest;
  request_delete_range?: DeleteRangeRequest;
}

export interface TxnRequest {
  compare?: Compare[];
  success?: RequestOp[];
  failure?: RequestOp[];
}

export interface ResponseHeader {
  revision: string;
}

export interface KeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: KeyValue[];
  count: string;
}

export interface DeleteRangeResponse {
  header: ResponseHeader;
  deleted: string;
  prev_kvs: KeyValue[];
}

/** One answer of a transaction: the field of its request's kind is the real one, the others are empty. */
export interface ResponseOp {
  response_range: RangeResponse;
  response_delete_range: DeleteRangeResponse;
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface WatchEvent {
  type: 'PUT' | 'DELETE';
  kv: KeyValue;
}

/** One message of a watch stream (the gateway's `result`). */
export interface WatchResponse {
  header: ResponseHeader;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: WatchEvent[];
}

/** A request as the gateway reads it: every Buffer as base64. */
export function encodeRequest(request: object): string {
  return JSON.stringify(request, function (this: Record<string, unknown>, key, value) {
    const raw = this[key];
    return Buffer.isBuffer(raw) ? raw.toString('base64') : value;
  });
}

// The gateway's JSON: anything may be missing (a default), and etcd written by others is not ours to trust.
type Wire = Record<string, any>;

const header = (wire: Wire | undefined): ResponseHeader => ({ revision: String(wire?.revision ?? '0') });
const bytes = (text: unknown): Buffer => Buffer.from(typeof text === 'string' ? text : '', 'base64');

export const decodeKeyValue = (wire: Wire): KeyValue => ({
  key: bytes(wire.key),
  value: bytes(wire.value),
  create_revision: String(wire.create_revision ?? '0'),
  mod_revision: String(wire.mod_revision ?? '0'),
  version: String(wire.version ?? '0'),
});

const keyValues = (wire: unknown): KeyValue[] => (Array.isArray(wire) ? wire.map(decodeKeyValue) : []);

export const decodeRange = (wire: Wire = {}): RangeResponse => ({ header: header(wire.header), kvs: keyValues(wire.kvs), count: String(wire.count ?? '0') });

export const decodeDeleteRange = (wire: Wire = {}): DeleteRangeResponse => ({
  header: header(wire.header),
  deleted: String(wire.deleted ?? '0'),
  prev_kvs: keyValues(wire.prev_kvs),
});

export const decodeTxn = (wire: Wire): TxnResponse => ({
  header: header(wire.header),
  succeeded: wire.succeeded === true,
  responses: (Array.isArray(wire.responses) ? wire.responses : []).map((op: Wire) => ({
    response_range: decodeRange(op.response_range),
    response_delete_range: decodeDeleteRange(op.response_delete_range),
  })),
});

export const decodeWatch = (wire: Wire): WatchResponse => ({
  header: header(wire.header),
  watch_id: String(wire.watch_id ?? '0'),
  created: wire.created === true,
  canceled: wire.canceled === true,
  compact_revision: String(wire.compact_revision ?? '0'),
  cancel_reason: String(wire.cancel_reason ?? ''),
  events: (Array.isArray(wire.events) ? wire.events : []).map((event: Wire) => ({
    type: event.type === 'DELETE' ? 'DELETE' : 'PUT',
    kv: decodeKeyValue(event.kv ?? {}),
  })),
});
