/** What the daemon asks Docker's own API (Docker does not send names or labels to drivers). */
export interface DockerApi {
  /** The network's name, or undefined when Docker does not know it (yet). */
  networkName(networkId: string): Promise<string | undefined>;
  /** A network's ID from its name (or ID), or undefined when Docker has no such network or cannot be asked. */
  networkId(nameOrId: string): Promise<string | undefined>;
  /** Labels of the container that owns `endpointId` on `networkId`, once Docker has recorded the join. */
  endpointContainerLabels(networkId: string, endpointId: string): Promise<Record<string, string> | undefined>;
  /** Every endpoint ID Docker knows on networks of `driver`; undefined when Docker cannot be asked. */
  knownEndpoints(driver: string): Promise<Set<string> | undefined>;
}
