import { parseSelector, usesGlobal } from '../../calc/selector.js';
import { parsePeerAddress } from '../../calc/bgp-peerings.js';
import { parseCidr, parseIp } from '../../domain/cidr.js';
import type { Rule, RuleEntity } from '../../domain/endpoint-model.js';
import { InvalidRequestError } from '../../domain/errors.js';
import { MAX_AS_NUMBER, parseAsNumber, Resource } from '../../domain/resources.js';
import type { IpPool } from '../../domain/ipam-model.js';
import { DEFAULT_TIER, DEFAULT_TIER_ORDER, type FailsafePort, type GlobalNetworkPolicySpec, type HostEndpoint, type Tier } from '../../domain/policy-model.js';
import { encapsulationProblem } from '../ipam/pool-view.js';

/**
 * What Calico's validator checks before a resource is written, with its message form
 * (`error with field PeerIP = 'x' (reason)`), the reason said so an operator can act on it. Returns
 * the resource with values normalised (an asdot AS number becomes a number).
 */

class FieldErrors {
  readonly errors: string[] = [];
  add(field: string, value: unknown, reason: string): void {
    const shown = value === undefined ? field : `${field} = '${typeof value === 'string' ? value : JSON.stringify(value)}'`;
    this.errors.push(`${shown} (${reason})`);
  }
  throwIfAny(): void {
    if (this.errors.length === 1) throw new InvalidRequestError(`error with field ${this.errors[0]}`);
    if (this.errors.length > 1) throw new InvalidRequestError(`error with the following fields:\n${this.errors.map((e) => `-  ${e}`).join('\n')}`);
  }
}

/** Calico's resource name: lower-case DNS labels separated by dots. */
const DNS_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Node and profile names as hosts and Docker networks have them. */
const LOOSE_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LOG_SEVERITIES = ['Debug', 'Info', 'Warning', 'Error', 'Fatal', 'None'];
const ENCAP_MODES = ['Never', 'Always', 'CrossSubnet'];
const ACTIONS = ['Allow', 'Deny', 'Log', 'Pass'];

function asNumberField(errors: FieldErrors, field: string, value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  try {
    return parseAsNumber(value);
  } catch {
    errors.add(field, value, `an AS number is from 1 to ${MAX_AS_NUMBER}, or asdot such as 1.10`);
    return undefined;
  }
}

function selectorField(errors: FieldErrors, field: string, value: string | undefined): void {
  if (value === undefined || value.trim() === '') return;
  try {
    parseSelector(value);
  } catch (error) {
    errors.add(field, value, (error as Error).message);
  }
}

function cidrField(errors: FieldErrors, field: string, value: string | undefined, family: 4 | 6): void {
  if (value === undefined) return;
  try {
    if (parseCidr(value).family !== family) throw new Error();
  } catch {
    errors.add(field, value, `expected an IPv${family} address with its prefix length, e.g. ${family === 4 ? '10.0.0.11/24' : 'fd00::11/64'}`);
  }
}

function ipField(errors: FieldErrors, field: string, value: string | undefined, family: 4 | 6): void {
  if (value === undefined) return;
  try {
    if (parseIp(value).family !== family) throw new Error();
  } catch {
    errors.add(field, value, `expected an IPv${family} address`);
  }
}

function nameField(errors: FieldErrors, resource: Resource, pattern: RegExp): void {
  const name = resource.metadata.name;
  if (!name) errors.add('Metadata.Name', undefined, 'a name is required');
  else if (!pattern.test(name) || name.length > 253) errors.add('Metadata.Name', name, pattern === DNS_NAME ? 'use lower-case letters, digits, - and .' : 'use letters, digits, -, _ and .');
}

