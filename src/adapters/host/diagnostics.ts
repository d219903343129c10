import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DiagnosticsArchive, HostDiagnostics } from '../../ports/diagnostics.js';
import { birdCommand } from '../bird/bird-control.js';
import { birdPaths } from '../bird/bird-speaker.js';
import { DAEMON_LOG_FILE, type HostPaths } from '../../config/paths.js';
import { runCommand } from '../dataplane/command.js';
import { DAEMON_UNIT } from './daemon-supervisor.js';

/** BIRD's error replies are 8xxx (runtime) and 9xxx (syntax). */
const BIRD_ERROR = 8000;

/** `20261203_151207`: when the diagnostics were taken, in UTC, as calicoctl names its archives. */
const stamp = (now: Date): string => now.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);

/** The files the daemon and its BIRD write on this host; the daemon's log in `logDir` when given. */
export function daemonFiles(paths: HostPaths, logDir = paths.logDir): { daemonLog: string; birdLog: string; birdConfig: string } {
  const bird = birdPaths(paths.runDir);
  return { daemonLog: join(logDir, DAEMON_LOG_FILE), birdLog: bird.logFile, birdConfig: bird.config };
}

/** The files in a directory of their own, then `tar -czf` of it next to it: `calico-diags-XXXXXX/diags-DATE_TIME.tar.gz`. */
export class TarDiagnosticsArchive implements DiagnosticsArchive {
  private constructor(
    private readonly dir: string,
    private readonly name: string,
  ) {}

  static async create(parent = tmpdir(), now = new Date()): Promise<TarDiagnosticsArchive> {
    const dir = await mkdtemp(join(parent, 'calico-diags-'));
    const archive = new TarDiagnosticsArchive(dir, `diags-${stamp(now)}`);
    await mkdir(join(dir, archive.name));
    return archive;
  }

  async add(file: string, content: string): Promise<void> {
    await writeFile(join(this.dir, this.name, file), content);
  }

  async seal(): Promise<string> {
    const path = join(this.dir, `${this.name}.tar.gz`);
    const tar = await runCommand('tar', ['-czf', path, '-C', this.dir, this.name]);
    if (tar.code !== 0) throw new Error(`tar -czf ${path} failed (exit ${tar.code}): ${tar.stderr.trim()}`);
    await rm(join(this.dir, this.name), { recursive: true, force: true });
    return path;
  }

  async discard(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** This host's tools, BIRD's control socket in CALICO_RUN_DIR, and systemd's journal. */
export class LocalHostDiagnostics implements HostDiagnostics {
  constructor(private readonly runDir: string) {}

  async command(command: string, args: string[]): Promise<string> {
    const run = await runCommand(command, args);
    if (run.code !== 0) throw new Error(`\`${[command, ...args].join(' ')}\` failed (exit ${run.code}): ${run.stderr.trim() || 'no output'}`);
    return run.stdout;
  }

  async bird(command: string): Promise<string> {
    const reply = await birdCommand(birdPaths(this.runDir).socket, command);
    const text = `${reply.lines.map((l) => l.text).join('\n')}\n`;
    if (reply.code >= BIRD_ERROR) throw new Error(`BIRD refused \`${command}\`: ${text.trim()}`);
    return text;
  }

  async daemonJournal(): Promise<string> {
    const text = await this.command('journalctl', ['-u', DAEMON_UNIT, '--no-pager', '-o', 'short-iso']);
    if (!/^-- No entries --$/m.test(text)) return text;
    throw new Error(`the journal has no entries for ${DAEMON_UNIT}: the daemon is not run by systemd here`);
  }

  async file(path: string): Promise<string> {
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new Error(code === 'ENOENT' ? `${path} does not exist` : `${path}: ${(error as Error).message}`);
    }
  }
}
