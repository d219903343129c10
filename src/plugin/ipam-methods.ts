import {
  IPAM_METHODS,
  ReleaseAddressRequest,
  ReleasePoolRequest,
  RequestAddressRequest,
  RequestPoolRequest,
} from '../../plugin-spec/ipam.js';
import { DockerIpamDriver, GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE } from '../services/ipam/docker-ipam-driver.js';
import type { MethodHandler } from './docker-plugin.js';

/** IpamDriver.*: wire fields in, one driver call, wire fields out. */
export function ipamMethods(driver: DockerIpamDriver): Record<string, MethodHandler> {
  const m = IPAM_METHODS;
  return {
    'IpamDriver.GetCapabilities': {
      spec: m['IpamDriver.GetCapabilities'],
      handle: async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }),
    },
    'IpamDriver.GetDefaultAddressSpaces': {
      spec: m['IpamDriver.GetDefaultAddressSpaces'],
      handle: async () => ({ LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE }),
    },
    'IpamDriver.RequestPool': {
      spec: m['IpamDriver.RequestPool'],
      handle: async (body: RequestPoolRequest) => {
        const result = await driver.requestPool({ pool: body.Pool ?? '', subPool: body.SubPool ?? '', options: body.Options ?? {}, v6: body.V6 ?? false });
        return { PoolID: result.poolId, Pool: result.pool, Data: { 'com.docker.network.gateway': result.gateway } };
      },
    },
    'IpamDriver.ReleasePool': {
      spec: m['IpamDriver.ReleasePool'],
      // Pools are Calico's, not the network's: nothing to give back.
      handle: async (_body: ReleasePoolRequest) => ({}),
    },
    'IpamDriver.RequestAddress': {
      spec: m['IpamDriver.RequestAddress'],
      handle: async (body: RequestAddressRequest) => ({
        Address: await driver.requestAddress({ poolId: body.PoolID, address: body.Address ?? '', options: body.Options ?? {} }),
        Data: {},
      }),
    },
    'IpamDriver.ReleaseAddress': {
      spec: m['IpamDriver.ReleaseAddress'],
      handle: async (body: ReleaseAddressRequest) => {
        await driver.releaseAddress(body.Address);
        return {};
      },
    },
  };
}
