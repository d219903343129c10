import rtSocket from 'netlink/dist/rt/rt.js';
import rtStructs from 'netlink/dist/rt/structs.js';
import iflaStructs from 'netlink/dist/rt/ifla.js';
import structs from 'netlink/dist/structs.js';
import { familyBits, IpAddr, IpFamily, parseIp } from '../../../domain/cidr.js';

/**
 * What both netlink adapters (links, addresses and routes; tunnels, neighbours and FDB) put in and
 * read from messages: the kernel's constants and the byte forms of addresses and MACs.
 */

// The netlink package's rtnetlink parts only: its index also loads nl80211, generic netlink and
// WireGuard, ~2 MB of resident memory the daemon never uses.
export const { createRtNetlink } = rtSocket;
export const rt = rtStructs;
export const ifla = iflaStructs;
export type RtSocket = ReturnType<typeof createRtNetlink>;
export type { RouteProtocol } from 'netlink/dist/rt/structs.js';

export const AF: Record<IpFamily, number> = { 4: 2, 6: 10 };
export const AF_BRIDGE = 7;
export const NLM_F_CREATE = 0x400;
export const NLM_F_EXCL = 0x200;
export const NLM_F_REPLACE = 0x100;
export const MAIN_TABLE = 254;
/** Every request carries a deadline: a wedged netlink socket must not hang a Docker call. */
export const TIMEOUT = { timeout: 5000 };

/** Netlink attributes encoded as the library encodes them. */
export function toBuffer(data: Parameters<InstanceType<typeof structs.AttrStream>['emit']>[0]): Buffer {
  const stream = new structs.AttrStream();
  stream.emit(data);
  return Buffer.concat(stream.bufs);
}

export const addressBytes = (ip: IpAddr): Buffer => Buffer.from(ip.value.toString(16).padStart(familyBits(ip.family) / 4, '0'), 'hex');
export const ipv4Bytes = (ip: string): Buffer => addressBytes(parseIp(ip));
export const bytesToValue = (bytes: Buffer): bigint => BigInt(`0x${bytes.toString('hex') || '0'}`);
export const macBytes = (mac: string): Buffer => Buffer.from(mac.replace(/:/g, ''), 'hex');
export const macText = (bytes: Buffer | undefined): string => (bytes ? [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':') : '');
