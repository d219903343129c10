import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where `command` is on `env`'s PATH, as a shell would find it; undefined when it is on none. */
export function findOnPath(command: string, env: NodeJS.ProcessEnv): string | undefined {
  return (env.PATH ?? '')
    .split(':')
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, command))
    .find((path) => existsSync(path));
}
