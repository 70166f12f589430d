// Pure analysis of probe attempts (probe-protocol.ts, ProbeAttempt): how long the service was
// out around a fault, as the client saw it. No I/O, so it is unit-tested with hand-made lists.
//
// The outage around a fault at F is "last success before, first success after":
//   lastOkBefore  = the latest `end` of a successful attempt that ended at or before F;
//   firstOkAfter  = the earliest `end` of a successful attempt that started at or after F
//                   (and before windowEndMs);
//   outageMs      = firstOkAfter - lastOkBefore.
// Successful attempts that were in flight at F (started before, ended after) count for neither
// side: they prove the old path still worked for a moment, not that the new one does. "First"
// means first to finish, which is when the client could first have known the service was back.
// When either side has no success (a fault before the first success, or no recovery inside the
// window) outageMs is null, and the side that exists is still reported.

import type { ProbeAttempt } from './probe-protocol.js';

export interface OutageOptions {
  /** Only attempts that started before this count (default: all). */
  windowEndMs?: number;
}

export interface Outage {
  /** firstOkAfterMs - lastOkBeforeMs; null when either is null. */
  outageMs: number | null;
  lastOkBeforeMs: number | null;
  firstOkAfterMs: number | null;
  /** Failed attempts that overlapped the outage: started before firstOkAfterMs and ended after
   * lastOkBeforeMs (a missing bound is open). An attempt that timed out after the service came
   * back still counts when it started before. */
  failedAttempts: number;
  /** Hosts that answered successful attempts that ended at or before the fault, oldest first. */
  hostsBefore: string[];
  /** Hosts that answered successful attempts that started at or after the fault (inside the
   * window), first answer first. */
  hostsAfter: string[];
}

export function outageAround(attempts: readonly ProbeAttempt[], faultAtMs: number, options: OutageOptions = {}): Outage {
  const windowEndMs = options.windowEndMs ?? Number.POSITIVE_INFINITY;
  const considered = attempts.filter((a) => a.start < windowEndMs);
  const before = considered.filter((a) => a.ok && a.end <= faultAtMs).sort((a, b) => a.end - b.end);
  const after = considered.filter((a) => a.ok && a.start >= faultAtMs).sort((a, b) => a.end - b.end);
  const lastOkBeforeMs = before.at(-1)?.end ?? null;
  const firstOkAfterMs = after[0]?.end ?? null;
  const lower = lastOkBeforeMs ?? Number.NEGATIVE_INFINITY;
  const upper = firstOkAfterMs ?? Number.POSITIVE_INFINITY;
  return {
    outageMs: lastOkBeforeMs !== null && firstOkAfterMs !== null ? firstOkAfterMs - lastOkBeforeMs : null,
    lastOkBeforeMs,
    firstOkAfterMs,
    failedAttempts: considered.filter((a) => !a.ok && a.start < upper && a.end > lower).length,
    hostsBefore: distinct(before.map((a) => a.host)),
    hostsAfter: distinct(after.map((a) => a.host)),
  };
}

/** Failed attempts that started in [fromMs, toMs), by start. */
export function failedBetween(attempts: readonly ProbeAttempt[], fromMs: number, toMs: number): ProbeAttempt[] {
  return attempts.filter((a) => !a.ok && a.start >= fromMs && a.start < toMs).sort((a, b) => a.start - b.start);
}

/** Attempts started per second over [fromMs, toMs) (by start). */
export function attemptRatePerSecond(attempts: readonly ProbeAttempt[], fromMs: number, toMs: number): number {
  if (toMs <= fromMs) return 0;
  return (attempts.filter((a) => a.start >= fromMs && a.start < toMs).length * 1000) / (toMs - fromMs);
}

function distinct(hosts: readonly (string | null)[]): string[] {
  return [...new Set(hosts.filter((h): h is string => h !== null))];
}

/**
 * The client-visible outage: the longest time between two consecutive successful attempts (by
 * completion) that completed in [fromMs, toMs). Unlike outageAround it also sees an outage that
 * starts some time after the fault (a killed daemon's host serves until systemd's ExecStopPost
 * removes the VIP) and does not depend on the fault instant being exact; the bench and the demo
 * report it. Null without two successes.
 */
export function longestGap(attempts: readonly ProbeAttempt[], fromMs: number, toMs: number): number | null {
  const ends = attempts
    .filter((a) => a.ok && a.end >= fromMs && a.end < toMs)
    .map((a) => a.end)
    .sort((a, b) => a - b);
  if (ends.length < 2) return null;
  let longest = 0;
  for (let i = 1; i < ends.length; i++) longest = Math.max(longest, ends[i]! - ends[i - 1]!);
  return longest;
}
