// The numbers that bound the peer transport: queue lengths, connection counts, timeouts and
// back-off. Each is a named constant with its unit last (STYLE.md rule 6); docs/transport.md
// explains each choice. The frame size limit lives with the codec (frame-codec.ts).

/** Messages waiting for one peer's connection. A leader sends a heartbeat round every
 * heartbeatIntervalMs, so 256 covers seconds of outage; older heartbeats and appends are then
 * dropped first, because Raft resends their content anyway. */
export const sendQueueMessagesMax = 256;
/** Peers besides this node. The cluster allows 7 voters (votersMax); the rest is room for
 * a node being added or removed while the peer file catches up. */
export const peerLinksMax = 16;
/** Inbound TCP connections open at once, authenticated or not. A cluster needs at most one per
 * peer (peersMax = 7); the rest is room for reconnects racing old connections. Further
 * connections are closed on accept. */
export const inboundConnectionsMax = 64;
/** From TCP connect to a completed TLS handshake, in both directions. Loopback and LAN
 * handshakes take a few milliseconds; a peer that takes longer is not one we want. */
export const handshakeTimeoutMs = 2000;
/** From starting an outbound dial to the TCP connection being up. */
export const connectTimeoutMs = 2000;
/** First reconnect delay after a failed or lost connection; doubles per failure. */
export const reconnectDelayMsMin = 50;
/** Reconnect delay cap. Also how long a connection must have lived for the back-off to start
 * again from reconnectDelayMsMin: a peer that accepts and then immediately drops us (auth or
 * protocol trouble) is retried at most every couple of seconds, not 20 times a second. */
export const reconnectDelayMsMax = 2000;
/** Idle time before the kernel's first TCP keepalive probe. Peers exchange heartbeats far more
 * often; keepalive only matters for connections to a host that vanished without a reset. */
export const keepAliveInitialDelayMs = 5000;
/** start(): the listening socket must be bound within this time. */
export const listenTimeoutMs = 5000;
/** stop(): the listening socket must be closed within this time (every connection is
 * destroyed first, so this is only a guard against a hung close). */
export const stopTimeoutMs = 2000;
/** Pre-shared key length range. The config loader demands 32 bytes (256 bits) too; OpenSSL
 * accepts keys up to 512 bytes, longer ones are no stronger. */
export const pskBytesMin = 32;
export const pskBytesMax = 256;
/** A misconfigured peer redials every couple of seconds and is refused every time: the first
 * refusal per (peer or address, reason) is a warning, repeats within this interval are debug. */
export const refusalWarningIntervalMs = 60_000;
/** Distinct refusal keys remembered for that purpose; the memory is cleared when full. */
export const refusalKeysMax = 256;
