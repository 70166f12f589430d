// A seeded, deterministic simulator of a whole raftvip cluster: the real Raft core on every
// node, driven exactly as the daemon drives it (catch up ticks, step messages, ready → persist
// and fsync → send → apply → advance), over a simulated network, disk and clocks with faults:
// message loss, duplication, reordering, long delays, symmetric and asymmetric partitions,
// crashes that lose unsynced writes (including torn writes), process pauses, and clocks that
// drift within the bound the lease is computed for. Checkers run after every event; the first
// violation stops the run and is reported with the seed that replays it.

import { Raft, type UnsafeRaftOptions } from '../raft/raft.js';
import { RaftAssertionError } from '../raft/assert.js';
import { ClusterState, encodeCommand } from '../raft/cluster-state.js';
import { SeededRandom } from '../raft/random.js';
import { timingMsDefault, timingToTicks, type TimingMs } from '../raft/timing.js';
import type { Entry, HardState, Message, NodeId, PersistentState, Ready, Snapshot } from '../raft/types.js';
import { emptyHardState, nodeId } from '../raft/types.js';
import { EventQueue } from './event-queue.js';

/** A deliberate bug, to prove the checkers notice. */
export type Mutation = 'none' | 'forget-vote' | 'lease-too-long' | 'send-before-fsync' | 'no-fence';
export const mutations: readonly Mutation[] = ['forget-vote', 'lease-too-long', 'send-before-fsync', 'no-fence'];

export interface SimOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly timing?: TimingMs;
  /** Faults are injected for this long, then healed. */
  readonly faultPhaseMs?: number;
  /** After healing, a leader with a lease must commit a new entry within this bound. */
  readonly livenessBoundMs?: number;
  readonly mutation?: Mutation;
  /** Keep this many trace lines for the failure report (0: none). */
  readonly traceLines?: number;
  /** No faults, no workload changes: used by the election benchmark. */
  readonly quiet?: boolean;
  /** How far clock rates spread around real time. Defaults to just inside the drift bound the
   * lease assumes (the worst case for safety); the benchmark uses a quartz crystal's 1e-4. */
  readonly clockRateSpread?: number;
}

export interface Violation {
  readonly kind:
    | 'two-leaders-in-term'
    | 'two-leases'
    | 'log-matching'
    | 'leader-completeness'
    | 'applied-divergence'
    | 'persisted-state-regressed'
    | 'liveness'
    | 'assertion';
  readonly message: string;
  readonly atMs: number;
}

export interface SimStats {
  events: number;
  messagesSent: number;
  messagesDropped: number;
  crashes: number;
  pauses: number;
  partitions: number;
  leaderTerms: number;
  maxTerm: number;
  committedIndex: number;
  membershipChanges: number;
  transfers: number;
  snapshotsSent: number;
  simulatedMs: number;
  healedToLeaderMs: number | null;
}

export interface SimResult {
  readonly seed: number;
  readonly nodeCount: number;
  readonly violation: Violation | null;
  readonly stats: SimStats;
  readonly trace: readonly string[];
}

const inboxMessagesMax = 1024;
const compactAfterEntries = 16;

interface Fsync {
  readonly ready: Ready;
  readonly generation: number;
}

class SimNode {
  readonly id: NodeId;
  /** Local clock rate relative to real time, within [1 - drift, 1 + drift]. */
  rate = 1;
  alive = true;
  paused = false;
  generation = 0;
  raft!: Raft;
  bootAtMs = 0;
  processedTicks = 0;
  durable: { hardState: HardState; snapshot: Snapshot | null; entries: Entry[] } = {
    hardState: emptyHardState,
    snapshot: null,
    entries: [],
  };
  fsync: Fsync | null = null;
  inbox: Message[] = [];
  state = new ClusterState();
  /** Highest commit index already fed to the committed-entries oracle. */
  checkedCommit = 0;
  /** Power loss in the middle of the next write. */
  crashDuringNextWrite = false;
  /** Role and term last seen by the checkers, for the trace. */
  lastSeen = '';
  /** Crash right after sending the next vote, and come back at once: the moment that tests
   * whether the vote was really persisted. */
  crashAfterNextVote = false;

  constructor(id: NodeId) {
    this.id = id;
  }

  tickPeriodMs(tickMs: number): number {
    return tickMs / this.rate;
  }
}

