// The simulator's command line: `npm run sim -- --seeds N [--start S] [--nodes 3|5]` runs many
// seeds; `--seed S` replays one and prints its trace on failure. Shared by `raftvip sim`.

import { nodeCountForSeed, replayCommand, simulate, type Mutation, type SimResult } from './simulation.js';

export interface SimCliArgs {
  seeds?: number;
  seed?: number;
  start?: number;
  nodes?: number;
  verbose?: boolean;
  mutation?: Mutation;
}

export async function runSimCli(args: SimCliArgs): Promise<number> {
  const mutation = args.mutation ?? 'none';
  if (args.seed !== undefined) {
    const result = simulate({ seed: args.seed, nodeCount: nodeCountForSeed(args.seed, args.nodes), mutation, traceLines: 400 });
    printResult(result, mutation, true);
    return result.violation ? 1 : 0;
  }
  const count = args.seeds ?? 1000;
  const start = args.start ?? 1;
  const started = process.hrtime.bigint();
  let failures = 0;
  let events = 0;
  const healTimes: number[] = [];
  for (let seed = start; seed < start + count; seed++) {
    const result = simulate({ seed, nodeCount: nodeCountForSeed(seed, args.nodes), mutation });
    events += result.stats.events;
    if (result.stats.healedToLeaderMs !== null) healTimes.push(result.stats.healedToLeaderMs);
    if (result.violation) {
      failures++;
      printResult(result, mutation, args.verbose ?? false);
      if (failures >= 10) break;
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  healTimes.sort((a, b) => a - b);
  const p = (q: number) => healTimes[Math.min(healTimes.length - 1, Math.floor(q * healTimes.length))] ?? 0;
  console.log(
    `simulated seeds ${start}..${start + count - 1}: ${failures} with violations, ${events} events in ${seconds.toFixed(1)} s; ` +
      `heal→committing leader p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${healTimes[healTimes.length - 1] ?? 0} ms`,
  );
  return failures > 0 ? 1 : 0;
}

function printResult(result: SimResult, mutation: Mutation, withTrace: boolean): void {
  const s = result.stats;
  if (result.violation) {
    console.log(`seed ${result.seed} (${result.nodeCount} nodes): VIOLATION ${result.violation.kind} at ${result.violation.atMs} ms: ${result.violation.message}`);
    console.log(`  replay: ${replayCommand(result, mutation)}`);
  } else {
    console.log(`seed ${result.seed} (${result.nodeCount} nodes): ok`);
  }
  console.log(
    `  ${s.events} events, ${s.simulatedMs} ms simulated, ${s.crashes} crashes, ${s.pauses} pauses, ${s.partitions} partitions, ` +
      `${s.leaderTerms} leader terms, max term ${s.maxTerm}, commit ${s.committedIndex}, ${s.membershipChanges} membership changes, ${s.transfers} transfers, ${s.snapshotsSent} snapshots sent`,
  );
  if (withTrace) for (const line of result.trace) console.log(`  ${line}`);
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly) {
  const args: SimCliArgs = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const number = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`${flag} needs a whole number from 0 to 4294967295, got ${value}`);
      i++;
      return n;
    };
    if (flag === '--seeds') args.seeds = number();
    else if (flag === '--seed') args.seed = number();
    else if (flag === '--start') args.start = number();
    else if (flag === '--nodes') args.nodes = number();
    else if (flag === '--verbose') args.verbose = true;
    else if (flag === '--mutation') {
      args.mutation = value as Mutation;
      i++;
    } else {
      console.error(`unknown option ${flag}; usage: npm run sim -- [--seeds N [--start S]] [--seed S] [--nodes 3|5] [--verbose]`);
      process.exit(2);
    }
  }
  runSimCli(args).then((code) => process.exit(code));
}
