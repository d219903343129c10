import { IpAddr, parseCidr } from '../../domain/cidr.js';
import { hostAffinity } from '../../domain/ipam-model.js';
import { NotFoundError } from '../../domain/errors.js';
import { BgpPeer, CalicoNode, nodeBgpConfigurationName, resourceId } from '../../domain/resources.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import type { SyncSource } from '../../ports/datastore-sync.js';
import type { IpamStore } from '../../ports/ipam-store.js';
import type { ResourceStore } from '../../ports/resource-store.js';
import { releaseBlockAffinity } from '../ipam/affinity-release.js';
import { IpamService } from '../ipam/ipam-service.js';
import type { NetworkProfiles } from '../network/network-profiles.js';

export interface NodeRemovalReport {
  endpoints: number;
  addresses: number;
  blocks: number;
  peers: number;
}

/**
 * `calicoctl delete node`: what Calico's node deletion does. The node's workload endpoints and
 * every address allocated to it go, its blocks lose their affinity (deleted when empty, so the
 * other hosts withdraw their routes), its own BGP peers and per-node configuration go, and last the
 * Node itself, so its peers drop their sessions to it.
 */
export class NodeRemoval {
  constructor(
    private readonly resources: ResourceStore,
    private readonly endpoints: EndpointStore,
    private readonly ipam: IpamStore,
    private readonly profiles: NetworkProfiles,
    private readonly syncSource: SyncSource,
  ) {}

  async remove(name: string): Promise<NodeRemovalReport> {
    const node = await this.resources.get<CalicoNode>({ kind: 'Node', name });
    if (!node) throw new NotFoundError(`resource does not exist: ${resourceId('Node', name)} with error: <nil>`);
    const report: NodeRemovalReport = { endpoints: 0, addresses: 0, blocks: 0, peers: 0 };
    for (const { value: endpoint } of await this.endpoints.listEndpoints()) {
      if (endpoint.spec.node !== name) continue;
      await this.endpoints.deleteEndpoint(endpoint.metadata.name);
      report.endpoints++;
    }
    report.addresses = await this.releaseAddresses(name);
    for (const affinity of await this.ipam.listAffinities(name)) {
      if ((await releaseBlockAffinity(this.ipam, affinity.cidr, name)) === 'released') report.blocks++;
    }
    // Blocks that name the node but lost their affinity key (written by other tools).
    for (const block of (await this.ipam.snapshot()).blocks) {
      if (block.value.affinity !== hostAffinity(name)) continue;
      if ((await releaseBlockAffinity(this.ipam, parseCidr(block.value.cidr), name)) === 'released') report.blocks++;
    }
    for (const peer of await this.resources.list<BgpPeer>('BGPPeer')) {
      if (peer.spec.node !== name) continue;
      await this.resources.delete({ kind: 'BGPPeer', name: peer.metadata.name }).catch(ignoreMissing);
      report.peers++;
    }
    for (const kind of ['BGPConfiguration', 'FelixConfiguration']) {
      await this.resources.delete({ kind, name: nodeBgpConfigurationName(name) }).catch(ignoreMissing);
    }
    await this.profiles.forgetNode(name);
    await this.resources.delete({ kind: 'Node', name }).catch(ignoreMissing);
    return report;
  }

  /** Every allocation recorded for the node (its endpoints', its tunnel addresses', leaks), by handle and sequence number. */
  private async releaseAddresses(name: string): Promise<number> {
    const snapshot = await this.ipam.snapshot();
    const owned: { address: IpAddr; handleId: string | undefined; sequenceNumber: bigint | undefined }[] = [];
    for (const { value: block } of snapshot.blocks) {
      const cidr = parseCidr(block.cidr);
      block.allocations.forEach((index, ordinal) => {
        if (index === null) return;
        const attribute = block.attributes[index];
        if (attribute?.secondary?.node !== name) return;
        const address = { family: cidr.family, value: cidr.base + BigInt(ordinal) };
        owned.push({ address, handleId: attribute.handle_id ?? undefined, sequenceNumber: block.sequenceNumberForAllocation?.[String(ordinal)] });
      });
    }
    if (owned.length === 0) return 0;
    const ipam = new IpamService(this.ipam, this.syncSource, { node: name });
    let released = 0;
    try {
      for (const allocation of owned) {
        const freed = await ipam.release({
          address: allocation.address,
          ...(allocation.handleId ? { handleId: allocation.handleId } : {}),
          ...(allocation.sequenceNumber !== undefined ? { sequenceNumber: allocation.sequenceNumber } : {}),
        });
        if (freed) released++;
      }
    } finally {
      await ipam.stop();
    }
    return released;
  }
}

function ignoreMissing(error: unknown): void {
  if (!(error instanceof NotFoundError)) throw error;
}
