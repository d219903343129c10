import { TUNNEL_ROUTE_PROTOCOL } from '../../../calc/bird-config.js';
import { IPIP_DEVICE, TunnelPlan, VXLAN_DEVICE } from '../../../calc/tunnel-routes.js';
import { formatIp, parseCidr } from '../../../domain/cidr.js';
import { DataplaneError } from '../../../domain/errors.js';
import type { TunnelApplyResult } from '../../../ports/dataplane.js';
import { AF, AF_BRIDGE, bytesToValue, ifla, ipv4Bytes, MAIN_TABLE, macBytes, macText, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, rt, type RouteProtocol, RtSocket, TIMEOUT, toBuffer } from './netlink-codec.js';

const AF_INET = AF[4];
const RTNH_F_ONLINK = 0x4;
/** The library types the protocol as its enum; the kernel takes any byte. */
const PROTOCOL = TUNNEL_ROUTE_PROTOCOL as unknown as RouteProtocol;

const ipText = (bytes: Buffer | undefined): string => (bytes ? formatIp({ family: 4, value: bytesToValue(bytes) }) : '');
const port16 = (port: number): Buffer => Buffer.from([port >> 8, port & 0xff]);

type Run = <T>(op: string, detail: string, work: () => Promise<T>) => Promise<T>;

/** What the adapter last made the kernel hold, so the next plan costs only its differences. */
interface Written {
  /** The devices' part of the plan it was made for (a change there means a full sync). */
  devicesKey: string;
  ipipUnavailable: boolean;
  vxlanIndex: number | undefined;
  devices: Map<string, number>;
  neighbours: Map<string, string>;
  fdb: Map<string, string>;
  routes: Map<string, string>;
}

/**
 * The tunnel part of the kernel through rtnetlink: the `vxlan.calico` device (VNI, port, parent,
 * source, MAC, MTU, its /32), `tunl0`, permanent neighbour and FDB entries on `vxlan.calico`, and the
 * daemon's tunnel routes (protocol 80, `onlink`). A full sync reads the kernel and makes it match
 * the plan: what is missing is added, what is ours and no longer planned is removed. It runs first,
 * when the devices change, after any failure and when asked (`resync`); in between, a plan is
 * compared with what was last written, and only its differences are sent. Reading back every
 * neighbour, FDB entry and route cost each host ~7 ms of CPU per change, and with VXLAN routed from
 * the datastore every host hears of every block claimed anywhere.
 */
export class NetlinkTunnels {
  private written: Written | undefined;

  constructor(
    private readonly socket: RtSocket,
    private readonly run: Run,
  ) {}

  async apply(plan: TunnelPlan, options: { resync?: boolean } = {}): Promise<TunnelApplyResult> {
    const devicesKey = JSON.stringify([plan.vxlan, plan.ipip]);
    const written = options.resync || this.written?.devicesKey !== devicesKey ? undefined : this.written;
    this.written = undefined;
    const read = written ? undefined : await this.readKernel(plan, devicesKey);
    const next = written ?? read!.state;
    const wanted = wantedState(plan, next.devices);
    let changes = read?.changes ?? 0;
    if (next.vxlanIndex !== undefined) {
      const index = next.vxlanIndex;
      changes += await this.reconcile(next.neighbours, wanted.neighbours, (ip) => this.deleteNeighbour(index, ip), (ip, mac) => this.addNeighbour(index, ip, mac));
      changes += await this.reconcile(next.fdb, wanted.fdb, (mac, dst) => this.deleteFdb(index, mac, dst), (mac, dst) => this.addFdb(index, mac, dst));
    }
    changes += await this.reconcile(next.routes, wanted.routes, (cidr) => this.deleteRoute(cidr), (cidr, target) => this.addRoute(cidr, target, next.devices));
    this.written = { ...next, neighbours: wanted.neighbours, fdb: wanted.fdb, routes: wanted.routes };
    return { ipipUnavailable: next.ipipUnavailable, changes };
  }

