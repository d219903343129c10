import { execFile } from 'node:child_process';
import { DataplaneError } from '../../../domain/errors.js';
import type { Firewall } from '../../../ports/firewall.js';

export type CommandRunner = (command: string, args: string[], input?: string) => Promise<{ code: number; stdout: string; stderr: string }>;

export const runCommand: CommandRunner = (command, args, input) =>
  new Promise((resolve) => {
    const child = execFile(command, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });

export const FORWARD_CHAIN = 'cali-FORWARD';

/**
 * Our own filter chain, written atomically with iptables-restore, and one jump to it at the top of
 * FORWARD, inserted only when missing, so restarts never duplicate rules.
 */
export class IptablesFirewall implements Firewall {
  constructor(private readonly run: CommandRunner = runCommand) {}

  async allowWorkloadForwarding(prefix: string): Promise<void> {
    for (const tool of ['iptables', 'ip6tables']) {
      const restore = `${tool}-restore`;
      const rules = ['*filter', `:${FORWARD_CHAIN} - [0:0]`, `-F ${FORWARD_CHAIN}`, `-A ${FORWARD_CHAIN} -i ${prefix}+ -j ACCEPT`, `-A ${FORWARD_CHAIN} -o ${prefix}+ -j ACCEPT`, 'COMMIT', ''].join('\n');
      const restored = await this.run(restore, ['--noflush'], rules);
      if (restored.code !== 0) {
        if (tool === 'ip6tables') continue; // IPv6 filtering may be absent from the kernel
        throw new DataplaneError(restore, `exit ${restored.code}`, restored.stderr.trim());
      }
      const present = await this.run(tool, ['-w', '-C', 'FORWARD', '-j', FORWARD_CHAIN]);
      if (present.code === 0) continue;
      const inserted = await this.run(tool, ['-w', '-I', 'FORWARD', '1', '-j', FORWARD_CHAIN]);
      if (inserted.code !== 0 && tool === 'iptables') throw new DataplaneError(`${tool} -I FORWARD`, `exit ${inserted.code}`, inserted.stderr.trim());
    }
  }
}
