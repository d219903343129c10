import { cidrEquals, formatCidr, hostCidr, IpFamily, parseCidr, parseIp } from '../../domain/cidr.js';
import { InvalidRequestError } from '../../domain/errors.js';
import { DockerReleases } from './docker-releases.js';
import type { IpamService } from './ipam-service.js';
import type { PoolService } from './pool-service.js';

/** Docker's words for Calico's IPAM, with the names and message texts of Calico's libnetwork driver. */
export const LOCAL_ADDRESS_SPACE = 'CalicoLocalAddressSpace';
export const GLOBAL_ADDRESS_SPACE = 'CalicoGlobalAddressSpace';
export const ANY_POOL: Record<IpFamily, string> = { 4: 'CalicoPoolIPv4', 6: 'CalicoPoolIPv6' };
const ANY_NETWORK: Record<IpFamily, string> = { 4: '0.0.0.0/0', 6: '::/0' };
export const GATEWAY_OPTION = 'com.docker.network.gateway';

export interface PoolRequest {
  pool: string;
  subPool: string;
  options: Record<string, string>;
  v6: boolean;
}

export interface AddressRequest {
  poolId: string;
  address: string;
  options: Record<string, string>;
}

/**
 * Answers Docker's IpamDriver calls. Without `--subnet` a network draws from every pool of its
 * family (PoolID CalicoPoolIPv4/IPv6); with one, the subnet must be a pool's CIDR and the PoolID is
 * the pool's name. The gateway handed back is the dummy 0.0.0.0/0 (::/0), so Docker never asks for a
 * gateway address and the network driver can tell Calico IPAM is in use.
 */
export class DockerIpamDriver {
  constructor(
    private readonly ipam: IpamService,
    private readonly pools: PoolService,
    private readonly releases = new DockerReleases(ipam),
  ) {}

  async requestPool(request: PoolRequest): Promise<{ poolId: string; pool: string; gateway: string }> {
    if (request.subPool !== '') {
      throw new InvalidRequestError(
        "Calico IPAM does not support sub pool configuration on 'docker create network'. Calico IP Pools should be configured first and IP assignment is from those pre-configured pools.",
      );
    }
    if (Object.keys(request.options).length > 0) throw new InvalidRequestError('Arbitrary options are not supported');
    const family: IpFamily = request.v6 ? 6 : 4;
    const gateway = ANY_NETWORK[family];
    if (request.pool === '' || request.pool === ANY_NETWORK[family]) return { poolId: ANY_POOL[family], pool: gateway, gateway };
    let subnet;
    try {
      subnet = parseCidr(request.pool);
    } catch {
      throw new InvalidRequestError('Invalid CIDR');
    }
    if (subnet.family !== family) throw new InvalidRequestError(`The requested subnet ${request.pool} is not an IPv${family} subnet`);
    const match = await this.poolWithCidr(subnet);
    if (!match) throw new InvalidRequestError('The requested subnet must match the CIDR of a configured Calico IP Pool.');
    return { poolId: match.name, pool: formatCidr(match.cidr), gateway };
  }

  async requestAddress(request: AddressRequest): Promise<string> {
    if (request.options['RequestAddressType'] === GATEWAY_OPTION) {
      throw new InvalidRequestError('Calico IPAM does not support specifying a gateway.');
    }
    if (request.address !== '') {
      const address = parseRequestedIp(request.address);
      const allocation = await this.ipam.requestExplicit({ address });
      return hostCidr(allocation.address);
    }
    const anyFamily = (Object.entries(ANY_POOL) as [string, string][]).find(([, id]) => id === request.poolId);
    const family = anyFamily ? (Number(anyFamily[0]) as IpFamily) : await this.familyOfPool(request.poolId);
    const allocation = await this.ipam.requestAuto({ family, ...(anyFamily ? {} : { poolName: request.poolId }) });
    return hostCidr(allocation.address);
  }

  /** Idempotent: a free address, and Docker's dummy gateway 0.0.0.0 / ::, release without error. */
  async releaseAddress(address: string): Promise<void> {
    const ip = parseRequestedIp(address);
    if (ip.value === 0n) return;
    await this.releases.forDocker(ip);
  }

  private async familyOfPool(poolId: string): Promise<IpFamily> {
    const pool = this.ipam.pool(poolId) ?? (await this.pools.list()).find((p) => p.name === poolId);
    if (!pool) throw new InvalidRequestError(`Invalid Pool - ${poolId}: IP pool ${poolId} does not exist`);
    return pool.cidr.family;
  }

  /** Looks in IPAM's cache first, then in etcd, so a pool added a moment ago is found. */
  private async poolWithCidr(subnet: ReturnType<typeof parseCidr>) {
    const cached = this.ipam.pools().find((p) => cidrEquals(p.cidr, subnet));
    return cached ?? (await this.pools.list()).find((p) => cidrEquals(p.cidr, subnet));
  }
}

function parseRequestedIp(text: string) {
  try {
    return parseIp(text);
  } catch {
    throw new InvalidRequestError(`Invalid IP address ${JSON.stringify(text)}`);
  }
}
