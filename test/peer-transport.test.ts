// Goal: show over real loopback sockets that the peer transport delivers Raft messages between
// nodes authenticated by a pre-shared key (TLS 1.3 PSK) or by a cluster CA (mutual TLS 1.3),
// and refuses everyone else: a wrong key, an unknown identity, a certificate that names
// another node or comes from another CA. A connection that sends garbage, an oversized length,
// a truncated frame or a message with a forged sender is closed and counted while the other
// peers keep talking. A restarted peer is reconnected to automatically and gets what was
// queued for it; a full send queue drops its oldest heartbeats first and counts the drops.
// Certificates are made with the openssl CLI in a temporary directory.

import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { SeededRandom } from '../src/raft/random.js';
import { logIndex, nodeId, term, type Message, type MessageType, type NodeId } from '../src/raft/types.js';
import { encodeFrame } from '../src/transport/frame-codec.js';
import {
  PeerTransport,
  handshakeTimeoutMs,
  inboundConnectionsMax,
  reconnectDelayMs,
  reconnectDelayMsMax,
  reconnectDelayMsMin,
  sendQueueMessagesMax,
  type PeerAddress,
  type TransportAuth,
  type TransportLogLevel,
} from '../src/transport/peer-transport.js';
import { SendQueue } from '../src/transport/send-queue.js';
import { pskCipherSuites } from '../src/transport/transport-auth.js';

const execFileAsync = promisify(execFile);
const host = '127.0.0.1';
const psk = Buffer.alloc(32, 0x42);
const otherPsk = Buffer.alloc(32, 0x24);
/** A condition not met in this time is a failure, not slowness. */
const waitTimeoutMs = 20_000; // generous: CI runs this beside the simulator on two busy cores

// ---------------------------------------------------------------------------------------------
// Helpers

interface Teardown {
  teardown(fn: () => unknown): void;
}

interface LogLine {
  level: TransportLogLevel;
  msg: string;
  fields: Record<string, unknown>;
}

interface TestNode {
  id: NodeId;
  transport: PeerTransport;
  received: Message[];
  logs: LogLine[];
  port: number;
}

const message = (from: string, to: string, type: MessageType = 'heartbeat', tick = 0): Message => ({
  type,
  from: nodeId(from),
  to: nodeId(to),
  term: term(3),
  index: logIndex(10),
  logTerm: term(2),
  commit: logIndex(9),
  sentAtTick: tick,
});

async function waitFor(condition: () => boolean, what: string, timeoutMs = waitTimeoutMs): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startNode(
  tt: Teardown,
  id: string,
  auth: TransportAuth,
  options: { peers?: PeerAddress[]; port?: number } = {},
): Promise<TestNode> {
  const received: Message[] = [];
  const logs: LogLine[] = [];
  const transport = new PeerTransport({
    self: nodeId(id),
    listen: { host, port: options.port ?? 0 },
    peers: options.peers ?? [],
    auth,
    onMessage: (m) => received.push(m),
    log: (level, msg, fields) => logs.push({ level, msg, fields }),
    random: (() => {
      const random = new SeededRandom(id.length * 7919 + (id.codePointAt(id.length - 1) ?? 0));
      return () => random.nextFloat();
    })(),
  });
  tt.teardown(() => transport.stop());
  await transport.start();
  const port = transport.address()?.port;
  if (port === undefined) throw new Error('not listening');
  return { id: nodeId(id), transport, received, logs, port };
}

/** Starts nodes on ephemeral ports, then tells each where the others are. */
async function startCluster(tt: Teardown, ids: readonly string[], authFor: (id: string) => TransportAuth): Promise<TestNode[]> {
  const nodes = await Promise.all(ids.map((id) => startNode(tt, id, authFor(id))));
  for (const node of nodes) {
    node.transport.updatePeers(nodes.filter((other) => other !== node).map((other) => ({ id: other.id, host, port: other.port })));
  }
  return nodes;
}

