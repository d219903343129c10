import { DEFAULT_TIER, DEFAULT_TIER_ORDER, GlobalNetworkPolicy, inferredTypes, NetworkPolicy, PolicyType, Tier } from '../domain/policy-model.js';
import type { Rule } from '../domain/endpoint-model.js';
import { parseSelector } from './selector.js';

/**
 * Calico's evaluation order, pure: tiers by `order` (none last) then name; within a tier, policies by
 * `order` (none last) then name; only the policies that select an endpoint, for the direction their
 * `types` say, take part, and a tier takes part only where one of its policies does.
 */

export const NAMESPACE_LABEL = 'projectcalico.org/namespace';

/** A policy of either kind, as the engine needs it. */
export interface PolicyView {
  /** Unique among policies: the name, `<namespace>/<name>` for a NetworkPolicy. */
  key: string;
  tier: string;
  order: number | undefined;
  /** The endpoint selector, the namespace restriction of a NetworkPolicy folded in. */
  applies: (labels: Record<string, string>) => boolean;
  /** What decides where the policy applies, as text: equal texts, equal choices (rules apart). */
  selection: string;
  types: PolicyType[];
  ingress: Rule[];
  egress: Rule[];
  /** A NetworkPolicy's namespace: its rule selectors match only that namespace's endpoints and sets. */
  namespace?: string;
  /** Host-endpoint-only kinds (raw and mangle tables); never on a workload's chains. */
  hostOnly: boolean;
  /** A GlobalNetworkPolicy's kind: untracked (raw), before DNAT (mangle), and/or on forwarded traffic through host endpoints. */
  doNotTrack: boolean;
  preDNAT: boolean;
  applyOnForward: boolean;
}

export interface TierView {
  name: string;
  order: number | undefined;
  defaultAction: 'Deny' | 'Pass';
  policies: PolicyView[];
}

const byOrderThenName = <T>(order: (t: T) => number | undefined, name: (t: T) => string) => (a: T, b: T): number => {
  const oa = order(a) ?? Infinity;
  const ob = order(b) ?? Infinity;
  if (oa !== ob) return oa < ob ? -1 : 1;
  return name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0;
};

const quoted = (value: string): string => `'${value}'`;

/** The selector text of a NetworkPolicy's rule: its own, limited to the policy's namespace. */
export const namespaced = (selector: string, namespace: string | undefined): string =>
  namespace === undefined ? selector : `(${selector.trim() || 'all()'}) && ${NAMESPACE_LABEL} == ${quoted(namespace)}`;

/** Views of earlier calculations: a policy unchanged (the same object) is not read again. */
const policyViews = new WeakMap<GlobalNetworkPolicy | NetworkPolicy, PolicyView>();

function view(policy: GlobalNetworkPolicy | NetworkPolicy): PolicyView {
  let known = policyViews.get(policy);
  if (!known) {
    known = readView(policy);
    policyViews.set(policy, known);
  }
  return known;
}

function readView(policy: GlobalNetworkPolicy | NetworkPolicy): PolicyView {
  const namespace = policy.kind === 'NetworkPolicy' ? policy.metadata.namespace : undefined;
  const spec = policy.spec;
  const global = policy.kind === 'GlobalNetworkPolicy' ? policy.spec : undefined;
  const selector = namespaced(spec.selector ?? '', namespace);
  const types = inferredTypes(spec);
  return {
    key: namespace === undefined ? policy.metadata.name : `${namespace}/${policy.metadata.name}`,
    tier: spec.tier || DEFAULT_TIER,
    order: spec.order,
    applies: parseSelector(selector),
    selection: JSON.stringify([selector, types, global?.doNotTrack, global?.preDNAT, global?.applyOnForward]),
    types,
    ingress: spec.ingress ?? [],
    egress: spec.egress ?? [],
    ...(namespace !== undefined ? { namespace } : {}),
    hostOnly: global?.doNotTrack === true || global?.preDNAT === true,
    doNotTrack: global?.doNotTrack === true,
    preDNAT: global?.preDNAT === true && global?.doNotTrack !== true,
    applyOnForward: global?.applyOnForward === true,
  };
}

/**
 * Tiers in Calico's order with their policies in order. A policy whose selector does not parse (written
 * by something that did not validate it) is left out; the tier `default` exists even when no resource
 * says so.
 */
export function orderedTiers(tiers: Tier[], policies: (GlobalNetworkPolicy | NetworkPolicy)[], skipped: (key: string, error: Error) => void = () => undefined): TierView[] {
  const views = new Map<string, TierView>();
  for (const tier of tiers) views.set(tier.metadata.name, { name: tier.metadata.name, order: tier.spec.order ?? DEFAULT_TIER_ORDER, defaultAction: tier.spec.defaultAction === 'Pass' ? 'Pass' : 'Deny', policies: [] });
  if (!views.has(DEFAULT_TIER)) views.set(DEFAULT_TIER, { name: DEFAULT_TIER, order: DEFAULT_TIER_ORDER, defaultAction: 'Deny', policies: [] });
  for (const policy of policies) {
    let v: PolicyView;
    try {
      v = view(policy);
    } catch (error) {
      skipped(policy.metadata.name, error as Error);
      continue;
    }
    // A policy of a tier that does not exist applies nowhere, as in Felix (which waits for the tier).
    views.get(v.tier)?.policies.push(v);
  }
  const ordered = [...views.values()].sort(byOrderThenName((t) => t.order, (t) => t.name));
  for (const tier of ordered) tier.policies.sort(byOrderThenName((p) => p.order, (p) => p.key));
  return ordered;
}

/** The tiers, each with the policies that apply to an endpoint of these labels in this direction. */
export function applicableTiers(tiers: TierView[], labels: Record<string, string>, type: PolicyType): TierView[] {
  const result: TierView[] = [];
  for (const tier of tiers) {
    const policies = tier.policies.filter((p) => !p.hostOnly && p.types.includes(type) && p.applies(labels));
    if (policies.length > 0) result.push({ ...tier, policies });
  }
  return result;
}

/**
 * Which policies a host endpoint's chains of one kind run: `normal` (filter, traffic to and from the
 * host itself), `forward` (filter, forwarded traffic: applyOnForward policies), `untracked` (raw:
 * doNotTrack policies) and `preDNAT` (mangle, ingress only). Untracked and preDNAT tiers end in Pass,
 * as Felix forces them: their verdicts are only what their rules say.
 */
export type HostPolicyKind = 'normal' | 'forward' | 'untracked' | 'preDNAT';

export function hostTiers(tiers: TierView[], labels: Record<string, string>, type: PolicyType, kind: HostPolicyKind): TierView[] {
  const wanted = (p: PolicyView): boolean => {
    switch (kind) {
      case 'normal':
        return !p.hostOnly;
      case 'forward':
        return !p.hostOnly && p.applyOnForward;
      case 'untracked':
        return p.doNotTrack;
      case 'preDNAT':
        return p.preDNAT && type === 'Ingress';
    }
  };
  const result: TierView[] = [];
  for (const tier of tiers) {
    // A NetworkPolicy never selects a host endpoint: its selector holds the namespace, which host endpoints lack.
    const policies = tier.policies.filter((p) => wanted(p) && p.types.includes(type) && p.applies(labels));
    if (policies.length > 0) result.push({ ...tier, policies, ...(kind === 'untracked' || kind === 'preDNAT' ? { defaultAction: 'Pass' as const } : {}) });
  }
  return result;
}
