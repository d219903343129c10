/**
 * bench/swarm: `docker service create --replicas 20` until every task answers a ping from every host,
 * on a Calico network (the managed plugin built from this checkout, pushed to a local registry and
 * installed on three Docker 26 hosts; swarm network from config-only networks) against the same on
 * Docker's overlay, in the same swarm (one manager, two workers), rounds alternating which goes first.
 * From every host means: from a probe container on the network on each host, which resolves
 * `tasks.<service>` (swarm's DNS) and pings every address it gets; done when each probe sees all 20
 * and every ping is answered. `--endpoint-mode dnsrr` on both (swarm gives remote drivers no VIP).
 * Not part of the test run: `npm run bench:swarm`. Knobs: REPLICAS (20), ROUNDS (3).
 */
import { PoolService } from '../src/services/ipam/pool-service.js';
import { DockerHost } from '../test/helpers/docker-host.js';
import { docker26Root } from '../test/helpers/docker26.js';
import { storeOn } from '../test/helpers/ipam.js';
import { buildPlugin, publishAndInstall } from '../test/helpers/managed-plugin.js';
import { TestRegistry } from '../test/helpers/registry.js';
import { runInOwnNetns } from './in-netns.js';
import { guarded, onUnderlay, percentile, round, saveReport } from './measure.js';

const NETNS = 'calico-bench-swarm';
const REPLICAS = Number(process.env.REPLICAS ?? 20);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const POOL = '10.125.0.0/16';
const NETWORKS = { calico: 'calinet', overlay: 'ovnet' } as const;
type Kind = keyof typeof NETWORKS;

/** What a probe prints: how many task addresses swarm's DNS gave, and how many answered a ping. */
const probeScript = (service: string): string =>
  `nslookup tasks.${service} 2>/dev/null | { n=0; ok=0; while read k v; do case "$k" in Address*) case "$v" in *:53|'') ;; *) n=$((n+1)); ping -c 1 -W 1 "$v" >/dev/null 2>&1 && ok=$((ok+1));; esac;; esac; done; echo "$n $ok"; }`;

async function everyHostReaches(hosts: DockerHost[], kind: Kind, service: string): Promise<boolean> {
  const answers = await Promise.all(hosts.map((host) => host.dockerAsync(['exec', `probe-${kind}`, 'sh', '-c', probeScript(service)], 60_000)));
  return answers.every((a) => a.stdout.trim() === `${REPLICAS} ${REPLICAS}`);
}

/** Creates the service, waits until every probe reaches all its tasks; returns the time taken. Removes it after. */
async function timeService(hosts: DockerHost[], kind: Kind, round: number): Promise<number> {
  const manager = hosts[0]!;
  const service = `svc-${kind}-${round}`;
  const started = Date.now();
  manager.dockerOk(['service', 'create', '--detach', '--no-resolve-image', '--name', service, '--replicas', String(REPLICAS), '--endpoint-mode', 'dnsrr', '--network', NETWORKS[kind], '--stop-grace-period', '1s', 'busybox:local', 'sleep', '100000']);
  while (!(await everyHostReaches(hosts, kind, service))) {
    if (Date.now() - started > 300_000) throw new Error(`${service}: not every task reached from every host within 300 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const ms = Date.now() - started;
  manager.dockerOk(['service', 'rm', service]);
  const gone = Date.now();
  while (hosts.some((h) => h.docker(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`]).stdout.trim() !== '')) {
    if (Date.now() - gone > 120_000) throw new Error(`${service}: tasks still there 120 s after service rm`);
    await new Promise((r) => setTimeout(r, 500));
  }
  console.log(`round ${round} ${kind}: ${REPLICAS} tasks reached from every host in ${ms} ms`);
  return ms;
}

