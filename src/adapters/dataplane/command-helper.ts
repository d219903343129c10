import { ChildProcess, fork } from 'node:child_process';
import type { CommandResult, CommandRunner } from './command.js';

export interface CommandRequest {
  id: number;
  command: string;
  args: string[];
  input?: string;
}
export type CommandReply = CommandResult & { id: number };

interface Pending {
  child: ChildProcess;
  resolve(result: CommandResult): void;
}

/**
 * Runs kernel tools (iptables-restore, ipset) through a small helper process. Starting a process
 * forks the one that starts it, and fork() copies the page tables of the whole process on its own
 * thread: ~6 ms with the daemon's event loop stopped at 150 MB resident, ~1 ms in a bare helper. The
 * policy agent starts a few tools on every endpoint change, while Docker waits on the daemon.
 */
export class CommandHelper {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  readonly run: CommandRunner = (command, args, input) => {
    const child = this.running();
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { child, resolve });
      // The helper keeps the process alive only while an answer is awaited.
      child.ref();
      child.channel?.ref();
      child.send({ id, command, args, ...(input !== undefined ? { input } : {}) } satisfies CommandRequest);
    });
  };

  /** Ends the helper; what it was running reports a failure. */
  close(): void {
    const child = this.child;
    this.child = undefined;
    if (child?.connected) child.disconnect();
  }

  private running(): ChildProcess {
    if (this.child?.connected) return this.child;
    const child = fork(new URL('./command-helper-process.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    child.on('message', (reply: CommandReply) => this.settle(reply));
    // A helper that dies fails what it was running; the next command starts a new one.
    child.on('exit', (code, signal) => this.failAll(child, `command helper exited (${signal ?? code})`));
    child.on('error', (error) => this.failAll(child, `command helper failed: ${error.message}`));
    this.idle(child);
    this.child = child;
    return child;
  }

  private settle({ id, ...result }: CommandReply): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    pending.resolve(result);
    if (![...this.pending.values()].some((p) => p.child === pending.child)) this.idle(pending.child);
  }

  private idle(child: ChildProcess): void {
    child.unref();
    child.channel?.unref();
  }

  private failAll(child: ChildProcess, reason: string): void {
    if (this.child === child) this.child = undefined;
    for (const [id, pending] of this.pending) {
      if (pending.child !== child) continue;
      this.pending.delete(id);
      pending.resolve({ code: 1, stdout: '', stderr: reason });
    }
  }
}
