import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { birdCommand, BirdUnreachableError, parseProtocols } from '../adapters/bird/bird-control.js';
import { birdPaths } from '../adapters/bird/bird-speaker.js';
import { readHostStatus } from '../adapters/host/status-file.js';
import { DAEMON_PID_FILE } from '../daemon/config.js';
import { NotFoundError } from '../domain/errors.js';
import { formatSince, peerStatuses } from '../services/routing/bgp-status.js';
import { addPeerCommands } from './bgp-commands.js';
import { CalicoctlFailure, type CliContext } from './context.js';
import { renderTable } from './table.js';

function daemonRunning(runDir: string): boolean {
  try {
    const pid = Number(readFileSync(join(runDir, DAEMON_PID_FILE), 'utf8').trim());
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Calico's `node status`: the daemon, then this host's BGP sessions as BIRD reports them, per family. */
async function nodeStatus(ctx: CliContext): Promise<void> {
  if (process.getuid?.() !== 0) {
    ctx.out('Need super user privileges: Operation not permitted');
    throw new CalicoctlFailure('');
  }
  if (!daemonRunning(ctx.runDir)) throw new CalicoctlFailure('Calico process is not running.');
  ctx.out('Calico process is running.');
  const host = readHostStatus(ctx.runDir);
  if (host.ipipUnavailable) ctx.out(`\nIPIP is not available on this host: ${host.ipipUnavailable}.`);
  const socket = birdPaths(ctx.runDir).socket;
  if (!existsSync(socket)) {
    ctx.out('\nThe BGP backend process (BIRD) is not running.\n');
    return;
  }
  let protocols;
  try {
    protocols = parseProtocols(await birdCommand(socket, 'show protocols', 2000));
  } catch (error) {
    const reason = error instanceof BirdUnreachableError ? error.reason : (error as Error).message;
    ctx.write(`Error querying BIRD: unable to connect to BIRDv4 socket: dial unix ${socket}: connect: ${reason}`);
    return;
  }
  const peers = peerStatuses(protocols, (since) => formatSince(since));
  for (const family of [4, 6] as const) {
    const rows = peers.filter((p) => p.family === family).map((p) => [p.address, p.type, p.state, p.since, p.info]);
    ctx.out(`\nIPv${family} BGP status`);
    ctx.out(rows.length ? renderTable(['PEER ADDRESS', 'PEER TYPE', 'STATE', 'SINCE', 'INFO'], rows, { wrap: 30 }) : `No IPv${family} peers found.`);
  }
  ctx.out('');
}

export function addNodeCommands(program: Command, context: () => CliContext): void {
  const node = program.command('node').description('this host as a Calico node: its BGP status and peers; removing nodes');
  node
    .command('status')
    .description("this host's BGP sessions (from BIRD's control socket in CALICO_RUN_DIR)")
    .action(() => nodeStatus(context()));
  node
    .command('remove <name>')
    .description('remove a node with its endpoints, addresses and block affinities (as calicoctl delete node)')
    .action(async (name: string) => {
      const ctx = context();
      try {
        await ctx.resources().delete({ kind: 'Node', name });
      } catch (error) {
        if (error instanceof NotFoundError) throw new CalicoctlFailure(`Node ${name} does not exist: 'calicoctl get nodes' lists them`);
        throw error;
      }
      ctx.out(`Node ${name} removed`);
    });
  addPeerCommands(node.command('bgp').description("this node's BGP peers"), context, 'node');
}
