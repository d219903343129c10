import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Value } from '@sinclair/typebox/value';
import { ErrorResponse } from '../plugin-spec/common.js';
import { IPAM_METHODS } from '../plugin-spec/ipam.js';
import { buildDockerPlugin } from '../src/plugin/docker-plugin.js';
import { ipamMethods } from '../src/plugin/ipam-methods.js';
import { DockerIpamDriver } from '../src/services/ipam/docker-ipam-driver.js';
import { IpamService } from '../src/services/ipam/ipam-service.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { TestEtcd } from './helpers/etcd.js';
import { post, TestDaemon } from './helpers/daemon.js';
import { storeOn } from './helpers/ipam.js';

const etcd = new TestEtcd();
let ctx: ReturnType<typeof storeOn>;
let ipam: IpamService;
let app: ReturnType<typeof buildDockerPlugin>;
let daemon: TestDaemon;

/** Posts through Fastify's inject exactly as Docker does: no Content-Type header. */
async function call(method: string, payload?: string) {
  const reply = await app.inject({ method: 'POST', url: `/${method}`, ...(payload === undefined ? {} : { payload }), headers: { accept: 'application/vnd.docker.plugins.v1.2+json' } });
  return { status: reply.statusCode, text: reply.body, json: () => JSON.parse(reply.body) };
}

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  const pools = new PoolService(ctx.store);
  await pools.add({ cidr: '10.88.0.0/16', name: 'net-pool' });
  await pools.add({ cidr: 'fd00:88::/64', name: 'net-pool6' });
  ipam = new IpamService(ctx.store, ctx.source, { node: 'plugin-node' });
  app = buildDockerPlugin({ implements: ['IpamDriver'], methods: ipamMethods(new DockerIpamDriver(ipam, pools)), logger: false });
  daemon = new TestDaemon({ node: 'socket-node', etcd: etcd.endpoint });
  await daemon.start();
  await daemon.ready();
});
afterAll(async () => {
  await daemon.destroy();
  await app.close();
  await ipam.stop();
  ctx.etcd.close();
  await etcd.destroy();
});