function validatePool(errors: FieldErrors, resource: Resource): void {
  const spec = resource.spec as Record<string, unknown>;
  nameField(errors, resource, DNS_NAME);
  let family: 4 | 6 | undefined;
  try {
    family = parseCidr(String(spec.cidr ?? ''), { strict: true }).family;
  } catch (error) {
    errors.add('CIDR', spec.cidr ?? '', (error as Error).message.replace(/^invalid CIDR "[^"]*"(: )?/, '') || 'expected a network such as 10.1.0.0/16');
  }
  for (const mode of ['vxlanMode', 'ipipMode']) {
    if (spec[mode] !== undefined && !ENCAP_MODES.includes(String(spec[mode]))) errors.add(mode === 'vxlanMode' ? 'VXLANMode' : 'IPIPMode', spec[mode], 'expected Never, Always or CrossSubnet');
  }
  const problem = family ? encapsulationProblem(spec as unknown as IpPool['spec'], family) : undefined;
  if (problem) errors.add('IPPool.Spec', undefined, problem);
  selectorField(errors, 'NodeSelector', spec.nodeSelector as string | undefined);
}

function validateNode(errors: FieldErrors, resource: Resource): Resource {
  nameField(errors, resource, LOOSE_NAME);
  const spec = resource.spec as { bgp?: Record<string, unknown>; ipv4VXLANTunnelAddr?: string; vxlanTunnelMACAddr?: string };
  const bgp = spec.bgp;
  if (bgp) {
    cidrField(errors, 'IPv4Address', bgp.ipv4Address as string | undefined, 4);
    cidrField(errors, 'IPv6Address', bgp.ipv6Address as string | undefined, 6);
    ipField(errors, 'IPv4IPIPTunnelAddr', bgp.ipv4IPIPTunnelAddr as string | undefined, 4);
    ipField(errors, 'RouteReflectorClusterID', bgp.routeReflectorClusterID as string | undefined, 4);
    const asNumber = asNumberField(errors, 'ASNumber', bgp.asNumber);
    if (asNumber !== undefined) bgp.asNumber = asNumber;
  }
  ipField(errors, 'IPv4VXLANTunnelAddr', spec.ipv4VXLANTunnelAddr, 4);
  if (spec.vxlanTunnelMACAddr !== undefined && !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(spec.vxlanTunnelMACAddr)) errors.add('VXLANTunnelMACAddr', spec.vxlanTunnelMACAddr, 'expected a MAC address');
  return resource;
}

function validateBgpConfiguration(errors: FieldErrors, resource: Resource): Resource {
  const name = resource.metadata.name;
  if (name !== 'default' && !/^node\.[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name)) errors.add('Metadata.Name', name, "a BGPConfiguration is named 'default' or 'node.<node name>'");
  const spec = resource.spec as Record<string, unknown>;
  if (spec.logSeverityScreen !== undefined && !LOG_SEVERITIES.map((s) => s.toLowerCase()).includes(String(spec.logSeverityScreen).toLowerCase())) {
    errors.add('LogSeverityScreen', spec.logSeverityScreen, `expected one of ${LOG_SEVERITIES.join(', ')}`);
  }
  const asNumber = asNumberField(errors, 'ASNumber', spec.asNumber);
  if (asNumber !== undefined) spec.asNumber = asNumber;
  return resource;
}

function validateBgpPeer(errors: FieldErrors, resource: Resource): Resource {
  nameField(errors, resource, DNS_NAME);
  const spec = resource.spec as Record<string, unknown>;
  if (spec.node !== undefined && !LOOSE_NAME.test(String(spec.node))) errors.add('Node', spec.node, 'not a valid node name');
  if (spec.node && spec.nodeSelector) errors.add('Node', spec.node, 'Node field must be empty when NodeSelector is specified');
  selectorField(errors, 'NodeSelector', spec.nodeSelector as string | undefined);
  selectorField(errors, 'PeerSelector', spec.peerSelector as string | undefined);
  if (spec.peerIP !== undefined) {
    try {
      parsePeerAddress(String(spec.peerIP));
    } catch {
      errors.add('PeerIP', spec.peerIP, 'expected an IP address, or IP:port ([IPv6]:port)');
    }
  }
  if (spec.peerIP && spec.peerSelector) errors.add('PeerIP', spec.peerIP, 'PeerIP field must be empty when PeerSelector is specified');
  if (spec.asNumber !== undefined && spec.peerSelector) errors.add('ASNumber', spec.asNumber, 'ASNumber field must be empty when PeerSelector is specified');
  if (!spec.peerIP && !spec.peerSelector) errors.add('PeerIP', undefined, 'a BGPPeer needs a peerIP (with asNumber) or a peerSelector');
  if (spec.peerIP && !spec.peerSelector && spec.asNumber === undefined) errors.add('ASNumber', undefined, 'a peer given by peerIP needs its asNumber');
  const asNumber = asNumberField(errors, 'ASNumber', spec.asNumber);
  if (asNumber !== undefined) spec.asNumber = asNumber;
  return resource;
}

/** Protocols by name: Calico's exact names, and the lower-case ones this project has always written. */
const PROTOCOL_NAMES = ['TCP', 'UDP', 'ICMP', 'ICMPv6', 'SCTP', 'UDPLite'];
const PORT_PROTOCOLS = new Set(['tcp', 'udp', 'sctp', '6', '17', '132']);
const ICMP_PROTOCOLS = new Set(['icmp', 'icmpv6', '1', '58']);
/** Kubernetes IsValidPortName: ≤15 chars, lower-case letters, digits and `-`, a letter, no `--`, no `-` at either end. */
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** `global()` anywhere in a selector that parses (one that does not is refused on its own account). */
const mentionsGlobal = (selector: string): boolean => {
  try {
    return usesGlobal(selector);
  } catch {
    return false;
  }
};

function protocolField(errors: FieldErrors, field: string, value: unknown): string | number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string' && /^\d+$/.test(value)) value = Number(value);
  if (typeof value === 'number') {
    if (!(Number.isInteger(value) && value >= 1 && value <= 255)) errors.add(field, value, 'a protocol number is 1-255');
    return value;
  }
  if (typeof value !== 'string' || !(PROTOCOL_NAMES.includes(value) || PROTOCOL_NAMES.map((p) => p.toLowerCase()).includes(value))) {
    errors.add(field, value, `expected ${PROTOCOL_NAMES.join(', ')} or a number 1-255`);
    return undefined;
  }
  return value;
}

