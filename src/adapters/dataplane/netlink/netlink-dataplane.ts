import { readFileSync, writeFileSync } from 'node:fs';
import { Cidr, cidrsOverlap, familyBits, formatCidr, IpAddr, IpFamily } from '../../../domain/cidr.js';
import { DataplaneError } from '../../../domain/errors.js';
import { FORWARDING_SYSCTLS, type Dataplane, type HostInterface, type HostRoute, type LinkInfo, type TunnelApplyResult, type TunnelDataplane } from '../../../ports/dataplane.js';
import type { TunnelPlan } from '../../../calc/tunnel-routes.js';
import { AF, addressBytes, bytesToValue, createRtNetlink, ifla, MAIN_TABLE, macText, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, rt, RtSocket, TIMEOUT, toBuffer } from './netlink-codec.js';
import { NetlinkTunnels } from './netlink-tunnels.js';
import type { CommandRunner } from '../command.js';

/** `ip`'s words for a link that is not there (iproute2's, and busybox's where a plugin's PATH finds it first). */
const NO_SUCH_LINK = /Cannot find device|can't find device|does not exist/;

/**
 * The host kernel through rtnetlink (npm `netlink`) and /proc/sys. The kernel does rtnetlink work
 * inside sendmsg(), on the calling thread: most requests take a tenth of a millisecond and run on the
 * daemon's own thread. Deleting a veth is the exception: the kernel waits for RCU grace periods
 * (10–30 ms), which would stall every Docker request behind it. Deletions therefore run as `ip link
 * del` through the command runner, in a process that pays for the wait, and no veth is created under
 * a name whose deletion is still under way. (A worker thread did this before: a second V8 isolate,
 * ~10 MB resident, kept for the one slow call.)
 */
export class NetlinkDataplane implements Dataplane, TunnelDataplane {
  private readonly socket: RtSocket = createRtNetlink();
  /** Deletions under way, by link name. */
  private readonly deletions = new Map<string, Promise<boolean>>();
  private closed = false;
  /**
   * One request at a time on the socket: the kernel refuses a second dump while one is in progress
   * on the same socket (EBUSY), and the library mixes up interleaved multipart replies. Docker calls
   * Leave for several containers at once, so this is the normal case.
   */
  private tail: Promise<unknown> = Promise.resolve();

  private readonly tunnels = new NetlinkTunnels(this.socket, (op, detail, work) => this.run(op, detail, work));

  constructor(private readonly runCommand: CommandRunner) {}

  applyTunnels(plan: TunnelPlan, options: { resync?: boolean } = {}): Promise<TunnelApplyResult> {
    return this.tunnels.apply(plan, options);
  }

