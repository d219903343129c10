import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolService } from '../src/services/ipam/pool-service.js';
import { post, TestDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/etcd.js';
import { etcdForSuite } from './helpers/ipam.js';
import { relayOutOf } from './helpers/relay.js';

const suite = etcdForSuite({ wipeEachTest: false });
const dir = mkdtempSync(join(tmpdir(), 'calico-test-metrics-'));
let daemon: TestDaemon;
let relays: ChildProcess[] = [];
let prometheus: ChildProcess | undefined;
let prometheusUrl = '';

/**
 * Debian's Prometheus, run by the test itself (never the packaged service): its own config, data
 * dir and port, scraping the daemon every second.
 */
async function startPrometheus(target: string): Promise<void> {
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: calico-libnetwork\n    static_configs:\n      - targets: ['${target}']\n`,
  );
  const logFile = join(dir, 'prometheus.log');
  const fd = openSync(logFile, 'w');
  prometheus = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  prometheusUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (prometheus.exitCode !== null) throw new Error(`prometheus exited ${prometheus.exitCode}: ${readFileSync(logFile, 'utf8')}`);
    const ready = await fetch(`${prometheusUrl}/-/ready`).catch(() => undefined);
    if (ready?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`prometheus not ready: ${readFileSync(logFile, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stopPrometheus(): Promise<void> {
  const child = prometheus;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

/** One instant query; the value of each series it returns, by the series' labels. */
async function query(promql: string): Promise<{ labels: Record<string, string>; value: number }[]> {
  const reply = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await reply.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`query ${promql} failed: ${JSON.stringify(body)}`);
  return body.data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
}

/** Queries until the one series `promql` selects satisfies `expected` (Prometheus scrapes every second). */
async function eventually(promql: string, expected: (value: number) => boolean, withinMs = 15_000): Promise<number> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  for (;;) {
    const result = await query(promql);
    last = result;
    if (result.length === 1 && expected(result[0]!.value)) return result[0]!.value;
    if (Date.now() > deadline) throw new Error(`${promql}: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  await new PoolService(suite.ctx.store).add({ cidr: '10.70.0.0/16', name: 'metrics-pool' });
  daemon = new TestDaemon({ node: 'metrics-node', etcd: suite.etcd.endpoint, env: { FELIX_PROMETHEUSMETRICSENABLED: 'true', DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
  await daemon.start();
  await daemon.ready();
  const here = await freePort();
  relays = await relayOutOf(['ip', 'netns', 'exec', daemon.namespace!], '127.0.0.1:9091', join(dir, 'metrics.sock'), `127.0.0.1:${here}`);
  await startPrometheus(`127.0.0.1:${here}`);
});

afterAll(async () => {
  await stopPrometheus();
  for (const relay of relays) relay.kill('SIGKILL');
  await daemon?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const endpointId = (n: number): string => `${n}`.repeat(64).slice(0, 64);

describe('Prometheus metrics (FELIX_PROMETHEUSMETRICSENABLED=true, port 9091)', () => {
  it('a real Prometheus scrapes Felix\'s names and the plugin\'s own, with the values the requests made', async () => {
    const addresses: string[] = [];
    for (let i = 0; i < 3; i++) {
      const reply = await post(daemon.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
      expect(reply.status, reply.text).toBe(200);
      addresses.push(reply.body.Address);
    }
    for (const [i, address] of addresses.slice(0, 2).entries()) {
      const reply = await post(daemon.networkSocket, 'NetworkDriver.CreateEndpoint', { NetworkID: 'metrics-net', EndpointID: endpointId(i + 1), Interface: { Address: address, MacAddress: '' }, Options: {} });
      expect(reply.status, reply.text).toBe(200);
    }
    expect((await post(daemon.networkSocket, 'NetworkDriver.NoSuchMethod', {})).status).toBe(404);

    await eventually('felix_active_local_endpoints', (v) => v === 2);
    await eventually('calico_libnetwork_docker_requests_total{method="IpamDriver.RequestAddress",outcome="served"}', (v) => v === 3);
    await eventually('calico_libnetwork_docker_requests_total{method="NetworkDriver.CreateEndpoint",outcome="served"}', (v) => v === 2);
    await eventually('calico_libnetwork_docker_requests_total{outcome="refused"}', (v) => v === 1);
    expect((await query('calico_libnetwork_docker_requests_total{outcome="refused"}'))[0]!.labels.method).toBe('unknown');
    await eventually('calico_libnetwork_docker_request_duration_seconds_count{method="IpamDriver.RequestAddress"}', (v) => v === 3);
    await eventually('calico_libnetwork_ipam_addresses_in_use{pool="metrics-pool"}', (v) => v === 3);
    await eventually('calico_libnetwork_ipam_blocks_owned{pool="metrics-pool"}', (v) => v === 1);
    await eventually('calico_libnetwork_ipam_block_claims_total', (v) => v === 1);
    await eventually('felix_cluster_num_hosts', (v) => v === 1);
    await eventually('sum(calico_libnetwork_etcd_round_trips_total)', (v) => v > 0);
    await eventually('sum(calico_libnetwork_etcd_errors_total) or vector(0)', (v) => v === 0);
    // The policy agent programs the namespace's iptables and ipsets through the counted runner.
    const restores = await eventually('felix_iptables_restore_calls', (v) => v > 0);
    await eventually('felix_iptables_restore_errors', (v) => v === 0);
    await eventually('felix_ipset_calls', (v) => v > 0);
    await eventually('felix_int_dataplane_apply_time_seconds_count', (v) => v > 0);
    await eventually('felix_int_dataplane_failures', (v) => v === 0);
    console.log(`scraped: 2 local endpoints, 3 RequestAddress, ${restores} iptables-restore calls`);
  });

  it('metrics off by default: nothing listens on 9091', async () => {
    const plain = new TestDaemon({ node: 'metrics-off', etcd: suite.etcd.endpoint, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
    try {
      await plain.start();
      await plain.ready();
      expect(plain.listeningTcp()).toContain('127.0.0.1:9099');
      expect(plain.listeningTcp().filter((a) => a.endsWith(':9091'))).toEqual([]);
    } finally {
      await plain.destroy();
    }
  });
});