function portsField(errors: FieldErrors, field: string, ports: unknown[] | undefined): void {
  for (const port of ports ?? []) {
    if (typeof port === 'number') {
      if (!Number.isInteger(port) || port < 1 || port > 65535) errors.add(field, port, 'a port is 1-65535');
      continue;
    }
    if (typeof port !== 'string') {
      errors.add(field, port, 'a port is a number, a range "a:b" or a port name');
      continue;
    }
    const range = /^(\d+)(?::(\d+))?$/.exec(port);
    if (range) {
      const [low, high] = [Number(range[1]), Number(range[2] ?? range[1])];
      if (low < 1 || high > 65535 || low > high) errors.add(field, port, 'a port is 1-65535, a range a:b with a <= b');
    } else if (!(port.length <= 15 && PORT_NAME.test(port) && /[a-z]/.test(port) && !port.includes('--'))) {
      errors.add(field, port, 'a port name has at most 15 lower-case letters, digits and -, with at least one letter');
    }
  }
}

function familyOf(net: string): 4 | 6 | undefined {
  try {
    return net.includes('/') ? parseCidr(net).family : parseIp(net).family;
  } catch {
    return undefined;
  }
}

function validateEntity(errors: FieldErrors, where: string, entity: (RuleEntity & { namespaceSelector?: string }) | undefined, families: Set<4 | 6>): boolean {
  if (!entity) return false;
  for (const [key, label] of [['selector', 'Selector'], ['notSelector', 'NotSelector']] as const) {
    const value = entity[key];
    if (value !== undefined && mentionsGlobal(value)) errors.add(`${where}.${label}`, value, 'global() can only be used in an EntityRule namespaceSelector');
    else selectorField(errors, `${where}.${label}`, value);
  }
  const ns = entity.namespaceSelector;
  if (ns !== undefined && mentionsGlobal(ns)) {
    if (ns.trim() !== 'global()') errors.add(`${where}.NamespaceSelector`, ns, 'global() cannot be combined with other selectors');
  } else selectorField(errors, `${where}.NamespaceSelector`, ns);
  for (const [key, label] of [['nets', 'Nets'], ['notNets', 'NotNets']] as const) {
    for (const net of entity[key] ?? []) {
      const family = familyOf(net);
      if (family === undefined) errors.add(`${where}.${label}`, net, 'expected a CIDR such as 10.0.0.0/8, or an IP address');
      else families.add(family);
    }
  }
  portsField(errors, `${where}.Ports`, entity.ports);
  portsField(errors, `${where}.NotPorts`, entity.notPorts);
  return (entity.ports?.length ?? 0) + (entity.notPorts?.length ?? 0) > 0;
}

