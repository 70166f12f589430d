// Goal: show that VIP:6443 really is load-balanced over every ready kube-apiserver, on this
// machine's kernel (nftables; IPVS is proven in the qemu guest, test/guest.test.ts), with real
// raftvip daemons in network namespaces and a kube-apiserver stand-in on every host
// (apiserver-stub.ts: /readyz 503 while starting, 200 when ready, 503 after SIGTERM while it
// still serves, then closed). Judged from the client namespace, by which backend answered each
// new connection (`GET /whoami`) and when, and by `raftvip status --json`:
// - round robin: 300 connections spread over the three backends, each within ±15 % of its share;
// - a backend marked not ready (SIGUSR1) gets no new connection later than fall × interval +
//   200 ms after /readyz began to fail, and comes back when ready again;
// - a backend shut down like kube-apiserver (SIGTERM: /readyz fails, it serves on for the
//   shutdown delay) is drained before it closes: no client connection fails;
// - a killed backend (SIGKILL) gets no new connection later than fall × interval + 200 ms (+ the
//   timeout of the check that was in flight);
// - connections made on the VIP holder itself (a kubelet's) are balanced too;
// - status shows each backend with ready, since, lastError and its weight in the kernel;
// - a daemon stopped with SIGTERM removes its table and nothing else, and programs it again
//   at start;
// - with no backend ready the service stays and refuses at once (TCP reset), status says so;
// - traffic continues across a VIP failover (the leader's daemon killed): the new holder
//   forwards to every ready backend from its first packet.
// Needs root (namespaces); skipped otherwise.

import t from 'tap';
import { Lab } from '../src/lab/lab.js';
import type { LbAttempt } from '../src/lab/lb-client.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync } from 'node:child_process';

/** The health-check defaults (docs/configuration.md): intervalMs 500, fall 2. */
const intervalMs = 500;
const fall = 2;
const drainBoundMs = fall * intervalMs + 200;
/** A killed backend: the check in flight may need its whole timeout (1000 ms) to fail... but a
 * closed port refuses at once, so the same bound holds; slack for a loaded 2-core VM. */
const killBoundMs = drainBoundMs;
const readyTimeoutMs = 15_000;

interface LbStatus {
  enabled: boolean;
  dataPlane: string;
  backendsReady: number;
  noReadyBackend: boolean;
  backends: { address: string; ready: boolean; since: string; lastError: string | null; kernelWeight: number | null; weight: number }[];
}

