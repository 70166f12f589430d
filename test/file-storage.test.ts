// Goal: show on real files that FileStorage returns exactly what was saved across restarts
// (round trip, overwrite of an uncommitted suffix, segment rollover, snapshots), that a torn or
// garbage tail of the last segment is truncated back to the last acknowledged save with a
// warning, that damage anywhere else is refused with a typed error and left untouched, and
// that compaction is consistent after a crash between any two of its steps. A seeded fuzz loop
// cuts the WAL at random offsets and checks that reopening yields exactly the saves that were
// complete before the cut.

import t from 'tap';
import { appendFile, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '../src/raft/crc32c.js';
import {
  FileStorage,
  encodeSnapshotFile,
  encodeWalRecord,
  segmentFileName,
  segmentHeaderRecordBytes,
  walRecordSizeBytesMax,
  walRecordType,
  type StorageLogEvent,
} from '../src/raft/file-storage.js';
import {
  emptyHardState,
  logIndex,
  nodeId,
  term,
  type Entry,
  type HardState,
  type Snapshot,
} from '../src/raft/types.js';

/** The part of a tap test that the helpers need. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function tempDir(tt: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'raftvip-storage-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const noop = (index: number, entryTerm: number): Entry => ({ term: term(entryTerm), index: logIndex(index), type: 'noop' });
const command = (index: number, entryTerm: number, data: number[] = [index & 0xff, 0, 0xff]): Entry => ({
  term: term(entryTerm),
  index: logIndex(index),
  type: 'command',
  data: new Uint8Array(data),
});
const membership = (index: number, entryTerm: number, voters: string[]): Entry => ({
  term: term(entryTerm),
  index: logIndex(index),
  type: 'membership',
  membership: { voters: voters.map(nodeId) },
});
const hardState = (currentTerm: number, votedFor: string | null, commitIndex: number): HardState => ({
  term: term(currentTerm),
  votedFor: votedFor === null ? null : nodeId(votedFor),
  commitIndex: logIndex(commitIndex),
});
const commands = (from: number, to: number, entryTerm: number): Entry[] =>
  Array.from({ length: to - from + 1 }, (_, k) => command(from + k, entryTerm));
const snapshotAt = (index: number, snapshotTerm: number): Snapshot => ({
  meta: { index: logIndex(index), term: term(snapshotTerm), membership: { voters: [nodeId('cp1'), nodeId('cp2')] } },
  data: new Uint8Array([0xde, 0xad, index & 0xff]),
});

interface Opened {
  storage: FileStorage;
  events: StorageLogEvent[];
}

async function openStorage(dir: string, segmentSizeBytesMax?: number): Promise<Opened> {
  const events: StorageLogEvent[] = [];
  const options = segmentSizeBytesMax === undefined
    ? { log: (event: StorageLogEvent) => events.push(event) }
    : { log: (event: StorageLogEvent) => events.push(event), segmentSizeBytesMax };
  return { storage: await FileStorage.open(dir, options), events };
}

/** Opens, returns what was recovered, closes. */
async function reload(dir: string): Promise<{ state: ReturnType<FileStorage['load']>; events: StorageLogEvent[] }> {
  const { storage, events } = await openStorage(dir);
  const state = storage.load();
  await storage.close();
  return { state, events };
}

async function walFiles(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'wal'))).filter((name) => name.endsWith('.wal')).sort().map((name) => join(dir, 'wal', name));
}

async function lastSegment(dir: string): Promise<string> {
  const files = await walFiles(dir);
  return files[files.length - 1]!;
}

async function sizeOf(path: string): Promise<number> {
  return (await stat(path)).size;
}

const warnings = (events: StorageLogEvent[]) => events.filter((event) => event.level === 'warn');

async function flipByte(path: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[offset] = bytes[offset]! ^ 0x5a;
  await writeFile(path, bytes);
}

async function copyDirectory(from: string, to: string): Promise<void> {
  await mkdir(join(to, 'wal'), { recursive: true });
  for (const name of await readdir(from)) {
    if (name !== 'wal') await copyFile(join(from, name), join(to, name));
  }
  for (const name of await readdir(join(from, 'wal'))) await copyFile(join(from, 'wal', name), join(to, 'wal', name));
}

