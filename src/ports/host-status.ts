/** A row of BIRD's `show protocols`, as the speaker's control socket gives it. */
export interface ProtocolRow {
  name: string;
  proto: string;
  state: string;
  since: string;
  info: string;
}

/** What BIRD on this host says of its protocols, or why it could not be asked. */
export type BgpProtocolsAnswer = { protocols: ProtocolRow[] } | { unreachable: string; socket: string };

/** This host's daemon and BGP speaker, as `calicoctl node status` reads them. */
export interface HostStatusSource {
  /** The daemon's process is alive (its PID file names a running process). */
  daemonRunning(): boolean;
  /** Why pools in IPIP mode cannot be served here, as the daemon found at start. */
  ipipUnavailable(): string | undefined;
  /** BIRD's protocols through its control socket; undefined when BIRD has no socket here (not running). */
  bgpProtocols(timeoutMs: number): Promise<BgpProtocolsAnswer | undefined>;
}