async function inside(): Promise<void> {
  await onUnderlay(NETNS, 'bswul', async (etcdEndpoint, underlay) => {
    const ctx = storeOn(etcdEndpoint);
    await new PoolService(ctx.store).add({ cidr: POOL, name: 'bench-pool' });
    const engineRoot = docker26Root();
    const registry = new TestRegistry('10.47.0.100');
    const plugin = `${registry.host}/calico-libnetwork:bench`;
    const hosts = [1, 2, 3].map(
      (n) => new DockerHost(`s${n}`, { reachable: etcdEndpoint }, {}, { engineRoot, daemon: false, underlay: { underlay, address: `10.47.0.${n}/24` }, dockerdArgs: ['--insecure-registry', registry.host] }),
    );
    const cleanup = async (): Promise<void> => {
      for (const host of hosts) host.docker(['swarm', 'leave', '--force'], 30_000);
      for (const host of hosts) {
        await host.clear();
        for (const id of host.docker(['network', 'ls', '-q', '--filter', `driver=${plugin}`]).stdout.split('\n').filter(Boolean)) host.docker(['network', 'rm', id]);
        host.docker(['network', 'rm', `${NETWORKS.calico}-cfg`]);
        host.docker(['plugin', 'rm', '-f', plugin]);
      }
      await Promise.all(hosts.map((host) => host.stop()));
      registry.stop();
      ctx.etcd.close();
    };
    await guarded(cleanup, async () => {
      await Promise.all(hosts.map((host) => host.start()));
      await registry.start(underlay);
      const [manager, ...workers] = hosts as [DockerHost, ...DockerHost[]];
      buildPlugin(plugin, engineRoot, manager);
      await publishAndInstall(plugin, manager, hosts.map((host, i) => ({ host, settings: [`ETCD_ENDPOINTS=${etcdEndpoint}`, `NODENAME=${host.node}`, `IP=10.47.0.${i + 1}`, `docker-socket.source=${host.dockerSocket}`] })));
      manager.dockerOk(['swarm', 'init', '--advertise-addr', manager.address]);
      const token = manager.dockerOk(['swarm', 'join-token', '-q', 'worker']);
      for (const worker of workers) worker.dockerOk(['swarm', 'join', '--advertise-addr', worker.address, '--token', token, `${manager.address}:2377`]);
      for (const host of hosts) host.dockerOk(['network', 'create', '--config-only', '--ipam-driver', plugin, `${NETWORKS.calico}-cfg`]);
      manager.dockerOk(['network', 'create', '--driver', plugin, '--scope', 'swarm', '--config-from', `${NETWORKS.calico}-cfg`, '--attachable', NETWORKS.calico]);
      manager.dockerOk(['network', 'create', '--driver', 'overlay', '--attachable', NETWORKS.overlay]);
      for (const host of hosts) {
        for (const kind of Object.keys(NETWORKS) as Kind[]) host.dockerOk(['run', '-d', '--name', `probe-${kind}`, '--net', NETWORKS[kind], 'busybox:local', 'sleep', '100000']);
      }
      const times: Record<Kind, number[]> = { calico: [], overlay: [] };
      for (let r = 0; r < ROUNDS; r++) {
        const order: Kind[] = r % 2 === 0 ? ['calico', 'overlay'] : ['overlay', 'calico'];
        for (const kind of order) times[kind].push(await timeService(hosts, kind, r));
      }
      const median = (kind: Kind): number => percentile(times[kind], 50);
      const result = {
        docker: manager.dockerOk(['version', '--format', '{{.Server.Version}}']),
        replicas: REPLICAS,
        rounds: ROUNDS,
        ms: times,
        medianMs: { calico: median('calico'), overlay: median('overlay') },
        calicoOverOverlay: round(median('calico') / median('overlay'), 3),
      };
      console.log(`service create --replicas ${REPLICAS} until every task answers every host: calico median ${result.medianMs.calico} ms, overlay median ${result.medianMs.overlay} ms, ratio ${result.calicoOverOverlay}`);
      saveReport('swarm', result);
    });
  });
}

runInOwnNetns(NETNS, inside);