if (process.getuid?.() !== 0) {
  t.skip('lab load-balancer tests need root to create network namespaces (CI runs as root)', () => {});
} else {
  const lab = await Lab.start({ hosts: 3, apiservers: { startDelayMs: 300, shutdownDelayMs: 2000 } });
  t.teardown(() => lab.stop());
  const byHost = (attempts: readonly LbAttempt[]) => {
    const counts: Record<string, number> = {};
    for (const attempt of attempts) if (attempt.backend !== null) counts[attempt.backend] = (counts[attempt.backend] ?? 0) + 1;
    return counts;
  };
  const lbStatus = async (host: string): Promise<LbStatus> => (await lab.cluster.status(host as never)).loadBalancer as unknown as LbStatus;
  const waitForReady = (count: number): Promise<void> => lab.waitForBackendsReady(count, readyTimeoutMs);
  const steady = await lab.waitForSteady();
  t.comment(`leader ${steady.leader}`);

  t.test('every host programs the service; all three backends become ready', async (t) => {
    await waitForReady(3);
    for (const host of lab.hosts) {
      const status = await lbStatus(host);
      t.equal(status.dataPlane, 'nftables', `${host}: this kernel has no IPVS, auto picks nftables`);
      t.same(status.backends.map((b) => [b.ready, b.kernelWeight, b.lastError]), [[true, 1, null], [true, 1, null], [true, 1, null]], `${host}: ready, weight 1 in the kernel`);
    }
    const text = await lab.cluster.raftvip(steady.leader, ['status']);
    t.match(text.stdout, /^lb\s+10\.213\.0\.100:6443 nftables rr, 3 of 3 backends ready$/m, 'raftvip status shows the service');
    t.match(text.stdout, /^10\.213\.0\.12:6443\s+yes\s/m, 'and each backend');
  });

  t.test("connections made on the VIP holder itself (a kubelet's) are balanced too", async (t) => {
    // The stand-ins listen on their host's own address, not on the VIP: without the DNAT for
    // locally made connections, the holder's connection to its own VIP:6443 would be refused.
    const attempts = await lab.runLbClient({ from: steady.leader, count: 30, intervalMs: 0 });
    t.equal(attempts.filter((attempt) => attempt.error !== null).length, 0, 'none failed');
    t.same(byHost(attempts), { h1: 10, h2: 10, h3: 10 }, 'round robin over all three');
  });

  t.test('round robin: 300 new connections within ±15 % of a fair share each', async (t) => {
    const attempts = await lab.runLbClient({ count: 300, intervalMs: 0 });
    const failed = attempts.filter((attempt) => attempt.error !== null);
    t.equal(failed.length, 0, `no failed connection (${JSON.stringify(failed.slice(0, 3))})`);
    const counts = byHost(attempts);
    t.same(Object.keys(counts).sort(), ['h1', 'h2', 'h3'], `every backend answered: ${JSON.stringify(counts)}`);
    for (const [host, count] of Object.entries(counts)) t.ok(count >= 85 && count <= 115, `${host}: ${count} of 300 (fair share 100)`);
  });

  t.test(`a backend marked not ready gets no new connection ${drainBoundMs} ms after /readyz fails; it returns when ready`, async (t) => {
    const run = lab.runLbClient({ durationMs: 3500, intervalMs: 5 });
    await sleep(500);
    const sinceMs = monotonicNowMs();
    t.ok(lab.cluster.signalApiserver('h2', 'SIGUSR1'), 'signalled');
    const notReady = await lab.cluster.waitForApiserverEvent('h2', 'not-ready', { sinceMs, timeoutMs: 2000 });
    const attempts = await run;
    const lastToH2 = attempts.filter((a) => a.backend === 'h2').at(-1);
    t.ok(lastToH2 !== undefined, 'h2 answered before it turned not ready');
    const lagMs = (lastToH2?.startMs ?? 0) - notReady.atMs;
    t.ok(lagMs <= drainBoundMs, `last new connection to h2 began ${lagMs.toFixed(0)} ms after /readyz failed (bound ${drainBoundMs} ms)`);
    t.equal(attempts.filter((a) => a.error !== null).length, 0, 'no connection failed: drained while it still served');
    const after = attempts.filter((a) => a.startMs > notReady.atMs + drainBoundMs);
    t.same(Object.keys(byHost(after)).sort(), ['h1', 'h3'], 'afterwards only h1 and h3 answer');
    const status = await lbStatus(steady.leader);
    const h2 = status.backends.find((b) => b.address === lab.network.hostAddress('h2'));
    t.match(h2, { ready: false, kernelWeight: 0, lastError: /503/ }, 'status: h2 not ready, drained, with the reason');

    t.ok(lab.cluster.signalApiserver('h2', 'SIGUSR1'), 'h2 ready again');
    await waitForReady(3);
    const back = await lab.runLbClient({ count: 30, intervalMs: 0 });
    t.equal(byHost(back).h2, 10, 'h2 takes its share again');
  });

  t.test('a backend shut down like kube-apiserver (SIGTERM) is drained before it closes: no failed connection', async (t) => {
    const run = lab.runLbClient({ durationMs: 3500, intervalMs: 5 });
    await sleep(300);
    const sinceMs = monotonicNowMs();
    t.ok(lab.cluster.signalApiserver('h3', 'SIGTERM'), 'signalled');
    const terminating = await lab.cluster.waitForApiserverEvent('h3', 'terminating', { sinceMs, timeoutMs: 2000 });
    const closed = await lab.cluster.waitForApiserverEvent('h3', 'closed', { sinceMs, timeoutMs: 5000 });
    const attempts = await run;
    const failed = attempts.filter((a) => a.error !== null);
    t.equal(failed.length, 0, `no failed connection (${JSON.stringify(failed.slice(0, 3))})`);
    const lastToH3 = attempts.filter((a) => a.backend === 'h3').at(-1);
    t.ok((lastToH3?.startMs ?? 0) < closed.atMs, 'the last connection to h3 came before it closed');
    t.comment(`h3 drained ${((lastToH3?.startMs ?? 0) - terminating.atMs).toFixed(0)} ms after SIGTERM, closed ${(closed.atMs - terminating.atMs).toFixed(0)} ms after`);
    await lab.cluster.startApiserver('h3');
    await waitForReady(3);
  });

  t.test(`a killed backend gets no new connection ${killBoundMs} ms after it died`, async (t) => {
    const run = lab.runLbClient({ durationMs: 3000, intervalMs: 5, timeoutMs: 500 });
    await sleep(300);
    const killedAt = monotonicNowMs();
    t.ok(lab.cluster.signalApiserver('h1', 'SIGKILL'), 'killed');
    const attempts = await run;
    const failed = attempts.filter((a) => a.error !== null && a.startMs >= killedAt);
    const lastFailure = failed.at(-1);
    t.ok(failed.length > 0, `connections routed to the dead backend failed (${failed.length}) until it was drained`);
    const lagMs = (lastFailure?.startMs ?? killedAt) - killedAt;
    t.ok(lagMs <= killBoundMs, `last failed connection began ${lagMs.toFixed(0)} ms after the kill (bound ${killBoundMs} ms)`);
    t.same(Object.keys(byHost(attempts.filter((a) => a.startMs > killedAt + killBoundMs))).sort(), ['h2', 'h3']);
    await lab.cluster.startApiserver('h1');
    await waitForReady(3);
  });

  t.test('with no ready backend the service stays, refuses at once, and status says so', async (t) => {
    for (const host of lab.hosts) t.ok(lab.cluster.signalApiserver(host, 'SIGUSR1'), `${host} marked not ready`);
    await waitForReady(0);
    const status = await lbStatus(steady.leader);
    t.equal(status.noReadyBackend, true);
    t.ok(status.backends.every((b) => b.kernelWeight === 0 && !b.ready));
    const attempts = await lab.runLbClient({ count: 5, intervalMs: 0, timeoutMs: 1000 });
    t.same(attempts.map((a) => a.error), Array(5).fill('ECONNREFUSED'), 'refused, not left to time out');
    t.ok(attempts.every((a) => a.startMs > 0), 'attempts ran');
    for (const host of lab.hosts) lab.cluster.signalApiserver(host, 'SIGUSR1');
    await waitForReady(3);
  });

  t.test('a daemon stopped with SIGTERM removes its table, and only it; it comes back on start', async (t) => {
    const follower = lab.hosts.find((host) => host !== steady.leader) ?? 'h2';
    const namespace = lab.network.hostNamespace(follower);
    const tables = () => execFileSync('ip', ['netns', 'exec', namespace, 'nft', 'list', 'tables'], { encoding: 'utf8' });
    execFileSync('ip', ['netns', 'exec', namespace, 'nft', 'add table ip foreign']);
    t.match(tables(), /table ip raftvip_lb/, 'programmed while running');
    await lab.terminate(follower);
    t.notMatch(tables(), /raftvip_lb/, 'removed on stop');
    t.match(tables(), /table ip foreign/, 'a foreign table stays');
    await lab.cluster.start(follower);
    await waitForReady(3);
    t.match(tables(), /table ip raftvip_lb/, 'programmed again at start');
  });

  t.test('traffic continues across a VIP failover: the new holder forwards to every ready backend', async (t) => {
    const run = lab.runLbClient({ durationMs: 4000, intervalMs: 5, timeoutMs: 300 });
    await sleep(300);
    const crashedAt = await lab.crash(steady.leader);
    const next = await lab.waitForSteady({ sinceMs: crashedAt, exclude: [steady.leader] });
    const attempts = await run;
    const after = attempts.filter((a) => a.startMs > next.at);
    t.ok(after.length > 50, `${after.length} connections after the failover`);
    t.equal(after.filter((a) => a.error !== null).length, 0, 'none of them failed');
    t.same(Object.keys(byHost(after)).sort(), ['h1', 'h2', 'h3'], `the new holder ${next.leader} spreads over all three backends (the old leader's apiserver still serves)`);
    const failedDuring = attempts.filter((a) => a.error !== null);
    t.comment(`failover: ${failedDuring.length} failed connects while the VIP moved from ${steady.leader} to ${next.leader}`);
    await lab.cluster.start(steady.leader);
  });
}
