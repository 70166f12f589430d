// Goal: real `raftvip run` processes form a cluster over loopback TCP with TLS-PSK, as hosts
// would: 3 and 5 nodes elect one leader that holds the lease; SIGKILL of the leader yields a new
// leader; a restarted node keeps its term and vote; SIGTERM of the leader hands leadership over
// and exits 0; all nodes killed and restarted come back as the same cluster with nothing
// committed lost. Bounds are generous (these are behaviour checks; `npm run bench:election`
// reports the timings).

import t from 'tap';
import { runRaftvip } from './support/run-raftvip.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProcessCluster, sleep, type NodeStatus } from './support/process-cluster.js';

const runCli = runRaftvip;

const electionBoundMs = 15_000;

async function settledStatuses(cluster: ProcessCluster, leader: string): Promise<Map<string, NodeStatus>> {
  // Wait until every running node has applied what the leader committed.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const all = await cluster.statuses();
    const lead = all.get(leader);
    if (lead && [...all.values()].every((s) => s.appliedIndex === lead.commitIndex && s.commitIndex === lead.commitIndex)) return all;
    if (Date.now() > deadline) return all;
    await sleep(50);
  }
}

t.test('a 3-node cluster: election, crash failover, restart, planned handover, full restart', async (t) => {
  const cluster = new ProcessCluster({ size: 3 });
  t.teardown(async () => {
    if (!t.passing()) t.comment(cluster.logTail());
    await cluster.destroy();
  });
  cluster.startAll();

  const first = await cluster.waitForLeader({ timeoutMs: electionBoundMs });
  t.ok(first, `elected ${first}`);
  const statuses = await cluster.statuses();
  t.equal(statuses.size, 3, 'all three answer on the admin API');
  const leaderStatus = statuses.get(first)!;
  t.equal(leaderStatus.lease.held, true, 'the leader holds the lease');
  t.equal([...statuses.values()].filter((s) => s.lease.held).length, 1, 'exactly one node holds the lease');
  t.same(leaderStatus.voters, ['n1', 'n2', 'n3'], 'bootstrap membership');
  t.ok(leaderStatus.peers.every((p) => p.connected), 'the leader is connected to both peers');
  for (const node of cluster.nodes) {
    const ready = await cluster.admin(node.id, '/readyz');
    t.equal(ready.status, 200, `${node.id} /readyz is 200 (${ready.text.trim()})`);
    const health = await cluster.admin(node.id, '/healthz');
    t.equal(health.status, 200, `${node.id} /healthz is 200`);
  }
  const metrics = await cluster.admin(first, '/metrics');
  t.match(metrics.text, /raftvip_raft_term \d+/, '/metrics has the term');
  t.match(metrics.text, /raftvip_raft_lease_held 1/, '/metrics shows the lease held on the leader');
  t.match(metrics.text, /raftvip_storage_fsync_duration_seconds_bucket/, '/metrics has the fsync histogram');

  // The CLI reads the admin address from the same config file.
  const table = await runCli(['status', '--config', cluster.node(first).configFile]);
  t.equal(table.code, 0, 'raftvip status exits 0');
  t.match(table.stdout, new RegExp(`role\\s+leader, term ${leaderStatus.term}`), 'status shows the role and term');
  t.match(table.stdout, /lease\s+held/, 'status shows the lease');
  // status never opens the secret: a copy of the file naming a missing PSK still works (as a
  // user without read access to the 0600 key would see it).
  const copy = join(cluster.dir, 'status-only.yaml');
  writeFileSync(copy, readFileSync(cluster.node(first).configFile, 'utf8').replace(/pskFile: .*/, 'pskFile: /nonexistent/psk'));
  const unprivileged = await runCli(['status', '--config', copy]);
  t.equal(unprivileged.code, 0, `status works without reading the secret (${unprivileged.stderr.trim()})`);
  const check = await runCli(['config', 'check', copy]);
  t.equal(check.code, 1, 'while config check still insists on it');
  const json = await runCli(['status', '--json', '--config', cluster.node(first).configFile]);
  const parsed = JSON.parse(json.stdout) as NodeStatus;
  for (const key of ['id', 'role', 'term', 'leader', 'commitIndex', 'vip', 'peers', 'loadBalancer']) t.ok(key in parsed, `status --json has ${key}`);
  const followerId = cluster.nodes.map((n) => n.id).find((id) => id !== first)!;
  const refused = await runCli(['transfer-leadership', '--config', cluster.node(followerId).configFile]);
  t.equal(refused.code, 1, 'transfer-leadership on a follower fails');
  t.match(refused.stderr, /is not the leader/, 'and says why');
  const moved = await runCli(['transfer-leadership', '--to', followerId, '--config', cluster.node(first).configFile]);
  t.equal(moved.code, 0, `transfer-leadership --to ${followerId} exits 0`);
  const afterTransfer = await cluster.waitForLeader({ timeoutMs: electionBoundMs, minTerm: leaderStatus.term + 1 });
  t.equal(afterTransfer, followerId, `${followerId} leads after the transfer`);
  const moveBack = await runCli(['transfer-leadership', '--to', first, '--config', cluster.node(followerId).configFile]);
  t.equal(moveBack.code, 0, 'and hands it back');
  await cluster.waitForLeader({ timeoutMs: electionBoundMs, minTerm: leaderStatus.term + 2 });
  const leaderAgain = (await cluster.statuses()).get(first)!;
  t.equal(leaderAgain.role, 'leader', `${first} leads again`);

  // SIGKILL the leader: the two others elect a new one in a higher term.
  const killedTerm = leaderAgain.term;
  await cluster.signal(first, 'SIGKILL');
  const second = await cluster.waitForLeader({ timeoutMs: electionBoundMs, exclude: [first], minTerm: killedTerm + 1 });
  t.not(second, first, `${second} took over after ${first} was killed`);

  // Restart the killed node: it keeps its persisted term and vote, and rejoins as a follower.
  cluster.start(first);
  const third = await cluster.waitForLeader({ timeoutMs: electionBoundMs });
  t.equal(third, second, 'the restarted node did not disrupt the leader (pre-vote, fence)');
  const rejoined = (await cluster.statuses()).get(first)!;
  t.ok(rejoined.term >= killedTerm, `term did not go backwards (${rejoined.term} >= ${killedTerm})`);
  t.equal(rejoined.role, 'follower', 'it follows');

  // Kill a follower and restart it at once: its vote of this term survives.
  const follower = cluster.nodes.map((n) => n.id).find((id) => id !== second)!;
  const before = (await cluster.statuses()).get(follower)!;
  await cluster.signal(follower, 'SIGKILL');
  cluster.start(follower);
  await cluster.waitForLeader({ timeoutMs: electionBoundMs });
  const after = (await cluster.statuses()).get(follower)!;
  if (after.term === before.term) t.equal(after.votedFor, before.votedFor, `vote in term ${before.term} kept (${before.votedFor})`);
  else t.ok(after.term > before.term, 'or the term moved on');

  // SIGTERM the leader: it hands over and exits 0.
  const termBefore = (await cluster.statuses()).get(second)!.term;
  const exitCode = await cluster.signal(second, 'SIGTERM', { waitMs: 10_000 });
  t.equal(exitCode, 0, 'SIGTERM exits 0');
  const fourth = await cluster.waitForLeader({ timeoutMs: electionBoundMs, exclude: [second], minTerm: termBefore + 1 });
  t.not(fourth, second, `leadership went to ${fourth}`);
  t.match(cluster.node(second).output, /handing leadership over/, 'the log says it handed over');
  cluster.start(second);
  const leaderNow = await cluster.waitForLeader({ timeoutMs: electionBoundMs });

  // All nodes killed and restarted: same cluster, nothing committed lost.
  const beforeRestart = await settledStatuses(cluster, leaderNow);
  const committed = Math.max(...[...beforeRestart.values()].map((s) => s.commitIndex));
  await cluster.stopAll();
  cluster.startAll();
  const leaderAfter = await cluster.waitForLeader({ timeoutMs: electionBoundMs });
  const afterRestart = await settledStatuses(cluster, leaderAfter);
  for (const [id, status] of afterRestart) {
    t.ok(status.commitIndex >= committed, `${id} commit ${status.commitIndex} >= ${committed} before the restart`);
    t.same(status.voters, ['n1', 'n2', 'n3'], `${id} kept the membership`);
  }
});

