import { execFileSync, execSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TestEtcd } from './helpers/etcd.js';
import { calicoctl, post, TestDaemon } from './helpers/daemon.js';

const certs = mkdtempSync(join(tmpdir(), 'calico-test-tls-'));
const daemons: TestDaemon[] = [];

/** A CA of our own, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makeCertificates(): { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string } {
  const f = (name: string): string => join(certs, name);
  const ssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test-ca', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${who}`, '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`)]);
    ssl(['x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f(`${who}.ext`), '-out', f(`${who}.crt`)]);
  }
  return { ca: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key') };
}

afterAll(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.destroy()));
  rmSync(certs, { recursive: true, force: true });
});

describe('an etcd that demands client certificates', () => {
  it('is served with the ETCD_*_FILE variables and refused cleanly without them', async () => {
    const pki = makeCertificates();
    const etcd = new TestEtcd({ caFile: pki.ca, certFile: pki.serverCert, keyFile: pki.serverKey });
    await etcd.start();
    try {
      const tlsEnv = { ETCD_ENDPOINTS: etcd.endpoint, ETCD_CA_CERT_FILE: pki.ca, ETCD_CERT_FILE: pki.clientCert, ETCD_KEY_FILE: pki.clientKey };
      const added = calicoctl(['pool', 'add', '10.77.0.0/24', '--name', 'tls-pool'], tlsEnv);
      expect(added.stderr).toBe('');
      expect(added.status).toBe(0);

      const good = new TestDaemon({ node: 'tls-node', env: tlsEnv });
      daemons.push(good);
      await good.start();
      await good.ready();
      const reply = await post(good.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
      expect(reply.status, reply.text).toBe(200);
      expect(reply.body.Address).toMatch(/^10\.77\.0\.\d+\/32$/);

      const noCerts = new TestDaemon({ node: 'no-certs', env: { ETCD_ENDPOINTS: etcd.endpoint, ETCD_CA_CERT_FILE: pki.ca } });
      daemons.push(noCerts);
      await noCerts.start();
      const started = Date.now();
      const refused = await post(noCerts.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(refused.status).toBe(500);
      expect(refused.body.Err).toMatch(/^etcd .* at https:\/\/127\.0\.0\.1:\d+ failed/);
      expect(noCerts.child!.exitCode).toBeNull();

      const cliRefused = calicoctl(['pool', 'show'], { ETCD_ENDPOINTS: etcd.endpoint, ETCD_CA_CERT_FILE: pki.ca });
      expect(cliRefused.status).toBe(1);
      expect(cliRefused.stderr).toMatch(/^Error: etcd .* failed/);
    } finally {
      await etcd.destroy();
    }
  });
});

describe('no ETCD_ENDPOINTS and nothing on 127.0.0.1:2379', () => {
  it('runs an embedded etcd, serves from it, and stops it on shutdown', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'calico-test-embedded-'));
    // A network namespace of its own: port 2379 there is free, and nothing leaks to the host.
    const daemon = new TestDaemon({
      node: 'solo',
      env: { CALICO_ETCD_DATA_DIR: dataDir, NO_DEFAULT_POOLS: 'false' },
      wrap: ['unshare', '--net', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"'],
    });
    daemons.push(daemon);
    try {
      await daemon.start();
      await daemon.ready();
      expect(daemon.log).toMatch(/started embedded etcd/);
      const etcdPid = Number(/"pid":(\d+),"dataDir"/.exec(daemon.log)![1]);
      expect(execSync(`ps -o comm= -p ${etcdPid}`).toString().trim()).toBe('etcd');
      const reply = await post(daemon.ipamSocket, 'IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null });
      expect(reply.status, reply.text).toBe(200);
      expect(reply.body.Address).toMatch(/^192\.168\.\d+\.\d+\/32$/);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      expect(() => execSync(`ps -p ${etcdPid}`)).toThrow();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
