// An in-process Raft cluster whose nodes persist to real files: the real Raft core and the real
// FileStorage on every node, each in its own temporary data directory, with an in-memory
// network between them. It owns the driver loop (STYLE.md rule 2: persist and fsync → send →
// apply → advance, then compact), the network (partitions, seeded loss) and the crash model:
// a node can die at a chosen Ready either before its save (nothing of that Ready reaches the
// disk) or after it (durable, but no message of it was sent).
//
// Everything is deterministic: the test drives time (tick every live node, then drain and
// deliver until quiet), and each node's randomness is forked from one SeededRandom per seed.
// Checkers run as the cluster goes and throw with the seed on the first violation: one leader
// per term (§5.2), committed entries never change (§5.4.3), and a node's persisted term and
// vote never go backwards (Figure 2).

import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterState, decodeCommand, encodeCommand } from '../../src/raft/cluster-state.js';
import { FileStorage, type StorageLogEvent } from '../../src/raft/file-storage.js';
import { Raft, fenceTicksFor, type RaftTiming } from '../../src/raft/raft.js';
import { SeededRandom } from '../../src/raft/random.js';
import {
  emptyHardState,
  nodeId,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type PersistentState,
  type Ready,
} from '../../src/raft/types.js';

/** The golden files' timing: a heartbeat every tick, elections after 10..19 ticks. */
export const diskClusterTiming: RaftTiming = { heartbeatTicks: 1, electionTicks: 10, clockDriftBound: 0.05 };
/** Ticks after boot (or after hearing from a leader) during which a node refuses votes. */
export const fenceTicks = fenceTicksFor(diskClusterTiming);
/** A node snapshots its state machine once this many entries were applied since the last one. */
export const compactAfterEntries = 8;
/** Drain-and-deliver passes in one stabilize(); a healthy cluster goes quiet in a handful. */
const stabilizePassesMax = 200;
const inboxMessagesMax = 1024;
/** Rounds allowed for an election or a catch-up before a test gives up. */
export const roundsMaxDefault = 300;

export type CrashPoint = 'before-save' | 'after-save';

/** Kill a node at the first Ready that `match` selects. */
export interface ReadyFault {
  readonly match: (ready: Ready) => boolean;
  /** before-save: the process dies between ready() and the end of save(), and the write never
   * reached the disk. after-save: the write is fsynced, but the process dies before sending. */
  readonly at: CrashPoint;
}

export interface WalFileSize {
  readonly file: string;
  readonly sizeBytes: number;
}

/** What a node was doing when a ReadyFault killed it. */
export interface CrashRecord {
  readonly ready: Ready;
  readonly at: CrashPoint;
  /** The newest WAL segment before and after the (possibly skipped) save. */
  readonly walBefore: WalFileSize;
  readonly walAfter: WalFileSize;
  /** The node's durable state when the fatal Ready was handed out. */
  readonly durableBefore: DurableView;
}

/** What a node has made durable, as its driver knows it: the hard state and log bounds of the
 * last Ready it finished (after advance every entry in the core's log is on disk). */
export interface DurableView {
  readonly hardState: HardState;
  readonly snapshotIndex: number;
  readonly lastIndex: number;
}

const emptyDurable: DurableView = { hardState: emptyHardState, snapshotIndex: 0, lastIndex: 0 };

export class DiskNode {
  readonly id: NodeId;
  readonly dataDir: string;
  storage: FileStorage | null = null;
  /** The running core; null while the node is down. */
  core: Raft | null = null;
  state = new ClusterState();
  inbox: Message[] = [];
  /** Every event its storage logged, across restarts, oldest first. */
  readonly storageEvents: StorageLogEvent[] = [];
  /** What storage.load() returned at the latest start. */
  recovered: PersistentState | null = null;
  durable: DurableView = emptyDurable;
  fault: ReadyFault | null = null;
  lastCrash: CrashRecord | null = null;
  starts = 0;
  snapshotsInstalled = 0;
  compactions = 0;
  /** Highest commit index already fed to the committed-entries checker. */
  checkedCommit = 0;

  constructor(id: NodeId, dataDir: string) {
    this.id = id;
    this.dataDir = dataDir;
  }

  get alive(): boolean {
    return this.core !== null;
  }

  get raft(): Raft {
    if (this.core === null) throw new Error(`${this.id} is not running`);
    return this.core;
  }

