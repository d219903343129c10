import { formatCidr } from '../src/domain/cidr.js';
import { affinityFromKey, hostPrefix, prefixEnd } from '../src/adapters/datastore/etcd/keys.js';
import { IpamService } from '../src/services/ipam/ipam-service.js';
import { DockerHost } from '../test/helpers/docker-host.js';
import type { EtcdContext } from '../test/helpers/ipam.js';
import type { Underlay } from '../test/helpers/underlay.js';
import { guarded, RouteWatch, waitFor } from './measure.js';

/**
 * What the multi-host benchmarks share: hosts without dockerd (a namespace on the underlay with the
 * daemon and BIRD each), their blocks, and when every block is routed everywhere.
 */

/** Hosts b1…bN without dockerd, at 10.47.0.1… on `underlay`, their daemons reaching etcd over it. */
export function benchHosts(n: number, etcdEndpoint: string, underlay: Underlay, env: Record<string, string> = {}): DockerHost[] {
  return Array.from(
    { length: n },
    (_, i) => new DockerHost(`b${i + 1}`, { reachable: etcdEndpoint }, { CALICO_LIBNETWORK_LOG_LEVEL: 'info', ...env }, { docker: false, underlay: { underlay, address: `10.47.0.${i + 1}/24` } }),
  );
}

/**
 * Runs `body` with `hosts` prepared (namespaces, links) and their kernels' routes watched; then stops
 * every host, whatever happened, Ctrl-C included.
 */
export function withHosts<T>(hosts: DockerHost[], body: (watch: RouteWatch) => Promise<T>): Promise<T> {
  const watch = new RouteWatch();
  return guarded(
    async () => {
      watch.stop();
      await Promise.all(hosts.map((host) => host.stop()));
    },
    async () => {
      for (const host of hosts) await host.prepare();
      for (const host of hosts) watch.watch(host);
      return body(watch);
    },
  );
}

/**
 * Starts the hosts' daemons, `wave` at a time (each wave once the one before is serving: two cores
 * do not start fifty Node.js daemons at once within their start-up limit). Resolves with when the
 * last one was serving.
 */
export async function startDaemons(hosts: DockerHost[], wave = hosts.length): Promise<number> {
  for (let i = 0; i < hosts.length; i += wave) await Promise.all(hosts.slice(i, i + wave).map((h) => h.startDaemon()));
  return performance.now();
}

/** One block per host claimed in etcd before any daemon starts, by node name. */
export async function preclaimBlocks(ctx: EtcdContext, nodes: string[], poolName: string): Promise<Map<string, string>> {
  const blocks = new Map<string, string>();
  for (const node of nodes) {
    const ipam = new IpamService(ctx.store, ctx.source, { node });
    blocks.set(node, formatCidr((await ipam.requestAuto({ family: 4, poolName })).block));
    await ipam.stop();
  }
  return blocks;
}

/** Every block with an affinity in etcd, and the node it belongs to. */
export async function blockOwners(ctx: EtcdContext): Promise<Map<string, string>> {
  const reply = await ctx.etcd.range({ key: Buffer.from(hostPrefix()), range_end: prefixEnd(hostPrefix()), keys_only: true });
  const owners = new Map<string, string>();
  for (const kv of reply.kvs ?? []) {
    const affinity = affinityFromKey(Buffer.from(kv.key!).toString());
    if (affinity) owners.set(formatCidr(affinity.cidr), affinity.node);
  }
  return owners;
}

/** Waits until every host but its owner routes each block (block → owner node); resolves with when the last did. */
export function routedEverywhere(watch: RouteWatch, owners: Map<string, string>, hosts: DockerHost[], limitMs: number): Promise<number> {
  const others = new Map(hosts.map((host) => [host.node, hosts.filter((h) => h !== host)]));
  const pending = new Map(owners);
  let last = 0;
  return waitFor(
    () => {
      for (const [block, owner] of pending) {
        const at = watch.everywhere(block, others.get(owner) ?? hosts);
        if (at === undefined) return undefined;
        last = Math.max(last, at);
        pending.delete(block);
      }
      return last;
    },
    limitMs,
    'every block routed everywhere',
    50,
  );
}
