import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { IpAddr, IpFamily, parseIp } from '../../domain/cidr.js';
import { InvalidRequestError } from '../../domain/errors.js';
import type { Dataplane, HostInterface } from '../../ports/dataplane.js';
import type { HostNetwork } from '../../ports/host-network.js';

/** Interfaces from the dataplane; the route source from a connected UDP socket, as calico/node's can-reach does. */
export class KernelHostNetwork implements HostNetwork {
  constructor(private readonly dataplane: Pick<Dataplane, 'listInterfaces'>) {}

  interfaces(): Promise<HostInterface[]> {
    return this.dataplane.listInterfaces();
  }

  async sourceAddressFor(destination: string, family: IpFamily): Promise<IpAddr> {
    const host = destination.replace(/^\[(.*)\]$/, '$1');
    const address = await lookup(host, { family }).catch(() => {
      throw new InvalidRequestError(`can-reach=${destination}: ${host} does not resolve to an IPv${family} address`);
    });
    const socket = createSocket(family === 4 ? 'udp4' : 'udp6');
    try {
      // connect() on a datagram socket only asks the kernel for a route: nothing is sent.
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.connect(80, address.address, () => resolve());
      });
      return parseIp(socket.address().address);
    } catch (error) {
      throw new InvalidRequestError(`can-reach=${destination}: no route to ${address.address} (${(error as Error).message})`);
    } finally {
      socket.close();
    }
  }
}
