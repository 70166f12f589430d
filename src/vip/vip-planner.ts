// The VIP planner: (lease, observed addresses, announce schedule) → the actions that converge
// this host on the one correct state. Pure, total and deterministic (STYLE.md rule 3): no I/O,
// no clock (the caller passes `nowMs` from its monotonic clock), no throwing on odd input. The
// executor re-reads the kernel's addresses before every call (level-triggered), runs the actions
// in order, and stops at the first failure; the next reconcile plans again from what is there.
//
// Invariants (DESIGN.md "The safety argument", point 3: the VIP follows the lease, not the role):
// - Without the lease the plan never adds or announces, and removes every copy of the VIP on
//   every interface, whatever its prefix length.
// - With the lease the plan leaves exactly one copy: `vip.address/vip.prefixLength` on the
//   configured interface. A copy anywhere else (another interface, another prefix length, e.g.
//   added by hand) is removed, before the add, because the kernel refuses a second IPv6 copy.
// - Announcing (gratuitous ARP / unsolicited NA) happens only with the lease: at once on every
//   claim, then `burstCount - 1` more at `burstIntervalMs`, then every `refreshIntervalMs`.

import { canonicalIpAddress } from './packet-layout.js';

/** Announcements per claim, the first one included. A claim is announced at once; the repeats
 * cover a lost frame (the lab measured one GARP switching a client within ~12 ms, and no GARP
 * leaving it on the old MAC for 8–48 s). Three is RFC 4861's MAX_NEIGHBOR_ADVERTISEMENT (§10)
 * and between keepalived's vrrp_garp_master_repeat (5, sent back to back) and RFC 5227's
 * ANNOUNCE_NUM (2). */
export const garpBurstCount = 3;
/** Spacing of the burst. keepalived sends its repeats back to back (vrrp_garp_interval 0), so
 * one short outage (a switch port or bridge still learning, a netem-style loss burst) can eat
 * all of them; RFC 5227 spaces them 2 s, far beyond the failover budget (p50 ≤ 200 ms). 100 ms
 * spreads the burst over 200 ms: a lost first frame costs ~100 ms of outage, not seconds. */
export const garpBurstIntervalMs = 100;
/** Periodic refresh while the lease is held. keepalived refreshes only if asked
 * (vrrp_garp_master_refresh, off by default) and re-bursts once after vrrp_garp_master_delay
 * (5 s). A refresh every 10 s bounds how long a client that missed the burst (rebooted, or on a
 * port that came up late) keeps a stale entry, well below the 8–48 s it would otherwise, at the
 * cost of one 42-byte broadcast per 10 s. */
export const garpRefreshIntervalMs = 10_000;

export interface VipAddress {
  address: string;
  prefixLength: 32 | 128;
}

export interface ObservedAddress {
  address: string;
  prefixLength: number;
  interface: string;
}

export interface AnnounceSchedule {
  /** Monotonic time of the last announcement sent for the current claim; null if none. The
   * caller resets it to null (and `burstRemaining` to 0) whenever the lease is not held, so the
   * next claim starts a fresh burst. */
  lastAnnouncedAtMs: number | null;
  /** Announcements of the current burst still to send. */
  burstRemaining: number;
  nowMs: number;
  burstCount: number;
  burstIntervalMs: number;
  refreshIntervalMs: number;
}

export interface VipPlanInput {
  leaseHeld: boolean;
  vip: VipAddress;
  observed: { addresses: readonly ObservedAddress[] };
  interface: string;
  announce: AnnounceSchedule;
}

/** Why an announcement is due: a new claim (or one never announced), a burst repeat, or the
 * periodic refresh. */
export type AnnounceReason = 'claim' | 'burst' | 'refresh';

export type VipAction =
  /** Remove the VIP with this prefix length from this interface. */
  | { kind: 'remove-address'; interface: string; prefixLength: number }
  /** Add `vip.address/vip.prefixLength` (preferred_lft 0) on the configured interface. */
  | { kind: 'add-address' }
  /** Send a gratuitous ARP (IPv4) or unsolicited NA (IPv6) now. Once sent, the caller records
   * `lastAnnouncedAtMs = nowMs` and `burstRemaining = action.burstRemaining`. */
  | { kind: 'announce'; reason: AnnounceReason; burstRemaining: number };

export type VipActionKind = VipAction['kind'];

/** Plans the actions that take this host from `observed` to the state the lease demands. An empty
 * list means converged. Order matters: removals, then the add, then the announcement. */
export function planVip(input: VipPlanInput): VipAction[] {
  const vipAddress = canonicalOrSelf(input.vip.address);
  const copies = input.observed.addresses.filter((observed) => canonicalOrSelf(observed.address) === vipAddress);
  const isWanted = (copy: ObservedAddress): boolean =>
    input.leaseHeld && copy.interface === input.interface && copy.prefixLength === input.vip.prefixLength;

  const actions: VipAction[] = [];
  const removed = new Set<string>();
  for (const copy of copies) {
    if (isWanted(copy)) continue;
    const key = `${copy.interface}\u0000${copy.prefixLength}`;
    if (removed.has(key)) continue; // the kernel lists each copy once; a repeated row is one copy
    removed.add(key);
    actions.push({ kind: 'remove-address', interface: copy.interface, prefixLength: copy.prefixLength });
  }
  if (!input.leaseHeld) return actions;

  const present = copies.some(isWanted);
  if (!present) actions.push({ kind: 'add-address' });
  const announcement = dueAnnouncement(input.announce, { claiming: !present });
  if (announcement !== null) actions.push(announcement);
  return actions;
}

/** The monotonic time at which `planVip` will next plan an announcement for a VIP that stays held
 * and present (for the executor's timer); null if the schedule never gets there. */
export function nextAnnounceDueMs(schedule: AnnounceSchedule): number | null {
  if (schedule.lastAnnouncedAtMs === null) return schedule.nowMs;
  const interval = schedule.burstRemaining > 0 ? schedule.burstIntervalMs : schedule.refreshIntervalMs;
  const due = schedule.lastAnnouncedAtMs + interval;
  return Number.isFinite(due) ? due : null;
}

function dueAnnouncement(schedule: AnnounceSchedule, options: { claiming: boolean }): VipAction | null {
  const burstCount = Number.isFinite(schedule.burstCount) ? Math.max(Math.floor(schedule.burstCount), 1) : 1;
  if (options.claiming || schedule.lastAnnouncedAtMs === null) {
    return { kind: 'announce', reason: 'claim', burstRemaining: burstCount - 1 };
  }
  const elapsedMs = schedule.nowMs - schedule.lastAnnouncedAtMs;
  const inBurst = schedule.burstRemaining > 0;
  const intervalMs = inBurst ? schedule.burstIntervalMs : schedule.refreshIntervalMs;
  // A clock that went backwards (elapsed < 0) cannot tell us when we last spoke: announce again
  // rather than stay silent until it catches up. Announcing is harmless while the lease is held.
  const due = elapsedMs < 0 || elapsedMs >= intervalMs;
  if (!due) return null;
  if (inBurst) {
    const remaining = Math.min(Math.floor(schedule.burstRemaining), burstCount) - 1;
    return { kind: 'announce', reason: 'burst', burstRemaining: Math.max(remaining, 0) };
  }
  return { kind: 'announce', reason: 'refresh', burstRemaining: 0 };
}

function canonicalOrSelf(address: string): string {
  return typeof address === 'string' ? (canonicalIpAddress(address) ?? address) : String(address);
}
