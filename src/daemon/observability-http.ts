import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { HealthAggregator } from '../services/health.js';

export interface HttpSettings {
  enabled: boolean;
  /** Empty: every interface, as Felix takes an empty host. */
  host: string;
  port: number;
}

type Routes = Record<string, () => Promise<{ status: number; type: string; body: string }>>;

function serve(routes: Routes): Server {
  return createServer((request: IncomingMessage, response: ServerResponse) => {
    const route = request.method === 'GET' || request.method === 'HEAD' ? routes[new URL(request.url ?? '/', 'http://x').pathname] : undefined;
    const answer = route ? route() : Promise.resolve({ status: 404, type: 'text/plain', body: '404 page not found\n' });
    void answer
      .catch((error: unknown) => ({ status: 500, type: 'text/plain', body: `${error instanceof Error ? error.message : String(error)}\n` }))
      .then(({ status, type, body }) => {
        response.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
        response.end(request.method === 'HEAD' ? undefined : body);
      });
  });
}

const TEXT = 'text/plain; charset=utf-8';

/**
 * Felix's health endpoints: /liveness answers 200 whenever the event loop gets to it (a blocked daemon
 * does not answer in time); /readiness answers 200 when every part is ready, else 503 naming each part
 * that is not and why.
 */
export function healthServer(health: HealthAggregator): Server {
  return serve({
    '/liveness': async () => ({ status: 200, type: TEXT, body: 'live\n' }),
    '/readiness': async () => {
      const summary = await health.summary();
      if (summary.ready) return { status: 200, type: TEXT, body: 'ready\n' };
      return { status: 503, type: TEXT, body: `not ready\n${summary.notReady.map((p) => `${p.name}: ${p.reason}\n`).join('')}` };
    },
  });
}

/** Prometheus' scrape target: /metrics in the text format. */
export function metricsServer(registry: Registry): Server {
  return serve({ '/metrics': async () => ({ status: 200, type: registry.contentType, body: await registry.metrics() }) });
}

const RELISTEN_MS = 5000;

/**
 * Listens as `settings` say, in the background: a port taken (a Felix on this host has 9099) is
 * logged and tried again every few seconds, as Felix does, while Docker's sockets serve on.
 */
export function listenInBackground(server: Server, settings: HttpSettings, what: string, log: Logger): void {
  let timer: NodeJS.Timeout | undefined;
  const where = `${settings.host || '*'}:${settings.port}`;
  const attempt = (): void => void server.listen(settings.port, settings.host || undefined);
  server.on('listening', () => log.info({ address: where }, `serving ${what}`));
  server.on('error', (error) => {
    if (server.listening) return log.warn({ err: error, address: where }, `${what}: server error`);
    log.error({ err: error, address: where }, `cannot serve ${what}; trying again`);
    timer = setTimeout(attempt, RELISTEN_MS).unref();
  });
  server.on('close', () => clearTimeout(timer));
  attempt();
}

/** Stops serving at once, keep-alive connections (Prometheus keeps its own) included. */
export function closeServer(server: Server): void {
  server.close();
  server.closeAllConnections();
}