t.test('a 5-node cluster keeps a leader with two nodes down and loses it with three', async (t) => {
  const cluster = new ProcessCluster({ size: 5 });
  t.teardown(async () => {
    if (!t.passing()) t.comment(cluster.logTail());
    await cluster.destroy();
  });
  cluster.startAll();
  const leader = await cluster.waitForLeader({ timeoutMs: electionBoundMs });
  t.ok(leader, `elected ${leader}`);
  const others = cluster.nodes.map((n) => n.id).filter((id) => id !== leader);
  await cluster.signal(others[0]!, 'SIGKILL');
  await cluster.signal(others[1]!, 'SIGKILL');
  await sleep(1000);
  const still = await cluster.waitForLeader({ timeoutMs: electionBoundMs, exclude: [others[0]!, others[1]!] });
  t.equal(still, leader, 'three of five keep the same leader');
  await cluster.signal(others[2]!, 'SIGKILL');
  // Two of five: no quorum. Within a few election timeouts nobody holds a lease.
  await sleep(1500);
  const left = await cluster.statuses();
  t.equal([...left.values()].filter((s) => s.lease.held).length, 0, 'no node holds the lease without a quorum');
  const ready = await cluster.admin(leader, '/readyz');
  t.equal(ready.status, 503, `/readyz says so: ${ready.text.trim()}`);
});
