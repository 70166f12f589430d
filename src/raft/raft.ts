// The Raft core: a pure state machine, modelled on etcd-io/raft. It owns terms, votes, the log,
// replication progress, membership, leadership transfer and the leader lease. It does no I/O and
// reads no clock: time arrives as tick() calls, messages as step(), randomness from an injected
// generator. The driver collects the effects with ready() and acknowledges them with advance().
//
// Safety rules beyond the Raft paper, which the VIP depends on (see ../shared/DESIGN.md):
//   * Pre-vote (§9.6 of the dissertation) and check-quorum are always on.
//   * Stickiness: a node that heard from a live leader, granted a vote, or booted less than
//     electionTicks ago ignores (pre-)vote requests for a higher term. The one exception is a
//     vote sent because of TimeoutNow, and only towards the transferee that the voter's leader
//     announced.
//   * The lease: a leader holds it from the send tick of the latest round (heartbeat, append or
//     the vote request that elected it) acknowledged by a quorum, for leaseTicks, which is
//     shorter than the stickiness window of any voter even with clocks drifting by the stated
//     bound (see leaseTicksFor). A leader transferring leadership holds no lease, and after an
//     aborted transfer counts only acknowledgements of rounds sent after the abort.

import { assert } from './assert.js';
import type { RandomSource } from './random.js';
import { RaftLog } from './raft-log.js';
import type {
  Entry,
  HardState,
  LogIndex,
  Membership,
  Message,
  NodeId,
  PersistentState,
  Ready,
  Role,
  Snapshot,
  SnapshotMeta,
  Term,
} from './types.js';
import { logIndex, term as asTerm } from './types.js';

/** Entries per AppendEntries message. */
export const appendEntriesCountMax = 64;
/** Unacknowledged AppendEntries per follower in the replicate state. */
export const inflightAppendsMax = 64;
/** Committed entries handed to the driver in one Ready. */
export const applyEntriesCountMax = 256;
/** Voting members, as the peer file allows. */
export const votersMax = 7;
/** The clock drift bound the lease is computed for: any two clocks' rates differ from real
 * time by at most this fraction. Crystal oscillators drift by ~1e-4; 5 % covers virtual machines
 * that run slow under steal time with a wide margin. */
export const clockDriftBoundDefault = 0.05;
/** Ticks subtracted from the lease on top of the drift bound, for the time between a tick and
 * the driver acting on it. */
export const leaseMarginTicks = 1;
/** The stickiness window is this much shorter than the minimum election timeout. A follower
 * whose timer fires after exactly electionTicks would otherwise find the other followers, whose
 * ticks run at a different phase, still fenced by a tick or two, and lose a whole election
 * timeout. The lease is computed from the shorter window, so safety does not depend on it. */
export const fenceSlackTicks = 2;

/** Ticks during which a follower refuses higher-term (pre-)votes after hearing from a leader. */
export function fenceTicksFor(timing: RaftTiming): number {
  return Math.max(1, timing.electionTicks - fenceSlackTicks);
}

export interface RaftTiming {
  /** Ticks between heartbeats. */
  readonly heartbeatTicks: number;
  /** Minimum election timeout in ticks; the actual one is uniform in [electionTicks, 2*electionTicks). */
  readonly electionTicks: number;
  /** Clock drift bound, a fraction of real time (0.05 = 5 %). */
  readonly clockDriftBound: number;
}

/**
 * How long a lease lasts, in the leader's ticks, so that it always ends before any voter that
 * acknowledged the round can vote again.
 *
 * A voter resets its election clock when it receives the round (at or after the leader sent it)
 * and refuses votes until fenceTicks of its own ticks have passed; the first of those may
 * come at once, so at least (fenceTicks - 1) of its tick periods pass, each at least
 * P / (1 + rho) of real time. The leader's lease ends leaseTicks of its own periods after the
 * tick at or before which it sent the round, each at most P / (1 - rho). So
 *   leaseTicks / (1 - rho) < (fenceTicks - 1) / (1 + rho)
 * is required; we take the floor and subtract a margin.
 */
export function leaseTicksFor(timing: RaftTiming): number {
  const rho = timing.clockDriftBound;
  const bound = ((fenceTicksFor(timing) - 1) * (1 - rho)) / (1 + rho);
  // The strict inequality: an exact integer bound must still be reduced by one.
  const ticks = Math.ceil(bound) - 1 - leaseMarginTicks;
  return Math.max(0, ticks);
}

export interface RaftOptions {
  readonly id: NodeId;
  readonly timing: RaftTiming;
  readonly random: RandomSource;
  /** What storage recovered; an empty state for a brand-new node. */
  readonly persisted: PersistentState;
  /** For a brand-new cluster: the initial voters, written as log entry 1 in term 1 on every
   * node alike. Omit for a node that joins an existing cluster (it waits for the leader). */
  readonly bootstrap?: Membership;
  /** For the checker tests only: switch off a safety rule to prove the simulator notices.
   * Never set in production (the daemon has no way to set it). */
  readonly unsafe?: UnsafeRaftOptions;
}

export interface UnsafeRaftOptions {
  /** A lease longer than the safe bound. */
  readonly leaseTicks?: number;
  /** Followers never refuse votes because they heard from a leader. */
  readonly noFence?: boolean;
  /** A restarted node may vote at once. */
  readonly noBootFence?: boolean;
}

export type ProposeResult =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  | { readonly ok: false; readonly code: ProposeErrorCode; readonly message: string };

export type ProposeErrorCode =
  | 'RAFTVIP_NOT_LEADER'
  | 'RAFTVIP_TRANSFER_IN_PROGRESS'
  | 'RAFTVIP_MEMBERSHIP_PENDING'
  | 'RAFTVIP_MEMBERSHIP_INVALID';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

