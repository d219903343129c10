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

/** A chain of the tree as built: its depth and leaves, and the chains of its subtree (itself first). */
interface Built {
  depth: number;
  group: Leaf[];
  subtree: [string, string[]][];
}

/**
 * The last tree of each root: its entries, its leaves in order, and each chain as built. A new tree
 * keeps the leaves of unchanged entries (the same objects) and every chain whose leaves are all
 * unchanged, so an endpoint added rebuilds the few chains on its path and nothing else.
 */
interface Tree {
  entries: Map<string, string>;
  leaves: Leaf[];
  built: Map<string, Built>;
  chains: Map<string, string[]>;
}
const lastTrees = new Map<string, Tree>();

function sameEntries(entries: DispatchEntry[], last: Map<string, string>): boolean {
  if (entries.length !== last.size) return false;
  for (const e of entries) if (last.get(e.address) !== e.target) return false;
  return true;
}

const byHex = (a: Leaf, b: Leaf): number => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0);

/** The leaves of `entries` in order: the last tree's unchanged ones kept, the others inserted where they belong. */
function orderedLeaves(entries: DispatchEntry[], wanted: Map<string, string>, family: IpFamily, last: Tree | undefined): Leaf[] {
  const kept = last ? last.leaves.filter((l) => wanted.get(l.address) === l.target) : [];
  const fresh = entries.filter((e) => last?.entries.get(e.address) !== e.target).map((e) => ({ hex: addressHex(e.address, family), address: e.address, target: e.target }));
  if (fresh.length > 64) return [...kept, ...fresh].sort(byHex);
  for (const leaf of fresh) {
    let low = 0;
    let high = kept.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (kept[middle]!.hex < leaf.hex) low = middle + 1;
      else high = middle;
    }
    kept.splice(low, 0, leaf);
  }
  return kept;
}

const sameLeaves = (a: Leaf[], b: Leaf[]): boolean => a.length === b.length && a.every((leaf, i) => leaf === b[i]);

/**
 * The chains of one dispatch tree: `root` and its children, each ending in `-j DROP` (an address of
 * no known endpoint). `flag` is `-d` or `-s`.
 */
export function dispatchTree(root: string, flag: '-d' | '-s', family: IpFamily, entries: DispatchEntry[]): Map<string, string[]> {
  const key = `${root}|${flag}|${family}`;
  const last = lastTrees.get(key);
  if (last && sameEntries(entries, last.entries)) return last.chains;
  const wanted = new Map(entries.map((e) => [e.address, e.target]));
  const leaves = orderedLeaves(entries, wanted, family, last);
  const built = new Map<string, Built>();
  const chains = new Map<string, string[]>();
  const bits = family === 4 ? 32 : 128;
  const nibbles = bits / 4;
  const leafRule = (l: Leaf): string => `${flag} ${l.address}/${bits} -g ${l.target}`;
  const build = (chain: string, group: Leaf[], depth: number): Built => {
    const before = last?.built.get(chain);
    if (before && before.depth === depth && sameLeaves(before.group, group)) {
      // Its descendants are kept too, each for the next tree to keep on its own.
      for (const [descendant] of before.subtree.slice(1)) built.set(descendant, last!.built.get(descendant)!);
      return before;
    }
    if (group.length <= BRANCH || depth >= nibbles) return { depth, group, subtree: [[chain, [...group.map(leafRule), '-j DROP']]] };
    // Skip the nibbles every member shares (those the first and last share): a level that would branch once is no level at all.
    const next = Math.max(depth, sharedNibbles(group[0]!.hex, group.at(-1)!.hex)) + 1;
    const groups = groupBy(group, next);
    const rules: string[] = [];
    const subtree: [string, string[]][] = [[chain, rules]];
    for (const members of groups) {
      if (members.length === 1) {
        rules.push(leafRule(members[0]!));
        continue;
      }
      const prefix = prefixText(members[0]!.hex.slice(0, next), family);
      const child = childName(root, prefix.replace(/[/:.]/g, '_'));
      rules.push(`${flag} ${prefix} -g ${child}`);
      const childBuilt = build(child, members, next);
      built.set(child, childBuilt);
      subtree.push(...childBuilt.subtree);
    }
    rules.push('-j DROP');
    return { depth, group, subtree };
  };
  const top = build(root, leaves, 0);
  built.set(root, top);
  for (const [chain, rules] of top.subtree) chains.set(chain, rules);
  lastTrees.set(key, { entries: wanted, leaves, built, chains });
  return chains;
}

function sharedNibbles(a: string, b: string): number {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
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
