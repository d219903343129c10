import { parseCidr } from '../../domain/cidr.js';
import type { Rule, RuleEntity } from '../../domain/endpoint-model.js';
import { InvalidRequestError } from '../../domain/errors.js';
import { parseSelector } from '../../calc/selector.js';

/**
 * The rule language of calicoctl 0.x (the seed era), kept for the CLI: the JSON document
 * `{"inbound_rules":[…],"outbound_rules":[…]}` with `src_tag`, `dst_ports`, `!src_net`, … and the
 * one-line text `allow tcp from tag web to ports 80,443`. Stored as Calico v3 rules (a tag T is the
 * selector `has(T)`, as Calico's own v1→v3 upgrade did), so the data stays readable by Calico.
 */

export interface SeedRule {
  action?: 'allow' | 'deny' | 'log';
  protocol?: string | number;
  '!protocol'?: string | number;
  icmp_type?: number;
  icmp_code?: number;
  '!icmp_type'?: number;
  '!icmp_code'?: number;
  src_tag?: string;
  '!src_tag'?: string;
  dst_tag?: string;
  '!dst_tag'?: string;
  src_net?: string;
  '!src_net'?: string;
  dst_net?: string;
  '!dst_net'?: string;
  src_ports?: (number | string)[];
  '!src_ports'?: (number | string)[];
  dst_ports?: (number | string)[];
  '!dst_ports'?: (number | string)[];
  ip_version?: 4 | 6;
}

export interface SeedRules {
  inbound_rules: SeedRule[];
  outbound_rules: SeedRule[];
}

