// The IPVS data plane on a real IPVS kernel (the qemu guest), judged by ipvsadm and by where
// real TCP connections land. In the guest, `runInGuest` builds one L2 segment from network
// namespaces (a bridge namespace; a balancer holding the VIP, a client and four backends on the
// same subnet, each backend a busybox server answering its own name), starts one driver process
// in the balancer's namespace running IpvsDataPlane (ipvs-driver.ts) and one in the client's,
// and records, without asserting:
//
// 1. the first apply (rr over b1..b3, with IPVS timeouts tcp 600 s and tcpfin 30 s): its report,
//    and a snapshot of the kernel (`ipvsadm -Ln`/`-Sn`, `nft list ruleset`, the sysctls,
//    `ipvsadm -L --timeout`) before and after; 30 connections from the client (exact round robin proves both IPVS and the SNAT,
//    since every backend shares the client's subnet) and `ipvsadm -Ln --stats`;
// 2. the negative control: raftvip's nft table deleted by hand, connections fail (the backends
//    answer the client directly: kube-vip #767); the next apply puts the table back by itself;
// 3. new backends: b1 drained (weight 0), b2 removed, b4 added, wrr with b3 weight 2, b4 weight 1;
//    30 connections, and 3 made on the balancer itself;
// 4. the same state applied again (nothing changes: no IPVS change, no sysctl, table untouched),
//    then drift by hand (a stray real server, a weight, the scheduler) that the next apply undoes;
// 5. an IPv6 VIP on the same segment (ip6 SNAT, IPv6 forwarding), 10 connections, removal;
// 6. a foreign IPVS service, a foreign UDP service on the VIP's own port and a foreign nft table,
//    then remove() twice: raftvip's service and table go, the foreign ones stay.
// Apply durations are recorded throughout. On the host, `judge` asserts all of it.

import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { RealServer, Scheduler, VirtualService } from '../../src/lb/data-plane.js';
import type { IpvsApplyReport } from '../../src/lb/ipvs-data-plane.js';
import type { IpvsChange } from '../../src/lb/ipvs-planner.js';
import type { DriverError, DriverReply, DriverRequest } from './ipvs-driver.js';
import type { GuestScenario } from './scenario.js';
import { clip, runCommand, type CommandOutcome } from './guest-command.js';

/** One driver request; an apply takes about 2 s under emulation. */
const driverRequestTimeoutMs = 30_000;
/** Starting node under emulation takes ~2–6 s. */
const driverStartTimeoutMs = 40_000;
/** A connection through the balancer answers in tens of milliseconds, even emulated. */
const connectTimeoutMs = 3_000;
/** Without SNAT the handshake never completes; a short wait keeps the control cheap. */
const failingConnectTimeoutMs = 1_500;
/** IPVS folds per-CPU counters into what ipvsadm --stats shows every 2 s (the estimator). */
const statsSettleMs = 3_000;

const prefix = 'rvg-ipvs-';
const switchNamespace = `${prefix}sw`;
const balancerNamespace = `${prefix}lb`;
const clientNamespace = `${prefix}cl`;
const backendNames = ['b1', 'b2', 'b3', 'b4'] as const;
type BackendName = (typeof backendNames)[number];
const hostNamespaces = ['lb', 'cl', ...backendNames].map((name) => `${prefix}${name}`);

const port = 6443;
const vip = '10.215.0.100';
const vip6 = 'fd00:215::100';
const foreignVip = '10.215.0.200';
const hostAddresses: Record<string, { v4: string; v6: string }> = {
  lb: { v4: '10.215.0.2', v6: 'fd00:215::2' },
  cl: { v4: '10.215.0.3', v6: 'fd00:215::3' },
  b1: { v4: '10.215.0.11', v6: 'fd00:215::11' },
  b2: { v4: '10.215.0.12', v6: 'fd00:215::12' },
  b3: { v4: '10.215.0.13', v6: 'fd00:215::13' },
  b4: { v4: '10.215.0.14', v6: 'fd00:215::14' },
};
const backend = (name: BackendName, weight: number, family: 'v4' | 'v6' = 'v4'): RealServer => ({ address: hostAddresses[name]![family], port, weight });
const service = (scheduler: Scheduler, realServers: RealServer[], address = vip): VirtualService => ({ address, port, scheduler, realServers });

