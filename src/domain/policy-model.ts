import type { Rule } from './endpoint-model.js';
import type { ResourceMetadata } from './resources.js';

/**
 * Calico v3's policy resources as stored in etcd (`/calico/resources/v3/projectcalico.org/<plural>/…`,
 * namespaced kinds under `<plural>/<namespace>/<name>`), with Calico's field names.
 */

export type PolicyType = 'Ingress' | 'Egress';

export interface PolicySpec {
  /** Default `default`. */
  tier?: string;
  /** Lower first; none = after every ordered policy of the tier. */
  order?: number;
  /** Endpoints the policy applies to; empty = all. */
  selector?: string;
  /** Inferred when empty, as Calico infers it (see inferredTypes). */
  types?: PolicyType[];
  ingress?: Rule[];
  egress?: Rule[];
}

export interface GlobalNetworkPolicySpec extends PolicySpec {
  namespaceSelector?: string;
  doNotTrack?: boolean;
  preDNAT?: boolean;
  applyOnForward?: boolean;
}

type Meta = ResourceMetadata;

export interface GlobalNetworkPolicy {
  kind: 'GlobalNetworkPolicy';
  apiVersion: 'projectcalico.org/v3';
  metadata: Meta;
  spec: GlobalNetworkPolicySpec;
}

export interface NetworkPolicy {
  kind: 'NetworkPolicy';
  apiVersion: 'projectcalico.org/v3';
  metadata: Meta & { namespace: string };
  spec: PolicySpec;
}

export interface Tier {
  kind: 'Tier';
  apiVersion: 'projectcalico.org/v3';
  metadata: Meta;
  /** Calico's client fills order 1,000,000 and defaultAction Deny when absent. */
  spec: { order?: number; defaultAction?: 'Deny' | 'Pass' };
}

export interface NetworkSet {
  kind: 'GlobalNetworkSet' | 'NetworkSet';
  apiVersion: 'projectcalico.org/v3';
  metadata: Meta;
  spec: { nets?: string[] };
}

export interface EndpointPort {
  name: string;
  protocol?: string;
  port: number;
}

export interface HostEndpoint {
  kind: 'HostEndpoint';
  apiVersion: 'projectcalico.org/v3';
  metadata: Meta;
  spec: { node: string; interfaceName?: string; expectedIPs?: string[]; profiles?: string[]; ports?: EndpointPort[] };
}

/** Felix's failsafe port entry: `{protocol, port, net?}`. */
export interface FailsafePort {
  protocol?: string;
  port: number;
  net?: string;
}

export const DEFAULT_TIER = 'default';
export const DEFAULT_TIER_ORDER = 1_000_000;

/** Both of Felix's default lists end in these: BGP, etcd, Typha, the Kubernetes API and friends. */
const FAILSAFE_BOTH_WAYS: FailsafePort[] = [179, 2379, 2380, 5473, 6443, 6666, 6667].map((port) => ({ protocol: 'tcp', port }));

/** Felix's defaults: a wrong policy cannot cut a host off its SSH, DHCP, BGP or etcd. */
export const DEFAULT_FAILSAFE_INBOUND: FailsafePort[] = [{ protocol: 'tcp', port: 22 }, { protocol: 'udp', port: 68 }, ...FAILSAFE_BOTH_WAYS];
export const DEFAULT_FAILSAFE_OUTBOUND: FailsafePort[] = [{ protocol: 'udp', port: 53 }, { protocol: 'udp', port: 67 }, ...FAILSAFE_BOTH_WAYS];

/** Calico's inference when `types` is empty: egress rules alone make it Egress; both, both; else Ingress. */
export function inferredTypes(spec: PolicySpec): PolicyType[] {
  if (spec.types?.length) return spec.types;
  const ingress = (spec.ingress?.length ?? 0) > 0;
  const egress = (spec.egress?.length ?? 0) > 0;
  if (egress && !ingress) return ['Egress'];
  if (egress && ingress) return ['Ingress', 'Egress'];
  return ['Ingress'];
}
