// Goal: prove the durability promises end to end, with the real Raft core driven over real
// files by FileStorage (three nodes in one process, each with its own temporary data
// directory; see support/disk-cluster.ts for the driver and the crash model):
//   1. a whole-cluster stop and restart from disk keeps every node's term, vote, committed log
//      and state machine, and the cluster elects a leader and commits again;
//   2. a vote survives a restart: the node refuses another candidate of the same term, and not
//      because of its boot fence;
//   3. a torn or garbage tail of a follower's last WAL segment is truncated with a warning, and
//      the follower catches up without any committed entry being lost;
//   4. damage in the middle of the WAL stops the node with RAFTVIP_WAL_CORRUPT naming the file;
//      the other two keep committing, and the node restored from its peers (remove, wipe, add
//      back, as docs/errors.md says) catches up through a snapshot to the same state;
//   5. a crash between ready() and the end of save() loses only what was never acknowledged:
//      every committed entry stays on a majority and the healed cluster agrees on its state.
// Every scenario is deterministic for its seed; failures name the seed.

import t from 'tap';
import { appendFile, readFile, truncate, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { decodeCommand } from '../src/raft/cluster-state.js';
import { FileStorage, scanSegment, segmentHeaderRecordBytes, type StorageLogEvent } from '../src/raft/file-storage.js';
import { Raft } from '../src/raft/raft.js';
import { SeededRandom } from '../src/raft/random.js';
import { logIndex, nodeId, term, type Entry, type HardState, type Message, type NodeId } from '../src/raft/types.js';
import {
  DiskCluster,
  diskClusterTiming,
  entryKey,
  fenceTicks,
  newestWalFile,
  walSegments,
  type DiskNode,
} from './support/disk-cluster.js';

/** The part of a tap test the helpers use. */
type Checks = Pick<typeof t, 'equal' | 'same' | 'ok' | 'teardown'>;

async function newCluster(tt: Checks, seed: number, options: { segmentSizeBytesMax?: number } = {}): Promise<DiskCluster> {
  const cluster = await DiskCluster.create({ seed, ...options });
  tt.teardown(() => cluster.destroy());
  return cluster;
}

function followers(cluster: DiskCluster): DiskNode[] {
  const leader = cluster.leader();
  return cluster.alive().filter((n) => n !== leader);
}

const warnings = (events: readonly StorageLogEvent[]) => events.filter((e) => e.level === 'warn');

/** After convergence: every live node applied the same index and reached the same digest, and
 * holds every committed put with its committed value. */
function checkAgreement(tt: Checks, cluster: DiskCluster, what: string): void {
  const reference = cluster.servingLeader() ?? cluster.alive()[0]!;
  const puts = cluster.committedPuts();
  tt.ok(puts.size > 0, `${what}: there are committed keys to compare`);
  for (const node of cluster.alive()) {
    if (node !== reference) {
      tt.same(
        { applied: node.state.appliedIndex, digest: node.state.digest },
        { applied: reference.state.appliedIndex, digest: reference.state.digest },
        `${what}: ${node.id} applied the same index with the same state digest as ${reference.id}`,
      );
    }
    const missing = [...puts].filter(([key, value]) => node.state.get(key) !== value).map(([key]) => key);
    tt.same(missing, [], `${what}: ${node.id} holds all ${puts.size} committed keys with their values`);
  }
}

/** Every entry ever reported committed is held (in the log or a snapshot) by a majority. */
function checkCommittedOnMajority(tt: Checks, cluster: DiskCluster, what: string): void {
  const quorum = Math.floor(cluster.nodes.length / 2) + 1;
  const short: string[] = [];
  for (const [index, entry] of cluster.committedEntries()) {
    const holders = cluster.holdersOf(index);
    if (holders.length < quorum) short.push(`${entryKey(entry)} on ${holders.map((n) => n.id).join(',') || 'nobody'}`);
  }
  tt.ok(cluster.committedEntries().size > 0, `${what}: there are committed entries to check`);
  tt.same(short, [], `${what}: all ${cluster.committedEntries().size} committed entries are on a majority`);
}

function lastIndexOf(entries: readonly Entry[], floor: number): number {
  return Math.max(floor, entries[entries.length - 1]?.index ?? 0);
}

function putKeys(entries: readonly Entry[]): string[] {
  return entries.flatMap((e) => {
    if (e.type !== 'command') return [];
    const command = decodeCommand(e.data);
    return command?.op === 'put' ? [command.key] : [];
  });
}

/** The sequence number in a segment's file name (16 hex digits). */
function segmentSequence(file: string): number {
  return Number.parseInt(basename(file, '.wal'), 16);
}

async function flipByte(path: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[offset] = bytes[offset]! ^ 0x5a;
  await writeFile(path, bytes);
}

// ---------------------------------------------------------------------------------------------

t.test('1. a whole-cluster restart from disk keeps term, vote, committed log and state', async (tt) => {
  const cluster = await newCluster(tt, 101, { segmentSizeBytesMax: 512 });
  await cluster.waitForLeader();
  for (let i = 1; i <= 30; i++) await cluster.put(`k${i}`, i);
  await cluster.waitForConvergence('every node applied the 30 commands');
  for (const node of cluster.nodes) tt.ok(node.compactions > 0, `${node.id} compacted its log (${node.compactions} times)`);
  tt.ok(cluster.nodes.some((n) => n.storageEvents.some((e) => e.msg === 'compacted WAL')), 'storage logged a compaction');
  // Hand leadership over, so that the newest term and vote and the entries after the last
  // compaction are known on disk only through save(), not through the hard state that a
  // compaction writes too.
  const first = cluster.leader()!;
  const firstTerm = first.raft.term;
  const transfer = first.raft.transferLeadership();
  tt.ok(transfer.ok, `${first.id} hands leadership over`);
  await cluster.stabilize();
  await cluster.runUntil(() => (cluster.servingLeader()?.raft.term ?? 0) > firstTerm, 'the transferee leads');
  await cluster.waitForConvergence('every node applied the new leader no-op');
  // Each compaction starts one segment; any higher sequence number is a size rollover.
  const rollovers = await Promise.all(
    cluster.nodes.map(async (n) => segmentSequence((await newestWalFile(n.dataDir)).file) - 1 - n.compactions),
  );
  tt.ok(rollovers.every((count) => count > 0), `small segments rolled over (per node: ${rollovers.join(', ')})`);

  interface Before {
    hardState: HardState;
    snapshotIndex: number;
    committedLog: string[];
    applied: number;
    digest: number;
  }
  const before = new Map<NodeId, Before>();
  for (const node of cluster.nodes) {
    const raft = node.raft;
    const commit = raft.status().commitIndex;
    before.set(node.id, {
      hardState: raft.hardState(),
      snapshotIndex: raft.snapshotMeta.index,
      committedLog: node.logEntries().filter((e) => e.index <= commit).map(entryKey),
      applied: node.state.appliedIndex,
      digest: node.state.digest,
    });
  }
  const termBefore = cluster.leader()!.raft.term;

  await cluster.stopAll();
  tt.equal(cluster.alive().length, 0, 'every node is stopped');
  for (const node of cluster.nodes) {
    const eventsBefore = node.storageEvents.length;
    // No bootstrap: whatever the node knows must come from its files.
    await cluster.start(node.id, { bootstrap: false });
    const was = before.get(node.id)!;
    const raft = node.raft;
    tt.same(node.recovered!.hardState, was.hardState, `${node.id}: storage recovered the hard state it last saved`);
    tt.equal(raft.term, was.hardState.term, `${node.id}: same term ${was.hardState.term}`);
    tt.equal(raft.status().votedFor, was.hardState.votedFor, `${node.id}: same vote ${was.hardState.votedFor}`);
    tt.equal(raft.status().commitIndex, was.hardState.commitIndex, `${node.id}: same commit index`);
    tt.equal(raft.snapshotMeta.index, was.snapshotIndex, `${node.id}: same snapshot index`);
    const commit = raft.status().commitIndex;
    tt.same(node.logEntries().filter((e) => e.index <= commit).map(entryKey), was.committedLog, `${node.id}: same committed entries`);
    tt.equal(node.state.appliedIndex, was.applied, `${node.id}: snapshot + re-applied entries reach the same applied index`);
    tt.equal(node.state.digest, was.digest, `${node.id}: ... and the same state digest`);
    for (let i = 1; i <= 30; i++) {
      if (node.state.get(`k${i}`) !== i) tt.fail(`${node.id}: k${i} is ${String(node.state.get(`k${i}`))} after restart`);
    }
    const reapplied = node.state.appliedIndex - (node.recovered!.snapshot?.meta.index ?? 0);
    tt.ok(reapplied > 0, `${node.id}: re-applied the ${reapplied} committed entries its log holds after the snapshot`);
    tt.same(warnings(node.storageEvents.slice(eventsBefore)), [], `${node.id}: a clean stop leaves nothing to repair`);
  }

  const leader = await cluster.waitForLeader();
  tt.ok(leader.raft.term > termBefore, `${leader.id} is re-elected leader in term ${leader.raft.term} > ${termBefore}`);
  for (let i = 31; i <= 35; i++) await cluster.put(`k${i}`, i);
  await cluster.waitForConvergence('every node applied the new commands');
  checkAgreement(tt, cluster, 'after the restart');
  tt.equal(cluster.committedPuts().size, 35, 'all 35 keys are committed');
});

t.test('2. a vote survives a restart: the same term is refused to a second candidate', async (tt) => {
  const cluster = await newCluster(tt, 202);
  const n1 = cluster.node('n1');
  const n2 = cluster.node('n2');
  // Let the boot fence lapse everywhere (elections need at least electionTicks, so nobody
  // campaigns yet), then n1 campaigns with n3 cut off: n2's vote alone elects it.
  await cluster.runRounds(fenceTicks);
  tt.equal(cluster.leader(), null, 'no leader before the campaign');
  cluster.isolate('n3');
  n1.raft.campaign();
  await cluster.stabilize();
  tt.equal(n1.raft.currentRole, 'leader', 'n1 won with n2 vote');
  const voteTerm = n1.raft.term;
  tt.equal(voteTerm, 2, 'in term 2');
  tt.same(
    { term: n2.raft.term, votedFor: n2.raft.status().votedFor },
    { term: voteTerm, votedFor: 'n1' },
    'n2 voted for n1 in term 2',
  );
  tt.ok(
    cluster.messagesSent.some((m) => m.from === 'n2' && m.type === 'vote-response' && !m.reject && m.term === voteTerm),
    'n2 sent its grant (after its driver saved it)',
  );

  // n2 restarts from disk and hears from nobody.
  await cluster.stop('n2');
  cluster.isolate('n2');
  await cluster.start('n2', { bootstrap: false });
  tt.equal(n2.recovered!.hardState.term, voteTerm, 'storage recovered term 2');
  tt.equal(n2.recovered!.hardState.votedFor, 'n1', 'storage recovered the vote for n1');
  tt.equal(n2.raft.status().votedFor, 'n1', 'the restarted core still has votedFor n1');

  // Wait out the boot fence without reaching an election timeout, so that only the vote can
  // explain a refusal.
  for (let i = 0; i < fenceTicks; i++) {
    n2.raft.tick();
    await cluster.drain(n2);
  }
  tt.equal(n2.raft.currentRole, 'follower', 'n2 has not campaigned');
  tt.equal(n2.raft.term, voteTerm, 'n2 is still in term 2');

  const lastIndex = n2.raft.status().lastIndex;
  const voteFrom = (from: string): Message => ({
    type: 'vote',
    from: nodeId(from),
    to: n2.id,
    term: term(voteTerm),
    // A log longer than n2's, so the up-to-date check (§5.4.1) does not decide.
    index: logIndex(lastIndex + 10),
    logTerm: term(voteTerm),
    commit: logIndex(0),
  });
  const responsesTo = async (from: string): Promise<Message[]> => {
    const mark = cluster.messagesSent.length;
    n2.raft.step(voteFrom(from));
    await cluster.drain(n2);
    return cluster.messagesSent.slice(mark).filter((m) => m.type === 'vote-response' && m.to === from);
  };

  const toN3 = await responsesTo('n3');
  tt.equal(toN3.length, 1, 'n2 answered n3');
  tt.equal(toN3[0]?.reject, true, 'n2 refused n3 in term 2: it already voted for n1');
  tt.equal(n2.raft.status().votedFor, 'n1', 'n2 still records its vote for n1');

  const toN1 = await responsesTo('n1');
  tt.ok(toN1.length === 1 && toN1[0]!.reject !== true, 'the repeated request of the candidate it voted for is granted');

  // Control: the same persisted state without the vote grants n3, so the refusal above came
  // from the vote that storage brought back.
  const forgetful = new Raft({
    id: n2.id,
    timing: diskClusterTiming,
    random: new SeededRandom(cluster.seed),
    persisted: { ...n2.recovered!, hardState: { ...n2.recovered!.hardState, votedFor: null } },
  });
  for (let i = 0; i < fenceTicks; i++) forgetful.tick();
  forgetful.step(voteFrom('n3'));
  const controlResponse = forgetful.ready().messages.find((m) => m.type === 'vote-response' && m.to === 'n3');
  tt.ok(controlResponse !== undefined && controlResponse.reject !== true, 'control: a node that forgot its vote would grant n3');

  // The vote is still on disk after all that.
  await cluster.stop('n2');
  await cluster.start('n2', { bootstrap: false });
  tt.same(
    { term: n2.recovered!.hardState.term, votedFor: n2.recovered!.hardState.votedFor },
    { term: voteTerm, votedFor: 'n1' },
    'a second restart still recovers term 2, vote n1',
  );

  cluster.heal();
  await cluster.waitForLeader();
  await cluster.put('after', 1);
  await cluster.waitForConvergence('the healed cluster converges');
  tt.equal(cluster.leadersByTerm().get(voteTerm), 'n1', 'n1 was the only leader of term 2 (checked after every Ready)');
  checkAgreement(tt, cluster, 'after healing');
});

t.test('3. a torn or garbage tail on a follower is truncated and the follower catches up', async (tt) => {
  tt.test('a save torn in half by a crash before it was acknowledged', async (tt) => {
    const cluster = await newCluster(tt, 303);
    await cluster.waitForLeader();
    for (let i = 1; i <= 12; i++) await cluster.put(`k${i}`, i);
    await cluster.waitForConvergence('every node applied k1..k12');
    const follower = followers(cluster)[0]!;

    // The follower writes the next append's entries but dies before answering; then the record
    // is cut in half, as a power loss in the middle of that write would leave it.
    follower.fault = { at: 'after-save', match: (ready) => ready.entries.some((e) => e.type === 'command') };
    const tornIndex = await cluster.put('torn', 'committed without the follower');
    const crash = follower.lastCrash;
    tt.ok(crash !== null && !follower.alive, `${follower.id} crashed after saving, before sending`);
    tt.ok(crash!.ready.messages.some((m) => m.type === 'append-response'), 'its acknowledgement was never sent');
    tt.ok(cluster.leader()!.raft.status().commitIndex >= tornIndex, 'the leader committed the entry with the other follower');

    const { walBefore, walAfter } = crash!;
    const recordStart = walBefore.file === walAfter.file ? walBefore.sizeBytes : segmentHeaderRecordBytes;
    const recordBytes = walAfter.sizeBytes - recordStart;
    tt.ok(recordBytes > 0, `the save appended a ${recordBytes}-byte record to ${walAfter.file}`);
    tt.equal((await newestWalFile(follower.dataDir)).file, walAfter.file, 'it is the newest WAL segment');
    const cut = recordStart + Math.floor(recordBytes / 2);
    await truncate(walAfter.file, cut);

    for (let i = 13; i <= 24; i++) await cluster.put(`k${i}`, i);

    const eventsBefore = follower.storageEvents.length;
    await cluster.start(follower.id, { bootstrap: false });
    const warned = warnings(follower.storageEvents.slice(eventsBefore));
    tt.equal(warned.length, 1, 'storage warned once');
    tt.match(
      warned[0],
      { msg: 'truncated torn tail of the last WAL segment', file: walAfter.file, offset: recordStart, bytesDropped: cut - recordStart },
      'the warning names the segment and drops exactly the torn half record',
    );
    const recovered = follower.recovered!;
    tt.same(recovered.hardState, crash!.durableBefore.hardState, 'the hard state is the one from the last complete save');
    tt.equal(
      lastIndexOf(recovered.entries, recovered.snapshot?.meta.index ?? 0),
      crash!.durableBefore.lastIndex,
      'the log ends where it ended before the torn save',
    );
    tt.ok(lastIndexOf(crash!.ready.entries, 0) > crash!.durableBefore.lastIndex, 'the torn save held entries beyond that');

    await cluster.waitForConvergence('the follower caught up');
    await cluster.put('k25', 25);
    await cluster.waitForConvergence('and follows new commits');
    tt.equal(cluster.committedPuts().get('torn'), 'committed without the follower', 'the torn entry stayed committed');
    checkAgreement(tt, cluster, 'after catching up');
  });

  tt.test('garbage after the last record of a cleanly stopped follower', async (tt) => {
    const cluster = await newCluster(tt, 313);
    await cluster.waitForLeader();
    for (let i = 1; i <= 12; i++) await cluster.put(`k${i}`, i);
    await cluster.waitForConvergence('every node applied k1..k12');
    const follower = followers(cluster)[0]!;
    const durable = follower.durable;
    await cluster.stop(follower.id);

    const { file } = await newestWalFile(follower.dataDir);
    const garbage = new SeededRandom(cluster.seed);
    await appendFile(file, Uint8Array.from({ length: 100 }, () => garbage.nextInt(256)));
    for (let i = 13; i <= 20; i++) await cluster.put(`k${i}`, i);

    const eventsBefore = follower.storageEvents.length;
    await cluster.start(follower.id, { bootstrap: false });
    const warned = warnings(follower.storageEvents.slice(eventsBefore));
    tt.equal(warned.length, 1, 'storage warned once');
    tt.match(warned[0], { msg: 'truncated torn tail of the last WAL segment', file, bytesDropped: 100 }, 'the warning names the segment and drops the 100 garbage bytes');
    tt.same(follower.recovered!.hardState, durable.hardState, 'the hard state is intact');
    tt.equal(
      lastIndexOf(follower.recovered!.entries, follower.recovered!.snapshot?.meta.index ?? 0),
      durable.lastIndex,
      'the log is intact',
    );

    await cluster.waitForConvergence('the follower caught up');
    checkAgreement(tt, cluster, 'after catching up');
  });
});

t.test('4. mid-log corruption is refused; the node is restored from its peers via a snapshot', async (tt) => {
  const cluster = await newCluster(tt, 404);
  const leader = await cluster.waitForLeader();
  for (let i = 1; i <= 20; i++) await cluster.put(`k${i}`, i);
  await cluster.waitForConvergence('every node applied k1..k20');
  const victim = followers(cluster)[0]!;
  const survivors = cluster.nodes.filter((n) => n !== victim);
  const digestBefore = victim.state.digest;
  await cluster.stop(victim.id);

  // Damage the first batch record of the oldest segment, with valid records after it.
  const [firstSegment] = await walSegments(victim.dataDir);
  const bytes = await readFile(firstSegment!);
  const scan = scanSegment(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  tt.equal(scan.end.kind, 'clean', 'the segment was intact');
  tt.ok(scan.records.length >= 3, `the segment holds a header and ${scan.records.length - 1} batch records`);
  const target = scan.records[1]!;
  const payloadOffset = target.payload.byteOffset - bytes.byteOffset;
  await flipByte(firstSegment!, payloadOffset + Math.floor(target.payload.length / 2));
  const damaged = await readFile(firstSegment!);

  const error = await FileStorage.open(victim.dataDir).then(
    async (storage) => {
      await storage.close();
      return null;
    },
    (e: unknown) => e as Error & { code?: string; file?: string; offset?: number },
  );
  tt.ok(error !== null, 'FileStorage.open refused the directory');
  tt.equal(error?.code, 'RAFTVIP_WAL_CORRUPT', 'with code RAFTVIP_WAL_CORRUPT');
  tt.equal(error?.file, firstSegment, 'naming the segment');
  tt.equal(error?.offset, target.offset, 'at the damaged record');
  tt.ok(error?.message.includes(firstSegment!), 'the message names the file');
  await tt.rejects(cluster.start(victim.id, { bootstrap: false }), { code: 'RAFTVIP_WAL_CORRUPT' }, 'the node does not start');
  tt.notOk(victim.alive, 'the node stays down');
  tt.same(await readFile(firstSegment!), damaged, 'the refused files are left untouched for the operator');

  // Two of three are a quorum.
  const indexes: number[] = [];
  for (let i = 21; i <= 32; i++) indexes.push(await cluster.put(`k${i}`, i));
  for (const node of survivors) {
    tt.ok(node.raft.status().commitIndex >= indexes[indexes.length - 1]!, `${node.id} committed k21..k32 without ${victim.id}`);
  }
  tt.ok(leader.alive && survivors.every((n) => n.compactions > 0), 'the survivors compacted their logs');

  // docs/errors.md: remove the node, delete its data directory, add it back.
  const current = cluster.leader()!;
  const without = current.raft.proposeMembership({ voters: survivors.map((n) => n.id) });
  tt.ok(without.ok, `${current.id} proposes removing ${victim.id}`);
  await cluster.runUntil(
    () => without.ok && survivors.every((n) => n.raft.status().commitIndex >= without.index),
    'the removal committed',
  );
  await cluster.wipe(victim.id);
  await cluster.start(victim.id, { bootstrap: false });
  tt.same(victim.recovered, { hardState: { term: 0, votedFor: null, commitIndex: 0 }, snapshot: null, entries: [] }, 'the wiped node starts empty');
  tt.same(victim.raft.currentMembership.voters, [], 'it knows no membership and waits for a leader');
  await cluster.runRounds(30);
  tt.equal(victim.raft.term, 0, 'not being a member, it hears nothing and never campaigns');

  const back = cluster.leader()!.raft.proposeMembership({ voters: [...cluster.voters] });
  tt.ok(back.ok, `the leader proposes adding ${victim.id} back`);
  await cluster.waitForConvergence('the restored node caught up');
  tt.ok(
    cluster.messagesSent.some((m) => m.type === 'snapshot' && m.to === victim.id),
    `the leader sent ${victim.id} a snapshot (its log starts after a compaction)`,
  );
  tt.ok(victim.snapshotsInstalled >= 1, `${victim.id} installed it`);
  tt.ok(victim.raft.snapshotMeta.index > 0, `${victim.id} log starts after snapshot index ${victim.raft.snapshotMeta.index}`);
  tt.not(victim.state.digest, digestBefore, 'it moved past the state it had before the damage');
  await cluster.put('k33', 33);
  await cluster.waitForConvergence('the restored node follows new commits');
  checkAgreement(tt, cluster, 'after the restore');

  // The installed snapshot is durable too.
  const applied = victim.state.appliedIndex;
  const digest = victim.state.digest;
  await cluster.stop(victim.id);
  await cluster.start(victim.id, { bootstrap: false });
  tt.ok(victim.recovered!.snapshot !== null, 'after a restart the node recovers a snapshot from its own disk');
  tt.same({ applied: victim.state.appliedIndex, digest: victim.state.digest }, { applied, digest }, 'and the same state');
});

t.test('5. a crash between ready() and the end of save() loses only unacknowledged writes', async (tt) => {
  tt.test('a follower dies before saving entries it was about to acknowledge', async (tt) => {
    const cluster = await newCluster(tt, 505);
    const leader = await cluster.waitForLeader();
    for (let i = 1; i <= 10; i++) await cluster.put(`k${i}`, i);
    await cluster.waitForConvergence('every node applied k1..k10');
    // The other follower is cut off, so the leader can commit a1 only with this follower's
    // acknowledgement: the one that dies with the unsaved Ready.
    const [follower, other] = followers(cluster) as [DiskNode, DiskNode];
    cluster.isolate(other.id);
    follower.fault = { at: 'before-save', match: (ready) => ready.entries.some((e) => e.type === 'command') };
    const index = await cluster.put('a1', 1);
    const crash = follower.lastCrash!;
    tt.ok(crash !== null && !follower.alive, `${follower.id} died between ready() and the end of save()`);
    tt.same(crash.walAfter, crash.walBefore, 'nothing of that Ready reached its WAL');
    tt.ok(crash.ready.messages.some((m) => m.type === 'append-response' && m.to === leader.id), 'its acknowledgement was dropped');
    tt.ok(leader.raft.status().commitIndex < index, 'so the leader, alone, has not committed a1');

    await cluster.start(follower.id, { bootstrap: false });
    const recovered = follower.recovered!;
    tt.same(recovered.hardState, crash.durableBefore.hardState, 'it recovers the hard state of its last complete save');
    tt.equal(lastIndexOf(recovered.entries, recovered.snapshot?.meta.index ?? 0), crash.durableBefore.lastIndex, 'and the log of it');
    tt.ok(lastIndexOf(crash.ready.entries, 0) > crash.durableBefore.lastIndex, 'the unsaved entries are gone');
    checkCommittedOnMajority(tt, cluster, 'right after the restart');

    // Back up, the follower receives a1 again, saves it and acknowledges it: now it commits.
    await cluster.runUntil(() => cluster.committedPuts().has('a1'), 'a1 committed with the restarted follower');
    checkCommittedOnMajority(tt, cluster, 'with a1 committed');
    for (let i = 2; i <= 6; i++) await cluster.put(`a${i}`, i);
    cluster.heal();
    cluster.lossRate = 0.1;
    await cluster.runRounds(20);
    cluster.heal();
    await cluster.waitForConvergence('the healed cluster converges');
    checkAgreement(tt, cluster, 'after healing');
    tt.equal(cluster.committedPuts().size, 16, 'k1..k10 and a1..a6 are committed');
  });

  tt.test('the leader dies before saving entries it was about to replicate', async (tt) => {
    const cluster = await newCluster(tt, 515);
    const leader = await cluster.waitForLeader();
    const oldTerm = leader.raft.term;
    for (let i = 1; i <= 10; i++) await cluster.put(`k${i}`, i);
    await cluster.waitForConvergence('every node applied k1..k10');
    leader.fault = {
      at: 'before-save',
      match: (ready) => putKeys(ready.entries).some((key) => key.startsWith('lost')),
    };
    for (let i = 1; i <= 3; i++) cluster.propose(`lost${i}`, i);
    await cluster.stabilize();
    const crash = leader.lastCrash!;
    tt.ok(crash !== null && !leader.alive, `${leader.id} died between ready() and the end of save()`);
    tt.same(putKeys(crash.ready.entries), ['lost1', 'lost2', 'lost3'], 'its last Ready held the three proposals');
    tt.ok(crash.ready.messages.some((m) => m.type === 'append'), 'and the appends carrying them, which were dropped');

    const next = await cluster.waitForLeader();
    tt.ok(next !== leader && next.raft.term > oldTerm, `${next.id} leads term ${next.raft.term}`);
    for (let i = 1; i <= 5; i++) await cluster.put(`b${i}`, i);

    await cluster.start(leader.id, { bootstrap: false });
    const recovered = leader.recovered!;
    tt.same(recovered.hardState, crash.durableBefore.hardState, 'the old leader recovers its last complete save');
    tt.equal(lastIndexOf(recovered.entries, recovered.snapshot?.meta.index ?? 0), crash.durableBefore.lastIndex, 'without the lost entries');
    checkCommittedOnMajority(tt, cluster, 'right after the restart');

    await cluster.waitForConvergence('the healed cluster converges');
    checkAgreement(tt, cluster, 'after healing');
    const puts = cluster.committedPuts();
    tt.same([...puts.keys()].filter((k) => k.startsWith('lost')), [], 'the proposals that never reached a disk were never committed');
    tt.equal(puts.size, 15, 'everything else is committed');
  });

  tt.test('a voter dies before saving the vote it was about to grant', async (tt) => {
    const cluster = await newCluster(tt, 525);
    const leader = await cluster.waitForLeader();
    for (let i = 1; i <= 10; i++) await cluster.put(`k${i}`, i);
    await cluster.waitForConvergence('every node applied k1..k10');
    await cluster.stop(leader.id);
    const voters = cluster.alive();
    for (const node of voters) {
      node.fault = { at: 'before-save', match: (ready) => ready.messages.some((m) => m.type === 'vote-response' && !m.reject) };
    }
    await cluster.runUntil(() => voters.some((n) => n.lastCrash !== null), 'a vote');
    const voter = voters.find((n) => n.lastCrash !== null)!;
    for (const node of voters) node.fault = null;
    const crash = voter.lastCrash!;
    const grant = crash.ready.messages.find((m) => m.type === 'vote-response')!;
    tt.equal(crash.ready.hardState?.votedFor, grant.to, `${voter.id}'s lost Ready recorded its vote for ${grant.to}`);
    tt.same(crash.walAfter, crash.walBefore, 'nothing of it reached the disk');

    await cluster.start(voter.id, { bootstrap: false });
    const recovered = voter.recovered!;
    tt.same(recovered.hardState, crash.durableBefore.hardState, 'the voter recovers its last complete save');
    tt.ok(recovered.hardState.term < grant.term, `its term is ${recovered.hardState.term}: the vote of term ${grant.term} never happened`);
    await cluster.start(leader.id, { bootstrap: false });
    checkCommittedOnMajority(tt, cluster, 'after both restarts');

    await cluster.waitForLeader();
    await cluster.put('c1', 1);
    await cluster.waitForConvergence('the cluster elects a leader and converges');
    checkAgreement(tt, cluster, 'after healing');
  });
});
