// VipWatch: the lab's record of when the VIP was on which host's interfaces. It owns one
// long-lived `ip -n NS -o monitor address` child per host, the parser for its lines, the
// per-host holder timeline built from them, and the pure analysis of that timeline ("at most one
// host has the VIP on an interface at every instant").
//
// Every line is stamped on arrival with CLOCK_MONOTONIC ms (monotonic-clock.ts), the clock the
// probe and the tests use too. Start-up: the monitors are spawned, the watch waits until each
// monitor's netlink socket has joined the address multicast groups (read from
// /proc/PID/net/netlink: from then on no change can be missed), and only then reads the current
// addresses with `ip -j addr`; a VIP found there counts as held since the watch started.
//
// Stamping latency, measured on the project's 2-core VM (lab-network.test.ts prints it each run):
// a helper in a host namespace adds and removes the VIP by rtnetlink 40 times, stamping just
// before each request and just after its acknowledgement; the kernel notifies the monitors
// between the two. Median stamp: 0.0-0.02 ms after the acknowledgement and 0.4-0.55 ms after
// the request was made; worst 3-4.5 ms after the request. So a stamp is within about half a
// millisecond of the kernel's change, unless this process's event loop is busy (a stamp waits
// for it: a test that runs execFileSync while watching delays every stamp until it returns).
// Overlaps of a few ms are therefore within the noise of the stamps, which is why they are
// reported with their durations instead of being hidden.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { addressCopies, canonicalAddress, labOracleTimeoutMs, labVip, type LabHostName } from './lab-network.js';
import { LabError, labCommandFailed, labTimeout } from './lab-errors.js';
import { monotonicNowMs } from './monotonic-clock.js';

const execFileAsync = promisify(execFile);

/** How long a monitor may take to join the address groups after it was spawned. */
export const monitorReadyTimeoutMs = 3_000;
const monitorReadyPollIntervalMs = 2;
/** How long a monitor may take to exit after SIGTERM before it is killed. */
const monitorStopTimeoutMs = 1_000;
/** Recorded address events per watch; the oldest are dropped past this (a test makes dozens). */
export const vipEventsMax = 100_000;
/** A line longer than this from `ip monitor` is not an address line. */
const monitorLineBytesMax = 64 * 1024;
/** RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR: the groups `ip monitor address` joins. */
const addressGroupsMask = 0x10 | 0x100;

/** What VipWatch needs of a LabNetwork. */
export interface WatchedHosts {
  readonly hosts: readonly LabHostName[];
  hostNamespace(host: LabHostName): string;
}

export interface VipWatchOptions {
  network: WatchedHosts;
  /** The address to follow; default the lab VIP 10.213.0.100. */
  vip?: string;
}

/** One change of one copy of the VIP, as stamped on arrival. */
export interface VipAddressEvent {
  host: LabHostName;
  /** `present`: found by the initial read, held since the watch started. */
  kind: 'added' | 'deleted' | 'present';
  interface: string;
  prefixLength: number;
  /** CLOCK_MONOTONIC ms at which the line (or the initial read) arrived. */
  at: number;
}

/** A span during which a host had at least one copy of the VIP. */
export interface HolderInterval {
  host: LabHostName;
  from: number;
  /** null: still held. */
  to: number | null;
}

/** A span during which more than one host held the VIP. */
export interface HolderOverlap {
  from: number;
  to: number;
  durationMs: number;
  hosts: LabHostName[];
}

export interface SimultaneousHoldersOptions {
  from: number;
  to: number;
  /** Leave a holder out of the count at time t (say, a host known to be partitioned then).
   * Evaluated at the start of each span between two timeline boundaries. */
  exclude?: (host: LabHostName, t: number) => boolean;
}

export interface SimultaneousHolders {
  /** The most hosts holding the VIP at one instant in [from, to). */
  max: number;
  /** Every span with more than one holder, however short. */
  overlaps: HolderOverlap[];
}

/** A parsed `ip -o monitor address` line about one address. */
export interface MonitorAddressLine {
  deleted: boolean;
  interface: string;
  family: 'inet' | 'inet6';
  address: string;
  prefixLength: number;
}

/**
 * Splits `ip -ts` output's `[2026-11-21T11:43:03.821337] ` prefix (local time, microseconds) from
 * the line; wallMs is epoch ms with the microseconds as a fraction, null without a prefix.
 */