  /** The core's view of the log as entries (snapshotIndex, lastIndex], for comparisons. */
  logEntries(): Entry[] {
    const raft = this.raft;
    const entries: Entry[] = [];
    for (let i = raft.snapshotMeta.index + 1; i <= raft.status().lastIndex; i++) {
      const entry = raft.entryAt(i);
      if (entry === null) throw new Error(`${this.id} has no entry at ${i}`);
      entries.push(entry);
    }
    return entries;
  }
}

export interface DiskClusterOptions {
  readonly seed: number;
  readonly nodeCount?: number;
  /** Passed to FileStorage.open; small values make segments roll over. */
  readonly segmentSizeBytesMax?: number;
}

export class DiskCluster {
  readonly seed: number;
  readonly root: string;
  readonly nodes: readonly DiskNode[];
  readonly voters: readonly NodeId[];
  /** Messages dropped by partitions, loss or dead recipients. */
  messagesDropped = 0;
  readonly messagesSent: Message[] = [];
  /** Probability that a message is lost at send time (seeded). */
  lossRate = 0;
  rounds = 0;

  private readonly random: SeededRandom;
  private readonly segmentSizeBytesMax: number | undefined;
  private readonly blocked = new Set<string>();
  private readonly committed = new Map<number, Entry>();
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** Highest persisted hard state per node, across restarts, for the regression checker. */
  private readonly persistedHardState = new Map<NodeId, HardState>();

  private constructor(options: { seed: number; root: string; nodes: DiskNode[]; segmentSizeBytesMax: number | undefined }) {
    this.seed = options.seed;
    this.root = options.root;
    this.nodes = options.nodes;
    this.voters = options.nodes.map((n) => n.id);
    this.random = new SeededRandom(options.seed);
    this.segmentSizeBytesMax = options.segmentSizeBytesMax;
  }

  /** Creates the data directories and boots every node with the bootstrap membership. */
  static async create(options: DiskClusterOptions): Promise<DiskCluster> {
    const root = await mkdtemp(join(tmpdir(), 'raftvip-durability-'));
    const count = options.nodeCount ?? 3;
    const nodes = Array.from({ length: count }, (_, i) => new DiskNode(nodeId(`n${i + 1}`), join(root, `n${i + 1}`)));
    const cluster = new DiskCluster({ seed: options.seed, root, nodes, segmentSizeBytesMax: options.segmentSizeBytesMax });
    for (const node of nodes) await cluster.start(node.id, { bootstrap: true });
    return cluster;
  }

  node(id: string): DiskNode {
    const found = this.nodes.find((n) => n.id === id);
    if (found === undefined) throw new Error(`unknown node ${id}`);
    return found;
  }

  alive(): DiskNode[] {
    return this.nodes.filter((n) => n.alive);
  }

  // ---- Lifecycle ----------------------------------------------------------------------------

  /** Opens the node's storage and builds its core from what it recovered, as the daemon does
   * on boot. A node with no state joins without `bootstrap` and waits for a leader. */
  async start(id: string, options: { bootstrap: boolean }): Promise<DiskNode> {
    const node = this.node(id);
    if (node.alive) throw new Error(`${id} is already running`);
    const storage = await FileStorage.open(node.dataDir, {
      log: (event) => node.storageEvents.push(event),
      ...(this.segmentSizeBytesMax === undefined ? {} : { segmentSizeBytesMax: this.segmentSizeBytesMax }),
    });
    const persisted = storage.load();
    try {
      this.checkPersistedHardState(node, persisted.hardState);
    } catch (error) {
      await storage.close();
      throw error;
    }
    node.storage = storage;
    node.recovered = persisted;
    node.core = new Raft({
      id: node.id,
      timing: diskClusterTiming,
      random: this.random.fork(),
      persisted,
      ...(options.bootstrap ? { bootstrap: { voters: [...this.voters] } } : {}),
    });
    node.state = persisted.snapshot === null ? new ClusterState() : ClusterState.restore(persisted.snapshot.data);
    node.inbox = [];
    node.checkedCommit = 0;
    node.starts++;
    node.durable = durableViewOfPersisted(persisted);
    // The first Ready re-applies the committed entries after the snapshot (and, on a first
    // boot, persists the bootstrap entry).
    await this.drain(node);
    return node;
  }

  /** A clean stop, or a crash: every save either resolved (fdatasync done) or never started,
   * so closing the handle loses nothing a crash would have kept. Queued messages are lost. */
  async stop(id: string): Promise<void> {
    const node = this.node(id);
    if (!node.alive) return;
    node.core = null;
    node.inbox = [];
    const storage = node.storage;
    node.storage = null;
    await storage?.close();
  }