const initialService = service('rr', [backend('b1', 1), backend('b2', 1), backend('b3', 1)]);
const changedService = service('wrr', [backend('b1', 0), backend('b3', 2), backend('b4', 1)]);
const ipv6Service = service('rr', [backend('b1', 1, 'v6'), backend('b2', 1, 'v6')], vip6);
const configuredTimeouts = { tcpS: 600, tcpFinS: 30 } as const;


export interface ApplyFacts {
  readonly ok: boolean;
  readonly report: IpvsApplyReport | null;
  readonly hostChanges: readonly string[];
  readonly error: DriverError | null;
  /** The request's time in the driver (the apply plus JSON). */
  readonly wallMs: number;
}

export interface CallFacts {
  readonly ok: boolean;
  readonly result: unknown;
  readonly error: DriverError | null;
}

export interface ConnectFacts {
  /** Per connection: the backend's name, or `error:CODE`. */
  readonly outcomes: readonly string[];
  readonly durationsMs: readonly number[];
}

/** What the kernel holds in the balancer's namespace, read by one process (each `ip netns
 * exec` costs a few hundred milliseconds under emulation). */
export interface KernelSnapshot {
  /** The snapshot script ran to the end. */
  readonly ok: boolean;
  readonly stderr: string;
  /** `ipvsadm -Ln`, for people. */
  readonly ipvsadmList: string;
  /** `ipvsadm -Sn`: the rules without counters, comparable across snapshots. */
  readonly ipvsadmSave: string;
  /** `nft list ruleset`. */
  readonly nftRuleset: string;
  /** `sysctl` of every setting the data plane may change. */
  readonly sysctls: string;
  /** `ipvsadm -L --timeout`. */
  readonly timeouts: string;
}

export interface IpvsFacts {
  readonly setup: CommandOutcome;
  readonly setupMs: number;
  /** Wall time of each phase in the guest, in order. */
  readonly phaseMs: Readonly<Record<string, number>>;
  readonly driverStartMs: { readonly balancer: number; readonly client: number };
  readonly available: CallFacts;
  readonly before: KernelSnapshot;
  readonly initial: { readonly apply: ApplyFacts; readonly kernel: KernelSnapshot; readonly observe: CallFacts; readonly connections: ConnectFacts; readonly stats: CommandOutcome };
  readonly withoutSnat: { readonly deleteTable: CommandOutcome; readonly connections: ConnectFacts; readonly apply: ApplyFacts; readonly kernel: KernelSnapshot; readonly connectionsAfter: ConnectFacts };
  readonly changed: { readonly apply: ApplyFacts; readonly kernel: KernelSnapshot; readonly connections: ConnectFacts; readonly localConnections: CommandOutcome };
  readonly reapply: { readonly before: KernelSnapshot; readonly apply: ApplyFacts; readonly after: KernelSnapshot };
  readonly drift: { readonly handEdits: CommandOutcome; readonly drifted: KernelSnapshot; readonly apply: ApplyFacts; readonly after: KernelSnapshot };
  readonly ipv6: { readonly apply: ApplyFacts; readonly kernel: KernelSnapshot; readonly connections: ConnectFacts; readonly remove: CallFacts; readonly after: KernelSnapshot };
  readonly foreign: {
    readonly setup: CommandOutcome;
    readonly apply: ApplyFacts;
    readonly beforeRemove: KernelSnapshot;
    readonly remove: CallFacts;
    readonly removeAgain: CallFacts;
    readonly observeAfter: CallFacts;
    readonly after: KernelSnapshot;
  };
}

// ---------------------------------------------------------------------------------------------
// Guest-side helpers


/** Runs a command and records what happened; never throws. */

const inBalancer = (command: string, ...args: string[]): Promise<CommandOutcome> => runCommand('ip', ['netns', 'exec', balancerNamespace, command, ...args]);

const snapshotSeparator = '--- raftvip snapshot ---';
const snapshotCommands = [
  'ipvsadm -Ln',
  'ipvsadm -Sn',
  'nft list ruleset',
  'sysctl net.ipv4.vs.conntrack net.ipv4.ip_forward net.ipv4.vs.expire_nodest_conn net.ipv6.conf.all.forwarding',
  'ipvsadm -L --timeout',
] as const;

async function snapshot(): Promise<KernelSnapshot> {
  const script = snapshotCommands.join(`\necho '${snapshotSeparator}'\n`);
  const outcome = await inBalancer('sh', '-c', script);
  const parts = outcome.stdout.split(`${snapshotSeparator}\n`);
  const [ipvsadmList = '', ipvsadmSave = '', nftRuleset = '', sysctls = '', timeouts = ''] = parts;
  return { ok: outcome.ok && parts.length === snapshotCommands.length, stderr: outcome.stderr, ipvsadmList, ipvsadmSave, nftRuleset, sysctls, timeouts };
}