describe('IpamDriver replaying what Docker 20.10 sends', () => {
  it('activates and describes itself', async () => {
    expect((await call('Plugin.Activate', '')).json()).toEqual({ Implements: ['IpamDriver'] });
    expect((await call('IpamDriver.GetCapabilities')).json()).toEqual({ RequiresMACAddress: false, RequiresRequestReplay: false });
    expect((await call('IpamDriver.GetDefaultAddressSpaces')).json()).toEqual({
      LocalDefaultAddressSpace: 'CalicoLocalAddressSpace',
      GlobalDefaultAddressSpace: 'CalicoGlobalAddressSpace',
    });
  });

  it('network without --subnet: the dummy gateway, an address, release, release of 0.0.0.0', async () => {
    const pool = await call('IpamDriver.RequestPool', '{"AddressSpace":"CalicoLocalAddressSpace","Pool":"","SubPool":"","Options":{},"V6":false}\n');
    expect(pool.status).toBe(200);
    expect(pool.json()).toEqual({ PoolID: 'CalicoPoolIPv4', Pool: '0.0.0.0/0', Data: { 'com.docker.network.gateway': '0.0.0.0/0' } });
    const address = await call('IpamDriver.RequestAddress', '{"PoolID":"CalicoPoolIPv4","Address":"","Options":null}\n');
    expect(address.status).toBe(200);
    expect(address.json()).toEqual({ Address: expect.stringMatching(/^10\.88\.\d+\.\d+\/32$/), Data: {} });
    const ip = address.json().Address.split('/')[0];
    for (const release of [ip, ip, '0.0.0.0']) {
      const reply = await call('IpamDriver.ReleaseAddress', JSON.stringify({ PoolID: 'CalicoPoolIPv4', Address: release }));
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('{}');
    }
    expect((await call('IpamDriver.ReleasePool', '{"PoolID":"CalicoPoolIPv4"}')).text).toBe('{}');
  });

  it('--subnet must be a pool: PoolID is the pool name; --gateway, --ip-range and --ipam-opt are refused with Calico texts', async () => {
    expect((await call('IpamDriver.RequestPool', '{"AddressSpace":"CalicoLocalAddressSpace","Pool":"10.88.0.0/16","SubPool":"","Options":{},"V6":false}')).json()).toEqual({
      PoolID: 'net-pool',
      Pool: '10.88.0.0/16',
      Data: { 'com.docker.network.gateway': '0.0.0.0/0' },
    });
    const cases: [string, string, number, string][] = [
      ['IpamDriver.RequestPool', '{"Pool":"10.88.0.0/24","SubPool":"","Options":{},"V6":false}', 500, 'The requested subnet must match the CIDR of a configured Calico IP Pool.'],
      ['IpamDriver.RequestPool', '{"Pool":"10.88.0.0/16","SubPool":"10.88.1.0/24","Options":{},"V6":false}', 500, "Calico IPAM does not support sub pool configuration on 'docker create network'. Calico IP Pools should be configured first and IP assignment is from those pre-configured pools."],
      ['IpamDriver.RequestPool', '{"Pool":"","SubPool":"","Options":{"REJECT":"1"},"V6":false}', 500, 'Arbitrary options are not supported'],
      ['IpamDriver.RequestPool', '{"Pool":"10.88.0.0/99","SubPool":"","Options":{},"V6":false}', 500, 'Invalid CIDR'],
      ['IpamDriver.RequestAddress', '{"PoolID":"net-pool","Address":"10.88.0.1","Options":{"RequestAddressType":"com.docker.network.gateway"}}', 500, 'Calico IPAM does not support specifying a gateway.'],
      ['IpamDriver.RequestAddress', '{"PoolID":"no-such-pool","Address":"","Options":null}', 500, 'Invalid Pool - no-such-pool: IP pool no-such-pool does not exist'],
      ['IpamDriver.RequestAddress', '{"PoolID":"net-pool","Address":"10.99.9.9","Options":null}', 500, 'IP assignment error: The provided IP address 10.99.9.9 is not in a configured pool'],
    ];
    for (const [method, body, status, err] of cases) {
      const reply = await call(method, body);
      expect([reply.status, reply.json()]).toEqual([status, { Err: err }]);
    }
  });

  it('--ip: exactly that address, and the second request for it is refused', async () => {
    const first = await call('IpamDriver.RequestAddress', '{"PoolID":"net-pool","Address":"10.88.5.5","Options":null}');
    expect(first.json()).toEqual({ Address: '10.88.5.5/32', Data: {} });
    const second = await call('IpamDriver.RequestAddress', '{"PoolID":"net-pool","Address":"10.88.5.5","Options":null}');
    expect(second.status).toBe(500);
    expect(second.json().Err).toMatch(/^Address already assigned in block/);
  });

  it('--ipv6: a /128 from an IPv6 pool', async () => {
    expect((await call('IpamDriver.RequestPool', '{"AddressSpace":"CalicoLocalAddressSpace","Pool":"","SubPool":"","Options":{},"V6":true}')).json()).toEqual({
      PoolID: 'CalicoPoolIPv6',
      Pool: '::/0',
      Data: { 'com.docker.network.gateway': '::/0' },
    });
    const address = await call('IpamDriver.RequestAddress', '{"PoolID":"CalicoPoolIPv6","Address":"","Options":null}');
    expect(address.json().Address).toMatch(/^fd00:88::[0-9a-f:]+\/128$/);
    expect((await call('IpamDriver.ReleaseAddress', '{"PoolID":"CalicoPoolIPv6","Address":"::"}')).status).toBe(200);
  });

  it('answers unknown methods with the plain 404 libnetwork expects', async () => {
    const reply = await call('IpamDriver.Nonsense', '{}');
    expect(reply.status).toBe(404);
    expect(reply.text).toBe('404 page not found\n');
  });
});

