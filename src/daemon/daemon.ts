// The composition root: wires real I/O (file storage, the peer transport, the admin API, logs)
// around the Raft driver for one host. `raftvip run` builds one Daemon; tests build several in
// separate processes. start() and stop() are idempotent; stop() hands leadership over first.

import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import { FileStorage } from '../raft/file-storage.js';
import { ClusterState, encodeCommand } from '../raft/cluster-state.js';
import { parseHostPort } from '../config/host-port.js';
import { Raft } from '../raft/raft.js';
import { SeededRandom } from '../raft/random.js';
import { timingToTicks } from '../raft/timing.js';
import { nodeId, type Entry, type Message, type NodeId } from '../raft/types.js';
import { PeerTransport, type TransportAuth } from '../transport/peer-transport.js';
import { assert } from '../raft/assert.js';
import type { Config } from '../config/load-config.js';
import { readVersion } from '../version.js';
import { AdminServer, type AdminView, type Verdict } from './admin-server.js';
import { DaemonMetrics } from './metrics.js';
import { RaftDriver } from './raft-driver.js';
import { VipController } from './vip-controller.js';
import { VipExecutor } from '../vip/vip-executor.js';
import { HealthChecker, type BackendHealth } from '../lb/health-checker.js';
import { LoadBalancerController, type LoadBalancerStatus } from '../lb/lb-controller.js';
import { openDataPlane, removeLeftovers } from '../lb/open-data-plane.js';
import { formatEndpoint } from '../lb/data-plane.js';

/** How long a leader that is stopping waits for its transferee to take over. */
export const stopTransferWaitMsMax = 2000;
/** How long a membership change may take to commit. */
export const membershipCommitTimeoutMs = 10_000;
/** Cluster-state keys holding peer addresses learnt through `members add`. */
export const peerAddressKeyPrefix = 'peers/';

export interface DaemonOptions {
  readonly config: Config;
  readonly logger?: Logger;
  /** Start a node that joins an existing cluster: no bootstrap membership. */
  readonly join?: boolean;
}

export class Daemon {
  readonly config: Config;
  readonly log: Logger;
  private storage: FileStorage | null = null;
  private driver: RaftDriver | null = null;
  private transport: PeerTransport | null = null;
  private admin: AdminServer | null = null;
  /** null while vip.enabled is false (a dry run) or before start(). */
  private vip: VipController | null = null;
  private closeVipResources: (() => void) | null = null;
  private readonly vipCountersSeen = { claims: 0, releases: 0, announcements: 0, failures: 0 };
  /** null while loadBalancer.enabled is false or before start(). */
  private loadBalancer: LoadBalancerController | null = null;
  private readonly lbCountersSeen = { failures: 0, checks: new Map<string, number>(), failedChecks: new Map<string, number>() };
  private readonly metrics = new DaemonMetrics({ processMetrics: true });
  private lastLeader: NodeId | null = null;
  private started = false;
  private stopping: Promise<void> | null = null;

