// Durable storage for one node's Raft state: the hard state (term, vote, commit hint), the
// latest snapshot, and the log after it. This module owns the files under `dataDir`, their
// formats, crash recovery on open, and the single durability point `save()` that the driver
// awaits before it sends any message (STYLE rule 2: persist → send → apply → advance).
//
// Layout of `dataDir` (directories 0700, files 0600):
//
//   wal/0000000000000001.wal   write-ahead-log segments; 16 lowercase hex digits = sequence
//   wal/0000000000000002.wal   number; only the highest-numbered segment is ever appended to
//   snapshot.bin               the latest snapshot, replaced atomically
//   snapshot.bin.tmp           only between write and rename; deleted on open
//
// WAL record framing (little-endian):
//
//   [u32 payload length][u32 CRC-32C of (type byte + payload)][u8 record type][payload]
//
// Record types:
//   1 segment header: "RVWAL" | u8 format version (1) | u64 segment sequence number. It is the
//     first record of every segment, written and fsynced on its own before anything else.
//   2 batch: msgpack `{ snapshotMark, entries, hardState }`, one record per save(). One record
//     per save (rather than separate entries and hard-state records) makes every save atomic
//     under its CRC, so a torn write is dropped whole and is never half replayed; and it makes
//     "valid record after a bad one" a reliable sign of damage rather than of the kernel
//     persisting the pages of one unacknowledged write out of order.
//
// Replay, in segment order then file order, applies each batch as: snapshot mark (if any), then
// entries, then hard state. An entries list whose first index is i discards every held entry
// with index >= i and appends (a new leader overwriting an uncommitted suffix, §5.3, is written
// as an append). A snapshot mark of kind 'install' applies §7's rule: keep the entries after the
// snapshot if the held entry at its index has its term, otherwise discard the whole log. A mark
// of kind 'compact' (from saveSnapshot) discards everything held; its batch carries the entries
// after the snapshot in full. The last hard state wins. Finally snapshot.bin is applied with
// the same §7 rule, which covers a crash between renaming snapshot.bin and writing its mark.
//
// snapshot.bin: "RVSNAP" | u16 format version (1) | u32 CRC-32C of payload | u32 payload length
// | msgpack `{ meta, data }`.
//
// Damage found on open: a bad record at the tail of the last segment with no valid record
// after it is a torn write that was never acknowledged (save() resolves only after fdatasync),
// so it is truncated away with a warning. Any other damage is a StorageCorruptError and the
// files are left untouched for the operator.

import { assert } from './assert.js';
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Packr } from 'msgpackr';
import { crc32c } from './crc32c.js';
import {
  SnapshotCorruptError,
  StorageCorruptError,
  StorageFailedError,
  StorageInconsistentError,
  StorageOptionError,
  StorageRecordTooLargeError,
  StorageVersionError,
} from './storage-errors.js';
import {
  emptyHardState,
  logIndex,
  nodeId,
  term,
  type Entry,
  type HardState,
  type LogIndex,
  type Membership,
  type PersistentState,
  type Snapshot,
  type SnapshotMeta,
  type Term,
} from './types.js';

/** Default size at which the driver's next save starts a new segment. Bounds how much one
 * segment read costs on open and how long obsolete data lingers before compaction deletes it. */
export const walSegmentSizeBytesMax = 8 * 1024 * 1024;
/** Smallest accepted `segmentSizeBytesMax` option (tests roll segments every record or two). */
export const walSegmentSizeBytesOptionMin = 64;
/** Largest accepted `segmentSizeBytesMax` option: a segment is read into memory whole on open. */
export const walSegmentSizeBytesOptionMax = 1024 * 1024 * 1024;
/** Largest record payload. A length field above this is corruption, not a reason to allocate. */
export const walRecordSizeBytesMax = 64 * 1024 * 1024;
/** Largest snapshot payload; snapshot.bin is read into memory whole. */
export const snapshotSizeBytesMax = 512 * 1024 * 1024;

const walFormatVersion = 1;
const snapshotFormatVersion = 1;
const walMagic = Buffer.from('RVWAL', 'latin1');
const snapshotMagic = Buffer.from('RVSNAP', 'latin1');

const recordLengthOffset = 0;
const recordCrcOffset = 4;
const recordTypeOffset = 8;
const recordHeaderBytes = 9;

const segmentHeaderPayloadBytes = walMagic.length + 1 + 8;
/** Size of a segment that holds nothing but its header record. */
export const segmentHeaderRecordBytes = recordHeaderBytes + segmentHeaderPayloadBytes;

const snapshotVersionOffset = snapshotMagic.length;
const snapshotCrcOffset = snapshotVersionOffset + 2;
const snapshotLengthOffset = snapshotCrcOffset + 4;
const snapshotHeaderBytes = snapshotLengthOffset + 4;

const walDirectoryName = 'wal';
const snapshotFileName = 'snapshot.bin';
const snapshotTmpFileName = 'snapshot.bin.tmp';
const segmentFileNamePattern = /^([0-9a-f]{16})\.wal$/;

const directoryMode = 0o700;
const fileMode = 0o600;

export const walRecordType = { segmentHeader: 1, batch: 2 } as const;
export type WalRecordType = (typeof walRecordType)[keyof typeof walRecordType];
const walRecordTypes: ReadonlySet<number> = new Set(Object.values(walRecordType));

