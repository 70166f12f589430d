// Goal: show that the peer frame codec is symmetric and strict. Every Raft message type
// round-trips exactly (byte strings stay plain Uint8Arrays), however the byte stream is split;
// frames that are oversized, of an unknown version, not msgpack, or not a well-formed Message
// are refused with a typed FrameError; and a seeded fuzz loop (random bytes, truncations, bit
// flips, random splits) gets from the decoder either the messages that were encoded or a
// FrameError, never another exception, never a hang. Failing fuzz cases print their seed.

import t from 'tap';
import { Packr } from 'msgpackr';
import {
  FrameDecoder,
  decodeFrames,
  encodeFrame,
  frameHeaderBytes,
  frameSizeBytesMax,
  messageTypes,
  nodeIdLengthMax,
  validateMessage,
} from '../src/transport/frame-codec.js';
import { FrameError } from '../src/transport/transport-errors.js';
import { SeededRandom } from '../src/raft/random.js';
import { logIndex, nodeId, term, type Entry, type Message, type MessageType } from '../src/raft/types.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const base = (type: MessageType, extra: Partial<Message> = {}): Message => ({
  type,
  from: nodeId('cp1'),
  to: nodeId('cp2'),
  term: term(7),
  index: logIndex(41),
  logTerm: term(6),
  commit: logIndex(40),
  ...extra,
});

const entries: Entry[] = [
  { term: term(6), index: logIndex(42), type: 'noop' },
  { term: term(7), index: logIndex(43), type: 'command', data: new Uint8Array([0, 1, 2, 250, 255]) },
  { term: term(7), index: logIndex(44), type: 'membership', membership: { voters: [nodeId('cp1'), nodeId('cp2'), nodeId('cp3')] } },
  { term: term(7), index: logIndex(45), type: 'command', data: new Uint8Array(0) },
];

/** One representative message per type, with the fields that type carries. */
const oneOfEach: Record<MessageType, Message> = {
  'pre-vote': base('pre-vote'),
  'pre-vote-response': base('pre-vote-response', { reject: true }),
  vote: base('vote', { transfer: true }),
  'vote-response': base('vote-response', { reject: false }),
  append: base('append', { entries, sentAtTick: 1234, epoch: 3, transferee: nodeId('cp3') }),
  'append-response': base('append-response', { reject: true, hint: logIndex(12), sentAtTick: 1234, epoch: 3 }),
  heartbeat: base('heartbeat', { sentAtTick: 99, epoch: 0 }),
  'heartbeat-response': base('heartbeat-response', { sentAtTick: 99, epoch: 0 }),
  snapshot: base('snapshot', {
    snapshot: {
      meta: { index: logIndex(40), term: term(6), membership: { voters: [nodeId('cp1'), nodeId('cp2')] } },
      data: Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff),
    },
  }),
  'timeout-now': base('timeout-now'),
};

const rawPackr = new Packr({ useRecords: false, moreTypes: false });

/** A frame around an arbitrary value, bypassing the encoder's validation. */
function frameOf(value: unknown, version = 1): Uint8Array {
  const payload = rawPackr.pack(value);
  const frame = new Uint8Array(frameHeaderBytes + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length + 1, false);
  frame[4] = version;
  frame.set(payload, frameHeaderBytes);
  return frame;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Feeds `bytes` to a fresh decoder in chunks cut at `cuts` (sorted offsets). */
function decodeInChunks(bytes: Uint8Array, cuts: readonly number[]): { messages: Message[]; decoder: FrameDecoder } {
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    messages.push(...decoder.push(bytes.subarray(start, cut)));
    start = cut;
  }
  return { messages, decoder };
}

function expectFrameError(tt: Checks, fn: () => unknown, code: FrameError['code'], what: string): void {
  try {
    fn();
    tt.fail(`${what}: expected ${code}, nothing was thrown`);
  } catch (error) {
    tt.ok(error instanceof FrameError, `${what}: throws FrameError`);
    tt.equal((error as FrameError).code, code, `${what}: code ${code}`);
  }
}

/** The part of a tap test that the helpers need. */
interface Checks {
  ok(value: unknown, message: string): unknown;
  equal(found: unknown, wanted: unknown, message: string): unknown;
  fail(message: string): unknown;
}

// ---------------------------------------------------------------------------------------------
// Round trips