/** Deterministic 32-bit linear congruential generator (Numerical Recipes constants). */
class Lcg {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (Math.imul(this.state, 1664525) + 1013904223) >>> 0;
    return this.state;
  }
  /** Uniform-ish integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.next() / 0x1_0000_0000) * n);
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.next() >>> 24);
  }
}

/** Reference semantics for the log, written independently of the implementation. */
function applyToModel(log: Entry[], entries: readonly Entry[]): Entry[] {
  const first = entries[0];
  if (first === undefined) return log;
  return [...log.filter((entry) => entry.index < first.index), ...entries];
}

// ---------------------------------------------------------------------------------------------
// Tests

t.test('CRC-32C matches the Castagnoli check value and composes incrementally', async (tt) => {
  const bytes = new TextEncoder().encode('123456789');
  tt.equal(crc32c(bytes), 0xe3069283);
  tt.equal(crc32c(bytes.subarray(4), crc32c(bytes.subarray(0, 4))), 0xe3069283);
  tt.equal(crc32c(new Uint8Array(32)), 0x8a9136aa, '32 zero bytes (RFC 3720 B.4)');
});

t.test('a fresh directory opens empty with 0700 directories and one header-only segment', async (tt) => {
  const dir = join(await tempDir(tt), 'data');
  const { storage } = await openStorage(dir);
  tt.strictSame(storage.load(), { hardState: emptyHardState, snapshot: null, entries: [] });
  await storage.close();
  await storage.close(); // idempotent
  tt.equal((await stat(dir)).mode & 0o777, 0o700);
  tt.equal((await stat(join(dir, 'wal'))).mode & 0o777, 0o700);
  const files = await walFiles(dir);
  tt.strictSame(files, [join(dir, 'wal', '0000000000000001.wal')]);
  tt.equal(await sizeOf(files[0]!), segmentHeaderRecordBytes);
  tt.strictSame((await reload(dir)).state.entries, []);
});

t.test('round trip: hard state and all three entry types survive close and reopen', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir);
  const entries = [
    noop(1, 1),
    command(2, 1, [1, 2, 3, 0, 255]),
    membership(3, 1, ['cp1', 'cp2', 'cp3']),
    command(4, 1, []),
  ];
  await storage.save({ hardState: hardState(1, 'cp2', 0), entries: entries.slice(0, 2), snapshot: null });
  await storage.save({ hardState: null, entries: entries.slice(2), snapshot: null });
  await storage.save({ hardState: hardState(1, 'cp2', 3), entries: [], snapshot: null });
  await storage.save({ hardState: null, entries: [], snapshot: null }); // nothing to write
  await storage.close();

  const { state, events } = await reload(dir);
  tt.strictSame(state, { hardState: hardState(1, 'cp2', 3), snapshot: null, entries });
  const data = (state.entries[1] as Extract<Entry, { type: 'command' }>).data;
  tt.equal(data.constructor, Uint8Array, 'command data decodes as a plain Uint8Array');
  tt.equal(data.buffer.byteLength, 5, 'command data does not pin the segment buffer');
  tt.strictSame(warnings(events), []);
});

t.test('overwrite: entries 3..4 of term 2 replace the uncommitted suffix 3..5 of term 1', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir);
  await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 5, 1), snapshot: null });
  await storage.save({ hardState: hardState(2, 'cp3', 2), entries: commands(3, 4, 2), snapshot: null });
  await storage.close();
  const { state } = await reload(dir);
  tt.strictSame(state.entries, [...commands(1, 2, 1), ...commands(3, 4, 2)]);
  tt.strictSame(state.hardState, hardState(2, 'cp3', 2));
});

