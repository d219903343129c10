import { connect, Socket } from 'node:net';

export interface BirdReplyLine {
  code: number;
  text: string;
}

export interface BirdReply {
  /** The code of the line that ended the reply (0 ends table output, 3 `Reconfigured`, 8xxx/9xxx errors). */
  code: number;
  lines: BirdReplyLine[];
}

/** BIRD could not be asked: no socket, nobody listening, or no answer in time. */
export class BirdUnreachableError extends Error {
  constructor(
    readonly socketPath: string,
    readonly reason: string,
  ) {
    super(`unable to connect to BIRD socket ${socketPath}: ${reason}`);
    this.name = 'BirdUnreachableError';
  }
}

const ERRNO_TEXT: Record<string, string> = { ECONNREFUSED: 'connection refused', ENOENT: 'no such file or directory', EACCES: 'permission denied' };

const LINE = /^(\d{4})([ -])(.*)$/;

/**
 * Collects one reply from BIRD's control socket (bird2-bgp.md §4.2): `DDDD-text` lines go on,
 * ` text` lines continue the previous code, and the first `DDDD text` line ends the reply. Returns
 * undefined until that line has arrived.
 */
export function parseReply(buffered: string): { reply: BirdReply; rest: string } | undefined {
  const lines: BirdReplyLine[] = [];
  let offset = 0;
  let code = 0;
  for (;;) {
    const end = buffered.indexOf('\n', offset);
    if (end < 0) return undefined;
    const line = buffered.slice(offset, end);
    offset = end + 1;
    const match = LINE.exec(line);
    if (match) {
      code = Number(match[1]);
      lines.push({ code, text: match[3]! });
      if (match[2] === ' ') return { reply: { code, lines }, rest: buffered.slice(offset) };
    } else if (line.startsWith(' ')) {
      lines.push({ code, text: line.slice(1) });
    }
    // Anything else (`+` lines: spontaneous log output) is not part of the reply.
  }
}

/** One command on BIRD's control socket and its whole reply: no `birdc` process, no shell. */
export async function birdCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<BirdReply> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    let buffered = '';
    let greeted = false;
    const fail = (reason: string): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new BirdUnreachableError(socketPath, reason));
    };
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    socket = connect({ path: socketPath });
    socket.setEncoding('utf8');
    socket.on('error', (error: NodeJS.ErrnoException) => fail(ERRNO_TEXT[error.code ?? ''] ?? error.message));
    socket.on('close', () => fail('connection closed'));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (;;) {
        const parsed = parseReply(buffered);
        if (!parsed) return;
        buffered = parsed.rest;
        if (!greeted) {
          // `0001 BIRD 2.0.12 ready.`
          greeted = true;
          socket.write(`${command}\n`);
          continue;
        }
        clearTimeout(timer);
        socket.removeAllListeners('close');
        socket.end();
        resolve(parsed.reply);
        return;
      }
    });
  });
}

export interface BirdProtocol {
  name: string;
  proto: string;
  table: string;
  state: string;
  since: string;
  info: string;
}

/**
 * Rows of `show protocols`: split on whitespace, never on column offsets (names longer than the
 * column push the rest right). A disabled protocol has no info column.
 */
export function parseProtocols(reply: BirdReply): BirdProtocol[] {
  const header = reply.lines.find((l) => l.code === 2002)?.text.trim().split(/\s+/).map((w) => w.toLowerCase());
  if (header?.join(' ') !== 'name proto table state since info') throw new Error(`unknown BIRD table output format: ${JSON.stringify(header)}`);
  return reply.lines
    .filter((l) => l.code === 1002)
    .map((l) => l.text.trim().split(/\s+/))
    .filter((fields) => fields.length >= 5)
    .map(([name, proto, table, state, since, ...info]) => ({ name: name!, proto: proto!, table: table!, state: state!, since: since!, info: info.join(' ') }));
}

/** BIRD's protocols, as `show protocols` lists them. */
export async function showProtocols(socketPath: string, timeoutMs?: number): Promise<BirdProtocol[]> {
  return parseProtocols(await birdCommand(socketPath, 'show protocols', timeoutMs));
}

/** BIRD's own word on itself (`show status`): up and running, or what it is doing instead (shutting down, recovering). */
export async function showStatus(socketPath: string, timeoutMs?: number): Promise<{ up: boolean; detail: string }> {
  const detail = (await birdCommand(socketPath, 'show status', timeoutMs)).lines.at(-1)?.text ?? '';
  return { up: detail === 'Daemon is up and running', detail };
}
