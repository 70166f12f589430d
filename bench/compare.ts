// Benchmark: raftvip and keepalived side by side, on the same lab, same hosts, same probe, same
// run. Builds the lab once (src/lab: 3 network namespaces on a bridge, a name server on each,
// the client connecting to VIP:80 every 5 ms) and runs, in turn, each contender holding the
// same VIP on the same hosts:
//
//   raftvip               at its defaults (heartbeat 50 ms, election timeout 200 ms);
//   keepalived-defaults   keepalived (Debian's package) at its defaults: VRRPv2, advert_int 1;
//   keepalived-fast       keepalived with VRRPv3 at --fast-advert-ms (default 100 ms).
//
// For each: K crash cycles (SIGKILL of the holder's daemon; raftvip's unit then runs
// `raftvip vip release`, keepalived's has no such step, so its host keeps the VIP and, its
// services being up, keeps answering on it: the client sees no outage, and the new master's copy
// and the dead one coexist until the daemon restarts), K power-offs (the holder's link cut and
// its daemon killed in one instant: the failure both must detect), K planned handovers (SIGTERM,
// as `systemctl stop` sends), the client-visible outage (last success before → first success
// after) and failed connects of each; a split-brain probe (the holder isolated from the other
// hosts for --partition-seconds while the client still reaches every host: how long two live
// hosts hold the VIP, i.e. answer ARP for it); a soak (--soak-minutes, every host's CPU
// saturated by a busy process and 1 % loss on every host's link: VIP moves and the probe's
// success rate; this kernel has no netem, so there is no jitter); and the footprint (RSS and
// CPU time per host over --footprint-seconds at idle). Then the ratio raftvip / keepalived per
// figure.
//
//   npm run bench:compare [-- --cycles 20] [--soak-minutes 10] [--footprint-seconds 60]
//        [--partition-seconds 5] [--fast-advert-ms 100] [--contenders raftvip,keepalived-defaults,keepalived-fast]
//        [--json FILE] [--svg FILE]
//
// Root only (network namespaces).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Lab, sleep } from '../src/lab/lab.js';
import { LabKeepalived, keepalivedDefaults, type KeepalivedSettings } from '../src/lab/lab-keepalived.js';
import type { LabHostName } from '../src/lab/lab-network.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { longestGap } from '../src/lab/probe-analysis.js';
import { option, quantile } from './bench-support.js';

const contenderNames = ['raftvip', 'keepalived-defaults', 'keepalived-fast'] as const;
type ContenderName = (typeof contenderNames)[number];
const kinds = ['crash', 'power-off', 'handover'] as const;
type Kind = (typeof kinds)[number];

/** After the new holder answers, keep watching for late failures (attempts in flight). */
const settleMs = 700;
/** Quiet time before each fault. */
const quietMs = 400;
/** Longest wait for one holder again after a fault (keepalived defaults need ~3.6 s). */
const steadyTimeoutMs = 30_000;
const clockTicksPerSecond = 100;

interface Cycle {
  kind: Kind;
  cycle: number;
  from: LabHostName;
  to: LabHostName;
  outageMs: number | null;
  failedConnects: number;
  /** crash: ms during which the crashed host still had the VIP beside the new holder. */
  deadCopyMs: number;
}

interface ContenderResult {
  name: ContenderName;
  cycles: Cycle[];
  splitBrain: { isolated: LabHostName; partitionMs: number; twoLiveHoldersMs: number };
  soak: { minutes: number; vipMoves: number; probeAttempts: number; probeSuccessRate: number } | null;
  footprint: { seconds: number; rssKiBPerHost: number; cpuMsPerHost: number; processesPerHost: number } | null;
}