t.test('segment rollover: tiny segments replay in order across files', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir, 256);
  let expected: Entry[] = [];
  for (let index = 1; index <= 40; index += 1) {
    // Every fifth save overwrites the previous entry, possibly across a segment boundary.
    const entries = index % 5 === 0 ? [command(index - 1, 2), command(index, 2)] : [command(index, 1)];
    await storage.save({ hardState: hardState(2, null, index - 1), entries, snapshot: null });
    expected = applyToModel(expected, entries);
  }
  await storage.close();
  const files = await walFiles(dir);
  tt.ok(files.length > 10, `${files.length} segments`);
  files.forEach((file, i) => tt.equal(file, join(dir, 'wal', segmentFileName(i + 1))));
  for (const file of files) tt.ok((await sizeOf(file)) <= 256, `${file} within segmentSizeBytesMax`);
  const { state } = await reload(dir);
  tt.strictSame(state.entries, expected);
  tt.strictSame(state.hardState, hardState(2, null, 39));
});

t.test('torn tail: every cut inside the last record is truncated back and appending resumes', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir);
  await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 2, 1), snapshot: null });
  await storage.save({ hardState: hardState(1, 'cp1', 2), entries: [membership(3, 1, ['cp1', 'cp2'])], snapshot: null });
  await storage.close();
  const segment = await lastSegment(dir);
  const keptSizeBytes = await sizeOf(segment);
  const reopened = await openStorage(dir);
  await reopened.storage.save({ hardState: hardState(1, 'cp1', 3), entries: commands(4, 6, 1), snapshot: null });
  await reopened.storage.close();
  const full = await readFile(segment);
  const expectedBefore = [...commands(1, 2, 1), membership(3, 1, ['cp1', 'cp2'])];

  for (let cut = keptSizeBytes; cut < full.length; cut += 1) {
    await writeFile(segment, full.subarray(0, cut));
    const { storage: cutStorage, events } = await openStorage(dir);
    const state = cutStorage.load();
    const ok =
      JSON.stringify(state.entries.map((entry) => entry.index)) === '[1,2,3]' &&
      state.hardState.commitIndex === 2 &&
      (await sizeOf(segment)) === keptSizeBytes;
    const warned = warnings(events);
    const warnOk = cut === keptSizeBytes
      ? warned.length === 0
      : warned.length === 1 && warned[0]!.file === segment && warned[0]!.offset === keptSizeBytes &&
        warned[0]!.bytesDropped === cut - keptSizeBytes;
    if (!ok || !warnOk) {
      tt.fail(`cut at ${cut}: recovered ${JSON.stringify(state.entries.map((entry) => entry.index))}, events ${JSON.stringify(events)}`);
      await cutStorage.close();
      break;
    }
    await cutStorage.save({ hardState: hardState(1, 'cp1', 3), entries: [noop(4, 1)], snapshot: null });
    await cutStorage.close();
    const after = await reload(dir);
    if (after.state.entries.length !== 4 || warnings(after.events).length !== 0) {
      tt.fail(`cut at ${cut}: append after truncation did not survive reopen`);
      break;
    }
  }
  tt.pass(`cuts ${keptSizeBytes}..${full.length - 1} all recovered [1,2,3] and resumed`);
  const final = await reload(dir);
  tt.strictSame(final.state.entries, [...expectedBefore, noop(4, 1)]);
});

t.test('garbage tail: zeros or random bytes after the last record are truncated with a warning', async (tt) => {
  const random = new Lcg(7);
  const tails: [string, Uint8Array][] = [
    ['1 zero byte', new Uint8Array(1)],
    ['9 zero bytes', new Uint8Array(9)],
    ['4096 zero bytes', new Uint8Array(4096)],
    ['3 random bytes', random.bytes(3)],
    ['5000 random bytes', random.bytes(5000)],
  ];
  for (const [label, tail] of tails) {
    const dir = await tempDir(tt);
    const { storage } = await openStorage(dir);
    await storage.save({ hardState: hardState(3, 'cp2', 1), entries: commands(1, 3, 3), snapshot: null });
    await storage.close();
    const segment = await lastSegment(dir);
    const sizeBytes = await sizeOf(segment);
    await appendFile(segment, tail);
    const { state, events } = await reload(dir);
    tt.strictSame(state.entries, commands(1, 3, 3), `${label}: entries intact`);
    tt.equal(await sizeOf(segment), sizeBytes, `${label}: truncated to the last record`);
    const warned = warnings(events);
    tt.equal(warned.length, 1, `${label}: one warning`);
    tt.match(warned[0], { file: segment, offset: sizeBytes, bytesDropped: tail.length });
  }
});

