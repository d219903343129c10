import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsProxy, FrameReader, framed } from '../src/adapters/dns/dns-proxy.js';
import { ROOT } from './helpers/daemon.js';
import { until } from './helpers/until.js';

/**
 * The DNS proxy with real sockets on loopback: a real upstream server (test/helpers/dns-server.mjs) on
 * 127.0.0.2, the proxy on 127.0.0.1, queries from 127.0.0.3 standing for a container.
 */

const UPSTREAM = '127.0.0.2';
const UPSTREAM_PORT = 18653;
const PROXY_PORT = 18553;
const CONTAINER = '127.0.0.3';
/** An upstream that takes queries and never answers. */
const SILENT = '127.0.0.4';

function ask(message: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(undefined);
    }, timeoutMs);
    socket.on('message', (reply) => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    });
    socket.bind(0, CONTAINER, () => socket.send(message, PROXY_PORT, '127.0.0.1'));
  });
}

const query = (name: string, type: packet.RecordType = 'A', id = 7): Buffer =>
  packet.encode({ id, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });

function askTcp(message: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: PROXY_PORT, host: '127.0.0.1', localAddress: CONTAINER });
    const frames = new FrameReader();
    socket.on('error', reject);
    socket.on('connect', () => socket.write(framed(message)));
    socket.on('data', (chunk: Buffer) => {
      const [reply] = frames.push(chunk);
      if (!reply) return;
      socket.destroy();
      resolve(reply);
    });
  });
}

describe('the DNS proxy', () => {
  let upstream: ChildProcess;
  const asked: { name: string; source: string }[] = [];
  const proxy = new DnsProxy(
    (question, source) => {
      asked.push({ name: question.name, source });
      if (question.name === 'bbox2') return { answer: [{ type: 'A', name: 'bbox2', ttl: 0, class: 'IN', data: '10.0.0.2' }] };
      return undefined;
    },
    undefined,
    { host: '127.0.0.1', upstreamPort: UPSTREAM_PORT },
  );

  beforeAll(async () => {
    upstream = spawn(process.execPath, [join(ROOT, 'test/helpers/dns-server.mjs'), UPSTREAM, String(UPSTREAM_PORT), JSON.stringify({ 'outside.example': '192.0.2.7' })], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => upstream.stdout!.once('data', resolve));
    await proxy.serve([{ upstream: UPSTREAM, port: PROXY_PORT }]);
  });
  afterAll(async () => {
    upstream?.kill('SIGKILL');
    await proxy.close();
  });

  it('answers its own names, and passes every other query to its server, relaying the reply as it came', async () => {
    const own = packet.decode((await ask(query('bbox2', 'A', 41)))!);
    expect(own.id).toBe(41);
    expect(own.answers).toMatchObject([{ type: 'A', data: '10.0.0.2' }]);
    expect(asked.at(-1)).toEqual({ name: 'bbox2', source: CONTAINER });
    const outside = packet.decode((await ask(query('outside.example', 'A', 42)))!);
    expect(outside).toMatchObject({ id: 42, rcode: 'NOERROR', answers: [{ data: '192.0.2.7', ttl: 300 }] });
    const missing = packet.decode((await ask(query('nowhere.example', 'A', 43)))!);
    expect(missing.rcode).toBe('NXDOMAIN');
    // Over TCP too.
    expect(packet.decode(await askTcp(query('outside.example', 'A', 44))).answers).toMatchObject([{ data: '192.0.2.7' }]);
    expect(packet.decode(await askTcp(query('bbox2', 'A', 45))).answers).toMatchObject([{ data: '10.0.0.2' }]);
  });

  it('answers a malformed packet and a 300-byte name with FORMERR, drops what has no header, and keeps serving', async () => {
    const garbage = Buffer.concat([query('x').subarray(0, 12), Buffer.from([0xff, 0xff, 0xff])]);
    expect(packet.decode((await ask(garbage))!).rcode).toBe('FORMERR');
    const long = `${'a'.repeat(60)}.`.repeat(5) + 'example';
    const longQuery = Buffer.from(query('x.example'));
    const reply = await ask(Buffer.concat([longQuery.subarray(0, 12), encodeRawName(long), longQuery.subarray(longQuery.length - 4)]));
    expect(packet.decode(reply!).rcode).toBe('FORMERR');
    expect(await ask(Buffer.from([1, 2, 3]), 500)).toBeUndefined();
    expect(proxy.counts.malformed).toBeGreaterThanOrEqual(3);
    expect(packet.decode((await ask(query('bbox2')))!).answers).toHaveLength(1);
  });

  it('survives a flood towards a server that never answers: past 1024 forwards in flight it refuses, and it still answers its own names', async () => {
    const silent = createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(UPSTREAM_PORT, SILENT, resolve));
    await proxy.serve([{ upstream: UPSTREAM, port: PROXY_PORT }, { upstream: SILENT, port: PROXY_PORT + 1 }]);
    const sender = createSocket('udp4');
    const rcodes: string[] = [];
    sender.on('message', (reply) => rcodes.push(packet.decode(reply).rcode ?? ''));
    await new Promise<void>((resolve) => sender.bind(0, CONTAINER, resolve));
    // Paced in bursts until the proxy has refused enough: on a loaded machine the kernel may drop some
    // queries before the proxy reads them, so the count sent is not what the proxy saw.
    const forwardedBefore = proxy.counts.forwarded;
    for (let i = 0; proxy.counts.refused < 300 && i < 4000; i++) {
      sender.send(query('nowhere.example', 'A', i % 65536), PROXY_PORT + 1, '127.0.0.1');
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 10));
    }
    await until('300 refusals back', () => rcodes.length >= 300, 5000);
    // Exactly the cap went upstream (none has timed out yet); the rest were refused, each with a reply.
    expect(proxy.counts.forwarded - forwardedBefore).toBe(1024);
    expect(proxy.counts.refused).toBeGreaterThanOrEqual(300);
    expect(new Set(rcodes)).toEqual(new Set(['REFUSED']));
    // Meanwhile its own names are answered at once.
    expect(packet.decode((await ask(query('bbox2'), 500))!).answers).toHaveLength(1);
    sender.close();
    silent.close();
    // Once the forwards time out, it forwards again.
    await new Promise((r) => setTimeout(r, 4500));
    expect(packet.decode((await ask(query('outside.example', 'A', 9)))!).answers).toMatchObject([{ data: '192.0.2.7' }]);
  }, 20_000);
});

/** A name in wire format without the 255-byte limit a well-behaved encoder enforces. */
function encodeRawName(name: string): Buffer {
  const parts = name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}
