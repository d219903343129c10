import { createSocket, Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, Server, Socket } from 'node:net';
import * as packet from 'dns-packet';
import type { DnsListener, DnsVerdict } from '../../ports/dns.js';
import { Logger, silentLogger } from '../../ports/logger.js';

export type DnsHandler = (question: packet.Question, source: string) => DnsVerdict;

/** As Docker's resolver: a forwarded query that gets no answer within this is given up. */
const FORWARD_TIMEOUT_MS = 4000;
/** Forwards in flight at once; more are refused (REFUSED), as Docker's own resolver caps them. */
const MAX_IN_FLIGHT = 1024;
const HEADER_BYTES = 12;
const RCODE_FORMERR = 1;
const RCODE_REFUSED = 5;

interface Listener {
  udp: UdpSocket;
  tcp: Server;
}

/**
 * A DNS proxy on 127.0.0.1, one port per upstream server: containers' queries to that server are
 * DNATed here (the kernel keeps their source, the container's address). Each query is answered from
 * `handler` or forwarded to the server it was meant for, from the host, and the server's reply is
 * relayed byte for byte: every other name resolves exactly as before. A packet that does not decode
 * gets FORMERR (or nothing, without a header); a flood meets REFUSED past MAX_IN_FLIGHT forwards.
 */
export class DnsProxy {
  private readonly listeners = new Map<string, Listener>();
  private inFlight = 0;
  /** Queries answered locally, forwarded, refused, malformed: for the log and the benchmark. */
  readonly counts = { answered: 0, forwarded: 0, refused: 0, malformed: 0 };

  constructor(
    private readonly handler: DnsHandler,
    private readonly log: Logger = silentLogger,
    /** Where to listen, and the upstreams' port: other than 127.0.0.1 and 53 only in tests. */
    private readonly where: { host: string; upstreamPort: number } = { host: '127.0.0.1', upstreamPort: 53 },
  ) {}

  /** Opens the listeners of `wanted` that are not open yet and closes the others. */
  async serve(wanted: DnsListener[]): Promise<void> {
    const keys = new Set(wanted.map(key));
    for (const [k, listener] of this.listeners) {
      if (keys.has(k)) continue;
      listener.udp.close();
      listener.tcp.close();
      this.listeners.delete(k);
    }
    for (const l of wanted) {
      if (this.listeners.has(key(l))) continue;
      this.listeners.set(key(l), await this.listen(l));
    }
  }

  async close(): Promise<void> {
    await this.serve([]);
  }

  private async listen({ upstream, port }: DnsListener): Promise<Listener> {
    const udp = createSocket('udp4');
    udp.on('message', (message, remote) => {
      void this.query(message, remote.address, 'udp', upstream).then((reply) => reply && udp.send(reply, remote.port, remote.address));
    });
    udp.on('error', (error) => this.log.warn({ err: error, upstream }, 'DNS listener failed'));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, this.where.host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const tcp = createServer((socket) => this.serveTcp(socket, upstream));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, this.where.host, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
    tcp.on('error', (error) => this.log.warn({ err: error, upstream }, 'DNS listener failed'));
    return { udp, tcp };
  }