t.test('a flipped byte in a middle record is refused and the file is left untouched', async (tt) => {
  for (const [label, offsetInRecord] of [['payload', 20], ['length field', 1], ['CRC field', 5], ['type byte', 8]] as const) {
    const dir = await tempDir(tt);
    const { storage } = await openStorage(dir);
    await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 2, 1), snapshot: null });
    const segment = await lastSegment(dir);
    const middleOffset = await sizeOf(segment);
    await storage.save({ hardState: hardState(1, 'cp1', 2), entries: commands(3, 4, 1), snapshot: null });
    await storage.save({ hardState: hardState(1, 'cp1', 4), entries: commands(5, 6, 1), snapshot: null });
    await storage.close();
    await flipByte(segment, middleOffset + offsetInRecord);
    const before = await readFile(segment);
    await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_WAL_CORRUPT', file: segment, offset: middleOffset }, label);
    const error = await FileStorage.open(dir).catch((caught: Error) => caught);
    tt.ok(error instanceof Error && error.message.includes(segment), `${label}: message names the file`);
    tt.ok(error instanceof Error && error.message.includes(`byte offset ${middleOffset}`), `${label}: message names the offset`);
    tt.match((error as Error).message, /valid records follow/, `${label}: message says valid records follow`);
    tt.match((error as Error).message, /restore this node from a peer/i, `${label}: message says what to do`);
    tt.ok(before.equals(await readFile(segment)), `${label}: file unchanged`);
  }
});

t.test('a bad final record in a segment that is not the last is corruption, not a torn tail', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir, 64);
  for (let index = 1; index <= 4; index += 1) {
    await storage.save({ hardState: null, entries: [command(index, 1)], snapshot: null });
  }
  await storage.close();
  const files = await walFiles(dir);
  tt.ok(files.length >= 3);
  const victim = files[files.length - 2]!;
  const victimSizeBytes = await sizeOf(victim);
  await flipByte(victim, victimSizeBytes - 1);
  await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_WAL_CORRUPT', file: victim, offset: segmentHeaderRecordBytes });
  tt.equal(await sizeOf(victim), victimSizeBytes);
});

t.test('a flipped byte in the last record is indistinguishable from a torn write: truncated', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir);
  await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 2, 1), snapshot: null });
  const segment = await lastSegment(dir);
  const lastOffset = await sizeOf(segment);
  await storage.save({ hardState: hardState(1, 'cp1', 2), entries: commands(3, 4, 1), snapshot: null });
  await storage.close();
  await flipByte(segment, (await sizeOf(segment)) - 3);
  const { state, events } = await reload(dir);
  tt.strictSame(state.entries, commands(1, 2, 1));
  tt.strictSame(state.hardState, hardState(1, 'cp1', 0));
  tt.equal(await sizeOf(segment), lastOffset);
  tt.match(warnings(events), [{ file: segment, offset: lastOffset, reason: /CRC/ }]);
});

t.test('segment headers: bad magic and unknown version are refused, a torn one is removed', async (tt) => {
  const header = (magic: string, version: number, sequence: number) => {
    const payload = Buffer.alloc(14);
    payload.write(magic, 0, 'latin1');
    payload[5] = version;
    payload.writeBigUInt64LE(BigInt(sequence), 6);
    return encodeWalRecord(walRecordType.segmentHeader, payload);
  };
  {
    const dir = await tempDir(tt);
    await (await openStorage(dir)).storage.close();
    const segment = await lastSegment(dir);
    await writeFile(segment, header('RVXAL', 1, 1));
    await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_WAL_CORRUPT', file: segment, offset: 0 }, 'bad magic');
    await writeFile(segment, header('RVWAL', 2, 1));
    await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_STORAGE_VERSION_UNSUPPORTED', file: segment, version: 2 }, 'version 2');
    await writeFile(segment, header('RVWAL', 1, 9));
    await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_WAL_CORRUPT', message: /sequence 9/ }, 'sequence mismatch');
  }
  {
    // A crash inside segment creation: the new last segment holds part of its header.
    const dir = await tempDir(tt);
    const { storage } = await openStorage(dir, 64);
    await storage.save({ hardState: hardState(1, null, 0), entries: [command(1, 1)], snapshot: null });
    await storage.save({ hardState: hardState(1, null, 0), entries: [command(2, 1)], snapshot: null });
    await storage.close();
    const files = await walFiles(dir);
    tt.equal(files.length, 2);
    const torn = join(dir, 'wal', segmentFileName(3));
    await writeFile(torn, header('RVWAL', 1, 3).subarray(0, 11));
    const { state, events } = await reload(dir);
    tt.strictSame(state.entries, commands(1, 2, 1));
    tt.match(warnings(events), [{ file: torn, msg: /torn header/ }]);
    tt.strictSame(await walFiles(dir), files, 'torn segment removed');
    const again = await openStorage(dir, 64);
    await again.storage.save({ hardState: null, entries: [command(3, 1)], snapshot: null });
    await again.storage.close();
    tt.strictSame((await reload(dir)).state.entries, commands(1, 3, 1));
    tt.equal((await walFiles(dir)).length, 3);
  }
});

