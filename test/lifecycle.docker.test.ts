import { beforeAll, describe, expect, it } from 'vitest';
import { workloadEndpointName, WorkloadEndpoint } from '../src/domain/endpoint-model.js';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { parseIp } from '../src/domain/cidr.js';
import { IpamReport } from '../src/services/ipam/ipam-report.js';
import { DockerHost, dockerHostForSuite } from './helpers/docker-host.js';
import { post } from './helpers/daemon.js';
import type { EtcdContext } from './helpers/ipam.js';

const NODE = 'dock-gc';
let ctx: EtcdContext;
let endpoints: EtcdEndpointStore;
let host: DockerHost;

const suite = dockerHostForSuite(NODE, {
  pools: [{ cidr: '192.170.0.0/16', name: 'gc-pool' }],
  env: { CALICO_LIBNETWORK_GC_INTERVAL: '500ms', CALICO_LIBNETWORK_GC_GRACE: '2s' },
});
beforeAll(() => void ({ ctx, endpoints, host } = suite));

const allocated = async (ip: string): Promise<boolean> => (await new IpamReport(ctx.store).address(parseIp(ip))).allocated;

describe('nothing leaks for good', () => {
  it('releases an address no endpoint took (crash between RequestAddress and CreateEndpoint) after the grace period', async () => {
    const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
    expect(reply.status).toBe(200);
    const ip = reply.body.Address.split('/')[0];
    expect(await allocated(ip)).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    // Still inside the grace period: Docker may be about to call CreateEndpoint.
    expect(await allocated(ip)).toBe(true);
    await expect.poll(() => allocated(ip), { timeout: 8000, interval: 250 }).toBe(false);
  });

  it('removes an endpoint Docker no longer knows (Docker restarted while the daemon was down), and keeps live ones', async () => {
    host.dockerOk(['network', 'create', 'keep', '--driver', 'calico', '--ipam-driver', 'calico-ipam']);
    host.dockerOk(['run', '-d', '--net', 'keep', '--name', 'alive', 'busybox:local', 'sleep', '1000']);
    const live = JSON.parse(host.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.keep}}', 'alive']));
    const address = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
    const ghostId = 'ab'.repeat(32);
    const ghost: WorkloadEndpoint = {
      kind: 'WorkloadEndpoint',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name: workloadEndpointName(NODE, ghostId), namespace: 'libnetwork', labels: {}, creationTimestamp: new Date(Date.now() - 60_000).toISOString() },
      spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node: NODE, endpoint: ghostId, interfaceName: `cali${ghostId.slice(0, 11)}`, ipNetworks: [address.body.Address], mac: 'ee:ee:ee:ee:ee:ee', profiles: [] },
    };
    expect(await endpoints.createEndpoint(ghost)).toBe(true);
    await expect.poll(async () => endpoints.getEndpoint(ghost.metadata.name), { timeout: 8000, interval: 250 }).toBeNull();
    await expect.poll(() => allocated(address.body.Address.split('/')[0]), { timeout: 8000, interval: 250 }).toBe(false);
    expect(await endpoints.getEndpoint(workloadEndpointName(NODE, live.EndpointID))).not.toBeNull();
    expect(await allocated(live.IPAddress)).toBe(true);
    expect((await new IpamReport(ctx.store).check()).problems).toEqual([]);
  });

  it('a Join that fails half way leaves no veth behind and says it rolled back', async () => {
    // IPv6 off in this host: the /128 route of an IPv6 endpoint cannot be added after the veth exists.
    host.onHost(['sysctl', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
    try {
      const networkId = host.dockerOk(['network', 'create', 'rollback', '--driver', 'calico', '--ipam-driver', 'calico-ipam']);
      const endpointId = 'cd'.repeat(32);
      const created = await post(host.pluginSocket('calico'), 'NetworkDriver.CreateEndpoint', {
        NetworkID: networkId,
        EndpointID: endpointId,
        Interface: { Address: '192.170.99.9/32', AddressIPv6: 'fd00:170::9/128', MacAddress: '' },
        Options: {},
      });
      expect(created.status, created.text).toBe(200);
      const joined = await post(host.pluginSocket('calico'), 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/test', Options: {} });
      expect(joined.status).toBe(500);
      expect(joined.body.Err).toMatch(/add route failed: \w+ .*; rolled back$/);
      expect(host.onHost(['ip', '-o', 'link']).stdout).not.toContain(`cali${endpointId.slice(0, 11)}`);
      expect(host.onHost(['ip', 'route']).stdout).not.toContain('192.170.99.9');
      const deleted = await post(host.pluginSocket('calico'), 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
      expect(deleted.status).toBe(200);
      expect(await endpoints.getEndpoint(workloadEndpointName(NODE, endpointId))).toBeNull();
    } finally {
      host.onHost(['sysctl', '-w', 'net.ipv6.conf.all.disable_ipv6=0']);
    }
  });

  it('DeleteEndpoint frees the endpoint\'s address; Docker\'s ReleaseAddress after it never frees the address\'s next owner', async () => {
    const networkId = host.dockerOk(['network', 'create', 'early-release', '--driver', 'calico', '--ipam-driver', 'calico-ipam']);
    const ipam = host.pluginSocket('calico-ipam');
    const driver = host.pluginSocket('calico');
    const request = () => post(ipam, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '192.170.77.7', Options: {} });
    const release = () => post(ipam, 'IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: '192.170.77.7' });
    expect((await request()).status).toBe(200);
    const endpointId = 'ef'.repeat(32);
    const created = await post(driver, 'NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: '192.170.77.7/32', MacAddress: '' }, Options: {} });
    expect(created.status, created.text).toBe(200);
    expect((await post(driver, 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId })).status).toBe(200);
    expect(await endpoints.getEndpoint(workloadEndpointName(NODE, endpointId))).toBeNull();
    await expect.poll(() => allocated('192.170.77.7'), { timeout: 2000, interval: 20 }).toBe(false);
    // Another container takes the address before Docker's ReleaseAddress for the first one arrives.
    expect((await request()).status).toBe(200);
    expect((await release()).status).toBe(200);
    expect(await allocated('192.170.77.7')).toBe(true);
    // The new owner's own release (its endpoint never came) frees it.
    expect((await release()).status).toBe(200);
    expect(await allocated('192.170.77.7')).toBe(false);
    expect((await new IpamReport(ctx.store).check()).problems).toEqual([]);
  });

  it('a CreateEndpoint whose write fails is reported by Join, which leaves no veth behind', async () => {
    const networkId = host.dockerOk(['network', 'create', 'write-fails', '--driver', 'calico', '--ipam-driver', 'calico-ipam']);
    const endpointId = '12'.repeat(32);
    const name = workloadEndpointName(NODE, endpointId);
    const other: WorkloadEndpoint = {
      kind: 'WorkloadEndpoint',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name, namespace: 'libnetwork', labels: {}, creationTimestamp: new Date().toISOString() },
      spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node: NODE, endpoint: endpointId, interfaceName: `cali${endpointId.slice(0, 11)}`, ipNetworks: ['192.170.88.1/32'], mac: 'ee:ee:ee:ee:ee:ee', profiles: [] },
    };
    expect(await endpoints.createEndpoint(other)).toBe(true);
    const driver = host.pluginSocket('calico');
    const created = await post(driver, 'NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: '192.170.88.2/32', MacAddress: '' }, Options: {} });
    expect(created.status, created.text).toBe(200);
    const joined = await post(driver, 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/test', Options: {} });
    expect(joined.status).toBe(500);
    expect(joined.body.Err).toBe(`Workload endpoints creation error: endpoint ${name} exists with other addresses; rolled back`);
    expect(host.onHost(['ip', '-o', 'link']).stdout).not.toContain(`cali${endpointId.slice(0, 11)}`);
    expect(host.onHost(['ip', 'route']).stdout).not.toContain('192.170.88.2');
    expect((await post(driver, 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId })).status).toBe(200);
  });

  it('a repeated Join (Docker retrying a lost answer) starts over with one veth', async () => {
    const networkId = host.dockerOk(['network', 'create', 'rejoin', '--driver', 'calico', '--ipam-driver', 'calico-ipam']);
    const endpointId = '34'.repeat(32);
    const driver = host.pluginSocket('calico');
    const created = await post(driver, 'NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: '192.170.66.6/32', MacAddress: '' }, Options: {} });
    expect(created.status, created.text).toBe(200);
    const join = { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/rejoin', Options: {} };
    for (let attempt = 0; attempt < 2; attempt++) {
      const joined = await post(driver, 'NetworkDriver.Join', join);
      expect(joined.status, joined.text).toBe(200);
    }
    const veth = `cali${endpointId.slice(0, 11)}`;
    const links = host.onHost(['ip', '-o', 'link']).stdout.split('\n');
    expect(links.filter((l) => l.includes(`: ${veth}@`))).toHaveLength(1);
    expect(links.filter((l) => l.includes(`: temp${endpointId.slice(0, 11)}@`))).toHaveLength(1);
    expect(host.onHost(['ip', 'route']).stdout).toContain(`192.170.66.6 dev ${veth} scope link`);
    expect((await post(driver, 'NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId })).status).toBe(200);
    expect((await post(driver, 'NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId })).status).toBe(200);
    await expect.poll(() => host.onHost(['ip', '-o', 'link']).stdout, { timeout: 5000 }).not.toContain(veth);
  });

  it('answers malformed and hostile NetworkDriver requests with Err and keeps serving', async () => {
    const socket = host.pluginSocket('calico');
    const cases: [string, string, RegExp][] = [
      ['NetworkDriver.CreateEndpoint', '{"NetworkID":"x"}', /^invalid NetworkDriver\.CreateEndpoint request: body must have required property 'EndpointID'/],
      ['NetworkDriver.Join', '{"NetworkID":"../../etc","EndpointID":"x","SandboxKey":"k"}', /^invalid NetworkDriver\.Join request: body\/NetworkID must match pattern/],
      ['NetworkDriver.Join', '{"NetworkID":"n1","EndpointID":"e1","SandboxKey":"k"}', /^Endpoint e1 not found/],
      ['NetworkDriver.CreateEndpoint', '{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"","AddressIPv6":"","MacAddress":""}}', /^No address assigned for endpoint$/],
      ['NetworkDriver.CreateEndpoint', '{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"nope","MacAddress":""}}', /^Parsing nope as CIDR failed$/],
      ['NetworkDriver.CreateEndpoint', '{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"192.170.1.1/32","MacAddress":"zz"}}', /^Error parsing MAC address: zz$/],
      ['NetworkDriver.CreateNetwork', '[1,2,3]', /^invalid NetworkDriver\.CreateNetwork request: body must be object/],
      ['NetworkDriver.CreateNetwork', '{"NetworkID":"n2","Options":{"com.docker.network.internal":true},"IPv4Data":[]}', /^Calico driver does not support the flag --internal\.$/],
    ];
    for (const [method, body, message] of cases) {
      const reply = await post(socket, method, undefined, body);
      expect(reply.status, `${method} ${body}`).toBeGreaterThanOrEqual(400);
      expect(reply.body.Err, `${method} ${body}`).toMatch(message);
    }
    for (const [method, expected] of [
      ['NetworkDriver.GetCapabilities', { Scope: 'local', ConnectivityScope: 'global' }],
      ['Plugin.Activate', { Implements: ['NetworkDriver', 'IpamDriver'] }],
      ['NetworkDriver.Leave', {}],
    ] as const) {
      const reply = await post(socket, method, method === 'NetworkDriver.Leave' ? { NetworkID: 'n1', EndpointID: 'e1' } : undefined);
      expect([reply.status, reply.body]).toEqual([200, expected]);
    }
  });
});
