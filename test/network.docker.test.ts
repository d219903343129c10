import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { workloadEndpointName } from '../src/domain/endpoint-model.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { parseIp } from '../src/domain/cidr.js';
import { DockerHost, dockerHostForSuite } from './helpers/docker-host.js';
import { until } from './helpers/cluster.js';
import type { EtcdContext } from './helpers/ipam.js';

let ctx: EtcdContext;
let endpoints: EtcdEndpointStore;
let host: DockerHost;
const NODE = 'dock-a';
const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];

interface ContainerNet {
  IPAddress: string;
  GlobalIPv6Address: string;
  MacAddress: string;
  EndpointID: string;
  NetworkID: string;
}

function inspectNet(name: string, network: string): ContainerNet {
  return JSON.parse(host.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, name])) as ContainerNet;
}

const vethOf = (endpointId: string): string => `cali${endpointId.slice(0, 11)}`;
const hostRoutes = (): string => host.onHost(['ip', 'route']).stdout;
const hostLinks = (): string => host.onHost(['ip', '-o', 'link']).stdout;

async function checkClean(): Promise<void> {
  expect((await new IpamReport(ctx.store).check()).problems).toEqual([]);
}

const suite = dockerHostForSuite(NODE, {
  pools: [{ cidr: '192.169.0.0/16', name: 'poolv4' }, { cidr: 'fd00:169::/64', name: 'poolv6' }],
  env: { CALICO_LIBNETWORK_LABEL_POLL_TIMEOUT: '5s' },
});
beforeAll(() => void ({ ctx, endpoints, host } = suite));

beforeEach(() => host.clear());

describe('docker network create (Calico upstream cases)', () => {
  it('refuses what Calico refuses, with its messages', () => {
    const cases: [string[], string][] = [
      [['network', 'create', 'bad1', '-d', 'calico'], 'Error response from daemon: NetworkDriver.CreateNetwork: Non-Calico IPAM driver is used'],
      [['network', 'create', 'bad2', ...CALICO, '--subnet=192.169.0.0/16', '--gateway', '192.169.0.1'], 'Error response from daemon: failed to allocate gateway (192.169.0.1): IpamDriver.RequestAddress: Calico IPAM does not support specifying a gateway.'],
      [['network', 'create', 'bad3', ...CALICO, '--subnet=192.169.0.0/24'], 'Error response from daemon: IpamDriver.RequestPool: The requested subnet must match the CIDR of a configured Calico IP Pool.'],
      [['network', 'create', 'bad4', '--internal', ...CALICO], 'Error response from daemon: NetworkDriver.CreateNetwork: Calico driver does not support the flag --internal.'],
      [['network', 'create', 'bad5', ...CALICO, '--ip-range', '192.169.1.0/24', '--subnet=192.169.0.0/16'], "Error response from daemon: IpamDriver.RequestPool: Calico IPAM does not support sub pool configuration on 'docker create network'. Calico IP Pools should be configured first and IP assignment is from those pre-configured pools."],
      [['network', 'create', 'bad6', ...CALICO, '--ipam-opt', 'REJECT'], 'Error response from daemon: IpamDriver.RequestPool: Arbitrary options are not supported'],
      [['network', 'create', 'bad7', ...CALICO, '--opt', 'REJECT'], 'NetworkDriver.CreateNetwork: Calico driver does not support the flag REJECT.'],
      [['network', 'create', 'bad8', ...CALICO, '--opt', 'REJECT', '--opt', 'REJECT2'], 'NetworkDriver.CreateNetwork: Calico driver does not support the flags REJECT, REJECT2.'],
    ];
    for (const [args, message] of cases) {
      const result = host.docker(args);
      expect(result.status, args.join(' ')).toBe(1);
      expect(result.stderr).toContain(message);
    }
  });

  it('creates plain, --subnet, --ipv6 and --ipam-driver calico networks, each with a profile named by the network', async () => {
    for (const [name, args] of [
      ['plain', ['network', 'create', 'plain', ...CALICO]],
      ['subnet', ['network', 'create', 'subnet', ...CALICO, '--subnet', '192.169.0.0/16']],
      ['six', ['network', 'create', '--ipv6', 'six', ...CALICO]],
      ['old-ipam', ['network', 'create', 'old-ipam', '--driver', 'calico', '--ipam-driver', 'calico']],
    ] as const) {
      const id = host.dockerOk([...args]);
      // Docker stores the network, and so its name, after CreateNetwork: the profile follows.
      await expect.poll(async () => (await endpoints.getProfile(name))?.value.metadata.annotations?.['libnetwork.projectcalico.org/networks'], { timeout: 8000 }).toBe(
        JSON.stringify({ [NODE]: id }),
      );
      const profile = (await endpoints.getProfile(name))!.value;
      expect(profile.spec.egress).toEqual([{ action: 'Allow' }]);
      expect(profile.spec.labelsToApply).toEqual({ [name]: '' });
      expect(profile.spec.ingress).toEqual([{ action: 'Allow', source: { selector: `has(${name})` } }]);
    }
    host.dockerOk(['network', 'rm', 'plain']);
    expect(await endpoints.getProfile('plain')).toBeNull();
  });
});

