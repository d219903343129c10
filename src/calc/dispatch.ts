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

export interface DispatchEntry {
  /** The workload's address, without a prefix length. */
  address: string;
  /** The chain packets of this address go to. */
  target: string;
}

/** An entry keyed by its address as fixed-width hex: a prefix of n nibbles is the key's first n characters. */
interface Leaf {
  hex: string;
  address: string;
  target: string;
}

const childNames = new Map<string, string>();

function childName(root: string, prefix: string): string {
  const name = `${root}-${prefix}`;
  if (name.length <= 28) return name;
  let hashed = childNames.get(name);
  if (hashed === undefined) {
    hashed = `${root.slice(0, 20)}-${createHash('sha224').update(prefix).digest('base64url').slice(0, 7)}`;
    if (childNames.size > 100_000) childNames.clear();
    childNames.set(name, hashed);
  }
  return hashed;
}

/** The last tree of each root, with the entries it was built from: unchanged entries, the same chains. */
const lastTrees = new Map<string, { entries: Map<string, string>; chains: Map<string, string[]> }>();

function sameEntries(entries: DispatchEntry[], last: Map<string, string>): boolean {
  if (entries.length !== last.size) return false;
  for (const e of entries) if (last.get(e.address) !== e.target) return false;
  return true;
}

/**
 * The chains of one dispatch tree: `root` and its children, each ending in `-j DROP` (an address of
 * no known endpoint). `flag` is `-d` or `-s`.
 */
export function dispatchTree(root: string, flag: '-d' | '-s', family: IpFamily, entries: DispatchEntry[]): Map<string, string[]> {
  const key = `${root}|${flag}|${family}`;
  const last = lastTrees.get(key);
  if (last && sameEntries(entries, last.entries)) return last.chains;
  const chains = buildTree(root, flag, family, entries);
  lastTrees.set(key, { entries: new Map(entries.map((e) => [e.address, e.target])), chains });
  return chains;
}

function buildTree(root: string, flag: '-d' | '-s', family: IpFamily, entries: DispatchEntry[]): Map<string, string[]> {
  const bits = family === 4 ? 32 : 128;
  const nibbles = bits / 4;
  const leaves: Leaf[] = entries.map((e) => ({ hex: addressHex(e.address, family), address: e.address, target: e.target }));
  leaves.sort((a, b) => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0));
  const chains = new Map<string, string[]>();
  const leafRule = (l: Leaf): string => `${flag} ${l.address}/${bits} -g ${l.target}`;
  const build = (chain: string, group: Leaf[], depth: number): void => {
    if (group.length <= BRANCH || depth >= nibbles) {
      chains.set(chain, [...group.map(leafRule), '-j DROP']);
      return;
    }
    // Skip the nibbles every member shares: a level that would branch once is no level at all.
    let next = depth + 1;
    let groups = groupBy(group, next);
    while (groups.length === 1 && next < nibbles) groups = groupBy(group, ++next);
    const rules: string[] = [];
    for (const members of groups) {
      if (members.length === 1) {
        rules.push(leafRule(members[0]!));
        continue;
      }
      const prefix = prefixText(members[0]!.hex.slice(0, next), family);
      const child = childName(root, prefix.replace(/[/:.]/g, '_'));
      rules.push(`${flag} ${prefix} -g ${child}`);
      build(child, members, next);
    }
    chains.set(chain, [...rules, '-j DROP']);
  };
  build(root, leaves, 0);
  return chains;
}

/** Sorted leaves in runs sharing their first `nibbles` hex digits. */
function groupBy(leaves: Leaf[], nibbles: number): Leaf[][] {
  const groups: Leaf[][] = [];
  let key: string | undefined;
  for (const leaf of leaves) {
    const k = leaf.hex.slice(0, nibbles);
    if (k !== key) {
      groups.push([]);
      key = k;
    }
    groups.at(-1)!.push(leaf);
  }
  return groups;
}

/** A prefix of `hex.length` nibbles as an address with its length, e.g. `10.200.0.0/20`. */
function prefixText(hex: string, family: IpFamily): string {
  const full = hex.padEnd(family === 4 ? 8 : 32, '0');
  const address =
    family === 4
      ? [0, 2, 4, 6].map((i) => parseInt(full.slice(i, i + 2), 16)).join('.')
      : Array.from({ length: 8 }, (_, i) => parseInt(full.slice(i * 4, i * 4 + 4), 16).toString(16)).join(':');
  return `${address}/${hex.length * 4}`;
}

/** Every calculation dispatches the same addresses again: their keys are kept (a bounded cache, emptied when full). */
const hexes = new Map<string, string>();

function addressHex(address: string, family: IpFamily): string {
  let hex = hexes.get(address);
  if (hex === undefined) {
    if (hexes.size > 100_000) hexes.clear();
    hex = readHex(address, family);
    hexes.set(address, hex);
  }
  return hex;
}

/** An address as fixed-width hex; dotted IPv4 read directly, anything else by the full parser. */
function readHex(address: string, family: IpFamily): string {
  if (family === 4) {
    const parts = address.split('.');
    if (parts.length === 4) return parts.map((p) => Number(p).toString(16).padStart(2, '0')).join('');
  }
  return parseIp(address).value.toString(16).padStart(family === 4 ? 8 : 32, '0');
}
