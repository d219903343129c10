// Run by `npm run build` after tsc: the daemon's entry, dist/src/daemon/main.js, becomes one file
// holding the daemon's modules and the packages they load, so that Node.js reads and compiles one
// file at every start instead of several hundred (bench/footprint measures what that saves).
// - tsc's files stay as they are for the tests and calicoctl; only the daemon's entry is replaced,
//   at the path every start uses (systemd unit, Dockerfile, `calicoctl node run`, scripts/run.sh).
// - netlink stays outside: it is a native addon.
// - Packages that are CommonJS call `require`: the banner gives the ES module bundle one.
// - Whitespace and comments go (names stay, so stack traces name their functions): the source of
//   every loaded script stays in V8's heap, twice as large when a comment holds a non-ASCII
//   character. main.js.map maps it all back to src/*.ts for `node --enable-source-maps`; licence
//   comments go to main.js.LEGAL.txt.
// - Fastify's server module loads node:https and node:http2 at once, for servers the daemon never
//   makes (its sockets are plain HTTP/1.1): ~2.7 MB resident. They are loaded when first used instead.
//   The build fails if Fastify's source no longer reads as expected.
// - What the daemon loads only on demand stays outside, in node_modules, so that its source is not in
//   V8's heap while it is never run (~0.6 MB of the bundle's 1.7): Fastify's Ajv and
//   fast-json-stringify compilers (the daemon has its own; Ajv is built only for a refused body),
//   light-my-request (Fastify's inject, for tests), and the metrics module with prom-client (loaded
//   when metrics are enabled; it is tsc's dist/src/daemon/metrics.js, next to the bundle).
import { readFile } from 'node:fs/promises';
import { build } from 'esbuild';

const LAZY_MODULES = ['https', 'http2'];
const ON_DEMAND_PACKAGES = ['@fastify/ajv-compiler', '@fastify/fast-json-stringify-compiler', 'light-my-request'];

/** `import('./metrics.js')` stays a run-time import of tsc's file beside the bundle. */
const onDemandModules = {
  name: 'on-demand-modules',
  setup(bundle) {
    bundle.onResolve({ filter: /^\.\/metrics\.js$/ }, (args) => {
      if (args.kind !== 'dynamic-import' || !/[\\/]dist[\\/]src[\\/]daemon[\\/]/.test(args.importer)) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/** Fastify's `const https = require('node:https')` becomes an object that requires it on first use. */
const lazyFastifyServerModules = {
  name: 'lazy-fastify-server-modules',
  setup(bundle) {
    bundle.onLoad({ filter: /[\\/]fastify[\\/]lib[\\/]server\.js$/ }, async (args) => {
      let contents = await readFile(args.path, 'utf8');
      for (const name of LAZY_MODULES) {
        const eager = `const ${name} = require('node:${name}')`;
        if (!contents.includes(eager)) throw new Error(`${args.path} no longer has "${eager}": update scripts/bundle-daemon.mjs`);
        const lazy = `const ${name} = new Proxy({}, { get: (_, key) => require('node:${name}')[key] })`;
        contents = contents.replace(eager, lazy);
      }
      return { contents, loader: 'js' };
    });
  },
};

await build({
  entryPoints: { main: 'dist/src/daemon/main.js' },
  outdir: 'dist/src/daemon',
  allowOverwrite: true,
  bundle: true,
  external: ['netlink', ...ON_DEMAND_PACKAGES],
  platform: 'node',
  format: 'esm',
  target: 'node20',
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  minifyWhitespace: true,
  legalComments: 'linked',
  sourcemap: true,
  logLevel: 'warning',
  plugins: [lazyFastifyServerModules, onDemandModules],
});