describe('docker run on a Calico network', () => {
  it('gives the container a /32 on cali0 behind 169.254.1.1, a veth, a host route, a blackhole and an endpoint', async () => {
    host.dockerOk(['network', 'create', 'net1', ...CALICO]);
    host.dockerOk(['run', '-d', '--net', 'net1', '--name', 'c1', 'busybox:local', 'sleep', '1000']);
    const net = inspectNet('c1', 'net1');
    expect(net.MacAddress).toBe('ee:ee:ee:ee:ee:ee');
    // The endpoint learns its container's name and ID from Docker, in the background.
    const wep = await until('the endpoint knows its container', async () => {
      const stored = (await endpoints.getEndpoint(workloadEndpointName(NODE, net.EndpointID)))!.value;
      return stored.spec.workload === 'c1' && stored;
    }, 5_000);
    expect(wep.spec).toMatchObject({
      orchestrator: 'libnetwork',
      workload: 'c1',
      containerID: host.dockerOk(['inspect', '--format', '{{.Id}}', 'c1']),
      node: NODE,
      endpoint: net.EndpointID,
      interfaceName: vethOf(net.EndpointID),
      ipNetworks: [`${net.IPAddress}/32`],
      mac: 'ee:ee:ee:ee:ee:ee',
      profiles: ['net1'],
    });
    expect(wep.metadata.annotations?.['libnetwork.projectcalico.org/ipam-handles']).toMatch(/^libnetwork\.[0-9a-f]{24}$/);
    expect(host.docker(['exec', 'c1', 'ip', 'route']).stdout.trim()).toBe('default via 169.254.1.1 dev cali0 \n169.254.1.1 dev cali0 scope link');
    const addr = host.dockerOk(['exec', 'c1', 'ip', 'addr', 'show', 'cali0']);
    expect(addr).toContain(`inet ${net.IPAddress}/32`);
    expect(addr).toContain('link/ether ee:ee:ee:ee:ee:ee');
    expect(hostLinks()).toContain(`${vethOf(net.EndpointID)}@`);
    expect(hostRoutes()).toMatch(new RegExp(`^${net.IPAddress.replace(/\./g, '\\.')} dev ${vethOf(net.EndpointID)} (proto boot )?scope link`, 'm'));
    expect(hostRoutes()).toMatch(/^blackhole 192\.169\.\d+\.\d+\/26 proto static/m);
    const veth = vethOf(net.EndpointID);
    for (const [path, value] of [[`net/ipv4/conf/${veth}/proxy_arp`, '1'], [`net/ipv4/neigh/${veth}/proxy_delay`, '0'], [`net/ipv4/conf/${veth}/forwarding`, '1'], [`net/ipv4/conf/${veth}/rp_filter`, '1'], [`net/ipv4/conf/${veth}/route_localnet`, '1'], ['net/ipv4/ip_forward', '1']]) {
      expect(host.onHost(['cat', `/proc/sys/${path}`]).stdout.trim(), path).toBe(value);
    }
    await checkClean();
  });

  it('honours --mac-address and --ip', async () => {
    host.dockerOk(['network', 'create', 'subnet-net', ...CALICO, '--subnet', '192.169.0.0/16']);
    host.dockerOk(['run', '-d', '--net', 'subnet-net', '--name', 'mac', '--mac-address', '00:22:33:44:55:66', 'busybox:local', 'sleep', '1000']);
    const mac = inspectNet('mac', 'subnet-net');
    expect(mac.MacAddress).toBe('00:22:33:44:55:66');
    expect(host.dockerOk(['exec', 'mac', 'ip', 'addr', 'show', 'cali0'])).toContain('link/ether 00:22:33:44:55:66');
    expect((await endpoints.getEndpoint(workloadEndpointName(NODE, mac.EndpointID)))!.value.spec.mac).toBe('00:22:33:44:55:66');

    host.dockerOk(['run', '-d', '--net', 'subnet-net', '--name', 'fixed', '--ip', '192.169.50.51', 'busybox:local', 'sleep', '1000']);
    expect(inspectNet('fixed', 'subnet-net').IPAddress).toBe('192.169.50.51');
    expect(host.dockerOk(['exec', 'fixed', 'ip', 'addr', 'show', 'cali0'])).toContain('inet 192.169.50.51/32');
    expect(host.docker(['exec', 'fixed', 'ip', 'route']).stdout.trim()).toBe('default via 169.254.1.1 dev cali0 \n169.254.1.1 dev cali0 scope link');
    const second = host.docker(['run', '-d', '--net', 'subnet-net', '--name', 'fixed2', '--ip', '192.169.50.51', 'busybox:local', 'sleep', '1000']);
    expect(second.status).not.toBe(0);
    expect(second.stderr).toMatch(/Address already assigned in block/);
    host.docker(['rm', '-f', 'fixed2']);
    await checkClean();
  });

  it('gives an IPv6 network a /128 and an IPv6 default route through the host veth', async () => {
    host.dockerOk(['network', 'create', '--ipv6', 'six', ...CALICO]);
    host.dockerOk(['run', '-d', '--net', 'six', '--name', 'v6', 'busybox:local', 'sleep', '1000']);
    const net = inspectNet('v6', 'six');
    expect(net.GlobalIPv6Address).toMatch(/^fd00:169::/);
    expect(host.dockerOk(['exec', 'v6', 'ip', '-6', 'addr', 'show', 'cali0'])).toContain(`inet6 ${net.GlobalIPv6Address}/128`);
    expect(host.dockerOk(['exec', 'v6', 'ip', '-6', 'route'])).toMatch(/default via fe80::[0-9a-f:]+ dev cali0/);
    expect(host.docker(['exec', 'v6', 'ip', 'route']).stdout.trim()).toBe('default via 169.254.1.1 dev cali0 \n169.254.1.1 dev cali0 scope link');
    expect(host.onHost(['ip', '-6', 'route']).stdout).toContain(`${net.GlobalIPv6Address} dev ${vethOf(net.EndpointID)}`);
    const wep = (await endpoints.getEndpoint(workloadEndpointName(NODE, net.EndpointID)))!.value;
    expect(wep.spec.ipNetworks).toEqual([`${net.IPAddress}/32`, `${net.GlobalIPv6Address}/128`]);
    // The container reaches the host over IPv6 through the link-local gateway.
    expect(host.docker(['exec', 'v6', 'ping', '-6', '-c', '1', '-W', '3', net.GlobalIPv6Address]).status).toBe(0);
  });

  it('lets two containers on a network ping each other and talk TCP under a FORWARD policy of DROP; the host reaches them', () => {
    // Docker sets FORWARD's policy to DROP only when it turns forwarding on itself: set it here, so
    // container-to-container traffic (forwarded by the host) is shown to pass our chain either way.
    const policy = /^-P FORWARD (\w+)$/m.exec(host.onHost(['iptables', '-S', 'FORWARD']).stdout)?.[1] ?? 'ACCEPT';
    expect(host.onHost(['iptables', '-P', 'FORWARD', 'DROP']).status).toBe(0);
    try {
      host.dockerOk(['network', 'create', 'talk', ...CALICO]);
      host.dockerOk(['run', '-d', '--net', 'talk', '--name', 'server', 'busybox:local', 'sh', '-c', 'while true; do echo hello-from-server | nc -l -p 8080; done']);
      host.dockerOk(['run', '-d', '--net', 'talk', '--name', 'client', 'busybox:local', 'sleep', '1000']);
      const server = inspectNet('server', 'talk').IPAddress;
      const client = inspectNet('client', 'talk').IPAddress;
      expect(host.docker(['exec', 'client', 'ping', '-c', '2', '-W', '3', server]).status).toBe(0);
      expect(host.docker(['exec', 'server', 'ping', '-c', '2', '-W', '3', client]).status).toBe(0);
      expect(host.docker(['exec', 'client', 'sh', '-c', `nc ${server} 8080 </dev/null`]).stdout).toContain('hello-from-server');
      expect(host.onHost(['busybox', 'ping', '-c', '1', '-W', '3', server]).status).toBe(0);
      expect(host.onHost(['sh', '-c', `busybox nc -w 3 ${server} 8080 </dev/null`]).stdout).toContain('hello-from-server');
      expect(host.onHost(['iptables', '-S', 'FORWARD']).stdout).toMatch(/-P FORWARD DROP[\s\S]*-A FORWARD -j cali-FORWARD/);
    } finally {
      host.onHost(['iptables', '-P', 'FORWARD', policy]);
    }
  });

  it('docker rm leaves no veth, route, endpoint or address; network rm leaves no profile', async () => {
    host.dockerOk(['network', 'create', 'gone', ...CALICO]);
    host.dockerOk(['run', '-d', '--net', 'gone', '--name', 'tmp', 'busybox:local', 'sleep', '1000']);
    const net = inspectNet('tmp', 'gone');
    host.dockerOk(['rm', '-f', 'tmp']);
    await expect.poll(hostLinks, { timeout: 5000 }).not.toContain(vethOf(net.EndpointID));
    expect(hostRoutes()).not.toContain(`${net.IPAddress} dev`);
    expect(await endpoints.getEndpoint(workloadEndpointName(NODE, net.EndpointID))).toBeNull();
    // DeleteEndpoint frees the address behind its answer.
    await expect.poll(async () => (await new IpamReport(ctx.store).address(parseIp(net.IPAddress))).allocated, { timeout: 2000 }).toBe(false);
    host.dockerOk(['network', 'rm', 'gone']);
    expect(await endpoints.getProfile('gone')).toBeNull();
    // Nothing of any earlier container is left either, once Docker has finished its asynchronous clean-up.
    const all = host.docker(['ps', '-aq']).stdout.split('\n').filter(Boolean);
    if (all.length) host.dockerOk(['rm', '-f', ...all]);
    await expect.poll(hostLinks, { timeout: 5000 }).not.toMatch(/: cali[0-9a-f]{11}@/);
    await expect.poll(hostRoutes, { timeout: 5000 }).not.toMatch(/^\d+\.\d+\.\d+\.\d+ dev cali/m);
    await checkClean();
  });

  it('containers started and removed all at once get distinct addresses and leave nothing behind', async () => {
    host.dockerOk(['network', 'create', 'busy', ...CALICO]);
    const runs = await Promise.all(
      Array.from({ length: 12 }, () => host.dockerAsync(['run', '--rm', '--net', 'busy', 'busybox:local', 'ip', '-4', '-o', 'addr', 'show', 'cali0'])),
    );
    expect(runs.map((r) => r.status), runs.map((r) => r.stderr).join('')).toEqual(Array(12).fill(0));
    const addresses = runs.map((r) => /inet (\S+)\/32/.exec(r.stdout)?.[1]);
    expect(new Set(addresses).size).toBe(12);
    await expect.poll(hostLinks, { timeout: 5000 }).not.toMatch(/: cali[0-9a-f]{11}@/);
    expect(hostRoutes()).not.toMatch(/^\d+\.\d+\.\d+\.\d+ dev cali/m);
    for (const address of addresses) {
      await expect.poll(async () => (await new IpamReport(ctx.store).address(parseIp(address!))).allocated, { timeout: 2000 }).toBe(false);
    }
    expect((await endpoints.listEndpoints()).filter((e) => e.value.spec.profiles.includes('busy'))).toEqual([]);
    await checkClean();
  });

  it('connects a running container to a second Calico network and disconnects it', async () => {
    host.dockerOk(['network', 'create', 'first', ...CALICO]);
    host.dockerOk(['network', 'create', 'second', ...CALICO]);
    host.dockerOk(['run', '-d', '--net', 'first', '--name', 'multi', 'busybox:local', 'sleep', '1000']);
    host.dockerOk(['run', '-d', '--net', 'second', '--name', 'peer', 'busybox:local', 'sleep', '1000']);
    host.dockerOk(['network', 'connect', 'second', 'multi']);
    const second = inspectNet('multi', 'second');
    expect(host.dockerOk(['exec', 'multi', 'ip', 'addr'])).toContain(`inet ${second.IPAddress}/32`);
    expect(host.docker(['exec', 'peer', 'ping', '-c', '1', '-W', '3', second.IPAddress]).status).toBe(0);
    // From its second-network address, as a member of that network (its default source is the first network's).
    expect(host.docker(['exec', 'multi', 'ping', '-c', '1', '-W', '3', '-I', second.IPAddress, inspectNet('peer', 'second').IPAddress]).status).toBe(0);
    host.dockerOk(['network', 'disconnect', 'second', 'multi']);
    await expect.poll(hostLinks, { timeout: 5000 }).not.toContain(vethOf(second.EndpointID));
    expect(hostRoutes()).not.toContain(`${second.IPAddress} dev`);
    // After the disconnect, its first network is all it has: still routed, and the second network cannot reach it.
    expect(hostRoutes()).toContain(`${inspectNet('multi', 'first').IPAddress} dev`);
    expect(host.docker(['exec', 'peer', 'ping', '-c', '1', '-W', '2', inspectNet('multi', 'first').IPAddress]).status).not.toBe(0);
  });
});

