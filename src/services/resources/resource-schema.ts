import { InvalidRequestError } from '../../domain/errors.js';
import { API_VERSION, kindInfo, Resource } from '../../domain/resources.js';

/**
 * The fields each kind takes, for reading resources users write (calicoctl create/apply -f): as
 * Calico decodes strictly, an unknown field or a value of the wrong type is refused, naming it, in
 * Calico's words. What the values mean is checked afterwards (resource-validation.ts).
 */

type Field =
  | { type: 'string' | 'bool' | 'map' | 'any' }
  | { type: 'number'; goType?: string }
  | { type: 'object'; goType: string; fields: Record<string, Field> }
  | { type: 'array'; of: Field };

const str: Field = { type: 'string' };
const bool: Field = { type: 'bool' };
const num: Field = { type: 'number' };
/** Calico's `*float64` (policy and tier order). */
const float: Field = { type: 'number', goType: 'float64' };
const map: Field = { type: 'map' };
const object = (goType: string, fields: Record<string, Field>): Field => ({ type: 'object', goType, fields });
const array = (of: Field): Field => ({ type: 'array', of });

const ports = array({ type: 'any' });
const entity = object('EntityRule', {
  nets: array(str),
  notNets: array(str),
  selector: str,
  notSelector: str,
  ports,
  notPorts: ports,
  namespaceSelector: str,
});
const icmp = object('ICMPFields', { type: num, code: num });
const rule = object('Rule', {
  action: str,
  ipVersion: num,
  protocol: { type: 'any' },
  notProtocol: { type: 'any' },
  icmp,
  notICMP: icmp,
  source: entity,
  destination: entity,
  metadata: object('RuleMetadata', { annotations: map }),
});

const failsafe = object('ProtoPort', { protocol: str, port: num, net: str });

const SPECS: Record<string, Field> = {
  IPPool: object('IPPoolSpec', {
    cidr: str,
    vxlanMode: str,
    ipipMode: str,
    natOutgoing: bool,
    disabled: bool,
    disableBGPExport: bool,
    blockSize: num,
    nodeSelector: str,
  }),
  Node: object('NodeSpec', {
    bgp: object('NodeBGPSpec', { asNumber: { type: 'any' }, ipv4Address: str, ipv6Address: str, ipv4IPIPTunnelAddr: str, routeReflectorClusterID: str }),
    ipv4VXLANTunnelAddr: str,
    vxlanTunnelMACAddr: str,
    orchRefs: array(object('OrchRef', { nodeName: str, orchestrator: str })),
  }),
  BGPConfiguration: object('BGPConfigurationSpec', { logSeverityScreen: str, nodeToNodeMeshEnabled: bool, asNumber: { type: 'any' } }),
  BGPPeer: object('BGPPeerSpec', { node: str, nodeSelector: str, peerIP: str, asNumber: { type: 'any' }, peerSelector: str, keepOriginalNextHop: bool }),
  Profile: object('ProfileSpec', { ingress: array(rule), egress: array(rule), labelsToApply: map }),
  GlobalNetworkPolicy: object('GlobalNetworkPolicySpec', {
    tier: str,
    order: float,
    selector: str,
    namespaceSelector: str,
    types: array(str),
    ingress: array(rule),
    egress: array(rule),
    doNotTrack: bool,
    preDNAT: bool,
    applyOnForward: bool,
  }),
  NetworkPolicy: object('NetworkPolicySpec', { tier: str, order: float, selector: str, types: array(str), ingress: array(rule), egress: array(rule) }),
  Tier: object('TierSpec', { order: float, defaultAction: str }),
  GlobalNetworkSet: object('GlobalNetworkSetSpec', { nets: array(str) }),
  NetworkSet: object('NetworkSetSpec', { nets: array(str) }),
  HostEndpoint: object('HostEndpointSpec', {
    node: str,
    interfaceName: str,
    expectedIPs: array(str),
    profiles: array(str),
    ports: array(object('EndpointPort', { name: str, protocol: { type: 'any' }, port: num })),
  }),
  FelixConfiguration: object('FelixConfigurationSpec', {
    logSeverityScreen: str,
    defaultEndpointToHostAction: str,
    failsafeInboundHostPorts: array(failsafe),
    failsafeOutboundHostPorts: array(failsafe),
    vxlanEnabled: bool,
    vxlanVNI: num,
    vxlanPort: num,
    vxlanMTU: num,
    vxlanMTUV6: num,
    ipipEnabled: bool,
    ipipMTU: num,
    interfacePrefix: str,
    chainInsertMode: str,
    iptablesFilterAllowAction: str,
    iptablesMangleAllowAction: str,
    iptablesFilterDenyAction: str,
    logPrefix: str,
    reportingInterval: str,
  }),
  WorkloadEndpoint: object('WorkloadEndpointSpec', {
    orchestrator: str,
    workload: str,
    node: str,
    endpoint: str,
    interfaceName: str,
    ipNetworks: array(str),
    mac: str,
    profiles: array(str),
    containerID: str,
    pod: str,
    ipNATs: array({ type: 'any' }),
  }),
};