/** The segment, in few processes (each exec costs tens of milliseconds under emulation):
 * `ip -batch` per namespace instead of one `ip` per step. */
function setupScript(): string {
  const heredoc = (command: string, lines: readonly string[]): string => `${command} <<'EOF'\n${lines.join('\n')}\nEOF`;
  const shorts = Object.keys(hostAddresses);
  const parts = [
    // Warm the modules the data plane loads on demand: under emulation each modprobe over 9p
    // takes a second or more, which is not what the apply timings should measure.
    'modprobe -a ip_vs ip_vs_rr ip_vs_wrr nf_tables nf_nat nft_chain_nat nft_masq nft_ct veth bridge',
    heredoc('ip -batch -', [switchNamespace, ...hostNamespaces].map((namespace) => `netns add ${namespace}`)),
    // Interfaces created in a namespace from now on skip IPv6 duplicate address detection,
    // link-local addresses included, so IPv6 works at once.
    ...hostNamespaces.map((namespace) => `ip netns exec ${namespace} sh -c 'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad'`),
    heredoc(`ip -n ${switchNamespace} -batch -`, [
      'link add br0 type bridge stp_state 0 forward_delay 0',
      'link set br0 up',
      ...shorts.flatMap((short) => [`link add p-${short} type veth peer name eth0 netns ${prefix}${short}`, `link set p-${short} master br0 up`]),
    ]),
    ...shorts.map((short) =>
      heredoc(`ip -n ${prefix}${short} -batch -`, [
        'link set lo up',
        `addr add ${hostAddresses[short]!.v4}/24 dev eth0`,
        `addr add ${hostAddresses[short]!.v6}/64 dev eth0 nodad`,
        // The VIPs, on the balancer (the VIP executor's job in the daemon; here by hand).
        ...(short === 'lb' ? [`addr add ${vip}/24 dev eth0`, `addr add ${vip6}/64 dev eth0 nodad`] : []),
        'link set eth0 up',
      ]),
    ),
  ];
  return parts.join('\n');
}

function teardownScript(): string {
  return [switchNamespace, ...hostNamespaces].map((namespace) => `ip netns del ${namespace} 2>/dev/null || true`).join('\n');
}

/** One helper process in a namespace, spoken to in JSON lines (ipvs-driver.ts). */
class Driver {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, (reply: DriverReply) => void>();
  readonly #ready: Promise<void>;
  #nextId = 1;
  #stderr = '';

