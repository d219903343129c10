import { execFileSync, spawnSync } from 'node:child_process';
import { Underlay } from '../test/helpers/underlay.js';

const VXLAN_OVERHEAD = 50;

/** How to run a command at a path's two ends, and the address the client talks to. */
export interface Ends {
  client: string[];
  server: string[];
  target: string;
}

export const enterNs = (netns: string): string[] => ['nsenter', `--net=/run/netns/${netns}`, '--'];

const ip = (args: string[]): void => void execFileSync('ip', args);

interface FloorHost {
  netns: string;
  underlayIp: string;
  routed: { netns: string; ip: string };
  vxlan: { netns: string; ip: string; vtep: string; mac: string };
}

/**
 * The fair floor for the container paths: two more hosts on the same underlay, no Calico, each with
 * one plain-Linux "container" per path built the way the daemon builds them —
 * a veth with proxy ARP for 169.254.1.1 and a /32 route, then a route to the other host's container
 * via its address (routed) or through a VXLAN device laid out as Felix's (VNI 4096, port 4789,
 * permanent neighbour and FDB entries, onlink route, veth MTU 50 below the underlay's). Its hosts
 * track connections (one `ctstate ESTABLISHED` accept): every Docker host does, for Docker's own
 * rules, and any stateful policy needs it. What is left between this floor and the host-to-host
 * limit is the cost of a veth, a tunnel and conntrack, which no implementation avoids; what is
 * between the floor and Calico's paths is ours.
 */
export class BareFloor {
  private readonly hosts: FloorHost[];
  private readonly containers: string[] = [];

  constructor(private readonly underlay: Underlay, underlayIps: [string, string]) {
    this.hosts = underlayIps.map((underlayIp, i) => ({
      netns: '',
      underlayIp,
      routed: { netns: `calib-${process.pid}-r${i + 1}`, ip: `10.230.${i + 1}.2` },
      vxlan: { netns: `calib-${process.pid}-v${i + 1}`, ip: `10.231.${i + 1}.2`, vtep: `10.231.${i + 1}.1`, mac: `66:00:00:00:00:0${i + 1}` },
    }));
  }

  build(): { routed: Ends; vxlan: Ends } {
    for (const [i, host] of this.hosts.entries()) {
      host.netns = this.underlay.namespace(`floor${i + 1}`, `${host.underlayIp}/24`);
      // A default route through an address nobody holds: proxy ARP answers only with one.
      ip(['-n', host.netns, 'route', 'add', 'default', 'via', '10.47.0.254']);
      execFileSync('ip', ['netns', 'exec', host.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      execFileSync('ip', ['netns', 'exec', host.netns, 'iptables', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
      const mtu = Number(execFileSync('ip', ['netns', 'exec', host.netns, 'cat', '/sys/class/net/eth0/mtu'], { encoding: 'utf8' }).trim());
      this.container(host.netns, 'calir', host.routed, mtu);
      this.container(host.netns, 'caliv', host.vxlan, mtu - VXLAN_OVERHEAD);
      ip(['-n', host.netns, 'link', 'add', 'vxlan.bare', 'address', host.vxlan.mac, 'mtu', String(mtu - VXLAN_OVERHEAD), 'type', 'vxlan', 'id', '4096', 'dstport', '4789', 'local', host.underlayIp, 'dev', 'eth0', 'nolearning', 'noudpcsum']);
      ip(['-n', host.netns, 'addr', 'add', `${host.vxlan.vtep}/32`, 'dev', 'vxlan.bare']);
      ip(['-n', host.netns, 'link', 'set', 'vxlan.bare', 'up']);
    }
    for (const [host, other] of [this.hosts, [...this.hosts].reverse()].map(([a, b]) => [a!, b!] as const)) {
      ip(['-n', host.netns, 'route', 'add', `${other.routed.ip}/32`, 'via', other.underlayIp]);
      ip(['-n', host.netns, 'neigh', 'replace', other.vxlan.vtep, 'lladdr', other.vxlan.mac, 'dev', 'vxlan.bare', 'nud', 'permanent']);
      execFileSync('bridge', ['-n', host.netns, 'fdb', 'replace', other.vxlan.mac, 'dev', 'vxlan.bare', 'dst', other.underlayIp, 'self', 'permanent']);
      ip(['-n', host.netns, 'route', 'add', `${other.vxlan.ip}/32`, 'via', other.vxlan.vtep, 'dev', 'vxlan.bare', 'onlink']);
    }
    const [a, b] = this.hosts as [FloorHost, FloorHost];
    return {
      routed: { client: enterNs(a.routed.netns), server: enterNs(b.routed.netns), target: b.routed.ip },
      vxlan: { client: enterNs(a.vxlan.netns), server: enterNs(b.vxlan.netns), target: b.vxlan.ip },
    };
  }

  destroy(): void {
    for (const netns of this.containers) spawnSync('ip', ['netns', 'del', netns]);
  }

  /** A "container" namespace behind a veth, as the dataplane adapter makes one. */
  private container(hostNs: string, hostSide: string, container: { netns: string; ip: string }, mtu: number): void {
    spawnSync('ip', ['netns', 'del', container.netns]);
    ip(['netns', 'add', container.netns]);
    this.containers.push(container.netns);
    ip(['-n', hostNs, 'link', 'add', hostSide, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(mtu), 'netns', container.netns]);
    for (const setting of [`net.ipv4.conf.${hostSide}.proxy_arp=1`, `net.ipv4.neigh.${hostSide}.proxy_delay=0`]) {
      execFileSync('ip', ['netns', 'exec', hostNs, 'sysctl', '-qw', setting]);
    }
    ip(['-n', hostNs, 'link', 'set', hostSide, 'up']);
    ip(['-n', hostNs, 'route', 'add', `${container.ip}/32`, 'dev', hostSide]);
    ip(['-n', container.netns, 'link', 'set', 'lo', 'up']);
    ip(['-n', container.netns, 'addr', 'add', `${container.ip}/32`, 'dev', 'eth0']);
    ip(['-n', container.netns, 'link', 'set', 'eth0', 'up']);
    ip(['-n', container.netns, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
    ip(['-n', container.netns, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
  }
}
