// A small authoritative DNS server for tests, run as its own process inside a test namespace:
//   dns-server.mjs ADDRESS PORT RECORDS_JSON      (RECORDS_JSON: {"name.example": "192.0.2.1", ...})
// Answers A queries for its names (UDP and TCP), NXDOMAIN for every other name, and prints
// "listening" once both sockets are bound. It stands for "the upstream server" of a host.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import dnsPacket from 'dns-packet';

const [address, port, recordsJson] = process.argv.slice(2);
const records = JSON.parse(recordsJson);

function reply(message) {
  const query = dnsPacket.decode(message);
  const question = query.questions[0];
  const name = question.name.toLowerCase().replace(/\.$/, '');
  const found = records[name];
  return dnsPacket.encode({
    id: query.id,
    type: 'response',
    flags: dnsPacket.RECURSION_AVAILABLE | (query.flags & dnsPacket.RECURSION_DESIRED) | (found === undefined ? 3 : 0),
    questions: query.questions,
    answers: found !== undefined && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 300, class: 'IN', data: found }] : [],
  });
}

const udp = createSocket('udp4');
udp.on('message', (message, remote) => {
  try {
    udp.send(reply(message), remote.port, remote.address);
  } catch {
    // Not a query: no answer.
  }
});
const tcp = createServer((socket) => {
  let buffered = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
      const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
      buffered = buffered.subarray(2 + message.length);
      const answer = reply(message);
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(answer.length);
      socket.write(Buffer.concat([prefix, answer]));
    }
  });
});
udp.bind(Number(port), address, () => tcp.listen(Number(port), address, () => process.stdout.write('listening\n')));
