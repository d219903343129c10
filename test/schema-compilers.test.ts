import AjvCompiler from '@fastify/ajv-compiler';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ActivateResponse, ErrorResponse } from '../plugin-spec/common.js';
import { IPAM_METHODS } from '../plugin-spec/ipam.js';
import { NETWORK_METHODS } from '../plugin-spec/network.js';
import { buildDockerPlugin } from '../src/plugin/docker-plugin.js';
import { pluginAjvOptions, pluginCompilers } from '../src/plugin/schema-compilers.js';

const METHODS = { ...IPAM_METHODS, ...NETWORK_METHODS };
const withBody = Object.entries(METHODS).filter(([, spec]) => spec.request !== undefined);

type Validate = ((data: unknown) => boolean) & { errors?: unknown };
const route = (method: string, schema: object) => ({ schema, method: 'POST', url: `/${method}`, httpPart: 'body' });
const ours = (method: string, schema: object) => pluginCompilers.buildValidator({}, pluginAjvOptions)(route(method, schema)) as unknown as Validate;
const fastifys = (method: string, schema: object) => AjvCompiler()({}, pluginAjvOptions)(route(method, schema)) as unknown as Validate;

/** Bodies near what Docker sends: its fields, each missing, right or of another type, and fields it never sends. */
const id = fc.oneof({ arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,128}$/), weight: 8 }, fc.string({ maxLength: 3 }), fc.constant('a'.repeat(129)));
const anyField = fc.oneof(
  id,
  fc.string(),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constant(null),
  fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.constant(null))),
  fc.array(fc.record({ Pool: fc.oneof(fc.string(), fc.integer()), Gateway: fc.string(), AuxAddresses: fc.oneof(fc.constant(null), fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.boolean()))) }, { requiredKeys: [] })),
  fc.record({ Address: fc.oneof(fc.string(), fc.integer()), MacAddress: fc.string() }, { requiredKeys: [] }),
);
/** What each field of Docker's is when Docker sends it right. */
const RIGHT: Record<string, fc.Arbitrary<unknown>> = {
  NetworkID: id,
  EndpointID: id,
  Options: fc.oneof(fc.constant(null), fc.dictionary(fc.string(), fc.string())),
  IPv4Data: fc.array(fc.record({ Pool: fc.string(), Gateway: fc.string() }, { requiredKeys: [] })),
  IPv6Data: fc.constant(null),
  Interface: fc.oneof(fc.constant(null), fc.record({ Address: fc.string(), MacAddress: fc.string() }, { requiredKeys: [] })),
  SandboxKey: fc.string({ minLength: 1 }),
  DiscoveryType: fc.integer(),
  DiscoveryData: fc.jsonValue(),
  PoolID: fc.string(),
  Address: fc.string(),
  Pool: fc.string(),
  SubPool: fc.string(),
  V6: fc.boolean(),
  AddressSpace: fc.string(),
  Unknown: fc.jsonValue(),
};
const field = (name: string) => fc.oneof({ arbitrary: RIGHT[name]!, weight: 4 }, { arbitrary: anyField, weight: 1 });
const body = fc.oneof({ arbitrary: fc.record(Object.fromEntries(Object.keys(RIGHT).map((f) => [f, field(f)])), { requiredKeys: [] }), weight: 9 }, { arbitrary: fc.jsonValue(), weight: 1 });

type Schema = Record<string, any>;
/** Values a response schema admits (the kinds of schema Docker's replies use), now and then with a field it does not list. */
function valuesOf(schema: Schema): fc.Arbitrary<unknown> {
  if (schema.anyOf) return fc.oneof(...(schema.anyOf as Schema[]).map(valuesOf));
  if ('const' in schema) return fc.constant(schema.const);
  switch (schema.type) {
    case 'null':
      return fc.constant(null);
    case 'string':
      return fc.string();
    case 'number':
    case 'integer':
      return fc.integer();
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(valuesOf(schema.items), { maxLength: 3 });
    case 'object': {
      const listed = fc.record(Object.fromEntries(Object.entries(schema.properties ?? {}).map(([k, v]) => [k, valuesOf(v as Schema)])), { requiredKeys: schema.required ?? [] });
      const open = schema.patternProperties ? Object.values(schema.patternProperties)[0] : isSchema(schema.additionalProperties) ? schema.additionalProperties : undefined;
      const extra = open ? fc.dictionary(fc.string(), valuesOf(open as Schema), { maxKeys: 3 }) : fc.dictionary(fc.constantFrom('Extra', 'Other'), fc.string(), { maxKeys: 1 });
      return fc.tuple(listed, extra).map(([known, more]) => ({ ...more, ...known }));
    }
    default:
      return fc.jsonValue();
  }
}
const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value);
const responses: [string, Schema][] = [
  ['Plugin.Activate', ActivateResponse],
  ['error', ErrorResponse],
  ...Object.entries(METHODS).map(([method, spec]) => [method, spec.response] as [string, Schema]),
];

