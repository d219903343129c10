import { prefixEnd } from '../../src/adapters/datastore/etcd/keys.js';
import { calicoctlHere, CliResult } from './daemon.js';
import type { EtcdContext } from './ipam.js';

/**
 * calicoctl run in this process against a suite's etcd: `ctl` as it is, `ok` failing the test on a
 * non-zero exit, and `datastore` (everything under /calico with its revisions) to show that a refused
 * command wrote nothing.
 */
export function calicoctlOn(suite: { readonly ctx: EtcdContext }, env: () => Record<string, string>) {
  const ctl = (args: string[], input?: string): Promise<CliResult> => calicoctlHere(args, env(), input);
  const ok = async (args: string[], input?: string): Promise<string> => {
    const result = await ctl(args, input);
    if (result.status !== 0) throw new Error(`calicoctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const datastore = async (): Promise<string> => {
    const response = await suite.ctx.etcd.range({ key: Buffer.from('/calico/'), range_end: prefixEnd('/calico/') });
    return response.kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}@${kv.mod_revision}`).join('\n');
  };
  return { ctl, ok, datastore };
}
