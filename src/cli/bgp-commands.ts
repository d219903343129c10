import type { Command } from 'commander';
import { InvalidRequestError } from '../domain/errors.js';
import { BgpSettings } from '../services/routing/bgp-settings.js';
import { CalicoctlFailure, type CliContext } from './context.js';
import { renderTable } from './table.js';

const familyOf = (address: string): 4 | 6 => (address.includes(':') ? 6 : 4);

/** `bgp peer show`'s tables: one per family, or calicoctl 0.x's "none defined" line. */
function showPeers(ctx: CliContext, peers: { address: string; asNumber: number }[], title: (family: 4 | 6) => string, none: (family: 4 | 6) => string, families: (4 | 6)[]): void {
  for (const family of families) {
    const rows = peers.filter((p) => familyOf(p.address) === family).map((p) => [p.address, String(p.asNumber)]);
    if (rows.length === 0) ctx.out(`${none(family)}\n`);
    else ctx.out(`${renderTable([title(family), 'AS Num'], rows)}\n`);
  }
}

function familiesFrom(options: { ipv4?: boolean; ipv6?: boolean }): (4 | 6)[] {
  if (options.ipv4 && !options.ipv6) return [4];
  if (options.ipv6 && !options.ipv4) return [6];
  return [4, 6];
}

/** `peer add|remove|show` under `bgp` (global peers) or `node bgp` (this node's). */
export function addPeerCommands(parent: Command, context: () => CliContext, scope: 'global' | 'node'): void {
  const peer = parent.command('peer').description(scope === 'global' ? 'BGP peers of every node' : "this node's own BGP peers");
  const node = (ctx: CliContext): string | undefined => (scope === 'node' ? ctx.node : undefined);
  peer
    .command('add <address> <as> <asNumber>')
    .description('add a BGP peer: calicoctl bgp peer add 10.0.0.1 as 64567')
    .action(async (address: string, as: string, asNumber: string) => {
      if (as !== 'as') throw new InvalidRequestError(`expected "as <AS number>" after the address, not ${JSON.stringify(as)}`);
      const ctx = context();
      await new BgpSettings(ctx.resourceStore).addPeer(address, asNumber, node(ctx));
    });
  peer
    .command('remove <address>')
    .description('remove a BGP peer')
    .action(async (address: string) => {
      const ctx = context();
      if (!(await new BgpSettings(ctx.resourceStore).removePeer(address, node(ctx)))) {
        throw new CalicoctlFailure(scope === 'global' ? `${address} is not a globally configured peer.` : `${address} is not a configured peer for this node.`);
      }
      ctx.out(scope === 'global' ? 'BGP peer removed from global configuration' : 'BGP peer removed from node configuration');
    });
  peer
    .command('show')
    .description('list BGP peers')
    .option('--ipv4', 'IPv4 peers only')
    .option('--ipv6', 'IPv6 peers only')
    .action(async (options: { ipv4?: boolean; ipv6?: boolean }) => {
      const ctx = context();
      const peers = await new BgpSettings(ctx.resourceStore).peers(node(ctx));
      if (scope === 'global') showPeers(ctx, peers, (f) => `Global IPv${f} BGP Peer`, (f) => `No global IPv${f} BGP Peers defined.`, familiesFrom(options));
      else showPeers(ctx, peers, (f) => `Node specific IPv${f} BGP Peer`, (f) => `No IPv${f} BGP Peers defined for this node.`, familiesFrom(options));
    });
}

/** calicoctl 0.x's `bgp` words, kept as Calico v3 resources (BGPPeer, BGPConfiguration `default`). */
export function addBgpCommands(program: Command, context: () => CliContext): void {
  const bgp = program.command('bgp').description('BGP peers, the node-to-node mesh and the default AS');
  addPeerCommands(bgp, context, 'global');
  bgp
    .command('node-mesh [state]')
    .description('show, or turn on or off, the full node-to-node BGP mesh')
    .action(async (state: string | undefined) => {
      const ctx = context();
      const settings = new BgpSettings(ctx.resourceStore);
      if (state === undefined) return ctx.out((await settings.meshEnabled()) ? 'on' : 'off');
      if (state !== 'on' && state !== 'off') throw new InvalidRequestError(`node-mesh takes on or off, not ${JSON.stringify(state)}`);
      await settings.setMesh(state === 'on');
    });
  bgp
    .command('default-node-as [asNumber]')
    .description('show or set the AS number of nodes that have none of their own (default 64512)')
    .action(async (asNumber: string | undefined) => {
      const ctx = context();
      const settings = new BgpSettings(ctx.resourceStore);
      if (asNumber === undefined) return ctx.out(String(await settings.defaultAsNumber()));
      await settings.setDefaultAsNumber(asNumber);
    });
}
