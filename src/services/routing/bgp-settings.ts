import { formatIp, parseIp } from '../../domain/cidr.js';
import { AlreadyExistsError, ConflictError, NotFoundError } from '../../domain/errors.js';
import { API_VERSION, BgpConfiguration, BgpPeer, DEFAULT_AS_NUMBER, DEFAULT_BGP_CONFIGURATION, parseAsNumber } from '../../domain/resources.js';
import type { ResourceStore } from '../../ports/resource-store.js';
import { validateResource } from '../resources/resource-validation.js';
import { naturalOrder } from '../../domain/text-order.js';

const MAX_ATTEMPTS = 10;

export interface PeerEntry {
  address: string;
  asNumber: number;
  /** The BGPPeer resource that holds it. */
  name: string;
}

/** A BGPPeer name from what the seed-era words give: `bgppeer-global-10-0-0-1`, `bgppeer-node-host1-10-0-0-1`. */
export function seedPeerName(address: string, node?: string): string {
  const dashed = (text: string): string => text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  return node ? `bgppeer-node-${dashed(node)}-${dashed(address)}` : `bgppeer-global-${dashed(address)}`;
}

/**
 * calicoctl 0.x's BGP words (`bgp peer add`, `bgp node-mesh`, `bgp default-node-as`, `node bgp
 * peer …`) on Calico v3's resources: peers are BGPPeers, the mesh and default AS live in
 * BGPConfiguration `default`. Every change is checked first and written with a compare-and-swap.
 */
export class BgpSettings {
  constructor(private readonly store: ResourceStore) {}

  private async configuration(): Promise<BgpConfiguration | null> {
    return this.store.get<BgpConfiguration>({ kind: 'BGPConfiguration', name: DEFAULT_BGP_CONFIGURATION });
  }

  async meshEnabled(): Promise<boolean> {
    return (await this.configuration())?.spec.nodeToNodeMeshEnabled !== false;
  }

  async defaultAsNumber(): Promise<number> {
    return (await this.configuration())?.spec.asNumber ?? DEFAULT_AS_NUMBER;
  }

  setMesh(enabled: boolean): Promise<void> {
    return this.editConfiguration((spec) => ({ ...spec, nodeToNodeMeshEnabled: enabled }));
  }

  setDefaultAsNumber(asNumber: string): Promise<void> {
    const value = parseAsNumber(asNumber);
    return this.editConfiguration((spec) => ({ ...spec, asNumber: value }));
  }

  /** Global peers (no node), or this node's; the same address again replaces its AS. */
  async addPeer(address: string, asNumber: string, node?: string): Promise<void> {
    const ip = formatIp(parseIp(address));
    const existing = (await this.peerResources(node)).find((p) => p.spec.peerIP === ip);
    const peer: BgpPeer = {
      kind: 'BGPPeer',
      apiVersion: API_VERSION,
      metadata: { name: existing?.metadata.name ?? seedPeerName(ip, node) },
      spec: { ...(node ? { node } : {}), peerIP: ip, asNumber: parseAsNumber(asNumber) },
    };
    const checked = validateResource(peer);
    if (existing) await this.store.update({ ...checked, metadata: { ...existing.metadata, ...checked.metadata, resourceVersion: existing.metadata.resourceVersion } });
    else await this.store.create(checked);
  }

  /** Removes the peer of that address; false when there is none. */
  async removePeer(address: string, node?: string): Promise<boolean> {
    const ip = formatIp(parseIp(address));
    const found = (await this.peerResources(node)).filter((p) => p.spec.peerIP === ip);
    for (const peer of found) await this.store.delete({ kind: 'BGPPeer', name: peer.metadata.name }).catch((error) => {
      if (!(error instanceof NotFoundError)) throw error;
    });
    return found.length > 0;
  }

  async peers(node?: string): Promise<PeerEntry[]> {
    return (await this.peerResources(node))
      .filter((p) => p.spec.peerIP)
      .map((p) => ({ address: p.spec.peerIP!, asNumber: p.spec.asNumber ?? 0, name: p.metadata.name }))
      .sort((a, b) => naturalOrder(a.address, b.address));
  }

  private async peerResources(node?: string): Promise<BgpPeer[]> {
    const all = await this.store.list<BgpPeer>('BGPPeer');
    return all.filter((p) => (node ? p.spec.node === node : !p.spec.node && !p.spec.nodeSelector));
  }

  private async editConfiguration(change: (spec: BgpConfiguration['spec']) => BgpConfiguration['spec']): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.configuration();
      const next: BgpConfiguration = current
        ? { ...current, spec: change(current.spec) }
        : { kind: 'BGPConfiguration', apiVersion: API_VERSION, metadata: { name: DEFAULT_BGP_CONFIGURATION }, spec: change({}) };
      const checked = validateResource(next);
      try {
        if (current) await this.store.update(checked);
        else await this.store.create(checked);
        return;
      } catch (error) {
        if (!(error instanceof ConflictError || error instanceof AlreadyExistsError || error instanceof NotFoundError)) throw error;
      }
    }
    throw new ConflictError('BGPConfiguration default is changing too often to update: try again');
  }
}
