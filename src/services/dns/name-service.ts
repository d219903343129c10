import type * as packet from 'dns-packet';
import { addressOfReverseName, endpointNetwork, NameIndex } from '../../calc/dns-names.js';
import { DNS_SERVERS_ANNOTATION, SANDBOX_ANNOTATION, WORKLOAD_NAMESPACE, WorkloadEndpoint } from '../../domain/endpoint-model.js';
import type { DnsListener, DnsVerdict } from '../../ports/dns.js';
import { Logger, silentLogger } from '../../ports/logger.js';
import type { DatastoreSyncer, SyncListener, ViewChange } from '../sync/datastore-syncer.js';

/** Answers carry no TTL to speak of: a removed container must stop resolving at once, everywhere. */
const ANSWER_TTL = 0;
/** Docker forwards to the first three servers of the host's file. */
const MAX_UPSTREAMS = 3;

export interface NameServiceOptions {
  node: string;
  /** The first port of the proxy's listeners; upstream n (in address order) gets port + n. */
  basePort: number;
  /** The host's resolver configuration, as Docker reads it (/etc/resolv.conf). */
  readResolvConf: () => string;
  /** Called with the listeners whenever the upstream servers change. */
  onListeners: (listeners: DnsListener[]) => void;
}

/** The nameservers of a resolv.conf that Docker queries from the container's namespace: IPv4, not loopback. */
export function containerSideServers(resolvConf: string): string[] {
  const servers = resolvConf
    .split('\n')
    .map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1])
    .filter((s): s is string => s !== undefined)
    .slice(0, MAX_UPSTREAMS);
  return servers.filter((s) => /^\d{1,3}(\.\d{1,3}){3}$/.test(s) && !s.startsWith('127.'));
}

/**
 * Names of containers on other hosts. Follows every workload endpoint in the daemon's view (each knows its
 * container's DNS names, recorded by the DockerWatcher of its host), and answers, for a container of
 * this host, the names of the networks that container is on; everything else goes to the upstream
 * server it was meant for. Also decides which upstreams are intercepted: the host's resolv.conf
 * servers and the `--dns` servers of this host's endpoints.
 */
export class NameService {
  private index: NameIndex | undefined;
  /** This host's endpoints by address. */
  private local = new Map<string, WorkloadEndpoint>();
  private readonly listener: SyncListener = {
    loaded: () => this.changed(),
    changed: (changes) => changes.forEach((c) => this.onChange(c)),
  };
  private subscribed = false;
  private listeners: DnsListener[] = [];
  private resolvConf = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sync: DatastoreSyncer,
    private readonly options: NameServiceOptions,
    private readonly log: Logger = silentLogger,
  ) {}

  async start(): Promise<void> {
    await this.sync.start();
    if (!this.subscribed) this.sync.subscribe(this.listener);
    this.subscribed = true;
    // The host's file may change (DHCP, an operator): read again every few seconds, not on each change.
    this.timer ??= setInterval(() => this.updateListeners({ reread: true }), 5000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.sync.unsubscribe(this.listener);
    this.subscribed = false;
  }

  private endpoints(): WorkloadEndpoint[] {
    return this.sync.view.list<WorkloadEndpoint>('WorkloadEndpoint').filter((e) => e.metadata.namespace === WORKLOAD_NAMESPACE);
  }

  private onChange(change: ViewChange): void {
    if (change.kind !== 'resource' || change.ref.kind !== 'WorkloadEndpoint' || change.ref.namespace !== WORKLOAD_NAMESPACE) return;
    const before = change.before as WorkloadEndpoint | undefined;
    const after = (change.value ?? undefined) as WorkloadEndpoint | undefined;
    // The index follows each change; only a load builds it whole. Other hosts' endpoints change
    // nothing else here.
    this.index?.update(before, after);
    if (before?.spec.node === this.options.node || after?.spec.node === this.options.node) this.changedLocal({ reread: false });
  }

  private changed(): void {
    this.index = undefined;
    this.changedLocal({ reread: true });
  }

  private changedLocal(options: { reread: boolean }): void {
    this.local = new Map();
    for (const e of this.endpoints()) {
      if (e.spec.node !== this.options.node) continue;
      for (const n of e.spec.ipNetworks) this.local.set(n.split('/')[0]!, e);
    }
    this.updateListeners(options);
  }

  /** One listener per upstream a container of this host may query from its own namespace. */
  private updateListeners({ reread }: { reread: boolean }): void {
    if (reread) {
      try {
        this.resolvConf = this.options.readResolvConf();
      } catch {
        // No file: Docker then uses its own defaults, which are not ours to intercept.
        this.resolvConf = '';
      }
    }
    // Each container's own servers (`--dns`), as Docker takes them: the first three of each.
    const own = [...new Set(this.local.values())].flatMap((e) => containerSideServers((e.metadata.annotations?.[DNS_SERVERS_ANNOTATION]?.split(',') ?? []).map((s) => `nameserver ${s}`).join('\n')));
    const upstreams = [...new Set([...containerSideServers(this.resolvConf), ...own])].sort();
    const listeners = upstreams.map((upstream, i) => ({ upstream, port: this.options.basePort + i }));
    if (JSON.stringify(listeners) === JSON.stringify(this.listeners)) return;
    this.listeners = listeners;
    this.log.info({ upstreams }, 'container DNS through this host');
    this.options.onListeners(listeners);
  }

  /** The Calico networks of the container that has `source`: its endpoint's, and its other endpoints'. */
  private networksOf(source: string): string[] {
    const own = this.local.get(source);
    if (!own) return [];
    const container = own.spec.containerID;
    const sandbox = own.metadata.annotations?.[SANDBOX_ANNOTATION];
    const siblings = [...this.local.values()].filter(
      (e) => e === own || (container && e.spec.containerID === container) || (sandbox && e.metadata.annotations?.[SANDBOX_ANNOTATION] === sandbox),
    );
    return [...new Set(siblings.map(endpointNetwork).filter((n): n is string => n !== undefined))];
  }

  /** A query from `source`: the answer when it is a container name of its networks, else undefined (forward). */
  answer(question: packet.Question, source: string): DnsVerdict {
    const networks = this.networksOf(source);
    if (networks.length === 0) return undefined;
    this.index ??= new NameIndex(this.endpoints());
    if (question.type === 'PTR') {
      const address = addressOfReverseName(question.name);
      const name = address && this.index.reverse(address, networks);
      return name ? { answer: [{ type: 'PTR', name: question.name, ttl: ANSWER_TTL, class: 'IN', data: name }] } : undefined;
    }
    if (question.type !== 'A' && question.type !== 'AAAA') return undefined;
    const found = this.index.resolve(question.name, networks);
    if (!found) return undefined;
    const addresses = shuffled(question.type === 'A' ? found.ipv4 : found.ipv6);
    // A known name without an address of that family is answered empty, not forwarded (as Docker does).
    return { answer: addresses.map((data) => ({ type: question.type as 'A', name: question.name, ttl: ANSWER_TTL, class: 'IN' as const, data })) };
  }
}

function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}
