// The lab's load-balancer client: opens one new connection after another to a target (VIP:6443,
// or a backend directly) and records, per attempt, when it started, how long the TCP connect
// took, and which backend answered (`GET /whoami` over HTTPS to an apiserver stub). Run inside
// the client namespace:
//
//   node dist/src/lab/lb-client.js --target 10.213.0.100:6443 (--count N | --duration-ms D)
//        [--interval-ms 5] [--timeout-ms 1000] [--mode whoami|connect]
//
// `whoami` (the default) does a TLS handshake (the stub's certificate is not verified: the
// client asks who answered, it does not trust) and one request per connection, no keep-alive,
// so every attempt is a new connection the balancer schedules. `connect` only opens and closes
// a TCP connection (the latency benchmark). Stamps are monotonicNowMs(), comparable with every
// other lab stamp. Output: one JSON document on stdout when done: { attempts: LbAttempt[] }.

import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';
import { monotonicNowMs } from './monotonic-clock.js';
import { parseHostPort } from '../config/host-port.js';

export const lbClientAttemptsMax = 100_000;
export const lbClientResponseBytesMax = 4096;

export interface LbAttempt {
  /** monotonicNowMs() when the connect began. */
  startMs: number;
  /** TCP connect duration; null if it did not connect. */
  connectMs: number | null;
  /** From the connect's start to the end of the attempt (whoami: the response read in full). */
  totalMs: number;
  /** The backend's name from /whoami (whoami mode), null otherwise or on failure. */
  backend: string | null;
  /** null on success; else a code (ECONNREFUSED, ETIMEDOUT, HTTP 503, ...). */
  error: string | null;
}

export type LbClientMode = 'whoami' | 'connect';

/** The compiled script, for spawning it. */
export const lbClientScript = fileURLToPath(import.meta.url);

export function lbClientArgs(options: { target: string; count?: number; durationMs?: number; intervalMs?: number; timeoutMs?: number; mode?: LbClientMode }): string[] {
  return [
    lbClientScript,
    '--target', options.target,
    ...(options.count === undefined ? [] : ['--count', String(options.count)]),
    ...(options.durationMs === undefined ? [] : ['--duration-ms', String(options.durationMs)]),
    ...(options.intervalMs === undefined ? [] : ['--interval-ms', String(options.intervalMs)]),
    ...(options.timeoutMs === undefined ? [] : ['--timeout-ms', String(options.timeoutMs)]),
    ...(options.mode === undefined ? [] : ['--mode', options.mode]),
  ];
}

/** One attempt against `host:port`. */
export function attempt(options: { host: string; port: number; timeoutMs: number; mode: LbClientMode }): Promise<LbAttempt> {
  const startMs = monotonicNowMs();
  return new Promise((resolve) => {
    let connectMs: number | null = null;
    let done = false;
    let response = '';
    let socket: Socket;
    const finish = (backend: string | null, error: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ startMs, connectMs, totalMs: monotonicNowMs() - startMs, backend, error });
    };
    const timer = setTimeout(() => finish(null, connectMs === null ? 'ETIMEDOUT' : 'response timeout'), options.timeoutMs);
    socket = tcpConnect({ host: options.host, port: options.port });
    socket.once('connect', () => {
      connectMs = monotonicNowMs() - startMs;
      if (options.mode === 'connect') return finish(null, null);
      const tls = tlsConnect({ socket, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
      tls.once('secureConnect', () => {
        tls.write(`GET /whoami HTTP/1.1\r\nHost: ${options.host}\r\nConnection: close\r\n\r\n`);
      });
      tls.setEncoding('utf8');
      tls.on('data', (chunk: string) => {
        response = (response + chunk).slice(0, lbClientResponseBytesMax);
      });
      tls.once('end', () => {
        const status = /^HTTP\/1\.1 (\d{3})/.exec(response)?.[1];
        if (status !== '200') return finish(null, status === undefined ? 'no HTTP response' : `HTTP ${status}`);
        const body = response.split('\r\n\r\n')[1]?.trim() ?? '';
        finish(body === '' ? null : body, body === '' ? 'empty body' : null);
      });
      tls.once('error', (error: NodeJS.ErrnoException) => finish(null, error.code ?? error.message));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => finish(null, error.code ?? error.message));
  });
}

function parseTarget(text: string): { host: string; port: number } {
  const parsed = parseHostPort(text);
  if (!parsed.ok) throw new Error(`--target: ${parsed.message}`);
  return { host: parsed.value.host, port: parsed.value.port };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string' },
      count: { type: 'string' },
      'duration-ms': { type: 'string' },
      'interval-ms': { type: 'string', default: '5' },
      'timeout-ms': { type: 'string', default: '1000' },
      mode: { type: 'string', default: 'whoami' },
    },
  });
  if (values.target === undefined) throw new Error('--target is required');
  const target = parseTarget(values.target);
  const count = values.count === undefined ? null : Number(values.count);
  const durationMs = values['duration-ms'] === undefined ? null : Number(values['duration-ms']);
  const intervalMs = Number(values['interval-ms']);
  const timeoutMs = Number(values['timeout-ms']);
  const mode = values.mode;
  if ((count === null) === (durationMs === null)) throw new Error('give exactly one of --count and --duration-ms');
  if (mode !== 'whoami' && mode !== 'connect') throw new Error('--mode is whoami or connect');
  const attempts: LbAttempt[] = [];
  const endMs = durationMs === null ? Number.POSITIVE_INFINITY : monotonicNowMs() + durationMs;
  while (attempts.length < Math.min(count ?? lbClientAttemptsMax, lbClientAttemptsMax) && monotonicNowMs() < endMs) {
    const next = monotonicNowMs() + intervalMs;
    attempts.push(await attempt({ ...target, timeoutMs, mode }));
    const waitMs = next - monotonicNowMs();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  }
  process.stdout.write(`${JSON.stringify({ attempts })}\n`);
}

const invokedPath = process.argv[1] === undefined ? null : realpathSync(process.argv[1]);
if (invokedPath === realpathSync(lbClientScript)) {
  main().catch((error: unknown) => {
    process.stderr.write(`lb-client: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  });
}
