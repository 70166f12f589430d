// The in-memory replicated log of one node: entries after the latest snapshot, the commit
// index, the applied index, and how far the log is known to be durable. Storage holds the same
// entries on disk; this object is the core's view and is rebuilt from storage on restart.
//
// Invariants (asserted):
//   snapshotIndex <= appliedIndex <= commitIndex <= lastIndex
//   entries[k].index === snapshotIndex + 1 + k, and terms never decrease along the log.

import { assert } from './assert.js';
import type { Entry, LogIndex, Membership, SnapshotMeta, Term } from './types.js';
import { logIndex, term } from './types.js';

export class RaftLog {
  private entries: Entry[] = [];
  private snapshotMeta: SnapshotMeta;
  commitIndex: LogIndex;
  appliedIndex: LogIndex;
  /** Entries up to here have been handed to the driver and fsynced. */
  stableIndex: LogIndex;

  constructor(snapshotMeta: SnapshotMeta, entries: readonly Entry[], commitIndex: LogIndex) {
    this.snapshotMeta = snapshotMeta;
    for (const entry of entries) {
      if (entry.index <= snapshotMeta.index) continue;
      this.entries.push(entry);
    }
    this.checkContiguous();
    this.stableIndex = this.lastIndex();
    // A persisted commit index can be ahead of a log that lost its tail (it cannot, if the
    // driver writes entries and hard state in one fsync, but never trust it beyond the log).
    this.commitIndex = logIndex(Math.max(snapshotMeta.index, Math.min(commitIndex, this.lastIndex())));
    this.appliedIndex = snapshotMeta.index;
  }

  private checkContiguous(): void {
    let expected = this.snapshotMeta.index + 1;
    let previousTerm = this.snapshotMeta.term as number;
    for (const entry of this.entries) {
      assert(entry.index === expected, `log gap: expected index ${expected}, found ${entry.index}`);
      assert(entry.term >= previousTerm, `log term went backwards at index ${entry.index}`);
      expected++;
      previousTerm = entry.term;
    }
  }

  snapshot(): SnapshotMeta {
    return this.snapshotMeta;
  }

  firstIndex(): LogIndex {
    return logIndex(this.snapshotMeta.index + 1);
  }

  lastIndex(): LogIndex {
    return logIndex(this.snapshotMeta.index + this.entries.length);
  }

  lastTerm(): Term {
    const last = this.entries[this.entries.length - 1];
    return last ? last.term : this.snapshotMeta.term;
  }

  /** The term of the entry at `index`, or null when it is compacted away or beyond the end. */
  termAt(index: number): Term | null {
    if (index === this.snapshotMeta.index) return this.snapshotMeta.term;
    if (index < this.snapshotMeta.index || index > this.lastIndex()) return null;
    if (index === 0) return term(0);
    const entry = this.entries[index - this.snapshotMeta.index - 1];
    return entry ? entry.term : null;
  }

  entryAt(index: number): Entry | null {
    if (index <= this.snapshotMeta.index || index > this.lastIndex()) return null;
    return this.entries[index - this.snapshotMeta.index - 1] ?? null;
  }

  matchTerm(index: number, logTerm: number): boolean {
    const found = this.termAt(index);
    return found !== null && found === logTerm;
  }

  /** Entries in [from, to], clipped to what the log holds, at most `countMax`. */
  slice(from: number, to: number, countMax: number): Entry[] {
    const start = Math.max(from, this.firstIndex());
    const end = Math.min(to, this.lastIndex(), start + countMax - 1);
    if (end < start) return [];
    return this.entries.slice(start - this.snapshotMeta.index - 1, end - this.snapshotMeta.index);
  }

  /** §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(candidateLastIndex: number, candidateLastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return candidateLastTerm > ourTerm || (candidateLastTerm === ourTerm && candidateLastIndex >= this.lastIndex());
  }

  /** The leader appends new entries of its own term at the end. */
  append(entries: readonly Entry[]): void {
    for (const entry of entries) {
      assert(entry.index === this.lastIndex() + 1, `append out of order: ${entry.index} after ${this.lastIndex()}`);
      assert(entry.term >= this.lastTerm(), `append with older term at ${entry.index}`);
      this.entries.push(entry);
    }
  }

