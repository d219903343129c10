import { formatIp, hostCidr, IpAddr, parseCidr, parseIp } from '../../domain/cidr.js';
import {
  DNS_SERVERS_ANNOTATION,
  endpointAddresses,
  GATEWAY_ANNOTATION,
  HANDLES_ANNOTATION,
  hostInterfaceName,
  NETWORK_ANNOTATION,
  SANDBOX_ANNOTATION,
  tempInterfaceName,
  WorkloadEndpoint,
  workloadEndpointName,
} from '../../domain/endpoint-model.js';
import { AppError, DataplaneError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import type { Dataplane } from '../../ports/dataplane.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { DockerReleases } from '../ipam/docker-releases.js';
import type { IpamService } from '../ipam/ipam-service.js';
import { checkCalicoIpam, checkNetworkOptions, IpamData } from './network-options.js';
import type { NetworkProfiles } from './network-profiles.js';
import { SandboxMember, Sandboxes } from './sandboxes.js';

/** Network names, learnt from Docker in the background (DockerWatcher). */
export interface NetworkNames {
  networkName(networkId: string): string | undefined;
  /** Asks Docker in the background when the name is not known yet, waiting at most `timeoutMs`. */
  networkNameWithin(networkId: string, timeoutMs: number): Promise<string | undefined>;
}

/** How long CreateEndpoint waits for the name of a network Docker's events have not told. */
const NETWORK_NAME_WAIT_MS = 2000;

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
}