type SimEvent =
  | { at: number; seq: number; kind: 'tick'; node: number; generation: number }
  | { at: number; seq: number; kind: 'deliver'; message: Message }
  | { at: number; seq: number; kind: 'fsync'; node: number; generation: number }
  | { at: number; seq: number; kind: 'restart'; node: number }
  | { at: number; seq: number; kind: 'resume'; node: number }
  | { at: number; seq: number; kind: 'fault' }
  | { at: number; seq: number; kind: 'workload' }
  | { at: number; seq: number; kind: 'heal' }
  | { at: number; seq: number; kind: 'crash'; node: number; generation: number };

export class Simulation {
  readonly options: Required<Omit<SimOptions, 'timing'>> & { timing: TimingMs };
  private readonly random: SeededRandom;
  private readonly queue = new EventQueue<SimEvent>();
  private seq = 0;
  now = 0;
  readonly nodes: SimNode[] = [];
  private readonly timingTicks;
  private readonly tickMs: number;

  // Network model.
  private blocked = new Set<string>();
  private lossRate = 0;
  private duplicateRate = 0;
  private latencyMs = 0.3;
  private jitterMs = 1;

  // Checker state.
  private leaderOfTerm = new Map<number, NodeId>();
  private committed: (string | undefined)[] = [];
  private appliedDigest: (number | undefined)[] = [];
  private violation: Violation | null = null;
  private readonly traceBuffer: string[] = [];

  // Phases.
  private healed = false;
  private healedAtMs = 0;
  private healProposalIndex: number | null = null;
  /** Mean time between faults: each seed picks a calm, a busy or a stormy fault phase. */
  private readonly faultMeanMs: number;
  private readonly transferHeavy: boolean;
  private proposalCounter = 0;
  readonly stats: SimStats = {
    events: 0,
    messagesSent: 0,
    messagesDropped: 0,
    crashes: 0,
    pauses: 0,
    partitions: 0,
    leaderTerms: 0,
    maxTerm: 0,
    committedIndex: 0,
    membershipChanges: 0,
    transfers: 0,
    snapshotsSent: 0,
    simulatedMs: 0,
    healedToLeaderMs: null,
  };

  constructor(options: SimOptions) {
    const timing = options.timing ?? timingMsDefault;
    this.options = {
      seed: options.seed,
      nodeCount: options.nodeCount,
      timing,
      faultPhaseMs: options.faultPhaseMs ?? 3000,
      livenessBoundMs: options.livenessBoundMs ?? 40 * timing.electionTimeoutMs,
      mutation: options.mutation ?? 'none',
      traceLines: options.traceLines ?? 0,
      quiet: options.quiet ?? false,
      clockRateSpread: options.clockRateSpread ?? timing.clockDriftBound * 0.999,
    };
    this.random = new SeededRandom(options.seed);
    // A quiet run has a healthy network from the start.
    this.healed = this.options.quiet;
    this.faultMeanMs = [100, 300, 600][this.random.nextInt(3)]!;
    this.transferHeavy = this.random.nextInt(4) === 0;
    this.timingTicks = timingToTicks(timing);
    this.tickMs = timing.tickMs;
    const voters = Array.from({ length: options.nodeCount }, (_, i) => nodeId(`n${i + 1}`));
    for (const id of voters) {
      const node = new SimNode(id);
      // Clocks drift within the stated bound; half the time at an extreme of it.
      const drift = this.options.clockRateSpread;
      const roll = this.random.nextFloat();
      node.rate = roll < 0.25 ? 1 - drift : roll < 0.5 ? 1 + drift : 1 - drift + 2 * drift * this.random.nextFloat();
      this.nodes.push(node);
    }
    // Hosts boot at different moments, so their tick phases differ.
    for (let i = 0; i < this.nodes.length; i++) this.boot(i, voters, this.random.nextFloat() * this.tickMs);
  }

  // ---- Running ------------------------------------------------------------------------------

  run(): SimResult {
    const o = this.options;
    if (!o.quiet) {
      this.schedule({ kind: 'fault' }, this.exp(this.faultMeanMs));
      this.schedule({ kind: 'workload' }, this.exp(50));
    }
    this.schedule({ kind: 'heal' }, o.quiet ? 0 : o.faultPhaseMs);
    const deadline = (o.quiet ? 0 : o.faultPhaseMs) + o.livenessBoundMs;
    while (this.violation === null) {
      const event = this.queue.pop();
      if (!event) break;
      if (event.at > deadline) {
        this.now = deadline;
        this.fail('liveness', `no leader with a lease committed a new entry within ${o.livenessBoundMs} ms of healing`);
        break;
      }
      this.now = event.at;
      this.stats.events++;
      try {
        this.handle(event);
        this.checkAfterEvent();
        if (this.stats.events % 64 === 0) this.checkLogMatching();
      } catch (error) {
        if (error instanceof RaftAssertionError) this.fail('assertion', error.message);
        else throw error;
      }
      if (this.healed && this.livenessReached()) break;
    }
    if (this.violation === null) this.checkLogMatching();
    this.stats.simulatedMs = Math.round(this.now);
    return {
      seed: o.seed,
      nodeCount: o.nodeCount,
      violation: this.violation,
      stats: this.stats,
      trace: this.traceBuffer,
    };
  }