interface Contender {
  readonly name: ContenderName;
  start(): Promise<void>;
  crash(host: LabHostName): Promise<void>;
  /** Link cut and daemon killed in one instant (resolves with it); powerOn undoes it as a reboot
   * would: the address is gone, the daemon starts. */
  powerOff(host: LabHostName): Promise<number>;
  powerOn(host: LabHostName): Promise<void>;
  terminate(host: LabHostName): Promise<void>;
  restart(host: LabHostName): Promise<void>;
  pids(host: LabHostName): number[];
  stop(): Promise<void>;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

function raftvipContender(lab: Lab): Contender {
  return {
    name: 'raftvip',
    start: () => lab.cluster.start(),
    crash: async (host) => {
      await lab.crash(host);
    },
    terminate: async (host) => {
      await lab.terminate(host);
    },
    restart: (host) => lab.cluster.start(host),
    powerOff: (host) => lab.powerOff(host),
    powerOn: (host) => lab.powerOn(host),
    pids: (host) => {
      const pid = lab.cluster.view(host).pid;
      return pid === null ? [] : [pid];
    },
    stop: async () => {
      await Promise.all(lab.hosts.filter((host) => lab.cluster.view(host).running).map((host) => lab.terminate(host)));
    },
  };
}

function keepalivedContender(lab: Lab, name: ContenderName, settings: KeepalivedSettings): Contender {
  const keepalived = new LabKeepalived({ network: lab.network, settings });
  return {
    name,
    start: () => keepalived.start(),
    crash: (host) => keepalived.crash(host),
    terminate: (host) => keepalived.terminate(host),
    // keepalived's start removes nothing it finds: a crashed host's VIP would stay with it, so the
    // restart does what a reboot would and clears it first.
    restart: async (host) => {
      keepalived.removeVip(host);
      await keepalived.start(host);
    },
    powerOff: async (host) => {
      lab.network.cutLink(host);
      const at = monotonicNowMs();
      await keepalived.crash(host);
      return at;
    },
    powerOn: async (host) => {
      keepalived.removeVip(host);
      lab.network.restoreLink(host);
      await keepalived.start(host);
    },
    pids: (host) => keepalived.pids(host),
    stop: () => keepalived.stop(),
  };
}

/** The one host that holds the VIP and that the client reached after `sinceMs`. */
async function waitForOneHolder(lab: Lab, options: { sinceMs: number; exclude?: LabHostName; ignore?: LabHostName }): Promise<{ holder: LabHostName; at: number }> {
  const deadline = monotonicNowMs() + steadyTimeoutMs;
  for (;;) {
    const holders = lab.watch.holders().filter((host) => host !== options.ignore);
    const [holder] = holders;
    if (holders.length === 1 && holder !== undefined && holder !== options.exclude) {
      const heard = lab.probe!.attempts().filter((a) => a.ok && a.host === holder && a.start >= options.sinceMs).at(-1);
      if (heard !== undefined) return { holder, at: heard.end };
    }
    if (monotonicNowMs() > deadline) throw new Error(`no single VIP holder within ${steadyTimeoutMs} ms (holders: ${lab.watch.holders().join(', ') || 'none'})`);
    await sleep(5);
  }
}

/** ms during which two or more hosts held the VIP, within [from, to] (VipWatch's sweep). */
function twoHoldersMs(lab: Lab, from: number, to: number): number {
  return lab.watch.maxSimultaneousHolders({ from, to }).overlaps.reduce((sum, overlap) => sum + overlap.durationMs, 0);
}

function cpuAndRss(pids: readonly number[]): { cpuMs: number; rssKiB: number } {
  let cpuMs = 0;
  let rssKiB = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpuMs += ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rssKiB += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch {
      // Gone.
    }
  }
  return { cpuMs, rssKiB };
}

