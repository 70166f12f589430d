// The wire format between Raft peers: one frame per Raft `Message`.
//
//   [u32 BE length][u8 version = 1][msgpack payload]
//
// `length` counts the bytes after the length field (version byte + payload), so a frame is
// `4 + length` bytes and the framing layer does not depend on the version. The payload is a
// msgpack map holding exactly the fields of a `Message` (see src/raft/types.ts); byte strings
// (command entry data, snapshot data) are msgpack `bin` and decode as plain Uint8Arrays.
//
// This module is pure: no sockets, timers or clocks. Encoding and decoding are symmetric: the
// encoder checks a message with the same validator the decoder applies, so a frame this node
// sends is always one its peers accept. The decoder is incremental (bytes arrive in arbitrary
// TCP chunks) and rejects, with a typed FrameError, anything that is not a well-formed message:
// peers are authenticated, but a bug or a version skew on one node must close one connection,
// never reach the Raft core as a half-formed message. There is no checksum: TLS authenticates
// every record, and the insecure mode is documented as trusting the network.

import { Packr } from 'msgpackr';
import { votersMax } from '../raft/raft.js';
import {
  logIndex,
  nodeId,
  term,
  type Entry,
  type Membership,
  type Message,
  type MessageType,
  type NodeId,
  type Snapshot,
} from '../raft/types.js';
import { FrameError, frameInvalid, frameTooLarge } from './transport-errors.js';

/** Largest frame on the wire, length prefix included. Snapshots hold the small replicated
 * cluster state, so 16 MiB leaves a wide margin while bounding what one peer can make us buffer. */
export const frameSizeBytesMax = 16 * 1024 * 1024;
/** Bytes of the length prefix. */
export const frameLengthBytes = 4;
/** Bytes before the payload: length prefix and version. */
export const frameHeaderBytes = frameLengthBytes + 1;
/** The only frame version this build speaks. A format change bumps it. */
export const frameVersion = 1;
/** Longest node id accepted on the wire, in UTF-16 code units: a DNS label (63) is enough for
 * ids that must also appear in certificates; longer strings are a corrupt or hostile frame. */
export const nodeIdLengthMax = 63;
/** Most entries in one message. The core sends far fewer per append (appendEntriesCountMax);
 * this only bounds work on a hostile frame, the frame size bounds the rest. */
export const entriesPerMessageMax = 4096;

/** Every MessageType, as a table so that adding a type to the union fails to compile here. */
const messageTypeTable: Record<MessageType, true> = {
  'pre-vote': true,
  'pre-vote-response': true,
  vote: true,
  'vote-response': true,
  append: true,
  'append-response': true,
  heartbeat: true,
  'heartbeat-response': true,
  snapshot: true,
  'timeout-now': true,
};

export const messageTypes: readonly MessageType[] = Object.keys(messageTypeTable) as MessageType[];

/** msgpack without records or extension state, so bytes depend only on the value; byte strings
 * are copied out of the receive buffer so a decoded message never pins a socket chunk. */
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, copyBuffers: true });

// ---------------------------------------------------------------------------------------------
// Validation: unknown value → Message, or FrameError. Builds fresh objects holding only known
// fields, so nothing the peer adds (extra keys, prototypes) reaches the core.

const messageKeys = new Set([
  'type', 'from', 'to', 'term', 'index', 'logTerm', 'commit',
  'entries', 'snapshot', 'reject', 'hint', 'transfer', 'transferee', 'sentAtTick', 'epoch',
]);

function expectMap(value: unknown, what: string, keys: ReadonlySet<string>): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw frameInvalid(`${what} is not a map`);
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) throw frameInvalid(`${what} is not a plain map`);
  for (const key of Object.keys(value)) {
    if (!keys.has(key)) throw frameInvalid(`${what} has unknown field "${key.slice(0, 32)}"`);
  }
  return value as Record<string, unknown>;
}

function expectCount(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw frameInvalid(`${what} is not a non-negative integer`);
  }
  return value;
}

function expectBoolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw frameInvalid(`${what} is not a boolean`);
  return value;
}

function expectNodeId(value: unknown, what: string): NodeId {
  if (typeof value !== 'string' || value.length < 1 || value.length > nodeIdLengthMax) {
    throw frameInvalid(`${what} is not a node id (a string of 1..${nodeIdLengthMax} characters)`);
  }
  return nodeId(value);
}

function expectBytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw frameInvalid(`${what} is not a byte string`);
  // A Buffer (a Uint8Array subclass) becomes a plain view, so decoded messages have one shape.
  return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function expectArray(value: unknown, what: string, lengthMax: number): readonly unknown[] {
  if (!Array.isArray(value)) throw frameInvalid(`${what} is not an array`);
  if (value.length > lengthMax) throw frameInvalid(`${what} has ${value.length} items; at most ${lengthMax} are allowed`);
  return value;
}

const membershipKeys = new Set(['voters']);

function validateMembership(value: unknown, what: string): Membership {
  const fields = expectMap(value, what, membershipKeys);
  const voters = expectArray(fields.voters, `${what}.voters`, votersMax);
  return { voters: voters.map((voter, i) => expectNodeId(voter, `${what}.voters[${i}]`)) };
}

const entryKeys = new Set(['term', 'index', 'type', 'data', 'membership']);

function validateEntry(value: unknown, what: string): Entry {
  const fields = expectMap(value, what, entryKeys);
  const entryTerm = term(expectCount(fields.term, `${what}.term`));
  const index = logIndex(expectCount(fields.index, `${what}.index`));
  if (index < 1) throw frameInvalid(`${what}.index is 0`);
  // Each entry type carries exactly its own payload field.
  const payloadKey = fields.type === 'command' ? 'data' : fields.type === 'membership' ? 'membership' : null;
  for (const key of ['data', 'membership'] as const) {
    if (key !== payloadKey && Object.hasOwn(fields, key)) throw frameInvalid(`${what} has a ${key} field its type does not carry`);
  }
  switch (fields.type) {
    case 'noop':
      return { term: entryTerm, index, type: 'noop' };
    case 'command':
      return { term: entryTerm, index, type: 'command', data: expectBytes(fields.data, `${what}.data`) };
    case 'membership':
      return { term: entryTerm, index, type: 'membership', membership: validateMembership(fields.membership, `${what}.membership`) };
    default:
      throw frameInvalid(`${what}.type is not an entry type`);
  }
}

const snapshotKeys = new Set(['meta', 'data']);
const snapshotMetaKeys = new Set(['index', 'term', 'membership']);

function validateSnapshot(value: unknown, what: string): Snapshot {
  const fields = expectMap(value, what, snapshotKeys);
  const meta = expectMap(fields.meta, `${what}.meta`, snapshotMetaKeys);
  return {
    meta: {
      index: logIndex(expectCount(meta.index, `${what}.meta.index`)),
      term: term(expectCount(meta.term, `${what}.meta.term`)),
      membership: validateMembership(meta.membership, `${what}.meta.membership`),
    },
    data: expectBytes(fields.data, `${what}.data`),
  };
}

/** Checks that `value` has exactly the shape of a Message and returns a fresh copy holding only
 * its fields. Throws FrameError (RAFTVIP_FRAME_INVALID) otherwise. */
