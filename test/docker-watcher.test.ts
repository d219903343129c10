import { describe, expect, it } from 'vitest';
import { WorkloadEndpoint, workloadEndpointName } from '../src/domain/endpoint-model.js';
import type { ContainerInfo, DockerApi, DockerEvent } from '../src/ports/docker-api.js';
import type { EndpointStore } from '../src/ports/endpoint-store.js';
import { DockerWatcher } from '../src/services/network/docker-watcher.js';
import { until } from './helpers/until.js';

const NODE = 'h1';
const ENDPOINT_ID = 'ep0123456789';
const NAME = workloadEndpointName(NODE, ENDPOINT_ID);

const stored: WorkloadEndpoint = {
  kind: 'WorkloadEndpoint',
  apiVersion: 'projectcalico.org/v3',
  metadata: { name: NAME, namespace: 'libnetwork', labels: {} },
  spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node: NODE, endpoint: ENDPOINT_ID, interfaceName: 'caliep0123456', ipNetworks: ['10.0.0.2/32'], mac: 'ee:ee:ee:ee:ee:ee', profiles: ['net1'] },
};

const container: ContainerInfo = {
  id: 'c1',
  name: 'swdb.1.abc',
  labels: { 'org.projectcalico.label.role': 'db' },
  sandboxKey: '/var/run/docker/netns/1',
  networks: { net1: { networkId: 'n1', endpointId: ENDPOINT_ID, aliases: [], gateway: '169.254.1.1' } },
};

/** Docker in memory: one Calico network; inspects answered by `inspect`; events pushed by the test. */
function fakeDocker(inspect: (id: string) => Promise<ContainerInfo | undefined>) {
  let push: (event: DockerEvent) => void = () => undefined;
  const docker: DockerApi = {
    networkName: async () => 'net1',
    networkId: async () => 'n1',
    listNetworks: async () => [{ id: 'n1', name: 'net1', containers: [] }],
    inspectContainer: inspect,
    knownEndpoints: async () => new Set(),
    events: (onEvent) => {
      push = onEvent;
      return { close: () => undefined };
    },
  };
  return { docker, connect: () => push({ type: 'network', action: 'connect', actorId: 'n1', attributes: { type: 'calico', container: 'c1' } }) };
}

/** The one endpoint in memory, updated by compare-and-swap on a revision counter. */
function fakeEndpoints() {
  let current = { value: stored, modRevision: '1' };
  const store = {
    current: () => current.value,
    getEndpoint: async (name: string) => (name === NAME ? current : null),
    updateEndpoint: async (endpoint: WorkloadEndpoint, revision: string) => {
      if (revision !== current.modRevision) return false;
      current = { value: endpoint, modRevision: String(Number(revision) + 1) };
      return true;
    },
  };
  return store as typeof store & EndpointStore;
}

/** Runs `body` with a watcher of `docker` started (labels copied), and stops it after. */
async function watching(docker: DockerApi, endpoints: EndpointStore, body: () => Promise<void>): Promise<void> {
  const watcher = new DockerWatcher(docker, endpoints, { node: NODE, driverName: 'calico', labelEndpoints: true });
  watcher.start();
  try {
    await body();
  } finally {
    watcher.stop();
  }
}

describe('DockerWatcher (Docker and the datastore in memory)', () => {
  it('asks again about a container Docker did not answer for in time, and labels its endpoint then', async () => {
    let asked = 0;
    // Docker answers an inspect once the container's start is over; on a busy host the first ask timed out.
    const { docker, connect } = fakeDocker(async () => {
      asked++;
      if (asked === 1) throw new Error('docker API /containers/c1/json timed out');
      return container;
    });
    const endpoints = fakeEndpoints();
    await watching(docker, endpoints, async () => {
      connect();
      const labelled = await until('the endpoint to carry the container labels', () => endpoints.current().metadata.labels.role === 'db', 5000);
      expect(labelled).toBe(true);
      expect(asked).toBe(2);
      expect(endpoints.current().spec.workload).toBe('swdb.1.abc');
    });
  });

  it('gives up on a container that is gone (Docker says so) without asking again', async () => {
    let asked = 0;
    const { docker, connect } = fakeDocker(async () => {
      asked++;
      return undefined;
    });
    const endpoints = fakeEndpoints();
    await watching(docker, endpoints, async () => {
      connect();
      await new Promise((r) => setTimeout(r, 700));
      expect(asked).toBe(1);
      expect(endpoints.current()).toEqual(stored);
    });
  });
});
