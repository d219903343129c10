import type { IpAddr, IpFamily } from '../domain/cidr.js';
import type { HostInterface } from './dataplane.js';

/** What choosing the node's address needs from the host. */
export interface HostNetwork {
  interfaces(): Promise<HostInterface[]>;
  /** The local address the kernel picks to reach `destination` (an address or a host name); no packet is sent. */
  sourceAddressFor(destination: string, family: IpFamily): Promise<IpAddr>;
}
