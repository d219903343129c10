import { beforeEach, describe, expect, it } from 'vitest';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { defaultProfile, WorkloadEndpoint, workloadEndpointName } from '../src/domain/endpoint-model.js';
import { calicoctlHere } from './helpers/daemon.js';
import { etcdForSuite } from './helpers/ipam.js';

/**
 * calicoctl endpoint show / endpoint ID profile append|remove|set|show against a real etcd holding
 * WorkloadEndpoints as the daemon writes them; the container words need Docker (policy-endpoints.docker).
 */

const suite = etcdForSuite();
let store: EtcdEndpointStore;
// No Docker here: a network's profile is found by the name in its annotation.
const env = (): Record<string, string> => ({ ETCD_ENDPOINTS: suite.etcd.endpoint, NODENAME: 'host-a', DOCKER_HOST: 'unix:///nonexistent/docker.sock' });
const ctl = (...args: string[]) => calicoctlHere(args, env());

const ID_A1 = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
const ID_A2 = 'a1b2ffff00000000000000000000000000000000000000000000000000000000';
const ID_B = 'b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0';
const NET_ID = 'f00df00df00df00df00df00df00df00df00df00df00df00df00df00df00df00d';

function wep(node: string, id: string, workload: string, ips: string[], profiles: string[]): WorkloadEndpoint {
  return {
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: workloadEndpointName(node, id), namespace: 'libnetwork', labels: {} },
    // The workload is the container's name (the lead's change); the type still says 'libnetwork'.
    spec: { orchestrator: 'libnetwork', workload: workload as 'libnetwork', node, endpoint: id, interfaceName: `cali${id.slice(0, 11)}`, ipNetworks: ips, mac: 'ee:ee:ee:ee:ee:ee', profiles },
  };
}

const stored = async (id: string, node = 'host-a') => (await store.getEndpoint(workloadEndpointName(node, id)))!;
const profilesOf = async (id: string, node = 'host-a') => (await stored(id, node)).value.spec.profiles;

beforeEach(async () => {
  store = new EtcdEndpointStore(suite.ctx.etcd);
  await store.createProfile(defaultProfile(NET_ID, 'frontend'));
  for (const name of ['PROF_A_C_E', 'PROF_B', 'PROF_D']) expect((await ctl('profile', 'add', name)).status).toBe(0);
  await store.createEndpoint(wep('host-a', ID_A1, 'workload-A', ['10.61.0.1/32', 'fd00:61::1/128'], [NET_ID]));
  await store.createEndpoint(wep('host-a', ID_A2, 'workload-C', ['10.61.0.2/32'], [NET_ID]));
  await store.createEndpoint(wep('host-b', ID_B, 'workload-B', ['10.61.1.1/32'], [NET_ID]));
});

describe('calicoctl endpoint show', () => {
  it('counts workloads and endpoints per host and orchestrator', async () => {
    const result = await ctl('endpoint', 'show');
    expect(result).toMatchObject({ status: 0, stderr: '' });
    expect(result.stdout).toMatch(/\|\s+Hostname\s+\|\s+Orchestrator ID\s+\|\s+Number of Workloads\s+\|\s+Number of Endpoints\s+\|/);
    expect(result.stdout).toMatch(/\| host-a +\| libnetwork +\| 2 +\| 2 +\|\n\| host-b +\| libnetwork +\| 1 +\| 1 +\|/);
    expect((await ctl('endpoint', 'show', '--host=host-b')).stdout).not.toMatch(/host-a/);
  });

  it('--detailed lists every endpoint: workload, ID, addresses one a line, MAC, profiles by name, state', async () => {
    const result = await ctl('endpoint', 'show', '--detailed');
    expect(result.status).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines[1]).toMatch(/^\|\s+Hostname\s+\|\s+Orchestrator ID\s+\|\s+Workload ID\s+\|\s+Endpoint ID\s+\|\s+Addresses\s+\|\s+MAC\s+\|\s+Profiles\s+\|\s+State\s+\|$/);
    const row = lines.findIndex((l) => l.includes(ID_A1));
    expect(lines[row]).toMatch(new RegExp(`^\\| host-a +\\| libnetwork +\\| workload-A +\\| ${ID_A1} \\| 10\\.61\\.0\\.1/32 +\\| ee:ee:ee:ee:ee:ee \\| frontend +\\| active \\|$`));
    // The second address on a line of its own, in the same row.
    expect(lines[row + 1]).toMatch(/^\| +\| +\| +\| +\| fd00:61::1\/128 +\| +\| +\| +\|$/);
    expect(result.stdout).toMatch(new RegExp(`\\| host-b +\\| libnetwork +\\| workload-B +\\| ${ID_B} \\|`));
    const filtered = await ctl('endpoint', 'show', '--detailed', '--workload', 'workload-C');
    expect(filtered.stdout).toContain(ID_A2);
    expect(filtered.stdout).not.toContain(ID_A1);
  });
});

