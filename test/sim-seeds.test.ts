// Goal: the whole-cluster simulator finds no violation of any safety checker (one leader per
// term, log matching, leader completeness, applied prefixes agree, persisted term and vote never
// go backwards, never two valid leases at once) and no liveness failure after healing, over
// 6,000 seeds (3 and 5 nodes alternating), split over two worker threads. A failing seed is
// printed with the one-line command that replays it.

import t from 'tap';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const seedsTotal = 6000;
const workers = 2;

interface Chunk {
  failures: { seed: number; nodeCount: number; kind: string; message: string; replay: string }[];
  seeds: number;
  events: number;
}

function runChunk(start: number, count: number): Promise<Chunk> {
  const workerUrl = new URL('./support/sim-worker.js', import.meta.url);
  return new Promise((resolve, reject) => {
    const worker = new Worker(fileURLToPath(workerUrl), { workerData: { start, count, mutation: 'none' } });
    worker.once('message', (chunk: Chunk) => resolve(chunk));
    worker.once('error', reject);
  });
}

t.test(`simulator: ${seedsTotal} seeds without a violation`, async (t) => {
  const per = Math.ceil(seedsTotal / workers);
  const chunks = await Promise.all(Array.from({ length: workers }, (_, i) => runChunk(1 + i * per, per)));
  const failures = chunks.flatMap((c) => c.failures);
  const seeds = chunks.reduce((n, c) => n + c.seeds, 0);
  const events = chunks.reduce((n, c) => n + c.events, 0);
  t.equal(seeds, per * workers, 'every seed ran');
  t.ok(events > seeds * 100, `the seeds did real work (${events} events)`);
  for (const f of failures) t.fail(`seed ${f.seed} (${f.nodeCount} nodes): ${f.kind}: ${f.message}\n  replay: ${f.replay}`);
  t.equal(failures.length, 0, 'no seed violated an invariant');
});
