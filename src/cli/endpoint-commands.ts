import type { Command } from 'commander';
import { AppError, InvalidRequestError } from '../domain/errors.js';
import { EndpointFilter, EndpointProfiles } from '../services/policy/endpoint-profiles.js';
import { ProfileService } from '../services/policy/profile-service.js';
import { CalicoctlFailure, type CliContext } from './context.js';
import { renderTable } from './table.js';

const ENDPOINT_USAGE = `Usage:
  calicoctl endpoint show [FILTERS] [--endpoint=<ENDPOINT_ID>] [--detailed]
  calicoctl endpoint <ENDPOINT_ID> profile (append|remove|set) [FILTERS] [<PROFILES>...]
  calicoctl endpoint <ENDPOINT_ID> profile show [FILTERS]
FILTERS: [--host=<HOSTNAME>] [--orchestrator=<ORCHESTRATOR_ID>] [--workload=<WORKLOAD_ID>]
ENDPOINT_ID: Docker's endpoint ID or a unique prefix of it ('calicoctl container <CONTAINER> endpoint-id show').
A Docker network's name works wherever a profile is named.`;
const CONTAINER_USAGE = `Usage:
  calicoctl container <CONTAINER> endpoint-id show
CONTAINER is a container's name or ID, on this host (DOCKER_HOST).`;

/** The words, and `--name=value` / `--name value` / `--flag` options taken out of them; any other option is refused. */
function splitOptions(words: string[], valued: string[], flags: string[]): { positional: string[]; options: Map<string, string | true> } {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (!word.startsWith('--')) {
      positional.push(word);
      continue;
    }
    const [flag, inline] = word.split(/=(.*)/s) as [string, string | undefined];
    const name = flag.slice(2);
    if (!valued.includes(name) && !flags.includes(name)) throw new InvalidRequestError(`unknown option --${name}\n${ENDPOINT_USAGE}`);
    if (flags.includes(name)) {
      if (inline !== undefined) throw new InvalidRequestError(`option --${name} takes no value`);
      options.set(name, true);
      continue;
    }
    const value = inline ?? words[++i];
    if (value === undefined) throw new InvalidRequestError(`option --${name} needs a value`);
    options.set(name, value);
  }
  return { positional, options };
}

function filterFrom(options: Map<string, string | true>): EndpointFilter {
  const value = (name: string): string | undefined => {
    const v = options.get(name);
    return typeof v === 'string' ? v : undefined;
  };
  const filter: EndpointFilter = {};
  for (const [option, field] of [['host', 'node'], ['orchestrator', 'orchestrator'], ['workload', 'workload'], ['endpoint', 'endpoint']] as const) {
    const v = value(option);
    if (v !== undefined) filter[field] = v;
  }
  return filter;
}

/** Calico's own texts, without the "Error:" of errors from elsewhere; `header` first when it had one. */
async function asCalico<T>(work: () => Promise<T>, header?: string): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof AppError && error.code !== 'E_DATASTORE_UNAVAILABLE') throw new CalicoctlFailure(header ? `${header}\n${error.message}` : error.message);
    throw error;
  }
}

const VERB_HEADERS = {
  append: 'Failed to append profiles to endpoint.',
  remove: 'Failed to remove profiles from endpoint.',
  set: 'Failed to set profiles for endpoint.',
  show: 'Failed to list profiles in endpoint.',
} as const;
type ProfileVerb = keyof typeof VERB_HEADERS;
const isProfileVerb = (word: string | undefined): word is ProfileVerb => word !== undefined && Object.hasOwn(VERB_HEADERS, word);

const endpointProfiles = (ctx: CliContext): EndpointProfiles => new EndpointProfiles(ctx.endpoints, new ProfileService(ctx.endpoints, ctx.docker), ctx.docker);

