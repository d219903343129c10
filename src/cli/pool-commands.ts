import type { Command } from 'commander';
import { formatCidr } from '../domain/cidr.js';
import { InvalidRequestError } from '../domain/errors.js';
import { PoolService } from '../services/ipam/pool-service.js';
import { IpamReport } from '../services/ipam/ipam-report.js';
import type { CliContext } from './context.js';
import { renderTable } from './table.js';
import { byText } from '../domain/text-order.js';

const percent = (part: number | bigint, whole: bigint): string => (whole === 0n ? '0%' : `${(Number(part) * 100) / Number(whole) < 1 && Number(part) > 0 ? '<1' : Math.round((Number(part) * 100) / Number(whole))}%`);

export function addPoolCommands(program: Command, context: () => CliContext): void {
  const pool = program.command('pool').description('manage IP pools');

  pool
    .command('add <cidr>')
    .description('add an IP pool')
    .option('--name <name>', 'pool name (default: derived from the CIDR)')
    .option('--block-size <n>', 'prefix length of the blocks hosts claim (IPv4 20-32, default 26; IPv6 116-128, default 122)')
    .option('--ipip [mode]', 'IP-in-IP between hosts: always (the default), or cross-subnet (only to hosts in other subnets)')
    .option('--vxlan [mode]', 'VXLAN between hosts: always (the default), or cross-subnet (only to hosts in other subnets)')
    .option('--nat-outgoing', 'masquerade traffic from the pool to addresses outside every pool')
    .option('--disabled', 'create the pool disabled: no addresses are assigned from it')
    .action(async (cidr: string, options: { name?: string; blockSize?: string; ipip?: boolean | string; vxlan?: boolean | string; natOutgoing?: boolean; disabled?: boolean }) => {
      const ctx = context();
      const blockSize = options.blockSize === undefined ? undefined : Number(options.blockSize);
      const ipipMode = encapsulationMode('--ipip', options.ipip);
      const vxlanMode = encapsulationMode('--vxlan', options.vxlan);
      const created = await new PoolService(ctx.store).add({
        cidr,
        ...(options.name ? { name: options.name } : {}),
        ...(blockSize !== undefined ? { blockSize } : {}),
        ...(ipipMode ? { ipipMode } : {}),
        ...(vxlanMode ? { vxlanMode } : {}),
        natOutgoing: options.natOutgoing === true,
        disabled: options.disabled === true,
      });
      ctx.out(`Successfully created IP pool ${created.metadata.name} (${created.spec.cidr})`);
    });

  pool
    .command('show')
    .description('list IP pools')
    .action(async () => {
      const ctx = context();
      const usage = await new IpamReport(ctx.store).usage();
      const rows = usage.pools
        .sort((a, b) => a.pool.cidr.family - b.pool.cidr.family || byText(a.pool.name, b.pool.name))
        .map(({ pool: p, total, inUse }) => [
          p.name,
          formatCidr(p.cidr),
          String(p.blockSize),
          [
            p.pool.spec.vxlanMode && p.pool.spec.vxlanMode !== 'Never' ? `vxlan:${p.pool.spec.vxlanMode}` : '',
            p.pool.spec.ipipMode && p.pool.spec.ipipMode !== 'Never' ? `ipip:${p.pool.spec.ipipMode}` : '',
            p.pool.spec.natOutgoing ? 'nat-outgoing' : '',
            p.disabled ? 'disabled' : '',
          ]
            .filter(Boolean)
            .join(','),
          `${inUse} (${percent(inUse, total)})`,
        ]);
      ctx.out(renderTable(['NAME', 'CIDR', 'BLOCK SIZE', 'OPTIONS', 'IPS IN USE'], rows));
    });

  pool
    .command('remove <cidr-or-name>')
    .description('remove an IP pool (refused while any of its addresses is in use)')
    .action(async (target: string) => {
      const ctx = context();
      const removed = await new PoolService(ctx.store).remove(target);
      ctx.out(`Successfully removed IP pool ${removed.name} (${formatCidr(removed.cidr)})`);
    });
}

/** `--ipip`, `--ipip=always`, `--ipip=cross-subnet` (calicoctl 0.x's words) as the pool's mode. */
function encapsulationMode(flag: string, value: boolean | string | undefined): 'Always' | 'CrossSubnet' | undefined {
  if (value === undefined) return undefined;
  if (value === true || (typeof value === 'string' && /^always$/i.test(value))) return 'Always';
  if (typeof value === 'string' && /^cross-?subnet$/i.test(value)) return 'CrossSubnet';
  throw new InvalidRequestError(`${flag}=${value}: use ${flag} (always) or ${flag}=cross-subnet`);
}

export { percent };
