// Goal: prove, on real hosts, that the VIP is on the leader and moves when it must — the product's
// main job. Three real raftvip daemons run in network namespaces on one bridge (src/lab); the
// oracles are the client's (its TCP connects to VIP:80, answered by each host's name server, and
// its neighbour entry for the VIP) and the hosts' own address tables, watched through netlink
// events on every host. Faults: SIGKILL followed by `raftvip vip release` (systemd's
// ExecStopPost), SIGSTOP for 3 s, a cut link (partition), SIGTERM (planned handover), the VIP
// deleted by hand, every host restarted, a power-off (link and daemon gone at once), and a
// follower started with a stale VIP on its interface. Across the whole run, at every instant at
// most one host has the VIP on its interface, except while a paused or powered-off holder
// cannot act. Root only (CI runs as root); other users get a skip that says why.

import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { Lab, sleep } from '../src/lab/lab.js';
import { labVip, labVip6, labInterface } from '../src/lab/lab-network.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';

const isRoot = process.getuid?.() === 0;
/** Generous bounds: behaviour, not speed (npm run bench:failover measures the speed). */
const failoverMsMax = 5_000;
const resumeReleaseMsMax = 100;

if (!isRoot) {
  t.skip('lab VIP tests need root to create network namespaces (CI runs them as root)', () => {});
} else {
  t.test('the VIP follows the leader through every fault, one holder at a time', async (t) => {
    const lab = await Lab.start({ hosts: 3, probeIntervalMs: 5, probeTimeoutMs: 500 });
    t.teardown(() => lab.stop());
    /** Spans when a holder may linger because it cannot act: [from, to) per host. */
    const excused: { host: string; from: number; to: number }[] = [];
    const dumpOnFailure = (): void => {
      if (t.passing()) return;
      for (const host of lab.hosts) t.comment(`--- ${host} log tail ---\n${lab.cluster.logTail(host, 30)}`);
      t.comment(`VIP timeline: ${JSON.stringify(lab.watch.timeline())}`);
    };
    t.teardown(dumpOnFailure);
    const phases: { name: string; from: number; to: number }[] = [];
    const phase = async (name: string, body: (t: Test) => Promise<void>): Promise<void> => {
      const from = monotonicNowMs();
      await t.test(name, body);
      phases.push({ name, from, to: monotonicNowMs() });
    };

    let steady = await lab.waitForSteady();
    t.pass(`steady: ${steady.leader} leads and holds the VIP, the client reaches it`);
    const neighbour = await lab.network.clientNeighbour(labVip);
    t.equal(neighbour?.mac, lab.network.hostMac(steady.leader), "the client's neighbour entry is the leader's MAC");
    const status = await lab.cluster.status(steady.leader);
    t.equal(status.vip.held, true, 'raftvip status says held');
    t.equal(status.vip.interface, labInterface, 'on the auto-detected interface');
    t.ok(status.vip.claims >= 1 && status.vip.announcements >= 1, 'claims and announcements counted');

    await phase('leader SIGKILL, then vip release: another host holds the VIP and answers', async (t) => {
      const old = steady.leader;
      const at = await lab.crash(old);
      // A killed daemon cannot remove its VIP: the kernel keeps it until ExecStopPost has run
      // (lab.crash returns after that), and the new leader may claim before. Like a pause.
      excused.push({ host: old, from: at, to: monotonicNowMs() });
      const next = await lab.waitForSteady({ sinceMs: at, exclude: [old], timeoutMs: failoverMsMax });
      t.not(next.leader, old, `${next.leader} took over`);
      const outage = lab.probe!.outageAround(at);
      t.ok(outage.outageMs !== null && outage.outageMs < failoverMsMax, `client outage ${outage.outageMs?.toFixed(0)} ms`);
      t.equal((await lab.network.clientNeighbour(labVip))?.mac, lab.network.hostMac(next.leader), 'the client switched MAC');
      await lab.cluster.start(old);
      steady = next;
    });

    await phase('leader SIGSTOP 3 s: the resumed host drops the VIP at once and never announces it again', async (t) => {
      const old = steady.leader;
      const pausedAt = monotonicNowMs();
      lab.cluster.kill(old, 'SIGSTOP');
      const next = await lab.waitForSteady({ sinceMs: pausedAt, exclude: [old], ignoreHolders: [old], timeoutMs: failoverMsMax });
      t.not(next.leader, old, `${next.leader} took over during the pause`);
      const resumeAfterMs = 3000 - (monotonicNowMs() - pausedAt);
      if (resumeAfterMs > 0) await sleep(resumeAfterMs);
      const resumedAt = monotonicNowMs();
      lab.cluster.kill(old, 'SIGCONT');
      excused.push({ host: old, from: pausedAt, to: resumedAt + resumeReleaseMsMax });
      const gone = await lab.watch.waitForHolder(next.leader, 2000);
      t.ok(gone - resumedAt <= resumeReleaseMsMax, `the resumed host removed the VIP ${(gone - resumedAt).toFixed(1)} ms after SIGCONT (≤ ${resumeReleaseMsMax})`);
      // Had it announced again, the client's entry would flip back to its MAC.
      for (let i = 0; i < 10; i++) {
        await sleep(100);
        const entry = await lab.network.clientNeighbour(labVip);
        if (entry?.mac !== lab.network.hostMac(next.leader)) {
          t.fail(`the client's entry moved to ${entry?.mac} after the resume`);
          break;
        }
      }
      t.same(lab.watch.holders(), [next.leader], 'a single holder afterwards');
      steady = await lab.waitForSteady({ sinceMs: resumedAt });
    });

    await phase("leader's link cut: it drops the VIP when its lease lapses, the majority claims; healed: one holder", async (t) => {
      const old = steady.leader;
      const cutAt = monotonicNowMs();
      lab.network.cutLink(old);
      const dropped = await lab.watch.waitForHolders([], failoverMsMax).catch(() => null);
      const next = await lab.waitForSteady({ sinceMs: cutAt, exclude: [old], timeoutMs: failoverMsMax });
      t.not(next.leader, old, `${next.leader} leads the majority side`);
      const isolatedRelease = lab.watch.events().find((e) => e.host === old && e.kind === 'deleted' && e.at >= cutAt);
      t.ok(isolatedRelease, 'the isolated host removed the VIP on its own');
      if (isolatedRelease) t.ok(isolatedRelease.at - cutAt < 1000, `${(isolatedRelease.at - cutAt).toFixed(0)} ms after the cut (lease 140 ms)`);
      t.ok(dropped !== null, 'there was an instant with no holder between the two (never two at once)');
      lab.network.restoreLink(old);
      await sleep(1000);
      t.same(lab.watch.holders(), [next.leader], 'healed: exactly one holder');
      steady = await lab.waitForSteady({ sinceMs: monotonicNowMs() });
    });

    await phase('leader SIGTERM: planned handover', async (t) => {
      const old = steady.leader;
      const at = await lab.terminate(old);
      const next = await lab.waitForSteady({ sinceMs: at, exclude: [old], timeoutMs: failoverMsMax });
      const outage = lab.probe!.outageAround(at);
      t.ok(outage.outageMs !== null && outage.outageMs < failoverMsMax, `handover outage ${outage.outageMs?.toFixed(1)} ms, ${outage.failedAttempts} failed connects`);
      t.not(next.leader, old);
      await lab.cluster.start(old);
      steady = next;
    });

    await phase('the VIP deleted by hand on the leader is restored and announced', async (t) => {
      const leader = steady.leader;
      const at = monotonicNowMs();
      execFileSync('ip', ['-n', lab.network.hostNamespace(leader), 'addr', 'del', `${labVip}/32`, 'dev', labInterface]);
      await lab.watch.waitForHolder(null, 1000);
      const back = await lab.watch.waitForHolder(leader, 3000);
      t.ok(back - at < 3000, `restored after ${(back - at).toFixed(0)} ms (reconcileIntervalMs 1000)`);
      steady = await lab.waitForSteady({ sinceMs: back });
      t.equal(steady.leader, leader, 'by the same leader, and the client reaches it');
    });

    await phase('every host restarted: the VIP comes back', async (t) => {
      const at = monotonicNowMs();
      for (const host of lab.hosts) lab.cluster.kill(host, 'SIGTERM');
      for (const host of lab.hosts) await lab.cluster.waitForExit(host, 10_000);
      t.same(lab.watch.holders(), [], 'no holder while every daemon is down');
      await lab.cluster.start();
      steady = await lab.waitForSteady({ sinceMs: at });
      t.pass(`${steady.leader} holds the VIP again`);
    });

    await phase('a follower started with a stale VIP on its interface removes it', async (t) => {
      const follower = lab.hosts.find((h) => h !== steady.leader)!;
      lab.cluster.kill(follower, 'SIGTERM');
      await lab.cluster.waitForExit(follower, 10_000);
      const staleAt = monotonicNowMs();
      execFileSync('ip', ['-n', lab.network.hostNamespace(follower), 'addr', 'add', `${labVip}/32`, 'dev', labInterface]);
      await lab.cluster.start(follower);
      const single = await lab.watch.waitForHolder(steady.leader, 5000);
      excused.push({ host: follower, from: staleAt, to: single + 1 });
      t.pass(`removed ${(single - staleAt).toFixed(0)} ms after it was planted (daemon start included)`);
    });

    await phase('power-off (link and daemon gone at once): failover; power-on removes the dead copy', async (t) => {
      const old = steady.leader;
      const at = await lab.powerOff(old);
      const next = await lab.waitForSteady({ sinceMs: at, exclude: [old], ignoreHolders: [old], timeoutMs: failoverMsMax });
      t.not(next.leader, old, `${next.leader} took over`);
      const outage = lab.probe!.outageAround(at);
      t.ok(outage.outageMs !== null && outage.outageMs < failoverMsMax, `client outage ${outage.outageMs?.toFixed(0)} ms`);
      t.ok(lab.watch.holders().includes(old), 'the dead host still has its copy (nothing ran there)');
      await lab.powerOn(old);
      const single = await lab.watch.waitForHolder(next.leader, 5000);
      excused.push({ host: old, from: at, to: single + 1 });
      t.pass('after power-on only the leader holds it');
      steady = next;
    });

    const phaseAt = (time: number): string => phases.find((p) => time >= p.from && time < p.to)?.name ?? 'between phases';
    const overall = lab.watch.maxSimultaneousHolders({
      from: lab.watch.startedAt,
      to: monotonicNowMs(),
      exclude: (host, at) => excused.some((e) => e.host === host && at >= e.from && at < e.to),
    });
    t.equal(overall.max, 1, `at most one holder at every instant (overlaps: ${JSON.stringify(overall.overlaps.map((o) => ({ ...o, phase: phaseAt(o.from) })))})`);
    t.same(lab.watch.health().failures, [], 'the address monitors stayed up');
  });

  t.test('IPv6: the leader holds the VIP as a /128, announces it with an unsolicited NA, and it moves on SIGKILL', async (t) => {
    const lab = await Lab.start({ hosts: 3, vipAddress: labVip6, probeIntervalMs: 5, probeTimeoutMs: 500 });
    t.teardown(() => lab.stop());
    const steady = await lab.waitForSteady();
    t.equal((await lab.network.clientNeighbour(labVip6))?.mac, lab.network.hostMac(steady.leader), "the client's IPv6 neighbour entry is the leader's MAC");
    const at = await lab.crash(steady.leader);
    const next = await lab.waitForSteady({ sinceMs: at, exclude: [steady.leader], timeoutMs: failoverMsMax });
    t.not(next.leader, steady.leader, `${next.leader} took over`);
    t.equal((await lab.network.clientNeighbour(labVip6))?.mac, lab.network.hostMac(next.leader), 'the NA switched the client to the new MAC');
    const overall = lab.watch.maxSimultaneousHolders({
      from: lab.watch.startedAt,
      to: monotonicNowMs(),
      exclude: (host, time) => host === steady.leader && time >= at,
    });
    t.equal(overall.max, 1, 'one holder at a time');
  });
}
