import { AlreadyExistsError, ConflictError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import type { IpPool } from '../../domain/ipam-model.js';
import { DEFAULT_TIER, DEFAULT_TIER_ORDER, type PolicySpec } from '../../domain/policy-model.js';
import { API_VERSION, kindInfo, Resource, resourceId } from '../../domain/resources.js';
import type { ResourceRef, ResourceStore } from '../../ports/resource-store.js';
import type { PoolService } from '../ipam/pool-service.js';
import type { NodeRemoval } from '../nodes/node-removal.js';
import { mergePatch } from './merge-patch.js';
import { decodeResource } from './resource-schema.js';
import { validateResource } from './resource-validation.js';
import { byText } from '../../domain/text-order.js';

const MAX_ATTEMPTS = 5;
/** Written by the network driver, never by hand. */
const READ_ONLY = new Set(['WorkloadEndpoint']);

export type LabelChange = 'set' | 'updated' | 'removed';

const notFound = (ref: ResourceRef): NotFoundError => new NotFoundError(`resource does not exist: ${resourceId(ref.kind, ref.name, ref.namespace)} with error: <nil>`);

const POLICY_KINDS = ['GlobalNetworkPolicy', 'NetworkPolicy'];

/** The tier `default` as Calico's client presents it when the datastore has no key for it (no resourceVersion). */
export const defaultTier = (): Resource => ({
  kind: 'Tier',
  apiVersion: API_VERSION,
  metadata: { name: DEFAULT_TIER },
  spec: { order: DEFAULT_TIER_ORDER, defaultAction: 'Deny' },
});

const isDefaultTier = (ref: ResourceRef): boolean => ref.kind === 'Tier' && ref.name === DEFAULT_TIER;

function refOf(resource: Resource): ResourceRef {
  return { kind: resource.kind, name: resource.metadata.name, ...(resource.metadata.namespace ? { namespace: resource.metadata.namespace } : {}) };
}

function refuseReadOnly(kind: string, operation: string): void {
  if (READ_ONLY.has(kind)) throw new InvalidRequestError(`operation ${operation} is not supported on ${kind}: the network driver writes them`);
}

/**
 * calicoctl's v3 verbs on the resources, with Calico's semantics: create refuses an existing name,
 * replace needs the resource to exist (and its resourceVersion, when given, to be current), apply
 * creates or replaces, delete removes with what depends on it (a pool's empty blocks, a node's
 * endpoints, addresses and affinities). Everything is validated before anything is written; pools go
 * through the pool rules (no overlap, fixed CIDR and block size).
 */
export class ResourceService {
  constructor(
    private readonly store: ResourceStore,
    private readonly pools: PoolService,
    private readonly nodes: NodeRemoval,
  ) {}

  async get(ref: ResourceRef): Promise<Resource> {
    const found = await this.store.get(ref);
    if (!found && isDefaultTier(ref)) return defaultTier();
    if (!found) throw notFound(ref);
    return found;
  }

  /** Every resource of a kind (of one namespace when given), sorted by namespace and name, with the revision read at. */
  async list(kind: string, namespace?: string): Promise<{ revision: string; items: Resource[] }> {
    const snapshot = await this.store.snapshot([kind]);
    if (kind === 'Tier' && !snapshot.resources.some((r) => r.metadata.name === DEFAULT_TIER)) snapshot.resources.push(defaultTier());
    const items = snapshot.resources
      .filter((r) => namespace === undefined || r.metadata.namespace === namespace)
      .sort((a, b) => byText(a.metadata.namespace ?? '', b.metadata.namespace ?? '') || byText(a.metadata.name, b.metadata.name));
    return { revision: snapshot.revision, items };
  }

  async create(input: Resource): Promise<Resource> {
    refuseReadOnly(input.kind, 'create');
    const resource = validateResource(input);
    await this.checkTier(resource);
    // The default tier always exists (Calico creates it when the datastore is initialised).
    if (isDefaultTier(refOf(resource))) throw new AlreadyExistsError(`resource already exists: ${resourceId('Tier', DEFAULT_TIER)}`);
    if (resource.kind === 'IPPool') return this.pools.create(resource as unknown as IpPool) as unknown as Resource;
    return this.store.create(resource);
  }

  async replace(input: Resource): Promise<Resource> {
    refuseReadOnly(input.kind, 'replace');
    const resource = validateResource(input);
    await this.checkTier(resource);
    const given = resource.metadata.resourceVersion;
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(refOf(resource));
      const latest = current.metadata.resourceVersion;
      if (latest === undefined) {
        // The default tier, not stored yet: the first write creates its key.
        const { resourceVersion: _given, ...metadata } = resource.metadata;
        return this.store.create({ ...resource, metadata });
      }
      if (given && given !== latest) {
        throw new ConflictError(`Resource version '${given}' is out of date (latest: ${latest}). Update the resource YAML/JSON in order to make changes.`);
      }
      // Calico keeps what the server set: uid and creation time.
      const merged: Resource = {
        ...resource,
        metadata: { ...resource.metadata, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp, resourceVersion: latest },
      };
      try {
        if (resource.kind === 'IPPool') return (await this.pools.update(merged as unknown as IpPool, latest)) as unknown as Resource;
        return await this.store.update(merged);
      } catch (error) {
        if (!(error instanceof ConflictError) || given || attempt + 1 >= MAX_ATTEMPTS) throw error;
      }
    }
  }

  async apply(input: Resource): Promise<Resource> {
    const { resourceVersion: _ignored, ...metadata } = input.metadata;
    const resource = { ...input, metadata };
    try {
      return await this.create(resource);
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw error;
      return this.replace(resource);
    }
  }

  async delete(ref: ResourceRef): Promise<void> {
    refuseReadOnly(ref.kind, 'delete');
    if (isDefaultTier(ref)) throw new InvalidRequestError(`operation Delete is not supported on ${DEFAULT_TIER}: Cannot delete ${DEFAULT_TIER} tier`);
    await this.get(ref);
    if (ref.kind === 'Tier') {
      const policies = (await this.store.snapshot(POLICY_KINDS)).resources;
      if (policies.some((p) => ((p.spec as PolicySpec).tier || DEFAULT_TIER) === ref.name)) {
        throw new InvalidRequestError(`operation delete is not supported on ${ref.name}: Cannot delete a non-empty tier`);
      }
    }
    if (ref.kind === 'IPPool') await this.pools.remove(ref.name);
    else if (ref.kind === 'Node') await this.nodes.remove(ref.name);
    else await this.store.delete(ref);
  }

  /** A JSON merge patch on the stored resource; the result is checked as if written whole. */
  async patch(ref: ResourceRef, patchText: string): Promise<Resource> {
    let patch: unknown;
    try {
      patch = JSON.parse(patchText);
    } catch (error) {
      throw new InvalidRequestError(`performing merge patch: invalid JSON document: ${(error as Error).message}`);
    }
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new InvalidRequestError('performing merge patch: the patch must be a JSON object');
    return this.editWithRetry(ref, (current) => {
      const patched = mergePatch(current, patch) as Resource;
      return decodeResource({ ...patched, kind: current.kind, apiVersion: current.apiVersion, metadata: { ...patched.metadata, resourceVersion: current.metadata.resourceVersion } });
    });
  }

  /** Sets (value given) or removes a label; without `overwrite` an existing key keeps a different value. */
  async label(ref: ResourceRef, key: string, value: string | undefined, overwrite: boolean): Promise<LabelChange> {
    let change: LabelChange = 'set';
    await this.editWithRetry(ref, (current) => {
      const labels = { ...(current.metadata.labels ?? {}) };
      const what = ref.kind.toLowerCase();
      if (value === undefined) {
        if (!(key in labels)) throw new NotFoundError(`can not remove label of ${what} ${ref.name}, key ${key} does not exist`);
        delete labels[key];
        change = 'removed';
      } else {
        if (key in labels && labels[key] !== value && !overwrite) {
          throw new InvalidRequestError(`failed to update label of ${what} ${ref.name}, key ${key} is already present. please use '--overwrite' to set a new value.`);
        }
        change = key in labels ? 'updated' : 'set';
        labels[key] = value;
      }
      return { ...current, metadata: { ...current.metadata, labels } };
    });
    return change;
  }

  /** Calico's client reads the policy's tier before writing it: an unknown tier is refused. */
  private async checkTier(resource: Resource): Promise<void> {
    if (!POLICY_KINDS.includes(resource.kind)) return;
    await this.get({ kind: 'Tier', name: (resource.spec as PolicySpec).tier || DEFAULT_TIER });
  }

  private async editWithRetry(ref: ResourceRef, edit: (current: Resource) => Resource): Promise<Resource> {
    if (!kindInfo(ref.kind)) throw new InvalidRequestError(`resource type '${ref.kind}' is not supported`);
    refuseReadOnly(ref.kind, 'update');
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(ref);
      try {
        return await this.replace(edit(current));
      } catch (error) {
        if (!(error instanceof ConflictError) || attempt + 1 >= MAX_ATTEMPTS) throw error;
      }
    }
  }
}
