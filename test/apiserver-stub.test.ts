// Goal: show that the lab's kube-apiserver stand-in (src/lab/apiserver-stub.ts) behaves like one
// where raftvip looks, as a real process on 127.0.0.1 with an ephemeral port: /readyz is 503
// during the start delay and 200 after it, SIGUSR1 turns it not ready and back while it keeps
// serving, SIGTERM makes /readyz 503 for the shutdown delay while everything else is still served
// (with Connection: close), then it closes and exits 0, reporting the /whoami requests it served;
// /whoami names it, /livez and /healthz stay 200, other paths are 404; stdout holds one JSON event
// per state change and nothing else; its certificate (lab-certificates.ts) verifies against the
// lab CA with the IP SAN; the health checker drains it before it closes; and a bad command line
// is one line on stderr and exit 2.

import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  apiserverStubCommand,
  apiserverStubScript,
  parseApiserverStubEvent,
  parseListenAddress,
  type ApiserverStubEvent,
  type ApiserverStubEventName,
  type ApiserverStubOptions,
} from '../src/lab/apiserver-stub.js';
import { makeServingCertificates } from '../src/lab/lab-certificates.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { HealthChecker, type BackendHealth } from '../src/lb/health-checker.js';

const dir = mkdtempSync(join(tmpdir(), 'raftvip-apiserver-stub-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const certificates = makeServingCertificates(dir, { names: [{ name: 'h1', address: '127.0.0.1' }, { name: 'h2', address: '127.0.0.2' }] });
const ca = readFileSync(certificates.caFile);
const h1 = certificates.byName.h1!;

/** One running stub: its events as they come, its stderr, its exit. */
class Stub {
  readonly child: ChildProcess;
  readonly events: ApiserverStubEvent[] = [];
  /** stdout lines that are not events (there must be none). */
  readonly strayLines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  readonly #waiters: (() => void)[] = [];

  constructor(options: Partial<ApiserverStubOptions> = {}) {
    const [command, ...args] = apiserverStubCommand({
      name: 'h1',
      listen: '127.0.0.1:0',
      certFile: h1.certFile,
      keyFile: h1.keyFile,
      ...options,
    });
    this.child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const event = parseApiserverStubEvent(line);
      if (event === null) this.strayLines.push(line);
      else this.events.push(event);
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  /** The `nth` (1-based) event named `name`, waiting up to timeoutMs for it. */
  async event(name: ApiserverStubEventName, nth = 1, timeoutMs = 10_000): Promise<ApiserverStubEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.filter((e) => e.event === name)[nth - 1];
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${name}" event #${nth} within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

function start(t: Test, options: Partial<ApiserverStubOptions> = {}): Stub {
  const stub = new Stub(options);
  t.teardown(() => stub.kill());
  return stub;
}

interface Reply {
  status: number;
  body: string;
  connection: string | undefined;
}

/** GET over HTTPS on a fresh connection, verifying the server against the lab CA and its IP.
 * The client asks for keep-alive, so `connection` is what the server chose. */
function get(port: number, path: string): Promise<Reply> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return new Promise<Reply>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, ca, agent, timeout: 5_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, connection: response.headers.connection }));
      response.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  }).finally(() => agent.destroy());
}