interface Progress {
  matchIndex: number;
  nextIndex: number;
  state: ProgressState;
  /** Probe: an append is outstanding; wait for its answer or the next heartbeat. */
  probeSent: boolean;
  /** Replicate: last index of each unacknowledged append, oldest first. */
  inflight: number[];
  /** Snapshot: the index of the snapshot sent. */
  pendingSnapshot: number;
  /** Heard from since the last check-quorum round. */
  recentActive: boolean;
  /** Highest commit index sent in an append (what the follower may already apply). */
  commitSent: number;
  /** Send tick of the latest acknowledged round in the current lease epoch; -1 for none. */
  ackedSentAtTick: number;
}

export interface PeerStatus {
  readonly id: NodeId;
  readonly matchIndex: number;
  readonly nextIndex: number;
  readonly state: ProgressState;
  readonly recentActive: boolean;
}

export interface LeaseStatus {
  readonly valid: boolean;
  /** The lease is valid while the node's tick count is below this; null when no lease. */
  readonly untilTick: number | null;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: Term;
  readonly leader: NodeId | null;
  readonly votedFor: NodeId | null;
  readonly commitIndex: LogIndex;
  readonly appliedIndex: LogIndex;
  readonly lastIndex: LogIndex;
  readonly membership: Membership;
  readonly tick: number;
  readonly lease: LeaseStatus;
  readonly transferee: NodeId | null;
  readonly peers: readonly PeerStatus[];
  /** Followers that rejected entries they had acknowledged: their disk lost fsynced data. */
  readonly ackedEntriesLost: number;
}

const none = null;

export class Raft {
  readonly id: NodeId;
  private readonly timing: RaftTiming;
  private readonly random: RandomSource;
  readonly leaseTicks: number;
  readonly fenceTicks: number;
  private readonly unsafe: UnsafeRaftOptions;

  private currentTerm: Term;
  private votedFor: NodeId | null;
  private role: Role = 'follower';
  private leader: NodeId | null = none;
  private readonly log: RaftLog;
  private membership: Membership;
  /** Index of the entry that set `membership` (0 when it came from a snapshot or bootstrap). */
  private membershipIndex: number;

  /** Local tick counter since this process started: the core's only clock. */
  private tickCount = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks: number;
  /** Stickiness: ticks since this node booted, last heard from a leader, or granted a vote. It
   * refuses (pre-)votes, its own included, while this is below fenceTicks. Unlike
   * electionElapsed, a term change does not reset it. */
  private fenceElapsed = 0;
  /** The transferee that our leader announced; its TimeoutNow vote may bypass the fence. */
  private leaderTransferee: NodeId | null = none;

  private votes = new Map<NodeId, boolean>();
  private campaignSentAtTick = 0;

  // Leader state.
  private progress = new Map<NodeId, Progress>();
  private transferee: NodeId | null = none;
  private transferElapsed = 0;
  private leaseEpoch = 0;
  private termStartIndex = 0;
  /** Rejections of entries a follower had acknowledged (see handleAppendReject). */
  private ackedEntriesLostCount = 0;
  private checkQuorumElapsed = 0;

  // Effects waiting for the driver.
  private messages: Message[] = [];
  private pendingSnapshot: Snapshot | null = null;
  private snapshotData: Snapshot | null;
  private lastHardState: HardState;
  private readyOutstanding = false;

  constructor(options: RaftOptions) {
    this.id = options.id;
    this.timing = options.timing;
    this.random = options.random;
    assert(options.timing.heartbeatTicks >= 1, 'heartbeatTicks must be at least 1');
    assert(options.timing.electionTicks > options.timing.heartbeatTicks, 'electionTicks must exceed heartbeatTicks');
    this.unsafe = options.unsafe ?? {};
    this.leaseTicks = this.unsafe.leaseTicks ?? leaseTicksFor(options.timing);
    this.fenceTicks = fenceTicksFor(options.timing);
    assert(this.leaseTicks >= 1, 'electionTicks too small for a lease');
    if (this.unsafe.noBootFence) this.fenceElapsed = this.fenceTicks;

    const persisted = options.persisted;
    this.snapshotData = persisted.snapshot;
    const snapshotMeta: SnapshotMeta = persisted.snapshot?.meta ?? {
      index: logIndex(0),
      term: asTerm(0),
      membership: { voters: [] },
    };
    this.currentTerm = persisted.hardState.term;
    this.votedFor = persisted.hardState.votedFor;
    this.log = new RaftLog(snapshotMeta, persisted.entries, persisted.hardState.commitIndex);

    const isEmpty = persisted.snapshot === null && persisted.entries.length === 0 && persisted.hardState.term === 0;
    if (isEmpty && options.bootstrap) {
      assert(options.bootstrap.voters.length >= 1 && options.bootstrap.voters.length <= votersMax, 'bootstrap voters 1..7');
      // Every node of a new cluster writes the same first entry, so their logs match at index 1.
      this.currentTerm = asTerm(1);
      this.log.append([{ term: asTerm(1), index: logIndex(1), type: 'membership', membership: options.bootstrap }]);
      this.log.commitTo(1);
    }
    // The last hard state the driver persisted; a bootstrap must be written out.
    this.lastHardState = isEmpty && options.bootstrap ? persisted.hardState : this.hardState();

    const found = this.log.membershipAt(this.log.lastIndex());
    this.membership = found.membership;
    this.membershipIndex = found.index;
    this.randomizedElectionTicks = this.newElectionTimeout();
  }

  // ---- Public API ---------------------------------------------------------------------------

