/**
 * The containers (Docker's sandboxes) of this host and their Calico endpoints, for the two things a
 * container on several Calico networks needs:
 *
 * - Each endpoint gets a gateway of its own, 169.254.1.1 for the first, then .2, .3…, each with its
 *   own connected route in the container. With one gateway for all, the second route to it fails
 *   ("file exists", calicoctl#1031), and when the first network leaves, Docker finds no route to the
 *   gateway of the next and the container is left without a default route.
 * - All of a container's addresses are routed through one veth: the one Docker sends the container's
 *   default route through, so that replies from any of its addresses pass the strict rp_filter of the
 *   veth they arrive on. Docker picks that endpoint as libnetwork orders a sandbox's endpoints: those
 *   with both an IPv4 and an IPv6 gateway first, then by network name.
 */

export interface SandboxMember {
  endpointId: string;
  /** The gateway address this endpoint was given (169.254.1.x). */
  gateway: string;
  network: string;
  dualStack: boolean;
}

const GATEWAY_PREFIX = '169.254.1.';
/** .1 to .254: a container would need 254 Calico networks to run out. */
const MAX_GATEWAYS = 254;

/** The endpoint whose veth carries the container's default route, as Docker chooses it. */
export function gatewayMember(members: SandboxMember[]): SandboxMember | undefined {
  return [...members].sort((a, b) => Number(b.dualStack) - Number(a.dualStack) || (a.network < b.network ? -1 : a.network > b.network ? 1 : 0))[0];
}

export class Sandboxes {
  private readonly members = new Map<string, SandboxMember[]>();

  /** The gateway for an endpoint joining `sandbox`: the lowest not taken by its other endpoints. */
  freeGateway(sandbox: string): string {
    const taken = new Set((this.members.get(sandbox) ?? []).map((m) => m.gateway));
    for (let n = 1; n <= MAX_GATEWAYS; n++) if (!taken.has(`${GATEWAY_PREFIX}${n}`)) return `${GATEWAY_PREFIX}${n}`;
    throw new Error(`sandbox ${sandbox} has ${MAX_GATEWAYS} Calico endpoints already`);
  }

  /** Adds an endpoint; returns the container's members and the one its addresses are routed through. */
  join(sandbox: string, member: SandboxMember): { members: SandboxMember[]; via: SandboxMember } {
    const members = [...(this.members.get(sandbox) ?? []).filter((m) => m.endpointId !== member.endpointId), member];
    this.members.set(sandbox, members);
    return { members, via: gatewayMember(members)! };
  }

  /**
   * Takes an endpoint out; when it carried the container's routes, returns the members left and the
   * one their routes move to.
   */
  leave(endpointId: string): { members: SandboxMember[]; via: SandboxMember } | undefined {
    for (const [sandbox, members] of this.members) {
      const leaving = members.find((m) => m.endpointId === endpointId);
      if (!leaving) continue;
      const rest = members.filter((m) => m !== leaving);
      if (rest.length === 0) this.members.delete(sandbox);
      else this.members.set(sandbox, rest);
      const before = gatewayMember(members)!;
      return rest.length > 0 && before === leaving ? { members: rest, via: gatewayMember(rest)! } : undefined;
    }
    return undefined;
  }
}
