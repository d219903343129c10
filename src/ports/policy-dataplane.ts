import type { DesiredDataplane } from '../calc/policy.js';

export interface PolicyApplyResult {
  chainsWritten: number;
  setsWritten: number;
  /** Rules in our chains after the apply, across families and tables. */
  rules: number;
  /** Bytes handed to iptables-restore and ipset restore by this apply. */
  bytes: number;
  /** Stale rules, chains and sets this apply left in the kernel, unreachable: an apply with `tidy` removes them. */
  untidy: number;
}

/** The host's packet filter as the policy agent sees it: desired state in, minimal atomic writes out. */
export interface PolicyDataplane {
  /** Writes what changed the fastest way; `tidy` also removes what earlier applies left unreachable. */
  apply(desired: DesiredDataplane, options?: { tidy?: boolean }): Promise<PolicyApplyResult>;
  uninstall(): Promise<void>;
}
