import type { AllocationBlock } from '../../../domain/ipam-model.js';
import { DatastoreUnavailableError } from '../../../domain/errors.js';

/**
 * JSON for Calico's values. Block sequence numbers are uint64 nanosecond counters, above 2^53, so
 * they are carried as bigints: quoted before JSON.parse and written back as bare digits.
 */
const BIG = '@@calico-uint64@@';

const BIG_STRING = new RegExp(`"${BIG}(\\d+)"`, 'g');

function quoteSequenceNumbers(text: string): string {
  let out = text.replace(/("sequenceNumber"\s*:\s*)(\d+)/, `$1"${BIG}$2"`);
  const start = out.indexOf('"sequenceNumberForAllocation"');
  if (start >= 0) {
    const open = out.indexOf('{', start);
    const close = out.indexOf('}', open);
    if (open >= 0 && close > open) {
      const inner = out.slice(open, close).replace(/("\d+"\s*:\s*)(\d+)/g, `$1"${BIG}$2"`);
      out = out.slice(0, open) + inner + out.slice(close);
    }
  }
  return out;
}

export function decodeBlock(text: string): AllocationBlock {
  const block = JSON.parse(quoteSequenceNumbers(text), (_key, value) =>
    typeof value === 'string' && value.startsWith(BIG) ? BigInt(value.slice(BIG.length)) : value,
  ) as AllocationBlock;
  if (typeof block?.cidr !== 'string' || !Array.isArray(block.allocations) || !Array.isArray(block.unallocated)) {
    throw new DatastoreUnavailableError(`malformed allocation block in etcd: ${text.slice(0, 200)}`);
  }
  block.attributes ??= [];
  block.affinity ??= null;
  return block;
}

export function encodeValue(value: unknown): string {
  const text = JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? `${BIG}${v}` : v));
  return text.replace(BIG_STRING, '$1');
}

export function decodeJson<T>(text: string, fallback: T): T {
  // Calico's Python era wrote affinity keys with an empty value; read that as the fallback.
  if (text.trim() === '') return fallback;
  return JSON.parse(text) as T;
}
