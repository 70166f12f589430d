// The contract between the one qemu guest boot per test run and the scenarios it runs. This
// machine's kernel has no IPVS, so test/guest.test.ts boots Debian's kernel under qemu once,
// runs every scenario's `runInGuest` inside it (as root, the host's root file system shared
// read-only with a writable overlay, so dist/ and node_modules are at the same paths), brings the
// facts back as JSON, and then calls each scenario's `judge` on the host as a tap subtest.
//
// A scenario observes in the guest and judges on the host: `runInGuest` does the actions and
// records what the kernel and independent tools (ipvsadm, nft, ip) said, without asserting;
// `judge` asserts on those facts. A scenario that throws in the guest is reported as failed with
// its error and stack; a guest that does not boot fails every scenario (it never skips).

import type { Test } from 'tap';

export interface GuestScenario<Facts = unknown> {
  /** Unique, kebab-case; the subtest's name. */
  readonly name: string;
  /** Runs inside the guest; returns JSON-serialisable facts. */
  runInGuest(): Promise<Facts>;
  /** Runs on the host with what `runInGuest` returned. */
  judge(t: Test, facts: Facts): void;
}
