import { parseSelector } from '../../calc/selector.js';
import { parsePeerAddress } from '../../calc/bgp-peerings.js';
import { parseCidr, parseIp } from '../../domain/cidr.js';
import type { Rule, RuleEntity } from '../../domain/endpoint-model.js';
import { InvalidRequestError } from '../../domain/errors.js';
import { MAX_AS_NUMBER, parseAsNumber, Resource } from '../../domain/resources.js';
import type { IpPool } from '../../domain/ipam-model.js';
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
const PROTOCOLS = ['TCP', 'UDP', 'ICMP', 'ICMPv6', 'SCTP', 'UDPLite', 'tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'udplite'];

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
  if (value === undefined) return;
  try {
    parseSelector(value);
  } catch {
    errors.add(field, value, 'not a valid selector, e.g. has(rack) or rack == "a"');
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

function validateEntity(errors: FieldErrors, where: string, entity: RuleEntity | undefined, protocol: string | undefined): void {
  if (!entity) return;
  selectorField(errors, `${where}.Selector`, entity.selector);
  selectorField(errors, `${where}.NotSelector`, entity.notSelector);
  for (const net of [...(entity.nets ?? []), ...(entity.notNets ?? [])]) {
    try {
      parseCidr(net);
    } catch {
      errors.add(`${where}.Nets`, net, 'expected a CIDR such as 10.0.0.0/8');
    }
  }
  const hasPorts = (entity.ports?.length ?? 0) + (entity.notPorts?.length ?? 0) > 0;
  if (hasPorts && protocol !== 'tcp' && protocol !== 'udp') errors.add(`${where}.Ports`, undefined, 'ports need protocol TCP or UDP');
  for (const port of [...(entity.ports ?? []), ...(entity.notPorts ?? [])]) {
    const parts = String(port).split(/[:-]/).map(Number);
    if (parts.length > 2 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 65535)) errors.add(`${where}.Ports`, port, 'a port is 0-65535, a range a:b');
  }
}

function validateRules(errors: FieldErrors, direction: 'Ingress' | 'Egress', rules: Rule[] | undefined): void {
  (rules ?? []).forEach((rule, i) => {
    const where = `${direction}[${i}]`;
    if (!ACTIONS.includes(rule.action)) errors.add(`${where}.Action`, rule.action, `expected ${ACTIONS.join(', ')}`);
    const protocol = rule.protocol === undefined ? undefined : String(rule.protocol).toLowerCase();
    if (rule.protocol !== undefined && typeof rule.protocol !== 'number' && !PROTOCOLS.includes(String(rule.protocol))) errors.add(`${where}.Protocol`, rule.protocol, 'expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255');
    if (typeof rule.protocol === 'number' && !(Number.isInteger(rule.protocol) && rule.protocol >= 1 && rule.protocol <= 255)) errors.add(`${where}.Protocol`, rule.protocol, 'a protocol number is 1-255');
    validateEntity(errors, `${where}.Source`, rule.source, protocol);
    validateEntity(errors, `${where}.Destination`, rule.destination, protocol);
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
  }
  errors.throwIfAny();
  return copy;
}
