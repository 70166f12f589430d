// Benchmark: how long the client cannot reach VIP:80 when the VIP holder fails, on real hosts.
// Builds the lab once (src/lab: 3 network namespaces on a bridge, a real raftvip daemon and a
// name server on each, a client probing a TCP connect to the VIP every 5 ms), then runs K cycles
// of each kind of failure against whichever host holds the VIP:
//
//   crash      SIGKILL of the daemon, then `raftvip vip release` (the unit's ExecStopPost).
//              The host's name server keeps running, as its kube-apiserver would.
//   power-off  the host's link cut and its daemon killed in the same instant.
//   sigterm    planned handover: SIGTERM (systemctl stop); the leader hands over, then exits.
//   transfer   planned handover: `raftvip transfer-leadership` on the leader.
//
// The outage of one cycle is "last success before, first success after" (src/lab/
// probe-analysis.ts) around the fault instant: the signal or the cut; for `transfer`, the instant
// the old holder removed the VIP (the command itself takes a Node start before it acts). Failed
// connects: probe attempts (timeout 500 ms; a SYN lost to a host without the VIP needs a 1 s
// retransmission) that failed around the cycle. Two holders: any instant at which two hosts had
// the VIP on their interface, except a host that cannot act (powered off, or a killed daemon
// until its ExecStopPost ran), reported separately.
//
//   npm run bench:failover [-- --cycles 20] [--kinds crash,power-off,sigterm,transfer] [--json FILE]
//
// Root only (network namespaces). Prints a table; --json writes every cycle's figures.

import { writeFileSync } from 'node:fs';
import { Lab, sleep } from '../src/lab/lab.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { longestGap } from '../src/lab/probe-analysis.js';
import { timingMsDefault } from '../src/raft/timing.js';
import { garpBurstCount, garpBurstIntervalMs } from '../src/vip/vip-planner.js';
import { option, quantile } from './bench-support.js';

const kinds = ['crash', 'power-off', 'sigterm', 'transfer'] as const;
type Kind = (typeof kinds)[number];

const probeIntervalMs = 5;
const probeTimeoutMs = 500;
/** After the new holder answers, keep watching for late failures (attempts in flight time out). */
const settleMs = probeTimeoutMs + 200;
/** Quiet time before each fault, so "last success before" is a steady one. */
const quietMs = 300;

interface Cycle {
  kind: Kind;
  cycle: number;
  from: string;
  to: string;
  outageMs: number | null;
  failedConnects: number;
  /** Failed connects by error (ETIMEDOUT: no answer within the probe timeout; ECONNRESET, ...). */
  failedErrors: Record<string, number>;
  /** ms during which two hosts that could act both had the VIP. */
  twoHoldersMs: number;
  /** ms during which a host that could not act (dead daemon before ExecStopPost, powered off)
   * still had the VIP while another host had it too. */
  deadHolderOverlapMs: number;
  /** From the old holder's removal of the VIP to the new holder's add (negative: overlap with a
   * host that could not act); null if the old holder never removed it (powered off). */
  vipGapMs: number | null;
}