  async stopAll(): Promise<void> {
    for (const node of this.nodes) await this.stop(node.id);
  }

  /** Deletes a stopped node's data directory; its next start is a brand-new node. */
  async wipe(id: string): Promise<void> {
    const node = this.node(id);
    if (node.alive) throw new Error(`${id} must be stopped before its data is wiped`);
    await rm(node.dataDir, { recursive: true, force: true });
    node.durable = emptyDurable;
    // A wiped node starts from term 0 again: the restore procedure (remove, wipe, add back)
    // accepts that, so the regression checker starts over for it.
    this.persistedHardState.delete(node.id);
  }

  async destroy(): Promise<void> {
    // A start that failed (FileStorage.open refused the directory) left nothing open.
    for (const node of this.nodes) await this.stop(node.id);
    await rm(this.root, { recursive: true, force: true });
  }

  // ---- The driver ---------------------------------------------------------------------------

  /** Handles every Ready the node has: persist (fsync) → send → apply → advance → compact. */
  async drain(node: DiskNode): Promise<void> {
    while (node.alive && node.raft.hasReady()) {
      const raft = node.raft;
      const storage = node.storage!;
      const ready = raft.ready();
      const batch = { hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot };

      const fault = node.fault;
      if (fault !== null && fault.match(ready)) {
        node.fault = null;
        const walBefore = await newestWalFile(node.dataDir);
        if (fault.at === 'after-save') await storage.save(batch);
        const walAfter = await newestWalFile(node.dataDir);
        node.lastCrash = { ready, at: fault.at, walBefore, walAfter, durableBefore: node.durable };
        // The core is abandoned between ready() and advance(), as a dying process leaves it.
        await this.stop(node.id);
        return;
      }

      await storage.save(batch);
      if (ready.hardState !== null) this.checkPersistedHardState(node, ready.hardState);
      for (const message of ready.messages) this.send(message);
      if (ready.snapshot !== null) {
        node.state = ClusterState.restore(ready.snapshot.data);
        node.snapshotsInstalled++;
      }
      for (const entry of ready.committedEntries) node.state.apply(entry);
      raft.advance(ready);
      this.assert(
        node.state.appliedIndex === raft.status().appliedIndex,
        `${node.id} state machine applied ${node.state.appliedIndex} but the core says ${raft.status().appliedIndex}`,
      );
      // Observe before compacting: the checker reads the committed entries from the log.
      this.observe(node);
      await this.maybeCompact(node);
      node.durable = this.durableViewOf(node);
    }
  }

  private async maybeCompact(node: DiskNode): Promise<void> {
    const raft = node.raft;
    const applied = node.state.appliedIndex;
    if (applied - raft.snapshotMeta.index < compactAfterEntries) return;
    const snapshot = raft.compact(applied, node.state.snapshot());
    await node.storage!.saveSnapshot(snapshot, raft.hardState(), raft.entriesAfterSnapshot());
    node.compactions++;
  }

  private durableViewOf(node: DiskNode): DurableView {
    const raft = node.raft;
    return { hardState: raft.hardState(), snapshotIndex: raft.snapshotMeta.index, lastIndex: raft.status().lastIndex };
  }

  async drainAll(): Promise<void> {
    for (const node of this.nodes) await this.drain(node);
  }

  private send(message: Message): void {
    this.messagesSent.push(message);
    const to = this.nodes.find((n) => n.id === message.to);
    if (
      to === undefined ||
      !to.alive ||
      this.blocked.has(`${message.from}>${message.to}`) ||
      (this.lossRate > 0 && this.random.nextFloat() < this.lossRate)
    ) {
      this.messagesDropped++;
      return;
    }
    if (to.inbox.length >= inboxMessagesMax) {
      to.inbox.shift();
      this.messagesDropped++;
    }
    to.inbox.push(message);
  }

  /** Steps every queued message into its recipient (partitions apply at delivery too), then
   * drains it. Returns how many messages were stepped. */
  async deliverAll(): Promise<number> {
    let delivered = 0;
    for (const node of this.nodes) {
      if (!node.alive) continue;
      const inbox = node.inbox;
      node.inbox = [];
      for (const message of inbox) {
        if (!node.alive) break;
        if (this.blocked.has(`${message.from}>${message.to}`)) {
          this.messagesDropped++;
          continue;
        }
        node.raft.step(message);
        delivered++;
      }
      await this.drain(node);
    }
    return delivered;
  }

