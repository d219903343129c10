import { beforeAll, describe, expect, it } from 'vitest';
import { clusterForSuite, until } from './helpers/cluster.js';
import type { DockerHost } from './helpers/docker-host.js';

/**
 * The seed walkthrough's endpoint profiles on two Docker hosts, with real packets: containers on one
 * network get profiles of their own (PROF_A_C_E, PROF_B, PROF_D) with `calicoctl container X endpoint-id
 * show` and `calicoctl endpoint ID profile set|append`, and every host's packet filter follows within ~2 s.
 */

const CALICO = ['--driver', 'calico', '--ipam-driver', 'calico-ipam'];
const NETWORK = 'walk';
const cluster = clusterForSuite({ name: 'ep', hosts: 2, pools: [{ cidr: '10.61.0.0/16', name: 'ep-pool' }], subnet: '10.62.0' });
const host = (n: number): DockerHost => cluster.hosts[n - 1]!;
const ip = new Map<string, string>();
const where = new Map<string, DockerHost>();
const endpointId = new Map<string, string>();
/** The walkthrough's container names; the tests call them by their letter. */
const container = (letter: string): string => `workload-${letter}`;

function run(on: DockerHost, name: string, network = NETWORK): void {
  on.dockerOk(['run', '-d', '--net', network, '--name', container(name), 'busybox:local', 'sleep', '100000']);
  ip.set(name, JSON.parse(on.dockerOk(['inspect', '--format', `{{json (index .NetworkSettings.Networks "${network}")}}`, container(name)])).IPAddress);
  where.set(name, on);
}

function calicoctl(on: DockerHost, ...args: string[]): string {
  const result = on.calicoctl(args);
  if (result.status !== 0) throw new Error(`calicoctl ${args.join(' ')} on ${on.node}: ${result.stderr}`);
  return result.stdout;
}

/** One ping from each pair's first container to its second, all at once: which got an answer. */
async function pings(pairs: [string, string][]): Promise<boolean[]> {
  return Promise.all(pairs.map(async ([from, to]) => (await where.get(from)!.dockerAsync(['exec', container(from), 'ping', '-c', '1', '-W', '1', ip.get(to)!], 15_000)).status === 0));
}
const allAnswer = async (pairs: [string, string][]): Promise<boolean> => (await pings(pairs)).every(Boolean);
const noneAnswer = async (pairs: [string, string][]): Promise<boolean> => !(await pings(pairs)).some(Boolean);

/** Every ordered pair of distinct members. */
const among = (names: string[]): [string, string][] => names.flatMap((a) => names.filter((b) => b !== a).map((b): [string, string] => [a, b]));
/** Every ordered pair with one side `name` and the other one of `others`. */
const toAndFrom = (name: string, others: string[]): [string, string][] => others.flatMap((o): [string, string][] => [[name, o], [o, name]]);

beforeAll(async () => {
  for (const h of cluster.hosts) await until(`${h.node} mesh`, () => /Established/.test(h.calicoctl(['node', 'status']).stdout), 30_000);
  for (const h of cluster.hosts) h.dockerOk(['network', 'create', NETWORK, ...CALICO]);
  // A, C, E across both hosts; B and D too; F keeps the network's profile throughout.
  run(host(1), 'A');
  run(host(2), 'C');
  run(host(1), 'E');
  run(host(1), 'B');
  run(host(2), 'D');
  run(host(2), 'F');
  host(1).dockerOk(['run', '-d', '--net', 'none', '--name', 'plain', 'busybox:local', 'sleep', '100000']);
}, 180_000);