t.test('start delay, SIGUSR1, SIGTERM: /readyz follows, the rest is served until the end', async (t) => {
  const startDelayMs = 1_500;
  const shutdownDelayMs = 1_500;
  const stub = start(t, { startDelayMs, shutdownDelayMs });
  const listening = await stub.event('listening');
  const port = listening.port!;
  t.match(listening, { name: 'h1', address: '127.0.0.1', pid: stub.child.pid });
  t.ok(port > 0, `the bound port is reported (${port})`);

  const starting = await get(port, '/readyz');
  t.same([starting.status, starting.body], [503, 'not ready: starting'], '503 during the start delay (and the certificate verified by CA and IP)');
  t.same(await get(port, '/livez'), { status: 200, body: 'ok', connection: 'keep-alive' }, '/livez is 200 meanwhile');

  const ready = await stub.event('ready');
  const startMs = ready.atMs - listening.atMs;
  t.ok(startMs >= startDelayMs - 2 && startMs < startDelayMs + 3_000, `ready after the start delay (${startMs.toFixed(0)} ms)`);
  t.same(await get(port, '/readyz'), { status: 200, body: 'ok', connection: 'keep-alive' }, '/readyz 200 ok once ready');
  t.equal((await get(port, '/healthz')).status, 200);
  for (let i = 0; i < 3; i++) t.same((await get(port, '/whoami')).body, 'h1\n', '/whoami names the backend');
  t.equal((await get(port, '/apis')).status, 404, 'other paths are 404');

  stub.child.kill('SIGUSR1');
  await stub.event('not-ready');
  t.same([(await get(port, '/readyz')).status, (await get(port, '/livez')).status], [503, 200], 'SIGUSR1: not ready, still serving');
  stub.child.kill('SIGUSR1');
  await stub.event('ready', 2);
  t.equal((await get(port, '/readyz')).status, 200, 'SIGUSR1 again: ready');

  const signalledMs = monotonicNowMs();
  stub.child.kill('SIGTERM');
  const terminating = await stub.event('terminating');
  t.ok(terminating.atMs >= signalledMs, 'terminating is stamped on the same clock, after the signal');
  t.same(await get(port, '/readyz'), { status: 503, body: 'not ready: shutting down', connection: 'close' }, '/readyz 503 while shutting down');
  t.same(await get(port, '/whoami'), { status: 200, body: 'h1\n', connection: 'close' }, 'still serving, with Connection: close');
  const closed = await stub.event('closed');
  const drainMs = closed.atMs - terminating.atMs;
  t.ok(drainMs >= shutdownDelayMs - 2 && drainMs < shutdownDelayMs + 3_000, `closed after the shutdown delay (${drainMs.toFixed(0)} ms)`);
  t.equal(closed.whoamiRequests, 4, 'closed reports the /whoami requests served');
  t.equal(closed.requests, 13, 'and all requests');
  t.equal(await stub.exited, 0, 'exit 0');
  await t.rejects(get(port, '/readyz'), { code: 'ECONNREFUSED' }, 'nothing listens afterwards');

  t.same(stub.events.map((e) => e.event), ['listening', 'ready', 'not-ready', 'ready', 'terminating', 'closed'], 'one event per change');
  t.same(stub.strayLines, [], 'nothing else on stdout');
  t.equal(stub.stderr, '', 'nothing on stderr');
});