  constructor(private readonly options: DaemonOptions) {
    this.config = options.config;
    this.log = options.logger ?? pino({ level: options.config.log.level, base: { node: options.config.node.id } });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const config = this.config;
    const self = nodeId(config.node.id);
    this.storage = await FileStorage.open(config.node.dataDir, {
      log: ({ level, msg, ...fields }) => this.log[level](fields, msg),
    });
    const persisted = this.storage.load();
    const state = persisted.snapshot ? ClusterState.restore(persisted.snapshot.data) : new ClusterState();
    const raft = new Raft({
      id: self,
      timing: timingToTicks(config.raft),
      random: new SeededRandom(randomInt(0, 2 ** 32)),
      persisted,
      ...(this.options.join ? {} : { bootstrap: { voters: config.cluster.peers.map((p) => nodeId(p.id)) } }),
    });
    const ownPeer = config.cluster.peers.find((p) => p.id === config.node.id);
    assert(ownPeer !== undefined, `node ${config.node.id} is not among the peers (the config loader checks this)`);
    this.transport = new PeerTransport({
      self,
      listen: { host: ownPeer.host, port: ownPeer.port },
      peers: this.transportPeers(state),
      auth: await transportAuth(config.cluster.auth),
      onMessage: (message: Message) => this.driver?.receive(message),
      log: (level, msg, fields) => this.log[level]({ ...fields }, msg),
    });
    // Before Raft starts: find the VIP's interface and remove a copy an earlier life left behind.
    if (config.vip.enabled) this.vip = await this.startVip();
    else this.log.warn({ vip: config.vip.address }, 'vip.enabled is false: a dry run, the VIP is never added to any interface');
    // Also before Raft: the data plane is programmed on every host ahead of time, so this host
    // forwards from its first packet should it win an election.
    this.loadBalancer = await this.startLoadBalancer();
    this.driver = new RaftDriver({
      raft,
      storage: this.storage,
      transport: this.transport,
      state,
      tickMs: config.raft.tickMs,
      log: (level, msg, fields) => this.log[level]({ ...fields }, msg),
      beforeSend: () => this.vip?.fence(),
      observer: {
        onReady: ({ fsyncMs }) => this.metrics.fsyncSeconds.observe(fsyncMs / 1000),
        onRoleChange: ({ role, term, leader }) => {
          this.metrics.setRole(role);
          this.metrics.term.set(term);
          if (leader !== this.lastLeader) {
            this.metrics.leaderChanges.inc();
            this.lastLeader = leader;
          }
          this.log.info({ role, term, leader }, leader === null ? `${role} in term ${term}, no leader known` : `${role} in term ${term}, leader ${leader}`);
          this.vip?.kick();
        },
        onApply: (entry: Entry, applied: ClusterState) => {
          // Addresses learnt through `members add` reach the transport as soon as they apply.
          if (entry.type === 'command' || entry.type === 'membership') {
            try {
              this.transport?.updatePeers(this.transportPeers(applied));
            } catch (error) {
              // A peer list the transport refuses (say, more peers than it supports) must not
              // stop Raft: keep the links it has and say why.
              this.log.error({ err: error instanceof Error ? error.message : String(error), index: entry.index }, 'cannot update the peer links');
            }
          }
          if (entry.type === 'membership') this.log.info({ voters: entry.membership.voters, index: entry.index }, `membership applied: ${entry.membership.voters.join(', ')}`);
        },
        onStall: ({ stalledMs }) => {
          this.metrics.stalls.inc();
          this.log.warn({ stalledMs: Math.round(stalledMs) }, 'woke after a pause longer than the lease: any lease it held has lapsed');
          this.vip?.kick();
        },
      },
    });
    await this.transport.start();
    this.driver.start();
    this.vip?.kick();
    this.admin = new AdminServer({
      host: config.admin.host,
      port: config.admin.port,
      view: this.adminView(),
      log: (level, msg, fields) => this.log[level]({ ...fields }, msg),
    });
    const admin = await this.admin.start();
    this.log.info({ admin: `${admin.host}:${admin.port}`, dataDir: config.node.dataDir, peers: config.cluster.peers.length, version: readVersion() }, 'raftvip started');
  }

  /** Hand leadership over if leading, then stop everything. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    const driver = this.driver;
    if (driver && driver.status().role === 'leader') {
      const result = await driver.transferLeadership();
      if (result.ok) {
        this.log.info({ transferee: result.transferee }, 'stopping: handing leadership over');
        const deadline = Date.now() + stopTransferWaitMsMax;
        while (Date.now() < deadline && driver.status().role === 'leader') await sleep(10);
      }
    }
    try {
      await this.vip?.stop();
    } catch (error) {
      this.log.error({ err: error instanceof Error ? error.message : String(error) }, 'stopping: could not release the VIP (the unit\'s ExecStopPost runs raftvip vip release)');
    }
    this.closeVipResources?.();
    // After the VIP is gone: no client reaches this host's forwarding any more.
    try {
      await this.loadBalancer?.stop();
    } catch (error) {
      this.log.error({ err: error instanceof Error ? error.message : String(error) }, 'stopping: could not remove the load balancer\'s kernel state');
    }
    await this.admin?.stop();
    await driver?.stop();
    await this.transport?.stop();
    await this.storage?.close();
    this.log.info('raftvip stopped');
  }

  /**
   * SIGHUP: apply what can change while running (the log level) and name everything else that
   * differs, which needs a restart. The running configuration is never half-replaced.
   */
  reload(next: Config): { applied: string[]; needsRestart: string[] } {
    const applied: string[] = [];
    const needsRestart: string[] = [];
    if (next.log.level !== this.log.level) {
      this.log.level = next.log.level;
      applied.push(`log.level=${next.log.level}`);
    }
    const sections = ['cluster', 'node', 'vip', 'loadBalancer', 'raft', 'admin'] as const;
    for (const section of sections) {
      if (JSON.stringify(comparable(next[section])) !== JSON.stringify(comparable(this.config[section]))) needsRestart.push(section);
    }
    return { applied, needsRestart };
  }

