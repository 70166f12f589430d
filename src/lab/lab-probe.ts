// LabProbe: the controller's side of the client probe (probe.ts). It owns one probe process in
// the lab's client namespace, the attempts it reports (kept in memory, bounded), and hands them
// to the pure analysis in probe-analysis.ts. The probe stamps its attempts on CLOCK_MONOTONIC,
// so they compare directly with monotonicNowMs() taken here around a fault.

import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LabError, labInvalidOption, labTimeout } from './lab-errors.js';
import type { LabNetwork } from './lab-network.js';
import { failedBetween, outageAround, type Outage, type OutageOptions } from './probe-analysis.js';
import {
  parseTarget,
  probeIntervalMsMax,
  probeIntervalMsMin,
  probeTimeoutMsMax,
  probeTimeoutMsMin,
  type ProbeAttempt,
} from './probe-protocol.js';

const probeScript = fileURLToPath(new URL('./probe.js', import.meta.url));

/** Attempts kept; past this the oldest are dropped (at 5 ms, over 40 minutes of probing). */
export const labProbeAttemptsMax = 500_000;
/** From spawn to the probe's first line (a Node start, ~0.1 s). */
export const labProbeStartTimeoutMs = 10_000;
/** After SIGTERM the probe lets its attempts in flight finish (at most timeoutMs); this is on top. */
const probeStopGraceMs = 2_000;
const probeOutputLineBytesMax = 64 * 1024;

export interface LabProbeOptions {
  network: Pick<LabNetwork, 'spawnIn' | 'clientNamespace'>;
  /** `10.213.0.100:80` or `[fd72:7276::100]:80`. */
  target: string;
  /** A new attempt every this many ms (default 5). */
  intervalMs?: number;
  /** An attempt without the name after this many ms fails with ETIMEDOUT (default 200). */
  timeoutMs?: number;
}

export interface ProbeSummary {
  /** Attempts the probe started. */
  attempts: number;
  /** Ticks that found probeAttemptsInFlightMax attempts in flight and started none. */
  skipped: number;
}

export class LabProbe {
  readonly target: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  private readonly child: ChildProcess;
  private readonly recorded: ProbeAttempt[] = [];
  private dropped = 0;
  private partial = '';
  private stderr = '';
  private summary: ProbeSummary | null = null;
  private readonly waiters = new Set<() => void>();
  private stopping: Promise<ProbeSummary> | null = null;
  private exited = false;
  private started: { resolve: () => void; reject: (error: Error) => void } | null = null;

  /** Spawns the probe in the client namespace; resolves once it probes. */
  static async start(options: LabProbeOptions): Promise<LabProbe> {
    const probe = new LabProbe(options);
    try {
      await probe.waitStarted();
    } catch (error) {
      await probe.stop().catch(() => undefined);
      throw error;
    }
    return probe;
  }

  private constructor(options: LabProbeOptions) {
    if (parseTarget(options.target) === null) throw labInvalidOption('target', `expected IPV4:PORT or [IPV6]:PORT, got ${JSON.stringify(options.target)}`);
    this.target = options.target;
    this.intervalMs = checkedInteger('intervalMs', options.intervalMs ?? 5, probeIntervalMsMin, probeIntervalMsMax);
    this.timeoutMs = checkedInteger('timeoutMs', options.timeoutMs ?? 200, probeTimeoutMsMin, probeTimeoutMsMax);
    this.child = options.network.spawnIn(
      options.network.clientNamespace,
      process.execPath,
      [probeScript, '--target', this.target, '--interval-ms', String(this.intervalMs), '--timeout-ms', String(this.timeoutMs)],
      // stdin stays open: when this process dies the probe sees it close and stops.
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => this.onChunk(chunk));
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-probeOutputLineBytesMax)));
    this.child.stdin!.on('error', () => {});
    // 'close', not 'exit': by then stdout has been read to its end.
    this.child.once('close', (code, signal) => {
      this.exited = true;
      this.started?.reject(new LabError({ code: 'LAB_PROCESS_FAILED', detail: `the probe exited (${signal ?? code}) before probing: ${this.stderr.trim()}` }));
      this.notify();
    });
  }

  private waitStarted(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(labTimeout(`the probe did not start within ${labProbeStartTimeoutMs} ms: ${this.stderr.trim()}`)), labProbeStartTimeoutMs);
      this.started = {
        resolve: () => {
          clearTimeout(timer);
          this.started = null;
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          this.started = null;
          reject(error);
        },
      };
    });
  }

  private onChunk(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > probeOutputLineBytesMax) this.partial = '';
    for (const line of lines) {
      if (line.length === 0) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      const record = parsed as Partial<ProbeAttempt> & { probing?: unknown; done?: ProbeSummary };
      if (record.probing !== undefined) this.started?.resolve();
      else if (record.done !== undefined) this.summary = record.done;
      else if (typeof record.start === 'number' && typeof record.end === 'number' && typeof record.ok === 'boolean') {
        this.recorded.push({ start: record.start, end: record.end, ok: record.ok, host: record.host ?? null, error: record.error ?? null });
        if (this.recorded.length > labProbeAttemptsMax) {
          this.recorded.shift();
          this.dropped++;
        }
      }
    }
    this.notify();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Finished attempts in the order they finished. */
  attempts(): readonly ProbeAttempt[] {
    return this.recorded;
  }

  /** Attempts dropped because more than labProbeAttemptsMax were kept. */
  get droppedAttempts(): number {
    return this.dropped;
  }

  outageAround(faultAtMs: number, options: OutageOptions = {}): Outage {
    return outageAround(this.recorded, faultAtMs, options);
  }

  failedBetween(fromMs: number, toMs: number): ProbeAttempt[] {
    return failedBetween(this.recorded, fromMs, toMs);
  }

  /** Resolves with the first attempt, finished from now on, that `predicate` accepts. */
  waitForAttempt(predicate: (attempt: ProbeAttempt) => boolean, timeoutMs: number): Promise<ProbeAttempt> {
    // Indexes count every attempt ever recorded, so dropping the oldest does not shift them.
    let next = this.recorded.length + this.dropped;
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      const timer = setTimeout(() => {
        done();
        reject(labTimeout(`no matching probe attempt within ${timeoutMs} ms (${this.recorded.length} attempts so far)`));
      }, timeoutMs);
      const check = (): void => {
        const total = this.recorded.length + this.dropped;
        for (let i = Math.max(next, this.dropped); i < total; i++) {
          const attempt = this.recorded[i - this.dropped]!;
          if (predicate(attempt)) {
            done();
            resolve(attempt);
            return;
          }
        }
        next = total;
        if (this.exited) {
          done();
          reject(new LabError({ code: 'LAB_PROCESS_FAILED', detail: `the probe exited: ${this.stderr.trim()}` }));
        }
      };
      this.waiters.add(check);
    });
  }

  /** Stops the probe (SIGTERM by PID; it finishes the attempts in flight) and waits for its
   * last line. Idempotent. */
  stop(): Promise<ProbeSummary> {
    this.stopping ??= new Promise<ProbeSummary>((resolve) => {
      const finish = (): void => resolve(this.summary ?? { attempts: this.recorded.length + this.dropped, skipped: 0 });
      if (this.exited || this.child.pid === undefined) return finish();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), this.timeoutMs + probeStopGraceMs);
      this.child.once('close', () => {
        clearTimeout(timer);
        finish();
      });
      this.child.kill('SIGTERM');
    });
    return this.stopping;
  }
}

function checkedInteger(option: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw labInvalidOption(option, `must be an integer from ${min} to ${max}, got ${value}`);
  return value;
}
