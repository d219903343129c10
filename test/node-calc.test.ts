import { describe, expect, it } from 'vitest';
import { parseProtocols, parseReply } from '../src/adapters/bird/bird-control.js';
import { renderTable } from '../src/cli/table.js';
import { parseIp } from '../src/domain/cidr.js';
import { parseAsNumber } from '../src/domain/resources.js';
import type { HostInterface } from '../src/ports/dataplane.js';
import { detectAddress, parseDetectionMethod } from '../src/services/nodes/address-detection.js';
import { mergePatch } from '../src/services/resources/merge-patch.js';
import { formatSince, peerStatuses } from '../src/services/routing/bgp-status.js';

const iface = (index: number, name: string, addresses: string[], up = true): HostInterface => ({
  name,
  index,
  up,
  mtu: 1500,
  addresses: addresses.map((a) => ({ address: parseIp(a.split('/')[0]!), prefix: Number(a.split('/')[1]) })),
});

const host = [
  iface(1, 'lo', ['127.0.0.1/8', '::1/128']),
  iface(2, 'eth0', ['10.0.0.5/24', 'fe80::1/64', 'fd00::5/64']),
  iface(3, 'docker0', ['172.17.0.1/16']),
  iface(4, 'eth1', ['192.168.9.5/24']),
  iface(5, 'cali123', ['169.254.1.1/32']),
  iface(6, 'br-0a1b2c', ['172.18.0.1/16']),
  iface(7, 'wlo1', ['10.9.9.9/24'], false),
];

describe("calico/node's address autodetection", () => {
  it('first-found: highest interface index first, skipping docker*, br-*, cali*, lo and down links', () => {
    expect(detectAddress(parseDetectionMethod(undefined), host, 4)).toEqual({ cidr: '192.168.9.5/24', interfaceName: 'eth1' });
    expect(detectAddress(parseDetectionMethod('first-found'), host, 6)).toEqual({ cidr: 'fd00::5/64', interfaceName: 'eth0' });
  });

  it('interface=, skip-interface=, cidr= and can-reach (the route source the kernel picked)', () => {
    expect(detectAddress(parseDetectionMethod('interface=eth0'), host, 4)?.cidr).toBe('10.0.0.5/24');
    expect(detectAddress(parseDetectionMethod('interface=docker.*, eth9'), host, 4)?.cidr).toBe('172.17.0.1/16');
    expect(detectAddress(parseDetectionMethod('skip-interface=eth1'), host, 4)?.cidr).toBe('10.0.0.5/24');
    expect(detectAddress(parseDetectionMethod('cidr=10.0.0.0/8,172.18.0.0/16'), host, 4)?.cidr).toBe('172.18.0.1/16');
    expect(detectAddress(parseDetectionMethod('can-reach=10.0.0.1'), host, 4, parseIp('10.0.0.5'))).toEqual({ cidr: '10.0.0.5/24', interfaceName: 'eth0' });
    expect(detectAddress(parseDetectionMethod('cidr=10.99.0.0/16'), host, 4)).toBeUndefined();
  });

  it('refuses methods it does not know, or without their value', () => {
    expect(() => parseDetectionMethod('banana')).toThrow(/invalid IP_AUTODETECTION_METHOD="banana": use first-found, interface=REGEX/);
    expect(() => parseDetectionMethod('interface=')).toThrow(/interface needs a value/);
    expect(() => parseDetectionMethod('interface=(', 'IP6_AUTODETECTION_METHOD')).toThrow(/invalid IP6_AUTODETECTION_METHOD: "\(" is not a regular expression/);
  });

  it('AS numbers: plain and asdot, 1 to 4294967295', () => {
    expect(parseAsNumber('64512')).toBe(64512);
    expect(parseAsNumber('1.10')).toBe(65546);
    expect(parseAsNumber(4294967295)).toBe(4294967295);
    for (const bad of ['0', '4294967296', '-1', '1.5.5', '65536.1', 'x', '']) expect(() => parseAsNumber(bad)).toThrow(/expected a number from 1 to 4294967295/);
  });
});

describe("BIRD's control socket replies", () => {
  const capture =
    '2002-Name       Proto      Table      State  Since         Info\n' +
    '1002-device1    Device     ---        up     1796160995    \n' +
    ' kernel4    Kernel     master4    up     1796160995    \n' +
    ' Mesh_10_47_0_2 BGP        ---        up     1796160997    Established   \n' +
    ' Global_10_0_0_9_port_1790 BGP        ---        start  1796160997    Active        Socket: Connection refused\n' +
    ' Node_fd00__3 BGP        ---        up     1796160998    Established   \n' +
    ' Mesh_10_47_0_3 BGP        ---        down   1796160998    \n' +
    '0000 \n';

  it('collects lines until the first code followed by a space; continuation lines keep the code', () => {
    expect(parseReply('0001 BIRD 2.0.12 ready.\n')).toEqual({ reply: { code: 1, lines: [{ code: 1, text: 'BIRD 2.0.12 ready.' }] }, rest: '' });
    expect(parseReply(capture.slice(0, 120))).toBeUndefined();
    const parsed = parseReply(`${capture}0001 next`);
    expect(parsed?.reply.code).toBe(0);
    expect(parsed?.rest).toBe('0001 next');
    expect(parsed?.reply.lines.filter((l) => l.code === 1002)).toHaveLength(6);
  });

  it("maps protocols to calicoctl node status's peers, per family, with BIRD's info text", () => {
    const rows = parseProtocols(parseReply(capture)!.reply);
    expect(peerStatuses(rows, (s) => s)).toEqual([
      { family: 4, address: '10.47.0.2', type: 'node-to-node mesh', state: 'up', since: '1796160997', info: 'Established' },
      { family: 4, address: '10.0.0.9', type: 'global', state: 'start', since: '1796160997', info: 'Active Socket: Connection refused' },
      { family: 6, address: 'fd00::3', type: 'node specific', state: 'up', since: '1796160998', info: 'Established' },
    ]);
    expect(() => parseProtocols({ code: 0, lines: [{ code: 2002, text: 'name what' }] })).toThrow(/unknown BIRD table output format/);
  });

  it('shows the time of a recent change, the date of an older one', () => {
    const now = new Date(2026, 11, 1, 12, 0, 0);
    expect(formatSince(String(now.getTime() / 1000 - 3600), now)).toBe('11:00:00');
    expect(formatSince(String(now.getTime() / 1000 - 3 * 86400), now)).toBe('2026-11-28');
  });
});

describe('calicoctl tables and patches', () => {
  it('wraps long cells at 30 characters on word boundaries, as calicoctl node status does', () => {
    expect(renderTable(['PEER ADDRESS', 'INFO'], [['10.0.0.5', 'Active Socket: Connection refused']], { wrap: 30 })).toBe(
      [
        '+--------------+---------------------------+',
        '| PEER ADDRESS |           INFO            |',
        '+--------------+---------------------------+',
        '| 10.0.0.5     | Active Socket: Connection |',
        '|              | refused                   |',
        '+--------------+---------------------------+',
      ].join('\n'),
    );
  });

  it('merge patch: objects merge, null removes, lists and values replace', () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 }, l: [1, 2] }, { b: { c: null, e: 4 }, l: [3], z: 'x' })).toEqual({ a: 1, b: { d: 3, e: 4 }, l: [3], z: 'x' });
  });
});
