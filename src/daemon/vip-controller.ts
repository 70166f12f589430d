// The VIP controller: decides *when* the VIP executor reconciles, from the driver's lease. The
// executor decides *what* to do (vip-executor.ts, level-triggered); this module owns the timers.
//
// The VIP follows the lease, never the role (DESIGN.md, the safety argument, point 3). So:
// - A reconcile asks the lease afresh right before every add and announcement (the executor's
//   `reconcile(() => lease.holds())`); a lease that lapsed while netlink was busy becomes a release.
// - While held, a timer is armed at the lease's expiry: if the lease was not renewed by then
//   (lost quorum, partition, a paused peer set), the VIP goes at that instant, before Raft's
//   check-quorum even demotes the leader.
// - `fence()` runs in the driver between persisting and sending each Ready (raft-driver.ts,
//   beforeSend): when the lease is gone but the VIP may still be here (a transfer just started,
//   a higher term was seen, the process woke from a pause), the release completes before any
//   message that lets another node claim the VIP leaves this host. It is also where a regained
//   lease is noticed (every heartbeat the leader sends passes through it).
// - Timers also fire for the next announcement (burst, refresh) and every reconcileIntervalMs, so
//   a VIP deleted by hand is restored and a stray copy on a follower is removed.
// - start() removes any copy left from an earlier life (this node never starts with the lease);
//   stop() releases. Failures are logged (rate-limited), counted, shown in status, and retried.

import type { VipCounters, VipReconcileResult } from '../vip/vip-executor.js';

/** How soon a failed reconcile is retried (capped by reconcileIntervalMs). */
export const vipRetryIntervalMs = 200;
/** The same failure message is logged at most this often. */
export const vipErrorLogIntervalMs = 10_000;

/** What the controller needs of VipExecutor. */
export interface VipControllerExecutor {
  reconcile(lease: boolean | (() => boolean)): Promise<VipReconcileResult>;
  resolveInterface(): Promise<string>;
  nextAnnounceDueMs(): number | null;
  readonly held: boolean;
  readonly counters: VipCounters;
  close(): void;
}

/** What the controller needs of RaftDriver. */
export interface VipLease {
  holds(nowMs?: number): boolean;
  /** Monotonic ms at which the current lease ends; null without one. */
  expiresAtMs(): number | null;
}

export type VipControllerLog = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface VipControllerOptions {
  readonly executor: VipControllerExecutor;
  readonly lease: VipLease;
  /** Monotonic ms, the driver's clock. */
  readonly clock: () => number;
  readonly reconcileIntervalMs: number;
  readonly log: VipControllerLog;
}

export interface VipControllerStatus {
  held: boolean;
  interface: string | null;
  lastError: { code: string | null; message: string; atMs: number } | null;
  reconcileFailures: number;
  counters: VipCounters;
}

export class VipController {
  readonly #options: VipControllerOptions;
  #running = false;
  #busy = false;
  #again = false;
  #timer: NodeJS.Timeout | null = null;
  #nextPeriodicAtMs = 0;
  #interface: string | null = null;
  #lastError: VipControllerStatus['lastError'] = null;
  #lastLoggedError = { message: '', atMs: -Infinity };
  #failures = 0;
  #idle: (() => void)[] = [];

  constructor(options: VipControllerOptions) {
    this.#options = options;
  }

  /**
   * Finds the interface (a VipInterfaceError here means the config cannot work on this host) and
   * removes any copy of the VIP left from an earlier life, before Raft starts: a starting node
   * holds no lease. Throws what the kernel said (EPERM without CAP_NET_ADMIN, ...).
   */
  async start(): Promise<void> {
    const executor = this.#options.executor;
    this.#interface = await executor.resolveInterface();
    const result = await executor.reconcile(false);
    if (result.actions.length > 0) {
      this.#options.log('warn', 'removed a VIP left on this host from an earlier run', { interface: this.#interface, removed: result.actions.length });
    }
    this.#running = true;
    this.#schedule(false);
  }

