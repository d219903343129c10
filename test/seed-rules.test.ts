import { describe, expect, it } from 'vitest';
import { describeRule, fromV3, parsePorts, parseRuleWords, toV3 } from '../src/services/policy/seed-rules.js';

describe('seed-era rule language', () => {
  it('parses rule words as calicoctl 0.x did and prints them back the same', () => {
    for (const text of [
      'allow from tag web',
      'allow tcp to ports 80,443',
      'allow tcp from tag db-users to ports 3306',
      'deny icmp type 8 code 0',
      'allow from cidr 192.168.0.0/16',
      'allow udp from ports 53 cidr 10.0.0.0/8 to !ports 1:1024 !tag other',
      'deny ! tcp',
      'log tcp from !cidr 10.0.0.0/8',
      'allow',
    ]) {
      expect(describeRule(parseRuleWords(text.split(' ')))).toBe(text);
    }
  });

  it('round-trips through Calico v3 rules, a tag being the selector has(tag)', () => {
    const seed = parseRuleWords('allow tcp from tag web cidr 10.0.0.0/8 to ports 80,8000-8080'.split(' '));
    const v3 = toV3(seed);
    expect(v3).toEqual({ action: 'Allow', protocol: 'tcp', source: { selector: 'has(web)', nets: ['10.0.0.0/8'] }, destination: { ports: [80, '8000:8080'] } });
    expect(fromV3(v3)).toEqual(seed);
  });

  it('refuses what calicoctl refused, saying why', () => {
    const cases: [string, RegExp][] = [
      ['allow icmp to ports 80', /Ports are not valid with protocol icmp/],
      ['allow to ports 80', /Ports are not valid with protocol \(none\)/],
      ['allow tcp to ports 70000', /port 70000 is out of range 0-65535/],
      ['allow tcp to ports 90-80', /start above its end/],
      ['allow tcp to ports 80,,81', /invalid port list/],
      ['allow from cidr 10.0.0.0/8 to cidr fd00::/8', /one IP version/],
      ['allow icmp from cidr fd00::/8', /use icmpv6/],
      ['allow from tag bad/tag', /invalid tag name/],
      ['permit tcp', /expected allow, deny or log/],
      ['allow tcp to', /must be followed by ports, tag or cidr/],
      ['allow tcp type 8', /icmp type and code need protocol icmp/],
      ['allow icmp type 300', /icmp_type must be 0-254/],
      ['allow tcp to ports 80 extra', /unexpected "extra"/],
    ];
    for (const [text, message] of cases) expect(() => parseRuleWords(text.split(' ')), text).toThrow(message);
  });

  it('normalises port ranges', () => {
    expect(parsePorts('80,443,1000-2000,3000:3001')).toEqual([80, 443, '1000:2000', '3000:3001']);
  });
});
