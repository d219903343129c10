import { execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { DAEMON_LOG_FILE, DAEMON_PID_FILE, type HostPaths } from '../../config/paths.js';
import type { DaemonSettings, DaemonSupervisor, StartedDaemon } from '../../services/nodes/node-run.js';
import { DAEMON_ENVIRONMENT, DAEMON_MAIN, DAEMON_NODE_FLAGS, SYSTEMD_UNIT_TEMPLATE } from './installation.js';
import { findOnPath } from './path-lookup.js';

const run = promisify(execFile);
/** The daemon's systemd unit (its log is this unit's journal). */
export const DAEMON_UNIT = 'calico-libnetwork.service';
const UNIT = DAEMON_UNIT;
const UNIT_FILE = `/etc/systemd/system/${UNIT}`;

const lastLines = (text: string, lines: number): string => text.trimEnd().split('\n').slice(-lines).join('\n');

/**
 * systemd manages services here, unless CALICO_SERVICE_MANAGER says otherwise (`systemd` or
 * `background`, for tests and containers that have systemctl but no running systemd).
 */
export function supervisorFor(paths: HostPaths, env: NodeJS.ProcessEnv): DaemonSupervisor {
  const chosen = env.CALICO_SERVICE_MANAGER?.trim();
  if (chosen && chosen !== 'systemd' && chosen !== 'background') throw new Error(`invalid CALICO_SERVICE_MANAGER=${JSON.stringify(chosen)}: expected systemd or background`);
  const systemd = chosen ? chosen === 'systemd' : existsSync('/run/systemd/system') && findOnPath('systemctl', env) !== undefined;
  return systemd ? new SystemdDaemon(paths) : new BackgroundDaemon(paths, env);
}

/** The daemon as a process of its own session, its output in CALICO_LOG_DIR, found again by its PID file. */
export class BackgroundDaemon implements DaemonSupervisor {
  readonly description: string;
  private readonly logFile: string;

  constructor(
    private readonly paths: HostPaths,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.logFile = join(paths.logDir, DAEMON_LOG_FILE);
    this.description = `in the background (log in ${this.logFile})`;
  }

  async restart(settings: DaemonSettings): Promise<StartedDaemon> {
    await this.stopRunning();
    mkdirSync(this.paths.logDir, { recursive: true, mode: 0o755 });
    const from = existsSync(this.logFile) ? statSync(this.logFile).size : 0;
    const fd = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, DAEMON_MAIN], { detached: true, stdio: ['ignore', fd, fd], env: { ...this.env, ...DAEMON_ENVIRONMENT, ...settings } });
    closeSync(fd);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    // calicoctl exits; the daemon stays, in its own session.
    child.unref();
    const logFile = this.logFile;
    return {
      summary: `calico-libnetwork is running with PID ${child.pid}; its log is ${logFile}.`,
      exited: async () => child.exitCode !== null || child.signalCode !== null,
      logTail: async (lines) => lastLines(readFileSync(logFile).subarray(from).toString(), lines),
    };
  }

  /** SIGTERM to the daemon named by the PID file, if that process is this project's daemon; waits for it to exit. */
  private async stopRunning(): Promise<void> {
    const pid = daemonPid(join(this.paths.runDir, DAEMON_PID_FILE));
    if (pid === undefined) return;
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 20_000;
    while (isDaemon(pid)) {
      if (Date.now() > deadline) {
        process.kill(pid, 'SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The PID in the daemon's PID file, when that process still runs and is the daemon (PIDs get reused). */
function daemonPid(pidFile: string): number | undefined {
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
  return Number.isInteger(pid) && pid > 0 && isDaemon(pid) ? pid : undefined;
}

function isDaemon(pid: number): boolean {
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const state = /^State:\s+(\w)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    // Started as node dist/src/daemon/main.js, or through the calico-libnetwork link on PATH.
    return state !== 'Z' && /daemon\/main\.js|calico-libnetwork/.test(commandLine);
  } catch {
    return false;
  }
}

/** The settings as a systemd EnvironmentFile: each value in double quotes, backslash and quote escaped. */
export function systemdEnvironmentFile(settings: DaemonSettings): string {
  const lines = Object.entries(settings).map(([name, value]) => `${name}="${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`);
  return `# Written by calicoctl node run; read by ${UNIT}.\n${lines.join('\n')}\n`;
}

/** The unit in systemd/ of this installation (`template`), pointing at this installation's daemon and at the env file written. */
export function unitText(template: string, envFile: string): string {
  return template
    .replace(/^ExecStart=.*$/m, `ExecStart=${[process.execPath, ...DAEMON_NODE_FLAGS, DAEMON_MAIN].join(' ')}`)
    .replace(/^EnvironmentFile=.*$/m, `EnvironmentFile=-${envFile}`);
}

/** The daemon as systemd's calico-libnetwork.service, its settings in CALICO_ENV_FILE (/etc/calico/calico.env). */
export class SystemdDaemon implements DaemonSupervisor {
  readonly description: string;

  constructor(private readonly paths: HostPaths) {
    this.description = `through systemd (${UNIT}, settings in ${paths.envFile})`;
  }

  async restart(settings: DaemonSettings): Promise<StartedDaemon> {
    mkdirSync(dirname(this.paths.envFile), { recursive: true, mode: 0o755 });
    writeFileSync(this.paths.envFile, systemdEnvironmentFile(settings), { mode: 0o600 });
    const unit = unitText(readFileSync(SYSTEMD_UNIT_TEMPLATE, 'utf8'), this.paths.envFile);
    if (!existsSync(UNIT_FILE) || readFileSync(UNIT_FILE, 'utf8') !== unit) {
      writeFileSync(UNIT_FILE, unit);
      await run('systemctl', ['daemon-reload']);
    }
    const since = `@${Math.floor(Date.now() / 1000)}`;
    await run('systemctl', ['enable', UNIT]);
    await run('systemctl', ['restart', UNIT]);
    return {
      summary: `${UNIT} restarted; its log: journalctl -u ${UNIT}.`,
      exited: async () => ['failed', 'inactive'].includes(await systemctlState()),
      logTail: async (lines) => execFileSync('journalctl', ['-u', UNIT, '--since', since, '-n', String(lines), '--no-pager', '-o', 'cat'], { encoding: 'utf8' }),
    };
  }
}

async function systemctlState(): Promise<string> {
  try {
    return (await run('systemctl', ['is-active', UNIT])).stdout.trim();
  } catch (error) {
    // is-active exits non-zero for every state but active, with the state on stdout.
    return String((error as { stdout?: string }).stdout ?? '').trim();
  }
}
