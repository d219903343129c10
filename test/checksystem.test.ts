import { describe, expect, it } from 'vitest';
import type { KernelModuleEvidence, SystemProbes } from '../src/ports/system-probes.js';
import { checkSummary, CheckResult, formatCheck, iptablesBackend, SystemCheck, systemPasses } from '../src/services/nodes/checksystem.js';
import { IPIP_UNAVAILABLE } from '../src/services/routing/tunnel-agent.js';

/**
 * `calicoctl node checksystem`'s decisions, on hosts described by stand-in probes: which findings
 * are OK, WARNING or FAIL, and whether the host passes. The real probes run in checksystem.host.test.ts.
 */

const fail = (message: string) => async (): Promise<never> => {
  throw new Error(message);
};

/** A host that has everything, with the named probes replaced. */
function host(overrides: Partial<SystemProbes> = {}, sysctls: Record<string, { value: string; writable: boolean }> = {}): SystemProbes {
  const values: Record<string, { value: string; writable: boolean }> = {
    'net.ipv4.ip_forward': { value: '1', writable: true },
    'net.ipv6.conf.all.forwarding': { value: '1', writable: true },
    'net.ipv6.conf.all.disable_ipv6': { value: '0', writable: true },
    'net.ipv4.conf.default.proxy_arp': { value: '0', writable: true },
    ...sysctls,
  };
  return {
    kernelModules: async () => ({ loaded: new Set(['ip_set', 'xt_set', 'nf_conntrack', 'vxlan', 'ipip']) }),
    iptablesVersion: async () => 'iptables v1.8.9 (nf_tables)',
    ipsetVersion: async () => 'ipset v7.17, protocol version: 7',
    bird: async () => ({ path: '/usr/sbin/bird', version: 'BIRD version 2.0.12' }),
    sysctl: async (name) => {
      const found = values[name];
      if (!found) throw new Error(`/proc/sys/${name.replace(/\./g, '/')} cannot be read`);
      return found;
    },
    docker: async () => ({ endpoint: 'unix:///var/run/docker.sock', version: '20.10.24', apiVersion: '1.41' }),
    pluginDirectory: async () => ({ path: '/run/docker/plugins', exists: true, socket: 'answers' }),
    daemonStatus: async () => ({}),
    ...overrides,
  };
}

const check = (probes: SystemProbes, backend = 'bird'): Promise<CheckResult[]> => new SystemCheck(probes, { backend }).run();
const named = (results: CheckResult[], name: string): CheckResult => {
  const found = results.find((r) => r.name === name);
  if (!found) throw new Error(`no check named ${name} in ${results.map((r) => r.name).join(', ')}`);
  return found;
};
const modules = (evidence: KernelModuleEvidence): Partial<SystemProbes> => ({ kernelModules: async () => evidence });

