import { formatIp, IpFamily, parseIp } from '../../domain/cidr.js';
import { AlreadyExistsError, ConflictError, InvalidRequestError, NotFoundError } from '../../domain/errors.js';
import { API_VERSION, CalicoNode, NodeBgpSpec } from '../../domain/resources.js';
import type { HostNetwork } from '../../ports/host-network.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { ResourceStore } from '../../ports/resource-store.js';
import { DetectionMethod, detectAddress, interfaceAddress } from './address-detection.js';

/** calico/node's IP and IP6: detect, an explicit address, or leave alone. */
export type AddressSetting = { kind: 'autodetect'; method: DetectionMethod } | { kind: 'none' } | { kind: 'address'; text: string };

export interface RegistrationSettings {
  node: string;
  ipv4: AddressSetting;
  ipv6: AddressSetting;
  /** From AS; undefined leaves the stored value (none means: inherit the global AS). */
  asNumber?: number;
}

/** Another node holds this host's address: calico/node refuses to start, and so do we. */
export class NodeAddressConflictError extends ConflictError {}

const MAX_ATTEMPTS = 10;
const ipOf = (cidr: string | undefined): string | undefined => (cidr ? cidr.split('/')[0] : undefined);

/**
 * Registers this host as a Calico v3 Node at start, as calico/node does: its addresses (detected or
 * given), its AS, everything else on the Node (labels, tunnel addresses, route reflector ID) kept.
 */
export class NodeRegistration {
  constructor(
    private readonly store: ResourceStore,
    private readonly host: HostNetwork,
    private readonly log: Logger = silentLogger,
  ) {}

  async register(settings: RegistrationSettings): Promise<CalicoNode> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const existing = await this.store.get<CalicoNode>({ kind: 'Node', name: settings.node });
      const bgp: NodeBgpSpec = { ...existing?.spec.bgp };
      for (const family of [4, 6] as const) {
        const key = family === 4 ? 'ipv4Address' : 'ipv6Address';
        const address = await this.address(family === 4 ? settings.ipv4 : settings.ipv6, family, bgp[key]);
        if (address === undefined) delete bgp[key];
        else bgp[key] = address;
      }
      if (settings.asNumber !== undefined) bgp.asNumber = settings.asNumber;
      await this.checkConflicts(settings.node, bgp);
      const spec = { ...existing?.spec, bgp: orderedBgp(bgp) };
      // Calico refuses `bgp: {}`: a node with no address and no AS has no bgp section at all.
      if (Object.keys(spec.bgp).length === 0) delete (spec as { bgp?: NodeBgpSpec }).bgp;
      const node: CalicoNode = existing
        ? { ...existing, spec }
        : { kind: 'Node', apiVersion: API_VERSION, metadata: { name: settings.node }, spec };
      this.logChanges(existing, node);
      try {
        return existing ? await this.store.update(node) : await this.store.create(node);
      } catch (error) {
        // Someone else wrote the node meanwhile (a user's label): read it again.
        if (error instanceof ConflictError || error instanceof NotFoundError || error instanceof AlreadyExistsError) continue;
        throw error;
      }
    }
    throw new ConflictError(`Node ${settings.node} is changing too often to register: try again`);
  }

  private async address(setting: AddressSetting, family: IpFamily, stored: string | undefined): Promise<string | undefined> {
    if (setting.kind === 'none') {
      if (stored) this.log.info({ family, address: stored }, `Autodetection for IPv${family} disabled, keeping existing value`);
      return stored;
    }
    const interfaces = await this.host.interfaces();
    if (setting.kind === 'address') {
      const [ip, prefix] = setting.text.split('/');
      const parsed = parseIp(ip!);
      if (parsed.family !== family) throw new InvalidRequestError(`${family === 4 ? 'IP' : 'IP6'}=${setting.text} is not an IPv${family} address`);
      if (prefix !== undefined) return `${formatIp(parsed)}/${prefix}`;
      // A bare address takes the prefix of the interface holding it, as calico/node does.
      return interfaceAddress(interfaces, parsed)?.cidr ?? `${formatIp(parsed)}/${family === 4 ? 32 : 128}`;
    }
    const source = setting.method.kind === 'can-reach' ? await this.host.sourceAddressFor(setting.method.destination, family) : undefined;
    const detected = detectAddress(setting.method, interfaces, family, source);
    if (detected) {
      this.log.info({ family, address: detected.cidr, interface: detected.interfaceName, method: setting.method.kind }, `Using autodetected IPv${family} address`);
      return detected.cidr;
    }
    if (stored) {
      this.log.warn({ family, address: stored }, `Autodetection of IPv${family} address failed, keeping existing value`);
      return stored;
    }
    throw new InvalidRequestError(
      `Couldn't autodetect an IPv${family} address (method ${setting.method.kind}): set ${family === 4 ? 'IP' : 'IP6'} to this host's address, or IP_AUTODETECTION_METHOD`,
    );
  }

  /** Two nodes with one address would take each other's routes: refused, naming the other node. */
  private async checkConflicts(name: string, bgp: NodeBgpSpec): Promise<void> {
    const nodes = await this.store.list<CalicoNode>('Node');
    for (const other of nodes) {
      if (other.metadata.name === name) continue;
      for (const [key, family] of [['ipv4Address', 4], ['ipv6Address', 6]] as const) {
        const mine = ipOf(bgp[key]);
        if (mine && mine === ipOf(other.spec?.bgp?.[key])) {
          throw new NodeAddressConflictError(
            `Calico node '${other.metadata.name}' is already using the IPv${family} address ${mine}: give this host another address (IP${family === 6 ? '6' : ''}=...), or remove the other node with 'calicoctl delete node ${other.metadata.name}'`,
          );
        }
      }
    }
  }

  private logChanges(before: CalicoNode | null, after: CalicoNode): void {
    for (const [key, family] of [['ipv4Address', 4], ['ipv6Address', 6]] as const) {
      const old = before?.spec.bgp?.[key];
      const now = after.spec.bgp?.[key];
      if (before && old !== now) this.log.info({ node: after.metadata.name, from: old, to: now }, `Node IPv${family} changed`);
    }
  }
}

/** Calico's field order in `spec.bgp`. */
function orderedBgp(bgp: NodeBgpSpec): NodeBgpSpec {
  const order: (keyof NodeBgpSpec)[] = ['asNumber', 'ipv4Address', 'ipv6Address', 'ipv4IPIPTunnelAddr', 'routeReflectorClusterID'];
  return Object.fromEntries(order.filter((k) => bgp[k] !== undefined).map((k) => [k, bgp[k]])) as NodeBgpSpec;
}
