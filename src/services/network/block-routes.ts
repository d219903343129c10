import type { Dataplane } from '../../ports/dataplane.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { IpamService } from '../ipam/ipam-service.js';

/**
 * Keeps one blackhole route per block this node owns, so traffic to an unused address of the block
 * is dropped here instead of leaving by the default route. Changes are coalesced: a burst of claims
 * costs one sync.
 */
export class BlockRoutes {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly ipam: IpamService,
    private readonly dataplane: Dataplane,
    private readonly log: Logger = silentLogger,
  ) {}

  /** Schedules a sync; resolves when a sync that started after this call has finished. */
  sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          const pools = this.ipam.pools().map((p) => p.cidr);
          await this.dataplane.syncBlackholes(this.ipam.ownedBlocks(), pools);
        } catch (error) {
          this.log.warn({ err: error }, 'could not sync blackhole routes');
        }
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }
}
