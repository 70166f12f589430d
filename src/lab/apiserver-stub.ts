// A stand-in for kube-apiserver, for the lab and tests: an HTTPS server whose health endpoints
// behave the way raftvip's health checker and a client through the VIP see a real one do.
//
//   node dist/src/lab/apiserver-stub.js --name h1 --listen 10.213.0.11:6443 --cert F --key F \
//        [--start-delay-ms 500] [--shutdown-delay-ms 2000]
//
// - `/readyz`: 503 `not ready: ...` during the start delay, 200 `ok` once ready, 503 again from
//   SIGTERM on, while it still serves everything else for the shutdown delay (kube-apiserver's
//   --shutdown-delay-duration: load balancers drain it first). Then the listener closes, idle
//   connections close at once, busy ones get apiserverStubDrainMsMax to finish, and it exits 0.
//   During the shutdown delay every response carries `Connection: close`, so keep-alive clients
//   reconnect (through the VIP, to another backend).
// - `/livez`, `/healthz`: 200 `ok` until the end. `/whoami`: 200 with the name and a newline, so a
//   client can tell which backend answered. Anything else: 404.
// - SIGUSR1 toggles "marked not ready": /readyz fails although the server keeps serving (a backend
//   that turned not ready without stopping). A toggle during the start delay takes effect when it
//   ends; one during shutdown is ignored. SIGINT acts as SIGTERM; a second one changes nothing.
//
// stdout carries one JSON line per state change and nothing per request (ApiserverStubEvent):
// `listening` (with the bound address and port: `--listen 127.0.0.1:0` picks a free one, and the
// pid), `ready`, `not-ready`, `terminating`, `closed` (with the requests served, /whoami ones
// apart). `atMs` is monotonicNowMs(), comparable with every other lab stamp.
// Exit 2: bad command line (one line on stderr). Exit 1: unreadable certificate or key, or could
// not listen.
//
// The module also exports what a test or the lab needs to run it (apiserverStubCommand, the
// event parser); it only runs as a server when it is the program node was started with.

import { readFileSync, realpathSync } from 'node:fs';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { monotonicNowMs } from './monotonic-clock.js';

export const apiserverStubStartDelayMsDefault = 500;
export const apiserverStubShutdownDelayMsDefault = 2_000;
/** Either delay is at most ten minutes: a lab run is shorter. */
export const apiserverStubDelayMsMax = 600_000;
/** After the listener closes, connections still busy get this long before they are cut. */
export const apiserverStubDrainMsMax = 1_000;
/** Connections open at once; more are refused until some close. */
const apiserverStubConnectionsMax = 1_024;
/** Names are host names: short and printable. */
const nameBytesMax = 63;

/** The compiled script, for spawning it (dist/src/lab/apiserver-stub.js). */
export const apiserverStubScript = fileURLToPath(import.meta.url);

export type ApiserverStubEventName = 'listening' | 'ready' | 'not-ready' | 'terminating' | 'closed';

export interface ApiserverStubEvent {
  readonly event: ApiserverStubEventName;
  readonly name: string;
  /** monotonicNowMs() when it happened. */
  readonly atMs: number;
  /** listening: the bound address and port, and the process id. */
  readonly address?: string;
  readonly port?: number;
  readonly pid?: number;
  /** closed: requests served in all, and /whoami requests among them. */
  readonly requests?: number;
  readonly whoamiRequests?: number;
}

export interface ApiserverStubOptions {
  readonly name: string;
  /** `10.213.0.11:6443`, `[fd72:7276::11]:6443`; port 0 picks a free port. */
  readonly listen: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly startDelayMs?: number;
  readonly shutdownDelayMs?: number;
}

/** The command line that runs the stub with `options`: [node, script, ...arguments]. */
export function apiserverStubCommand(options: ApiserverStubOptions): string[] {
  return [
    process.execPath,
    apiserverStubScript,
    '--name', options.name,
    '--listen', options.listen,
    '--cert', options.certFile,
    '--key', options.keyFile,
    ...(options.startDelayMs === undefined ? [] : ['--start-delay-ms', String(options.startDelayMs)]),
    ...(options.shutdownDelayMs === undefined ? [] : ['--shutdown-delay-ms', String(options.shutdownDelayMs)]),
  ];
}

/** One stdout line of the stub as an event, or null if it is not one. */
export function parseApiserverStubEvent(line: string): ApiserverStubEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  const event = value as Partial<ApiserverStubEvent> | null;
  if (event === null || typeof event !== 'object') return null;
  const names: readonly string[] = ['listening', 'ready', 'not-ready', 'terminating', 'closed'] satisfies ApiserverStubEventName[];
  if (typeof event.event !== 'string' || !names.includes(event.event)) return null;
  if (typeof event.name !== 'string' || typeof event.atMs !== 'number') return null;
  return event as ApiserverStubEvent;
}

/** `host:port` or `[IPv6]:port` with an IP literal and a port from 0 (any free one) to 65535. */
export function parseListenAddress(text: string): { host: string; port: number } | { error: string } {
  let host: string;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:([0-9]+)$/.exec(text);
  if (bracketed !== null) {
    host = bracketed[1]!;
    portText = bracketed[2]!;
    if (!isIPv6(host)) return { error: `--listen ${text}: ${host} is not an IPv6 address` };
  } else {
    const plain = /^([^:]+):([0-9]+)$/.exec(text);
    if (plain === null) return { error: `--listen ${text}: expected host:port or [ipv6]:port` };
    host = plain[1]!;
    portText = plain[2]!;
    if (!isIPv4(host)) return { error: `--listen ${text}: ${host} is not an IPv4 address` };
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port > 65_535) return { error: `--listen ${text}: port must be 0 to 65535` };
  return { host, port };
}

