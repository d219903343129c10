/** calicoctl-style ASCII tables: a ruled header, centred titles, one row per line. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const rule = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const centre = (text: string, width: number): string => {
    const left = Math.floor((width - text.length) / 2);
    return ' '.repeat(left) + text + ' '.repeat(width - text.length - left);
  };
  const line = (cells: string[], align: (text: string, width: number) => string): string =>
    `| ${cells.map((c, i) => align(c ?? '', widths[i]!)).join(' | ')} |`;
  return [rule, line(headers, centre), rule, ...rows.map((r) => line(r, (t, w) => t.padEnd(w))), rule].join('\n');
}
