// Benchmark: what the load balancer costs and how fast it drains, on real hosts. Builds the lab
// once (src/lab: 3 network namespaces on a bridge, a real raftvip daemon and a kube-apiserver
// stand-in on each, the load balancer at its defaults: nftables on this kernel, rr, /readyz
// every 500 ms, fall 2), waits until every backend is ready, then measures:
//
//   connect latency  TCP connect time (SYN to SYN-ACK, as the client's connect() sees it) to
//                    VIP:6443 (through the VIP holder's DNAT to whichever backend) and straight
//                    to a backend (each in turn), interleaved in rounds so both see the same
//                    machine load. Reported: p50/p90/p99 and the ratio VIP / direct; the
//                    same for a whole HTTPS request on a new connection (TCP + TLS + GET), what
//                    a kube-apiserver client pays.
//   drain time       K cycles: a backend (not the holder) turns not ready (SIGUSR1: /readyz
//                    answers 503 while it keeps serving) while the client opens a new connection
//                    every 5 ms; the time from /readyz failing to the last new connection that
//                    reached it. Bound from the configuration: fall × interval (+ one reconcile).
//
//   npm run bench:lb [-- --connects 2000] [--cycles 10] [--json FILE]
//
// Root only (network namespaces). Prints a table; --json writes every figure.

import { writeFileSync } from 'node:fs';
import { Lab, sleep } from '../src/lab/lab.js';
import { labApiserverPort } from '../src/lab/lab-cluster.js';
import type { LbAttempt } from '../src/lab/lb-client.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { healthCheckIntervalMsDefault, healthCheckRiseFallDefault } from '../src/config/load-balancer-schema.js';
import { option, quantile } from './bench-support.js';

/** Rounds of VIP-then-direct measurements; the direct target rotates over every backend, so
 * both sides reach the same mix of backends under the same machine load. */
const rounds = 30;
const drainIntervalMs = 5;
const readyTimeoutMs = 20_000;

