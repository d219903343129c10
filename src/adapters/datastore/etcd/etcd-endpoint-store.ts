import type * as RPC from './etcd-rpc.js';
import type { Profile, WorkloadEndpoint } from '../../../domain/endpoint-model.js';
import type { EndpointStore } from '../../../ports/endpoint-store.js';
import type { Stored } from '../../../ports/ipam-store.js';
import type { EtcdClient } from './etcd-client.js';
import { prefixEnd } from './keys.js';

export const ENDPOINT_PREFIX = '/calico/resources/v3/projectcalico.org/workloadendpoints/libnetwork/';
export const PROFILE_PREFIX = '/calico/resources/v3/projectcalico.org/profiles/';

function stored<T>(kv: RPC.KeyValue): Stored<T> {
  return { value: JSON.parse(kv.value.toString()) as T, modRevision: kv.mod_revision, createRevision: kv.create_revision };
}

/** Calico v3 WorkloadEndpoints (namespace `libnetwork`) and Profiles on etcd. */
export class EtcdEndpointStore implements EndpointStore {
  constructor(private readonly etcd: EtcdClient) {}

  private async get<T>(key: string): Promise<Stored<T> | null> {
    const kv = (await this.etcd.range({ key: Buffer.from(key) })).kvs[0];
    return kv ? stored<T>(kv) : null;
  }

  private async create(key: string, value: unknown): Promise<boolean> {
    const k = Buffer.from(key);
    const result = await this.etcd.txn({
      compare: [{ key: k, target: 'VERSION', result: 'EQUAL', version: 0 }],
      success: [{ request_put: { key: k, value: Buffer.from(JSON.stringify(value)) } }],
    });
    return result.succeeded;
  }

  private async update(key: string, value: unknown, revision: string): Promise<boolean> {
    const k = Buffer.from(key);
    const result = await this.etcd.txn({
      compare: [{ key: k, target: 'MOD', result: 'EQUAL', mod_revision: revision }],
      success: [{ request_put: { key: k, value: Buffer.from(JSON.stringify(value)) } }],
    });
    return result.succeeded;
  }

  private async remove(key: string): Promise<void> {
    await this.etcd.deleteRange({ key: Buffer.from(key) });
  }

  getEndpoint(name: string) {
    return this.get<WorkloadEndpoint>(ENDPOINT_PREFIX + name);
  }

  private async list<T>(prefix: string): Promise<Stored<T>[]> {
    const response = await this.etcd.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
    return response.kvs.map((kv) => stored<T>(kv));
  }

  listEndpoints() {
    return this.list<WorkloadEndpoint>(ENDPOINT_PREFIX);
  }

  listProfiles() {
    return this.list<Profile>(PROFILE_PREFIX);
  }

  createEndpoint(endpoint: WorkloadEndpoint) {
    return this.create(ENDPOINT_PREFIX + endpoint.metadata.name, endpoint);
  }

  updateEndpoint(endpoint: WorkloadEndpoint, revision: string) {
    return this.update(ENDPOINT_PREFIX + endpoint.metadata.name, endpoint, revision);
  }

  deleteEndpoint(name: string) {
    return this.remove(ENDPOINT_PREFIX + name);
  }

  getProfile(name: string) {
    return this.get<Profile>(PROFILE_PREFIX + name);
  }

  createProfile(profile: Profile) {
    return this.create(PROFILE_PREFIX + profile.metadata.name, profile);
  }

  updateProfile(profile: Profile, revision: string) {
    return this.update(PROFILE_PREFIX + profile.metadata.name, profile, revision);
  }

  deleteProfile(name: string) {
    return this.remove(PROFILE_PREFIX + name);
  }

  async deleteProfileAt(name: string, revision: string): Promise<boolean> {
    const key = Buffer.from(PROFILE_PREFIX + name);
    const result = await this.etcd.txn({
      compare: [{ key, target: 'MOD', result: 'EQUAL', mod_revision: revision }],
      success: [{ request_delete_range: { key } }],
    });
    return result.succeeded;
  }
}
