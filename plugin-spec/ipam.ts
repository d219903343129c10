import { Type, type Static } from '@sinclair/typebox';
import { EmptyResponse, OptionalStringMap, StringMap } from './common.js';

/** IpamDriver.* (moby libnetwork `ipams/remote/api/api.go`, `docs/ipam.md`). */

export const IpamCapabilitiesResponse = Type.Object({
  RequiresMACAddress: Type.Boolean(),
  RequiresRequestReplay: Type.Boolean(),
});

export const AddressSpacesResponse = Type.Object({
  LocalDefaultAddressSpace: Type.String(),
  GlobalDefaultAddressSpace: Type.String(),
});

export const RequestPoolRequest = Type.Object({
  AddressSpace: Type.Optional(Type.String()),
  Pool: Type.Optional(Type.String()),
  SubPool: Type.Optional(Type.String()),
  Options: Type.Optional(OptionalStringMap),
  V6: Type.Optional(Type.Boolean()),
});
export type RequestPoolRequest = Static<typeof RequestPoolRequest>;

export const RequestPoolResponse = Type.Object({
  PoolID: Type.String(),
  Pool: Type.String(),
  Data: StringMap,
});
export type RequestPoolResponse = Static<typeof RequestPoolResponse>;

export const ReleasePoolRequest = Type.Object({ PoolID: Type.String() });
export type ReleasePoolRequest = Static<typeof ReleasePoolRequest>;

export const RequestAddressRequest = Type.Object({
  PoolID: Type.String(),
  Address: Type.Optional(Type.String()),
  Options: Type.Optional(OptionalStringMap),
});
export type RequestAddressRequest = Static<typeof RequestAddressRequest>;

export const RequestAddressResponse = Type.Object({
  Address: Type.String(),
  Data: StringMap,
});
export type RequestAddressResponse = Static<typeof RequestAddressResponse>;

export const ReleaseAddressRequest = Type.Object({ PoolID: Type.String(), Address: Type.String() });
export type ReleaseAddressRequest = Static<typeof ReleaseAddressRequest>;

export const ReleasePoolResponse = EmptyResponse;
export const ReleaseAddressResponse = EmptyResponse;

/** Every IpamDriver method: path, request schema (undefined when Docker sends an empty body), response schema. */
export const IPAM_METHODS = {
  'IpamDriver.GetCapabilities': { request: undefined, response: IpamCapabilitiesResponse },
  'IpamDriver.GetDefaultAddressSpaces': { request: undefined, response: AddressSpacesResponse },
  'IpamDriver.RequestPool': { request: RequestPoolRequest, response: RequestPoolResponse },
  'IpamDriver.ReleasePool': { request: ReleasePoolRequest, response: ReleasePoolResponse },
  'IpamDriver.RequestAddress': { request: RequestAddressRequest, response: RequestAddressResponse },
  'IpamDriver.ReleaseAddress': { request: ReleaseAddressRequest, response: ReleaseAddressResponse },
} as const;