function icmpField(errors: FieldErrors, field: string, icmp: { type?: number; code?: number } | undefined): void {
  if (!icmp) return;
  if (icmp.type !== undefined && !(Number.isInteger(icmp.type) && icmp.type >= 0 && icmp.type <= 254)) errors.add(`${field}.Type`, icmp.type, 'an ICMP type is 0-254');
  if (icmp.code !== undefined && !(Number.isInteger(icmp.code) && icmp.code >= 0 && icmp.code <= 255)) errors.add(`${field}.Code`, icmp.code, 'an ICMP code is 0-255');
  if (icmp.code !== undefined && icmp.type === undefined) errors.add(`${field}.Code`, icmp.code, 'ICMP code specified without an ICMP type');
}

/** Calico's validateRule: action, protocol, ICMP, IP version, CIDR families, selectors and ports. */
function validateRules(errors: FieldErrors, direction: 'Ingress' | 'Egress', rules: Rule[] | undefined): void {
  (rules ?? []).forEach((rule, i) => {
    const where = `${direction}[${i}]`;
    if (!ACTIONS.includes(rule.action)) errors.add(`${where}.Action`, rule.action ?? '', `expected ${ACTIONS.join(', ')}`);
    const protocol = protocolField(errors, `${where}.Protocol`, rule.protocol);
    if (protocol !== undefined) rule.protocol = protocol;
    const notProtocol = protocolField(errors, `${where}.NotProtocol`, rule.notProtocol);
    if (notProtocol !== undefined) rule.notProtocol = notProtocol;
    const proto = protocol === undefined ? undefined : String(protocol).toLowerCase();
    if (rule.ipVersion !== undefined && rule.ipVersion !== 4 && rule.ipVersion !== 6) errors.add(`${where}.IPVersion`, rule.ipVersion, 'expected 4 or 6');
    if ((rule.icmp || rule.notICMP) && !(proto && ICMP_PROTOCOLS.has(proto))) errors.add(`${where}.ICMP`, undefined, 'rules that specify ICMP fields must set protocol to ICMP');
    icmpField(errors, `${where}.ICMP`, rule.icmp);
    icmpField(errors, `${where}.NotICMP`, rule.notICMP);
    if ((proto === 'icmp' || proto === '1') && rule.ipVersion === 6) errors.add(`${where}.IPVersion`, rule.ipVersion, 'protocol ICMP needs ipVersion 4');
    if ((proto === 'icmpv6' || proto === '58') && rule.ipVersion === 4) errors.add(`${where}.IPVersion`, rule.ipVersion, 'protocol ICMPv6 needs ipVersion 6');
    const families = new Set<4 | 6>();
    const sourcePorts = validateEntity(errors, `${where}.Source`, rule.source, families);
    const destinationPorts = validateEntity(errors, `${where}.Destination`, rule.destination, families);
    if ((sourcePorts || destinationPorts) && !(proto && PORT_PROTOCOLS.has(proto))) errors.add(`${where}.Protocol`, rule.protocol ?? '', 'rules that specify ports must set protocol to TCP or UDP or SCTP');
    if (families.size > 1) errors.add(`${where}`, undefined, 'rule contains both IPv4 and IPv6 CIDRs');
    else if (rule.ipVersion && families.size === 1 && !families.has(rule.ipVersion)) errors.add(`${where}.IPVersion`, rule.ipVersion, `rule contains an IPv${[...families][0]} CIDR`);
  });
}