describe('daemon options', () => {
  it('CALICO_LIBNETWORK_IFPREFIX names the container interface; labels are copied with LABEL_ENDPOINTS', async () => {
    await host.stopDaemon();
    host.daemonEnv.CALICO_LIBNETWORK_IFPREFIX = 'test';
    host.daemonEnv.CALICO_LIBNETWORK_LABEL_ENDPOINTS = 'true';
    host.daemonEnv.CALICO_LIBNETWORK_VETH_MTU = '1400';
    try {
      await host.startDaemon();
      host.dockerOk(['network', 'create', 'prefixed', ...CALICO]);
      host.dockerOk(['run', '-d', '--net', 'prefixed', '--name', 'pref', '--label', 'not=expected', '--label', 'org.projectcalico.label.foo=bar', '--label', 'org.projectcalico.label.baz=quux', 'busybox:local', 'sleep', '1000']);
      expect(host.docker(['exec', 'pref', 'ip', 'route']).stdout.trim()).toBe('default via 169.254.1.1 dev test0 \n169.254.1.1 dev test0 scope link');
      const net = inspectNet('pref', 'prefixed');
      expect(hostLinks()).toMatch(new RegExp(`${vethOf(net.EndpointID)}@\\S+ <[^>]*> mtu 1400 `));
      expect(host.dockerOk(['exec', 'pref', 'ip', 'link', 'show', 'test0'])).toContain('mtu 1400');
      await expect
        .poll(async () => (await endpoints.getEndpoint(workloadEndpointName(NODE, net.EndpointID)))?.value.metadata.labels, { timeout: 8000 })
        .toEqual({ 'projectcalico.org/namespace': 'libnetwork', 'projectcalico.org/orchestrator': 'libnetwork', foo: 'bar', baz: 'quux' });
    } finally {
      await host.stopDaemon();
      delete host.daemonEnv.CALICO_LIBNETWORK_IFPREFIX;
      delete host.daemonEnv.CALICO_LIBNETWORK_LABEL_ENDPOINTS;
      delete host.daemonEnv.CALICO_LIBNETWORK_VETH_MTU;
      await host.startDaemon();
    }
  });

  it('without LABEL_ENDPOINTS no labels are copied; CREATE_PROFILES=false creates no profile', async () => {
    host.dockerOk(['network', 'create', 'nolabels', ...CALICO]);
    host.dockerOk(['run', '-d', '--net', 'nolabels', '--name', 'nolab', '--label', 'org.projectcalico.label.foo=bar', 'busybox:local', 'sleep', '1000']);
    await new Promise((r) => setTimeout(r, 1000));
    const net = inspectNet('nolab', 'nolabels');
    expect((await endpoints.getEndpoint(workloadEndpointName(NODE, net.EndpointID)))!.value.metadata.labels).not.toHaveProperty('foo');

    await host.stopDaemon();
    host.daemonEnv.CALICO_LIBNETWORK_CREATE_PROFILES = 'false';
    try {
      await host.startDaemon();
      host.dockerOk(['network', 'create', 'noprofile', ...CALICO]);
      host.dockerOk(['run', '-d', '--net', 'noprofile', '--name', 'noprof', 'busybox:local', 'sleep', '1000']);
      expect(await endpoints.getProfile('noprofile')).toBeNull();
      expect((await endpoints.getEndpoint(workloadEndpointName(NODE, inspectNet('noprof', 'noprofile').EndpointID)))!.value.spec.profiles).toEqual([]);
    } finally {
      await host.stopDaemon();
      delete host.daemonEnv.CALICO_LIBNETWORK_CREATE_PROFILES;
      await host.startDaemon();
    }
  });
});

