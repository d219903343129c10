import { request } from 'node:http';
import type { DockerApi } from '../../ports/docker-api.js';

interface Target {
  socketPath?: string;
  host?: string;
  port?: number;
}

/** DOCKER_HOST as the docker CLI reads it: unix:///path or tcp://host:port; default the local socket. */
export function dockerTarget(dockerHost: string | undefined): Target {
  if (!dockerHost) return { socketPath: '/var/run/docker.sock' };
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length) };
  const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  return { host: url.hostname, port: Number(url.port || 2375) };
}

/** A small client of Docker's engine API, with a short deadline on every call. */
export class DockerHttpApi implements DockerApi {
  constructor(
    private readonly target: Target,
    private readonly timeoutMs = 3000,
  ) {}

  private get(path: string): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const req = request({ ...this.target, path: `/v1.40${path}`, method: 'GET', timeout: this.timeoutMs }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
          } catch (error) {
            reject(error);
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`docker API ${path} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  private async network(ref: string): Promise<{ Id?: string; Name?: string } | undefined> {
    try {
      const reply = await this.get(`/networks/${encodeURIComponent(ref)}`);
      return reply.status === 200 ? reply.body : undefined;
    } catch {
      return undefined;
    }
  }

  async networkName(networkId: string): Promise<string | undefined> {
    const name = (await this.network(networkId))?.Name;
    return typeof name === 'string' ? name : undefined;
  }

  async networkId(nameOrId: string): Promise<string | undefined> {
    const id = (await this.network(nameOrId))?.Id;
    return typeof id === 'string' ? id : undefined;
  }

  async endpointContainerLabels(networkId: string, endpointId: string): Promise<Record<string, string> | undefined> {
    try {
      const network = await this.get(`/networks/${encodeURIComponent(networkId)}`);
      const containers = (network.body?.Containers ?? {}) as Record<string, { EndpointID?: string }>;
      const containerId = Object.entries(containers).find(([, c]) => c.EndpointID === endpointId)?.[0];
      if (!containerId) return undefined;
      const container = await this.get(`/containers/${encodeURIComponent(containerId)}/json`);
      return container.status === 200 ? ((container.body?.Config?.Labels ?? {}) as Record<string, string>) : undefined;
    } catch {
      return undefined;
    }
  }

  async knownEndpoints(driver: string): Promise<Set<string> | undefined> {
    try {
      const list = await this.get(`/networks?filters=${encodeURIComponent(JSON.stringify({ driver: [driver] }))}`);
      if (list.status !== 200 || !Array.isArray(list.body)) return undefined;
      const known = new Set<string>();
      for (const summary of list.body as { Id: string }[]) {
        const network = await this.get(`/networks/${encodeURIComponent(summary.Id)}`);
        if (network.status !== 200) return undefined;
        for (const c of Object.values((network.body?.Containers ?? {}) as Record<string, { EndpointID?: string }>)) {
          if (c.EndpointID) known.add(c.EndpointID);
        }
      }
      return known;
    } catch {
      return undefined;
    }
  }

  async containerEndpoints(container: string): Promise<Map<string, string> | undefined> {
    let reply: { status: number; body: any };
    try {
      reply = await this.get(`/containers/${encodeURIComponent(container)}/json`);
    } catch (error) {
      throw new Error(`Unable to run docker commands. Is the docker daemon running? (${(error as Error).message})`);
    }
    if (reply.status === 404) return undefined;
    if (reply.status !== 200) throw new Error(`docker API: ${reply.body?.message ?? `status ${reply.status}`}`);
    const networks = (reply.body?.NetworkSettings?.Networks ?? {}) as Record<string, { EndpointID?: string }>;
    return new Map(Object.entries(networks).filter(([, n]) => n.EndpointID).map(([name, n]) => [name, n.EndpointID!]));
  }
}
