// Goal: membership changes go through the Raft log between real daemons. A fourth host that is
// in no one's peer file joins with `raftvip run --join` after `raftvip members add n4 --address`
// on the leader (its address is replicated, not edited into the YAML); a follower is removed;
// the leader removes itself and hands over; each change is refused off the leader.

import t from 'tap';
import { runRaftvip } from './support/run-raftvip.js';
import { ProcessCluster, sleep } from './support/process-cluster.js';

const boundMs = 15_000;

const runCli = runRaftvip;

async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs = boundMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

t.test('add a host through the log, remove a follower, remove the leader', async (t) => {
  const cluster = new ProcessCluster({ size: 4, initial: 3 });
  t.teardown(async () => {
    if (!t.passing()) t.comment(cluster.logTail());
    await cluster.destroy();
  });
  cluster.startAll(['n1', 'n2', 'n3']);
  const leader = await cluster.waitForLeader({ timeoutMs: boundMs });
  const follower = ['n1', 'n2', 'n3'].find((id) => id !== leader)!;

  const offLeader = await runCli(['members', 'add', 'n4', '--address', cluster.node('n4').peerAddress, '--config', cluster.node(follower).configFile]);
  t.equal(offLeader.code, 1, 'members add on a follower fails');
  t.match(offLeader.stderr, /RAFTVIP_NOT_LEADER/, 'with RAFTVIP_NOT_LEADER');

  cluster.start('n4', { join: true });
  await waitUntil('n4 to answer on its admin API', async () => (await cluster.status('n4')) !== null);
  const waiting = await cluster.status('n4');
  t.same(waiting?.voters, [], 'a joining host knows no members before it is added');
  t.equal((await cluster.admin('n4', '/readyz')).status, 503, 'and is not ready');

  const added = await runCli(['members', 'add', 'n4', '--address', cluster.node('n4').peerAddress, '--config', cluster.node(leader).configFile]);
  t.equal(added.code, 0, `members add n4 exits 0 (${added.stderr.trim()})`);
  t.match(added.stdout, /voters now: n1, n2, n3, n4/, 'reports the new voters');
  await waitUntil('n4 to catch up and follow', async () => {
    const s = await cluster.status('n4');
    const l = await cluster.status(leader);
    return !!s && !!l && s.leader === leader && s.voters.length === 4 && s.commitIndex === l.commitIndex;
  });
  t.pass('n4 follows the leader with the whole log');
  t.equal((await cluster.admin('n4', '/readyz')).status, 200, 'n4 is ready');

  const removed = await runCli(['members', 'remove', follower, '--config', cluster.node(leader).configFile]);
  t.equal(removed.code, 0, `members remove ${follower} exits 0`);
  await waitUntil('every voter to apply the removal', async () => {
    const all = await cluster.statuses();
    return [leader, 'n4'].every((id) => all.get(id)?.voters.length === 3 && !all.get(id)?.voters.includes(follower));
  });
  t.pass(`${follower} is no longer a voter`);
  t.equal((await cluster.admin(follower, '/readyz')).status, 503, `${follower} reports that it is not a voting member`);
  await cluster.signal(follower, 'SIGTERM');

  const selfRemoved = await runCli(['members', 'remove', leader, '--config', cluster.node(leader).configFile]);
  t.equal(selfRemoved.code, 0, `the leader removes itself (${selfRemoved.stderr.trim()})`);
  const remaining = ['n1', 'n2', 'n3', 'n4'].filter((id) => id !== leader && id !== follower);
  const next = await cluster.waitForLeader({ timeoutMs: boundMs, exclude: [leader, follower] });
  t.ok(remaining.includes(next), `${next} leads after the leader removed itself`);
  const final = await cluster.status(next);
  t.same([...(final?.voters ?? [])].sort(), remaining.sort(), `voters are ${remaining.join(', ')}`);
  const old = await cluster.status(leader);
  t.not(old?.role, 'leader', 'the removed leader stepped down');
});