describe('checksystem decisions', () => {
  it('a host with everything: one OK line a check, and it passes', async () => {
    const results = await check(host());
    expect(results.map((r) => r.name)).toEqual([
      'kernel module ip_set',
      'kernel module xt_set',
      'kernel module nf_conntrack',
      'kernel module vxlan',
      'kernel module ipip',
      'iptables',
      'ipset',
      'BIRD',
      'net.ipv4.ip_forward',
      'net.ipv6.conf.all.forwarding',
      'interface sysctls',
      'Docker',
      'plugin directory',
    ]);
    expect(results.every((r) => r.level === 'OK')).toBe(true);
    expect(systemPasses(results)).toBe(true);
    expect(checkSummary(results)).toBe('This host can run calico-libnetwork (0 warning(s)).');
    expect(formatCheck(named(results, 'iptables'))).toBe('OK       iptables: iptables v1.8.9 (nf_tables): the nf_tables backend');
    expect(named(results, 'Docker').detail).toBe('20.10.24 (API 1.41) at unix:///var/run/docker.sock');
  });

  it('a kernel built without ipip and without module support: ipip is a warning (IPIP pools), the host still passes', async () => {
    const config = { source: '/proc/config.gz', options: new Map([['CONFIG_IP_SET', 'y'], ['CONFIG_NETFILTER_XT_SET', 'y'], ['CONFIG_NF_CONNTRACK', 'y'], ['CONFIG_VXLAN', 'y']]) };
    const results = await check(host(modules({ config, present: new Set(['ip_set', 'vxlan']) })));
    expect(named(results, 'kernel module xt_set')).toEqual({ level: 'OK', name: 'kernel module xt_set', detail: 'built in (CONFIG_NETFILTER_XT_SET=y in /proc/config.gz)' });
    expect(named(results, 'kernel module ipip')).toEqual({
      level: 'WARNING',
      name: 'kernel module ipip',
      detail: `missing (CONFIG_NET_IPIP is not set in /proc/config.gz; this kernel cannot load modules): ${IPIP_UNAVAILABLE}`,
    });
    expect(systemPasses(results)).toBe(true);
  });

  it('a module the policy needs missing is a FAIL; loadable (modules.dep) or built in (modules.builtin) is OK', async () => {
    const results = await check(
      host(
        modules({
          loaded: new Set(['nf_conntrack']),
          builtin: new Set(['vxlan']),
          loadable: new Set(['ip_set', 'ipip']),
          config: { source: '/boot/config-6.1.0', options: new Map([['CONFIG_MODULES', 'y'], ['CONFIG_NETFILTER_XT_SET', 'm']]) },
        }),
      ),
    );
    expect(named(results, 'kernel module ip_set').detail).toBe('loadable (modules.dep)');
    expect(named(results, 'kernel module vxlan').detail).toBe('built in (modules.builtin)');
    expect(named(results, 'kernel module nf_conntrack').detail).toBe('loaded');
    expect(named(results, 'kernel module xt_set')).toMatchObject({
      level: 'FAIL',
      detail: "missing (CONFIG_NETFILTER_XT_SET=m in /boot/config-6.1.0, but the module is not installed; not in modules.builtin or modules.dep): iptables rules cannot match the policy's ipsets",
    });
    expect(systemPasses(results)).toBe(false);
    expect(checkSummary(results)).toBe('This host cannot run calico-libnetwork: 1 required check(s) failed, 0 warning(s).');
  });

  it('a host that tells nothing about its modules: warnings that say so, never a FAIL', async () => {
    const results = await check(host(modules({})));
    const ipSet = named(results, 'kernel module ip_set');
    expect(ipSet.level).toBe('WARNING');
    expect(ipSet.detail).toMatch(/^cannot tell: .*: if it is missing, policy keeps its address sets in ipsets$/);
    expect(systemPasses(results)).toBe(true);
  });

  it('the daemon having found IPIP unavailable is reported as it said it', async () => {
    const results = await check(host({ daemonStatus: async () => ({ ipipUnavailable: IPIP_UNAVAILABLE }) }));
    expect(named(results, 'kernel module ipip')).toMatchObject({ level: 'WARNING', detail: `the running daemon found: ${IPIP_UNAVAILABLE}` });
  });

  it('iptables: legacy and old versions are legacy; missing or unrecognised is a FAIL; ipset missing is a FAIL', async () => {
    expect(iptablesBackend('iptables v1.8.7 (legacy)')).toBe('legacy');
    expect(iptablesBackend('iptables v1.6.1')).toBe('legacy');
    expect(iptablesBackend('iptables v1.8.9 (nf_tables)')).toBe('nf_tables');
    expect(iptablesBackend('something else')).toBeUndefined();
    const missing = await check(host({ iptablesVersion: fail('spawn iptables ENOENT'), ipsetVersion: fail('spawn ipset ENOENT') }));
    expect(named(missing, 'iptables')).toMatchObject({ level: 'FAIL', detail: 'spawn iptables ENOENT: the daemon programs policy and NAT with iptables-restore' });
    expect(named(missing, 'ipset').level).toBe('FAIL');
    expect(named(await check(host({ iptablesVersion: async () => 'nonsense' })), 'iptables').level).toBe('FAIL');
  });

  it('BIRD: required with the bird backend (and only BIRD 2), not needed with vxlan or none', async () => {
    const noBird = host({ bird: fail('bird is not on PATH (/usr/bin)') });
    expect(named(await check(noBird), 'BIRD')).toMatchObject({ level: 'FAIL', detail: 'bird is not on PATH (/usr/bin): BGP (the default backend) runs BIRD 2' });
    expect(named(await check(noBird, 'vxlan'), 'BIRD')).toMatchObject({ level: 'OK', detail: 'bird is not on PATH (/usr/bin); not needed with CALICO_NETWORKING_BACKEND=vxlan' });
    const bird1 = host({ bird: async () => ({ path: '/usr/sbin/bird', version: 'BIRD version 1.6.8' }) });
    expect(named(await check(bird1), 'BIRD').level).toBe('FAIL');
    expect(named(await check(bird1, 'none'), 'BIRD').level).toBe('OK');
  });

  it('forwarding off is fine where the daemon can turn it on; IPv4 unsettable is a FAIL, IPv6 a warning, IPv6 disabled not checked', async () => {
    const off = await check(host({}, { 'net.ipv4.ip_forward': { value: '0', writable: true } }));
    expect(named(off, 'net.ipv4.ip_forward')).toMatchObject({ level: 'OK', detail: '0: the daemon sets 1 when it starts' });
    const readOnly = await check(
      host({}, { 'net.ipv4.ip_forward': { value: '0', writable: false }, 'net.ipv6.conf.all.forwarding': { value: '0', writable: false }, 'net.ipv4.conf.default.proxy_arp': { value: '0', writable: false } }),
    );
    expect(named(readOnly, 'net.ipv4.ip_forward').level).toBe('FAIL');
    expect(named(readOnly, 'net.ipv6.conf.all.forwarding').level).toBe('WARNING');
    expect(named(readOnly, 'interface sysctls').level).toBe('FAIL');
    const noIpv6 = await check(host({}, { 'net.ipv6.conf.all.disable_ipv6': { value: '1', writable: true } }));
    expect(noIpv6.some((r) => r.name === 'net.ipv6.conf.all.forwarding')).toBe(false);
  });

  it('Docker unreachable and a plugin directory without a serving daemon are warnings', async () => {
    const results = await check(
      host({
        docker: fail('unix:///var/run/docker.sock: connect ENOENT /var/run/docker.sock'),
        pluginDirectory: async () => ({ path: '/run/docker/plugins', exists: true, socket: 'silent' }),
      }),
    );
    expect(named(results, 'Docker')).toMatchObject({ level: 'WARNING', detail: 'not reachable (unix:///var/run/docker.sock: connect ENOENT /var/run/docker.sock): Calico networks can be created once it runs' });
    expect(named(results, 'plugin directory')).toMatchObject({ level: 'WARNING', detail: '/run/docker/plugins/calico.sock is there but does not answer: the daemon is not serving' });
    expect(named(await check(host({ pluginDirectory: async () => ({ path: '/x', exists: false, socket: 'absent' }) })), 'plugin directory').level).toBe('WARNING');
    expect(systemPasses(results)).toBe(true);
    expect(checkSummary(results)).toBe('This host can run calico-libnetwork (2 warning(s)).');
  });
});
