import { Cidr, cidrKeyName, parseCidrKeyName } from '../../../domain/cidr.js';
import type { IpamTarget } from '../../../ports/ipam-store.js';

/** Calico's etcd v3 key layout (libcalico-go `lib/backend/model`). */
export const POOL_PREFIX = '/calico/resources/v3/projectcalico.org/ippools/';
export const BLOCK_PREFIX = '/calico/ipam/v2/assignment/';
export const HOST_PREFIX = '/calico/ipam/v2/host/';
export const HANDLE_PREFIX = '/calico/ipam/v2/handle/';
export const CONFIG_KEY = '/calico/ipam/v2/config';

const ipv = (family: 4 | 6): string => `ipv${family}`;

export const blockPrefix = (family?: 4 | 6): string => (family ? `${BLOCK_PREFIX}${ipv(family)}/block/` : BLOCK_PREFIX);

/** Host prefixes always end in `/`, so `node1` never matches `node10`'s keys. */
export const hostPrefix = (node?: string): string => (node === undefined ? HOST_PREFIX : `${HOST_PREFIX}${node}/`);

export function keyOf(target: IpamTarget): string {
  switch (target.kind) {
    case 'pool':
      return POOL_PREFIX + target.name;
    case 'block':
      return `${blockPrefix(target.cidr.family)}${cidrKeyName(target.cidr)}`;
    case 'affinity':
      return `${hostPrefix(target.node)}${ipv(target.cidr.family)}/block/${cidrKeyName(target.cidr)}`;
    case 'handle':
      return HANDLE_PREFIX + target.id;
    case 'config':
      return CONFIG_KEY;
  }
}

const BLOCK_KEY = /^\/calico\/ipam\/v2\/assignment\/ipv[46]\/block\/([^/]+)$/;
const AFFINITY_KEY = /^\/calico\/ipam\/v2\/host\/([^/]+)\/ipv[46]\/block\/([^/]+)$/;

export function blockCidrFromKey(key: string): Cidr | undefined {
  const match = BLOCK_KEY.exec(key);
  return match ? parseCidrKeyName(match[1]!) : undefined;
}

export function affinityFromKey(key: string): { node: string; cidr: Cidr } | undefined {
  const match = AFFINITY_KEY.exec(key);
  return match ? { node: match[1]!, cidr: parseCidrKeyName(match[2]!) } : undefined;
}

/** The exclusive end of a prefix range, as etcd's `clientv3.GetPrefixRangeEnd` computes it. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
