// The one place that orders Raft I/O in the daemon: it runs the pure core on a monotonic clock
// and, for every Ready, persists (one fsync) → fences the VIP (beforeSend) → sends → applies →
// advances, nowhere else (STYLE.md rule 2). The simulator drives the core with the same discipline.
//
// Time: tick k is due at t0 + k × tickMs on the monotonic clock. Each pump first catches up on
// every due tick, then steps queued messages, so a process that wakes from a pause or an
// event-loop stall sees its lease lapse before it looks at anything else. The lease is judged
// against the clock, never against how many ticks were processed.

import { performance } from 'node:perf_hooks';
import { assert, RaftAssertionError } from '../raft/assert.js';
import { ClusterState } from '../raft/cluster-state.js';
import type { ProposeResult, Raft, RaftStatus } from '../raft/raft.js';
import type { Entry, HardState, LogIndex, Membership, Message, NodeId, Ready, Snapshot, Term } from '../raft/types.js';

/** Messages waiting for the core while it persists; further ones drop the oldest. */
export const inboxMessagesMax = 4096;
/** Compact the log once this many entries are applied past the snapshot. */
export const compactAfterEntriesDefault = 1024;
/** Proposals waiting for their commit at once. */
export const pendingProposalsMax = 1024;

export interface DriverStorage {
  save(batch: { hardState: HardState | null; entries: readonly Entry[]; snapshot: Snapshot | null }): Promise<void>;
  saveSnapshot(snapshot: Snapshot, hardState: HardState, entriesAfter: readonly Entry[]): Promise<void>;
}

export interface DriverTransport {
  send(message: Message): void;
}

export interface MonotonicClock {
  nowMs(): number;
}

export const systemClock: MonotonicClock = { nowMs: () => performance.now() };

export type DriverLog = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface DriverObserver {
  /** After every Ready: what changed, for logs and metrics. */
  onReady?(info: { fsyncMs: number; entries: number; messages: number; applied: number }): void;
  onRoleChange?(info: { role: RaftStatus['role']; term: Term; leader: NodeId | null }): void;
  /** A pause or stall longer than the lease was detected on waking. */
  onStall?(info: { stalledMs: number }): void;
  onApply?(entry: Entry, state: ClusterState): void;
}

export interface RaftDriverOptions {
  readonly raft: Raft;
  readonly storage: DriverStorage;
  readonly transport: DriverTransport;
  readonly state: ClusterState;
  readonly tickMs: number;
  readonly clock?: MonotonicClock;
  readonly log?: DriverLog;
  readonly observer?: DriverObserver;
  readonly compactAfterEntries?: number;
  /**
   * Runs after persisting and before sending each Ready's messages (persist → fence → send →
   * apply → advance). The daemon takes the VIP down here when the lease is gone, so no message
   * that lets another node claim it (a TimeoutNow, a vote) leaves this host while it still holds
   * the address. Return a promise to make the send wait for it.
   */
  readonly beforeSend?: () => Promise<void> | void;
}

export type CommitResult =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  | { readonly ok: false; readonly code: string; readonly message: string };

interface PendingProposal {
  readonly index: number;
  readonly term: number;
  readonly resolve: (result: CommitResult) => void;
  readonly timer: NodeJS.Timeout;
}

export class RaftDriver {
  private readonly raft: Raft;
  private readonly storage: DriverStorage;
  private readonly transport: DriverTransport;
  private readonly tickMs: number;
  private readonly clock: MonotonicClock;
  private readonly log: DriverLog;
  private readonly observer: DriverObserver;
  private readonly compactAfterEntries: number;
  private readonly beforeSend: (() => Promise<void> | void) | null;
  private state: ClusterState;

  private startedAtMs = 0;
  private processedTicks = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private pumping = false;
  private pumpAgain = false;
  private inbox: Message[] = [];
  /** The leader's latest heartbeat per peer, and the round trips measured from them. */
  private heartbeatSent = new Map<NodeId, { tick: number; atMs: number }>();
  private rttMs = new Map<NodeId, number>();
  /** Calls into the core from outside the loop (proposals, transfers), run in order by it. */
  private operations: (() => void)[] = [];
  private pending: PendingProposal[] = [];
  private lastRole = '';
  private lastWakeMs = 0;
  private failure: Error | null = null;
  private idle: (() => void)[] = [];

