import { existsSync, readFileSync } from 'node:fs';
import { ConfigError, DEFAULT_CONFIG_FILE, parseConfigFile, type ConfigFile } from './datastore-config.js';

/**
 * The calicoctl config file to read: `explicit` (calicoctl's -c, the daemon's CALICO_CONFIG) must
 * exist; the default one (/etc/calico/calicoctl.cfg, or CALICO_DEFAULT_CONFIG_FILE for tests) is read
 * only when it exists, as calicoctl does. Undefined when there is none.
 */
export function readConfigFile(explicit: string | undefined, env: NodeJS.ProcessEnv): ConfigFile | undefined {
  const path = explicit || env.CALICO_DEFAULT_CONFIG_FILE || DEFAULT_CONFIG_FILE;
  if (!explicit && !existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new ConfigError(`cannot read the config file ${path}: ${reason}`);
  }
  return parseConfigFile(text, path);
}
