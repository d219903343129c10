import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import { InvalidRequestError } from '../domain/errors.js';
import { API_VERSION, BgpConfiguration, BgpPeer, CalicoNode, Resource } from '../domain/resources.js';
import type { WorkloadEndpoint } from '../domain/endpoint-model.js';
import type { IpPool } from '../domain/ipam-model.js';
import { DEFAULT_TIER, DEFAULT_TIER_ORDER, type HostEndpoint, type PolicySpec } from '../domain/policy-model.js';
import { decodeResource } from '../services/resources/resource-schema.js';

/**
 * Resources in and out of calicoctl as Calico's does it: YAML or JSON, several documents, a list or
 * a `<Kind>List`; tables in Go's tabwriter layout, YAML with sorted keys, JSON in Calico's field order.
 */

function flatten(value: unknown): unknown[] {
  if (Array.isArray(value)) return value.flatMap(flatten);
  const doc = value as { kind?: unknown; items?: unknown };
  if (typeof doc === 'object' && doc !== null && typeof doc.kind === 'string' && doc.kind.endsWith('List') && Array.isArray(doc.items)) return doc.items;
  return [value];
}

/** A file's text (`-` for standard input); a file that cannot be read is an error that names it. */
export async function readInputFile(file: string, stdin: () => Promise<string>): Promise<string> {
  try {
    return file === '-' ? await stdin() : readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new InvalidRequestError(`open ${file}: ${code === 'ENOENT' ? 'no such file or directory' : code === 'EISDIR' ? 'is a directory' : (error as Error).message}`);
  }
}

/** Every resource in a file (`-` for standard input), strictly decoded; nothing is written if any is wrong. */
export async function readResources(file: string, stdin: () => Promise<string>): Promise<Resource[]> {
  const text = await readInputFile(file, stdin);
  const values: unknown[] = [];
  for (const document of parseAllDocuments(text)) {
    const problem = document.errors[0];
    if (problem) {
      const line = problem.linePos?.[0]?.line;
      throw new InvalidRequestError(`error parsing document: yaml: ${line ? `line ${line}: ` : ''}${problem.message.split('\n')[0]}`);
    }
    const value = document.toJS() as unknown;
    if (value !== null && value !== undefined) values.push(...flatten(value));
  }
  if (values.length === 0) throw new InvalidRequestError(`No resources specified in file ${file === '-' ? '(standard input)' : file}`);
  return values.map(decodeResource);
}

export type OutputFormat = 'ps' | 'wide' | 'yaml' | 'json';

export function outputFormat(text: string | undefined): OutputFormat {
  const format = (text ?? 'ps').toLowerCase();
  if (format === 'yml') return 'yaml';
  if (format === 'ps' || format === 'wide' || format === 'yaml' || format === 'json') return format;
  throw new InvalidRequestError(`unrecognized output format '${text}'`);
}

/** Go's text/tabwriter as calicoctl sets it up: min width 5, padding 3, every cell tab-terminated (trailing spaces), a blank line after. */
export function tabwriter(rows: string[][]): string {
  const columns = Math.max(...rows.map((r) => r.length));
  const widths = Array.from({ length: columns }, (_, i) => Math.max(5, ...rows.map((r) => (r[i] ?? '').length + 3)));
  return `${rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('')).join('\n')}\n`;
}

export interface TableContext {
  wide: boolean;
  /** The AS nodes without their own inherit. */
  globalAs: number;
  /** Prepend a NAMESPACE column (namespaced kinds listed with -n or -A). */
  namespaceColumn: boolean;
}

/** A number as Go's text/template prints a float64 (`%v`: 1e+06 from a million up), `<nil>` when unset. */
export function goNumber(value: number | undefined): string {
  if (value === undefined || value === null) return '<nil>';
  const exponent = value === 0 ? 0 : Math.floor(Math.log10(Math.abs(value)));
  if (exponent < -4 || exponent >= 6) return value.toExponential().replace(/e([+-])(\d)$/, 'e$10$2');
  return String(value);
}

type Columns = { headers: string[]; cells: (r: Resource) => string[] };

