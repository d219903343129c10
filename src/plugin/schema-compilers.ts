import { createRequire } from 'node:module';
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
 * - A reply is written as fast-json-stringify writes it (serializerOf), once per schema, without
 *   loading it (it loads Ajv).
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

function serializeOncePerSchema(): ReturnType<SerializerFactory> {
  return (route) => {
    const schema = route.schema as Schema;
    let serialize = serializers.get(schema);
    if (!serialize) serializers.set(schema, (serialize = serializerOf(schema)));
    return serialize;
  };
}

type Schema = Record<string, unknown>;
type Project = (value: unknown) => unknown;
const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A reply as fast-json-stringify writes it from its response schema (the schema's properties, in the
 * schema's order; fields it does not list left out; a missing required one an error), by projecting
 * the value onto the schema and then JSON.stringify. fast-json-stringify loads Ajv and its formats
 * at start (~1.2 MB, ~0.1 s of CPU) for the few flat replies Docker gets.
 */
function serializerOf(schema: Schema): Serializer {
  const project = projection(schema);
  return ((value: unknown) => JSON.stringify(project(value))) as Serializer;
}

function projection(schema: Schema): Project {
  if (Array.isArray(schema.anyOf)) {
    const branches = (schema.anyOf as Schema[]).map((branch) => ({ admits: admits(branch), project: projection(branch) }));
    return (value) => (branches.find((b) => b.admits(value))?.project ?? identity)(value);
  }
  if (schema.type === 'array' && isSchema(schema.items)) {
    const item = projection(schema.items);
    return (value) => (Array.isArray(value) ? value.map(item) : value);
  }
  if (schema.type === 'object') return objectProjection(schema);
  return identity;
}

function objectProjection(schema: Schema): Project {
  const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
  // fast-json-stringify's order: the required properties first, each group in the schema's order.
  const listed = Object.entries(isSchema(schema.properties) ? schema.properties : {})
    .map(([key, property]) => [key, projection(property as Schema)] as const)
    .sort(([a], [b]) => Number(required.includes(b)) - Number(required.includes(a)));
  const names = new Set(listed.map(([key]) => key));
  // A map (TypeBox's Record: one pattern that matches every key) or open additional properties.
  const open = isSchema(schema.patternProperties) ? Object.values(schema.patternProperties)[0] : schema.additionalProperties;
  const projectOther = isSchema(open) ? projection(open) : open === true ? identity : undefined;
  return (value) => {
    if (!isSchema(value)) return value;
    for (const key of required) if (value[key] === undefined) throw new Error(`"${key}" is required!`);
    // Keys are Docker's data: "__proto__" is a key like any other, not the prototype.
    const out: Schema = Object.create(null);
    for (const [key, project] of listed) if (value[key] !== undefined) out[key] = project(value[key]);
    if (projectOther) for (const [key, other] of Object.entries(value)) if (!names.has(key) && other !== undefined) out[key] = projectOther(other);
    return out;
  };
}

const identity: Project = (value) => value;

/** Whether a value is of a union's branch: the kinds of branch Docker's replies have (constants, null, one type). */
function admits(branch: Schema): (value: unknown) => boolean {
  if ('const' in branch) return (value) => value === branch.const;
  switch (branch.type) {
    case 'null':
      return (value) => value === null;
    case 'object':
      return isSchema;
    case 'array':
      return Array.isArray;
    case 'integer':
    case 'number':
      return (value) => typeof value === 'number';
    default:
      return (value) => typeof value === branch.type;
  }
}
