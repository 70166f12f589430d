// The lab's one clock: CLOCK_MONOTONIC in milliseconds. `process.hrtime.bigint()` reads
// CLOCK_MONOTONIC, which is one clock for every process on the machine whatever its network
// namespace (the lab creates no time namespaces), so a stamp taken by the probe in the client
// namespace, one taken by VipWatch in the controller and one taken around a fault injection can
// be compared directly. Wall-clock time (Date.now) can step and is never used for them.

/** Now on CLOCK_MONOTONIC, in milliseconds (fractional: sub-millisecond resolution). */
export function monotonicNowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
