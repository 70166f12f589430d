// Typed errors of the peer transport (frame codec, connections, options). Each carries a stable
// `code` listed in docs/errors.md. None of them is fatal to the daemon: a bad frame or a failed
// handshake closes one connection, a peer that cannot be reached is retried with back-off; only
// bad options and a port that cannot be bound stop start-up.

/** Codes a FrameError can carry. */
export type FrameErrorCode = 'RAFTVIP_FRAME_INVALID' | 'RAFTVIP_FRAME_TOO_LARGE';

/** A frame on the wire, or a message handed to the encoder, is not acceptable: oversized,
 * unknown version, not msgpack, or not a well-formed Raft message. The connection that carried
 * it is closed; other connections are unaffected. */
export class FrameError extends Error {
  readonly code: FrameErrorCode;

  constructor(options: { code: FrameErrorCode; detail: string; cause?: unknown }) {
    super(options.detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FrameError';
    this.code = options.code;
  }
}

/** A frame is malformed. */
export function frameInvalid(detail: string, cause?: unknown): FrameError {
  return new FrameError({ code: 'RAFTVIP_FRAME_INVALID', detail, cause });
}

/** A frame is larger than frameSizeBytesMax. */
export function frameTooLarge(detail: string): FrameError {
  return new FrameError({ code: 'RAFTVIP_FRAME_TOO_LARGE', detail });
}

/** An option passed to the PeerTransport constructor or updatePeers is out of range. */
export class TransportOptionError extends Error {
  readonly code = 'RAFTVIP_TRANSPORT_INVALID_OPTION' as const;
  readonly option: string;

  constructor(options: { option: string; detail: string }) {
    super(`invalid transport option ${options.option}: ${options.detail}`);
    this.name = 'TransportOptionError';
    this.option = options.option;
  }
}

/** The listening socket could not be opened (address in use, not a local address, no
 * permission) or did not open in time. */
export class TransportListenError extends Error {
  readonly code = 'RAFTVIP_TRANSPORT_LISTEN_FAILED' as const;

  constructor(options: { host: string; port: number; detail: string; cause?: unknown }) {
    super(
      `cannot listen on ${options.host}:${options.port}: ${options.detail}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'TransportListenError';
  }
}

/** Codes a PeerConnectionError can carry. */
export type PeerConnectionErrorCode =
  | 'RAFTVIP_PEER_UNREACHABLE'
  | 'RAFTVIP_PEER_AUTH_FAILED'
  | 'RAFTVIP_PEER_PROTOCOL_VIOLATION'
  | 'RAFTVIP_PEER_CONNECTIONS_EXCEEDED';

/** One connection to or from a peer failed or was closed by this node. Reported in logs and in
 * `status().lastError`, never thrown to the caller of `send`. */
export class PeerConnectionError extends Error {
  readonly code: PeerConnectionErrorCode;

  constructor(options: { code: PeerConnectionErrorCode; detail: string; cause?: unknown }) {
    super(options.detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PeerConnectionError';
    this.code = options.code;
  }
}

/** The peer could not be reached: connection refused or reset, connect or handshake timeout. */
export function peerUnreachable(detail: string, cause?: unknown): PeerConnectionError {
  return new PeerConnectionError({ code: 'RAFTVIP_PEER_UNREACHABLE', detail, cause });
}

/** The TLS handshake failed or named the wrong node: wrong PSK, unknown identity, certificate
 * not from the cluster CA or naming another node. */
export function peerAuthFailed(detail: string, cause?: unknown): PeerConnectionError {
  return new PeerConnectionError({ code: 'RAFTVIP_PEER_AUTH_FAILED', detail, cause });
}

/** An authenticated peer sent something it must not: a message with another sender or
 * recipient, or data on a connection that only this node sends on. */
export function peerProtocolViolation(detail: string): PeerConnectionError {
  return new PeerConnectionError({ code: 'RAFTVIP_PEER_PROTOCOL_VIOLATION', detail });
}

/** An inbound connection was refused because inboundConnectionsMax were already open. */
export function peerConnectionsExceeded(detail: string): PeerConnectionError {
  return new PeerConnectionError({ code: 'RAFTVIP_PEER_CONNECTIONS_EXCEEDED', detail });
}

/** A one-line summary of a socket or OpenSSL error: OpenSSL's reason text ("sslv3 alert
 * illegal parameter") instead of its full error string, followed by Node's error code. */
export function summarizeSocketError(error: Error & { code?: unknown }): string {
  const code = typeof error.code === 'string' ? error.code : '';
  const firstLine = error.message.split('\n')[0] ?? '';
  const openssl = /:error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^:]+):/.exec(firstLine);
  const reason = openssl?.[1] ?? firstLine;
  return code === '' ? reason : `${reason} (${code})`;
}

/** `CODE: message`, the form kept in status().lastError. */
export function describeError(error: { code: string; message: string }): string {
  return `${error.code}: ${error.message}`;
}
