// One outbound connection to one peer, used only for sending. The link owns the peer's bounded
// send queue, dials (TCP, then TLS unless insecure), writes frames while the socket accepts
// them, and after any failure redials with jittered exponential back-off until stopped.
//
// Invariants:
// - At most one socket per link exists at a time; events from an older socket are ignored
//   (every handler checks that its socket is still the current one).
// - The link never reads messages: the peer sends to us on its own outbound connection. Any
//   byte arriving here is a protocol violation and closes the connection.
// - Nothing blocks the caller: `enqueue` only touches the queue and schedules a flush; the
//   flush writes until the socket's buffer is full and resumes on 'drain', so the bounded queue
//   (not an unbounded socket buffer) absorbs a slow or absent peer.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import type { Message, NodeId } from '../raft/types.js';
import { encodeFrame } from './frame-codec.js';
import { SendQueue } from './send-queue.js';
import { clientTlsOptions, type TransportAuth } from './transport-auth.js';
import {
  FrameError,
  describeError,
  peerAuthFailed,
  peerProtocolViolation,
  peerUnreachable,
  summarizeSocketError,
  type PeerConnectionError,
} from './transport-errors.js';
import {
  connectTimeoutMs,
  handshakeTimeoutMs,
  keepAliveInitialDelayMs,
  reconnectDelayMsMax,
  reconnectDelayMsMin,
  sendQueueMessagesMax,
} from './transport-limits.js';

export type TransportLogLevel = 'debug' | 'info' | 'warn' | 'error';
/** Structured log sink: a message and fields (peer, remote, code, ...). */
export type TransportLog = (level: TransportLogLevel, msg: string, fields: Record<string, unknown>) => void;

/** Where a peer listens. */
export interface PeerAddress {
  readonly id: NodeId;
  readonly host: string;
  readonly port: number;
}

/** One peer as seen by this node's transport. */
export interface PeerStatus {
  readonly id: NodeId;
  /** The outbound (sending) connection is up and authenticated. */
  readonly connected: boolean;
  /** `CODE: message` of the latest failure on a connection to or from this peer; cleared when
   * the outbound connection comes up. */
  readonly lastError: string | null;
  /** Messages received from this peer and handed to onMessage. */
  readonly framesIn: number;
  /** Frames written to the outbound connection. */
  readonly framesOut: number;
  /** Messages never written: pushed out of a full queue, unencodable, or discarded by stop(). */
  readonly framesDropped: number;
  /** Outbound dials after the first one. */
  readonly reconnects: number;
}

/** Delay before redialling after `failures` consecutive failures (0 for the first retry):
 * "equal jitter" on an exponential ceiling, so it lies in [ceiling/2, ceiling] with
 * ceiling = min(reconnectDelayMsMax, reconnectDelayMsMin * 2^failures), and never below
 * reconnectDelayMsMin. Jitter keeps a cluster of restarted nodes from dialling in lockstep. */
export function reconnectDelayMs(failures: number, random: () => number): number {
  const ceiling = Math.min(reconnectDelayMsMax, reconnectDelayMsMin * 2 ** Math.min(Math.max(failures, 0), 20));
  const r = random();
  const fraction = r >= 0 && r < 1 ? r : 0.5;
  return Math.max(reconnectDelayMsMin, Math.round(ceiling / 2 + (fraction * ceiling) / 2));
}

type LinkState = 'idle' | 'connecting' | 'handshaking' | 'connected' | 'waiting';

export interface PeerLinkOptions {
  readonly self: NodeId;
  readonly peer: PeerAddress;
  readonly auth: TransportAuth;
  readonly log: TransportLog;
  readonly random: () => number;
}

export class PeerLink {
  private address: PeerAddress;
  private readonly self: NodeId;
  private readonly auth: TransportAuth;
  private readonly log: TransportLog;
  private readonly random: () => number;
  private readonly queue = new SendQueue(sendQueueMessagesMax);

  private running = false;
  private state: LinkState = 'idle';
  /** The TCP socket of the current attempt; the identity that makes events current. */
  private raw: net.Socket | null = null;
  /** What frames are written to: `raw`, or the TLS socket on top of it. */
  private socket: net.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private dials = 0;
  private connectedAtMs = 0;
  private flushScheduled = false;
  private waitingForDrain = false;
  private lastLoggedFailure: string | null = null;
  private overflowLogged = false;

