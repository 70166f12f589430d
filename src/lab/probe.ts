// The lab's client-side probe: measures, from the client namespace, whether and where a TCP
// service answers, many times a second. Run inside the client namespace:
//
//   node dist/src/lab/probe.js --target 10.213.0.100:80 --interval-ms 5 --timeout-ms 200
//
// Every interval it starts a new attempt (attempts overlap; at most probeAttemptsInFlightMax at
// once, a tick that finds the cap reached starts none and is counted as skipped). An attempt
// connects, sends nothing, and reads until it has the name the lab's name server answers with
// (the body's first line). An attempt that has not got the name within --timeout-ms is destroyed
// and reported as ETIMEDOUT. Each finished attempt is one JSON line on stdout:
//
//   {"start":123.4,"end":125.0,"ok":true,"host":"h2","error":null}
//   {"start":130.4,"end":330.4,"ok":false,"host":null,"error":"ETIMEDOUT"}
//
// `start` and `end` are CLOCK_MONOTONIC ms (monotonic-clock.ts), comparable with stamps taken in
// any other process on the machine. `error` is the socket's errno code (ECONNREFUSED,
// EHOSTUNREACH, ...), ETIMEDOUT for our own timeout, or EPROTO when the connection closed
// without a name. The first line is `{"probing":{...}}` once the first attempt has started; the
// last is `{"done":{"attempts":N,"skipped":N}}`. SIGTERM, SIGINT or stdin closing stop new
// attempts; those in flight finish (at most --timeout-ms later), then it exits 0. Exit 2: bad
// command line.

import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { monotonicNowMs } from './monotonic-clock.js';
import {
  nameFromResponse,
  parseTarget,
  probeAttemptsInFlightMax,
  probeIntervalMsMax,
  probeIntervalMsMin,
  probeTimeoutMsMax,
  probeTimeoutMsMin,
  type ProbeAttempt,
} from './probe-protocol.js';

/** Bytes an attempt reads before giving up on finding the name. */
const responseBytesMax = 4_096;

function usage(message: string): never {
  process.stderr.write(`probe: ${message}\nusage: probe --target HOST:PORT --interval-ms N --timeout-ms N\n`);
  process.exit(2);
}

function integerOption(value: string | undefined, option: string, min: number, max: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isInteger(n) || n < min || n > max) usage(`--${option} must be an integer from ${min} to ${max}`);
  return n;
}

function main(): void {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({ options: { target: { type: 'string' }, 'interval-ms': { type: 'string' }, 'timeout-ms': { type: 'string' } }, strict: true }));
  } catch (error) {
    usage(error instanceof Error ? error.message : String(error));
  }
  const target = parseTarget(values.target ?? '');
  if (target === null) usage('--target must be IPV4:PORT or [IPV6]:PORT');
  const intervalMs = integerOption(values['interval-ms'], 'interval-ms', probeIntervalMsMin, probeIntervalMsMax);
  const timeoutMs = integerOption(values['timeout-ms'], 'timeout-ms', probeTimeoutMsMin, probeTimeoutMsMax);

  let inFlight = 0;
  let attempts = 0;
  let skipped = 0;
  let stopping = false;

  const report = (line: ProbeAttempt): void => {
    process.stdout.write(`${JSON.stringify(line)}\n`);
  };

  const attempt = (): void => {
    if (inFlight >= probeAttemptsInFlightMax) {
      skipped++;
      return;
    }
    inFlight++;
    attempts++;
    const start = monotonicNowMs();
    let received = '';
    let finished = false;
    let socket: Socket | null = null;
    const finish = (host: string | null, error: string | null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket?.destroy();
      inFlight--;
      report({ start, end: monotonicNowMs(), ok: host !== null, host, error });
      if (stopping && inFlight === 0) exit();
    };
    const timer = setTimeout(() => finish(null, 'ETIMEDOUT'), timeoutMs);
    socket = connect({ host: target.host, port: target.port });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      const name = nameFromResponse(received);
      if (name !== null) finish(name, null);
      else if (received.length > responseBytesMax) finish(null, 'EPROTO');
    });
    socket.on('end', () => finish(nameFromResponse(received), nameFromResponse(received) === null ? 'EPROTO' : null));
    socket.on('close', () => finish(null, 'EPROTO'));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(null, error.code ?? 'EIO'));
  };

  const exit = (): void => {
    process.stdout.write(`${JSON.stringify({ done: { attempts, skipped } })}\n`, () => process.exit(0));
  };
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(ticker);
    if (inFlight === 0) exit();
  };

  attempt();
  process.stdout.write(`${JSON.stringify({ probing: { target: values.target, intervalMs, timeoutMs, pid: process.pid } })}\n`);
  const ticker = setInterval(attempt, intervalMs);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

main();
