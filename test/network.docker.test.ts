import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { TestEtcd } from './helpers/etcd.js';
import { DockerHost } from './helpers/docker-host.js';
import { storeOn } from './helpers/ipam.js';

const etcd = new TestEtcd();
let ctx: ReturnType<typeof storeOn>;
let host: DockerHost;

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  const pools = new PoolService(ctx.store);
  await pools.add({ cidr: '192.169.0.0/16', name: 'poolv4' });
  await pools.add({ cidr: 'fd00:169::/64', name: 'poolv6' });
  host = new DockerHost('dock-a', etcd);
  await host.start();
}, 120_000);
afterAll(async () => {
  await host?.stop();
  ctx.etcd.close();
  await etcd.destroy();
}, 60_000);

describe('docker network create', () => {
  it('smoke', () => {
    const created = host.docker(['network', 'create', '--driver', 'calico', '--ipam-driver', 'calico-ipam', 'net1']);
    expect(created.stderr).toBe('');
    const run1 = host.docker(['run', '-d', '--net', 'net1', '--name', 'c1', 'busybox:local', 'sleep', '1000']);
    expect(run1.stderr).toBe('');
    const routes = host.docker(['exec', 'c1', 'ip', 'route']);
    console.log(routes.stdout, host.docker(['exec', 'c1', 'ip', 'addr']).stdout, host.onHost(['ip', 'route']).stdout);
  });
});
