import { dnsNames, NETWORK_ANNOTATION, WorkloadEndpoint } from '../domain/endpoint-model.js';

/**
 * Container names across hosts, answered as Docker's embedded resolver answers its own host's: a
 * container's name and aliases in each Calico network it is on, `NAME.NETWORK`, and the reverse
 * (PTR) of its addresses, only to containers attached to that network. Pure: endpoints in, answers out.
 */

export interface NameAnswer {
  ipv4: string[];
  ipv6: string[];
}

interface Addresses {
  ipv4: Set<string>;
  ipv6: Set<string>;
}

const lower = (text: string): string => text.toLowerCase();

/** The network of an endpoint: recorded at CreateEndpoint; the profile for endpoints written before. */
export const endpointNetwork = (endpoint: WorkloadEndpoint): string | undefined => endpoint.metadata.annotations?.[NETWORK_ANNOTATION] ?? endpoint.spec.profiles[0];

export class NameIndex {
  /** network → name → addresses. */
  private readonly byNetwork = new Map<string, Map<string, Addresses>>();
  /** address → [network, first name] (Docker's PTR answer is `name.network`). */
  private readonly byAddress = new Map<string, { network: string; name: string }>();

  constructor(endpoints: Iterable<WorkloadEndpoint>) {
    for (const endpoint of endpoints) this.add(endpoint);
  }

  /** One endpoint changed (`before` → `after`, either absent): the index follows without a rebuild. */
  update(before: WorkloadEndpoint | undefined, after: WorkloadEndpoint | undefined): void {
    if (before) this.remove(before);
    if (after) this.add(after);
  }

  /** Each (network, name, address) an endpoint contributes. */
  private entries(endpoint: WorkloadEndpoint): { network: string; names: string[]; addresses: string[] } | undefined {
    const network = endpointNetwork(endpoint);
    const names = dnsNames(endpoint);
    if (!network || names.length === 0) return undefined;
    return { network, names, addresses: endpoint.spec.ipNetworks.map((n) => n.split('/')[0]!) };
  }

  private add(endpoint: WorkloadEndpoint): void {
    const found = this.entries(endpoint);
    if (!found) return;
    const { network, names, addresses } = found;
    const key = lower(network);
    const names4network = this.byNetwork.get(key) ?? new Map<string, Addresses>();
    this.byNetwork.set(key, names4network);
    for (const name of names) {
      const entry = names4network.get(lower(name)) ?? { ipv4: new Set<string>(), ipv6: new Set<string>() };
      names4network.set(lower(name), entry);
      for (const address of addresses) (address.includes(':') ? entry.ipv6 : entry.ipv4).add(address);
    }
    for (const address of addresses) if (!this.byAddress.has(address)) this.byAddress.set(address, { network, name: names[0]! });
  }

  private remove(endpoint: WorkloadEndpoint): void {
    const found = this.entries(endpoint);
    if (!found) return;
    const { network, names, addresses } = found;
    const names4network = this.byNetwork.get(lower(network));
    for (const name of names) {
      const entry = names4network?.get(lower(name));
      if (!entry) continue;
      for (const address of addresses) (address.includes(':') ? entry.ipv6 : entry.ipv4).delete(address);
      if (entry.ipv4.size === 0 && entry.ipv6.size === 0) names4network!.delete(lower(name));
    }
    for (const address of addresses) if (this.byAddress.get(address)?.network === network) this.byAddress.delete(address);
  }

  /**
   * The addresses of `query` for a container on `networks`, tried as Docker tries them: the whole
   * name in every network, then `a.b` in network `c`, then `a` in network `b.c`, and so on.
   * Undefined when no network of the container has the name.
   */
  resolve(query: string, networks: Iterable<string>): NameAnswer | undefined {
    const name = lower(query.replace(/\.$/, ''));
    const attached = [...networks].map(lower);
    const candidates: [string, string | undefined][] = [[name, undefined]];
    for (let dot = name.lastIndexOf('.'); dot > 0; dot = name.lastIndexOf('.', dot - 1)) candidates.push([name.slice(0, dot), name.slice(dot + 1)]);
    for (const [label, network] of candidates) {
      for (const attachedNetwork of attached) {
        if (network !== undefined && network !== attachedNetwork) continue;
        const found = this.byNetwork.get(attachedNetwork)?.get(label);
        if (found) return { ipv4: [...found.ipv4], ipv6: [...found.ipv6] };
      }
    }
    return undefined;
  }

  /** `name.network` of a container address, for a container on that network. */
  reverse(address: string, networks: Iterable<string>): string | undefined {
    const found = this.byAddress.get(address);
    if (!found) return undefined;
    return [...networks].map(lower).includes(lower(found.network)) ? `${found.name}.${found.network}` : undefined;
  }
}

/** `d.c.b.a.in-addr.arpa` → `a.b.c.d`; undefined for any other name. */
export function addressOfReverseName(name: string): string | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa\.?$/i.exec(name);
  return match ? `${match[4]}.${match[3]}.${match[2]}.${match[1]}` : undefined;
}
