import { describe, expect, it } from 'vitest';
import type { Resource } from '../src/domain/resources.js';
import { BgpAgent } from '../src/services/routing/bgp-agent.js';
import { DatastoreSyncer } from '../src/services/sync/datastore-syncer.js';
import { MemorySyncSource } from './helpers/memory-sync-source.js';
import { until } from './helpers/until.js';

const node = (name: string, address: string): Resource => ({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: { bgp: { ipv4Address: address } } }) as Resource;
const profile = (name: string): Resource => ({ kind: 'Profile', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: {} }) as Resource;
const peer = (name: string, address: string): Resource => ({ kind: 'BGPPeer', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: { peerIP: address, asNumber: 65001 } }) as Resource;

describe('the BGP agent (in memory: a sync source, a speaker and a kernel of its own)', () => {
  it('hands the speaker a configuration made from the view, again only when something it is made of changes, and again after a resync only if it differs', async () => {
    const source = new MemorySyncSource([node('h1', '192.0.2.1/24'), node('h2', '192.0.2.2/24')]);
    const sync = new DatastoreSyncer(source);
    const configs: string[] = [];
    const agent = new BgpAgent(sync, { apply: async (config) => (configs.push(config), { applied: true }), detach: async () => undefined }, {
      node: 'h1',
      ownedBlocks: () => [],
      kernel: { deleteRoutes: async () => 0 },
    });
    await agent.start();
    expect(configs).toHaveLength(1);
    expect(configs[0]).toContain('neighbor 192.0.2.2 as 64512');
    expect(configs[0]).not.toContain('192.0.2.3');
    source.put(node('h3', '192.0.2.3/24'));
    await until('a configuration with h3', () => configs.length === 2, 2000);
    expect(configs[1]).toContain('neighbor 192.0.2.3 as 64512');
    // A kind the configuration is not made of: nothing is handed over.
    source.put(profile('web'));
    source.put(peer('tor', '192.0.2.254'));
    await until('a configuration with the peer', () => configs.length === 3, 2000);
    expect(configs[2]).toContain('neighbor 192.0.2.254 as 65001');
    // A resync with nothing changed hands nothing new.
    source.loseWatch();
    await until('the view back in sync', () => sync.inSync(), 2000);
    await new Promise((r) => setTimeout(r, 100));
    expect(configs).toHaveLength(3);
    // One written while the watch was away is in the resync.
    source.putUnseen(node('h4', '192.0.2.4/24'));
    source.loseWatch();
    await until('a configuration with h4', () => configs.length === 4, 3000);
    expect(configs[3]).toContain('neighbor 192.0.2.4 as 64512');
    await agent.stop();
    await sync.stop();
  });
});
