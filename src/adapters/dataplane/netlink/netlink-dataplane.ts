import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
// The binding's code must stay mapped while the worker's event loop closes its handles: a process that
// exits with the worker still running would otherwise run an unmapped close callback (SIGSEGV).
import 'netlink';
import type { Cidr, IpAddr } from '../../../domain/cidr.js';
import { DataplaneError } from '../../../domain/errors.js';
import type { Dataplane, HostInterface, HostRoute, LinkInfo, TunnelApplyResult, TunnelDataplane } from '../../../ports/dataplane.js';
import type { TunnelPlan } from '../../../calc/tunnel-routes.js';

type Method = Exclude<keyof Dataplane, 'close'> | keyof TunnelDataplane;
export interface DataplaneCall {
  id: number;
  method: Method;
  args: unknown[];
}
export interface WorkerData {
  /** Set to 1 by the worker once its netlink socket is closed. */
  socketClosed: Int32Array;
}
export type DataplaneReply = { id: number; result: unknown } | { id: number; failure: { op: string; errno: string; detail: string } };

interface RunningWorker {
  thread: Worker;
  socketClosed: Int32Array;
}

interface Pending {
  thread: Worker;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * The host kernel's dataplane, run in a worker thread. rtnetlink requests are carried out inside
 * sendmsg() on the thread that sends them, and deleting a veth takes the kernel ~20 ms: on the
 * daemon's own thread that would stall every Docker request behind it. The worker keeps requests in
 * the order they were made, so a route queued after a deletion is never undone by it.
 */
export class NetlinkDataplane implements Dataplane, TunnelDataplane {
  private worker: RunningWorker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  createVeth(hostName: string, peerName: string, mtu?: number): Promise<{ hostMac: string }> {
    return this.call('createVeth', [hostName, peerName, mtu]);
  }

  deleteLink(name: string): Promise<boolean> {
    return this.call('deleteLink', [name]);
  }

  listLinks(prefix: string): Promise<LinkInfo[]> {
    return this.call('listLinks', [prefix]);
  }

  configureHostInterface(name: string, families: { ipv4: boolean; ipv6: boolean }): Promise<void> {
    return this.call('configureHostInterface', [name, families]);
  }

  enableForwarding(): Promise<void> {
    return this.call('enableForwarding', []);
  }

  setHostRoute(route: HostRoute): Promise<void> {
    return this.call('setHostRoute', [route]);
  }

  removeHostRoute(address: IpAddr): Promise<void> {
    return this.call('removeHostRoute', [address]);
  }

  listHostRoutes(prefix: string): Promise<HostRoute[]> {
    return this.call('listHostRoutes', [prefix]);
  }

  applyTunnels(plan: TunnelPlan, options: { resync?: boolean } = {}): Promise<TunnelApplyResult> {
    return this.call('applyTunnels', [plan, options]);
  }

  listInterfaces(): Promise<HostInterface[]> {
    return this.call('listInterfaces', []);
  }

  syncBlackholes(blocks: Cidr[], within: Cidr[]): Promise<void> {
    return this.call('syncBlackholes', [blocks, within]);
  }

  deleteRoutes(protocol: number, within: Cidr[]): Promise<number> {
    return this.call('deleteRoutes', [protocol, within]);
  }

  /** Resolves once the worker has closed its socket and ended. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.forget();
    const exited = once(worker.thread, 'exit');
    worker.thread.ref();
    worker.thread.postMessage('close');
    await exited;
  }

  /**
   * A process that exits (an error, process.exit) ends its workers mid-flight, and the native
   * binding aborts if its socket is still open then: the worker is told to close it, and the exit
   * waits (briefly, synchronously, as exit handlers must) until it has.
   */
  private readonly closeOnExit = (): void => {
    const worker = this.worker;
    if (!worker) return;
    this.forget();
    worker.thread.postMessage('close');
    Atomics.wait(worker.socketClosed, 0, 0, 1000);
  };

  private forget(): void {
    this.worker = undefined;
    process.off('exit', this.closeOnExit);
  }

  private call<T>(method: Method, args: unknown[]): Promise<T> {
    const { thread } = this.running();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { thread, resolve: resolve as (value: unknown) => void, reject });
      // The worker keeps the process alive only while an answer is awaited.
      thread.ref();
      thread.postMessage({ id, method, args } satisfies DataplaneCall);
    });
  }

  private running(): RunningWorker {
    if (this.worker) return this.worker;
    const socketClosed = new Int32Array(new SharedArrayBuffer(4));
    const thread = new Worker(new URL('./netlink-worker.js', import.meta.url), { workerData: { socketClosed } satisfies WorkerData });
    thread.on('message', (reply: DataplaneReply) => this.settle(reply));
    // A worker that dies fails what it was doing; the next call starts a new one.
    thread.on('error', (error) => this.failAll(thread, new DataplaneError('netlink worker', 'EIO', error.message)));
    thread.on('exit', (code) => this.failAll(thread, new DataplaneError('netlink worker', 'EIO', `exited with code ${code}`)));
    thread.unref();
    this.worker = { thread, socketClosed };
    process.on('exit', this.closeOnExit);
    return this.worker;
  }

  private settle(reply: DataplaneReply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if ('failure' in reply) pending.reject(new DataplaneError(reply.failure.op, reply.failure.errno, reply.failure.detail));
    else pending.resolve(reply.result);
    if (this.pending.size === 0) this.worker?.thread.unref();
  }

  private failAll(thread: Worker, error: Error): void {
    if (this.worker?.thread === thread) this.forget();
    for (const [id, pending] of this.pending) {
      if (pending.thread !== thread) continue;
      this.pending.delete(id);
      pending.reject(error);
    }
  }
}