  /** Reconcile soon (coalesced with one in progress). */
  kick(): void {
    if (!this.#running) return;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    void this.#loop();
  }

  /**
   * For the driver, before it sends: if the lease is gone and the VIP is (or may be about to be)
   * here, a promise that settles once it is removed; otherwise nothing, at no cost. Never rejects:
   * a release that fails is logged and retried, and Raft must go on either way.
   */
  fence(): Promise<void> | undefined {
    if (!this.#running) return undefined;
    const executor = this.#options.executor;
    if (this.#options.lease.holds()) {
      if (!executor.held && !this.#busy) this.kick();
      return undefined;
    }
    if (!executor.held && !this.#busy) return undefined;
    return this.#release('lease gone before sending');
  }

  /** Stops the timers and removes the VIP. Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#busy) await new Promise<void>((resolve) => this.#idle.push(resolve));
    try {
      await this.#options.executor.reconcile(false);
    } finally {
      this.#options.executor.close();
    }
  }

  status(): VipControllerStatus {
    return {
      held: this.#options.executor.held,
      interface: this.#interface,
      lastError: this.#lastError,
      reconcileFailures: this.#failures,
      counters: this.#options.executor.counters,
    };
  }

  async #release(reason: string): Promise<void> {
    try {
      const result = await this.#options.executor.reconcile(false);
      this.#succeeded(result);
      this.#options.log('debug', 'VIP fenced', { reason });
    } catch (error) {
      this.#failed(error);
      this.#schedule(true);
    }
  }

  async #loop(): Promise<void> {
    this.#busy = true;
    let failed = false;
    try {
      do {
        this.#again = false;
        failed = false;
        try {
          const result = await this.#options.executor.reconcile(() => this.#options.lease.holds());
          this.#succeeded(result);
        } catch (error) {
          failed = true;
          this.#failed(error);
        }
      } while (this.#again && this.#running);
    } finally {
      this.#busy = false;
      for (const resolve of this.#idle.splice(0)) resolve();
    }
    this.#nextPeriodicAtMs = this.#options.clock() + this.#options.reconcileIntervalMs;
    this.#schedule(failed);
  }

  #succeeded(result: VipReconcileResult): void {
    if (this.#lastError !== null) this.#options.log('info', 'VIP reconcile works again', { held: result.held });
    this.#lastError = null;
  }

  #failed(error: unknown): void {
    this.#failures++;
    const message = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: unknown }).code;
    const nowMs = this.#options.clock();
    this.#lastError = { code: typeof code === 'string' ? code : null, message, atMs: nowMs };
    if (message !== this.#lastLoggedError.message || nowMs - this.#lastLoggedError.atMs >= vipErrorLogIntervalMs) {
      this.#lastLoggedError = { message, atMs: nowMs };
      this.#options.log('error', 'VIP reconcile failed; retrying', { err: message, code: this.#lastError.code, failures: this.#failures });
    }
  }

  /** Arms the one timer at the earliest instant something may be due. */
  #schedule(failed: boolean): void {
    if (!this.#running) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    const { executor, lease, clock } = this.#options;
    const nowMs = clock();
    let atMs = failed ? nowMs + Math.min(vipRetryIntervalMs, this.#options.reconcileIntervalMs) : this.#nextPeriodicAtMs;
    if (executor.held) {
      const expires = lease.expiresAtMs();
      atMs = Math.min(atMs, expires ?? nowMs);
      const announce = executor.nextAnnounceDueMs();
      if (announce !== null) atMs = Math.min(atMs, announce);
    }
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#onTimer();
    }, Math.max(0, Math.ceil(atMs - nowMs)));
    this.#timer.unref?.();
  }

  #onTimer(): void {
    if (!this.#running || this.#busy) return; // a reconcile in progress re-arms the timer
    const { executor, lease, clock } = this.#options;
    const nowMs = clock();
    const announce = executor.held ? executor.nextAnnounceDueMs() : null;
    const due =
      nowMs >= this.#nextPeriodicAtMs ||
      executor.held !== lease.holds(nowMs) ||
      (announce !== null && nowMs >= announce) ||
      this.#lastError !== null;
    if (due) this.kick();
    else this.#schedule(false);
  }
}