  /**
   * A follower's AppendEntries (§5.3): if our entry at prevIndex has prevTerm, drop any
   * conflicting suffix and append what is new. Returns the last index now known to match the
   * leader, or null on mismatch. Never truncates a committed entry (asserted: that would mean
   * two leaders disagreed on a committed entry).
   */
  tryAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): LogIndex | null {
    if (!this.matchTerm(prevIndex, prevTerm)) {
      // An index inside our snapshot is committed and therefore matches by the Log Matching
      // property; only the part of `entries` after the snapshot matters.
      if (prevIndex >= this.snapshotMeta.index) return null;
    }
    for (const entry of entries) {
      if (entry.index <= this.snapshotMeta.index) continue;
      const existing = this.termAt(entry.index);
      if (existing === entry.term) continue;
      if (existing !== null) {
        assert(entry.index > this.commitIndex, `conflict at committed index ${entry.index} (commit ${this.commitIndex})`);
        this.truncateFrom(entry.index);
      }
      assert(entry.index === this.lastIndex() + 1, `append leaves a gap at ${entry.index}`);
      this.entries.push(entry);
    }
    const last = entries[entries.length - 1];
    return logIndex(last ? Math.max(last.index, prevIndex) : prevIndex);
  }

  private truncateFrom(index: number): void {
    this.entries.length = index - this.snapshotMeta.index - 1;
    if (this.stableIndex >= index) this.stableIndex = logIndex(index - 1);
  }

  /**
   * Fast back-off (etcd's findConflictByTerm): the largest index <= `index` whose term is
   * <= `atMostTerm`. Everything after it in the leader's (or follower's) log cannot match.
   */
  conflictHint(index: number, atMostTerm: number): LogIndex {
    let candidate = Math.min(index, this.lastIndex());
    while (candidate > this.snapshotMeta.index) {
      const found = this.termAt(candidate);
      if (found === null || found <= atMostTerm) break;
      candidate--;
    }
    return logIndex(candidate);
  }

  commitTo(index: number): void {
    if (index <= this.commitIndex) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
    this.commitIndex = logIndex(index);
  }

  /** Entries persisted? Everything up to `index` is now on disk. */
  stableTo(index: number): void {
    this.stableIndex = logIndex(Math.min(Math.max(this.stableIndex, index), this.lastIndex()));
  }

  unstableEntries(): Entry[] {
    return this.slice(this.stableIndex + 1, this.lastIndex(), Number.MAX_SAFE_INTEGER);
  }

  /** Committed entries not yet applied, at most `countMax`. */
  nextCommitted(countMax: number): Entry[] {
    return this.slice(this.appliedIndex + 1, this.commitIndex, countMax);
  }

  appliedTo(index: number): void {
    assert(index <= this.commitIndex, `applied ${index} beyond commit ${this.commitIndex}`);
    if (index > this.appliedIndex) this.appliedIndex = logIndex(index);
  }

  /** The membership in force at `index`: the latest membership entry at or before it, else the
   * snapshot's. */
  membershipAt(index: number): { membership: Membership; index: LogIndex } {
    for (let k = Math.min(index, this.lastIndex()); k > this.snapshotMeta.index; k--) {
      const entry = this.entryAt(k);
      if (entry && entry.type === 'membership') return { membership: entry.membership, index: entry.index };
    }
    return { membership: this.snapshotMeta.membership, index: this.snapshotMeta.index };
  }

  /** Drop entries up to `meta.index`, which the state machine has captured in a snapshot. */
  compact(meta: SnapshotMeta): void {
    assert(meta.index <= this.appliedIndex, `compact ${meta.index} beyond applied ${this.appliedIndex}`);
    if (meta.index <= this.snapshotMeta.index) return;
    assert(this.termAt(meta.index) === meta.term, `compact term mismatch at ${meta.index}`);
    this.entries = this.entries.slice(meta.index - this.snapshotMeta.index);
    this.snapshotMeta = meta;
  }

  /** Replace everything with a snapshot received from the leader (§7). Only called when our
   * log does not hold the snapshot's last entry (otherwise the core just moves the commit
   * index), so no suffix can be kept: the whole log goes. */
  restore(meta: SnapshotMeta): void {
    assert(!this.matchTerm(meta.index, meta.term), `restore of a snapshot at ${meta.index} that the log already holds`);
    this.entries = [];
    this.snapshotMeta = meta;
    this.commitIndex = logIndex(Math.max(this.commitIndex, meta.index));
    this.appliedIndex = meta.index;
    this.stableIndex = meta.index;
  }
}
