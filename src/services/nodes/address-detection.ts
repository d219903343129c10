import { Cidr, cidrContains, formatIp, IpAddr, IpFamily, parseCidr, parseIp } from '../../domain/cidr.js';
import { InvalidRequestError } from '../../domain/errors.js';
import type { HostInterface } from '../../ports/dataplane.js';

/** calico/node's IP_AUTODETECTION_METHOD values. */
export type DetectionMethod =
  | { kind: 'first-found' }
  | { kind: 'interface'; patterns: RegExp[] }
  | { kind: 'skip-interface'; patterns: RegExp[] }
  | { kind: 'can-reach'; destination: string }
  | { kind: 'cidr'; cidrs: Cidr[] };

/** The interfaces calico/node skips unless told otherwise (its anchored list, v3.26 on). */
const EXCLUDED_BY_DEFAULT = [
  /^docker.*/, /^cbr.*/, /^dummy.*/, /^podman.*/, /^virbr.*/, /^lxcbr.*/, /^veth.*/, /^lo/, /^br-.*/, /^cali.*/, /^tunl.*/,
  /^flannel.*/, /^kube-ipvs.*/, /^cni.*/, /^vxlan\.calico.*/, /^vxlan-v6\.calico.*/, /^wireguard\.cali.*/, /^wg-v6\.cali.*/,
  /^nodelocaldns.*/,
];

function regexes(list: string, variable: string): RegExp[] {
  return list.split(/\s*,\s*/).filter(Boolean).map((text) => {
    try {
      return new RegExp(text);
    } catch {
      throw new InvalidRequestError(`invalid ${variable}: ${JSON.stringify(text)} is not a regular expression`);
    }
  });
}

export function parseDetectionMethod(text: string | undefined, variable = 'IP_AUTODETECTION_METHOD'): DetectionMethod {
  const value = (text ?? '').trim();
  if (value === '' || value === 'first-found') return { kind: 'first-found' };
  const equals = value.indexOf('=');
  const word = equals < 0 ? value : value.slice(0, equals);
  const argument = equals < 0 ? '' : value.slice(equals + 1).trim();
  if (argument === '' && ['interface', 'skip-interface', 'can-reach', 'cidr'].includes(word)) {
    throw new InvalidRequestError(`invalid ${variable}=${JSON.stringify(value)}: ${word} needs a value, e.g. ${word}=...`);
  }
  switch (word) {
    case 'interface':
      return { kind: 'interface', patterns: regexes(argument, variable) };
    case 'skip-interface':
      return { kind: 'skip-interface', patterns: regexes(argument, variable) };
    case 'can-reach':
      return { kind: 'can-reach', destination: argument };
    case 'cidr':
      return { kind: 'cidr', cidrs: argument.split(/\s*,\s*/).map((c) => parseCidr(c)) };
    default:
      throw new InvalidRequestError(
        `invalid ${variable}=${JSON.stringify(value)}: use first-found, interface=REGEX, skip-interface=REGEX, can-reach=DESTINATION or cidr=CIDR[,CIDR]`,
      );
  }
}

/** Global unicast as Go's net.IP.IsGlobalUnicast sees it: no loopback, link-local, multicast or unspecified. */
export function isGlobalUnicast(ip: IpAddr): boolean {
  if (ip.family === 4) {
    const first = Number(ip.value >> 24n);
    const second = Number((ip.value >> 16n) & 0xffn);
    return ip.value !== 0n && ip.value !== 0xffffffffn && first !== 127 && first < 224 && !(first === 169 && second === 254);
  }
  const top = ip.value >> 112n;
  return ip.value !== 0n && ip.value !== 1n && (top & 0xffc0n) !== 0xfe80n && (top & 0xff00n) !== 0xff00n;
}

export interface DetectedAddress {
  /** `ADDR/prefix`, as stored in Node.spec.bgp. */
  cidr: string;
  interfaceName: string;
}

function candidates(interfaces: HostInterface[], family: IpFamily, include: (name: string) => boolean): DetectedAddress[] {
  // Highest index first, as calico/node walks them.
  return [...interfaces]
    .filter((i) => i.up && include(i.name))
    .sort((a, b) => b.index - a.index)
    .flatMap((i) =>
      i.addresses
        .filter((a) => a.address.family === family && isGlobalUnicast(a.address))
        .map((a) => ({ cidr: `${formatIp(a.address)}/${a.prefix}`, interfaceName: i.name })),
    );
}

/**
 * The address a method picks from the host's interfaces, or undefined when none qualifies.
 * `can-reach` takes the source address the kernel chose for the destination (`source`).
 */
export function detectAddress(method: DetectionMethod, interfaces: HostInterface[], family: IpFamily, source?: IpAddr): DetectedAddress | undefined {
  const notExcluded = (name: string): boolean => !EXCLUDED_BY_DEFAULT.some((r) => r.test(name));
  switch (method.kind) {
    case 'first-found':
      return candidates(interfaces, family, notExcluded)[0];
    case 'interface':
      return candidates(interfaces, family, (name) => method.patterns.some((r) => r.test(name)))[0];
    case 'skip-interface':
      return candidates(interfaces, family, (name) => notExcluded(name) && !method.patterns.some((r) => r.test(name)))[0];
    case 'cidr':
      return candidates(interfaces, family, () => true).find((c) => method.cidrs.some((cidr) => cidrContains(cidr, parseIp(c.cidr.split('/')[0]!))));
    case 'can-reach':
      return source ? interfaceAddress(interfaces, source) : undefined;
  }
}

/** `ADDR/prefix` of an address held by an interface of the host, or undefined when no interface holds it. */
export function interfaceAddress(interfaces: HostInterface[], ip: IpAddr): DetectedAddress | undefined {
  for (const i of interfaces) {
    const held = i.addresses.find((a) => a.address.family === ip.family && a.address.value === ip.value);
    if (held) return { cidr: `${formatIp(ip)}/${held.prefix}`, interfaceName: i.name };
  }
  return undefined;
}