t.test('missing middle segment or a snapshot without any WAL is inconsistent', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir, 64);
  for (let index = 1; index <= 4; index += 1) {
    await storage.save({ hardState: hardState(1, null, 0), entries: [command(index, 1)], snapshot: null });
  }
  await storage.close();
  const files = await walFiles(dir);
  await rm(files[1]!);
  await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_STORAGE_INCONSISTENT', message: /missing/ });
  await rm(files[0]!);
  await tt.rejects(FileStorage.open(dir), { code: 'RAFTVIP_STORAGE_INCONSISTENT', message: /starts at index 3/ });

  const bare = await tempDir(tt);
  await writeFile(join(bare, 'snapshot.bin'), encodeSnapshotFile(snapshotAt(5, 1)));
  await tt.rejects(FileStorage.open(bare), { code: 'RAFTVIP_STORAGE_INCONSISTENT', message: /no WAL segment/ });
});

t.test('saveSnapshot compacts and every crash point between its steps recovers consistently', async (tt) => {
  const segmentSizeBytesMax = 512;
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir, segmentSizeBytesMax);
  for (let index = 1; index <= 100; index += 10) {
    await storage.save({ hardState: hardState(4, 'cp1', index - 1), entries: commands(index, index + 9, 4), snapshot: null });
  }
  await storage.close();
  const before = await tempDir(tt);
  await copyDirectory(dir, before);
  const oldFiles = (await walFiles(dir)).map((file) => file.split('/').pop()!);
  tt.ok(oldFiles.length >= 3, `${oldFiles.length} segments before compaction`);

  const snapshot = snapshotAt(80, 4);
  const finalHardState = hardState(4, 'cp1', 100);
  const reopened = await openStorage(dir, segmentSizeBytesMax);
  await reopened.storage.saveSnapshot(snapshot, finalHardState, commands(81, 100, 4));
  await reopened.storage.save({ hardState: null, entries: [noop(101, 4)], snapshot: null });
  await reopened.storage.close();
  const expected = { hardState: finalHardState, snapshot, entries: [...commands(81, 100, 4), noop(101, 4)] };

  {
    const { state } = await reload(dir);
    tt.strictSame(state, expected, 'snapshot + 81..101 after compaction');
    const files = await walFiles(dir);
    tt.equal(files[0], join(dir, 'wal', segmentFileName(oldFiles.length + 1)), 'old segments deleted');
  }
  {
    // Crash after step 1: snapshot.bin renamed, no new segment yet.
    const crashed = await tempDir(tt);
    await copyDirectory(before, crashed);
    await writeFile(join(crashed, 'snapshot.bin'), encodeSnapshotFile(snapshot));
    const { state } = await reload(crashed);
    tt.strictSame(state, { hardState: hardState(4, 'cp1', 90), snapshot, entries: commands(81, 100, 4) }, 'after rename');
  }
  {
    // Crash before step 1's rename: a stray temporary file next to the old state.
    const crashed = await tempDir(tt);
    await copyDirectory(before, crashed);
    await writeFile(join(crashed, 'snapshot.bin.tmp'), encodeSnapshotFile(snapshot).subarray(0, 10));
    const { state, events } = await reload(crashed);
    tt.strictSame(state, { hardState: hardState(4, 'cp1', 90), snapshot: null, entries: commands(1, 100, 4) }, 'before rename');
    tt.match(events, [{ level: 'info', msg: /leftover snapshot/ }]);
    await tt.rejects(stat(join(crashed, 'snapshot.bin.tmp')), { code: 'ENOENT' });
  }
  {
    // Crash inside step 3: the new segment holds only its header, old segments all present.
    const crashed = await tempDir(tt);
    await copyDirectory(before, crashed);
    await copyFile(join(dir, 'snapshot.bin'), join(crashed, 'snapshot.bin'));
    const newName = segmentFileName(oldFiles.length + 1);
    await writeFile(join(crashed, 'wal', newName), (await readFile(join(dir, 'wal', newName))).subarray(0, segmentHeaderRecordBytes + 7));
    const { state, events } = await reload(crashed);
    tt.strictSame(state, { hardState: hardState(4, 'cp1', 90), snapshot, entries: commands(81, 100, 4) }, 'torn compaction batch');
    tt.equal(warnings(events).length, 1);
  }
  {
    // Crash inside step 4: the newest old segments survive next to the new one.
    for (let survivors = 1; survivors < oldFiles.length; survivors += 1) {
      const crashed = await tempDir(tt);
      await copyDirectory(dir, crashed);
      for (const name of oldFiles.slice(oldFiles.length - survivors)) {
        await copyFile(join(before, 'wal', name), join(crashed, 'wal', name));
      }
      const { state } = await reload(crashed);
      tt.strictSame(state, expected, `${survivors} old segments survive`);
    }
  }
  {
    const corrupt = await tempDir(tt);
    await copyDirectory(dir, corrupt);
    await flipByte(join(corrupt, 'snapshot.bin'), 20);
    await tt.rejects(FileStorage.open(corrupt), { code: 'RAFTVIP_SNAPSHOT_CORRUPT', file: join(corrupt, 'snapshot.bin') });
    await writeFile(join(corrupt, 'snapshot.bin'), encodeSnapshotFile(snapshot).subarray(0, 25));
    await tt.rejects(FileStorage.open(corrupt), { code: 'RAFTVIP_SNAPSHOT_CORRUPT' });
    await writeFile(join(corrupt, 'snapshot.bin'), Buffer.from('not a snapshot at all'));
    await tt.rejects(FileStorage.open(corrupt), { code: 'RAFTVIP_SNAPSHOT_CORRUPT', message: /magic/ });
  }
});

