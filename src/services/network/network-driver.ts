import { formatIp, hostCidr, IpAddr, parseCidr, parseIp } from '../../domain/cidr.js';
import {
  endpointAddresses,
  HANDLES_ANNOTATION,
  hostInterfaceName,
  tempInterfaceName,
  WorkloadEndpoint,
  workloadEndpointName,
} from '../../domain/endpoint-model.js';
import { AppError, DataplaneError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import type { Dataplane } from '../../ports/dataplane.js';
import type { DockerApi } from '../../ports/docker-api.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { IpamService } from '../ipam/ipam-service.js';
import { checkCalicoIpam, checkNetworkOptions, IpamData } from './network-options.js';
import type { NetworkProfiles } from './network-profiles.js';

export interface NetworkDriverOptions {
  node: string;
  /** Docker names the container's interface `<prefix><n>` (CALICO_LIBNETWORK_IFPREFIX). */
  containerInterfacePrefix: string;
  /** CALICO_LIBNETWORK_VETH_MTU: when set, always this. */
  vethMtu?: number;
  /** Otherwise the MTU the encapsulation in use calls for (the underlay's minus its overhead), if any. */
  encapsulationMtu?: () => number | undefined;
  scope: 'local' | 'global';
  createProfiles: boolean;
  labelEndpoints: boolean;
  labelPollTimeoutMs: number;
}

export const GATEWAY_IPV4 = '169.254.1.1';
/** The MAC the container side gets unless Docker was given --mac-address (Calico's fixed MAC). */
export const WORKLOAD_MAC = 'ee:ee:ee:ee:ee:ee';
const LABEL_PREFIX = 'org.projectcalico.label.';
export const HOST_INTERFACE_PREFIX = 'cali';

export interface JoinResult {
  srcName: string;
  dstPrefix: string;
  gateway: string;
  gatewayIPv6?: string;
  staticRoutes: { destination: string; routeType: 0 | 1; nextHop: string }[];
}

export interface CreateEndpointRequest {
  networkId: string;
  endpointId: string;
  address: string;
  addressIPv6: string;
  macAddress: string;
}


/** The IPv6 link-local address the kernel derives from a MAC (EUI-64), without waiting for it to appear. */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  const words = [(b[0]! ^ 0x02) * 256 + b[1]!, b[2]! * 256 + 0xff, 0xfe00 + b[3]!, b[4]! * 256 + b[5]!];
  return formatIp({ family: 6, value: (0xfe80n << 112n) | words.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n) });
}

/**
 * Docker's NetworkDriver, Calico's way: a profile per network, a WorkloadEndpoint per endpoint, and
 * at Join a `cali…` veth with a /32 (/128) route to the container, which reaches everything through
 * the link-local gateway 169.254.1.1 answered by proxy ARP. Every step that fails half way undoes what
 * it did, because Docker does not call Leave after a failed Join.
 */
export class NetworkDriver {
  private readonly log: Logger;
  /** Endpoints per sandbox in join order: a container's further Calico addresses route through its first veth. */
  private readonly sandboxes = new Map<string, string[]>();
  private baseRules: Promise<void> | undefined;
  /** Docker network ID → its name, which is its profile's: known once the profile lists this node. */
  private readonly networkNames = new Map<string, string>();
  /** This node's endpoints as last written, so Join, Leave and DeleteEndpoint need no etcd read. */
  private readonly known = new Map<string, WorkloadEndpoint>();
  /** Endpoint writes begun by CreateEndpoint that Join (or DeleteEndpoint) has not yet waited for. */
  private readonly writing = new Map<string, Promise<void>>();

  constructor(
    private readonly endpoints: EndpointStore,
    private readonly dataplane: Dataplane,
    private readonly docker: DockerApi,
    private readonly ipam: IpamService,
    private readonly profiles: NetworkProfiles,
    readonly options: NetworkDriverOptions,
    log?: Logger,
  ) {
    this.log = log ?? silentLogger;
  }

  /** Host interfaces of the endpoints this driver holds, including any whose write etcd has not confirmed yet. */
  busyInterfaces(): ReadonlySet<string> {
    return new Set([...this.known.values()].map((e) => e.spec.interfaceName));
  }

  capabilities(): { Scope: string; ConnectivityScope: string } {
    return { Scope: this.options.scope, ConnectivityScope: this.options.scope };
  }

