// Benchmark: the peer transport between two PeerTransport instances in one process on
// 127.0.0.1, for each auth mode (TLS 1.3 PSK, mutual TLS 1.3, insecure plain TCP):
//
// - heartbeat round trip: n1 sends a `heartbeat` to n2, whose onMessage at once sends a
//   `heartbeat-response` back; N sequential round trips after a warm-up; p50/p99/max.
// - one-way throughput of small heartbeat frames and of append frames carrying 64 command
//   entries of 100 bytes, counted on arrival at n2.
//
// Pacing: a peer's send queue holds sendQueueMessagesMax (256) messages and drops its oldest
// heartbeats and appends when full, so an unpaced sender measures the drop policy, not the
// transport. The sender keeps at most `window` (128) frames sent but not yet delivered: it
// sends a burst up to the window, then waits until n2's onMessage has counted deliveries down
// to half of it. The count is shared memory (both ends live in this process), a credit loop no
// real network has; it only keeps the queue from overflowing, and the run checks that nothing
// was dropped. Both ends share one event loop, so the figures are what one core does for
// encode + TLS + TCP + TLS + decode together, not what two hosts would.
//
//   npm run bench:transport [-- --auth psk,tls,insecure] [--rtt-rounds 5000]
//                            [--heartbeat-frames 200000] [--append-frames 20000] [--json]

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SeededRandom } from '../src/raft/random.js';
import { logIndex, nodeId, term, type Entry, type Message, type NodeId } from '../src/raft/types.js';
import { encodeFrame } from '../src/transport/frame-codec.js';
import { PeerTransport, sendQueueMessagesMax, type TransportAuth } from '../src/transport/peer-transport.js';

type AuthKind = TransportAuth['kind'];

const args = process.argv.slice(2);
function option(name: string, fallback: number): number {
  const at = args.indexOf(name);
  if (at === -1) return fallback;
  const value = Number(args[at + 1]);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} needs a positive integer`);
  return value;
}
const asJson = args.includes('--json');
const authKinds = ((): AuthKind[] => {
  const at = args.indexOf('--auth');
  const list = at === -1 ? ['psk', 'tls', 'insecure'] : (args[at + 1] ?? '').split(',');
  return list.map((kind) => {
    if (kind !== 'psk' && kind !== 'tls' && kind !== 'insecure') throw new Error(`--auth: "${kind}" is not psk, tls or insecure`);
    return kind;
  });
})();
const rttRounds = option('--rtt-rounds', 5000);
const rttWarmupRounds = 500;
const heartbeatFrames = option('--heartbeat-frames', 200_000);
const appendFrames = option('--append-frames', 20_000);
/** Frames sent but not yet delivered, at most; well inside the 256-message send queue. */
const window = 128;
const appendEntriesCount = 64;
const appendEntryBytes = 100;
/** Every wait in the benchmark: a stall this long is a failure, not a measurement. */
const stallTimeoutMs = 30_000;

const n1 = nodeId('n1');
const n2 = nodeId('n2');

// ---------------------------------------------------------------------------------------------
// Credentials

/** A cluster CA and certificates naming n1 and n2, made with the openssl CLI. */
function makeTlsAuth(): Map<NodeId, TransportAuth> {
  const dir = mkdtempSync(join(tmpdir(), 'raftvip-bench-pki-'));
  try {
    const openssl = (...argv: string[]): void => {
      execFileSync('openssl', argv, { cwd: dir, timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
    };
    openssl(
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
      '-days', '1', '-subj', '/CN=raftvip-bench-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    );
    const auths = new Map<NodeId, TransportAuth>();
    for (const id of [n1, n2]) {
      writeFileSync(join(dir, `${id}.ext`), `subjectAltName=DNS:${id}\nextendedKeyUsage=serverAuth,clientAuth\n`);
      openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${id}`);
      openssl('x509', '-req', '-in', `${id}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${id}.crt`, '-days', '1', '-extfile', `${id}.ext`);
      auths.set(id, {
        kind: 'tls',
        ca: readFileSync(join(dir, 'ca.crt')),
        cert: readFileSync(join(dir, `${id}.crt`)),
        key: readFileSync(join(dir, `${id}.key`)),
      });
    }
    return auths;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function authFor(kind: AuthKind): Map<NodeId, TransportAuth> {
  switch (kind) {
    case 'psk': {
      const auth: TransportAuth = { kind: 'psk', psk: Buffer.alloc(32, 0x5a) };
      return new Map([[n1, auth], [n2, auth]]);
    }
    case 'tls':
      return makeTlsAuth();
    case 'insecure':
      return new Map([[n1, { kind: 'insecure' }], [n2, { kind: 'insecure' }]]);
  }
}

// ---------------------------------------------------------------------------------------------
// A pair of transports

