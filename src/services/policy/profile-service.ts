import { NETWORK_NAME_ANNOTATION, Profile, Rule, WorkloadEndpoint } from '../../domain/endpoint-model.js';
import { ConflictError, InUseError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import type { DockerApi } from '../../ports/docker-api.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import { checkSelectors, fromV3, SeedRule, SeedRules, toV3, validateName } from './seed-rules.js';
import { byText } from '../../domain/text-order.js';

export type Direction = 'inbound' | 'outbound';
const MAX_ATTEMPTS = 20;

/** The name users know a profile by: the Docker network's name for a network's profile. */
export const displayName = (profile: Profile): string => profile.metadata.annotations?.[NETWORK_NAME_ANNOTATION] ?? profile.metadata.name;

/**
 * Profiles as calicoctl 0.x managed them: tags, ordered inbound/outbound rules, every change a
 * compare-and-swap on the profile's revision. A Docker network's name works wherever a profile is
 * named: the network's profile is stored under its ID.
 */
export class ProfileService {
  constructor(
    private readonly store: EndpointStore,
    private readonly docker: Pick<DockerApi, 'networkId'>,
  ) {}

  /** The stored profile name for what the user typed: a profile name, or a Docker network's name. */
  async resolve(name: string): Promise<string> {
    if (await this.store.getProfile(name)) return name;
    const networkId = await this.docker.networkId(name);
    if (networkId && (await this.store.getProfile(networkId))) return networkId;
    const byAnnotation = (await this.list()).find((p) => displayName(p) === name);
    if (byAnnotation) return byAnnotation.metadata.name;
    throw new NotFoundError(`Profile ${name} not found: 'calicoctl profile show' lists the profiles`);
  }

  async list(): Promise<Profile[]> {
    return (await this.store.listProfiles()).map((p) => p.value).sort((a, b) => byText(displayName(a), displayName(b)));
  }

  async get(name: string): Promise<Profile> {
    const stored = await this.store.getProfile(await this.resolve(name));
    if (!stored) throw new NotFoundError(`Profile ${name} not found`);
    return stored.value;
  }

  async members(name: string): Promise<WorkloadEndpoint[]> {
    const resolved = await this.resolve(name);
    return (await this.store.listEndpoints()).map((e) => e.value).filter((e) => e.spec.profiles.includes(resolved));
  }

  /** calicoctl 0.x defaults: tagged with its own name, inbound from that tag, outbound anywhere. */
  async add(name: string): Promise<void> {
    validateName('profile', name);
    const profile: Profile = {
      kind: 'Profile',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name, creationTimestamp: new Date().toISOString() },
      spec: { ingress: [{ action: 'Allow', source: { selector: `has(${name})` } }], egress: [{ action: 'Allow' }], labelsToApply: { [name]: '' } },
    };
    if (!(await this.store.createProfile(profile))) throw new ConflictError(`Profile ${name} already exists`);
  }

  async remove(name: string, options: { noCheck?: boolean } = {}): Promise<void> {
    const resolved = await this.resolve(name);
    if (!options.noCheck) {
      const users = (await this.members(resolved)).length;
      if (users > 0) throw new InUseError(`Profile ${name} is used by ${users} endpoint(s): remove them first, or use --no-check`);
    }
    await this.store.deleteProfile(resolved);
  }

  async tags(name: string): Promise<string[]> {
    return Object.keys((await this.get(name)).spec.labelsToApply ?? {}).sort();
  }

  async addTag(name: string, tag: string): Promise<boolean> {
    validateName('tag', tag);
    return this.edit(name, (p) => {
      if (tag in (p.spec.labelsToApply ?? {})) return false;
      p.spec.labelsToApply = { ...p.spec.labelsToApply, [tag]: '' };
      return true;
    });
  }

  async removeTag(name: string, tag: string): Promise<void> {
    const removed = await this.edit(name, (p) => {
      if (!(tag in (p.spec.labelsToApply ?? {}))) return false;
      const labels = { ...p.spec.labelsToApply };
      delete labels[tag];
      p.spec.labelsToApply = labels;
      return true;
    });
    if (!removed) throw new NotFoundError(`Profile ${name} has no tag ${tag}`);
  }

  async rules(name: string): Promise<SeedRules> {
    const profile = await this.get(name);
    return { inbound_rules: profile.spec.ingress.map(fromV3), outbound_rules: profile.spec.egress.map(fromV3) };
  }

  /** Replaces both rule lists at once; nothing changes if any rule is invalid. */
  async setRules(name: string, document: unknown): Promise<void> {
    if (typeof document !== 'object' || document === null || Array.isArray(document)) throw new InvalidRequestError('the rules document must be a JSON object with inbound_rules and outbound_rules');
    const { inbound_rules: inbound = [], outbound_rules: outbound = [], ...rest } = document as Partial<SeedRules> & Record<string, unknown>;
    const extra = Object.keys(rest).filter((k) => k !== 'id');
    if (extra.length) throw new InvalidRequestError(`unknown field ${JSON.stringify(extra[0])}: the document has inbound_rules and outbound_rules`);
    if (!Array.isArray(inbound) || !Array.isArray(outbound)) throw new InvalidRequestError('inbound_rules and outbound_rules must be lists');
    const ingress = inbound.map(toV3);
    const egress = outbound.map(toV3);
    checkSelectors([...ingress, ...egress]);
    await this.edit(name, (p) => {
      p.spec.ingress = ingress;
      p.spec.egress = egress;
      return true;
    });
  }

  /** Adds a rule (at a 1-based position, else at the end); false when an equal rule is already there. */
  async addRule(name: string, direction: Direction, rule: SeedRule, at?: number): Promise<boolean> {
    const v3 = toV3(rule);
    return this.edit(name, (p) => {
      const list = direction === 'inbound' ? p.spec.ingress : p.spec.egress;
      if (list.some((r) => sameRule(r, v3))) return false;
      const index = at === undefined ? list.length : at - 1;
      if (!Number.isInteger(index) || index < 0 || index > list.length) throw new InvalidRequestError(`--at must be between 1 and ${list.length + 1}`);
      list.splice(index, 0, v3);
      return true;
    });
  }

  /** Removes the rule at a 1-based position, or the rule equal to `rule`. */
  async removeRule(name: string, direction: Direction, target: { at: number } | { rule: SeedRule }): Promise<void> {
    const removed = await this.edit(name, (p) => {
      const list = direction === 'inbound' ? p.spec.ingress : p.spec.egress;
      const index = 'at' in target ? target.at - 1 : list.findIndex((r) => sameRule(r, toV3(target.rule)));
      if ('at' in target && (!Number.isInteger(index) || index < 0 || index >= list.length)) {
        throw new InvalidRequestError(`there is no ${direction} rule ${target.at}: the profile has ${list.length}`);
      }
      if (index < 0) return false;
      list.splice(index, 1);
      return true;
    });
    if (!removed) throw new NotFoundError(`no such ${direction} rule in profile ${name}`);
  }

  /** Read, change, compare-and-swap; retried when another writer got there first. */
  private async edit(name: string, change: (profile: Profile) => boolean): Promise<boolean> {
    const resolved = await this.resolve(name);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await this.store.getProfile(resolved);
      if (!stored) throw new NotFoundError(`Profile ${name} not found`);
      const profile = structuredClone(stored.value);
      if (!change(profile)) return false;
      if (await this.store.updateProfile(profile, stored.modRevision)) return true;
    }
    throw new ConflictError(`Profile ${name} is changing too often to update: try again`);
  }
}

const sameRule = (a: Rule, b: Rule): boolean => JSON.stringify(fromV3(a)) === JSON.stringify(fromV3(b));