function validateProfile(errors: FieldErrors, resource: Resource): Resource {
  nameField(errors, resource, LOOSE_NAME);
  const spec = resource.spec as { ingress?: Rule[]; egress?: Rule[]; labelsToApply?: Record<string, string> };
  validateRules(errors, 'Ingress', spec.ingress);
  validateRules(errors, 'Egress', spec.egress);
  for (const key of Object.keys(spec.labelsToApply ?? {})) if (!/^[A-Za-z0-9_./-]+$/.test(key)) errors.add('LabelsToApply', key, 'a label key has letters, digits, _ . / and -');
  spec.ingress ??= [];
  spec.egress ??= [];
  return resource;
}

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const POLICY_TYPES = ['Ingress', 'Egress'];
const TIER_LABEL = 'projectcalico.org/tier';
const NAMESPACE_LABEL = 'projectcalico.org/namespace';

/** Calico v3.30's tiered names: in tier `default` a plain name (or `default.x`); in another tier `<tier>.<x>`; at most one dot. */
function policyName(errors: FieldErrors, resource: Resource, tier: string): void {
  const name = resource.metadata.name;
  if (!name) return errors.add('Metadata.Name', undefined, 'a name is required');
  const parts = name.split('.');
  const known = resource.kind === 'NetworkPolicy' && /^(knp|ossg)\.default\./.test(name);
  if (!known && (name.length > 253 || parts.length > 2 || !parts.every((p) => LABEL.test(p)))) {
    return errors.add('Metadata.Name', name, 'a policy name is a lower-case DNS label, or <tier>.<label>');
  }
  if (tier !== DEFAULT_TIER && (parts.length !== 2 || parts[0] !== tier)) errors.add('Metadata.Name', name, `a policy in tier ${tier} must be named ${tier}.<name>`);
  else if (tier === DEFAULT_TIER && parts.length === 2 && parts[0] !== DEFAULT_TIER && !known) errors.add('Metadata.Name', name, `a policy named ${parts[0]}.<name> must be in tier ${parts[0]} (spec.tier)`);
}

function validatePolicy(errors: FieldErrors, resource: Resource): void {
  const spec = resource.spec as GlobalNetworkPolicySpec;
  const tier = spec.tier || DEFAULT_TIER;
  if (spec.tier !== undefined && !LABEL.test(spec.tier)) errors.add('Spec.Tier', spec.tier, 'a tier name is a lower-case DNS label');
  policyName(errors, resource, tier);
  for (const [key, label] of [['selector', 'Selector'], ['namespaceSelector', 'NamespaceSelector']] as const) {
    const value = spec[key];
    if (value !== undefined && mentionsGlobal(value)) errors.add(label, value, 'global() can only be used in an EntityRule namespaceSelector');
    else selectorField(errors, label, value);
  }
  const types = spec.types ?? [];
  for (const type of types) if (!POLICY_TYPES.includes(type)) errors.add('Types', type, 'expected Ingress or Egress');
  if (new Set(types).size !== types.length) errors.add('Types', types, 'duplicate policy types');
  validateRules(errors, 'Ingress', spec.ingress);
  validateRules(errors, 'Egress', spec.egress);
  if (resource.kind === 'GlobalNetworkPolicy') {
    if (spec.preDNAT && spec.doNotTrack) errors.add('PreDNAT', undefined, 'PreDNAT and DoNotTrack cannot both be true, for a given PolicySpec');
    if (spec.preDNAT && (spec.egress?.length ?? 0) > 0) errors.add('PreDNAT', undefined, 'PreDNAT PolicySpec cannot have any EgressRules');
    if (spec.preDNAT && types.includes('Egress')) errors.add('PreDNAT', undefined, 'PreDNAT PolicySpec types field cannot include \'egress\'');
    if ((spec.preDNAT || spec.doNotTrack) && !spec.applyOnForward) errors.add('ApplyOnForward', false, 'ApplyOnForward must be true if either PreDNAT or DoNotTrack is true, for a given PolicySpec');
  }
  resource.metadata.labels = { ...(resource.metadata.labels ?? {}), [TIER_LABEL]: tier };
  spec.tier = tier;
}