t.test('saveSnapshot: entriesAfter is the whole log, even next to old segments that survived a crash', async (tt) => {
  const dir = await tempDir(tt);
  const { storage } = await openStorage(dir, 256);
  for (let index = 1; index <= 30; index += 5) {
    await storage.save({ hardState: hardState(2, 'cp1', 0), entries: commands(index, index + 4, 2), snapshot: null });
  }
  await storage.close();
  const before = await tempDir(tt);
  await copyDirectory(dir, before);
  const oldFiles = (await walFiles(dir)).map((file) => file.split('/').pop()!);
  const snapshot = snapshotAt(20, 2);
  const compacting = await openStorage(dir, 256);
  // The caller drops the suffix 21..30 (e.g. it installed a leader's snapshot this way).
  await compacting.storage.saveSnapshot(snapshot, hardState(3, null, 20), []);
  await compacting.storage.close();
  // Crash during step 4: the newest old segment, holding 26..30, survives.
  const survivor = oldFiles[oldFiles.length - 1]!;
  await copyFile(join(before, 'wal', survivor), join(dir, 'wal', survivor));
  tt.strictSame((await reload(dir)).state, { hardState: hardState(3, null, 20), snapshot, entries: [] });
});

t.test('save with a snapshot installs it with the rule of Raft §7', async (tt) => {
  {
    // The held entry at the snapshot index has another term: the whole log goes.
    const dir = await tempDir(tt);
    const { storage } = await openStorage(dir);
    await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 12, 1), snapshot: null });
    const snapshot = snapshotAt(11, 2);
    await storage.save({ hardState: hardState(2, null, 11), entries: [], snapshot });
    await storage.save({ hardState: null, entries: commands(12, 13, 2), snapshot: null });
    await storage.close();
    tt.strictSame((await reload(dir)).state, { hardState: hardState(2, null, 11), snapshot, entries: commands(12, 13, 2) }, 'conflict');
  }
  {
    // The held entry at the snapshot index has the snapshot's term: entries after it stay.
    const dir = await tempDir(tt);
    const { storage } = await openStorage(dir);
    await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 12, 1), snapshot: null });
    const snapshot = snapshotAt(10, 1);
    await storage.save({ hardState: hardState(1, 'cp1', 10), entries: [], snapshot });
    await storage.close();
    tt.strictSame((await reload(dir)).state, { hardState: hardState(1, 'cp1', 10), snapshot, entries: commands(11, 12, 1) }, 'match');
  }
  {
    // Crash after snapshot.bin was renamed but before the batch record was complete.
    const dir = await tempDir(tt);
    const { storage } = await openStorage(dir);
    await storage.save({ hardState: hardState(1, 'cp1', 0), entries: commands(1, 5, 1), snapshot: null });
    const segment = await lastSegment(dir);
    const sizeBytes = await sizeOf(segment);
    const snapshot = snapshotAt(8, 2);
    await storage.save({ hardState: hardState(2, null, 8), entries: [noop(9, 2)], snapshot });
    await storage.close();
    await truncate(segment, sizeBytes + 4);
    const { state, events } = await reload(dir);
    tt.strictSame(state, { hardState: hardState(1, 'cp1', 0), snapshot, entries: [] }, 'log behind the snapshot is dropped');
    tt.equal(warnings(events).length, 1);
  }
});