async function showEndpoints(ctx: CliContext, service: EndpointProfiles, filter: EndpointFilter, detailed: boolean): Promise<void> {
  const endpoints = await service.list(filter);
  if (detailed) {
    const rows: string[][] = [];
    for (const e of endpoints) {
      const profiles = await service.displayNames(e.spec.profiles);
      rows.push([e.spec.node, e.spec.orchestrator, e.spec.workload, e.spec.endpoint, e.spec.ipNetworks.join('\n'), e.spec.mac, profiles.join(','), 'active']);
    }
    return ctx.out(renderTable(['Hostname', 'Orchestrator ID', 'Workload ID', 'Endpoint ID', 'Addresses', 'MAC', 'Profiles', 'State'], rows));
  }
  // One row per host and orchestrator: how many workloads, how many endpoints.
  const summary = new Map<string, { node: string; orchestrator: string; workloads: Set<string>; endpoints: number }>();
  for (const e of endpoints) {
    const key = `${e.spec.node}\0${e.spec.orchestrator}`;
    const entry = summary.get(key) ?? { node: e.spec.node, orchestrator: e.spec.orchestrator, workloads: new Set<string>(), endpoints: 0 };
    entry.workloads.add(e.spec.workload);
    entry.endpoints += 1;
    summary.set(key, entry);
  }
  const rows = [...summary.values()].map((s) => [s.node, s.orchestrator, String(s.workloads.size), String(s.endpoints)]);
  ctx.out(renderTable(['Hostname', 'Orchestrator ID', 'Number of Workloads', 'Number of Endpoints'], rows));
}

async function changeProfiles(ctx: CliContext, service: EndpointProfiles, verb: Exclude<ProfileVerb, 'show'>, name: string, profiles: string[]): Promise<void> {
  if (verb === 'set') {
    await service.set(name, profiles);
    return ctx.out(profiles.length ? `Profile(s) set to ${profiles.join(', ')}.` : 'Removed all profiles from endpoint.');
  }
  if (profiles.length === 0) return ctx.out('No profile specified.');
  if (verb === 'append') {
    const change = await service.append(name, profiles);
    return ctx.out(change.written ? `Profile(s) ${profiles.join(', ')} appended.` : `Profile ${change.profile} is already in endpoint profile list`);
  }
  const change = await service.remove(name, profiles);
  ctx.out(change.written ? `Profile(s) ${profiles.join(',')} removed.` : `Profile ${change.profile} is not in endpoint profile list.`);
}

async function endpointCommand(ctx: CliContext, words: string[]): Promise<void> {
  const { positional, options } = splitOptions(words, ['host', 'orchestrator', 'workload', 'endpoint'], ['detailed']);
  const service = endpointProfiles(ctx);
  const filter = filterFrom(options);
  const [first, second, verb, ...profiles] = positional;
  if (first === 'show' && positional.length === 1) return showEndpoints(ctx, service, filter, options.has('detailed'));
  if (!first || second !== 'profile' || !isProfileVerb(verb) || (verb === 'show' && profiles.length > 0)) {
    throw new InvalidRequestError(`unknown endpoint command ${JSON.stringify(words.join(' '))}\n${ENDPOINT_USAGE}`);
  }
  if (options.has('endpoint')) throw new InvalidRequestError(`--endpoint is for endpoint show: the endpoint is ${first}`);
  const name = await asCalico(() => service.resolve(first, filter), VERB_HEADERS[verb]);
  if (verb === 'show') {
    const names = await service.profilesOf(name);
    return ctx.out(names.length ? renderTable(['Name'], [...names].sort().map((n) => [n])) : 'Endpoint has no profiles associated with it.');
  }
  await asCalico(() => changeProfiles(ctx, service, verb, name, profiles));
}

async function containerCommand(ctx: CliContext, words: string[]): Promise<void> {
  const [container, what, verb, ...rest] = words;
  if (!container || what !== 'endpoint-id' || verb !== 'show' || rest.length > 0) {
    throw new InvalidRequestError(`unknown container command ${JSON.stringify(words.join(' '))}\n${CONTAINER_USAGE}`);
  }
  for (const id of await asCalico(() => endpointProfiles(ctx).ofContainer(container))) ctx.out(id);
}

/** The seed-era `calicoctl endpoint` and `calicoctl container` words, parsed by hand as `profile` is. */
export function addEndpointCommands(program: Command, context: () => CliContext): void {
  const handWritten = (name: string, description: string, usage: string, run: (ctx: CliContext, words: string[]) => Promise<void>): void => {
    program
      .command(name)
      .description(description)
      .argument('[words...]')
      .allowUnknownOption(true)
      .helpOption(false)
      .action(async (words: string[]) => {
        if (words.length === 0 || words[0] === '--help' || words[0] === '-h') return context().out(usage);
        await run(context(), words);
      });
  };
  handWritten('endpoint', "show endpoints; give an endpoint profiles of its own (append, remove, set)", ENDPOINT_USAGE, endpointCommand);
  handWritten('container', "a container's Calico endpoint ID(s) (endpoint-id show)", CONTAINER_USAGE, containerCommand);
}
