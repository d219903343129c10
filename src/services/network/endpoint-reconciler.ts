import { formatCidr, formatIp, IpAddr } from '../../domain/cidr.js';
import { isEmpty } from '../../domain/allocation-block.js';
import { endpointAddresses, hostInterfaceName, WorkloadEndpoint, workloadEndpointName } from '../../domain/endpoint-model.js';
import type { Dataplane } from '../../ports/dataplane.js';
import type { DockerApi } from '../../ports/docker-api.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import type { Stored } from '../../ports/ipam-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { IpamService } from '../ipam/ipam-service.js';
import { HOST_INTERFACE_PREFIX } from './network-driver.js';

export interface ReconcilerOptions {
  node: string;
  /**
   * The name Docker knows this plugin's networks by (`docker network ls --filter driver=…`); undefined
   * until Docker has told it (a managed plugin's), and meanwhile nothing is taken for unknown to Docker.
   */
  driverName: string | undefined;
  /** Endpoints and addresses younger than this are never collected: Docker may still be between calls. */
  graceMs: number;
  /**
   * Host interfaces of endpoints the network driver holds right now: one being created may have its
   * veth before etcd shows its endpoint, and must not be taken for a stale one.
   */
  busyInterfaces?: () => ReadonlySet<string>;
}

const key = (ip: IpAddr): string => formatIp(ip);

/**
 * Brings the kernel and etcd back in line with each other and with Docker: at start (routes and
 * settings for live endpoints, stale veths and routes removed) and periodically (endpoints and
 * addresses that Docker no longer knows, past a grace period, are released).
 */
export class EndpointReconciler {
  private readonly log: Logger;
  /** When each empty block of this node was first seen empty. */
  private readonly emptySince = new Map<string, number>();

  constructor(
    private readonly endpoints: EndpointStore,
    private readonly dataplane: Dataplane,
    private readonly docker: DockerApi,
    private readonly ipam: IpamService,
    private readonly options: ReconcilerOptions,
    log?: Logger,
  ) {
    this.log = log ?? silentLogger;
  }

  private async localEndpoints(): Promise<Stored<WorkloadEndpoint>[]> {
    return (await this.endpoints.listEndpoints()).filter((e) => e.value.spec.node === this.options.node);
  }

  /** Hands the driver this host's endpoints after a restart: which containers hold which (and their gateways). */
  async restoreSandboxes(driver: { restore(local: WorkloadEndpoint[]): void }): Promise<void> {
    driver.restore((await this.localEndpoints()).map((e) => e.value));
  }

  /** Kernel state from etcd: what a daemon restart (or kill -9) must leave working. */
  async reconcileDataplane(): Promise<void> {
    const endpoints = await this.localEndpoints();
    const links = new Map((await this.dataplane.listLinks(HOST_INTERFACE_PREFIX)).map((l) => [l.name, l]));
    const routes = new Map((await this.dataplane.listHostRoutes(HOST_INTERFACE_PREFIX)).map((r) => [key(r.address), r]));
    // Asked after the kernel was listed: an endpoint the driver took meanwhile is in it (it holds the
    // endpoint before it makes the veth), though etcd may not have shown it above.
    const busy = this.options.busyInterfaces?.() ?? new Set<string>();
    const wanted = new Set<string>();
    if (endpoints.length > 0) await this.dataplane.enableForwarding();
    for (const { value: endpoint } of endpoints) {
      const name = endpoint.spec.interfaceName;
      if (!links.has(name)) continue;
      wanted.add(name);
      const addresses = endpointAddresses(endpoint);
      await this.dataplane.configureHostInterface(name, { ipv4: true, ipv6: addresses.some((a) => a.family === 6) });
      for (const address of addresses) {
        const route = routes.get(key(address));
        // A route through another live veth is a container's second network: leave it.
        if (route && links.has(route.interfaceName)) continue;
        await this.dataplane.setHostRoute({ address, interfaceName: name });
      }
    }
    for (const name of links.keys()) {
      if (wanted.has(name) || busy.has(name)) continue;
      this.log.info({ interface: name }, 'removing veth of an endpoint that no longer exists');
      await this.dataplane.deleteLink(name);
    }
    const liveAddresses = new Set(endpoints.flatMap((e) => endpointAddresses(e.value).map(key)));
    for (const route of routes.values()) {
      if (busy.has(route.interfaceName)) continue;
      if (!liveAddresses.has(key(route.address)) || !wanted.has(route.interfaceName)) await this.dataplane.removeHostRoute(route.address);
    }
  }

