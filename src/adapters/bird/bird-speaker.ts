import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BgpSpeaker, SpeakerApplyResult } from '../../ports/bgp-speaker.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { CommandRunner } from '../dataplane/command.js';
import { BirdProtocol, birdCommand, showProtocols, showStatus } from './bird-control.js';

export interface BirdSpeakerOptions {
  /** CALICO_RUN_DIR: bird.cfg, bird.ctl, bird.pid and bird.log live here. */
  runDir: string;
  run: CommandRunner;
  binary?: string;
  log?: Logger;
}

/**
 * What `configure` answers when the file was taken: 0003 Reconfigured, 0004 Reconfiguration in
 * progress, 0005 already in progress (the new file is queued behind it), 0019 Nothing to do. Anything
 * else (8002 and the like, or 0006 shutting down) means the running config stays.
 */
export const RECONFIGURED = new Set([3, 4, 5, 19]);
const ALIVE_POLL_MS = 250;
const READY_TIMEOUT_MS = 5000;
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;
/** Delays before restarting a BIRD that died, growing while it keeps dying. */
const RESTART_DELAYS_MS = [100, 1000, 2000, 5000];
const STABLE_MS = 30_000;

/** The BIRD 2 the daemon runs, found on PATH (Debian's bird2 package puts it in /usr/sbin). */
export const BIRD_BINARY = 'bird';

export const birdPaths = (runDir: string) => ({
  config: join(runDir, 'bird.cfg'),
  candidate: join(runDir, 'bird.cfg.new'),
  socket: join(runDir, 'bird.ctl'),
  pidFile: join(runDir, 'bird.pid'),
  logFile: join(runDir, 'bird.log'),
});

/**
 * BIRD 2 run by the daemon: in the foreground (`-f`), its own session, so it outlives the daemon
 * (a daemon restart, an upgrade or `kill -9` must take no route away), restarted when it dies (with
 * `-R`: graceful restart recovery, no route touched), adopted by the next daemon through its PID file.
 * Every configuration is checked with `bird -p` and loaded with `configure` over the control socket;
 * one BIRD refuses never replaces the running one.
 */
export class BirdSpeaker implements BgpSpeaker {
  private readonly paths;
  private readonly binary: string;
  private readonly log: Logger;
  private pid: number | undefined;
  private child: ChildProcess | undefined;
  private poller: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private deaths = 0;
  /** The configuration the running BIRD has loaded. */
  private loaded: string | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private detached = false;

  constructor(private readonly options: BirdSpeakerOptions) {
    this.paths = birdPaths(options.runDir);
    this.binary = options.binary ?? BIRD_BINARY;
    this.log = options.log ?? silentLogger;
  }

  /** The PID of the running BIRD, if any. */
  get runningPid(): number | undefined {
    return this.pid;
  }

  /** Whether the BIRD on the control socket says it is up; throws BirdUnreachableError when none answers. */
  status(timeoutMs: number): Promise<{ up: boolean; detail: string }> {
    return showStatus(this.paths.socket, timeoutMs);
  }

  /** The running BIRD's protocols (BGP sessions among them). */
  protocols(timeoutMs: number): Promise<BirdProtocol[]> {
    return showProtocols(this.paths.socket, timeoutMs);
  }

  apply(config: string): Promise<SpeakerApplyResult> {
    const result = this.tail.then(() => this.applyNow(config));
    this.tail = result.catch(() => undefined);
    return result;
  }

  async detach(): Promise<void> {
    this.detached = true;
    clearInterval(this.poller);
    this.child?.removeAllListeners('exit');
    this.child?.unref();
    await this.tail;
  }

  /**
   * Shuts BIRD down for good (`down`: peers are told at once): for uninstall, or a backend without
   * BGP, never for a restart. Resolves true when a BIRD of ours was running.
   */
  async shutdown(): Promise<boolean> {
    await this.detach();
    const pid = this.pid ?? this.pidFromFile();
    if (pid === undefined || !this.isOurs(pid)) return false;
    await birdCommand(this.paths.socket, 'down').catch(() => process.kill(pid, 'SIGTERM'));
    for (let i = 0; i < 50 && isRunning(pid); i++) await new Promise((r) => setTimeout(r, 100));
    return true;
  }