export function splitMonitorTimestamp(text: string): { line: string; wallMs: number | null } {
  const match = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?\]\s*/.exec(text);
  if (!match) return { line: text, wallMs: null };
  const seconds = Date.parse(match[1]!); // no zone: local time, as ip prints it
  if (Number.isNaN(seconds)) return { line: text.slice(match[0].length), wallMs: null };
  const fraction = match[2] === undefined ? 0 : Number(`0.${match[2]}`) * 1000;
  return { line: text.slice(match[0].length), wallMs: seconds + fraction };
}

/**
 * Parses one line of `ip -o monitor address`:
 * `[Deleted ]2: eth0    inet 10.213.0.100/32 scope global eth0\       valid_lft ...`
 * (an `[ADDR]` tag may lead when several objects are monitored). Null for other lines.
 */
export function parseMonitorAddressLine(line: string): MonitorAddressLine | null {
  const match = /^(?:\[ADDR\]\s*)?(Deleted\s+)?\d+:\s+(\S+)\s+(inet6?)\s+([0-9a-fA-F.:]+)\/(\d+)/.exec(line);
  if (!match) return null;
  return {
    deleted: match[1] !== undefined,
    interface: match[2]!,
    family: match[3] as 'inet' | 'inet6',
    address: canonicalAddress(match[4]!.toLowerCase()),
    prefixLength: Number(match[5]),
  };
}

/**
 * Folds address events into per-host holder intervals: a host holds the VIP from the moment its
 * first copy appears until its last copy goes (two copies on one host are one holder). A
 * `deleted` without a matching add means the copy was there before the watch saw it: it counts
 * from `startedAt`.
 */
export function holderIntervals(events: readonly VipAddressEvent[], startedAt: number): HolderInterval[] {
  const intervals: HolderInterval[] = [];
  const copies = new Map<LabHostName, Set<string>>();
  const open = new Map<LabHostName, HolderInterval>();
  for (const event of events) {
    const key = `${event.interface}/${event.prefixLength}`;
    const held = copies.get(event.host) ?? new Set<string>();
    copies.set(event.host, held);
    if (event.kind === 'deleted') {
      if (!held.has(key)) {
        // Gone before we saw it come: held since the start, unless another copy's interval is open.
        if (!open.has(event.host) && held.size === 0) intervals.push({ host: event.host, from: startedAt, to: event.at });
        continue;
      }
      held.delete(key);
      const interval = open.get(event.host);
      if (held.size === 0 && interval) {
        interval.to = event.at;
        open.delete(event.host);
      }
      continue;
    }
    if (held.has(key)) continue;
    held.add(key);
    if (!open.has(event.host)) {
      const interval: HolderInterval = { host: event.host, from: event.kind === 'present' ? startedAt : event.at, to: null };
      open.set(event.host, interval);
      intervals.push(interval);
    }
  }
  return intervals.sort((a, b) => a.from - b.from);
}

/** Who holds at time t: intervals with from <= t < to. */
export function holdersAtTime(intervals: readonly HolderInterval[], t: number): LabHostName[] {
  const hosts = intervals.filter((i) => i.from <= t && (i.to === null || t < i.to)).map((i) => i.host);
  return [...new Set(hosts)].sort();
}

/**
 * The most simultaneous holders in [from, to) and every span with more than one, by a sweep over
 * the interval boundaries. Overlaps are never rounded away: one of 0.3 ms is reported as such,
 * and the caller decides what stamping jitter it tolerates.
 */
export function simultaneousHolders(intervals: readonly HolderInterval[], options: SimultaneousHoldersOptions): SimultaneousHolders {
  const { from, to } = options;
  const boundaries = new Set<number>([from]);
  for (const interval of intervals) {
    if (interval.from > from && interval.from < to) boundaries.add(interval.from);
    if (interval.to !== null && interval.to > from && interval.to < to) boundaries.add(interval.to);
  }
  const points = [...boundaries].sort((a, b) => a - b);
  let max = 0;
  const overlaps: HolderOverlap[] = [];
  let current: HolderOverlap | null = null;
  for (let i = 0; i < points.length; i++) {
    const start = points[i]!;
    const end = points[i + 1] ?? to;
    if (end <= start) continue;
    const holders = holdersAtTime(intervals, start).filter((host) => !(options.exclude?.(host, start) ?? false));
    max = Math.max(max, holders.length);
    if (holders.length > 1) {
      if (current && current.to === start) {
        current.to = end;
        current.durationMs = end - current.from;
        current.hosts = [...new Set([...current.hosts, ...holders])].sort();
      } else {
        current = { from: start, to: end, durationMs: end - start, hosts: holders };
        overlaps.push(current);
      }
    } else {
      current = null;
    }
  }
  return { max, overlaps };
}

interface Monitor {
  host: LabHostName;
  child: ChildProcess;
  /** Text after the last newline, waiting for the rest of its line. */
  partial: string;
  exited: boolean;
}

