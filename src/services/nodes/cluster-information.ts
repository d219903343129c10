import { randomBytes } from 'node:crypto';
import { AlreadyExistsError, ConflictError } from '../../domain/errors.js';
import { API_VERSION, CLUSTER_INFORMATION_NAME, ClusterInformation } from '../../domain/resources.js';
import type { ResourceStore } from '../../ports/resource-store.js';

const REF = { kind: 'ClusterInformation', name: CLUSTER_INFORMATION_NAME };

/** Comma lists merged as calico/node merges CLUSTER_TYPE: existing entries kept, new ones appended. */
function mergedTypes(existing: string | undefined, added: string): string {
  const types = (existing ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  for (const type of added.split(',')) if (!types.includes(type)) types.push(type);
  return types.join(',');
}

/**
 * ClusterInformation `default` as calico/node writes it at start: this version, the cluster's
 * types, a GUID made once, datastoreReady. `calicoctl version` reads it.
 */
export async function recordClusterInformation(store: ResourceStore, calicoVersion: string, clusterType: string): Promise<ClusterInformation> {
  for (let attempt = 0; ; attempt++) {
    const existing = await store.get<ClusterInformation>(REF);
    const spec = {
      ...existing?.spec,
      calicoVersion,
      clusterGUID: existing?.spec.clusterGUID ?? randomBytes(16).toString('hex'),
      clusterType: mergedTypes(existing?.spec.clusterType, clusterType),
      datastoreReady: existing?.spec.datastoreReady ?? true,
    };
    try {
      if (existing) return await store.update({ ...existing, spec });
      return await store.create<ClusterInformation>({ apiVersion: API_VERSION, kind: 'ClusterInformation', metadata: { name: REF.name }, spec });
    } catch (error) {
      // Another host's daemon wrote it meanwhile: read it again.
      if (attempt < 5 && (error instanceof ConflictError || error instanceof AlreadyExistsError)) continue;
      throw error;
    }
  }
}

export async function readClusterInformation(store: ResourceStore): Promise<ClusterInformation | null> {
  return store.get<ClusterInformation>(REF);
}
