// The peer transport: Raft messages between nodes over TCP, authenticated and encrypted by
// default (TLS 1.3 with a pre-shared key or with a cluster CA; see transport-auth.ts).
//
// Connection model: every node keeps ONE outbound connection per peer, used only to send
// (peer-link.ts), and accepts inbound connections, used only to receive. A→B and B→A are two
// TCP connections, so there is no dial race to break and each direction fails and recovers on
// its own. An inbound connection is bound to one authenticated peer id (the PSK identity, the
// id named by the client certificate, or in insecure mode the `from` of its first frame), and
// every message on it must come from that id and be addressed to this node; anything else
// closes that connection only. Bad frames likewise close only the connection that carried
// them. Nothing here blocks the Raft driver: send() queues into a bounded per-peer queue.
//
// Lifecycle: start() binds the listening socket and begins dialling; stop() closes every
// connection and the listener (idempotent); the transport can be started again. Dependencies
// (log sink, randomness for back-off jitter, the message callback) are injected.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import type { Message, NodeId } from '../raft/types.js';
import { FrameDecoder, nodeIdLengthMax } from './frame-codec.js';
import { PeerLink, type PeerAddress, type PeerStatus, type TransportLog } from './peer-link.js';
import { certificateNodeIds, serverTlsOptions, validateAuth, validatePeerIdForAuth, type TransportAuth } from './transport-auth.js';
import {
  FrameError,
  TransportListenError,
  TransportOptionError,
  describeError,
  frameInvalid,
  peerAuthFailed,
  peerConnectionsExceeded,
  peerProtocolViolation,
  summarizeSocketError,
  type PeerConnectionError,
} from './transport-errors.js';
import {
  handshakeTimeoutMs,
  inboundConnectionsMax,
  keepAliveInitialDelayMs,
  listenTimeoutMs,
  peerLinksMax,
  refusalKeysMax,
  refusalWarningIntervalMs,
  stopTimeoutMs,
} from './transport-limits.js';

export { frameSizeBytesMax } from './frame-codec.js';
export * from './transport-limits.js';
export { reconnectDelayMs } from './peer-link.js';
export type { PeerAddress, PeerStatus, TransportLog, TransportLogLevel } from './peer-link.js';
export type { TransportAuth } from './transport-auth.js';

export interface PeerTransportOptions {
  /** This node's id: the PSK identity it presents, or the name its certificate must carry. */
  readonly self: NodeId;
  /** Where to accept peer connections. Port 0 picks a free port (tests); see address(). */
  readonly listen: { readonly host: string; readonly port: number };
  /** The other nodes. An entry for `self` is ignored, so the whole peer file can be passed. */
  readonly peers: readonly PeerAddress[];
  readonly auth: TransportAuth;
  /** Called synchronously for every accepted message, in arrival order per connection. Must
   * not throw (a throw is a bug and crashes the process, like an assertion). */
  readonly onMessage: (message: Message) => void;
  readonly log: TransportLog;
  /** [0, 1) for back-off jitter; defaults to Math.random (jitter needs no reproducibility). */
  readonly random?: () => number;
}

/** Transport-wide counters for metrics. */
export interface TransportCounters {
  readonly framesIn: number;
  readonly framesOut: number;
  readonly framesDropped: number;
  /** Inbound frames rejected by the decoder (garbage, oversized, truncated, invalid message). */
  readonly framesInvalid: number;
  /** Inbound handshakes refused: wrong key, unknown identity, bad certificate, timeout. */
  readonly handshakesFailed: number;
  /** Inbound connections closed for a forged sender, a wrong recipient or data on a send-only
   * connection. */
  readonly protocolViolations: number;
  /** Inbound connections refused because inboundConnectionsMax were open. */
  readonly connectionsRefused: number;
  /** Inbound connections open now (handshaking or established). */
  readonly inboundConnections: number;
  /** Peers whose outbound connection is up now. */
  readonly peersConnected: number;
}

type TransportState = 'stopped' | 'starting' | 'started' | 'stopping';

interface InboundConnection {
  readonly socket: net.Socket;
  readonly remote: string;
  readonly decoder: FrameDecoder;
  /** The authenticated peer; null only in insecure mode before the first frame. */
  identity: NodeId | null;
}

/** `address:port` of the other end; 'unknown' once the socket is closed (Node forgets it). */
function remoteOf(socket: net.Socket): string {
  const address = socket.remoteAddress;
  if (address === undefined) return 'unknown';
  return address.includes(':') ? `[${address}]:${socket.remotePort ?? 0}` : `${address}:${socket.remotePort ?? 0}`;
}

