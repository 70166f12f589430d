// The replicated state machine for cluster-wide state: the membership (mirrored from the log)
// and a small key/value map for desired state that every node must agree on (the load
// balancer's desired backends arrive with a later issue). Applying is deterministic: every node
// that applies the same committed entries reaches the same state and the same digest.

import { Packr } from 'msgpackr';
import { assert } from './assert.js';
import type { Entry, LogIndex, Membership } from './types.js';
import { logIndex } from './types.js';

export const clusterKeyBytesMax = 256;
export const clusterValueBytesMax = 64 * 1024;
export const clusterKeysMax = 1024;

export type ClusterCommand =
  | { readonly op: 'put'; readonly key: string; readonly value: unknown }
  | { readonly op: 'delete'; readonly key: string };

/** msgpack without records or extension state, so bytes depend only on the value. */
export const plainPackr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function encodeCommand(command: ClusterCommand): Uint8Array {
  return plainPackr.pack(command);
}

/** Decode a command, or null for bytes that are not one. A committed entry that does not
 * decode is skipped on every node alike (and counted), never a crash. */
export function decodeCommand(data: Uint8Array): ClusterCommand | null {
  let value: unknown;
  try {
    value = plainPackr.unpack(data);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const record = value as Record<string, unknown>;
  if (typeof record.key !== 'string' || Buffer.byteLength(record.key) > clusterKeyBytesMax) return null;
  if (record.op === 'put') return { op: 'put', key: record.key, value: record.value };
  if (record.op === 'delete') return { op: 'delete', key: record.key };
  return null;
}

interface ClusterSnapshot {
  readonly appliedIndex: number;
  readonly membership: Membership;
  readonly entries: ReadonlyArray<readonly [string, unknown]>;
  readonly digest: number;
  readonly skipped: number;
}

export class ClusterState {
  private values = new Map<string, unknown>();
  private membershipValue: Membership = { voters: [] };
  private applied = 0;
  /** FNV-1a over every applied entry, chained: equal digests at equal indexes mean equal
   * histories (the simulator's "applied prefixes agree" checker compares them). */
  private digestValue = 0x811c9dc5;
  private skippedValue = 0;

  get appliedIndex(): LogIndex {
    return logIndex(this.applied);
  }

  get membership(): Membership {
    return this.membershipValue;
  }

  get digest(): number {
    return this.digestValue;
  }

  /** Committed entries that did not decode as commands. */
  get skipped(): number {
    return this.skippedValue;
  }

  get(key: string): unknown {
    return this.values.get(key);
  }

  keys(): string[] {
    return [...this.values.keys()].sort();
  }

  apply(entry: Entry): void {
    assert(entry.index === this.applied + 1, `apply out of order: ${entry.index} after ${this.applied}`);
    this.applied = entry.index;
    this.digestValue = fnv1a(this.digestValue, entryDigestBytes(entry));
    switch (entry.type) {
      case 'noop':
        return;
      case 'membership':
        this.membershipValue = entry.membership;
        return;
      case 'command': {
        const command = decodeCommand(entry.data);
        if (command === null || !this.fits(command)) {
          this.skippedValue++;
          return;
        }
        if (command.op === 'put') this.values.set(command.key, command.value);
        else this.values.delete(command.key);
        return;
      }
      default: {
        const unreachable: never = entry;
        throw new Error(`unknown entry ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private fits(command: ClusterCommand): boolean {
    if (command.op === 'delete') return true;
    if (!this.values.has(command.key) && this.values.size >= clusterKeysMax) return false;
    return plainPackr.pack(command.value).length <= clusterValueBytesMax;
  }

  snapshot(): Uint8Array {
    const snapshot: ClusterSnapshot = {
      appliedIndex: this.applied,
      membership: this.membershipValue,
      entries: [...this.values.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      digest: this.digestValue,
      skipped: this.skippedValue,
    };
    return plainPackr.pack(snapshot);
  }

  static restore(data: Uint8Array): ClusterState {
    const decoded = plainPackr.unpack(data) as ClusterSnapshot;
    const state = new ClusterState();
    state.applied = decoded.appliedIndex;
    state.membershipValue = decoded.membership;
    state.values = new Map(decoded.entries.map(([k, v]) => [k, v] as [string, unknown]));
    state.digestValue = decoded.digest;
    state.skippedValue = decoded.skipped;
    return state;
  }
}

function entryDigestBytes(entry: Entry): Uint8Array {
  const head = `${entry.index}/${entry.term}/${entry.type}/`;
  const tail =
    entry.type === 'command' ? entry.data : entry.type === 'membership' ? Buffer.from(entry.membership.voters.join(',')) : new Uint8Array(0);
  const bytes = new Uint8Array(head.length + tail.length);
  bytes.set(Buffer.from(head), 0);
  bytes.set(tail, head.length);
  return bytes;
}

function fnv1a(seed: number, bytes: Uint8Array): number {
  let hash = seed >>> 0;
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
