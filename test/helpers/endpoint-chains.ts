/**
 * The chain a workload address is dispatched to: `tw` inbound (cali-tw-…), `fw` outbound
 * (cali-fw-…). Endpoint chains are named by their content, so tests find them the way a packet
 * does: through the dispatch tree's leaf for the address.
 */
export function endpointChain(filter: Map<string, string[]>, direction: 'tw' | 'fw', address: string): string | undefined {
  const leaf = `${direction === 'tw' ? '-d' : '-s'} ${address}/${address.includes(':') ? 128 : 32} -g cali-${direction}-`;
  for (const rules of filter.values()) {
    const rule = rules.find((r) => r.startsWith(leaf));
    if (rule) return rule.split(' -g ')[1];
  }
  return undefined;
}

/** The rules of the chain a workload address is dispatched to. */
export function endpointRules(filter: Map<string, string[]>, direction: 'tw' | 'fw', address: string): string[] | undefined {
  const chain = endpointChain(filter, direction, address);
  return chain === undefined ? undefined : filter.get(chain);
}