export function validateMessage(value: unknown): Message {
  const fields = expectMap(value, 'message', messageKeys);
  const type = fields.type;
  if (typeof type !== 'string' || !Object.hasOwn(messageTypeTable, type)) {
    throw frameInvalid('message.type is not a message type');
  }
  const message: {
    -readonly [K in keyof Message]: Message[K];
  } = {
    type: type as MessageType,
    from: expectNodeId(fields.from, 'message.from'),
    to: expectNodeId(fields.to, 'message.to'),
    term: term(expectCount(fields.term, 'message.term')),
    index: logIndex(expectCount(fields.index, 'message.index')),
    logTerm: term(expectCount(fields.logTerm, 'message.logTerm')),
    commit: logIndex(expectCount(fields.commit, 'message.commit')),
  };
  // Optional fields: absent is fine, present must be well-formed (never nil or undefined).
  if (Object.hasOwn(fields, 'entries')) {
    const entries = expectArray(fields.entries, 'message.entries', entriesPerMessageMax);
    message.entries = entries.map((entry, i) => validateEntry(entry, `message.entries[${i}]`));
  }
  if (Object.hasOwn(fields, 'snapshot')) message.snapshot = validateSnapshot(fields.snapshot, 'message.snapshot');
  if (Object.hasOwn(fields, 'reject')) message.reject = expectBoolean(fields.reject, 'message.reject');
  if (Object.hasOwn(fields, 'hint')) message.hint = logIndex(expectCount(fields.hint, 'message.hint'));
  if (Object.hasOwn(fields, 'transfer')) message.transfer = expectBoolean(fields.transfer, 'message.transfer');
  if (Object.hasOwn(fields, 'transferee')) message.transferee = expectNodeId(fields.transferee, 'message.transferee');
  if (Object.hasOwn(fields, 'sentAtTick')) message.sentAtTick = expectCount(fields.sentAtTick, 'message.sentAtTick');
  if (Object.hasOwn(fields, 'epoch')) message.epoch = expectCount(fields.epoch, 'message.epoch');
  return message;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** The message as a plain map: optional fields that are `undefined` are left out (msgpack would
 * otherwise carry them as an extension value the decoder rejects). */
function toWire(message: Message): Record<string, unknown> {
  const wire: Record<string, unknown> = {};
  for (const key of messageKeys) {
    const value = (message as unknown as Record<string, unknown>)[key];
    if (value !== undefined) wire[key] = value;
  }
  if (message.entries !== undefined) {
    wire.entries = message.entries.map((entry) => {
      switch (entry.type) {
        case 'noop':
          return { term: entry.term, index: entry.index, type: entry.type };
        case 'command':
          return { term: entry.term, index: entry.index, type: entry.type, data: entry.data };
        case 'membership':
          return { term: entry.term, index: entry.index, type: entry.type, membership: { voters: [...entry.membership.voters] } };
        default: {
          const unknownEntry: never = entry;
          throw frameInvalid(`entry type ${String((unknownEntry as { type: unknown }).type)} is unknown`);
        }
      }
    });
  }
  if (message.snapshot !== undefined) {
    const { meta, data } = message.snapshot;
    wire.snapshot = { meta: { index: meta.index, term: meta.term, membership: { voters: [...meta.membership.voters] } }, data };
  }
  return wire;
}

/** One message as one frame. Throws FrameError when the message is malformed
 * (RAFTVIP_FRAME_INVALID) or its frame would exceed frameSizeBytesMax (RAFTVIP_FRAME_TOO_LARGE);
 * nothing is sent in either case. */
export function encodeFrame(message: Message): Uint8Array {
  const wire = toWire(message);
  validateMessage(wire);
  // msgpackr returns a view of a reused buffer: it is copied into the frame straight away.
  const payload = packr.pack(wire);
  const frameBytes = frameHeaderBytes + payload.length;
  if (frameBytes > frameSizeBytesMax) {
    throw frameTooLarge(`a ${message.type} message to ${message.to} would be a ${frameBytes}-byte frame; the limit is ${frameSizeBytesMax} bytes`);
  }
  const frame = new Uint8Array(frameBytes);
  new DataView(frame.buffer).setUint32(0, frameBytes - frameLengthBytes, false);
  frame[frameLengthBytes] = frameVersion;
  frame.set(payload, frameHeaderBytes);
  return frame;
}

// ---------------------------------------------------------------------------------------------
// Decoding

function decodePayload(payload: Uint8Array): Message {
  let value: unknown;
  let end = -1;
  try {
    // unpackMultiple stopped after the first value, rather than unpack: trailing bytes are then
    // detected here, instead of by an error message that serialises the payload as JSON.
    packr.unpackMultiple(payload, (first: unknown, _start?: number, firstEnd?: number) => {
      value = first;
      end = firstEnd ?? -1;
      return false;
    });
  } catch (error) {
    throw frameInvalid(`payload is not msgpack (${String((error as Error).message).slice(0, 120)})`, error);
  }
  if (end !== payload.length) throw frameInvalid(`payload has ${payload.length - end} bytes after its msgpack value`);
  return validateMessage(value);
}

/** Turns a byte stream into messages, however the stream is split into chunks. After the first
 * bad frame the decoder stays failed: every later push throws the same error, because nothing
 * after a framing error can be trusted to start at a frame boundary. A chunk that contains a
 * bad frame yields no messages, not even those before it; the caller closes the connection and
 * Raft retransmits. */
export class FrameDecoder {
  private readonly chunks: Uint8Array[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffset = 0;
  private buffered = 0;
  private failure: FrameError | null = null;

  /** Bytes received but not yet decoded (at most one frame's worth plus one chunk). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Message[] {
    if (this.failure !== null) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const messages: Message[] = [];
    try {
      for (;;) {
        if (this.buffered < frameLengthBytes) break;
        const header = this.peek(Math.min(frameHeaderBytes, this.buffered));
        const length = new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(0, false);
        if (length > frameSizeBytesMax - frameLengthBytes) {
          throw frameTooLarge(`frame announces ${frameLengthBytes + length} bytes; the limit is ${frameSizeBytesMax} bytes`);
        }
        if (length < 2) throw frameInvalid(`frame length ${length} leaves no room for a version and a payload`);
        if (header.length < frameHeaderBytes) break;
        const version = header[frameLengthBytes];
        if (version !== frameVersion) throw frameInvalid(`frame version ${String(version)} is not supported (this build speaks ${frameVersion})`);
        if (this.buffered < frameLengthBytes + length) break;
        const frame = this.take(frameLengthBytes + length);
        messages.push(decodePayload(frame.subarray(frameHeaderBytes)));
      }
    } catch (error) {
      this.failure = error instanceof FrameError ? error : frameInvalid(`decoder failed: ${String(error)}`, error);
      this.chunks.length = 0;
      this.buffered = 0;
      throw this.failure;
    }
    return messages;
  }

  /** The first `count` buffered bytes, without consuming them. */
  private peek(count: number): Uint8Array {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.headOffset >= count) {
      return first.subarray(this.headOffset, this.headOffset + count);
    }
    const out = new Uint8Array(count);
    let filled = 0;
    let offset = this.headOffset;
    for (const chunk of this.chunks) {
      const piece = chunk.subarray(offset, Math.min(chunk.length, offset + count - filled));
      out.set(piece, filled);
      filled += piece.length;
      offset = 0;
      if (filled === count) break;
    }
    return out;
  }

  /** Removes and returns the first `count` buffered bytes, as a plain Uint8Array view when they
   * lie in one chunk and as one copy otherwise. */
  private take(count: number): Uint8Array {
    const out = this.peek(count);
    let remaining = count;
    while (remaining > 0) {
      const first = this.chunks[0];
      if (first === undefined) break;
      const available = first.length - this.headOffset;
      if (available > remaining) {
        this.headOffset += remaining;
        remaining = 0;
      } else {
        remaining -= available;
        this.chunks.shift();
        this.headOffset = 0;
      }
    }
    this.buffered -= count;
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }
}

/** Decodes a complete byte string of whole frames (tests and tools). Throws FrameError on a bad
 * frame or on trailing bytes that do not form a whole frame. */
export function decodeFrames(bytes: Uint8Array): Message[] {
  const decoder = new FrameDecoder();
  const messages = decoder.push(bytes);
  if (decoder.bufferedBytes !== 0) throw frameInvalid(`${decoder.bufferedBytes} trailing bytes do not form a whole frame`);
  return messages;
}
