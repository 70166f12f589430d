// Goal: prove the simulator's checkers can fail. Each run switches off one safety rule (vote
// persistence together with the boot fence, the followers' stickiness, the lease bound, fsync
// before send) and the simulator must report a violation of the kind that rule prevents within
// a bounded number of seeds. A checker that never fires would make the 6,000 clean seeds of
// sim-seeds.test.ts meaningless.

import t from 'tap';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Mutation } from '../src/sim/simulation.js';

const seedsMax = 8000;

const expectations: { mutation: Mutation; kinds: string[] }[] = [
  { mutation: 'lease-too-long', kinds: ['two-leases'] },
  { mutation: 'no-fence', kinds: ['two-leases'] },
  { mutation: 'send-before-fsync', kinds: ['leader-completeness', 'applied-divergence', 'log-matching', 'assertion', 'two-leaders-in-term'] },
  { mutation: 'forget-vote', kinds: ['two-leaders-in-term', 'two-leases', 'assertion', 'leader-completeness', 'applied-divergence'] },
];

function findViolation(mutation: Mutation): Promise<{ failures: { seed: number; kind: string; message: string; replay: string }[]; seeds: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(fileURLToPath(new URL('./support/sim-worker.js', import.meta.url)), {
      workerData: { start: 1, count: seedsMax, mutation, stopAtFirst: true },
    });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

t.test('the unmodified core passes the same first seeds', async (t) => {
  const result = await new Promise<{ failures: unknown[]; seeds: number }>((resolve, reject) => {
    const worker = new Worker(fileURLToPath(new URL('./support/sim-worker.js', import.meta.url)), {
      workerData: { start: 1, count: 200, mutation: 'none' },
    });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  t.equal(result.failures.length, 0, 'no violation without a mutation');
});

for (const { mutation, kinds } of expectations) {
  t.test(`mutation ${mutation} is caught`, async (t) => {
    const result = await findViolation(mutation);
    const first = result.failures[0];
    t.ok(first, `a violation within ${seedsMax} seeds (ran ${result.seeds})`);
    if (first) {
      t.ok(kinds.includes(first.kind), `reported as ${first.kind}: ${first.message} (${first.replay})`);
    }
  });
}
