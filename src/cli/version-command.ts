import type { Command } from 'commander';
import { installedCommit, installedVersion } from '../adapters/host/installation.js';
import { readClusterInformation } from '../services/nodes/cluster-information.js';
import { CalicoctlFailure, type CliContext } from './context.js';

const line = (label: string, value: string): string => `${`${label}:`.padEnd(19)}${value}`;

/** calicoctl's version lines: this client, then the cluster as ClusterInformation `default` records it. */
export async function printVersion(ctx: () => CliContext, out: (text: string) => void): Promise<void> {
  out(line('Client Version', installedVersion()));
  out(line('Git commit', installedCommit()));
  let failure: Error | undefined;
  let spec: { calicoVersion?: string; clusterType?: string } = {};
  try {
    spec = (await readClusterInformation(ctx().resourceStore))?.spec ?? {};
  } catch (error) {
    failure = error as Error;
  }
  out(line('Cluster Version', spec.calicoVersion || 'unknown'));
  out(line('Cluster Type', spec.clusterType || 'unknown'));
  if (failure) throw new CalicoctlFailure(`Unable to retrieve Cluster Version or Type: ${failure.message}`);
}

export function addVersionCommand(program: Command, context: () => CliContext, out: (text: string) => void): void {
  program
    .command('version')
    .description("this calicoctl's version and the cluster's (from ClusterInformation default)")
    .action(() => printVersion(context, out));
}
