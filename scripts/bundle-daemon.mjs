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
import { build } from 'esbuild';

await build({
  entryPoints: { main: 'dist/src/daemon/main.js' },
  outdir: 'dist/src/daemon',
  allowOverwrite: true,
  bundle: true,
  external: ['netlink'],
  platform: 'node',
  format: 'esm',
  target: 'node20',
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  minifyWhitespace: true,
  legalComments: 'linked',
  sourcemap: true,
  logLevel: 'warning',
});
