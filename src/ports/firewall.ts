/** The host's packet filter, as far as the network driver needs it before policy exists. */
export interface Firewall {
  /** Lets traffic to and from workload interfaces (`<prefix>+`) through FORWARD, whatever Docker's policy. */
  allowWorkloadForwarding(interfacePrefix: string): Promise<void>;
}
