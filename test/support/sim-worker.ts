// Worker thread for the simulator tests: runs a range of seeds (optionally with a deliberate
// bug) and reports violations back to the parent. Stops at the first violation when asked to
// find one.

import { parentPort, workerData } from 'node:worker_threads';
import { nodeCountForSeed, replayCommand, simulate, type Mutation } from '../../src/sim/simulation.js';

const { start, count, mutation, stopAtFirst } = workerData as { start: number; count: number; mutation: Mutation; stopAtFirst?: boolean };
const failures: { seed: number; nodeCount: number; kind: string; message: string; replay: string }[] = [];
let seeds = 0;
let events = 0;
for (let seed = start; seed < start + count; seed++) {
  const result = simulate({ seed, nodeCount: nodeCountForSeed(seed), mutation });
  seeds++;
  events += result.stats.events;
  if (result.violation) {
    failures.push({ seed, nodeCount: result.nodeCount, kind: result.violation.kind, message: result.violation.message, replay: replayCommand(result, mutation) });
    if (stopAtFirst || failures.length >= 20) break;
  }
}
parentPort?.postMessage({ failures, seeds, events });
