import { Command, CommanderError } from 'commander';
import { addBgpCommands } from './bgp-commands.js';
import { CalicoctlFailure, CliContext, CliIo, contextFrom } from './context.js';
import { addEndpointCommands } from './endpoint-commands.js';
import { addIpamCommands } from './ipam-commands.js';
import { addNodeCommands } from './node-commands.js';
import { addPoolCommands } from './pool-commands.js';
import { addProfileCommands } from './profile-commands.js';
import { addResourceCommands } from './resource-commands.js';
import { addVersionCommand, printVersion } from './version-command.js';

/**
 * calicoctl: runs one command line (the words after the program name) and resolves with its exit
 * status. Success goes to stdout; failures to stderr, as Calico's own words where calicoctl has them.
 */
export async function runCalicoctl(args: string[], io: CliIo): Promise<number> {
  let context: CliContext | undefined;
  let status = 0;
  const program = new Command('calicoctl')
    .description(
      'Manage Calico networking for Docker: IP pools, IPAM, profiles, endpoints, nodes and BGP, in calicoctl 0.x words and Calico v3 verbs.\n' +
        'Datastore from ETCD_ENDPOINTS (or ETCD_SCHEME://ETCD_AUTHORITY) and ETCD_CA_CERT_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE,\n' +
        'over the config file (-c, default /etc/calico/calicoctl.cfg if it exists), over http://127.0.0.1:2379.',
    )
    .option('-c, --config <file>', 'calicoctl config file (calicoApiConfig v1 or CalicoAPIConfig v3) [default: /etc/calico/calicoctl.cfg]')
    .option('--version', "print calicoctl's and the cluster's versions")
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  const getContext = (): CliContext => (context ??= contextFrom(io, program.opts<{ config?: string }>().config));
  program.allowExcessArguments().action(async (options: { version?: boolean }) => {
    if (program.args.length) program.error(`error: unknown command '${program.args[0]}'`);
    if (options.version) await printVersion(getContext, (text) => io.stdout(`${text}\n`));
    else program.help({ error: true });
  });
  addResourceCommands(program, getContext);
  addPoolCommands(program, getContext);
  addProfileCommands(program, getContext);
  addEndpointCommands(program, getContext);
  addIpamCommands(program, getContext, (code) => {
    status = code;
  });
  addNodeCommands(program, getContext);
  addBgpCommands(program, getContext);
  addVersionCommand(program, getContext, (text) => io.stdout(`${text}\n`));
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof CalicoctlFailure) {
      if (error.message) io.stderr(`${error.message}\n`);
    } else {
      io.stderr(`Error: ${error instanceof Error ? error.message : String(error)}\n`);
    }
    return 1;
  } finally {
    context?.close();
  }
  return status;
}
