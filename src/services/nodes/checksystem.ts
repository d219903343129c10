import { FORWARDING_SYSCTLS } from '../../ports/dataplane.js';
import type { KernelModuleEvidence, SystemProbes } from '../../ports/system-probes.js';
import { IPIP_UNAVAILABLE } from '../routing/tunnel-agent.js';

export type CheckLevel = 'OK' | 'WARNING' | 'FAIL';

export interface CheckResult {
  level: CheckLevel;
  /** What was checked: `kernel module ipip`, `iptables`, `net.ipv4.ip_forward`, … */
  name: string;
  /** What was found, and for a warning or failure what it means. */
  detail: string;
}

export interface CheckSystemOptions {
  /** CALICO_NETWORKING_BACKEND: BIRD is required only with `bird` (the default). */
  backend: string;
}

interface KernelModule {
  module: string;
  /** The kernel configuration option that builds it. */
  option: string;
  /** Without it the daemon cannot do its work (FAIL); else only some pools lose (WARNING). */
  required: boolean;
  /** What goes wrong without it. */
  without: string;
}

/** The kernel modules the daemon's dataplane uses. */
const KERNEL_MODULES: readonly KernelModule[] = [
  { module: 'ip_set', option: 'CONFIG_IP_SET', required: true, without: 'policy keeps its address sets in ipsets' },
  { module: 'xt_set', option: 'CONFIG_NETFILTER_XT_SET', required: true, without: "iptables rules cannot match the policy's ipsets" },
  { module: 'nf_conntrack', option: 'CONFIG_NF_CONNTRACK', required: true, without: 'policy lets replies in by connection state, and NAT needs it' },
  { module: 'vxlan', option: 'CONFIG_VXLAN', required: false, without: 'pools in VXLAN mode will not be routed through this host' },
  { module: 'ipip', option: 'CONFIG_NET_IPIP', required: false, without: IPIP_UNAVAILABLE },
];

/** Per-interface sysctls the daemon writes on each `cali` interface, checked for writability on `default`. */
const INTERFACE_SYSCTL = 'net.ipv4.conf.default.proxy_arp';

const normalise = (name: string): string => name.replace(/-/g, '_');

/**
 * Whether the running kernel has `module`: loaded, built in, or loadable. undefined when the host
 * gives no source to tell by (no /proc/modules, modules.builtin, modules.dep or kernel config).
 */
function moduleAvailability(evidence: KernelModuleEvidence, { module, option }: KernelModule): { available: boolean | undefined; how: string } {
  const name = normalise(module);
  const config = evidence.config;
  const configured = config?.options.get(option);
  if (evidence.loaded?.has(name)) return { available: true, how: 'loaded' };
  if (evidence.builtin?.has(name)) return { available: true, how: 'built in (modules.builtin)' };
  if (configured === 'y') return { available: true, how: `built in (${option}=y in ${config!.source})` };
  if (evidence.present?.has(name)) return { available: true, how: 'in the running kernel (/sys/module)' };
  if (evidence.loadable?.has(name)) return { available: true, how: 'loadable (modules.dep)' };
  const reasons: string[] = [];
  if (config) reasons.push(configured === 'm' ? `${option}=m in ${config.source}, but the module is not installed` : `${option} is not set in ${config.source}`);
  if (evidence.builtin || evidence.loadable) reasons.push('not in modules.builtin or modules.dep');
  if (config && !config.options.has('CONFIG_MODULES')) reasons.push('this kernel cannot load modules');
  if (reasons.length === 0) return { available: undefined, how: 'cannot tell: no /proc/modules, modules.builtin, modules.dep or kernel configuration here' };
  return { available: false, how: `missing (${reasons.join('; ')})` };
}

/** The iptables backend from `iptables --version`: `iptables v1.8.9 (nf_tables)`; before 1.8 there was only legacy. */
export function iptablesBackend(versionLine: string): 'nf_tables' | 'legacy' | undefined {
  const match = /^iptables v([\d.]+)(?:\s+\((nf_tables|legacy)\))?/.exec(versionLine.trim());
  if (!match) return undefined;
  return (match[2] as 'nf_tables' | 'legacy' | undefined) ?? 'legacy';
}

/** BIRD's major version from `bird --version` (`BIRD version 2.0.12`). */
function birdMajorVersion(versionLine: string): number | undefined {
  const match = /BIRD version (\d+)\./.exec(versionLine);
  return match ? Number(match[1]) : undefined;
}

const reason = (error: unknown): string => (error instanceof Error ? error.message : String(error));
const result = (level: CheckLevel, name: string, detail: string): CheckResult => ({ level, name, detail });

/**
 * `calicoctl node checksystem`: whether this host can run the daemon. A FAIL is something the daemon
 * cannot work without (the policy's kernel modules, iptables and ipset, forwarding it cannot turn
 * on, BIRD when BGP is the backend); a WARNING loses part of the function (a tunnel mode, IPv6) or is
 * not there yet (Docker, the plugin socket: the daemon starts before Docker and makes its socket).
 */
export class SystemCheck {
  constructor(
    private readonly probes: SystemProbes,
    private readonly options: CheckSystemOptions,
  ) {}

  async run(): Promise<CheckResult[]> {
    const groups = await Promise.all([this.kernelModules(), this.iptables(), this.ipset(), this.bird(), this.sysctls(), this.docker(), this.pluginDirectory()]);
    return groups.flat();
  }

