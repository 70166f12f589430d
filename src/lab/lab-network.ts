// LabNetwork: one L2 segment of real Linux hosts on this machine, built from network namespaces
// (LAB.md). It owns the namespaces, the bridge and veth pairs, the fixed addressing plan, the
// faults that act on links (cut, loss, netem), the kernel-state oracles (who has the VIP on an
// interface, what the client's neighbour table says) and teardown, including labs left behind by
// an owner that died.
//
// Layout (every name and address fixed, so tests can read kernel state directly):
//
//   rvl-<pid>-<hex>-br   bridge br0 (stp_state 0, forward_delay 0: ports forward at once); ports
//                        h1..h7 and c, each the bridge end of a veth pair
//   rvl-<pid>-<hex>-hK   eth0 02:72:76:00:00:0K, 10.213.0.(10+K)/24, fd72:7276::(10+K)/64
//   rvl-<pid>-<hex>-c    eth0 02:72:76:00:00:c8, 10.213.0.200/24,     fd72:7276::200/64
//
// The VIP is 10.213.0.100 (fd72:7276::100 for IPv6). `lo` is up everywhere. Hosts have
// arp_ignore=1 and arp_announce=2 (a host answers ARP only for addresses on the asking
// interface and sources ARP from the matching address), the client arp_accept=1 (a gratuitous
// ARP may create an entry). IPv6 addresses are added with `nodad`, so they are usable at once.
//
// Invariants:
// - Traffic never leaves the lab: no namespace has a default route or any route beyond its own
//   subnets, no NAT, and nothing here touches the caller's own namespace's interfaces.
// - Every namespace name starts `rvl-<owner pid>-`, and the 4 random hex digits make it unique
//   to this lab; so every process inside one is ours to kill, and a later run can recognise labs
//   whose owner died (cleanStale).
// - destroy() is idempotent and synchronous, so it can run from process 'exit'.
//
// Setup and teardown use execFileSync (a handful of `ip -batch` and `sysctl` runs, under 0.1 s
// in all); the oracles, which tests sample while timing things, use execFile and never block the
// event loop.

import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { LabError, labCommandFailed, labInvalidOption } from './lab-errors.js';

const execFileAsync = promisify(execFile);

// ---- Limits and the addressing plan --------------------------------------------------------

export const labHostsMin = 1;
/** Host MACs and the bridge port names encode K as one digit; 7 is also raftvip's peersMax. */
export const labHostsMax = 7;
/** Every lab namespace name starts with this, then `-<owner pid>-<4 hex>-`. */
export const labNamespacePrefix = 'rvl';
export const labSubnet = '10.213.0.0/24';
export const labPrefixLength = 24;
export const labSubnet6 = 'fd72:7276::/64';
export const labPrefixLength6 = 64;
/** The lab's VIP: in the hosts' subnet, so raftvip's interface auto-detection picks eth0. */
export const labVip = '10.213.0.100';
export const labVip6 = 'fd72:7276::100';
export const labClientAddress = '10.213.0.200';
export const labClientAddress6 = 'fd72:7276::200';
export const labClientMac = '02:72:76:00:00:c8';
/** The interface every host and the client has on the segment. */
export const labInterface = 'eth0';
export const labBridge = 'br0';
/** One setup or teardown command (`ip -batch`, `sysctl`, `tc`) that takes longer is hung. */
export const labCommandTimeoutMs = 10_000;
/** One oracle read (`ip -j addr`, `ip -j neigh`). */
export const labOracleTimeoutMs = 5_000;
/** Bytes of stdout an oracle may read (a few `ip -j` objects; far below this). */
const oracleOutputBytesMax = 4 * 1024 * 1024;

/** How cutLink partitions a host (see there). */
export type LinkCutMode = 'port-down' | 'port-disabled';
/** BR_STATE_DISABLED and BR_STATE_FORWARDING (linux/if_bridge.h); settable while STP is off. */
const bridgePortStateDisabled = 0;
const bridgePortStateForwarding = 3;

