import { request } from 'node:http';
import type { ContainerInfo, DockerApi, DockerEvent } from '../../ports/docker-api.js';

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

  async listNetworks(driver: string): Promise<{ id: string; name: string; containers: string[] }[] | undefined> {
    return (await this.networksWithEndpoints(driver, 'skip'))?.map((n) => ({ id: n.id, name: n.name, containers: Object.keys(n.endpoints) }));
  }

  async inspectContainer(nameOrId: string): Promise<ContainerInfo | undefined> {
    let reply: { status: number; body: any };
    try {
      reply = await this.get(`/containers/${encodeURIComponent(nameOrId)}/json`);
    } catch (error) {
      throw new Error(`Unable to run docker commands. Is the docker daemon running? (${(error as Error).message})`);
    }
    if (reply.status === 404) return undefined;
    if (reply.status !== 200 || typeof reply.body?.Id !== 'string') throw new Error(`docker API: ${reply.body?.message ?? `status ${reply.status}`}`);
    const body = reply.body;
    const networks: ContainerInfo['networks'] = {};
    for (const [name, n] of Object.entries((body.NetworkSettings?.Networks ?? {}) as Record<string, any>)) {
      networks[name] = {
        networkId: String(n?.NetworkID ?? ''),
        endpointId: String(n?.EndpointID ?? ''),
        aliases: Array.isArray(n?.Aliases) ? n.Aliases.filter((a: unknown): a is string => typeof a === 'string') : [],
        gateway: String(n?.Gateway ?? ''),
      };
    }
    return {
      id: body.Id,
      name: String(body.Name ?? '').replace(/^\//, ''),
      labels: (body.Config?.Labels ?? {}) as Record<string, string>,
      sandboxKey: String(body.NetworkSettings?.SandboxKey ?? ''),
      networks,
    };
  }

  events(onEvent: (event: DockerEvent) => void, onEnd: (error?: Error) => void): { close(): void } {
    const filters = encodeURIComponent(JSON.stringify({ type: ['network', 'container'] }));
    let ended = false;
    const end = (error?: Error): void => {
      if (ended) return;
      ended = true;
      onEnd(error);
    };
    const req = request({ ...this.target, path: `/v1.40/events?filters=${filters}`, method: 'GET' }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return end(new Error(`docker events answered ${res.statusCode}`));
      }
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk;
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line) parseEvent(line, onEvent);
        }
      });
      res.on('end', () => end());
      res.on('error', (error) => end(error));
    });
    req.on('error', (error) => end(error));
    req.end();
    return {
      close: () => {
        ended = true;
        req.destroy();
      },
    };
  }

  /** The engine's version and API version (GET /version); throws, saying why, when Docker cannot be asked. */
  async version(): Promise<{ version: string; apiVersion: string }> {
    const reply = await this.get('/version');
    if (reply.status !== 200 || typeof reply.body?.Version !== 'string') throw new Error(`docker API /version: ${reply.body?.message ?? `status ${reply.status}`}`);
    return { version: reply.body.Version, apiVersion: String(reply.body.ApiVersion ?? '') };
  }

  /**
   * A managed plugin's name, `NAME:TAG` as `docker plugin ls` shows it: the driver name of its
   * networks. Throws, saying why, when Docker cannot be asked or has no such plugin.
   */
  async pluginName(pluginId: string): Promise<string> {
    const reply = await this.get(`/plugins/${encodeURIComponent(pluginId)}/json`);
    if (reply.status !== 200 || typeof reply.body?.Name !== 'string') throw new Error(`docker API /plugins/${pluginId}: ${reply.body?.message ?? `status ${reply.status}`}`);
    return reply.body.Name;
  }

  async knownEndpoints(driver: string): Promise<Set<string> | undefined> {
    // Garbage collection decides on this: a network that cannot be read, even one gone meanwhile, means no answer.
    const networks = await this.networksWithEndpoints(driver, 'fail');
    return networks && new Set(networks.flatMap((n) => Object.values(n.endpoints)));
  }

  /**
   * The networks of `driver`, each with its containers' endpoint IDs (container ID → endpoint ID).
   * The list leaves out the containers, so each network is asked on its own; one gone meanwhile is
   * skipped or makes the whole answer undefined (`gone`), and any other failure means Docker cannot tell.
   */
  private async networksWithEndpoints(driver: string, gone: 'skip' | 'fail'): Promise<{ id: string; name: string; endpoints: Record<string, string> }[] | undefined> {
    try {
      const list = await this.get(`/networks?filters=${encodeURIComponent(JSON.stringify({ driver: [driver] }))}`);
      if (list.status !== 200 || !Array.isArray(list.body)) return undefined;
      const networks = [];
      for (const summary of list.body as { Id: string; Name: string }[]) {
        const network = await this.get(`/networks/${encodeURIComponent(summary.Id)}`);
        if (network.status === 404 && gone === 'skip') continue;
        if (network.status !== 200) return undefined;
        const containers = (network.body?.Containers ?? {}) as Record<string, { EndpointID?: string }>;
        const endpoints = Object.fromEntries(Object.entries(containers).filter(([, c]) => c.EndpointID).map(([id, c]) => [id, c.EndpointID!]));
        networks.push({ id: summary.Id, name: summary.Name, endpoints });
      }
      return networks;
    } catch {
      return undefined;
    }
  }
}

/** One line of Docker's event stream; lines that are not events of interest are skipped. */
function parseEvent(line: string, onEvent: (event: DockerEvent) => void): void {
  let raw: any;
  try {
    raw = JSON.parse(line);
  } catch {
    return;
  }
  if (raw?.Type !== 'network' && raw?.Type !== 'container') return;
  onEvent({ type: raw.Type, action: String(raw.Action ?? ''), actorId: String(raw.Actor?.ID ?? ''), attributes: (raw.Actor?.Attributes ?? {}) as Record<string, string> });
}