  private async run<T>(op: string, detail: string, work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work);
    this.tail = result.catch(() => undefined);
    try {
      return await result;
    } catch (error) {
      const errno = /Request rejected: (\w+)/.exec((error as Error).message)?.[1] ?? (error as Error).message;
      throw new DataplaneError(op, errno, detail);
    }
  }

  /** One link by name (RTM_GETLINK with IFLA_IFNAME): no dump of every link. */
  private async link(name: string) {
    try {
      return (await this.run('getLink', name, () => this.socket.getLink({}, { ifname: name }, TIMEOUT)))[0];
    } catch (error) {
      if (error instanceof DataplaneError && error.errno === 'ENODEV') return undefined;
      throw error;
    }
  }

  private async linkIndex(name: string): Promise<number | undefined> {
    return (await this.link(name))?.data.index;
  }

  async createVeth(hostName: string, peerName: string, mtu?: number): Promise<{ hostMac: string }> {
    await Promise.all([this.deletions.get(hostName), this.deletions.get(peerName)]);
    const peer = Buffer.concat([rt.formatLink({}), toBuffer(ifla.formatLinkAttrs({ ifname: peerName, ...(mtu ? { mtu } : {}) }))]);
    const linkinfo = toBuffer(ifla.formatInfo({ kind: 'veth', data: toBuffer(ifla.formatVethInfo({ peer })) }));
    const detail = `${hostName}/${peerName}${mtu ? ` mtu ${mtu}` : ''}`;
    await this.run('create veth', detail, () =>
      this.socket.newLink({}, { ifname: hostName, ...(mtu ? { mtu } : {}), linkinfo }, { flags: NLM_F_CREATE | NLM_F_EXCL, ...TIMEOUT }),
    );
    // Up by name (a veth cannot be created up: its peer does not exist yet), with no dump of every link.
    for (const name of [hostName, peerName]) {
      await this.run('set link up', name, () => this.socket.setLink({ flags: { up: true }, change: { up: true } }, { ifname: name }, TIMEOUT));
    }
    const host = await this.link(hostName);
    if (!host) throw new DataplaneError('create veth', 'ENODEV', `${hostName} missing after creation`);
    return { hostMac: macText(host.attrs.address) };
  }

  deleteLink(name: string): Promise<boolean> {
    const underWay = this.deletions.get(name);
    if (underWay) return underWay;
    const deletion = this.runCommand('ip', ['link', 'del', 'dev', name]).then(({ code, stderr }) => {
      if (code === 0) return true;
      if (NO_SUCH_LINK.test(stderr)) return false;
      throw new DataplaneError('delete link', 'EIO', `${name}: ${stderr.trim() || `ip exited with code ${code}`}`);
    });
    this.deletions.set(name, deletion);
    const forget = (): void => void this.deletions.delete(name);
    deletion.then(forget, forget);
    return deletion;
  }

  async listLinks(prefix: string): Promise<LinkInfo[]> {
    const links = await this.run('getLinks', prefix, () => this.socket.getLinks(undefined, undefined, TIMEOUT));
    return links
      .filter((l) => l.attrs.ifname?.startsWith(prefix))
      .map((l) => ({
        name: l.attrs.ifname!,
        mac: macText(l.attrs.address),
        up: l.data.flags?.up === true,
        ...(l.attrs.linkNetnsid !== undefined ? { peerNetns: l.attrs.linkNetnsid } : {}),
      }));
  }

  async configureHostInterface(name: string, families: { ipv4: boolean; ipv6: boolean }): Promise<void> {
    if (families.ipv4) {
      sysctl(`net/ipv4/conf/${name}/rp_filter`, '1');
      sysctl(`net/ipv4/conf/${name}/route_localnet`, '1');
      sysctl(`net/ipv4/conf/${name}/proxy_arp`, '1');
      sysctl(`net/ipv4/neigh/${name}/proxy_delay`, '0');
      sysctl(`net/ipv4/conf/${name}/forwarding`, '1');
    }
    if (families.ipv6 && ipv6Enabled()) {
      sysctl(`net/ipv6/conf/${name}/proxy_ndp`, '1');
      sysctl(`net/ipv6/conf/${name}/forwarding`, '1');
    }
  }

  async enableForwarding(): Promise<void> {
    sysctl(sysctlPath(FORWARDING_SYSCTLS.ipv4), '1');
    if (ipv6Enabled()) sysctl(sysctlPath(FORWARDING_SYSCTLS.ipv6), '1');
  }

  async setHostRoute(route: HostRoute): Promise<void> {
    const oif = await this.linkIndex(route.interfaceName);
    if (oif === undefined) throw new DataplaneError('add route', 'ENODEV', `${route.interfaceName} does not exist`);
    const detail = `${formatCidr({ family: route.address.family, base: route.address.value, prefix: familyBits(route.address.family) })} dev ${route.interfaceName}`;
    await this.run('add route', detail, () =>
      this.socket.newRoute(
        { family: AF[route.address.family], dstLen: familyBits(route.address.family), table: MAIN_TABLE, protocol: 'BOOT', scope: 'LINK', type: 'UNICAST' },
        { dst: addressBytes(route.address), oif },
        { flags: NLM_F_CREATE | NLM_F_REPLACE, ...TIMEOUT },
      ),
    );
  }

  async removeHostRoute(address: IpAddr): Promise<void> {
    try {
      await this.run('delete route', '', () =>
        this.socket.delRoute({ family: AF[address.family], dstLen: familyBits(address.family), table: MAIN_TABLE, scope: 'NOWHERE' }, { dst: addressBytes(address) }, TIMEOUT),
      );
    } catch (error) {
      if (!(error instanceof DataplaneError && error.errno === 'ESRCH')) throw error;
    }
  }

  async listHostRoutes(prefix: string): Promise<HostRoute[]> {
    const links = await this.listLinksByIndex();
    const routes: HostRoute[] = [];
    for (const family of [4, 6] as const) {
      const found = await this.run('list routes', '', () => this.socket.getRoutes({ family: AF[family] }, undefined, TIMEOUT));
      for (const r of found) {
        const name = r.attrs.oif === undefined ? undefined : links.get(r.attrs.oif);
        if (r.data.dstLen !== familyBits(family) || r.data.type !== 'UNICAST' || !r.attrs.dst || !name?.startsWith(prefix)) continue;
        if (r.attrs.table !== undefined && r.attrs.table !== MAIN_TABLE) continue;
        routes.push({ address: { family, value: bytesToValue(r.attrs.dst) }, interfaceName: name });
      }
    }
    return routes;
  }

  async syncBlackholes(blocks: Cidr[], within: Cidr[]): Promise<void> {
    const wanted = new Map(blocks.map((b) => [formatCidr(b), b]));
    for (const family of [4, 6] as const) {
      if (family === 6 && !blocks.some((b) => b.family === 6) && !ipv6Enabled()) continue;
      const found = await this.run('list routes', '', () => this.socket.getRoutes({ family: AF[family] }, undefined, TIMEOUT));
      for (const r of found) {
        if (r.data.type !== 'BLACKHOLE' || !r.attrs.dst) continue;
        const cidr: Cidr = { family, base: bytesToValue(r.attrs.dst), prefix: r.data.dstLen ?? 0 };
        if (wanted.delete(formatCidr(cidr))) continue;
        // Only blackholes inside our pools are ours to remove.
        if (within.some((pool) => cidrsOverlap(pool, cidr))) {
          await this.run('delete blackhole', formatCidr(cidr), () =>
            this.socket.delRoute({ family: AF[family], dstLen: cidr.prefix, table: MAIN_TABLE, type: 'BLACKHOLE' }, { dst: r.attrs.dst! }, TIMEOUT),
          );
        }
      }
    }
    for (const block of wanted.values()) {
      await this.run('add blackhole', formatCidr(block), () =>
        this.socket.newRoute(
          { family: AF[block.family], dstLen: block.prefix, table: MAIN_TABLE, protocol: 'STATIC', scope: 'UNIVERSE', type: 'BLACKHOLE' },
          { dst: addressBytes({ family: block.family, value: block.base }) },
          { flags: NLM_F_CREATE | NLM_F_REPLACE, ...TIMEOUT },
        ),
      );
    }
  }

  async deleteRoutes(protocol: number, within: Cidr[]): Promise<number> {
    let deleted = 0;
    for (const family of [4, 6] as const) {
      if (!within.some((c) => c.family === family)) continue;
      const found = await this.run('list routes', '', () => this.socket.getRoutes({ family: AF[family] }, undefined, TIMEOUT));
      for (const r of found) {
        const number = Number(rt.RouteProtocol[r.data.protocol as keyof typeof rt.RouteProtocol] ?? r.data.protocol);
        if (number !== protocol || !r.attrs.dst || (r.attrs.table ?? r.data.table) !== MAIN_TABLE) continue;
        const cidr: Cidr = { family, base: bytesToValue(r.attrs.dst), prefix: r.data.dstLen ?? 0 };
        if (!within.some((pool) => cidrsOverlap(pool, cidr))) continue;
        try {
          await this.run('delete route', formatCidr(cidr), () => this.socket.delRoute({ ...r.data }, { dst: r.attrs.dst!, ...(r.attrs.table ? { table: r.attrs.table } : {}) }, TIMEOUT));
          deleted++;
        } catch (error) {
          // Gone since the dump (BIRD removed it meanwhile): nothing left to do.
          if (!(error instanceof DataplaneError && error.errno === 'ESRCH')) throw error;
        }
      }
    }
    return deleted;
  }

  async listInterfaces(): Promise<HostInterface[]> {
    const links = await this.run('getLinks', '', () => this.socket.getLinks(undefined, undefined, TIMEOUT));
    const addresses = await this.run('getAddresses', '', () => this.socket.getAddresses(undefined, undefined, TIMEOUT));
    return links.map((link) => ({
      name: link.attrs.ifname ?? '',
      index: link.data.index!,
      up: link.data.flags?.up === true,
      mtu: link.attrs.mtu ?? 0,
      addresses: addresses
        .filter((a) => a.data.index === link.data.index && (a.data.family === AF[4] || a.data.family === AF[6]))
        .flatMap((a) => {
          // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the far end on point-to-point links).
          const bytes = a.attrs.local ?? a.attrs.address;
          if (!bytes) return [];
          const family: IpFamily = a.data.family === AF[4] ? 4 : 6;
          return [{ address: { family, value: bytesToValue(bytes) }, prefix: a.data.prefixlen ?? familyBits(family) }];
        }),
    }));
  }

  private async listLinksByIndex(): Promise<Map<number, string>> {
    const links = await this.run('getLinks', '', () => this.socket.getLinks(undefined, undefined, TIMEOUT));
    return new Map(links.map((l) => [l.data.index!, l.attrs.ifname ?? '']));
  }

  /** Closes the socket once the deletions under way have ended. */
  async close(): Promise<void> {
    await Promise.allSettled(this.deletions.values());
    if (this.closed) return;
    this.closed = true;
    this.socket.socket.close();
  }
}

// Synchronous: a write to /proc/sys takes microseconds, where a round trip through libuv's thread
// pool takes a tenth of a millisecond.
function sysctl(path: string, value: string): void {
  try {
    writeFileSync(`/proc/sys/${path}`, value);
  } catch (error) {
    throw new DataplaneError('sysctl', (error as NodeJS.ErrnoException).code ?? 'EIO', `${path.replace(/\//g, '.')}=${value}`);
  }
}

const sysctlPath = (name: string): string => name.replace(/\./g, '/');

function ipv6Enabled(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv6/conf/all/disable_ipv6', 'utf8').trim() === '0';
  } catch {
    return false;
  }
}