  /** Process events until `ms` of simulated time have passed. */
  runFor(ms: number): void {
    const until = this.now + ms;
    while (this.violation === null) {
      const event = this.queue.pop();
      if (!event) break;
      if (event.at > until) {
        this.queue.push(event);
        break;
      }
      this.now = event.at;
      this.handle(event);
      this.checkAfterEvent();
    }
    this.now = Math.max(this.now, until);
  }

  get currentViolation(): Violation | null {
    return this.violation;
  }

  /** For the election benchmark: run quietly until a leader holds a lease; return its index. */
  runUntilLeaseHolder(limitMs: number): number | null {
    const deadline = this.now + limitMs;
    while (this.violation === null) {
      const holder = this.leaseHolders()[0];
      if (holder !== undefined) return holder;
      const event = this.queue.pop();
      if (!event || event.at > deadline) return null;
      this.now = event.at;
      this.stats.events++;
      this.handle(event);
      this.checkAfterEvent();
    }
    return null;
  }

  crash(index: number): void {
    const node = this.nodes[index]!;
    if (!node.alive) return;
    this.trace(`crash ${node.id}`);
    this.stats.crashes++;
    node.alive = false;
    node.paused = false;
    node.generation++;
    if (node.fsync) this.tornWrite(node, node.fsync.ready);
    node.fsync = null;
    node.inbox = [];
  }

  restart(index: number): void {
    const node = this.nodes[index]!;
    if (node.alive) return;
    this.trace(`restart ${node.id}`);
    this.boot(index, null);
  }

  // ---- Nodes --------------------------------------------------------------------------------

  private boot(index: number, bootstrap: NodeId[] | null, phaseMs = 0): void {
    const node = this.nodes[index]!;
    node.alive = true;
    node.paused = false;
    node.generation++;
    node.bootAtMs = this.now - phaseMs;
    node.processedTicks = 0;
    node.fsync = null;
    node.inbox = [];
    const persisted: PersistentState = {
      hardState: node.durable.hardState,
      snapshot: node.durable.snapshot,
      entries: node.durable.entries,
    };
    const voters = bootstrap ?? this.nodes.map((n) => n.id);
    node.raft = new Raft({
      id: node.id,
      timing: this.timingTicks,
      random: this.random.fork(),
      persisted,
      bootstrap: { voters },
      ...this.unsafeOptions(),
    });
    node.state = node.durable.snapshot ? ClusterState.restore(node.durable.snapshot.data) : new ClusterState();
    node.checkedCommit = 0;
    this.scheduleTick(index);
    this.drain(index);
  }

  /** The core's test-only switches for each mutation. A lost vote is also covered by the fence
   * a node keeps for an election timeout after boot, so `forget-vote` removes that too. */
  private unsafeOptions(): { unsafe?: UnsafeRaftOptions } {
    switch (this.options.mutation) {
      case 'lease-too-long':
        return { unsafe: { leaseTicks: this.timingTicks.electionTicks * 3 } };
      case 'forget-vote':
        return { unsafe: { noBootFence: true } };
      case 'no-fence':
        return { unsafe: { noFence: true } };
      default:
        return {};
    }
  }

  private dueTicks(node: SimNode, atMs: number): number {
    return Math.floor((atMs - node.bootAtMs) / node.tickPeriodMs(this.tickMs));
  }

  private scheduleTick(index: number): void {
    const node = this.nodes[index]!;
    const period = node.tickPeriodMs(this.tickMs);
    let next = node.bootAtMs + (this.dueTicks(node, this.now) + 1) * period;
    // Floating point: the next tick must be strictly in the future and already due when it fires.
    while (next <= this.now || this.dueTicks(node, next) <= this.dueTicks(node, this.now)) next += period / 1000;
    this.queue.push({ at: next, seq: this.seq++, kind: 'tick', node: index, generation: node.generation });
  }

  /** The driver loop: persist whatever is ready, else catch up on ticks, else step a message. */
  private drain(index: number): void {
    const node = this.nodes[index]!;
    while (node.alive && !node.paused && node.fsync === null) {
      if (node.raft.hasReady()) {
        this.startFsync(index);
        return;
      }
      if (node.processedTicks < this.dueTicks(node, this.now)) {
        node.processedTicks++;
        node.raft.tick();
        continue;
      }
      const message = node.inbox.shift();
      if (!message) return;
      node.raft.step(message);
    }
  }