const usageLine = 'usage: apiserver-stub --name NAME --listen HOST:PORT --cert FILE --key FILE [--start-delay-ms MS] [--shutdown-delay-ms MS]';

function usage(message: string): never {
  process.stderr.write(`apiserver-stub: ${message}; ${usageLine}\n`);
  process.exit(2);
}

function delayOption(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isInteger(value) || value > apiserverStubDelayMsMax) {
    usage(`${option} must be an integer from 0 to ${apiserverStubDelayMsMax}`);
  }
  return value;
}

function main(): void {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        name: { type: 'string' },
        listen: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'start-delay-ms': { type: 'string' },
        'shutdown-delay-ms': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usage(error instanceof Error ? error.message : String(error));
  }
  const name = values.name;
  if (name === undefined || !/^[A-Za-z0-9._-]+$/.test(name) || name.length > nameBytesMax) usage('--name must be 1 to 63 letters, digits, ".", "_" or "-"');
  if (values.listen === undefined) usage('--listen is required');
  const listen = parseListenAddress(values.listen);
  if ('error' in listen) usage(listen.error);
  if (values.cert === undefined || values.key === undefined) usage('--cert and --key are required');
  const startDelayMs = delayOption(values['start-delay-ms'], '--start-delay-ms', apiserverStubStartDelayMsDefault);
  const shutdownDelayMs = delayOption(values['shutdown-delay-ms'], '--shutdown-delay-ms', apiserverStubShutdownDelayMsDefault);

  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(values.cert);
    key = readFileSync(values.key);
  } catch (error) {
    process.stderr.write(`apiserver-stub ${name}: cannot read the certificate or key: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }

  const emit = (event: ApiserverStubEventName, fields: Partial<ApiserverStubEvent> = {}): void => {
    process.stdout.write(`${JSON.stringify({ event, name, atMs: monotonicNowMs(), ...fields })}\n`);
  };

  // Ready = started and not marked not ready and not terminating; `announcedReady` is what the
  // last event said, so each change is printed once.
  let started = false;
  let markedNotReady = false;
  let terminating = false;
  let announcedReady = false;
  let requests = 0;
  let whoamiRequests = 0;
  let startTimer: NodeJS.Timeout | null = null;

  const isReady = (): boolean => started && !markedNotReady && !terminating;
  const notReadyReason = (): string => (terminating ? 'shutting down' : !started ? 'starting' : 'marked not ready (SIGUSR1)');
  const announce = (): void => {
    if (terminating || isReady() === announcedReady) return;
    announcedReady = isReady();
    emit(announcedReady ? 'ready' : 'not-ready');
  };

  const reply = (response: ServerResponse, status: number, body: string): void => {
    response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    response.end(body);
  };

  const server = createServer({ cert, key }, (request: IncomingMessage, response: ServerResponse) => {
    requests++;
    // Never leave a request body unread: closing would reset the connection.
    request.resume();
    if (terminating) response.setHeader('Connection', 'close');
    const path = (request.url ?? '/').split('?')[0];
    switch (path) {
      case '/readyz':
        if (isReady()) reply(response, 200, 'ok');
        else reply(response, 503, `not ready: ${notReadyReason()}`);
        return;
      case '/livez':
      case '/healthz':
        reply(response, 200, 'ok');
        return;
      case '/whoami':
        whoamiRequests++;
        reply(response, 200, `${name}\n`);
        return;
      default:
        reply(response, 404, 'not found');
    }
  });
  server.maxConnections = apiserverStubConnectionsMax;
  server.on('error', (error) => {
    process.stderr.write(`apiserver-stub ${name}: cannot listen on ${values.listen}: ${error.message}\n`);
    process.exit(1);
  });
  // A failed handshake (a client that does not trust us) is the client's business.
  server.on('tlsClientError', () => {});

  const close = (): void => {
    const drainTimer = setTimeout(() => server.closeAllConnections(), apiserverStubDrainMsMax);
    server.close(() => {
      clearTimeout(drainTimer);
      emit('closed', { requests, whoamiRequests });
      process.exitCode = 0;
    });
    server.closeIdleConnections();
  };
  const terminate = (): void => {
    if (terminating) return;
    terminating = true;
    announcedReady = false;
    if (startTimer !== null) clearTimeout(startTimer);
    emit('terminating');
    setTimeout(close, shutdownDelayMs);
  };
  process.on('SIGTERM', terminate);
  process.on('SIGINT', terminate);
  process.on('SIGUSR1', () => {
    if (terminating) return;
    markedNotReady = !markedNotReady;
    announce();
  });

  server.listen({ host: listen.host, port: listen.port }, () => {
    const bound = server.address();
    const port = typeof bound === 'object' && bound !== null ? bound.port : listen.port;
    emit('listening', { address: listen.host, port, pid: process.pid });
    if (terminating) return;
    startTimer = setTimeout(() => {
      startTimer = null;
      started = true;
      announce();
    }, startDelayMs);
  });
}

function invokedAsProgram(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === pathToFileURL(realpathSync(apiserverStubScript)).href;
  } catch {
    return false;
  }
}

if (invokedAsProgram()) main();

