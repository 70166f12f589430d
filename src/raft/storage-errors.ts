// Typed errors raised by the durable Raft storage (file-storage.ts). Each carries a stable
// `code` that operators and the daemon's exit path can match on; messages name the file and
// byte offset involved and say what the operator has to do, because every one of these stops
// the node from starting.

/** What to do when the log on disk cannot be trusted. Wiping the data directory and simply
 * restarting under the same node id could let the node vote twice in a term it already voted
 * in, so it must leave the cluster and come back as a fresh member. */
const restoreFromPeerAdvice =
  'This cannot be repaired automatically. Restore this node from a peer: remove it from the ' +
  'cluster membership, delete its data directory, and add it back so that it catches up from ' +
  'the leader (snapshot + log).';

/** A WAL segment holds damage that is not a torn final write: a bad record with valid records
 * after it, a bad record in a segment that is not the last one, a bad segment header, or a
 * record whose checksum is fine but whose content cannot be decoded. */
export class StorageCorruptError extends Error {
  readonly code = 'RAFTVIP_WAL_CORRUPT' as const;
  readonly file: string;
  readonly offset: number;

  constructor(options: { file: string; offset: number; detail: string }) {
    super(
      `WAL segment ${options.file} is corrupt at byte offset ${options.offset}: ` +
        `${options.detail}. ${restoreFromPeerAdvice}`,
    );
    this.name = 'StorageCorruptError';
    this.file = options.file;
    this.offset = options.offset;
  }
}

/** snapshot.bin fails its magic, length or checksum check, or does not decode. The snapshot is
 * replaced atomically (write, fsync, rename), so a torn snapshot is never expected. */
export class SnapshotCorruptError extends Error {
  readonly code = 'RAFTVIP_SNAPSHOT_CORRUPT' as const;
  readonly file: string;

  constructor(options: { file: string; detail: string }) {
    super(`snapshot file ${options.file} is corrupt: ${options.detail}. ${restoreFromPeerAdvice}`);
    this.name = 'SnapshotCorruptError';
    this.file = options.file;
  }
}

/** A segment or snapshot written by a format version this build does not read (typically a
 * newer raftvip after a downgrade). */
export class StorageVersionError extends Error {
  readonly code = 'RAFTVIP_STORAGE_VERSION_UNSUPPORTED' as const;
  readonly file: string;
  readonly version: number;

  constructor(options: { file: string; version: number; versionSupported: number }) {
    super(
      `${options.file} has storage format version ${options.version}; this build reads version ` +
        `${options.versionSupported}. Run the raftvip release that wrote it.`,
    );
    this.name = 'StorageVersionError';
    this.file = options.file;
    this.version = options.version;
  }
}

/** Every file is individually intact but together they do not form a log: a segment is
 * missing from the sequence, the log does not connect to the snapshot, or the snapshot exists
 * without any WAL (so the hard state, and with it the node's vote, is lost). */
export class StorageInconsistentError extends Error {
  readonly code = 'RAFTVIP_STORAGE_INCONSISTENT' as const;
  readonly dataDir: string;

  constructor(options: { dataDir: string; detail: string }) {
    super(`data directory ${options.dataDir} is inconsistent: ${options.detail}. ${restoreFromPeerAdvice}`);
    this.name = 'StorageInconsistentError';
    this.dataDir = options.dataDir;
  }
}

/** A write, fsync, rename or unlink failed. After a failed fsync the kernel may have dropped the
 * dirty pages, so what is on disk is unknown: the storage refuses all further writes and the
 * process must restart and recover from the files. */
export class StorageFailedError extends Error {
  readonly code = 'RAFTVIP_STORAGE_FAILED' as const;

  constructor(options: { detail: string; cause?: unknown }) {
    super(`storage failed: ${options.detail}; restart the process to recover from disk`, {
      cause: options.cause,
    });
    this.name = 'StorageFailedError';
  }
}

/** One save would produce a WAL record or snapshot larger than the format allows. Nothing was
 * written; the caller must send smaller batches. */
export class StorageRecordTooLargeError extends Error {
  readonly code = 'RAFTVIP_STORAGE_RECORD_TOO_LARGE' as const;
  readonly sizeBytes: number;
  readonly sizeBytesMax: number;

  constructor(options: { what: string; sizeBytes: number; sizeBytesMax: number }) {
    super(`${options.what} is ${options.sizeBytes} bytes; the limit is ${options.sizeBytesMax} bytes`);
    this.name = 'StorageRecordTooLargeError';
    this.sizeBytes = options.sizeBytes;
    this.sizeBytesMax = options.sizeBytesMax;
  }
}

/** An option passed to FileStorage.open is out of range. */
export class StorageOptionError extends Error {
  readonly code = 'RAFTVIP_STORAGE_INVALID_OPTION' as const;
  readonly option: string;

  constructor(options: { option: string; detail: string }) {
    super(`invalid storage option ${options.option}: ${options.detail}`);
    this.name = 'StorageOptionError';
    this.option = options.option;
  }
}
