import {
  DNS_NAMES_ANNOTATION,
  GATEWAY_ANNOTATION,
  SANDBOX_ANNOTATION,
  WorkloadEndpoint,
  workloadEndpointName,
} from '../../domain/endpoint-model.js';
import type { ContainerInfo, DockerApi, DockerEvent } from '../../ports/docker-api.js';
import type { EndpointStore } from '../../ports/endpoint-store.js';
import { Logger, silentLogger } from '../../ports/logger.js';

const LABEL_PREFIX = 'org.projectcalico.label.';
/** `org.projectcalico.port.<name>=<port>[/<protocol>]`: a named port policies may refer to. */
const PORT_PREFIX = 'org.projectcalico.port.';
const PORT_NAME = /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
const RECONNECT_MS = 1000;
const CAS_ATTEMPTS = 10;
/**
 * Pauses before asking Docker again about a container it did not answer for. Docker answers an
 * inspect only once the container's start is over, and the start includes our Join: on a busy host
 * that took longer than the API's timeout, and the endpoint then never learnt its labels.
 */
const INSPECT_RETRY_MS = [500, 1000, 2000, 4000, 8000];

export interface DockerWatcherOptions {
  node: string;
  /** The name Docker knows this plugin's networks by; undefined until Docker has told it (a managed plugin's). */
  driverName: string | undefined;
  /** CALICO_LIBNETWORK_LABEL_ENDPOINTS: copy `org.projectcalico.label.<k>=<v>` onto the endpoint as `<k>=<v>`. */
  labelEndpoints: boolean;
}

/**
 * What Docker never tells a driver, learnt in the background from its event stream and its inspect
 * API, never inside a plugin request (Docker holds its own locks while it waits for the driver):
 * the names of its networks, and for each container on them its name, aliases, labels, sandbox and
 * gateway, recorded on the container's workload endpoints. After a (re)connect to the event stream
 * every container on our networks is looked at again, so nothing missed meanwhile stays missing.
 */
export class DockerWatcher {
  private readonly names = new Map<string, string>();
  /** Network name lookups asked by requests for networks not (yet) seen in the events. */
  private readonly asking = new Map<string, Promise<string | undefined>>();
  private stream: { close(): void } | undefined;
  private stopped = false;
  /** One inspect per container at a time; a later event for it waits for the one under way. */
  private readonly inspecting = new Map<string, Promise<void>>();

  constructor(
    private readonly docker: DockerApi,
    private readonly endpoints: EndpointStore,
    private readonly options: DockerWatcherOptions,
    private readonly log: Logger = silentLogger,
  ) {}

  start(): void {
    this.stopped = false;
    this.follow();
  }

  stop(): void {
    this.stopped = true;
    this.stream?.close();
  }

  /** The name of a network of ours, as far as the events and listings have told. */
  networkName(networkId: string): string | undefined {
    return this.names.get(networkId);
  }