/** msgpack with no records/structures extension, so a file never depends on state built up in
 * the writing process, and copyBuffers so decoded byte strings are standalone Uint8Arrays
 * (decoded from a plain Uint8Array view) instead of views pinning a whole segment in memory. */
const packr = new Packr({ useRecords: false, moreTypes: false, copyBuffers: true });

export interface StorageLogEvent {
  readonly level: 'warn' | 'info';
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface FileStorageOptions {
  /** Receives recovery warnings (truncated torn tails) and lifecycle notes. Default: dropped. */
  readonly log?: (event: StorageLogEvent) => void;
  /** A save that would grow the current segment beyond this starts a new segment first. */
  readonly segmentSizeBytesMax?: number;
}

/** One `Ready`'s worth of persistent state, written by `save()` as one record. */
export interface StorageBatch {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
}

// ---------------------------------------------------------------------------------------------
// Record codec (pure)

/** Frames one WAL record. Throws StorageRecordTooLargeError before anything is written. */
export function encodeWalRecord(type: WalRecordType, payload: Uint8Array): Uint8Array {
  if (payload.length > walRecordSizeBytesMax) {
    throw new StorageRecordTooLargeError({
      what: 'WAL record payload',
      sizeBytes: payload.length,
      sizeBytesMax: walRecordSizeBytesMax,
    });
  }
  const record = Buffer.alloc(recordHeaderBytes + payload.length);
  record.writeUInt32LE(payload.length, recordLengthOffset);
  record[recordTypeOffset] = type;
  record.set(payload, recordHeaderBytes);
  record.writeUInt32LE(crc32c(record.subarray(recordTypeOffset)), recordCrcOffset);
  return record;
}

export interface ScannedRecord {
  readonly offset: number;
  readonly type: number;
  readonly payload: Uint8Array;
}

export type SegmentScanEnd =
  /** The last record ends exactly at end of file. */
  | { readonly kind: 'clean' }
  /** The record at `offset` is bad and no valid record starts anywhere after it. */
  | { readonly kind: 'torn'; readonly offset: number; readonly reason: string }
  /** The record at `offset` is bad but a valid record starts at `nextValidOffset`. */
  | { readonly kind: 'corrupt'; readonly offset: number; readonly reason: string; readonly nextValidOffset: number };

export interface SegmentScan {
  /** The valid records from offset 0 up to the first bad one. */
  readonly records: readonly ScannedRecord[];
  readonly end: SegmentScanEnd;
}

type RecordCheck =
  | { readonly ok: true; readonly type: number; readonly payload: Uint8Array; readonly end: number }
  | { readonly ok: false; readonly reason: string };

function checkRecordAt(bytes: Uint8Array, view: DataView, offset: number): RecordCheck {
  const remaining = bytes.length - offset;
  if (remaining < recordHeaderBytes) {
    return { ok: false, reason: `partial record header (${remaining} of ${recordHeaderBytes} bytes)` };
  }
  const length = view.getUint32(offset + recordLengthOffset, true);
  if (length > walRecordSizeBytesMax) {
    return { ok: false, reason: `length field ${length} exceeds walRecordSizeBytesMax ${walRecordSizeBytesMax}` };
  }
  const end = offset + recordHeaderBytes + length;
  if (end > bytes.length) {
    return { ok: false, reason: `record of ${length} payload bytes runs ${end - bytes.length} bytes past end of file` };
  }
  const crcStored = view.getUint32(offset + recordCrcOffset, true);
  const crcActual = crc32c(bytes.subarray(offset + recordTypeOffset, end));
  if (crcStored !== crcActual) {
    return { ok: false, reason: 'CRC-32C mismatch' };
  }
  return { ok: true, type: bytes[offset + recordTypeOffset]!, payload: bytes.subarray(offset + recordHeaderBytes, end), end };
}

/** First offset >= `from` where a complete record of a known type with a matching CRC starts.
 * A torn write leaves at most one damaged record and nothing after it, so any hit means the
 * damage is in the middle. Random bytes pass this test with probability ~2^-32 per position. */
function findValidRecordFrom(bytes: Uint8Array, view: DataView, from: number): number | null {
  for (let offset = from; offset + recordHeaderBytes <= bytes.length; offset += 1) {
    const length = view.getUint32(offset + recordLengthOffset, true);
    if (length > walRecordSizeBytesMax || offset + recordHeaderBytes + length > bytes.length) continue;
    if (!walRecordTypes.has(bytes[offset + recordTypeOffset]!)) continue;
    if (checkRecordAt(bytes, view, offset).ok) return offset;
  }
  return null;
}

/** Splits a segment's bytes into valid records and classifies whatever follows the last one. */
export function scanSegment(bytes: Uint8Array): SegmentScan {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: ScannedRecord[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const check = checkRecordAt(bytes, view, offset);
    if (!check.ok) {
      const nextValidOffset = findValidRecordFrom(bytes, view, offset + 1);
      const end: SegmentScanEnd =
        nextValidOffset === null
          ? { kind: 'torn', offset, reason: check.reason }
          : { kind: 'corrupt', offset, reason: check.reason, nextValidOffset };
      return { records, end };
    }
    records.push({ offset, type: check.type, payload: check.payload });
    offset = check.end;
  }
  return { records, end: { kind: 'clean' } };
}

export function segmentFileName(sequence: number): string {
  assert(Number.isSafeInteger(sequence) && sequence >= 1, `segment sequence ${sequence} out of range`);
  return `${sequence.toString(16).padStart(16, '0')}.wal`;
}

function encodeSegmentHeader(sequence: number): Uint8Array {
  const payload = Buffer.alloc(segmentHeaderPayloadBytes);
  payload.set(walMagic, 0);
  payload[walMagic.length] = walFormatVersion;
  payload.writeBigUInt64LE(BigInt(sequence), walMagic.length + 1);
  return encodeWalRecord(walRecordType.segmentHeader, payload);
}

/** Checks a segment's first record. Throws the typed error the operator should see. */
function checkSegmentHeader(record: ScannedRecord, options: { file: string; sequence: number }): void {
  const { file } = options;
  const corrupt = (detail: string) => new StorageCorruptError({ file, offset: record.offset, detail });
  if (record.type !== walRecordType.segmentHeader) {
    throw corrupt(`the first record has type ${record.type}, not a segment header`);
  }
  const payload = Buffer.from(record.payload.buffer, record.payload.byteOffset, record.payload.byteLength);
  if (payload.length < walMagic.length + 1 || !payload.subarray(0, walMagic.length).equals(walMagic)) {
    throw corrupt('the segment header does not start with the magic "RVWAL"');
  }
  const version = payload[walMagic.length]!;
  if (version !== walFormatVersion) {
    throw new StorageVersionError({ file, version, versionSupported: walFormatVersion });
  }
  if (payload.length !== segmentHeaderPayloadBytes) {
    throw corrupt(`the segment header payload is ${payload.length} bytes, expected ${segmentHeaderPayloadBytes}`);
  }
  const sequence = payload.readBigUInt64LE(walMagic.length + 1);
  if (sequence !== BigInt(options.sequence)) {
    throw corrupt(`the segment header says sequence ${sequence} but the file name says ${options.sequence}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Value codec (pure). Decoders rebuild every object field by field, so nothing but the declared
// shape reaches the Raft core, and a checksummed-but-malformed record is reported, not trusted.

type SnapshotMarkKind = 'install' | 'compact';

interface SnapshotMark {
  readonly index: LogIndex;
  readonly term: Term;
  readonly kind: SnapshotMarkKind;
}

interface WalBatch {
  readonly snapshotMark: SnapshotMark | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
}

/** A decoded value does not have the declared shape. Callers wrap it in a typed error. */
class FormatError extends Error {}

function expectObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new FormatError(`${what} is not a map`);
  }
  return value as Record<string, unknown>;
}

function expectCount(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FormatError(`${what} is not a non-negative integer`);
  }
  return value;
}

function expectString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new FormatError(`${what} is not a string`);
  return value;
}

function expectBytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new FormatError(`${what} is not a byte string`);
  return value;
}

function encodeMembership(membership: Membership): unknown {
  return { voters: [...membership.voters] };
}

function decodeMembership(value: unknown, what: string): Membership {
  const fields = expectObject(value, what);
  if (!Array.isArray(fields.voters)) throw new FormatError(`${what}.voters is not an array`);
  return { voters: fields.voters.map((voter, i) => nodeId(expectString(voter, `${what}.voters[${i}]`))) };
}

function encodeEntry(entry: Entry): unknown {
  switch (entry.type) {
    case 'noop':
      return { term: entry.term, index: entry.index, type: entry.type };
    case 'command':
      return { term: entry.term, index: entry.index, type: entry.type, data: entry.data };
    case 'membership':
      return { term: entry.term, index: entry.index, type: entry.type, membership: encodeMembership(entry.membership) };
    default: {
      const unknownEntry: never = entry;
      throw new Error(`unknown entry type ${(unknownEntry as { type: unknown }).type}`);
    }
  }
}

function decodeEntry(value: unknown, what: string): Entry {
  const fields = expectObject(value, what);
  const entryTerm = term(expectCount(fields.term, `${what}.term`));
  const index = logIndex(expectCount(fields.index, `${what}.index`));
  if (index < 1) throw new FormatError(`${what}.index is 0`);
  const type = expectString(fields.type, `${what}.type`);
  switch (type) {
    case 'noop':
      return { term: entryTerm, index, type };
    case 'command':
      return { term: entryTerm, index, type, data: expectBytes(fields.data, `${what}.data`) };
    case 'membership':
      return { term: entryTerm, index, type, membership: decodeMembership(fields.membership, `${what}.membership`) };
    default:
      throw new FormatError(`${what}.type "${type}" is not an entry type`);
  }
}

function encodeHardState(hardState: HardState): unknown {
  return { term: hardState.term, votedFor: hardState.votedFor, commitIndex: hardState.commitIndex };
}

function decodeHardState(value: unknown, what: string): HardState {
  const fields = expectObject(value, what);
  const votedFor = fields.votedFor === null ? null : nodeId(expectString(fields.votedFor, `${what}.votedFor`));
  return {
    term: term(expectCount(fields.term, `${what}.term`)),
    votedFor,
    commitIndex: logIndex(expectCount(fields.commitIndex, `${what}.commitIndex`)),
  };
}

function decodeSnapshotMeta(value: unknown, what: string): SnapshotMeta {
  const fields = expectObject(value, what);
  return {
    index: logIndex(expectCount(fields.index, `${what}.index`)),
    term: term(expectCount(fields.term, `${what}.term`)),
    membership: decodeMembership(fields.membership, `${what}.membership`),
  };
}

function decodeSnapshotMark(value: unknown, what: string): SnapshotMark {
  const fields = expectObject(value, what);
  const kind = expectString(fields.kind, `${what}.kind`);
  if (kind !== 'install' && kind !== 'compact') throw new FormatError(`${what}.kind "${kind}" is unknown`);
  return {
    index: logIndex(expectCount(fields.index, `${what}.index`)),
    term: term(expectCount(fields.term, `${what}.term`)),
    kind,
  };
}

/** msgpack output is copied straight away: msgpackr hands out views of a reused buffer. */
function pack(value: unknown): Uint8Array {
  return new Uint8Array(packr.pack(value));
}

function unpack(bytes: Uint8Array, what: string): unknown {
  try {
    // A plain Uint8Array view (not a Buffer) so that copied byte strings are Uint8Arrays too.
    return packr.unpack(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    throw new FormatError(`${what} is not valid msgpack (${(error as Error).message})`);
  }
}

function encodeBatchPayload(batch: WalBatch): Uint8Array {
  return pack({
    snapshotMark: batch.snapshotMark,
    entries: batch.entries.map(encodeEntry),
    hardState: batch.hardState === null ? null : encodeHardState(batch.hardState),
  });
}

function decodeBatchPayload(payload: Uint8Array): WalBatch {
  const fields = expectObject(unpack(payload, 'batch'), 'batch');
  if (!Array.isArray(fields.entries)) throw new FormatError('batch.entries is not an array');
  const entries = fields.entries.map((entry, i) => decodeEntry(entry, `batch.entries[${i}]`));
  for (let i = 1; i < entries.length; i += 1) {
    if (entries[i]!.index !== entries[i - 1]!.index + 1) {
      throw new FormatError(`batch.entries[${i}] has index ${entries[i]!.index} after ${entries[i - 1]!.index}`);
    }
  }
  return {
    snapshotMark: fields.snapshotMark === null ? null : decodeSnapshotMark(fields.snapshotMark, 'batch.snapshotMark'),
    entries,
    hardState: fields.hardState === null ? null : decodeHardState(fields.hardState, 'batch.hardState'),
  };
}

/** The complete contents of snapshot.bin. Throws StorageRecordTooLargeError if too large. */
export function encodeSnapshotFile(snapshot: Snapshot): Uint8Array {
  const payload = pack({
    meta: {
      index: snapshot.meta.index,
      term: snapshot.meta.term,
      membership: encodeMembership(snapshot.meta.membership),
    },
    data: snapshot.data,
  });
  if (payload.length > snapshotSizeBytesMax) {
    throw new StorageRecordTooLargeError({
      what: 'snapshot payload',
      sizeBytes: payload.length,
      sizeBytesMax: snapshotSizeBytesMax,
    });
  }
  const bytes = Buffer.alloc(snapshotHeaderBytes + payload.length);
  bytes.set(snapshotMagic, 0);
  bytes.writeUInt16LE(snapshotFormatVersion, snapshotVersionOffset);
  bytes.writeUInt32LE(crc32c(payload), snapshotCrcOffset);
  bytes.writeUInt32LE(payload.length, snapshotLengthOffset);
  bytes.set(payload, snapshotHeaderBytes);
  return bytes;
}

/** Parses snapshot.bin. `file` only labels errors. */
export function decodeSnapshotFile(bytes: Uint8Array, file: string): Snapshot {
  const corrupt = (detail: string) => new SnapshotCorruptError({ file, detail });
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < snapshotHeaderBytes) {
    throw corrupt(`the file is ${buffer.length} bytes, shorter than its ${snapshotHeaderBytes}-byte header`);
  }
  if (!buffer.subarray(0, snapshotMagic.length).equals(snapshotMagic)) {
    throw corrupt('the file does not start with the magic "RVSNAP"');
  }
  const version = buffer.readUInt16LE(snapshotVersionOffset);
  if (version !== snapshotFormatVersion) {
    throw new StorageVersionError({ file, version, versionSupported: snapshotFormatVersion });
  }
  const length = buffer.readUInt32LE(snapshotLengthOffset);
  if (length > snapshotSizeBytesMax || snapshotHeaderBytes + length !== buffer.length) {
    throw corrupt(`the header says ${length} payload bytes but the file holds ${buffer.length - snapshotHeaderBytes}`);
  }
  const payload = buffer.subarray(snapshotHeaderBytes);
  if (crc32c(payload) !== buffer.readUInt32LE(snapshotCrcOffset)) {
    throw corrupt('CRC-32C mismatch');
  }
  try {
    const fields = expectObject(unpack(payload, 'snapshot'), 'snapshot');
    return {
      meta: decodeSnapshotMeta(fields.meta, 'snapshot.meta'),
      data: expectBytes(fields.data, 'snapshot.data'),
    };
  } catch (error) {
    if (error instanceof FormatError) throw corrupt(`checksum is valid but ${error.message}`);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Replay (pure)

/** The log as rebuilt from the WAL. Invariant: `entries` have consecutive indexes. */
class ReplayedLog {
  entries: Entry[] = [];

  /** Discards held entries at or after `list[0].index`, then appends `list`. */
  append(list: readonly Entry[]): void {
    const first = list[0];
    if (first === undefined) return;
    const heldFirst = this.entries[0];
    if (heldFirst === undefined || first.index > heldFirst.index + this.entries.length) {
      // Empty, or a gap after the held entries: they cannot connect to `list`. Only a snapshot
      // (applied later in replay or by reconcileWithSnapshot) can justify the new start.
      this.entries = [...list];
      return;
    }
    this.entries.length = Math.max(0, first.index - heldFirst.index);
    // A loop rather than push(...list): a 64 MiB record can hold more entries than a call has
    // argument slots.
    for (const entry of list) this.entries.push(entry);
  }

  termAt(index: number): Term | undefined {
    const heldFirst = this.entries[0];
    if (heldFirst === undefined || index < heldFirst.index) return undefined;
    return this.entries[index - heldFirst.index]?.term;
  }

  /**
   * §7 "InstallSnapshot receiver": if the held entry at the snapshot's index has the snapshot's
   * term, keep the entries after it; otherwise the log conflicts with (or lags) the snapshot and
   * is discarded. Returns false, changing nothing, when the held log starts after
   * `index + 1`, which the caller decides how to treat.
   */
  applySnapshot(meta: { index: LogIndex; term: Term }): boolean {
    const heldFirst = this.entries[0];
    if (heldFirst === undefined || heldFirst.index === meta.index + 1) return true;
    if (heldFirst.index > meta.index + 1) return false;
    const heldTerm = this.termAt(meta.index);
    this.entries = heldTerm === meta.term ? this.entries.slice(meta.index + 1 - heldFirst.index) : [];
    return true;
  }

  /** saveSnapshot's mark: the same batch carries every entry after the snapshot. */
  reset(): void {
    this.entries = [];
  }
}

// ---------------------------------------------------------------------------------------------
// File helpers

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** mkdir -p with mode 0700, then fsync every directory whose entries changed, so a crash cannot
 * forget a directory that a later fsynced file lives in. */
async function ensureDirectory(path: string): Promise<void> {
  const firstCreated = await mkdir(path, { recursive: true, mode: directoryMode });
  if (firstCreated === undefined) return;
  const stop = dirname(resolve(firstCreated));
  for (let directory = path; ; directory = dirname(directory)) {
    await fsyncDirectory(directory);
    if (directory === stop || directory === dirname(directory)) break;
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const result = await handle.write(bytes, written, bytes.length - written, position + written);
    assert(result.bytesWritten > 0, 'write returned 0 bytes');
    written += result.bytesWritten;
  }
}

async function truncateFile(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(sizeBytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/** Creates segment `sequence` holding only its header, durable (file and directory entry)
 * before it is returned, so a recovered segment always starts with a complete header unless the
 * crash hit this very function. */
async function createSegment(walDir: string, sequence: number): Promise<FileHandle> {
  const handle = await open(join(walDir, segmentFileName(sequence)), 'wx', fileMode);
  try {
    await writeAll(handle, encodeSegmentHeader(sequence), 0);
    await handle.datasync();
    await fsyncDirectory(walDir);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return handle;
}

function assertEntriesAfter(entries: readonly Entry[], afterIndex: number, what: string): void {
  const first = entries[0];
  if (first === undefined) return;
  assert(first.index > afterIndex, `${what}: entry index ${first.index} is not after snapshot index ${afterIndex}`);
  for (let i = 1; i < entries.length; i += 1) {
    assert(entries[i]!.index === entries[i - 1]!.index + 1, `${what}: entry indexes are not consecutive at position ${i}`);
  }
}

function validateSegmentSizeBytesMax(value: number): number {
  if (
    !Number.isSafeInteger(value) ||
    value < walSegmentSizeBytesOptionMin ||
    value > walSegmentSizeBytesOptionMax
  ) {
    throw new StorageOptionError({
      option: 'segmentSizeBytesMax',
      detail: `${value} is not an integer in [${walSegmentSizeBytesOptionMin}, ${walSegmentSizeBytesOptionMax}]`,
    });
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// FileStorage

type StorageState = 'idle' | 'writing' | 'failed' | 'closed';

interface FileStorageParts {
  readonly dataDir: string;
  readonly walDir: string;
  readonly log: (event: StorageLogEvent) => void;
  readonly segmentSizeBytesMax: number;
  readonly recovered: PersistentState;
  readonly segmentSequences: number[];
  readonly segmentHandle: FileHandle;
  readonly segmentSizeBytes: number;
}

export class FileStorage {
  private readonly dataDir: string;
  private readonly walDir: string;
  private readonly log: (event: StorageLogEvent) => void;
  private readonly segmentSizeBytesMax: number;
  private readonly recovered: PersistentState;
  /** Sequence numbers of the segments on disk, ascending; the last one is appended to. */
  private segmentSequences: number[];
  private segmentHandle: FileHandle;
  /** Bytes of valid records in the current segment, which is also the next write position. */
  private segmentSizeBytes: number;
  private snapshotIndex: LogIndex;
  private state: StorageState = 'idle';

  private constructor(parts: FileStorageParts) {
    this.dataDir = parts.dataDir;
    this.walDir = parts.walDir;
    this.log = parts.log;
    this.segmentSizeBytesMax = parts.segmentSizeBytesMax;
    this.recovered = parts.recovered;
    this.segmentSequences = parts.segmentSequences;
    this.segmentHandle = parts.segmentHandle;
    this.segmentSizeBytes = parts.segmentSizeBytes;
    this.snapshotIndex = parts.recovered.snapshot?.meta.index ?? logIndex(0);
  }

  /** Opens (creating if missing) and recovers the storage in `dataDir`. Throws
   * StorageCorruptError, SnapshotCorruptError, StorageVersionError or StorageInconsistentError
   * when the files cannot be trusted, leaving them as they were for the operator. */
  static async open(dataDir: string, options: FileStorageOptions = {}): Promise<FileStorage> {
    const log = options.log ?? (() => {});
    const segmentSizeBytesMax = validateSegmentSizeBytesMax(options.segmentSizeBytesMax ?? walSegmentSizeBytesMax);
    const root = resolve(dataDir);
    const walDir = join(root, walDirectoryName);
    await ensureDirectory(root);
    await ensureDirectory(walDir);

    // A leftover temporary file is a snapshot whose rename never happened; snapshot.bin (if
    // any) is still the previous complete one and the WAL never recorded the new one.
    const snapshotTmpPath = join(root, snapshotTmpFileName);
    try {
      await unlink(snapshotTmpPath);
      await fsyncDirectory(root);
      log({ level: 'info', msg: 'removed leftover snapshot temporary file', file: snapshotTmpPath });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }

    const snapshotPath = join(root, snapshotFileName);
    const snapshot = await readSnapshot(snapshotPath);

    const segments: { sequence: number; path: string }[] = [];
    for (const name of await readdir(walDir)) {
      const match = segmentFileNamePattern.exec(name);
      const sequence = match === null ? NaN : Number.parseInt(match[1]!, 16);
      if (!Number.isSafeInteger(sequence) || sequence < 1) {
        log({ level: 'warn', msg: 'ignoring unexpected file in WAL directory', file: join(walDir, name) });
        continue;
      }
      segments.push({ sequence, path: join(walDir, name) });
    }
    segments.sort((a, b) => a.sequence - b.sequence);
    for (let i = 1; i < segments.length; i += 1) {
      if (segments[i]!.sequence !== segments[i - 1]!.sequence + 1) {
        throw new StorageInconsistentError({
          dataDir: root,
          detail: `WAL segment ${segmentFileName(segments[i - 1]!.sequence + 1)} is missing between ` +
            `${segments[i - 1]!.path} and ${segments[i]!.path}`,
        });
      }
    }

    const replayed = new ReplayedLog();
    let hardState = emptyHardState;
    let current: { sequence: number; sizeBytes: number } | null = null;
    let sequenceToCreate = 1;
    for (const [i, segment] of segments.entries()) {
      const isLast = i === segments.length - 1;
      const file = segment.path;
      const bytes = await readFile(file);
      const scan = scanSegment(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      const { end } = scan;
      const [header, ...records] = scan.records;

      if (header === undefined) {
        if (!isLast || end.kind === 'corrupt') {
          throw new StorageCorruptError({
            file,
            offset: 0,
            detail: end.kind === 'corrupt'
              ? `the segment header is bad (${end.reason}) and valid records follow at byte offset ${end.nextValidOffset}`
              : `the segment header is bad (${end.kind === 'torn' ? end.reason : 'empty file'}) in a segment that is not the last`,
          });
        }
        // The crash hit createSegment: nothing was ever appended to this file.
        await unlink(file);
        await fsyncDirectory(walDir);
        log({ level: 'warn', msg: 'removed WAL segment with a torn header', file, offset: 0, bytesDropped: bytes.length });
        sequenceToCreate = segment.sequence;
        break;
      }
      checkSegmentHeader(header, { file, sequence: segment.sequence });

      for (const record of records) {
        if (record.type !== walRecordType.batch) {
          throw new StorageCorruptError({
            file,
            offset: record.offset,
            detail: `the record has a valid checksum but type ${record.type}, which may only start a segment or is unknown`,
          });
        }
        let batch: WalBatch;
        try {
          batch = decodeBatchPayload(record.payload);
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          throw new StorageCorruptError({
            file,
            offset: record.offset,
            detail: `the record has a valid checksum but ${error.message}`,
          });
        }
        if (batch.snapshotMark?.kind === 'compact') replayed.reset();
        // A gap here is tolerated; reconcileWithSnapshot below judges the final log.
        if (batch.snapshotMark?.kind === 'install') replayed.applySnapshot(batch.snapshotMark);
        replayed.append(batch.entries);
        if (batch.hardState !== null) hardState = batch.hardState;
      }

      let sizeBytes = bytes.length;
      if (end.kind === 'corrupt') {
        throw new StorageCorruptError({
          file,
          offset: end.offset,
          detail: `${end.reason}, and valid records follow at byte offset ${end.nextValidOffset}, ` +
            'so this is damage to acknowledged data, not a torn final write',
        });
      }
      if (end.kind === 'torn') {
        if (!isLast) {
          throw new StorageCorruptError({
            file,
            offset: end.offset,
            detail: `${end.reason} in a segment that is not the last, so the record was acknowledged before a later segment was started`,
          });
        }
        // Only the final write can be torn, and save() had not resolved for it, so no caller
        // acted on what is dropped here.
        await truncateFile(file, end.offset);
        sizeBytes = end.offset;
        log({
          level: 'warn',
          msg: 'truncated torn tail of the last WAL segment',
          file,
          offset: end.offset,
          bytesDropped: bytes.length - end.offset,
          reason: end.reason,
        });
      }
      current = { sequence: segment.sequence, sizeBytes };
    }

    if (current === null && snapshot !== null) {
      throw new StorageInconsistentError({
        dataDir: root,
        detail: `${snapshotPath} exists but there is no WAL segment, so the hard state (term and vote) is lost`,
      });
    }
    const entries = reconcileWithSnapshot(replayed, snapshot, root);

    let segmentHandle: FileHandle;
    let segmentSizeBytes: number;
    let segmentSequences: number[];
    if (current === null) {
      segmentHandle = await createSegment(walDir, sequenceToCreate);
      segmentSizeBytes = segmentHeaderRecordBytes;
      segmentSequences = [sequenceToCreate];
    } else {
      segmentHandle = await open(join(walDir, segmentFileName(current.sequence)), 'r+');
      segmentSizeBytes = current.sizeBytes;
      const first = segments[0]!.sequence;
      segmentSequences = Array.from({ length: current.sequence - first + 1 }, (_, k) => first + k);
    }

    const recovered: PersistentState = { hardState, snapshot, entries };
    log({
      level: 'info',
      msg: 'storage recovered',
      dataDir: root,
      segments: segmentSequences.length,
      snapshotIndex: snapshot?.meta.index ?? 0,
      firstIndex: entries[0]?.index ?? null,
      lastIndex: entries[entries.length - 1]?.index ?? null,
      term: hardState.term,
    });
    return new FileStorage({
      dataDir: root,
      walDir,
      log,
      segmentSizeBytesMax,
      recovered,
      segmentSequences,
      segmentHandle,
      segmentSizeBytes,
    });
  }

  /** The state recovered by `open()`. It does not reflect saves made since. */
  load(): PersistentState {
    return this.recovered;
  }

  /**
   * Makes one Ready's persistent state durable: installs `snapshot` (if any) into snapshot.bin,
   * then appends entries and hard state as one WAL record with one write and one fdatasync. The
   * only durability point: send messages only after this resolves. Must not overlap another
   * save/saveSnapshot. Any I/O failure fails the storage for good (StorageFailedError).
   */
  async save(batch: StorageBatch): Promise<void> {
    this.beginWrite('save');
    try {
      const { snapshot, entries, hardState } = batch;
      if (snapshot === null && hardState === null && entries.length === 0) return;
      if (snapshot !== null) {
        assert(snapshot.meta.index >= this.snapshotIndex, `save: snapshot index ${snapshot.meta.index} is older than ${this.snapshotIndex}`);
      }
      assertEntriesAfter(entries, snapshot?.meta.index ?? this.snapshotIndex, 'save');
      // Encode everything before the first byte is written, so an oversized batch fails
      // without side effects.
      const snapshotMark: SnapshotMark | null =
        snapshot === null ? null : { index: snapshot.meta.index, term: snapshot.meta.term, kind: 'install' };
      const record = encodeWalRecord(walRecordType.batch, encodeBatchPayload({ snapshotMark, entries, hardState }));
      const snapshotBytes = snapshot === null ? null : encodeSnapshotFile(snapshot);

      await this.performIo('save', async () => {
        if (snapshot !== null && snapshotBytes !== null) {
          await this.replaceSnapshotFile(snapshotBytes);
          this.snapshotIndex = snapshot.meta.index;
        }
        if (
          this.segmentSizeBytes > segmentHeaderRecordBytes &&
          this.segmentSizeBytes + record.length > this.segmentSizeBytesMax
        ) {
          await this.startSegment();
        }
        await this.appendRecord(record);
      });
    } finally {
      this.endWrite();
    }
  }

  /**
   * Compaction: `snapshot` replaces the log up to its index, `entriesAfter` (starting at
   * snapshot index + 1, possibly empty) is the whole log after it, and older segments are
   * deleted.
   *
   * Crash safety, step by step (each step is durable before the next starts):
   *   1. snapshot.bin.tmp written and fsynced, renamed over snapshot.bin, directory fsynced.
   *      A crash before the rename leaves the old snapshot.bin and a .tmp that open() deletes.
   *      A crash after it: open() replays the old segments unchanged and applies the new
   *      snapshot.bin last with §7's rule. The snapshot was taken from this node's own applied,
   *      hence persisted, log, so the held entry at its index has its term: entries up to the
   *      index are dropped, those after are kept, and the hard state is the last one saved.
   *   2. A new segment is created holding only its header (file and directory fsynced). A crash
   *      while creating it leaves a torn header in the last segment, which open() deletes.
   *   3. One batch record is appended: a 'compact' snapshot mark, `hardState` and
   *      `entriesAfter` (fdatasync). Torn → truncated, and the state is that of step 1.
   *      Complete → on replay the mark discards whatever the older segments built up and the
   *      batch's entries are the log, exactly the caller's view.
   *   4. The older segments are deleted oldest first, then the directory is fsynced. Deleting
   *      oldest first keeps the surviving sequence numbers contiguous, and whichever of them
   *      survive a crash are overridden by the mark in the new segment.
   */
  async saveSnapshot(snapshot: Snapshot, hardState: HardState, entriesAfter: readonly Entry[]): Promise<void> {
    this.beginWrite('saveSnapshot');
    try {
      assert(
        snapshot.meta.index >= this.snapshotIndex,
        `saveSnapshot: snapshot index ${snapshot.meta.index} is older than ${this.snapshotIndex}`,
      );
      assertEntriesAfter(entriesAfter, snapshot.meta.index, 'saveSnapshot');
      const firstAfter = entriesAfter[0];
      assert(
        firstAfter === undefined || firstAfter.index === snapshot.meta.index + 1,
        `saveSnapshot: entriesAfter starts at ${firstAfter?.index}, not at snapshot index + 1`,
      );
      const snapshotMark: SnapshotMark = { index: snapshot.meta.index, term: snapshot.meta.term, kind: 'compact' };
      const record = encodeWalRecord(
        walRecordType.batch,
        encodeBatchPayload({ snapshotMark, entries: entriesAfter, hardState }),
      );
      const snapshotBytes = encodeSnapshotFile(snapshot);

      await this.performIo('saveSnapshot', async () => {
        await this.replaceSnapshotFile(snapshotBytes);
        this.snapshotIndex = snapshot.meta.index;
        await this.startSegment();
        await this.appendRecord(record);
        const obsolete = this.segmentSequences.slice(0, -1);
        for (const sequence of obsolete) {
          await unlink(join(this.walDir, segmentFileName(sequence)));
          this.segmentSequences.shift();
        }
        if (obsolete.length > 0) await fsyncDirectory(this.walDir);
        this.log({
          level: 'info',
          msg: 'compacted WAL',
          snapshotIndex: snapshot.meta.index,
          segmentsDeleted: obsolete.length,
        });
      });
    } finally {
      this.endWrite();
    }
  }

  /** Closes the current segment. Idempotent; the storage cannot be used afterwards. */
  async close(): Promise<void> {
    assert(this.state !== 'writing', 'close: a save is still in flight');
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.segmentHandle.close();
  }

  private beginWrite(operation: string): void {
    assert(this.state !== 'closed', `${operation}: storage is closed`);
    assert(this.state !== 'writing', `${operation}: another save is still in flight`);
    if (this.state === 'failed') {
      throw new StorageFailedError({ detail: `${operation} refused after an earlier I/O failure` });
    }
    this.state = 'writing';
  }

  private endWrite(): void {
    if (this.state === 'writing') this.state = 'idle';
  }

  /** Runs file I/O; any failure leaves the files in an unknown state, so it is final. */
  private async performIo(operation: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      this.state = 'failed';
      throw new StorageFailedError({ detail: `${operation}: ${(error as Error).message}`, cause: error });
    }
  }

  private async appendRecord(record: Uint8Array): Promise<void> {
    await writeAll(this.segmentHandle, record, this.segmentSizeBytes);
    await this.segmentHandle.datasync();
    this.segmentSizeBytes += record.length;
  }

  private async startSegment(): Promise<void> {
    const sequence = this.segmentSequences[this.segmentSequences.length - 1]! + 1;
    const handle = await createSegment(this.walDir, sequence);
    const previous = this.segmentHandle;
    this.segmentHandle = handle;
    this.segmentSequences.push(sequence);
    this.segmentSizeBytes = segmentHeaderRecordBytes;
    await previous.close();
  }

  private async replaceSnapshotFile(bytes: Uint8Array): Promise<void> {
    const temporaryPath = join(this.dataDir, snapshotTmpFileName);
    const handle = await open(temporaryPath, 'w', fileMode);
    try {
      await writeAll(handle, bytes, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporaryPath, join(this.dataDir, snapshotFileName));
    await fsyncDirectory(this.dataDir);
  }
}

async function readSnapshot(path: string): Promise<Snapshot | null> {
  let sizeBytes: number;
  try {
    sizeBytes = (await stat(path)).size;
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
  if (sizeBytes > snapshotHeaderBytes + snapshotSizeBytesMax) {
    throw new SnapshotCorruptError({
      file: path,
      detail: `the file is ${sizeBytes} bytes, more than snapshotSizeBytesMax ${snapshotSizeBytesMax} plus header`,
    });
  }
  const bytes = await readFile(path);
  return decodeSnapshotFile(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
}

/** Applies snapshot.bin to the replayed log (§7) and checks that the result starts right after
 * the snapshot (or at index 1 without one). Entries at or below the snapshot index are gone. */
function reconcileWithSnapshot(replayed: ReplayedLog, snapshot: Snapshot | null, dataDir: string): Entry[] {
  const base = snapshot?.meta ?? { index: logIndex(0), term: term(0) };
  if (!replayed.applySnapshot(base)) {
    throw new StorageInconsistentError({
      dataDir,
      detail: `the WAL's log starts at index ${replayed.entries[0]!.index} but ` +
        (snapshot === null ? 'there is no snapshot' : `the snapshot ends at index ${base.index}`) +
        ', so the entries between are missing',
    });
  }
  return replayed.entries;
}
