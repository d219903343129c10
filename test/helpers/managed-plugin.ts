import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './daemon.js';
import type { DockerHost } from './docker-host.js';

/** The managed plugin built from this checkout on `builder` (with the engine under `engineRoot`) as `plugin`: installed there, disabled. */
export function buildPlugin(plugin: string, engineRoot: string, builder: DockerHost): void {
  const build = spawnSync('bash', [join(ROOT, 'scripts/build-plugin.sh'), plugin], {
    encoding: 'utf8',
    // The suite runs on the build it started with: rebuilt now, dist/ would change under the other tests.
    env: { ...process.env, NO_BUILD: '1', DOCKER: join(engineRoot, 'usr/bin/docker'), DOCKER_HOST: `unix://${builder.dockerSocket}` },
    timeout: 240_000,
  });
  if (build.status !== 0) throw new Error(`build-plugin.sh failed (${build.status}): ${build.stderr}${build.stdout}`);
}

/**
 * The built plugin the way a Docker user gets it: pushed from `builder` to its registry, removed
 * there, then installed from the registry on every host with its own settings.
 */
export async function publishAndInstall(plugin: string, builder: DockerHost, installs: { host: DockerHost; settings: string[] }[]): Promise<void> {
  builder.dockerOk(['plugin', 'push', plugin]);
  builder.dockerOk(['plugin', 'rm', plugin]);
  await Promise.all(
    installs.map(async ({ host, settings }) => {
      const installed = await host.dockerAsync(['plugin', 'install', '--grant-all-permissions', plugin, ...settings], 180_000);
      if (installed.status !== 0) throw new Error(`docker plugin install on ${host.node}: ${installed.stderr}`);
    }),
  );
}
