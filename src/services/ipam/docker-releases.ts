import { formatIp, IpAddr } from '../../domain/cidr.js';
import type { AllocationInfo } from '../../domain/allocation-block.js';
import type { ReleaseRequest } from './ipam-service.js';

/** How long Docker's ReleaseAddress for an address freed with its endpoint is taken as that endpoint's (it follows at once). */
const RELEASED_WITH_ENDPOINT_MS = 60_000;

/**
 * Docker releases an endpoint's address twice: the network driver frees it by the handle the endpoint
 * holds as the endpoint is deleted, and Docker then asks the IPAM driver to release the address, by
 * value alone. Between the two the address may have gone to another endpoint, so the second release
 * must not free it: this remembers the first, for both drivers.
 */
export class DockerReleases {
  /** Addresses freed with their endpoint, and when, oldest first. */
  private readonly freed = new Map<string, number>();

  constructor(
    private readonly ipam: { release(request: ReleaseRequest): Promise<AllocationInfo | undefined> },
    private readonly now: () => number = Date.now,
  ) {}

  /** The network driver's release, as the endpoint is deleted. */
  async withEndpoint(address: IpAddr, handleId: string): Promise<void> {
    const key = formatIp(address);
    const now = this.now();
    for (const [marked, at] of this.freed) {
      if (now - at < RELEASED_WITH_ENDPOINT_MS) break;
      this.freed.delete(marked);
    }
    // Deleted first so the mark goes to the end: the map stays in time order for the loop above.
    this.freed.delete(key);
    this.freed.set(key, now);
    try {
      await this.ipam.release({ address, handleId });
    } catch (error) {
      // A ReleaseAddress still to come does the work; one already answered leaves it to garbage collection.
      if (this.freed.get(key) === now) this.freed.delete(key);
      throw error;
    }
  }

  /** Docker's ReleaseAddress: already done when the address was freed with its endpoint a moment ago. */
  async forDocker(address: IpAddr): Promise<void> {
    const key = formatIp(address);
    const freedAt = this.freed.get(key);
    this.freed.delete(key);
    if (freedAt !== undefined && this.now() - freedAt < RELEASED_WITH_ENDPOINT_MS) return;
    await this.ipam.release({ address });
  }
}