  /** Messages on a TCP connection, each with its two-byte length, answered in turn. */
  private serveTcp(socket: Socket, upstream: string): void {
    const frames = new FrameReader();
    socket.setTimeout(FORWARD_TIMEOUT_MS * 2, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      for (const message of frames.push(chunk)) {
        void this.query(message, socket.remoteAddress?.replace(/^::ffff:/, '') ?? '', 'tcp', upstream).then((reply) => {
          if (reply && !socket.destroyed) socket.write(framed(reply));
        });
      }
    });
  }

  /** The reply to one query, or undefined to send none. */
  private async query(message: Buffer, source: string, transport: 'udp' | 'tcp', upstream: string): Promise<Buffer | undefined> {
    let decoded: packet.Packet;
    try {
      decoded = packet.decode(message);
      if (decoded.type !== 'query' || !decoded.questions?.length) throw new Error('not a query');
      for (const q of decoded.questions) if (q.name.length > 253) throw new Error('name too long');
    } catch {
      this.counts.malformed++;
      return message.length >= HEADER_BYTES ? errorReply(message, RCODE_FORMERR) : undefined;
    }
    const question = decoded.questions[0]!;
    const verdict = this.handler(question, source);
    if (verdict) {
      this.counts.answered++;
      return packet.encode({
        id: decoded.id,
        type: 'response',
        flags: (decoded.flags ?? 0) & packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | packet.AUTHORITATIVE_ANSWER,
        questions: decoded.questions,
        answers: verdict.answer,
      });
    }
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.counts.refused++;
      return errorReply(message, RCODE_REFUSED);
    }
    this.counts.forwarded++;
    this.inFlight++;
    try {
      return await (transport === 'udp' ? forwardUdp : forwardTcp)(message, upstream, this.where.upstreamPort);
    } catch {
      // No answer from upstream: none to the client either, which then tries its next server.
      return undefined;
    } finally {
      this.inFlight--;
    }
  }
}

const key = (l: DnsListener): string => `${l.upstream}:${l.port}`;

/** The query's header with QR set and `rcode`, its question kept: a well-formed error for any client. */
function errorReply(message: Buffer, rcode: number): Buffer {
  const reply = Buffer.from(message.subarray(0, HEADER_BYTES));
  reply[2] = (reply[2]! | 0x80) & ~0x04;
  reply[3] = (reply[3]! & 0xf0) | rcode;
  // No records: the counts after the header go to zero, so nothing past it is promised.
  reply.fill(0, 4, HEADER_BYTES);
  return reply;
}

/** DNS over TCP: a message behind its two-byte length. */
export const framed = (message: Buffer): Buffer => Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);

/** The messages of a DNS-over-TCP stream, as its chunks come in. */
export class FrameReader {
  private buffered = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    const messages: Buffer[] = [];
    while (this.buffered.length >= 2 && this.buffered.length >= 2 + this.buffered.readUInt16BE(0)) {
      const length = this.buffered.readUInt16BE(0);
      messages.push(this.buffered.subarray(2, 2 + length));
      this.buffered = this.buffered.subarray(2 + length);
    }
    return messages;
  }
}

/** One exchange with an upstream server: settled by its reply, its failure or FORWARD_TIMEOUT_MS, then closed. */
function exchange(open: (settle: (error?: Error, reply?: Buffer) => void) => { close(): void }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const connection = open((error, reply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      connection.close();
      if (error) reject(error);
      else resolve(reply!);
    });
    const timer = setTimeout(() => {
      settled = true;
      connection.close();
      reject(new Error('upstream timed out'));
    }, FORWARD_TIMEOUT_MS);
  });
}

function forwardUdp(message: Buffer, upstream: string, port: number): Promise<Buffer> {
  return exchange((settle) => {
    const socket = createSocket('udp4');
    socket.on('error', (error) => settle(error));
    // The reply must carry the query's ID and come from the server asked (a connected socket sees no other).
    socket.on('message', (reply) => {
      if (reply.length >= 2 && reply.readUInt16BE(0) === message.readUInt16BE(0)) settle(undefined, reply);
    });
    socket.connect(port, upstream, () => socket.send(message));
    return { close: () => socket.close() };
  });
}

function forwardTcp(message: Buffer, upstream: string, port: number): Promise<Buffer> {
  return exchange((settle) => {
    const socket = connect(port, upstream);
    const frames = new FrameReader();
    socket.on('error', (error) => settle(error));
    socket.on('connect', () => socket.write(framed(message)));
    socket.on('data', (chunk: Buffer) => {
      const [reply] = frames.push(chunk);
      if (reply) settle(undefined, reply);
    });
    return { close: () => socket.destroy() };
  });
}
