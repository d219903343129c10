import { describe, expect, it } from 'vitest';
import { byText, naturalOrder } from '../src/domain/text-order.js';

describe('text orders (locale-free)', () => {
  it('natural order: addresses and CIDRs by their numbers, as the numeric collation ordered them', () => {
    const cidrs = ['10.0.0.10/32', '10.0.0.2/32', '10.0.0.2/26', '9.1.0.0/16', '10.0.1.0/26', 'fd00::a/128', 'fd00::1/128'];
    const collated = [...cidrs].sort(new Intl.Collator('en', { numeric: true }).compare);
    expect([...cidrs].sort(naturalOrder)).toEqual(collated);
    expect([...cidrs].sort(naturalOrder)).toEqual(['9.1.0.0/16', '10.0.0.2/26', '10.0.0.2/32', '10.0.0.10/32', '10.0.1.0/26', 'fd00::1/128', 'fd00::a/128']);
    expect(naturalOrder('node-2', 'node-10')).toBeLessThan(0);
    expect(naturalOrder('a', 'a1')).toBeLessThan(0);
    expect(naturalOrder('x01', 'x1')).not.toBe(0);
  });

  it('text order: by code unit, the same in every locale', () => {
    expect(['b', 'B', 'a-b', 'ab', 'a'].sort(byText)).toEqual(['B', 'a', 'a-b', 'ab', 'b']);
  });
});
