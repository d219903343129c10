import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clusterForSuite, until } from './helpers/cluster.js';
import type { DockerHost } from './helpers/docker-host.js';

/**
 * Calico's policy model with real packets, on three Docker 20.10 hosts: a labelled three-tier app
 * (frontend, backend, db, one per host) on one network, GlobalNetworkPolicies and tiers applied with
 * calicoctl, and TCP and ICMP between the containers across hosts.
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const PORTS = [80, 8080, 5432];
const SERVER = `for p in ${PORTS.join(' ')}; do (while true; do echo hello | nc -l -p $p; done) & done; sleep 100000`;
const cluster = clusterForSuite({
  name: 'tp',
  hosts: 3,
  subnet: '10.59.0',
  pools: [{ cidr: '10.62.0.0/16', name: 'tp-pool' }],
  env: { CALICO_LIBNETWORK_LABEL_ENDPOINTS: 'true' },
});
const where = new Map<string, DockerHost>();
const address = new Map<string, string>();

const tcp = (from: string, to: string, port: number): boolean => where.get(from)!.docker(['exec', from, 'sh', '-c', `nc -w 1 ${address.get(to)} ${port} </dev/null`], 15_000).stdout.includes('hello');
const ping = (from: string, to: string): boolean => where.get(from)!.docker(['exec', from, 'ping', '-c', '1', '-W', '1', address.get(to)!], 15_000).status === 0;

type Spec = Record<string, unknown>;
interface Doc {
  kind: string;
  apiVersion: 'projectcalico.org/v3';
  metadata: { name: string; labels?: Record<string, string> };
  spec: Spec;
}
const gnp = (name: string, spec: Spec): Doc => ({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec });
const tier = (name: string, spec: Spec): Doc => ({ kind: 'Tier', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec });
const written: Doc[] = [];

/** `calicoctl apply -f -` on host 1, as a user would: the policies reach every host through etcd. */
async function apply(...docs: Doc[]): Promise<void> {
  const result = cluster.hosts[0]!.calicoctl(['apply', '-f', '-'], docs.map((d) => JSON.stringify(d)).join('\n---\n'));
  if (result.status !== 0) throw new Error(`calicoctl apply: ${result.stderr}`);
  written.push(...docs);
}

/** The flows of the app that pass, as `from>to:port` (ping as `from>to:icmp`). */
function flows(): string[] {
  const pairs = [['fe', 'be'], ['be', 'db'], ['fe', 'db'], ['db', 'fe'], ['be', 'fe']];
  const open: string[] = [];
  for (const [from, to] of pairs) {
    for (const port of PORTS) if (tcp(from!, to!, port)) open.push(`${from}>${to}:${port}`);
    if (ping(from!, to!)) open.push(`${from}>${to}:icmp`);
  }
  return open;
}

const ALL = ['fe>be', 'be>db', 'fe>db', 'db>fe', 'be>fe'].flatMap((p) => [...PORTS.map((port) => `${p}:${port}`), `${p}:icmp`]);

beforeAll(async () => {
  for (const h of cluster.hosts) await until(`${h.node} mesh`, () => (h.calicoctl(['node', 'status']).stdout.match(/Established/g) ?? []).length === 2, 30_000);
  for (const h of cluster.hosts) h.dockerOk(['network', 'create', 'app', ...CALICO]);
  const roles: [string, number, string][] = [['fe', 1, 'frontend'], ['be', 2, 'backend'], ['db', 3, 'db']];
  for (const [name, n, role] of roles) {
    const host = cluster.hosts[n - 1]!;
    // The db names its port 5432 `pg` for policies (a named port).
    const named = role === 'db' ? ['--label', 'org.projectcalico.port.pg=5432/tcp'] : [];
    host.dockerOk(['run', '-d', '--net', 'app', '--name', name, '--label', `org.projectcalico.label.role=${role}`, ...named, 'busybox:local', 'sh', '-c', SERVER]);
    where.set(name, host);
    address.set(name, JSON.parse(host.dockerOk(['inspect', '--format', '{{json .NetworkSettings.Networks.app}}', name])).IPAddress);
  }
  // The labels reach the endpoints from Docker in the background.
  await until('labelled endpoints', async () => (await cluster.endpoints.listEndpoints()).filter((e) => e.value.metadata.labels.role).length === 3, 10_000);
  await until('fe reaches db', () => tcp('fe', 'db', 5432), 15_000);
}, 120_000);

afterEach(async () => {
  // Policies before their tiers (a tier with policies cannot be deleted).
  const docs = written.splice(0).reverse().sort((a, b) => Number(a.kind === 'Tier') - Number(b.kind === 'Tier'));
  for (const d of docs) cluster.hosts[0]!.calicoctl(['delete', d.kind, d.metadata.name, '--skip-not-exists']);
  // Back to the network's profile alone: everything flows.
  await until('policies gone', () => tcp('db', 'fe', 80) && tcp('fe', 'be', 80), 10_000);
});

