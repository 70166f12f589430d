// Goal: show with real `raftvip run` processes that the peer port admits only cluster members
// and survives hostile input. A node holding the wrong pre-shared key, or a certificate from
// another CA (mutual TLS), is refused in both directions: it never learns of the leader, never
// moves the cluster's term, the others log RAFTVIP_PEER_AUTH_FAILED and report it as not
// connected; once given the right credential and restarted, it joins. Raw TCP aimed at the
// leader's peer port — seeded random bytes, ClientHello-shaped garbage, a 0xFFFFFFFF frame
// length (before and after a valid PSK handshake), more connections than inboundConnectionsMax
// left silent past the handshake timeout, and handshakes abandoned half-way — is closed by the
// daemon while it keeps running, stays healthy, keeps its leadership and lease, and can still
// hand leadership over at the end. Bounds are generous: CI runs this beside CPU-heavy
// simulator tests on two cores.

import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { SeededRandom } from '../src/raft/random.js';
import { handshakeTimeoutMs, inboundConnectionsMax } from '../src/transport/transport-limits.js';
import { pskCipherSuites, tlsVersion } from '../src/transport/transport-auth.js';
import { ProcessCluster, sleep, type NodeStatus } from './support/process-cluster.js';

/** A cluster condition not met in this time is a failure, not slowness. */
const boundMs = 15_000;
/** How long a refused node is watched for disruption: many election timeouts (200–400 ms). */
const refusedWatchMs = 2000;
/** The server closes a silent or stuck handshake after handshakeTimeoutMs; this adds room for
 * a busy machine. */
const serverCloseBoundMs = handshakeTimeoutMs + 4000;
/** Seed of every random byte sent to the peer port (printed in the test names). */
const fuzzSeed = 0x5ec_2026;


