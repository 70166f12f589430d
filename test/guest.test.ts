// Goal: run every guest scenario (test/guest/scenarios.ts) on a kernel that has IPVS, and judge
// what each one saw. This machine's kernel has no IPVS and no loadable modules, so this file, and
// only this file, boots Debian's kernel under qemu (src/lab/qemu-guest.ts) once per test run,
// with the host's root shared read-only (plus a tmpfs overlay) and a writable share directory.
// The guest runs `node dist/test/guest/guest-main.js SHARE/results.json`, which runs each
// scenario's `runInGuest` and writes its facts or its error; here, each scenario becomes one
// subtest whose `judge` asserts on those facts, or which fails with the guest-side error.
//
// Root only (the guest's root is the host's `/` over 9p with security_model=none, which needs
// qemu to run as root; CI runs as root): other users get a skip that says why. As root nothing
// is skipped: a guest that does not boot, times out, or loses a scenario's result fails, with the
// tail of the serial console.

import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInGuest, serialLogTailLinesMax, type GuestRunResult } from '../src/lab/qemu-guest.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import type { GuestResults } from './guest/guest-main.js';
import { guestScenarios } from './guest/scenarios.js';

/** This file runs from dist/test/; the repository root is two levels up. */
const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const guestMainScript = 'dist/test/guest/guest-main.js';
/** The whole guest run: 2–6 s to boot under emulation, ~2 s per node start, the scenarios. The
 * file must stay under ~5 minutes (.taprc allows 10). */
const guestRunTimeoutMs = 240_000;

const isRoot = process.getuid?.() === 0;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function readResults(file: string): { results: GuestResults | null; problem: string | null } {
  if (!existsSync(file)) return { results: null, problem: 'guest-main wrote no results file' };
  try {
    return { results: JSON.parse(readFileSync(file, 'utf8')) as GuestResults, problem: null };
  } catch (error) {
    return { results: null, problem: `the results file does not parse: ${errorText(error)}` };
  }
}

function serialTail(run: GuestRunResult): string {
  return run.serialLog.split('\n').slice(-serialLogTailLinesMax).join('\n');
}

if (!isRoot) {
  t.skip('the qemu guest tests need root (the guest mounts the host root over 9p, which needs qemu to run as root; CI runs as root)', () => {});
} else {
  const startedAt = monotonicNowMs();
  const shareDir = mkdtempSync(join(tmpdir(), 'raftvip-guest-share-'));
  t.teardown(() => rmSync(shareDir, { recursive: true, force: true }));
  const resultsFile = join(shareDir, 'results.json');

  let run: GuestRunResult | null = null;
  /** Why no scenario can have a result from the guest, when the guest itself failed. */
  let guestFailure: string | null = null;
  try {
    run = await runInGuest({ command: ['node', guestMainScript, resultsFile], shareDir, cwd: repoRoot, timeoutMs: guestRunTimeoutMs });
  } catch (error) {
    guestFailure = errorText(error);
  }

  if (run !== null) {
    const { timings } = run;
    const seconds = (ms: number | null): string => (ms === null ? '?' : `${(ms / 1000).toFixed(1)} s`);
    t.comment(
      `guest kernel ${run.kernel.release} (${run.bootImage}): initramfs built in ${Math.round(timings.initramfsBuildMs)} ms, ` +
        `kernel unpacked in ${Math.round(timings.kernelExtractMs)} ms; qemu start to /init ${seconds(timings.qemuStartToInitMs)}, ` +
        `to guest-main ${seconds(timings.qemuStartToCommandMs)}; guest-main to power-off ${seconds(timings.commandToExitMs)}; ` +
        `guest run ${seconds(run.durationMs)}`,
    );
    if (run.exitCode !== 0) guestFailure = `guest-main exited with ${run.exitCode}\n--- guest serial console, last lines ---\n${serialTail(run)}`;
  }
  if (guestFailure === null) {
    t.pass('the guest booted and guest-main ran every scenario');
  } else {
    // tap folds a test name onto one line: the first line names the failure, the comment keeps
    // the serial console readable.
    t.fail(`the guest run failed: ${guestFailure.split('\n')[0]}`);
    t.comment(guestFailure);
  }

  const { results, problem } = readResults(resultsFile);
  for (const scenario of guestScenarios) {
    await t.test(scenario.name, async (t) => {
      const outcome = results?.[scenario.name];
      if (outcome === undefined) {
        const why = guestFailure !== null ? 'the guest run failed (see above)' : problem ?? 'guest-main recorded no result for it';
        t.fail(`no result from the guest: ${why}`);
        return;
      }
      t.comment(`ran in the guest in ${Math.round(outcome.durationMs)} ms`);
      if (!outcome.ok) {
        t.fail(`failed in the guest: ${outcome.error}`, { guestStack: outcome.stack ?? '(none)' });
        return;
      }
      scenario.judge(t, outcome.facts);
    });
  }
  // A judge that failed may want the guest's side of the story (the errors above carry their own).
  if (!t.passing() && run !== null && guestFailure === null) t.comment(`--- guest serial console, last lines ---\n${serialTail(run)}`);
  t.comment(`guest.test total ${((monotonicNowMs() - startedAt) / 1000).toFixed(1)} s`);
}
