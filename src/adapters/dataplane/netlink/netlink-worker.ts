/**
 * The worker thread that owns the netlink socket (see NetlinkDataplane): runs each requested
 * Dataplane method on a NetlinkKernel, in arrival order, and posts back its result or its error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DataplaneError } from '../../../domain/errors.js';
import { NetlinkKernel } from './netlink-kernel.js';
import type { DataplaneCall, DataplaneReply, WorkerData } from './netlink-dataplane.js';

const kernel = new NetlinkKernel();
const port = parentPort!;
const { socketClosed } = workerData as WorkerData;

port.on('message', (call: DataplaneCall | 'close') => {
  // The socket is closed here, while the thread is still whole: torn down with the thread, the
  // native binding aborts the whole process.
  if (call === 'close') {
    void kernel.close();
    Atomics.store(socketClosed, 0, 1);
    Atomics.notify(socketClosed, 0);
    port.close();
    return;
  }
  const method = kernel[call.method] as (...args: unknown[]) => Promise<unknown>;
  method.apply(kernel, call.args).then(
    (result) => port.postMessage({ id: call.id, result } satisfies DataplaneReply),
    (error: Error) => {
      const failure =
        error instanceof DataplaneError ? { op: error.op, errno: error.errno, detail: error.detail } : { op: call.method, errno: 'EIO', detail: error.message };
      port.postMessage({ id: call.id, failure } satisfies DataplaneReply);
    },
  );
});
