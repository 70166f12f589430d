// Goal: the daemon's Raft driver orders I/O as the safety argument requires and judges the
// lease by the clock. Three drivers run in one process on real timers with an in-memory network:
// no message leaves a node before its Ready is persisted; a leader's lease is held by the clock
// and lapses the moment the clock jumps past it (a pause), before any message is stepped;
// proposals resolve once applied, and fail with a typed code on a follower.

import t from 'tap';
import { ClusterState, encodeCommand } from '../src/raft/cluster-state.js';
import { Raft } from '../src/raft/raft.js';
import { SeededRandom } from '../src/raft/random.js';
import { timingMsDefault, timingToTicks } from '../src/raft/timing.js';
import { emptyHardState, nodeId, type Entry, type HardState, type Message, type NodeId, type Snapshot } from '../src/raft/types.js';
import { RaftDriver, type DriverStorage, type MonotonicClock } from '../src/daemon/raft-driver.js';

class MemoryStorage implements DriverStorage {
  saves = 0;
  gate: Promise<void> | null = null;
  hardState: HardState = emptyHardState;
  async save(batch: { hardState: HardState | null; entries: readonly Entry[]; snapshot: Snapshot | null }): Promise<void> {
    if (this.gate) await this.gate;
    this.saves++;
    if (batch.hardState) this.hardState = batch.hardState;
  }
  async saveSnapshot(): Promise<void> {}
}

/** A clock that follows real time, plus a manual offset to simulate a pause. */
class JumpingClock implements MonotonicClock {
  offsetMs = 0;
  nowMs(): number {
    return performance.now() + this.offsetMs;
  }
}

interface Member {
  id: NodeId;
  driver: RaftDriver;
  storage: MemoryStorage;
  clock: JumpingClock;
  sent: { message: Message; savesBefore: number }[];
  stalls: number;
}

function cluster(size: number): Member[] {
  const ids = Array.from({ length: size }, (_, i) => nodeId(`n${i + 1}`));
  const members: Member[] = [];
  for (const [i, id] of ids.entries()) {
    const storage = new MemoryStorage();
    const clock = new JumpingClock();
    const member: Member = { id, storage, clock, sent: [], stalls: 0, driver: undefined as unknown as RaftDriver };
    const raft = new Raft({
      id,
      timing: timingToTicks(timingMsDefault),
      random: new SeededRandom(100 + i),
      persisted: { hardState: emptyHardState, snapshot: null, entries: [] },
      bootstrap: { voters: ids },
    });
    member.driver = new RaftDriver({
      raft,
      storage,
      state: new ClusterState(),
      tickMs: timingMsDefault.tickMs,
      clock,
      transport: {
        send: (message) => {
          member.sent.push({ message, savesBefore: storage.saves });
          const target = members.find((m) => m.id === message.to);
          setImmediate(() => target?.driver.receive(message));
        },
      },
      observer: { onStall: () => member.stalls++ },
    });
    members.push(member);
  }
  return members;
}

async function waitFor<T>(what: string, probe: () => T | null | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

t.test('votes and entries are persisted before the messages that depend on them', async (t) => {
  const members = cluster(3);
  for (const m of members) m.driver.start();
  t.teardown(() => Promise.all(members.map((m) => m.driver.stop())));
  const leader = await waitFor('a leader', () => members.find((m) => m.driver.holdsLease()));
  t.ok(leader, `${leader.id} leads and holds the lease`);
  for (const member of members) {
    for (const { message, savesBefore } of member.sent) {
      if (message.type === 'vote' || message.type === 'vote-response') {
        t.ok(savesBefore > 0, `${member.id}'s ${message.type} left after a save`);
      }
    }
  }
  const voters = members.filter((m) => m.storage.hardState.votedFor !== null);
  t.ok(voters.length >= 2, 'a quorum persisted its vote');

  // Hold one follower's disk: it must not answer the leader until the write completes.
  const follower = members.find((m) => m !== leader)!;
  let release!: () => void;
  follower.storage.gate = new Promise<void>((resolve) => (release = resolve));
  const before = follower.sent.length;
  const proposal = leader.driver.propose(encodeCommand({ op: 'put', key: 'k', value: 1 }), { timeoutMs: 3000 });
  await new Promise((resolve) => setTimeout(resolve, 150));
  const answered = follower.sent.slice(before).filter((s) => s.message.type === 'append-response');
  t.equal(answered.length, 0, 'the follower sent no append-response while its write was pending');
  release();
  follower.storage.gate = null;
  const result = await proposal;
  t.ok(result.ok, 'the proposal commits once writes complete');
  await waitFor('the follower to answer', () => follower.sent.slice(before).some((s) => s.message.type === 'append-response'));
  t.equal(leader.driver.clusterState.get('k'), 1, 'applied on the leader');
});

t.test('the lease is judged by the clock: a pause ends it before anything else happens', async (t) => {
  const members = cluster(3);
  for (const m of members) m.driver.start();
  t.teardown(() => Promise.all(members.map((m) => m.driver.stop())));
  const leader = await waitFor('a leader', () => members.find((m) => m.driver.holdsLease()));
  const expires = leader.driver.leaseExpiresAtMs();
  const now = leader.clock.nowMs();
  t.ok(expires !== null && expires > now, 'the lease expires in the future');
  const leaseMs = (expires ?? 0) - now;
  t.ok(leaseMs <= 140 + 1, `the lease is at most 140 ms ahead (${leaseMs.toFixed(1)} ms)`);
  t.notOk(leader.driver.holdsLease(now + 1000), 'one second later by the clock, no lease');

  // The leader's clock jumps a second ahead, as after SIGSTOP/SIGCONT: its very next wake-up
  // reports the stall, and the lease is gone even though the core has not ticked yet.
  leader.clock.offsetMs += 1000;
  t.notOk(leader.driver.holdsLease(), 'no lease right after the jump');
  await waitFor('the stall to be noticed', () => leader.stalls > 0);
  t.pass('the stall was reported');
});

t.test('a follower refuses proposals with a typed code', async (t) => {
  const members = cluster(3);
  for (const m of members) m.driver.start();
  t.teardown(() => Promise.all(members.map((m) => m.driver.stop())));
  const leader = await waitFor('a leader', () => members.find((m) => m.driver.holdsLease()));
  const follower = members.find((m) => m !== leader)!;
  const result = await follower.driver.propose(encodeCommand({ op: 'put', key: 'x', value: 2 }), { timeoutMs: 1000 });
  t.equal(result.ok ? 'ok' : result.code, 'RAFTVIP_NOT_LEADER', 'RAFTVIP_NOT_LEADER');
  const transfer = await leader.driver.transferLeadership(follower.id);
  t.ok(transfer.ok, 'the leader starts a transfer');
  t.notOk(leader.driver.holdsLease(), 'and gives up its lease at once');
  await waitFor('the transferee to lead', () => follower.driver.holdsLease() && follower);
  t.pass(`${follower.id} took over`);
});