  private async kernelModules(): Promise<CheckResult[]> {
    const [evidence, daemon] = await Promise.all([this.probes.kernelModules(), this.probes.daemonStatus()]);
    return KERNEL_MODULES.map((wanted) => {
      const name = `kernel module ${wanted.module}`;
      if (wanted.module === 'ipip' && daemon.ipipUnavailable) return result('WARNING', name, `the running daemon found: ${daemon.ipipUnavailable}`);
      const { available, how } = moduleAvailability(evidence, wanted);
      if (available) return result('OK', name, how);
      if (available === undefined) return result('WARNING', name, `${how}: if it is missing, ${wanted.without}`);
      return result(wanted.required ? 'FAIL' : 'WARNING', name, `${how}: ${wanted.without}`);
    });
  }

  private async iptables(): Promise<CheckResult> {
    try {
      const line = await this.probes.iptablesVersion();
      const backend = iptablesBackend(line);
      if (!backend) return result('FAIL', 'iptables', `unrecognised version output ${JSON.stringify(line)}`);
      return result('OK', 'iptables', `${line.trim()}: the ${backend} backend`);
    } catch (error) {
      return result('FAIL', 'iptables', `${reason(error)}: the daemon programs policy and NAT with iptables-restore`);
    }
  }

  private async ipset(): Promise<CheckResult> {
    try {
      return result('OK', 'ipset', (await this.probes.ipsetVersion()).trim());
    } catch (error) {
      return result('FAIL', 'ipset', `${reason(error)}: the daemon keeps the policy's address sets with ipset`);
    }
  }

  private async bird(): Promise<CheckResult> {
    const needed = this.options.backend === 'bird';
    const notNeeded = `not needed with CALICO_NETWORKING_BACKEND=${this.options.backend}`;
    let found: { path: string; version: string };
    try {
      found = await this.probes.bird();
    } catch (error) {
      return needed ? result('FAIL', 'BIRD', `${reason(error)}: BGP (the default backend) runs BIRD 2`) : result('OK', 'BIRD', `${reason(error)}; ${notNeeded}`);
    }
    const major = birdMajorVersion(found.version);
    const detail = `${found.version.trim()} at ${found.path}`;
    if (major === 2) return result('OK', 'BIRD', detail);
    if (!needed) return result('OK', 'BIRD', `${detail}; ${notNeeded}`);
    return result('FAIL', 'BIRD', `${detail}: the daemon writes BIRD 2's configuration`);
  }

  private async sysctls(): Promise<CheckResult[]> {
    const ipv6 = (await this.ipv6Enabled()) ? [this.forwarding(FORWARDING_SYSCTLS.ipv6, 'WARNING')] : [];
    return Promise.all([this.forwarding(FORWARDING_SYSCTLS.ipv4, 'FAIL'), ...ipv6, this.interfaceSysctls()]);
  }

  /** Forwarding must be on, or writable: the daemon turns it on at start. */
  private async forwarding(name: string, unsettable: CheckLevel): Promise<CheckResult> {
    try {
      const { value, writable } = await this.probes.sysctl(name);
      if (value === '1') return result('OK', name, '1');
      if (writable) return result('OK', name, `${value}: the daemon sets 1 when it starts`);
      return result(unsettable, name, `${value}, and it cannot be written here: the daemon cannot turn forwarding on, and containers will not be routed`);
    } catch (error) {
      return result(unsettable, name, reason(error));
    }
  }

  private async interfaceSysctls(): Promise<CheckResult> {
    const name = 'interface sysctls';
    const what = 'proxy_arp, proxy_delay, forwarding, rp_filter and route_localnet on each cali interface';
    try {
      const { writable } = await this.probes.sysctl(INTERFACE_SYSCTL);
      if (writable) return result('OK', name, `writable: the daemon sets ${what}`);
      return result('FAIL', name, `${INTERFACE_SYSCTL} cannot be written here: the daemon sets ${what}`);
    } catch (error) {
      return result('FAIL', name, reason(error));
    }
  }

  private async ipv6Enabled(): Promise<boolean> {
    try {
      return (await this.probes.sysctl('net.ipv6.conf.all.disable_ipv6')).value === '0';
    } catch {
      return false;
    }
  }

  private async docker(): Promise<CheckResult> {
    try {
      const engine = await this.probes.docker();
      return result('OK', 'Docker', `${engine.version} (API ${engine.apiVersion}) at ${engine.endpoint}`);
    } catch (error) {
      return result('WARNING', 'Docker', `not reachable (${reason(error)}): Calico networks can be created once it runs`);
    }
  }

  private async pluginDirectory(): Promise<CheckResult> {
    const name = 'plugin directory';
    try {
      const dir = await this.probes.pluginDirectory();
      if (!dir.exists) return result('WARNING', name, `${dir.path} does not exist: the daemon makes it when it starts, and Docker finds the plugin there`);
      if (dir.socket === 'answers') return result('OK', name, `${dir.path}/calico.sock answers`);
      if (dir.socket === 'silent') return result('WARNING', name, `${dir.path}/calico.sock is there but does not answer: the daemon is not serving`);
      return result('WARNING', name, `${dir.path} exists, without calico.sock: the daemon is not running`);
    } catch (error) {
      return result('WARNING', name, reason(error));
    }
  }
}

/** True when nothing required failed. */
export const systemPasses = (results: CheckResult[]): boolean => results.every((r) => r.level !== 'FAIL');

/** The last line: whether the host can run the daemon, and how many findings say otherwise. */
export function checkSummary(results: CheckResult[]): string {
  const count = (level: CheckLevel): number => results.filter((r) => r.level === level).length;
  if (!systemPasses(results)) return `This host cannot run calico-libnetwork: ${count('FAIL')} required check(s) failed, ${count('WARNING')} warning(s).`;
  return `This host can run calico-libnetwork (${count('WARNING')} warning(s)).`;
}

/** One line a check: its level, what, and what was found. */
export const formatCheck = (check: CheckResult): string => `${check.level.padEnd(8)} ${check.name}: ${check.detail}`;