const NAME = /^[a-zA-Z0-9_.-]+$/;
const PORTS = /^(\d+([:-]\d+)?)(,\d+([:-]\d+)?)*$/;
const PROTOCOLS = new Set(['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'udplite']);
const KNOWN_KEYS = new Set([
  'action', 'protocol', '!protocol', 'icmp_type', 'icmp_code', '!icmp_type', '!icmp_code', 'src_tag', '!src_tag', 'dst_tag', '!dst_tag',
  'src_net', '!src_net', 'dst_net', '!dst_net', 'src_ports', '!src_ports', 'dst_ports', '!dst_ports', 'ip_version',
]);

export function validateName(kind: 'profile' | 'tag', name: string): void {
  if (typeof name !== 'string' || !NAME.test(name) || name.length >= 128) {
    throw new InvalidRequestError(`invalid ${kind} name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' only`);
  }
}

/** `80,443,8000-8080` → [80, 443, "8000:8080"], checked as calicoctl did. */
export function parsePorts(text: string): (number | string)[] {
  if (!PORTS.test(text)) throw new InvalidRequestError(`invalid port list ${JSON.stringify(text)}: use ports and ranges such as 80,443,8000-8080`);
  return text.split(',').map((part) => {
    const [low, high] = part.split(/[:-]/).map(Number);
    for (const port of [low, high]) {
      if (port !== undefined && (port < 0 || port > 65535)) throw new InvalidRequestError(`port ${port} is out of range 0-65535`);
    }
    if (high === undefined) return low!;
    if (low! > high) throw new InvalidRequestError(`port range ${part} has its start above its end`);
    return `${low}:${high}`;
  });
}

const familyOfNet = (net: string): 4 | 6 => parseCidr(net).family;

/** calicoctl's checks: known keys, ports only with tcp/udp, CIDRs of one IP version matching icmp/icmpv6. */
export function validateSeedRule(rule: SeedRule): void {
  if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new InvalidRequestError('each rule must be a JSON object');
  for (const key of Object.keys(rule)) if (!KNOWN_KEYS.has(key)) throw new InvalidRequestError(`unknown rule field ${JSON.stringify(key)}`);
  if (rule.action !== undefined && !['allow', 'deny', 'log'].includes(rule.action)) throw new InvalidRequestError(`invalid action ${JSON.stringify(rule.action)}: use allow, deny or log`);
  for (const key of ['protocol', '!protocol'] as const) {
    const p = rule[key];
    if (p === undefined) continue;
    if (typeof p === 'number' ? !(Number.isInteger(p) && p >= 1 && p <= 255) : !PROTOCOLS.has(String(p))) {
      throw new InvalidRequestError(`invalid protocol ${JSON.stringify(p)}: use tcp, udp, icmp, icmpv6, sctp, udplite or a number 1-255`);
    }
  }
  const hasPorts = ['src_ports', '!src_ports', 'dst_ports', '!dst_ports'].some((k) => rule[k as keyof SeedRule] !== undefined);
  if (hasPorts && rule.protocol !== 'tcp' && rule.protocol !== 'udp') throw new InvalidRequestError(`Ports are not valid with protocol ${rule.protocol ?? '(none)'}: use tcp or udp`);
  for (const key of ['src_ports', '!src_ports', 'dst_ports', '!dst_ports'] as const) {
    const ports = rule[key];
    if (ports === undefined) continue;
    if (!Array.isArray(ports) || ports.length === 0) throw new InvalidRequestError(`${key} must be a non-empty list`);
    parsePorts(ports.map((p) => String(p)).join(','));
  }
  const hasIcmp = ['icmp_type', 'icmp_code', '!icmp_type', '!icmp_code'].some((k) => rule[k as keyof SeedRule] !== undefined);
  if (hasIcmp && rule.protocol !== 'icmp' && rule.protocol !== 'icmpv6') throw new InvalidRequestError('icmp type and code need protocol icmp or icmpv6');
  for (const key of ['icmp_type', '!icmp_type'] as const) if (rule[key] !== undefined && !(Number.isInteger(rule[key]) && rule[key]! >= 0 && rule[key]! <= 254)) throw new InvalidRequestError(`${key} must be 0-254`);
  for (const key of ['icmp_code', '!icmp_code'] as const) if (rule[key] !== undefined && !(Number.isInteger(rule[key]) && rule[key]! >= 0 && rule[key]! <= 255)) throw new InvalidRequestError(`${key} must be 0-255`);
  if (rule.icmp_code !== undefined && rule.icmp_type === undefined) throw new InvalidRequestError('icmp code needs an icmp type');
  for (const key of ['src_tag', '!src_tag', 'dst_tag', '!dst_tag'] as const) if (rule[key] !== undefined) validateName('tag', rule[key]!);
  const nets = (['src_net', '!src_net', 'dst_net', '!dst_net'] as const).map((k) => rule[k]).filter((n): n is string => n !== undefined);
  const versions = new Set(nets.map(familyOfNet));
  if (versions.size > 1) throw new InvalidRequestError('all CIDRs of a rule must be of one IP version');
  const version = [...versions][0];
  if (version === 6 && rule.protocol === 'icmp') throw new InvalidRequestError('protocol icmp cannot be used with IPv6 CIDRs: use icmpv6');
  if (version === 4 && rule.protocol === 'icmpv6') throw new InvalidRequestError('protocol icmpv6 cannot be used with IPv4 CIDRs: use icmp');
  if (rule.ip_version !== undefined && rule.ip_version !== 4 && rule.ip_version !== 6) throw new InvalidRequestError('ip_version must be 4 or 6');
}

function entity(rule: SeedRule, side: 'src' | 'dst'): RuleEntity | undefined {
  const e: RuleEntity = {};
  const tag = rule[`${side}_tag`];
  const notTag = rule[`!${side}_tag`];
  if (tag !== undefined) e.selector = `has(${tag})`;
  if (notTag !== undefined) e.notSelector = `has(${notTag})`;
  const net = rule[`${side}_net`];
  const notNet = rule[`!${side}_net`];
  if (net !== undefined) e.nets = [net];
  if (notNet !== undefined) e.notNets = [notNet];
  const ports = rule[`${side}_ports`];
  const notPorts = rule[`!${side}_ports`];
  if (ports !== undefined) e.ports = ports;
  if (notPorts !== undefined) e.notPorts = notPorts;
  return Object.keys(e).length ? e : undefined;
}

export function toV3(rule: SeedRule): Rule {
  validateSeedRule(rule);
  const v3: Rule = { action: rule.action === 'deny' ? 'Deny' : rule.action === 'log' ? 'Log' : 'Allow' };
  if (rule.ip_version !== undefined) v3.ipVersion = rule.ip_version;
  if (rule.protocol !== undefined) v3.protocol = rule.protocol;
  if (rule['!protocol'] !== undefined) v3.notProtocol = rule['!protocol'];
  if (rule.icmp_type !== undefined) v3.icmp = { type: rule.icmp_type, ...(rule.icmp_code !== undefined ? { code: rule.icmp_code } : {}) };
  if (rule['!icmp_type'] !== undefined) v3.notICMP = { type: rule['!icmp_type'], ...(rule['!icmp_code'] !== undefined ? { code: rule['!icmp_code'] } : {}) };
  const source = entity(rule, 'src');
  const destination = entity(rule, 'dst');
  if (source) v3.source = source;
  if (destination) v3.destination = destination;
  return v3;
}

const tagOf = (selector: string | undefined): string | undefined => (selector ? /^has\(([^()]+)\)$/.exec(selector)?.[1] : undefined);

export function fromV3(rule: Rule): SeedRule {
  const seed: SeedRule = { action: rule.action === 'Deny' ? 'deny' : rule.action === 'Log' ? 'log' : 'allow' };
  if (rule.ipVersion !== undefined) seed.ip_version = rule.ipVersion;
  if (rule.protocol !== undefined) seed.protocol = rule.protocol;
  if (rule.notProtocol !== undefined) seed['!protocol'] = rule.notProtocol;
  if (rule.icmp?.type !== undefined) seed.icmp_type = rule.icmp.type;
  if (rule.icmp?.code !== undefined) seed.icmp_code = rule.icmp.code;
  if (rule.notICMP?.type !== undefined) seed['!icmp_type'] = rule.notICMP.type;
  if (rule.notICMP?.code !== undefined) seed['!icmp_code'] = rule.notICMP.code;
  for (const side of ['src', 'dst'] as const) {
    const e = side === 'src' ? rule.source : rule.destination;
    if (!e) continue;
    const tag = tagOf(e.selector);
    if (tag) seed[`${side}_tag`] = tag;
    const notTag = tagOf(e.notSelector);
    if (notTag) seed[`!${side}_tag`] = notTag;
    if (e.nets?.[0]) seed[`${side}_net`] = e.nets[0];
    if (e.notNets?.[0]) seed[`!${side}_net`] = e.notNets[0];
    if (e.ports) seed[`${side}_ports`] = e.ports;
    if (e.notPorts) seed[`!${side}_ports`] = e.notPorts;
  }
  return seed;
}

/** calicoctl's one-line form: `allow tcp type 8 from ports 1,2 tag web cidr 10.0.0.0/8 to ...`. */
export function describeRule(rule: SeedRule, tagName: (tag: string) => string = (t) => t): string {
  const words: string[] = [rule.action ?? 'allow'];
  if (rule['!protocol'] !== undefined) words.push('!', String(rule['!protocol']));
  if (rule.protocol !== undefined) words.push(String(rule.protocol));
  if (rule.icmp_type !== undefined) words.push('type', String(rule.icmp_type));
  if (rule.icmp_code !== undefined) words.push('code', String(rule.icmp_code));
  if (rule['!icmp_type'] !== undefined) words.push('!type', String(rule['!icmp_type']));
  for (const side of ['src', 'dst'] as const) {
    const parts: string[] = [];
    if (rule[`${side}_ports`]) parts.push('ports', rule[`${side}_ports`]!.join(','));
    if (rule[`!${side}_ports`]) parts.push('!ports', rule[`!${side}_ports`]!.join(','));
    if (rule[`${side}_tag`]) parts.push('tag', tagName(rule[`${side}_tag`]!));
    if (rule[`!${side}_tag`]) parts.push('!tag', tagName(rule[`!${side}_tag`]!));
    if (rule[`${side}_net`]) parts.push('cidr', rule[`${side}_net`]!);
    if (rule[`!${side}_net`]) parts.push('!cidr', rule[`!${side}_net`]!);
    if (parts.length) words.push(side === 'src' ? 'from' : 'to', ...parts);
  }
  return words.join(' ');
}

/**
 * Parses the words after `rule add|remove (inbound|outbound)`:
 * `(allow|deny|log) [tcp|udp|icmp|icmpv6|N] [type N [code N]] [from [ports L] [tag T] [cidr C]] [to [ports L] [tag T] [cidr C]]`,
 * each match optionally negated with a leading `!`.
 */
export function parseRuleWords(words: string[]): SeedRule {
  let i = 0;
  const next = (): string | undefined => words[i];
  const take = (what: string): string => {
    const word = words[i++];
    if (word === undefined) throw new InvalidRequestError(`expected ${what} at the end of the rule`);
    return word;
  };
  const action = take('allow, deny or log');
  if (!['allow', 'deny', 'log'].includes(action)) throw new InvalidRequestError(`expected allow, deny or log, not ${JSON.stringify(action)}`);
  const rule: SeedRule = { action: action as SeedRule['action'] };
  const protocolWord = next();
  if (protocolWord !== undefined && (PROTOCOLS.has(protocolWord) || /^\d+$/.test(protocolWord) || protocolWord === '!')) {
    i++;
    if (protocolWord === '!') rule['!protocol'] = numberOrWord(take('a protocol'));
    else rule.protocol = numberOrWord(protocolWord);
  }
  if (next() === 'type' || next() === '!type') {
    const negated = take('type') === '!type';
    rule[negated ? '!icmp_type' : 'icmp_type'] = integer(take('an icmp type'));
    if (next() === 'code') {
      i++;
      rule[negated ? '!icmp_code' : 'icmp_code'] = integer(take('an icmp code'));
    }
  }
  for (const side of ['src', 'dst'] as const) {
    if (next() !== (side === 'src' ? 'from' : 'to')) continue;
    i++;
    let matched = false;
    for (;;) {
      const word = next();
      if (word === 'ports' || word === '!ports') {
        i++;
        rule[`${word === '!ports' ? '!' : ''}${side}_ports` as 'src_ports'] = parsePorts(take('a port list'));
      } else if (word === 'tag' || word === '!tag') {
        i++;
        rule[`${word === '!tag' ? '!' : ''}${side}_tag` as 'src_tag'] = take('a tag');
      } else if (word === 'cidr' || word === '!cidr') {
        i++;
        const cidr = take('a CIDR');
        parseCidr(cidr);
        rule[`${word === '!cidr' ? '!' : ''}${side}_net` as 'src_net'] = cidr;
      } else break;
      matched = true;
    }
    if (!matched) throw new InvalidRequestError(`'${side === 'src' ? 'from' : 'to'}' must be followed by ports, tag or cidr`);
  }
  if (i < words.length) throw new InvalidRequestError(`unexpected ${JSON.stringify(words[i])} in the rule`);
  validateSeedRule(rule);
  return rule;
}

function integer(text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidRequestError(`expected a number, not ${JSON.stringify(text)}`);
  return Number(text);
}

const numberOrWord = (text: string): string | number => (/^\d+$/.test(text) ? Number(text) : text);

/** Checks every selector of a v3 rule list parses, so nothing unenforceable is stored. */
export function checkSelectors(rules: Rule[]): void {
  for (const rule of rules) {
    for (const e of [rule.source, rule.destination]) {
      if (e?.selector) parseSelector(e.selector);
      if (e?.notSelector) parseSelector(e.notSelector);
    }
  }
}
