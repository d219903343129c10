import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify, { LogController, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, RawServerDefault } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { pino, type Logger as PinoLogger } from 'pino';
import { ActivateResponse, ErrorResponse } from '../../plugin-spec/common.js';
import { AppError } from '../domain/errors.js';
import { pluginAjvOptions, pluginCompilers } from './schema-compilers.js';

export type PluginRole = 'NetworkDriver' | 'IpamDriver';

export interface MethodSpec {
  request: TSchema | undefined;
  response: TSchema;
}

/** One Docker method: its schemas and a handler that only translates wire fields to a service call. */
export interface MethodHandler {
  spec: MethodSpec;
  handle(body: any): Promise<unknown>;
}

export interface DockerPluginOptions {
  implements: PluginRole[];
  methods: Record<string, MethodHandler>;
  logger: PinoLogger | false;
  /** Docker's bodies are small; anything larger is refused before it is parsed. */
  bodyLimit?: number;
  /** Told of every answered request (metrics): its method (`unknown` for a path that is none), outcome and time. */
  onRequestDone?: (method: string, outcome: RequestOutcome, seconds: number) => void;
}

/** served: 2xx; refused: 4xx (a bad or unknown request); failed: 5xx. */
export type RequestOutcome = 'served' | 'refused' | 'failed';

/**
 * The HTTP face of the daemon on one unix socket: Docker POSTs `/<Subsystem>.<Method>` with no
 * Content-Type (and an empty body for argument-less calls). Every failure is answered as
 * `{"Err": "..."}` with a non-200 status, which Docker shows as `<Subsystem>.<Method>: <Err>`;
 * unknown methods get libnetwork's plain "404 page not found".
 */
export function buildDockerPlugin(options: DockerPluginOptions): FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, PinoLogger> {
  const app = Fastify({
    loggerInstance: options.logger === false ? silentPino : options.logger,
    // One line per request comes from the onResponse hook below instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    ajv: pluginAjvOptions,
    schemaController: { compilersFactory: pluginCompilers },
    return503OnClosing: false,
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      done(Object.assign(new Error(`request body is not valid JSON: ${(error as Error).message}`), { statusCode: 400 }), undefined);
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    const entry = { method: request.url, status: reply.statusCode, ms: Number(reply.elapsedTime.toFixed(2)), err: (reply as ReplyWithError).errorText };
    const outcome: RequestOutcome = reply.statusCode >= 500 ? 'failed' : reply.statusCode >= 400 ? 'refused' : 'served';
    if (outcome === 'failed') request.log.warn(entry, 'request failed');
    else request.log.info(entry, `request ${outcome}`);
    // The route, not the URL: a path that is no method must not become a label of its own.
    options.onRequestDone?.(request.routeOptions.url?.slice(1) ?? 'unknown', outcome, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const method = request.url.slice(1);
    let status = 500;
    let message = error.message;
    if (error.validation) {
      status = 400;
      message = `invalid ${method} request: ${error.message}`;
    } else if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      status = 413;
      message = `${method} request body is larger than ${options.bodyLimit ?? 1024 * 1024} bytes`;
    } else if (error.statusCode === 400 || error.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
      status = 400;
    } else if (!(error instanceof AppError)) {
      request.log.error({ err: error, method }, 'unexpected error');
    }
    (reply as ReplyWithError).errorText = message;
    void reply.code(status).send({ Err: message || 'unknown error' });
  });

  app.setNotFoundHandler((_request, reply) => {
    void reply.code(404).type('text/plain; charset=utf-8').send('404 page not found\n');
  });

  const activate = { Implements: options.implements };
  app.post('/Plugin.Activate', { schema: { response: { 200: ActivateResponse } } }, async () => activate);

  for (const [path, handler] of Object.entries(options.methods)) {
    const schema = {
      ...(handler.spec.request ? { body: handler.spec.request } : {}),
      response: { 200: handler.spec.response, '4xx': ErrorResponse, '5xx': ErrorResponse },
    };
    app.post(`/${path}`, { schema }, async (request) => handler.handle(request.body ?? (handler.spec.request ? null : {})));
  }
  return app;
}

type ReplyWithError = FastifyReply & { errorText?: string };

const silentPino = pino({ enabled: false });
