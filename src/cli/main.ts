#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { AppError } from '../domain/errors.js';
import { addBgpCommands } from './bgp-commands.js';
import { CalicoctlFailure, CliContext, contextFromEnv } from './context.js';
import { addIpamCommands } from './ipam-commands.js';
import { addNodeCommands } from './node-commands.js';
import { addPoolCommands } from './pool-commands.js';
import { addProfileCommands } from './profile-commands.js';
import { addResourceCommands } from './resource-commands.js';
import { silenceGrpcTlsWarning } from '../daemon/warnings.js';

silenceGrpcTlsWarning();

let context: CliContext | undefined;
const getContext = (): CliContext => (context ??= contextFromEnv(process.env));

const program = new Command('calicoctl')
  .description(
    'Manage Calico networking for Docker: IP pools, IPAM, profiles, nodes and BGP, in calicoctl 0.x words and Calico v3 verbs.\n' +
      'Datastore from ETCD_ENDPOINTS (default http://127.0.0.1:2379) and ETCD_CA_CERT_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE.',
  )
  .exitOverride();
addResourceCommands(program, getContext);
addPoolCommands(program, getContext);
addProfileCommands(program, getContext);
addIpamCommands(program, getContext, (code) => {
  process.exitCode = code;
});
addNodeCommands(program, getContext);
addBgpCommands(program, getContext);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode;
  } else if (error instanceof CalicoctlFailure) {
    if (error.message) process.stderr.write(`${error.message}\n`);
    process.exitCode = 1;
  } else {
    const message = error instanceof AppError || error instanceof Error ? error.message : String(error);
    process.stderr.write(`Error: ${message}\n`);
    process.exitCode = 1;
  }
} finally {
  context?.close();
}