  /** Brings the devices to the plan and reads what the kernel holds besides. */
  private async readKernel(plan: TunnelPlan, devicesKey: string): Promise<{ state: Written; changes: number }> {
    let changes = 0;
    const links = await this.run('getLinks', '', () => this.socket.getLinks(undefined, undefined, TIMEOUT));
    const index = (name: string): number | undefined => links.find((l) => l.attrs.ifname === name)?.data.index;
    let vxlanIndex = index(VXLAN_DEVICE);
    if (plan.vxlan) vxlanIndex = await this.ensureVxlan(plan.vxlan, links, index);
    else if (vxlanIndex !== undefined) {
      await this.run('delete link', VXLAN_DEVICE, () => this.socket.delLink({}, { ifname: VXLAN_DEVICE }, TIMEOUT));
      vxlanIndex = undefined;
      changes++;
    }
    let ipipIndex = index(IPIP_DEVICE);
    let ipipUnavailable = false;
    if (plan.ipip) {
      try {
        ipipIndex = await this.ensureIpip(plan.ipip, ipipIndex);
      } catch (error) {
        if (!(error instanceof DataplaneError)) throw error;
        ipipUnavailable = true;
        ipipIndex = undefined;
      }
    }
    const devices = new Map<string, number>(links.filter((l) => l.attrs.ifname).map((l) => [l.attrs.ifname!, l.data.index!]));
    devices.delete(IPIP_DEVICE);
    if (vxlanIndex !== undefined) devices.set(VXLAN_DEVICE, vxlanIndex);
    if (ipipIndex !== undefined) devices.set(IPIP_DEVICE, ipipIndex);
    const { neighbours, fdb } = vxlanIndex === undefined ? { neighbours: new Map<string, string>(), fdb: new Map<string, string>() } : await this.readNeighbours(vxlanIndex);
    return { state: { devicesKey, ipipUnavailable, vxlanIndex, devices, neighbours, fdb, routes: await this.readRoutes(devices) }, changes };
  }

  private async ensureVxlan(wanted: NonNullable<TunnelPlan['vxlan']>, links: Awaited<ReturnType<RtSocket['getLinks']>>, index: (name: string) => number | undefined): Promise<number> {
    const parent = index(wanted.parent);
    if (parent === undefined) throw new DataplaneError('create vxlan', 'ENODEV', `parent ${wanted.parent} does not exist`);
    const existing = links.find((l) => l.attrs.ifname === VXLAN_DEVICE);
    if (existing) {
      const info = existing.attrs.linkinfo ? ifla.parseInfo(existing.attrs.linkinfo) : undefined;
      const data = info?.kind === 'vxlan' && info.data ? ifla.parseVxlan(info.data) : undefined;
      const same =
        data !== undefined &&
        data.id === wanted.vni &&
        data.link === parent &&
        ipText(data.local) === wanted.localIp &&
        data.port?.readUInt16BE(0) === wanted.port &&
        macText(existing.attrs.address) === wanted.mac;
      // A device that differs in what cannot be changed in place is made again, as Felix does.
      if (!same) await this.run('delete link', VXLAN_DEVICE, () => this.socket.delLink({}, { ifname: VXLAN_DEVICE }, TIMEOUT));
      else if (existing.attrs.mtu !== wanted.mtu || existing.data.flags?.up !== true) {
        await this.run('set link', VXLAN_DEVICE, () => this.socket.setLink({ flags: { up: true }, change: { up: true } }, { ifname: VXLAN_DEVICE, mtu: wanted.mtu }, TIMEOUT));
      }
      if (same) return this.syncAddress(existing.data.index!, wanted.address);
    }
    const linkinfo = toBuffer(
      ifla.formatInfo({ kind: 'vxlan', data: toBuffer(ifla.formatVxlan({ id: wanted.vni, link: parent, local: ipv4Bytes(wanted.localIp), port: port16(wanted.port), learning: 0, udpCsum: 0 })) }),
    );
    const detail = `vni ${wanted.vni} port ${wanted.port} dev ${wanted.parent} local ${wanted.localIp}`;
    await this.run('create vxlan', detail, () =>
      this.socket.newLink({}, { ifname: VXLAN_DEVICE, mtu: wanted.mtu, address: macBytes(wanted.mac), linkinfo }, { flags: NLM_F_CREATE | NLM_F_EXCL, ...TIMEOUT }),
    );
    await this.run('set link up', VXLAN_DEVICE, () => this.socket.setLink({ flags: { up: true }, change: { up: true } }, { ifname: VXLAN_DEVICE }, TIMEOUT));
    const created = (await this.run('getLink', VXLAN_DEVICE, () => this.socket.getLink({}, { ifname: VXLAN_DEVICE }, TIMEOUT)))[0]!;
    return this.syncAddress(created.data.index!, wanted.address);
  }

