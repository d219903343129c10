import type { Profile, WorkloadEndpoint } from '../domain/endpoint-model.js';
import type { Stored } from './ipam-store.js';

/** Workload endpoints and profiles in the datastore. Writes are compare-and-swap on the revision. */
export interface EndpointStore {
  getEndpoint(name: string): Promise<Stored<WorkloadEndpoint> | null>;
  listEndpoints(): Promise<Stored<WorkloadEndpoint>[]>;
  /** Creates the endpoint; false when one of that name exists already. */
  createEndpoint(endpoint: WorkloadEndpoint): Promise<boolean>;
  /** Replaces the endpoint if it is still at `revision`; false otherwise. */
  updateEndpoint(endpoint: WorkloadEndpoint, revision: string): Promise<boolean>;
  deleteEndpoint(name: string): Promise<void>;

  getProfile(name: string): Promise<Stored<Profile> | null>;
  listProfiles(): Promise<Stored<Profile>[]>;
  createProfile(profile: Profile): Promise<boolean>;
  updateProfile(profile: Profile, revision: string): Promise<boolean>;
  deleteProfile(name: string): Promise<void>;
  /** Deletes the profile if it is still at `revision`; false otherwise. */
  deleteProfileAt(name: string, revision: string): Promise<boolean>;
}