  /** Drain and deliver until no node has a Ready and no message is queued. */
  async stabilize(): Promise<void> {
    for (let pass = 0; pass < stabilizePassesMax; pass++) {
      await this.drainAll();
      const delivered = await this.deliverAll();
      const busy = this.alive().some((n) => n.inbox.length > 0 || n.raft.hasReady());
      if (delivered === 0 && !busy) return;
    }
    throw new Error(`seed ${this.seed}: the cluster did not go quiet within ${stabilizePassesMax} passes`);
  }

  /** One instant of time: every live node ticks once, then the cluster settles. */
  async round(): Promise<void> {
    this.rounds++;
    for (const node of this.alive()) node.raft.tick();
    await this.stabilize();
  }

  async runRounds(count: number): Promise<void> {
    for (let i = 0; i < count; i++) await this.round();
  }

  /** Runs rounds until `predicate` holds; returns how many it took. */
  async runUntil(predicate: () => boolean, what: string, roundsMax = roundsMaxDefault): Promise<number> {
    for (let i = 0; i <= roundsMax; i++) {
      if (predicate()) return i;
      await this.round();
    }
    throw new Error(`seed ${this.seed}: ${what} not reached within ${roundsMax} rounds`);
  }

  // ---- Network ------------------------------------------------------------------------------

  block(from: string, to: string): void {
    this.blocked.add(`${from}>${to}`);
  }

  /** Cuts `id` off from every other node, both ways. */
  isolate(id: string): void {
    for (const other of this.nodes) {
      if (other.id === id) continue;
      this.block(id, other.id);
      this.block(other.id, id);
    }
  }

  heal(): void {
    this.blocked.clear();
    this.lossRate = 0;
  }

  // ---- Workload and queries -----------------------------------------------------------------

  /** The live leader of the highest term, if any. */
  leader(): DiskNode | null {
    let best: DiskNode | null = null;
    for (const node of this.alive()) {
      if (node.raft.currentRole !== 'leader') continue;
      if (best === null || node.raft.term > best.raft.term) best = node;
    }
    return best;
  }

  /** A leader that has committed an entry of its own term, so it knows the commit index. */
  servingLeader(): DiskNode | null {
    const leader = this.leader();
    if (leader === null) return null;
    const commit = leader.raft.status().commitIndex;
    return leader.raft.termAt(commit) === leader.raft.term ? leader : null;
  }

  async waitForLeader(roundsMax = roundsMaxDefault): Promise<DiskNode> {
    await this.runUntil(() => this.servingLeader() !== null, 'a serving leader', roundsMax);
    return this.servingLeader()!;
  }

  /** Proposes `put key=value` at the leader; returns its index. Does not wait for the commit. */
  propose(key: string, value: unknown): LogIndex {
    const leader = this.leader();
    if (leader === null) throw new Error(`seed ${this.seed}: no leader to propose ${key} to`);
    const result = leader.raft.propose(encodeCommand({ op: 'put', key, value }));
    if (!result.ok) throw new Error(`seed ${this.seed}: propose ${key} at ${leader.id}: ${result.code}: ${result.message}`);
    return result.index;
  }

  /** Proposes and settles; returns the index, committed on a quorum unless a fault intervened. */
  async put(key: string, value: unknown): Promise<LogIndex> {
    const index = this.propose(key, value);
    await this.stabilize();
    return index;
  }

  /** Runs until every live node has applied everything the leader committed. */
  async waitForConvergence(what: string, roundsMax = roundsMaxDefault): Promise<number> {
    return this.runUntil(() => {
      const leader = this.servingLeader();
      if (leader === null) return false;
      const commit = leader.raft.status().commitIndex;
      return this.alive().every((n) => n.raft.status().commitIndex === commit && n.state.appliedIndex === commit);
    }, what, roundsMax);
  }

  /** The leader of each term seen so far (the checker allows one per term). */
  leadersByTerm(): ReadonlyMap<number, NodeId> {
    return this.leaderOfTerm;
  }

  /** Every entry any node has ever reported committed, by index. */
  committedEntries(): ReadonlyMap<number, Entry> {
    return this.committed;
  }