  /** `tunl0` exists only where the ipip module is loaded: creating it elsewhere fails, and IPIP is then unavailable. */
  private async ensureIpip(wanted: NonNullable<TunnelPlan['ipip']>, existing: number | undefined): Promise<number> {
    if (existing === undefined) {
      const linkinfo = toBuffer(ifla.formatInfo({ kind: 'ipip' }));
      await this.run('create ipip', IPIP_DEVICE, () => this.socket.newLink({}, { ifname: IPIP_DEVICE, linkinfo }, { flags: NLM_F_CREATE | NLM_F_EXCL, ...TIMEOUT }));
    }
    await this.run('set link', IPIP_DEVICE, () => this.socket.setLink({ flags: { up: true }, change: { up: true } }, { ifname: IPIP_DEVICE, mtu: wanted.mtu }, TIMEOUT));
    const link = (await this.run('getLink', IPIP_DEVICE, () => this.socket.getLink({}, { ifname: IPIP_DEVICE }, TIMEOUT)))[0]!;
    return this.syncAddress(link.data.index!, wanted.address);
  }

  /** The device's IPv4 addresses become exactly `address`/32 (none without one). */
  private async syncAddress(index: number, address: string | undefined): Promise<number> {
    const current = (await this.run('getAddresses', '', () => this.socket.getAddresses(undefined, undefined, TIMEOUT))).filter((a) => a.data.index === index && a.data.family === AF_INET);
    for (const a of current) {
      const ip = ipText(a.attrs.local ?? a.attrs.address);
      if (ip === address && a.data.prefixlen === 32) continue;
      await this.run('delete address', ip, () => this.socket.delAddress({ family: AF_INET, prefixlen: a.data.prefixlen, index }, { local: a.attrs.local ?? a.attrs.address! }, TIMEOUT));
    }
    if (address && !current.some((a) => ipText(a.attrs.local ?? a.attrs.address) === address && a.data.prefixlen === 32)) {
      await this.run('add address', `${address}/32`, () =>
        this.socket.newAddress({ family: AF_INET, prefixlen: 32, index }, { local: ipv4Bytes(address), address: ipv4Bytes(address) }, { flags: NLM_F_CREATE | NLM_F_REPLACE, ...TIMEOUT }),
      );
    }
    return index;
  }

  /**
   * Neighbours (VTEP IP → MAC) and FDB entries (MAC → remote host) on vxlan.calico. A neighbour that
   * is not permanent (the kernel's own) counts as a wrong one, to be replaced.
   */
  private async readNeighbours(index: number): Promise<{ neighbours: Map<string, string>; fdb: Map<string, string> }> {
    const neighbours = (await this.run('getNeighbors', '', () => this.socket.getNeighbors({ family: AF_INET }, undefined, TIMEOUT))).filter((n) => n.data.ifindex === index);
    const fdb = (await this.run('getNeighbors', 'fdb', () => this.socket.getNeighbors({ family: AF_BRIDGE }, undefined, TIMEOUT))).filter((n) => n.data.ifindex === index && n.attrs.dst);
    return {
      neighbours: new Map(neighbours.map((n) => [ipText(n.attrs.dst), n.data.state?.permanent ? macText(n.attrs.lladdr) : ''])),
      fdb: new Map(fdb.map((f) => [macText(f.attrs.lladdr), ipText(f.attrs.dst)])),
    };
  }

  /** The main table's protocol-80 routes, as `cidr` → `via device`. */
  private async readRoutes(devices: Map<string, number>): Promise<Map<string, string>> {
    const byIndex = new Map([...devices].map(([name, i]) => [i, name]));
    const routes = (await this.run('list routes', '', () => this.socket.getRoutes({ family: AF_INET }, undefined, TIMEOUT))).filter(
      (r) => Number(rt.RouteProtocol[r.data.protocol as keyof typeof rt.RouteProtocol] ?? r.data.protocol) === TUNNEL_ROUTE_PROTOCOL && (r.attrs.table ?? r.data.table) === MAIN_TABLE,
    );
    return new Map(routes.map((r) => [`${ipText(r.attrs.dst)}/${r.data.dstLen}`, routeTarget(ipText(r.attrs.gateway), byIndex.get(r.attrs.oif ?? -1) ?? '')]));
  }

