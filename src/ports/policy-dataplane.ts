import type { DesiredDataplane } from '../calc/policy.js';

export interface PolicyApplyResult {
  chainsWritten: number;
  setsWritten: number;
  /** Rules in our chains after the apply, across families and tables. */
  rules: number;
  /** Bytes handed to iptables-restore and ipset restore by this apply. */
  bytes: number;
}

/** The host's packet filter as the policy agent sees it: desired state in, minimal atomic writes out. */
export interface PolicyDataplane {
  apply(desired: DesiredDataplane): Promise<PolicyApplyResult>;
  uninstall(): Promise<void>;
}
