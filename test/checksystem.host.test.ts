import { describe, expect, it } from 'vitest';
import { calicoctl } from './helpers/daemon.js';

/**
 * The real `calicoctl node checksystem` on this machine, whose kernel (README: Tunnels) has every
 * module the policy needs built in, no ipip and no module support, iptables on nf_tables and
 * Debian's BIRD 2.
 */
describe('calicoctl node checksystem on this machine', () => {
  it('reports ipip missing (a warning), the nf_tables backend and BIRD found, one line a check, and exits 0', () => {
    const result = calicoctl(['node', 'checksystem'], { CALICO_RUN_DIR: '/nonexistent/calico-run' });
    const lines = result.stdout.trimEnd().split('\n');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(lines).toContain(
      'WARNING  kernel module ipip: missing (CONFIG_NET_IPIP is not set in /proc/config.gz; this kernel cannot load modules): ' +
        'this kernel has no ipip module: pools in IPIP mode are not routed through this host (VXLAN works)',
    );
    for (const module of ['ip_set', 'xt_set', 'nf_conntrack', 'vxlan']) expect(lines.some((l) => l.startsWith(`OK       kernel module ${module}: built in`))).toBe(true);
    expect(lines.find((l) => l.includes(' iptables: '))).toMatch(/^OK {7}iptables: iptables v1\.8\.\d+ \(nf_tables\): the nf_tables backend$/);
    expect(lines.find((l) => l.includes(' BIRD: '))).toMatch(/^OK {7}BIRD: BIRD version 2\.\d+\.\d+ at \/usr\/sbin\/bird$/);
    expect(lines.find((l) => l.includes(' net.ipv4.ip_forward: '))).toMatch(/^OK {7}net\.ipv4\.ip_forward: (1|0: the daemon sets 1 when it starts)$/);
    // Docker may or may not run here: either way the line says which.
    expect(lines.find((l) => l.includes(' Docker: '))).toMatch(/^(OK {7}Docker: \d+\.\d+.* at unix:\/\/\/var\/run\/docker\.sock|WARNING  Docker: not reachable \(unix:\/\/\/var\/run\/docker\.sock: .*)$/);
    expect(lines.every((l) => /^(OK|WARNING|FAIL) +\S/.test(l) || l === lines.at(-1))).toBe(true);
    expect(lines.at(-1)).toMatch(/^This host can run calico-libnetwork \(\d+ warning\(s\)\)\.$/);
  });
});
