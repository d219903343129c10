/**
 * RFC 7386 JSON merge patch, which is what calicoctl's strategic merge patch amounts to on Calico's
 * types (they declare no merge keys): objects merge key by key, `null` removes a key, anything else
 * (lists included) replaces.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const base: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete base[key];
    else base[key] = mergePatch(base[key], value);
  }
  return base;
}
