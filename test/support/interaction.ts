// The interaction environment for the golden scenario files (test/golden/*.txt), in the manner
// of etcd-io/raft's datadriven tests: up to five in-memory Raft nodes (n1..n5), each with an
// in-memory "storage" (exactly the PersistentState its driver would have fsynced) and a
// mailbox, driven one command at a time. It owns the fake network and the driver loop
// (persist → send → apply → advance, STYLE.md rule 2); the Raft core itself is untouched.
//
// Everything is deterministic: each node's randomness is a SeededRandom derived from the
// scenario seed, the node's number and how often it restarted, so a file replays exactly.
// All nodes share one clock: a tick of `tick-all` is the same instant everywhere.
//
// Commands (one per block; `#` lines are comments):
//   add-nodes 3 [heartbeat=1] [election=10] [drift=0.05] [seed=1]
//                                  bootstrap n1..n3 as the voters, bootstrap entry persisted
//   add-node n4 join               an empty node that waits for a leader (no bootstrap)
//   campaign n1                    start an election now (pre-vote first)
//   tick n1 [count]                tick one node; its messages wait for process-ready
//   tick-heartbeat n1              heartbeatTicks ticks
//   tick-election n1               tick until the node's role or term changes (its election
//                                  timer fired, or check-quorum demoted a leader), at most
//                                  2 × electionTicks, which covers any randomized timeout
//   tick-all N                     N rounds of: tick every node once, then stabilize quietly
//   process-ready [n1 ...] [quiet] one Ready each: persist, send, apply, advance
//   deliver-msgs [n1 ...] [quiet]  step every queued message into the node
//   stabilize [quiet]              process Readies and deliver until nothing is left
//   partition n1 | n2 n3           drop messages between groups (unlisted nodes: one more
//                                  group), at send and at delivery; `heal` undoes it
//   drop n1->n2 | drop n1->*       lose the messages from n1 waiting in n2's (every) mailbox
//   delay n1->n2 / release n1->n2  hold the link's messages in order, then deliver them
//   inject-msg n3->n2 vote term=5 index=3 logTerm=2 [commit=3] [transfer] [rejected]
//                                  queue a hand-made message (a node without pre-vote, say)
//   propose n1 data [expect=ok|CODE]          a command entry
//   propose-batch n1 70                       b1..b70 in a row, no Ready in between
//   propose-membership n1 n1,n2,n4 [expect=...] the complete next voter set
//   transfer-leadership n1 [n2] [expect=...]
//   status [n1 ...], log n1, state-machine n1 inspection
//   restart n1                     rebuild from storage; everything unpersisted is lost
//   compact n1 5                   snapshot the state machine at 5, drop the log before it
//   expect-role n1 leader, expect-lease n1 valid|invalid, expect-term n1 3,
//   expect-leader n2 n1|none, expect-commit n1 5, expect-voters n1 n1,n2,n3,
//   expect-logs-match n1 n2 n3, expect-lease-holders n1|none
//                                  assertions: they fail the test even when outputs are
//                                  being rewritten, and print `ok` when they hold
//
// Output conventions (what the expected blocks contain):
//   > n1 handling Ready            a Ready, then what it carried (hard state, snapshot, entries,
//                                  messages sent, dropped or delayed, committed entries)
//   > n2 receiving messages        messages stepped into n2, one per line
//   ~ n2 ...                       a change the command caused on a node: role, term or
//                                  leader, membership, and the leader lease turning valid or
//                                  invalid
//   i3@t2 noop                     a log entry: index 3, term 2
//   n1->n2 vote term=3 ...         a message, with the fields that mean something for its type

import { fenceTicksFor, leaseTicksFor, Raft } from '../../src/raft/raft.js';
import type { ProposeResult, RaftTiming } from '../../src/raft/raft.js';
import { SeededRandom } from '../../src/raft/random.js';
import { emptyHardState, logIndex, nodeId, term as asTerm } from '../../src/raft/types.js';
import type {
  Entry,
  HardState,
  Membership,
  Message,
  MessageType,
  NodeId,
  Ready,
  Role,
  Snapshot,
} from '../../src/raft/types.js';

/** Nodes an environment may hold (n1..n5, as the scenarios need at most five). */
export const nodesMax = 5;
/** Rounds of process-ready + deliver before `stabilize` declares a livelock. */
export const stabilizeRoundsMax = 1000;
/** Ticks one `tick`/`tick-all` command may run, so a typo cannot hang the suite. */
export const ticksPerCommandMax = 10_000;

/** A malformed command or a scenario that cannot go on: fails the test and stops the file. */
export class InteractionError extends Error {
  override readonly name: string = 'InteractionError';
}

/** An `expect-*` command (or a client request's `expect=`) that did not hold. It fails the
 * test, also when outputs are being rewritten, but the scenario goes on: the expectation
 * changed no state. */
export class ExpectationError extends InteractionError {
  override readonly name: string = 'ExpectationError';
}

export interface Command {
  readonly name: string;
  readonly args: readonly string[];
  /** The command line as written, for error messages. */
  readonly line: string;
}