function columnsFor(kind: string, context: TableContext): Columns {
  const name = (r: Resource): string => r.metadata.name;
  switch (kind) {
    case 'IPPool': {
      const spec = (r: Resource) => (r as unknown as IpPool).spec;
      return context.wide
        ? {
            headers: ['NAME', 'CIDR', 'NAT', 'IPIPMODE', 'VXLANMODE', 'DISABLED', 'SELECTOR'],
            cells: (r) => [name(r), spec(r).cidr, String(spec(r).natOutgoing === true), spec(r).ipipMode || 'Never', spec(r).vxlanMode || 'Never', String(spec(r).disabled === true), spec(r).nodeSelector ?? ''],
          }
        : { headers: ['NAME', 'CIDR', 'SELECTOR'], cells: (r) => [name(r), spec(r).cidr, spec(r).nodeSelector ?? ''] };
    }
    case 'Node': {
      const bgp = (r: Resource) => (r as CalicoNode).spec.bgp;
      return context.wide
        ? {
            headers: ['NAME', 'ASN', 'IPV4', 'IPV6'],
            cells: (r) => [name(r), bgp(r)?.asNumber !== undefined ? String(bgp(r)!.asNumber) : `(${context.globalAs})`, bgp(r)?.ipv4Address ?? '', bgp(r)?.ipv6Address ?? ''],
          }
        : { headers: ['NAME'], cells: (r) => [name(r)] };
    }
    case 'BGPPeer': {
      const spec = (r: Resource) => (r as BgpPeer).spec;
      return {
        headers: ['NAME', 'PEERIP', 'NODE', 'ASN'],
        cells: (r) => [name(r), spec(r).peerIP ?? '', spec(r).node || spec(r).nodeSelector || '(global)', String(spec(r).asNumber ?? 0)],
      };
    }
    case 'BGPConfiguration': {
      const spec = (r: Resource) => (r as BgpConfiguration).spec;
      return {
        headers: ['NAME', 'LOGSEVERITY', 'MESHENABLED', 'ASNUMBER'],
        cells: (r) => [name(r), spec(r).logSeverityScreen ?? '', spec(r).nodeToNodeMeshEnabled === undefined ? '-' : String(spec(r).nodeToNodeMeshEnabled), spec(r).asNumber === undefined ? '-' : String(spec(r).asNumber)],
      };
    }
    case 'Profile': {
      const labels = (r: Resource): string => Object.entries((r.spec as { labelsToApply?: Record<string, string> }).labelsToApply ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
      return context.wide ? { headers: ['NAME', 'LABELS'], cells: (r) => [name(r), labels(r)] } : { headers: ['NAME'], cells: (r) => [name(r)] };
    }
    case 'WorkloadEndpoint': {
      const spec = (r: Resource) => (r as unknown as WorkloadEndpoint).spec;
      const base = (r: Resource): string[] => [spec(r).workload, spec(r).node, spec(r).ipNetworks.join(','), spec(r).interfaceName];
      return context.wide
        ? { headers: ['NAME', 'WORKLOAD', 'NODE', 'NETWORKS', 'INTERFACE', 'PROFILES', 'NATS'], cells: (r) => [name(r), ...base(r), spec(r).profiles.join(','), ''] }
        : { headers: ['WORKLOAD', 'NODE', 'NETWORKS', 'INTERFACE'], cells: base };
    }
    case 'GlobalNetworkPolicy':
    case 'NetworkPolicy': {
      const spec = (r: Resource) => r.spec as PolicySpec;
      const tier = (r: Resource): string => spec(r).tier || DEFAULT_TIER;
      return context.wide
        ? { headers: ['NAME', 'TIER', 'ORDER', 'SELECTOR'], cells: (r) => [name(r), tier(r), goNumber(spec(r).order), spec(r).selector ?? ''] }
        : { headers: ['NAME', 'TIER'], cells: (r) => [name(r), tier(r)] };
    }
    case 'Tier':
      return { headers: ['NAME', 'ORDER'], cells: (r) => [name(r), goNumber((r.spec as { order?: number }).order ?? DEFAULT_TIER_ORDER)] };
    case 'GlobalNetworkSet':
    case 'NetworkSet': {
      const nets = (r: Resource): string => ((r.spec as { nets?: string[] }).nets ?? []).join(',');
      return context.wide ? { headers: ['NAME', 'NETS'], cells: (r) => [name(r), nets(r)] } : { headers: ['NAME'], cells: (r) => [name(r)] };
    }
    case 'HostEndpoint': {
      const spec = (r: Resource) => (r as unknown as HostEndpoint).spec;
      return context.wide
        ? {
            headers: ['NAME', 'NODE', 'INTERFACE', 'IPS', 'PROFILES'],
            cells: (r) => [name(r), spec(r).node, spec(r).interfaceName ?? '', (spec(r).expectedIPs ?? []).join(','), (spec(r).profiles ?? []).join(',')],
          }
        : { headers: ['NAME', 'NODE'], cells: (r) => [name(r), spec(r).node] };
    }
    default:
      return { headers: ['NAME'], cells: (r) => [name(r)] };
  }
}

export function renderTable(kind: string, resources: Resource[], context: TableContext): string {
  const columns = columnsFor(kind, context);
  const withNamespace = (headers: string[], cells: (r: Resource) => string[]): Columns =>
    context.namespaceColumn ? { headers: ['NAMESPACE', ...headers], cells: (r) => [r.metadata.namespace ?? '', ...cells(r)] } : { headers, cells };
  const { headers, cells } = withNamespace(columns.headers, columns.cells);
  return tabwriter([headers, ...resources.map(cells)]);
}

/** `--export`: what is only meaningful in this datastore goes (Calico applies it to a named get only). */
export function exported(resource: Resource): Resource {
  const { uid: _u, resourceVersion: _r, creationTimestamp: _c, namespace: _n, ...metadata } = resource.metadata;
  return { ...resource, metadata: metadata as Resource['metadata'] };
}

/** One resource, or the `<Kind>List` of several, as Calico prints them. */
export function renderDocument(value: Resource | { kind: string; items: Resource[]; revision: string }, format: 'yaml' | 'json'): string {
  const document =
    'items' in value ? { kind: `${value.kind}List`, apiVersion: API_VERSION, metadata: { resourceVersion: value.revision }, items: value.items } : value;
  if (format === 'json') return `${JSON.stringify(document, null, 2)}\n`;
  return stringify(document, { sortMapEntries: true, indentSeq: false, lineWidth: 0 });
}
