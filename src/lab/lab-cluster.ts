// LabCluster: real raftvip daemons on the hosts of a LabNetwork, one per host namespace, each
// with its name server (name-server.ts) beside it. It owns the cluster's files (a fresh temp
// directory, mode 0700: one peer file per host, the pre-shared key in a 0600 file, the data
// directories), the processes it starts (signalled only by PID), a bounded ring of each daemon's
// log lines, and a live per-host view parsed from them: role, term and leader from the daemon's
// role-change lines, running/paused/pid from the process itself.
//
// The daemons run exactly as on a real host: `ip netns exec NS node bin/raftvip run --config
// FILE`; every other command (`status --json`, `transfer-leadership`, `vip release`) runs the
// same way, through the CLI, against the daemon's admin API on the namespace's own loopback.
//
// Config per host (YAML, the schema in docs/configuration.md): cluster `lab`, peers
// `{ id: hK, address: "10.213.0.(10+K):7480" }`, auth.pskFile, node `{ id: hK, dataDir }`, vip
// `{ address: 10.213.0.100 }` (the interface is auto-detected: eth0 holds 10.213.0.x/24),
// admin.listen 127.0.0.1:7481, log.level info. The `vip` option adds keys to the vip section;
// `extraYaml(host)` is YAML merged over the whole file (maps merge key by key, anything else
// replaces, a null value removes the key). The load balancer is off unless the `apiservers`
// option asks for a kube-apiserver stand-in on every host (apiserver-stub.ts, at
// `host:6443` with a certificate from a lab CA): then it balances VIP:6443 over them, checking
// /readyz against that CA.

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { DaemonStatus } from '../daemon/daemon.js';
import { stopChild } from './address-monitor.js';
import { LabError, labInvalidOption, labTimeout } from './lab-errors.js';
import { labVip, type LabHostName, type LabNetwork } from './lab-network.js';
import { monotonicNowMs } from './monotonic-clock.js';
import { apiserverStubCommand, parseApiserverStubEvent, type ApiserverStubEvent } from './apiserver-stub.js';
import { makeServingCertificates, type ServingCertificates } from './lab-certificates.js';

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const raftvipBin = join(repoRoot, 'bin/raftvip');
const nameServerScript = fileURLToPath(new URL('./name-server.js', import.meta.url));

export const labClusterName = 'lab';
/** Where each daemon listens for its peers, on its host's address. */
export const labPeerPort = 7480;
/** Each daemon's admin API, on its own namespace's loopback. */
export const labAdminPort = 7481;
export const labNameServerPort = 80;
/** Where the apiserver stubs listen on every host, and the load balancer's VIP port. */
export const labApiserverPort = 6443;
/** Log lines kept per host; older ones are dropped. */
export const labLogLinesMaxDefault = 2_000;
export const labLogLinesMaxLimit = 1_000_000;
/** From spawn to the daemon's "raftvip started" (and the name server's first line). */
export const labDaemonStartTimeoutMs = 20_000;
/** stop(): how long a daemon may take after SIGTERM (it hands leadership over first, up to 2 s). */
export const labDaemonStopTimeoutMs = 5_000;
/** One CLI run (`status`, `transfer-leadership`, `vip release`). */
export const labCommandRunTimeoutMs = 15_000;
/** Output kept of one CLI run. */
const commandOutputBytesMax = 1024 * 1024;
const leaderPollIntervalMs = 10;
const logLineBytesMax = 64 * 1024;

export type LabLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
/** The signals kill() may send. */
export type LabSignal = 'SIGKILL' | 'SIGTERM' | 'SIGINT' | 'SIGHUP' | 'SIGSTOP' | 'SIGCONT';

export interface LabClusterOptions {
  network: LabNetwork;
  /** Extra keys for the vip section, e.g. `{ announceIntervalMs: 100 }`. */
  vip?: Readonly<Record<string, string | number | boolean>>;
  /** YAML merged over each host's generated file. */
  extraYaml?: (host: LabHostName) => string;
  /** log.level of the daemons (default info: role changes are logged at info). */
  logLevel?: LabLogLevel;
  /** Log lines kept per host (default 2000). */
  logLinesMax?: number;
  /** Run a kube-apiserver stand-in (apiserver-stub.ts) on every host at labApiserverPort, with a
   * serving certificate from a lab CA, and turn the load balancer on (health checks verify
   * against that CA). Without it, loadBalancer.enabled is false. */
  apiservers?: { startDelayMs?: number; shutdownDelayMs?: number };
}

