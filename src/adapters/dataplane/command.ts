import { execFile } from 'node:child_process';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type CommandRunner = (command: string, args: string[], input?: string) => Promise<CommandResult>;

/** Runs a kernel tool (iptables-restore, ipset), feeding `input` on stdin; never throws, reports the exit code. */
export const runCommand: CommandRunner = (command, args, input) =>
  new Promise((resolve) => {
    const child = execFile(command, args, { timeout: 20_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (error && typeof (error as { code?: unknown }).code !== 'number' ? String(error.message) : '') });
    });
    child.stdin?.on('error', () => undefined);
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
