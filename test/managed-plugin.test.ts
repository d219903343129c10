import { describe, expect, it } from 'vitest';
import { ownPluginId } from '../src/adapters/docker/managed-plugin.js';

const ID = '3ae150a5c9b6786acb47b29b0ce4343393d02b993d7bf94df5aeaee7ae52ea3b';

describe("a managed plugin's own ID, from its mount table", () => {
  it('is the host directory Docker mounts at /run/docker/plugins, under the default exec root or another', () => {
    const mounts = (root: string): string =>
      [
        '90 54 254:0 /var/lib/docker/plugins/x/rootfs / rw,relatime master:25 - ext4 /dev/vda rw',
        '705 90 0:102 / /run/calico rw,relatime - tmpfs tmpfs rw',
        `752 90 0:101 ${root} /run/docker/plugins rw,relatime shared:4 - tmpfs tmpfs rw`,
      ].join('\n');
    expect(ownPluginId(mounts(`/docker/plugins/${ID}`))).toBe(ID);
    expect(ownPluginId(mounts(`/${ID}`))).toBe(ID);
  });

  it('is not there outside a plugin: a host mounting /run/docker/plugins whole, or not at all', () => {
    expect(ownPluginId('752 90 0:101 / /run/docker/plugins rw,relatime - tmpfs tmpfs rw')).toBeUndefined();
    expect(ownPluginId('90 54 254:0 / / rw,relatime - ext4 /dev/vda rw')).toBeUndefined();
  });
});
