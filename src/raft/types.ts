// The vocabulary of the Raft core: node ids, terms, log indexes, entries, messages and the
// Ready batch that the core hands to its driver. Everything here is plain data, so it can be
// encoded by msgpackr for the wire and for the write-ahead log without adapters.

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A peer's id as written in the peer file (`cp1`). */
export type NodeId = Brand<string, 'NodeId'>;
/** A Raft term (§5.1). Starts at 0; never goes backwards on one node. */
export type Term = Brand<number, 'Term'>;
/** A position in the replicated log; the first real entry has index 1, 0 means "none". */
export type LogIndex = Brand<number, 'LogIndex'>;

export const nodeId = (value: string): NodeId => value as NodeId;
export const term = (value: number): Term => value as Term;
export const logIndex = (value: number): LogIndex => value as LogIndex;

/** The voting membership. Single-server changes only: two consecutive configurations differ by
 * exactly one voter, so any majority of one intersects any majority of the other. */
export interface Membership {
  readonly voters: readonly NodeId[];
}

export type EntryType = 'noop' | 'command' | 'membership';

/** One log entry. `command` entries carry opaque bytes for the replicated state machine;
 * `membership` entries carry the complete next voter set and take effect as soon as they are
 * appended to a log (Raft dissertation §4.1), committed or not. */
export type Entry =
  | { readonly term: Term; readonly index: LogIndex; readonly type: 'noop' }
  | { readonly term: Term; readonly index: LogIndex; readonly type: 'command'; readonly data: Uint8Array }
  | { readonly term: Term; readonly index: LogIndex; readonly type: 'membership'; readonly membership: Membership };

/** What must survive a crash, fsynced before any message that depends on it is sent (§5.1,
 * Figure 2 "persistent state on all servers"). `commitIndex` is kept as a hint for faster
 * restart; it is never trusted beyond the log it covers. */
export interface HardState {
  readonly term: Term;
  readonly votedFor: NodeId | null;
  readonly commitIndex: LogIndex;
}

export interface SnapshotMeta {
  /** Last log index covered by the snapshot. */
  readonly index: LogIndex;
  readonly term: Term;
  /** The membership in force at `index`. */
  readonly membership: Membership;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The encoded state machine at `meta.index`. */
  readonly data: Uint8Array;
}

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export type MessageType =
  | 'pre-vote'
  | 'pre-vote-response'
  | 'vote'
  | 'vote-response'
  | 'append'
  | 'append-response'
  | 'heartbeat'
  | 'heartbeat-response'
  | 'snapshot'
  | 'timeout-now';

/** One Raft message. A flat record rather than a union per type keeps the codec table simple;
 * which fields are meaningful depends on `type` and is documented beside each field. */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's term; for pre-vote, the term the sender would campaign in. */
  readonly term: Term;
  /** append: index of the entry before `entries`; vote/pre-vote: candidate's last log index;
   * append-response: the follower's last index (success) or its hint (reject);
   * snapshot: unused. */
  readonly index: LogIndex;
  /** append: term of the entry at `index`; vote/pre-vote: candidate's last log term;
   * append-response (reject): term of the follower's entry at the hint, for fast back-off. */
  readonly logTerm: Term;
  /** append: the leader's commit index; heartbeat: min(commit, follower's match). */
  readonly commit: LogIndex;
  readonly entries?: readonly Entry[];
  readonly snapshot?: Snapshot;
  /** Responses: true when the request was refused. */
  readonly reject?: boolean;
  /** append-response (reject): the follower's guess of the last index that may match, so the
   * leader can skip a whole term of conflicting entries at once (fast back-off). */
  readonly hint?: LogIndex;
  /** vote/pre-vote sent because of a TimeoutNow (leadership transfer): bypasses stickiness,
   * but only towards the transferee that the voter's leader announced. */
  readonly transfer?: boolean;
  /** heartbeat/append from the leader: the node it is handing leadership to, if any. */
  readonly transferee?: NodeId;
  /** heartbeat/append: the leader's tick at send time; echoed verbatim in the response. The
   * leader's lease is measured from the send tick of the latest round a quorum echoed. */
  readonly sentAtTick?: number;
  /** heartbeat/append: the leader's lease epoch; echoed in the response. A leader that aborted a
   * transfer only counts acknowledgements of rounds sent after the abort. */
  readonly epoch?: number;
}

/** What the driver must do, in this order: persist (snapshot, entries, hard state) and fsync;
 * then send `messages`; then apply `committedEntries` (and `snapshot` if present) to the state
 * machine; then call `advance(ready)`. */
export interface Ready {
  readonly hardState: HardState | null;
  readonly snapshot: Snapshot | null;
  /** Entries to append. Any stored entry with index >= entries[0].index must be discarded
   * first: a new leader may have overwritten an uncommitted suffix. */
  readonly entries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly committedEntries: readonly Entry[];
}

/** What a node keeps across restarts: its hard state, the latest snapshot and the log after it. */
export interface PersistentState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
}

export const emptyHardState: HardState = { term: term(0), votedFor: null, commitIndex: logIndex(0) };
