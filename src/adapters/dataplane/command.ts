import { execFile } from 'node:child_process';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type CommandRunner = (command: string, args: string[], input?: string) => Promise<CommandResult>;

/**
 * A tool that has not finished by then is killed: 20 s, and 1 s more per 100 KB of input, since
 * iptables-restore (nf_tables) takes ~2.5 s per MB (a first write at 2000 endpoints x 500 policies
 * is ~6 MB); a fixed 20 s killed it there, and nothing was ever programmed.
 */
export const timeoutFor = (input: string | undefined): number => 20_000 + Math.ceil((input?.length ?? 0) / 100_000) * 1000;

/** Runs a kernel tool (iptables-restore, ipset), feeding `input` on stdin; never throws, reports the exit code. */
export const runCommand: CommandRunner = (command, args, input) =>
  new Promise((resolve) => {
    const child = execFile(command, args, { timeout: timeoutFor(input), maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (error && typeof (error as { code?: unknown }).code !== 'number' ? String(error.message) : '') });
    });
    child.stdin?.on('error', () => undefined);
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