t.test('every message type round-trips exactly', async (t) => {
  t.same(new Set(Object.keys(oneOfEach)), new Set(messageTypes), 'the table covers every MessageType');
  for (const type of messageTypes) {
    const message = oneOfEach[type];
    const frame = encodeFrame(message);
    t.equal(new DataView(frame.buffer, frame.byteOffset).getUint32(0, false), frame.length - 4, `${type}: length prefix counts version + payload`);
    t.equal(frame[4], 1, `${type}: version byte 1`);
    const decoded = decodeFrames(frame);
    t.equal(decoded.length, 1);
    t.strictSame(decoded[0], message, `${type} round-trips`);
  }
});

t.test('byte strings decode as plain Uint8Arrays that do not alias the receive buffer', async (t) => {
  const frame = encodeFrame(oneOfEach.append);
  const chunk = Buffer.from(frame); // what a socket hands over
  const [decoded] = new FrameDecoder().push(chunk);
  const command = decoded?.entries?.[1];
  t.ok(command !== undefined && command.type === 'command');
  if (command?.type !== 'command') return;
  t.equal(command.data.constructor, Uint8Array, 'plain Uint8Array, not Buffer');
  t.strictSame([...command.data], [0, 1, 2, 250, 255]);
  chunk.fill(0);
  t.strictSame([...command.data], [0, 1, 2, 250, 255], 'unchanged after the chunk is reused');
  const snapshot = decodeFrames(encodeFrame(oneOfEach.snapshot))[0]?.snapshot;
  t.equal(snapshot?.data.constructor, Uint8Array, 'snapshot data is a plain Uint8Array');
});

t.test('undefined optional fields are left out, not sent', async (t) => {
  const message = { ...base('heartbeat'), reject: undefined, hint: undefined } as unknown as Message;
  const [decoded] = decodeFrames(encodeFrame(message));
  t.strictSame(decoded, base('heartbeat'));
});

t.test('a stream of frames decodes the same however it is split, including byte by byte', async (t) => {
  const messages = messageTypes.map((type) => oneOfEach[type]);
  const stream = concat(messages.map(encodeFrame));
  const oneByOne = decodeInChunks(stream, Array.from({ length: stream.length - 1 }, (_, i) => i + 1));
  t.strictSame(oneByOne.messages, messages, 'byte by byte');
  t.equal(oneByOne.decoder.bufferedBytes, 0);
  for (let cut = 0; cut <= stream.length; cut += 17) {
    t.strictSame(decodeInChunks(stream, [cut]).messages, messages, `split at ${cut}`);
  }
  const partial = new FrameDecoder();
  t.strictSame(partial.push(stream.subarray(0, 3)), [], 'no message from a partial header');
  t.equal(partial.bufferedBytes, 3);
});

// ---------------------------------------------------------------------------------------------
// Refusals

t.test('an oversized frame is refused from its length prefix alone', async (t) => {
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, frameSizeBytesMax - 4 + 1, false);
  expectFrameError(t, () => new FrameDecoder().push(header), 'RAFTVIP_FRAME_TOO_LARGE', 'length just over the limit');
  new DataView(header.buffer).setUint32(0, 0xffffffff, false);
  expectFrameError(t, () => new FrameDecoder().push(header), 'RAFTVIP_FRAME_TOO_LARGE', 'length 2^32-1');
  // Exactly at the limit is accepted as far as the header goes (it waits for the payload).
  new DataView(header.buffer).setUint32(0, frameSizeBytesMax - 4, false);
  t.strictSame(new FrameDecoder().push(concat([header, new Uint8Array([1, 0x80])])), [], 'a frame of exactly frameSizeBytesMax waits for its payload');
});

t.test('the encoder refuses a message whose frame would be too large, and malformed messages', async (t) => {
  const huge = base('snapshot', {
    snapshot: { meta: { index: logIndex(1), term: term(1), membership: { voters: [nodeId('cp1')] } }, data: new Uint8Array(frameSizeBytesMax) },
  });
  expectFrameError(t, () => encodeFrame(huge), 'RAFTVIP_FRAME_TOO_LARGE', 'a 16 MiB snapshot');
  expectFrameError(t, () => encodeFrame(base('vote', { from: nodeId('') })), 'RAFTVIP_FRAME_INVALID', 'empty from');
  expectFrameError(t, () => encodeFrame(base('vote', { term: term(-1) })), 'RAFTVIP_FRAME_INVALID', 'negative term');
  expectFrameError(t, () => encodeFrame({ ...base('vote'), type: 'gossip' as MessageType }), 'RAFTVIP_FRAME_INVALID', 'unknown type');
});