  /**
   * The name of a network, asking Docker in the background when the events have not told it yet (a
   * network another host created in global scope), waiting at most `timeoutMs` for the answer.
   */
  async networkNameWithin(networkId: string, timeoutMs: number): Promise<string | undefined> {
    const known = this.names.get(networkId);
    if (known) return known;
    let asking = this.asking.get(networkId);
    if (!asking) {
      asking = this.docker.networkName(networkId).then((name) => {
        if (name) this.names.set(networkId, name);
        this.asking.delete(networkId);
        return name;
      });
      this.asking.set(networkId, asking);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
    try {
      return await Promise.race([asking, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private follow(): void {
    if (this.stopped) return;
    this.stream = this.docker.events(
      (event) => this.onEvent(event),
      (error) => {
        if (this.stopped) return;
        this.log.warn({ err: error }, 'docker event stream ended; reconnecting');
        setTimeout(() => this.follow(), RECONNECT_MS).unref();
      },
    );
    // Whatever happened while the stream was not there: every network and container of ours, again.
    void this.catchUp();
  }

  private async catchUp(): Promise<void> {
    const driver = this.options.driverName;
    const networks = driver === undefined ? undefined : await this.docker.listNetworks(driver);
    if (!networks) return;
    for (const network of networks) this.names.set(network.id, network.name);
    const containers = new Set(networks.flatMap((n) => n.containers));
    for (const id of containers) await this.inspect(id);
  }

  private onEvent(event: DockerEvent): void {
    if (event.type === 'network') {
      if (event.attributes.type !== this.options.driverName) return;
      if (event.action === 'create' && event.attributes.name) this.names.set(event.actorId, event.attributes.name);
      if (event.action === 'destroy') this.names.delete(event.actorId);
      if (event.action === 'connect' && event.attributes.container) void this.inspect(event.attributes.container);
      return;
    }
    if (event.action === 'rename') void this.inspect(event.actorId);
  }

  /** Inspects a container and records what Docker says of it on each of its endpoints of this node. */
  private inspect(containerId: string): Promise<void> {
    const previous = this.inspecting.get(containerId) ?? Promise.resolve();
    const next = previous.then(async () => {
      const container = await this.inspectPatiently(containerId);
      if (!container) return;
      for (const [networkName, network] of Object.entries(container.networks)) {
        if (!network.endpointId) continue;
        await this.record(container, networkName, network).catch((error) => this.log.warn({ err: error, container: container.name }, 'could not record the container on its endpoint'));
      }
    });
    const settled = next.finally(() => {
      if (this.inspecting.get(containerId) === settled) this.inspecting.delete(containerId);
    });
    this.inspecting.set(containerId, settled);
    return settled;
  }

  /** The container as Docker describes it, asked again while Docker cannot answer; undefined when it is gone or Docker never answered. */
  private async inspectPatiently(containerId: string): Promise<ContainerInfo | undefined> {
    for (const pause of [...INSPECT_RETRY_MS, undefined]) {
      try {
        return await this.docker.inspectContainer(containerId);
      } catch (error) {
        if (pause === undefined || this.stopped) {
          this.log.warn({ err: error, container: containerId }, 'could not inspect a container');
          return undefined;
        }
        await new Promise((resolve) => setTimeout(resolve, pause).unref());
      }
    }
    return undefined;
  }

  private async record(container: ContainerInfo, networkName: string, network: ContainerInfo['networks'][string]): Promise<void> {
    const name = workloadEndpointName(this.options.node, network.endpointId);
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await this.endpoints.getEndpoint(name);
      if (!stored) return;
      const updated = withContainer(stored.value, container, network, this.options.labelEndpoints);
      if (JSON.stringify(updated) === JSON.stringify(stored.value)) return;
      if (await this.endpoints.updateEndpoint(updated, stored.modRevision)) {
        this.log.debug({ endpoint: name, container: container.name, network: networkName }, 'endpoint knows its container');
        return;
      }
    }
  }
}

/** A container's named ports, from its `org.projectcalico.port.*` labels; malformed ones are left out. */
export function namedPorts(labels: Record<string, string>): NonNullable<WorkloadEndpoint['spec']['ports']> {
  const ports: NonNullable<WorkloadEndpoint['spec']['ports']> = [];
  for (const [key, value] of Object.entries(labels)) {
    if (!key.startsWith(PORT_PREFIX)) continue;
    const name = key.slice(PORT_PREFIX.length);
    const match = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(value.trim());
    const port = Number(match?.[1]);
    if (!PORT_NAME.test(name) || !/[a-z]/.test(name) || !match || port < 1 || port > 65535) continue;
    ports.push({ name, protocol: (match[2] ?? 'tcp').toUpperCase(), port });
  }
  return ports.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The endpoint with its container's identity: name, ID, DNS names, sandbox, gateway, Calico labels, named ports. */
export function withContainer(endpoint: WorkloadEndpoint, container: ContainerInfo, network: ContainerInfo['networks'][string], copyLabels: boolean): WorkloadEndpoint {
  const names = [...new Set([container.name, ...network.aliases].filter((n) => n !== ''))];
  const labels = copyLabels
    ? Object.fromEntries(Object.entries(container.labels).filter(([k]) => k.startsWith(LABEL_PREFIX)).map(([k, v]) => [k.slice(LABEL_PREFIX.length), v]))
    : {};
  return {
    ...endpoint,
    metadata: {
      ...endpoint.metadata,
      labels: { ...endpoint.metadata.labels, ...labels },
      annotations: {
        ...endpoint.metadata.annotations,
        [DNS_NAMES_ANNOTATION]: JSON.stringify(names),
        ...(container.sandboxKey ? { [SANDBOX_ANNOTATION]: container.sandboxKey } : {}),
        ...(network.gateway ? { [GATEWAY_ANNOTATION]: network.gateway } : {}),
      },
    },
    spec: { ...endpoint.spec, workload: container.name || endpoint.spec.workload, containerID: container.id, ...portsOf(container.labels) },
  };
}

const portsOf = (labels: Record<string, string>): { ports?: NonNullable<WorkloadEndpoint['spec']['ports']> } => {
  const ports = namedPorts(labels);
  return ports.length ? { ports } : {};
};
