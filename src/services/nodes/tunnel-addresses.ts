import { parseSelector } from '../../calc/selector.js';
import { poolRouting } from '../../calc/tunnel-routes.js';
import { cidrContains, formatIp, parseIp } from '../../domain/cidr.js';
import { ConflictError, NotFoundError } from '../../domain/errors.js';
import type { IpPool } from '../../domain/ipam-model.js';
import type { CalicoNode } from '../../domain/resources.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { ResourceStore } from '../../ports/resource-store.js';
import type { IpamService } from '../ipam/ipam-service.js';

const MAX_ATTEMPTS = 10;

/** A tunnel address kind: where Calico keeps it on the Node, and its IPAM handle and type. */
interface TunnelKind {
  encapsulation: 'vxlan' | 'ipip';
  handle: (node: string) => string;
  type: string;
  get(node: CalicoNode): string | undefined;
  set(node: CalicoNode, address: string | undefined): CalicoNode;
}

export const VXLAN_ADDRESS: TunnelKind = {
  encapsulation: 'vxlan',
  handle: (node) => `vxlan-tunnel-addr-${node}`,
  type: 'vxlanTunnelAddress',
  get: (node) => node.spec.ipv4VXLANTunnelAddr,
  set: (node, address) => {
    const { ipv4VXLANTunnelAddr: _old, ...spec } = node.spec;
    return { ...node, spec: address ? { ...spec, ipv4VXLANTunnelAddr: address } : spec };
  },
};

export const IPIP_ADDRESS: TunnelKind = {
  encapsulation: 'ipip',
  handle: (node) => `ipip-tunnel-addr-${node}`,
  type: 'ipipTunnelAddress',
  get: (node) => node.spec.bgp?.ipv4IPIPTunnelAddr,
  set: (node, address) => {
    const { ipv4IPIPTunnelAddr: _old, ...bgp } = node.spec.bgp ?? {};
    return { ...node, spec: { ...node.spec, bgp: address ? { ...bgp, ipv4IPIPTunnelAddr: address } : bgp } };
  },
};

/** Pools a node takes its tunnel address from: that encapsulation, IPv4, enabled, selecting the node. */
function candidates(pools: IpPool[], node: CalicoNode, encapsulation: 'vxlan' | 'ipip'): IpPool[] {
  return pools.filter((pool) => {
    if (pool.spec.disabled || poolRouting(pool)?.encapsulation !== encapsulation) return false;
    try {
      return parseSelector(pool.spec.nodeSelector ?? 'all()')(node.metadata.labels ?? {});
    } catch {
      return false;
    }
  });
}

/**
 * Each node's tunnel addresses, as calico/node's allocate-tunnel-addrs keeps them: while a VXLAN (or
 * IPIP) pool selects the node, it holds one address of such a pool (under Calico's handle
 * `vxlan-tunnel-addr-<node>`, type `vxlanTunnelAddress`), recorded on its Node; when none does, the
 * address is released and cleared. An address already inside a candidate pool is kept.
 */
export class TunnelAddresses {
  constructor(
    private readonly store: ResourceStore,
    private readonly ipam: IpamService,
    private readonly nodeName: string,
    private readonly log: Logger = silentLogger,
  ) {}

  /** Brings the node's `kind` address in line with the pools; resolves with the address it holds now. */
  async ensure(kind: TunnelKind, pools: IpPool[]): Promise<string | undefined> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const node = await this.store.get<CalicoNode>({ kind: 'Node', name: this.nodeName });
      if (!node) throw new NotFoundError(`Node ${this.nodeName} is not registered`);
      const current = kind.get(node);
      const wanted = candidates(pools, node, kind.encapsulation);
      const inside = (address: string): boolean => wanted.some((p) => cidrContains(poolRouting(p)!.cidr, parseIp(address)));
      if (current && inside(current)) return current;
      if (!current && wanted.length === 0) return undefined;
      // Whatever the handle held goes first: a handle names one address.
      await this.ipam.releaseHandle(kind.handle(this.nodeName));
      let address: string | undefined;
      for (const pool of wanted) {
        const allocation = await this.ipam
          .requestAuto({ family: 4, poolName: pool.metadata.name, handleId: kind.handle(this.nodeName), attributes: { type: kind.type } })
          .catch((error: Error) => {
            this.log.warn({ err: error, pool: pool.metadata.name }, `no ${kind.encapsulation} tunnel address from this pool`);
            return undefined;
          });
        if (allocation) {
          address = formatIp(allocation.address);
          break;
        }
      }
      try {
        await this.store.update(kind.set(node, address));
        this.log.info({ address: address ?? null, was: current ?? null }, `${kind.encapsulation} tunnel address ${address ? 'assigned' : 'released'}`);
        return address;
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        // The Node changed meanwhile: give the address back and look again.
        if (address) await this.ipam.releaseHandle(kind.handle(this.nodeName));
      }
    }
    throw new ConflictError(`Node ${this.nodeName} is changing too often to record its tunnel address: try again`);
  }
}
