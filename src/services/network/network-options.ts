import { InvalidRequestError } from '../../domain/errors.js';

/** Options every engine sends and Calico accepts; newer engines always add enable_ipv4. */
const ACCEPTED = new Set(['com.docker.network.enable_ipv6', 'com.docker.network.enable_ipv4']);
const PREFIX = 'com.docker.network.';

/**
 * Calico's CreateNetwork option check (libnetwork-plugin `network_driver.go`): a `true` flag such as
 * `com.docker.network.internal` is refused as `--internal`; `-o` driver options arrive as a map and
 * are refused by their keys; false flags and empty maps pass.
 */
export function checkNetworkOptions(options: Record<string, unknown>): void {
  const refused: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (ACCEPTED.has(key)) continue;
    if (value === true || value === 'true') refused.push(`--${key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key}`);
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) refused.push(...Object.keys(value).sort());
    else if (value !== false && value !== 'false' && value !== null && value !== undefined) refused.push(`${key} (${String(value)})`);
  }
  if (refused.length === 1) throw new InvalidRequestError(`Calico driver does not support the flag ${refused[0]}.`);
  if (refused.length > 1) throw new InvalidRequestError(`Calico driver does not support the flags ${refused.join(', ')}.`);
}

export interface IpamData {
  AddressSpace?: string;
  Pool?: string;
  Gateway?: string;
}

/** Calico IPAM answers with the dummy gateway 0.0.0.0/0 and its own address spaces; anything else is another IPAM driver. */
export function checkCalicoIpam(ipv4: IpamData[], ipv6: IpamData[]): void {
  if (ipv4.some((d) => d.Gateway !== '0.0.0.0/0')) {
    throw new InvalidRequestError('Non-Calico IPAM driver is used. Note: Docker before 1.12.3 is unsupported');
  }
  if (ipv6.some((d) => d.AddressSpace !== 'CalicoGlobalAddressSpace' && d.AddressSpace !== 'CalicoLocalAddressSpace')) {
    throw new InvalidRequestError('Non-Calico IPAM driver is used');
  }
}
