import type { IpFamily } from '../../domain/cidr.js';
import type { ProtocolRow } from '../../ports/host-status.js';

export interface PeerStatus {
  family: IpFamily;
  address: string;
  type: 'node-to-node mesh' | 'global' | 'node specific';
  state: string;
  since: string;
  info: string;
}

const TYPES = { Mesh: 'node-to-node mesh', Global: 'global', Node: 'node specific' } as const;
const PEER_NAME = /^(Global|Node|Mesh)_(.+?)(_port_\d+)?$/;

/**
 * The BGP peers of `calicoctl node status` from BIRD's protocols, as Calico reads them: only BGP
 * protocols named `Mesh_`, `Global_` or `Node_` + the address with `_` for `.` or `:`. One BIRD
 * serves both families, so the family comes from the name: four decimal groups are IPv4.
 */
export function peerStatuses(rows: ProtocolRow[], formatSince: (since: string) => string): PeerStatus[] {
  return rows.flatMap((row) => {
    const match = PEER_NAME.exec(row.name);
    // Calico skips rows without an info column (disabled protocols).
    if (row.proto !== 'BGP' || !match || row.info === '') return [];
    const suffix = match[2]!;
    const family: IpFamily = /^\d+_\d+_\d+_\d+$/.test(suffix) ? 4 : 6;
    const address = family === 4 ? suffix.replace(/_/g, '.') : suffix.replace(/_/g, ':');
    return [{ family, address, type: TYPES[match[1] as keyof typeof TYPES], state: row.state, since: formatSince(row.since), info: row.info }];
  });
}

/** BIRD's `timeformat protocol "%s"` gives Unix seconds: shown as BIRD 1.6 did, a time today-ish, else a date. */
export function formatSince(since: string, now = new Date()): string {
  if (!/^\d+$/.test(since)) return since;
  const at = new Date(Number(since) * 1000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (now.getTime() - at.getTime() < 20 * 3600 * 1000) return `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
}
