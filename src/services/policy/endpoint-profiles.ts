import type { WorkloadEndpoint } from '../../domain/endpoint-model.js';
import { ConflictError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import type { DockerApi } from '../../ports/docker-api.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import { displayName, ProfileService } from './profile-service.js';
import { validateName } from './seed-rules.js';
import { byText } from '../../domain/text-order.js';

const MAX_ATTEMPTS = 20;

/** `calicoctl endpoint show`'s filters: host, orchestrator, workload, endpoint ID. */
export interface EndpointFilter {
  node?: string;
  orchestrator?: string;
  workload?: string;
  endpoint?: string;
}

/** What a profile change did: written, or refused before writing because of one profile. */
export type ProfileChange = { written: true } | { written: false; profile: string };

/**
 * Workload endpoints with profiles of their own, as calicoctl 0.x's `endpoint` and `container`
 * commands managed them: an endpoint named by its (Docker) endpoint ID or a unique prefix, profiles
 * by name or by their Docker network's name, every change a compare-and-swap on the endpoint's revision.
 */
export class EndpointProfiles {
  constructor(
    private readonly store: EndpointStore,
    private readonly profiles: ProfileService,
    private readonly docker: Pick<DockerApi, 'inspectContainer'>,
  ) {}

  /** Endpoints of every host that pass the filter, by host, workload and ID. */
  async list(filter: EndpointFilter = {}): Promise<WorkloadEndpoint[]> {
    const passes = (e: WorkloadEndpoint): boolean =>
      (filter.node === undefined || e.spec.node === filter.node) &&
      (filter.orchestrator === undefined || e.spec.orchestrator === filter.orchestrator) &&
      (filter.workload === undefined || e.spec.workload === filter.workload) &&
      (filter.endpoint === undefined || e.spec.endpoint === filter.endpoint);
    const key = (e: WorkloadEndpoint): string => `${e.spec.node}\0${e.spec.workload}\0${e.spec.endpoint}`;
    return (await this.store.listEndpoints())
      .map((s) => s.value)
      .filter(passes)
      .sort((a, b) => byText(key(a), key(b)));
  }

  /** The stored name of the one endpoint whose ID is `id` or starts with it (among those passing `filter`). */
  async resolve(id: string, filter: EndpointFilter = {}): Promise<string> {
    const candidates = await this.list(filter);
    const exact = candidates.find((e) => e.spec.endpoint === id);
    if (exact) return exact.metadata.name;
    const matches = id === '' ? [] : candidates.filter((e) => e.spec.endpoint.startsWith(id));
    if (matches.length === 1) return matches[0]!.metadata.name;
    if (matches.length === 0) throw new NotFoundError(`Endpoint ${id} is unknown to Calico.`);
    throw new InvalidRequestError(
      'More than 1 endpoint matches the provided criteria.  Please provide additional parameters to refine the search.\n' +
        `Endpoints whose ID starts with ${id}:\n${matches.map((e) => `  ${e.spec.endpoint} (host ${e.spec.node}, workload ${e.spec.workload})`).join('\n')}`,
    );
  }

  /** The endpoint's profiles by the names users know them by (a network's profile by the network's name). */
  async profilesOf(name: string): Promise<string[]> {
    return this.displayNames((await this.stored(name)).value.spec.profiles);
  }

  /** Profile names as users know them, for stored names; a name with no profile (any more) stays as it is. */
  async displayNames(stored: string[]): Promise<string[]> {
    const known = new Map((await this.profiles.list()).map((p) => [p.metadata.name, displayName(p)]));
    return stored.map((n) => known.get(n) ?? n);
  }

  /** Adds profiles at the end of the list; refused, writing nothing, if the endpoint has one of them already. */
  async append(name: string, profiles: string[]): Promise<ProfileChange> {
    const wanted = await this.storedNames(profiles);
    return this.edit(name, (current) => {
      const present = wanted.findIndex((p) => current.includes(p));
      return present >= 0 ? { refused: profiles[present]! } : [...current, ...wanted];
    });
  }

  /** Removes profiles; refused, writing nothing, if the endpoint lacks one of them. */
  async remove(name: string, profiles: string[]): Promise<ProfileChange> {
    const unwanted = await this.storedNames(profiles);
    return this.edit(name, (current) => {
      const absent = unwanted.findIndex((p) => !current.includes(p));
      return absent >= 0 ? { refused: profiles[absent]! } : current.filter((p) => !unwanted.includes(p));
    });
  }

  /** Replaces the endpoint's profiles (none: the endpoint takes no traffic at all). */
  async set(name: string, profiles: string[]): Promise<void> {
    const wanted = await this.storedNames(profiles);
    await this.edit(name, () => wanted);
  }

  /** The IDs of a container's Calico endpoints (those Calico has a WorkloadEndpoint for), by network name. */
  async ofContainer(container: string): Promise<string[]> {
    const found = await this.docker.inspectContainer(container);
    if (!found) throw new NotFoundError(`Container ${container} was not found.`);
    const calico = new Set((await this.store.listEndpoints()).map((e) => e.value.spec.endpoint));
    const ids = Object.entries(found.networks)
      .sort(([a], [b]) => byText(a, b))
      .map(([, n]) => n.endpointId)
      .filter((id) => calico.has(id));
    if (ids.length === 0) throw new NotFoundError(`No endpoint was found for ${container}`);
    return ids;
  }

  /** Stored profile names for what the user typed, checked as calicoctl 0.x did: each exists, none twice. */
  private async storedNames(typed: string[]): Promise<string[]> {
    const resolved: string[] = [];
    for (const name of typed) {
      validateName('profile', name);
      const stored = await this.profiles.resolve(name).catch((error: unknown) => {
        if (error instanceof NotFoundError) throw new NotFoundError(`Profile with name ${name} was not found.`);
        throw error;
      });
      if (resolved.includes(stored)) throw new InvalidRequestError(`Profile with name ${name} was specified more than once.`);
      resolved.push(stored);
    }
    return resolved;
  }

  private async stored(name: string) {
    const stored = await this.store.getEndpoint(name);
    if (!stored) throw new NotFoundError(`Endpoint ${name} is unknown to Calico.`);
    return stored;
  }

  /** Read, change the profile list, compare-and-swap on the endpoint's revision; retried when another writer got there first. */
  private async edit(name: string, change: (current: string[]) => string[] | { refused: string }): Promise<ProfileChange> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await this.stored(name);
      const next = change(stored.value.spec.profiles);
      if (!Array.isArray(next)) return { written: false, profile: next.refused };
      const endpoint = structuredClone(stored.value);
      endpoint.spec.profiles = next;
      if (await this.store.updateEndpoint(endpoint, stored.modRevision)) return { written: true };
    }
    throw new ConflictError(`Endpoint ${name} is changing too often to update: try again`);
  }
}