t.test('limits and lifecycle: options, oversized batches, overlapping saves', async (tt) => {
  const dir = await tempDir(tt);
  await tt.rejects(FileStorage.open(dir, { segmentSizeBytesMax: 10 }), { code: 'RAFTVIP_STORAGE_INVALID_OPTION', option: 'segmentSizeBytesMax' });
  const { storage } = await openStorage(dir);
  const huge = { ...command(1, 1), data: new Uint8Array(walRecordSizeBytesMax + 1) } as Entry;
  await tt.rejects(storage.save({ hardState: null, entries: [huge], snapshot: null }), { code: 'RAFTVIP_STORAGE_RECORD_TOO_LARGE' });
  await storage.save({ hardState: null, entries: [command(1, 1)], snapshot: null });
  const first = storage.save({ hardState: null, entries: [command(2, 1)], snapshot: null });
  await tt.rejects(storage.save({ hardState: null, entries: [command(3, 1)], snapshot: null }), { name: 'RaftAssertionError' });
  await first;
  await tt.rejects(storage.save({ hardState: null, entries: [command(5, 1), command(7, 1)], snapshot: null }), { name: 'RaftAssertionError' });
  await storage.close();
  await tt.rejects(storage.save({ hardState: null, entries: [], snapshot: null }), { name: 'RaftAssertionError' });
  tt.strictSame((await reload(dir)).state.entries, commands(1, 2, 1));
});

