// Goal: show that VipController reconciles the VIP at the right instants, with a fake executor
// (records each reconcile and the lease answer it saw) and a controllable lease on real timers:
// start() releases a leftover copy before anything else; a lease that is not renewed takes the
// VIP down at its expiry (not at the next periodic reconcile); fence() makes the driver's send
// wait for the release when the lease is gone, costs nothing otherwise, and notices a regained
// lease; announcements and periodic reconciles are timed; failures are retried quickly and shown
// in status; stop() releases.

import t from 'tap';
import { VipController, vipRetryIntervalMs, type VipControllerExecutor } from '../src/daemon/vip-controller.js';
import type { VipCounters, VipReconcileResult } from '../src/vip/vip-executor.js';

class FakeExecutor implements VipControllerExecutor {
  held = false;
  present = false;
  calls: { atMs: number; lease: boolean }[] = [];
  failNext = 0;
  delayMs = 0;
  nextAnnounceAtMs: number | null = null;
  counters: VipCounters = { claims: 0, releases: 0, announcements: 0 };
  closed = false;

  async resolveInterface(): Promise<string> {
    return 'eth0';
  }

  async reconcile(lease: boolean | (() => boolean)): Promise<VipReconcileResult> {
    if (this.delayMs > 0) await sleep(this.delayMs);
    const held = typeof lease === 'function' ? lease() : lease;
    this.calls.push({ atMs: performance.now(), lease: held });
    if (this.failNext > 0) {
      this.failNext--;
      throw Object.assign(new Error('netlink said EPERM'), { code: 'RAFTVIP_NETLINK_FAILED' });
    }
    const actions: VipReconcileResult['actions'] = [];
    if (held && !this.present) {
      actions.push({ kind: 'add-address' });
      this.counters.claims++;
    }
    if (!held && this.present) {
      actions.push({ kind: 'remove-address', interface: 'eth0', prefixLength: 32 });
      this.counters.releases++;
    }
    this.present = held;
    this.held = held;
    return { actions, held };
  }

  nextAnnounceDueMs(): number | null {
    return this.held ? this.nextAnnounceAtMs : null;
  }

  close(): void {
    this.closed = true;
  }
}

/** A lease that lasts until `untilMs` on performance.now(). */
class FakeLease {
  untilMs: number | null = null;
  holds(nowMs: number = performance.now()): boolean {
    return this.untilMs !== null && nowMs < this.untilMs;
  }
  expiresAtMs(): number | null {
    return this.untilMs;
  }
}

function setup(options: { reconcileIntervalMs?: number } = {}) {
  const executor = new FakeExecutor();
  const lease = new FakeLease();
  const logs: { level: string; msg: string }[] = [];
  const controller = new VipController({
    executor,
    lease,
    clock: () => performance.now(),
    reconcileIntervalMs: options.reconcileIntervalMs ?? 60_000,
    log: (level, msg) => logs.push({ level, msg }),
  });
  return { executor, lease, controller, logs };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (condition()) return true;
    await sleep(2);
  }
  return condition();
}

t.test('start() removes a leftover copy without the lease, before anything else', async (t) => {
  const { executor, controller, logs } = setup();
  executor.present = true;
  await controller.start();
  t.same(executor.calls.map((c) => c.lease), [false], 'one reconcile, without the lease');
  t.equal(executor.present, false, 'the leftover copy is gone');
  t.ok(logs.some((l) => l.level === 'warn' && /left on this host/.test(l.msg)), 'and it says so');
  t.equal(controller.status().interface, 'eth0');
  await controller.stop();
});

t.test('a lease that is not renewed takes the VIP down at its expiry', async (t) => {
  const { executor, lease, controller } = setup();
  await controller.start();
  lease.untilMs = performance.now() + 150;
  controller.kick();
  t.ok(await until(() => executor.held, 1000), 'claimed with the lease');
  const expiry = lease.untilMs;
  t.ok(await until(() => !executor.present, 1000), 'released');
  const release = executor.calls.at(-1)!;
  t.equal(release.lease, false);
  const lateMs = release.atMs - expiry;
  t.ok(lateMs >= 0, `not before the expiry (${lateMs.toFixed(1)} ms)`);
  t.ok(lateMs < 50, `within 50 ms of the expiry, long before the 60 s periodic reconcile (${lateMs.toFixed(1)} ms)`);
  await controller.stop();
});

t.test('a renewed lease keeps the VIP without a reconcile per renewal', async (t) => {
  const { executor, lease, controller } = setup();
  await controller.start();
  lease.untilMs = performance.now() + 60;
  controller.kick();
  t.ok(await until(() => executor.held, 1000));
  const callsAfterClaim = executor.calls.length;
  for (let i = 0; i < 10; i++) {
    lease.untilMs = performance.now() + 60;
    await sleep(30);
  }
  t.ok(executor.present, 'still held');
  t.equal(executor.calls.length, callsAfterClaim, 'timer wake-ups at the old expiry only re-arm the timer');
  await controller.stop();
  t.equal(executor.present, false, 'stop() releases');
  t.ok(executor.closed, 'and closes the executor');
});

t.test('fence(): free while the lease holds, waits for the release when it is gone', async (t) => {
  const { executor, lease, controller } = setup();
  await controller.start();
  t.equal(controller.fence(), undefined, 'no lease, no VIP: nothing to wait for');
  lease.untilMs = performance.now() + 10_000;
  t.equal(controller.fence(), undefined, 'with the lease: nothing to wait for...');
  t.ok(await until(() => executor.held, 1000), '...but a regained lease is noticed and claimed');
  lease.untilMs = null; // a transfer drops the lease at once
  executor.delayMs = 20; // a slow netlink
  const fenced = controller.fence();
  t.ok(fenced instanceof Promise, 'the lease is gone while the VIP is held: the send must wait');
  t.ok(executor.present, 'not yet released when fence() returns');
  await fenced;
  t.equal(executor.present, false, 'released by the time the send may go');
  await controller.stop();
});

t.test('announcement and periodic timers fire', async (t) => {
  const { executor, lease, controller } = setup({ reconcileIntervalMs: 100 });
  await controller.start();
  lease.untilMs = performance.now() + 60_000;
  executor.nextAnnounceAtMs = performance.now() + 40;
  controller.kick();
  t.ok(await until(() => executor.held, 1000));
  const before = executor.calls.length;
  await sleep(70);
  t.ok(executor.calls.length > before, 'a reconcile ran for the due announcement');
  executor.nextAnnounceAtMs = null;
  const mid = executor.calls.length;
  await sleep(250);
  const periodic = executor.calls.length - mid;
  t.ok(periodic >= 1 && periodic <= 4, `periodic reconciles every ~100 ms (${periodic} in 250 ms)`);
  await controller.stop();
});

t.test('a failed reconcile is retried quickly and shown in status', async (t) => {
  const { executor, lease, controller, logs } = setup();
  await controller.start();
  lease.untilMs = performance.now() + 60_000;
  executor.failNext = 2;
  controller.kick();
  t.ok(await until(() => controller.status().reconcileFailures === 1, 1000), 'first failure counted');
  t.equal(controller.status().lastError?.code, 'RAFTVIP_NETLINK_FAILED');
  t.ok(await until(() => executor.held, 3 * vipRetryIntervalMs + 500), 'retried until it worked');
  t.equal(controller.status().reconcileFailures, 2);
  t.equal(controller.status().lastError, null, 'cleared once it works');
  t.equal(logs.filter((l) => l.level === 'error').length, 1, 'the same error is logged once, not per retry');
  await controller.stop();
});
