import { parseIp } from '../../domain/cidr.js';
import { PORT_MAP_ANNOTATION, PortMapping, portMappings, PortProtocol, WorkloadEndpoint, workloadEndpointName } from '../../domain/endpoint-model.js';
import { ConflictError, InvalidRequestError } from '../../domain/errors.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';

/** Docker's key for `-p` in ProgramExternalConnectivity's options (libnetwork `netlabel.PortMap`). */
export const PORT_MAP_OPTION = 'com.docker.network.portmap';
const PROTOCOLS: Record<number, PortProtocol> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
/** Where host ports for `-P` (and `-p <container port>`) come from: Docker's own default range. */
const DYNAMIC_PORTS: [number, number] = [49153, 60999];
const MAX_ATTEMPTS = 20;

interface Binding {
  Proto?: number;
  IP?: string;
  Port?: number;
  HostIP?: string;
  HostPort?: number;
  HostPortEnd?: number;
}

const isPort = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 65535;

/** Docker's port bindings, checked field by field. */
function parseBindings(value: unknown): Binding[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new InvalidRequestError(`${PORT_MAP_OPTION} must be a list of port bindings`);
  return value.map((b: Binding) => {
    if (typeof b !== 'object' || b === null) throw new InvalidRequestError(`invalid port binding ${JSON.stringify(b)}`);
    if (!PROTOCOLS[b.Proto ?? -1]) throw new InvalidRequestError(`invalid port binding ${JSON.stringify(b)}: protocol ${b.Proto} is not TCP, UDP or SCTP`);
    if (!isPort(b.Port) || b.Port === 0 || !isPort(b.HostPort ?? 0) || !isPort(b.HostPortEnd ?? 0)) throw new InvalidRequestError(`invalid port binding ${JSON.stringify(b)}: ports are 1-65535`);
    if (b.HostIP) parseIp(b.HostIP);
    return b;
  });
}

/**
 * Ports published with `docker run -p`, as Docker's bridge does for its own networks: each binding's
 * host port (the one given, the first free one of a range, or one of Docker's dynamic range for `-P`)
 * is recorded on the endpoint (annotation `libnetwork.projectcalico.org/port-map`), and every host's
 * policy agent turns that into DNAT from the host's addresses to the container. Compared and swapped
 * on the endpoint's revision.
 */
export class PublishedPorts {
  constructor(
    private readonly store: EndpointStore,
    private readonly node: string,
  ) {}

  /** Publishes exactly Docker's bindings for the endpoint; resolves with what was published. */
  async program(endpointId: string, options: Record<string, unknown>): Promise<PortMapping[]> {
    const bindings = parseBindings(options[PORT_MAP_OPTION]);
    return this.edit(endpointId, async (endpoint) => {
      if (bindings.length === 0 && portMappings(endpoint).length === 0) return undefined;
      const taken = await this.hostPortsInUse(endpoint.metadata.name);
      return bindings.map((b) => this.resolve(b, taken));
    });
  }

  async revoke(endpointId: string): Promise<void> {
    await this.edit(endpointId, async (endpoint) => (portMappings(endpoint).length ? [] : undefined));
  }

  private resolve(binding: Binding, taken: Set<string>): PortMapping {
    const protocol = PROTOCOLS[binding.Proto!]!;
    const hostIp = binding.HostIP ?? '';
    const key = (port: number): string => `${protocol}/${port}`;
    const [low, high] = binding.HostPort ? [binding.HostPort, Math.max(binding.HostPort, binding.HostPortEnd ?? 0)] : DYNAMIC_PORTS;
    for (let port = low; port <= high; port++) {
      if (taken.has(key(port))) continue;
      taken.add(key(port));
      return { protocol, hostIp, hostPort: port, port: binding.Port! };
    }
    throw new ConflictError(`no free host port for ${protocol} ${binding.Port}: ${low === high ? `${low} is` : `${low}-${high} are`} published by other containers on this host`);
  }

  /** Host ports this node's other endpoints publish (`tcp/8080`). */
  private async hostPortsInUse(except: string): Promise<Set<string>> {
    const endpoints = (await this.store.listEndpoints()).map((e) => e.value).filter((e) => e.spec.node === this.node && e.metadata.name !== except);
    return new Set(endpoints.flatMap((e) => portMappings(e).map((m) => `${m.protocol}/${m.hostPort}`)));
  }

  private async edit(endpointId: string, decide: (endpoint: WorkloadEndpoint) => Promise<PortMapping[] | undefined>): Promise<PortMapping[]> {
    const name = workloadEndpointName(this.node, endpointId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await this.store.getEndpoint(name);
      if (!stored) throw new InvalidRequestError(`Endpoint ${endpointId} not found: CreateEndpoint was not called or failed`);
      const mappings = await decide(stored.value);
      if (mappings === undefined) return portMappings(stored.value);
      const annotations = { ...stored.value.metadata.annotations };
      if (mappings.length) annotations[PORT_MAP_ANNOTATION] = JSON.stringify(mappings);
      else delete annotations[PORT_MAP_ANNOTATION];
      const updated = { ...stored.value, metadata: { ...stored.value.metadata, annotations } };
      if (await this.store.updateEndpoint(updated, stored.modRevision)) return mappings;
    }
    throw new ConflictError(`Endpoint ${endpointId} is changing too often to publish its ports: try again`);
  }
}
