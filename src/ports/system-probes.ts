/** What the host says about its kernel modules, from each source it has (a source it lacks is undefined). */
export interface KernelModuleEvidence {
  /** /proc/modules: the modules loaded now. */
  loaded?: Set<string>;
  /** modules.builtin of the running kernel: modules compiled into it. */
  builtin?: Set<string>;
  /** modules.dep of the running kernel: modules modprobe can load. */
  loadable?: Set<string>;
  /** The kernel's build configuration (/proc/config.gz or /boot/config-RELEASE): CONFIG_ names set to y or m. */
  config?: { source: string; options: Map<string, string> };
  /** /sys/module: modules in the running kernel (built-in ones only when they have parameters). */
  present?: Set<string>;
}

export interface DockerEngine {
  /** Where it was asked: unix:///path or tcp://host:port. */
  endpoint: string;
  version: string;
  apiVersion: string;
}

export interface PluginDirectory {
  path: string;
  exists: boolean;
  /** calico.sock: not there, there and answering Plugin.Activate, or there and silent. */
  socket: 'absent' | 'answers' | 'silent';
}

/**
 * What `calicoctl node checksystem` asks the host. Each probe throws, saying why, when it cannot
 * answer (a tool missing, a file unreadable); the checks turn that into a finding.
 */
export interface SystemProbes {
  /** Never throws: a source the host lacks or this process cannot read is left out. */
  kernelModules(): Promise<KernelModuleEvidence>;
  /** The first line of `iptables --version`. */
  iptablesVersion(): Promise<string>;
  /** The first line of `ipset --version`. */
  ipsetVersion(): Promise<string>;
  /** The BIRD the daemon would run (found on PATH as the daemon finds it) and its `bird --version` line. */
  bird(): Promise<{ path: string; version: string }>;
  /** A sysctl (dotted name): its value, and whether this process could write it. */
  sysctl(name: string): Promise<{ value: string; writable: boolean }>;
  /** Docker's engine, through the socket the docker CLI would use (DOCKER_HOST). */
  docker(): Promise<DockerEngine>;
  pluginDirectory(): Promise<PluginDirectory>;
  /** What the running daemon last reported about this host (CALICO_RUN_DIR/status.json); never throws. */
  daemonStatus(): Promise<{ ipipUnavailable?: string }>;
}
