import { createRequire } from 'node:module';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { FastifyServerOptions } from 'fastify';

type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;
type ValidatorFactory = NonNullable<CompilersFactory['buildValidator']>;
type SerializerFactory = NonNullable<CompilersFactory['buildSerializer']>;
type Serializer = ReturnType<ReturnType<SerializerFactory>>;
/** Typed as Ajv's function; Fastify calls only `(data)` and reads `errors` of a function without `schemaEnv`. */
type FastifyValidate = ReturnType<ReturnType<ValidatorFactory>>;

/** Ajv's interface, which Fastify expects of a validator: false, and why in `errors`. */
interface Validate {
  (data: unknown): boolean;
  errors?: unknown;
}

/** Fastify's Ajv options for the plugin apps: bodies are checked as Docker sends them, never altered. */
export const pluginAjvOptions = { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } } satisfies FastifyServerOptions['ajv'];

/**
 * Fastify's schema compilers for the plugin apps, cheaper to start. Fastify's own compile every
 * schema of every route with Ajv and fast-json-stringify, once per app: the daemon's two sockets
 * serve the same IPAM methods, and every route has the same error schema for 4xx and 5xx.
 *
 * - A request body is checked by TypeBox's compiled check (our schemas are TypeBox's; it compiles a
 *   schema in a fraction of Ajv's time). A body it refuses is checked again by Fastify's own Ajv
 *   validator, built at the first refusal: Ajv has the last word, and its errors are the messages
 *   Docker sees, word for word as before.
 * - A response serialiser is fast-json-stringify's, as Fastify builds it, compiled once per schema.
 *
 * Both are shared by every app (a schema object is compiled once) because no app adds schemas of
 * its own (`addSchema`) or compiler options: the same schema compiles to the same code in each.
 */
export const pluginCompilers: Required<CompilersFactory> = { buildValidator: checkThenExplain, buildSerializer: serializeOncePerSchema };

const checks = new WeakMap<TSchema, TypeCheck<TSchema>>();
const serializers = new WeakMap<object, Serializer>();

function checkThenExplain(...factoryArgs: Parameters<ValidatorFactory>): ReturnType<ValidatorFactory> {
  return (route) => {
    const schema = route.schema as TSchema;
    let check = checks.get(schema);
    if (!check) checks.set(schema, (check = TypeCompiler.Compile(schema)));
    let ajv: Validate | undefined;
    const validate: Validate = (data) => {
      if (check.Check(data)) return true;
      ajv ??= fastifyAjvValidators()(...factoryArgs)(route) as Validate;
      const valid = ajv(data);
      validate.errors = ajv.errors;
      return valid;
    };
    return validate as unknown as FastifyValidate;
  };
}

let ajvValidators: ValidatorFactory | undefined;

/** Fastify's default validator compiler (Ajv with Fastify's options), loaded at the first refused body. */
function fastifyAjvValidators(): ValidatorFactory {
  const load = (): ValidatorFactory => (createRequire(import.meta.url)('@fastify/ajv-compiler') as () => ValidatorFactory)();
  return (ajvValidators ??= load());
}

function serializeOncePerSchema(...factoryArgs: Parameters<SerializerFactory>): ReturnType<SerializerFactory> {
  const compile = SerializerSelector()(...factoryArgs);
  return (route) => {
    const schema = route.schema as object;
    let serialize = serializers.get(schema);
    if (!serialize) serializers.set(schema, (serialize = compile(route)));
    return serialize;
  };
}
