import { randomUUID } from 'node:crypto';
import type * as RPC from './etcd-rpc.js';
import { AlreadyExistsError, ConflictError, InvalidRequestError, NotFoundError } from '../../../domain/errors.js';
import { kindInfo, KindInfo, KINDS, Resource, resourceId } from '../../../domain/resources.js';
import type { ResourceRef, ResourceSnapshot, ResourceStore } from '../../../ports/resource-store.js';
import type { EtcdClient } from './etcd-client.js';
import { prefixEnd } from './keys.js';

export const RESOURCE_ROOT = '/calico/resources/v3/projectcalico.org/';

function info(kind: string): KindInfo {
  const found = kindInfo(kind);
  if (!found) throw new InvalidRequestError(`unknown resource kind ${JSON.stringify(kind)}`);
  return found;
}

const kindPrefix = (kind: string): string => `${RESOURCE_ROOT}${info(kind).plural}/`;

export function resourceKey(ref: ResourceRef): string {
  const kind = info(ref.kind);
  if (kind.namespaced && !ref.namespace) throw new InvalidRequestError(`${kind.kind} ${ref.name} needs a namespace`);
  return `${RESOURCE_ROOT}${kind.plural}/${kind.namespaced ? `${ref.namespace}/` : ''}${ref.name}`;
}

/** The resource a key names, or undefined for keys of kinds we do not know. */
export function refFromKey(key: string): ResourceRef | undefined {
  if (!key.startsWith(RESOURCE_ROOT)) return undefined;
  const [plural, ...rest] = key.slice(RESOURCE_ROOT.length).split('/');
  const kind = KINDS.find((k) => k.plural === plural);
  if (!kind) return undefined;
  if (kind.namespaced) return rest.length === 2 ? { kind: kind.kind, namespace: rest[0]!, name: rest[1]! } : undefined;
  return rest.length === 1 ? { kind: kind.kind, name: rest[0]! } : undefined;
}

/** The stored form: Calico's field order, no resourceVersion. */
function encode(resource: Resource): Buffer {
  const { resourceVersion: _dropped, ...metadata } = resource.metadata;
  const { kind, apiVersion, metadata: _replaced, spec, status, ...rest } = resource;
  return Buffer.from(JSON.stringify({ kind, apiVersion, metadata, spec, ...rest, ...(status !== undefined ? { status } : {}) }));
}

/**
 * A stored value as a resource with its resourceVersion; undefined for a value that is not a JSON
 * object (written by another tool): skipped, never fatal.
 */
export function decodeResource(kv: RPC.KeyValue): Resource | undefined {
  try {
    const value = JSON.parse(kv.value.toString()) as Resource;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    value.metadata = { ...(value.metadata ?? {}), resourceVersion: kv.mod_revision } as Resource['metadata'];
    value.spec ??= {};
    return value;
  } catch {
    return undefined;
  }
}

/** The resource a key holds, if the key is one of a known kind and its value can be read. */
export const resourceOf = (kv: RPC.KeyValue): Resource | undefined => (refFromKey(kv.key.toString()) ? decodeResource(kv) : undefined);

const notFound = (ref: ResourceRef): NotFoundError => new NotFoundError(`resource does not exist: ${resourceId(ref.kind, ref.name, ref.namespace)} with error: <nil>`);