describe("the seed walkthrough's endpoint profiles", () => {
  it('on one network, every container reaches every other, across hosts', async () => {
    await until('the network reachable across hosts', () => allAnswer([['A', 'C'], ['D', 'E']]), 20_000);
    expect(await allAnswer(among(['A', 'B', 'C', 'D', 'E', 'F']).filter(([a, b]) => a < b))).toBe(true);
  });

  it("container X endpoint-id show gives the container's Calico endpoint ID, or Calico's error", async () => {
    for (const name of ['A', 'B', 'C', 'D', 'E']) {
      const on = where.get(name)!;
      const shown = calicoctl(on, 'container', container(name), 'endpoint-id', 'show');
      const docker = on.dockerOk(['inspect', '--format', `{{(index .NetworkSettings.Networks "${NETWORK}").EndpointID}}`, container(name)]).trim();
      expect(shown).toBe(`${docker}\n`);
      endpointId.set(name, docker);
    }
    // By container ID as well.
    const idOfA = host(1).dockerOk(['inspect', '--format', '{{.Id}}', container('A')]).trim();
    expect(calicoctl(host(1), 'container', idOfA, 'endpoint-id', 'show')).toBe(`${endpointId.get('A')}\n`);
    expect(host(1).calicoctl(['container', 'nosuch', 'endpoint-id', 'show'])).toMatchObject({ status: 1, stdout: '', stderr: 'Container nosuch was not found.\n' });
    expect(host(1).calicoctl(['container', 'plain', 'endpoint-id', 'show'])).toMatchObject({ status: 1, stdout: '', stderr: 'No endpoint was found for plain\n' });
    // C lives on host 2: host 1's Docker does not know it.
    expect(host(1).calicoctl(['container', 'workload-C', 'endpoint-id', 'show'])).toMatchObject({ status: 1, stderr: 'Container workload-C was not found.\n' });
  });

  it('profiles of their own: A, C and E reach each other across hosts, B and D reach nobody and nobody reaches them, within ~2 s', async () => {
    for (const profile of ['PROF_A_C_E', 'PROF_B', 'PROF_D']) expect(calicoctl(host(1), 'profile', 'add', profile)).toBe(`Created profile ${profile}\n`);
    // From either host, by the full ID or a prefix of it.
    const settings: [DockerHost, string, string][] = [
      [host(1), endpointId.get('A')!, 'PROF_A_C_E'],
      [host(2), endpointId.get('C')!.slice(0, 12), 'PROF_A_C_E'],
      [host(2), endpointId.get('E')!, 'PROF_A_C_E'],
      [host(1), endpointId.get('B')!, 'PROF_B'],
      [host(2), endpointId.get('D')!.slice(0, 12), 'PROF_D'],
    ];
    for (const [on, id, profile] of settings) expect(calicoctl(on, 'endpoint', id, 'profile', 'set', profile)).toBe(`Profile(s) set to ${profile}.\n`);
    const changed = Date.now();
    await until('A, C and E reach each other', () => allAnswer(among(['A', 'C', 'E'])), 2000);
    // The time the rules held is when the probe that saw it began: 18 `docker exec`s at once take
    // seconds of their own on a loaded machine, and that is not the rules' time.
    let cutOffBy = 0;
    await until('B and D cut off', async () => {
      const probed = Date.now();
      const cutOff = await noneAnswer([...toAndFrom('B', ['A', 'C', 'D', 'E', 'F']), ...toAndFrom('D', ['A', 'C', 'E', 'F'])]);
      if (cutOff) cutOffBy = probed;
      return cutOff;
    }, 2000);
    expect(cutOffBy - changed).toBeLessThan(5000);
    // F kept only the network's profile, whose tag nobody else carries now.
    expect(await noneAnswer(toAndFrom('F', ['A', 'C', 'E']))).toBe(true);
    expect(calicoctl(host(2), 'endpoint', endpointId.get('C')!, 'profile', 'show')).toMatch(/^\+-+\+\n\| +Name +\|\n\+-+\+\n\| PROF_A_C_E \|\n\+-+\+\n$/);
  });

  it("appending the network's profile to B (by the network's name) gives B its network back, across hosts, within ~2 s", async () => {
    expect(calicoctl(host(2), 'endpoint', endpointId.get('B')!, 'profile', 'append', NETWORK)).toBe(`Profile(s) ${NETWORK} appended.\n`);
    await until('B and F (host 2) reach each other again', () => allAnswer([['B', 'F'], ['F', 'B']]), 2000);
    // B's own profile still keeps the others out, and it still cannot reach them.
    expect(await noneAnswer(toAndFrom('B', ['A', 'C', 'D', 'E']))).toBe(true);
    expect(host(1).calicoctl(['endpoint', endpointId.get('B')!, 'profile', 'append', NETWORK])).toMatchObject({ status: 0, stdout: `Profile ${NETWORK} is already in endpoint profile list\n` });
    expect(calicoctl(host(1), 'endpoint', 'show', '--detailed')).toMatch(new RegExp(`\\| ${endpointId.get('B')} \\| ${ip.get('B')}/32 +\\| [0-9a-f:]+ +\\| PROF_B,${NETWORK} +\\| active \\|`));
  });
});
