import type { Resource } from '../domain/resources.js';

export interface ResourceRef {
  kind: string;
  name: string;
  namespace?: string;
}

export interface ResourceSnapshot {
  revision: string;
  resources: Resource[];
}

/**
 * Calico v3 resources in the datastore, with Calico's semantics: `metadata.resourceVersion` is the
 * key's revision on every read and is never stored; create fails if the key exists
 * (AlreadyExistsError), update and delete compare the given resourceVersion (ConflictError) and fail
 * on a missing key (NotFoundError). Error messages are Calico's (`resource does not exist: Kind(name)…`).
 */
export interface ResourceStore {
  get<R extends Resource>(ref: ResourceRef): Promise<R | null>;
  /** All resources of a kind (of one namespace when given), sorted by name. */
  list<R extends Resource>(kind: string, namespace?: string): Promise<R[]>;
  /** Sets uid and creationTimestamp when missing; refuses a resource that carries a resourceVersion. */
  create<R extends Resource>(resource: R): Promise<R>;
  /** Writes `resource` if the stored one is still at its resourceVersion. */
  update<R extends Resource>(resource: R): Promise<R>;
  /** Deletes (only if still at `resourceVersion`, when given); resolves with what was deleted. */
  delete<R extends Resource>(ref: ResourceRef, resourceVersion?: string): Promise<R>;
  /** Every resource of `kinds`, read at one revision. */
  snapshot(kinds: string[]): Promise<ResourceSnapshot>;
}
