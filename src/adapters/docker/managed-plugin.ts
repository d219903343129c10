import { readFileSync } from 'node:fs';

/** Where Docker mounts a managed plugin's own socket directory, `<exec root>/plugins/<plugin ID>` on the host. */
const PLUGIN_SOCKET_DIR = '/run/docker/plugins';

/**
 * The ID of the managed plugin this process runs in, read from its mount table: the last part of the
 * host directory mounted at /run/docker/plugins. Undefined outside a plugin (no such mount).
 */
export function ownPluginId(mountinfo: string = readFileSync('/proc/self/mountinfo', 'utf8')): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // ID PARENT MAJOR:MINOR ROOT MOUNT-POINT …
    const [, , , root, mountPoint] = line.split(' ');
    if (mountPoint !== PLUGIN_SOCKET_DIR || !root) continue;
    const id = root.slice(root.lastIndexOf('/') + 1);
    if (/^[0-9a-f]{64}$/.test(id)) return id;
  }
  return undefined;
}