/** Host names are `h1`..`h7`. */
export type LabHostName = string;

/** `h1` → 1; null for anything that is not a host name of a lab of the given size. */
export function labHostIndex(host: string, hosts: number = labHostsMax): number | null {
  const match = /^h([1-9])$/.exec(host);
  const index = match ? Number(match[1]) : null;
  return index !== null && index <= hosts ? index : null;
}

export function labHostAddress(index: number): string {
  return `10.213.0.${10 + index}`;
}

export function labHostAddress6(index: number): string {
  return `fd72:7276::${10 + index}`;
}

export function labHostMac(index: number): string {
  return `02:72:76:00:00:${index.toString(16).padStart(2, '0')}`;
}

/** `rvl-<pid>-<4 hex>-<br|c|hK>`: what cleanStale recognises as a lab namespace. */
const labNamespacePattern = new RegExp(`^${labNamespacePrefix}-(\\d+)-([0-9a-f]{4})-(br|c|h[1-${labHostsMax}])$`);

export interface LabNetworkOptions {
  /** 1 to 7 hosts. */
  hosts: number;
  /** Install SIGINT/SIGTERM handlers that destroy the lab, then exit 130/143. For scripts run
   * by hand; tests leave signals to their runner. Default false. */
  handleSignals?: boolean;
  /** Remove labs whose owner died before building this one (default true). */
  cleanStale?: boolean;
}

/** What the client's neighbour table says about one address. */
export interface NeighbourEntry {
  /** null while the entry is INCOMPLETE or FAILED. */
  mac: string | null;
  /** The NUD state(s), comma-separated as `ip` lists them: REACHABLE, STALE, DELAY, ... */
  state: string;
}

/** One namespace cleanStale removed. */
export interface StaleNamespace {
  namespace: string;
  ownerPid: number;
  /** Processes that were still inside and were killed. */
  killedPids: number[];
}

export class LabNetwork {
  /** `rvl-<pid>-<4 hex>`: every namespace of this lab starts with it. */
  readonly prefix: string;
  readonly bridgeNamespace: string;
  readonly clientNamespace: string;
  /** `h1`..`hN`. */
  readonly hosts: readonly LabHostName[];
  readonly vip = labVip;
  readonly vip6 = labVip6;
  readonly clientAddress = labClientAddress;
  readonly clientAddress6 = labClientAddress6;
  readonly clientMac = labClientMac;
  private readonly namespaces: readonly string[];
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;
  private readonly onExit = (): void => this.destroy();
  private readonly onSigint = (): void => this.destroyAndExit(130);
  private readonly onSigterm = (): void => this.destroyAndExit(143);
  private readonly handlesSignals: boolean;

  /** Builds the lab (measured: 40-90 ms for three hosts, 60 ms for seven). Removes labs of dead
   * owners first. */
  static create(options: LabNetworkOptions): LabNetwork {
    if (!Number.isInteger(options.hosts) || options.hosts < labHostsMin || options.hosts > labHostsMax) {
      throw labInvalidOption('hosts', `must be an integer from ${labHostsMin} to ${labHostsMax}, got ${String(options.hosts)}`);
    }
    if (options.cleanStale ?? true) LabNetwork.cleanStale();
    const existing = new Set(listNamespaces());
    let prefix: string;
    do prefix = `${labNamespacePrefix}-${process.pid}-${randomBytes(2).toString('hex')}`;
    while ([...existing].some((name) => name.startsWith(`${prefix}-`)));
    const lab = new LabNetwork({ prefix, hosts: options.hosts, handleSignals: options.handleSignals ?? false });
    try {
      lab.build();
    } catch (error) {
      lab.destroy();
      throw error;
    }
    return lab;
  }

