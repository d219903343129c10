import { defaultProfile, NETWORK_NAME_ANNOTATION, Profile } from '../../domain/endpoint-model.js';
import { ConflictError } from '../../domain/errors.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import type { Stored } from '../../ports/ipam-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import { byText } from '../../domain/text-order.js';

/** On a network's profile: which node holds which Docker network of that name (`{"host1":"<ID>"}`). */
export const NETWORKS_ANNOTATION = 'libnetwork.projectcalico.org/networks';
const MAX_ATTEMPTS = 20;

export function holdersOf(profile: Profile): Record<string, string> {
  try {
    const parsed = JSON.parse(profile.metadata.annotations?.[NETWORKS_ANNOTATION] ?? '{}') as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, string>) : {};
  } catch {
    return {};
  }
}

function withHolders(profile: Profile, holders: Record<string, string>): Profile {
  const sorted = Object.fromEntries(Object.entries(holders).sort(([a], [b]) => byText(a, b)));
  return { ...profile, metadata: { ...profile.metadata, annotations: { ...profile.metadata.annotations, [NETWORKS_ANNOTATION]: JSON.stringify(sorted) } } };
}

/**
 * One Calico network per Docker network name, across hosts. Each host creates its own Docker
 * network (local scope: its own ID) or sees the one network (global scope); either way the profile
 * is the network's name, shared by every host: policy set on one host holds on all, a host that
 * creates the network later gets the rules as they are, and the profile goes only when the last host
 * removes its network. Every change is a compare-and-swap on the profile, retried on conflict.
 */
export class NetworkProfiles {
  constructor(
    private readonly store: EndpointStore,
    private readonly log: Logger = silentLogger,
  ) {}

  /** `node` has Docker network `networkId` named `name`: the profile `name` exists (with the defaults if new) and lists it. */
  async join(name: string, networkId: string, node: string): Promise<void> {
    await this.edit(name, (current) => {
      const base = current ?? defaultProfile(name, name);
      const holders = holdersOf(base);
      if (holders[node] === networkId) return undefined;
      return withHolders(base, { ...holders, [node]: networkId });
    });
  }

  /**
   * The profile a host recorded Docker network `networkId` on: its name, known across restarts of the
   * daemon and of Docker, when Docker's API cannot be asked (dockerd restoring its containers).
   */
  async nameOf(networkId: string): Promise<string | undefined> {
    const holding = (await this.store.listProfiles()).find(({ value }) => Object.values(holdersOf(value)).includes(networkId));
    return holding?.value.metadata.name;
  }

  /**
   * `node` removed Docker network `networkId`: forgotten on its profile, which goes when no host holds
   * it. A global-scope network is one network on every host: removed on one, it is gone on all.
   */
  async leave(networkId: string, node: string, options: { everywhere?: boolean } = {}): Promise<void> {
    for (const { value: profile } of await this.store.listProfiles()) {
      const holders = holdersOf(profile);
      const leaving = Object.keys(holders).filter((n) => holders[n] === networkId && (options.everywhere || n === node));
      for (const holder of leaving) await this.forget(profile.metadata.name, holder);
    }
  }

  /** A node is gone: it holds no network any more. */
  async forgetNode(node: string): Promise<void> {
    for (const { value: profile } of await this.store.listProfiles()) {
      if (node in holdersOf(profile)) await this.forget(profile.metadata.name, node);
    }
  }

  private async forget(name: string, node: string): Promise<void> {
    await this.edit(name, (current) => {
      if (!current) return undefined;
      const { [node]: _gone, ...rest } = holdersOf(current);
      // Profiles a user made stay; the ones made for a network go with its last host.
      if (Object.keys(rest).length === 0 && current.metadata.annotations?.[NETWORK_NAME_ANNOTATION]) return null;
      return withHolders(current, rest);
    });
  }

  /** Read, change (undefined: nothing to do, null: delete), compare-and-swap; retried when another host got there first. */
  private async edit(name: string, change: (current: Profile | null) => Profile | null | undefined): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored: Stored<Profile> | null = await this.store.getProfile(name);
      const next = change(stored ? structuredClone(stored.value) : null);
      if (next === undefined) return;
      if (next === null) {
        if (await this.store.deleteProfileAt(name, stored!.modRevision)) return;
        continue;
      }
      const written = stored ? await this.store.updateProfile(next, stored.modRevision) : await this.store.createProfile(next);
      if (written) {
        if (!stored) this.log.info({ profile: name }, 'created profile for network');
        return;
      }
    }
    throw new ConflictError(`Profile ${name} is changing too often to update: try again`);
  }
}
