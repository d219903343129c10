import { beforeAll, describe, expect, it } from 'vitest';
import { EtcdResourceStore } from '../src/adapters/datastore/etcd/etcd-resource-store.js';
import { parseIp } from '../src/domain/cidr.js';
import type { CalicoNode } from '../src/domain/resources.js';
import type { HostInterface } from '../src/ports/dataplane.js';
import type { HostNetwork } from '../src/ports/host-network.js';
import { parseDetectionMethod } from '../src/services/nodes/address-detection.js';
import { AddressSetting, NodeRegistration } from '../src/services/nodes/node-registration.js';
import { etcdForSuite } from './helpers/ipam.js';

/**
 * Registering this host as a Calico v3 Node against a real etcd: what calico/node writes, what it
 * keeps, and when it refuses. The host's interfaces are given (a table of them is all the registration
 * reads from the host).
 */

const suite = etcdForSuite();
let store: EtcdResourceStore;
beforeAll(() => {
  store = new EtcdResourceStore(suite.ctx.etcd);
});

class GivenInterfaces implements HostNetwork {
  constructor(public list: HostInterface[]) {}
  async interfaces(): Promise<HostInterface[]> {
    return this.list;
  }
  async sourceAddressFor(): Promise<never> {
    throw new Error('not used');
  }
}

const eth0 = (...addresses: string[]): HostInterface => ({
  name: 'eth0',
  index: 2,
  up: true,
  mtu: 1500,
  addresses: addresses.map((a) => ({ address: parseIp(a.split('/')[0]!), prefix: Number(a.split('/')[1]) })),
});
const autodetect: AddressSetting = { kind: 'autodetect', method: parseDetectionMethod('first-found') };
const none: AddressSetting = { kind: 'none' };
const get = (name: string): Promise<CalicoNode | null> => store.get<CalicoNode>({ kind: 'Node', name });

describe('node registration', () => {
  it('writes the detected address as ADDR/prefix, then keeps labels and other fields across a restart, writing an address change', async () => {
    const host = new GivenInterfaces([eth0('10.0.0.5/24')]);
    await new NodeRegistration(store, host).register({ node: 'n1', ipv4: autodetect, ipv6: none });
    expect((await get('n1'))!.spec).toEqual({ bgp: { ipv4Address: '10.0.0.5/24' } });
    // A user labels the node and makes it a route reflector; then the host's address changes.
    const labelled = (await get('n1'))!;
    await store.update({ ...labelled, metadata: { ...labelled.metadata, labels: { rack: 'a' } }, spec: { bgp: { ...labelled.spec.bgp, routeReflectorClusterID: '1.0.0.1' }, ipv4VXLANTunnelAddr: '10.9.0.1' } });
    host.list = [eth0('10.0.0.6/24')];
    await new NodeRegistration(store, host).register({ node: 'n1', ipv4: autodetect, ipv6: none, asNumber: 64513 });
    const after = (await get('n1'))!;
    expect(after.metadata.labels).toEqual({ rack: 'a' });
    expect(after.metadata.uid).toBe(labelled.metadata.uid);
    expect(after.spec).toEqual({ bgp: { asNumber: 64513, ipv4Address: '10.0.0.6/24', routeReflectorClusterID: '1.0.0.1' }, ipv4VXLANTunnelAddr: '10.9.0.1' });
  });

  it('a bare address takes the prefix of the interface holding it; IP=none keeps the stored one; IPv6 only when asked', async () => {
    const host = new GivenInterfaces([eth0('10.0.0.7/16', 'fd00::7/64')]);
    await new NodeRegistration(store, host).register({ node: 'n2', ipv4: { kind: 'address', text: '10.0.0.7' }, ipv6: none });
    expect((await get('n2'))!.spec.bgp).toEqual({ ipv4Address: '10.0.0.7/16' });
    await new NodeRegistration(store, host).register({ node: 'n2', ipv4: none, ipv6: autodetect });
    expect((await get('n2'))!.spec.bgp).toEqual({ ipv4Address: '10.0.0.7/16', ipv6Address: 'fd00::7/64' });
    await new NodeRegistration(store, host).register({ node: 'n3', ipv4: { kind: 'address', text: '10.1.2.3' }, ipv6: none });
    expect((await get('n3'))!.spec.bgp).toEqual({ ipv4Address: '10.1.2.3/32' });
  });

  it('refuses an address another node holds, naming that node, and writes nothing', async () => {
    const host = new GivenInterfaces([eth0('10.0.0.8/24')]);
    await new NodeRegistration(store, host).register({ node: 'first', ipv4: autodetect, ipv6: none });
    await expect(new NodeRegistration(store, host).register({ node: 'second', ipv4: autodetect, ipv6: none })).rejects.toThrow(
      "Calico node 'first' is already using the IPv4 address 10.0.0.8: give this host another address (IP=...), or remove the other node with 'calicoctl delete node first'",
    );
    expect(await get('second')).toBeNull();
  });

  it('when detection finds nothing: keeps a stored address, or refuses to guess', async () => {
    const host = new GivenInterfaces([eth0('10.0.0.9/24')]);
    await new NodeRegistration(store, host).register({ node: 'n4', ipv4: autodetect, ipv6: none });
    host.list = [];
    await new NodeRegistration(store, host).register({ node: 'n4', ipv4: autodetect, ipv6: none });
    expect((await get('n4'))!.spec.bgp).toEqual({ ipv4Address: '10.0.0.9/24' });
    await expect(new NodeRegistration(store, host).register({ node: 'n5', ipv4: autodetect, ipv6: none })).rejects.toThrow(/Couldn't autodetect an IPv4 address \(method first-found\): set IP/);
    expect(await get('n5')).toBeNull();
  });

  it('registers a node with no address and no AS without a bgp section (Calico refuses bgp: {})', async () => {
    await new NodeRegistration(store, new GivenInterfaces([])).register({ node: 'bare', ipv4: none, ipv6: none });
    expect((await get('bare'))!.spec).toEqual({});
  });
});
