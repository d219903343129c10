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
  /**
   * For calicoctl, never the daemon (Docker waits on the plugin while it serves a request): the
   * EndpointID of each network a container (name, ID or unique ID prefix) is on, by network name;
   * undefined when Docker has no such container. Throws when Docker cannot be asked.
   */
  containerEndpoints(container: string): Promise<Map<string, string> | undefined>;
}