  private async applyNow(config: string): Promise<SpeakerApplyResult> {
    mkdirSync(this.options.runDir, { recursive: true, mode: 0o755 });
    if (this.pid === undefined) this.adopt();
    if (config === this.loaded && this.pid !== undefined) return { applied: true };
    writeFileSync(this.paths.candidate, config);
    const check = await this.options.run(this.binary, ['-p', '-c', this.paths.candidate]);
    if (check.code !== 0) return this.refuse(check.stderr.trim() || check.stdout.trim() || `bird -p exited ${check.code}`);
    const previous = existsSync(this.paths.config) ? readFileSync(this.paths.config, 'utf8') : undefined;
    // BIRD re-reads the file it was started with on every `configure`: it must always hold the good one.
    renameSync(this.paths.candidate, this.paths.config);
    if (this.pid === undefined) return this.start(config);
    const reply = await birdCommand(this.paths.socket, 'configure').catch((error: Error) => ({ code: -1, lines: [{ code: -1, text: error.message }] }));
    if (RECONFIGURED.has(reply.code)) {
      this.loaded = config;
      this.log.info({ pid: this.pid }, 'BIRD reconfigured');
      return { applied: true };
    }
    if (previous !== undefined) {
      writeFileSync(this.paths.candidate, previous);
      renameSync(this.paths.candidate, this.paths.config);
    }
    return this.refuse(reply.lines.map((l) => l.text).join('; '));
  }

  private refuse(reason: string): SpeakerApplyResult {
    this.log.error({ reason }, 'BIRD refused the new configuration; the running one stays');
    return { applied: false, refused: reason };
  }

  private pidFromFile(): number | undefined {
    try {
      const pid = Number(readFileSync(this.paths.pidFile, 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** A running BIRD started on our config file (a PID file can outlive its process, and PIDs are reused). */
  private isOurs(pid: number): boolean {
    return isRunning(pid) && readFileSafe(`/proc/${pid}/cmdline`).split('\0').includes(this.paths.config);
  }

  /** A BIRD left running by an earlier daemon, on our config file, is taken over as it is. */
  private adopt(): void {
    const pid = this.pidFromFile();
    if (pid === undefined || !this.isOurs(pid)) return;
    this.pid = pid;
    this.loaded = readFileSafe(this.paths.config);
    this.startedAt = Date.now();
    this.watchAdopted(pid);
    this.log.info({ pid }, 'adopted running BIRD');
  }

  private async start(config: string): Promise<SpeakerApplyResult> {
    // A pid file or socket left behind means an earlier BIRD died: recover without touching routes.
    const recovering = existsSync(this.paths.pidFile) || existsSync(this.paths.socket) || this.deaths > 0;
    rotate(this.paths.logFile);
    const logFd = openSync(this.paths.logFile, 'a');
    const args = ['-f', ...(recovering ? ['-R'] : []), '-c', this.paths.config, '-s', this.paths.socket, '-P', this.paths.pidFile];
    const child = spawn(this.binary, args, { detached: true, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    child.unref();
    this.child = child;
    this.pid = child.pid;
    this.startedAt = Date.now();
    child.once('exit', (code, signal) => this.onDeath(child.pid, `exited (${signal ?? code})`));
    child.once('error', (error) => this.onDeath(child.pid, error.message));
    for (const deadline = Date.now() + READY_TIMEOUT_MS; Date.now() < deadline; ) {
      if (this.pid !== child.pid) break;
      const reply = await birdCommand(this.paths.socket, 'show status', 1000).catch(() => undefined);
      if (reply && reply.code === 13) {
        this.loaded = config;
        this.log.info({ pid: child.pid, recovering }, 'BIRD started');
        return { applied: true };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.refuse(`BIRD did not start: ${readFileSafe(this.paths.logFile).split('\n').slice(-5).join(' ').trim()}`);
  }

  private watchAdopted(pid: number): void {
    clearInterval(this.poller);
    this.poller = setInterval(() => {
      if (!isRunning(pid)) this.onDeath(pid, 'is gone');
    }, ALIVE_POLL_MS);
    this.poller.unref();
  }

  private onDeath(pid: number | undefined, how: string): void {
    if (this.detached || pid !== this.pid) return;
    clearInterval(this.poller);
    this.pid = undefined;
    this.loaded = undefined;
    this.child = undefined;
    if (Date.now() - this.startedAt > STABLE_MS) this.deaths = 0;
    const delay = RESTART_DELAYS_MS[Math.min(this.deaths, RESTART_DELAYS_MS.length - 1)]!;
    this.deaths++;
    this.log.error({ pid, restartInMs: delay }, `BIRD ${how}; restarting it`);
    setTimeout(() => {
      if (this.detached || !existsSync(this.paths.config)) return;
      void this.apply(readFileSafe(this.paths.config));
    }, delay).unref();
  }
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Alive and not a zombie: an adopted BIRD is not our child, and whoever reaps it may be slow. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const state = /\) (\S)/.exec(readFileSafe(`/proc/${pid}/stat`))?.[1];
  return state !== undefined && state !== 'Z';
}

function rotate(path: string): void {
  try {
    if (statSync(path).size > LOG_ROTATE_BYTES) renameSync(path, `${path}.1`);
  } catch {
    // No log yet.
  }
}