  /**
   * Finds lab namespaces (`rvl-<pid>-...`) whose owner process is gone, kills what still runs in
   * them and deletes them. A live owner's labs, this process's included, are left alone.
   */
  static cleanStale(): StaleNamespace[] {
    const removed: StaleNamespace[] = [];
    for (const namespace of listNamespaces()) {
      const match = labNamespacePattern.exec(namespace);
      if (!match) continue;
      const ownerPid = Number(match[1]);
      if (processAlive(ownerPid)) continue;
      const killedPids = killNamespaceProcesses(namespace);
      deleteNamespace(namespace);
      removed.push({ namespace, ownerPid, killedPids });
    }
    return removed;
  }

  private constructor(options: { prefix: string; hosts: number; handleSignals: boolean }) {
    this.prefix = options.prefix;
    this.bridgeNamespace = `${this.prefix}-br`;
    this.clientNamespace = `${this.prefix}-c`;
    this.hosts = Array.from({ length: options.hosts }, (_, i) => `h${i + 1}`);
    this.namespaces = [this.bridgeNamespace, ...this.hosts.map((host) => `${this.prefix}-${host}`), this.clientNamespace];
    this.handlesSignals = options.handleSignals;
    // Registered before anything exists, so a crash half-way through still cleans up.
    process.on('exit', this.onExit);
    if (this.handlesSignals) {
      process.once('SIGINT', this.onSigint);
      process.once('SIGTERM', this.onSigterm);
    }
  }

  private build(): void {
    runSync('ip', ['-batch', '-'], this.namespaces.map((namespace) => `netns add ${namespace}\n`).join(''));
    const ports = [...this.hosts.map((host) => ({ port: host, namespace: this.hostNamespace(host), mac: this.hostMac(host) })), { port: 'c', namespace: this.clientNamespace, mac: labClientMac }];
    runSync(
      'ip',
      ['-n', this.bridgeNamespace, '-batch', '-'],
      [
        'link set lo up',
        `link add ${labBridge} type bridge stp_state 0 forward_delay 0`,
        `link set ${labBridge} up`,
        ...ports.flatMap(({ port, namespace, mac }) => [
          `link add ${port} type veth peer name ${labInterface} address ${mac} netns ${namespace}`,
          `link set ${port} master ${labBridge}`,
          `link set ${port} up`,
        ]),
        '',
      ].join('\n'),
    );
    for (const host of this.hosts) {
      // Before the link comes up, so no ARP ever leaves with the defaults.
      // ip_forward as kubeadm's preflight check demands of every control-plane host (so a lab
      // host is a Kubernetes host). It matters for a handover: a connection attempt that reaches
      // the old holder after it released the VIP is forwarded to the new one, not dropped.
      runSync('ip', ['netns', 'exec', this.hostNamespace(host), 'sysctl', '-qw',
        'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1',
        'net.ipv4.conf.all.arp_ignore=1', `net.ipv4.conf.${labInterface}.arp_ignore=1`,
        'net.ipv4.conf.all.arp_announce=2', `net.ipv4.conf.${labInterface}.arp_announce=2`]);
      this.configureEnd(this.hostNamespace(host), this.hostAddress(host), this.hostAddress6(host));
    }
    runSync('ip', ['netns', 'exec', this.clientNamespace, 'sysctl', '-qw', 'net.ipv4.conf.all.arp_accept=1', `net.ipv4.conf.${labInterface}.arp_accept=1`]);
    this.configureEnd(this.clientNamespace, labClientAddress, labClientAddress6);
  }

  private configureEnd(namespace: string, address: string, address6: string): void {
    runSync(
      'ip',
      ['-n', namespace, '-batch', '-'],
      [
        'link set lo up',
        `addr add ${address}/${labPrefixLength} dev ${labInterface}`,
        `addr add ${address6}/${labPrefixLength6} dev ${labInterface} nodad`,
        `link set ${labInterface} up`,
        '',
      ].join('\n'),
    );
  }

  // ---- Accessors -----------------------------------------------------------------------------

  hostNamespace(host: LabHostName): string {
    this.hostIndex(host);
    return `${this.prefix}-${host}`;
  }

  hostAddress(host: LabHostName): string {
    return labHostAddress(this.hostIndex(host));
  }