describe('hostile input', () => {
  const methods = Object.keys(IPAM_METHODS);

  it('1000 random bodies to every endpoint: always 200 or an error status with Err, never a crash', async () => {
    const jsonish = fc.oneof(
      fc.json(),
      fc.string(),
      fc.constantFrom('', '{', 'null', '[]', '{"PoolID":null}', '{"Pool":"::::/500","V6":true}', '{"PoolID":"CalicoPoolIPv4","Address":"1.2.3.4.5"}'),
      fc.record({ PoolID: fc.oneof(fc.string(), fc.integer(), fc.constant('CalicoPoolIPv4')), Address: fc.oneof(fc.string(), fc.ipV4(), fc.ipV6()), Options: fc.anything() }).map((o) => JSON.stringify(o)),
      fc.record({ Pool: fc.oneof(fc.string(), fc.constant('10.88.0.0/16')), SubPool: fc.string(), V6: fc.anything(), Options: fc.dictionary(fc.string(), fc.string()) }).map((o) => JSON.stringify(o)),
    );
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods), jsonish, async (method, body) => {
        calls++;
        const reply = await call(method, body);
        if (reply.status === 200) return;
        expect(reply.status).toBeGreaterThanOrEqual(400);
        expect(Value.Check(ErrorResponse, reply.json())).toBe(true);
      }),
      { numRuns: 1000 },
    );
    expect(calls).toBe(1000);
    // Whatever was allocated by the random bodies, the data is still consistent.
    const { IpamReport } = await import('../src/services/ipam/ipam-report.js');
    expect((await new IpamReport(ctx.store).check()).problems).toEqual([]);
  });

  it('wrong types name the field', async () => {
    const reply = await call('IpamDriver.RequestAddress', '{"PoolID":42,"Address":""}');
    expect([reply.status, reply.json()]).toEqual([400, { Err: 'invalid IpamDriver.RequestAddress request: body/PoolID must be string' }]);
    const bad = await call('IpamDriver.RequestPool', '{"Pool":"","V6":"yes"}');
    expect(bad.json()).toEqual({ Err: 'invalid IpamDriver.RequestPool request: body/V6 must be boolean' });
    const broken = await call('IpamDriver.ReleaseAddress', '{"PoolID":');
    expect(broken.status).toBe(400);
    expect(broken.json().Err).toMatch(/^request body is not valid JSON/);
  });

  it('a 3 MB body over the real socket gets 413 with Err and the daemon keeps serving', async () => {
    const huge = `{"PoolID":"${'x'.repeat(3 * 1024 * 1024)}","Address":""}`;
    const reply = await post(daemon.ipamSocket, 'IpamDriver.RequestAddress', undefined, huge);
    expect(reply.status).toBe(413);
    expect(reply.body).toEqual({ Err: 'IpamDriver.RequestAddress request body is larger than 1048576 bytes' });
    const after = await post(daemon.ipamSocket, 'IpamDriver.GetCapabilities');
    expect(after.status).toBe(200);
    expect(daemon.child!.exitCode).toBeNull();
  });
});

describe('plugin sockets', () => {
  it('are root-only and both answer the IPAM protocol', async () => {
    for (const socket of [daemon.ipamSocket, daemon.networkSocket]) {
      expect(statSync(socket).mode & 0o777 & ~0o660).toBe(0);
      expect(statSync(socket).uid).toBe(0);
      expect((await post(socket, 'Plugin.Activate')).body.Implements).toContain('IpamDriver');
    }
  });

  it('a stale socket file left by a crash is replaced; a live one is never taken over', async () => {
    const crashed = new TestDaemon({ node: 'stale', etcd: etcd.endpoint });
    const second = new TestDaemon({ node: 'stale-2', etcd: etcd.endpoint });
    const ownDir = second.pluginDir;
    try {
      // A dead socket, as a kill -9 leaves it: the file exists, nothing listens behind it.
      execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', crashed.ipamSocket]);
      expect(existsSync(crashed.ipamSocket)).toBe(true);
      await crashed.start();
      expect((await post(crashed.ipamSocket, 'Plugin.Activate')).status).toBe(200);
      Object.defineProperty(second, 'pluginDir', { value: crashed.pluginDir });
      await expect(second.start()).rejects.toThrow(/is served by another running process/);
      expect((await post(crashed.ipamSocket, 'Plugin.Activate')).status).toBe(200);
    } finally {
      Object.defineProperty(second, 'pluginDir', { value: ownDir });
      await second.destroy();
      await crashed.destroy();
    }
  });
});
