// `raftvip lab` and `raftvip lab demo`: the lab (lab.ts) for a person at a terminal.
//
// `lab demo` builds a 3-host lab, shows who holds the VIP and how VIP:6443 is balanced over a
// kube-apiserver stand-in on every host (and drained from one that turns not ready), then fails
// the holder three ways
// (daemon crash + ExecStopPost, power-off, planned SIGTERM) and prints the outage the client saw
// each time, with a live line of every host's role and term, the VIP holder and whom the client
// reaches. `lab` builds the lab and keeps it running until Ctrl-C, printing how to poke at it.
// Both tear everything down on exit, on Ctrl-C and on errors; a lab whose owner was killed
// outright is removed by the next run (LabNetwork.cleanStale).

import { Lab, sleep } from './lab.js';
import { labClientAddress, labVip } from './lab-network.js';
import { longestGap } from './probe-analysis.js';
import { monotonicNowMs } from './monotonic-clock.js';
import type { LbAttempt } from './lb-client.js';

/** How often the live line is redrawn. */
export const liveViewIntervalMs = 100;
/** Time after a failover before the outage is read: late attempts time out (probe timeout). */
const settleMs = 700;
/** From the daemons' start to every kube-apiserver stand-in ready behind the VIP. */
const demoReadyTimeoutMs = 15_000;

export interface LabOutput {
  write(text: string): void;
  /** A terminal: the live line is redrawn in place. Otherwise it is printed when it changes. */
  isTTY: boolean;
}

/** One line: every host's role and term, the VIP holder(s), and whom the client reached last. */
export function describeLab(lab: Lab, startedAt: number): string {
  const views = lab.cluster.views();
  const hosts = lab.hosts.map((host) => {
    const view = views[host]!;
    const state = !view.running ? 'down' : view.paused ? 'paused' : (view.role ?? 'starting');
    return `${host} ${state}${view.running && view.role !== null ? ` t${view.term}` : ''}`;
  });
  const holders = lab.watch.holders();
  const last = lab.probe?.attempts().at(-1);
  const client = last === undefined ? 'no probe yet' : last.ok ? `client → ${last.host}` : `client: ${last.error ?? 'failed'}`;
  const elapsed = ((monotonicNowMs() - startedAt) / 1000).toFixed(1).padStart(5);
  // A copy on a host whose daemon is down (power-off, before ExecStopPost) is not a second holder
  // anyone can talk to, but it is there: show it, marked.
  const vip = holders.map((host) => (views[host]?.running === true ? host : `${host} (down)`)).join(' + ');
  return `[${elapsed} s] ${hosts.join(' · ')} | VIP on ${holders.length === 0 ? 'nobody' : vip} | ${client}`;
}

class LiveLine {
  #timer: NodeJS.Timeout | null = null;
  #last = '';
  constructor(
    private readonly lab: Lab,
    private readonly output: LabOutput,
    private readonly startedAt: number,
  ) {}

  start(): void {
    this.#timer ??= setInterval(() => this.draw(), liveViewIntervalMs);
  }

  draw(): void {
    const line = describeLab(this.lab, this.startedAt);
    if (this.output.isTTY) this.output.write(`\r\x1b[K${line}`);
    else if (line.replace(/^\[[^\]]*\] /, '') !== this.#last.replace(/^\[[^\]]*\] /, '')) this.output.write(`${line}\n`);
    this.#last = line;
  }

  /** Prints a message on its own line, keeping the live line below it. */
  say(text: string): void {
    if (this.output.isTTY) this.output.write(`\r\x1b[K${text}\n`);
    else this.output.write(`${text}\n`);
    this.draw();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.output.isTTY) this.output.write('\n');
  }
}

function banner(lab: Lab): string {
  const lines = [
    `raftvip lab: ${lab.hosts.length} hosts and a client in network namespaces on one bridge (no route out)`,
    ...lab.hosts.map((host) => `  ${host}  ${lab.network.hostAddress(host).padEnd(13)} ${lab.network.hostMac(host)}  namespace ${lab.network.hostNamespace(host)}`),
    `  client ${labClientAddress.padEnd(13)} namespace ${lab.network.clientNamespace}`,
    `  VIP ${labVip}, each host answers its own name on port 80; the client connects to ${labVip}:80 every ${lab.probe?.intervalMs ?? 5} ms`,
  ];
  return lines.join('\n');
}