export class VipWatch {
  readonly vip: string;
  /** CLOCK_MONOTONIC ms when the monitors were spawned: a VIP found by the initial read is
   * counted from here. */
  readonly startedAt: number;
  private readonly network: WatchedHosts;
  /** Wall-clock ms minus CLOCK_MONOTONIC ms, read once at start (the lab runs for minutes, over
   * which the two clocks agree to well under a millisecond unless someone steps the clock). */
  private readonly wallMinusMonotonicMs: number;
  private readonly monitors: Monitor[] = [];
  private readonly recorded: VipAddressEvent[] = [];
  private droppedEvents = 0;
  private readonly waiters = new Set<() => void>();
  private stopping: Promise<void> | null = null;
  /** Monitors that died before stop(), with what they wrote on stderr. */
  private readonly failures: string[] = [];

  /** Spawns the monitors, waits until they listen, then reads the current addresses. */
  static async start(options: VipWatchOptions): Promise<VipWatch> {
    const watch = new VipWatch(options);
    try {
      await watch.waitUntilListening();
      await watch.readInitial();
    } catch (error) {
      await watch.stop();
      throw error;
    }
    return watch;
  }

  private constructor(options: VipWatchOptions) {
    this.network = options.network;
    this.vip = canonicalAddress(options.vip ?? labVip);
    this.startedAt = monotonicNowMs();
    this.wallMinusMonotonicMs = performance.timeOrigin + performance.now() - monotonicNowMs();
    for (const host of this.network.hosts) this.monitors.push(this.spawnMonitor(host));
  }

