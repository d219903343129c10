import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { selectorSetName } from '../src/calc/policy.js';

const SCRIPT = join(import.meta.dirname, 'helpers/policy-scenarios.mjs');
const netns = `calit-pol-${process.pid}`;
const inNs = (args: string[]) => spawnSync('ip', ['netns', 'exec', netns, ...args], { encoding: 'utf8', timeout: 30_000 });
const run = (mode: string): Record<string, any> => JSON.parse(inNs([process.execPath, SCRIPT, mode]).stdout || '{}');
const save = (): string => inNs(['iptables-save']).stdout.replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '');

beforeEach(() => {
  spawnSync('ip', ['netns', 'del', netns]);
  expect(spawnSync('ip', ['netns', 'add', netns]).status).toBe(0);
});
afterEach(() => {
  // ipsets are per network namespace: they go with it.
  spawnSync('ip', ['netns', 'del', netns]);
});

describe('iptables and ipset programming, in a namespace of its own', () => {
  it('writes everything once, nothing when nothing changed, and only what changed', () => {
    const result = run('apply');
    expect(result.ok, result.error).toBe(true);
    expect(result.first.chainsWritten).toBeGreaterThan(10);
    expect(result.same).toEqual({ chainsWritten: 0, setsWritten: 0, rules: result.first.rules, bytes: 0, untidy: 0 });
    // One endpoint more, like one already there: the two dispatch chains and its address added to the tag's set, nothing else.
    expect(result.added.chainsWritten).toBe(2);
    expect(result.added.setsWritten).toBe(1);
    expect(result.added.bytes).toBeLessThan(result.first.bytes / 10);
    // Written the fast way: the new dispatch rules inserted above the old ones, which the final DROP hides.
    expect(result.added.untidy).toBeGreaterThan(0);
    const dispatch = (text: string) => text.split('\n').filter((l) => l.startsWith('-A cali-to-wl-dispatch '));
    const fast = dispatch(result.addedSave);
    expect(fast.slice(0, 4)).toEqual(['-A cali-to-wl-dispatch -d 10.60.0.1/32 -g ' + fast[0]!.split(' -g ')[1], expect.stringMatching(/-d 10\.60\.0\.2\/32/), expect.stringMatching(/-d 10\.60\.0\.3\/32/), '-A cali-to-wl-dispatch -j DROP']);
    expect(fast.length).toBeGreaterThan(4);
    // The tidy-up leaves exactly the wanted rules, and nothing to tidy.
    expect(result.tidied).toMatchObject({ chainsWritten: 0, untidy: 0 });
    expect(dispatch(result.tidiedSave)).toEqual(fast.slice(0, 4));
    const text = save();
    expect(text).toMatch(/-A FORWARD -j cali-FORWARD/);
    expect(text).toMatch(/-A INPUT -j cali-INPUT/);
    expect(text).toMatch(/-A OUTPUT -j cali-OUTPUT/);
    expect(text).toMatch(/-A POSTROUTING -j cali-POSTROUTING/);
    // It shares the chains of the endpoint alike.
    const target = /-A cali-to-wl-dispatch -d 10\.60\.0\.1\/32 -g (cali-tw-\S+)/.exec(text)?.[1];
    expect(target).toBeDefined();
    expect(text).toContain(`-A cali-to-wl-dispatch -d 10.60.0.3/32 -g ${target}`);
    const members = inNs(['ipset', 'list', selectorSetName(4, 'has(a)')]).stdout;
    expect(members).toMatch(/10\.60\.0\.1\n/);
    expect(members).toMatch(/10\.60\.0\.3\n/);
    expect(members).not.toMatch(/10\.60\.0\.2\n/);
  });

  it('a restarted daemon leaves iptables-save identical, and uninstall removes every chain, hook and set', () => {
    expect(run('restart').ok).toBe(true);
    const before = save();
    expect(run('restart').ok).toBe(true);
    expect(save()).toBe(before);
    expect(run('uninstall').ok).toBe(true);
    expect(save()).not.toMatch(/cali/);
    expect(inNs(['ipset', 'list', '-n']).stdout.trim()).toBe('');
  });

  it('host endpoints: chains in raw and mangle too, hooked as Felix hooks them, only changed ones rewritten, and all gone at uninstall', () => {
    const result = run('hostEndpoints');
    expect(result.ok, result.error).toBe(true);
    expect(result.same.chainsWritten).toBe(0);
    expect(result.removed.chainsWritten).toBeGreaterThan(0);
    // Removed the fast way: the host endpoint chains are unreachable but still there, until the tidy-up removes them.
    expect(result.removed.untidy).toBeGreaterThan(0);
    expect(result.removedSave).toMatch(/:cali-fh-eth0 /);
    expect(result.tidied.untidy).toBe(0);
    expect(result.tidiedSave).not.toMatch(/cali-fh-eth0|cali-fhfw-eth0/);
    const text = save();
    expect(text).toMatch(/\*raw[\s\S]*-A PREROUTING -j cali-PREROUTING[\s\S]*-A OUTPUT -j cali-OUTPUT/);
    expect(text).toMatch(/\*mangle[\s\S]*-A PREROUTING -j cali-PREROUTING/);
    expect(text).toMatch(/-A cali-PREROUTING .*-j CT --notrack/);
    expect(text).toMatch(/-A cali-fh-eth0 -j cali-failsafe-in/);
    expect(text).toContain('-A cali-from-hep-forward -i eth0 -g cali-fhfw-eth0');
    expect(run('uninstall').ok).toBe(true);
    expect(save()).not.toMatch(/cali/);
  });
});