const addressOf = (node: TestNode): PeerAddress => ({ id: node.id, host, port: node.port });

/** Every node sends `count` heartbeats to every other; all must arrive, in order per sender. */
async function exchange(tt: { strictSame: (a: unknown, b: unknown, m: string) => unknown }, nodes: readonly TestNode[], count: number): Promise<void> {
  const before = new Map(nodes.map((node) => [node.id, node.received.length]));
  for (const from of nodes) {
    for (const to of nodes) {
      if (from !== to) for (let i = 0; i < count; i++) from.transport.send(message(from.id, to.id, 'heartbeat', i));
    }
  }
  const expected = count * (nodes.length - 1);
  await waitFor(() => nodes.every((node) => node.received.length - (before.get(node.id) ?? 0) >= expected), 'every message to arrive');
  for (const node of nodes) {
    const fresh = node.received.slice(before.get(node.id) ?? 0);
    for (const from of nodes) {
      if (from === node) continue;
      const ticks = fresh.filter((m) => m.from === from.id).map((m) => m.sentAtTick);
      tt.strictSame(ticks, Array.from({ length: count }, (_, i) => i), `${node.id} got ${from.id}'s ${count} messages in order`);
    }
  }
}

function logged(node: TestNode, pattern: RegExp, code?: string): boolean {
  return node.logs.some((line) => pattern.test(line.msg) && (code === undefined || line.fields.code === code));
}

function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

/** A raw TLS-PSK client that completes the handshake as `identity` and then lets the test
 * write whatever bytes it wants. */
function pskClient(port: number, identity: string, key: Buffer): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      minVersion: 'TLSv1.3',
      ciphers: pskCipherSuites,
      pskCallback: () => ({ psk: key, identity }),
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Certificates (openssl CLI)

interface Pki {
  ca: Buffer;
  /** Certificates signed by the cluster CA, by the node id they name. */
  certs: Map<string, { cert: Buffer; key: Buffer }>;
  /** A certificate naming cp2, signed by another CA. */
  rogue: { cert: Buffer; key: Buffer };
}

let pkiPromise: Promise<Pki> | null = null;

async function openssl(dir: string, args: readonly string[]): Promise<void> {
  await execFileAsync('openssl', [...args], { cwd: dir, timeout: 10_000 });
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

async function makeCert(dir: string, ca: string, name: string, dnsNames: readonly string[]): Promise<{ cert: Buffer; key: Buffer }> {
  await writeFile(
    join(dir, `${name}.ext`),
    `subjectAltName=${dnsNames.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n`,
  );
  await openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
  return { cert: await readFile(join(dir, `${name}.crt`)), key: await readFile(join(dir, `${name}.key`)) };
}

/** One PKI for the whole file: a cluster CA with certificates for cp1..cp3 and cp9, and a
 * rogue CA's certificate for cp2. The CN of each is a decoy ("cn-<id>") to show it is ignored. */
function pki(tt: Teardown): Promise<Pki> {
  pkiPromise ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftvip-pki-'));
    tt.teardown(() => rm(dir, { recursive: true, force: true }));
    await makeCa(dir, 'cluster-ca');
    await makeCa(dir, 'rogue-ca');
    const certs = new Map<string, { cert: Buffer; key: Buffer }>();
    for (const id of ['cp1', 'cp2', 'cp3', 'cp9']) certs.set(id, await makeCert(dir, 'cluster-ca', `cn-${id}`, [id]));
    const rogue = await makeCert(dir, 'rogue-ca', 'rogue-cp2', ['cp2']);
    return { ca: await readFile(join(dir, 'cluster-ca.crt')), certs, rogue };
  })();
  return pkiPromise;
}

function tlsAuth(material: Pki, id: string): TransportAuth {
  const own = material.certs.get(id);
  if (own === undefined) throw new Error(`no certificate for ${id}`);
  return { kind: 'tls', ca: material.ca, cert: own.cert, key: own.key };
}

