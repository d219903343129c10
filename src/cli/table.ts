/**
 * calicoctl-style ASCII tables (olekukonko/tablewriter): a ruled header, centred titles, one row
 * per line. A cell's own line breaks make the row taller (PrettyTable's multi-line cells, as calicoctl
 * 0.x listed an endpoint's addresses). With `wrap`, cells longer than that many characters are broken
 * at spaces onto more lines, as calicoctl's `node status` does (a single word longer than the limit stays whole).
 */
export function renderTable(headers: string[], rows: string[][], options: { wrap?: number } = {}): string {
  const lines = rows.flatMap((row) => wrapRow(row, options.wrap));
  const widths = headers.map((h, i) => Math.max(h.length, ...lines.map((r) => (r[i] ?? '').length)));
  const rule = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const centre = (text: string, width: number): string => {
    const left = Math.floor((width - text.length) / 2);
    return ' '.repeat(left) + text + ' '.repeat(width - text.length - left);
  };
  const line = (cells: string[], align: (text: string, width: number) => string): string =>
    `| ${cells.map((c, i) => align(c ?? '', widths[i]!)).join(' | ')} |`;
  return [rule, line(headers, centre), rule, ...lines.map((r) => line(r, (t, w) => t.padEnd(w))), rule].join('\n');
}

function wrapCell(text: string, limit: number): string[] {
  const out: string[] = [];
  let current = '';
  for (const word of text.split(' ')) {
    if (current !== '' && current.length + 1 + word.length > limit) {
      out.push(current);
      current = word;
    } else {
      current = current === '' ? word : `${current} ${word}`;
    }
  }
  out.push(current);
  return out;
}

function wrapRow(row: string[], limit: number | undefined): string[][] {
  const cells = row.map((cell) => (cell ?? '').split('\n').flatMap((line) => (limit ? wrapCell(line, limit) : [line])));
  const height = Math.max(...cells.map((c) => c.length));
  return Array.from({ length: height }, (_, i) => cells.map((c) => c[i] ?? ''));
}
