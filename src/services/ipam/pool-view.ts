import { Cidr, IpFamily, parseCidr } from '../../domain/cidr.js';
import type { IpPool } from '../../domain/ipam-model.js';

/** A pool as the allocator uses it: parsed once, defaults applied. */
export interface PoolView {
  name: string;
  cidr: Cidr;
  blockSize: number;
  disabled: boolean;
  pool: IpPool;
}

export const defaultBlockSize = (family: IpFamily): number => (family === 4 ? 26 : 122);

/** Returns undefined for a pool whose CIDR cannot be parsed: it is skipped, never fatal. */
export function viewOf(pool: IpPool): PoolView | undefined {
  try {
    const cidr = parseCidr(pool.spec.cidr);
    return {
      name: pool.metadata.name,
      cidr,
      blockSize: pool.spec.blockSize ?? defaultBlockSize(cidr.family),
      disabled: pool.spec.disabled === true,
      pool,
    };
  } catch {
    return undefined;
  }
}

export const describePool = (pool: PoolView): string => `${pool.name} (${pool.pool.spec.cidr})`;

const encapsulated = (mode: string | undefined): boolean => mode === 'Always' || mode === 'CrossSubnet';

/** Calico's rules for a pool's encapsulation: at most one of VXLAN and IPIP, neither on IPv6. */
export function encapsulationProblem(spec: IpPool['spec'], family: IpFamily): string | undefined {
  if (encapsulated(spec.vxlanMode) && encapsulated(spec.ipipMode)) return 'IPIPMode and VXLANMode cannot both be enabled on the same IP pool';
  if (family === 6 && (encapsulated(spec.vxlanMode) || encapsulated(spec.ipipMode))) return 'IPIP and VXLAN are not supported on an IPv6 IP pool';
  return undefined;
}