t.test('the health checker marks it not ready before it closes', async (t) => {
  const stub = start(t, { startDelayMs: 0, shutdownDelayMs: 1_500 });
  const port = (await stub.event('listening')).port!;
  await stub.event('ready');
  const changes: (BackendHealth & { atMs: number })[] = [];
  const checker = new HealthChecker({
    backends: [{ address: '127.0.0.1', port }],
    options: { type: 'https', path: '/readyz', intervalMs: 100, timeoutMs: 1_000, rise: 2, fall: 2, tls: { ca, cert: null, key: null, insecureSkipVerify: false } },
    onChange: (backend) => changes.push({ ...backend, atMs: monotonicNowMs() }),
  });
  t.teardown(() => checker.stop());
  checker.start();
  const deadline = Date.now() + 10_000;
  while (changes.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  t.equal(changes[0]?.ready, true, 'ready: verified against the lab CA with the IP SAN');
  stub.child.kill('SIGTERM');
  const closed = await stub.event('closed');
  const terminating = await stub.event('terminating');
  const drained = changes.find((c) => !c.ready);
  t.ok(drained !== undefined, 'marked not ready');
  t.ok(drained!.atMs < closed.atMs, `before the stub closed (${(closed.atMs - drained!.atMs).toFixed(0)} ms before)`);
  t.equal(drained!.lastError, 'HTTP 503', 'by its /readyz');
  t.ok(drained!.atMs - terminating.atMs < 2 * 100 + 500, `within fall × interval + slack of the SIGTERM (${(drained!.atMs - terminating.atMs).toFixed(0)} ms)`);
  t.equal(await stub.exited, 0);
});

t.test('a bad command line is one line on stderr and exit 2', async (t) => {
  const base = ['--name', 'h1', '--listen', '127.0.0.1:0', '--cert', h1.certFile, '--key', h1.keyFile];
  const cases: [string, string[]][] = [
    ['no arguments', []],
    ['no --listen', ['--name', 'h1', '--cert', h1.certFile, '--key', h1.keyFile]],
    ['a host name', [...base, '--listen', 'localhost:6443']],
    ['IPv6 without brackets', [...base, '--listen', '::1:6443']],
    ['a port out of range', [...base, '--listen', '127.0.0.1:65536']],
    ['a bad name', [...base, '--name', 'h 1']],
    ['a bad delay', [...base, '--start-delay-ms', '1.5']],
    ['a delay too long', [...base, '--shutdown-delay-ms', '600001']],
    ['an unknown option', [...base, '--verbose']],
    ['a positional argument', [...base, 'extra']],
  ];
  for (const [what, args] of cases) {
    const result = spawnSync(process.execPath, [apiserverStubScript, ...args], { encoding: 'utf8', timeout: 10_000 });
    t.equal(result.status, 2, `${what}: exit 2`);
    t.match(result.stderr, /^apiserver-stub: [^\n]+\n$/, `${what}: one line (${result.stderr.trim()})`);
    t.equal(result.stdout, '', `${what}: nothing on stdout`);
  }
  const missing = spawnSync(process.execPath, [apiserverStubScript, ...base, '--cert', join(dir, 'missing.crt')], { encoding: 'utf8', timeout: 10_000 });
  t.equal(missing.status, 1, 'an unreadable certificate: exit 1');
  t.match(missing.stderr, /cannot read the certificate or key/);
});

t.test('command line, listen address and event parsing', async (t) => {
  t.same(apiserverStubCommand({ name: 'h2', listen: '[fd72:7276::12]:6443', certFile: 'c', keyFile: 'k', startDelayMs: 0, shutdownDelayMs: 2_000 }), [
    process.execPath, apiserverStubScript,
    '--name', 'h2', '--listen', '[fd72:7276::12]:6443', '--cert', 'c', '--key', 'k', '--start-delay-ms', '0', '--shutdown-delay-ms', '2000',
  ]);
  t.equal(apiserverStubCommand({ name: 'h2', listen: '10.213.0.12:6443', certFile: 'c', keyFile: 'k' }).length, 10, 'delays only when given');
  t.same(parseListenAddress('10.213.0.11:6443'), { host: '10.213.0.11', port: 6443 });
  t.same(parseListenAddress('[fd72:7276::11]:0'), { host: 'fd72:7276::11', port: 0 });
  for (const bad of ['10.213.0.11', 'h1:6443', '[h1]:6443', '10.213.0.11:', '10.213.0.11:-1', '[::1]6443']) {
    t.ok('error' in parseListenAddress(bad), `${bad} is refused`);
  }
  t.same(parseApiserverStubEvent('{"event":"ready","name":"h1","atMs":12.5}'), { event: 'ready', name: 'h1', atMs: 12.5 });
  t.equal(parseApiserverStubEvent('{"event":"bored","name":"h1","atMs":1}'), null, 'unknown events are not events');
  t.equal(parseApiserverStubEvent('ready'), null);
  t.equal(parseApiserverStubEvent('null'), null);
});

t.test('lab certificates: a CA and per-host serving certificates with IP SANs', async (t) => {
  const caCertificate = new X509Certificate(ca);
  t.ok(caCertificate.ca, 'the CA is a CA');
  for (const [name, address] of [['h1', '127.0.0.1'], ['h2', '127.0.0.2']] as const) {
    const files = certificates.byName[name]!;
    const certificate = new X509Certificate(readFileSync(files.certFile));
    t.ok(certificate.verify(caCertificate.publicKey), `${name} is signed by the CA`);
    t.ok(certificate.checkIP(address) !== undefined, `${name} names ${address}`);
    t.equal(certificate.checkIP(address === '127.0.0.1' ? '127.0.0.2' : '127.0.0.1'), undefined, `${name} names no other address`);
    t.match(certificate.subject, new RegExp(`CN=${name}`));
    t.equal(readFileSync(files.keyFile, 'utf8').includes('PRIVATE KEY'), true);
  }
  const other = join(dir, 'invalid');
  mkdirSync(other);
  for (const [what, names] of [
    ['no hosts', []],
    ['a bad name', [{ name: 'h/1', address: '127.0.0.1' }]],
    ['the CA name', [{ name: 'ca', address: '127.0.0.1' }]],
    ['a duplicate', [{ name: 'h1', address: '127.0.0.1' }, { name: 'h1', address: '127.0.0.2' }]],
    ['not an IP', [{ name: 'h1', address: 'h1.example' }]],
  ] as const) {
    t.throws(() => makeServingCertificates(other, { names }), { name: 'LabError', code: 'LAB_INVALID_OPTION' }, what);
  }
  t.throws(
    () => makeServingCertificates(join(dir, 'does-not-exist'), { names: [{ name: 'h1', address: '127.0.0.1' }] }),
    { name: 'LabError', code: 'LAB_COMMAND_FAILED' },
    'an openssl failure is LAB_COMMAND_FAILED',
  );
});
