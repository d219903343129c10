import { Type, type Static } from '@sinclair/typebox';
import { EmptyResponse } from './common.js';

/** NetworkDriver.* (moby libnetwork `drivers/remote/api/api.go`, `docs/remote.md`). */

const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+$' });
const AnyMap = Type.Record(Type.String(), Type.Unknown());
const OptionalAnyMap = Type.Optional(Type.Union([AnyMap, Type.Null()]));

export const IpamData = Type.Object({
  AddressSpace: Type.Optional(Type.String()),
  Pool: Type.Optional(Type.String()),
  Gateway: Type.Optional(Type.String()),
  AuxAddresses: Type.Optional(Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()])),
});

export const CapabilitiesResponse = Type.Object({
  Scope: Type.Union([Type.Literal('local'), Type.Literal('global')]),
  ConnectivityScope: Type.Union([Type.Literal('local'), Type.Literal('global')]),
});

export const CreateNetworkRequest = Type.Object({
  NetworkID: Id,
  Options: OptionalAnyMap,
  IPv4Data: Type.Optional(Type.Union([Type.Array(IpamData), Type.Null()])),
  IPv6Data: Type.Optional(Type.Union([Type.Array(IpamData), Type.Null()])),
});
export type CreateNetworkRequest = Static<typeof CreateNetworkRequest>;

export const NetworkRequest = Type.Object({ NetworkID: Id });
export type NetworkRequest = Static<typeof NetworkRequest>;

export const EndpointRequest = Type.Object({ NetworkID: Id, EndpointID: Id });
export type EndpointRequest = Static<typeof EndpointRequest>;

export const EndpointInterface = Type.Object({
  Address: Type.Optional(Type.String()),
  AddressIPv6: Type.Optional(Type.String()),
  MacAddress: Type.Optional(Type.String()),
});

export const CreateEndpointRequest = Type.Object({
  NetworkID: Id,
  EndpointID: Id,
  Interface: Type.Optional(Type.Union([EndpointInterface, Type.Null()])),
  Options: OptionalAnyMap,
});
export type CreateEndpointRequest = Static<typeof CreateEndpointRequest>;

export const CreateEndpointResponse = Type.Object({
  Interface: Type.Union([Type.Object({ MacAddress: Type.String() }), Type.Null()]),
});

export const EndpointOperInfoResponse = Type.Object({ Value: Type.Record(Type.String(), Type.Unknown()) });

export const JoinRequest = Type.Object({
  NetworkID: Id,
  EndpointID: Id,
  SandboxKey: Type.String({ minLength: 1 }),
  Options: OptionalAnyMap,
});
export type JoinRequest = Static<typeof JoinRequest>;

export const StaticRoute = Type.Object({
  Destination: Type.String(),
  RouteType: Type.Union([Type.Literal(0), Type.Literal(1)]),
  NextHop: Type.String(),
});

export const JoinResponse = Type.Object({
  InterfaceName: Type.Object({ SrcName: Type.String(), DstPrefix: Type.String() }),
  Gateway: Type.String(),
  GatewayIPv6: Type.Optional(Type.String()),
  StaticRoutes: Type.Array(StaticRoute),
  DisableGatewayService: Type.Boolean(),
});

export const ExternalConnectivityRequest = Type.Object({ NetworkID: Id, EndpointID: Id, Options: OptionalAnyMap });
export type ExternalConnectivityRequest = Static<typeof ExternalConnectivityRequest>;

export const AllocateNetworkRequest = Type.Object({
  NetworkID: Id,
  Options: OptionalAnyMap,
  IPv4Data: Type.Optional(Type.Union([Type.Array(IpamData), Type.Null()])),
  IPv6Data: Type.Optional(Type.Union([Type.Array(IpamData), Type.Null()])),
});
export const AllocateNetworkResponse = Type.Object({ Options: Type.Record(Type.String(), Type.String()) });

export const DiscoveryRequest = Type.Object({ DiscoveryType: Type.Integer(), DiscoveryData: Type.Optional(Type.Unknown()) });

export const NETWORK_METHODS = {
  'NetworkDriver.GetCapabilities': { request: undefined, response: CapabilitiesResponse },
  'NetworkDriver.CreateNetwork': { request: CreateNetworkRequest, response: EmptyResponse },
  'NetworkDriver.DeleteNetwork': { request: NetworkRequest, response: EmptyResponse },
  'NetworkDriver.AllocateNetwork': { request: AllocateNetworkRequest, response: AllocateNetworkResponse },
  'NetworkDriver.FreeNetwork': { request: NetworkRequest, response: EmptyResponse },
  'NetworkDriver.CreateEndpoint': { request: CreateEndpointRequest, response: CreateEndpointResponse },
  'NetworkDriver.DeleteEndpoint': { request: EndpointRequest, response: EmptyResponse },
  'NetworkDriver.EndpointOperInfo': { request: EndpointRequest, response: EndpointOperInfoResponse },
  'NetworkDriver.Join': { request: JoinRequest, response: JoinResponse },
  'NetworkDriver.Leave': { request: EndpointRequest, response: EmptyResponse },
  'NetworkDriver.DiscoverNew': { request: DiscoveryRequest, response: EmptyResponse },
  'NetworkDriver.DiscoverDelete': { request: DiscoveryRequest, response: EmptyResponse },
  'NetworkDriver.ProgramExternalConnectivity': { request: ExternalConnectivityRequest, response: EmptyResponse },
  'NetworkDriver.RevokeExternalConnectivity': { request: ExternalConnectivityRequest, response: EmptyResponse },
} as const;