  private startFsync(index: number): void {
    const node = this.nodes[index]!;
    const ready = node.raft.ready();
    node.fsync = { ready, generation: node.generation };
    if (this.options.mutation === 'send-before-fsync') {
      for (const message of ready.messages) this.sendMessage(message);
    }
    // Most fsyncs are quick; some are slow, as on a busy disk. A Ready with nothing to persist
    // needs no fsync at all.
    const nothingToPersist = ready.hardState === null && ready.snapshot === null && ready.entries.length === 0;
    const latency = nothingToPersist
      ? 0.01
      : this.random.nextFloat() < 0.05
        ? 5 + this.random.nextFloat() * 20
        : 0.1 + this.random.nextFloat() * 1.5;
    this.schedule({ kind: 'fsync', node: index, generation: node.generation }, latency);
    if (node.crashDuringNextWrite) {
      node.crashDuringNextWrite = false;
      this.trace(`power loss on ${node.id} during a write`);
      this.schedule({ kind: 'crash', node: index, generation: node.generation }, latency * this.random.nextFloat());
    }
  }

  private finishFsync(index: number): void {
    const node = this.nodes[index]!;
    const fsync = node.fsync;
    if (!fsync) return;
    const ready = fsync.ready;
    this.persist(node, ready, { hardState: true, snapshot: true, entries: true });
    if (this.options.mutation !== 'send-before-fsync') {
      for (const message of ready.messages) this.sendMessage(message);
    }
    if (ready.snapshot) {
      node.state = ClusterState.restore(ready.snapshot.data);
      this.checkApplied(node, ready.snapshot.meta.index, node.state.digest);
    }
    for (const entry of ready.committedEntries) {
      if (entry.index <= node.state.appliedIndex) continue;
      node.state.apply(entry);
      this.checkApplied(node, entry.index, node.state.digest);
    }
    node.fsync = null;
    node.raft.advance(ready);
    this.maybeCompact(node);
    if (node.crashAfterNextVote && ready.messages.some((m) => m.type === 'vote-response' && !m.reject)) {
      node.crashAfterNextVote = false;
      this.trace(`crash ${node.id} right after voting`);
      const index = this.indexOf(node.id);
      this.crash(index);
      this.schedule({ kind: 'restart', node: index }, 0.5 + this.random.nextFloat() * 3);
    }
  }

  private maybeCompact(node: SimNode): void {
    const applied = node.state.appliedIndex;
    if (applied - node.raft.snapshotMeta.index < compactAfterEntries) return;
    const snapshot = node.raft.compact(applied, node.state.snapshot());
    // The file storage replaces the snapshot atomically and rewrites the log after it.
    node.durable = {
      hardState: node.durable.hardState,
      snapshot,
      entries: node.durable.entries.filter((e) => e.index > snapshot.meta.index),
    };
  }

  /** Apply (part of) a Ready to the durable state, with the append-overwrite semantics of the
   * write-ahead log. The order is the file storage's: snapshot file, then one write holding the
   * hard state record and then the entries record. */
  private persist(node: SimNode, ready: Ready, parts: { hardState: boolean; snapshot: boolean; entries: boolean }): void {
    const durable = node.durable;
    let entries = durable.entries;
    let snapshot = durable.snapshot;
    if (parts.snapshot && ready.snapshot) {
      // §7, as the file storage replays an installed snapshot: keep the entries after it only
      // if the entry at its index has its term, else the whole log goes.
      const meta = ready.snapshot.meta;
      snapshot = ready.snapshot;
      const atIndex = entries.find((e) => e.index === meta.index);
      entries = atIndex !== undefined && atIndex.term === meta.term ? entries.filter((e) => e.index > meta.index) : [];
    }
    let hardState = durable.hardState;
    if (parts.hardState && ready.hardState) {
      const next = this.options.mutation === 'forget-vote' ? { ...ready.hardState, votedFor: null } : ready.hardState;
      this.checkPersistedHardState(node, hardState, next);
      hardState = next;
    }
    if (parts.entries && ready.entries.length > 0) {
      const first = ready.entries[0]!.index;
      entries = entries.filter((e) => e.index < first).concat(ready.entries);
    }
    node.durable = { hardState, snapshot, entries };
  }

  /** A crash during a write keeps a prefix of it: nothing, the snapshot, or snapshot and hard
   * state (the entries record, written last, is the torn part). */
  private tornWrite(node: SimNode, ready: Ready): void {
    const cut = this.random.nextInt(3);
    if (cut === 0) return;
    this.persist(node, ready, { snapshot: true, hardState: cut === 2, entries: false });
  }