function validateTier(errors: FieldErrors, resource: Resource): void {
  const name = resource.metadata.name;
  if (!name) errors.add('Metadata.Name', undefined, 'a name is required');
  else if (!LABEL.test(name) || name.length > 63) errors.add('Metadata.Name', name, 'a tier name is a lower-case DNS label (letters, digits and -, no dots)');
  const spec = resource.spec as Tier['spec'];
  if (spec.defaultAction !== undefined && spec.defaultAction !== 'Deny' && spec.defaultAction !== 'Pass') errors.add('DefaultAction', spec.defaultAction, 'expected Deny or Pass');
  if (spec.order !== undefined && !Number.isFinite(spec.order)) errors.add('Order', spec.order, 'expected a number');
  if (name === DEFAULT_TIER && spec.order !== undefined && spec.order !== DEFAULT_TIER_ORDER) errors.add('Order', spec.order, `the default tier's order is ${DEFAULT_TIER_ORDER}`);
  // Calico's client fills both on create and update.
  spec.order ??= DEFAULT_TIER_ORDER;
  spec.defaultAction ??= 'Deny';
}

function validateNetworkSet(errors: FieldErrors, resource: Resource): void {
  nameField(errors, resource, DNS_NAME);
  if (resource.metadata.labels && NAMESPACE_LABEL in resource.metadata.labels) errors.add('Metadata.Labels', NAMESPACE_LABEL, 'this label is reserved: Calico sets it');
  for (const net of (resource.spec as { nets?: string[] }).nets ?? []) if (familyOf(net) === undefined) errors.add('Nets', net, 'expected a CIDR such as 10.0.0.0/8, or an IP address');
}

function validateHostEndpoint(errors: FieldErrors, resource: Resource): void {
  nameField(errors, resource, DNS_NAME);
  const spec = resource.spec as HostEndpoint['spec'];
  if (!spec.node) errors.add('Node', undefined, 'a HostEndpoint needs its node');
  else if (!LOOSE_NAME.test(spec.node)) errors.add('Node', spec.node, 'not a valid node name');
  if (spec.interfaceName !== undefined && spec.interfaceName !== '*' && !/^[a-zA-Z0-9_.-]{1,15}$/.test(spec.interfaceName)) {
    errors.add('InterfaceName', spec.interfaceName, "expected * or an interface name of at most 15 letters, digits, '_', '.' and '-'");
  }
  for (const ip of spec.expectedIPs ?? []) {
    try {
      parseIp(ip);
    } catch {
      errors.add('ExpectedIPs', ip, 'expected an IP address');
    }
  }
  if (!spec.interfaceName && !(spec.expectedIPs?.length ?? 0)) errors.add('InterfaceName', undefined, 'at least one of interfaceName or expectedIPs must be specified');
  for (const profile of spec.profiles ?? []) if (!LOOSE_NAME.test(profile)) errors.add('Profiles', profile, 'not a valid profile name');
  (spec.ports ?? []).forEach((port, i) => {
    const where = `Ports[${i}]`;
    if (!(port.name && port.name.length <= 15 && PORT_NAME.test(port.name) && /[a-z]/.test(port.name) && !port.name.includes('--'))) errors.add(`${where}.Name`, port.name ?? '', 'a port name has at most 15 lower-case letters, digits and -, with at least one letter');
    const protocol = protocolField(errors, `${where}.Protocol`, port.protocol ?? 'TCP');
    if (protocol !== undefined && !PORT_PROTOCOLS.has(String(protocol).toLowerCase())) errors.add(`${where}.Protocol`, protocol, 'the protocol of a named port must support ports: TCP, UDP or SCTP');
    if (!(Number.isInteger(port.port) && port.port >= 1 && port.port <= 65535)) errors.add(`${where}.Port`, port.port, 'a port is 1-65535');
  });
}

const ENDPOINT_TO_HOST_ACTIONS = ['Drop', 'Accept', 'Return'];

