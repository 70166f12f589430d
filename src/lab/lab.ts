// A whole running lab: the namespace network (lab-network.ts), one real raftvip daemon and name
// server per host (lab-cluster.ts), the VIP watch on every host (address-monitor.ts) and, when
// asked, the client's probe of VIP:80 (lab-probe.ts). `raftvip lab`, `raftvip lab demo`, the lab
// tests and `npm run bench:failover` all start one of these, inject faults through it and read
// the same oracles: the client's probe and neighbour entry, and which hosts hold the VIP.
//
// The faults are what happens to a real host, done the way systemd and a data centre do them:
// - crash: the daemon gets SIGKILL; systemd's ExecStopPost (`raftvip vip release`) runs after;
// - powerOff: the host's link goes down and its daemon is killed in the same instant (nothing
//   on the host can speak any more); powerOn brings the link back and starts the daemon, which
//   finds the VIP the dead host still had and removes it at start-up;
// - terminate: SIGTERM (systemctl stop / reboot): the leader hands over, then ExecStopPost;
// - pause / resume: SIGSTOP / SIGCONT (a VM freeze, a stalled process).

import { LabCluster, labApiserverPort, labNameServerPort, type LabClusterOptions } from './lab-cluster.js';
import { LabNetwork, labVip, type LabHostName } from './lab-network.js';
import { LabProbe } from './lab-probe.js';
import { VipWatch } from './address-monitor.js';
import { LabError, labTimeout } from './lab-errors.js';
import { monotonicNowMs } from './monotonic-clock.js';
import { lbClientArgs, type LbAttempt, type LbClientMode } from './lb-client.js';

/** From starting the daemons to a leader holding the VIP and the client reaching it. */
export const labSteadyTimeoutMs = 20_000;
/** How long a daemon may take to die after SIGKILL or to hand over and exit after SIGTERM. */
export const labExitTimeoutMs = 10_000;

export interface LabOptions {
  hosts: number;
  /** The VIP (default the lab's IPv4 VIP; labVip6 for an IPv6 lab). */
  vipAddress?: string;
  /** Extra keys for every host's vip section (announce timing, ...). */
  vip?: LabClusterOptions['vip'];
  /** Start the client's probe of VIP:80 (default true). */
  probe?: boolean;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** Install SIGINT/SIGTERM handlers that tear the lab down (the CLI; not tests). */
  handleSignals?: boolean;
  /** Start the raftvip daemons (default true); false starts only the name servers, for a VIP
   * held by something else (lab-keepalived.ts). */
  daemons?: boolean;
  /** kube-apiserver stand-ins on every host and the load balancer on (LabClusterOptions). */
  apiservers?: LabClusterOptions['apiservers'];
  /** YAML merged over each host's peer file (LabClusterOptions.extraYaml). */
  extraYaml?: LabClusterOptions['extraYaml'];
}

export interface SteadyState {
  leader: LabHostName;
  /** CLOCK_MONOTONIC ms at which the probe last heard the leader answer on the VIP. */
  at: number;
}

export class Lab {
  readonly network: LabNetwork;
  readonly cluster: LabCluster;
  readonly watch: VipWatch;
  readonly probe: LabProbe | null;
  #stopped: Promise<void> | null = null;

  private constructor(parts: { network: LabNetwork; cluster: LabCluster; watch: VipWatch; probe: LabProbe | null }) {
    this.network = parts.network;
    this.cluster = parts.cluster;
    this.watch = parts.watch;
    this.probe = parts.probe;
  }

  /** Builds the network, starts the watch, the daemons and (by default) the probe. Everything
   * built so far is torn down if a step fails. */
  static async start(options: LabOptions): Promise<Lab> {
    const network = LabNetwork.create({ hosts: options.hosts, handleSignals: options.handleSignals ?? false });
    let cluster: LabCluster | null = null;
    let watch: VipWatch | null = null;
    let probe: LabProbe | null = null;
    try {
      const vipAddress = options.vipAddress ?? labVip;
      watch = await VipWatch.start({ network, vip: vipAddress });
      cluster = new LabCluster({
        network,
        vip: { ...(options.vip ?? {}), address: vipAddress },
        ...(options.apiservers === undefined ? {} : { apiservers: options.apiservers }),
        ...(options.extraYaml === undefined ? {} : { extraYaml: options.extraYaml }),
      });
      if (options.daemons ?? true) await cluster.start();
      else await cluster.startNameServers();
      if (options.probe ?? true) {
        probe = await LabProbe.start({
          network,
          target: vipAddress.includes(':') ? `[${vipAddress}]:${labNameServerPort}` : `${vipAddress}:${labNameServerPort}`,
          ...(options.probeIntervalMs === undefined ? {} : { intervalMs: options.probeIntervalMs }),
          ...(options.probeTimeoutMs === undefined ? {} : { timeoutMs: options.probeTimeoutMs }),
        });
      }
      return new Lab({ network, cluster, watch, probe });
    } catch (error) {
      await probe?.stop().catch(() => undefined);
      await cluster?.stop().catch(() => undefined);
      await watch?.stop().catch(() => undefined);
      network.destroy();
      throw error;
    }
  }

  get hosts(): readonly LabHostName[] {
    return this.network.hosts;
  }