async function runContender(lab: Lab, contender: Contender, options: { cycles: number; partitionMs: number; soakMinutes: number; footprintSeconds: number }): Promise<ContenderResult> {
  const write = (text: string) => process.stdout.write(text);
  write(`\n== ${contender.name}\n`);
  await contender.start();
  let steady = await waitForOneHolder(lab, { sinceMs: monotonicNowMs() });
  const cycles: Cycle[] = [];

  // Footprint first, at idle after start.
  let footprint: ContenderResult['footprint'] = null;
  if (options.footprintSeconds > 0) {
    await sleep(2000);
    const before = lab.hosts.map((host) => ({ host, pids: contender.pids(host), ...cpuAndRss(contender.pids(host)) }));
    await sleep(options.footprintSeconds * 1000);
    const after = before.map((entry) => cpuAndRss(entry.pids));
    const cpuMs = after.reduce((sum, entry, index) => sum + entry.cpuMs - before[index]!.cpuMs, 0) / lab.hosts.length;
    const rssKiB = after.reduce((sum, entry) => sum + entry.rssKiB, 0) / lab.hosts.length;
    footprint = {
      seconds: options.footprintSeconds,
      rssKiBPerHost: Math.round(rssKiB),
      cpuMsPerHost: round(cpuMs),
      processesPerHost: before.reduce((sum, entry) => sum + entry.pids.length, 0) / lab.hosts.length,
    };
    write(`  footprint over ${options.footprintSeconds} s idle: RSS ${footprint.rssKiBPerHost} KiB/host, CPU ${footprint.cpuMsPerHost} ms/host (${footprint.processesPerHost} processes/host)\n`);
  }

  for (const kind of kinds) {
    for (let cycle = 1; cycle <= options.cycles; cycle++) {
      await sleep(quietMs);
      steady = await waitForOneHolder(lab, { sinceMs: monotonicNowMs() - quietMs });
      const old = steady.holder;
      let at = monotonicNowMs();
      switch (kind) {
        case 'crash':
          await contender.crash(old);
          break;
        case 'power-off':
          at = await contender.powerOff(old);
          break;
        case 'handover':
          await contender.terminate(old);
          break;
      }
      // A crashed keepalived's host keeps its VIP (and, its services being up, keeps answering on
      // it); a powered-off host's copy is unreachable. Neither is a holder to wait out.
      const next = await waitForOneHolder(lab, { sinceMs: at, exclude: old, ...(kind === 'handover' ? {} : { ignore: old }) });
      await sleep(settleMs);
      const outageMs = longestGap(lab.probe!.attempts(), at - 200, monotonicNowMs());
      const failedConnects = lab.probe!.failedBetween(at - 200, monotonicNowMs()).length;
      // How long the crashed host's copy stayed while the new holder had it too.
      const deadCopyMs = kind === 'crash' ? round(twoHoldersMs(lab, at, monotonicNowMs())) : 0;
      cycles.push({ kind, cycle, from: old, to: next.holder, outageMs: outageMs === null ? null : round(outageMs), failedConnects, deadCopyMs });
      write(
        `  ${kind.padEnd(9)} #${String(cycle).padStart(2)} ${old}→${next.holder} outage ${String(outageMs === null ? '?' : round(outageMs)).padStart(7)} ms, failed ${failedConnects}` +
          `${deadCopyMs > 0 ? `, the crashed host kept the VIP beside the new holder for ${deadCopyMs} ms (until restarted)` : ''}\n`,
      );
      if (kind === 'power-off') await contender.powerOn(old);
      else await contender.restart(old);
    }
  }

  // Split brain: isolate the holder from the other hosts (the client still reaches everyone).
  await sleep(quietMs);
  steady = await waitForOneHolder(lab, { sinceMs: monotonicNowMs() - quietMs });
  const isolated = steady.holder;
  const cutAt = monotonicNowMs();
  lab.network.isolate(isolated);
  await sleep(options.partitionMs);
  lab.network.heal(isolated);
  const healedAt = monotonicNowMs();
  await sleep(3000);
  const twoLiveHoldersMs = round(twoHoldersMs(lab, cutAt, monotonicNowMs()));
  write(`  split brain: ${isolated} isolated for ${options.partitionMs} ms: two live holders for ${twoLiveHoldersMs} ms\n`);
  await waitForOneHolder(lab, { sinceMs: healedAt });

  // Soak: busy CPUs and 1 % loss everywhere; count VIP moves.
  let soak: ContenderResult['soak'] = null;
  if (options.soakMinutes > 0) {
    const busy: ChildProcess[] = lab.hosts.map((host) =>
      lab.network.spawnIn(lab.network.hostNamespace(host), process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
    );
    for (const host of lab.hosts) lab.network.loss(host, 1);
    const start = monotonicNowMs();
    const eventsBefore = lab.watch.events().length;
    try {
      await sleep(options.soakMinutes * 60_000);
    } finally {
      for (const host of lab.hosts) lab.network.loss(host, null);
      for (const child of busy) child.kill('SIGKILL');
    }
    const end = monotonicNowMs();
    const added = lab.watch.events().slice(eventsBefore).filter((event) => event.kind === 'added').length;
    const attempts = lab.probe!.attempts().filter((a) => a.start >= start && a.start <= end);
    const ok = attempts.filter((a) => a.ok).length;
    soak = { minutes: options.soakMinutes, vipMoves: added, probeAttempts: attempts.length, probeSuccessRate: attempts.length === 0 ? 0 : ok / attempts.length };
    write(`  soak ${options.soakMinutes} min (CPU saturated, 1 % loss): VIP moves ${added}, probe success ${(soak.probeSuccessRate * 100).toFixed(3)} % of ${attempts.length}\n`);
  }

  await contender.stop();
  // Nothing of this contender may hold the VIP when the next one starts.
  for (const host of lab.watch.holders()) {
    execFileSync('ip', ['-n', lab.network.hostNamespace(host), 'addr', 'del', `${lab.watch.vip}/32`, 'dev', 'eth0'], { stdio: 'ignore' });
  }
  return { name: contender.name, cycles, splitBrain: { isolated, partitionMs: options.partitionMs, twoLiveHoldersMs }, soak, footprint };
}

function summary(result: ContenderResult, kind: Kind): { p50: number; p99: number; max: number; failed: number } {
  const mine = result.cycles.filter((cycle) => cycle.kind === kind);
  const outages = mine.map((cycle) => cycle.outageMs ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
  return { p50: quantile(outages, 0.5), p99: quantile(outages, 0.99), max: outages.at(-1) ?? Number.NaN, failed: mine.reduce((sum, cycle) => sum + cycle.failedConnects, 0) };
}

/** A strip chart of every cycle's outage, per contender and kind, on a log scale. */
function renderSvg(results: readonly ContenderResult[]): string {
  const width = 900;
  const rowHeight = 34;
  const left = 230;
  const right = 30;
  const rows = results.flatMap((result) => kinds.map((kind) => ({ result, kind })));
  const height = 60 + rows.length * rowHeight + 40;
  const minMs = 1;
  const maxMs = 10_000;
  const x = (ms: number) => left + ((Math.log10(Math.max(minMs, Math.min(maxMs, ms))) - Math.log10(minMs)) / (Math.log10(maxMs) - Math.log10(minMs))) * (width - left - right);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="24" font-size="14">Client-visible outage per cycle (ms, log scale); bar: median</text>`,
  ];
  for (const tick of [1, 10, 100, 1000, 10_000]) {
    parts.push(`<line x1="${x(tick)}" y1="40" x2="${x(tick)}" y2="${height - 30}" stroke="#ddd"/>`, `<text x="${x(tick)}" y="${height - 12}" text-anchor="middle">${tick}</text>`);
  }
  rows.forEach(({ result, kind }, index) => {
    const y = 60 + index * rowHeight;
    parts.push(`<text x="${left - 10}" y="${y + 4}" text-anchor="end">${result.name} · ${kind}</text>`);
    if (kind === 'crash' && result.name !== 'raftvip') parts.push(`<text x="${left + 4}" y="${y - 8}" font-size="10" fill="#666">(the crashed host keeps the VIP and answers: no outage, two holders)</text>`);
    const outages = result.cycles.filter((cycle) => cycle.kind === kind && cycle.outageMs !== null).map((cycle) => cycle.outageMs as number);
    const color = result.name === 'raftvip' ? '#1f77b4' : result.name === 'keepalived-defaults' ? '#d62728' : '#ff7f0e';
    for (const ms of outages) parts.push(`<circle cx="${x(ms).toFixed(1)}" cy="${y}" r="4" fill="${color}" fill-opacity="0.55"/>`);
    const median = quantile([...outages].sort((a, b) => a - b), 0.5);
    if (Number.isFinite(median)) parts.push(`<line x1="${x(median)}" y1="${y - 10}" x2="${x(median)}" y2="${y + 10}" stroke="black" stroke-width="2"/>`);
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench:compare needs root: it builds network namespaces\n');
    process.exit(2);
  }
  const cycles = Number(option('--cycles') ?? 20);
  const soakMinutes = Number(option('--soak-minutes') ?? 10);
  const footprintSeconds = Number(option('--footprint-seconds') ?? 60);
  const partitionMs = Number(option('--partition-seconds') ?? 5) * 1000;
  const fastAdvertMs = Number(option('--fast-advert-ms') ?? 100);
  const chosen = (option('--contenders') ?? contenderNames.join(',')).split(',') as ContenderName[];
  for (const name of chosen) if (!contenderNames.includes(name)) throw new Error(`unknown contender ${name}; choose from ${contenderNames.join(', ')}`);
  const jsonFile = option('--json');
  const svgFile = option('--svg');

  const lab = await Lab.start({ hosts: 3, daemons: false, probeIntervalMs: 5, probeTimeoutMs: 500 });
  const results: ContenderResult[] = [];
  const versions = { keepalived: '', node: process.version, kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() };
  try {
    versions.keepalived = await new Promise<string>((resolve) => {
      const child = spawn('keepalived', ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.on('close', () => resolve(text.split('\n')[0]?.trim() ?? ''));
      child.on('error', () => resolve('not installed'));
    });
    for (const name of chosen) {
      const contender =
        name === 'raftvip'
          ? raftvipContender(lab)
          : keepalivedContender(lab, name, name === 'keepalived-defaults' ? keepalivedDefaults : { name: 'fast', vrrpVersion: 3, advertIntervalMs: fastAdvertMs });
      results.push(await runContender(lab, contender, { cycles, partitionMs, soakMinutes, footprintSeconds }));
    }
  } finally {
    await lab.stop();
  }

  process.stdout.write('\ncontender             kind      p50 ms  p99 ms  max ms  failed  | split brain ms | soak moves, success | RSS KiB  CPU ms/60s\n');
  for (const result of results) {
    for (const kind of kinds) {
      const s = summary(result, kind);
      const extra =
        kind === 'crash'
          ? ` | ${String(result.splitBrain.twoLiveHoldersMs).padStart(14)} | ${result.soak === null ? '-' : `${result.soak.vipMoves}, ${(result.soak.probeSuccessRate * 100).toFixed(3)} %`} | ${result.footprint?.rssKiBPerHost ?? '-'}  ${result.footprint === null ? '-' : round((result.footprint.cpuMsPerHost * 60) / result.footprint.seconds)}`
          : '';
      process.stdout.write(`${result.name.padEnd(21)} ${kind.padEnd(9)} ${String(s.p50).padStart(6)}  ${String(s.p99).padStart(6)}  ${String(s.max).padStart(6)}  ${String(s.failed).padStart(6)}${extra}\n`);
    }
  }
  const raftvip = results.find((result) => result.name === 'raftvip');
  if (raftvip !== undefined) {
    for (const other of results.filter((result) => result.name !== 'raftvip')) {
      const ratio = (a: number, b: number) => (Math.round((a / b) * 100) / 100).toString();
      const ratios = kinds.map((kind) => {
        const mine = summary(raftvip, kind);
        const theirs = summary(other, kind);
        return `${kind} p50 ${ratio(mine.p50, theirs.p50)}× p99 ${ratio(mine.p99, theirs.p99)}×`;
      });
      process.stdout.write(`raftvip / ${other.name}: ${ratios.join(', ')}\n`);
    }
  }
  if (jsonFile !== undefined) {
    writeFileSync(jsonFile, `${JSON.stringify({ versions, options: { cycles, soakMinutes, footprintSeconds, partitionMs, fastAdvertMs }, results }, null, 2)}\n`);
    process.stdout.write(`\nevery figure: ${jsonFile}\n`);
  }
  if (svgFile !== undefined) {
    writeFileSync(svgFile, renderSvg(results));
    process.stdout.write(`chart: ${svgFile}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:compare: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