async function waitUntil(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = boundMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function mustStatus(cluster: ProcessCluster, id: string): Promise<NodeStatus> {
  const status = await cluster.status(id);
  if (status === null) throw new Error(`${id} does not answer on its admin API`);
  return status;
}

function peerEndpoint(cluster: ProcessCluster, id: string): { host: string; port: number } {
  const address = cluster.node(id).peerAddress;
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

// ---------------------------------------------------------------------------------------------
// Refused members

/**
 * n1 and n2 elect a leader; n3 starts with a bad credential (set up by `spoil`) and must stay
 * outside; then `repair` fixes it and a restarted n3 joins the same leader.
 */
async function refusedMemberScenario(
  t: Test,
  cluster: ProcessCluster,
  options: { spoil: () => void; repair: () => void; serverRefusal: RegExp; clientRefusal: RegExp },
): Promise<void> {
  options.spoil();
  cluster.startAll(['n1', 'n2']);
  const leader = await cluster.waitForLeader({ timeoutMs: boundMs });
  const follower = leader === 'n1' ? 'n2' : 'n1';
  const before = await mustStatus(cluster, leader);
  t.pass(`n1 and n2 elected ${leader} in term ${before.term}`);

  cluster.start('n3');
  await waitUntil('n3 to answer on its admin API', async () => (await cluster.status('n3')) !== null);
  await waitUntil('n1 and n2 to log the refusal of n3', () =>
    ['n1', 'n2'].every((id) => options.serverRefusal.test(cluster.node(id).output)),
  );
  t.pass('n1 and n2 log RAFTVIP_PEER_AUTH_FAILED naming n3');
  await waitUntil("the leader's status to report n3's auth failure", async () => {
    const peer = (await mustStatus(cluster, leader)).peers.find((p) => p.id === 'n3');
    return /RAFTVIP_PEER_AUTH_FAILED/.test(peer?.lastError ?? '');
  });
  await sleep(refusedWatchMs);

  const outsider = await mustStatus(cluster, 'n3');
  t.equal(outsider.leader, null, `n3 knows no leader (role ${outsider.role}, term ${outsider.term})`);
  t.not(outsider.role, 'leader', 'n3 is not a leader');
  t.equal(outsider.lease.held, false, 'n3 holds no lease');
  t.ok(outsider.peers.every((p) => !p.connected), 'n3 is connected to nobody');
  t.match(cluster.node('n3').output, options.clientRefusal, 'n3 logs that its peers refuse it');

  const leaderNow = await mustStatus(cluster, leader);
  t.equal(leaderNow.role, 'leader', `${leader} still leads`);
  t.equal(leaderNow.term, before.term, `the leader's term is unchanged (${before.term})`);
  t.equal(leaderNow.lease.held, true, 'and holds its lease');
  const n3 = leaderNow.peers.find((p) => p.id === 'n3');
  t.equal(n3?.connected, false, 'the leader shows n3 not connected');
  t.match(n3?.lastError ?? '', /RAFTVIP_PEER_AUTH_FAILED/, `with the auth failure as its last error (${n3?.lastError ?? 'none'})`);
  t.equal(leaderNow.peers.find((p) => p.id === follower)?.connected, true, `and ${follower} connected`);
  t.equal((await mustStatus(cluster, follower)).leader, leader, `${follower} still follows ${leader}`);
  t.equal(await cluster.waitForLeader({ timeoutMs: boundMs, exclude: ['n3'] }), leader, 'n1 and n2 agree on the leader');

  await cluster.signal('n3', 'SIGKILL');
  options.repair();
  cluster.start('n3');
  await waitUntil('n3 to follow the leader with its whole log', async () => {
    const joined = await cluster.status('n3');
    const lead = await cluster.status(leader);
    return joined?.leader === leader && joined.role === 'follower' && lead !== null && joined.commitIndex === lead.commitIndex;
  });
  t.pass(`with the right credential n3 joins and follows ${leader}`);
  await waitUntil('the leader to be connected to both peers', async () => (await mustStatus(cluster, leader)).peers.every((p) => p.connected));
  t.equal(await cluster.waitForLeader({ timeoutMs: boundMs }), leader, 'all three agree on the same leader');
}

t.test('a node with the wrong pre-shared key never joins until given the right one', async (t) => {
  const cluster = new ProcessCluster({ size: 3 });
  t.teardown(() => cluster.destroy());
  await refusedMemberScenario(t, cluster, {
    spoil: () => cluster.setPsk('n3', randomBytes(32).toString('hex')),
    repair: () => cluster.setPsk('n3', null),
    serverRefusal: /RAFTVIP_PEER_AUTH_FAILED.*claiming to be n3: wrong pre-shared key|claiming to be n3: wrong pre-shared key.*RAFTVIP_PEER_AUTH_FAILED/,
    clientRefusal: /RAFTVIP_PEER_AUTH_FAILED[^\n]*does not accept our pre-shared key|does not accept our pre-shared key[^\n]*RAFTVIP_PEER_AUTH_FAILED/,
  });
});

t.test('mutual TLS: a node whose certificate comes from another CA never joins until reissued', async (t) => {
  const cluster = new ProcessCluster({ size: 3, auth: 'tls' });
  t.teardown(() => cluster.destroy());
  await refusedMemberScenario(t, cluster, {
    spoil: () => cluster.issueCertificate('n3', { authority: 'rogue' }),
    repair: () => cluster.issueCertificate('n3', { authority: 'cluster' }),
    // TLS 1.3 clients verify the server first, so each side's dial fails on the other's server
    // certificate and the client hangs up before sending its own: n1 and n2 log that they
    // cannot verify n3, and n3 that it cannot verify them.
    serverRefusal: /"code":"RAFTVIP_PEER_AUTH_FAILED"[^\n]*TLS handshake with n3 failed/,
    clientRefusal: /"code":"RAFTVIP_PEER_AUTH_FAILED"[^\n]*TLS handshake with n[12] failed/,
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile bytes on the peer port

interface Probe {
  /** The server closed the connection before our deadline. */
  closedByServer: boolean;
  /** Milliseconds from connect to close. */
  elapsedMs: number;
  /** Bytes the server sent (TLS alerts, a ServerHello). */
  received: number;
}

/**
 * Connects to `host:port`, writes `payload` (if any), half-closes when `end` is set, and waits
 * for the server to close the connection, or destroys it after `deadlineMs`. `onData` may cut
 * the connection short (return 'end', 'destroy' or 'reset').
 */
function probe(
  target: { host: string; port: number },
  options: { payload?: Uint8Array; end?: boolean; deadlineMs: number; onData?: () => 'end' | 'destroy' | 'reset' | undefined },
): Promise<Probe> {
  return new Promise((resolve) => {
    const startedMs = Date.now();
    let received = 0;
    let closedByUs = false;
    const socket = net.connect(target);
    const timer = setTimeout(() => {
      closedByUs = true;
      socket.destroy();
    }, options.deadlineMs);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      const first = received === 0;
      received += chunk.length;
      if (!first || options.onData === undefined) return;
      const action = options.onData();
      if (action === 'end') socket.end();
      if (action === 'destroy' || action === 'reset') {
        closedByUs = true;
        if (action === 'reset') socket.resetAndDestroy();
        else socket.destroy();
      }
    });
    socket.once('connect', () => {
      if (options.payload !== undefined) socket.write(options.payload);
      if (options.end === true) socket.end();
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ closedByServer: !closedByUs, elapsedMs: Date.now() - startedMs, received });
    });
  });
}

function randomBytesSeeded(random: SeededRandom, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = random.nextInt(256);
  return bytes;
}

const u16 = (n: number): Buffer => Buffer.from([(n >>> 8) & 0xff, n & 0xff]);
const u24 = (n: number): Buffer => Buffer.from([(n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);

/** A TLS record header and ClientHello header around random content: legacy version 3.3,
 * random, session id, cipher suites, compression and extensions all filled with noise, with
 * lengths that are consistent (`recordLength` undefined) or lie. */
function clientHelloShapedGarbage(random: SeededRandom, options: { bodyBytes: number; recordLength?: number }): Buffer {
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    randomBytesSeeded(random, 32),
    Buffer.from([32]),
    randomBytesSeeded(random, 32),
    u16(8),
    randomBytesSeeded(random, 8),
    Buffer.from([1, 0]),
    u16(options.bodyBytes),
    randomBytesSeeded(random, options.bodyBytes),
  ]);
  const handshake = Buffer.concat([Buffer.from([0x01]), u24(body.length), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(options.recordLength ?? handshake.length), handshake]);
}

/** The first flight of a real TLS 1.3 PSK client (its ClientHello, with a valid binder when
 * `psk` is the cluster key), captured from a stream that goes nowhere. */
function capturedClientHello(identity: string, psk: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const capture = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        resolve(Buffer.from(chunk));
        callback();
        setImmediate(() => secure.destroy());
      },
    });
    const secure = tls.connect({
      socket: capture,
      minVersion: tlsVersion,
      maxVersion: tlsVersion,
      ciphers: pskCipherSuites,
      pskCallback: () => ({ psk, identity }),
      checkServerIdentity: () => undefined,
    });
    secure.on('error', () => undefined);
    setTimeout(() => reject(new Error('no ClientHello captured')), 5000).unref();
  });
}