  async createNetwork(networkId: string, options: Record<string, unknown>, ipv4: IpamData[], ipv6: IpamData[]): Promise<void> {
    checkNetworkOptions(options);
    checkCalicoIpam(ipv4, ipv6);
    if (!this.options.createProfiles) return;
    // Docker stores the network, and so its name, only after this call returns.
    void this.joinProfileLater(networkId);
  }

  async deleteNetwork(networkId: string): Promise<void> {
    this.networkNames.delete(networkId);
    if (this.options.createProfiles) await this.profiles.leave(networkId, this.options.node, { everywhere: this.options.scope === 'global' });
  }

  async createEndpoint(request: CreateEndpointRequest): Promise<{ macAddress?: string }> {
    if (request.address === '' && request.addressIPv6 === '') throw new InvalidRequestError('No address assigned for endpoint');
    const ipNetworks: string[] = [];
    for (const text of [request.address, request.addressIPv6]) {
      if (text === '') continue;
      let ip: IpAddr;
      try {
        ip = parseCidr(text) && parseIp(text.split('/')[0]!);
      } catch {
        throw new InvalidRequestError(`Parsing ${text} as CIDR failed`);
      }
      ipNetworks.push(hostCidr(ip));
    }
    const mac = request.macAddress === '' ? WORKLOAD_MAC : normaliseMac(request.macAddress);
    const profiles = this.options.createProfiles ? [await this.profileOf(request.networkId)] : [];
    const handles = ipNetworks.map((n) => this.ipam.allocationOf(parseIp(n.split('/')[0]!))?.handleId).filter((h): h is string => Boolean(h));
    const endpoint: WorkloadEndpoint = {
      kind: 'WorkloadEndpoint',
      apiVersion: 'projectcalico.org/v3',
      metadata: {
        name: workloadEndpointName(this.options.node, request.endpointId),
        namespace: 'libnetwork',
        labels: { 'projectcalico.org/namespace': 'libnetwork', 'projectcalico.org/orchestrator': 'libnetwork' },
        annotations: { [HANDLES_ANNOTATION]: handles.join(',') },
        creationTimestamp: new Date().toISOString(),
      },
      spec: {
        orchestrator: 'libnetwork',
        workload: 'libnetwork',
        node: this.options.node,
        endpoint: request.endpointId,
        interfaceName: hostInterfaceName(request.endpointId),
        ipNetworks,
        mac,
        profiles,
      },
    };
    this.known.set(request.endpointId, endpoint);
    // Docker follows CreateEndpoint with Join (or, giving up, DeleteEndpoint): the write goes on while
    // Docker does, and Join reports it if it failed, leaving nothing behind.
    const write = this.storeEndpoint(endpoint);
    write.catch(() => undefined);
    this.writing.set(request.endpointId, write);
    return request.macAddress === '' ? { macAddress: WORKLOAD_MAC } : {};
  }

  private async storeEndpoint(endpoint: WorkloadEndpoint): Promise<void> {
    if (await this.endpoints.createEndpoint(endpoint)) return;
    const existing = await this.endpoints.getEndpoint(endpoint.metadata.name);
    // Docker retries a call whose answer it lost: the same endpoint again is not an error.
    if (existing?.value.spec.endpoint !== endpoint.spec.endpoint || existing.value.spec.ipNetworks.join() !== endpoint.spec.ipNetworks.join()) {
      throw new AppError('E_CONFLICT', `Workload endpoints creation error: endpoint ${endpoint.metadata.name} exists with other addresses`);
    }
  }

  /** Waits for the endpoint's write started by CreateEndpoint; a failed one forgets the endpoint. */
  private async stored(endpointId: string): Promise<void> {
    const write = this.writing.get(endpointId);
    if (!write) return;
    try {
      await write;
    } catch (error) {
      this.known.delete(endpointId);
      throw error;
    } finally {
      if (this.writing.get(endpointId) === write) this.writing.delete(endpointId);
    }
  }

  async deleteEndpoint(endpointId: string): Promise<void> {
    await this.stored(endpointId).catch(() => undefined);
    const endpoint = await this.endpoint(endpointId);
    await this.detach(endpointId);
    this.releaseAddresses(endpoint);
    await this.endpoints.deleteEndpoint(workloadEndpointName(this.options.node, endpointId));
    this.known.delete(endpointId);
  }

