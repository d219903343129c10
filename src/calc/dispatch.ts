import { createHash } from 'node:crypto';
import { IpFamily, parseIp } from '../domain/cidr.js';

/**
 * Dispatch from a packet's workload address to its endpoint's chain, as a tree of address prefixes:
 * each chain tests at most BRANCH prefixes (or addresses) and jumps one level down, so the packet for
 * the 2000th endpoint walks a few dozen rules, like the packet for the first, where a flat list
 * would walk 2000. (Felix builds its tree by interface name; addresses are what we dispatch on,
 * since a container's further addresses are routed through one of its veths.)
 */

const BRANCH = 16;
const NIBBLE = 4;

export interface DispatchEntry {
  /** The workload's address, without a prefix length. */
  address: string;
  /** The chain packets of this address go to. */
  target: string;
}

interface Leaf {
  value: bigint;
  address: string;
  target: string;
}

const childName = (root: string, prefix: string): string => {
  const name = `${root}-${prefix}`;
  return name.length <= 28 ? name : `${root.slice(0, 20)}-${createHash('sha224').update(prefix).digest('base64url').slice(0, 7)}`;
};

/**
 * The chains of one dispatch tree: `root` and its children, each ending in `-j DROP` (an address of
 * no known endpoint). `flag` is `-d` or `-s`.
 */
export function dispatchTree(root: string, flag: '-d' | '-s', family: IpFamily, entries: DispatchEntry[]): Map<string, string[]> {
  const bits = family === 4 ? 32 : 128;
  const leaves = entries.map((e) => ({ value: addressValue(e.address, family), address: e.address, target: e.target })).sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  const chains = new Map<string, string[]>();
  const prefixText = (value: bigint, length: number): string => {
    const masked = length === 0 ? 0n : (value >> BigInt(bits - length)) << BigInt(bits - length);
    return `${formatAddress(masked, family)}/${length}`;
  };
  const build = (chain: string, group: Leaf[], depth: number): void => {
    if (group.length <= BRANCH || depth >= bits) {
      chains.set(chain, [...group.map((l) => `${flag} ${l.address}/${bits} -g ${l.target}`), '-j DROP']);
      return;
    }
    // Skip the bits every member shares: a level that would branch once is no level at all.
    let next = depth + NIBBLE;
    let groups = groupBy(group, bits, next);
    while (groups.length === 1 && next < bits) {
      next += NIBBLE;
      groups = groupBy(group, bits, next);
    }
    const rules: string[] = [];
    for (const members of groups) {
      const prefix = prefixText(members[0]!.value, next);
      if (members.length === 1) {
        rules.push(`${flag} ${members[0]!.address}/${bits} -g ${members[0]!.target}`);
        continue;
      }
      const child = childName(root, prefix.replace(/[/:.]/g, '_'));
      rules.push(`${flag} ${prefix} -g ${child}`);
      build(child, members, next);
    }
    chains.set(chain, [...rules, '-j DROP']);
  };
  build(root, leaves, 0);
  return chains;
}

function groupBy(leaves: Leaf[], bits: number, length: number): Leaf[][] {
  const groups: Leaf[][] = [];
  let key: bigint | undefined;
  for (const leaf of leaves) {
    const k = leaf.value >> BigInt(bits - length);
    if (k !== key) {
      groups.push([]);
      key = k;
    }
    groups.at(-1)!.push(leaf);
  }
  return groups;
}

function formatAddress(value: bigint, family: IpFamily): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  const words = Array.from({ length: 8 }, (_, i) => ((value >> BigInt(112 - i * 16)) & 0xffffn).toString(16));
  return words.join(':');
}

/** An address as a number; dotted IPv4 read directly (thousands per apply), anything else by the full parser. */
function addressValue(address: string, family: IpFamily): bigint {
  if (family === 4) {
    const parts = address.split('.');
    if (parts.length === 4) return BigInt((((Number(parts[0]) * 256 + Number(parts[1])) * 256 + Number(parts[2])) * 256) + Number(parts[3]));
  }
  return parseIp(address).value;
}
