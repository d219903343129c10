// The floor of Docker's remote-plugin path, for bench/docker-run: a network + IPAM plugin that keeps
// nothing (no etcd, no policy, no routes) and does only what Docker needs to run a container — an
// address from a counter and a veth made through the same netlink adapter. Run inside the test host's
// namespaces; listens on /run/docker/plugins/noop.sock.
import { createServer } from 'node:http';
import { mkdirSync, rmSync } from 'node:fs';
import { NetlinkDataplane } from '../dist/src/adapters/dataplane/netlink/netlink-dataplane.js';
import { CommandHelper } from '../dist/src/adapters/dataplane/command-helper.js';

const dataplane = new NetlinkDataplane(new CommandHelper().run);
let next = 1;
const handlers = {
  'Plugin.Activate': () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }),
  'NetworkDriver.GetCapabilities': () => ({ Scope: 'local', ConnectivityScope: 'local' }),
  'IpamDriver.GetCapabilities': () => ({ RequiresMACAddress: false }),
  'IpamDriver.GetDefaultAddressSpaces': () => ({ LocalDefaultAddressSpace: 'noop', GlobalDefaultAddressSpace: 'noop' }),
  'IpamDriver.RequestPool': () => ({ PoolID: 'noop', Pool: '0.0.0.0/0', Data: { 'com.docker.network.gateway': '0.0.0.0/0' } }),
  'IpamDriver.RequestAddress': () => {
    const n = next++;
    return { Address: `10.250.${(n >> 8) & 255}.${n & 255}/32`, Data: {} };
  },
  'NetworkDriver.CreateEndpoint': () => ({ Interface: { MacAddress: 'ee:ee:ee:ee:ee:ee' } }),
  'NetworkDriver.Join': async (body) => {
    const id = body.EndpointID.slice(0, 11);
    await dataplane.createVeth(`noop${id}`, `tmpn${id}`);
    return { InterfaceName: { SrcName: `tmpn${id}`, DstPrefix: 'eth' }, Gateway: '169.254.1.1', StaticRoutes: [{ Destination: '169.254.1.1/32', RouteType: 1, NextHop: '' }], DisableGatewayService: true };
  },
  'NetworkDriver.Leave': (body) => {
    void dataplane.deleteLink(`noop${body.EndpointID.slice(0, 11)}`).catch(() => undefined);
    return {};
  },
  'NetworkDriver.EndpointOperInfo': () => ({ Value: {} }),
};
const server = createServer((req, res) => {
  let text = '';
  req.on('data', (c) => (text += c));
  req.on('end', async () => {
    const handler = handlers[req.url.slice(1)] ?? (() => ({}));
    try {
      const body = text.trim() ? JSON.parse(text) : {};
      res.end(JSON.stringify(await handler(body)));
    } catch (error) {
      res.statusCode = 500;
      res.end(JSON.stringify({ Err: String(error.message) }));
    }
  });
});
mkdirSync('/run/docker/plugins', { recursive: true });
rmSync('/run/docker/plugins/noop.sock', { force: true });
server.listen('/run/docker/plugins/noop.sock', () => process.stdout.write('noop plugin listening\n'));