  /**
   * Docker calls ReleaseAddress for each address after DeleteEndpoint and waits for each: they are
   * freed here instead, by the handles this endpoint holds, without Docker waiting. The IPAM queue
   * runs the release before any later request, and the ReleaseAddress that follows is a no-op. If etcd
   * fails here, garbage collection frees the address (its endpoint is gone).
   */
  private releaseAddresses(endpoint: WorkloadEndpoint | undefined): void {
    const handles = new Set(endpoint?.metadata.annotations?.[HANDLES_ANNOTATION]?.split(',') ?? []);
    for (const address of endpointAddresses(endpoint)) {
      const handleId = this.ipam.allocationOf(address)?.handleId;
      if (!handleId || !handles.has(handleId)) continue;
      this.ipam.releaseWithEndpoint(address, handleId).catch((error) => this.log.warn({ err: error, address: formatIp(address) }, 'could not release the address of a deleted endpoint; garbage collection will'));
    }
  }

  /** The endpoint as this daemon wrote it, else as etcd has it (after a restart). */
  private async endpoint(endpointId: string): Promise<WorkloadEndpoint | undefined> {
    const cached = this.known.get(endpointId);
    if (cached) return cached;
    const stored = await this.endpoints.getEndpoint(workloadEndpointName(this.options.node, endpointId));
    if (stored) this.known.set(endpointId, stored.value);
    return stored?.value;
  }

  async join(networkId: string, endpointId: string, sandboxKey: string): Promise<JoinResult> {
    const endpoint = await this.endpoint(endpointId);
    if (!endpoint) throw new NotFoundError(`Endpoint ${endpointId} not found: CreateEndpoint was not called or failed`);
    const hostName = hostInterfaceName(endpointId);
    const tempName = tempInterfaceName(endpointId);
    const addresses = endpointAddresses(endpoint);
    const hasIpv6 = addresses.some((a) => a.family === 6);
    this.baseRules ??= this.prepareHost().catch((error) => {
      this.baseRules = undefined;
      throw error;
    });
    await this.baseRules;
    const { hostMac } = await this.createVeth(hostName, tempName);
    const sandbox = this.sandboxes.get(sandboxKey) ?? [];
    const routeVia = sandbox.length > 0 ? hostInterfaceName(sandbox[0]!) : hostName;
    try {
      await this.dataplane.configureHostInterface(hostName, { ipv4: true, ipv6: hasIpv6 });
      // Nothing routes to the endpoint before etcd has it.
      await this.stored(endpointId);
      for (const address of addresses) await this.dataplane.setHostRoute({ address, interfaceName: routeVia });
    } catch (error) {
      const rollback = await this.dataplane.deleteLink(hostName).then(
        () => 'rolled back',
        (e: Error) => `failed to roll back: ${e.message}`,
      );
      throw new AppError(error instanceof AppError ? error.code : 'E_DATAPLANE', `${(error as Error).message}; ${rollback}`, { cause: error });
    }
    this.sandboxes.set(sandboxKey, [...sandbox, endpointId]);
    if (this.options.labelEndpoints) void this.copyLabels(endpoint.metadata.name, networkId, endpointId);
    const first = sandbox.length === 0;
    const result: JoinResult = {
      srcName: tempName,
      dstPrefix: this.options.containerInterfacePrefix,
      gateway: GATEWAY_IPV4,
      // The connected route to the gateway exists once per container; a second one fails with "file exists".
      staticRoutes: first ? [{ destination: `${GATEWAY_IPV4}/32`, routeType: 1, nextHop: '' }] : [],
    };
    if (hasIpv6) {
      const gateway = linkLocalFromMac(hostMac);
      result.gatewayIPv6 = gateway;
      if (first) result.staticRoutes.push({ destination: `${gateway}/128`, routeType: 1, nextHop: '' });
    }
    return result;
  }

  /** A repeated Join (Docker retries) finds the veth of the first attempt: it starts over. */
  private async createVeth(hostName: string, tempName: string): Promise<{ hostMac: string }> {
    const mtu = this.options.vethMtu ?? this.options.encapsulationMtu?.();
    try {
      return await this.dataplane.createVeth(hostName, tempName, mtu);
    } catch (error) {
      if (!(error instanceof DataplaneError && error.errno === 'EEXIST')) throw error;
      await this.dataplane.deleteLink(hostName);
      return this.dataplane.createVeth(hostName, tempName, mtu);
    }
  }