function round(x: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(x * factor) / factor;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench:lb needs root: it builds network namespaces\n');
    process.exit(2);
  }
  const connects = Number(option('--connects') ?? 2000);
  const cycles = Number(option('--cycles') ?? 10);
  const jsonFile = option('--json');
  const lab = await Lab.start({ hosts: 3, apiservers: { startDelayMs: 300, shutdownDelayMs: 2000 }, probe: false });
  const connectMs: { vip: number[]; direct: number[] } = { vip: [], direct: [] };
  /** A whole HTTPS request on a new connection (TCP + TLS handshake + GET /whoami), as a client of
   * kube-apiserver pays it. */
  const requestMs: { vip: number[]; direct: number[] } = { vip: [], direct: [] };
  const drains: { backend: string; drainMs: number | null; failedConnects: number }[] = [];
  let leader = '';
  let directBackend = '';
  try {
    leader = (await lab.waitForSteady()).leader;
    await lab.waitForBackendsReady(3, readyTimeoutMs);
    directBackend = lab.hosts.find((host) => host !== leader) ?? lab.hosts[0]!;
    process.stdout.write(`lab up: leader ${leader}; ${connects} connects each way, direct ones rotating over ${lab.hosts.join(', ')}\n`);

    const perRound = Math.max(1, Math.ceil(connects / rounds));
    for (let index = 0; index < rounds; index++) {
      const directTarget = `${lab.network.hostAddress(lab.hosts[index % lab.hosts.length]!)}:${labApiserverPort}`;
      const viaVip = await lab.runLbClient({ count: perRound, intervalMs: 0, mode: 'connect' });
      const direct = await lab.runLbClient({ target: directTarget, count: perRound, intervalMs: 0, mode: 'connect' });
      const ok = (attempts: LbAttempt[]) => attempts.flatMap((attempt) => (attempt.error === null && attempt.connectMs !== null ? [attempt.connectMs] : []));
      connectMs.vip.push(...ok(viaVip));
      connectMs.direct.push(...ok(direct));
      const whole = (attempts: LbAttempt[]) => attempts.flatMap((attempt) => (attempt.error === null ? [attempt.totalMs] : []));
      const requestsPerRound = Math.max(1, Math.ceil(perRound / 4));
      requestMs.vip.push(...whole(await lab.runLbClient({ count: requestsPerRound, intervalMs: 0 })));
      requestMs.direct.push(...whole(await lab.runLbClient({ target: directTarget, count: requestsPerRound, intervalMs: 0 })));
    }

    for (let cycle = 1; cycle <= cycles; cycle++) {
      const backend = lab.hosts.filter((host) => host !== leader)[cycle % 2] ?? directBackend;
      const run = lab.runLbClient({ durationMs: 2500, intervalMs: drainIntervalMs });
      await sleep(400);
      const sinceMs = monotonicNowMs();
      lab.cluster.signalApiserver(backend, 'SIGUSR1');
      const notReady = await lab.cluster.waitForApiserverEvent(backend, 'not-ready', { sinceMs, timeoutMs: 2000 });
      const attempts = await run;
      const last = attempts.filter((attempt) => attempt.backend === backend).at(-1);
      const drainMs = last === undefined ? null : round(last.startMs - notReady.atMs, 1);
      const failedConnects = attempts.filter((attempt) => attempt.error !== null).length;
      drains.push({ backend, drainMs, failedConnects });
      process.stdout.write(`  drain #${String(cycle).padStart(2)} ${backend}: last new connection ${drainMs} ms after /readyz failed, failed connects ${failedConnects}\n`);
      lab.cluster.signalApiserver(backend, 'SIGUSR1');
      await lab.waitForBackendsReady(3, readyTimeoutMs);
    }
  } finally {
    await lab.stop();
  }

  const vip = [...connectMs.vip].sort((a, b) => a - b);
  const direct = [...connectMs.direct].sort((a, b) => a - b);
  const drainTimes = drains.map((drain) => drain.drainMs ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
  const boundMs = healthCheckRiseFallDefault * healthCheckIntervalMsDefault;
  process.stdout.write('\nconnect latency (ms)    n      p50     p90     p99\n');
  for (const [name, values] of [['via VIP:6443', vip], ['direct to backend', direct]] as const) {
    process.stdout.write(`${name.padEnd(22)} ${String(values.length).padStart(5)}  ${[0.5, 0.9, 0.99].map((q) => quantile(values, q).toFixed(3).padStart(6)).join('  ')}\n`);
  }
  const ratio = (q: number) => round(quantile(vip, q) / quantile(direct, q), 2);
  process.stdout.write(`ratio VIP / direct      p50 ${ratio(0.5)}×  p90 ${ratio(0.9)}×  p99 ${ratio(0.99)}×  (goal ≤ 1.1×)\n`);
  const requestVip = [...requestMs.vip].sort((a, b) => a - b);
  const requestDirect = [...requestMs.direct].sort((a, b) => a - b);
  const requestRatio = (q: number) => round(quantile(requestVip, q) / quantile(requestDirect, q), 2);
  process.stdout.write('\nHTTPS request on a new connection (ms)  n      p50     p90     p99\n');
  for (const [name, values] of [['via VIP:6443', requestVip], ['direct to backend', requestDirect]] as const) {
    process.stdout.write(`${name.padEnd(38)} ${String(values.length).padStart(5)}  ${[0.5, 0.9, 0.99].map((q) => quantile(values, q).toFixed(3).padStart(6)).join('  ')}\n`);
  }
  process.stdout.write(`ratio VIP / direct                      p50 ${requestRatio(0.5)}×  p90 ${requestRatio(0.9)}×  p99 ${requestRatio(0.99)}×\n`);
  process.stdout.write(
    `\ndrain (not ready → last new connection), ${drains.length} cycles: p50 ${quantile(drainTimes, 0.5)} ms, max ${drainTimes.at(-1)} ms ` +
      `(fall × interval = ${boundMs} ms); failed connects ${drains.reduce((sum, drain) => sum + drain.failedConnects, 0)}\n`,
  );
  if (jsonFile !== undefined) {
    const summary = {
      connectMs: {
        vip: { n: vip.length, p50: quantile(vip, 0.5), p90: quantile(vip, 0.9), p99: quantile(vip, 0.99) },
        direct: { n: direct.length, p50: quantile(direct, 0.5), p90: quantile(direct, 0.9), p99: quantile(direct, 0.99) },
        ratio: { p50: ratio(0.5), p90: ratio(0.9), p99: ratio(0.99) },
      },
      requestMs: {
        vip: { n: requestVip.length, p50: quantile(requestVip, 0.5), p90: quantile(requestVip, 0.9), p99: quantile(requestVip, 0.99) },
        direct: { n: requestDirect.length, p50: quantile(requestDirect, 0.5), p90: quantile(requestDirect, 0.9), p99: quantile(requestDirect, 0.99) },
        ratio: { p50: requestRatio(0.5), p90: requestRatio(0.9), p99: requestRatio(0.99) },
      },
      drain: { cycles: drains.length, p50Ms: quantile(drainTimes, 0.5), maxMs: drainTimes.at(-1), boundMs, results: drains },
    };
    writeFileSync(jsonFile, `${JSON.stringify({ leader, directBackend, summary, raw: connectMs }, null, 2)}\n`);
    process.stdout.write(`\nevery figure: ${jsonFile}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:lb: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