function validateFelixConfiguration(errors: FieldErrors, resource: Resource): void {
  const name = resource.metadata.name;
  if (name !== 'default' && !/^node\.[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name)) errors.add('Metadata.Name', name, "a FelixConfiguration is named 'default' or 'node.<node name>'");
  const spec = resource.spec as { defaultEndpointToHostAction?: string; failsafeInboundHostPorts?: FailsafePort[]; failsafeOutboundHostPorts?: FailsafePort[]; vxlanVNI?: number; vxlanPort?: number; vxlanMTU?: number };
  if (spec.defaultEndpointToHostAction !== undefined && !ENDPOINT_TO_HOST_ACTIONS.includes(spec.defaultEndpointToHostAction)) {
    errors.add('DefaultEndpointToHostAction', spec.defaultEndpointToHostAction, 'expected Drop, Accept or Return');
  }
  for (const [key, label] of [['failsafeInboundHostPorts', 'FailsafeInboundHostPorts'], ['failsafeOutboundHostPorts', 'FailsafeOutboundHostPorts']] as const) {
    (spec[key] ?? []).forEach((entry, i) => {
      const where = `${label}[${i}]`;
      if (entry.protocol !== undefined && !['tcp', 'udp', 'sctp'].includes(entry.protocol.toLowerCase())) errors.add(`${where}.Protocol`, entry.protocol, 'expected tcp, udp or sctp');
      if (!(Number.isInteger(entry.port) && entry.port >= 1 && entry.port <= 65535)) errors.add(`${where}.Port`, entry.port ?? '', 'a port is 1-65535');
      if (entry.net !== undefined) {
        try {
          parseCidr(entry.net);
        } catch {
          errors.add(`${where}.Net`, entry.net, 'expected a CIDR such as 10.0.0.0/8');
        }
      }
    });
  }
  if (spec.vxlanVNI !== undefined && !(Number.isInteger(spec.vxlanVNI) && spec.vxlanVNI >= 1 && spec.vxlanVNI <= 16777215)) errors.add('VXLANVNI', spec.vxlanVNI, 'a VNI is 1-16777215');
  if (spec.vxlanPort !== undefined && !(Number.isInteger(spec.vxlanPort) && spec.vxlanPort >= 1 && spec.vxlanPort <= 65535)) errors.add('VXLANPort', spec.vxlanPort, 'a port is 1-65535');
  if (spec.vxlanMTU !== undefined && !(Number.isInteger(spec.vxlanMTU) && spec.vxlanMTU >= 0)) errors.add('VXLANMTU', spec.vxlanMTU, 'an MTU is a positive number');
}

/** Checks a resource before it is written; throws Calico's `error with field …` naming every bad field. */
export function validateResource(resource: Resource): Resource {
  const errors = new FieldErrors();
  const copy = structuredClone(resource);
  for (const [key, value] of Object.entries(copy.metadata.labels ?? {})) {
    if (!/^([A-Za-z0-9][-A-Za-z0-9_.]*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(key) || value.length > 63) errors.add('Metadata.Labels', `${key}=${value}`, 'not a valid label');
  }
  switch (copy.kind) {
    case 'IPPool':
      validatePool(errors, copy);
      break;
    case 'Node':
      validateNode(errors, copy);
      break;
    case 'BGPConfiguration':
      validateBgpConfiguration(errors, copy);
      break;
    case 'BGPPeer':
      validateBgpPeer(errors, copy);
      break;
    case 'Profile':
      validateProfile(errors, copy);
      break;
    case 'GlobalNetworkPolicy':
    case 'NetworkPolicy':
      validatePolicy(errors, copy);
      break;
    case 'Tier':
      validateTier(errors, copy);
      break;
    case 'GlobalNetworkSet':
    case 'NetworkSet':
      validateNetworkSet(errors, copy);
      break;
    case 'HostEndpoint':
      validateHostEndpoint(errors, copy);
      break;
    case 'FelixConfiguration':
      validateFelixConfiguration(errors, copy);
      break;
  }
  errors.throwIfAny();
  return copy;
}
