import type * as packet from 'dns-packet';

/** One port of the DNS proxy: where containers' queries to `upstream` are sent instead (on 127.0.0.1). */
export interface DnsListener {
  upstream: string;
  port: number;
}

/** What to do with a query: answer it with these records (maybe none), or (undefined) pass it on unchanged. */
export type DnsVerdict = { answer: packet.Answer[] } | undefined;