  /**
   * Waits until one host leads, holds the VIP alone, and (with a probe) the client has reached it
   * on the VIP after `sinceMs`. Resolves with the leader and when the client last heard it.
   */
  async waitForSteady(
    options: {
      timeoutMs?: number;
      sinceMs?: number;
      /** Hosts that may not be the leader (the one just failed). */
      exclude?: readonly LabHostName[];
      /** Hosts whose copy of the VIP is not counted (paused or powered off: they cannot act). */
      ignoreHolders?: readonly LabHostName[];
    } = {},
  ): Promise<SteadyState> {
    const timeoutMs = options.timeoutMs ?? labSteadyTimeoutMs;
    const deadline = monotonicNowMs() + timeoutMs;
    const sinceMs = options.sinceMs ?? Number.NEGATIVE_INFINITY;
    for (;;) {
      const leader = this.cluster.leader(options.exclude === undefined ? {} : { exclude: options.exclude });
      const holders = this.watch.holders().filter((h) => !(options.ignoreHolders ?? []).includes(h));
      if (leader !== null && holders.length === 1 && holders[0] === leader) {
        if (this.probe === null) return { leader, at: monotonicNowMs() };
        const heard = this.probe
          .attempts()
          .filter((a) => a.ok && a.host === leader && a.start >= sinceMs)
          .at(-1);
        if (heard !== undefined) return { leader, at: heard.end };
      }
      if (monotonicNowMs() > deadline) {
        throw labTimeout(
          `no steady state within ${timeoutMs} ms: leader ${leader ?? 'none'}, VIP holders [${holders.join(', ')}]` +
            (this.probe === null ? '' : `, last probe answer from ${this.probe.attempts().filter((a) => a.ok).at(-1)?.host ?? 'nobody'}`),
        );
      }
      await sleep(5);
    }
  }

  /**
   * Waits until every host's load balancer reports `count` ready backends and its kernel table
   * agrees (each backend's weight in the kernel is its configured weight when ready, 0 when not).
   * Only with the `apiservers` option. Rejects with LAB_TIMEOUT after `timeoutMs`.
   */
  async waitForBackendsReady(count: number, timeoutMs: number = labSteadyTimeoutMs): Promise<void> {
    const deadline = monotonicNowMs() + timeoutMs;
    for (;;) {
      const statuses = await Promise.all(this.hosts.map((host) => this.cluster.status(host)));
      const settled = statuses.map((status) => {
        const lb = status.loadBalancer;
        return 'backendsReady' in lb && lb.backendsReady === count && lb.backends.every((backend) => (backend.kernelWeight ?? 0) === (backend.ready ? backend.weight : 0));
      });
      if (settled.every(Boolean)) return;
      if (monotonicNowMs() > deadline) {
        const seen = statuses.map((status) => ('backendsReady' in status.loadBalancer ? status.loadBalancer.backendsReady : 'disabled')).join(', ');
        throw labTimeout(`backends ready on each host: ${seen}; wanted ${count} everywhere, in the kernel too, within ${timeoutMs} ms`);
      }
      await sleep(50);
    }
  }

  /**
   * Runs the load-balancer client (lb-client.ts) in the client namespace against `target`
   * (default VIP:6443): new connections one after another, each recorded with its start, connect
   * time and the backend that answered. Resolves when it is done.
   */
  runLbClient(options: {
    target?: string;
    count?: number;
    durationMs?: number;
    intervalMs?: number;
    timeoutMs?: number;
    mode?: LbClientMode;
    /** Run on this host instead of the client (a kubelet's connection to the VIP). */
    from?: LabHostName;
  }): Promise<LbAttempt[]> {
    const vip = this.watch.vip;
    const target = options.target ?? (vip.includes(':') ? `[${vip}]:${labApiserverPort}` : `${vip}:${labApiserverPort}`);
    const { from, ...clientOptions } = options;
    const namespace = from === undefined ? this.network.clientNamespace : this.network.hostNamespace(from);
    const child = this.network.spawnIn(namespace, process.execPath, lbClientArgs({ ...clientOptions, target }), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => {
        if (code !== 0) return reject(new LabError({ code: 'LAB_PROCESS_FAILED', detail: `lb-client exited ${String(code)}: ${stderr.trim()}` }));
        try {
          resolve((JSON.parse(stdout) as { attempts: LbAttempt[] }).attempts);
        } catch (error) {
          reject(new LabError({ code: 'LAB_PROCESS_FAILED', detail: `lb-client printed no result: ${(error as Error).message}` }));
        }
      });
    });
  }

  /** SIGKILL, then what systemd's ExecStopPost runs. Resolves with the instant of the kill. */
  async crash(host: LabHostName): Promise<number> {
    const at = monotonicNowMs();
    this.cluster.kill(host, 'SIGKILL');
    await this.cluster.waitForExit(host, labExitTimeoutMs);
    await this.cluster.vipRelease(host);
    return at;
  }

  /** The host's link and its daemon die in the same instant. Resolves with that instant. */
  async powerOff(host: LabHostName): Promise<number> {
    // The instant is taken once the cut is in force (`ip` has returned): an attempt that starts
    // while the command still runs may get through.
    this.network.cutLink(host);
    const at = monotonicNowMs();
    this.cluster.kill(host, 'SIGKILL');
    await this.cluster.waitForExit(host, labExitTimeoutMs);
    return at;
  }

  /** Link back up and the daemon started: it finds its old VIP and removes it at start-up. */
  async powerOn(host: LabHostName): Promise<void> {
    this.network.restoreLink(host);
    await this.cluster.start(host);
  }

  /** SIGTERM (the leader hands over first), then ExecStopPost. Resolves with the signal's instant. */
  async terminate(host: LabHostName): Promise<number> {
    const at = monotonicNowMs();
    this.cluster.kill(host, 'SIGTERM');
    await this.cluster.waitForExit(host, labExitTimeoutMs);
    await this.cluster.vipRelease(host);
    return at;
  }

  /** Tears everything down, by PID, then deletes the namespaces. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      await this.probe?.stop().catch(() => undefined);
      await this.cluster.stop().catch(() => undefined);
      await this.watch.stop().catch(() => undefined);
      this.network.destroy();
    })();
    return this.#stopped;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
