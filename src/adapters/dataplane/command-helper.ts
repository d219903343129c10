import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CommandResult, CommandRunner, timeoutFor } from './command.js';

/** A command's exit code (and whether it was ended for running too long), or why the helper could not tell it. */
type Outcome = { code: number; timedOut: boolean } | { failure: string };

interface Pending {
  helper: Helper;
  timeoutMs: number;
  timer?: NodeJS.Timeout;
  timedOut: boolean;
  resolve(outcome: Outcome): void;
}

interface Helper {
  child: ChildProcess;
  /** Each command's input and output files; the shell removes it when the daemon's end of its input closes. */
  readonly dir: string;
}

/**
 * The helper: a shell that runs each line it reads. A line starts one command in the background
 * with its files, answers "<id> pid <pid>" at once and "<id> <exit code>" once it ends. "$NL"
 * stands for a newline inside an argument, as a line cannot hold one. Its directory ($1) goes with
 * it, even when the daemon was killed.
 */
const LOOP = `NL='\n'\nwhile IFS= read -r line; do eval "$line"; done\nrm -rf -- "$1"`;

/** How long the helper waits for a command before it ends. */
const IDLE_EXIT_MS = 10_000;

/** `text` as one shell word: single-quoted, newlines spelt "$NL". */
const quote = (text: string): string => `'${text.replace(/'/g, `'\\''`).replace(/\n/g, `'"$NL"'`)}'`;

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Not made: the shell could not open it.
  }
}

/**
 * Runs kernel tools (iptables-restore, ipset) through a small helper process. Starting a process
 * forks the one that starts it, and fork() copies the page tables of the whole process on its own
 * thread: ~6 ms with the daemon's event loop stopped at 150 MB resident, ~1 ms in a bare helper. The
 * policy agent starts a few tools on every endpoint change, while Docker waits on the daemon.
 *
 * The helper is `sh` (under 2 MB resident, where a Node.js helper was 47 MB): commands run
 * concurrently, with input, output and errors in files of the helper's own directory. It ends after
 * `idleExitMs` without a command (an idle daemon runs none) and the next command starts another: one
 * fork per burst of commands, not one per command.
 */
export class CommandHelper {
  private helper: Helper | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: { idleExitMs?: number } = {}) {}

  readonly run: CommandRunner = async (command, args, input) => {
    if ([command, ...args].some((word) => word.includes('\0'))) return { code: 1, stdout: '', stderr: `${command}: an argument holds a NUL byte` };
    clearTimeout(this.idleTimer);
    let helper = this.running();
    // Something (a /tmp cleaner) took its directory away: a new helper, with a new one.
    if (!existsSync(helper.dir)) {
      this.close();
      helper = this.running();
    }
    const id = this.nextId++;
    const file = (suffix: string): string => join(helper.dir, `${id}.${suffix}`);
    if (input !== undefined) writeFileSync(file('in'), input);
    const stdin = input === undefined ? '/dev/null' : quote(file('in'));
    const line = `{ ${[command, ...args].map(quote).join(' ')} <${stdin} >${quote(file('out'))} 2>${quote(file('err'))} & echo "${id} pid $!"; wait $!; echo "${id} $?"; } 2>/dev/null &\n`;
    const outcome = await new Promise<Outcome>((resolve) => {
      this.pending.set(id, { helper, timeoutMs: timeoutFor(input), timedOut: false, resolve });
      // The helper keeps the process alive only while an answer is awaited.
      this.hold(helper, true);
      helper.child.stdin!.write(line);
    });
    if ('failure' in outcome) return { code: 1, stdout: '', stderr: outcome.failure };
    const result = { code: outcome.code, ...this.output(file, input !== undefined) };
    return outcome.timedOut ? { ...result, stderr: result.stderr || `${command} ran longer than ${timeoutFor(input)} ms and was ended` } : result;
  };

  /** Ends the helper; what it was running reports a failure. */
  close(): void {
    clearTimeout(this.idleTimer);
    const helper = this.helper;
    this.helper = undefined;
    helper?.child.stdin?.end();
  }

  /** A command's output, and its files gone. */
  private output(file: (suffix: string) => string, hadInput: boolean): Pick<CommandResult, 'stdout' | 'stderr'> {
    try {
      return { stdout: readFileSync(file('out'), 'utf8'), stderr: readFileSync(file('err'), 'utf8') };
    } catch (error) {
      return { stdout: '', stderr: `command output lost: ${(error as Error).message}` };
    } finally {
      for (const suffix of hadInput ? ['in', 'out', 'err'] : ['out', 'err']) unlinkQuietly(file(suffix));
    }
  }

  private running(): Helper {
    if (this.helper) return this.helper;
    // Root writes there: a directory of its own (0700), never a guessable name in /tmp.
    const dir = mkdtempSync(join(tmpdir(), 'calico-commands-'));
    const child = spawn('/bin/sh', ['-c', LOOP, 'sh', dir], { stdio: ['pipe', 'pipe', 'inherit'] });
    const helper: Helper = { child, dir };
    createInterface({ input: child.stdout! }).on('line', (answer) => this.answered(answer));
    child.stdin!.on('error', () => undefined);
    // A helper that dies fails what it was running; the next command starts a new one.
    child.on('exit', (code, signal) => this.failAll(helper, `command helper exited (${signal ?? code})`));
    child.on('error', (error) => this.failAll(helper, `command helper failed: ${error.message}`));
    this.hold(helper, false);
    this.helper = helper;
    return helper;
  }

  private answered(answer: string): void {
    const [id, what, pid] = answer.split(' ');
    const pending = this.pending.get(Number(id));
    if (!pending) return;
    if (what === 'pid') {
      // SIGTERM, as execFile's timeout sends.
      pending.timer = setTimeout(() => {
        pending.timedOut = true;
        try {
          process.kill(Number(pid), 'SIGTERM');
        } catch {
          // It has just ended.
        }
      }, pending.timeoutMs);
      pending.timer.unref();
      return;
    }
    clearTimeout(pending.timer);
    this.pending.delete(Number(id));
    pending.resolve({ code: Number(what), timedOut: pending.timedOut });
    if ([...this.pending.values()].some((p) => p.helper === pending.helper)) return;
    this.hold(pending.helper, false);
    // A shell remembers every background job until it waits; all of them have answered by now.
    pending.helper.child.stdin!.write('wait\n');
    if (pending.helper === this.helper) this.closeWhenIdle();
  }

  private closeWhenIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.close(), this.options.idleExitMs ?? IDLE_EXIT_MS);
    this.idleTimer.unref();
  }

  private hold(helper: Helper, held: boolean): void {
    for (const handle of [helper.child, helper.child.stdin as Socket, helper.child.stdout as Socket]) {
      if (held) handle.ref();
      else handle.unref();
    }
  }

  private failAll(helper: Helper, reason: string): void {
    if (this.helper === helper) this.helper = undefined;
    // A shell killed could not remove it.
    rmSync(helper.dir, { recursive: true, force: true });
    for (const [id, pending] of this.pending) {
      if (pending.helper !== helper) continue;
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.resolve({ failure: reason });
    }
  }
}