t.test('fuzz: random saves and compactions, random cuts of the last segment, reopen yields the complete saves', async (tt) => {
  const seed = 0x5eed_2024;
  tt.comment(`seed ${seed}`);
  const random = new Lcg(seed);
  const dir = await tempDir(tt);
  const segmentSizeBytesMax = 512;
  type Model = { hardState: HardState; snapshot: Snapshot | null; entries: Entry[] };
  interface Checkpoint {
    segment: string;
    /** Size of `segment` once the save was durable. */
    endOffset: number;
    model: Model;
  }
  let model: Model = { hardState: emptyHardState, snapshot: null, entries: [] };
  let currentTerm = 1;
  const rounds = 150;
  const counts = { saves: 0, compactions: 0, rolls: 0, cutsInsideRecords: 0 };
  for (let round = 0; round < rounds; round += 1) {
    const { storage } = await openStorage(dir, segmentSizeBytesMax);
    const loaded = storage.load();
    if (JSON.stringify(loaded) !== JSON.stringify(model)) {
      tt.strictSame(loaded, model, `seed ${seed} round ${round}: reopen matches the model`);
      await storage.close();
      return;
    }
    let segment = await lastSegment(dir);
    // Cuts below `floor` in its segment would fabricate states that cannot exist: saveSnapshot
    // deletes the old segments only after its new segment's batch is durable.
    let floor = { segment, offset: await sizeOf(segment) };
    const checkpoints: Checkpoint[] = [{ segment, endOffset: floor.offset, model }];
    const saves = 1 + random.below(6);
    for (let k = 0; k < saves; k += 1) {
      const snapshotIndex = model.snapshot?.meta.index ?? 0;
      const lastIndex = model.entries.length === 0 ? snapshotIndex : model.entries[model.entries.length - 1]!.index;
      if (random.below(8) === 0 && lastIndex > 0) {
        const index = snapshotIndex + random.below(lastIndex - snapshotIndex + 1);
        const snapshotTerm = index === snapshotIndex ? model.snapshot!.meta.term : model.entries.find((entry) => entry.index === index)!.term;
        const snapshot: Snapshot = {
          meta: { index: logIndex(index), term: snapshotTerm, membership: { voters: [nodeId('cp1')] } },
          data: random.bytes(random.below(100)),
        };
        const entriesAfter = model.entries.filter((entry) => entry.index > index);
        await storage.saveSnapshot(snapshot, model.hardState, entriesAfter);
        model = { hardState: model.hardState, snapshot, entries: entriesAfter };
        segment = await lastSegment(dir);
        floor = { segment, offset: await sizeOf(segment) };
        checkpoints.push({ segment, endOffset: floor.offset, model });
        counts.compactions += 1;
        continue;
      }
      if (random.below(4) === 0) currentTerm += 1;
      const firstIndex = Math.max(snapshotIndex + 1, lastIndex + 1 - random.below(4));
      const count = random.below(5);
      const entries = Array.from({ length: count }, (_, j): Entry => {
        const index = firstIndex + j;
        switch (random.below(3)) {
          case 0: return noop(index, currentTerm);
          case 1: return command(index, currentTerm, Array.from(random.bytes(random.below(40))));
          default: return membership(index, currentTerm, ['cp1', 'cp2', `cp${3 + random.below(3)}`]);
        }
      });
      const newHardState = random.below(3) === 0 && count > 0
        ? null
        : hardState(currentTerm, random.below(2) === 0 ? null : 'cp2', Math.max(0, lastIndex - 2));
      await storage.save({ hardState: newHardState, entries, snapshot: null });
      const previous = model;
      model = { hardState: newHardState ?? model.hardState, snapshot: model.snapshot, entries: applyToModel(model.entries, entries) };
      const after = await lastSegment(dir);
      if (after !== segment) {
        // The save rolled: a new segment was created, first holding only its header.
        checkpoints.push({ segment: after, endOffset: 0, model: previous });
        segment = after;
        counts.rolls += 1;
      }
      checkpoints.push({ segment, endOffset: await sizeOf(segment), model });
      counts.saves += 1;
    }
    await storage.close();
    const low = floor.segment === segment ? floor.offset : 0;
    const end = await sizeOf(segment);
    const cut = low + random.below(end - low + 1);
    await truncate(segment, cut);
    if (random.below(3) === 0) await appendFile(segment, random.below(2) === 0 ? new Uint8Array(random.below(64)) : random.bytes(random.below(64)));
    const survivors = checkpoints.filter((checkpoint) => checkpoint.segment === segment && checkpoint.endOffset <= cut);
    if (!checkpoints.some((checkpoint) => checkpoint.segment === segment && checkpoint.endOffset === cut)) counts.cutsInsideRecords += 1;
    model = survivors[survivors.length - 1]!.model;
  }
  const { state } = await reload(dir);
  tt.strictSame(state, model, `seed ${seed}: final state matches the model after ${rounds} rounds`);
  tt.comment(JSON.stringify(counts));
  tt.ok(counts.compactions > 5 && counts.rolls > 5 && counts.cutsInsideRecords > 50, 'the loop exercised compaction, rollover and torn records');
});