/** What a node's driver has made durable: what a restart recovers and nothing else. */
interface Storage {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

interface AppliedCommand {
  readonly index: number;
  readonly data: string;
}

interface SimNode {
  readonly id: NodeId;
  /** 1 for n1, 2 for n2, ... */
  readonly number: number;
  readonly bootstrap: Membership | null;
  raft: Raft;
  storage: Storage;
  mailbox: Message[];
  restarts: number;
  /** The replicated state machine: the command entries applied so far, in order. */
  stateMachine: AppliedCommand[];
}

/** What `~` lines are printed about: compared before and after every atomic step. */
interface Observed {
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId | null;
  readonly voters: string;
  readonly leaseValid: boolean;
}

interface Options {
  heartbeat: number;
  election: number;
  drift: number;
  seed: number;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export class InteractionEnv {
  private readonly nodes = new Map<NodeId, SimNode>();
  private timing: RaftTiming | null = null;
  private seed = 1;
  /** Partition groups: a message crosses only within one group. Null: no partition. */
  private groups: NodeId[][] | null = null;
  /** Delayed links (`from->to`): their messages wait here, in order, until released. */
  private readonly held = new Map<string, Message[]>();
  private readonly observed = new Map<NodeId, Observed>();

  /** Run one command and return its output (never empty: `ok` when there is nothing to say). */
  run(command: Command): string {
    const out: string[] = [];
    this.dispatch(command, out);
    const lines = out.filter((line) => line.trim() !== '');
    return lines.length === 0 ? 'ok' : lines.join('\n');
  }

  private dispatch(c: Command, out: string[]): void {
    switch (c.name) {
      case 'add-nodes':
        return this.addNodes(c, out);
      case 'add-node':
        return this.addJoiningNode(c, out);
      case 'campaign':
        return this.withNode(c, 1, out, (n) => n.raft.campaign());
      case 'tick':
        return this.tick(c, out);
      case 'tick-heartbeat':
        return this.tickHeartbeat(c, out);
      case 'tick-election':
        return this.tickElection(c, out);
      case 'tick-all':
        return this.tickAll(c, out);
      case 'process-ready':
        return this.processReadyCommand(c, out);
      case 'deliver-msgs':
        return this.deliverCommand(c, out);
      case 'stabilize':
        // `stabilize quiet` prints only the `~` changes: for setting the scene.
        if (c.args.length > 1 || (c.args[0] !== undefined && c.args[0] !== 'quiet')) {
          throw new InteractionError('stabilize: usage `stabilize [quiet]`');
        }
        return this.stabilize(out, { quiet: c.args[0] === 'quiet' });
      case 'partition':
        return this.partition(c, out);
      case 'heal':
        this.groups = null;
        out.push('network healed');
        return;
      case 'drop':
        return this.drop(c, out);
      case 'delay':
        return this.delay(c, out);
      case 'release':
        return this.release(c, out);
      case 'inject-msg':
        return this.injectMessage(c, out);
      case 'propose':
        return this.propose(c, out);
      case 'propose-batch':
        return this.proposeBatch(c, out);
      case 'propose-membership':
        return this.proposeMembership(c, out);
      case 'transfer-leadership':
        return this.transferLeadership(c, out);
      case 'status':
        return this.status(c, out);
      case 'log':
        return this.printLog(c, out);
      case 'state-machine':
        return this.printStateMachine(c, out);
      case 'restart':
        return this.restart(c, out);
      case 'compact':
        return this.compact(c, out);
      case 'expect-role':
      case 'expect-lease':
      case 'expect-term':
      case 'expect-leader':
      case 'expect-commit':
      case 'expect-voters':
      case 'expect-logs-match':
        return this.expect(c, out);
      case 'expect-lease-holders':
        return this.expectLeaseHolders(c, out);
      default:
        throw new InteractionError(`unknown command ${JSON.stringify(c.name)}`);
    }
  }

  // ---- Setup --------------------------------------------------------------------------------

  private addNodes(c: Command, out: string[]): void {
    if (this.nodes.size > 0) throw new InteractionError('add-nodes: the cluster already exists');
    const count = parseCount(c, c.args[0]);
    if (count < 1 || count > nodesMax) throw new InteractionError(`add-nodes: 1 to ${nodesMax} nodes`);
    const options: Options = { heartbeat: 1, election: 10, drift: 0.05, seed: 1 };
    for (const arg of c.args.slice(1)) {
      if (arg === 'timing:') continue;
      const [key, value] = splitKeyValue(c, arg);
      if (!Object.hasOwn(options, key)) throw new InteractionError(`add-nodes: unknown option ${key}`);
      const parsed = Number(value);
      if (!Number.isFinite(parsed)) throw new InteractionError(`add-nodes: ${key} must be a number`);
      options[key as keyof Options] = parsed;
    }
    this.timing = { heartbeatTicks: options.heartbeat, electionTicks: options.election, clockDriftBound: options.drift };
    this.seed = options.seed;
    const voters: NodeId[] = [];
    for (let k = 1; k <= count; k++) voters.push(nodeId(`n${k}`));
    out.push(
      `timing heartbeat=${options.heartbeat} election=${options.election} drift=${options.drift}: ` +
        `fence=${fenceTicksFor(this.timing)} lease=${leaseTicksFor(this.timing)} ticks`,
    );
    for (const id of voters) {
      const node = this.createNode(id, { voters });
      // The daemon's first start: the bootstrap entry and hard state are made durable at once.
      this.persistBootstrap(node);
      const s = node.raft.status();
      out.push(`${id}: ${s.role} term=${s.term} commit=${s.commitIndex} voters=${s.membership.voters.join(',')}`);
    }
    this.observeAll([]);
  }

  private addJoiningNode(c: Command, out: string[]): void {
    if (this.timing === null) throw new InteractionError('add-node: run add-nodes first');
    const id = this.nodeArg(c, 0, { mustExist: false });
    if (this.nodes.has(id)) throw new InteractionError(`add-node: ${id} exists`);
    if (c.args[1] !== 'join') throw new InteractionError('add-node: usage `add-node n4 join`');
    const node = this.createNode(id, null);
    const s = node.raft.status();
    out.push(`${id}: ${s.role} term=${s.term} lastIndex=${s.lastIndex} voters=${s.membership.voters.join(',') || '(none)'}`);
    this.observeAll([]);
  }

  private createNode(id: NodeId, bootstrap: Membership | null): SimNode {
    const number = Number(id.slice(1));
    if (!/^n[1-9]$/.test(id) || number > nodesMax) throw new InteractionError(`node ids are n1..n${nodesMax}, not ${id}`);
    const storage: Storage = { hardState: emptyHardState, snapshot: null, entries: [] };
    const node: SimNode = {
      id,
      number,
      bootstrap,
      raft: this.newRaft(id, number, 0, storage, bootstrap),
      storage,
      mailbox: [],
      restarts: 0,
      stateMachine: [],
    };
    this.nodes.set(id, node);
    return node;
  }

  private newRaft(id: NodeId, number: number, restarts: number, storage: Storage, bootstrap: Membership | null): Raft {
    const timing = this.timing;
    if (timing === null) throw new InteractionError('no cluster');
    return new Raft({
      id,
      timing,
      random: new SeededRandom(this.seed * 7919 + number * 104_729 + restarts * 1_299_709),
      persisted: { hardState: storage.hardState, snapshot: storage.snapshot, entries: [...storage.entries] },
      ...(bootstrap ? { bootstrap } : {}),
    });
  }

  private persistBootstrap(node: SimNode): void {
    if (!node.raft.hasReady()) return;
    const ready = node.raft.ready();
    if (ready.messages.length > 0) throw new InteractionError('bootstrap produced messages');
    this.persist(node, ready);
    this.apply(node, ready);
    node.raft.advance(ready);
  }

  // ---- Time ---------------------------------------------------------------------------------

  private tick(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const count = c.args[1] === undefined ? 1 : parseCount(c, c.args[1]);
    this.tickNode(node, count, out);
  }

  private tickHeartbeat(c: Command, out: string[]): void {
    this.tickNode(this.node(c, 0), this.requireTiming().heartbeatTicks, out);
  }

  /** Tick until the node's role or term changes (its election timer fired, or a leader's
   * check-quorum demoted it), at most 2 × electionTicks: enough for any randomized timeout. */
  private tickElection(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const limit = 2 * this.requireTiming().electionTicks;
    const before = { role: node.raft.currentRole, term: node.raft.term };
    let ticks = 0;
    while (ticks < limit) {
      node.raft.tick();
      ticks++;
      this.observeAll(out);
      if (node.raft.currentRole !== before.role || node.raft.term !== before.term) break;
    }
    out.push(`${node.id} ticked ${ticks} times (tick ${node.raft.ticks})`);
  }

  private tickNode(node: SimNode, count: number, out: string[]): void {
    if (count > ticksPerCommandMax) throw new InteractionError(`at most ${ticksPerCommandMax} ticks per command`);
    for (let k = 0; k < count; k++) {
      node.raft.tick();
      this.observeAll(out);
    }
    out.push(`${node.id} at tick ${node.raft.ticks}`);
  }

  /** A cluster running for N ticks on a perfect (but partitionable) network: each round ticks
   * every node once, then stabilizes. Prints only the `~` changes. */
  private tickAll(c: Command, out: string[]): void {
    const rounds = parseCount(c, c.args[0]);
    if (rounds > ticksPerCommandMax) throw new InteractionError(`at most ${ticksPerCommandMax} rounds per command`);
    for (let k = 0; k < rounds; k++) {
      for (const node of this.nodes.values()) {
        node.raft.tick();
        this.observeAll(out);
      }
      this.stabilize(out, { quiet: true });
    }
    out.push(`ticks: ${[...this.nodes.values()].map((n) => `${n.id}=${n.raft.ticks}`).join(' ')}`);
  }

  // ---- The driver loop ----------------------------------------------------------------------

  /** `process-ready [n1 n2 ...] [quiet]`: one Ready each (all nodes when none is named). */
  private processReadyCommand(c: Command, out: string[]): void {
    const { targets, quiet } = this.targetsAndQuiet(c);
    for (const node of targets) {
      if (!node.raft.hasReady()) {
        if (!quiet) out.push(`> ${node.id}: no Ready`);
        continue;
      }
      this.processReady(node, out, { quiet });
    }
  }

  /** Node ids, optionally followed by `quiet` (print only the `~` changes). */
  private targetsAndQuiet(c: Command): { targets: SimNode[]; quiet: boolean } {
    const quiet = c.args[c.args.length - 1] === 'quiet';
    const ids = quiet ? c.args.slice(0, -1) : c.args;
    const targets = ids.length === 0 ? [...this.nodes.values()] : ids.map((_, k) => this.node(c, k));
    return { targets, quiet };
  }

  /** persist (fsync) → send → apply → advance, printing what the Ready carried. */
  private processReady(node: SimNode, out: string[], options: { quiet: boolean }): void {
    const ready = node.raft.ready();
    const print = (line: string): void => {
      if (!options.quiet) out.push(line);
    };
    print(`> ${node.id} handling Ready`);
    if (ready.hardState) {
      const hs = ready.hardState;
      print(`  hard-state term=${hs.term} vote=${hs.votedFor ?? 'none'} commit=${hs.commitIndex}`);
    }
    if (ready.snapshot) print(`  snapshot ${formatSnapshot(ready.snapshot)}`);
    for (const entry of ready.entries) print(`  append ${formatEntry(entry)}`);
    this.persist(node, ready);
    for (const message of ready.messages) {
      const recipient = this.nodes.get(message.to);
      if (recipient === undefined) {
        print(`  send ${formatMessage(message)} (dropped: no such node)`);
      } else if (!this.connected(message.from, message.to)) {
        print(`  send ${formatMessage(message)} (dropped: partitioned)`);
      } else if (this.held.has(linkKey(message.from, message.to))) {
        print(`  send ${formatMessage(message)} (delayed)`);
        this.held.get(linkKey(message.from, message.to))?.push(message);
      } else {
        print(`  send ${formatMessage(message)}`);
        recipient.mailbox.push(message);
      }
    }
    for (const entry of ready.committedEntries) print(`  apply ${formatEntry(entry)}`);
    this.apply(node, ready);
    node.raft.advance(ready);
    this.observeAll(out);
  }

  /** Storage, in the order the Ready contract demands: snapshot, entries, hard state. */
  private persist(node: SimNode, ready: Ready): void {
    const storage = node.storage;
    if (ready.snapshot) {
      // As etcd's MemoryStorage.ApplySnapshot: the snapshot replaces the whole stored log.
      storage.snapshot = ready.snapshot;
      storage.entries = [];
    }
    const first = ready.entries[0];
    if (first) {
      storage.entries = storage.entries.filter((e) => e.index < first.index).concat(ready.entries);
    }
    if (ready.hardState) storage.hardState = ready.hardState;
  }

  private apply(node: SimNode, ready: Ready): void {
    if (ready.snapshot) node.stateMachine = decodeStateMachine(ready.snapshot.data);
    for (const entry of ready.committedEntries) {
      if (entry.type === 'command') node.stateMachine.push({ index: entry.index, data: textDecoder.decode(entry.data) });
    }
  }

  /** `deliver-msgs [n1 n2 ...] [quiet]`: step each node's queued messages into it. */
  private deliverCommand(c: Command, out: string[]): void {
    const { targets, quiet } = this.targetsAndQuiet(c);
    for (const node of targets) {
      if (node.mailbox.length === 0) {
        if (!quiet) out.push(`> ${node.id}: no messages`);
        continue;
      }
      this.deliver(node, out, { quiet });
    }
  }

  /** Step every queued message into the node (those queued while it was reachable). */
  private deliver(node: SimNode, out: string[], options: { quiet: boolean }): void {
    const messages = node.mailbox;
    node.mailbox = [];
    if (!options.quiet) out.push(`> ${node.id} receiving messages`);
    for (const message of messages) {
      if (!this.connected(message.from, message.to)) {
        if (!options.quiet) out.push(`  ${formatMessage(message)} (dropped: partitioned)`);
        continue;
      }
      if (!options.quiet) out.push(`  ${formatMessage(message)}`);
      node.raft.step(message);
      this.observeAll(out, options.quiet ? '' : '  ');
    }
  }

  /** Process Readies and deliver messages until nothing is left to do. */
  private stabilize(out: string[], options: { quiet: boolean }): void {
    for (let round = 0; round < stabilizeRoundsMax; round++) {
      let busy = false;
      for (const node of this.nodes.values()) {
        if (node.raft.hasReady()) {
          busy = true;
          this.processReady(node, out, options);
        }
      }
      for (const node of this.nodes.values()) {
        if (node.mailbox.length > 0) {
          busy = true;
          this.deliver(node, out, options);
        }
      }
      if (!busy) return;
    }
    throw new InteractionError(`stabilize: still busy after ${stabilizeRoundsMax} rounds (message ping-pong?)`);
  }

  // ---- The network --------------------------------------------------------------------------

  private connected(from: NodeId, to: NodeId): boolean {
    if (this.groups === null) return true;
    const groupOf = (id: NodeId): number => {
      const found = this.groups?.findIndex((g) => g.includes(id)) ?? -1;
      return found === -1 ? Number.MAX_SAFE_INTEGER : found;
    };
    return groupOf(from) === groupOf(to);
  }

  /** `partition n1 | n2 n3`: groups separated by `|`; unlisted nodes form one more group. */
  private partition(c: Command, out: string[]): void {
    const groups: NodeId[][] = [[]];
    for (const arg of c.args) {
      if (arg === '|') {
        groups.push([]);
        continue;
      }
      const id = nodeId(arg);
      if (!this.nodes.has(id)) throw new InteractionError(`partition: unknown node ${arg}`);
      groups[groups.length - 1]?.push(id);
    }
    const listed = new Set(groups.flat());
    const rest = [...this.nodes.keys()].filter((id) => !listed.has(id));
    if (rest.length > 0) groups.push(rest);
    if (groups.some((g) => g.length === 0)) throw new InteractionError('partition: empty group');
    this.groups = groups;
    out.push(`partitioned: ${groups.map((g) => g.join(' ')).join(' | ')}`);
  }

  /** `drop n1->n2`: lose the messages from n1 now waiting in n2's mailbox; `drop n1->*`: in
   * every mailbox. */
  private drop(c: Command, out: string[]): void {
    const match = /^(n\d)->(n\d|\*)$/.exec(c.args[0] ?? '');
    if (!match || c.args.length !== 1) throw new InteractionError('drop: usage `drop n1->n2` or `drop n1->*`');
    const from = nodeId(match[1] ?? '');
    const targets = match[2] === '*' ? [...this.nodes.values()] : [this.nodes.get(nodeId(match[2] ?? ''))];
    let dropped = 0;
    for (const to of targets) {
      if (!to) throw new InteractionError(`drop: unknown node ${match[2]}`);
      for (const m of to.mailbox.filter((m) => m.from === from)) {
        out.push(`dropped ${formatMessage(m)}`);
        dropped++;
      }
      to.mailbox = to.mailbox.filter((m) => m.from !== from);
    }
    if (dropped === 0) out.push('nothing to drop');
  }

  /** `delay n1->n2`: the link becomes slow. Messages from n1 to n2, those already waiting in
   * n2's mailbox included, are held in order until `release n1->n2`. Models a TCP connection
   * stuck in retransmission, which delivers late but in order. */
  private delay(c: Command, out: string[]): void {
    const [from, to] = this.link(c);
    const key = linkKey(from, to.id);
    if (this.held.has(key)) throw new InteractionError(`delay: ${key} is already delayed`);
    const moved = to.mailbox.filter((m) => m.from === from);
    to.mailbox = to.mailbox.filter((m) => m.from !== from);
    this.held.set(key, moved);
    out.push(`delaying ${key}${moved.length > 0 ? ` (${moved.length} in flight held)` : ''}`);
  }

  /** `release n1->n2`: the held messages arrive in n2's mailbox, in order; the link is normal. */
  private release(c: Command, out: string[]): void {
    const [from, to] = this.link(c);
    const key = linkKey(from, to.id);
    const messages = this.held.get(key);
    if (messages === undefined) throw new InteractionError(`release: ${key} is not delayed`);
    this.held.delete(key);
    for (const m of messages) {
      to.mailbox.push(m);
      out.push(`released ${formatMessage(m)}`);
    }
    if (messages.length === 0) out.push(`released ${key} (nothing held)`);
  }

  private link(c: Command): [NodeId, SimNode] {
    const match = /^(n\d)->(n\d)$/.exec(c.args[0] ?? '');
    if (!match || c.args.length !== 1) throw new InteractionError(`${c.name}: usage \`${c.name} n1->n2\``);
    const from = nodeId(match[1] ?? '');
    const to = this.nodes.get(nodeId(match[2] ?? ''));
    if (!this.nodes.has(from) || !to) throw new InteractionError(`${c.name}: unknown node in ${c.args[0]}`);
    return [from, to];
  }

  /** `inject-msg n3->n2 vote term=5 index=3 logTerm=2 [commit=3] [transfer]`: queue a message
   * that no correct node in the scenario would send (an old version without pre-vote, say). */
  private injectMessage(c: Command, out: string[]): void {
    const match = /^(n\d)->(n\d)$/.exec(c.args[0] ?? '');
    if (!match) throw new InteractionError('inject-msg: usage `inject-msg n3->n2 vote term=5 index=3 logTerm=2`');
    const to = this.nodes.get(nodeId(match[2] ?? ''));
    if (!to) throw new InteractionError(`inject-msg: unknown node ${match[2]}`);
    const type = c.args[1] as MessageType;
    const fields: Record<string, number> = { term: 0, index: 0, logTerm: 0, commit: 0 };
    let transfer = false;
    let reject = false;
    for (const arg of c.args.slice(2)) {
      if (arg === 'transfer') transfer = true;
      else if (arg === 'rejected') reject = true;
      else {
        const [key, value] = splitKeyValue(c, arg);
        if (!Object.hasOwn(fields, key)) throw new InteractionError(`inject-msg: unknown field ${key}`);
        fields[key] = parseCount(c, value);
      }
    }
    const message: Message = {
      type,
      from: nodeId(match[1] ?? ''),
      to: to.id,
      term: asTerm(fields.term ?? 0),
      index: logIndex(fields.index ?? 0),
      logTerm: asTerm(fields.logTerm ?? 0),
      commit: logIndex(fields.commit ?? 0),
      ...(transfer ? { transfer: true } : {}),
      ...(reject ? { reject: true } : {}),
    };
    to.mailbox.push(message);
    out.push(`queued ${formatMessage(message)}`);
  }

  // ---- Client requests ----------------------------------------------------------------------

  private propose(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const { rest, expectation } = splitExpectation(c.args.slice(1));
    if (rest.length === 0) throw new InteractionError('propose: usage `propose n1 data`');
    const result = node.raft.propose(textEncoder.encode(rest.join(' ')));
    this.reportProposal(c, result, expectation, out);
  }

  /** `propose-batch n1 70`: propose b1..b70 in a row, without a Ready in between. */
  private proposeBatch(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const count = parseCount(c, c.args[1]);
    if (count < 1 || count > ticksPerCommandMax) throw new InteractionError('propose-batch: 1 or more proposals');
    let first: ProposeResult | null = null;
    let last: ProposeResult | null = null;
    for (let k = 1; k <= count; k++) {
      last = node.raft.propose(textEncoder.encode(`b${k}`));
      first ??= last;
      if (!last.ok) throw new ExpectationError(`${c.line}: proposal ${k} refused: ${last.code}`);
    }
    if (first?.ok && last?.ok) out.push(`proposed i${first.index}..i${last.index}@t${last.term}`);
    this.observeAll(out);
  }

  private proposeMembership(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const { rest, expectation } = splitExpectation(c.args.slice(1));
    if (rest.length !== 1) throw new InteractionError('propose-membership: usage `propose-membership n1 n1,n2,n4`');
    const voters = (rest[0] ?? '').split(',').map((v) => nodeId(v));
    const result = node.raft.proposeMembership({ voters });
    this.reportProposal(c, result, expectation, out);
  }

  private reportProposal(c: Command, result: ProposeResult, expectation: string | null, out: string[]): void {
    const outcome = result.ok ? 'ok' : result.code;
    if (result.ok) out.push(`proposed at i${result.index}@t${result.term}`);
    else out.push(`refused ${result.code}: ${result.message}`);
    if (expectation !== null && expectation !== outcome) {
      throw new ExpectationError(`${c.line}: expected ${expectation}, got ${outcome}${result.ok ? '' : ` (${result.message})`}`);
    }
    this.observeAll(out);
  }

  private transferLeadership(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const { rest, expectation } = splitExpectation(c.args.slice(1));
    const to = rest[0] === undefined ? undefined : nodeId(rest[0]);
    const result = node.raft.transferLeadership(to);
    const outcome = result.ok ? 'ok' : result.code;
    if (result.ok) out.push(`transferring to ${result.transferee}`);
    else out.push(`refused ${result.code}: ${result.message}`);
    if (expectation !== null && expectation !== outcome) {
      throw new ExpectationError(`${c.line}: expected ${expectation}, got ${outcome}`);
    }
    this.observeAll(out);
  }

  // ---- Inspection ---------------------------------------------------------------------------

  private status(c: Command, out: string[]): void {
    const targets = c.args.length === 0 ? [...this.nodes.values()] : c.args.map((_, k) => this.node(c, k));
    for (const node of targets) {
      const s = node.raft.status();
      const lease = s.lease.untilTick === null ? 'none' : `${s.lease.valid ? 'valid' : 'invalid'} until=${s.lease.untilTick}`;
      out.push(
        `${s.id}: ${s.role} term=${s.term} leader=${s.leader ?? 'none'} vote=${s.votedFor ?? 'none'} ` +
          `commit=${s.commitIndex} applied=${s.appliedIndex} lastIndex=${s.lastIndex} ` +
          `voters=${s.membership.voters.join(',') || '(none)'} lease=${lease} tick=${s.tick}` +
          (s.transferee !== null ? ` transferee=${s.transferee}` : ''),
      );
      for (const p of s.peers) {
        out.push(`  ${p.id}: match=${p.matchIndex} next=${p.nextIndex} ${p.state}${p.recentActive ? ' active' : ''}`);
      }
    }
  }

  private printLog(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const raft = node.raft;
    const meta = raft.snapshotMeta;
    const s = raft.status();
    if (meta.index > 0) out.push(`snapshot ${formatSnapshotMeta(meta.index, meta.term, meta.membership)}`);
    for (let index = meta.index + 1; index <= s.lastIndex; index++) {
      const entry = raft.entryAt(index);
      if (entry === null) throw new InteractionError(`${node.id} has no entry at ${index}`);
      out.push(`${formatEntry(entry)}${index <= s.commitIndex ? '' : ' (uncommitted)'}`);
    }
    if (meta.index === 0 && s.lastIndex === 0) out.push('(empty)');
  }

  private printStateMachine(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    out.push(`${node.id}: ${node.stateMachine.map((a) => `${a.index}:${a.data}`).join(' ') || '(empty)'}`);
  }

  // ---- Crashes and compaction ---------------------------------------------------------------

  /** Rebuild the node from what it persisted; everything else (unpersisted entries, term and
   * vote changes, queued outgoing messages, its tick count) is lost, as in a crash. Messages
   * already in its mailbox are on the network and stay there. */
  private restart(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    node.restarts++;
    node.raft = this.newRaft(node.id, node.number, node.restarts, node.storage, node.bootstrap);
    node.stateMachine = node.storage.snapshot ? decodeStateMachine(node.storage.snapshot.data) : [];
    const hs = node.storage.hardState;
    out.push(
      `${node.id} restarted from storage: term=${hs.term} vote=${hs.votedFor ?? 'none'} commit=${hs.commitIndex} ` +
        `entries=${node.storage.entries.length}` +
        (node.storage.snapshot ? ` snapshot=${formatSnapshot(node.storage.snapshot)}` : ''),
    );
    this.observeAll(out);
  }

  /** `compact n1 5`: the state machine captured everything up to 5; the log before it goes. */
  private compact(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const index = parseCount(c, c.args[1]);
    const captured = node.stateMachine.filter((a) => a.index <= index);
    const snapshot = node.raft.compact(index, textEncoder.encode(JSON.stringify(captured)));
    node.storage.snapshot = snapshot;
    node.storage.entries = node.storage.entries.filter((e) => e.index > index);
    out.push(`${node.id} compacted: ${formatSnapshot(snapshot)}; log starts at i${index + 1}`);
  }

  // ---- Expectations -------------------------------------------------------------------------

  private expect(c: Command, out: string[]): void {
    const node = this.node(c, 0);
    const s = node.raft.status();
    const want = c.args[1];
    if (want === undefined) throw new InteractionError(`${c.name}: missing expected value`);
    let got: string;
    switch (c.name) {
      case 'expect-role':
        got = s.role;
        break;
      case 'expect-lease':
        if (want !== 'valid' && want !== 'invalid') throw new InteractionError('expect-lease: valid or invalid');
        got = s.lease.valid ? 'valid' : 'invalid';
        break;
      case 'expect-term':
        got = String(s.term);
        break;
      case 'expect-leader':
        got = s.leader ?? 'none';
        break;
      case 'expect-commit':
        got = String(s.commitIndex);
        break;
      case 'expect-voters':
        got = s.membership.voters.join(',');
        break;
      case 'expect-logs-match': {
        for (let k = 1; k < c.args.length; k++) this.expectLogsMatch(node, this.node(c, k));
        out.push('ok');
        return;
      }
      default:
        throw new InteractionError(`unknown expectation ${c.name}`);
    }
    if (got !== want) {
      throw new ExpectationError(`${c.line}: ${node.id} has ${got} (tick ${s.tick}, role ${s.role}, term ${s.term})`);
    }
    out.push('ok');
  }

  /** `expect-lease-holders n2` (or `none`): exactly these nodes hold a valid lease now. All
   * nodes share one clock here, so "now" means the same instant for all of them: two holders
   * would mean two hosts answering ARP for the VIP. */
  private expectLeaseHolders(c: Command, out: string[]): void {
    const want = c.args.length === 1 && c.args[0] === 'none' ? [] : [...c.args].sort();
    const got = [...this.nodes.values()].filter((n) => n.raft.lease().valid).map((n) => n.id as string).sort();
    if (want.join(',') !== got.join(',')) {
      throw new ExpectationError(`${c.line}: the lease holders are ${got.join(',') || 'none'}`);
    }
    out.push('ok');
  }

  private expectLogsMatch(a: SimNode, b: SimNode): void {
    const sa = a.raft.status();
    const sb = b.raft.status();
    if (sa.lastIndex !== sb.lastIndex) {
      throw new ExpectationError(`logs differ: ${a.id} ends at ${sa.lastIndex}, ${b.id} at ${sb.lastIndex}`);
    }
    const from = Math.max(a.raft.snapshotMeta.index, b.raft.snapshotMeta.index) + 1;
    for (let index = from; index <= sa.lastIndex; index++) {
      const ea = a.raft.entryAt(index);
      const eb = b.raft.entryAt(index);
      const fa = ea ? formatEntry(ea) : 'none';
      const fb = eb ? formatEntry(eb) : 'none';
      if (fa !== fb) throw new ExpectationError(`logs differ at ${index}: ${a.id} has ${fa}, ${b.id} has ${fb}`);
    }
  }

  // ---- Helpers ------------------------------------------------------------------------------

  private withNode(c: Command, argCount: number, out: string[], action: (node: SimNode) => void): void {
    if (c.args.length !== argCount) throw new InteractionError(`${c.name}: expected ${argCount} argument(s)`);
    action(this.node(c, 0));
    this.observeAll(out);
  }

  private node(c: Command, position: number): SimNode {
    const id = this.nodeArg(c, position, { mustExist: true });
    const node = this.nodes.get(id);
    if (!node) throw new InteractionError(`${c.name}: unknown node ${id}`);
    return node;
  }

  private nodeArg(c: Command, position: number, options: { mustExist: boolean }): NodeId {
    const raw = c.args[position];
    if (raw === undefined) throw new InteractionError(`${c.name}: missing node id`);
    const id = nodeId(raw);
    if (options.mustExist && !this.nodes.has(id)) throw new InteractionError(`${c.name}: unknown node ${raw}`);
    return id;
  }

  private requireTiming(): RaftTiming {
    if (this.timing === null) throw new InteractionError('run add-nodes first');
    return this.timing;
  }

  /** Print a `~` line for every change since the last observation. */
  private observeAll(out: string[], indent = ''): void {
    for (const node of this.nodes.values()) {
      const s = node.raft.status();
      const now: Observed = {
        role: s.role,
        term: s.term,
        leader: s.leader,
        voters: s.membership.voters.join(','),
        leaseValid: s.lease.valid,
      };
      const before = this.observed.get(node.id);
      this.observed.set(node.id, now);
      if (before === undefined) continue;
      if (before.role !== now.role || before.term !== now.term || before.leader !== now.leader) {
        out.push(`${indent}~ ${node.id} is ${now.role} term=${now.term} leader=${now.leader ?? 'none'} (tick ${s.tick})`);
      }
      if (before.voters !== now.voters) out.push(`${indent}~ ${node.id} voters ${now.voters || '(none)'}`);
      if (before.leaseValid !== now.leaseValid) {
        out.push(
          now.leaseValid
            ? `${indent}~ ${node.id} lease valid until tick ${s.lease.untilTick} (tick ${s.tick})`
            : `${indent}~ ${node.id} lease invalid (tick ${s.tick})`,
        );
      }
    }
  }
}

// ---- Formatting -----------------------------------------------------------------------------

export function formatEntry(entry: Entry): string {
  const head = `i${entry.index}@t${entry.term}`;
  switch (entry.type) {
    case 'noop':
      return `${head} noop`;
    case 'command':
      return `${head} cmd ${JSON.stringify(textDecoder.decode(entry.data))}`;
    case 'membership':
      return `${head} membership ${entry.membership.voters.join(',')}`;
    default: {
      const unreachable: never = entry;
      throw new Error(`unknown entry ${JSON.stringify(unreachable)}`);
    }
  }
}

function formatSnapshotMeta(index: number, snapshotTerm: number, membership: Membership): string {
  return `i${index}@t${snapshotTerm} voters=${membership.voters.join(',')}`;
}

function formatSnapshot(snapshot: Snapshot): string {
  const captured = decodeStateMachine(snapshot.data).map((a) => a.data);
  return `${formatSnapshotMeta(snapshot.meta.index, snapshot.meta.term, snapshot.meta.membership)} data=[${captured.join(',')}]`;
}

/** One message on one line: type, then the fields that mean something for it (responses
 * carry no meaningful commit index; a request's index/logTerm describe the sender's log). */
export function formatMessage(m: Message): string {
  const parts = [`${m.from}->${m.to}`, m.type, `term=${m.term}`];
  const request = m.type === 'pre-vote' || m.type === 'vote' || m.type === 'append' || m.type === 'timeout-now';
  if (request) parts.push(`index=${m.index}`, `logTerm=${m.logTerm}`);
  else if (m.type === 'append-response') parts.push(`index=${m.index}`, ...(m.reject ? [`logTerm=${m.logTerm}`] : []));
  else if (m.index !== 0 || m.logTerm !== 0) parts.push(`index=${m.index}`, `logTerm=${m.logTerm}`);
  if (request || m.type === 'heartbeat' || m.type === 'snapshot') parts.push(`commit=${m.commit}`);
  if (m.reject) parts.push('rejected');
  if (m.hint !== undefined) parts.push(`hint=${m.hint}`);
  if (m.entries !== undefined) parts.push(`entries=[${m.entries.map(formatEntry).join(', ')}]`);
  if (m.snapshot !== undefined) parts.push(`snapshot=[${formatSnapshot(m.snapshot)}]`);
  if (m.transfer) parts.push('transfer');
  if (m.transferee !== undefined) parts.push(`transferee=${m.transferee}`);
  if (m.sentAtTick !== undefined) parts.push(`sentAt=${m.sentAtTick}`);
  if (m.epoch !== undefined) parts.push(`epoch=${m.epoch}`);
  return parts.join(' ');
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}->${to}`;
}

function decodeStateMachine(data: Uint8Array): AppliedCommand[] {
  if (data.length === 0) return [];
  return JSON.parse(textDecoder.decode(data)) as AppliedCommand[];
}

function parseCount(c: Command, raw: string | undefined): number {
  const value = Number(raw);
  if (raw === undefined || !Number.isInteger(value) || value < 0) {
    throw new InteractionError(`${c.name}: expected a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function splitKeyValue(c: Command, arg: string): [string, string] {
  const at = arg.indexOf('=');
  if (at <= 0) throw new InteractionError(`${c.name}: expected key=value, got ${JSON.stringify(arg)}`);
  return [arg.slice(0, at), arg.slice(at + 1)];
}

/** A trailing `expect=ok` or `expect=RAFTVIP_CODE` on a client request. */
function splitExpectation(args: readonly string[]): { rest: string[]; expectation: string | null } {
  const rest: string[] = [];
  let expectation: string | null = null;
  for (const arg of args) {
    if (arg.startsWith('expect=')) expectation = arg.slice('expect='.length);
    else rest.push(arg);
  }
  return { rest, expectation };
}

// ---- The file format ------------------------------------------------------------------------

/** One command of a scenario file with its expected output (null: none written yet). */
export interface Block {
  /** Comment and blank lines before the command, verbatim. */
  readonly leading: readonly string[];
  readonly command: Command;
  /** 1-based line of the command in the file. */
  readonly lineNumber: number;
  readonly expected: string | null;
}

export interface ScenarioFile {
  readonly blocks: readonly Block[];
  /** `# known-bug: ...` comment lines: the file is written as Raft requires and the core does
   * not (yet) comply. The harness reports its failures as TODO instead of failing the suite. */
  readonly knownBugs: readonly string[];
  /** Comment and blank lines after the last block. */
  readonly trailing: readonly string[];
}

/**
 * The datadriven format: `#` comments, a command line, `----`, the expected output up to the
 * next blank line. Outputs never contain blank lines.
 */
export function parseScenario(text: string): ScenarioFile {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const blocks: Block[] = [];
  let leading: string[] = [];
  let k = 0;
  while (k < lines.length) {
    const line = lines[k] ?? '';
    if (line.trim() === '' || line.trimStart().startsWith('#')) {
      leading.push(line);
      k++;
      continue;
    }
    if (line === '----') throw new InteractionError(`line ${k + 1}: ---- without a command`);
    const tokens = line.trim().split(/\s+/);
    const command: Command = { name: tokens[0] ?? '', args: tokens.slice(1), line: line.trim() };
    const lineNumber = k + 1;
    k++;
    let expected: string | null = null;
    if (lines[k] === '----') {
      k++;
      const output: string[] = [];
      while (k < lines.length && (lines[k] ?? '').trim() !== '') {
        output.push(lines[k] ?? '');
        k++;
      }
      expected = output.join('\n');
    }
    blocks.push({ leading, command, lineNumber, expected });
    leading = [];
  }
  const knownBugs = lines
    .map((line) => /^#\s*known-bug:\s*(.*)$/.exec(line.trim())?.[1])
    .filter((reason): reason is string => reason !== undefined);
  return { blocks, trailing: leading, knownBugs };
}

/** The file again, with each block's output replaced by `outputs[k]`. */
export function renderScenario(file: ScenarioFile, outputs: readonly string[]): string {
  const lines: string[] = [];
  file.blocks.forEach((block, k) => {
    // A block written without output may sit right under the previous command: separate them.
    if (k > 0 && (block.leading[0] ?? '').trim() !== '') lines.push('');
    lines.push(...block.leading, block.command.line, '----', outputs[k] ?? '');
  });
  lines.push(...file.trailing);
  return `${lines.join('\n')}\n`;
}