t.test('frames with a bad header or a payload that is not a Message are refused', async (t) => {
  const good = rawPackr.pack(base('vote'));
  const cases: Array<[string, Uint8Array]> = [
    ['unknown version 2', frameOf(base('vote'), 2)],
    ['version 0', frameOf(base('vote'), 0)],
    ['length 0', new Uint8Array([0, 0, 0, 0])],
    ['length 1 (version only)', new Uint8Array([0, 0, 0, 1, 1])],
    ['payload not msgpack (reserved byte 0xc1)', new Uint8Array([0, 0, 0, 2, 1, 0xc1])],
    ['payload truncated msgpack', (() => { const f = frameOf(base('vote')); const cut = f.subarray(0, f.length - 3); new DataView(cut.buffer, cut.byteOffset).setUint32(0, cut.length - 4, false); return cut; })()],
    ['two msgpack values in one payload', (() => { const payload = concat([good, good]); const f = new Uint8Array(5 + payload.length); new DataView(f.buffer).setUint32(0, payload.length + 1, false); f[4] = 1; f.set(payload, 5); return f; })()],
    ['payload is an array', frameOf([1, 2, 3])],
    ['payload is a string', frameOf('vote')],
    ['payload is nil', frameOf(null)],
    ['unknown type', frameOf({ ...base('vote'), type: 'gossip' })],
    ['type is a number', frameOf({ ...base('vote'), type: 3 })],
    ['missing from', frameOf({ ...base('vote'), from: undefined })],
    ['from empty', frameOf({ ...base('vote'), from: '' })],
    ['from too long', frameOf({ ...base('vote'), from: 'x'.repeat(nodeIdLengthMax + 1) })],
    ['to is a number', frameOf({ ...base('vote'), to: 2 })],
    ['negative term', frameOf({ ...base('vote'), term: -1 })],
    ['fractional index', frameOf({ ...base('vote'), index: 1.5 })],
    ['logTerm beyond 2^53', frameOf({ ...base('vote'), logTerm: 2 ** 60 })],
    ['commit is a string', frameOf({ ...base('vote'), commit: '40' })],
    ['unknown field', frameOf({ ...base('vote'), extra: 1 })],
    ['reject is nil', frameOf({ ...base('vote-response'), reject: null })],
    ['reject is a number', frameOf({ ...base('vote-response'), reject: 1 })],
    ['hint negative', frameOf({ ...base('append-response'), hint: -3 })],
    ['transferee empty', frameOf({ ...base('append'), transferee: '' })],
    ['sentAtTick fractional', frameOf({ ...base('heartbeat'), sentAtTick: 0.5 })],
    ['entries not an array', frameOf({ ...base('append'), entries: {} })],
    ['entry with index 0', frameOf({ ...base('append'), entries: [{ term: 1, index: 0, type: 'noop' }] })],
    ['entry of unknown type', frameOf({ ...base('append'), entries: [{ term: 1, index: 1, type: 'blob' }] })],
    ['command entry without data', frameOf({ ...base('append'), entries: [{ term: 1, index: 1, type: 'command' }] })],
    ['command entry with string data', frameOf({ ...base('append'), entries: [{ term: 1, index: 1, type: 'command', data: 'abc' }] })],
    ['noop entry with data', frameOf({ ...base('append'), entries: [{ term: 1, index: 1, type: 'noop', data: new Uint8Array(1) }] })],
    ['membership entry with too many voters', frameOf({ ...base('append'), entries: [{ term: 1, index: 1, type: 'membership', membership: { voters: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] } }] })],
    ['membership voter not a string', frameOf({ ...base('append'), entries: [{ term: 1, index: 1, type: 'membership', membership: { voters: [1] } }] })],
    ['snapshot without data', frameOf({ ...base('snapshot'), snapshot: { meta: { index: 1, term: 1, membership: { voters: ['a'] } } } })],
    ['snapshot with extra field', frameOf({ ...base('snapshot'), snapshot: { meta: { index: 1, term: 1, membership: { voters: ['a'] } }, data: new Uint8Array(1), x: 1 } })],
    ['prototype key', frameOf(JSON.parse(`{"__proto__": {"polluted": true}, "type": "vote"}`))],
  ];
  for (const [what, frame] of cases) {
    expectFrameError(t, () => new FrameDecoder().push(frame), 'RAFTVIP_FRAME_INVALID', what);
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
});