t.test(`hostile input on the leader's peer port (seed ${fuzzSeed})`, async (t) => {
  const cluster = new ProcessCluster({ size: 3 });
  t.teardown(() => cluster.destroy());
  cluster.startAll();
  const leader = await cluster.waitForLeader({ timeoutMs: boundMs });
  const followers = cluster.nodes.map((n) => n.id).filter((id) => id !== leader);
  const target = peerEndpoint(cluster, leader);
  const psk = Buffer.from(cluster.pskHex, 'hex');
  const random = new SeededRandom(fuzzSeed);
  const { term } = await mustStatus(cluster, leader);
  t.comment(`leader ${leader} in term ${term}, peer port ${target.host}:${target.port}`);

  const fullyConnected = async (): Promise<boolean> => {
    const all = await cluster.statuses();
    return all.size === 3 && [...all.values()].every((s) => s.peers.every((p) => p.connected));
  };
  const expectIntact = async (label: string): Promise<void> => {
    for (const node of cluster.nodes) t.ok(node.process !== null && node.process.exitCode === null, `${label}: ${node.id} still runs`);
    const health = await cluster.admin(leader, '/healthz');
    t.equal(health.status, 200, `${label}: the leader's /healthz is 200`);
    t.equal(await cluster.waitForLeader({ timeoutMs: boundMs }), leader, `${label}: ${leader} still leads, agreed by all`);
    const status = await mustStatus(cluster, leader);
    t.ok(status.lease.held && (status.lease.expiresInMs ?? 0) > 0, `${label}: with a valid lease (${status.lease.expiresInMs} ms left)`);
    await waitUntil(`${label}: every node connected to every other`, fullyConnected);
  };
  const expectAllClosedByServer = (label: string, probes: readonly Probe[]): void => {
    const open = probes.filter((p) => !p.closedByServer).length;
    t.equal(open, 0, `${label}: the daemon closed all ${probes.length} connections (slowest after ${Math.max(...probes.map((p) => p.elapsedMs))} ms)`);
  };
  await waitUntil('every node connected to every other', fullyConnected);

  // (i) Random bytes, 1 to 4096 of them per connection.
  const noise = await Promise.all(
    Array.from({ length: 16 }, () => probe(target, { payload: randomBytesSeeded(random, 1 + random.nextInt(4096)), deadlineMs: serverCloseBoundMs })),
  );
  expectAllClosedByServer('random bytes', noise);
  await expectIntact('after random bytes');

  // (ii) ClientHello-shaped garbage: consistent lengths, a record length promising more than is
  // sent, an oversized record length, and a real ClientHello with random bytes flipped.
  const hello = await capturedClientHello(followers[0]!, psk);
  const flipped = Array.from({ length: 6 }, () => {
    const copy = Buffer.from(hello);
    for (let i = 0; i < 4; i++) {
      const at = 5 + random.nextInt(copy.length - 5);
      copy[at] = copy[at]! ^ (1 + random.nextInt(255));
    }
    return copy;
  });
  const shaped = [
    ...Array.from({ length: 4 }, () => clientHelloShapedGarbage(random, { bodyBytes: random.nextInt(600) })),
    clientHelloShapedGarbage(random, { bodyBytes: 100, recordLength: 16_000 }),
    clientHelloShapedGarbage(random, { bodyBytes: 100, recordLength: 0xffff }),
    ...flipped,
  ];
  const helloProbes = await Promise.all(shaped.map((payload) => probe(target, { payload, deadlineMs: serverCloseBoundMs })));
  expectAllClosedByServer('ClientHello-shaped garbage', helloProbes);
  await expectIntact('after ClientHello-shaped garbage');

  // (iii) A frame header announcing 0xFFFFFFFF bytes: as plain TCP (not TLS, refused by the
  // handshake) and inside a TLS session authenticated with the cluster key as a follower (it
  // reaches the frame decoder, which refuses the length before buffering anything).
  const hugeFrame = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]);
  const plain = await probe(target, { payload: hugeFrame, deadlineMs: serverCloseBoundMs });
  expectAllClosedByServer('plain 0xFFFFFFFF frame', [plain]);
  const borrowed = followers[0]!;
  const inside = await new Promise<{ handshook: boolean; closedByServer: boolean }>((resolve) => {
    let closedByUs = false;
    let handshook = false;
    const secure = tls.connect({
      ...target,
      minVersion: tlsVersion,
      maxVersion: tlsVersion,
      ciphers: pskCipherSuites,
      pskCallback: () => ({ psk, identity: borrowed }),
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      closedByUs = true;
      secure.destroy();
    }, serverCloseBoundMs);
    secure.on('error', () => undefined);
    secure.once('secureConnect', () => {
      handshook = true;
      secure.write(hugeFrame);
    });
    secure.once('close', () => {
      clearTimeout(timer);
      resolve({ handshook, closedByServer: !closedByUs });
    });
  });
  t.ok(inside.handshook, `a TLS-PSK session as ${borrowed} is established`);
  t.ok(inside.closedByServer, 'an authenticated 0xFFFFFFFF frame: the daemon closed the connection');
  await waitUntil('the leader to log the oversized frame', () => /"code":"RAFTVIP_FRAME_TOO_LARGE"/.test(cluster.node(leader).output));
  t.pass('the leader logs RAFTVIP_FRAME_TOO_LARGE');
  // That session displaced the real one from the same peer; the follower redials on its own.
  await expectIntact('after 0xFFFFFFFF frames');

  // (iv) More silent connections than inboundConnectionsMax, held past the handshake timeout.
  // The surplus is refused on accept; the rest are closed when the handshake times out. The
  // peers' established connections are unaffected throughout.
  const floodSize = inboundConnectionsMax + 16;
  const floodStartedMs = Date.now();
  const flooding = Array.from({ length: floodSize }, () => probe(target, { deadlineMs: serverCloseBoundMs + 2000 }));
  await sleep(handshakeTimeoutMs / 2);
  t.equal((await cluster.admin(leader, '/healthz')).status, 200, 'during the flood: /healthz is 200');
  t.equal(await cluster.waitForLeader({ timeoutMs: boundMs }), leader, `during the flood: ${leader} still leads`);
  const flood = await Promise.all(flooding);
  expectAllClosedByServer(`${floodSize} silent connections`, flood);
  const refusedEarly = flood.filter((p) => p.elapsedMs < handshakeTimeoutMs / 2).length;
  t.ok(refusedEarly >= floodSize - inboundConnectionsMax, `at least ${floodSize - inboundConnectionsMax} refused at once (${refusedEarly})`);
  t.ok(
    flood.filter((p) => p.elapsedMs >= handshakeTimeoutMs - 250).length > 0,
    `the others closed at the handshake timeout (the flood lasted ${Date.now() - floodStartedMs} ms)`,
  );
  t.match(cluster.node(leader).output, /"code":"RAFTVIP_PEER_CONNECTIONS_EXCEEDED"/, 'the leader logs RAFTVIP_PEER_CONNECTIONS_EXCEEDED');
  await expectIntact('after the connection flood');

  // (v) Handshakes abandoned half-way: half a real ClientHello then FIN (our side still
  // reading); a whole one (valid binder) then FIN as soon as the ServerHello arrives; the same
  // then a reset.
  const halfHello = await probe(target, { payload: hello.subarray(0, Math.floor(hello.length / 2)), end: true, deadlineMs: serverCloseBoundMs });
  expectAllClosedByServer('half a ClientHello, then FIN', [halfHello]);
  const finAfterServerHello = await probe(target, { payload: hello, deadlineMs: serverCloseBoundMs, onData: () => 'end' });
  t.ok(finAfterServerHello.received > 0, `the daemon answered the ClientHello (${finAfterServerHello.received} bytes)`);
  expectAllClosedByServer('FIN after the ServerHello', [finAfterServerHello]);
  const resetAfterServerHello = await probe(target, { payload: hello, deadlineMs: serverCloseBoundMs, onData: () => 'reset' });
  t.ok(resetAfterServerHello.received > 0, 'reset after the ServerHello');
  await expectIntact('after abandoned handshakes');

  // At the end, the leader can still hand over.
  const transfer = await cluster.admin(leader, '/leadership/transfer', { method: 'POST' });
  t.equal(transfer.status, 200, `POST /leadership/transfer: ${transfer.text.trim()}`);
  const transferee = (JSON.parse(transfer.text) as { transferee?: string }).transferee;
  const next = await cluster.waitForLeader({ timeoutMs: boundMs, minTerm: term + 1 });
  t.not(next, leader, `leadership moved to ${next}`);
  t.equal(next, transferee, 'to the node the transfer named');
});