interface Pair {
  readonly a: PeerTransport;
  readonly b: PeerTransport;
  /** Replaced by each phase: what n1 and n2 do with a delivered message. */
  onA: (message: Message) => void;
  onB: (message: Message) => void;
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + stallTimeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`stalled for ${stallTimeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function startPair(kind: AuthKind): Promise<Pair> {
  const auths = authFor(kind);
  const log = (level: string, msg: string): void => {
    // Insecure mode warns at every start, as it should; that one is expected here.
    if ((level === 'warn' || level === 'error') && !msg.startsWith('peer transport is INSECURE')) process.stderr.write(`[${kind}] ${level}: ${msg}\n`);
  };
  const jitter = new SeededRandom(0x7a11);
  const random = (): number => jitter.nextFloat();
  const pair: Pair = { a: undefined as unknown as PeerTransport, b: undefined as unknown as PeerTransport, onA: () => undefined, onB: () => undefined };
  // n1 first with no peers, so n2 can be given n1's real port; then n1 learns n2's.
  const a = new PeerTransport({ self: n1, listen: { host: '127.0.0.1', port: 0 }, peers: [], auth: auths.get(n1)!, onMessage: (m) => pair.onA(m), log, random });
  await a.start();
  const aPort = a.address()!.port;
  const b = new PeerTransport({
    self: n2,
    listen: { host: '127.0.0.1', port: 0 },
    peers: [{ id: n1, host: '127.0.0.1', port: aPort }],
    auth: auths.get(n2)!,
    onMessage: (m) => pair.onB(m),
    log,
    random,
  });
  await b.start();
  a.updatePeers([{ id: n2, host: '127.0.0.1', port: b.address()!.port }]);
  Object.assign(pair, { a, b });
  await waitFor(() => a.status()[0]?.connected === true && b.status()[0]?.connected === true, 'both links to connect');
  return pair;
}

// ---------------------------------------------------------------------------------------------
// Measurements

const heartbeat = (from: NodeId, to: NodeId, tick: number): Message => ({
  type: 'heartbeat',
  from,
  to,
  term: term(7),
  index: logIndex(0),
  logTerm: term(0),
  commit: logIndex(1000),
  sentAtTick: tick,
  epoch: 1,
});

function appendMessage(): Message {
  const random = new SeededRandom(0xa99e);
  const entries: Entry[] = Array.from({ length: appendEntriesCount }, (_, i) => {
    const data = new Uint8Array(appendEntryBytes);
    for (let j = 0; j < data.length; j++) data[j] = random.nextInt(256);
    return { term: term(7), index: logIndex(1001 + i), type: 'command', data };
  });
  return { type: 'append', from: n1, to: n2, term: term(7), index: logIndex(1000), logTerm: term(7), commit: logIndex(1000), entries, sentAtTick: 1, epoch: 1 };
}

interface RoundTrip {
  rounds: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
}

async function measureRoundTrip(pair: Pair): Promise<RoundTrip> {
  let resolveReply: (() => void) | null = null;
  pair.onB = (m) => {
    if (m.type === 'heartbeat') pair.b.send({ ...heartbeat(n2, n1, m.sentAtTick ?? 0), type: 'heartbeat-response', commit: logIndex(0) });
  };
  pair.onA = (m) => {
    if (m.type === 'heartbeat-response' && resolveReply !== null) {
      const resolve = resolveReply;
      resolveReply = null;
      resolve();
    }
  };
  const samplesUs: number[] = [];
  for (let round = 0; round < rttWarmupRounds + rttRounds; round++) {
    const reply = new Promise<void>((resolve, reject) => {
      resolveReply = resolve;
      setTimeout(() => reject(new Error(`round trip ${round} took over ${stallTimeoutMs} ms`)), stallTimeoutMs).unref();
    });
    const sentMs = performance.now();
    pair.a.send(heartbeat(n1, n2, round));
    await reply;
    if (round >= rttWarmupRounds) samplesUs.push((performance.now() - sentMs) * 1000);
  }
  samplesUs.sort((x, y) => x - y);
  const at = (q: number): number => samplesUs[Math.min(samplesUs.length - 1, Math.floor(q * samplesUs.length))] ?? NaN;
  return {
    rounds: rttRounds,
    p50Us: Math.round(at(0.5)),
    p99Us: Math.round(at(0.99)),
    maxUs: Math.round(samplesUs[samplesUs.length - 1] ?? NaN),
    meanUs: Math.round(samplesUs.reduce((sum, x) => sum + x, 0) / samplesUs.length),
  };
}

interface Throughput {
  frames: number;
  frameBytes: number;
  seconds: number;
  framesPerSecond: number;
  megabytesPerSecond: number;
  dropped: number;
}

/** Sends `frames` copies of `message` from n1 to n2, at most `window` undelivered at a time. */
async function measureThroughput(pair: Pair, message: Message, frames: number): Promise<Throughput> {
  let sent = 0;
  let delivered = 0;
  /** Resolved by n2's onMessage once the undelivered count is down to `wake.atMost`. */
  let wake: { atMost: number; resolve: () => void } | null = null;
  pair.onA = () => undefined;
  pair.onB = () => {
    delivered++;
    if (wake !== null && sent - delivered <= wake.atMost) {
      const { resolve } = wake;
      wake = null;
      resolve();
    }
  };
  const undeliveredAtMost = (atMost: number, what: string): Promise<void> => {
    if (sent - delivered <= atMost) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stalled for ${stallTimeoutMs} ms waiting for ${what}`)), stallTimeoutMs);
      wake = {
        atMost,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  };
  const droppedBefore = pair.a.counters().framesDropped;
  // Warm-up: one window's worth, unmeasured.
  for (; sent < window; sent++) pair.a.send(message);
  await undeliveredAtMost(0, 'the warm-up frames');
  sent = 0;
  delivered = 0;
  const startedMs = performance.now();
  while (sent < frames) {
    const burst = Math.min(window - (sent - delivered), frames - sent);
    for (let i = 0; i < burst; i++) pair.a.send(message);
    sent += burst;
    await undeliveredAtMost(sent < frames ? window / 2 : 0, 'deliveries to catch up');
  }
  const seconds = (performance.now() - startedMs) / 1000;
  const frameBytes = encodeFrame(message).length;
  return {
    frames,
    frameBytes,
    seconds: Math.round(seconds * 1000) / 1000,
    framesPerSecond: Math.round(frames / seconds),
    megabytesPerSecond: Math.round(((frames * frameBytes) / seconds / 1e6) * 10) / 10,
    dropped: pair.a.counters().framesDropped - droppedBefore,
  };
}

