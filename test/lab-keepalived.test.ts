// Goal: show that the lab's keepalived (src/lab/lab-keepalived.ts), the peer bench:compare
// measures raftvip against, really holds the VIP on the lab's hosts, and that the lab's
// partition (LabNetwork.isolate) is the split-brain probe it claims to be: with VRRPv3 at 100 ms,
// one host takes the VIP; a SIGKILL of the holder's keepalived leaves its copy in place while a
// backup claims it too (keepalived has no ExecStopPost); isolating the holder from the other
// hosts, with the client still reaching both sides, makes a second host claim it (two holders:
// the VRRP split brain raftvip's lease prevents, test/lab-vip.test.ts) and healing ends it; a
// SIGTERM hands the VIP over. Judged by `ip monitor` on every host (VipWatch). Needs root.

import t from 'tap';
import { Lab } from '../src/lab/lab.js';
import { LabKeepalived } from '../src/lab/lab-keepalived.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { setTimeout as sleep } from 'node:timers/promises';

const waitMs = 10_000;

if (process.getuid?.() !== 0) {
  t.skip('lab keepalived tests need root to create network namespaces (CI runs as root)', () => {});
} else {
  const lab = await Lab.start({ hosts: 3, daemons: false, probe: false });
  const keepalived = new LabKeepalived({ network: lab.network, settings: { name: 'fast', vrrpVersion: 3, advertIntervalMs: 100 } });
  t.teardown(async () => {
    await keepalived.stop();
    await lab.stop();
  });
  const oneHolder = async (): Promise<string> => {
    const deadline = monotonicNowMs() + waitMs;
    while (lab.watch.holders().length !== 1) {
      if (monotonicNowMs() > deadline) throw new Error(`holders: ${lab.watch.holders().join(', ') || 'none'}`);
      await sleep(10);
    }
    return lab.watch.holders()[0]!;
  };

  await keepalived.start();
  const first = await oneHolder();
  t.ok(lab.hosts.includes(first), `${first} holds the VIP`);
  t.equal(keepalived.pids(first).length, 2, 'keepalived runs a parent and a VRRP child');

  t.test("a SIGKILL'd keepalived leaves its VIP beside the new master's", async (t) => {
    await keepalived.crash(first);
    const both = await lab.watch.waitForHolders([first, lab.hosts.find((host) => host !== first)!], waitMs).catch(() => null);
    const holders = lab.watch.holders();
    t.equal(holders.length, 2, `two hosts hold it: ${holders.join(', ')} (${both === null ? 'not the expected pair' : 'as expected'})`);
    t.ok(holders.includes(first), 'the dead host still has it');
    keepalived.removeVip(first);
    await keepalived.start(first);
    t.equal((await oneHolder()) !== first, true, 'after the restart one host holds it, not the restarted one');
  });

  t.test('isolated from its peers, the holder keeps the VIP and another host claims it too; healing ends it', async (t) => {
    const holder = await oneHolder();
    lab.network.isolate(holder);
    const deadline = monotonicNowMs() + waitMs;
    while (lab.watch.holders().length < 2 && monotonicNowMs() < deadline) await sleep(10);
    t.equal(lab.watch.holders().length, 2, `split brain: ${lab.watch.holders().join(' + ')}`);
    lab.network.heal(holder);
    await oneHolder();
    t.equal(lab.watch.holders().length, 1, 'one holder again after healing');
  });

  t.test('SIGTERM hands the VIP over', async (t) => {
    const holder = await oneHolder();
    await keepalived.terminate(holder);
    const next = await oneHolder();
    t.not(next, holder, `${holder} → ${next}`);
  });
}