  framesIn = 0;
  framesOut = 0;
  framesDropped = 0;
  reconnects = 0;
  lastError: string | null = null;

  constructor(options: PeerLinkOptions) {
    this.address = options.peer;
    this.self = options.self;
    this.auth = options.auth;
    this.log = options.log;
    this.random = options.random;
  }

  get id(): NodeId {
    return this.address.id;
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  get queuedMessages(): number {
    return this.queue.length;
  }

  status(): PeerStatus {
    return {
      id: this.address.id,
      connected: this.connected,
      lastError: this.lastError,
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      framesDropped: this.framesDropped,
      reconnects: this.reconnects,
    };
  }

  /** Begins dialling. Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.failures = 0;
    this.dial();
  }

  /** Closes the connection, cancels redials and discards the queue (counted as dropped). Idempotent;
   * the link can be started again. */
  stop(): void {
    this.running = false;
    this.clearTimer();
    this.closeCurrent();
    this.state = 'idle';
    this.framesDropped += this.queue.clear();
  }

  /** Moves the link to a new address; an existing connection is closed and redialled at once. */
  setAddress(address: PeerAddress): void {
    if (address.host === this.address.host && address.port === this.address.port) return;
    this.address = address;
    if (!this.running) return;
    this.clearTimer();
    this.closeCurrent();
    this.failures = 0;
    this.dial();
  }

  /** The peer just proved it is up (it connected to us): skip the rest of a back-off wait. */
  nudge(): void {
    if (!this.running || this.state !== 'waiting') return;
    this.clearTimer();
    this.dial();
  }

  /** Queues `message` for sending; never blocks. */
  enqueue(message: Message): void {
    const dropped = this.queue.push(message);
    if (dropped !== null) {
      this.framesDropped++;
      if (!this.overflowLogged) {
        this.overflowLogged = true;
        this.log('warn', `send queue to ${this.id} is full (${sendQueueMessagesMax} messages): dropping the oldest heartbeats and appends`, {
          peer: this.id,
          connected: this.connected,
        });
      }
    }
    this.scheduleFlush();
  }

  // -------------------------------------------------------------------------------------------

  private dial(): void {
    if (this.dials > 0) this.reconnects++;
    this.dials++;
    this.state = 'connecting';
    const { host, port } = this.address;
    const raw = net.connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: keepAliveInitialDelayMs });
    this.raw = raw;
    this.socket = raw;
    this.armTimer(connectTimeoutMs, () => this.fail(raw, peerUnreachable(`no TCP connection to ${host}:${port} within ${connectTimeoutMs} ms`)));
    raw.on('error', (error) => this.fail(raw, this.classify(error)));
    raw.on('close', () => this.fail(raw, peerUnreachable(`connection to ${host}:${port} closed by the peer`)));
    raw.once('connect', () => {
      if (this.raw !== raw) return;
      const auth = this.auth;
      if (auth.kind === 'insecure') {
        this.established(raw, raw);
        return;
      }
      this.state = 'handshaking';
      const secure = tls.connect({ ...clientTlsOptions(auth, this.self, this.id), socket: raw });
      this.socket = secure;
      this.armTimer(handshakeTimeoutMs, () =>
        this.fail(raw, peerUnreachable(`TLS handshake with ${host}:${port} not done within ${handshakeTimeoutMs} ms`)),
      );
      secure.on('error', (error) => this.fail(raw, this.classify(error)));
      secure.on('close', () => this.fail(raw, peerUnreachable(`connection to ${host}:${port} closed by the peer`)));
      secure.once('secureConnect', () => this.established(raw, secure));
    });
  }

  private established(raw: net.Socket, socket: net.Socket): void {
    if (this.raw !== raw) return;
    this.clearTimer();
    this.state = 'connected';
    this.connectedAtMs = performance.now();
    this.lastError = null;
    this.lastLoggedFailure = null;
    this.overflowLogged = false;
    this.waitingForDrain = false;
    const fields: Record<string, unknown> = { peer: this.id, address: `${this.address.host}:${this.address.port}` };
    if (socket instanceof tls.TLSSocket) {
      fields.protocol = socket.getProtocol();
      fields.cipher = socket.getCipher().name;
    }
    this.log('info', `connected to peer ${this.id}`, fields);
    socket.on('data', () => this.fail(raw, peerProtocolViolation(`peer ${this.id} sent data on a connection that only this node sends on`)));
    socket.on('drain', () => {
      if (this.raw !== raw) return;
      this.waitingForDrain = false;
      this.flush();
    });
    this.flush();
  }

  /** Ends the current attempt or connection with `error` and schedules the next dial. */
  private fail(raw: net.Socket, error: PeerConnectionError): void {
    if (this.raw !== raw) return;
    const wasConnected = this.state === 'connected';
    const livedMs = wasConnected ? performance.now() - this.connectedAtMs : 0;
    this.clearTimer();
    this.closeCurrent();
    this.lastError = describeError(error);
    const fields = { peer: this.id, address: `${this.address.host}:${this.address.port}`, code: error.code, error: error.message };
    if (wasConnected) {
      this.log('warn', `lost connection to peer ${this.id}: ${error.message}`, fields);
    } else if (this.lastError !== this.lastLoggedFailure) {
      // A peer that stays down produces one warning, not one per retry.
      this.log('warn', `cannot connect to peer ${this.id}: ${error.message}`, fields);
    } else {
      this.log('debug', `cannot connect to peer ${this.id}: ${error.message}`, fields);
    }
    this.lastLoggedFailure = this.lastError;
    if (!this.running) {
      this.state = 'idle';
      return;
    }
    if (wasConnected && livedMs >= reconnectDelayMsMax) this.failures = 0;
    const delayMs = reconnectDelayMs(this.failures, this.random);
    this.failures++;
    this.state = 'waiting';
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.running) this.dial();
    }, delayMs);
  }

  private classify(error: Error & { code?: unknown }): PeerConnectionError {
    const code = typeof error.code === 'string' ? error.code : '';
    const detail = summarizeSocketError(error);
    // OpenSSL and certificate-verification failures: wrong key, unknown identity, bad cert.
    if (/^ERR_SSL_|^ERR_TLS_|CERT|SELF_SIGNED|UNABLE_TO_/.test(code)) {
      return peerAuthFailed(`TLS handshake with ${this.id} failed: ${detail}${this.authHint(code)}`, error);
    }
    return peerUnreachable(detail, error);
  }

  /** What a TLS alert from the server most likely means, as an operator would put it. */
  private authHint(code: string): string {
    if (this.auth.kind === 'psk') {
      if (code === 'ERR_SSL_SSLV3_ALERT_ILLEGAL_PARAMETER') return '; the peer does not accept our pre-shared key (do both use the same key file?)';
      if (code === 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE') return `; the peer does not know identity ${this.self} (is this node in its peer list?)`;
    }
    if (this.auth.kind === 'tls' && /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_REQUIRED|DECRYPT_ERROR)/.test(code)) {
      return '; the peer does not accept our certificate (same cluster CA?)';
    }
    return '';
  }

  private closeCurrent(): void {
    const raw = this.raw;
    const socket = this.socket;
    this.raw = null;
    this.socket = null;
    this.waitingForDrain = false;
    socket?.destroy();
    raw?.destroy();
  }

  private armTimer(delayMs: number, onTimeout: () => void): void {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      onTimeout();
    }, delayMs);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Batches the messages of one synchronous burst (a Raft Ready) into one corked write. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.state !== 'connected') return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const socket = this.socket;
    if (this.state !== 'connected' || socket === null || this.waitingForDrain) return;
    socket.cork();
    try {
      for (let message = this.queue.shift(); message !== undefined; message = this.queue.shift()) {
        let frame: Uint8Array;
        try {
          frame = encodeFrame(message);
        } catch (error) {
          if (!(error instanceof FrameError)) throw error;
          // A message this node cannot encode is a bug upstream; sending it would only get this
          // connection closed by the peer. Drop it and say so loudly.
          this.framesDropped++;
          this.log('error', `dropped an unencodable ${message.type} message to ${this.id}: ${error.message}`, { peer: this.id, code: error.code });
          continue;
        }
        this.framesOut++;
        if (!socket.write(frame)) {
          this.waitingForDrain = true;
          break;
        }
      }
    } finally {
      socket.uncork();
    }
  }
}
