/**
 * bench/ipam: RequestAddress over the real unix socket against a real etcd, next to a raw etcd
 * transaction measured in the same run. Not part of the test run: `npm run bench:ipam`.
 * Knobs: SAMPLES (default 500), TOTAL (default 10000).
 */
import { execFileSync, spawn } from 'node:child_process';
import { Agent } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from '../src/adapters/datastore/etcd/etcd-client.js';
import { EtcdSyncSource } from '../src/adapters/datastore/etcd/etcd-sync-source.js';
import { EtcdIpamStore } from '../src/adapters/datastore/etcd/etcd-ipam-store.js';
import { buildDockerPlugin } from '../src/plugin/docker-plugin.js';
import { ipamMethods } from '../src/plugin/ipam-methods.js';
import { DockerIpamDriver } from '../src/services/ipam/docker-ipam-driver.js';
import { IpamService } from '../src/services/ipam/ipam-service.js';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { TestEtcd } from '../test/helpers/etcd.js';
import { runInOwnNetns } from './in-netns.js';

const SAMPLES = Number(process.env.SAMPLES ?? 500);
const TOTAL = Number(process.env.TOTAL ?? 10_000);

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
const ms = (n: number): string => `${n.toFixed(2)} ms`;

// Docker's plugin client keeps its connection to the plugin socket open between calls.
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function postAddress(socketPath: string): Promise<string> {
  const payload = '{"PoolID":"CalicoPoolIPv4","Address":"","Options":null}\n';
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/IpamDriver.RequestAddress', method: 'POST', agent, headers: { 'Content-Length': payload.length } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body).Address) : reject(new Error(body))));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** The real daemon as a separate process, as Docker meets it. */
async function startDaemon(node: string, endpoint: string, dir: string): Promise<{ socket: string; stop(): void }> {
  const pluginDir = join(dir, node);
  const child = spawn(process.execPath, [join(import.meta.dirname, '../src/daemon/main.js')], {
    env: { PATH: process.env.PATH, ETCD_ENDPOINTS: endpoint, NODENAME: node, CALICO_LIBNETWORK_PLUGIN_DIR: pluginDir, NO_DEFAULT_POOLS: 'true', CALICO_LIBNETWORK_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const socket = join(pluginDir, 'calico-ipam.sock');
  for (let i = 0; i < 200; i++) {
    try {
      await postAddress(socket);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { socket, stop: () => child.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const etcd = new TestEtcd();
  await etcd.start();
  const dir = mkdtempSync(join(tmpdir(), 'calico-bench-'));
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  const store = new EtcdIpamStore(client);
  const pools = new PoolService(store);
  await pools.add({ cidr: '10.0.0.0/8', name: 'bench' });

  // 1. Round trips per allocation, counted on an instrumented client, through the socket of an in-process server.
  const ipam = new IpamService(store, new EtcdSyncSource(client), { node: 'bench-count' });
  const app = buildDockerPlugin({ implements: ['IpamDriver'], methods: ipamMethods(new DockerIpamDriver(ipam, pools)), logger: false });
  const countSocket = join(dir, 'count.sock');
  await app.listen({ path: countSocket });
  await ipam.start();
  const steadyTrips: number[] = [];
  const claimTrips: number[] = [];
  const ownedBlocks = (): number => ipam.blocks().filter((b) => b.stored.value.affinity === 'host:bench-count').length;
  for (let i = 0; i < SAMPLES; i++) {
    const trips = client.roundTrips;
    const blocks = ownedBlocks();
    await postAddress(countSocket);
    (ownedBlocks() > blocks ? claimTrips : steadyTrips).push(client.roundTrips - trips);
  }
  await ipam.stop();
  await app.close();

  // 2. Baselines, in the same run: one raw etcd transaction, small, and shaped exactly like an
  //    allocation (compare the block's revision and the handle's absence, put a full block and a handle).
  const raw = new EtcdClient({ endpoints: [etcd.endpoint] });
  const fullBlock = (await store.snapshot()).blocks.find((b) => b.value.unallocated.length === 0)!;
  const blockValue = Buffer.from(JSON.stringify(fullBlock.value, (_k, v) => (typeof v === 'bigint' ? Number(v) : v)));
  const rawTxn = (value: Buffer) => {
    let revision = '0';
    return async (i: number) => {
      const r = await raw.txn({
        compare: [
          { key: Buffer.from('/bench/block'), target: 'MOD', result: 'EQUAL', mod_revision: revision },
          { key: Buffer.from(`/bench/handle/${value.length}/${i}`), target: 'VERSION', result: 'EQUAL', version: 0 },
        ],
        success: [{ request_put: { key: Buffer.from('/bench/block'), value } }, { request_put: { key: Buffer.from(`/bench/handle/${value.length}/${i}`), value: Buffer.from('{"block":{"10.0.0.0/26":1}}') } }],
      });
      revision = r.succeeded ? r.header.revision : (await raw.range({ key: Buffer.from('/bench/block') })).kvs[0]?.mod_revision ?? '0';
    };
  };
  // 3. RequestAddress against the real daemon process, interleaved with the two baselines so that
  //    etcd's own drift (disk, database growth) hits all three alike.
  const daemon = await startDaemon('bench-node', etcd.endpoint, dir);
  const small = rawTxn(Buffer.from('x'.repeat(200)));
  const shaped = rawTxn(blockValue);
  const rawSmall: number[] = [];
  const rawShaped: number[] = [];
  const requestTimes: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    rawSmall.push(await timed(() => small(i)));
    rawShaped.push(await timed(() => shaped(i)));
    requestTimes.push(await timed(() => postAddress(daemon.socket)));
  }
  const throughput: Record<string, number> = {};
  for (const clients of [1, 4, 16]) {
    const perClient = Math.ceil(1000 / clients);
    const elapsed = await timed(() => Promise.all(Array.from({ length: clients }, async () => {
      for (let i = 0; i < perClient; i++) await postAddress(daemon.socket);
    })));
    throughput[`${clients}`] = Math.round((perClient * clients) / (elapsed / 1000));
  }
  daemon.stop();

  // 4. Does cost grow with what is allocated? First vs last thousand of TOTAL, on a fresh node.
  const grower = await startDaemon('bench-grow', etcd.endpoint, dir);
  const thousands: number[] = [];
  const rawHundreds: number[] = [];
  const growShaped = rawTxn(blockValue);
  for (let t = 0; t < TOTAL / 1000; t++) {
    thousands.push(await timed(async () => {
      for (let i = 0; i < 1000; i++) await postAddress(grower.socket);
    }));
    // etcd's own cost at this point, for comparison: its database grows with every write.
    rawHundreds.push(await timed(async () => {
      for (let i = 0; i < 100; i++) await growShaped(t * 1000 + i);
    }));
  }
  grower.stop();

  const result = {
    when: new Date().toISOString(),
    machine: `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown cpu'}`,
    etcd: execFileSync('etcd', ['--version']).toString().split('\n')[0],
    git: (() => { try { return execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim(); } catch { return 'unknown'; } })(),
    samples: SAMPLES,
    rawTxnSmall: { p50: percentile(rawSmall, 50), p99: percentile(rawSmall, 99) },
    rawTxnAllocationShaped: { p50: percentile(rawShaped, 50), p99: percentile(rawShaped, 99), blockBytes: blockValue.length },
    requestAddress: { p50: percentile(requestTimes, 50), p99: percentile(requestTimes, 99) },
    p50RatioToSmall: percentile(requestTimes, 50) / percentile(rawSmall, 50),
    p50RatioToShaped: percentile(requestTimes, 50) / percentile(rawShaped, 50),
    roundTrips: {
      steadyMean: steadyTrips.reduce((a, b) => a + b, 0) / steadyTrips.length,
      steadyMax: Math.max(...steadyTrips),
      claimMean: claimTrips.length ? claimTrips.reduce((a, b) => a + b, 0) / claimTrips.length : 0,
      claimMax: claimTrips.length ? Math.max(...claimTrips) : 0,
      claims: claimTrips.length,
    },
    throughputPerSecond: throughput,
    growth: {
      firstThousandMs: thousands[0]!,
      lastThousandMs: thousands.at(-1)!,
      ratio: thousands.at(-1)! / thousands[0]!,
      rawTxnRatio: rawHundreds.at(-1)! / rawHundreds[0]!,
    },
  };
  console.log(`machine            ${result.machine}; ${result.etcd}; git ${result.git}`);
  console.log(`raw etcd txn       small: p50 ${ms(result.rawTxnSmall.p50)}  p99 ${ms(result.rawTxnSmall.p99)}; allocation-shaped (${blockValue.length} B block + handle): p50 ${ms(result.rawTxnAllocationShaped.p50)}  p99 ${ms(result.rawTxnAllocationShaped.p99)}`);
  console.log(`RequestAddress     p50 ${ms(result.requestAddress.p50)}  p99 ${ms(result.requestAddress.p99)}  (p50 ratio ${result.p50RatioToShaped.toFixed(2)}x the allocation-shaped txn, ${result.p50RatioToSmall.toFixed(2)}x the small one; target <= 2)`);
  console.log(`etcd round trips   steady ${result.roundTrips.steadyMean.toFixed(2)} (max ${result.roundTrips.steadyMax}, target <= 2); claiming a block ${result.roundTrips.claimMean.toFixed(2)} (max ${result.roundTrips.claimMax}, ${result.roundTrips.claims} claims, target <= 6)`);
  console.log(`throughput         ${Object.entries(throughput).map(([c, v]) => `${c} client(s): ${v}/s`).join(', ')}`);
  console.log(`growth             first 1000: ${ms(result.growth.firstThousandMs)}, last 1000 of ${TOTAL}: ${ms(result.growth.lastThousandMs)} (ratio ${result.growth.ratio.toFixed(2)}, target <= 1.2; the raw txn at the same points: ${result.growth.rawTxnRatio.toFixed(2)})`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/ipam-${result.when.slice(0, 10)}.json`, `${JSON.stringify(result, null, 2)}\n`);

  raw.close();
  client.close();
  await etcd.destroy();
  rmSync(dir, { recursive: true, force: true });
}

// etcd, the daemon (whose policy agent programs iptables) and the clients share a namespace of their own.
runInOwnNetns('calico-bench-ipam', main);