function vipGap(lab: Lab, from: string, to: string, sinceMs: number): number | null {
  const events = lab.watch.events();
  const removed = events.find((e) => e.host === from && e.kind === 'deleted' && e.at >= sinceMs - quietMs);
  const added = events.find((e) => e.host === to && e.kind === 'added' && e.at >= sinceMs - quietMs);
  if (removed === undefined || added === undefined) return null;
  return round(added.at - removed.at);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench:failover needs root: it builds network namespaces\n');
    process.exit(2);
  }
  const cycles = Number(option('--cycles') ?? 20);
  const chosen = (option('--kinds') ?? kinds.join(',')).split(',') as Kind[];
  for (const kind of chosen) {
    if (!kinds.includes(kind)) throw new Error(`unknown kind ${kind} (known: ${kinds.join(', ')})`);
  }
  const jsonFile = option('--json');

  const lab = await Lab.start({ hosts: 3, probeIntervalMs, probeTimeoutMs, handleSignals: true });
  const results: Cycle[] = [];
  try {
    let steady = await lab.waitForSteady();
    process.stdout.write(
      `raftvip failover on real hosts: ${lab.hosts.length} network namespaces on a bridge, ${cycles} cycles per kind, ` +
        `probe every ${probeIntervalMs} ms (timeout ${probeTimeoutMs} ms)\n` +
        `timing: heartbeat ${timingMsDefault.heartbeatIntervalMs} ms, election timeout ${timingMsDefault.electionTimeoutMs} ms, ` +
        `announce ${garpBurstCount}× ${garpBurstIntervalMs} ms apart (the defaults)\n\n`,
    );
    for (const kind of chosen) {
      for (let cycle = 1; cycle <= cycles; cycle++) {
        await sleep(quietMs);
        steady = await lab.waitForSteady({ sinceMs: monotonicNowMs() - quietMs });
        const old = steady.leader;
        const excuse: { from: number; to: number } = { from: 0, to: 0 };
        let faultAt: number;
        switch (kind) {
          case 'crash':
            // Lab.crash returns once ExecStopPost's release has run: until then the killed
            // daemon's host cannot act, and its copy is excused.
            faultAt = await lab.crash(old);
            Object.assign(excuse, { from: faultAt, to: monotonicNowMs() });
            break;
          case 'power-off':
            faultAt = await lab.powerOff(old);
            excuse.from = faultAt;
            break;
          case 'sigterm':
            faultAt = await lab.terminate(old);
            break;
          case 'transfer': {
            const before = monotonicNowMs();
            const result = await lab.cluster.transferLeadership(old);
            if (result.code !== 0) throw new Error(`transfer-leadership failed: ${result.stderr}`);
            const removed = lab.watch.events().find((e) => e.host === old && e.kind === 'deleted' && e.at >= before);
            faultAt = removed?.at ?? before;
            break;
          }
        }
        const next = await lab.waitForSteady({
          sinceMs: faultAt,
          exclude: [old],
          ...(kind === 'power-off' ? { ignoreHolders: [old] } : {}),
          timeoutMs: 20_000,
        });
        await sleep(settleMs);
        const endAt = monotonicNowMs();
        if (kind === 'power-off') {
          await lab.powerOn(old);
          excuse.to = await lab.watch.waitForHolder(next.leader, 10_000);
        } else if (kind === 'crash' || kind === 'sigterm') {
          await lab.cluster.start(old);
        }
        const outageMs = longestGap(lab.probe!.attempts(), faultAt - quietMs, endAt);
        const failedAttempts = lab.probe!.failedBetween(faultAt - quietMs, endAt);
        const failed = failedAttempts.length;
        const failedErrors: Record<string, number> = {};
        for (const attempt of failedAttempts) failedErrors[attempt.error ?? 'unknown'] = (failedErrors[attempt.error ?? 'unknown'] ?? 0) + 1;
        const window = { from: faultAt - quietMs, to: monotonicNowMs() };
        const overlaps = lab.watch.maxSimultaneousHolders(window).overlaps;
        const live = lab.watch.maxSimultaneousHolders({ ...window, exclude: (host, t) => host === old && t >= excuse.from && t < excuse.to }).overlaps;
        const sum = (list: { durationMs: number }[]) => list.reduce((total, o) => total + o.durationMs, 0);
        const record: Cycle = {
          kind,
          cycle,
          from: old,
          to: next.leader,
          outageMs: outageMs === null ? null : round(outageMs),
          vipGapMs: vipGap(lab, old, next.leader, faultAt),
          failedConnects: failed,
          failedErrors,
          twoHoldersMs: round(sum(live)),
          deadHolderOverlapMs: round(sum(overlaps) - sum(live)),
        };
        results.push(record);
        process.stdout.write(
          `  ${kind.padEnd(9)} #${String(cycle).padStart(2)} ${old}→${next.leader}  outage ${String(record.outageMs).padStart(6)} ms  ` +
            `failed ${String(failed).padStart(3)}${failed > 0 ? ` ${JSON.stringify(failedErrors)}` : ''}  VIP gap ${String(record.vipGapMs).padStart(6)} ms${record.twoHoldersMs > 0 ? `  TWO HOLDERS ${record.twoHoldersMs} ms` : ''}` +
            `${record.deadHolderOverlapMs > 0 ? `  (dead host's copy overlapped ${record.deadHolderOverlapMs} ms)` : ''}\n`,
        );
      }
    }
  } finally {
    await lab.stop();
  }

  process.stdout.write('\n');
  const header = ['kind', 'cycles', 'p50 ms', 'p99 ms', 'max ms', 'failed connects', 'cycles with failed', 'two holders', 'dead-host overlap'];
  const rows = chosen.map((kind) => {
    const mine = results.filter((r) => r.kind === kind);
    const outages = mine.map((r) => r.outageMs ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
    const at = (q: number) => quantile(outages, q);
    return [
      kind,
      String(mine.length),
      String(at(0.5)),
      String(at(0.99)),
      String(outages.at(-1)),
      String(mine.reduce((t, r) => t + r.failedConnects, 0)),
      String(mine.filter((r) => r.failedConnects > 0).length),
      String(mine.filter((r) => r.twoHoldersMs > 0).length),
      String(mine.filter((r) => r.deadHolderOverlapMs > 0).length),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
  if (jsonFile !== undefined) {
    writeFileSync(jsonFile, `${JSON.stringify({ cycles, probeIntervalMs, probeTimeoutMs, timing: timingMsDefault, results }, null, 2)}\n`);
    process.stdout.write(`\nevery cycle: ${jsonFile}\n`);
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:failover: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