const METADATA = object('ObjectMeta', {
  name: str,
  namespace: str,
  labels: map,
  annotations: map,
  uid: str,
  creationTimestamp: str,
  resourceVersion: str,
});

/** Calico's decoder error: an unknown field is named bare, several in alphabetical order. */
function unknownFields(names: string[]): InvalidRequestError {
  const sorted = [...names].sort();
  const listed = sorted.length > 5 ? `${sorted.slice(0, 4).join(', ')} (+ ${sorted.length - 4} more)` : sorted.join(', ');
  return new InvalidRequestError(
    sorted.length === 1
      ? `error parsing document: field in document is not recognized or is in the wrong location: ${listed}`
      : `error parsing document: fields in document are not recognized or are in the wrong location: ${listed}`,
  );
}

const goTypeName = (value: unknown): string => (Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value === 'object' ? 'object' : typeof value);

function typeError(value: unknown, where: string, expected: string): InvalidRequestError {
  const shown = typeof value === 'string' ? `string '${value}'` : `${goTypeName(value)} ${JSON.stringify(value)}`;
  return new InvalidRequestError(`error parsing document: cannot parse ${shown} into field ${where} of type ${expected}`);
}

function check(value: unknown, field: Field, where: string): void {
  if (value === null || value === undefined) return;
  switch (field.type) {
    case 'any':
      return;
    case 'string':
      if (typeof value !== 'string') throw typeError(value, where, 'string');
      return;
    case 'bool':
      if (typeof value !== 'boolean') throw typeError(value, where, 'bool');
      return;
    case 'number':
      if (typeof value !== 'number') throw typeError(value, where, field.goType ?? 'int');
      return;
    case 'map':
      if (typeof value !== 'object' || Array.isArray(value)) throw typeError(value, where, 'map[string]string');
      for (const [key, entry] of Object.entries(value)) if (typeof entry !== 'string') throw typeError(entry, `${where}[${key}]`, 'string');
      return;
    case 'array':
      if (!Array.isArray(value)) throw typeError(value, where, 'list');
      value.forEach((item, i) => check(item, field.of, `${where}[${i}]`));
      return;
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) throw typeError(value, where, field.goType);
      const unknown = Object.keys(value).filter((k) => !(k in field.fields));
      if (unknown.length > 0) throw unknownFields(unknown);
      for (const [key, entry] of Object.entries(value)) check(entry, field.fields[key]!, `${field.goType}.${key}`);
    }
  }
}

/**
 * Reads one document as a resource, strictly: a known kind and apiVersion, known fields only, values
 * of the right types. The result is the document itself, typed.
 */
export function decodeResource(document: unknown): Resource {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new InvalidRequestError(`error parsing document: cannot parse object '${JSON.stringify(document)}' into a resource`);
  }
  const doc = document as Record<string, unknown>;
  const kind = typeof doc.kind === 'string' ? doc.kind : '';
  if (!kind) throw new InvalidRequestError(`error parsing document: Object 'Kind' is missing in '${JSON.stringify(doc)}'`);
  if (!kindInfo(kind) || !SPECS[kind] || doc.apiVersion !== API_VERSION) {
    throw new InvalidRequestError(`Unknown resource type (${kind}) and/or version (${String(doc.apiVersion ?? '')})`);
  }
  const unknown = Object.keys(doc).filter((k) => !['kind', 'apiVersion', 'metadata', 'spec', 'status'].includes(k));
  if (unknown.length > 0) throw unknownFields(unknown);
  check(doc.metadata ?? {}, METADATA, 'ObjectMeta');
  check(doc.spec ?? {}, SPECS[kind]!, `${kind}Spec`);
  return { ...(doc as unknown as Resource), metadata: { ...((doc.metadata as Resource['metadata']) ?? { name: '' }) }, spec: (doc.spec as object) ?? {} };
}