  /** Advance the clock by one tick. The driver calls this every tickMs of monotonic time,
   * catching up on missed ticks before anything else after a stall. */
  tick(): void {
    this.assertNoReady();
    this.tickCount++;
    this.fenceElapsed++;
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
  }

  /** Feed one message received from the network (or from a test). */
  step(message: Message): void {
    this.assertNoReady();
    if (message.to !== this.id) return;
    this.stepMessage(message);
  }

  /** Test hook: start a pre-vote now, regardless of timers and of this node's own fence (the
   * other nodes' fences still apply). The daemon never calls it: its elections start only from
   * tick(), which waits out the fence, because a fenced node may not even vote for itself. */
  campaign(): void {
    this.assertNoReady();
    if (this.role === 'leader') return;
    this.startPreVote();
  }

  propose(data: Uint8Array): ProposeResult {
    this.assertNoReady();
    const refusal = this.leaderRefusal();
    if (refusal) return refusal;
    return this.appendAsLeader({ type: 'command', data });
  }

  /**
   * Change the voters by exactly one server (add or remove, the leader included). Refused until
   * the leader has committed an entry of its own term (the no-op) and while another membership
   * change is uncommitted: the one-at-a-time rule that keeps every old and new majority
   * overlapping (dissertation §4.1, and the fix in its errata for the single-server bug).
   */
  proposeMembership(next: Membership): ProposeResult {
    this.assertNoReady();
    const refusal = this.leaderRefusal();
    if (refusal) return refusal;
    if (this.log.commitIndex < this.termStartIndex) {
      return { ok: false, code: 'RAFTVIP_MEMBERSHIP_PENDING', message: 'the leader has not yet committed an entry of its term' };
    }
    if (this.membershipIndex > this.log.commitIndex) {
      return { ok: false, code: 'RAFTVIP_MEMBERSHIP_PENDING', message: `membership change at index ${this.membershipIndex} is not committed yet` };
    }
    const current = new Set(this.membership.voters);
    const wanted = new Set(next.voters);
    if (wanted.size !== next.voters.length) {
      return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: 'duplicate voter ids' };
    }
    const added = [...wanted].filter((v) => !current.has(v));
    const removed = [...current].filter((v) => !wanted.has(v));
    if (added.length + removed.length !== 1) {
      return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: 'a membership change must add or remove exactly one voter' };
    }
    if (wanted.size < 1 || wanted.size > votersMax) {
      return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: `voters must number 1 to ${votersMax}` };
    }
    return this.appendAsLeader({ type: 'membership', membership: { voters: [...next.voters] } });
  }

  /** Hand leadership to `to` (or the most up-to-date voter): TimeoutNow once it has our log. */
  transferLeadership(to?: NodeId): { ok: true; transferee: NodeId } | { ok: false; code: string; message: string } {
    this.assertNoReady();
    if (this.role !== 'leader') return { ok: false, code: 'RAFTVIP_NOT_LEADER', message: 'not the leader' };
    const target = to ?? this.bestTransferee();
    if (target === null) return { ok: false, code: 'RAFTVIP_NO_TRANSFEREE', message: 'no other voter to transfer to' };
    if (target === this.id) return { ok: false, code: 'RAFTVIP_TRANSFER_TO_SELF', message: 'already the leader' };
    if (!this.membership.voters.includes(target)) {
      return { ok: false, code: 'RAFTVIP_UNKNOWN_PEER', message: `${target} is not a voter` };
    }
    this.beginTransfer(target);
    return { ok: true, transferee: target };
  }

  /**
   * The state machine captured everything up to `index` (at most the applied index) in `data`:
   * keep it as the snapshot to send to lagging followers and drop the log before it. The
   * driver persists the returned snapshot with the remaining entries.
   */
  compact(index: number, data: Uint8Array): Snapshot {
    this.assertNoReady();
    assert(index <= this.log.appliedIndex, `compact ${index} beyond applied ${this.log.appliedIndex}`);
    const entryTerm = this.log.termAt(index);
    assert(entryTerm !== null, `compact at unknown index ${index}`);
    const meta: SnapshotMeta = { index: logIndex(index), term: entryTerm, membership: this.log.membershipAt(index).membership };
    this.log.compact(meta);
    const snapshot: Snapshot = { meta, data };
    this.snapshotData = snapshot;
    return snapshot;
  }

  /** Entries after the snapshot, for the driver to persist after compact(). */
  entriesAfterSnapshot(): Entry[] {
    return this.log.slice(this.log.firstIndex(), this.log.lastIndex(), Number.MAX_SAFE_INTEGER);
  }

  hasReady(): boolean {
    return (
      this.messages.length > 0 ||
      this.pendingSnapshot !== null ||
      this.log.unstableEntries().length > 0 ||
      this.log.commitIndex > this.log.appliedIndex ||
      !sameHardState(this.hardState(), this.lastHardState)
    );
  }

  ready(): Ready {
    this.assertNoReady();
    const hardState = this.hardState();
    const ready: Ready = {
      hardState: sameHardState(hardState, this.lastHardState) ? null : hardState,
      snapshot: this.pendingSnapshot,
      entries: this.log.unstableEntries(),
      messages: this.messages,
      committedEntries: this.log.nextCommitted(applyEntriesCountMax),
    };
    this.messages = [];
    this.readyOutstanding = true;
    return ready;
  }

  /** The driver persisted, sent and applied everything in `ready`. */
  advance(ready: Ready): void {
    assert(this.readyOutstanding, 'advance without ready');
    this.readyOutstanding = false;
    if (ready.hardState) this.lastHardState = ready.hardState;
    if (ready.snapshot) {
      this.pendingSnapshot = null;
      this.log.stableTo(ready.snapshot.meta.index);
    }
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry) {
      // Only mark stable what is still the same entry: a later step may have truncated it.
      if (this.log.termAt(lastEntry.index) === lastEntry.term) this.log.stableTo(lastEntry.index);
    }
    const lastApplied = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastApplied) this.log.appliedTo(lastApplied.index);
    this.maybeFinishLeaderRemoval();
  }

  hardState(): HardState {
    return { term: this.currentTerm, votedFor: this.votedFor, commitIndex: this.log.commitIndex };
  }

  lease(): LeaseStatus {
    const untilTick = this.leaseUntilTick();
    return { valid: untilTick !== null && this.tickCount < untilTick, untilTick };
  }

  status(): RaftStatus {
    const peers: PeerStatus[] = [];
    for (const [id, pr] of this.progress) {
      peers.push({ id, matchIndex: pr.matchIndex, nextIndex: pr.nextIndex, state: pr.state, recentActive: pr.recentActive });
    }
    return {
      id: this.id,
      role: this.role,
      term: this.currentTerm,
      leader: this.leader,
      votedFor: this.votedFor,
      commitIndex: this.log.commitIndex,
      appliedIndex: this.log.appliedIndex,
      lastIndex: this.log.lastIndex(),
      membership: this.membership,
      tick: this.tickCount,
      lease: this.lease(),
      transferee: this.transferee,
      peers,
      ackedEntriesLost: this.ackedEntriesLostCount,
    };
  }

  get currentRole(): Role {
    return this.role;
  }

  get term(): Term {
    return this.currentTerm;
  }

  get leaderId(): NodeId | null {
    return this.leader;
  }

  get ticks(): number {
    return this.tickCount;
  }

  /** For checkers: the entry at `index`, if held. */
  entryAt(index: number): Entry | null {
    return this.log.entryAt(index);
  }

  termAt(index: number): Term | null {
    return this.log.termAt(index);
  }

  get snapshotMeta(): SnapshotMeta {
    return this.log.snapshot();
  }

  get currentMembership(): Membership {
    return this.membership;
  }

  // ---- Time ---------------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      if (this.promotable() && !this.isFenced()) this.startPreVote();
      else this.randomizedElectionTicks = this.newElectionTimeout();
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.checkQuorumElapsed++;
    if (this.checkQuorumElapsed >= this.timing.electionTicks) {
      this.checkQuorumElapsed = 0;
      // Check-quorum: a leader that has not heard from a majority within an election timeout
      // steps down (its lease lapsed long before).
      if (!this.quorumRecentlyActive()) {
        this.becomeFollower(this.currentTerm, none);
        return;
      }
      for (const pr of this.progress.values()) pr.recentActive = false;
    }
    if (this.transferee !== null) {
      this.transferElapsed++;
      if (this.transferElapsed >= this.timing.electionTicks) this.abortTransfer();
    }
    if (this.heartbeatElapsed >= this.timing.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private newElectionTimeout(): number {
    return this.timing.electionTicks + this.random.nextInt(this.timing.electionTicks);
  }

  // ---- Roles --------------------------------------------------------------------------------

  private resetTimers(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.checkQuorumElapsed = 0;
    this.randomizedElectionTicks = this.newElectionTimeout();
  }

  private setTerm(next: Term): void {
    assert(next >= this.currentTerm, `term went backwards: ${this.currentTerm} -> ${next}`);
    if (next > this.currentTerm) {
      this.currentTerm = next;
      this.votedFor = none;
    }
  }

  private becomeFollower(next: Term, leader: NodeId | null): void {
    this.setTerm(next);
    this.role = 'follower';
    this.leader = leader;
    this.resetTimers();
    this.clearLeaderState();
    if (leader !== null) this.fenceElapsed = 0;
  }

  private clearLeaderState(): void {
    this.progress.clear();
    this.transferee = none;
    this.transferElapsed = 0;
    this.votes.clear();
  }

  private promotable(): boolean {
    return this.membership.voters.includes(this.id);
  }

  private startPreVote(): void {
    this.role = 'pre-candidate';
    this.leader = none;
    this.leaderTransferee = none;
    this.resetTimers();
    this.clearLeaderState();
    this.votes.set(this.id, true);
    if (this.tallyWon()) {
      this.startElection({ transfer: false });
      return;
    }
    this.sendVoteRequests('pre-vote', asTerm(this.currentTerm + 1), false);
  }

  private startElection(options: { transfer: boolean }): void {
    this.setTerm(asTerm(this.currentTerm + 1));
    this.role = 'candidate';
    this.leader = none;
    this.leaderTransferee = none;
    // Campaigning gives up on the old leader. Reached by a timer (the fence lapsed long ago) or
    // by TimeoutNow (the leader gave up its lease first).
    this.fenceElapsed = Math.max(this.fenceElapsed, this.fenceTicks);
    this.votedFor = this.id;
    this.resetTimers();
    this.clearLeaderState();
    this.votes.set(this.id, true);
    this.campaignSentAtTick = this.tickCount;
    if (this.tallyWon()) {
      this.becomeLeader();
      return;
    }
    this.sendVoteRequests('vote', this.currentTerm, options.transfer);
  }

  private sendVoteRequests(type: 'pre-vote' | 'vote', requestTerm: Term, transfer: boolean): void {
    for (const voter of this.membership.voters) {
      if (voter === this.id) continue;
      this.send({
        type,
        from: this.id,
        to: voter,
        term: requestTerm,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        commit: this.log.commitIndex,
        ...(transfer ? { transfer: true } : {}),
      });
    }
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', 'only a candidate becomes leader');
    this.role = 'leader';
    this.leader = this.id;
    this.resetTimers();
    this.leaseEpoch = 0;
    this.progress.clear();
    for (const voter of this.membership.voters) {
      if (voter === this.id) continue;
      this.progress.set(voter, this.newProgress(this.votes.get(voter) === true));
    }
    // The votes themselves fence the voters from the moment they were granted: the vote request
    // is the lease's first round.
    for (const [voter, granted] of this.votes) {
      const pr = this.progress.get(voter);
      if (pr && granted) pr.ackedSentAtTick = this.campaignSentAtTick;
    }
    this.votes.clear();
    // §5.4.2 and §8: a no-op of our own term lets us commit everything before it.
    const result = this.appendAsLeader({ type: 'noop' });
    assert(result.ok, 'leader could not append its no-op');
    this.termStartIndex = result.index;
  }

  private newProgress(recentActive: boolean): Progress {
    return {
      matchIndex: 0,
      nextIndex: this.log.lastIndex() + 1,
      state: 'probe',
      probeSent: false,
      inflight: [],
      pendingSnapshot: 0,
      recentActive,
      commitSent: 0,
      ackedSentAtTick: -1,
    };
  }

  // ---- Messages -----------------------------------------------------------------------------

  private send(message: Message): void {
    this.messages.push(message);
  }

  private stepMessage(m: Message): void {
    if (m.term > this.currentTerm) {
      if (m.type === 'pre-vote' || m.type === 'vote') {
        if (this.isFenced() && !this.isAnnouncedTransferVote(m)) {
          // Stickiness: we heard from a live leader recently. Ignore the request without even
          // learning its term, so a rejoining node cannot disrupt a healthy cluster.
          return;
        }
      }
      if (m.type === 'pre-vote') {
        // Answer without changing our term (pre-vote never disturbs state).
      } else if (m.type === 'pre-vote-response' && !m.reject) {
        // A granted pre-vote carries the future term; it does not move ours.
      } else {
        const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot';
        this.becomeFollower(m.term, fromLeader ? m.from : none);
      }
    } else if (m.term < this.currentTerm) {
      this.stepStale(m);
      return;
    }

    switch (m.type) {
      case 'pre-vote':
      case 'vote':
        this.handleVoteRequest(m);
        return;
      case 'pre-vote-response':
      case 'vote-response':
        this.handleVoteResponse(m);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        this.handleFromLeader(m);
        return;
      case 'append-response':
      case 'heartbeat-response':
        if (this.role === 'leader') this.handleReplicationResponse(m);
        return;
      case 'timeout-now':
        this.handleTimeoutNow(m);
        return;
      default: {
        const unreachable: never = m.type;
        throw new Error(`unknown message type ${String(unreachable)}`);
      }
    }
  }

  /** A message from an older term. Tell a stale leader about the new term so it steps down;
   * reject a stale pre-vote so its sender can learn our term; ignore the rest. */
  private stepStale(m: Message): void {
    if (m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot') {
      this.send(this.reply(m, m.type === 'heartbeat' ? 'heartbeat-response' : 'append-response', { reject: true }));
    } else if (m.type === 'pre-vote') {
      this.send(this.reply(m, 'pre-vote-response', { reject: true }));
    }
  }

  private reply(m: Message, type: Message['type'], fields: Partial<Message>): Message {
    return {
      type,
      from: this.id,
      to: m.from,
      term: this.currentTerm,
      index: logIndex(0),
      logTerm: asTerm(0),
      commit: this.log.commitIndex,
      ...(m.sentAtTick !== undefined ? { sentAtTick: m.sentAtTick } : {}),
      ...(m.epoch !== undefined ? { epoch: m.epoch } : {}),
      ...fields,
    };
  }

  private isFenced(): boolean {
    // A leader refuses (pre-)votes outright: it counts itself in its own lease quorum.
    if (this.role === 'leader') return true;
    if (this.unsafe.noFence) return false;
    return this.fenceElapsed < this.fenceTicks;
  }

  /** The one exception to the fence: a vote sent because of TimeoutNow by the transferee that
   * our leader announced (or, on the leader itself, the transferee it chose). */
  private isAnnouncedTransferVote(m: Message): boolean {
    const announced = this.role === 'leader' ? this.transferee : this.leaderTransferee;
    return m.transfer === true && m.type === 'vote' && announced !== null && m.from === announced;
  }

  private handleVoteRequest(m: Message): void {
    const responseType = m.type === 'pre-vote' ? 'pre-vote-response' : 'vote-response';
    // The fence holds for requests of our own term too: a response may have moved a fenced
    // follower to a new term without a leader, and a vote in that term must still wait.
    if (this.isFenced() && !this.isAnnouncedTransferVote(m) && !(m.type === 'vote' && this.votedFor === m.from)) {
      this.send({ ...this.reply(m, responseType, { reject: true }) });
      return;
    }
    // A pre-vote is granted as if for the future term it names; a vote only if we have not
    // voted for someone else in this term and follow no leader in it.
    const canVote =
      this.votedFor === m.from ||
      (this.votedFor === none && this.leader === none) ||
      (m.type === 'pre-vote' && m.term > this.currentTerm);
    const grant = canVote && this.log.isUpToDate(m.index, m.logTerm) && this.role !== 'leader';
    if (!grant) {
      this.send({ ...this.reply(m, responseType, { reject: true }) });
      return;
    }
    if (m.type === 'vote') {
      // A pre-candidate that votes for another gives up its own campaign: the vote fences it,
      // and a fenced node must not go on to vote for itself in a later term.
      if (this.role !== 'follower') this.becomeFollower(this.currentTerm, none);
      this.votedFor = m.from;
      // The vote fences us as a heartbeat would: the candidate counts it toward its lease.
      this.electionElapsed = 0;
      this.fenceElapsed = 0;
      this.leaderTransferee = none;
    }
    // A pre-vote response carries the term the candidate asked about.
    this.send({ ...this.reply(m, responseType, { reject: false }), term: m.type === 'pre-vote' ? m.term : this.currentTerm });
  }

  private handleVoteResponse(m: Message): void {
    const expected = this.role === 'pre-candidate' ? 'pre-vote-response' : this.role === 'candidate' ? 'vote-response' : null;
    if (m.type !== expected) return;
    if (!this.membership.voters.includes(m.from)) return;
    this.votes.set(m.from, !m.reject);
    if (this.tallyWon()) {
      if (this.role === 'pre-candidate') {
        // Belt and braces for the rule above: never leave pre-vote while fenced.
        if (this.isFenced()) this.becomeFollower(this.currentTerm, this.leader);
        else this.startElection({ transfer: false });
      } else this.becomeLeader();
    } else if (this.tallyLost()) {
      this.becomeFollower(this.currentTerm, none);
    }
  }

  private tallyWon(): boolean {
    let granted = 0;
    for (const voter of this.membership.voters) if (this.votes.get(voter) === true) granted++;
    return granted >= quorumOf(this.membership.voters.length);
  }

  private tallyLost(): boolean {
    let rejected = 0;
    for (const voter of this.membership.voters) if (this.votes.get(voter) === false) rejected++;
    return rejected > this.membership.voters.length - quorumOf(this.membership.voters.length);
  }

  private handleFromLeader(m: Message): void {
    if (this.role !== 'follower') this.becomeFollower(this.currentTerm, m.from);
    assert(this.leader === null || this.leader === m.from, `two leaders in term ${this.currentTerm}: ${this.leader} and ${m.from}`);
    this.leader = m.from;
    this.electionElapsed = 0;
    this.fenceElapsed = 0;
    this.leaderTransferee = m.transferee ?? none;
    if (m.type === 'heartbeat') {
      this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
      this.send(this.reply(m, 'heartbeat-response', {}));
    } else if (m.type === 'append') {
      this.handleAppend(m);
    } else {
      this.handleSnapshot(m);
    }
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.commitIndex) {
      // Everything up to our commit index matches by definition; tell the leader where we are.
      this.send(this.reply(m, 'append-response', { index: this.log.commitIndex }));
      return;
    }
    const lastMatch = this.log.tryAppend(m.index, m.logTerm, m.entries ?? []);
    if (lastMatch !== null) {
      this.log.commitTo(Math.min(m.commit, lastMatch));
      this.onLogChanged();
      this.send(this.reply(m, 'append-response', { index: lastMatch }));
      return;
    }
    const hint = this.log.conflictHint(m.index, m.logTerm);
    this.send(
      this.reply(m, 'append-response', {
        reject: true,
        index: m.index,
        hint,
        logTerm: this.log.termAt(hint) ?? asTerm(0),
      }),
    );
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    if (!snapshot) return;
    const meta = snapshot.meta;
    if (meta.index <= this.log.commitIndex) {
      this.send(this.reply(m, 'append-response', { index: this.log.commitIndex }));
      return;
    }
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We already hold the snapshot's last entry: just move the commit index (etcd does too).
      this.log.commitTo(meta.index);
    } else {
      this.log.restore(meta);
      this.snapshotData = snapshot;
      this.pendingSnapshot = snapshot;
      this.onLogChanged();
    }
    this.send(this.reply(m, 'append-response', { index: this.log.lastIndex() }));
  }

  private handleTimeoutNow(m: Message): void {
    // Only for the transfer our leader is announcing now. A TimeoutNow that arrives after the
    // leader aborted (and we acknowledged a round without a transferee, which its lease counts)
    // must not make us vote for ourselves inside our fence.
    if (m.from !== this.leader || !this.promotable() || this.leaderTransferee !== this.id) return;
    // The leader gave up its lease before sending this; campaign at once, skipping pre-vote.
    this.startElection({ transfer: true });
  }

  /** Membership follows the newest membership entry in the log, committed or not (§4.1). */
  private onLogChanged(): void {
    const found = this.log.membershipAt(this.log.lastIndex());
    if (found.index === this.membershipIndex && found.membership === this.membership) return;
    this.membership = found.membership;
    this.membershipIndex = found.index;
    if (this.role === 'leader') this.syncProgress();
  }

  // ---- Leader -------------------------------------------------------------------------------

  private leaderRefusal(): ProposeResult | null {
    if (this.role !== 'leader') return { ok: false, code: 'RAFTVIP_NOT_LEADER', message: `not the leader (leader: ${this.leader ?? 'unknown'})` };
    if (this.transferee !== null) {
      return { ok: false, code: 'RAFTVIP_TRANSFER_IN_PROGRESS', message: `handing leadership to ${this.transferee}` };
    }
    return null;
  }

  private appendAsLeader(
    body: { type: 'noop' } | { type: 'command'; data: Uint8Array } | { type: 'membership'; membership: Membership },
  ): ProposeResult {
    const index = logIndex(this.log.lastIndex() + 1);
    const entry = { ...body, term: this.currentTerm, index } as Entry;
    this.log.append([entry]);
    if (entry.type === 'membership') this.onLogChanged();
    this.maybeCommit();
    this.broadcastAppend();
    return { ok: true, index, term: this.currentTerm };
  }

  private syncProgress(): void {
    for (const voter of this.membership.voters) {
      if (voter !== this.id && !this.progress.has(voter)) this.progress.set(voter, this.newProgress(true));
    }
    // A removed voter keeps receiving appends until its removal commits, so that it learns of
    // it (and stops calling itself a member) instead of being cut off mid-change. Its answers
    // count for nothing: commit, lease and check-quorum only look at the voters.
    const removalCommitted = this.membershipIndex <= this.log.commitIndex;
    for (const id of [...this.progress.keys()]) {
      if (!this.membership.voters.includes(id) && removalCommitted) this.progress.delete(id);
    }
    if (this.transferee !== null && !this.membership.voters.includes(this.transferee)) this.abortTransfer();
  }

  private selfCounts(): boolean {
    return this.membership.voters.includes(this.id);
  }

  private maybeCommit(): void {
    const matches: number[] = [];
    for (const voter of this.membership.voters) {
      if (voter === this.id) matches.push(this.log.lastIndex());
      else matches.push(this.progress.get(voter)?.matchIndex ?? 0);
    }
    matches.sort((a, b) => b - a);
    const candidate = matches[quorumOf(matches.length) - 1] ?? 0;
    // §5.4.2: only entries of the current term are committed by counting replicas.
    if (candidate > this.log.commitIndex && this.log.termAt(candidate) === this.currentTerm) {
      const before = this.log.commitIndex;
      this.log.commitTo(candidate);
      this.broadcastAppend();
      if (before < this.membershipIndex && this.membershipIndex <= candidate) this.syncProgress();
    }
  }

  /** Once the membership entry that removed this leader is committed, step down and let the
   * most up-to-date remaining voter campaign at once (dissertation §4.2.2). */
  private maybeFinishLeaderRemoval(): void {
    if (this.role !== 'leader' || this.selfCounts()) return;
    if (this.log.commitIndex < this.membershipIndex) return;
    if (this.log.appliedIndex < this.membershipIndex) return;
    const target = this.bestTransferee();
    if (target !== null) {
      this.beginTransfer(target);
    } else {
      this.becomeFollower(this.currentTerm, none);
    }
  }

  private bestTransferee(): NodeId | null {
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const voter of this.membership.voters) {
      if (voter === this.id) continue;
      const match = this.progress.get(voter)?.matchIndex ?? 0;
      if (match > bestMatch) {
        best = voter;
        bestMatch = match;
      }
    }
    return best;
  }

  private beginTransfer(target: NodeId): void {
    if (this.transferee === target) return;
    if (this.transferee !== null) this.abortTransfer();
    // Give up the lease before anything else: from here on the followers may vote for the
    // transferee without waiting out their stickiness.
    this.transferee = target;
    this.transferElapsed = 0;
    this.leaseEpoch++;
    for (const pr of this.progress.values()) pr.ackedSentAtTick = -1;
    // Announce the transferee to every follower, so their fence lets its vote through.
    this.broadcastHeartbeat();
    const pr = this.progress.get(target);
    if (pr && pr.matchIndex === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target, { force: true });
  }

  private abortTransfer(): void {
    this.transferee = none;
    this.transferElapsed = 0;
    // Only rounds sent after this point count for the lease: a follower that saw the transferee
    // announced may have voted for it already.
    this.leaseEpoch++;
    for (const pr of this.progress.values()) pr.ackedSentAtTick = -1;
    this.broadcastHeartbeat();
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({
      type: 'timeout-now',
      from: this.id,
      to,
      term: this.currentTerm,
      index: this.log.lastIndex(),
      logTerm: this.log.lastTerm(),
      commit: this.log.commitIndex,
    });
  }

  private leaderRoundFields(): Pick<Message, 'sentAtTick' | 'epoch' | 'transferee'> {
    return {
      sentAtTick: this.tickCount,
      epoch: this.leaseEpoch,
      ...(this.transferee !== null ? { transferee: this.transferee } : {}),
    };
  }

  private broadcastHeartbeat(): void {
    for (const [id, pr] of this.progress) {
      this.send({
        type: 'heartbeat',
        from: this.id,
        to: id,
        term: this.currentTerm,
        index: logIndex(0),
        logTerm: asTerm(0),
        commit: logIndex(Math.min(pr.matchIndex, this.log.commitIndex)),
        ...this.leaderRoundFields(),
      });
      // A probe stalled by a lost message gets another chance each heartbeat.
      if (pr.state === 'probe') pr.probeSent = false;
    }
  }

  private broadcastAppend(): void {
    for (const id of this.progress.keys()) this.sendAppend(id, { force: false });
  }

  /** Send what `to` is missing, if flow control allows: entries, or the snapshot when the
   * entries it needs are compacted away. An empty append still carries the commit index. */
  private sendAppend(to: NodeId, options: { force: boolean }): void {
    const pr = this.progress.get(to);
    if (!pr) return;
    if (pr.state === 'snapshot') return;
    if (pr.state === 'probe' && pr.probeSent && !options.force) return;
    if (pr.state === 'replicate' && pr.inflight.length >= inflightAppendsMax) return;

    const prevIndex = pr.nextIndex - 1;
    const prevTerm = this.log.termAt(prevIndex);
    if (prevTerm === null) {
      this.sendSnapshot(to, pr);
      return;
    }
    const entries = this.log.slice(pr.nextIndex, this.log.lastIndex(), appendEntriesCountMax);
    if (entries.length === 0 && pr.state === 'replicate' && !options.force && pr.commitSent >= this.log.commitIndex) {
      // Nothing new and the follower already knows the commit index: stay quiet (an empty
      // append answered by an empty append would ping-pong forever).
      return;
    }
    this.send({
      type: 'append',
      from: this.id,
      to,
      term: this.currentTerm,
      index: logIndex(prevIndex),
      logTerm: prevTerm,
      commit: this.log.commitIndex,
      entries,
      ...this.leaderRoundFields(),
    });
    pr.commitSent = Math.max(pr.commitSent, Math.min(this.log.commitIndex, prevIndex + entries.length));
    const last = entries[entries.length - 1];
    if (pr.state === 'replicate') {
      if (last) {
        pr.nextIndex = last.index + 1;
        pr.inflight.push(last.index);
      }
    } else {
      pr.probeSent = true;
    }
  }

  private sendSnapshot(to: NodeId, pr: Progress): void {
    const snapshot = this.snapshotData;
    assert(snapshot !== null, `follower ${to} needs entries before ${this.log.firstIndex()} but there is no snapshot`);
    this.send({
      type: 'snapshot',
      from: this.id,
      to,
      term: this.currentTerm,
      index: logIndex(0),
      logTerm: asTerm(0),
      commit: this.log.commitIndex,
      snapshot,
      ...this.leaderRoundFields(),
    });
    pr.state = 'snapshot';
    pr.pendingSnapshot = snapshot.meta.index;
    pr.inflight = [];
  }

  private handleReplicationResponse(m: Message): void {
    const pr = this.progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.sentAtTick !== undefined && m.epoch === this.leaseEpoch && this.transferee === null) {
      pr.ackedSentAtTick = Math.max(pr.ackedSentAtTick, m.sentAtTick);
    }
    if (m.type === 'heartbeat-response') {
      if (pr.state === 'snapshot') {
        // A lost snapshot is re-sent after a heartbeat round trip shows the follower is alive.
        this.becomeProbe(pr);
      }
      if (pr.matchIndex < this.log.lastIndex()) {
        // The follower is alive but behind: appends were lost. As etcd does, free one slot of a
        // full window and send an append even if empty; the follower's rejection of its
        // previous index starts a probe from where it really is.
        if (pr.state === 'replicate' && pr.inflight.length >= inflightAppendsMax) pr.inflight.shift();
        this.sendAppend(m.from, { force: true });
      } else if (pr.state === 'probe') {
        this.sendAppend(m.from, { force: false });
      }
      return;
    }
    if (m.reject) {
      this.handleAppendReject(m, pr);
      return;
    }
    const acked = m.index;
    if (acked > pr.matchIndex) {
      pr.matchIndex = acked;
      if (pr.nextIndex < acked + 1) pr.nextIndex = acked + 1;
      pr.inflight = pr.inflight.filter((i) => i > acked);
      if (pr.state !== 'replicate') this.becomeReplicate(pr);
      this.maybeCommit();
    } else if (pr.state === 'probe') {
      pr.probeSent = false;
    }
    if (pr.state === 'snapshot' && pr.matchIndex >= pr.pendingSnapshot) this.becomeReplicate(pr);
    if (this.transferee === m.from && pr.matchIndex === this.log.lastIndex()) this.sendTimeoutNow(m.from);
    this.sendAppend(m.from, { force: false });
  }

  private handleAppendReject(m: Message, pr: Progress): void {
    // A rejection of anything but our latest probe (or below what already matched) is stale.
    if (pr.state === 'replicate' && m.index <= pr.matchIndex) return;
    if (pr.state === 'probe' && m.index !== pr.nextIndex - 1) return;
    let next = m.hint ?? m.index;
    if (m.logTerm > 0) next = this.log.conflictHint(next, m.logTerm);
    if (pr.state === 'probe' && m.index <= pr.matchIndex) {
      // The follower rejects an index it once acknowledged: it lost entries it had reported
      // durable (a disk that ignored fsync), or this is a very late rejection. Raft cannot
      // promise anything once acknowledged data is gone, but the leader must neither spin
      // resending the same append nor leave the follower behind forever: believe the
      // follower, lower its match index (commitIndex never moves back) and resend from there.
      this.ackedEntriesLostCount++;
      pr.matchIndex = Math.min(pr.matchIndex, next);
      pr.nextIndex = pr.matchIndex + 1;
      this.becomeProbe(pr);
      this.sendAppend(m.from, { force: true });
      return;
    }
    pr.nextIndex = Math.max(pr.matchIndex + 1, Math.min(m.index, next + 1));
    this.becomeProbe(pr);
    this.sendAppend(m.from, { force: true });
  }

  private becomeProbe(pr: Progress): void {
    pr.state = 'probe';
    pr.probeSent = false;
    pr.inflight = [];
    if (pr.nextIndex <= pr.matchIndex) pr.nextIndex = pr.matchIndex + 1;
  }

  private becomeReplicate(pr: Progress): void {
    pr.state = 'replicate';
    pr.probeSent = false;
    pr.inflight = [];
    pr.nextIndex = Math.max(pr.nextIndex, pr.matchIndex + 1);
  }

  private quorumRecentlyActive(): boolean {
    let active = 0;
    for (const voter of this.membership.voters) {
      if (voter === this.id || this.progress.get(voter)?.recentActive) active++;
    }
    return active >= quorumOf(this.membership.voters.length);
  }

  private leaseUntilTick(): number | null {
    if (this.role !== 'leader' || this.transferee !== null) return null;
    const acks: number[] = [];
    for (const voter of this.membership.voters) {
      acks.push(voter === this.id ? this.tickCount : this.progress.get(voter)?.ackedSentAtTick ?? -1);
    }
    acks.sort((a, b) => b - a);
    const start = acks[quorumOf(acks.length) - 1] ?? -1;
    if (start < 0) return null;
    return start + this.leaseTicks;
  }

  private assertNoReady(): void {
    assert(!this.readyOutstanding, 'the core was used between ready() and advance()');
  }
}

export function quorumOf(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.votedFor === b.votedFor && a.commitIndex === b.commitIndex;
}