t.test('after a bad frame the decoder stays failed, and a chunk holding one yields nothing', async (t) => {
  const decoder = new FrameDecoder();
  const good = encodeFrame(base('heartbeat'));
  expectFrameError(t, () => decoder.push(concat([good, frameOf(base('vote'), 9), good])), 'RAFTVIP_FRAME_INVALID', 'good, bad, good in one chunk');
  expectFrameError(t, () => decoder.push(good), 'RAFTVIP_FRAME_INVALID', 'a later good frame');
});

t.test('validateMessage returns a fresh copy holding only the fields', async (t) => {
  const input = { ...oneOfEach.append };
  const copy = validateMessage(input);
  t.not(copy, input);
  t.strictSame(copy, input);
});

// ---------------------------------------------------------------------------------------------
// Seeded fuzzing

const ids = ['cp1', 'cp2', 'cp3', 'a', 'x'.repeat(nodeIdLengthMax)];

function randomMessage(random: SeededRandom): Message {
  const pick = <T>(items: readonly T[]): T => items[random.nextInt(items.length)] as T;
  const count = (): number => (random.nextInt(4) === 0 ? random.nextInt(2 ** 31) * 2 ** random.nextInt(22) : random.nextInt(1000));
  const message: { -readonly [K in keyof Message]: Message[K] } = {
    type: pick(messageTypes),
    from: nodeId(pick(ids)),
    to: nodeId(pick(ids)),
    term: term(count()),
    index: logIndex(count()),
    logTerm: term(count()),
    commit: logIndex(count()),
  };
  if (random.nextInt(3) === 0) {
    message.entries = Array.from({ length: random.nextInt(6) }, (): Entry => {
      const entryTerm = term(count());
      const index = logIndex(1 + count());
      switch (random.nextInt(3)) {
        case 0:
          return { term: entryTerm, index, type: 'noop' };
        case 1:
          return { term: entryTerm, index, type: 'command', data: Uint8Array.from({ length: random.nextInt(40) }, () => random.nextInt(256)) };
        default:
          return { term: entryTerm, index, type: 'membership', membership: { voters: Array.from({ length: 1 + random.nextInt(7) }, () => nodeId(pick(ids))) } };
      }
    });
  }
  if (random.nextInt(8) === 0) {
    message.snapshot = {
      meta: { index: logIndex(count()), term: term(count()), membership: { voters: [nodeId(pick(ids))] } },
      data: Uint8Array.from({ length: random.nextInt(200) }, () => random.nextInt(256)),
    };
  }
  if (random.nextInt(2) === 0) message.reject = random.nextInt(2) === 0;
  if (random.nextInt(3) === 0) message.hint = logIndex(count());
  if (random.nextInt(4) === 0) message.transfer = true;
  if (random.nextInt(4) === 0) message.transferee = nodeId(pick(ids));
  if (random.nextInt(2) === 0) message.sentAtTick = count();
  if (random.nextInt(2) === 0) message.epoch = count();
  return message;
}

function randomCuts(random: SeededRandom, length: number): number[] {
  const cuts = Array.from({ length: random.nextInt(8) }, () => random.nextInt(length + 1));
  return cuts.sort((a, b) => a - b);
}

/** Runs the decoder over `bytes` split at random; returns the messages or the FrameError. Any
 * other exception fails the test. */
function decodeOrFrameError(tt: Checks, bytes: Uint8Array, random: SeededRandom, label: string): Message[] | FrameError {
  try {
    return decodeInChunks(bytes, randomCuts(random, bytes.length)).messages;
  } catch (error) {
    if (error instanceof FrameError && (error.code === 'RAFTVIP_FRAME_INVALID' || error.code === 'RAFTVIP_FRAME_TOO_LARGE')) return error;
    tt.fail(`${label}: threw something other than FrameError: ${String(error)}`);
    return [];
  }
}

t.test('seeded fuzz: random splits of valid streams decode exactly', async (t) => {
  let checked = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const random = new SeededRandom(seed);
    const messages = Array.from({ length: 1 + random.nextInt(6) }, () => randomMessage(random));
    const stream = concat(messages.map(encodeFrame));
    const result = decodeOrFrameError(t, stream, random, `seed ${seed}`);
    if (result instanceof FrameError || !isSame(result, messages)) {
      t.fail(`seed ${seed}: a valid stream did not decode to what was encoded`);
      continue;
    }
    checked++;
  }
  t.equal(checked, 300, '300 seeds decode exactly');
});

