import {
  NETWORK_METHODS,
  CreateEndpointRequest,
  CreateNetworkRequest,
  EndpointRequest,
  ExternalConnectivityRequest,
  JoinRequest,
  NetworkRequest,
} from '../../plugin-spec/network.js';
import type { NetworkDriver } from '../services/network/network-driver.js';
import type { PublishedPorts } from '../services/network/published-ports.js';
import type { MethodHandler } from './docker-plugin.js';

/** A list of strings from Docker's options; anything else there is ignored. */
const stringList = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);

const empty = async (): Promise<Record<string, never>> => ({});

/** NetworkDriver.*: wire fields in, one driver call, wire fields out. */
export function networkMethods(driver: NetworkDriver, ports: PublishedPorts): Record<string, MethodHandler> {
  const m = NETWORK_METHODS;
  return {
    'NetworkDriver.GetCapabilities': { spec: m['NetworkDriver.GetCapabilities'], handle: async () => driver.capabilities() },
    'NetworkDriver.CreateNetwork': {
      spec: m['NetworkDriver.CreateNetwork'],
      handle: async (body: CreateNetworkRequest) => {
        await driver.createNetwork(body.NetworkID, body.Options ?? {}, body.IPv4Data ?? [], body.IPv6Data ?? []);
        return {};
      },
    },
    'NetworkDriver.DeleteNetwork': {
      spec: m['NetworkDriver.DeleteNetwork'],
      handle: async (body: NetworkRequest) => {
        await driver.deleteNetwork(body.NetworkID);
        return {};
      },
    },
    // Swarm only, which legacy plugins cannot join: nothing to allocate.
    'NetworkDriver.AllocateNetwork': { spec: m['NetworkDriver.AllocateNetwork'], handle: async () => ({ Options: {} }) },
    'NetworkDriver.FreeNetwork': { spec: m['NetworkDriver.FreeNetwork'], handle: empty },
    'NetworkDriver.CreateEndpoint': {
      spec: m['NetworkDriver.CreateEndpoint'],
      handle: async (body: CreateEndpointRequest) => {
        const result = await driver.createEndpoint({
          networkId: body.NetworkID,
          endpointId: body.EndpointID,
          address: body.Interface?.Address ?? '',
          addressIPv6: body.Interface?.AddressIPv6 ?? '',
          macAddress: body.Interface?.MacAddress ?? '',
          dnsServers: stringList(body.Options?.['com.docker.network.endpoint.dnsservers']),
        });
        return { Interface: result.macAddress ? { MacAddress: result.macAddress } : null };
      },
    },
    'NetworkDriver.DeleteEndpoint': {
      spec: m['NetworkDriver.DeleteEndpoint'],
      handle: async (body: EndpointRequest) => {
        await driver.deleteEndpoint(body.EndpointID);
        return {};
      },
    },
    'NetworkDriver.EndpointOperInfo': { spec: m['NetworkDriver.EndpointOperInfo'], handle: async () => ({ Value: {} }) },
    'NetworkDriver.Join': {
      spec: m['NetworkDriver.Join'],
      handle: async (body: JoinRequest) => {
        const r = await driver.join(body.EndpointID, body.SandboxKey);
        return {
          InterfaceName: { SrcName: r.srcName, DstPrefix: r.dstPrefix },
          Gateway: r.gateway,
          ...(r.gatewayIPv6 ? { GatewayIPv6: r.gatewayIPv6 } : {}),
          StaticRoutes: r.staticRoutes.map((s) => ({ Destination: s.destination, RouteType: s.routeType, NextHop: s.nextHop })),
          DisableGatewayService: true,
        };
      },
    },
    'NetworkDriver.Leave': {
      spec: m['NetworkDriver.Leave'],
      handle: async (body: EndpointRequest) => {
        await driver.leave(body.EndpointID);
        return {};
      },
    },
    'NetworkDriver.DiscoverNew': { spec: m['NetworkDriver.DiscoverNew'], handle: empty },
    'NetworkDriver.DiscoverDelete': { spec: m['NetworkDriver.DiscoverDelete'], handle: empty },
    'NetworkDriver.ProgramExternalConnectivity': {
      spec: m['NetworkDriver.ProgramExternalConnectivity'],
      handle: async (body: ExternalConnectivityRequest) => {
        await ports.program(body.EndpointID, body.Options ?? {});
        return {};
      },
    },
    'NetworkDriver.RevokeExternalConnectivity': {
      spec: m['NetworkDriver.RevokeExternalConnectivity'],
      handle: async (body: ExternalConnectivityRequest) => {
        await ports.revoke(body.EndpointID);
        return {};
      },
    },
  };
}