describe('GlobalNetworkPolicy by label, across hosts', () => {
  it('a default deny, then allows by label: exactly the allowed flows pass, TCP and ICMP (only echo requests)', async () => {
    expect(flows()).toEqual(ALL);
    await apply(
      gnp('default-deny', { order: 1000, selector: 'has(role)', types: ['Ingress', 'Egress'] }),
      gnp('allow-egress', { order: 10, selector: 'has(role)', egress: [{ action: 'Allow' }] }),
      gnp('fe-to-be', {
        order: 20,
        selector: 'role == "backend"',
        ingress: [
          { action: 'Allow', protocol: 'TCP', source: { selector: 'role == "frontend"' }, destination: { ports: [8080] } },
          { action: 'Allow', protocol: 'ICMP', icmp: { type: 8 }, source: { selector: 'role == "frontend"' } },
        ],
      }),
      gnp('be-to-db', { order: 20, selector: 'role == "db"', ingress: [{ action: 'Allow', protocol: 'TCP', source: { selector: 'role in {"backend", "batch"}' }, destination: { ports: ['5000:5500'] } }] }),
    );
    await until('the policies hold', () => !tcp('fe', 'db', 5432), 5_000);
    expect(flows()).toEqual(['fe>be:8080', 'fe>be:icmp', 'be>db:5432']);
  });

  it("a Deny beats the network profile's Allow; Pass hands the rest to the profile", async () => {
    await apply(gnp('no-fe-to-db', { selector: 'role == "db"', ingress: [{ action: 'Deny', source: { selector: 'role == "frontend"' } }, { action: 'Pass' }] }));
    await until('the deny holds', () => !tcp('fe', 'db', 5432), 5_000);
    expect(tcp('be', 'db', 5432)).toBe(true);
    expect(ping('fe', 'db')).toBe(false);
    expect(tcp('fe', 'be', 80)).toBe(true);
  });

  it("Pass to the next tier; a tier's default action; order and name ties; Log logs and lets the packet on", async () => {
    // Tier security before default: its policy logs everything to the db, and passes the backend on.
    await apply(
      tier('security', { order: 100, defaultAction: 'Deny' }),
      gnp('security.db-guard', { tier: 'security', order: 1, selector: 'role == "db"', ingress: [{ action: 'Log' }, { action: 'Pass', source: { selector: 'role == "backend"' } }] }),
    );
    // No rule matched the frontend's packets: the tier's default action (Deny) drops them.
    await until('the tier denies the frontend', () => !tcp('fe', 'db', 5432), 5_000);
    expect(tcp('be', 'db', 5432)).toBe(true);
    const logged = (): number => {
      const out = where.get('db')!.onHost(['iptables', '-L', '-v', '-n', '-x']).stdout;
      return [...out.matchAll(/^\s*(\d+)\s+\d+\s+LOG .*calico-packet/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    };
    const before = logged();
    expect(tcp('be', 'db', 5432)).toBe(true);
    expect(logged()).toBeGreaterThan(before);
    // The tier's default action Pass: the frontend now goes on to the default tier (none there) and the profile.
    await apply(tier('security', { order: 100, defaultAction: 'Pass' }));
    await until('the tier passes the frontend', () => tcp('fe', 'db', 5432), 5_000);
    // Order, then name: with equal orders `a-allow` comes before `b-deny`, and a lower order wins over both.
    await apply(
      gnp('b-deny', { order: 5, selector: 'role == "backend"', ingress: [{ action: 'Deny', protocol: 'TCP', destination: { ports: [80] } }] }),
      gnp('a-allow', { order: 5, selector: 'role == "backend"', ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [80] } }] }),
    );
    await until('a-allow first', () => tcp('fe', 'be', 80), 5_000);
    await apply(gnp('z-deny', { order: 1, selector: 'role == "backend"', ingress: [{ action: 'Deny', protocol: 'TCP', destination: { ports: [80] } }] }));
    await until('the lower order first', () => !tcp('fe', 'be', 80), 5_000);
  });

  it('a GlobalNetworkSet selected by label, notNets, and a named port', async () => {
    await until('the db names its port', async () => (await cluster.endpoints.listEndpoints()).some((e) => e.value.spec.ports?.some((p) => p.name === 'pg' && p.port === 5432)), 10_000);
    const partners: Doc = { kind: 'GlobalNetworkSet', apiVersion: 'projectcalico.org/v3', metadata: { name: 'partners', labels: { partner: 'yes' } }, spec: { nets: [address.get('fe')!] } };
    await apply(
      partners,
      gnp('db-in', {
        selector: 'role == "db"',
        ingress: [
          { action: 'Allow', protocol: 'TCP', source: { selector: 'partner == "yes"' }, destination: { ports: ['pg'] } },
          { action: 'Allow', protocol: 'TCP', source: { notNets: [`${address.get('be')}/32`] }, destination: { ports: [80] } },
        ],
      }),
    );
    await until('the policy holds', () => !tcp('be', 'db', 5432), 5_000);
    expect(tcp('fe', 'db', 5432)).toBe(true);
    expect(tcp('fe', 'db', 80)).toBe(true);
    expect(tcp('be', 'db', 80)).toBe(false);
    expect(tcp('fe', 'db', 8080)).toBe(false);
  });

  it('a policy change takes effect on live traffic in under 500 ms', async () => {
    expect(tcp('fe', 'be', 8080)).toBe(true);
    // From the moment calicoctl has written it to etcd.
    await apply(gnp('cut', { selector: 'role == "backend"', ingress: [{ action: 'Deny', protocol: 'TCP', destination: { ports: [8080] } }, { action: 'Pass' }] }));
    const written = Date.now();
    let seen: number | undefined;
    while (seen === undefined && Date.now() - written < 5_000) {
      const started = Date.now();
      if (!tcp('fe', 'be', 8080)) seen = started - written;
    }
    expect(seen).toBeDefined();
    expect(seen!).toBeLessThan(500);
  });
});
