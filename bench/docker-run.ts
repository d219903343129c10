/**
 * bench/docker-run: `docker run --rm --net <calico network> busybox true` against the same on
 * Docker's own bridge network, in interleaved pairs on one Docker engine, plus the daemon's own time
 * for CreateEndpoint + Join from its request log, and, as the floor of the remote-plugin path, the
 * same run on a network of bench/noop-plugin.mjs. Not part of the test run: `npm run bench:docker-run`.
 * Knobs: PAIRS (default 30), BENCH_ETCD (embedded | relay, see benchEtcd).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { join } from 'node:path';
import { ROOT } from '../test/helpers/daemon.js';
import { DockerHost, HostEtcd } from '../test/helpers/docker-host.js';
import { TestEtcd } from '../test/helpers/etcd.js';
import { storeOn } from '../test/helpers/ipam.js';
import { percentile } from './measure.js';
import { interleavedRuns, ratioInterval } from './docker-runs.js';

const PAIRS = Number(process.env.PAIRS ?? 30);
const ETCD_MODE = process.env.BENCH_ETCD === 'relay' ? 'relay' : 'embedded';
const POOL = '10.123.0.0/16';


/**
 * Where the daemon's etcd is. `embedded` (default): on the host's own loopback, the daemon's embedded
 * etcd, as a single host runs it. `relay`: the shared test etcd, reached as the tests reach it, through
 * a userspace relay into the host's namespace (one more hop in every etcd call).
 */
async function benchEtcd(): Promise<{ hostEtcd: HostEtcd; close(): Promise<void> }> {
  if (ETCD_MODE === 'embedded') return { hostEtcd: 'embedded', close: async () => undefined };
  const etcd = new TestEtcd();
  await etcd.start();
  const ctx = storeOn(etcd.endpoint);
  await new PoolService(ctx.store).add({ cidr: POOL, name: 'bench-pool' });
  return {
    hostEtcd: etcd,
    close: async () => {
      ctx.etcd.close();
      await etcd.destroy();
    },
  };
}

