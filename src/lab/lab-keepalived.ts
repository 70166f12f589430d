// LabKeepalived: keepalived (Debian's package, VRRP only) holding the lab's VIP on the same hosts
// raftvip runs on, for the side-by-side comparison (bench/compare.ts). One keepalived per host
// namespace, started exactly as its systemd unit would run it but in the foreground
// (`keepalived --dont-fork --log-console --vrrp -f CONF`), each with its own pid files in a
// private temp directory. Every host is `state BACKUP` with the same priority, the usual HA
// setting (the highest address wins the first election; nobody preempts a running master).
//
// Faults, as for raftvip:
// - crash: SIGKILL to every keepalived process of the host (the VRRP child first, then the
//   parent), so none of them can send the priority-0 advertisement of a clean stop. keepalived's
//   unit has no ExecStopPost: the dead host keeps the VIP on its interface until it restarts.
// - terminate: SIGTERM to the parent (systemctl stop): the master sends priority 0 and removes
//   the VIP, and a backup takes over after its skew time.

import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from './address-monitor.js';
import { LabError, labInvalidOption, labTimeout } from './lab-errors.js';
import { labVip, type LabHostName, type LabNetwork } from './lab-network.js';

/** From spawn to the VRRP child running. */
export const keepalivedStartTimeoutMs = 10_000;
/** How long keepalived may take to exit after SIGTERM (it sends priority 0 first). */
export const keepalivedStopTimeoutMs = 10_000;
/** Log lines kept per host. */
const logLinesMax = 500;
/** The VRRP router id of the lab's instance. */
const virtualRouterId = 100;

export interface KeepalivedSettings {
  /** A name for reports: `defaults`, `fastest`... */
  readonly name: string;
  /** VRRP version: 2 (keepalived's default) or 3 (centisecond advertisement intervals). */
  readonly vrrpVersion: 2 | 3;
  /** Advertisement interval in ms: 1000 is keepalived's default; VRRPv3 allows 10 ms steps. */
  readonly advertIntervalMs: number;
}

export const keepalivedDefaults: KeepalivedSettings = { name: 'defaults', vrrpVersion: 2, advertIntervalMs: 1000 };

interface HostState {
  process: ChildProcess | null;
  log: string[];
}

export class LabKeepalived {
  readonly dir: string;
  readonly settings: KeepalivedSettings;
  private readonly network: LabNetwork;
  private readonly vip: string;
  private readonly states = new Map<LabHostName, HostState>();

  constructor(options: { network: LabNetwork; settings: KeepalivedSettings; vip?: string }) {
    const { settings } = options;
    if (settings.vrrpVersion === 2 && settings.advertIntervalMs % 1000 !== 0) {
      throw labInvalidOption('advertIntervalMs', 'VRRPv2 advertises in whole seconds');
    }
    if (settings.advertIntervalMs < 10 || settings.advertIntervalMs % 10 !== 0) {
      throw labInvalidOption('advertIntervalMs', 'must be a multiple of 10 ms, at least 10');
    }
    this.network = options.network;
    this.settings = settings;
    this.vip = options.vip ?? labVip;
    this.dir = mkdtempSync(join(tmpdir(), 'raftvip-keepalived-'));
    chmodSync(this.dir, 0o700);
    for (const host of this.network.hosts) {
      writeFileSync(this.configFile(host), this.config(host));
      this.states.set(host, { process: null, log: [] });
    }
  }

  /** The keepalived.conf of one host. */
  config(host: LabHostName): string {
    const advert = this.settings.advertIntervalMs / 1000;
    return [
      'global_defs {',
      `  router_id lab-${host}`,
      `  vrrp_version ${this.settings.vrrpVersion}`,
      '}',
      'vrrp_instance lab {',
      '  state BACKUP',
      '  interface eth0',
      `  virtual_router_id ${virtualRouterId}`,
      '  priority 100',
      `  advert_int ${advert}`,
      '  virtual_ipaddress {',
      `    ${this.vip}/32 dev eth0`,
      '  }',
      '}',
      '',
    ].join('\n');
  }