/** Calico v3 resources on etcd, with Calico's create/update/delete transactions (libcalico-go etcdv3 backend). */
export class EtcdResourceStore implements ResourceStore {
  constructor(
    private readonly etcd: EtcdClient,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async get<R extends Resource>(ref: ResourceRef): Promise<R | null> {
    const kv = (await this.etcd.range({ key: Buffer.from(resourceKey(ref)) })).kvs[0];
    return kv ? ((decodeResource(kv) as R | undefined) ?? null) : null;
  }

  async list<R extends Resource>(kind: string, namespace?: string): Promise<R[]> {
    const prefix = namespace ? `${kindPrefix(kind)}${namespace}/` : kindPrefix(kind);
    const response = await this.etcd.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
    return response.kvs.flatMap((kv) => {
      const value = resourceOf(kv);
      return value ? [value as R] : [];
    });
  }

  async create<R extends Resource>(resource: R): Promise<R> {
    const ref = refOf(resource);
    if (resource.metadata.resourceVersion) {
      throw new InvalidRequestError(`error with field Metadata.ResourceVersion = '${resource.metadata.resourceVersion}' (field must not be set for a Create request)`);
    }
    const created = {
      ...resource,
      metadata: {
        ...resource.metadata,
        uid: resource.metadata.uid ?? randomUUID(),
        creationTimestamp: resource.metadata.creationTimestamp ?? this.now().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    };
    const key = Buffer.from(resourceKey(ref));
    const result = await this.etcd.txn({
      compare: [{ key, target: 'VERSION', result: 'EQUAL', version: 0 }],
      success: [{ request_put: { key, value: encode(created) } }],
    });
    if (!result.succeeded) throw new AlreadyExistsError(`resource already exists: ${resourceId(ref.kind, ref.name, ref.namespace)}`);
    return { ...created, metadata: { ...created.metadata, resourceVersion: result.header.revision } };
  }

  async update<R extends Resource>(resource: R): Promise<R> {
    const ref = refOf(resource);
    const revision = resource.metadata.resourceVersion;
    if (!revision) throw new InvalidRequestError(`error with field Metadata.ResourceVersion = '' (field must be set for an Update request)`);
    const key = Buffer.from(resourceKey(ref));
    const result = await this.etcd.txn({
      compare: [{ key, target: 'MOD', result: 'EQUAL', mod_revision: revision }],
      success: [{ request_put: { key, value: encode(resource) } }],
      failure: [{ request_range: { key } }],
    });
    if (!result.succeeded) {
      if ((result.responses[0]?.response_range.kvs.length ?? 0) === 0) throw notFound(ref);
      throw new ConflictError(`update conflict: ${resourceId(ref.kind, ref.name, ref.namespace)}`);
    }
    return { ...resource, metadata: { ...resource.metadata, resourceVersion: result.header.revision } };
  }

  async delete<R extends Resource>(ref: ResourceRef, resourceVersion?: string): Promise<R> {
    const key = Buffer.from(resourceKey(ref));
    const result = await this.etcd.txn({
      compare: resourceVersion ? [{ key, target: 'MOD', result: 'EQUAL', mod_revision: resourceVersion }] : [],
      success: [{ request_delete_range: { key, prev_kv: true } }],
      failure: [{ request_range: { key } }],
    });
    const previous = result.succeeded ? result.responses[0]?.response_delete_range.prev_kvs[0] : undefined;
    if (result.succeeded && previous) return (decodeResource(previous) ?? { kind: ref.kind, metadata: { name: ref.name } }) as R;
    if (!result.succeeded && (result.responses[0]?.response_range.kvs.length ?? 0) > 0) {
      throw new ConflictError(`update conflict: ${resourceId(ref.kind, ref.name, ref.namespace)}`);
    }
    throw notFound(ref);
  }

  async snapshot(kinds: string[]): Promise<ResourceSnapshot> {
    const response = await this.etcd.txn({
      success: kinds.map((kind) => ({ request_range: { key: Buffer.from(kindPrefix(kind)), range_end: prefixEnd(kindPrefix(kind)) } })),
    });
    const resources = response.responses.flatMap((r) =>
      r.response_range.kvs.flatMap((kv) => {
        const value = resourceOf(kv);
        return value ? [value] : [];
      }),
    );
    return { revision: response.header.revision, resources };
  }
}

function refOf(resource: Resource): ResourceRef {
  const name = resource.metadata?.name;
  if (typeof name !== 'string' || name === '') throw new InvalidRequestError(`error with field Metadata.Name = '' (name is required)`);
  return { kind: resource.kind, name, ...(resource.metadata.namespace ? { namespace: resource.metadata.namespace } : {}) };
}
