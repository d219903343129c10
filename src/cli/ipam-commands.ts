import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseIp } from '../domain/cidr.js';
import { InvalidRequestError, NotFoundError } from '../domain/errors.js';
import { AddressOwner, describeOwner, IpamCheck, IpamCheckReport, parseCheckReport, problemCount, ReleaseOutcome } from '../services/ipam/ipam-check.js';
import { IpamReport } from '../services/ipam/ipam-report.js';
import { IpamService } from '../services/ipam/ipam-service.js';
import type { CliContext } from './context.js';
import { percent } from './pool-commands.js';
import { readInputFile } from './resource-io.js';
import { renderTable } from './table.js';

export function addIpamCommands(program: Command, context: () => CliContext, fail: (code: number) => void): void {
  const ipam = program.command('ipam').description('inspect and repair IP address management');

  ipam
    .command('show')
    .description('address use per pool and per block (with --ip, one address)')
    .option('--ip <address>', 'show who holds one address')
    .action(async (options: { ip?: string }) => {
      const ctx = context();
      const report = new IpamReport(ctx.store);
      if (options.ip) {
        const info = await report.address(parseIp(options.ip));
        if (!info.pool) throw new NotFoundError(`IP address ${info.address} is not in any IP pool`);
        if (!info.allocated) {
          ctx.out(`IP address ${info.address} is not assigned (pool ${info.pool}${info.block ? `, block ${info.block}` : ''})`);
          return;
        }
        ctx.out(`IP address ${info.address} is assigned`);
        ctx.out(`  pool:     ${info.pool}`);
        ctx.out(`  block:    ${info.block} (${info.affinity ?? 'no affinity'})`);
        ctx.out(`  handle:   ${info.handleId ?? '-'}`);
        for (const [key, value] of Object.entries(info.attributes ?? {})) ctx.out(`  ${`${key}:`.padEnd(9)} ${value}`);
        return;
      }
      const usage = await report.usage();
      ctx.out(
        renderTable(
          ['GROUPING', 'CIDR', 'IPS TOTAL', 'IPS IN USE', 'IPS FREE'],
          [
            ...usage.pools.map(({ pool, total, inUse }) => ['IP Pool', pool.pool.spec.cidr, String(total), `${inUse} (${percent(inUse, total)})`, `${total - BigInt(inUse)} (${percent(total - BigInt(inUse), total)})`]),
            ...usage.blocks.map((b) => [
              `Block (${b.affinity ?? 'no affinity'})`,
              b.cidr,
              String(b.total),
              `${b.inUse} (${percent(b.inUse, BigInt(b.total))})`,
              `${b.total - b.inUse} (${percent(b.total - b.inUse, BigInt(b.total))})`,
            ]),
          ],
        ),
      );
    });

  ipam
    .command('check')
    .description('compare IPAM with the addresses endpoints and nodes use, and check its invariants; exits 1 when anything is wrong')
    .option('-o, --output <file>', 'also write the findings as a JSON report (for ipam release --from-report)')
    .action(async (options: { output?: string }) => {
      const ctx = context();
      ctx.out('Checking IPAM for inconsistencies...');
      const report = await checkerOf(ctx).check();
      printCheck(report, ctx.out);
      if (options.output) {
        writeReport(options.output, report);
        ctx.out(`Wrote the report to ${options.output}`);
      }
      if (problemCount(report) > 0) fail(1);
    });

  ipam
    .command('release')
    .description('release one address (--ip), or what a check report found leaked and still is (--from-report)')
    .option('--ip <address>', 'the address to release')
    .option('--from-report <file>', "a report written by 'calicoctl ipam check -o FILE' (- for standard input)")
    .action(async (options: { ip?: string; fromReport?: string }) => {
      if ((options.ip === undefined) === (options.fromReport === undefined)) throw new InvalidRequestError('give either --ip ADDRESS or --from-report FILE');
      const ctx = context();
      // The whole report is read and checked before anything is released: a bad file writes nothing.
      const report = options.fromReport ? parseCheckReport(await readInputFile(options.fromReport, ctx.stdin), options.fromReport) : undefined;
      const service = new IpamService(ctx.store, ctx.syncSource, { node: ctx.node });
      try {
        if (report) printReleases(await checkerOf(ctx).release(report, service), ctx.out);
        else await releaseOne(service, options.ip!, ctx.out);
      } finally {
        await service.stop();
      }
    });
}

const checkerOf = (ctx: CliContext): IpamCheck => new IpamCheck(ctx.store, ctx.endpoints, ctx.resourceStore);

async function releaseOne(service: IpamService, ip: string, out: (text: string) => void): Promise<void> {
  const released = await service.release({ address: parseIp(ip) });
  if (!released) throw new NotFoundError(`IP address ${ip} is not assigned: nothing to release`);
  out(`Successfully released IP address ${ip}`);
}

function writeReport(file: string, report: IpamCheckReport): void {
  try {
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  } catch (error) {
    throw new InvalidRequestError(`cannot write the report to ${file}: ${(error as Error).message}`);
  }
}

const owners = (list: AddressOwner[]): string => list.map(describeOwner).join(', ');

function printCheck(report: IpamCheckReport, out: (text: string) => void): void {
  const { counts } = report;
  out(`Loaded ${counts.pools} IP pools, ${counts.blocks} blocks, ${counts.allocations} allocations and ${counts.handles} handles.`);
  out(`Found ${counts.endpoints} workload endpoints and ${counts.tunnelAddresses} node tunnel addresses: ${counts.addressesInUse} addresses in use.`);
  out(`Found ${report.leakedAddresses.length} addresses allocated in IPAM but not in use.`);
  for (const leak of report.leakedAddresses) out(`  ${leak.address}  block ${leak.block}  handle ${leak.handle ?? '(none)'}${leak.attributes?.node ? `  node ${leak.attributes.node}` : ''}`);
  const outside = report.inUseNotAllocated.filter((u) => u.pool === null).length;
  out(`Found ${report.inUseNotAllocated.length} addresses in use but not allocated in IPAM (${outside} of them in no IP pool).`);
  for (const unallocated of report.inUseNotAllocated) out(`  ${unallocated.address}  ${unallocated.pool ? `pool ${unallocated.pool}` : 'no pool'}  used by ${owners(unallocated.owners)}`);
  out(`Found ${report.leakedHandles.length} handles with no addresses.`);
  for (const leak of report.leakedHandles) out(`  ${leak.handle}  records ${JSON.stringify(leak.blocks)}`);
  out(`Found ${report.multipleOwners.length} addresses with more than one owner.`);
  for (const shared of report.multipleOwners) out(`  ${shared.address}  used by ${owners(shared.owners)}`);
  out(`Found ${report.problems.length} other problems (blocks, affinities, handle counts).`);
  for (const problem of report.problems) out(`  - ${problem}`);
  const total = problemCount(report);
  out(total === 0 ? 'Check complete; no problems found.' : `Check complete; found ${total} problems.`);
}

function printReleases(outcomes: ReleaseOutcome[], out: (text: string) => void): void {
  for (const outcome of outcomes) {
    const what = outcome.target === 'address' ? `IP address ${outcome.id}` : `handle ${outcome.id}`;
    out(outcome.released ? `Released ${what}` : `Skipped ${what}: ${outcome.reason}`);
  }
  const released = outcomes.filter((o) => o.released).length;
  out(`Released ${released}, skipped ${outcomes.length - released}.`);
}
