import type { TunnelPlan } from '../calc/tunnel-routes.js';
import type { Cidr, IpAddr } from '../domain/cidr.js';

export interface LinkInfo {
  name: string;
  mac: string;
  up: boolean;
  peerNetns?: number;
}

/** A host interface with its addresses, for choosing the node's address (calico/node's autodetection). */
export interface HostInterface {
  name: string;
  index: number;
  up: boolean;
  mtu: number;
  addresses: { address: IpAddr; prefix: number }[];
}

export interface HostRoute {
  address: IpAddr;
  interfaceName: string;
}

/** The host-wide sysctls `enableForwarding` sets (IPv6's only where IPv6 is enabled). */
export const FORWARDING_SYSCTLS = { ipv4: 'net.ipv4.ip_forward', ipv6: 'net.ipv6.conf.all.forwarding' } as const;

/** What the network driver needs from the host kernel. The adapter owns netlink and /proc/sys. */
export interface Dataplane {
  /** Creates the veth pair, both ends up; returns the host end's MAC. Fails with EEXIST if it exists. */
  createVeth(hostName: string, peerName: string, mtu?: number): Promise<{ hostMac: string }>;
  /** Deletes a link (its peer and routes go with it); false when it did not exist. */
  deleteLink(name: string): Promise<boolean>;
  /** Links whose name starts with `prefix`; `peerNetns` is the netns id of a veth's peer, when it is elsewhere. */
  listLinks(prefix: string): Promise<LinkInfo[]>;
  /** proxy ARP, proxy_delay 0, forwarding, rp_filter strict, route_localnet; IPv6 proxy_ndp and forwarding. */
  configureHostInterface(name: string, families: { ipv4: boolean; ipv6: boolean }): Promise<void>;
  /** Turns on IPv4 (and IPv6 when available) forwarding for the host. */
  enableForwarding(): Promise<void>;
  /** Adds or replaces the /32 (/128) route to a workload through its veth. */
  setHostRoute(route: HostRoute): Promise<void>;
  removeHostRoute(address: IpAddr): Promise<void>;
  /** Workload routes: /32 and /128 link routes through interfaces starting with `prefix`. */
  listHostRoutes(prefix: string): Promise<HostRoute[]>;
  /** Every interface of the host with its IPv4 and IPv6 addresses. */
  listInterfaces(): Promise<HostInterface[]>;
  /** Makes the blackhole routes inside `within` exactly `blocks`. */
  syncBlackholes(blocks: Cidr[], within: Cidr[]): Promise<void>;
  /** Deletes the main table's routes of `protocol` (a kernel route protocol number) inside `within`; returns how many. */
  deleteRoutes(protocol: number, within: Cidr[]): Promise<number>;
  close(): Promise<void>;
}

export interface TunnelApplyResult {
  /** IPIP was asked for and this kernel cannot do it (no ipip module). */
  ipipUnavailable: boolean;
  /** Routes, neighbours and FDB entries added or removed. */
  changes: number;
}

/** The tunnel side of the host kernel: VXLAN/IPIP devices, neighbours, FDB entries, tunnel routes. */
export interface TunnelDataplane {
  /**
   * Makes the kernel exactly `plan` (the daemon's tunnel routes are those of protocol 80). May send
   * only what differs from the plan it last applied; `resync` compares with the kernel itself.
   */
  applyTunnels(plan: TunnelPlan, options?: { resync?: boolean }): Promise<TunnelApplyResult>;
}