/** `raftvip lab demo`. Resolves with the exit code. */
export async function runLabDemo(output: LabOutput): Promise<number> {
  const startedAt = monotonicNowMs();
  output.write('building the lab and starting three raftvip daemons...\n');
  // Ctrl-C: tear down (every process by PID, the namespaces, the temp files), then exit 130.
  // Before the lab exists, LabNetwork's exit hook deletes whatever namespaces were made.
  let lab: Lab | null = null;
  const onSignal = (): void => {
    output.write('\ninterrupted: tearing the lab down...\n');
    void (lab?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    lab = await Lab.start({ hosts: 3, handleSignals: false, probeIntervalMs: 5, probeTimeoutMs: 500, apiservers: { startDelayMs: 300 } });
    return await demo(lab, output, startedAt);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function demo(lab: Lab, output: LabOutput, startedAt: number): Promise<number> {
  const live = new LiveLine(lab, output, startedAt);
  const outages: string[] = [];
  try {
    output.write(`${banner(lab)}\n\n`);
    live.start();
    let steady = await lab.waitForSteady();
    live.say(`${steady.leader} was elected and holds the VIP; the client reaches ${steady.leader} on ${labVip}:80`);
    await demoLoadBalancer(lab, live);

    const failures = [
      {
        name: 'crash',
        how: 'SIGKILL of its daemon, then `raftvip vip release` as systemd ExecStopPost would',
        act: (host: string) => lab.crash(host),
        deadCopy: false,
        restore: (host: string) => lab.cluster.start(host),
      },
      {
        name: 'power-off',
        how: 'its link cut and its daemon killed at the same instant',
        act: (host: string) => lab.powerOff(host),
        deadCopy: true,
        restore: async (host: string) => {
          live.say(`powering ${host} on: its daemon starts, finds the VIP it held when it died and removes it`);
          await lab.powerOn(host);
        },
      },
      {
        name: 'planned handover',
        how: 'SIGTERM (systemctl stop): it hands leadership over, then exits',
        act: (host: string) => lab.terminate(host),
        deadCopy: false,
        restore: (host: string) => lab.cluster.start(host),
      },
    ];
    for (const failure of failures) {
      await sleep(1000);
      steady = await lab.waitForSteady({ sinceMs: monotonicNowMs() - 500 });
      const old = steady.leader;
      live.say(`\n${failure.name}: ${old} holds the VIP; ${failure.how}`);
      const at = await failure.act(old);
      const next = await lab.waitForSteady({ sinceMs: at, exclude: [old], ignoreHolders: failure.deadCopy ? [old] : [] });
      await sleep(settleMs);
      const outageMs = longestGap(lab.probe!.attempts(), at - 200, monotonicNowMs());
      const failed = lab.probe!.failedBetween(at - 200, monotonicNowMs()).length;
      const summary = `${failure.name}: ${old} → ${next.leader}, the client saw an outage of ${outageMs === null ? '?' : outageMs.toFixed(0)} ms (${failed} failed connects)`;
      outages.push(summary);
      live.say(summary);
      await failure.restore(old);
    }
    await sleep(1000);
    live.stop();
    output.write(`\nwhat the client saw:\n${outages.map((line) => `  ${line}`).join('\n')}\n`);
    output.write('(npm run bench:failover measures many cycles of each; docs/benchmarks.md has the figures)\n');
    return 0;
  } finally {
    live.stop();
    output.write('tearing the lab down...');
    await lab.stop();
    output.write(' done: every process ended, every namespace deleted\n');
  }
}

/** The load balancer: new connections to VIP:6443 spread over every host's kube-apiserver
 * stand-in, and one turned not ready is drained while it still serves. */
async function demoLoadBalancer(lab: Lab, live: LiveLine): Promise<void> {
  await lab.waitForBackendsReady(lab.hosts.length, demoReadyTimeoutMs);
  const count = (attempts: readonly LbAttempt[]) =>
    lab.hosts.map((host) => `${host} ${attempts.filter((attempt) => attempt.backend === host).length}`).join(', ') +
    `${attempts.some((attempt) => attempt.error !== null) ? `, failed ${attempts.filter((attempt) => attempt.error !== null).length}` : ''}`;
  const spread = await lab.runLbClient({ count: 30, intervalMs: 0 });
  live.say(`\nload balancer: each host runs a kube-apiserver stand-in on :6443; 30 new HTTPS connections to ${labVip}:6443 answered by ${count(spread)}`);
  const backend = lab.hosts.find((host) => host !== lab.cluster.leader()) ?? lab.hosts[0]!;
  const run = lab.runLbClient({ durationMs: 2000, intervalMs: 5 });
  await sleep(300);
  const sinceMs = monotonicNowMs();
  lab.cluster.signalApiserver(backend, 'SIGUSR1');
  const notReady = await lab.cluster.waitForApiserverEvent(backend, 'not-ready', { sinceMs, timeoutMs: 2000 });
  const attempts = await run;
  const last = attempts.filter((attempt) => attempt.backend === backend).at(-1);
  const drainedMs = last === undefined ? '?' : (last.startMs - notReady.atMs).toFixed(0);
  live.say(`load balancer: ${backend}'s /readyz turned 503 (it still serves); its last new connection came ${drainedMs} ms later; over 2 s: ${count(attempts)}`);
  lab.cluster.signalApiserver(backend, 'SIGUSR1');
}

/** `raftvip lab`: builds the lab and keeps it until SIGINT/SIGTERM. */
export async function runLab(output: LabOutput, options: { hosts: number }): Promise<number> {
  const startedAt = monotonicNowMs();
  const lab = await Lab.start({ hosts: options.hosts, handleSignals: false, probeIntervalMs: 50, probeTimeoutMs: 500 });
  const live = new LiveLine(lab, output, startedAt);
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const onSignal = (): void => finish();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const first = lab.hosts[0]!;
    output.write(
      [
        banner(lab),
        '',
        'try, from another terminal (as root):',
        `  ip netns exec ${lab.network.clientNamespace} curl -s http://${labVip}/        # who answers on the VIP`,
        `  ip netns exec ${lab.network.hostNamespace(first)} bin/raftvip status --config ${lab.cluster.configFile(first)}`,
        `  ip netns exec ${lab.network.hostNamespace(first)} bin/raftvip transfer-leadership --config ${lab.cluster.configFile(first)}`,
        `  kill -STOP <pid>   (daemon pids: ${lab.hosts.map((h) => `${h} ${lab.cluster.view(h).pid ?? '?'}`).join(', ')})`,
        'Ctrl-C tears it all down.',
        '',
      ].join('\n'),
    );
    live.start();
    await finished;
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    live.stop();
    output.write('tearing the lab down...');
    await lab.stop();
    output.write(' done\n');
  }
}