// ---------------------------------------------------------------------------------------------
// Pure parts

t.test('a full send queue drops the oldest heartbeat or append first, then the oldest message', async (t) => {
  const queue = new SendQueue(4);
  const vote = message('cp1', 'cp2', 'vote', 1);
  t.equal(queue.push(vote), null);
  t.equal(queue.push(message('cp1', 'cp2', 'heartbeat', 2)), null);
  t.equal(queue.push(message('cp1', 'cp2', 'append', 3)), null);
  t.equal(queue.push(message('cp1', 'cp2', 'timeout-now', 4)), null);
  t.equal(queue.push(message('cp1', 'cp2', 'snapshot', 5))?.sentAtTick, 2, 'the oldest heartbeat goes, not the older vote');
  t.equal(queue.push(message('cp1', 'cp2', 'pre-vote', 6))?.sentAtTick, 3, 'then the append');
  t.equal(queue.push(message('cp1', 'cp2', 'heartbeat', 7))?.sentAtTick, 1, 'with nothing superseded left, the oldest message');
  t.strictSame(queue.snapshot().map((m) => m.sentAtTick), [4, 5, 6, 7]);
});

t.test('reconnect delays grow from the minimum to the cap, jittered', async (t) => {
  const random = new SeededRandom(1);
  for (let failures = 0; failures < 40; failures++) {
    const ceiling = Math.min(reconnectDelayMsMax, reconnectDelayMsMin * 2 ** failures);
    for (let i = 0; i < 20; i++) {
      const delayMs = reconnectDelayMs(failures, () => random.nextFloat());
      if (delayMs < Math.max(reconnectDelayMsMin, ceiling / 2) || delayMs > ceiling) t.fail(`delay ${delayMs} after ${failures} failures`);
    }
  }
  t.equal(reconnectDelayMs(0, () => 0.99), reconnectDelayMsMin, 'the first retry waits the minimum');
  t.equal(reconnectDelayMs(100, () => 0.999999), reconnectDelayMsMax, 'capped');
  t.equal(reconnectDelayMs(100, () => 0), reconnectDelayMsMax / 2, 'half the cap at the low end of the jitter');
});

t.test('options are validated with typed errors', async (t) => {
  const base = { self: nodeId('cp1'), listen: { host, port: 0 }, peers: [], onMessage: () => undefined, log: () => undefined };
  const code = 'RAFTVIP_TRANSPORT_INVALID_OPTION';
  t.throws(() => new PeerTransport({ ...base, auth: { kind: 'psk', psk: Buffer.alloc(16) } }), { code, option: 'auth.psk' }, 'a 16-byte key');
  t.throws(
    () => new PeerTransport({ ...base, auth: { kind: 'insecure' }, peers: [{ id: nodeId('cp2'), host, port: 1 }, { id: nodeId('cp2'), host, port: 2 }] }),
    { code, option: 'peers[1].id' },
    'a duplicate peer',
  );
  t.throws(() => new PeerTransport({ ...base, auth: { kind: 'insecure' }, peers: [{ id: nodeId('cp2'), host, port: 0 }] }), { code }, 'peer port 0');
  t.throws(() => new PeerTransport({ ...base, auth: { kind: 'insecure' }, listen: { host, port: 70000 } }), { code, option: 'listen.port' });
  const material = await pki(t);
  t.throws(() => new PeerTransport({ ...base, self: nodeId('cp2'), auth: tlsAuth(material, 'cp1') }), { code, option: 'auth.cert' }, 'a certificate naming another node');
  t.throws(
    () => new PeerTransport({ ...base, self: nodeId('cp2'), auth: { kind: 'tls', ca: material.ca, ...material.rogue } }),
    { code, option: 'auth.cert' },
    'a certificate from another CA',
  );
  const withSelf = new PeerTransport({ ...base, auth: { kind: 'insecure' }, peers: [{ id: nodeId('cp1'), host, port: 1 }, { id: nodeId('cp2'), host, port: 2 }] });
  t.strictSame(withSelf.status().map((s) => s.id), ['cp2'], 'an entry for self is ignored');
});

