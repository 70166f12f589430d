// Goal: show that the health checker judges kube-apiserver backends the way the load balancer
// needs, against real sockets on 127.0.0.1 with real timers: the first check decides at once;
// afterwards exactly `rise` consecutive successes and `fall` consecutive failures flip the state,
// and a single odd result changes nothing; a backend that starts answering 503 is marked not
// ready within fall × interval (plus slack); connection refused, a server that accepts and never
// answers (a timeout, however far the exchange got), a certificate from another CA, one without
// the backend's IP, and Node's default CAs (with the message saying what to configure) all fail
// with their own lastError; insecureSkipVerify skips exactly that; the client certificate is
// presented; every check is a fresh connection sending Host and the configured path; the TCP
// type; stop() aborts checks in flight and leaves no timer (a process using it exits on its own);
// and no more than inFlightMax checks are ever in flight (40 hanging backends, inFlightMax 5).
// Certificates are made by openssl (src/lab/lab-certificates.ts).

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { makeServingCertificates } from '../src/lab/lab-certificates.js';
import {
  HealthChecker,
  type BackendHealth,
  type HealthCheckOptions,
  type HealthCheckTls,
} from '../src/lb/health-checker.js';
import { RaftAssertionError } from '../src/raft/assert.js';

const dir = mkdtempSync(join(tmpdir(), 'raftvip-health-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'cluster'));
mkdirSync(join(dir, 'rogue'));
const cluster = makeServingCertificates(join(dir, 'cluster'), {
  names: [
    { name: 'backend', address: '127.0.0.1' },
    { name: 'elsewhere', address: '127.0.0.2' },
    { name: 'client', address: '127.0.0.9' },
    { name: 'backend6', address: '::1' },
  ],
});
const rogue = makeServingCertificates(join(dir, 'rogue'), { names: [{ name: 'backend', address: '127.0.0.1' }] });
const pem = (file: string): Buffer => readFileSync(file);
const clusterCa = pem(cluster.caFile);

function files(certificates: typeof cluster, name: string): { cert: Buffer; key: Buffer } {
  const entry = certificates.byName[name];
  if (entry === undefined) throw new Error(`no certificate ${name}`);
  return { cert: pem(entry.certFile), key: pem(entry.keyFile) };
}

// Any process warning (an IP literal sent as SNI: DEP0123; too many abort listeners) fails the
// last test.
const warnings: string[] = [];
process.on('warning', (warning) => warnings.push(`${warning.name}: ${warning.message}`));

const verifyingTls: HealthCheckTls = { ca: clusterCa, cert: null, key: null, insecureSkipVerify: false };

function checkOptions(overrides: Partial<HealthCheckOptions> = {}): HealthCheckOptions {
  return { type: 'https', path: '/readyz', intervalMs: 100, timeoutMs: 1_000, rise: 2, fall: 2, tls: verifyingTls, ...overrides };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** An HTTPS server standing in for kube-apiserver's /readyz: answers `status` (switchable), or
 * the next `override` answers with another status first, or hangs without answering. */
class ReadyzServer {
  readonly server: HttpsServer;
  status = 200;
  /** Statuses the next requests get before `status` again. */
  override: number[] = [];
  hang = false;
  /** Called right after a response is sent (once, then cleared). */
  afterResponse: (() => void) | null = null;
  requests: { url: string; host: string | undefined; userAgent: string | undefined; clientCn: string | null; socket: number }[] = [];
  connections = 0;
  port = 0;
  readonly #sockets = new WeakMap<object, number>();

  readonly #host: string;

  constructor(options: { name: string; requestCert?: boolean; rejectUnauthorized?: boolean; certificates?: typeof cluster; host?: string }) {
    this.#host = options.host ?? '127.0.0.1';
    const { cert, key } = files(options.certificates ?? cluster, options.name);
    this.server = createHttpsServer(
      { cert, key, ca: clusterCa, requestCert: options.requestCert ?? false, rejectUnauthorized: options.rejectUnauthorized ?? false },
      (request, response) => {
        request.resume();
        const socket = request.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        const subject = peer && 'subject' in peer && peer.subject ? peer.subject : null;
        this.requests.push({
          url: request.url ?? '',
          host: request.headers.host,
          userAgent: request.headers['user-agent'],
          clientCn: subject !== null && typeof subject.CN === 'string' ? subject.CN : null,
          socket: this.#sockets.get(socket) ?? -1,
        });
        if (this.hang) return;
        const status = this.override.shift() ?? this.status;
        response.writeHead(status, { 'Content-Type': 'text/plain' });
        response.end(status === 200 ? 'ok' : 'not ready');
        const after = this.afterResponse;
        this.afterResponse = null;
        after?.();
      },
    );
    this.server.on('secureConnection', (socket) => this.#sockets.set(socket, ++this.connections));
    this.server.on('tlsClientError', () => {});
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, this.#host, resolve);
    });
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    this.port = address.port;
    return this.port;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP server that accepts and never says a word (a TLS handshake to it never completes); it
 * records when each connection opened and closed. */
class SilentServer {
  readonly server: NetServer;
  readonly spans: { openedMs: number; closedMs: number | null }[] = [];
  open = 0;
  port = 0;
  readonly #sockets = new Set<Socket>();

  constructor() {
    this.server = createNetServer((socket) => {
      const span = { openedMs: performance.now(), closedMs: null as number | null };
      this.spans.push(span);
      this.open++;
      this.#sockets.add(socket);
      socket.on('error', () => {});
      // Read (and drop) the ClientHello, so the client's close is seen as EOF.
      socket.resume();
      socket.on('close', () => {
        span.closedMs = performance.now();
        this.open--;
        this.#sockets.delete(socket);
      });
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    this.port = address.port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A port nothing listens on (bound once, then closed). */
async function refusedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/** A checker of one backend on 127.0.0.1 recording its onChange calls; stopped at teardown. */
function watch(
  t: Test,
  port: number,
  options: HealthCheckOptions,
  extra: { now?: () => number } = {},
): { checker: HealthChecker; changes: BackendHealth[]; health: () => BackendHealth } {
  const changes: BackendHealth[] = [];
  const checker = new HealthChecker({ backends: [{ address: '127.0.0.1', port }], options, onChange: (b) => changes.push(b), ...extra });
  t.teardown(() => checker.stop());
  return { checker, changes, health: () => checker.snapshot()[0]! };
}

t.test('the first check decides at once: ready on a first success', async (t) => {
  const server = new ReadyzServer({ name: 'backend' });
  const port = await server.listen();
  t.teardown(() => server.close());
  let wall = 1_000;
  const { checker, changes, health } = watch(t, port, checkOptions({ rise: 3, fall: 3, intervalMs: 300 }), { now: () => wall });
  t.same(health(), {
    address: '127.0.0.1', port, ready: false, since: 1_000, lastError: null, lastCheckMs: null,
    checks: 0, failures: 0, consecutiveSuccesses: 0, consecutiveFailures: 0,
  }, 'unknown before start: not ready, no checks');
  wall = 2_000;
  checker.start();
  checker.start(); // idempotent
  t.equal(health().since, 2_000, 'since is the start until the first decision');
  wall = 3_000;
  await waitFor('the first decision', () => changes.length > 0);
  t.equal(changes.length, 1);
  t.match(changes[0], { ready: true, since: 3_000, checks: 1, failures: 0, consecutiveSuccesses: 1, lastError: null });
  t.ok(changes[0]!.lastCheckMs !== null && changes[0]!.lastCheckMs > 0 && changes[0]!.lastCheckMs < 1_000, 'lastCheckMs is the duration');
  t.ok(Object.isFrozen(changes[0]), 'onChange gets a frozen copy');

  await waitFor('three checks', () => server.requests.length >= 3);
  t.equal(changes.length, 1, 'further successes are not transitions');
  const first = server.requests[0]!;
  t.equal(first.url, '/readyz', 'GET the configured path');
  t.equal(first.host, `127.0.0.1:${port}`, 'Host names the backend');
  t.equal(first.userAgent, 'raftvip-health-check');
  const sockets = new Set(server.requests.map((r) => r.socket));
  t.equal(sockets.size, server.requests.length, 'every check is a fresh connection (no keep-alive)');
});

t.test('the first check decides at once: not ready on a first failure', async (t) => {
  const server = new ReadyzServer({ name: 'backend' });
  server.status = 503;
  const port = await server.listen();
  t.teardown(() => server.close());
  const { checker, changes } = watch(t, port, checkOptions({ rise: 3, fall: 3 }));
  checker.start();
  await waitFor('the first decision', () => changes.length > 0);
  t.match(changes[0], { ready: false, checks: 1, failures: 1, consecutiveFailures: 1, lastError: 'HTTP 503' });
  await waitFor('more checks', () => server.requests.length >= 3);
  t.equal(changes.length, 1, 'the first failure was the only transition');
});

t.test('rise and fall: exactly that many consecutive results flip the state', async (t) => {
  const server = new ReadyzServer({ name: 'backend' });
  const port = await server.listen();
  t.teardown(() => server.close());
  const { checker, changes, health } = watch(t, port, checkOptions({ rise: 3, fall: 2, intervalMs: 40 }));
  checker.start();
  await waitFor('ready', () => changes.length === 1);
  t.equal(changes[0]!.ready, true);

  // One 503 among successes: below fall, nothing changes.
  server.override = [503];
  await waitFor('the odd failure and two more checks', () => health().failures === 1 && health().consecutiveSuccesses >= 2);
  t.equal(changes.length, 1, 'one failure with fall 2 is not a transition');
  t.equal(health().ready, true);

  server.status = 503;
  await waitFor('not ready', () => changes.length === 2);
  t.match(changes[1], { ready: false, consecutiveFailures: 2, lastError: 'HTTP 503' }, 'not ready at the fall-th failure');

  // Two successes among failures: below rise, nothing changes.
  server.override = [200, 200];
  await waitFor('the odd successes and a failure after them', () => health().checks >= changes[1]!.checks + 3 && health().consecutiveFailures >= 1);
  t.equal(changes.length, 2, 'two successes with rise 3 are not a transition');

  server.status = 200;
  await waitFor('ready again', () => changes.length === 3);
  t.match(changes[2], { ready: true, consecutiveSuccesses: 3, lastError: null }, 'ready at the rise-th success');
  t.ok(changes[2]!.since >= changes[1]!.since, 'since moves with each transition');
});

t.test('a backend that starts answering 503 is not ready within fall × interval', async (t) => {
  const intervalMs = 300;
  const fall = 2;
  const server = new ReadyzServer({ name: 'backend' });
  const port = await server.listen();
  t.teardown(() => server.close());
  const { checker, changes } = watch(t, port, checkOptions({ intervalMs, fall, rise: 1 }));
  checker.start();
  await waitFor('ready', () => changes.length === 1);
  t.equal(changes[0]!.ready, true);
  // Switch right after a check was answered 200: the next check starts one interval after that
  // one started, so the fall-th failure ends about fall × interval after the switch.
  let failingFromMs = 0;
  server.afterResponse = () => {
    server.status = 503;
    failingFromMs = performance.now();
  };
  await waitFor('not ready', () => changes.length === 2);
  const elapsedMs = performance.now() - failingFromMs;
  t.equal(changes[1]!.ready, false);
  t.ok(elapsedMs >= (fall - 1) * intervalMs, `not before ${fall} failures one interval apart (${elapsedMs.toFixed(0)} ms)`);
  t.ok(elapsedMs <= fall * intervalMs + 300, `within fall × interval + slack (${elapsedMs.toFixed(0)} ms)`);
});

t.test('connection refused', async (t) => {
  const port = await refusedPort();
  for (const type of ['https', 'tcp'] as const) {
    const { checker, changes } = watch(t, port, checkOptions({ type }));
    checker.start();
    await waitFor(`${type}: the first decision`, () => changes.length > 0);
    t.match(changes[0], { ready: false, lastError: 'ECONNREFUSED' }, `${type}: ECONNREFUSED`);
    checker.stop();
  }
});

t.test('a server that accepts and never answers is a timeout', async (t) => {
  const silent = new SilentServer();
  const silentPort = await silent.listen();
  t.teardown(() => silent.close());
  const hanging = new ReadyzServer({ name: 'backend' });
  hanging.hang = true;
  const hangingPort = await hanging.listen();
  t.teardown(() => hanging.close());
  for (const [what, port] of [['no TLS handshake', silentPort], ['no HTTP response', hangingPort]] as const) {
    const { checker, changes } = watch(t, port, checkOptions({ timeoutMs: 300 }));
    checker.start();
    await waitFor(`${what}: the first decision`, () => changes.length > 0);
    const health = changes[0]!;
    t.match(health, { ready: false, lastError: 'timeout after 300 ms' }, `${what}: reported as a timeout`);
    t.ok(health.lastCheckMs! >= 290 && health.lastCheckMs! < 2_000, `${what}: the check took the timeout (${health.lastCheckMs} ms)`);
    checker.stop();
  }
  t.equal(hanging.requests.length >= 1, true, 'the hanging server did receive the request');
});

t.test('TLS verification', async (t) => {
  const server = new ReadyzServer({ name: 'backend' });
  const port = await server.listen();
  t.teardown(() => server.close());
  const misnamed = new ReadyzServer({ name: 'elsewhere' });
  const misnamedPort = await misnamed.listen();
  t.teardown(() => misnamed.close());

  const decide = async (what: string, port: number, tls: HealthCheckTls): Promise<BackendHealth> => {
    const { checker, changes } = watch(t, port, checkOptions({ tls }));
    checker.start();
    await waitFor(`${what}: the first decision`, () => changes.length > 0);
    checker.stop();
    return changes[0]!;
  };

  const rogueCa = await decide('another CA', port, { ...verifyingTls, ca: pem(rogue.caFile) });
  t.equal(rogueCa.ready, false, 'a certificate from another CA is refused');
  t.match(rogueCa.lastError, /^certificate verify failed: .+\([A-Z_]+\)$/, `says what failed: ${rogueCa.lastError}`);

  const defaults = await decide("Node's default CAs", port, { ...verifyingTls, ca: null });
  t.equal(defaults.ready, false);
  t.match(defaults.lastError, /^certificate verify failed: /, `checked against the default CAs: ${defaults.lastError}`);
  t.match(defaults.lastError, /loadBalancer\.healthCheck\.caFile/, 'says to give the CA');
  t.match(defaults.lastError, /insecureSkipVerify/, 'or to skip verification');

  const wrongName = await decide('a certificate for another IP', misnamedPort, verifyingTls);
  t.equal(wrongName.ready, false, "a certificate without the backend's IP is refused");
  t.match(wrongName.lastError, /^certificate verify failed: .*127\.0\.0\.1/, `names the address: ${wrongName.lastError}`);

  const good = await decide('the cluster CA', port, verifyingTls);
  t.match(good, { ready: true, lastError: null }, 'the right CA and IP SAN verify');

  const skipDefaults = await decide('insecureSkipVerify without a CA', port, { ca: null, cert: null, key: null, insecureSkipVerify: true });
  t.equal(skipDefaults.ready, true, 'insecureSkipVerify accepts an unverifiable certificate');
  const skipName = await decide('insecureSkipVerify with the wrong IP', misnamedPort, { ...verifyingTls, insecureSkipVerify: true });
  t.equal(skipName.ready, true, 'insecureSkipVerify skips the address check too');
});

t.test('a CA file that does not exist yet: no backend is trusted until it appears, then it is used', async (t) => {
  const server = new ReadyzServer({ name: 'backend' });
  const port = await server.listen();
  t.teardown(() => server.close());
  const caFile = join(dir, 'pending', 'ca.crt');
  mkdirSync(join(dir, 'pending'), { recursive: true });
  const { checker, changes, health } = watch(t, port, checkOptions({ tls: { ca: null, cert: null, key: null, insecureSkipVerify: false, pendingCaFile: caFile } }));
  checker.start();
  await waitFor('the first decision', () => changes.length > 0);
  t.equal(changes[0]!.ready, false, 'not ready while the CA file is missing');
  t.match(changes[0]!.lastError, /^caFile .*ca\.crt does not exist yet/, `says why: ${changes[0]!.lastError}`);
  await sleep(250);
  t.equal(health().ready, false, 'still not ready');
  writeFileSync(caFile, clusterCa);
  await waitFor('ready once the CA exists', () => health().ready, 5_000);
  t.equal(health().lastError, null, 'verified against the CA read from the file');
  checker.stop();

  const rogueFile = join(dir, 'pending', 'rogue.crt');
  const rogueChecker = watch(t, port, checkOptions({ tls: { ca: null, cert: null, key: null, insecureSkipVerify: false, pendingCaFile: rogueFile } }));
  writeFileSync(rogueFile, pem(rogue.caFile));
  rogueChecker.checker.start();
  await waitFor('the first decision', () => rogueChecker.changes.length > 0);
  t.match(rogueChecker.changes[0], { ready: false, lastError: /^certificate verify failed/ }, 'a pending CA that turns out to be the wrong one verifies nothing');
});

t.test('an IPv6 backend: Host in brackets, the certificate checked against its IPv6 SAN', async (t) => {
  const server = new ReadyzServer({ name: 'backend6', host: '::1' });
  try {
    await server.listen();
  } catch (error) {
    t.plan(0, `no IPv6 loopback here: ${String(error)}`);
    return;
  }
  t.teardown(() => server.close());
  const changes: BackendHealth[] = [];
  const checker = new HealthChecker({ backends: [{ address: '::1', port: server.port }], options: checkOptions(), onChange: (b) => changes.push(b) });
  t.teardown(() => checker.stop());
  checker.start();
  await waitFor('the first decision', () => changes.length > 0);
  t.match(changes[0], { ready: true, lastError: null, address: '::1' });
  t.equal(server.requests[0]!.host, `[::1]:${server.port}`);
});

t.test('the client certificate is presented', async (t) => {
  const server = new ReadyzServer({ name: 'backend', requestCert: true, rejectUnauthorized: false });
  const port = await server.listen();
  t.teardown(() => server.close());
  const { cert, key } = files(cluster, 'client');
  const withCert = watch(t, port, checkOptions({ tls: { ...verifyingTls, cert, key } }));
  withCert.checker.start();
  await waitFor('a check with a client certificate', () => withCert.changes.length > 0);
  withCert.checker.stop();
  t.equal(withCert.changes[0]!.ready, true);
  t.equal(server.requests[0]!.clientCn, 'client', 'the server saw the client certificate');

  const strict = new ReadyzServer({ name: 'backend', requestCert: true, rejectUnauthorized: true });
  const strictPort = await strict.listen();
  t.teardown(() => strict.close());
  const without = watch(t, strictPort, checkOptions());
  without.checker.start();
  await waitFor('a check without one', () => without.changes.length > 0);
  t.equal(without.changes[0]!.ready, false, 'a server that requires one refuses a check without it');
  t.ok(without.changes[0]!.lastError !== null, `with an error: ${without.changes[0]!.lastError}`);
  t.equal(strict.requests.length, 0);
});

t.test('TCP checks: connect and close', async (t) => {
  const silent = new SilentServer();
  const port = await silent.listen();
  const { checker, changes } = watch(t, port, checkOptions({ type: 'tcp', fall: 1, intervalMs: 50 }));
  checker.start();
  await waitFor('ready', () => changes.length === 1);
  t.match(changes[0], { ready: true, lastError: null });
  await waitFor('several checks, each closed', () => silent.spans.length >= 3 && silent.spans.slice(0, 3).every((s) => s.closedMs !== null));
  await silent.close();
  await waitFor('not ready', () => changes.length === 2);
  t.match(changes[1], { ready: false, lastError: 'ECONNREFUSED' });
});

function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
}

t.test('stop() aborts checks in flight and leaves no timer', async (t) => {
  const silent = new SilentServer();
  const port = await silent.listen();
  t.teardown(() => silent.close());
  const before = activeTimeouts();
  const { checker } = watch(t, port, checkOptions({ timeoutMs: 10_000, intervalMs: 50 }));
  checker.start();
  await waitFor('the check in flight', () => silent.open === 1);
  t.equal(checker.inFlight, 1);
  t.ok(activeTimeouts() > before, 'the check in flight holds its timeout');
  checker.stop();
  checker.stop(); // idempotent
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(activeTimeouts(), before, 'no timer of the checker is left');
  await waitFor('the aborted connection to close', () => silent.open === 0, 3_000);
  t.equal(checker.inFlight, 0);
  const checks = checker.snapshot()[0]!.checks;
  await sleep(200);
  t.equal(silent.spans.length, 1, 'no check after stop()');
  t.equal(checker.snapshot()[0]!.checks, checks, 'the aborted check is not recorded');
  t.throws(() => checker.start(), RaftAssertionError, 'a stopped checker does not restart');

  // And a process whose only work was a checker exits on its own after stop().
  const module = fileURLToPath(new URL('../src/lb/health-checker.js', import.meta.url));
  const script = [
    `const { HealthChecker } = await import(${JSON.stringify(module)});`,
    `const checker = new HealthChecker({ backends: [{ address: '127.0.0.1', port: ${port} }],`,
    "  options: { type: 'https', path: '/readyz', intervalMs: 50, timeoutMs: 10000, rise: 1, fall: 1,",
    '    tls: { ca: null, cert: null, key: null, insecureSkipVerify: true } } });',
    'checker.start();',
    "setTimeout(() => { checker.stop(); process.stdout.write('stopped ' + checker.snapshot().map((b) => b.checks).join(',') + '\\n'); }, 300);",
  ].join('\n');
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const startedMs = performance.now();
  const exit = await new Promise<number | null>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 8_000);
    child.once('exit', (code) => {
      clearTimeout(killer);
      resolve(code);
    });
  });
  const elapsedMs = performance.now() - startedMs;
  t.equal(exit, 0, `the process exited by itself (${output.trim()})`);
  t.match(output, /^stopped /, 'after stopping');
  t.ok(elapsedMs < 5_000, `well before the 10 s check timeout (${elapsedMs.toFixed(0)} ms)`);
});

t.test('at most inFlightMax checks are in flight', async (t) => {
  const backends = 40;
  const inFlightMax = 5;
  const timeoutMs = 500;
  const servers = Array.from({ length: backends }, () => new SilentServer());
  const ports = await Promise.all(servers.map((s) => s.listen()));
  t.teardown(() => Promise.all(servers.map((s) => s.close())));
  let sampledMax = 0;
  const checker = new HealthChecker({
    backends: ports.map((port) => ({ address: '127.0.0.1', port })),
    options: checkOptions({ timeoutMs, intervalMs: 100 }),
    inFlightMax,
  });
  t.teardown(() => checker.stop());
  const sampler = setInterval(() => (sampledMax = Math.max(sampledMax, checker.inFlight)), 5);
  t.teardown(() => clearInterval(sampler));
  checker.start();
  t.equal(checker.inFlight, inFlightMax, 'start() launches only inFlightMax checks');
  // 40 checks of 500 ms, 5 at a time: 4 s. Wait for every backend's first check to end.
  await waitFor('every backend checked once', () => checker.snapshot().every((b) => b.checks >= 1), 30_000);
  checker.stop();
  clearInterval(sampler);
  await waitFor('every connection closed', () => servers.every((s) => s.open === 0), 5_000);

  // What the servers saw: connections open at once. A connection's end is seen a little after the
  // client dropped it (one event loop), so each span is trimmed by a margin far below the 500 ms
  // a check hangs for; a sixth concurrent check would overlap the others for hundreds of ms.
  const marginMs = 100;
  const edges: [number, number][] = [];
  for (const span of servers.flatMap((s) => s.spans)) {
    const end = (span.closedMs ?? performance.now()) - marginMs;
    if (end <= span.openedMs) continue;
    edges.push([span.openedMs, 1], [end, -1]);
  }
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let seenMax = 0;
  for (const [, delta] of edges) seenMax = Math.max(seenMax, (open += delta));
  t.equal(seenMax, inFlightMax, `the servers saw at most (and at some point exactly) ${inFlightMax} checks at once`);
  t.ok(sampledMax <= inFlightMax, `the checker never had more in flight (${sampledMax})`);
  t.ok(servers.every((s) => s.spans.length >= 1), 'every backend was checked: waiting delays checks, never skips them');
  t.ok(checker.snapshot().every((b) => b.lastError === `timeout after ${timeoutMs} ms`), 'each check timed out');
});

t.test('options are asserted', async (t) => {
  const backends = [{ address: '127.0.0.1', port: 6443 }];
  t.throws(() => new HealthChecker({ backends, options: checkOptions({ rise: 0 }) }), RaftAssertionError, 'rise 0');
  t.throws(() => new HealthChecker({ backends, options: checkOptions({ intervalMs: 1.5 }) }), RaftAssertionError, 'fractional interval');
  t.throws(() => new HealthChecker({ backends, options: checkOptions({ path: 'readyz' }) }), RaftAssertionError, 'relative path');
  t.throws(() => new HealthChecker({ backends, options: checkOptions({ path: '/ready z' }) }), RaftAssertionError, 'a space in the path');
  t.throws(() => new HealthChecker({ backends: [...backends, ...backends], options: checkOptions() }), RaftAssertionError, 'duplicate backends');
  t.throws(() => new HealthChecker({ backends, options: checkOptions(), inFlightMax: 0 }), RaftAssertionError, 'inFlightMax 0');
  const { cert } = files(cluster, 'client');
  t.throws(() => new HealthChecker({ backends, options: checkOptions({ tls: { ...verifyingTls, cert } }) }), RaftAssertionError, 'a certificate without its key');
  const checker = new HealthChecker({ backends: [backends[0]!, { address: '::1', port: 6443 }], options: checkOptions() });
  t.same(checker.snapshot().map((b) => `${b.address}:${b.port}`), ['127.0.0.1:6443', '::1:6443'], 'snapshot keeps the backends in order');
  checker.stop();
});

t.test('no process warnings', async (t) => {
  t.same(warnings, [], 'none: no IP literal was sent as SNI, no listener leaked');
});
