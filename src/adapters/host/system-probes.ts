import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { DockerEngine, KernelModuleEvidence, PluginDirectory, SystemProbes } from '../../ports/system-probes.js';
import { BIRD_BINARY } from '../bird/bird-speaker.js';
import { runCommand } from '../dataplane/command.js';
import { DockerHttpApi, dockerTarget } from '../docker/docker-http-api.js';
import { findOnPath } from './path-lookup.js';
import { pluginActivates } from './plugin-probe.js';
import { readHostStatus } from './status-file.js';

export interface HostProbeSettings {
  env: NodeJS.ProcessEnv;
  /** CALICO_RUN_DIR: the daemon's status file. */
  runDir: string;
  /** CALICO_LIBNETWORK_PLUGIN_DIR. */
  pluginDir: string;
}

const readText = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** `kernel/net/ipv4/ipip.ko.xz` → `ipip`; `/proc/modules` and the kernel spell `-` as `_`. */
const moduleName = (path: string): string => basename(path).replace(/\.ko(\..*)?$/, '').replace(/-/g, '_');

const namesOf = (text: string | undefined, field: (line: string) => string): Set<string> | undefined =>
  text === undefined ? undefined : new Set(text.split('\n').filter(Boolean).map((line) => moduleName(field(line))));

/** The kernel's build configuration, as /proc/config.gz (CONFIG_IKCONFIG_PROC) or the distribution's /boot copy has it. */
function kernelConfig(): KernelModuleEvidence['config'] {
  const sources: [string, () => Buffer][] = [
    ['/proc/config.gz', () => gunzipSync(readFileSync('/proc/config.gz'))],
    [`/boot/config-${release()}`, () => readFileSync(`/boot/config-${release()}`)],
  ];
  for (const [source, read] of sources) {
    try {
      const options = new Map<string, string>();
      for (const match of read().toString().matchAll(/^(CONFIG_\w+)=(.*)$/gm)) options.set(match[1]!, match[2]!);
      return { source, options };
    } catch {
      // The next source.
    }
  }
  return undefined;
}

async function firstLine(command: string, args: string[]): Promise<string> {
  const run = await runCommand(command, args);
  const text = `${run.stdout}${run.stderr}`.trim();
  if (run.code !== 0) throw new Error(`\`${command} ${args.join(' ')}\` failed (exit ${run.code}): ${text || 'no output'}`);
  return text.split('\n')[0]!;
}

/** checksystem's questions, asked of this host: /proc, /sys, /lib/modules, the tools on PATH, Docker's socket. */
export class HostSystemProbes implements SystemProbes {
  constructor(private readonly settings: HostProbeSettings) {}

  async kernelModules(): Promise<KernelModuleEvidence> {
    const modules = `/lib/modules/${release()}`;
    const evidence: KernelModuleEvidence = {};
    const loaded = namesOf(readText('/proc/modules'), (line) => line.split(' ')[0]!);
    const builtin = namesOf(readText(join(modules, 'modules.builtin')), (line) => line);
    const loadable = namesOf(readText(join(modules, 'modules.dep')), (line) => line.split(':')[0]!);
    const config = kernelConfig();
    if (loaded) evidence.loaded = loaded;
    if (builtin) evidence.builtin = builtin;
    if (loadable) evidence.loadable = loadable;
    if (config) evidence.config = config;
    if (existsSync('/sys/module')) evidence.present = new Set(readdirSync('/sys/module'));
    return evidence;
  }

  iptablesVersion(): Promise<string> {
    return firstLine('iptables', ['--version']);
  }

  ipsetVersion(): Promise<string> {
    return firstLine('ipset', ['--version']);
  }

  async bird(): Promise<{ path: string; version: string }> {
    const path = findOnPath(BIRD_BINARY, this.settings.env);
    if (!path) throw new Error(`${BIRD_BINARY} is not on PATH (${this.settings.env.PATH ?? ''}); Debian's package is bird2`);
    return { path, version: await firstLine(path, ['--version']) };
  }

  async sysctl(name: string): Promise<{ value: string; writable: boolean }> {
    const path = `/proc/sys/${name.replace(/\./g, '/')}`;
    const value = readText(path);
    if (value === undefined) throw new Error(`${path} cannot be read`);
    let writable = true;
    try {
      accessSync(path, constants.W_OK);
    } catch {
      writable = false;
    }
    return { value: value.trim(), writable };
  }

  async docker(): Promise<DockerEngine> {
    const target = dockerTarget(this.settings.env.DOCKER_HOST);
    const endpoint = target.socketPath ? `unix://${target.socketPath}` : `tcp://${target.host}:${target.port}`;
    try {
      return { endpoint, ...(await new DockerHttpApi(target).version()) };
    } catch (error) {
      throw new Error(`${endpoint}: ${(error as Error).message}`);
    }
  }

  async pluginDirectory(): Promise<PluginDirectory> {
    const path = this.settings.pluginDir;
    const socket = join(path, 'calico.sock');
    if (!existsSync(path)) return { path, exists: false, socket: 'absent' };
    if (!existsSync(socket)) return { path, exists: true, socket: 'absent' };
    return { path, exists: true, socket: (await pluginActivates(socket)) ? 'answers' : 'silent' };
  }

  async daemonStatus(): Promise<{ ipipUnavailable?: string }> {
    return readHostStatus(this.settings.runDir);
  }
}