t.test('seeded fuzz: truncated streams yield exactly the whole frames before the cut', async (t) => {
  let failures = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const random = new SeededRandom(seed ^ 0x5a5a);
    const messages = Array.from({ length: 1 + random.nextInt(5) }, () => randomMessage(random));
    const frames = messages.map(encodeFrame);
    const stream = concat(frames);
    const cut = random.nextInt(stream.length + 1);
    let whole = 0;
    for (let end = 0, i = 0; i < frames.length; i++) {
      end += frames[i]!.length;
      if (end <= cut) whole = i + 1;
    }
    const { messages: decoded, decoder } = decodeInChunks(stream.subarray(0, cut), randomCuts(random, cut));
    const ok = isSame(decoded, messages.slice(0, whole)) && decoder.bufferedBytes === cut - frames.slice(0, whole).reduce((s, f) => s + f.length, 0);
    if (!ok) {
      failures++;
      t.fail(`seed ${seed}: truncation at ${cut} of ${stream.length} did not yield the ${whole} whole frames`);
    }
  }
  t.equal(failures, 0, '300 truncations');
});

t.test('seeded fuzz: bit flips give FrameError or valid messages, and frames before the flip stay intact', async (t) => {
  let refused = 0;
  let accepted = 0;
  for (let seed = 1; seed <= 1500; seed++) {
    const random = new SeededRandom(seed ^ 0xb17f);
    const messages = Array.from({ length: 1 + random.nextInt(4) }, () => randomMessage(random));
    const frames = messages.map(encodeFrame);
    const stream = concat(frames);
    const flipped = stream.slice();
    let firstFlip = flipped.length;
    for (let flips = 1 + random.nextInt(4); flips > 0; flips--) {
      const at = random.nextInt(flipped.length);
      flipped[at]! ^= 1 << random.nextInt(8);
      firstFlip = Math.min(firstFlip, at);
    }
    const result = decodeOrFrameError(t, flipped, random, `seed ${seed}`);
    if (result instanceof FrameError) {
      refused++;
      continue;
    }
    accepted++;
    // Whatever came out is well-formed: validating it again changes nothing.
    for (const message of result) {
      if (!isSame(validateMessage(message), message)) t.fail(`seed ${seed}: decoded an ill-formed message`);
    }
    // Frames wholly before the first flipped byte are decoded exactly.
    let intact = 0;
    for (let end = 0, i = 0; i < frames.length; i++) {
      end += frames[i]!.length;
      if (end <= firstFlip) intact = i + 1;
    }
    if (!isSame(result.slice(0, intact), messages.slice(0, intact))) t.fail(`seed ${seed}: frames before the flip changed`);
  }
  t.ok(refused > 0 && accepted > 0, `both outcomes seen (refused ${refused}, accepted ${accepted})`);
});

t.test('seeded fuzz: random bytes give FrameError or valid messages, promptly', async (t) => {
  const started = performance.now();
  let refused = 0;
  for (let seed = 1; seed <= 2000; seed++) {
    const random = new SeededRandom(seed ^ 0x7a11);
    const length = random.nextInt(300);
    const bytes = Uint8Array.from({ length }, () => random.nextInt(256));
    if (random.nextInt(2) === 0 && length >= 5) {
      // A plausible header, so the fuzz reaches the msgpack and Message checks.
      new DataView(bytes.buffer).setUint32(0, length - 4, false);
      bytes[4] = 1;
      if (length >= 6 && random.nextInt(2) === 0) bytes[5] = 0x80 | random.nextInt(16); // a fixmap
    }
    const result = decodeOrFrameError(t, bytes, random, `seed ${seed}`);
    if (result instanceof FrameError) {
      refused++;
      continue;
    }
    for (const message of result) {
      if (!isSame(validateMessage(message), message)) t.fail(`seed ${seed}: decoded an ill-formed message`);
    }
  }
  t.ok(refused > 0, `refused ${refused} of 2000`);
  t.ok(performance.now() - started < 5000, 'finished in well under 5 s');
});

/** Deep equality for decoded messages (tap's strictSame, without a test assertion per call). */
function isSame(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.constructor === b.constructor && a.length === b.length && a.every((byte, i) => byte === b[i]);
  }
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => isSame(item, b[i]));
  if (typeof a === 'object' && typeof b === 'object' && a !== null && b !== null && !Array.isArray(a) && !Array.isArray(b)) {
    const keysA = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
    const keysB = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
    return keysA.length === keysB.length && keysA.every((k) => isSame((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}
