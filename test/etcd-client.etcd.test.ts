import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdClient } from '../src/adapters/datastore/etcd/etcd-client.js';
import type { WatchEvent } from '../src/adapters/datastore/etcd/etcd-rpc.js';
import { until } from './helpers/cluster.js';
import { TestEtcd } from './helpers/etcd.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function etcd(): Promise<TestEtcd> {
  const server = new TestEtcd();
  await server.start();
  cleanups.push(() => server.destroy());
  return server;
}

function client(settings: ConstructorParameters<typeof EtcdClient>[0]): EtcdClient {
  const made = new EtcdClient(settings);
  cleanups.push(() => made.close());
  return made;
}

const seen = (events: WatchEvent[]) => events.map((e) => `${e.type} ${e.kv.key.toString()}=${e.kv.value.toString()}`);

describe("the etcd client (etcd's JSON gateway)", () => {
  it('several watches on one stream: each event once, in order, across an etcd restart (resumed after the last one delivered)', async () => {
    const server = await etcd();
    const etcdClient = client({ endpoints: [server.endpoint], callTimeoutMs: 1000 });
    const revision = (await etcdClient.range({ key: Buffer.from('/') })).header.revision;
    const events: string[] = [];
    const watch = await etcdClient.watchGroup([{ prefix: '/w/a/' }, { key: '/w/b' }], String(BigInt(revision) + 1n), (e) => events.push(...seen(e)), () => events.push('lost'));
    cleanups.push(() => watch.cancel());
    await etcdClient.put('/w/a/1', 'x');
    await etcdClient.put('/w/b', 'y');
    await etcdClient.put('/w/bb', 'not watched');
    await etcdClient.deleteRange({ key: Buffer.from('/w/a/1') });
    await until('three events', () => events.length >= 3, 5000);
    expect(events).toEqual(['PUT /w/a/1=x', 'PUT /w/b=y', 'DELETE /w/a/1=']);

    await server.stop();
    await until('the watch to notice', () => etcdClient.watchProblem(), 5000);
    await server.start();
    await etcdClient.put('/w/a/2', 'after restart');
    await until('the watch to reconnect', () => etcdClient.watchProblem() === undefined, 10_000);
    await until('the event after the restart', () => events.length >= 4, 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual(['PUT /w/a/1=x', 'PUT /w/b=y', 'DELETE /w/a/1=', 'PUT /w/a/2=after restart']);
  });

  it('a watch from a compacted revision ends once, with the reason, and is not left as a watch problem', async () => {
    const server = await etcd();
    const etcdClient = client({ endpoints: [server.endpoint] });
    await etcdClient.put('/c/1', 'a');
    await etcdClient.put('/c/1', 'b');
    const revision = (await etcdClient.range({ key: Buffer.from('/c/1') })).header.revision;
    expect(spawnSync('etcdctl', ['--endpoints', server.endpoint, 'compact', revision]).status).toBe(0);
    const lost: string[] = [];
    const watch = await etcdClient.watchGroup([{ prefix: '/c/' }, { key: '/d' }], '1', () => undefined, (error) => lost.push(error.message));
    cleanups.push(() => watch.cancel());
    await until('the watch to be lost', () => lost.length > 0, 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(lost).toEqual([expect.stringMatching(/^etcd watch at http:\/\/127\.0\.0\.1:\d+ ended by etcd \(its revision was compacted: etcd keeps revisions from \d+ on\)$/)]);
    expect(etcdClient.watchProblem()).toBeUndefined();
  });

  it('authenticates with ETCD_USERNAME and ETCD_PASSWORD, and says so when they are wrong', async () => {
    const server = await etcd();
    const ctl = (...args: string[]) => spawnSync('etcdctl', ['--endpoints', server.endpoint, ...args], { encoding: 'utf8' });
    expect(ctl('user', 'add', 'root:s3cret').status).toBe(0);
    expect(ctl('auth', 'enable').status).toBe(0);
    const good = client({ endpoints: [server.endpoint], username: 'root', password: 's3cret' });
    await good.put('/auth/key', 'v');
    expect((await good.range({ key: Buffer.from('/auth/key') })).kvs.map((kv) => kv.value.toString())).toEqual(['v']);
    const events: string[] = [];
    const revision = (await good.range({ key: Buffer.from('/auth/key') })).header.revision;
    const watch = await good.watchGroup([{ prefix: '/auth/' }], String(BigInt(revision) + 1n), (e) => events.push(...seen(e)), () => events.push('lost'));
    cleanups.push(() => watch.cancel());
    await good.put('/auth/key', 'w');
    await until('the event', () => events.length > 0, 5000);
    expect(events).toEqual(['PUT /auth/key=w']);

    const anonymous = client({ endpoints: [server.endpoint] });
    await expect(anonymous.range({ key: Buffer.from('/auth/key') })).rejects.toThrow(/^etcd range at http:\/\/127\.0\.0\.1:\d+ failed: etcdserver: user name is empty$/);
    const wrong = client({ endpoints: [server.endpoint], username: 'root', password: 'wrong' });
    await expect(wrong.range({ key: Buffer.from('/auth/key') })).rejects.toThrow(/^etcd range at http:\/\/127\.0\.0\.1:\d+ failed: etcdserver: authentication failed, invalid user ID or password$/);
  });
});
