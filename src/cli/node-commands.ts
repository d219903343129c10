import type { Command } from 'commander';
import { NotFoundError } from '../domain/errors.js';
import { checkSummary, formatCheck, systemPasses } from '../services/nodes/checksystem.js';
import { nodeRunSettings, type NodeRunRequest } from '../services/nodes/node-run.js';
import { formatSince, peerStatuses } from '../services/routing/bgp-status.js';
import { addPeerCommands } from './bgp-commands.js';
import { CalicoctlFailure, type CliContext } from './context.js';
import { renderTable } from './table.js';

/** Calico's `node status`: the daemon, then this host's BGP sessions as BIRD reports them, per family. */
async function nodeStatus(ctx: CliContext): Promise<void> {
  if (process.getuid?.() !== 0) {
    ctx.out('Need super user privileges: Operation not permitted');
    throw new CalicoctlFailure('');
  }
  const host = ctx.hostStatus();
  if (!host.daemonRunning()) throw new CalicoctlFailure('Calico process is not running.');
  ctx.out('Calico process is running.');
  const ipip = host.ipipUnavailable();
  if (ipip) ctx.out(`\nIPIP is not available on this host: ${ipip}.`);
  const answer = await host.bgpProtocols(2000);
  if (!answer) {
    ctx.out('\nThe BGP backend process (BIRD) is not running.\n');
    return;
  }
  if ('unreachable' in answer) {
    ctx.write(`Error querying BIRD: unable to connect to BIRDv4 socket: dial unix ${answer.socket}: connect: ${answer.unreachable}`);
    return;
  }
  const protocols = answer.protocols;
  const peers = peerStatuses(protocols, (since) => formatSince(since));
  for (const family of [4, 6] as const) {
    const rows = peers.filter((p) => p.family === family).map((p) => [p.address, p.type, p.state, p.since, p.info]);
    ctx.out(`\nIPv${family} BGP status`);
    ctx.out(rows.length ? renderTable(['PEER ADDRESS', 'PEER TYPE', 'STATE', 'SINCE', 'INFO'], rows, { wrap: 30 }) : `No IPv${family} peers found.`);
  }
  ctx.out('');
}

/** One line a check; exit status 1 when a required check failed. */
async function checkSystem(ctx: CliContext): Promise<void> {
  const results = await ctx.systemCheck().run();
  for (const check of results) ctx.out(formatCheck(check));
  if (!systemPasses(results)) throw new CalicoctlFailure(checkSummary(results));
  ctx.out(checkSummary(results));
}

/** What a command prints (a Calico failure's message included), for the diagnostics archive. */
async function printed(ctx: CliContext, command: (ctx: CliContext) => Promise<void>): Promise<string> {
  let text = '';
  const capture: CliContext = { ...ctx, out: (line) => void (text += `${line}\n`), write: (chunk) => void (text += chunk) };
  try {
    await command(capture);
  } catch (error) {
    if (!(error instanceof CalicoctlFailure)) throw error;
    text += `${error.message}\n`;
  }
  return text;
}

/** Collects this host's diagnostics into one archive, a line an item as it goes, and names the archive. */
async function nodeDiags(ctx: CliContext, flags: { logDir?: string }): Promise<void> {
  const reports = [
    { file: 'node-status.txt', what: 'calicoctl node status', collect: () => printed(ctx, nodeStatus) },
    { file: 'checksystem.txt', what: 'calicoctl node checksystem', collect: () => printed(ctx, checkSystem) },
  ];
  ctx.out(`Collecting diagnostics of node ${ctx.node}`);
  const result = await ctx.collectDiagnostics(reports, flags.logDir, ctx.out);
  if (result.failed.length) ctx.out(`Not collected (each file says why): ${result.failed.join(', ')}`);
  ctx.out(`Diags saved to ${result.path}`);
}

interface NodeRunFlags extends Omit<NodeRunRequest, 'noDefaultIppools'> {
  defaultIppools?: boolean;
  nodeImage?: string;
  libnetwork?: boolean;
}

/** calicoctl v3 `node run`'s flags and calicoctl 0.x `node`'s, on `node` itself: commander gives a parent's options to it wherever they stand. */
function addNodeRunOptions(command: Command): Command {
  return command
    .option('--ip <addr>', 'this node\'s IPv4 address (ADDR or ADDR/len), or autodetect')
    .option('--ip6 <addr>', 'this node\'s IPv6 address, or autodetect')
    .option('--as <as>', 'this node\'s AS number (default: the global AS)')
    .option('--name <nodename>', 'this node\'s name (default: NODENAME, else the hostname)')
    .option('--ip-autodetection-method <method>', 'first-found, can-reach=DEST, interface=REGEX, skip-interface=REGEX, cidr=CIDR')
    .option('--ip6-autodetection-method <method>', 'the same for IPv6')
    .option('--backend <backend>', 'bird, vxlan or none')
    .option('--no-default-ippools', 'create no default IP pools')
    .option('--node-image <image>', 'accepted for calicoctl compatibility and ignored: no container is run')
    .option('--libnetwork', 'calicoctl 0.x: run the libnetwork plugin (always on here)');
}

/** `node run` and 0.x `node --ip=...`: translate the flags, let the service start and watch the daemon. */
async function runNode(ctx: CliContext, flags: NodeRunFlags): Promise<void> {
  const { defaultIppools, nodeImage: _image, libnetwork: _always, ...request } = flags;
  const settings = nodeRunSettings({ ...request, noDefaultIppools: defaultIppools === false }, ctx.env, ctx.datastore);
  if (flags.nodeImage) ctx.out(`Note: --node-image=${flags.nodeImage} is ignored: calico-libnetwork runs this installation's daemon, not a calico/node container.`);
  await ctx.nodeRunner().run(settings, ctx.env, ctx.out);
}

export function addNodeCommands(program: Command, context: () => CliContext): void {
  const node = addNodeRunOptions(program.command('node'))
    .description('this host as a Calico node: start it (node run, or 0.x `node --ip=...`), its BGP status and peers; removing nodes')
    .allowExcessArguments()
    .action(async function (this: Command) {
      if (this.args.length) this.error(`error: unknown command 'node ${this.args[0]}'`);
      // Bare `node` prints help: starting a daemon takes at least one flag of 0.x's form.
      if (Object.keys(this.opts()).every((k) => k === 'defaultIppools')) this.help({ error: true });
      await runNode(context(), this.opts<NodeRunFlags>());
    });
  addNodeRunOptions(node.command('run'))
    .description("start (or restart with new settings) this host's daemon, as calicoctl node run starts calico/node")
    .action(async function (this: Command) {
      await runNode(context(), this.optsWithGlobals<NodeRunFlags>());
    });
  node
    .command('status')
    .description("this host's BGP sessions (from BIRD's control socket in CALICO_RUN_DIR)")
    .action(() => nodeStatus(context()));
  node
    .command('checksystem')
    .description('whether this host can run the daemon: kernel modules, iptables and ipset, BIRD, sysctls, Docker (exit 1 when a required check fails)')
    .action(() => checkSystem(context()));
  node
    .command('diags')
    .description("this host's routes, iptables, ipsets, BIRD's view, logs and etcd resources in one tar.gz archive (its path is printed)")
    .option('--log-dir <dir>', "where the daemon's log file is, when calicoctl node run started it without systemd (default CALICO_LOG_DIR, else /var/log/calico)")
    .action((flags: { logDir?: string }) => nodeDiags(context(), flags));
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
