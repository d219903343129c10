import { BirdSpeaker } from '../adapters/bird/bird-speaker.js';
import { CommandHelper } from '../adapters/dataplane/command-helper.js';
import { runCommand } from '../adapters/dataplane/command.js';
import { IptablesPolicyDataplane } from '../adapters/dataplane/iptables/policy-dataplane.js';
import { NetlinkDataplane } from '../adapters/dataplane/netlink/netlink-dataplane.js';
import { EtcdClient } from '../adapters/datastore/etcd/etcd-client.js';
import { EtcdIpamStore } from '../adapters/datastore/etcd/etcd-ipam-store.js';
import { BIRD_ROUTE_PROTOCOL } from '../calc/bird-config.js';
import { PoolService } from '../services/ipam/pool-service.js';
import type { DaemonConfig } from './config.js';

/**
 * `calico-libnetwork uninstall`: takes away what the daemon put on the host: its iptables chains,
 * hooks and ipsets; BIRD (stopped for good: its peers withdraw this host's routes); the VXLAN device
 * and tunnel routes; the blackhole of every block, and the routes BIRD left behind (its kernel
 * protocol keeps them, on purpose, across restarts). The last two need the pools from etcd: without
 * etcd they stay, and it says so. Containers' own /32 routes go with their veths, when they stop.
 */
export async function uninstall(config: DaemonConfig, say: (line: string) => void): Promise<void> {
  await new IptablesPolicyDataplane().uninstall();
  const helper = new CommandHelper();
  await new BirdSpeaker({ runDir: config.runDir, run: helper.run }).shutdown();
  helper.close();
  say('Removed the iptables chains, hooks and ipsets of calico-libnetwork and stopped BIRD.');
  const dataplane = new NetlinkDataplane(runCommand);
  try {
    await dataplane.applyTunnels({ neighbors: [], fdb: [], routes: [], unavailable: [] }, { resync: true });
    const etcd = new EtcdClient({ ...config.etcd, callTimeoutMs: 3000 });
    try {
      const pools = (await new PoolService(new EtcdIpamStore(etcd)).list()).map((p) => p.cidr);
      await dataplane.syncBlackholes([], pools);
      const learnt = await dataplane.deleteRoutes(BIRD_ROUTE_PROTOCOL, pools);
      say(`Removed the tunnel device and routes, the blackholes of this host's blocks and ${learnt} route(s) BIRD had learnt.`);
    } catch (error) {
      say(`Removed the tunnel device and routes. The blackholes of this host's blocks and BIRD's routes stay: the pools could not be read from etcd (${(error as Error).message}). Run uninstall again once etcd answers.`);
    } finally {
      etcd.close();
    }
  } finally {
    await dataplane.close();
  }
}
