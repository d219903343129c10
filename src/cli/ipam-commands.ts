import type { Command } from 'commander';
import { parseIp } from '../domain/cidr.js';
import { NotFoundError } from '../domain/errors.js';
import { IpamReport } from '../services/ipam/ipam-report.js';
import { IpamService } from '../services/ipam/ipam-service.js';
import type { CliContext } from './context.js';
import { percent } from './pool-commands.js';
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
    .description("check IPAM data for Calico's invariants; exits 1 when anything is wrong")
    .action(async () => {
      const ctx = context();
      const result = await new IpamReport(ctx.store).check();
      ctx.out(`Checked ${result.blocks} blocks, ${result.allocations} allocations, ${result.handles} handles.`);
      if (result.problems.length === 0) {
        ctx.out('No problems found.');
        return;
      }
      ctx.out(`Found ${result.problems.length} problem(s):`);
      for (const problem of result.problems) ctx.out(`  - ${problem}`);
      fail(1);
    });

  ipam
    .command('release')
    .description('release one address (for addresses leaked by a crashed or removed host)')
    .requiredOption('--ip <address>', 'the address to release')
    .action(async (options: { ip: string }) => {
      const ctx = context();
      const service = new IpamService(ctx.store, { node: ctx.node });
      try {
        const released = await service.release({ address: parseIp(options.ip) });
        if (!released) throw new NotFoundError(`IP address ${options.ip} is not assigned: nothing to release`);
        ctx.out(`Successfully released IP address ${options.ip}`);
      } finally {
        await service.stop();
      }
    });
}