describe('daemon restarts under running containers', () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`after ${signal} and a restart, containers keep talking and a new one joins`, async () => {
      host.dockerOk(['network', 'create', `live-${signal}`, ...CALICO]);
      host.dockerOk(['run', '-d', '--net', `live-${signal}`, '--name', 'first-c', 'busybox:local', 'sleep', '1000']);
      host.dockerOk(['run', '-d', '--net', `live-${signal}`, '--name', 'second-c', 'busybox:local', 'sleep', '1000']);
      const b = inspectNet('second-c', `live-${signal}`).IPAddress;
      const routesBefore = hostRoutes();
      await host.stopDaemon(signal);
      expect(host.docker(['exec', 'first-c', 'ping', '-c', '1', '-W', '3', b]).status).toBe(0);
      // While the daemon is down, a veth and a route of an endpoint that no longer exists appear.
      host.ip('link add cali0dead00000 type veth peer name temp0dead00000');
      host.ip('link set cali0dead00000 up');
      host.ip('route add 192.169.254.254/32 dev cali0dead00000');
      await host.startDaemon();
      expect(hostRoutes()).toBe(routesBefore);
      expect(hostLinks()).not.toContain('cali0dead00000');
      expect(host.docker(['exec', 'first-c', 'ping', '-c', '1', '-W', '3', b]).status).toBe(0);
      host.dockerOk(['run', '-d', '--net', `live-${signal}`, '--name', 'third-c', 'busybox:local', 'sleep', '1000']);
      expect(host.docker(['exec', 'third-c', 'ping', '-c', '1', '-W', '3', b]).status).toBe(0);
      await checkClean();
    });
  }
});