t.test('a port in use fails start() with RAFTVIP_TRANSPORT_LISTEN_FAILED', async (t) => {
  const first = await startNode(t, 'cp1', { kind: 'psk', psk });
  const second = new PeerTransport({
    self: nodeId('cp2'), listen: { host, port: first.port }, peers: [], auth: { kind: 'psk', psk }, onMessage: () => undefined, log: () => undefined,
  });
  await t.rejects(second.start(), { code: 'RAFTVIP_TRANSPORT_LISTEN_FAILED' });
  await second.stop();
});

// ---------------------------------------------------------------------------------------------
// Delivery

t.test('PSK: three nodes exchange messages over TLS 1.3', async (t) => {
  const nodes = await startCluster(t, ['cp1', 'cp2', 'cp3'], () => ({ kind: 'psk', psk }));
  await exchange(t, nodes, 20);
  const [cp1] = nodes;
  if (cp1 === undefined) return;
  await waitFor(() => cp1.transport.status().every((s) => s.connected), 'cp1 connected to both peers');
  for (const status of cp1.transport.status()) {
    t.equal(status.framesOut, 20, `${status.id}: 20 frames out`);
    t.equal(status.framesIn, 20, `${status.id}: 20 frames in`);
    t.equal(status.framesDropped, 0);
    t.equal(status.lastError, null);
  }
  const connectLine = cp1.logs.find((line) => /connected to peer/.test(line.msg));
  t.equal(connectLine?.fields.protocol, 'TLSv1.3', 'TLS 1.3');
  t.match(String(connectLine?.fields.cipher), /^TLS_(AES_128_GCM_SHA256|CHACHA20_POLY1305_SHA256)$/, 'a SHA-256 suite');
  const counters = cp1.transport.counters();
  t.equal(counters.peersConnected, 2);
  t.equal(counters.framesInvalid + counters.handshakesFailed + counters.protocolViolations, 0, 'nothing refused');
  cp1.transport.send(message('cp1', 'cp7'));
  t.equal(cp1.transport.counters().framesDropped, 1, 'a message to a non-peer is dropped and counted');

  // Membership change: cp1 forgets cp3, which loses both directions and is refused from now on.
  const [, cp2, cp3] = nodes;
  if (cp2 === undefined || cp3 === undefined) return;
  const totalsBefore = cp1.transport.counters();
  cp1.transport.updatePeers([addressOf(cp2)]);
  t.strictSame(cp1.transport.status().map((s) => s.id), ['cp2']);
  t.equal(cp1.transport.counters().framesIn, totalsBefore.framesIn, 'totals do not go backwards when a peer is removed');
  await waitFor(() => cp3.transport.status().find((s) => s.id === 'cp1')?.connected === false, 'cp3 to lose its connection to cp1');
  cp3.transport.send(message('cp3', 'cp1', 'vote', 77));
  await waitFor(() => logged(cp1, /PSK identity "cp3" is not a peer/), 'cp1 to refuse cp3');
  t.equal(cp1.received.filter((m) => m.sentAtTick === 77).length, 0, 'nothing from a removed peer is delivered');
  await exchange(t, [cp1, cp2], 2);
});

t.test('mTLS: three nodes exchange messages with certificates naming their ids', async (t) => {
  const material = await pki(t);
  const nodes = await startCluster(t, ['cp1', 'cp2', 'cp3'], (id) => tlsAuth(material, id));
  await exchange(t, nodes, 10);
  t.equal(nodes[0]?.logs.find((line) => /connected to peer/.test(line.msg))?.fields.protocol, 'TLSv1.3');
});

