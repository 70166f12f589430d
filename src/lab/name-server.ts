// The lab's per-host service: a TCP server that answers every connection with its host's name,
// so a client can tell which host it reached (through the VIP or a host address). Run inside a
// host namespace:
//
//   node dist/src/lab/name-server.js --name h1 --port 80
//
// It listens on every address, IPv4 and IPv6 (one dual-stack socket on `::`), and on each
// connection writes a complete HTTP/1.0 response whose body is the name and a newline, then
// half-closes. So `curl http://VIP/` prints `h1`, and a raw connect + read sees the same bytes
// without sending anything. What the client sends is read and discarded (never left unread, or
// closing would reset the connection). When ready it prints one JSON line,
// `{"listening":{"name":"h1","port":80,"pid":N}}`. SIGTERM or SIGINT close it and exit 0.
// Exit 2: bad command line; exit 1: could not listen.

import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { nameResponse } from './probe-protocol.js';

/** A connection idle this long (client sent nothing and did not close) is destroyed. */
const nameServerSocketIdleMsMax = 5_000;
/** Connections open at once; more are refused until some close. */
const nameServerConnectionsMax = 1_024;
/** Names are host names: short and printable. */
const nameBytesMax = 63;

function usage(message: string): never {
  process.stderr.write(`name-server: ${message}\nusage: name-server --name NAME --port PORT\n`);
  process.exit(2);
}

function main(): void {
  let values: { name?: string | undefined; port?: string | undefined };
  try {
    ({ values } = parseArgs({ options: { name: { type: 'string' }, port: { type: 'string' } }, strict: true }));
  } catch (error) {
    usage(error instanceof Error ? error.message : String(error));
  }
  const name = values.name;
  if (name === undefined || !/^[A-Za-z0-9._-]+$/.test(name) || name.length > nameBytesMax) usage('--name must be 1 to 63 letters, digits, ".", "_" or "-"');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) usage('--port must be an integer from 1 to 65535');

  const response = nameResponse(name);
  const server = createServer((socket: Socket) => {
    socket.on('error', () => socket.destroy());
    socket.setTimeout(nameServerSocketIdleMsMax, () => socket.destroy());
    // Drain whatever the client sends, so closing never finds unread data (which would send RST).
    socket.resume();
    socket.end(response);
  });
  server.maxConnections = nameServerConnectionsMax;
  server.on('error', (error) => {
    process.stderr.write(`name-server ${name}: cannot listen on port ${port}: ${error.message}\n`);
    process.exit(1);
  });
  server.listen({ host: '::', port, ipv6Only: false }, () => {
    process.stdout.write(`${JSON.stringify({ listening: { name, port, pid: process.pid } })}\n`);
  });
  const stop = (): void => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
