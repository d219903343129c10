import { describe, expect, it } from 'vitest';
import { formatIp, parseIp } from '../src/domain/cidr.js';
import { DockerReleases } from '../src/services/ipam/docker-releases.js';
import type { ReleaseRequest } from '../src/services/ipam/ipam-service.js';

/** IPAM in memory: records each release; fails those whose address is in `failing`. */
function fakeIpam(failing = new Set<string>()) {
  const calls: string[] = [];
  return {
    calls,
    release: async (request: ReleaseRequest) => {
      calls.push(`${formatIp(request.address)}${request.handleId ? ` by ${request.handleId}` : ''}`);
      if (failing.has(formatIp(request.address))) throw new Error('etcd unreachable');
      return undefined;
    },
  };
}

describe("Docker's two releases of an endpoint's address (in memory)", () => {
  const a = parseIp('10.0.0.5');
  const b = parseIp('10.0.0.6');

  it('frees by handle as the endpoint goes, and takes the ReleaseAddress that follows as done; an address not freed that way is released by value', async () => {
    let now = 1_000_000;
    const ipam = fakeIpam();
    const releases = new DockerReleases(ipam, () => now);
    await releases.withEndpoint(a, 'libnetwork.h1');
    // Meanwhile the address may be another endpoint's: Docker's release must not free it.
    await releases.forDocker(a);
    await releases.forDocker(b);
    expect(ipam.calls).toEqual(['10.0.0.5 by libnetwork.h1', '10.0.0.6']);
    // The mark is used once: a later ReleaseAddress of the same address is a real one.
    await releases.forDocker(a);
    expect(ipam.calls.at(-1)).toBe('10.0.0.5');
    // A ReleaseAddress that comes a minute later or more is not taken as the endpoint's.
    await releases.withEndpoint(b, 'libnetwork.h2');
    now += 60_000;
    await releases.forDocker(b);
    expect(ipam.calls.slice(-2)).toEqual(['10.0.0.6 by libnetwork.h2', '10.0.0.6']);
  });

  it('leaves the work to ReleaseAddress when the release with the endpoint failed', async () => {
    const ipam = fakeIpam(new Set(['10.0.0.5']));
    const releases = new DockerReleases(ipam);
    await expect(releases.withEndpoint(a, 'libnetwork.h1')).rejects.toThrow('etcd unreachable');
    await expect(releases.forDocker(a)).rejects.toThrow('etcd unreachable');
    expect(ipam.calls).toEqual(['10.0.0.5 by libnetwork.h1', '10.0.0.5']);
  });
});