  configFile(host: LabHostName): string {
    return join(this.dir, `${host}.conf`);
  }

  /** Starts keepalived on every host (or `host`) where it is not running. */
  async start(host?: LabHostName): Promise<void> {
    for (const h of host === undefined ? this.network.hosts : [host]) await this.startOne(h);
  }

  private async startOne(host: LabHostName): Promise<void> {
    const state = this.state(host);
    if (state.process !== null) return;
    const pid = (name: string) => join(this.dir, `${host}.${name}.pid`);
    // A crashed keepalived leaves its pid files, and refuses to start while they name a process
    // that still exists (a killed child may linger as a zombie for a moment): they are ours.
    for (const name of ['main', 'vrrp', 'checkers']) rmSync(pid(name), { force: true });
    const child = this.network.spawnIn(
      this.network.hostNamespace(host),
      'keepalived',
      ['--dont-fork', '--log-console', '--vrrp', '--use-file', this.configFile(host), '--pid', pid('main'), '--vrrp_pid', pid('vrrp'), '--checkers_pid', pid('checkers')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    state.process = child;
    const append = (chunk: string) => {
      state.log.push(...chunk.split('\n').filter(Boolean));
      if (state.log.length > logLinesMax) state.log.splice(0, state.log.length - logLinesMax);
    };
    child.stdout!.setEncoding('utf8').on('data', append);
    child.stderr!.setEncoding('utf8').on('data', append);
    child.once('exit', () => {
      if (state.process === child) state.process = null;
    });
    const deadline = Date.now() + keepalivedStartTimeoutMs;
    while (this.children(host).length === 0) {
      if (state.process !== child) throw new LabError({ code: 'LAB_PROCESS_FAILED', detail: `keepalived on ${host} exited: ${state.log.slice(-10).join(' | ')}` });
      if (Date.now() > deadline) throw labTimeout(`keepalived on ${host} did not start its VRRP process within ${keepalivedStartTimeoutMs} ms`);
      await sleep(20);
    }
  }

  /** PIDs of the host's keepalived parent and children (the VRRP process). */
  pids(host: LabHostName): number[] {
    const parent = this.state(host).process?.pid;
    return parent === undefined ? [] : [parent, ...this.children(host)];
  }

  /** The keepalived parent's children, from /proc (the VRRP process). */
  private children(host: LabHostName): number[] {
    const parent = this.state(host).process?.pid;
    if (parent === undefined) return [];
    const result: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === parent) result.push(Number(entry));
      } catch {
        // Gone meanwhile.
      }
    }
    return result;
  }

  /** SIGKILL to every keepalived process of the host, children first; resolves once the parent
   * exited. The VIP stays where it was: no ExecStopPost removes it. */
  async crash(host: LabHostName): Promise<void> {
    const state = this.state(host);
    const child = state.process;
    if (child === null) return;
    for (const pid of this.children(host)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** SIGTERM (systemctl stop); resolves once keepalived exited. */
  async terminate(host: LabHostName): Promise<void> {
    const child = this.state(host).process;
    if (child === null) return;
    await stopChild(child, keepalivedStopTimeoutMs);
  }

  /** Removes the VIP from a host whose keepalived died (what its next start would do). */
  removeVip(host: LabHostName): void {
    try {
      execFileSync('ip', ['-n', this.network.hostNamespace(host), 'addr', 'del', `${this.vip}/32`, 'dev', 'eth0'], { stdio: 'ignore' });
    } catch {
      // Not there.
    }
  }

  logTail(host: LabHostName, lines = 20): string {
    return this.state(host).log.slice(-lines).join('\n');
  }

  /** SIGTERM to every keepalived, then removes the temp directory. */
  async stop(): Promise<void> {
    await Promise.all(this.network.hosts.map((host) => this.terminate(host)));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private state(host: LabHostName): HostState {
    const state = this.states.get(host);
    if (state === undefined) throw labInvalidOption('host', `${JSON.stringify(host)} is not one of ${this.network.hosts.join(', ')}`);
    return state;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
