import type { Command } from 'commander';
import { AppError, InvalidRequestError, NotFoundError } from '../domain/errors.js';
import { BgpConfiguration, DEFAULT_AS_NUMBER, DEFAULT_BGP_CONFIGURATION, kindFromWord, KindInfo, Resource } from '../domain/resources.js';
import { CalicoctlFailure, type CliContext } from './context.js';
import { exported, outputFormat, readResources, renderDocument, renderTable } from './resource-io.js';

/** The namespace the network driver writes its workload endpoints in. */
const DEFAULT_NAMESPACE = 'libnetwork';

function kindOf(word: string, failure: (message: string) => string): KindInfo {
  const kind = kindFromWord(word);
  if (!kind) throw new CalicoctlFailure(failure(`resource type '${word}' is not supported`));
  return kind;
}

/** `Successfully created 1 'IPPool' resource(s)`, or without the kind when the file mixes kinds. */
function describeKinds(resources: Resource[]): string {
  const kinds = new Set(resources.map((r) => r.kind));
  return kinds.size === 1 ? ` '${[...kinds][0]}'` : '';
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * Runs `operation` on each resource in order and stops at the first failure, reporting as calicoctl
 * does: success, "Partial success" with what was done, or the failure alone.
 */
async function eachResource(ctx: CliContext, verb: { present: string; past: string }, resources: Resource[], operation: (r: Resource) => Promise<unknown>): Promise<void> {
  let done = 0;
  for (const resource of resources) {
    try {
      await operation(resource);
      done++;
    } catch (error) {
      const kinds = describeKinds(resources);
      if (done > 0) {
        ctx.out(`Partial success: ${verb.past} the first ${done} out of ${resources.length}${kinds} resources:`);
        throw new CalicoctlFailure(`Hit error: ${message(error)}`);
      }
      if (resources.length === 1) throw new CalicoctlFailure(`Failed to ${verb.present}${kinds} resource: ${message(error)}`);
      throw new CalicoctlFailure(`Failed to ${verb.present} any${kinds} resources: ${message(error)}`);
    }
  }
  ctx.out(`Successfully ${verb.past} ${done}${describeKinds(resources)} resource(s)`);
}

async function resourcesFrom(ctx: CliContext, file: string | undefined): Promise<Resource[]> {
  if (!file) throw new CalicoctlFailure('no resources given: use -f FILE (or -f - for standard input)');
  try {
    // calicoctl puts a namespaced resource without a namespace in its default namespace (here Docker's endpoints').
    return (await readResources(file, ctx.stdin)).map((r) =>
      kindFromWord(r.kind)?.namespaced && !r.metadata.namespace ? { ...r, metadata: { ...r.metadata, namespace: DEFAULT_NAMESPACE } } : r,
    );
  } catch (error) {
    throw new CalicoctlFailure(`Failed to execute command: ${message(error)}`);
  }
}

function namespaceOf(kind: KindInfo, options: { namespace?: string; allNamespaces?: boolean }): { namespace?: string; column: boolean } {
  if (!kind.namespaced) {
    if (options.namespace || options.allNamespaces) throw new CalicoctlFailure(`${kind.kind} is not namespaced`);
    return { column: false };
  }
  if (options.namespace && options.allNamespaces) throw new CalicoctlFailure('cannot use both --namespace and --all-namespaces flags at the same time');
  if (options.allNamespaces) return { column: true };
  return options.namespace ? { namespace: options.namespace, column: true } : { namespace: DEFAULT_NAMESPACE, column: false };
}

/** Calico v3's verbs on the resources: get, create, apply, replace, delete, patch, label. */
export function addResourceCommands(program: Command, context: () => CliContext): void {
  program
    .command('get <kind> [name]')
    .description('show resources: ippool, node, bgpconfiguration, bgppeer, profile, workloadendpoint, globalnetworkpolicy, networkpolicy, tier, globalnetworkset, networkset, hostendpoint, felixconfiguration')
    .option('-o, --output <format>', 'ps (default), wide, yaml or json')
    .option('--export', 'leave out what only this datastore knows (uid, resourceVersion, creation time)')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds (default libnetwork)')
    .option('-A, --all-namespaces', 'every namespace')
    .option('-a', 'same as --all-namespaces')
    .action(async (word: string, name: string | undefined, options: { output?: string; export?: boolean; namespace?: string; allNamespaces?: boolean; a?: boolean }) => {
      const kind = kindOf(word, (m) => `Failed to get resources: ${m}`);
      const format = outputFormat(options.output);
      const ns = namespaceOf(kind, { ...options, allNamespaces: options.allNamespaces || options.a });
      if (name && options.allNamespaces) throw new CalicoctlFailure('cannot use --all-namespace flag for getting a single resource');
      const ctx = context();
      const service = ctx.resources();
      const globalAs = async (): Promise<number> =>
        ((await ctx.resourceStore.get<BgpConfiguration>({ kind: 'BGPConfiguration', name: DEFAULT_BGP_CONFIGURATION }))?.spec.asNumber ?? DEFAULT_AS_NUMBER);
      let items: Resource[];
      let revision = '0';
      if (name) {
        try {
          items = [await service.get({ kind: kind.kind, name, ...(kind.namespaced ? { namespace: ns.namespace ?? DEFAULT_NAMESPACE } : {}) })];
        } catch (error) {
          if (error instanceof NotFoundError) throw new CalicoctlFailure(error.message);
          throw error;
        }
        if (options.export) items = items.map(exported);
      } else {
        ({ items, revision } = await service.list(kind.kind, ns.namespace));
      }
      if (format === 'yaml' || format === 'json') {
        return ctx.write(renderDocument(name ? items[0]! : { kind: kind.kind, items, revision }, format));
      }
      ctx.write(`${renderTable(kind.kind, items, { wide: format === 'wide', globalAs: kind.kind === 'Node' ? await globalAs() : DEFAULT_AS_NUMBER, namespaceColumn: ns.column })}\n`);
    });

  const fileVerb = (verb: 'create' | 'apply' | 'replace', past: string, describe: string): void => {
    program
      .command(verb)
      .description(describe)
      .option('-f, --filename <file>', 'YAML or JSON file of resources, - for standard input')
      .option('--skip-exists', 'create only: resources that exist already count as created')
      .action(async (options: { filename?: string; skipExists?: boolean }) => {
        const ctx = context();
        const resources = await resourcesFrom(ctx, options.filename);
        const service = ctx.resources();
        await eachResource(ctx, { present: verb, past }, resources, async (resource) => {
          try {
            await service[verb](resource);
          } catch (error) {
            if (!(verb === 'create' && options.skipExists && error instanceof AppError && error.code === 'E_ALREADY_EXISTS')) throw error;
          }
        });
      });
  };
  fileVerb('create', 'created', 'create resources from a file; refused for any that exists');
  fileVerb('apply', 'applied', 'create resources from a file, or replace the ones that exist');
  fileVerb('replace', 'replaced', 'replace existing resources from a file');

  program
    .command('delete [kind] [names...]')
    .description('delete resources named on the command line, or in a file (-f)')
    .option('-f, --filename <file>', 'YAML or JSON file of resources, - for standard input')
    .option('-s, --skip-not-exists', 'resources that do not exist count as deleted')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds (default libnetwork)')
    .action(async (word: string | undefined, names: string[], options: { filename?: string; skipNotExists?: boolean; namespace?: string }) => {
      const ctx = context();
      let targets: Resource[];
      if (options.filename) targets = await resourcesFrom(ctx, options.filename);
      else {
        if (!word || names.length === 0) throw new CalicoctlFailure('delete needs KIND NAME... or -f FILE');
        const kind = kindOf(word, (m) => m);
        targets = names.map((name) => ({ kind: kind.kind, apiVersion: 'projectcalico.org/v3', metadata: { name, ...(kind.namespaced ? { namespace: options.namespace ?? DEFAULT_NAMESPACE } : {}) }, spec: {} }));
      }
      const service = ctx.resources();
      await eachResource(ctx, { present: 'delete', past: 'deleted' }, targets, async (resource) => {
        try {
          await service.delete({ kind: resource.kind, name: resource.metadata.name, ...(resource.metadata.namespace ? { namespace: resource.metadata.namespace } : {}) });
        } catch (error) {
          if (!(options.skipNotExists && error instanceof NotFoundError)) throw error;
        }
      });
    });

  program
    .command('patch <kind> <name>')
    .description('change fields of a resource with a JSON merge patch (null removes a field)')
    .requiredOption('-p, --patch <json>', 'the patch, e.g. \'{"spec":{"asNumber":64513}}\'')
    .option('-t, --type <type>', 'accepted for compatibility; the patch is always a merge patch')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds (default libnetwork)')
    .action(async (word: string, name: string, options: { patch: string; namespace?: string }) => {
      const kind = kindOf(word, (m) => m);
      const ctx = context();
      try {
        await ctx.resources().patch({ kind: kind.kind, name, ...(kind.namespaced ? { namespace: options.namespace ?? DEFAULT_NAMESPACE } : {}) }, options.patch);
      } catch (error) {
        throw new CalicoctlFailure(`Hit error: ${message(error)}`);
      }
      ctx.out(`Successfully patched 1 '${kind.kind}' resource`);
    });

  program
    .command('label <kind> <name> <label>')
    .description('set a label (KEY=VALUE, --overwrite to change one) or remove one (KEY --remove)')
    .option('--overwrite', 'change the value of a label that is set already')
    .option('--remove', 'remove the label KEY')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds (default libnetwork)')
    .action(async (word: string, name: string, label: string, options: { overwrite?: boolean; remove?: boolean; namespace?: string }) => {
      const kind = kindFromWord(word);
      if (!kind) throw new CalicoctlFailure(`failed to get ${word} ${name}, error resource type '${word}' is not supported`);
      const [key, value, ...extra] = label.split('=');
      if (!key || extra.length > 0 || (options.remove ? value !== undefined : value === undefined)) throw new CalicoctlFailure(`invalid label ${label}`);
      const ctx = context();
      let change;
      try {
        change = await ctx.resources().label({ kind: kind.kind, name, ...(kind.namespaced ? { namespace: options.namespace ?? DEFAULT_NAMESPACE } : {}) }, key, options.remove ? undefined : value, options.overwrite === true);
      } catch (error) {
        if (error instanceof NotFoundError && error.message.startsWith('resource does not exist')) throw new CalicoctlFailure(`${word} ${name} not found`);
        if (error instanceof InvalidRequestError || error instanceof NotFoundError) throw new CalicoctlFailure(error.message);
        throw error;
      }
      const verb = change === 'removed' ? 'removed' : change === 'updated' ? 'updated' : 'set';
      ctx.out(`Successfully ${verb} label ${key} ${change === 'removed' ? 'from' : 'on'} ${word} ${name}`);
    });
}
