import type { Command } from 'commander';
import { InvalidRequestError } from '../domain/errors.js';
import { describeRule, parseRuleWords, SeedRule } from '../services/policy/seed-rules.js';
import { Direction, displayName, ProfileService } from '../services/policy/profile-service.js';
import type { CliContext } from './context.js';
import { renderTable } from './table.js';

const USAGE = `Usage:
  calicoctl profile show [--detailed]
  calicoctl profile add <PROFILE>
  calicoctl profile remove <PROFILE> [--no-check]
  calicoctl profile <PROFILE> tag show|add <TAG>|remove <TAG>
  calicoctl profile <PROFILE> rule show|json|update
  calicoctl profile <PROFILE> rule add|remove (inbound|outbound) [--at=<POSITION>] (allow|deny|log) [<MATCH>]
  calicoctl profile <PROFILE> rule remove (inbound|outbound) --at=<POSITION>
A Docker network's name works wherever a profile is named. MATCH:
  [tcp|udp|icmp|icmpv6|<N>] [type <N> [code <N>]] [from [ports <LIST>] [tag <TAG>] [cidr <CIDR>]] [to [ports <LIST>] [tag <TAG>] [cidr <CIDR>]]`;

function usage(message: string): never {
  throw new InvalidRequestError(`${message}\n${USAGE}`);
}

function printRules(ctx: CliContext, rules: { inbound_rules: SeedRule[]; outbound_rules: SeedRule[] }): void {
  for (const [title, list] of [['Inbound rules:', rules.inbound_rules], ['Outbound rules:', rules.outbound_rules]] as const) {
    ctx.out(title);
    list.forEach((rule, i) => ctx.out(`${String(i + 1).padStart(4)} ${describeRule(rule)}`));
  }
}

/** The seed-era `calicoctl profile` words, parsed by hand: the profile name comes before its sub-command. */
export function addProfileCommands(program: Command, context: () => CliContext): void {
  program
    .command('profile')
    .description('manage security profiles (one per Docker network, named by the network)')
    .argument('[words...]')
    .allowUnknownOption(true)
    .helpOption(false)
    .action(async (words: string[]) => {
      if (words.length === 0 || words[0] === '--help' || words[0] === '-h') return context().out(USAGE);
      const ctx = context();
      const profiles = new ProfileService(ctx.endpoints, ctx.docker);
      const [first, second, third, ...rest] = words;
      if (first === 'show') {
        const list = await profiles.list();
        if (!words.includes('--detailed')) return ctx.out(renderTable(['Name'], list.map((p) => [displayName(p)])));
        const rows: string[][] = [];
        for (const p of list) {
          for (const e of await profiles.members(p.metadata.name)) rows.push([displayName(p), e.spec.node, e.spec.orchestrator, e.spec.workload, e.spec.endpoint, 'active']);
        }
        return ctx.out(renderTable(['Name', 'Host', 'Orchestrator ID', 'Workload ID', 'Endpoint ID', 'State'], rows));
      }
      if (first === 'add') {
        if (!second) usage('profile add needs a name');
        await profiles.add(second);
        return ctx.out(`Created profile ${second}`);
      }
      if (first === 'remove') {
        if (!second) usage('profile remove needs a name');
        await profiles.remove(second, { noCheck: words.includes('--no-check') });
        return ctx.out(`Deleted profile ${second}`);
      }
      const name = first!;
      if (second === 'tag') {
        if (third === 'show') return (await profiles.tags(name)).forEach((t) => ctx.out(t));
        const tag = rest[0] ?? usage(`profile ${name} tag ${third ?? ''} needs a tag`);
        if (third === 'add') return ctx.out((await profiles.addTag(name, tag)) ? `Tag ${tag} added to profile ${name}` : `Profile ${name} already has tag ${tag}`);
        if (third === 'remove') {
          await profiles.removeTag(name, tag);
          return ctx.out(`Tag ${tag} removed from profile ${name}`);
        }
        usage(`unknown tag command ${JSON.stringify(third ?? '')}`);
      }
      if (second !== 'rule') usage(`unknown profile command ${JSON.stringify(second ?? '')}`);
      if (third === 'show') return printRules(ctx, await profiles.rules(name));
      if (third === 'json') return ctx.out(JSON.stringify(await profiles.rules(name), null, 2));
      if (third === 'update') {
        let document: unknown;
        try {
          document = JSON.parse(await ctx.stdin());
        } catch (error) {
          throw new InvalidRequestError(`the rules on standard input are not valid JSON: ${(error as Error).message}`);
        }
        await profiles.setRules(name, document);
        return ctx.out(`Rules of profile ${name} updated`);
      }
      if (third !== 'add' && third !== 'remove') usage(`unknown rule command ${JSON.stringify(third ?? '')}`);
      const direction = rest[0] as Direction;
      if (direction !== 'inbound' && direction !== 'outbound') usage('say inbound or outbound');
      const atWord = rest.find((w) => w.startsWith('--at='));
      const at = atWord === undefined ? undefined : Number(atWord.slice('--at='.length));
      if (at !== undefined && !Number.isInteger(at)) usage(`invalid ${atWord}: a position is a whole number`);
      const ruleWords = rest.slice(1).filter((w) => w !== atWord);
      if (third === 'add') {
        const added = await profiles.addRule(name, direction, parseRuleWords(ruleWords), at);
        return ctx.out(added ? `Rule added to profile ${name}` : 'Rule already present, skipping.');
      }
      if (ruleWords.length === 0) {
        if (at === undefined) usage('rule remove needs --at=<POSITION> or the rule');
        await profiles.removeRule(name, direction, { at: at! });
      } else {
        await profiles.removeRule(name, direction, { rule: parseRuleWords(ruleWords) });
      }
      return ctx.out(`Rule removed from profile ${name}`);
    });
}
