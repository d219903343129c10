/**
 * Orders for sorting names and addresses, fixed and locale-free (as Calico's Go sorts them).
 * `localeCompare` and `Intl.Collator` load ICU's collation data: ~3 MB more resident memory in a
 * daemon that only needs a stable order.
 */

/** Code-unit order. */
export const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const DIGITS = /(\d+)/;

/** Runs of digits compared as numbers, the rest as text: 10.0.0.2 before 10.0.0.10. */
export function naturalOrder(a: string, b: string): number {
  const left = a.split(DIGITS);
  const right = b.split(DIGITS);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    // split() with a capture group puts the digit runs at odd indexes.
    const order = i % 2 === 1 ? Number(left[i]) - Number(right[i]) || byText(left[i]!, right[i]!) : byText(left[i]!, right[i]!);
    if (order !== 0) return order;
  }
  return left.length - right.length;
}
