import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSelector, parseSelectorExpr, usesGlobal } from '../src/calc/selector.js';
import { InvalidRequestError } from '../src/domain/errors.js';

const labels = { app: 'web-front', tier: 'front', 'k8s.io/role': 'edge', 'a_b-c.d/e': 'x', empty: '' };

describe('selector evaluation', () => {
  const cases: [string, boolean][] = [
    // == and !=: present match, present mismatch, absent.
    ['tier == "front"', true], ['tier == "back"', false], ['nope == "front"', false],
    ['tier != "front"', false], ['tier != "back"', true], ['nope != "front"', true],
    ['empty == ""', true], ['nope == ""', false], ['nope != ""', true],
    // contains / starts with / ends with: false when absent.
    ['app contains "b-f"', true], ['app contains "zz"', false], ['nope contains ""', false], ['empty contains ""', true],
    ['app starts with "web"', true], ['app starts with "front"', false], ['nope starts with ""', false],
    ['app ends with "front"', true], ['app ends with "web"', false], ['nope ends with ""', false],
    ['app startswith "web"', true], ['app starts  with "web"', true], ['app starts\twith"web"', true], ['app endswith"front"', true],
    ['app contains"web"', true],
    // in / not in: absent is false for in, true for not in.
    ['tier in {"front", "back"}', true], ['tier in {"back"}', false], ['nope in {"front"}', false],
    ['tier not in {"front"}', false], ['tier not in {"back"}', true], ['nope not in {"front"}', true],
    ['tier in {"back", "front",}', true], ['tier in {}', false], ['tier not in {}', true], ['nope not in {}', true],
    ['tier notin{"back"}', true], ['tier not   in {"front"}', false], ['tier in{\'front\'}', true],
    // has, all, global, the empty selector.
    ['has(tier)', true], ['has(nope)', false], ['has( tier )', true], ['has(\ttier\t)', true], ['has(empty)', true],
    ['all()', true], ['all( )', true], ['global()', true], ['', true], ['   ', true], ['\t \t', true],
    // Both quotes, no escapes.
    ["tier == 'front'", true], ['k8s.io/role == \'edge\'', true], ['a_b-c.d/e == "x"', true], ['has(k8s.io/role)', true],
    // Labels that look like keywords are labels when not followed by ( or not after a label.
    ['nope == "it\'s"', false], ['in == "x"', false], ['not != "x"', true], ['contains != "x"', true], ['has != "x"', true],
    // Precedence: ! over && over ||.
    ['tier == "back" || app == "web-front" && has(nope)', false],
    ['tier == "front" || app == "x" && has(nope)', true],
    ['(tier == "front" || app == "x") && has(nope)', false],
    ['!has(nope) && has(tier)', true], ['!has(tier) && has(tier)', false], ['!(has(tier) && has(nope))', true],
    ['!!has(tier)', true], ['!!!has(tier)', false], ['! ! has(tier)', true],
    ['!tier == "back"', true], ['!tier in {"front"}', false],
    ['has(tier)&&has(app)||has(nope)', true], ['((has(tier)))', true], ['!(tier != "front")', true],
  ];
  it.each(cases)('%j → %s', (text, expected) => {
    expect(parseSelector(text)(labels)).toBe(expected);
  });

  it('precedence table over all label maps: a == "1" || b == "2" && c == "3"', () => {
    const sel = parseSelector('a == "1" || b == "2" && c == "3"');
    for (let bits = 0; bits < 8; bits++) {
      const l: Record<string, string> = {};
      if (bits & 1) l.a = '1';
      if (bits & 2) l.b = '2';
      if (bits & 4) l.c = '3';
      expect(sel(l)).toBe(Boolean(bits & 1) || (Boolean(bits & 2) && Boolean(bits & 4)));
    }
  });

  it('ignores properties inherited from Object.prototype', () => {
    expect(parseSelector('has(constructor)')({})).toBe(false);
    expect(parseSelector('toString in {"x"}')({})).toBe(false);
    expect(parseSelector('toString not in {"x"}')({})).toBe(true);
    expect(parseSelector('constructor contains "f"')({})).toBe(false);
  });

  it('caches by text and flattens the AST', () => {
    expect(parseSelector('has(a) && has(b)')).toBe(parseSelector('has(a) && has(b)'));
    expect(parseSelectorExpr('has(a) && has(b) && has(c)')).toEqual({ kind: 'and', exprs: ['a', 'b', 'c'].map((label) => ({ kind: 'has', label })) });
    expect(parseSelectorExpr('!!has(a)')).toEqual({ kind: 'has', label: 'a' });
    expect(parseSelectorExpr('')).toEqual({ kind: 'all' });
  });

  it('tells whether global() is used', () => {
    expect(usesGlobal('global()')).toBe(true);
    expect(usesGlobal('has(a) || !(global() && all())')).toBe(true);
    expect(usesGlobal('has(global) && global == "x"')).toBe(false);
    expect(usesGlobal('')).toBe(false);
    expect(() => usesGlobal('global(')).toThrow(InvalidRequestError);
  });

  it('accepts labels of 512 characters and refuses 513', () => {
    expect(parseSelector(`has(${'a'.repeat(512)})`)({ ['a'.repeat(512)]: '' })).toBe(true);
    expect(() => parseSelector(`${'a'.repeat(513)} == "x"`)).toThrow(/at position 512: a label is at most 512 characters/);
  });
});