/** The MAC the container side gets unless Docker was given --mac-address (Calico's fixed MAC). */
export const WORKLOAD_MAC = 'ee:ee:ee:ee:ee:ee';
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
  /** The DNS servers Docker gave the container (`--dns`, daemon.json `dns`). */
  dnsServers?: string[];
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
  /** This host's containers and their Calico endpoints: their gateways, and the veth their addresses route through. */
  private readonly sandboxes = new Sandboxes();
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
    private readonly names: NetworkNames,
    private readonly ipam: IpamService,
    /** Shared with the IPAM driver: Docker's ReleaseAddress after DeleteEndpoint finds the release done. */
    private readonly releases: DockerReleases,
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

  /** This host's endpoints: Felix's active local endpoints. */
  localEndpointCount(): number {
    return this.known.size;
  }

  /**
   * Connectivity is global whatever the data scope: containers on any host reach each other on a
   * Calico network, and swarm shares service and task names across nodes only on such networks.
   */
  capabilities(): { Scope: string; ConnectivityScope: string } {
    return { Scope: this.options.scope, ConnectivityScope: 'global' };
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
    const network = await this.networkOf(request.networkId);
    const profiles = this.options.createProfiles ? [network] : [];
    const handles = ipNetworks.map((n) => this.ipam.allocationOf(parseIp(n.split('/')[0]!))?.handleId).filter((h): h is string => Boolean(h));
    const endpoint: WorkloadEndpoint = {
      kind: 'WorkloadEndpoint',
      apiVersion: 'projectcalico.org/v3',
      metadata: {
        name: workloadEndpointName(this.options.node, request.endpointId),
        namespace: 'libnetwork',
        labels: { 'projectcalico.org/namespace': 'libnetwork', 'projectcalico.org/orchestrator': 'libnetwork' },
        annotations: {
          [HANDLES_ANNOTATION]: handles.join(','),
          [NETWORK_ANNOTATION]: network,
          ...(request.dnsServers?.length ? { [DNS_SERVERS_ANNOTATION]: request.dnsServers.join(',') } : {}),
        },
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
      this.releases.withEndpoint(address, handleId).catch((error) => this.log.warn({ err: error, address: formatIp(address) }, 'could not release the address of a deleted endpoint; garbage collection will'));
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

  async join(endpointId: string, sandboxKey: string): Promise<JoinResult> {
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
    const member: SandboxMember = { endpointId, gateway: this.sandboxes.freeGateway(sandboxKey), network: endpoint.metadata.annotations?.[NETWORK_ANNOTATION] ?? '', dualStack: hasIpv6 };
    const { members, via } = this.sandboxes.join(sandboxKey, member);
    try {
      await this.dataplane.configureHostInterface(hostName, { ipv4: true, ipv6: hasIpv6 });
      // Nothing routes to the endpoint before etcd has it.
      await this.stored(endpointId);
      // The new endpoint carries the container's default route from now on: every address moves to it.
      const routed = via === member ? members : [member];
      await this.routeThrough(routed, via);
    } catch (error) {
      this.sandboxes.leave(endpointId);
      const rollback = await this.dataplane.deleteLink(hostName).then(
        () => 'rolled back',
        (e: Error) => `failed to roll back: ${e.message}`,
      );
      throw new AppError(error instanceof AppError ? error.code : 'E_DATAPLANE', `${(error as Error).message}; ${rollback}`, { cause: error });
    }
    const result: JoinResult = {
      srcName: tempName,
      dstPrefix: this.options.containerInterfacePrefix,
      gateway: member.gateway,
      staticRoutes: [{ destination: `${member.gateway}/32`, routeType: 1, nextHop: '' }],
    };
    if (hasIpv6) {
      // The link-local address of this endpoint's own host veth: unique per veth, so never a duplicate route.
      const gateway = linkLocalFromMac(hostMac);
      result.gatewayIPv6 = gateway;
      result.staticRoutes.push({ destination: `${gateway}/128`, routeType: 1, nextHop: '' });
    }
    return result;
  }

  /** Routes the addresses of `members` through the veth of `via`. */
  private async routeThrough(members: SandboxMember[], via: SandboxMember): Promise<void> {
    for (const m of members) {
      for (const address of endpointAddresses(await this.endpoint(m.endpointId))) {
        await this.dataplane.setHostRoute({ address, interfaceName: hostInterfaceName(via.endpointId) });
      }
    }
  }

  /**
   * After a restart: this host's containers and their endpoints, as Docker described them to the
   * DockerWatcher (sandbox and gateway), so that a container joining another network gets a free
   * gateway and its routes stay on the veth Docker sends its default route through.
   */
  restore(local: WorkloadEndpoint[]): void {
    for (const endpoint of local) {
      const annotations = endpoint.metadata.annotations ?? {};
      const sandbox = annotations[SANDBOX_ANNOTATION];
      const gateway = annotations[GATEWAY_ANNOTATION];
      if (!sandbox || !gateway) continue;
      this.known.set(endpoint.spec.endpoint, endpoint);
      const dualStack = endpointAddresses(endpoint).some((a) => a.family === 6);
      this.sandboxes.join(sandbox, { endpointId: endpoint.spec.endpoint, gateway, network: annotations[NETWORK_ANNOTATION] ?? '', dualStack });
    }
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
   * its addresses that go through a sandbox sibling's veth, and, when its veth carried the container's
   * routes, those routes onto the veth Docker moves the container's default route to. Resolves once
   * every change is queued on the dataplane, in order, without waiting for the kernel: deleting a veth
   * takes the kernel ~17 ms, which Docker would otherwise wait for on every container stop. Later
   * changes for the same addresses queue behind these, so they can never be undone by them.
   */
  private async detach(endpointId: string): Promise<void> {
    const own = endpointAddresses(await this.endpoint(endpointId));
    const moved = this.sandboxes.leave(endpointId);
    // Its routes first, then its veth: a route through a sibling's veth is gone by the time the veth is.
    const queued = [...own.map((address) => this.dataplane.removeHostRoute(address)), this.dataplane.deleteLink(hostInterfaceName(endpointId))];
    if (moved) queued.push(this.routeThrough(moved.members, moved.via));
    void Promise.all(queued).catch((error) => this.log.warn({ err: error, endpointId }, 'could not take endpoint off the dataplane; the periodic reconcile will'));
  }

  private async prepareHost(): Promise<void> {
    await this.dataplane.enableForwarding();
  }

  /**
   * The name of a Docker network, which names its profile, shared by the networks of that name on
   * every host. Docker's events tell it (DockerWatcher), or the profile it was recorded on (a daemon
   * started with dockerd, which restores its containers before its API answers); for a network neither
   * has told (another host's, in global scope) Docker is asked in the background, for a short while.
   * Only when Docker cannot tell is the network's ID used instead.
   */
  private async networkOf(networkId: string): Promise<string> {
    const known = this.networkNames.get(networkId);
    if (known) return known;
    const recorded = this.names.networkName(networkId) ?? (this.options.createProfiles ? await this.profiles.nameOf(networkId) : undefined);
    const name = recorded ?? (await this.names.networkNameWithin(networkId, NETWORK_NAME_WAIT_MS)) ?? networkId;
    if (this.options.createProfiles) await this.profiles.join(name, networkId, this.options.node);
    if (name !== networkId) this.networkNames.set(networkId, name);
    return name;
  }

  /** Docker records the network, and tells its name, after CreateNetwork returns: the profile follows then. */
  private async joinProfileLater(networkId: string): Promise<void> {
    for (let attempt = 0; attempt < 50 && !this.networkNames.has(networkId); attempt++) {
      await new Promise((r) => setTimeout(r, 100));
      const name = this.names.networkName(networkId) ?? (attempt === 49 ? await this.names.networkNameWithin(networkId, NETWORK_NAME_WAIT_MS) : undefined);
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
}

function normaliseMac(mac: string): string {
  const normal = mac.toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(normal)) throw new InvalidRequestError(`Error parsing MAC address: ${mac}`);
  return normal;
}