  /**
   * Releases what leaked: endpoints of this node Docker no longer knows, and addresses this node
   * allocated that no endpoint uses. Does nothing when Docker cannot be asked.
   */
  async collectGarbage(now = Date.now()): Promise<{ endpoints: number; addresses: number; blocks: number }> {
    const driver = this.options.driverName;
    const known = driver === undefined ? undefined : await this.docker.knownEndpoints(driver);
    if (!known) return { endpoints: 0, addresses: 0, blocks: await this.releaseEmptyBlocks(now) };
    let endpointsRemoved = 0;
    const endpoints = await this.localEndpoints();
    for (const { value: endpoint } of endpoints) {
      const age = now - Date.parse(endpoint.metadata.creationTimestamp ?? '');
      if (known.has(endpoint.spec.endpoint) || !(age > this.options.graceMs)) continue;
      this.log.info({ endpoint: endpoint.spec.endpoint }, 'removing endpoint Docker no longer knows');
      await this.dataplane.deleteLink(hostInterfaceName(endpoint.spec.endpoint));
      await this.endpoints.deleteEndpoint(workloadEndpointName(this.options.node, endpoint.spec.endpoint));
      endpointsRemoved++;
    }
    // Addresses used by any endpoint, of any node, after the removals above.
    const inUse = new Set((await this.endpoints.listEndpoints()).flatMap((e) => endpointAddresses(e.value).map(key)));
    let addressesReleased = 0;
    for (const block of this.ipam.blocks()) {
      const value = block.stored.value;
      for (let ordinal = 0; ordinal < value.allocations.length; ordinal++) {
        const index = value.allocations[ordinal];
        if (index === null || index === undefined) continue;
        const attribute = value.attributes[index];
        if (attribute?.secondary?.node !== this.options.node || !attribute.handle_id?.startsWith('libnetwork.')) continue;
        const age = now - Date.parse(attribute.secondary.timestamp ?? '');
        const address: IpAddr = { family: block.cidr.family, value: block.cidr.base + BigInt(ordinal) };
        if (inUse.has(key(address)) || !(age > this.options.graceMs)) continue;
        const sequenceNumber = value.sequenceNumberForAllocation?.[String(ordinal)];
        try {
          // Handle and sequence number: if the address was re-allocated meanwhile, the release is refused.
          await this.ipam.release({ address, handleId: attribute.handle_id, ...(sequenceNumber !== undefined ? { sequenceNumber } : {}) });
          this.log.info({ address: key(address), handle: attribute.handle_id }, 'released address no endpoint uses');
          addressesReleased++;
        } catch (error) {
          this.log.warn({ err: error, address: key(address) }, 'could not release leaked address');
        }
      }
    }
    return { endpoints: endpointsRemoved, addresses: addressesReleased, blocks: await this.releaseEmptyBlocks(now) };
  }

  /**
   * Blocks of this node that have held no address for the grace period are given up, so the other
   * hosts stop routing them here (Calico's kube-controllers do the same for idle blocks).
   */
  private async releaseEmptyBlocks(now: number): Promise<number> {
    const owned = new Set(this.ipam.ownedBlocks().map(formatCidr));
    for (const key of this.emptySince.keys()) if (!owned.has(key)) this.emptySince.delete(key);
    let released = 0;
    for (const block of this.ipam.blocks()) {
      const key = formatCidr(block.cidr);
      if (!owned.has(key) || !isEmpty(block.stored.value)) {
        this.emptySince.delete(key);
        continue;
      }
      const since = this.emptySince.get(key) ?? now;
      this.emptySince.set(key, since);
      if (now - since < this.options.graceMs) continue;
      try {
        if (await this.ipam.releaseEmptyBlock(block.cidr)) released++;
        this.emptySince.delete(key);
      } catch (error) {
        this.log.warn({ err: error, block: key }, 'could not release empty block');
      }
    }
    return released;
  }
}