async function main(): Promise<void> {
  const etcd = await benchEtcd();
  const host = new DockerHost('bench-host', etcd.hostEtcd, { CALICO_LIBNETWORK_LOG_LEVEL: 'info', CALICO_IPV4POOL_CIDR: POOL });
  await host.start();
  try {
    host.dockerOk(['network', 'create', '--driver', 'calico', '--ipam-driver', 'calico-ipam', 'bench-net']);
    // Docker's bridge driver on a network of its own: Docker gives every user-defined network (any
    // driver) an embedded DNS resolver, set up in each container with a dozen iptables commands.
    host.dockerOk(['network', 'create', '--driver', 'bridge', 'user-bridge']);
    // The floor of any remote plugin, measured in the same run: one that keeps nothing and only makes a veth.
    host.spawnInside([process.execPath, join(ROOT, 'bench/noop-plugin.mjs')]);
    await new Promise((r) => setTimeout(r, 1000));
    host.dockerOk(['network', 'create', '--driver', 'noop', '--ipam-driver', 'noop', 'noop-net']);
    const networks = ['bench-net', 'bridge', 'noop-net', 'user-bridge'];
    const { samples, dropped } = interleavedRuns(networks.map((network) => ({ label: network, host, network })), PAIRS);
    const calico = samples.get('bench-net')!;
    const bridge = samples.get('bridge')!;
    const noop = samples.get('noop-net')!;
    const userBridge = samples.get('user-bridge')!;
    await new Promise((r) => setTimeout(r, 500));
    const served = host.daemonLog
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { method?: string; ms?: number; status?: number })
      .filter((entry) => entry.status === 200 && entry.ms !== undefined);
    const times = (method: string): number[] => served.filter((e) => e.method === `/${method}`).map((e) => e.ms!).slice(-calico.length);
    const createEndpoint = times('NetworkDriver.CreateEndpoint');
    const joins = times('NetworkDriver.Join');
    const both = createEndpoint.map((c, i) => c + (joins[i] ?? 0));
    const [leaves, deletes, releases] = ['NetworkDriver.Leave', 'NetworkDriver.DeleteEndpoint', 'IpamDriver.ReleaseAddress'].map(times);
    const teardown = leaves!.map((l, i) => l + (deletes![i] ?? 0) + (releases![i] ?? 0));
    const result = {
      when: new Date().toISOString(),
      machine: `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown cpu'}`,
      docker: host.dockerOk(['version', '--format', '{{.Server.Version}}']),
      git: execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim(),
      etcd: ETCD_MODE,
      pairs: calico.length,
      droppedPairs: dropped,
      calicoMedianMs: percentile(calico, 50),
      bridgeMedianMs: percentile(bridge, 50),
      ratio: percentile(calico, 50) / percentile(bridge, 50),
      ratioInterval95: ratioInterval(calico, bridge),
      noopRemoteMedianMs: percentile(noop, 50),
      noopRatio: percentile(noop, 50) / percentile(bridge, 50),
      userBridgeMedianMs: percentile(userBridge, 50),
      userBridgeRatio: percentile(userBridge, 50) / percentile(bridge, 50),
      daemon: {
        requestAddress: { p50: percentile(times('IpamDriver.RequestAddress'), 50), p99: percentile(times('IpamDriver.RequestAddress'), 99) },
        createEndpoint: { p50: percentile(createEndpoint, 50), p99: percentile(createEndpoint, 99) },
        join: { p50: percentile(joins, 50), p99: percentile(joins, 99) },
        createEndpointPlusJoin: { p50: percentile(both, 50), p99: percentile(both, 99) },
        // What Docker waits for as the container goes: Leave, DeleteEndpoint, ReleaseAddress.
        teardown: { p50: percentile(teardown, 50), p99: percentile(teardown, 99) },
      },
    };
    console.log(`machine     ${result.machine}; docker ${result.docker}; git ${result.git}; etcd ${ETCD_MODE}; ${calico.length} interleaved pairs (${dropped} dropped: engine failed a run)`);
    console.log(`docker run  calico median ${result.calicoMedianMs.toFixed(1)} ms, bridge median ${result.bridgeMedianMs.toFixed(1)} ms, ratio ${result.ratio.toFixed(3)} (95 % interval ${result.ratioInterval95.map((r) => r.toFixed(3)).join('-')}; target <= 1.10)`);
    console.log(`floor       a remote plugin that keeps nothing: median ${result.noopRemoteMedianMs.toFixed(1)} ms, ratio ${result.noopRatio.toFixed(3)} to bridge; calico / that floor ${(result.calicoMedianMs / result.noopRemoteMedianMs).toFixed(3)}`);
    console.log(`user bridge Docker's bridge driver on a user-defined network: median ${result.userBridgeMedianMs.toFixed(1)} ms, ratio ${result.userBridgeRatio.toFixed(3)} to bridge; calico / user bridge ${(result.calicoMedianMs / result.userBridgeMedianMs).toFixed(3)}`);
    console.log(`daemon      CreateEndpoint+Join p50 ${result.daemon.createEndpointPlusJoin.p50.toFixed(2)} ms, p99 ${result.daemon.createEndpointPlusJoin.p99.toFixed(2)} ms (CreateEndpoint p50 ${result.daemon.createEndpoint.p50.toFixed(2)}, Join p50 ${result.daemon.join.p50.toFixed(2)}, RequestAddress p50 ${result.daemon.requestAddress.p50.toFixed(2)}); Leave+DeleteEndpoint+ReleaseAddress p50 ${result.daemon.teardown.p50.toFixed(2)} ms, p99 ${result.daemon.teardown.p99.toFixed(2)} ms`);
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(`bench/results/docker-run-${result.when.slice(0, 10)}.json`, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await host.stop();
    await etcd.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