describe('calicoctl endpoint ID profile', () => {
  it('append, show, remove and set, by ID or a unique prefix, profiles by name or network name', async () => {
    expect(await ctl('endpoint', ID_A1, 'profile', 'append', 'PROF_A_C_E')).toMatchObject({ status: 0, stdout: 'Profile(s) PROF_A_C_E appended.\n' });
    expect(await profilesOf(ID_A1)).toEqual([NET_ID, 'PROF_A_C_E']);
    const show = await ctl('endpoint', 'a1b2c', 'profile', 'show');
    expect(show).toMatchObject({ status: 0, stdout: '+------------+\n|    Name    |\n+------------+\n| PROF_A_C_E |\n| frontend   |\n+------------+\n' });
    expect(await ctl('endpoint', 'b0b0', 'profile', 'append', 'PROF_B', 'PROF_D')).toMatchObject({ status: 0, stdout: 'Profile(s) PROF_B, PROF_D appended.\n' });
    expect(await profilesOf(ID_B, 'host-b')).toEqual([NET_ID, 'PROF_B', 'PROF_D']);
    expect(await ctl('endpoint', 'b0b0', 'profile', 'remove', 'frontend', 'PROF_D')).toMatchObject({ status: 0, stdout: 'Profile(s) frontend,PROF_D removed.\n' });
    expect(await profilesOf(ID_B, 'host-b')).toEqual(['PROF_B']);
    expect(await ctl('endpoint', ID_A2, 'profile', 'set', 'PROF_A_C_E', 'frontend')).toMatchObject({ status: 0, stdout: 'Profile(s) set to PROF_A_C_E, frontend.\n' });
    expect(await profilesOf(ID_A2)).toEqual(['PROF_A_C_E', NET_ID]);
    expect(await ctl('endpoint', ID_A2, 'profile', 'set')).toMatchObject({ status: 0, stdout: 'Removed all profiles from endpoint.\n' });
    expect(await profilesOf(ID_A2)).toEqual([]);
    expect(await ctl('endpoint', ID_A2, 'profile', 'show')).toMatchObject({ status: 0, stdout: 'Endpoint has no profiles associated with it.\n' });
    // The rest of the endpoint is as it was.
    expect((await stored(ID_A1)).value.spec).toMatchObject({ workload: 'workload-A', ipNetworks: ['10.61.0.1/32', 'fd00:61::1/128'], interfaceName: `cali${ID_A1.slice(0, 11)}` });
    // profile show --detailed lists the endpoint under its own profile.
    expect((await ctl('profile', 'show', '--detailed')).stdout).toMatch(new RegExp(`\\| PROF_A_C_E +\\| host-a +\\| libnetwork +\\| workload-A +\\| ${ID_A1} \\|`));
  });

  it('refuses an unknown or ambiguous endpoint, an unknown or repeated profile, a duplicate append or an absent remove, writing nothing', async () => {
    const before = await Promise.all([stored(ID_A1), stored(ID_A2), stored(ID_B, 'host-b')]);
    const refusals: [string[], number, RegExp][] = [
      [['endpoint', 'deadbeef', 'profile', 'append', 'PROF_B'], 1, /^Failed to append profiles to endpoint\.\nEndpoint deadbeef is unknown to Calico\.\n$/],
      [['endpoint', 'deadbeef', 'profile', 'show'], 1, /^Failed to list profiles in endpoint\.\nEndpoint deadbeef is unknown to Calico\.\n$/],
      [['endpoint', 'a1b2', 'profile', 'set', 'PROF_B'], 1, new RegExp(`^Failed to set profiles for endpoint\\.\\nMore than 1 endpoint matches the provided criteria\\.  Please provide additional parameters to refine the search\\.\\nEndpoints whose ID starts with a1b2:\\n  ${ID_A1} \\(host host-a, workload workload-A\\)\\n  ${ID_A2} \\(host host-a, workload workload-C\\)\\n$`)],
      [['endpoint', 'a1b2', 'profile', 'remove', 'frontend'], 1, /^Failed to remove profiles from endpoint\.\nMore than 1 endpoint/],
      [['endpoint', ID_A1, 'profile', 'append', 'PROF_B', 'NO_SUCH'], 1, /^Profile with name NO_SUCH was not found\.\n$/],
      [['endpoint', ID_A1, 'profile', 'set', 'NO_SUCH'], 1, /^Profile with name NO_SUCH was not found\.\n$/],
      [['endpoint', ID_A1, 'profile', 'append', 'PROF_B', 'PROF_B'], 1, /^Profile with name PROF_B was specified more than once\.\n$/],
      [['endpoint', ID_A1, 'profile', 'set', 'frontend', NET_ID], 1, new RegExp(`^Profile with name ${NET_ID} was specified more than once\\.\\n$`)],
      [['endpoint', ID_A1, 'profile', 'append', 'bad name'], 1, /^invalid profile name "bad name": use letters, digits, '\.', '_' and '-' only\n$/],
      [['endpoint', ID_A1, 'profile', 'frobnicate', 'PROF_B'], 1, /unknown endpoint command/],
      [['endpoint', ID_A1, 'profile', 'constructor'], 1, /unknown endpoint command/],
      [['endpoint', ID_A1, 'profile', 'set', 'PROF_B', '--hots=host-a'], 1, /unknown option --hots/],
      [['endpoint', ID_A1, 'profile', 'set', 'PROF_B', '--host=host-b'], 1, new RegExp(`^Failed to set profiles for endpoint\\.\\nEndpoint ${ID_A1} is unknown to Calico\\.\\n$`)],
    ];
    for (const [args, status, message] of refusals) {
      const result = await ctl(...args);
      expect(result.status, args.join(' ')).toBe(status);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stdout, args.join(' ')).toBe('');
    }
    // Calico's notices, exit 0, and nothing written either.
    expect(await ctl('endpoint', ID_A1, 'profile', 'append', 'PROF_B', 'frontend')).toMatchObject({ status: 0, stdout: 'Profile frontend is already in endpoint profile list\n' });
    expect(await ctl('endpoint', ID_A1, 'profile', 'remove', 'PROF_D')).toMatchObject({ status: 0, stdout: 'Profile PROF_D is not in endpoint profile list.\n' });
    expect(await ctl('endpoint', ID_A1, 'profile', 'append')).toMatchObject({ status: 0, stdout: 'No profile specified.\n' });
    const after = await Promise.all([stored(ID_A1), stored(ID_A2), stored(ID_B, 'host-b')]);
    expect(after).toEqual(before);
  });

  it('concurrent appends from separate clients all land (compare-and-swap, retried)', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `P${i}`);
    for (const name of names) expect((await ctl('profile', 'add', name)).status).toBe(0);
    const results = await Promise.all(names.map((name) => ctl('endpoint', ID_B, 'profile', 'append', name)));
    expect(results.map((r) => r.status)).toEqual(names.map(() => 0));
    expect([...(await profilesOf(ID_B, 'host-b'))].sort()).toEqual([NET_ID, ...names].sort());
  });
});
