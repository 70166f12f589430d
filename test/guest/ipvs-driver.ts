// A helper process for the IPVS guest scenario (ipvs-scenario.ts). A node process cannot switch
// network namespaces, so the scenario starts this one inside a namespace with
// `ip netns exec NS node dist/test/guest/ipvs-driver.js ROLE` and talks to it in JSON lines on
// stdin/stdout, one request and one reply per line. Starting node costs ~2 s under emulation, so
// each namespace gets one long-lived helper instead of a process per step.
//
// Roles:
// - `balancer`: owns IpvsDataPlanes (the code under test) in the balancer's namespace, each under
//   a name (one per VIP): `available`, `open {plane, vip, timeouts}`, `apply {plane, service}`,
//   `observe {plane}`, `remove {plane}`, `close {plane}`. Replies carry the data plane's
//   `lastApply` report, what it reported through `onHostChange`, and the wall time of each call.
// - `client`: makes TCP connections from the client's namespace: `connect {host, port, count,
//   timeoutMs}` opens `count` connections one after the other and returns, for each, the text the
//   server sent before closing (a backend's name) or the error code.
//
// Every reply is `{id, ok: true, result, durationMs}` or `{id, ok: false, error}`; the process
// exits when stdin closes.

import { createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { IpvsDataPlane, ipvsAvailable, type IpvsDataPlaneOptions } from '../../src/lb/ipvs-data-plane.js';
import type { VirtualService } from '../../src/lb/data-plane.js';

export type DriverRole = 'balancer' | 'client';

export type DriverRequest =
  | { readonly op: 'available' }
  | { readonly op: 'open'; readonly plane: string; readonly vip: IpvsDataPlaneOptions['vip']; readonly timeouts?: IpvsDataPlaneOptions['timeouts'] }
  | { readonly op: 'apply'; readonly plane: string; readonly service: VirtualService }
  | { readonly op: 'observe'; readonly plane: string }
  | { readonly op: 'remove'; readonly plane: string }
  | { readonly op: 'close'; readonly plane: string }
  | { readonly op: 'connect'; readonly host: string; readonly port: number; readonly count: number; readonly timeoutMs: number };

export interface DriverError {
  readonly name: string;
  readonly message: string;
  readonly code: string | null;
  readonly errno: number | null;
  readonly operation: string | null;
}

export type DriverReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown; readonly durationMs: number }
  | { readonly id: number; readonly ok: false; readonly error: DriverError; readonly durationMs: number };

/** One connection's outcome: the server's text, or `error:CODE`. */
export type ConnectOutcome = string;

/** Bytes read from one connection at most: a backend answers with its name. */
const answerBytesMax = 256;

const planes = new Map<string, { plane: IpvsDataPlane; hostChanges: string[] }>();

async function handle(role: DriverRole, request: DriverRequest): Promise<unknown> {
  switch (request.op) {
    case 'available':
      return await ipvsAvailable();
    case 'open': {
      planes.get(request.plane)?.plane.close();
      const hostChanges: string[] = [];
      const plane = new IpvsDataPlane({ vip: request.vip, ...(request.timeouts === undefined ? {} : { timeouts: request.timeouts }), onHostChange: (message) => hostChanges.push(message) });
      planes.set(request.plane, { plane, hostChanges });
      return { kind: plane.kind };
    }
    case 'apply': {
      const { plane, hostChanges } = requirePlane(request.plane);
      hostChanges.length = 0;
      await plane.apply(request.service);
      return { report: plane.lastApply, hostChanges: [...hostChanges] };
    }
    case 'observe':
      return await requirePlane(request.plane).plane.observe();
    case 'remove':
      await requirePlane(request.plane).plane.remove();
      return null;
    case 'close':
      planes.get(request.plane)?.plane.close();
      planes.delete(request.plane);
      return null;
    case 'connect':
      if (role !== 'client') throw new Error('connect is for the client role');
      return await connectMany(request);
  }
}

function requirePlane(name: string): { plane: IpvsDataPlane; hostChanges: string[] } {
  const entry = planes.get(name);
  if (entry === undefined) throw new Error(`no data plane ${JSON.stringify(name)}: send open first`);
  return entry;
}

async function connectMany(request: { host: string; port: number; count: number; timeoutMs: number }): Promise<{ outcomes: ConnectOutcome[]; durationsMs: number[] }> {
  const outcomes: ConnectOutcome[] = [];
  const durationsMs: number[] = [];
  for (let i = 0; i < request.count; i++) {
    const startedMs = performance.now();
    outcomes.push(await connectOnce(request));
    durationsMs.push(Math.round(performance.now() - startedMs));
  }
  return { outcomes, durationsMs };
}

function connectOnce(request: { host: string; port: number; timeoutMs: number }): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    let text = '';
    let settled = false;
    const socket = createConnection({ host: request.host, port: request.port });
    const finish = (outcome: ConnectOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish('error:TIMEOUT'), request.timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > answerBytesMax) finish(text.slice(0, answerBytesMax).trim());
    });
    socket.on('end', () => finish(text.trim()));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(`error:${error.code ?? error.message}`));
  });
}

function describeError(error: unknown): DriverError {
  const record = (error ?? {}) as { name?: unknown; message?: unknown; code?: unknown; errno?: unknown; operation?: unknown };
  return {
    name: typeof record.name === 'string' ? record.name : 'Error',
    message: typeof record.message === 'string' ? record.message : String(error),
    code: typeof record.code === 'string' ? record.code : null,
    errno: typeof record.errno === 'number' ? record.errno : null,
    operation: typeof record.operation === 'string' ? record.operation : null,
  };
}

async function main(): Promise<void> {
  const role = process.argv[2];
  if (role !== 'balancer' && role !== 'client') {
    process.stderr.write('usage: ipvs-driver.js balancer|client\n');
    process.exit(2);
  }
  const lines = createInterface({ input: process.stdin });
  // Requests are handled one at a time, in order.
  let queue = Promise.resolve();
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      const { id, ...request } = JSON.parse(line) as DriverRequest & { id: number };
      const startedMs = performance.now();
      let reply: DriverReply;
      try {
        const result = await handle(role, request as DriverRequest);
        reply = { id, ok: true, result, durationMs: performance.now() - startedMs };
      } catch (error) {
        reply = { id, ok: false, error: describeError(error), durationMs: performance.now() - startedMs };
      }
      process.stdout.write(`${JSON.stringify(reply)}\n`);
    });
  });
  lines.on('close', () => {
    void queue.then(() => {
      for (const { plane } of planes.values()) plane.close();
      process.exit(0);
    });
  });
  process.stdout.write(`${JSON.stringify({ id: 0, ok: true, result: { ready: role }, durationMs: process.uptime() * 1000 })}\n`);
}

await main();