  get adminAddress(): { host: string; port: number } | null {
    return this.admin?.address() ?? null;
  }

  status(): DaemonStatus {
    const driver = this.driver;
    if (!driver) throw new Error('not started');
    const raft = driver.status();
    const transportPeers = new Map((this.transport?.status() ?? []).map((p) => [p.id as string, p]));
    const progress = new Map(raft.peers.map((p) => [p.id as string, p]));
    const rtt = driver.peerRttMs();
    // One reading of the clock for both: the lease and the VIP's leaseHeld must agree.
    const leaseHeld = driver.holdsLease();
    return {
      id: raft.id,
      version: readVersion(),
      cluster: this.config.cluster.name,
      role: raft.role,
      term: raft.term,
      leader: raft.leader,
      votedFor: raft.votedFor,
      commitIndex: raft.commitIndex,
      appliedIndex: raft.appliedIndex,
      lastIndex: raft.lastIndex,
      lease: { held: leaseHeld, expiresInMs: raft.leaseExpiresInMs },
      voters: [...raft.membership.voters],
      peers: this.config.cluster.peers
        .filter((p) => p.id !== raft.id)
        .map((p) => {
          const connection = transportPeers.get(p.id);
          const replication = progress.get(p.id);
          return {
            id: p.id,
            address: p.address,
            voter: raft.membership.voters.includes(nodeId(p.id)),
            connected: connection?.connected ?? false,
            lastError: connection?.lastError ?? null,
            matchIndex: replication?.matchIndex ?? null,
            nextIndex: replication?.nextIndex ?? null,
            replication: replication?.state ?? null,
            rttMs: rtt.has(nodeId(p.id)) ? Math.round((rtt.get(nodeId(p.id)) ?? 0) * 100) / 100 : null,
          };
        }),
      vip: this.vipStatus(leaseHeld),
      loadBalancer: this.loadBalancer?.status() ?? { enabled: false },
    };
  }

  /** Picks the data plane, starts the health checks and programs the service (every backend
   * drained until its first check passes). Disabled: removes what an earlier run programmed. */
  private async startLoadBalancer(): Promise<LoadBalancerController | null> {
    const config = this.config;
    const lb = config.loadBalancer;
    const lbLog = this.log.child({ component: 'lb' });
    const log = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => lbLog[level]({ ...fields }, msg);
    if (!lb.enabled) {
      await removeLeftovers({ except: null, vipAddress: config.vip.address, port: lb.port, log });
      this.log.warn('loadBalancer.enabled is false: no kernel load balancing; VIP:port reaches whatever listens on the VIP holder');
      return null;
    }
    const dataPlane = await openDataPlane({
      choice: lb.dataPlane,
      scheduler: lb.scheduler,
      vipAddress: config.vip.address,
      port: lb.port,
      tcpTimeoutS: lb.tcpTimeoutS,
      tcpFinTimeoutS: lb.tcpFinTimeoutS,
      log,
    });
    await removeLeftovers({ except: dataPlane.kind, vipAddress: config.vip.address, port: lb.port, log });
    let controller: LoadBalancerController | null = null;
    const health = new HealthChecker({
      backends: lb.backends.map((backend) => ({ address: backend.address, port: backend.port })),
      options: {
        type: lb.healthCheck.type,
        path: lb.healthCheck.path,
        intervalMs: lb.healthCheck.intervalMs,
        timeoutMs: lb.healthCheck.timeoutMs,
        rise: lb.healthCheck.rise,
        fall: lb.healthCheck.fall,
        tls: {
          ...lb.healthCheck.tls,
          insecureSkipVerify: lb.healthCheck.insecureSkipVerify,
          pendingCaFile: lb.healthCheck.caPending ? lb.healthCheck.caFile : null,
        },
      },
      onChange: (backend: BackendHealth) => {
        const name = formatEndpoint(backend.address, backend.port);
        if (backend.ready) log('info', `backend ${name} is ready`, { backend: name });
        else log('warn', `backend ${name} is not ready: ${backend.lastError ?? 'no check has passed yet'}`, { backend: name, err: backend.lastError });
        controller?.kick();
      },
    });
    if (lb.healthCheck.caPending) {
      log('warn', `loadBalancer.healthCheck.caFile ${lb.healthCheck.caFile ?? ''} does not exist yet: no backend passes its check until it does (kubeadm init creates it)`);
    }
    controller = new LoadBalancerController({ vipAddress: config.vip.address, config: lb, dataPlane, health, log });
    await controller.start();
    log('info', `load balancing ${formatEndpoint(config.vip.address, lb.port)} over ${lb.backends.length} backends with ${dataPlane.kind} (${lb.scheduler})`, {
      backends: lb.backends.map((backend) => formatEndpoint(backend.address, backend.port)),
    });
    return controller;
  }

