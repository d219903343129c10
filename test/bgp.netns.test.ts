import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerHost } from './helpers/docker-host.js';
import { post } from './helpers/daemon.js';
import { TestEtcd } from './helpers/etcd.js';
import { storeOn, EtcdContext } from './helpers/ipam.js';
import { Underlay } from './helpers/underlay.js';
import { PoolService } from '../src/services/ipam/pool-service.js';

const POOL = '10.48.0.0/16';
const etcd = new TestEtcd();
const underlay = new Underlay('bgpul');
let ctx: EtcdContext;
let hosts: DockerHost[] = [];

const routes = (host: DockerHost): string => spawnSync('ip', ['-n', host.netns, 'route'], { encoding: 'utf8' }).stdout;

async function until<T>(what: string, probe: () => T | undefined | false, limitMs = 15_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function requestAddress(host: DockerHost): Promise<string> {
  const reply = await post(host.pluginSocket('calico-ipam'), 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '' });
  if (reply.status !== 200) throw new Error(`RequestAddress on ${host.node}: ${reply.text}`);
  return reply.body.Address as string;
}

beforeAll(async () => {
  await etcd.start();
  ctx = storeOn(etcd.endpoint);
  await ctx.wipe();
  await new PoolService(ctx.store).add({ cidr: POOL, name: 'bgp-pool' });
  underlay.start();
  hosts = [1, 2, 3].map((n) => new DockerHost(`bgp${n}`, etcd, { CALICO_LIBNETWORK_LOG_LEVEL: 'debug' }, { docker: false, underlay: { underlay, address: `10.47.0.${n}/24` } }));
  await Promise.all(hosts.map((h) => h.start()));
}, 120_000);

afterAll(async () => {
  for (const host of hosts) await host.stop();
  underlay.stop();
  ctx?.etcd.close();
  await etcd.destroy();
});

describe('full mesh', () => {
  it('a block claimed on one host is routed on the others via BIRD', async () => {
    const address = await requestAddress(hosts[0]!);
    const block = `${address.split('.').slice(0, 3).join('.')}.${Number(address.split('.')[3]!.split('/')[0]) & ~63}/26`;
    for (const other of hosts.slice(1)) {
      await until(`${block} on ${other.node}`, () => routes(other).includes(`${block} via 10.47.0.1 dev eth0 proto bird`));
    }
    expect(routes(hosts[0]!)).toContain(`blackhole ${block}`);
  });
});
