import { spawnSync } from 'node:child_process';
import { birdCommand, parseProtocols } from '../../src/adapters/bird/bird-control.js';
import { peerStatuses } from '../../src/services/routing/bgp-status.js';
import { post } from './daemon.js';
import type { DockerHost } from './docker-host.js';
import type { BirdRouter } from './underlay.js';

/** What BGP tests do to hosts (namespaces with a daemon and BIRD, no dockerd) and see in them. */

/** The namespace's main routing table, as `ip route` prints it. */
export const routes = (host: DockerHost | BirdRouter): string => spawnSync('ip', ['-n', host.netns, 'route'], { encoding: 'utf8' }).stdout;

/** The /26 holding an address. */
export const blockOf = (address: string): string => {
  const [a, b, c, d] = address.split('/')[0]!.split('.').map(Number);
  return `${a}.${b}.${c}.${d! & ~63}/26`;
};

/** An address from the host's IPAM driver, as Docker asks for one. */
export async function requestAddress(host: DockerHost, pool = 'CalicoPoolIPv4'): Promise<string> {
  const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: pool, Address: '' });
  if (reply.status !== 200) throw new Error(`RequestAddress on ${host.node}: ${reply.text}`);
  return (reply.body.Address as string).split('/')[0]!;
}

export async function releaseAddress(host: DockerHost, address: string): Promise<void> {
  const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: address });
  if (reply.status !== 200) throw new Error(`ReleaseAddress on ${host.node}: ${reply.text}`);
}

/** calicoctl on the host; its output, or an error with what it said. */
export function ctl(host: DockerHost, args: string[], input?: string): string {
  const result = host.calicoctl(args, input);
  if (result.status !== 0) throw new Error(`calicoctl ${args.join(' ')} on ${host.node}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

/** The host's BGP sessions straight from its BIRD's control socket (no calicoctl process): address → info. */
export async function birdSessions(host: DockerHost): Promise<Map<string, string>> {
  const reply = await birdCommand(host.runPath('bird.ctl'), 'show protocols', 1000).catch(() => undefined);
  if (!reply) return new Map();
  return new Map(peerStatuses(parseProtocols(reply), (s) => s).map((p) => [p.address, p.info]));
}

/** Exactly these IPv4 peers, all Established. */
export async function established(host: DockerHost, peers: string[]): Promise<boolean> {
  const current = [...(await birdSessions(host))].filter(([address]) => !address.includes(':'));
  return current.length === peers.length && current.every(([address, info]) => peers.includes(address) && info === 'Established');
}

/**
 * A top-of-rack BIRD's configuration: it peers with each of `neighbours` (hosts in the default AS
 * 64512), learns their routes into its kernel and advertises nothing.
 */
export function torConfig(address: string, asNumber: number, neighbours: string[]): string {
  return [
    `router id ${address};`,
    'protocol device { scan time 2; }',
    'protocol direct { ipv4; interface "eth0"; }',
    'protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }',
    `template bgp calico { local ${address} as ${asNumber}; multihop; ipv4 { import all; export none; }; graceful restart; connect delay time 1; connect retry time 2; }`,
    ...neighbours.map((ip, i) => `protocol bgp h${i + 1} from calico { neighbor ${ip} as 64512; }`),
    '',
  ].join('\n');
}
