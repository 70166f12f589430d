// Default timing, in milliseconds and in ticks. The core counts ticks; the driver calls tick()
// every tickMs of monotonic time. Defaults are tuned against `npm run bench:election` (see
// docs/benchmarks.md): a crashed leader is replaced after roughly one to two election timeouts.

import type { RaftTiming } from './raft.js';
import { clockDriftBoundDefault } from './raft.js';

/** The driver's tick period. All Raft intervals are whole multiples of it. */
export const tickMsDefault = 10;
export const heartbeatIntervalMsDefault = 50;
export const electionTimeoutMsDefault = 200;

export interface TimingMs {
  readonly tickMs: number;
  readonly heartbeatIntervalMs: number;
  readonly electionTimeoutMs: number;
  readonly clockDriftBound: number;
}

export const timingMsDefault: TimingMs = {
  tickMs: tickMsDefault,
  heartbeatIntervalMs: heartbeatIntervalMsDefault,
  electionTimeoutMs: electionTimeoutMsDefault,
  clockDriftBound: clockDriftBoundDefault,
};

export function timingToTicks(timing: TimingMs): RaftTiming {
  return {
    heartbeatTicks: Math.max(1, Math.round(timing.heartbeatIntervalMs / timing.tickMs)),
    electionTicks: Math.max(2, Math.round(timing.electionTimeoutMs / timing.tickMs)),
    clockDriftBound: timing.clockDriftBound,
  };
}