describe('selector errors name the 0-based position', () => {
  const bad: [string, number, RegExp][] = [
    ['(has(a)', 7, /\(the end\): expected \), && or \|\|/],
    ['(has(a) || has(b)', 17, /expected \), && or \|\|/],
    ['a = "b"', 2, /expected == \(a single = is not an operator\)/],
    ['has(a) & has(b)', 7, /expected &&/],
    ['has(a) | has(b)', 7, /expected \|\|/],
    ['has(a) &&\nhas(b)', 9, /line break/],
    ['has (a)', 4, /expected an operator.*write has\( with no space/],
    ['a ==', 4, /\(the end\): expected a quoted string/],
    ['a == && has(b)', 5, /expected a quoted string/],
    ['a == "b', 5, /unterminated string: no closing "/],
    ["a in {'b", 6, /unterminated string: no closing '/],
    ['has(a) && ', 10, /expected a label, has\(\), all\(\), global\(\), ! or \(/],
    ['has(a) ||', 9, /expected a label/],
    ['!', 1, /expected a label/],
    ['has(', 4, /expected a label inside has\(\)/],
    ['has()', 4, /expected a label inside has\(\)/],
    ['has(a b)', 6, /expected \) to close has\(/],
    ['all(x)', 4, /expected \) to close all\(/],
    ['global (', 7, /expected an operator/],
    ['a', 1, /expected an operator/],
    ['a b', 2, /expected an operator/],
    ['a instance {"x"}', 2, /expected an operator/],
    ['a in "x"', 5, /expected \{/],
    ['a in {"x" "y"}', 10, /expected , or \}/],
    ['a in {,}', 6, /expected a quoted string or \}/],
    ['a in {"x",,}', 10, /expected a quoted string or \}/],
    ['has(a) has(b)', 7, /expected &&, \|\| or the end/],
    ['has(a))', 6, /expected &&, \|\| or the end/],
    ['a == "b" ^', 9, /unexpected character "\^"/],
    ['a == b', 5, /expected a quoted string/],
  ];
  it.each(bad)('%j fails at %i', (text, position, message) => {
    let error: unknown;
    try {
      parseSelector(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidRequestError);
    const text2 = (error as Error).message;
    expect(text2).toContain(`invalid selector ${JSON.stringify(text)} at position ${position}`);
    expect(text2).toMatch(message);
  });
});

describe('selector properties', () => {
  const keys = ['a', 'b', 'c'];
  const labelMap = fc.dictionary(fc.constantFrom(...keys), fc.constantFrom('1', '2', 'x1', ''));
  const atom = fc.oneof(
    fc.constantFrom(...keys).map((k) => `has(${k})`),
    fc.tuple(fc.constantFrom(...keys), fc.constantFrom('==', '!=', 'contains', 'starts with', 'ends with'), fc.constantFrom('1', '2', 'x', '')).map(([k, op, v]) => `${k} ${op} "${v}"`),
    fc.tuple(fc.constantFrom(...keys), fc.constantFrom('in', 'not in'), fc.subarray(['1', '2', 'x1'])).map(([k, op, vs]) => `${k} ${op} {${vs.map((v) => `'${v}'`).join(', ')}}`),
  );
  const { expr } = fc.letrec<{ expr: string }>((tie) => ({
    expr: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      atom,
      tie('expr').map((e) => `!(${e})`),
      fc.tuple(tie('expr'), tie('expr')).map(([x, y]) => `(${x}) && (${y})`),
      fc.tuple(tie('expr'), tie('expr')).map(([x, y]) => `(${x}) || (${y})`),
    ),
  }));

  it('De Morgan: !(A && B) ≡ !A || !B and !(A || B) ≡ !A && !B', () => {
    fc.assert(
      fc.property(expr, expr, labelMap, (a, b, l) => {
        expect(parseSelector(`!((${a}) && (${b}))`)(l)).toBe(parseSelector(`!(${a}) || !(${b})`)(l));
        expect(parseSelector(`!((${a}) || (${b}))`)(l)).toBe(parseSelector(`!(${a}) && !(${b})`)(l));
      }),
      { numRuns: 300 },
    );
  });

  it('!= is the negation of == and not in of in, absent labels included', () => {
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.constantFrom('1', '2', ''), labelMap, (k, v, l) => {
        expect(parseSelector(`${k} != "${v}"`)(l)).toBe(!parseSelector(`${k} == "${v}"`)(l));
        expect(parseSelector(`${k} not in {"${v}"}`)(l)).toBe(!parseSelector(`${k} in {"${v}"}`)(l));
      }),
    );
  });
});