  hostAddress6(host: LabHostName): string {
    return labHostAddress6(this.hostIndex(host));
  }

  hostMac(host: LabHostName): string {
    return labHostMac(this.hostIndex(host));
  }

  /** The host whose eth0 has this MAC (any case), or null (the client's, or not the lab's). */
  macToHost(mac: string): LabHostName | null {
    const wanted = mac.toLowerCase();
    return this.hosts.find((host) => this.hostMac(host) === wanted) ?? null;
  }

  /** Every namespace of the lab: bridge, hosts, client. */
  allNamespaces(): readonly string[] {
    return this.namespaces;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  private hostIndex(host: LabHostName): number {
    const index = labHostIndex(host, this.hosts.length);
    if (index === null) throw labInvalidOption('host', `${JSON.stringify(host)} is not one of ${this.hosts.join(', ')}`);
    return index;
  }

  private assertLive(): void {
    if (this.destroyed) throw new LabError({ code: 'LAB_STOPPED', detail: `lab ${this.prefix} was destroyed` });
  }

  // ---- Faults --------------------------------------------------------------------------------

  /**
   * Partitions the host from the segment. `port-down` (the default) sets its bridge port down:
   * the host's eth0 loses carrier too (NO-CARRIER), as a NIC does when its switch port dies.
   * `port-disabled` leaves every link up and sets the bridge
   * port's forwarding state to disabled, so the bridge drops the host's frames both ways, as a
   * switch that stops forwarding does.
   *
   * Measured: after restoreLink from `port-down`, traffic usually flows within a few ms, but in
   * roughly one cut in ten the host answers only 0.6-0.8 s later. The cause: losing carrier
   * flushed the host's neighbour entries; a packet the host sent the client during the cut (a
   * retransmission on a connection open at the cut) started an ARP resolution that could not succeed, and the entry, INCOMPLETE
   * when the link returns, asks again only when its retransmit timer (1 s, retrans_time_ms)
   * fires, holding the host's replies until then. After `port-disabled`, whose carrier and
   * entries stay, traffic flowed within 7 ms in every trial.
   */
  cutLink(host: LabHostName, options: { mode?: LinkCutMode } = {}): void {
    this.assertLive();
    this.hostIndex(host);
    const mode = options.mode ?? 'port-down';
    switch (mode) {
      case 'port-down':
        runSync('ip', ['-n', this.bridgeNamespace, 'link', 'set', host, 'down']);
        break;
      case 'port-disabled':
        runSync('bridge', ['-n', this.bridgeNamespace, 'link', 'set', 'dev', host, 'state', String(bridgePortStateDisabled)]);
        break;
      default: {
        const unknown: never = mode;
        throw labInvalidOption('mode', `expected port-down or port-disabled, got ${JSON.stringify(unknown)}`);
      }
    }
  }

  /** Undoes cutLink, whichever mode it used: the port comes up and forwards. Idempotent. */
  restoreLink(host: LabHostName): void {
    this.assertLive();
    this.hostIndex(host);
    runSync('ip', ['-n', this.bridgeNamespace, 'link', 'set', host, 'up']);
    runSync('bridge', ['-n', this.bridgeNamespace, 'link', 'set', 'dev', host, 'state', String(bridgePortStateForwarding)]);
  }

  /**
   * Isolates the host from the other hosts while the client still reaches it: an nft table
   * (`lab_isolate`, in the host's namespace) drops every packet to or from another host's
   * address and every VRRP packet (protocol 112, multicast) in both directions. Raft peers and
   * VRRP routers on either side then stop hearing each other, and the client, which talks to
   * both sides, sees what each side does with the VIP: the split-brain probe. `heal` removes it.
   */
  isolate(host: LabHostName): void {
    this.assertLive();
    const others = this.hosts.filter((other) => other !== host).map((other) => this.hostAddress(other));
    const set = `{ ${others.join(', ')} }`;
    const script = [
      'table inet lab_isolate',
      'delete table inet lab_isolate',
      'table inet lab_isolate {',
      `  chain input { type filter hook input priority -300; policy accept; ip saddr ${set} drop; ip protocol vrrp drop; }`,
      `  chain output { type filter hook output priority -300; policy accept; ip daddr ${set} drop; ip protocol vrrp drop; }`,
      '}',
      '',
    ].join('\n');
    runSync('ip', ['netns', 'exec', this.hostNamespace(host), 'nft', '-f', '-'], script);
  }

  /** Undoes isolate(); a no-op when the host is not isolated. */
  heal(host: LabHostName): void {
    this.assertLive();
    runSync('ip', ['netns', 'exec', this.hostNamespace(host), 'nft', '-f', '-'], 'table inet lab_isolate\ndelete table inet lab_isolate\n');
  }

  /**
   * Replaces the root qdisc of the host's eth0 with `netem <spec...>` (for example
   * `['loss', '1%', 'delay', '1ms', '1ms']`), or with null removes it (a no-op when none is set).
   * Throws LAB_UNSUPPORTED on a kernel without the netem qdisc (CONFIG_NET_SCH_NETEM unset, as
   * on the project's VMs): delay, duplication and reordering cannot be emulated there, and
   * loss() is the way to drop frames.
   */
  netem(host: LabHostName, spec: readonly string[] | null): void {
    this.assertLive();
    const namespace = this.hostNamespace(host);
    if (spec === null) {
      if (this.netemShown(host) !== null) runSync('tc', ['-n', namespace, 'qdisc', 'del', 'dev', labInterface, 'root']);
      return;
    }
    if (spec.length === 0 || spec.some((word) => word.length === 0 || /\s/.test(word))) {
      throw labInvalidOption('netem', `expected non-empty words without whitespace, got ${JSON.stringify(spec)}`);
    }
    const args = ['-n', namespace, 'qdisc', 'replace', 'dev', labInterface, 'root', 'netem', ...spec];
    try {
      runSync('tc', args);
    } catch (error) {
      if (!LabNetwork.netemSupported()) throw netemUnsupported();
      throw error;
    }
  }

  /** The netem line of `tc qdisc show` on the host's eth0, or null. */
  netemShown(host: LabHostName): string | null {
    const line = runSync('tc', ['-n', this.hostNamespace(host), 'qdisc', 'show', 'dev', labInterface])
      .split('\n')
      .find((l) => l.includes('netem'));
    return line?.trim() ?? null;
  }

  /** Whether this kernel has the netem qdisc: probed once, in a namespace made for the probe. */
  static netemSupported(): boolean {
    if (netemProbed === null) {
      const namespace = `${labNamespacePrefix}-${process.pid}-${randomBytes(2).toString('hex')}-c`;
      runSync('ip', ['netns', 'add', namespace]);
      try {
        runSync('tc', ['-n', namespace, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms']);
        netemProbed = true;
      } catch {
        netemProbed = false;
      } finally {
        deleteNamespace(namespace);
      }
    }
    return netemProbed;
  }

  /**
   * Drops `percent` (0 < percent <= 100) of the frames the host's eth0 sends, each independently
   * at random, like `netem loss` but on any kernel: a classic-BPF tc filter on the clsact egress
   * hook reads a random u32 (`ld rand`) and returns TC_ACT_SHOT below the threshold. null removes
   * it. Frames the host receives are not touched (cut the link for that).
   */
  loss(host: LabHostName, percent: number | null): void {
    this.assertLive();
    const namespace = this.hostNamespace(host);
    const hasClsact = runSync('tc', ['-n', namespace, 'qdisc', 'show', 'dev', labInterface]).includes('clsact');
    if (percent === null) {
      if (hasClsact) runSync('tc', ['-n', namespace, 'qdisc', 'del', 'dev', labInterface, 'clsact']);
      return;
    }
    if (!Number.isFinite(percent) || percent <= 0 || percent > 100) throw labInvalidOption('loss', `percent must be above 0 and at most 100, got ${percent}`);
    if (!hasClsact) runSync('tc', ['-n', namespace, 'qdisc', 'add', 'dev', labInterface, 'clsact']);
    runSync('tc', ['-n', namespace, 'filter', 'replace', 'dev', labInterface, 'egress', 'pref', '1', 'handle', '1', 'bpf', 'da', 'bytecode', lossBytecode(percent)]);
  }

  /** The loss percentage loss() set on the host's eth0 (rounded to 0.001), or null. */
  lossShown(host: LabHostName): number | null {
    const text = runSync('tc', ['-n', this.hostNamespace(host), 'filter', 'show', 'dev', labInterface, 'egress']);
    const bytecode = /bytecode '([^']+)'/.exec(text)?.[1];
    return bytecode === undefined ? null : lossFromBytecode(bytecode);
  }

  // ---- Oracles (asynchronous) ----------------------------------------------------------------

  /** Hosts that have `vip` on any interface right now, from `ip -j addr` in each namespace. */
  async vipHolders(vip: string = labVip): Promise<LabHostName[]> {
    this.assertLive();
    const wanted = canonicalAddress(vip);
    const copies = await Promise.all(
      this.hosts.map(async (host) => ({ host, copies: addressCopies(await this.readAsync('ip', ['-n', this.hostNamespace(host), '-j', 'addr', 'show']), wanted) })),
    );
    return copies.filter((c) => c.copies.length > 0).map((c) => c.host);
  }

  /** The client's neighbour entry for `address` on eth0, or null when it has none. */
  async clientNeighbour(address: string): Promise<NeighbourEntry | null> {
    this.assertLive();
    const text = await this.readAsync('ip', ['-n', this.clientNamespace, '-j', 'neigh', 'show', address, 'dev', labInterface]);
    const entries = JSON.parse(text || '[]') as { lladdr?: string; state?: string[] }[];
    const entry = entries[0];
    if (!entry) return null;
    return { mac: entry.lladdr?.toLowerCase() ?? null, state: (entry.state ?? []).join(',') };
  }

  private async readAsync(command: string, args: string[]): Promise<string> {
    try {
      const { stdout } = await execFileAsync(command, args, { encoding: 'utf8', timeout: labOracleTimeoutMs, maxBuffer: oracleOutputBytesMax });
      return stdout;
    } catch (error) {
      throw labCommandFailed(command, args, error);
    }
  }

  // ---- Processes -----------------------------------------------------------------------------

  /**
   * Runs `command args` inside one of the lab's namespaces (`ip netns exec NS command args`).
   * `ip` execs the command after entering the namespace, so the child's PID is the command's own
   * (signals sent to it reach the command itself). destroy() kills it if it still runs.
   */
  spawnIn(namespace: string, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    this.assertLive();
    if (!this.namespaces.includes(namespace)) throw labInvalidOption('namespace', `${namespace} is not a namespace of lab ${this.prefix}`);
    const child = spawn('ip', ['netns', 'exec', namespace, command, ...args], options);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  // ---- Teardown ------------------------------------------------------------------------------

  /**
   * SIGKILLs every process still inside the lab's namespaces (they are ours: the names are
   * unique to this lab), then deletes the namespaces; the veths and the bridge go with them.
   * Idempotent; synchronous, so it also runs from process 'exit'. Problems are written to
   * stderr, never thrown: teardown must get as far as it can.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    if (this.handlesSignals) {
      process.off('SIGINT', this.onSigint);
      process.off('SIGTERM', this.onSigterm);
    }
    for (const child of this.children) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) signalPid(child.pid, 'SIGKILL');
    }
    let present: Set<string>;
    try {
      present = new Set(listNamespaces());
    } catch {
      present = new Set(this.namespaces);
    }
    for (const namespace of this.namespaces) {
      if (!present.has(namespace)) continue;
      try {
        killNamespaceProcesses(namespace);
        deleteNamespace(namespace);
      } catch (error) {
        process.stderr.write(`lab: could not delete network namespace ${namespace}: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
  }

  private destroyAndExit(code: number): void {
    this.destroy();
    process.exit(code);
  }
}

// ---- Helpers ---------------------------------------------------------------------------------

/** null until netemSupported() probed the kernel. */
let netemProbed: boolean | null = null;

function netemUnsupported(): LabError {
  return new LabError({
    code: 'LAB_UNSUPPORTED',
    detail:
      'this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set): delay, duplication and reordering cannot be ' +
      'emulated here; LabNetwork.loss() drops a share of frames without it',
  });
}

// Classic BPF for loss(), as `tc ... bpf bytecode` takes it: "count,op jt jf k,...".
/** BPF_LD|BPF_W|BPF_ABS with k = SKF_AD_OFF + SKF_AD_RANDOM: A = a random u32. */
const bpfLoadRandom = '32 0 0 4294963256';
/** BPF_RET|BPF_K: the tc action in direct-action mode. */
const bpfReturnShot = '6 0 0 2';
const bpfReturnUnspec = '6 0 0 4294967295';
const randomRange = 2 ** 32;

/** Drop when the random u32 is below percent% of its range; pass (TC_ACT_UNSPEC) otherwise. */
export function lossBytecode(percent: number): string {
  const threshold = Math.round((percent / 100) * randomRange);
  if (threshold >= randomRange) return `1,${bpfReturnShot}`;
  // BPF_JMP|BPF_JGE|BPF_K (53): A >= threshold jumps over the drop.
  return `4,${bpfLoadRandom},53 1 0 ${threshold},${bpfReturnShot},${bpfReturnUnspec}`;
}

/** The inverse of lossBytecode, for what `tc filter show` prints; null for other programs. */
export function lossFromBytecode(bytecode: string): number | null {
  if (bytecode === `1,${bpfReturnShot}`) return 100;
  const match = new RegExp(`^4,${bpfLoadRandom},53 1 0 (\\d+),${bpfReturnShot},${bpfReturnUnspec}$`).exec(bytecode);
  return match ? Math.round((Number(match[1]) / randomRange) * 100 * 1000) / 1000 : null;
}

function runSync(command: string, args: string[], input?: string): string {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      timeout: labCommandTimeoutMs,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      ...(input === undefined ? {} : { input }),
    });
  } catch (error) {
    throw labCommandFailed(command, args, error);
  }
}

