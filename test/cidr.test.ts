import { describe, expect, it } from 'vitest';
import {
  addressAt,
  blockAt,
  blockContaining,
  blockCount,
  cidrContains,
  cidrKeyName,
  cidrsOverlap,
  formatCidr,
  formatIp,
  ordinalOf,
  parseCidr,
  parseCidrKeyName,
  parseIp,
} from '../src/domain/cidr.js';
import { findFreeBlock } from '../src/services/ipam/block-search.js';
import { viewOf } from '../src/services/ipam/pool-view.js';
import type { IpPool } from '../src/domain/ipam-model.js';

const pool = (cidr: string, blockSize?: number): NonNullable<ReturnType<typeof viewOf>> =>
  viewOf({ kind: 'IPPool', apiVersion: 'projectcalico.org/v3', metadata: { name: 'p' }, spec: { cidr, ...(blockSize ? { blockSize } : {}) } } as IpPool)!;

describe('block arithmetic', () => {
  it('splits an IPv4 /24 into four /26 blocks of 64 ordinals', () => {
    const p = parseCidr('10.0.0.0/24');
    expect(blockCount(p, 26)).toBe(4n);
    expect([0n, 1n, 2n, 3n].map((i) => formatCidr(blockAt(p, 26, i)))).toEqual(['10.0.0.0/26', '10.0.0.64/26', '10.0.0.128/26', '10.0.0.192/26']);
    const block = blockContaining(parseIp('10.0.0.130'), 26);
    expect(formatCidr(block)).toBe('10.0.0.128/26');
    expect(ordinalOf(block, parseIp('10.0.0.130'))).toBe(2);
    expect(formatIp(addressAt(block, 63))).toBe('10.0.0.191');
  });

  it('splits an IPv6 /64 into 2^58 /122 blocks of 64 ordinals', () => {
    const p = parseCidr('fd80:24e2:f998:72d6::/64');
    expect(blockCount(p, 122)).toBe(1n << 58n);
    const last = blockAt(p, 122, (1n << 58n) - 1n);
    expect(formatCidr(last)).toBe('fd80:24e2:f998:72d6:ffff:ffff:ffff:ffc0/122');
    const block = blockContaining(parseIp('fd80:24e2:f998:72d6::7f'), 122);
    expect(formatCidr(block)).toBe('fd80:24e2:f998:72d6::40/122');
    expect(ordinalOf(block, parseIp('fd80:24e2:f998:72d6::7f'))).toBe(63);
    expect(formatIp(addressAt(block, 1))).toBe('fd80:24e2:f998:72d6::41');
  });

  it('detects overlap between blocks of different sizes, and none across families', () => {
    expect(cidrsOverlap(parseCidr('10.0.0.0/24'), parseCidr('10.0.0.192/26'))).toBe(true);
    expect(cidrsOverlap(parseCidr('10.0.0.0/26'), parseCidr('10.0.0.64/26'))).toBe(false);
    expect(cidrsOverlap(parseCidr('10.0.0.0/20'), parseCidr('10.0.15.255/32'))).toBe(true);
    expect(cidrsOverlap(parseCidr('::/0'), parseCidr('0.0.0.0/0'))).toBe(false);
    expect(cidrContains(parseCidr('fd00::/122'), parseIp('fd00::3f'))).toBe(true);
    expect(cidrContains(parseCidr('fd00::/122'), parseIp('fd00::40'))).toBe(false);
  });

  it("names blocks as Calico's keys do", () => {
    expect(cidrKeyName(parseCidr('10.0.0.64/26'))).toBe('10.0.0.64-26');
    expect(cidrKeyName(parseCidr('fd00::/122'))).toBe('fd00::-122');
    expect(formatCidr(parseCidrKeyName('fd00::40-122'))).toBe('fd00::40/122');
  });

  it('refuses malformed input with a clear error', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '300.0.0.0/8', 'fd00::/129', '10.0.0.0/2x', '', 'abc/12']) {
      expect(() => parseCidr(bad)).toThrow(/invalid CIDR/);
    }
    expect(() => parseCidr('10.0.0.1/24', { strict: true })).toThrow(/host bits are set \(did you mean 10\.0\.0\.0\/24\?\)/);
    expect(() => parseIp('10.0.0.0/24')).toThrow(/invalid IP address/);
  });
});

describe('finding a free block', () => {
  it('starts where the node name points and is stable for a node', () => {
    const p = pool('10.0.0.0/16');
    const a = findFreeBlock(p, 'node-a', [])!;
    expect(findFreeBlock(p, 'node-a', [])).toEqual(a);
    expect(findFreeBlock(p, 'node-b', [])).not.toEqual(a);
  });

  it('skips every candidate an existing block overlaps, including one of another size', () => {
    const p = pool('10.0.0.0/24');
    const start = findFreeBlock(p, 'n', [])!;
    const leftover = parseCidr('10.0.0.0/24');
    expect(findFreeBlock(p, 'n', [leftover])).toBeUndefined();
    const taken = [0n, 1n, 2n, 3n].map((i) => blockAt(parseCidr('10.0.0.0/24'), 26, i)).filter((b) => formatCidr(b) !== '10.0.0.128/26');
    expect(formatCidr(findFreeBlock(p, 'n', taken)!)).toBe('10.0.0.128/26');
    expect(findFreeBlock(p, 'n', [start])).not.toEqual(start);
  });

  it('terminates at once in an IPv6 /64 even when the region it starts in is crowded', () => {
    const p = pool('fd00::/64');
    const first = findFreeBlock(p, 'n', [])!;
    const crowded = [parseCidr(`${formatIp({ family: 6, value: first.base })}/100`)];
    const found = findFreeBlock(p, 'n', crowded)!;
    expect(cidrsOverlap(found, crowded[0]!)).toBe(false);
    expect(cidrContains(p.cidr, { family: 6, value: found.base })).toBe(true);
  });
});