interface Result {
  auth: AuthKind;
  roundTrip: RoundTrip;
  heartbeats: Throughput;
  appends: Throughput;
}

async function run(kind: AuthKind): Promise<Result> {
  const pair = await startPair(kind);
  try {
    const roundTrip = await measureRoundTrip(pair);
    const heartbeats = await measureThroughput(pair, heartbeat(n1, n2, 1), heartbeatFrames);
    const appends = await measureThroughput(pair, appendMessage(), appendFrames);
    if (heartbeats.dropped + appends.dropped > 0) throw new Error(`${kind}: ${heartbeats.dropped + appends.dropped} frames dropped; the pacing window is too wide`);
    return { auth: kind, roundTrip, heartbeats, appends };
  } finally {
    await Promise.all([pair.a.stop(), pair.b.stop()]);
  }
}

function opensslVersion(): string {
  try {
    return execFileSync('openssl', ['version'], { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    return `(no openssl CLI; Node's OpenSSL ${process.versions.openssl})`;
  }
}

const results: Result[] = [];
for (const kind of authKinds) results.push(await run(kind));
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cpus: cpus().length,
  kernel: release(),
  node: process.version,
  openssl: process.versions.openssl,
  opensslCli: opensslVersion(),
};
const settings = { window, sendQueueMessagesMax, rttWarmupRounds, appendEntriesCount, appendEntryBytes };

if (asJson) {
  console.log(JSON.stringify({ machine, settings, results }, null, 2));
} else {
  const labels: Record<AuthKind, string> = { psk: 'TLS 1.3 PSK', tls: 'mutual TLS 1.3', insecure: 'insecure TCP' };
  console.log(`peer transport on 127.0.0.1, two PeerTransports in one process (${machine.cpus} × ${machine.cpu}, Node ${machine.node}, OpenSSL ${machine.openssl})`);
  console.log(`heartbeat round trip: ${rttRounds} sequential after ${rttWarmupRounds} warm-up; throughput: one way, at most ${window} frames undelivered (queue ${sendQueueMessagesMax})`);
  console.log('');
  console.log('auth             rtt p50 µs  rtt p99 µs  rtt max µs   heartbeat frames/s   MB/s   append(64×100 B) frames/s   MB/s   entries/s');
  for (const r of results) {
    console.log(
      `${labels[r.auth].padEnd(15)} ${String(r.roundTrip.p50Us).padStart(11)} ${String(r.roundTrip.p99Us).padStart(11)} ${String(r.roundTrip.maxUs).padStart(11)}` +
        `   ${r.heartbeats.framesPerSecond.toLocaleString('en-US').padStart(18)} ${r.heartbeats.megabytesPerSecond.toFixed(1).padStart(6)}` +
        `   ${r.appends.framesPerSecond.toLocaleString('en-US').padStart(25)} ${r.appends.megabytesPerSecond.toFixed(1).padStart(6)}` +
        `   ${(r.appends.framesPerSecond * appendEntriesCount).toLocaleString('en-US').padStart(9)}`,
    );
  }
  const first = results[0];
  if (first !== undefined) {
    console.log('');
    console.log(
      `frame sizes: heartbeat ${first.heartbeats.frameBytes} B, append ${first.appends.frameBytes} B; ` +
        `${heartbeatFrames.toLocaleString('en-US')} heartbeat and ${appendFrames.toLocaleString('en-US')} append frames per mode; none dropped`,
    );
  }
}