/** Printable form of an untrusted identity string for logs. */
function quoteUntrusted(value: string): string {
  return JSON.stringify(value.length > nodeIdLengthMax ? `${value.slice(0, nodeIdLengthMax)}…` : value);
}

function validatePort(value: unknown, option: string, allowZero: boolean): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    throw new TransportOptionError({ option, detail: `${String(value)} is not a TCP port (${allowZero ? 0 : 1}..65535)` });
  }
  return value;
}

function validateHost(value: unknown, option: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 253) {
    throw new TransportOptionError({ option, detail: 'is not a host name or address' });
  }
  return value;
}

function validateNodeId(value: unknown, option: string, auth: TransportAuth): NodeId {
  if (typeof value !== 'string' || value.length === 0 || value.length > nodeIdLengthMax) {
    throw new TransportOptionError({ option, detail: `is not a node id (1..${nodeIdLengthMax} characters)` });
  }
  validatePeerIdForAuth(auth, value, option);
  return value as NodeId;
}

export class PeerTransport {
  private readonly self: NodeId;
  private readonly listenAt: { readonly host: string; readonly port: number };
  private readonly auth: TransportAuth;
  private readonly onMessage: (message: Message) => void;
  private readonly log: TransportLog;
  private readonly random: () => number;

  private readonly links = new Map<string, PeerLink>();
  private state: TransportState = 'stopped';
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private server: net.Server | null = null;
  /** Every accepted TCP socket, handshaking or not, so stop() can close them all. */
  private readonly rawInbound = new Set<net.Socket>();
  private readonly remoteOfRaw = new WeakMap<net.Socket, string>();
  /** Established inbound connections. */
  private readonly inbound = new Set<InboundConnection>();
  /** PSK identity each handshaking TLS socket presented (set by the PSK callback). */
  private readonly pskIdentities = new WeakMap<tls.TLSSocket, string>();

  /** Counts of links removed by updatePeers, so that the totals never go backwards. */
  private readonly retired = { framesIn: 0, framesOut: 0, framesDropped: 0 };
  /** Messages to ids that are not peers. */
  private droppedWithoutPeer = 0;
  /** When each kind of inbound refusal was last logged as a warning. */
  private readonly refusalsWarnedAtMs = new Map<string, number>();
  private framesInvalid = 0;
  private handshakesFailed = 0;
  private protocolViolations = 0;
  private connectionsRefused = 0;

