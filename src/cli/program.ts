import { Command, CommanderError } from 'commander';
import { addBgpCommands } from './bgp-commands.js';
import { CalicoctlFailure, CliContext, CliIo, contextFrom } from './context.js';
import { addEndpointCommands } from './endpoint-commands.js';
import { addIpamCommands } from './ipam-commands.js';
import { addNodeCommands } from './node-commands.js';
import { addPoolCommands } from './pool-commands.js';
import { addProfileCommands } from './profile-commands.js';
import { addResourceCommands } from './resource-commands.js';

/**
 * calicoctl: runs one command line (the words after the program name) and resolves with its exit
 * status. Success goes to stdout; failures to stderr, as Calico's own words where calicoctl has them.
 */
export async function runCalicoctl(args: string[], io: CliIo): Promise<number> {
  let context: CliContext | undefined;
  const getContext = (): CliContext => (context ??= contextFrom(io));
  let status = 0;
  const program = new Command('calicoctl')
    .description(
      'Manage Calico networking for Docker: IP pools, IPAM, profiles, endpoints, nodes and BGP, in calicoctl 0.x words and Calico v3 verbs.\n' +
        'Datastore from ETCD_ENDPOINTS (default http://127.0.0.1:2379) and ETCD_CA_CERT_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE.',
    )
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  addResourceCommands(program, getContext);
  addPoolCommands(program, getContext);
  addProfileCommands(program, getContext);
  addEndpointCommands(program, getContext);
  addIpamCommands(program, getContext, (code) => {
    status = code;
  });
  addNodeCommands(program, getContext);
  addBgpCommands(program, getContext);
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
