import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What the daemon tells `calicoctl node status` about this host beyond BGP (CALICO_RUN_DIR/status.json). */
export interface HostStatus {
  /** Set when pools in IPIP mode cannot be served here, and why. */
  ipipUnavailable?: string;
}

const file = (runDir: string): string => join(runDir, 'status.json');

export function writeHostStatus(runDir: string, status: HostStatus): void {
  mkdirSync(runDir, { recursive: true, mode: 0o755 });
  writeFileSync(`${file(runDir)}.new`, `${JSON.stringify(status)}\n`);
  renameSync(`${file(runDir)}.new`, file(runDir));
}

export function readHostStatus(runDir: string): HostStatus {
  try {
    return JSON.parse(readFileSync(file(runDir), 'utf8')) as HostStatus;
  } catch {
    return {};
  }
}