  constructor(options: RaftDriverOptions) {
    this.raft = options.raft;
    this.storage = options.storage;
    this.transport = options.transport;
    this.state = options.state;
    this.tickMs = options.tickMs;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => {});
    this.observer = options.observer ?? {};
    this.compactAfterEntries = options.compactAfterEntries ?? compactAfterEntriesDefault;
    this.beforeSend = options.beforeSend ?? null;
    assert(this.tickMs > 0, 'tickMs must be positive');
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.startedAtMs = this.clock.nowMs();
    this.lastWakeMs = this.startedAtMs;
    this.processedTicks = 0;
    this.schedule();
    this.pump();
  }

  /** Stop ticking and wait for a Ready in progress to finish persisting. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const proposal of this.pending.splice(0)) {
      clearTimeout(proposal.timer);
      proposal.resolve({ ok: false, code: 'RAFTVIP_STOPPED', message: 'the daemon is stopping' });
    }
    if (this.pumping) await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  /** A message from the transport. Queued, and stepped after the due ticks. */
  receive(message: Message): void {
    if (!this.running) return;
    if (message.type === 'heartbeat-response' && message.sentAtTick !== undefined) {
      const sent = this.heartbeatSent.get(message.from);
      if (sent && sent.tick === message.sentAtTick) this.rttMs.set(message.from, this.clock.nowMs() - sent.atMs);
    }
    if (this.inbox.length >= inboxMessagesMax) this.inbox.shift();
    this.inbox.push(message);
    this.pump();
  }

  /** Propose a command; resolves once it is applied here (or fails: not leader, lost, timeout). */
  propose(data: Uint8Array, options: { timeoutMs: number }): Promise<CommitResult> {
    return this.track(() => this.raft.propose(data), options.timeoutMs);
  }

  proposeMembership(next: Membership, options: { timeoutMs: number }): Promise<CommitResult> {
    return this.track(() => this.raft.proposeMembership(next), options.timeoutMs);
  }

  /** Start a leadership transfer (the lease is given up at once); resolves when started. */
  transferLeadership(to?: NodeId): Promise<ReturnType<Raft['transferLeadership']>> {
    return new Promise((resolve) => {
      if (!this.running) {
        resolve({ ok: false, code: 'RAFTVIP_STOPPED', message: 'the daemon is not running' });
        return;
      }
      this.enqueue(() => resolve(this.raft.transferLeadership(to)));
    });
  }

  /** When this node's lease ends, in monotonic ms; null when it holds none. */
  leaseExpiresAtMs(): number | null {
    // The core's state is readable between ready() and advance(); it only changes in steps.
    if (this.raft.currentRole !== 'leader') return null;
    const until = this.raft.lease().untilTick;
    if (until === null) return null;
    return this.startedAtMs + until * this.tickMs;
  }

  /** Does this node hold the lease at this instant of the monotonic clock? */
  holdsLease(nowMs: number = this.clock.nowMs()): boolean {
    const expires = this.leaseExpiresAtMs();
    return expires !== null && nowMs < expires;
  }

  status(): RaftStatus & { leaseExpiresInMs: number | null; stateDigest: number } {
    const status = this.raft.status();
    const expires = this.leaseExpiresAtMs();
    const now = this.clock.nowMs();
    return {
      ...status,
      leaseExpiresInMs: expires !== null && now < expires ? Math.round(expires - now) : null,
      stateDigest: this.state.digest,
    };
  }

  /** Latest heartbeat round trip per peer, in ms (measured while this node leads). */
  peerRttMs(): ReadonlyMap<NodeId, number> {
    return this.rttMs;
  }

  get clusterState(): ClusterState {
    return this.state;
  }

  /** The error that stopped the driver (a storage failure), if any. */
  get error(): Error | null {
    return this.failure;
  }

  // ---- The loop -----------------------------------------------------------------------------

  private schedule(): void {
    if (!this.running) return;
    const nextDue = this.startedAtMs + (this.processedTicks + 1) * this.tickMs;
    const delay = Math.max(0, nextDue - this.clock.nowMs());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
      this.schedule();
    }, delay);
  }

  private dueTicks(nowMs: number): number {
    return Math.floor((nowMs - this.startedAtMs) / this.tickMs);
  }

  /** Process every due tick, first. Called before any message is stepped. */
  private catchUp(): void {
    const now = this.clock.nowMs();
    const stalledMs = now - this.lastWakeMs;
    this.lastWakeMs = now;
    const due = this.dueTicks(now);
    if (stalledMs > this.raft.leaseTicks * this.tickMs) this.observer.onStall?.({ stalledMs });
    while (this.processedTicks < due) {
      this.processedTicks++;
      this.raft.tick();
    }
  }

  private pump(): void {
    if (!this.running || this.failure) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void this.run().finally(() => {
      this.pumping = false;
      for (const resolve of this.idle.splice(0)) resolve();
    });
  }

  private async run(): Promise<void> {
    try {
      do {
        this.pumpAgain = false;
        this.stepInputs();
        while (this.raft.hasReady()) {
          await this.handleReady(this.raft.ready());
          if (!this.running) return;
          this.stepInputs();
        }
      } while (this.pumpAgain && this.running);
    } catch (error) {
      if (error instanceof RaftAssertionError) {
        // A broken invariant: crash, and let systemd restart the process from its storage.
        process.nextTick(() => {
          throw error;
        });
        return;
      }
      // A storage failure leaves durability unknown: stop taking part rather than risk
      // speaking about state that is not on disk. /healthz turns 503 and says why.
      this.failure = error instanceof Error ? error : new Error(String(error));
      this.running = false;
      this.log('error', 'raft driver stopped', { err: this.failure.message, code: (this.failure as { code?: string }).code });
    }
  }

  /** Due ticks first, then messages, then operations: the order a paused process needs. */
  private stepInputs(): void {
    this.catchUp();
    for (let message = this.inbox.shift(); message; message = this.inbox.shift()) this.raft.step(message);
    for (let operation = this.operations.shift(); operation; operation = this.operations.shift()) operation();
    this.noticeRole();
  }

  private async handleReady(ready: Ready): Promise<void> {
    const started = performance.now();
    const hasDurableWork = ready.hardState !== null || ready.snapshot !== null || ready.entries.length > 0;
    if (hasDurableWork) {
      await this.storage.save({ hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot });
    }
    const fsyncMs = performance.now() - started;
    if (ready.messages.length > 0 && this.beforeSend !== null) {
      const fenced = this.beforeSend();
      if (fenced !== undefined) await fenced;
    }
    const sentAtMs = this.clock.nowMs();
    for (const message of ready.messages) {
      if (message.type === 'heartbeat' && message.sentAtTick !== undefined) {
        this.heartbeatSent.set(message.to, { tick: message.sentAtTick, atMs: sentAtMs });
      }
      this.transport.send(message);
    }
    if (ready.snapshot) this.state = ClusterState.restore(ready.snapshot.data);
    let applied = 0;
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.state.appliedIndex) continue;
      this.state.apply(entry);
      applied++;
      this.observer.onApply?.(entry, this.state);
      this.settle(entry);
    }
    this.raft.advance(ready);
    if (hasDurableWork) this.observer.onReady?.({ fsyncMs, entries: ready.entries.length, messages: ready.messages.length, applied });
    await this.maybeCompact();
  }

  private async maybeCompact(): Promise<void> {
    const applied = this.state.appliedIndex;
    if (applied - this.raft.snapshotMeta.index < this.compactAfterEntries) return;
    const snapshot = this.raft.compact(applied, this.state.snapshot());
    await this.storage.saveSnapshot(snapshot, this.raft.hardState(), this.raft.entriesAfterSnapshot());
    this.log('info', 'log compacted', { index: snapshot.meta.index, term: snapshot.meta.term });
  }

  private noticeRole(): void {
    const raft = this.raft;
    const key = `${raft.currentRole}/${raft.term}/${raft.leaderId ?? ''}`;
    if (key === this.lastRole) return;
    this.lastRole = key;
    // Pending proposals are kept across a change of leader: one may still commit under the
    // next leader, and settle() decides its fate when its index is applied (or it times out).
    this.observer.onRoleChange?.({ role: raft.currentRole, term: raft.term, leader: raft.leaderId });
  }

  // ---- Proposals ----------------------------------------------------------------------------

  private track(propose: () => ProposeResult, timeoutMs: number): Promise<CommitResult> {
    if (!this.running) return Promise.resolve({ ok: false, code: 'RAFTVIP_STOPPED', message: 'the daemon is not running' });
    if (this.pending.length >= pendingProposalsMax) {
      return Promise.resolve({ ok: false, code: 'RAFTVIP_BUSY', message: `${pendingProposalsMax} proposals are already waiting` });
    }
    return new Promise<CommitResult>((resolve) => {
      // The core may be between ready() and advance() (persisting): run inside the loop.
      this.enqueue(() => {
        const result = propose();
        if (!result.ok) {
          resolve(result);
          return;
        }
        const timer = setTimeout(() => {
          this.pending = this.pending.filter((p) => p.timer !== timer);
          resolve({ ok: false, code: 'RAFTVIP_TIMEOUT', message: `not committed within ${timeoutMs} ms` });
        }, timeoutMs);
        this.pending.push({ index: result.index, term: result.term, resolve, timer });
      });
    });
  }

  private enqueue(operation: () => void): void {
    this.operations.push(operation);
    this.pump();
  }

  private settle(entry: Entry): void {
    if (this.pending.length === 0) return;
    const still: PendingProposal[] = [];
    for (const proposal of this.pending) {
      if (proposal.index > entry.index) {
        still.push(proposal);
        continue;
      }
      clearTimeout(proposal.timer);
      if (proposal.index === entry.index && proposal.term === entry.term) {
        proposal.resolve({ ok: true, index: entry.index, term: entry.term });
      } else {
        proposal.resolve({ ok: false, code: 'RAFTVIP_PROPOSAL_LOST', message: `index ${proposal.index} was overwritten by a newer leader` });
      }
    }
    this.pending = still;
  }
}