  /** Makes `current` into `wanted`: removes what is no longer wanted, adds (replacing) what is missing or differs. */
  private async reconcile(current: Map<string, string>, wanted: Map<string, string>, remove: (key: string, value: string) => Promise<unknown>, add: (key: string, value: string) => Promise<unknown>): Promise<number> {
    let changes = 0;
    for (const [key, value] of current) {
      if (wanted.has(key)) continue;
      await remove(key, value);
      changes++;
    }
    for (const [key, value] of wanted) {
      if (current.get(key) === value) continue;
      await add(key, value);
      changes++;
    }
    return changes;
  }

  private deleteNeighbour(index: number, ip: string): Promise<unknown> {
    return this.run('delete neighbour', ip, () => this.socket.delNeighbor({ family: AF_INET, ifindex: index }, { dst: ipv4Bytes(ip) }, TIMEOUT));
  }

  private addNeighbour(index: number, ip: string, mac: string): Promise<unknown> {
    return this.run('add neighbour', `${ip} lladdr ${mac}`, () =>
      this.socket.newNeighbor({ family: AF_INET, ifindex: index, state: { permanent: true } }, { dst: ipv4Bytes(ip), lladdr: macBytes(mac) }, { flags: NLM_F_CREATE | NLM_F_REPLACE, ...TIMEOUT }),
    );
  }

  private deleteFdb(index: number, mac: string, dst: string): Promise<unknown> {
    return this.run('delete fdb', mac, () => this.socket.delNeighbor({ family: AF_BRIDGE, ifindex: index, flags: { self: true } }, { lladdr: macBytes(mac), dst: ipv4Bytes(dst) }, TIMEOUT));
  }

  private addFdb(index: number, mac: string, dst: string): Promise<unknown> {
    return this.run('add fdb', `${mac} dst ${dst}`, () =>
      this.socket.newNeighbor(
        { family: AF_BRIDGE, ifindex: index, state: { permanent: true }, flags: { self: true } },
        { lladdr: macBytes(mac), dst: ipv4Bytes(dst) },
        { flags: NLM_F_CREATE | NLM_F_REPLACE, ...TIMEOUT },
      ),
    );
  }

  private deleteRoute(cidrText: string): Promise<unknown> {
    const cidr = parseCidr(cidrText);
    return this.run('delete route', cidrText, () =>
      this.socket.delRoute({ family: AF_INET, dstLen: cidr.prefix, table: MAIN_TABLE, protocol: PROTOCOL }, { dst: ipv4Bytes(formatIp({ family: 4, value: cidr.base })) }, TIMEOUT),
    );
  }

  private addRoute(cidrText: string, target: string, devices: Map<string, number>): Promise<unknown> {
    const cidr = parseCidr(cidrText);
    const [via, device] = target.split(' ') as [string, string];
    return this.run('add route', `${cidrText} via ${via} dev ${device} onlink`, () =>
      this.socket.newRoute(
        { family: AF_INET, dstLen: cidr.prefix, table: MAIN_TABLE, protocol: PROTOCOL, scope: 'UNIVERSE', type: 'UNICAST', flags: { __unknown: RTNH_F_ONLINK } },
        { dst: ipv4Bytes(formatIp({ family: 4, value: cidr.base })), gateway: ipv4Bytes(via), oif: devices.get(device)! },
        { flags: NLM_F_CREATE | NLM_F_REPLACE, ...TIMEOUT },
      ),
    );
  }
}

const routeTarget = (via: string, device: string): string => `${via} ${device}`;

/** The plan as the maps the kernel is compared with (routes only through devices that exist). */
function wantedState(plan: TunnelPlan, devices: Map<string, number>): Pick<Written, 'neighbours' | 'fdb' | 'routes'> {
  return {
    neighbours: new Map(plan.neighbors.map((n) => [n.ip, n.mac])),
    fdb: new Map(plan.fdb.map((f) => [f.mac, f.dst])),
    routes: new Map(plan.routes.filter((r) => devices.has(r.device)).map((r) => [r.cidr, routeTarget(r.via, r.device)])),
  };
}
