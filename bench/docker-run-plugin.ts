/**
 * bench/docker-run-plugin: `docker run --rm --net <network> busybox true` through the managed plugin
 * (built from this checkout, `docker plugin enable`d) against the same through the daemon run the
 * systemd way, and each against Docker's bridge driver on its own engine. Two hosts, both Docker 26,
 * one etcd: host `d` runs the daemon, host `p` the plugin (the two cannot share a host: each is the
 * node's one daemon). Runs go in interleaved rounds, one engine busy at a time. Not part of the test
 * run: `npm run bench:docker-run-plugin`. Knob: ROUNDS (default 30).
 */
import { PoolService } from '../src/services/ipam/pool-service.js';
import { DockerHost } from '../test/helpers/docker-host.js';
import { docker26Root } from '../test/helpers/docker26.js';
import { TestEtcd } from '../test/helpers/etcd.js';
import { storeOn } from '../test/helpers/ipam.js';
import { buildPlugin } from '../test/helpers/managed-plugin.js';
import { interleavedRuns, ratioInterval, RunWay } from './docker-runs.js';
import { guarded, percentile, round, saveReport } from './measure.js';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const POOL = '10.124.0.0/16';
const PLUGIN = 'calico-bench:latest';
/** No BGP, no node address: the two hosts share nothing but etcd, and only `docker run` is timed. */
const QUIET = { CALICO_NETWORKING_BACKEND: 'none', IP: 'none', CALICO_LIBNETWORK_LOG_LEVEL: 'info' };

async function main(): Promise<void> {
  const etcd = new TestEtcd();
  await etcd.start();
  const ctx = storeOn(etcd.endpoint);
  await new PoolService(ctx.store).add({ cidr: POOL, name: 'bench-pool' });
  const engineRoot = docker26Root();
  const daemonHost = new DockerHost('bench-d', etcd, QUIET, { engineRoot });
  const pluginHost = new DockerHost('bench-p', etcd, {}, { engineRoot, daemon: false });
  const stop = async (): Promise<void> => {
    pluginHost.docker(['ps', '-aq']).stdout.split('\n').filter(Boolean).forEach((id) => pluginHost.docker(['rm', '-f', id]));
    pluginHost.docker(['network', 'rm', 'plugin-net']);
    pluginHost.docker(['plugin', 'rm', '-f', PLUGIN]);
    await Promise.all([daemonHost.stop(), pluginHost.stop()]);
    ctx.etcd.close();
    await etcd.destroy();
  };
  await guarded(stop, async () => {
    await Promise.all([daemonHost.start(), pluginHost.start()]);
    buildPlugin(PLUGIN, engineRoot, pluginHost);
    const settings = Object.entries({ ...QUIET, ETCD_ENDPOINTS: 'http://127.0.0.1:2379', NODENAME: pluginHost.node }).map(([k, v]) => `${k}=${v}`);
    pluginHost.dockerOk(['plugin', 'set', PLUGIN, ...settings, `docker-socket.source=${pluginHost.dockerSocket}`]);
    pluginHost.dockerOk(['plugin', 'enable', PLUGIN]);
    daemonHost.dockerOk(['network', 'create', '--driver', 'calico', '--ipam-driver', 'calico-ipam', 'daemon-net']);
    pluginHost.dockerOk(['network', 'create', '--driver', PLUGIN, '--ipam-driver', PLUGIN, 'plugin-net']);
    const ways: RunWay[] = [
      { label: 'daemon', host: daemonHost, network: 'daemon-net' },
      { label: 'daemon host bridge', host: daemonHost, network: 'bridge' },
      { label: 'plugin', host: pluginHost, network: 'plugin-net' },
      { label: 'plugin host bridge', host: pluginHost, network: 'bridge' },
    ];
    const { samples, dropped } = interleavedRuns(ways, ROUNDS);
    const median = (label: string): number => percentile(samples.get(label)!, 50);
    const result = {
      docker: daemonHost.dockerOk(['version', '--format', '{{.Server.Version}}']),
      rounds: samples.get('plugin')!.length,
      droppedRounds: dropped,
      medianMs: Object.fromEntries(ways.map((way) => [way.label, round(median(way.label))])),
      pluginOverDaemon: round(median('plugin') / median('daemon'), 3),
      pluginOverDaemonInterval95: ratioInterval(samples.get('plugin')!, samples.get('daemon')!).map((r) => round(r, 3)),
      daemonOverBridge: round(median('daemon') / median('daemon host bridge'), 3),
      pluginOverBridge: round(median('plugin') / median('plugin host bridge'), 3),
    };
    console.log(`docker ${result.docker}; ${result.rounds} interleaved rounds (${dropped} dropped: the engine failed a run)`);
    console.log(`docker run median: ${ways.map((way) => `${way.label} ${result.medianMs[way.label]} ms`).join(', ')}`);
    console.log(`plugin / daemon ${result.pluginOverDaemon} (95 % interval ${result.pluginOverDaemonInterval95.join('-')}; target <= 1.05); daemon / bridge ${result.daemonOverBridge}; plugin / bridge ${result.pluginOverBridge}`);
    saveReport('docker-run-plugin', result);
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
