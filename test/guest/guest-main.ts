// The program the qemu guest runs (test/guest.test.ts boots the guest once with
// `node dist/test/guest/guest-main.js RESULTS_FILE`): every scenario of scenarios.ts in order,
// each `runInGuest()` under `guestScenarioTimeoutMs`, its facts or its error written to
// RESULTS_FILE (on the writable share) as JSON of type `GuestResults`. The file is rewritten
// after every scenario, so a guest killed later still reports the scenarios that finished.
// Progress goes to stdout, which is the guest's serial console.
//
// Exit code 0 once every scenario has a result (failed scenarios included: the host judges them);
// 1 when the results cannot be written or the scenario list is invalid; 2 on a bad command line.
//
// A scenario that times out keeps running in the background (a promise cannot be cancelled);
// the next scenario starts anyway, and the process exits at the end regardless.

import { renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { monotonicNowMs } from '../../src/lab/monotonic-clock.js';
import type { GuestScenario } from './scenario.js';

/** One scenario's `runInGuest` (a few node process starts at ~2 s each under emulation). */
export const guestScenarioTimeoutMs = 90_000;
/** Lines printed on the serial console start with this. */
export const guestMainLinePrefix = 'guest-main:';

export type GuestScenarioOutcome =
  | { readonly ok: true; readonly facts: unknown; readonly durationMs: number }
  | { readonly ok: false; readonly error: string; readonly stack: string | null; readonly durationMs: number };

/** RESULTS_FILE: scenario name → outcome. */
export type GuestResults = Record<string, GuestScenarioOutcome>;

class ScenarioTimeout extends Error {
  constructor(name: string) {
    super(`scenario ${name} did not finish within ${guestScenarioTimeoutMs} ms`);
    this.name = 'ScenarioTimeout';
  }
}

async function runOne(scenario: GuestScenario<unknown>): Promise<GuestScenarioOutcome> {
  const startedAt = monotonicNowMs();
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ScenarioTimeout(scenario.name)), guestScenarioTimeoutMs);
    });
    const facts = await Promise.race([scenario.runInGuest(), timeout]);
    // The facts cross to the host as JSON: what does not survive the trip is a scenario bug.
    const portableFacts = JSON.parse(JSON.stringify(facts ?? null)) as unknown;
    return { ok: true, facts: portableFacts, durationMs: monotonicNowMs() - startedAt };
  } catch (error) {
    return {
      ok: false,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      stack: error instanceof Error ? error.stack ?? null : null,
      durationMs: monotonicNowMs() - startedAt,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Write-then-rename, so the host never reads half a file. */
function writeResults(resultsFile: string, results: GuestResults): void {
  const temporary = `${resultsFile}.partial`;
  writeFileSync(temporary, `${JSON.stringify(results, null, 1)}\n`);
  renameSync(temporary, resultsFile);
}

export async function runGuestScenarios(options: { resultsFile: string; scenarios: readonly GuestScenario<unknown>[] }): Promise<GuestResults> {
  const names = options.scenarios.map((scenario) => scenario.name);
  const duplicates = names.filter((name, index) => names.indexOf(name) !== index);
  if (duplicates.length > 0) throw new Error(`duplicate scenario names: ${duplicates.join(', ')}`);
  const results: GuestResults = {};
  writeResults(options.resultsFile, results);
  for (const scenario of options.scenarios) {
    console.log(`${guestMainLinePrefix} ${scenario.name}: starting`);
    const outcome = await runOne(scenario);
    results[scenario.name] = outcome;
    writeResults(options.resultsFile, results);
    const verdict = outcome.ok ? 'facts recorded' : `FAILED: ${outcome.error}`;
    console.log(`${guestMainLinePrefix} ${scenario.name}: ${verdict} (${Math.round(outcome.durationMs)} ms)`);
  }
  return results;
}

async function main(argv: readonly string[]): Promise<number> {
  const [resultsArgument, ...rest] = argv;
  if (resultsArgument === undefined || rest.length > 0) {
    console.error(`${guestMainLinePrefix} usage: node dist/test/guest/guest-main.js RESULTS_FILE`);
    return 2;
  }
  console.log(`${guestMainLinePrefix} started (node ${process.version}, ${Math.round(process.uptime() * 1000)} ms after exec)`);
  // Imported after the "started" line, so the console shows node's start apart from the time the
  // scenario modules (and the native addons they load) take to import.
  const { guestScenarios } = await import('./scenarios.js');
  await runGuestScenarios({ resultsFile: resolve(resultsArgument), scenarios: guestScenarios });
  console.log(`${guestMainLinePrefix} done`);
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(`${guestMainLinePrefix} failed:`, error);
      process.exit(1);
    },
  );
}