describe('the plugin apps\' schema compilers', () => {
  it('serialise every reply as fast-json-stringify does with the schemas as written', () => {
    for (const [method, schema] of responses) {
      const serializerRoute = { schema, method: 'POST', url: `/${method}`, httpStatus: '200' };
      const mine = pluginCompilers.buildSerializer({}, {})(serializerRoute as never);
      const reference = SerializerSelector()({}, {})(serializerRoute as never);
      fc.assert(
        fc.property(valuesOf(schema), (reply) => {
          expect([method, mine(reply)]).toEqual([method, reference(reply)]);
        }),
        { numRuns: 200 },
      );
    }
  });

  it('serialise every reply without loading Ajv (it is loaded only to explain a refused body)', () => {
    const script = `
      import { createRequire } from 'node:module';
      import { pluginCompilers } from './dist/src/plugin/schema-compilers.js';
      import { IPAM_METHODS } from './dist/plugin-spec/ipam.js';
      import { NETWORK_METHODS } from './dist/plugin-spec/network.js';
      import { ActivateResponse, ErrorResponse } from './dist/plugin-spec/common.js';
      const schemas = [ActivateResponse, ErrorResponse, ...Object.values({ ...IPAM_METHODS, ...NETWORK_METHODS }).map((m) => m.response)];
      for (const schema of schemas) pluginCompilers.buildSerializer({}, {})({ schema, method: 'POST', url: '/x', httpStatus: '200' });
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((path) => path.includes('/node_modules/ajv/'));
      console.log(JSON.stringify({ serialisers: schemas.length, ajvModules: loaded.length }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: join(import.meta.dirname, '..') });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ serialisers: responses.length, ajvModules: 0 });
  });

  it('accept and refuse exactly the bodies Fastify\'s own Ajv validator does, with its errors', () => {
    for (const [method, spec] of withBody) {
      const mine = ours(method, spec.request!);
      const reference = fastifys(method, spec.request!);
      let refused = 0;
      fc.assert(
        fc.property(body, (data) => {
          const valid = reference(data);
          expect([method, mine(data)]).toEqual([method, valid]);
          if (!valid) {
            refused++;
            expect(mine.errors).toEqual(reference.errors);
          }
        }),
        { numRuns: 400 },
      );
      // The bodies are not all refused (nor all accepted): both sides of the check are compared.
      expect(refused, method).toBeGreaterThan(0);
      expect(refused, method).toBeLessThan(400);
    }
  });

  it('both sockets\' apps answer a refused body with Ajv\'s words and serialise their replies as before', async () => {
    const handler = (response: unknown) => ({ spec: { request: IPAM_METHODS['IpamDriver.RequestAddress'].request, response: IPAM_METHODS['IpamDriver.RequestAddress'].response }, handle: async () => response });
    const apps = [0, 1].map(() => buildDockerPlugin({ implements: ['IpamDriver'], methods: { 'IpamDriver.RequestAddress': handler({ Address: '10.0.0.1/32', Data: {}, Extra: 'not in the schema' }) }, logger: false }));
    try {
      for (const app of apps) {
        const refused = await app.inject({ method: 'POST', url: '/IpamDriver.RequestAddress', payload: '{"PoolID":42}' });
        expect([refused.statusCode, refused.json()]).toEqual([400, { Err: 'invalid IpamDriver.RequestAddress request: body/PoolID must be string' }]);
        const served = await app.inject({ method: 'POST', url: '/IpamDriver.RequestAddress', payload: '{"PoolID":"p"}' });
        // fast-json-stringify writes what the response schema lists, as Fastify's own compiler did.
        expect(served.body).toBe('{"Address":"10.0.0.1/32","Data":{}}');
      }
    } finally {
      await Promise.all(apps.map((app) => app.close()));
    }
  });
});