  constructor(namespace: string, role: 'balancer' | 'client') {
    const script = fileURLToPath(new URL('./ipvs-driver.js', import.meta.url));
    this.#child = spawn('ip', ['netns', 'exec', namespace, process.execPath, script, role], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stderr = clip(this.#stderr + chunk);
    });
    let markReady: () => void = () => {};
    this.#ready = new Promise((resolve) => {
      markReady = resolve;
    });
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as DriverReply;
      if (reply.id === 0) return markReady();
      this.#pending.get(reply.id)?.(reply);
      this.#pending.delete(reply.id);
    });
  }

  /** Resolves with the milliseconds until the driver said it is ready. */
  async started(): Promise<number> {
    const startedMs = performance.now();
    await withTimeout(this.#ready, driverStartTimeoutMs, () => `the driver did not start: ${this.#stderr}`);
    return Math.round(performance.now() - startedMs);
  }

  request(request: DriverRequest): Promise<DriverReply> {
    const id = this.#nextId++;
    const reply = new Promise<DriverReply>((resolve) => this.#pending.set(id, resolve));
    this.#child.stdin!.write(`${JSON.stringify({ id, ...request })}\n`);
    return withTimeout(reply, driverRequestTimeoutMs, () => `no reply to ${request.op} within ${driverRequestTimeoutMs} ms: ${this.#stderr}`);
  }

  async call(request: DriverRequest): Promise<CallFacts> {
    const reply = await this.request(request);
    return reply.ok ? { ok: true, result: reply.result, error: null } : { ok: false, result: null, error: reply.error };
  }

  async apply(plane: string, virtualService: VirtualService): Promise<ApplyFacts> {
    const reply = await this.request({ op: 'apply', plane, service: virtualService });
    if (!reply.ok) return { ok: false, report: null, hostChanges: [], error: reply.error, wallMs: reply.durationMs };
    const result = reply.result as { report: IpvsApplyReport; hostChanges: string[] };
    return { ok: true, report: result.report, hostChanges: result.hostChanges, error: null, wallMs: reply.durationMs };
  }

  async connect(host: string, count: number, timeoutMs = connectTimeoutMs): Promise<ConnectFacts> {
    const reply = await this.request({ op: 'connect', host, port, count, timeoutMs });
    if (!reply.ok) throw new Error(`connect failed in the client driver: ${reply.error.message}`);
    return reply.result as ConnectFacts;
  }

  /** Ends the process: stdin closes, the driver closes its sockets and exits. */
  stop(): void {
    this.#child.stdin?.end();
    setTimeout(() => {
      if (this.#child.exitCode === null && this.#child.pid !== undefined) this.#child.kill('SIGKILL');
    }, 5_000).unref();
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, describe: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(describe())), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function runScenario(): Promise<IpvsFacts> {
  const backends: ChildProcess[] = [];
  const drivers: Driver[] = [];
  const phaseMs: Record<string, number> = {};
  let phaseStartedMs = performance.now();
  const phaseDone = (name: string): void => {
    const nowMs = performance.now();
    phaseMs[name] = Math.round(nowMs - phaseStartedMs);
    phaseStartedMs = nowMs;
  };
  try {
    const setupStartedMs = performance.now();
    const setup = await runCommand('sh', ['-ec', setupScript()]);
    const setupMs = Math.round(performance.now() - setupStartedMs);
    if (!setup.ok) throw new Error(`the namespace setup failed: ${setup.stderr}`);
    for (const name of backendNames) {
      // `ip netns exec` execs busybox, so the PID is the server's; -ll keeps it listening and
      // forks one `echo NAME` per connection.
      backends.push(spawn('ip', ['netns', 'exec', `${prefix}${name}`, 'busybox', 'nc', '-ll', '-p', String(port), '-e', '/bin/echo', name], { stdio: 'ignore' }));
    }
    const balancer = new Driver(balancerNamespace, 'balancer');
    const client = new Driver(clientNamespace, 'client');
    drivers.push(balancer, client);
    const [balancerStartMs, clientStartMs] = await Promise.all([balancer.started(), client.started()]);
    phaseDone('setup and drivers');

    const available = await balancer.call({ op: 'available' });
    const before = await snapshot();

    // 1. The first apply: rr over b1..b3, with timeouts.
    await balancer.call({ op: 'open', plane: 'v4', vip: { address: vip, port }, timeouts: configuredTimeouts });
    const initial = {
      apply: await balancer.apply('v4', initialService),
      kernel: await snapshot(),
      observe: await balancer.call({ op: 'observe', plane: 'v4' }),
      connections: await client.connect(vip, 30),
      stats: await sleep(statsSettleMs).then(() => inBalancer('ipvsadm', '-Ln', '--stats')),
    };
    phaseDone('first apply and 30 connections');

    // 2. Negative control: without raftvip's SNAT table, same-subnet backends break connections.
    const withoutSnat = {
      deleteTable: await inBalancer('nft', 'delete', 'table', 'ip', 'raftvip_ipvs'),
      connections: await client.connect(vip, 2, failingConnectTimeoutMs),
      apply: await balancer.apply('v4', initialService),
      kernel: await snapshot(),
      connectionsAfter: await client.connect(vip, 3),
    };
    phaseDone('without SNAT');

    // 3. New backends: drain b1, remove b2, add b4, wrr.
    const changed = {
      apply: await balancer.apply('v4', changedService),
      kernel: await snapshot(),
      connections: await client.connect(vip, 30),
      // Connections made on the balancer itself (a kubelet on a control-plane host).
      localConnections: await inBalancer('sh', '-c', `for i in 1 2 3; do busybox nc -w 2 ${vip} ${port} </dev/null || echo error; done`),
    };
    phaseDone('new backends and 30 connections');

    // 4. The same state again, then drift by hand.
    const reapply = { before: await snapshot(), apply: await balancer.apply('v4', changedService), after: await snapshot() };
    const handEdits = await inBalancer(
      'sh',
      '-ec',
      [
        `ipvsadm -a -t ${vip}:${port} -r ${hostAddresses.b2!.v4}:${port} -m -w 5`,
        `ipvsadm -e -t ${vip}:${port} -r ${hostAddresses.b3!.v4}:${port} -m -w 9`,
        `ipvsadm -E -t ${vip}:${port} -s lc`,
      ].join('\n'),
    );
    const drift = { handEdits, drifted: await snapshot(), apply: await balancer.apply('v4', changedService), after: await snapshot() };
    phaseDone('same state and drift');

    // 5. An IPv6 VIP on the same segment.
    await balancer.call({ op: 'open', plane: 'v6', vip: { address: vip6, port } });
    const ipv6 = {
      apply: await balancer.apply('v6', ipv6Service),
      kernel: await snapshot(),
      connections: await client.connect(vip6, 10),
      remove: await balancer.call({ op: 'remove', plane: 'v6' }),
      after: await snapshot(),
    };
    phaseDone('IPv6');

    // 6. Foreign services and tables, then remove() twice.
    const foreignSetup = await inBalancer(
      'sh',
      '-ec',
      [
        `ipvsadm -A -t ${foreignVip}:80 -s rr`,
        `ipvsadm -a -t ${foreignVip}:80 -r ${hostAddresses.b1!.v4}:80 -m -w 1`,
        `ipvsadm -A -u ${vip}:${port} -s rr`,
        'nft add table ip foreign_lb',
        "nft add chain ip foreign_lb postrouting '{ type nat hook postrouting priority srcnat; policy accept; }'",
        `nft add rule ip foreign_lb postrouting ip daddr ${hostAddresses.b1!.v4} masquerade`,
      ].join('\n'),
    );
    const foreign = {
      setup: foreignSetup,
      apply: await balancer.apply('v4', changedService),
      beforeRemove: await snapshot(),
      remove: await balancer.call({ op: 'remove', plane: 'v4' }),
      removeAgain: await balancer.call({ op: 'remove', plane: 'v4' }),
      observeAfter: await balancer.call({ op: 'observe', plane: 'v4' }),
      after: await snapshot(),
    };
    phaseDone('foreign and remove');

    return {
      setup,
      setupMs,
      phaseMs,
      driverStartMs: { balancer: balancerStartMs, client: clientStartMs },
      available,
      before,
      initial,
      withoutSnat,
      changed,
      reapply,
      drift,
      ipv6,
      foreign,
    };
  } finally {
    for (const driver of drivers) driver.stop();
    for (const child of backends) if (child.exitCode === null && child.pid !== undefined) child.kill('SIGTERM');
    // The scenarios share one guest: leave nothing behind for the next one.
    await runCommand('sh', ['-c', teardownScript()]);
  }
}

// ---------------------------------------------------------------------------------------------
// Host-side judging

/** A plan in short form: `add-destination 10.215.0.14:6443 w1`. */
function summary(changes: readonly IpvsChange[]): string[] {
  return changes.map((change) => {
    switch (change.kind) {
      case 'add-service':
      case 'edit-service':
        return `${change.kind} ${change.service.scheduler}`;
      case 'add-destination':
      case 'edit-destination':
        return `${change.kind} ${change.destination.address}:${change.destination.port} w${change.destination.weight}`;
      case 'delete-destination':
        return `${change.kind} ${change.destination.address}:${change.destination.port}`;
    }
  });
}

/** `ipvsadm -Sn` as a sorted list of rules, comparable across snapshots. */
function rules(snapshot: KernelSnapshot): string[] {
  return snapshot.ipvsadmSave
    .split('\n')
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .filter((line) => line.startsWith('-A') || line.startsWith('-a'))
    .sort();
}

function counts(outcomes: readonly string[]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const outcome of outcomes) result[outcome] = (result[outcome] ?? 0) + 1;
  return result;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function expectCommand(t: Test, name: string, outcome: CommandOutcome): void {
  t.ok(outcome.ok, `${name}: \`${outcome.command}\` exits 0`, { exitCode: outcome.exitCode, stderr: outcome.stderr });
}

function expectApplied(t: Test, name: string, apply: ApplyFacts): IpvsApplyReport {
  t.ok(apply.ok, `${name}: apply succeeds`, { error: apply.error });
  return apply.report ?? { changes: [], sysctlsChanged: [], timeoutsChanged: false, sourceNatWritten: false, durationMs: Number.NaN };
}

function expectCall(t: Test, name: string, call: CallFacts): void {
  t.ok(call.ok, `${name} succeeds`, { error: call.error });
}

const v4Rules = (servers: readonly string[], scheduler: string): string[] =>
  [`-A -t ${vip}:${port} -s ${scheduler}`, ...servers.map((server) => `-a -t ${vip}:${port} -r ${server}`)].sort();

function expectSnapshot(t: Test, name: string, kernel: KernelSnapshot): void {
  t.ok(kernel.ok, `${name}: the kernel snapshot was read`, { stderr: kernel.stderr });
}

function judge(t: Test, facts: IpvsFacts): void {
  const { b1, b2, b3, b4 } = hostAddresses as Record<BackendName, { v4: string; v6: string }>;
  expectCommand(t, 'namespace setup', facts.setup);
  expectCall(t, 'ipvsAvailable()', facts.available);
  t.match(facts.available.result, { ok: true, family: { version: 1 } }, 'the kernel has IPVS (family resolved by name, version 1)');
  expectSnapshot(t, 'before raftvip', facts.before);
  t.match(facts.before.timeouts, /Timeout \(tcp tcpfin udp\): 900 120 300/, 'before raftvip: the kernel’s default timeouts');
  t.same(rules(facts.before), [], 'before raftvip: no IPVS service');

  // 1. The first apply.
  const initial = expectApplied(t, 'first apply', facts.initial.apply);
  t.same(summary(initial.changes), ['add-service rr', `add-destination ${b1.v4}:${port} w1`, `add-destination ${b2.v4}:${port} w1`, `add-destination ${b3.v4}:${port} w1`], 'first apply: the service, then three destinations');
  t.same([...initial.sysctlsChanged].sort(), ['net/ipv4/ip_forward=1', 'net/ipv4/vs/conntrack=1', 'net/ipv4/vs/expire_nodest_conn=1'], 'first apply sets the three sysctls of a fresh namespace');
  t.ok(facts.initial.apply.hostChanges.some((line) => /ip_forward/.test(line)) && facts.initial.apply.hostChanges.some((line) => /timeouts/.test(line)), 'sysctl and timeout changes are reported through onHostChange');
  t.ok(initial.timeoutsChanged && initial.sourceNatWritten, 'first apply sets the timeouts and writes the SNAT table');
  const kernel = facts.initial.kernel;
  expectSnapshot(t, 'after the first apply', kernel);
  t.same(rules(kernel), v4Rules([`${b1.v4}:${port} -m -w 1`, `${b2.v4}:${port} -m -w 1`, `${b3.v4}:${port} -m -w 1`], 'rr'), 'ipvsadm: TCP VIP:6443 rr, three masquerading real servers of weight 1');
  t.match(kernel.ipvsadmList, new RegExp(`TCP  ${vip}:${port} rr`), 'ipvsadm -Ln shows the service');
  t.match(kernel.nftRuleset, /table ip raftvip_ipvs \{\s*chain postrouting \{\s*type nat hook postrouting priority srcnat; policy accept;\s*ct original ip daddr 10\.215\.0\.100 ct protocol tcp ct original proto-dst 6443 masquerade\s*\}\s*\}/, 'nft: the SNAT table, one masquerade rule on the conntrack original tuple');
  t.match(kernel.sysctls, /net\.ipv4\.vs\.conntrack = 1\s+net\.ipv4\.ip_forward = 1\s+net\.ipv4\.vs\.expire_nodest_conn = 1\s+net\.ipv6\.conf\.all\.forwarding = 0/, 'sysctl: conntrack, ip_forward and expire_nodest_conn at 1; IPv6 forwarding untouched for an IPv4 VIP');
  t.match(kernel.timeouts, /Timeout \(tcp tcpfin udp\): 600 30 300/, 'timeouts: tcp and tcpfin as configured, udp (not configured) left at the kernel’s');
  expectCall(t, 'observe() after the first apply', facts.initial.observe);
  t.match(facts.initial.observe.result, { address: vip, port, scheduler: 'rr' }, 'observe() reports the service');
  const initialConnections = facts.initial.connections.outcomes;
  t.same(counts(initialConnections), { b1: 10, b2: 10, b3: 10 }, '30 connections from the same-subnet client: exactly 10 per backend, none failed');
  t.ok(initialConnections.every((name, index) => name === initialConnections[index % 3]), 'round robin: the backends answer in a fixed cycle of three');
  t.match(facts.initial.stats.stdout, new RegExp(`TCP  ${vip.replaceAll('.', '\\.')}:${port}\\s+30\\s`), 'ipvsadm --stats: 30 connections scheduled on the service');
  for (const name of ['b1', 'b2', 'b3'] as const) {
    t.match(facts.initial.stats.stdout, new RegExp(`-> ${hostAddresses[name]!.v4.replaceAll('.', '\\.')}:${port}\\s+10\\s`), `ipvsadm --stats: 10 connections to ${name}`);
  }

  // 2. Negative control.
  expectCommand(t, 'deleting raftvip_ipvs by hand', facts.withoutSnat.deleteTable);
  t.ok(facts.withoutSnat.connections.outcomes.every((outcome) => outcome.startsWith('error:')), `without the SNAT table every connection fails (${facts.withoutSnat.connections.outcomes.join(', ')}): the backends answer the client directly`);
  const restored = expectApplied(t, 'apply after the table was deleted', facts.withoutSnat.apply);
  t.same(restored.changes, [], 'the IPVS service needed nothing');
  t.ok(restored.sourceNatWritten, 'the SNAT table is put back (level-triggered)');
  t.match(facts.withoutSnat.kernel.nftRuleset, /table ip raftvip_ipvs[\s\S]*masquerade/, 'nft lists the table again');
  t.ok(facts.withoutSnat.connectionsAfter.outcomes.every((outcome) => /^b[123]$/.test(outcome)), `connections work again (${facts.withoutSnat.connectionsAfter.outcomes.join(', ')})`);

  // 3. New backends.
  const changed = expectApplied(t, 'apply of the new backends', facts.changed.apply);
  t.same(summary(changed.changes), ['edit-service wrr', `add-destination ${b4.v4}:${port} w1`, `edit-destination ${b1.v4}:${port} w0`, `edit-destination ${b3.v4}:${port} w2`, `delete-destination ${b2.v4}:${port}`], 'scheduler edited in place; b4 added, b1 drained, b3 reweighted, b2 deleted');
  t.same(rules(facts.changed.kernel), v4Rules([`${b1.v4}:${port} -m -w 0`, `${b3.v4}:${port} -m -w 2`, `${b4.v4}:${port} -m -w 1`], 'wrr'), 'ipvsadm: wrr; b1 kept with weight 0 (drained), b3 weight 2, b4 weight 1, no b2');
  t.same(counts(facts.changed.connections.outcomes), { b3: 20, b4: 10 }, '30 connections under wrr 2:1: b3 20, b4 10, none to the drained b1 or the removed b2');
  const local = facts.changed.localConnections.stdout.trim().split(/\s+/);
  t.ok(local.length === 3 && local.every((name) => name === 'b3' || name === 'b4'), `connections made on the balancer itself reach the backends too (${local.join(', ')})`);

  // 4. Idempotence and drift.
  const reapplied = expectApplied(t, 'apply of the same state', facts.reapply.apply);
  t.same(reapplied.changes, [], 'the same state again: no IPVS change');
  t.same(reapplied.sysctlsChanged, [], 'no sysctl written');
  t.notOk(reapplied.timeoutsChanged, 'timeouts not set again');
  t.notOk(reapplied.sourceNatWritten, 'the SNAT table not rewritten');
  expectSnapshot(t, 'before and after the same state', facts.reapply.after);
  t.same(rules(facts.reapply.after), rules(facts.reapply.before), 'ipvsadm -Sn is identical before and after');
  t.equal(facts.reapply.after.nftRuleset, facts.reapply.before.nftRuleset, 'nft lists the same ruleset before and after');
  t.equal(facts.reapply.after.sysctls, facts.reapply.before.sysctls, 'the sysctls are the same before and after');
  expectCommand(t, 'drift by hand', facts.drift.handEdits);
  t.not(rules(facts.drift.drifted).join('\n'), rules(facts.reapply.after).join('\n'), 'the hand edits changed the kernel');
  const drifted = expectApplied(t, 'apply after drift', facts.drift.apply);
  t.same(summary(drifted.changes), ['edit-service wrr', `edit-destination ${b3.v4}:${port} w2`, `delete-destination ${b2.v4}:${port}`], 'the scheduler, weight and stray server set by hand are undone');
  t.same(rules(facts.drift.after), rules(facts.reapply.after), 'ipvsadm -Sn is back to the desired state');

  // 5. IPv6.
  const ipv6 = expectApplied(t, 'IPv6 apply', facts.ipv6.apply);
  t.same(summary(ipv6.changes), ['add-service rr', `add-destination ${b1.v6}:${port} w1`, `add-destination ${b2.v6}:${port} w1`], 'IPv6: the service and two destinations');
  t.same(ipv6.sysctlsChanged, ['net/ipv6/conf/all/forwarding=1'], 'IPv6: forwarding turned on (conntrack and expire_nodest_conn already set)');
  t.match(facts.ipv6.kernel.ipvsadmList, new RegExp(`TCP  \\[${vip6}\\]:${port} rr`), 'ipvsadm shows the IPv6 service');
  t.match(facts.ipv6.kernel.nftRuleset, /table ip6 raftvip_ipvs[\s\S]*ct original ip6 daddr fd00:215::100 ct protocol tcp ct original proto-dst 6443 masquerade/, 'nft: the ip6 SNAT rule');
  t.match(facts.ipv6.kernel.sysctls, /net\.ipv6\.conf\.all\.forwarding = 1/, 'sysctl: IPv6 forwarding on');
  t.same(counts(facts.ipv6.connections.outcomes), { b1: 5, b2: 5 }, '10 IPv6 connections: 5 per backend');
  expectCall(t, 'IPv6 remove()', facts.ipv6.remove);
  t.notMatch(facts.ipv6.after.ipvsadmSave, /fd00:215::100/, 'the IPv6 service is gone');
  t.match(facts.ipv6.after.ipvsadmSave, new RegExp(`-A -t ${vip}:${port}`), 'the IPv4 service is still there');
  t.notMatch(facts.ipv6.after.nftRuleset, /table ip6 raftvip_ipvs/, 'the ip6 SNAT table is gone');

  // 6. Foreign services and tables survive remove().
  expectCommand(t, 'foreign IPVS services and nft table', facts.foreign.setup);
  const foreignApply = expectApplied(t, 'apply next to foreign services', facts.foreign.apply);
  t.same(foreignApply.changes, [], 'apply does not touch the foreign services');
  t.ok(rules(facts.foreign.beforeRemove).includes(`-A -t ${foreignVip}:80 -s rr`), 'the foreign service is there before remove()');
  expectCall(t, 'remove()', facts.foreign.remove);
  expectCall(t, 'remove() a second time (idempotent)', facts.foreign.removeAgain);
  expectCall(t, 'observe() after remove()', facts.foreign.observeAfter);
  t.equal(facts.foreign.observeAfter.result, null, 'observe() reports no raftvip service');
  expectSnapshot(t, 'after remove()', facts.foreign.after);
  t.same(rules(facts.foreign.after), [`-A -t ${foreignVip}:80 -s rr`, `-A -u ${vip}:${port} -s rr`, `-a -t ${foreignVip}:80 -r ${b1.v4}:80 -m -w 1`].sort(), 'only the foreign services remain, the UDP one on the VIP’s own port included');
  t.match(facts.foreign.after.nftRuleset, /table ip foreign_lb[\s\S]*ip daddr 10\.215\.0\.11 masquerade/, 'the foreign nft table remains, rule and all');
  t.notMatch(facts.foreign.after.nftRuleset, /raftvip_ipvs/, 'raftvip_ipvs is gone');

  // Timings, for the record.
  const applies: [string, ApplyFacts][] = [
    ['first', facts.initial.apply],
    ['restore SNAT', facts.withoutSnat.apply],
    ['new backends', facts.changed.apply],
    ['same state', facts.reapply.apply],
    ['after drift', facts.drift.apply],
    ['IPv6 first', facts.ipv6.apply],
  ];
  t.comment(`phases (emulated): ${Object.entries(facts.phaseMs).map(([name, ms]) => `${name} ${ms} ms`).join(', ')}`);
  t.comment(`guest setup ${facts.setupMs} ms; driver start: balancer ${facts.driverStartMs.balancer} ms, client ${facts.driverStartMs.client} ms (emulated)`);
  t.comment(`apply durations (emulated): ${applies.map(([name, apply]) => `${name} ${Math.round(apply.report?.durationMs ?? Number.NaN)} ms`).join(', ')}`);
  t.comment(`connection through the VIP, median (emulated): ${median(facts.initial.connections.durationsMs)} ms (rr), ${median(facts.changed.connections.durationsMs)} ms (wrr), ${median(facts.ipv6.connections.durationsMs)} ms (IPv6)`);
}

export const ipvsScenarios: GuestScenario<IpvsFacts>[] = [
  {
    name: 'ipvs-data-plane',
    runInGuest: runScenario,
    judge,
  },
];
