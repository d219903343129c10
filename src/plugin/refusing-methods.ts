import { IPAM_METHODS } from '../../plugin-spec/ipam.js';
import { NETWORK_METHODS } from '../../plugin-spec/network.js';
import { SettingsError } from '../domain/errors.js';
import type { MethodHandler } from './docker-plugin.js';

/**
 * Every method of both drivers, each answered with `reason`: what a managed plugin whose settings are
 * wrong serves. Docker restarts a plugin process that exits, and a restart after a refused enable
 * races the next enable; staying up, the plugin says why on every call until it is disabled and set.
 */
export function refusingMethods(reason: string): Record<string, MethodHandler> {
  const refuse = async (): Promise<never> => {
    throw new SettingsError(reason);
  };
  // No request schema: whatever the body, the answer is the reason.
  return Object.fromEntries(Object.entries({ ...NETWORK_METHODS, ...IPAM_METHODS }).map(([path, spec]) => [path, { spec: { request: undefined, response: spec.response }, handle: refuse }]));
}