  /** Builds the executor over netlink and the AF_PACKET shim, and starts the controller. */
  private async startVip(): Promise<VipController> {
    const config = this.config;
    // Loaded here: the native shims are only needed when the VIP is managed.
    const { NetlinkAddresses } = await import('../vip/netlink-addresses.js');
    const packetSocket = await import('../vip/packet-socket.js');
    const addresses = new NetlinkAddresses();
    const vipLog = this.log.child({ component: 'vip' });
    const executor = new VipExecutor({
      vip: { address: config.vip.address, family: config.vip.family },
      interface: config.vip.interface,
      addresses,
      openPacketSocket: (interfaceName, protocol) => packetSocket.PacketSocket.open(interfaceName, protocol),
      hardwareAddress: packetSocket.hardwareAddress,
      clock: () => performance.now(),
      log: (level, msg, fields) => vipLog[level]({ ...fields }, msg),
      announce: {
        burstCount: config.vip.announceCount,
        burstIntervalMs: config.vip.announceIntervalMs,
        refreshIntervalMs: config.vip.refreshIntervalMs === 0 ? Number.POSITIVE_INFINITY : config.vip.refreshIntervalMs,
      },
    });
    const controller = new VipController({
      executor,
      lease: {
        holds: (nowMs) => this.driver?.holdsLease(nowMs) ?? false,
        expiresAtMs: () => this.driver?.leaseExpiresAtMs() ?? null,
      },
      clock: () => performance.now(),
      reconcileIntervalMs: config.vip.reconcileIntervalMs,
      log: (level, msg, fields) => vipLog[level]({ ...fields }, msg),
    });
    this.closeVipResources = () => addresses.close();
    try {
      await controller.start();
    } catch (error) {
      executor.close();
      addresses.close();
      throw error;
    }
    this.log.info({ vip: config.vip.address, interface: controller.status().interface }, `managing VIP ${config.vip.address} on ${controller.status().interface}`);
    return controller;
  }

  private vipStatus(leaseHeld: boolean): VipStatus {
    const status = this.vip?.status();
    const lastError = status?.lastError ?? null;
    return {
      address: this.config.vip.address,
      managed: this.vip !== null,
      held: status?.held ?? false,
      leaseHeld,
      interface: status?.interface ?? this.config.vip.interface,
      claims: status?.counters.claims ?? 0,
      releases: status?.counters.releases ?? 0,
      announcements: status?.counters.announcements ?? 0,
      reconcileFailures: status?.reconcileFailures ?? 0,
      lastError: lastError === null ? null : { code: lastError.code, message: lastError.message, agoMs: Math.round(performance.now() - lastError.atMs) },
    };
  }

