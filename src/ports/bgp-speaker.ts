/** What applying a configuration did. */
export interface SpeakerApplyResult {
  /** The configuration is now the running one. */
  applied: boolean;
  /** Why it was refused (BIRD's own message), when it was. */
  refused?: string;
}

/**
 * The BGP speaker of this host (BIRD): given the whole configuration, it makes that the running one,
 * or keeps the running one and says why not. Its process outlives the daemon, so a daemon restart
 * takes no route away.
 */
export interface BgpSpeaker {
  apply(config: string): Promise<SpeakerApplyResult>;
  /** The daemon stops: the speaker keeps running and keeps this host's routes. */
  detach(): Promise<void>;
}