  // ---- Network ------------------------------------------------------------------------------

  private sendMessage(message: Message): void {
    this.stats.messagesSent++;
    if (message.type === 'snapshot') this.stats.snapshotsSent++;
    if (this.blocked.has(`${message.from}>${message.to}`) || this.random.nextFloat() < this.lossRate) {
      this.stats.messagesDropped++;
      return;
    }
    const copies = this.random.nextFloat() < this.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let delay = this.latencyMs + this.random.nextFloat() * this.jitterMs;
      // Now and then a message is held up for a long time and arrives stale.
      if (!this.healed && this.random.nextFloat() < 0.002) delay += this.random.nextFloat() * 4 * this.options.timing.electionTimeoutMs;
      this.schedule({ kind: 'deliver', message }, delay);
    }
  }

  private deliver(message: Message): void {
    const index = this.indexOf(message.to);
    const node = this.nodes[index]!;
    if (!node.alive) return;
    if (this.blocked.has(`${message.from}>${message.to}`)) return;
    if (node.inbox.length >= inboxMessagesMax) node.inbox.shift();
    node.inbox.push(message);
    this.drain(index);
  }

  // ---- Events -------------------------------------------------------------------------------

  private schedule(event: DistributiveOmit<SimEvent, 'at' | 'seq'>, afterMs: number): void {
    this.queue.push({ ...event, at: this.now + afterMs, seq: this.seq++ } as SimEvent);
  }

  private handle(event: SimEvent): void {
    switch (event.kind) {
      case 'tick': {
        const node = this.nodes[event.node]!;
        if (event.generation !== node.generation || !node.alive) return;
        if (!node.paused) this.drain(event.node);
        this.scheduleTick(event.node);
        return;
      }
      case 'deliver':
        this.deliver(event.message);
        return;
      case 'fsync': {
        const node = this.nodes[event.node]!;
        if (event.generation !== node.generation || !node.alive) return;
        this.finishFsync(event.node);
        this.drain(event.node);
        return;
      }
      case 'restart':
        this.restart(event.node);
        return;
      case 'resume': {
        const node = this.nodes[event.node]!;
        if (!node.alive || !node.paused) return;
        this.trace(`resume ${node.id}`);
        node.paused = false;
        // The driver catches up on every missed tick before it looks at a single message.
        this.drain(event.node);
        return;
      }
      case 'fault':
        if (this.healed) return;
        this.injectFault();
        this.schedule({ kind: 'fault' }, this.exp(this.faultMeanMs));
        return;
      case 'workload':
        this.workload();
        this.schedule({ kind: 'workload' }, this.exp(this.healed ? 20 : 25));
        return;
      case 'heal':
        this.heal();
        return;
      case 'crash': {
        const node = this.nodes[event.node]!;
        if (event.generation !== node.generation || !node.alive) return;
        this.crash(event.node);
        this.schedule({ kind: 'restart', node: event.node }, 20 + this.random.nextFloat() * 4 * this.options.timing.electionTimeoutMs);
        return;
      }
      default: {
        const unreachable: never = event;
        throw new Error(`unknown event ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private injectFault(): void {
    const n = this.nodes.length;
    const target = this.random.nextInt(n);
    const node = this.nodes[target]!;
    // A quarter of the seeds hand leadership over far more often: transfers (with their
    // announcements, aborts and late TimeoutNows) are where lease bugs have hidden.
    if (this.transferHeavy && this.random.nextFloat() < 0.3) {
      this.transferLeadership();
      return;
    }
    const roll = this.random.nextFloat();
    const electionMs = this.options.timing.electionTimeoutMs;
    if (roll < 0.08) {
      // Power loss in the middle of a write on the leader or a follower.
      const leader = this.currentLeader();
      const victim = leader && this.random.nextFloat() < 0.3 ? leader : node;
      if (!victim.alive) return;
      if (this.random.nextFloat() < 0.5) victim.crashDuringNextWrite = true;
      else victim.crashAfterNextVote = true;
    } else if (roll < 0.18) {
      // Crash the leader more often than others: that is the interesting case.
      const leader = this.leaseHolders()[0] ?? this.nodes.findIndex((x) => x.alive && x.raft.currentRole === 'leader');
      const victim = leader >= 0 && this.random.nextFloat() < 0.6 ? leader : target;
      this.crash(victim);
      // systemd restarts a crashed daemon within milliseconds; sometimes the host is down longer.
      const downMs = this.random.nextFloat() < 0.4 ? 1 + this.random.nextFloat() * 10 : 20 + this.random.nextFloat() * 6 * electionMs;
      this.schedule({ kind: 'restart', node: victim }, downMs);
    } else if (roll < 0.3) {
      if (!node.alive || node.paused) return;
      this.stats.pauses++;
      node.paused = true;
      this.trace(`pause ${node.id}`);
      this.schedule({ kind: 'resume', node: target }, 10 + this.random.nextFloat() * 8 * electionMs);
    } else if (roll < 0.42) {
      this.stats.partitions++;
      this.trace(`isolate ${node.id}`);
      for (const other of this.nodes) {
        if (other === node) continue;
        this.blocked.add(`${node.id}>${other.id}`);
        this.blocked.add(`${other.id}>${node.id}`);
      }
    } else if (roll < 0.52) {
      this.stats.partitions++;
      const outbound = this.random.nextFloat() < 0.5;
      this.trace(`asymmetric ${node.id} ${outbound ? 'cannot send' : 'cannot receive'}`);
      for (const other of this.nodes) {
        if (other === node) continue;
        this.blocked.add(outbound ? `${node.id}>${other.id}` : `${other.id}>${node.id}`);
      }
    } else if (roll < 0.56) {
      // One link cut: the classic case for stickiness, where a follower loses the leader but
      // still reaches the other followers.
      this.stats.partitions++;
      const other = this.nodes[(target + 1 + this.random.nextInt(n - 1)) % n]!;
      const oneWay = this.random.nextFloat() < 0.3;
      this.trace(`cut ${node.id}${oneWay ? '->' : '<->'}${other.id}`);
      this.blocked.add(`${node.id}>${other.id}`);
      if (!oneWay) this.blocked.add(`${other.id}>${node.id}`);
    } else if (roll < 0.6) {
      this.stats.partitions++;
      const side = this.nodes.map(() => this.random.nextFloat() < 0.5);
      this.trace(`split ${this.nodes.filter((_, i) => side[i]).map((x) => x.id).join(',')}`);
      for (let a = 0; a < n; a++) {
        for (let b = 0; b < n; b++) {
          if (side[a] !== side[b]) this.blocked.add(`${this.nodes[a]!.id}>${this.nodes[b]!.id}`);
        }
      }
    } else if (roll < 0.72) {
      this.trace('heal links');
      this.blocked.clear();
    } else if (roll < 0.8) {
      this.lossRate = this.random.nextFloat() < 0.5 ? 0 : this.random.nextFloat() * 0.3;
      this.duplicateRate = this.random.nextFloat() * 0.1;
      this.jitterMs = this.random.nextFloat() < 0.3 ? this.random.nextFloat() * 60 : this.random.nextFloat() * 10;
      this.trace(`network loss=${this.lossRate.toFixed(2)} dup=${this.duplicateRate.toFixed(2)} jitter=${this.jitterMs.toFixed(1)}`);
    } else if (roll < 0.9) {
      this.changeMembership();
    } else {
      this.transferLeadership();
    }
  }

  private currentLeader(): SimNode | null {
    let best: SimNode | null = null;
    for (const node of this.nodes) {
      if (!node.alive || node.paused || node.fsync !== null || node.raft.currentRole !== 'leader') continue;
      if (best === null || node.raft.term > best.raft.term) best = node;
    }
    return best;
  }

  private changeMembership(): void {
    const leader = this.currentLeader();
    if (!leader) return;
    const voters = leader.raft.currentMembership.voters;
    const outside = this.nodes.map((x) => x.id).filter((id) => !voters.includes(id));
    let next: NodeId[];
    if (outside.length > 0 && (voters.length <= 3 || this.random.nextFloat() < 0.5)) {
      next = [...voters, outside[this.random.nextInt(outside.length)]!];
    } else if (voters.length > 1 && voters.length > Math.min(3, this.nodes.length) - 1) {
      const removed = voters[this.random.nextInt(voters.length)]!;
      next = voters.filter((v) => v !== removed);
    } else {
      return;
    }
    const result = leader.raft.proposeMembership({ voters: next });
    if (result.ok) {
      this.stats.membershipChanges++;
      this.trace(`membership ${next.join(',')} at ${result.index} by ${leader.id}`);
    }
    this.drain(this.indexOf(leader.id));
  }

  private transferLeadership(): void {
    const leader = this.currentLeader();
    if (!leader) return;
    const result = leader.raft.transferLeadership();
    if (result.ok) {
      this.stats.transfers++;
      this.trace(`transfer ${leader.id} -> ${result.transferee}`);
    }
    this.drain(this.indexOf(leader.id));
  }

  private workload(): void {
    const leader = this.currentLeader();
    if (!leader) return;
    const key = `k${this.proposalCounter % 16}`;
    const value = this.proposalCounter++;
    const result = leader.raft.propose(encodeCommand({ op: 'put', key, value }));
    if (result.ok && this.healed && this.healProposalIndex === null) this.healProposalIndex = result.index;
    this.drain(this.indexOf(leader.id));
  }

  private heal(): void {
    this.healed = true;
    this.healedAtMs = this.now;
    this.trace('heal everything');
    this.blocked.clear();
    this.lossRate = 0;
    this.duplicateRate = 0;
    this.jitterMs = 1;
    for (let i = 0; i < this.nodes.length; i++) {
      const node = this.nodes[i]!;
      if (!node.alive) this.restart(i);
      else if (node.paused) {
        node.paused = false;
        this.drain(i);
      }
    }
    if (this.options.quiet) return;
    this.schedule({ kind: 'workload' }, 1);
  }

  private livenessReached(): boolean {
    if (this.options.quiet) return false;
    if (this.healProposalIndex === null) return false;
    const holders = this.leaseHolders();
    const holder = holders[0];
    if (holder === undefined) return false;
    const leader = this.nodes[holder]!;
    // The proposal made after healing (or anything after it) is committed in the current term.
    if (leader.raft.status().commitIndex < this.healProposalIndex) {
      // A proposal of an older leader may have been lost; keep proposing until one commits.
      return false;
    }
    const term = leader.raft.termAt(leader.raft.status().commitIndex);
    if (term !== leader.raft.term) return false;
    this.stats.healedToLeaderMs = Math.round(this.now - this.healedAtMs);
    return true;
  }

  // ---- Checkers -----------------------------------------------------------------------------

  /** Nodes holding a lease at this instant, judged by their own clocks (which keep running
   * through pauses), exactly as the VIP executor judges it. */
  leaseHolders(): number[] {
    const holders: number[] = [];
    for (let i = 0; i < this.nodes.length; i++) {
      const node = this.nodes[i]!;
      if (!node.alive || node.raft.currentRole !== 'leader') continue;
      const until = node.raft.lease().untilTick;
      if (until !== null && this.dueTicks(node, this.now) < until) holders.push(i);
    }
    return holders;
  }

  private checkAfterEvent(): void {
    for (const node of this.nodes) {
      if (!node.alive) continue;
      const raft = node.raft;
      const term = raft.term as number;
      if (term > this.stats.maxTerm) this.stats.maxTerm = term;
      if (this.options.traceLines > 0) {
        const seen = `${raft.currentRole} term ${term}`;
        if (seen !== node.lastSeen) {
          node.lastSeen = seen;
          this.trace(`${node.id} is ${seen} (tick ${raft.ticks})`);
        }
      }
      if (raft.currentRole === 'leader') {
        const known = this.leaderOfTerm.get(term);
        if (known === undefined) {
          this.leaderOfTerm.set(term, node.id);
          this.stats.leaderTerms++;
          this.trace(`${node.id} leader in term ${term}`);
          this.checkLeaderCompleteness(node);
        } else if (known !== node.id) {
          this.fail('two-leaders-in-term', `${known} and ${node.id} are both leaders of term ${term}`);
          return;
        }
      }
      this.checkCommitted(node);
      if (this.violation) return;
    }
    const holders = this.leaseHolders();
    if (holders.length > 1) {
      const names = holders.map((i) => `${this.nodes[i]!.id}(term ${this.nodes[i]!.raft.term})`).join(' and ');
      this.fail('two-leases', `${names} hold a valid lease at the same instant`);
    }
  }

  private entryKey(entry: Entry): string {
    switch (entry.type) {
      case 'noop':
        return `${entry.term}:noop`;
      case 'membership':
        return `${entry.term}:m:${entry.membership.voters.join(',')}`;
      case 'command':
        return `${entry.term}:c:${Buffer.from(entry.data).toString('hex')}`;
      default: {
        const unreachable: never = entry;
        return String(unreachable);
      }
    }
  }

  /** Every entry a node considers committed must equal what any node ever considered
   * committed at that index (State Machine Safety, §5.4.3). */
  private checkCommitted(node: SimNode): void {
    const commit = node.raft.status().commitIndex;
    if (commit > this.stats.committedIndex) this.stats.committedIndex = commit;
    for (let i = Math.max(node.checkedCommit + 1, node.raft.snapshotMeta.index + 1); i <= commit; i++) {
      const entry = node.raft.entryAt(i);
      if (!entry) continue;
      const key = this.entryKey(entry);
      const known = this.committed[i];
      if (known === undefined) this.committed[i] = key;
      else if (known !== key) {
        this.fail('applied-divergence', `${node.id} committed ${key} at index ${i}, another node committed ${known}`);
        return;
      }
    }
    node.checkedCommit = Math.max(node.checkedCommit, commit);
  }

  private checkLeaderCompleteness(node: SimNode): void {
    const from = node.raft.snapshotMeta.index + 1;
    const leaderTerm = node.raft.term as number;
    for (let i = from; i < this.committed.length; i++) {
      const known = this.committed[i];
      if (known === undefined) continue;
      // Only entries of earlier terms: a leader of an older term can be elected late (its vote
      // responses delayed) after a newer term has committed entries.
      if (Number(known.slice(0, known.indexOf(':'))) >= leaderTerm) continue;
      const entry = node.raft.entryAt(i);
      if (!entry || this.entryKey(entry) !== known) {
        this.fail(
          'leader-completeness',
          `${node.id} became leader of term ${node.raft.term} without committed entry ${i} (${known}); it has ${entry ? this.entryKey(entry) : 'nothing'}`,
        );
        return;
      }
    }
  }

  private checkApplied(node: SimNode, index: number, digest: number): void {
    const known = this.appliedDigest[index];
    if (known === undefined) this.appliedDigest[index] = digest;
    else if (known !== digest) {
      this.fail('applied-divergence', `${node.id} state after applying index ${index} differs from another node's`);
    }
  }

  /** Log Matching (§5.3): if two logs hold an entry with the same index and term, the logs
   * are identical up to it. */
  private checkLogMatching(): void {
    const alive = this.nodes.filter((n) => n.alive);
    for (let a = 0; a < alive.length; a++) {
      for (let b = a + 1; b < alive.length; b++) {
        const x = alive[a]!.raft;
        const y = alive[b]!.raft;
        const low = Math.max(x.snapshotMeta.index, y.snapshotMeta.index) + 1;
        const high = Math.min(x.status().lastIndex, y.status().lastIndex);
        let matchedAt = -1;
        for (let i = high; i >= low; i--) {
          if (x.termAt(i) === y.termAt(i)) {
            matchedAt = i;
            break;
          }
        }
        for (let i = matchedAt; i >= low; i--) {
          const ex = x.entryAt(i);
          const ey = y.entryAt(i);
          if (ex && ey && this.entryKey(ex) !== this.entryKey(ey)) {
            this.fail('log-matching', `${alive[a]!.id} and ${alive[b]!.id} agree at ${matchedAt} but differ at ${i}`);
            return;
          }
        }
      }
    }
  }

  private checkPersistedHardState(node: SimNode, before: HardState, after: HardState): void {
    if (after.term < before.term) {
      this.fail('persisted-state-regressed', `${node.id} persisted term ${after.term} after ${before.term}`);
    } else if (after.term === before.term && before.votedFor !== null && after.votedFor !== before.votedFor) {
      this.fail('persisted-state-regressed', `${node.id} changed its persisted vote in term ${after.term} from ${before.votedFor} to ${after.votedFor}`);
    }
  }

  private fail(kind: Violation['kind'], message: string): void {
    if (this.violation) return;
    this.violation = { kind, message, atMs: Math.round(this.now * 1000) / 1000 };
    this.trace(`VIOLATION ${kind}: ${message}`);
  }

  // ---- Helpers ------------------------------------------------------------------------------

  private trace(line: string): void {
    const limit = this.options.traceLines;
    if (limit <= 0) return;
    this.traceBuffer.push(`${this.now.toFixed(3).padStart(10)} ms  ${line}`);
    if (this.traceBuffer.length > limit) this.traceBuffer.shift();
  }

  private exp(meanMs: number): number {
    return -Math.log(1 - this.random.nextFloat()) * meanMs;
  }

  private indexOf(id: NodeId): number {
    const index = this.nodes.findIndex((n) => n.id === id);
    if (index < 0) throw new Error(`unknown node ${id}`);
    return index;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export function simulate(options: SimOptions): SimResult {
  return new Simulation(options).run();
}

/** Seeds alternate between 3 and 5 nodes unless a size is given. */
export function nodeCountForSeed(seed: number, nodes?: number): number {
  return nodes ?? (seed % 2 === 0 ? 5 : 3);
}

export function replayCommand(result: Pick<SimResult, 'seed' | 'nodeCount'>, mutation: Mutation = 'none'): string {
  return `npm run sim -- --seed ${result.seed} --nodes ${result.nodeCount}${mutation !== 'none' ? ` --mutation ${mutation}` : ''}`;
}