  /** Every peer this node can reach: the peer file, plus addresses added through the log. */
  private transportPeers(state: ClusterState): { id: NodeId; host: string; port: number }[] {
    const peers = new Map<string, { id: NodeId; host: string; port: number }>();
    for (const p of this.config.cluster.peers) peers.set(p.id, { id: nodeId(p.id), host: p.host, port: p.port });
    for (const key of state.keys()) {
      if (!key.startsWith(peerAddressKeyPrefix)) continue;
      const id = key.slice(peerAddressKeyPrefix.length);
      const parsed = parseHostPort(String(state.get(key)));
      if (parsed.ok && !peers.has(id)) peers.set(id, { id: nodeId(id), host: parsed.value.host, port: parsed.value.port });
    }
    peers.delete(this.config.node.id);
    return [...peers.values()];
  }

  /** The address of a peer, from the peer file or from the replicated cluster state. */
  private peerAddress(id: string): string | null {
    const fromFile = this.config.cluster.peers.find((p) => p.id === id);
    if (fromFile) return fromFile.address;
    const learnt = this.driver?.clusterState.get(`${peerAddressKeyPrefix}${id}`);
    return typeof learnt === 'string' ? learnt : null;
  }

  /**
   * Add or remove one voter through the log (single-server change). An added peer's address
   * is first replicated into the cluster state, so every node can reach it without editing its
   * peer file; the new host runs `raftvip run --join`.
   */
  async changeMembers(request: { action: 'add' | 'remove'; id: string; address?: string }): Promise<MembersResult> {
    const driver = this.driver;
    if (!driver) return { ok: false, code: 'RAFTVIP_STOPPED', message: 'not running' };
    const status = driver.status();
    if (status.role !== 'leader') {
      return { ok: false, code: 'RAFTVIP_NOT_LEADER', message: `not the leader (leader: ${status.leader ?? 'unknown'}); run this on the leader` };
    }
    const voters = [...status.membership.voters] as string[];
    if (request.action === 'add') {
      if (voters.includes(request.id)) return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: `${request.id} is already a voter` };
      if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(request.id)) {
        return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: `"${request.id}" is not a valid peer id` };
      }
      const known = this.peerAddress(request.id);
      const address = request.address ?? known;
      if (address === null) {
        return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: `no address known for ${request.id}: give --address HOST:PORT` };
      }
      const parsed = parseHostPort(address);
      if (!parsed.ok) return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: `bad address for ${request.id}: ${parsed.message}` };
      if (address !== known) {
        const put = await driver.propose(encodeCommand({ op: 'put', key: `${peerAddressKeyPrefix}${request.id}`, value: parsed.value.address }), {
          timeoutMs: membershipCommitTimeoutMs,
        });
        if (!put.ok) return put;
      }
      const result = await driver.proposeMembership({ voters: [...voters, request.id].map(nodeId) }, { timeoutMs: membershipCommitTimeoutMs });
      return result.ok ? { ok: true, index: result.index, voters: [...voters, request.id] } : result;
    }
    if (!voters.includes(request.id)) return { ok: false, code: 'RAFTVIP_MEMBERSHIP_INVALID', message: `${request.id} is not a voter` };
    const next = voters.filter((v) => v !== request.id);
    const result = await driver.proposeMembership({ voters: next.map(nodeId) }, { timeoutMs: membershipCommitTimeoutMs });
    return result.ok ? { ok: true, index: result.index, voters: next } : result;
  }

  private adminView(): AdminView {
    return {
      status: () => this.status(),
      health: (): Verdict => {
        const error = this.driver?.error;
        return error ? { ok: false, reason: `raft driver stopped: ${error.message}` } : { ok: true, reason: 'running' };
      },
      readiness: (): Verdict => {
        const status = this.driver?.status();
        if (!status) return { ok: false, reason: 'starting' };
        if (!status.membership.voters.includes(status.id)) return { ok: false, reason: 'not a voting member of the cluster' };
        if (status.leader === null) return { ok: false, reason: `no leader known in term ${status.term}` };
        return { ok: true, reason: `member of ${this.config.cluster.name}, leader ${status.leader}, term ${status.term}` };
      },
      metrics: async () => {
        this.refreshMetrics();
        return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
      },
      changeMembers: (request) => this.changeMembers(request),
      transferLeadership: async (to) => {
        const driver = this.driver;
        if (!driver) return { ok: false, code: 'RAFTVIP_STOPPED', message: 'not running' };
        const result = await driver.transferLeadership(to === undefined ? undefined : nodeId(to));
        return result.ok ? { ok: true, transferee: result.transferee } : result;
      },
    };
  }

  private refreshMetrics(): void {
    const driver = this.driver;
    if (!driver) return;
    const status = driver.status();
    this.metrics.setRole(status.role);
    this.metrics.term.set(status.term);
    this.metrics.commitIndex.set(status.commitIndex);
    this.metrics.appliedIndex.set(status.appliedIndex);
    this.metrics.leaseHeld.set(driver.holdsLease() ? 1 : 0);
    this.metrics.hasLeader.set(status.leader === null ? 0 : 1);
    for (const peer of this.transport?.status() ?? []) {
      this.metrics.peerConnected.set({ peer: peer.id }, peer.connected ? 1 : 0);
      this.metrics.framesIn.set({ peer: peer.id }, peer.framesIn);
      this.metrics.framesOut.set({ peer: peer.id }, peer.framesOut);
      this.metrics.framesDropped.set({ peer: peer.id }, peer.framesDropped);
    }
    for (const [peer, rtt] of driver.peerRttMs()) this.metrics.peerRttSeconds.set({ peer }, rtt / 1000);
    const vip = this.vip?.status();
    if (vip) {
      this.metrics.vipHeld.set(vip.held ? 1 : 0);
      const seen = this.vipCountersSeen;
      this.metrics.vipClaims.inc(vip.counters.claims - seen.claims);
      this.metrics.vipReleases.inc(vip.counters.releases - seen.releases);
      this.metrics.vipAnnouncements.inc(vip.counters.announcements - seen.announcements);
      this.metrics.vipReconcileFailures.inc(vip.reconcileFailures - seen.failures);
      Object.assign(seen, vip.counters, { failures: vip.reconcileFailures });
    }
    const lb = this.loadBalancer?.status();
    if (lb) this.metrics.setLoadBalancer(lb, this.lbCountersSeen);
  }
}