  constructor(options: PeerTransportOptions) {
    if (typeof options.onMessage !== 'function') throw new TransportOptionError({ option: 'onMessage', detail: 'is not a function' });
    if (typeof options.log !== 'function') throw new TransportOptionError({ option: 'log', detail: 'is not a function' });
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new TransportOptionError({ option: 'random', detail: 'is not a function' });
    }
    if (typeof options.auth !== 'object' || options.auth === null) throw new TransportOptionError({ option: 'auth', detail: 'is missing' });
    this.auth = options.auth;
    this.self = validateNodeId(options.self, 'self', this.auth);
    validateAuth(this.auth, this.self);
    this.listenAt = {
      host: validateHost(options.listen?.host, 'listen.host'),
      port: validatePort(options.listen?.port, 'listen.port', true),
    };
    this.onMessage = options.onMessage;
    this.log = options.log;
    this.random = options.random ?? Math.random;
    for (const peer of this.validatePeers(options.peers)) this.links.set(peer.id, this.newLink(peer));
  }

  /** Binds the listening socket and starts dialling every peer. Resolves once listening;
   * rejects with TransportListenError (code RAFTVIP_TRANSPORT_LISTEN_FAILED). */
  async start(): Promise<void> {
    if (this.state === 'started') return;
    if (this.state === 'starting' && this.starting !== null) return this.starting;
    if (this.state === 'stopping' && this.stopping !== null) {
      await this.stopping;
      return this.start();
    }
    this.state = 'starting';
    this.starting = this.listen().then(
      (server) => {
        this.server = server;
        this.state = 'started';
        this.starting = null;
        const bound = this.address();
        this.log('info', `peer transport listening on ${bound?.host ?? this.listenAt.host}:${bound?.port ?? this.listenAt.port}`, {
          auth: this.auth.kind,
          peers: [...this.links.keys()],
        });
        if (this.auth.kind === 'insecure') {
          this.log('warn', 'peer transport is INSECURE: no authentication, no encryption; any host that reaches this port can speak Raft to this node', {});
        }
        for (const link of this.links.values()) link.start();
      },
      (error: unknown) => {
        this.state = 'stopped';
        this.starting = null;
        throw error;
      },
    );
    return this.starting;
  }

  /** Closes every connection and the listener. Idempotent; safe to call during start(). */
  async stop(): Promise<void> {
    if (this.state === 'starting' && this.starting !== null) await this.starting.catch(() => undefined);
    if (this.state === 'stopped') return;
    if (this.state === 'stopping' && this.stopping !== null) return this.stopping;
    this.state = 'stopping';
    this.stopping = (async () => {
      for (const link of this.links.values()) link.stop();
      const server = this.server;
      this.server = null;
      for (const raw of this.rawInbound) raw.destroy();
      for (const connection of this.inbound) connection.socket.destroy();
      this.rawInbound.clear();
      this.inbound.clear();
      if (server !== null) await this.closeServer(server);
      this.state = 'stopped';
      this.stopping = null;
      this.log('info', 'peer transport stopped', {});
    })();
    return this.stopping;
  }

  /** Queues `message` for `message.to`. Never blocks and never throws for operating
   * conditions: a message to an unknown peer, from another sender, or sent while stopped is
   * dropped and counted. */
  send(message: Message): void {
    const link = this.links.get(message.to);
    if (link === undefined || this.state !== 'started' || message.from !== this.self) {
      if (link === undefined) this.droppedWithoutPeer++;
      else link.framesDropped++;
      const why = link === undefined ? `${message.to} is not a peer` : this.state !== 'started' ? `the transport is ${this.state}` : `its from (${message.from}) is not this node`;
      this.log(message.from !== this.self ? 'error' : 'debug', `dropped a ${message.type} message to ${message.to}: ${why}`, { peer: message.to });
      return;
    }
    link.enqueue(message);
  }

  /** One entry per peer, in peer-list order. */
  status(): PeerStatus[] {
    return [...this.links.values()].map((link) => link.status());
  }

  counters(): TransportCounters {
    let { framesIn, framesOut, framesDropped } = this.retired;
    let peersConnected = 0;
    for (const link of this.links.values()) {
      framesIn += link.framesIn;
      framesOut += link.framesOut;
      framesDropped += link.framesDropped;
      if (link.connected) peersConnected++;
    }
    return {
      framesIn,
      framesOut,
      framesDropped: framesDropped + this.droppedWithoutPeer,
      framesInvalid: this.framesInvalid,
      handshakesFailed: this.handshakesFailed,
      protocolViolations: this.protocolViolations,
      connectionsRefused: this.connectionsRefused,
      inboundConnections: this.rawInbound.size,
      peersConnected,
    };
  }

  /** The bound listening address (the real port when listen.port was 0), or null if not listening. */
  address(): { host: string; port: number } | null {
    const bound = this.server?.address();
    if (bound === null || bound === undefined || typeof bound === 'string') return null;
    return { host: bound.address, port: bound.port };
  }

  /** Replaces the peer list (membership change, address change). Removed peers lose their
   * connections in both directions; new peers are dialled; moved peers are redialled. */
  updatePeers(peers: readonly PeerAddress[]): void {
    const next = this.validatePeers(peers);
    const nextIds = new Set(next.map((peer) => peer.id as string));
    for (const [id, link] of this.links) {
      if (nextIds.has(id)) continue;
      link.stop();
      this.retired.framesIn += link.framesIn;
      this.retired.framesOut += link.framesOut;
      this.retired.framesDropped += link.framesDropped;
      this.links.delete(id);
      for (const connection of this.inbound) {
        if (connection.identity === id) connection.socket.destroy();
      }
      this.log('info', `peer ${id} removed`, { peer: id });
    }
    for (const peer of next) {
      const link = this.links.get(peer.id);
      if (link !== undefined) {
        link.setAddress(peer);
        continue;
      }
      const added = this.newLink(peer);
      this.links.set(peer.id, added);
      this.log('info', `peer ${peer.id} added at ${peer.host}:${peer.port}`, { peer: peer.id });
      if (this.state === 'started') added.start();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Options

  private validatePeers(peers: readonly PeerAddress[]): PeerAddress[] {
    if (!Array.isArray(peers)) throw new TransportOptionError({ option: 'peers', detail: 'is not an array' });
    const result: PeerAddress[] = [];
    const seen = new Set<string>();
    peers.forEach((peer: PeerAddress, i: number) => {
      const id = validateNodeId(peer?.id, `peers[${i}].id`, this.auth);
      if (id === this.self) return;
      if (seen.has(id)) throw new TransportOptionError({ option: `peers[${i}].id`, detail: `"${id}" appears twice` });
      seen.add(id);
      result.push({ id, host: validateHost(peer.host, `peers[${i}].host`), port: validatePort(peer.port, `peers[${i}].port`, false) });
    });
    if (result.length > peerLinksMax) {
      throw new TransportOptionError({ option: 'peers', detail: `has ${result.length} peers besides this node; at most ${peerLinksMax} are supported` });
    }
    return result;
  }

  private newLink(peer: PeerAddress): PeerLink {
    return new PeerLink({ self: this.self, peer, auth: this.auth, log: this.log, random: this.random });
  }

  // -------------------------------------------------------------------------------------------
  // Listening

  private listen(): Promise<net.Server> {
    const server = this.createServer();
    const { host, port } = this.listenAt;
    return new Promise<net.Server>((resolve, reject) => {
      const timer = setTimeout(() => {
        server.off('error', onError);
        server.close();
        reject(new TransportListenError({ host, port, detail: `not listening after ${listenTimeoutMs} ms` }));
      }, listenTimeoutMs);
      const onError = (error: Error): void => {
        clearTimeout(timer);
        server.close();
        reject(new TransportListenError({ host, port, detail: error.message, cause: error }));
      };
      server.once('error', onError);
      server.listen({ host, port }, () => {
        clearTimeout(timer);
        server.off('error', onError);
        server.on('error', (error) => this.log('error', `peer listener failed: ${error.message}`, {}));
        resolve(server);
      });
    });
  }

  private createServer(): net.Server {
    const socketOptions = { noDelay: true, keepAlive: true, keepAliveInitialDelay: keepAliveInitialDelayMs };
    const auth = this.auth;
    let server: net.Server;
    if (auth.kind === 'insecure') {
      server = net.createServer(socketOptions, (socket) => this.acceptInsecure(socket));
    } else {
      const tlsServer = tls.createServer(
        {
          ...serverTlsOptions(auth, (socket, identity) => this.pskKey(socket, identity)),
          ...socketOptions,
          handshakeTimeout: handshakeTimeoutMs,
        },
        (socket) => this.acceptSecure(socket),
      );
      tlsServer.on('tlsClientError', (error, socket) => this.onHandshakeFailed(error, socket));
      server = tlsServer;
    }
    server.maxConnections = inboundConnectionsMax;
    server.on('connection', (raw: net.Socket) => {
      if (this.state !== 'started') {
        raw.destroy();
        return;
      }
      this.rawInbound.add(raw);
      // Node forgets the remote address once a socket closes; a client that hangs up during
      // the handshake would otherwise be logged (and rate-limited) as "unknown".
      this.remoteOfRaw.set(raw, remoteOf(raw));
      raw.on('close', () => this.rawInbound.delete(raw));
      // Errors surface on the TLS socket too; this listener only keeps an 'error' on the raw
      // socket from becoming an uncaught exception.
      raw.on('error', () => undefined);
    });
    server.on('drop', (data?: net.DropArgument) => {
      this.connectionsRefused++;
      const error = peerConnectionsExceeded(`refused an inbound connection: ${inboundConnectionsMax} are already open`);
      this.log('warn', error.message, { code: error.code, remote: data === undefined ? 'unknown' : `${data.remoteAddress ?? '?'}:${data.remotePort ?? 0}` });
    });
    return server;
  }

  private closeServer(server: net.Server): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log('warn', `peer listener did not close within ${stopTimeoutMs} ms`, {});
        resolve();
      }, stopTimeoutMs);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Inbound: authentication

  /** TLS-PSK server callback: the key for a known peer identity, null (handshake fails) else. */
  private pskKey(socket: tls.TLSSocket, identity: string): Buffer | null {
    this.pskIdentities.set(socket, identity);
    if (this.auth.kind !== 'psk' || identity === this.self || !this.links.has(identity)) return null;
    return this.auth.psk;
  }

  private onHandshakeFailed(error: Error & { code?: unknown }, socket: tls.TLSSocket): void {
    this.handshakesFailed++;
    // A server-side TLSSocket wraps the raw socket that 'connection' saw (Node keeps it as
    // `_parent`, not a documented property: fall back to the socket itself).
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    const remote = (raw && this.remoteOfRaw.get(raw)) ?? remoteOf(socket);
    socket.destroy();
    const code = typeof error.code === 'string' ? error.code : 'unknown';
    const identity = this.pskIdentities.get(socket);
    let failure: PeerConnectionError;
    let peer: string | undefined;
    if (identity !== undefined && !this.links.has(identity)) {
      failure = peerAuthFailed(`refused a connection from ${remote}: PSK identity ${quoteUntrusted(identity)} is not a peer`, error);
    } else if (identity !== undefined && code === 'ERR_SSL_BINDER_DOES_NOT_VERIFY') {
      peer = identity;
      failure = peerAuthFailed(`refused a connection from ${remote} claiming to be ${identity}: wrong pre-shared key`, error);
    } else if (code === 'ECONNRESET' || code === 'EPIPE') {
      peer = identity;
      failure = peerAuthFailed(`a client${remote === 'unknown' ? '' : ` at ${remote}`} hung up during the TLS handshake: it probably does not accept this node's ${this.auth.kind === 'psk' ? 'key' : 'certificate'}`, error);
    } else {
      peer = identity;
      failure = peerAuthFailed(`TLS handshake from ${remote}${identity === undefined ? '' : ` (identity ${quoteUntrusted(identity)})`} failed: ${summarizeSocketError(error)}`, error);
    }
    const link = peer === undefined ? undefined : this.links.get(peer);
    if (link !== undefined) link.lastError = describeError(failure);
    this.logRefusal(`${failure.code}|${peer ?? socket.remoteAddress ?? remote}|${code}`, failure.message, {
      code: failure.code,
      remote,
      tlsError: code,
      ...(peer === undefined ? {} : { peer }),
    });
  }

  /** Logs an inbound refusal: a warning the first time, debug while it keeps repeating. */
  private logRefusal(key: string, msg: string, fields: Record<string, unknown>): void {
    const nowMs = performance.now();
    const warnedAtMs = this.refusalsWarnedAtMs.get(key);
    if (warnedAtMs !== undefined && nowMs - warnedAtMs < refusalWarningIntervalMs) {
      this.log('debug', msg, fields);
      return;
    }
    if (this.refusalsWarnedAtMs.size >= refusalKeysMax) this.refusalsWarnedAtMs.clear();
    this.refusalsWarnedAtMs.set(key, nowMs);
    this.log('warn', msg, fields);
  }

  private acceptSecure(socket: tls.TLSSocket): void {
    const remote = remoteOf(socket);
    if (this.state !== 'started') {
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined);
    const refuse = (failure: PeerConnectionError, peer?: string): void => {
      this.handshakesFailed++;
      socket.destroy();
      const link = peer === undefined ? undefined : this.links.get(peer);
      if (link !== undefined) link.lastError = describeError(failure);
      this.logRefusal(`${failure.code}|${peer ?? socket.remoteAddress ?? remote}|${failure.message.replace(remote, '')}`, failure.message, {
        code: failure.code,
        remote,
        ...(peer === undefined ? {} : { peer }),
      });
    };
    if (this.auth.kind === 'psk') {
      const identity = this.pskIdentities.get(socket);
      // The callback only hands out the key for known peers, so this holds unless the peer
      // list changed during the handshake.
      if (identity === undefined || !this.links.has(identity)) {
        refuse(peerAuthFailed(`refused a connection from ${remote}: identity ${quoteUntrusted(identity ?? '')} is not a peer`));
        return;
      }
      this.openInbound(socket, remote, identity as NodeId);
      return;
    }
    const names = certificateNodeIds(socket.getPeerCertificate().subjectaltname);
    if (!socket.authorized) {
      const claimed = names.length === 0 ? '' : ` naming ${names.join(', ')}`;
      const claimedPeer = names.length === 1 && this.links.has(names[0] ?? '') ? names[0] : undefined;
      refuse(
        peerAuthFailed(`refused a connection from ${remote}: client certificate${claimed} not trusted (${String(socket.authorizationError ?? 'no certificate')}); is it from the cluster CA?`),
        claimedPeer,
      );
      return;
    }
    const peers = names.filter((name) => name !== this.self && this.links.has(name));
    if (peers.length !== 1) {
      const named = names.length === 0 ? 'no node id' : names.join(', ');
      refuse(
        peerAuthFailed(
          peers.length === 0
            ? `refused a connection from ${remote}: its certificate names ${named}, which is not a peer`
            : `refused a connection from ${remote}: its certificate names several peers (${peers.join(', ')})`,
        ),
      );
      return;
    }
    this.openInbound(socket, remote, peers[0] as NodeId);
  }

  private acceptInsecure(socket: net.Socket): void {
    if (this.state !== 'started') {
      socket.destroy();
      return;
    }
    this.openInbound(socket, remoteOf(socket), null);
  }

  // -------------------------------------------------------------------------------------------
  // Inbound: frames

  private openInbound(socket: net.Socket, remote: string, identity: NodeId | null): void {
    const connection: InboundConnection = { socket, remote, decoder: new FrameDecoder(), identity: null };
    this.inbound.add(connection);
    socket.on('close', () => this.inbound.delete(connection));
    socket.on('error', (error) => this.log('debug', `inbound connection from ${remote} failed: ${error.message}`, { remote, peer: connection.identity }));
    socket.on('data', (chunk: Buffer) => this.onInboundData(connection, chunk));
    socket.on('end', () => {
      // The peer closed its side; a partial frame left behind is a truncated frame.
      const leftBytes = connection.decoder.bufferedBytes;
      if (leftBytes > 0 && this.state === 'started') {
        this.badFrame(connection, frameInvalid(`connection ended inside a frame (${leftBytes} bytes of it received)`));
      }
    });
    if (identity !== null) this.bind(connection, identity);
  }

  /** Ties `connection` to `identity`. A peer keeps one outbound connection to us, so an older
   * inbound one from the same peer is dead or dying: close it now rather than let it hold a
   * slot until TCP keepalive notices. */
  private bind(connection: InboundConnection, identity: NodeId): void {
    connection.identity = identity;
    for (const other of this.inbound) {
      if (other !== connection && other.identity === identity) {
        this.log('debug', `closing an older connection from ${identity} (${other.remote})`, { peer: identity, remote: other.remote });
        other.socket.destroy();
      }
    }
    this.log('info', `accepted a connection from peer ${identity}`, { peer: identity, remote: connection.remote });
    this.links.get(identity)?.nudge();
  }

  private onInboundData(connection: InboundConnection, chunk: Buffer): void {
    if (this.state !== 'started' || connection.socket.destroyed) return;
    let messages: Message[];
    try {
      messages = connection.decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      this.badFrame(connection, error);
      return;
    }
    for (const message of messages) {
      if (connection.identity === null) {
        // Insecure mode: the first frame names the sender, which must at least be a peer.
        if (message.from === this.self || !this.links.has(message.from)) {
          this.violation(connection, peerProtocolViolation(`message from ${connection.remote} claims sender ${quoteUntrusted(message.from)}, which is not a peer`));
          return;
        }
        this.bind(connection, message.from);
      }
      const identity = connection.identity;
      if (identity === null) return;
      if (message.from !== identity) {
        this.violation(connection, peerProtocolViolation(`peer ${identity} (${connection.remote}) sent a message claiming to be from ${quoteUntrusted(message.from)}`));
        return;
      }
      if (message.to !== this.self) {
        this.violation(connection, peerProtocolViolation(`peer ${identity} (${connection.remote}) sent a message for ${quoteUntrusted(message.to)}, not for this node (${this.self}); check the peer addresses`));
        return;
      }
      const link = this.links.get(identity);
      if (link === undefined) {
        // Removed from the peer list while this chunk was in flight.
        connection.socket.destroy();
        return;
      }
      link.framesIn++;
      this.onMessage(message);
      if (this.state !== 'started' || connection.socket.destroyed) return;
    }
  }

  private badFrame(connection: InboundConnection, error: FrameError): void {
    this.framesInvalid++;
    connection.socket.destroy();
    const peer = connection.identity;
    const link = peer === null ? undefined : this.links.get(peer);
    if (link !== undefined) link.lastError = describeError(error);
    this.log('warn', `closed the connection from ${peer ?? 'an unidentified sender'} (${connection.remote}): bad frame: ${error.message}`, {
      code: error.code,
      remote: connection.remote,
      ...(peer === null ? {} : { peer }),
    });
  }

  private violation(connection: InboundConnection, error: PeerConnectionError): void {
    this.protocolViolations++;
    connection.socket.destroy();
    const peer = connection.identity;
    const link = peer === null ? undefined : this.links.get(peer);
    if (link !== undefined) link.lastError = describeError(error);
    this.log('warn', `closed the connection: ${error.message}`, { code: error.code, remote: connection.remote, ...(peer === null ? {} : { peer }) });
  }
}
