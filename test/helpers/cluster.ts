import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import type { EtcdEndpointStore } from '../../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import type { PoolOptions } from '../../src/services/ipam/pool-service.js';
import { DockerHost, HostOptions, startDatastore } from './docker-host.js';
import { TestEtcd } from './etcd.js';
import type { EtcdContext } from './ipam.js';
import { Underlay } from './underlay.js';

export { until } from './until.js';

export interface ClusterOptions {
  /** Short: it names the namespaces. */
  name: string;
  hosts: number;
  pools: PoolOptions[];
  env?: Record<string, string>;
  /** Per host (1-based): engine, extra dockerd flags, docker or not. */
  hostOptions?: (n: number, cluster: Cluster) => Omit<HostOptions, 'underlay'>;
  /** etcd's v2 API too (Docker 20.10's cluster store). */
  etcdV2?: boolean;
  /** The subnet of the underlay's first three octets (host n is .n). */
  subnet?: string;
}

export interface Cluster {
  etcd: TestEtcd;
  ctx: EtcdContext;
  endpoints: EtcdEndpointStore;
  underlay: Underlay;
  hosts: DockerHost[];
}

/** Routes of a host's (or any namespace's) main table, as `ip route` prints them. */
export const routesOf = (netns: string): string => spawnSync('ip', ['-n', netns, 'route'], { encoding: 'utf8' }).stdout;

/**
 * Several hosts for one test file: a real etcd with `pools`, an underlay bridge, and hosts
 * (namespaces with their own dockerd, daemon and BIRD) at `<subnet>.<n>/24`, started together
 * before the first test and torn down after the last, whatever happened.
 */
export function clusterForSuite(options: ClusterOptions): Cluster {
  const cluster = { etcd: new TestEtcd(undefined, options.etcdV2 === true), hosts: [] as DockerHost[], underlay: new Underlay(`${options.name}ul`) } as Cluster;
  const subnet = options.subnet ?? '10.47.0';
  beforeAll(async () => {
    Object.assign(cluster, await startDatastore(cluster.etcd, options.pools));
    cluster.underlay.start();
    cluster.hosts = Array.from({ length: options.hosts }, (_, i) => {
      const n = i + 1;
      return new DockerHost(`${options.name}${n}`, cluster.etcd, options.env ?? {}, { ...options.hostOptions?.(n, cluster), underlay: { underlay: cluster.underlay, address: `${subnet}.${n}/24` } });
    });
    await Promise.all(cluster.hosts.map((h) => h.start()));
  }, 240_000);
  afterAll(async () => {
    await Promise.all(cluster.hosts.map((h) => h.stop()));
    cluster.underlay.stop();
    cluster.ctx?.etcd.close();
    await cluster.etcd.destroy();
  }, 120_000);
  return cluster;
}

/**
 * A write straight to the suite's etcd, retried: with two Docker suites running on two cores, the
 * test's own gRPC connection now and then misses a keepalive and drops a call (UNAVAILABLE).
 */
export async function etcdRetrying<T>(call: () => Promise<T>, attempts = 4): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts || !/UNAVAILABLE|Connection dropped/i.test(String((error as Error).message))) throw error;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}