t.test('insecure: plain TCP delivers, and the first frame binds the sender', async (t) => {
  const nodes = await startCluster(t, ['cp1', 'cp2'], () => ({ kind: 'insecure' }));
  await exchange(t, nodes, 5);
  const [cp1] = nodes;
  if (cp1 === undefined) return;
  t.ok(logged(cp1, /INSECURE/), 'warns that the transport is insecure');
  cp1.transport.updatePeers([...cp1.transport.status().map((s) => ({ id: s.id, host, port: nodes[1]?.port ?? 0 })), { id: nodeId('cp3'), host, port: await freePort() }]);
  const raw = net.connect(cp1.port, host);
  await new Promise((resolve) => raw.once('connect', resolve));
  raw.write(encodeFrame(message('cp3', 'cp1', 'vote', 1)));
  raw.write(encodeFrame(message('cp2', 'cp1', 'vote', 2)));
  await closed(raw);
  t.strictSame(cp1.received.filter((m) => m.type === 'vote').map((m) => m.from), ['cp3'], 'the first frame was accepted, the switch of sender was not');
  t.ok(logged(cp1, /claiming to be from "cp2"/, 'RAFTVIP_PEER_PROTOCOL_VIOLATION'));
  const stranger = net.connect(cp1.port, host);
  await new Promise((resolve) => stranger.once('connect', resolve));
  stranger.write(encodeFrame(message('cp9', 'cp1', 'vote', 3)));
  await closed(stranger);
  t.ok(logged(cp1, /claims sender "cp9", which is not a peer/, 'RAFTVIP_PEER_PROTOCOL_VIOLATION'));
});

// ---------------------------------------------------------------------------------------------
// Authentication failures

t.test('PSK: a wrong key is refused and logged, and nothing is delivered', async (t) => {
  const cp1 = await startNode(t, 'cp1', { kind: 'psk', psk });
  const cp2 = await startNode(t, 'cp2', { kind: 'psk', psk: otherPsk }, { peers: [addressOf(cp1)] });
  cp1.transport.updatePeers([addressOf(cp2)]);
  for (let i = 0; i < 5; i++) cp2.transport.send(message('cp2', 'cp1', 'vote', i));
  await waitFor(() => logged(cp1, /wrong pre-shared key/, 'RAFTVIP_PEER_AUTH_FAILED'), 'cp1 to log the wrong key');
  const line = cp1.logs.find((l) => /wrong pre-shared key/.test(l.msg));
  t.match(String(line?.fields.remote), /^127\.0\.0\.1:\d+$/, 'the log names the remote address');
  t.equal(line?.level, 'warn');
  await waitFor(() => (cp2.transport.status()[0]?.lastError ?? '').startsWith('RAFTVIP_PEER_AUTH_FAILED'), 'cp2 to record the failure');
  t.equal(cp2.transport.status()[0]?.connected, false);
  t.equal(cp1.received.length, 0, 'nothing delivered');
  t.ok(cp1.transport.counters().handshakesFailed >= 1);
  t.equal(line?.fields.peer, 'cp2', 'the log attributes the failure to cp2');
  t.match(cp1.transport.status()[0]?.lastError ?? '', /^RAFTVIP_PEER_AUTH_FAILED/, 'so does cp1\'s status');
});

t.test('PSK: an identity that is not a peer is refused', async (t) => {
  const cp1 = await startNode(t, 'cp1', { kind: 'psk', psk });
  const cp9 = await startNode(t, 'cp9', { kind: 'psk', psk }, { peers: [addressOf(cp1)] });
  cp9.transport.send(message('cp9', 'cp1', 'vote'));
  await waitFor(() => logged(cp1, /PSK identity "cp9" is not a peer/, 'RAFTVIP_PEER_AUTH_FAILED'), 'cp1 to log the unknown identity');
  await t.rejects(pskClient(cp1.port, 'x'.repeat(100), psk), 'a raw client with a long unknown identity fails its handshake');
  t.equal(cp1.received.length, 0, 'nothing delivered');
});