/** Names in `ip netns list` (its lines read `NAME` or `NAME (id: N)`). */
function listNamespaces(): string[] {
  return runSync('ip', ['netns', 'list'])
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.length > 0);
}

/** SIGKILLs every process in the namespace (`ip netns pids`); returns their PIDs. */
function killNamespaceProcesses(namespace: string): number[] {
  const pids = runSync('ip', ['netns', 'pids', namespace])
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 1 && pid !== process.pid);
  for (const pid of pids) signalPid(pid, 'SIGKILL');
  return pids;
}

function deleteNamespace(namespace: string): void {
  runSync('ip', ['netns', 'del', namespace]);
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Whether a process with this PID exists (EPERM: it exists but is not ours to signal). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** An IP address in the form `ip` prints it (IPv6 compressed, lower case). */
export function canonicalAddress(address: string): string {
  if (!address.includes(':')) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** One copy of an address on an interface. */
export interface AddressCopy {
  interface: string;
  prefixLength: number;
}

/** The copies of `address` (canonical form) in the output of `ip -j addr show`. */
export function addressCopies(ipJsonAddr: string, address: string): AddressCopy[] {
  const links = JSON.parse(ipJsonAddr || '[]') as { ifname: string; addr_info?: { local?: string; prefixlen: number }[] }[];
  return links.flatMap((link) =>
    (link.addr_info ?? [])
      .filter((info) => info.local !== undefined && canonicalAddress(info.local) === address)
      .map((info) => ({ interface: link.ifname, prefixLength: info.prefixlen })),
  );
}