  async leave(endpointId: string): Promise<void> {
    await this.detach(endpointId);
  }

  /**
   * Takes the endpoint off the dataplane: its veth (the routes through it go with it), the routes of
   * its addresses that go through a sandbox sibling's veth, and, when its veth carried a sibling's
   * addresses, those routes onto the sibling's veth. Resolves once every change is queued on the
   * dataplane, in order, without waiting for the kernel: deleting a veth takes the kernel ~17 ms,
   * which Docker would otherwise wait for on every container stop. Later changes for the same
   * addresses queue behind these, so they can never be undone by them.
   */
  private async detach(endpointId: string): Promise<void> {
    const own = endpointAddresses(await this.endpoint(endpointId));
    const moves: { address: IpAddr; interfaceName: string }[] = [];
    for (const [key, members] of this.sandboxes) {
      if (!members.includes(endpointId)) continue;
      const rest = members.filter((m) => m !== endpointId);
      if (rest.length === 0) this.sandboxes.delete(key);
      else this.sandboxes.set(key, rest);
      if (members[0] !== endpointId || rest.length === 0) continue;
      for (const member of rest) {
        for (const address of endpointAddresses(await this.endpoint(member))) moves.push({ address, interfaceName: hostInterfaceName(rest[0]!) });
      }
    }
    const queued = [
      this.dataplane.deleteLink(hostInterfaceName(endpointId)),
      ...own.map((address) => this.dataplane.removeHostRoute(address)),
      ...moves.map((route) => this.dataplane.setHostRoute(route)),
    ];
    void Promise.all(queued).catch((error) => this.log.warn({ err: error, endpointId }, 'could not take endpoint off the dataplane; the periodic reconcile will'));
  }

  private async prepareHost(): Promise<void> {
    await this.dataplane.enableForwarding();
  }

  /**
   * The profile of a Docker network: its name, shared by the networks of that name on every host.
   * Only when Docker cannot tell the name is the network's ID used instead.
   */
  private async profileOf(networkId: string): Promise<string> {
    const known = this.networkNames.get(networkId);
    if (known) return known;
    const name = (await this.docker.networkName(networkId)) ?? networkId;
    await this.profiles.join(name, networkId, this.options.node);
    if (name !== networkId) this.networkNames.set(networkId, name);
    return name;
  }

  /** Docker records the network after CreateNetwork returns; poll briefly for its name. */
  private async joinProfileLater(networkId: string): Promise<void> {
    for (let attempt = 0; attempt < 20 && !this.networkNames.has(networkId); attempt++) {
      await new Promise((r) => setTimeout(r, 250));
      const name = await this.docker.networkName(networkId);
      if (!name) continue;
      try {
        await this.profiles.join(name, networkId, this.options.node);
        this.networkNames.set(networkId, name);
      } catch (error) {
        this.log.warn({ err: error, networkId }, 'could not record the network on its profile; its first endpoint will');
      }
      return;
    }
  }

  /** Docker does not pass labels: ask its API once the join is recorded, and copy Calico's onto the endpoint. */
  private async copyLabels(name: string, networkId: string, endpointId: string): Promise<void> {
    const deadline = Date.now() + this.options.labelPollTimeoutMs;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const stored = await this.endpoints.getEndpoint(name).catch(() => null);
      if (!stored) return;
      const labels = await this.docker.endpointContainerLabels(networkId, endpointId);
      if (!labels) continue;
      const calico = Object.fromEntries(Object.entries(labels).filter(([k]) => k.startsWith(LABEL_PREFIX)).map(([k, v]) => [k.slice(LABEL_PREFIX.length), v]));
      if (Object.keys(calico).length === 0) return;
      const updated = { ...stored.value, metadata: { ...stored.value.metadata, labels: { ...stored.value.metadata.labels, ...calico } } };
      if (await this.endpoints.updateEndpoint(updated, stored.modRevision)) return;
    }
  }
}

function normaliseMac(mac: string): string {
  const normal = mac.toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(normal)) throw new InvalidRequestError(`Error parsing MAC address: ${mac}`);
  return normal;
}