/** What the lab knows of one host right now. */
export interface LabHostView {
  /** From the daemon's last role-change line; null before its first. */
  role: string | null;
  term: number;
  leader: LabHostName | null;
  /** The daemon process exists (paused or not). */
  running: boolean;
  /** Stopped with SIGSTOP and not continued. */
  paused: boolean;
  pid: number | null;
  /** CLOCK_MONOTONIC ms of the last role-change line. */
  roleAt: number | null;
}

/** One role-change line, stamped on arrival. */
export interface RoleChange {
  host: LabHostName;
  role: string;
  term: number;
  leader: LabHostName | null;
  at: number;
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface HostState {
  readonly host: LabHostName;
  readonly namespace: string;
  readonly configFile: string;
  readonly dataDir: string;
  daemon: ChildProcess | null;
  nameServer: ChildProcess | null;
  apiserver: ChildProcess | null;
  /** Every event the host's apiserver stubs printed, oldest first (across restarts). */
  apiserverEvents: ApiserverStubEvent[];
  paused: boolean;
  role: string | null;
  term: number;
  leader: LabHostName | null;
  roleAt: number | null;
  lastExit: DaemonExit | null;
  /** Bumped each time the daemon logs "raftvip started". */
  startedCount: number;
  log: string[];
  partial: { stdout: string; stderr: string };
}

export class LabCluster {
  /** The temp directory holding every file of the cluster (removed by stop()). */
  readonly dir: string;
  readonly pskFile: string;
  readonly network: LabNetwork;
  private readonly logLinesMax: number;
  private readonly apiserverOptions: NonNullable<LabClusterOptions['apiservers']> | null;
  /** The lab CA and the hosts' serving certificates, when apiservers run. */
  readonly certificates: ServingCertificates | null;
  private readonly states = new Map<LabHostName, HostState>();
  private readonly changes: RoleChange[] = [];
  private readonly waiters = new Set<() => void>();
  private stopping: Promise<void> | null = null;
  /** On process exit without stop(): SIGKILL what still runs (by PID) and remove the files. */
  private readonly onExit = (): void => {
    for (const state of this.states.values()) {
      for (const child of [state.daemon, state.nameServer, state.apiserver]) if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  };

  constructor(options: LabClusterOptions) {
    this.network = options.network;
    this.logLinesMax = options.logLinesMax ?? labLogLinesMaxDefault;
    if (!Number.isInteger(this.logLinesMax) || this.logLinesMax < 1 || this.logLinesMax > labLogLinesMaxLimit) {
      throw labInvalidOption('logLinesMax', `must be an integer from 1 to ${labLogLinesMaxLimit}`);
    }
    for (const [key, value] of Object.entries(options.vip ?? {})) {
      if (!['string', 'number', 'boolean'].includes(typeof value)) throw labInvalidOption(`vip.${key}`, 'must be a string, number or boolean');
    }
    this.dir = mkdtempSync(join(tmpdir(), 'raftvip-lab-'));
    chmodSync(this.dir, 0o700);
    process.on('exit', this.onExit);
    this.pskFile = join(this.dir, 'psk');
    writeFileSync(this.pskFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const peers = this.network.hosts.map((host) => ({ id: host, address: `${this.network.hostAddress(host)}:${labPeerPort}` }));
    this.apiserverOptions = options.apiservers ?? null;
    this.certificates =
      options.apiservers === undefined
        ? null
        : makeServingCertificates(this.dir, { names: this.network.hosts.map((host) => ({ name: host, address: this.network.hostAddress(host) })) });
    for (const host of this.network.hosts) {
      const hostDir = join(this.dir, host);
      mkdirSync(hostDir, { mode: 0o700 });
      const state: HostState = {
        host,
        namespace: this.network.hostNamespace(host),
        configFile: join(hostDir, 'raftvip.yaml'),
        dataDir: join(hostDir, 'data'),
        daemon: null,
        nameServer: null,
        apiserver: null,
        apiserverEvents: [],
        paused: false,
        role: null,
        term: 0,
        leader: null,
        roleAt: null,
        lastExit: null,
        startedCount: 0,
        log: [],
        partial: { stdout: '', stderr: '' },
      };
      const generated = {
        cluster: { name: labClusterName, peers, auth: { pskFile: this.pskFile } },
        node: { id: host, dataDir: state.dataDir },
        vip: { address: labVip, ...options.vip },
        loadBalancer: this.certificates === null ? { enabled: false } : { port: labApiserverPort, healthCheck: { caFile: this.certificates.caFile } },
        admin: { listen: `127.0.0.1:${labAdminPort}` },
        log: { level: options.logLevel ?? 'info' },
      };
      const extra = options.extraYaml?.(host);
      const merged = extra === undefined ? generated : mergeConfig(generated, parseYaml(extra) as unknown);
      writeFileSync(state.configFile, stringifyYaml(merged), { mode: 0o600 });
      this.states.set(host, state);
    }
  }

  // ---- Files ---------------------------------------------------------------------------------

  configFile(host: LabHostName): string {
    return this.state(host).configFile;
  }

  dataDir(host: LabHostName): string {
    return this.state(host).dataDir;
  }

  private state(host: LabHostName): HostState {
    const state = this.states.get(host);
    if (!state) throw labInvalidOption('host', `${JSON.stringify(host)} is not one of ${this.network.hosts.join(', ')}`);
    return state;
  }

  // ---- Processes -----------------------------------------------------------------------------

  /**
   * Starts the daemon and the name server of `host` (default: every host) where they are not
   * running; a host stopped earlier starts again on its data directory. Resolves once each
   * started daemon logged "raftvip started" and each name server listens.
   */
  async start(host?: LabHostName): Promise<void> {
    if (this.stopping) throw new LabError({ code: 'LAB_STOPPED', detail: 'the lab cluster was stopped' });
    const hosts = host === undefined ? this.network.hosts : [host];
    await Promise.all(
      hosts.map((h) =>
        Promise.all([this.startNameServer(this.state(h)), this.apiserverOptions === null ? null : this.startApiserver(h), this.startDaemon(this.state(h))]),
      ),
    );
  }

  /** Starts the name server of every host (or of `host`) without its daemon: for a lab in which
   * another tool (keepalived, for the comparison) holds the VIP. */
  async startNameServers(host?: LabHostName): Promise<void> {
    if (this.stopping) throw new LabError({ code: 'LAB_STOPPED', detail: 'the lab cluster was stopped' });
    const hosts = host === undefined ? this.network.hosts : [host];
    await Promise.all(hosts.map((h) => this.startNameServer(this.state(h))));
  }

  /** Starts the host's apiserver stub if it is not running; resolves once it listens (it says
   * ready after its start delay). Only with the `apiservers` option. */
  async startApiserver(host: LabHostName): Promise<void> {
    const state = this.state(host);
    const certificates = this.certificates;
    if (certificates === null || this.apiserverOptions === null) throw labInvalidOption('apiservers', 'the lab cluster was built without apiservers');
    if (state.apiserver) return;
    const files = certificates.byName[host];
    const stubOptions = this.apiserverOptions ?? {};
    if (files === undefined) throw labInvalidOption('host', `no certificate for ${host}`);
    const [command, ...args] = apiserverStubCommand({
      name: host,
      listen: `${this.network.hostAddress(host)}:${labApiserverPort}`,
      certFile: files.certFile,
      keyFile: files.keyFile,
      ...(stubOptions.startDelayMs === undefined ? {} : { startDelayMs: stubOptions.startDelayMs }),
      ...(stubOptions.shutdownDelayMs === undefined ? {} : { shutdownDelayMs: stubOptions.shutdownDelayMs }),
    });
    const child = this.network.spawnIn(state.namespace, command ?? process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    state.apiserver = child;
    const eventsBefore = state.apiserverEvents.length;
    let partial = '';
    let errors = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = (lines.pop() ?? '').slice(-logLineBytesMax);
      for (const line of lines) {
        const event = parseApiserverStubEvent(line);
        if (event !== null) state.apiserverEvents.push(event);
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (errors = (errors + chunk).slice(-logLineBytesMax)));
    child.once('exit', () => {
      if (state.apiserver === child) state.apiserver = null;
      this.notify();
    });
    await this.waitUntil(
      () => {
        if (state.apiserverEvents.slice(eventsBefore).some((event) => event.event === 'listening')) return true;
        if (state.apiserver !== child) throw new LabError({ code: 'LAB_PROCESS_FAILED', detail: `the apiserver stub on ${host} exited: ${errors.trim()}` });
        return false;
      },
      labDaemonStartTimeoutMs,
      () => `the apiserver stub on ${host} did not listen within ${labDaemonStartTimeoutMs} ms: ${errors.trim()}`,
    );
  }

  /** Signals the host's apiserver stub by PID: SIGUSR1 toggles not-ready, SIGTERM starts its
   * shutdown (503 on /readyz, then close), SIGKILL kills it. False if it is not running. */
  signalApiserver(host: LabHostName, signal: 'SIGUSR1' | 'SIGTERM' | 'SIGKILL'): boolean {
    const child = this.state(host).apiserver;
    if (child?.pid === undefined) return false;
    return child.kill(signal);
  }

  /** The events of the host's apiserver stubs so far, oldest first. */
  apiserverEvents(host: LabHostName): readonly ApiserverStubEvent[] {
    return this.state(host).apiserverEvents;
  }

  /** Resolves with the first event named `event` from `host`'s stub stamped after `sinceMs`. */
  waitForApiserverEvent(host: LabHostName, event: ApiserverStubEvent['event'], options: { sinceMs: number; timeoutMs: number }): Promise<ApiserverStubEvent> {
    let found: ApiserverStubEvent | undefined;
    return this.waitUntil(
      () => {
        found = this.state(host).apiserverEvents.find((candidate) => candidate.event === event && candidate.atMs >= options.sinceMs);
        return found !== undefined;
      },
      options.timeoutMs,
      () => `the apiserver stub on ${host} did not report ${event} within ${options.timeoutMs} ms`,
    ).then(() => found as ApiserverStubEvent);
  }

  private async startDaemon(state: HostState): Promise<void> {
    if (state.daemon) return;
    const startedBefore = state.startedCount;
    const child = this.network.spawnIn(state.namespace, process.execPath, [raftvipBin, 'run', '--config', state.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    state.daemon = child;
    state.paused = false;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => this.onOutput(state, 'stdout', chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => this.onOutput(state, 'stderr', chunk));
    child.once('exit', (code, signal) => {
      if (state.daemon === child) {
        state.daemon = null;
        state.paused = false;
        state.lastExit = { code, signal };
      }
      this.appendLog(state, `[lab] daemon exited (${signal ?? code})`);
      this.notify();
    });
    await this.waitUntil(
      () => {
        if (state.startedCount > startedBefore) return true;
        if (state.daemon !== child) throw new LabError({ code: 'LAB_PROCESS_FAILED', detail: `the daemon on ${state.host} exited at start:\n${this.logTail(state.host)}` });
        return false;
      },
      labDaemonStartTimeoutMs,
      () => `the daemon on ${state.host} did not log "raftvip started" within ${labDaemonStartTimeoutMs} ms:\n${this.logTail(state.host)}`,
    );
  }

  private async startNameServer(state: HostState): Promise<void> {
    if (state.nameServer) return;
    const child = this.network.spawnIn(state.namespace, process.execPath, [nameServerScript, '--name', state.host, '--port', String(labNameServerPort)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    state.nameServer = child;
    let output = '';
    let listening = false;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      output = (output + chunk).slice(-logLineBytesMax);
      if (output.includes('"listening"')) listening = true;
      this.notify();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output = (output + chunk).slice(-logLineBytesMax)));
    child.once('exit', () => {
      if (state.nameServer === child) state.nameServer = null;
      this.notify();
    });
    await this.waitUntil(
      () => {
        if (listening) return true;
        if (state.nameServer !== child) throw new LabError({ code: 'LAB_PROCESS_FAILED', detail: `the name server on ${state.host} exited: ${output.trim()}` });
        return false;
      },
      labDaemonStartTimeoutMs,
      () => `the name server on ${state.host} did not listen within ${labDaemonStartTimeoutMs} ms: ${output.trim()}`,
    );
  }

  private onOutput(state: HostState, stream: 'stdout' | 'stderr', chunk: string): void {
    const at = monotonicNowMs();
    const lines = (state.partial[stream] + chunk).split('\n');
    state.partial[stream] = (lines.pop() ?? '').slice(-logLineBytesMax);
    for (const line of lines) {
      this.appendLog(state, stream === 'stderr' ? `[stderr] ${line}` : line);
      if (stream === 'stdout') this.parseLine(state, line, at);
    }
    this.notify();
  }

  private appendLog(state: HostState, line: string): void {
    state.log.push(line.length > logLineBytesMax ? `${line.slice(0, logLineBytesMax)}...` : line);
    if (state.log.length > this.logLinesMax) state.log.splice(0, state.log.length - this.logLinesMax);
  }

  /** Role-change lines carry `role`, `term` and `leader` (daemon.ts, onRoleChange). */
  private parseLine(state: HostState, line: string, at: number): void {
    if (!line.startsWith('{')) return;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (record.msg === 'raftvip started') state.startedCount++;
    if (typeof record.role === 'string' && typeof record.term === 'number' && 'leader' in record) {
      const leader = typeof record.leader === 'string' ? record.leader : null;
      state.role = record.role;
      state.term = record.term;
      state.leader = leader;
      state.roleAt = at;
      this.changes.push({ host: state.host, role: record.role, term: record.term, leader, at });
      if (this.changes.length > this.logLinesMax * this.network.hosts.length) this.changes.shift();
    }
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves when `condition` returns true (checked on every output and every 10 ms); rejects
   * with what it throws, or LAB_TIMEOUT. */
  private waitUntil(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        this.waiters.delete(check);
      };
      const check = (): void => {
        try {
          if (!condition()) return;
          done();
          resolve();
        } catch (error) {
          done();
          reject(error);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(labTimeout(describe()));
      }, timeoutMs);
      const poll = setInterval(check, leaderPollIntervalMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Sends `signal` to the host's daemon by PID. SIGSTOP/SIGCONT pause and resume it. */
  kill(host: LabHostName, signal: LabSignal): void {
    const state = this.state(host);
    const pid = state.daemon?.pid;
    if (!state.daemon || pid === undefined) throw new LabError({ code: 'LAB_PROCESS_FAILED', detail: `the daemon on ${host} is not running` });
    process.kill(pid, signal);
    if (signal === 'SIGSTOP') state.paused = true;
    if (signal === 'SIGCONT') state.paused = false;
  }

  /** Resolves with how the daemon exited (at once if it is not running). */
  waitForExit(host: LabHostName, timeoutMs: number): Promise<DaemonExit> {
    const state = this.state(host);
    const child = state.daemon;
    if (!child) return Promise.resolve(state.lastExit ?? { code: null, signal: null });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(labTimeout(`the daemon on ${host} did not exit within ${timeoutMs} ms`)), timeoutMs);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
  }

  // ---- Views ---------------------------------------------------------------------------------

  view(host: LabHostName): LabHostView {
    const state = this.state(host);
    return {
      role: state.role,
      term: state.term,
      leader: state.leader,
      running: state.daemon !== null,
      paused: state.paused,
      pid: state.daemon?.pid ?? null,
      roleAt: state.roleAt,
    };
  }

  views(): Record<LabHostName, LabHostView> {
    return Object.fromEntries(this.network.hosts.map((host) => [host, this.view(host)]));
  }

  /** Every role-change line of every host, in arrival order. */
  roleChanges(): readonly RoleChange[] {
    return this.changes;
  }

  /** The running host that most recently logged itself leader in the highest term, or null. */
  leader(options: { exclude?: readonly LabHostName[] } = {}): LabHostName | null {
    let best: HostState | null = null;
    for (const state of this.states.values()) {
      if (!state.daemon || state.role !== 'leader' || (options.exclude ?? []).includes(state.host)) continue;
      if (!best || state.term > best.term || (state.term === best.term && (state.roleAt ?? 0) > (best.roleAt ?? 0))) best = state;
    }
    return best?.host ?? null;
  }

  /** Waits until leader() names a host outside `exclude`; resolves with it. */
  async waitForLeader(options: { timeoutMs: number; exclude?: readonly LabHostName[] }): Promise<LabHostName> {
    let found: LabHostName | null = null;
    await this.waitUntil(
      () => (found = this.leader(options.exclude ? { exclude: options.exclude } : {})) !== null,
      options.timeoutMs,
      () => `no leader within ${options.timeoutMs} ms: ${this.network.hosts.map((h) => `${h}:${this.view(h).role ?? '-'}/t${this.view(h).term}`).join(' ')}`,
    );
    return found!;
  }

  /** The last `lines` lines the host's daemon wrote (stderr lines marked `[stderr]`). */
  logTail(host: LabHostName, lines = 40): string {
    return this.state(host).log.slice(-lines).join('\n');
  }

  // ---- The CLI -------------------------------------------------------------------------------

  /** `raftvip status --json` on the host, parsed. Throws LAB_COMMAND_FAILED if it fails. */
  async status(host: LabHostName): Promise<DaemonStatus> {
    const result = await this.raftvip(host, ['status', '--json']);
    if (result.code !== 0) throw new LabError({ code: 'LAB_COMMAND_FAILED', detail: `raftvip status on ${host} exited ${result.signal ?? result.code}: ${result.stderr.trim()}` });
    return JSON.parse(result.stdout) as DaemonStatus;
  }

  /** `raftvip transfer-leadership [--to TO]` on the host (run it on the leader). */
  transferLeadership(host: LabHostName, to?: LabHostName): Promise<CommandResult> {
    return this.raftvip(host, ['transfer-leadership', ...(to === undefined ? [] : ['--to', to])]);
  }

  /** `raftvip vip release` on the host, as systemd's ExecStopPost runs it. */
  vipRelease(host: LabHostName): Promise<CommandResult> {
    return this.raftvip(host, ['vip', 'release']);
  }

  /** Runs `raftvip ARGS --config FILE` inside the host's namespace. */
  raftvip(host: LabHostName, args: readonly string[]): Promise<CommandResult> {
    const state = this.state(host);
    return new Promise((resolve, reject) => {
      const child = this.network.spawnIn(state.namespace, process.execPath, [raftvipBin, ...args, '--config', state.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout = (stdout + chunk).slice(-commandOutputBytesMax)));
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-commandOutputBytesMax)));
      const timer = setTimeout(() => child.kill('SIGKILL'), labCommandRunTimeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new LabError({ code: 'LAB_COMMAND_FAILED', detail: `raftvip ${args.join(' ')} on ${host}: ${error.message}`, cause: error }));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
  }

  // ---- Stopping ------------------------------------------------------------------------------

  /**
   * SIGTERM to every daemon (a paused one is continued first) and name server, SIGKILL to those
   * still running after labDaemonStopTimeoutMs, all by PID; then removes the temp directory.
   * Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all(
        [...this.states.values()].flatMap((state) => {
          if (state.daemon && state.paused && state.daemon.pid !== undefined) {
            try {
              process.kill(state.daemon.pid, 'SIGCONT');
            } catch {
              // Already gone.
            }
          }
          return [state.daemon, state.nameServer, state.apiserver].filter((c): c is ChildProcess => c !== null).map((child) => stopChild(child, labDaemonStopTimeoutMs));
        }),
      );
      rmSync(this.dir, { recursive: true, force: true });
      process.off('exit', this.onExit);
    })();
    return this.stopping;
  }
}

/** `extra` over `base`: maps merge key by key, null removes a key, anything else replaces. */
export function mergeConfig(base: unknown, extra: unknown): unknown {
  // An empty document parses as null: nothing to merge.
  if (extra === undefined || extra === null) return base;
  if (!isPlainObject(base) || !isPlainObject(extra)) return extra;
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    if (value === null) delete merged[key];
    else merged[key] = mergeConfig(merged[key], value);
  }
  return merged;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