  private spawnMonitor(host: LabHostName): Monitor {
    // `-ts`: the monitor stamps each event itself when it reads it from its netlink socket, so a
    // busy controller event loop (a synchronous `ip` call, a burst of lines from another host)
    // cannot delay or reorder the stamps; they are converted to CLOCK_MONOTONIC (wallToMonotonic).
    const child = spawn('ip', ['-n', this.network.hostNamespace(host), '-ts', '-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const monitor: Monitor = { host, child, partial: '', exited: false };
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => this.onChunk(monitor, chunk, monotonicNowMs()));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-monitorLineBytesMax)));
    child.once('error', (error) => this.failures.push(`${host}: ${error.message}`));
    child.once('exit', (code, signal) => {
      monitor.exited = true;
      if (this.stopping === null) this.failures.push(`${host}: ip monitor exited (${signal ?? code}) ${stderr.trim()}`);
      this.notify();
    });
    return monitor;
  }

  private onChunk(monitor: Monitor, chunk: string, at: number): void {
    const text = monitor.partial + chunk;
    const lines = text.split('\n');
    monitor.partial = lines.pop() ?? '';
    if (monitor.partial.length > monitorLineBytesMax) monitor.partial = '';
    for (const stamped of lines) {
      const { line, wallMs } = splitMonitorTimestamp(stamped);
      const parsed = parseMonitorAddressLine(line);
      if (!parsed || parsed.address !== this.vip) continue;
      // The monitor's own stamp, unless it is missing or later than the arrival (it cannot be).
      const stampedAt = wallMs === null ? at : Math.min(at, wallMs - this.wallMinusMonotonicMs);
      this.record({ host: monitor.host, kind: parsed.deleted ? 'deleted' : 'added', interface: parsed.interface, prefixLength: parsed.prefixLength, at: stampedAt });
    }
  }

  private record(event: VipAddressEvent): void {
    this.recorded.push(event);
    if (this.recorded.length > vipEventsMax) {
      this.recorded.shift();
      this.droppedEvents++;
    }
    this.notify();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Polls each monitor's /proc/PID/net/netlink (its own namespace's table) until a route
   * socket bound to its PID has joined both address groups. */
  private async waitUntilListening(): Promise<void> {
    const deadline = monotonicNowMs() + monitorReadyTimeoutMs;
    const pending = new Set(this.monitors);
    while (pending.size > 0) {
      for (const monitor of [...pending]) {
        if (monitor.exited) throw new LabError({ code: 'LAB_PROCESS_FAILED', detail: `ip monitor for ${monitor.host} exited at start: ${this.failures.join('; ')}` });
        if (monitor.child.pid !== undefined && joinedAddressGroups(monitor.child.pid)) pending.delete(monitor);
      }
      if (pending.size === 0) break;
      if (monotonicNowMs() > deadline) throw labTimeout(`ip monitor did not join the address groups within ${monitorReadyTimeoutMs} ms for ${[...pending].map((m) => m.host).join(', ')}`);
      await sleep(monitorReadyPollIntervalMs);
    }
  }

  /** Copies already present count from startedAt, unless a monitor line about them came first. */
  private async readInitial(): Promise<void> {
    await Promise.all(
      this.network.hosts.map(async (host) => {
        const args = ['-n', this.network.hostNamespace(host), '-j', 'addr', 'show'];
        let stdout: string;
        try {
          ({ stdout } = await execFileAsync('ip', args, { encoding: 'utf8', timeout: labOracleTimeoutMs }));
        } catch (error) {
          throw labCommandFailed('ip', args, error);
        }
        const at = monotonicNowMs();
        for (const copy of addressCopies(stdout, this.vip)) {
          const seen = this.recorded.some((e) => e.host === host && e.interface === copy.interface && e.prefixLength === copy.prefixLength);
          if (!seen) this.record({ host, kind: 'present', interface: copy.interface, prefixLength: copy.prefixLength, at });
        }
      }),
    );
  }

  // ---- Reading the record --------------------------------------------------------------------

  /** Every recorded change, in arrival order. */
  events(): readonly VipAddressEvent[] {
    return this.recorded;
  }

  /** Per-host spans of holding the VIP, by start. */
  timeline(): HolderInterval[] {
    return holderIntervals(this.recorded, this.startedAt);
  }

  holdersAt(t: number): LabHostName[] {
    return holdersAtTime(this.timeline(), t);
  }

  /** Who holds the VIP now, as far as the monitors have said. */
  holders(): LabHostName[] {
    return this.timeline()
      .filter((i) => i.to === null)
      .map((i) => i.host)
      .sort();
  }

  maxSimultaneousHolders(options: SimultaneousHoldersOptions): SimultaneousHolders {
    return simultaneousHolders(this.timeline(), options);
  }

  /** Monitors that died before stop() (empty when all is well) and events dropped past the cap. */
  health(): { failures: readonly string[]; droppedEvents: number } {
    return { failures: this.failures, droppedEvents: this.droppedEvents };
  }

  /**
   * Resolves with the stamp at which `host` became the only holder (null: nobody holds it), or
   * now if that is already so; rejects with LAB_TIMEOUT after `timeoutMs`.
   */
  waitForHolder(host: LabHostName | null, timeoutMs: number): Promise<number> {
    return this.waitForHolders(host === null ? [] : [host], timeoutMs);
  }

  /** Resolves with the stamp at which exactly `hosts` (any order) held the VIP. */
  waitForHolders(hosts: readonly LabHostName[], timeoutMs: number): Promise<number> {
    const wanted = [...hosts].sort();
    const satisfied = (): number | null => {
      const timeline = this.timeline();
      const current = timeline.filter((i) => i.to === null).map((i) => i.host).sort();
      if (current.length !== wanted.length || current.some((h, i) => h !== wanted[i])) return null;
      // The holder set changes only at interval boundaries: it became this at the latest one.
      const stamps = timeline.flatMap((i) => (i.to === null ? [i.from] : [i.from, i.to]));
      return stamps.length === 0 ? this.startedAt : Math.max(...stamps);
    };
    const now = satisfied();
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(labTimeout(`the VIP ${this.vip} was not held by exactly [${wanted.join(', ')}] within ${timeoutMs} ms (holders: ${this.holders().join(', ') || 'none'})`));
      }, timeoutMs);
      const check = (): void => {
        const at = satisfied();
        if (at === null) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(at);
      };
      this.waiters.add(check);
    });
  }

  /** Ends the monitors (by PID: SIGTERM, then SIGKILL). Idempotent; the record stays readable. */
  stop(): Promise<void> {
    this.stopping ??= Promise.all(this.monitors.map((monitor) => stopChild(monitor.child, monitorStopTimeoutMs))).then(() => undefined);
    return this.stopping;
  }
}

/** Whether the process's network namespace has a NETLINK_ROUTE socket with port id = its PID
 * that joined the IPv4 and IPv6 address groups. */
function joinedAddressGroups(pid: number): boolean {
  let table: string;
  try {
    table = readFileSync(`/proc/${pid}/net/netlink`, 'utf8');
  } catch {
    return false;
  }
  // Columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
  return table
    .split('\n')
    .slice(1)
    .some((line) => {
      const [, protocol, portId, groups] = line.trim().split(/\s+/);
      return protocol === '0' && Number(portId) === pid && (parseInt(groups ?? '0', 16) & addressGroupsMask) === addressGroupsMask;
    });
}

/** SIGTERM by PID, SIGKILL if it has not exited after `timeoutMs`; resolves once it exited. */
export function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