export type MembersResult =
  | { ok: true; index: number; voters: string[] }
  | { ok: false; code: string; message: string };

export interface DaemonStatus {
  id: string;
  version: string;
  cluster: string;
  role: string;
  term: number;
  leader: string | null;
  votedFor: string | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  lease: { held: boolean; expiresInMs: number | null };
  voters: string[];
  peers: {
    id: string;
    address: string;
    voter: boolean;
    connected: boolean;
    lastError: string | null;
    matchIndex: number | null;
    nextIndex: number | null;
    replication: string | null;
    rttMs: number | null;
  }[];
  vip: VipStatus;
  loadBalancer: LoadBalancerStatus | { enabled: false };
}

export interface VipStatus {
  address: string;
  /** false: vip.enabled is false, a dry run; `held` is then always false. */
  managed: boolean;
  /** The VIP is on this host's interface (as of the last reconcile). */
  held: boolean;
  /** This node holds the lease, so it should hold the VIP (in a dry run: would). */
  leaseHeld: boolean;
  interface: string | null;
  claims: number;
  releases: number;
  announcements: number;
  reconcileFailures: number;
  lastError: { code: string | null; message: string; agoMs: number } | null;
}

/** The transport's credentials for the configured auth mode (certificates read from disk). */
async function transportAuth(auth: Config['cluster']['auth']): Promise<TransportAuth> {
  switch (auth.kind) {
    case 'psk':
      return { kind: 'psk', psk: auth.psk };
    case 'tls':
      return { kind: 'tls', ca: await readFile(auth.caFile), cert: await readFile(auth.certFile), key: await readFile(auth.keyFile) };
    case 'insecure':
      return { kind: 'insecure' };
    default: {
      const unreachable: never = auth;
      throw new Error(`unknown auth ${JSON.stringify(unreachable)}`);
    }
  }
}

/** A config section as plain data for comparison (secrets compared by content). */
function comparable(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_key, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v)));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
