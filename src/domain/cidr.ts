import { Address4, Address6 } from 'ip-address';
import { InvalidRequestError } from './errors.js';

export type IpFamily = 4 | 6;

export interface IpAddr {
  readonly family: IpFamily;
  readonly value: bigint;
}

/** A network in canonical form: `base` has no host bits set. */
export interface Cidr {
  readonly family: IpFamily;
  readonly base: bigint;
  readonly prefix: number;
}

export const familyBits = (family: IpFamily): number => (family === 4 ? 32 : 128);

export function parseIp(text: string): IpAddr {
  if (typeof text === 'string' && !text.includes('/')) {
    if (Address4.isValid(text)) return { family: 4, value: new Address4(text).bigInt() };
    if (Address6.isValid(text) && !text.includes('%')) return { family: 6, value: new Address6(text).bigInt() };
  }
  throw new InvalidRequestError(`invalid IP address ${JSON.stringify(text)}`);
}

/**
 * Parses `a.b.c.d/n` or `x::/n`. With `strict`, host bits must be zero; otherwise they are cleared,
 * as Calico does when it normalises a pool CIDR.
 */
export function parseCidr(text: string, options: { strict?: boolean } = {}): Cidr {
  const slash = typeof text === 'string' ? text.indexOf('/') : -1;
  if (slash < 0) throw new InvalidRequestError(`invalid CIDR ${JSON.stringify(text)}`);
  const prefixText = text.slice(slash + 1);
  let ip: IpAddr;
  try {
    ip = parseIp(text.slice(0, slash));
  } catch {
    throw new InvalidRequestError(`invalid CIDR ${JSON.stringify(text)}`);
  }
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > familyBits(ip.family)) {
    throw new InvalidRequestError(`invalid CIDR ${JSON.stringify(text)}`);
  }
  const cidr = makeCidr(ip.family, ip.value, prefix);
  if (options.strict && cidr.base !== ip.value) {
    throw new InvalidRequestError(`invalid CIDR ${JSON.stringify(text)}: host bits are set (did you mean ${formatCidr(cidr)}?)`);
  }
  return cidr;
}

export function makeCidr(family: IpFamily, value: bigint, prefix: number): Cidr {
  const hostBits = BigInt(familyBits(family) - prefix);
  return { family, base: (value >> hostBits) << hostBits, prefix };
}

export function formatIp(ip: IpAddr): string {
  return ip.family === 4 ? Address4.fromBigInt(ip.value).correctForm() : Address6.fromBigInt(ip.value).correctForm();
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp({ family: cidr.family, value: cidr.base })}/${cidr.prefix}`;
}

export function hostCidr(ip: IpAddr): string {
  return `${formatIp(ip)}/${familyBits(ip.family)}`;
}

export const cidrSize = (cidr: Cidr): bigint => 1n << BigInt(familyBits(cidr.family) - cidr.prefix);

const lastAddress = (cidr: Cidr): bigint => cidr.base + cidrSize(cidr) - 1n;

export function cidrContains(cidr: Cidr, ip: IpAddr): boolean {
  return cidr.family === ip.family && ip.value >= cidr.base && ip.value <= lastAddress(cidr);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base <= lastAddress(b) && b.base <= lastAddress(a);
}

export const cidrEquals = (a: Cidr, b: Cidr): boolean =>
  a.family === b.family && a.base === b.base && a.prefix === b.prefix;

/** Offset of `ip` inside `block`; the caller has checked containment. */
export const ordinalOf = (block: Cidr, ip: IpAddr): number => Number(ip.value - block.base);

export const addressAt = (block: Cidr, ordinal: number): IpAddr => ({ family: block.family, value: block.base + BigInt(ordinal) });

/** The block of size `blockPrefix` that holds `ip`. */
export const blockContaining = (ip: IpAddr, blockPrefix: number): Cidr => makeCidr(ip.family, ip.value, blockPrefix);

/** How many blocks of `blockPrefix` a pool splits into (a bigint: a /64 holds 2^58 /122s). */
export const blockCount = (pool: Cidr, blockPrefix: number): bigint => 1n << BigInt(blockPrefix - pool.prefix);

export function blockAt(pool: Cidr, blockPrefix: number, index: bigint): Cidr {
  const step = 1n << BigInt(familyBits(pool.family) - blockPrefix);
  return { family: pool.family, base: pool.base + index * step, prefix: blockPrefix };
}

/** Calico's key form of a CIDR: the `/` becomes `-` (`10.0.0.0-26`). */
export const cidrKeyName = (cidr: Cidr): string => formatCidr(cidr).replace('/', '-');

export function parseCidrKeyName(name: string): Cidr {
  const dash = name.lastIndexOf('-');
  return parseCidr(`${name.slice(0, dash)}/${name.slice(dash + 1)}`, { strict: true });
}

/** FNV-1a 32-bit, used to seed where a node starts its search for a free block. */
export function fnv32a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
