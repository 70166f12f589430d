// Benchmark: time from a leader crash to a new leader holding a lease, from the seeded
// simulator at the default timing (tick 10 ms, heartbeat 50 ms, election timeout 200 ms, clock
// drift bound 5 %), with a healthy network (0.3–1.3 ms one way) and disk (fsync 0.1–1.6 ms,
// 5 % of them 5–25 ms). The crash falls at a random phase of the heartbeat cycle. Prints
// p50/p99/max in milliseconds for 3- and 5-node clusters; `--json` prints the raw figures.
//
//   npm run bench:election [-- --trials 2000] [--json]

import { Simulation } from '../src/sim/simulation.js';
import { timingMsDefault } from '../src/raft/timing.js';

const args = process.argv.slice(2);
const trials = Number(args[args.indexOf('--trials') + 1] ?? 1000) || 1000;
const asJson = args.includes('--json');
// Real clocks: a quartz crystal drifts by about 1e-4. `--worst-clocks` spreads them to the full
// drift bound the lease is computed for (5 %), the simulator's safety setting.
const clockRateSpread = args.includes('--worst-clocks') ? undefined : 1e-4;

interface Figures {
  nodes: number;
  trials: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  noLeader: number;
}

function measure(nodes: number): Figures {
  const samples: number[] = [];
  let noLeader = 0;
  for (let trial = 0; trial < trials; trial++) {
    const sim = new Simulation({ seed: 1_000_000 + nodes * 100_000 + trial, nodeCount: nodes, quiet: true, clockRateSpread });
    const first = sim.runUntilLeaseHolder(10_000);
    if (first === null) {
      noLeader++;
      continue;
    }
    // Let the cluster settle, then crash the leader at a random phase of its heartbeat cycle.
    sim.runFor(500 + ((trial * 7919) % 1000));
    const leader = sim.leaseHolders()[0];
    if (leader === undefined) {
      noLeader++;
      continue;
    }
    const crashedAt = sim.now;
    sim.crash(leader);
    const next = sim.runUntilLeaseHolder(10_000);
    if (next === null || sim.currentViolation) {
      noLeader++;
      continue;
    }
    samples.push(sim.now - crashedAt);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? NaN;
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    nodes,
    trials,
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(samples[samples.length - 1] ?? NaN),
    mean: round(samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length)),
    noLeader,
  };
}

const results = [3, 5].map(measure);
if (asJson) {
  console.log(JSON.stringify({ timing: timingMsDefault, clockRateSpread: clockRateSpread ?? timingMsDefault.clockDriftBound, results }, null, 2));
} else {
  const t = timingMsDefault;
  console.log(
    `leader crash → new leader holding a lease (simulator; tick ${t.tickMs} ms, heartbeat ${t.heartbeatIntervalMs} ms, ` +
      `election timeout ${t.electionTimeoutMs} ms, drift bound ${t.clockDriftBound * 100} %; clock rates spread ±${clockRateSpread === undefined ? `${t.clockDriftBound * 100} %` : `${clockRateSpread * 100} %`})`,
  );
  console.log('nodes  trials     p50 ms   p90 ms   p99 ms   max ms   mean ms   no leader');
  for (const r of results) {
    console.log(
      `${String(r.nodes).padStart(5)}  ${String(r.trials).padStart(6)}  ${r.p50.toFixed(1).padStart(8)} ${r.p90.toFixed(1).padStart(8)} ` +
        `${r.p99.toFixed(1).padStart(8)} ${r.max.toFixed(1).padStart(8)} ${r.mean.toFixed(1).padStart(9)}   ${r.noLeader}`,
    );
  }
}
