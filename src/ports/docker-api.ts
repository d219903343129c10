/** A container as Docker describes it, with what Calico records on its endpoints. */
export interface ContainerInfo {
  id: string;
  /** Without Docker's leading `/`. */
  name: string;
  labels: Record<string, string>;
  /** Docker's sandbox key: the path of the container's network namespace. */
  sandboxKey: string;
  /** Per network name. */
  networks: Record<string, { networkId: string; endpointId: string; aliases: string[]; gateway: string }>;
}

/** Something Docker reports on its event stream (network and container events only). */
export interface DockerEvent {
  type: 'network' | 'container';
  action: string;
  /** Network ID for network events, container ID for container events. */
  actorId: string;
  attributes: Record<string, string>;
}

/** What the daemon asks Docker's own API (Docker does not send names or labels to drivers). */
export interface DockerApi {
  /** The network's name, or undefined when Docker does not know it (yet). */
  networkName(networkId: string): Promise<string | undefined>;
  /** A network's ID from its name (or ID), or undefined when Docker has no such network or cannot be asked. */
  networkId(nameOrId: string): Promise<string | undefined>;
  /** The networks of `driver` (ID and name), or undefined when Docker cannot be asked. */
  listNetworks(driver: string): Promise<{ id: string; name: string; containers: string[] }[] | undefined>;
  /** A container with its networks, or undefined when Docker has none of that name or ID; throws when Docker cannot be asked. */
  inspectContainer(nameOrId: string): Promise<ContainerInfo | undefined>;
  /** Every endpoint ID Docker knows on networks of `driver`; undefined when Docker cannot be asked. */
  knownEndpoints(driver: string): Promise<Set<string> | undefined>;
  /** Follows Docker's network and container events until closed; `onEnd` when the stream ends or fails. */
  events(onEvent: (event: DockerEvent) => void, onEnd: (error?: Error) => void): { close(): void };
}