  /** The put commands among the committed entries: key → value of the latest put. */
  committedPuts(): Map<string, unknown> {
    const puts = new Map<string, unknown>();
    for (const index of [...this.committed.keys()].sort((a, b) => a - b)) {
      const entry = this.committed.get(index)!;
      if (entry.type !== 'command') continue;
      const command = decodeCommand(entry.data);
      if (command?.op === 'put') puts.set(command.key, command.value);
    }
    return puts;
  }

  /** Live nodes that hold committed entry `index`: in their log with the same term and
   * content, or inside their snapshot (a snapshot holds only committed entries). */
  holdersOf(index: number): DiskNode[] {
    const entry = this.committed.get(index);
    if (entry === undefined) throw new Error(`index ${index} is not known to be committed`);
    const key = entryKey(entry);
    return this.alive().filter((node) => {
      if (node.raft.snapshotMeta.index >= index) return true;
      const held = node.raft.entryAt(index);
      return held !== null && entryKey(held) === key;
    });
  }

  // ---- Checkers -----------------------------------------------------------------------------

  private assert(condition: boolean, message: string): asserts condition {
    if (!condition) throw new Error(`seed ${this.seed}: ${message}`);
  }

  /** After every Ready: one leader per term, and committed entries never change. */
  private observe(node: DiskNode): void {
    const raft = node.raft;
    if (raft.currentRole === 'leader') {
      const known = this.leaderOfTerm.get(raft.term);
      if (known === undefined) this.leaderOfTerm.set(raft.term, node.id);
      else this.assert(known === node.id, `${known} and ${node.id} are both leaders of term ${raft.term}`);
    }
    const commit = raft.status().commitIndex;
    for (let i = Math.max(node.checkedCommit + 1, raft.snapshotMeta.index + 1); i <= commit; i++) {
      const entry = raft.entryAt(i);
      if (entry === null) continue;
      const known = this.committed.get(i);
      if (known === undefined) this.committed.set(i, entry);
      else {
        this.assert(
          entryKey(known) === entryKey(entry),
          `${node.id} committed ${entryKey(entry)} at index ${i}, another node committed ${entryKey(known)}`,
        );
      }
    }
    node.checkedCommit = Math.max(node.checkedCommit, commit);
  }

  /** Figure 2: currentTerm and votedFor are persistent; on disk they never go backwards. */
  private checkPersistedHardState(node: DiskNode, next: HardState): void {
    const before = this.persistedHardState.get(node.id) ?? emptyHardState;
    this.assert(next.term >= before.term, `${node.id} persisted term ${next.term} after ${before.term}`);
    if (next.term === before.term && before.votedFor !== null) {
      this.assert(
        next.votedFor === before.votedFor,
        `${node.id} changed its persisted vote in term ${next.term} from ${before.votedFor} to ${next.votedFor ?? 'none'}`,
      );
    }
    this.persistedHardState.set(node.id, next);
  }
}

function durableViewOfPersisted(persisted: PersistentState): DurableView {
  const snapshotIndex = persisted.snapshot?.meta.index ?? 0;
  const last = persisted.entries[persisted.entries.length - 1];
  return { hardState: persisted.hardState, snapshotIndex, lastIndex: Math.max(snapshotIndex, last?.index ?? 0) };
}

/** Identity of an entry for comparisons: term, type and content. */
export function entryKey(entry: Entry): string {
  switch (entry.type) {
    case 'noop':
      return `${entry.index}@${entry.term}:noop`;
    case 'membership':
      return `${entry.index}@${entry.term}:membership:${entry.membership.voters.join(',')}`;
    case 'command':
      return `${entry.index}@${entry.term}:command:${Buffer.from(entry.data).toString('hex')}`;
    default: {
      const unreachable: never = entry;
      throw new Error(`unknown entry ${JSON.stringify(unreachable)}`);
    }
  }
}

/** WAL segments of a data directory, oldest first (names sort by sequence number). */
export async function walSegments(dataDir: string): Promise<string[]> {
  const walDir = join(dataDir, 'wal');
  return (await readdir(walDir)).filter((name) => name.endsWith('.wal')).sort().map((name) => join(walDir, name));
}

/** The segment that receives appends, and its size. */
export async function newestWalFile(dataDir: string): Promise<WalFileSize> {
  const segments = await walSegments(dataDir);
  const file = segments[segments.length - 1];
  if (file === undefined) throw new Error(`${dataDir} has no WAL segment`);
  return { file, sizeBytes: (await stat(file)).size };
}