t.test('mTLS: certificates naming another node or from another CA are refused', async (t) => {
  const material = await pki(t);
  const [cp1, cp2] = await startCluster(t, ['cp1', 'cp2'], (id) => tlsAuth(material, id));
  if (cp1 === undefined || cp2 === undefined) return;
  await exchange(t, [cp1, cp2], 1);

  // A client whose CA-signed certificate names cp9, which is not a peer.
  const cp9 = material.certs.get('cp9');
  const named = tls.connect({ host, port: cp1.port, ca: material.ca, cert: cp9?.cert, key: cp9?.key, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
  named.on('error', () => undefined);
  named.on('secureConnect', () => named.write(encodeFrame(message('cp9', 'cp1', 'vote'))));
  await closed(named);
  t.ok(logged(cp1, /certificate names cp9, which is not a peer/, 'RAFTVIP_PEER_AUTH_FAILED'), 'server refuses a certificate naming a non-peer');

  // A client with a certificate for cp2 signed by another CA.
  const rogue = tls.connect({ host, port: cp1.port, ca: material.ca, cert: material.rogue.cert, key: material.rogue.key, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
  rogue.on('error', () => undefined);
  rogue.on('secureConnect', () => rogue.write(encodeFrame(message('cp2', 'cp1', 'vote'))));
  await closed(rogue);
  await waitFor(() => logged(cp1, /client certificate naming cp2 not trusted/, 'RAFTVIP_PEER_AUTH_FAILED'), 'cp1 to log the untrusted certificate');

  // A client that dials "cp3" but reaches cp1 (whose certificate names cp1) refuses the server.
  cp2.transport.updatePeers([addressOf(cp1), { id: nodeId('cp3'), host, port: cp1.port }]);
  cp2.transport.send(message('cp2', 'cp3', 'vote'));
  await waitFor(() => /RAFTVIP_PEER_AUTH_FAILED.*names cp1, not the dialled peer cp3/.test(cp2.transport.status().find((s) => s.id === 'cp3')?.lastError ?? ''), 'cp2 to refuse the server');
  t.equal(cp1.received.filter((m) => m.type === 'vote').length, 0, 'no vote delivered by any refused client');
});

// ---------------------------------------------------------------------------------------------
// Misbehaving authenticated peers

t.test('garbage, an oversized length or a truncated frame closes that connection only', async (t) => {
  const nodes = await startCluster(t, ['cp1', 'cp2', 'cp3'], () => ({ kind: 'psk', psk }));
  const [cp1] = nodes;
  if (cp1 === undefined) return;
  // cp4 is a peer of cp1 that the test impersonates with raw sockets (with the right key).
  cp1.transport.updatePeers([...nodes.slice(1).map(addressOf), { id: nodeId('cp4'), host, port: await freePort() }]);
  await exchange(t, nodes, 3);

  const garbage = await pskClient(cp1.port, 'cp4', psk);
  garbage.write(encodeFrame(message('cp4', 'cp1', 'vote', 1)));
  await waitFor(() => cp1.received.some((m) => m.from === 'cp4'), 'the valid frame before the garbage to arrive');
  // A plausible header (small length, version 1) around bytes that are not msgpack.
  garbage.write(Uint8Array.from([0, 0, 0, 9, 1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]));
  await closed(garbage);
  t.ok(logged(cp1, /bad frame/, 'RAFTVIP_FRAME_INVALID'), 'garbage logged');
  await exchange(t, nodes, 3);

  const oversized = await pskClient(cp1.port, 'cp4', psk);
  oversized.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
  await closed(oversized);
  t.ok(logged(cp1, /bad frame/, 'RAFTVIP_FRAME_TOO_LARGE'), 'oversized length logged');
  await exchange(t, nodes, 3);

  const truncated = await pskClient(cp1.port, 'cp4', psk);
  const frame = encodeFrame(message('cp4', 'cp1', 'vote', 2));
  truncated.end(frame.subarray(0, frame.length - 5));
  await closed(truncated);
  await waitFor(() => logged(cp1, /ended inside a frame/, 'RAFTVIP_FRAME_INVALID'), 'the truncated frame to be logged');
  await exchange(t, nodes, 3);

  t.equal(cp1.transport.counters().framesInvalid, 3, 'three bad frames counted');
  t.equal(cp1.received.filter((m) => m.from === 'cp4').length, 1, 'only the valid frame from cp4 was delivered');
  t.ok(cp1.logs.filter((l) => /bad frame|inside a frame/.test(l.msg)).every((l) => l.fields.peer === 'cp4'), 'each log line names cp4');
});

t.test('a message with a forged sender or another recipient is dropped with its connection', async (t) => {
  const nodes = await startCluster(t, ['cp1', 'cp2'], () => ({ kind: 'psk', psk }));
  const [cp1] = nodes;
  if (cp1 === undefined) return;
  cp1.transport.updatePeers([addressOf(nodes[1]!), { id: nodeId('cp4'), host, port: await freePort() }]);

  const forger = await pskClient(cp1.port, 'cp4', psk);
  forger.write(encodeFrame(message('cp2', 'cp1', 'vote', 99)));
  await closed(forger);
  t.ok(logged(cp1, /peer cp4 .* claiming to be from "cp2"/, 'RAFTVIP_PEER_PROTOCOL_VIOLATION'), 'forged sender logged');
  t.equal(cp1.received.filter((m) => m.sentAtTick === 99).length, 0, 'the forged message was not delivered');

  const misaddressed = await pskClient(cp1.port, 'cp4', psk);
  misaddressed.write(encodeFrame(message('cp4', 'cp2', 'vote', 98)));
  await closed(misaddressed);
  t.ok(logged(cp1, /for "cp2", not for this node/, 'RAFTVIP_PEER_PROTOCOL_VIOLATION'), 'wrong recipient logged');
  t.equal(cp1.transport.counters().protocolViolations, 2);
  await exchange(t, nodes, 3);
});

// ---------------------------------------------------------------------------------------------
// Recovery and limits

t.test('a restarted peer is reconnected to and gets what was queued meanwhile', async (t) => {
  const [cp1, cp2] = await startCluster(t, ['cp1', 'cp2'], () => ({ kind: 'psk', psk }));
  if (cp1 === undefined || cp2 === undefined) return;
  await exchange(t, [cp1, cp2], 3);
  await cp2.transport.stop();
  await cp2.transport.stop(); // idempotent
  await waitFor(() => cp1.transport.status()[0]?.connected === false, 'cp1 to notice');
  for (let i = 0; i < 5; i++) cp1.transport.send(message('cp1', 'cp2', 'append', 100 + i));
  await sleep(300); // a few failed redials

  // A new process on the same port.
  const cp2b = await startNode(t, 'cp2', { kind: 'psk', psk }, { peers: [addressOf(cp1)], port: cp2.port });
  await waitFor(() => cp2b.received.length >= 5, 'the queued messages to arrive');
  t.strictSame(cp2b.received.map((m) => m.sentAtTick), [100, 101, 102, 103, 104], 'queued during the outage, delivered in order');
  await exchange(t, [cp1, cp2b], 3);
  t.ok((cp1.transport.status()[0]?.reconnects ?? 0) >= 1, 'reconnects counted');
  t.ok(logged(cp1, /lost connection to peer cp2/), 'the loss was logged');
});

t.test('the same instance can stop and start again on its port', async (t) => {
  const port = await freePort();
  const cp1 = await startNode(t, 'cp1', { kind: 'psk', psk }, { port });
  const cp2 = await startNode(t, 'cp2', { kind: 'psk', psk }, { peers: [addressOf(cp1)] });
  cp1.transport.updatePeers([addressOf(cp2)]);
  await exchange(t, [cp1, cp2], 2);
  await Promise.all([cp1.transport.stop(), cp1.transport.stop()]);
  t.equal(cp1.transport.address(), null, 'not listening after stop');
  await cp1.transport.start();
  t.equal(cp1.transport.address()?.port, port, 'listening on the same port again');
  // Messages written just before cp2 notices the old connection is gone are lost, as on any
  // TCP connection (Raft retransmits); so wait for both directions to be re-established.
  await waitFor(() => cp2.transport.status()[0]?.reconnects === 1 && cp2.transport.status()[0]?.connected === true, 'cp2 to reconnect');
  await waitFor(() => cp1.transport.status()[0]?.connected === true, 'cp1 to reconnect');
  await exchange(t, [cp1, cp2], 2);
});

t.test('a full queue drops the oldest heartbeats, counts them, and delivers the rest', async (t) => {
  const port = await freePort();
  const cp1 = await startNode(t, 'cp1', { kind: 'psk', psk }, { peers: [{ id: nodeId('cp2'), host, port }] });
  const votes = 3;
  const heartbeats = 300;
  for (let i = 0; i < votes; i++) cp1.transport.send(message('cp1', 'cp2', 'vote', 1000 - i));
  for (let i = 0; i < heartbeats; i++) cp1.transport.send(message('cp1', 'cp2', 'heartbeat', i));
  const dropped = votes + heartbeats - sendQueueMessagesMax;
  t.equal(cp1.transport.status()[0]?.framesDropped, dropped, `${dropped} dropped`);
  t.ok(logged(cp1, /send queue to cp2 is full/), 'the overflow is logged once');
  t.equal(cp1.logs.filter((l) => /send queue to cp2 is full/.test(l.msg)).length, 1);

  const cp2 = await startNode(t, 'cp2', { kind: 'psk', psk }, { peers: [addressOf(cp1)], port });
  await waitFor(() => cp2.received.length >= sendQueueMessagesMax, 'the queue to drain');
  t.strictSame(cp2.received.filter((m) => m.type === 'vote').map((m) => m.sentAtTick), [1000, 999, 998], 'the votes survived');
  t.strictSame(
    cp2.received.filter((m) => m.type === 'heartbeat').map((m) => m.sentAtTick),
    Array.from({ length: sendQueueMessagesMax - votes }, (_, i) => dropped + i),
    'the newest heartbeats survived, in order',
  );
});

t.test('inbound connections beyond the limit are refused; silent ones time out', async (t) => {
  const cp1 = await startNode(t, 'cp1', { kind: 'psk', psk });
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i < inboundConnectionsMax + 2; i++) {
    const socket = net.connect(cp1.port, host);
    socket.on('error', () => undefined);
    sockets.push(socket);
  }
  await waitFor(() => cp1.transport.counters().connectionsRefused >= 2, 'the extra connections to be refused');
  t.equal(cp1.transport.counters().inboundConnections, inboundConnectionsMax, `${inboundConnectionsMax} open`);
  t.ok(logged(cp1, /refused an inbound connection/, 'RAFTVIP_PEER_CONNECTIONS_EXCEEDED'));
  const started = performance.now();
  await Promise.all(sockets.map(closed));
  const elapsedMs = performance.now() - started;
  t.ok(elapsedMs < handshakeTimeoutMs + 1000, `silent clients closed by the handshake timeout (${Math.round(elapsedMs)} ms)`);
  t.ok(cp1.transport.counters().handshakesFailed >= inboundConnectionsMax, 'timeouts counted as failed handshakes');
  await waitFor(() => cp1.transport.counters().inboundConnections === 0, 'every slot to be free again');
  t.pass('every slot is free again');
});
