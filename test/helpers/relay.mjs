// A byte relay between a TCP and a unix socket, run as its own process:
//   relay.mjs tcp HOST:PORT UNIX_PATH   listen on TCP, forward to the unix socket
//   relay.mjs unix UNIX_PATH HOST:PORT  listen on the unix socket, forward to TCP
// Test hosts live in network namespaces of their own; this lets their daemons reach the shared etcd
// through loopback and a unix socket, so no test traffic ever leaves loopback.
import { connect, createServer } from 'node:net';

const [mode, listen, target] = process.argv.slice(2);
const dial = () => (mode === 'tcp' ? connect(target) : connect(Number(target.split(':')[1]), target.split(':')[0]));
// No Nagle on either side: gRPC writes small frames and waits for replies, and a delayed ACK would
// add 40 ms to a round trip that the real daemon, talking to etcd directly, never pays.
const server = createServer({ noDelay: true }, (client) => {
  const upstream = dial();
  upstream.setNoDelay?.(true);
  client.setNoDelay?.(true);
  client.pipe(upstream).pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
});
const ready = () => process.stdout.write('listening\n');
if (mode === 'tcp') server.listen(Number(listen.split(':')[1]), listen.split(':')[0], ready);
else server.listen(listen, ready);
