// Prometheus metrics of one daemon, on a registry of its own (no global state, so tests can run
// several daemons in one process). Names are `raftvip_*` with units last, as Prometheus asks.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Role } from '../raft/types.js';
import type { LoadBalancerStatus } from '../lb/lb-controller.js';
import { formatEndpoint } from '../lb/data-plane.js';

/** Counters already added to the Prometheus counters, per source, so each scrape adds the rest. */
export interface LoadBalancerCountersSeen {
  failures: number;
  checks: Map<string, number>;
  failedChecks: Map<string, number>;
}

const roles: readonly Role[] = ['follower', 'pre-candidate', 'candidate', 'leader'];

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly role = new Gauge({
    name: 'raftvip_raft_role',
    help: 'Raft role of this node: 1 for the current role, 0 for the others',
    labelNames: ['role'],
    registers: [this.registry],
  });
  readonly term = new Gauge({ name: 'raftvip_raft_term', help: 'Current Raft term', registers: [this.registry] });
  readonly leaderChanges = new Counter({
    name: 'raftvip_raft_leader_changes_total',
    help: 'Times this node saw the leader change (including to no leader)',
    registers: [this.registry],
  });
  readonly commitIndex = new Gauge({ name: 'raftvip_raft_commit_index', help: 'Highest log index known committed', registers: [this.registry] });
  readonly appliedIndex = new Gauge({ name: 'raftvip_raft_applied_index', help: 'Highest log index applied to the cluster state', registers: [this.registry] });
  readonly leaseHeld = new Gauge({
    name: 'raftvip_raft_lease_held',
    help: '1 while this node holds the leader lease (the VIP may only be held then)',
    registers: [this.registry],
  });
  readonly hasLeader = new Gauge({ name: 'raftvip_raft_has_leader', help: '1 while this node knows a leader', registers: [this.registry] });
  readonly stalls = new Counter({
    name: 'raftvip_event_loop_stalls_total',
    help: 'Wake-ups after a pause or stall longer than the lease',
    registers: [this.registry],
  });
  readonly fsyncSeconds = new Histogram({
    name: 'raftvip_storage_fsync_duration_seconds',
    help: 'Time to persist one Ready (write and fsync)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly peerConnected = new Gauge({
    name: 'raftvip_peer_connected',
    help: '1 while the outbound connection to the peer is up',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  readonly peerRttSeconds = new Gauge({
    name: 'raftvip_peer_rtt_seconds',
    help: 'Latest heartbeat round-trip time to the peer, measured by the leader',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  readonly framesIn = new Gauge({ name: 'raftvip_peer_frames_received_total', help: 'Frames received from the peer', labelNames: ['peer'], registers: [this.registry] });
  readonly framesOut = new Gauge({ name: 'raftvip_peer_frames_sent_total', help: 'Frames sent to the peer', labelNames: ['peer'], registers: [this.registry] });
  readonly framesDropped = new Gauge({
    name: 'raftvip_peer_frames_dropped_total',
    help: 'Frames dropped for the peer (full send queue or bad frame)',
    labelNames: ['peer'],
    registers: [this.registry],
  });

  readonly vipHeld = new Gauge({
    name: 'raftvip_vip_held',
    help: '1 while the VIP is on this host\'s interface (as of the last reconcile)',
    registers: [this.registry],
  });
  readonly vipClaims = new Counter({ name: 'raftvip_vip_claims_total', help: 'Times this host added the VIP (with the lease)', registers: [this.registry] });
  readonly vipReleases = new Counter({
    name: 'raftvip_vip_releases_total',
    help: 'Copies of the VIP this host removed without the lease (lease lapsed, step-down, stop, stray copies)',
    registers: [this.registry],
  });
  readonly vipAnnouncements = new Counter({
    name: 'raftvip_vip_announcements_total',
    help: 'VIP announcements sent: a gratuitous ARP request and reply (IPv4) or an unsolicited neighbour advertisement (IPv6)',
    registers: [this.registry],
  });
  readonly vipReconcileFailures = new Counter({
    name: 'raftvip_vip_reconcile_failures_total',
    help: 'VIP reconciles that failed (netlink or packet socket errors; see status.vip.lastError)',
    registers: [this.registry],
  });

  readonly lbBackendReady = new Gauge({
    name: 'raftvip_lb_backend_ready',
    help: '1 while the backend passes its health check (it gets new connections), 0 while it is drained',
    labelNames: ['backend'],
    registers: [this.registry],
  });
  readonly lbBackendsReady = new Gauge({
    name: 'raftvip_lb_backends_ready',
    help: 'Backends passing their health check; 0 means VIP:port refuses every new connection',
    registers: [this.registry],
  });
  readonly lbBackendWeight = new Gauge({
    name: 'raftvip_lb_backend_weight',
    help: 'Weight of the backend in the kernel\'s table as of the last reconcile (0: drained)',
    labelNames: ['backend'],
    registers: [this.registry],
  });
  readonly lbBackendConnections = new Gauge({
    name: 'raftvip_lb_backend_connections',
    help: 'Connections IPVS counts for the backend, by state (active, inactive); absent with nftables',
    labelNames: ['backend', 'state'],
    registers: [this.registry],
  });
  readonly lbHealthChecks = new Counter({
    name: 'raftvip_lb_health_checks_total',
    help: 'Health checks of the backend, by result (success, failure)',
    labelNames: ['backend', 'result'],
    registers: [this.registry],
  });
  readonly lbReconcileFailures = new Counter({
    name: 'raftvip_lb_reconcile_failures_total',
    help: 'Load-balancer reconciles that failed (see status.loadBalancer.lastError)',
    registers: [this.registry],
  });
  readonly lbDataPlane = new Gauge({
    name: 'raftvip_lb_data_plane_info',
    help: 'The kernel data plane in use: 1 for it, by name (ipvs, nftables)',
    labelNames: ['data_plane'],
    registers: [this.registry],
  });

  constructor(options: { processMetrics: boolean }) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'raftvip_' });
    for (const role of roles) this.role.set({ role }, 0);
  }

  setLoadBalancer(status: LoadBalancerStatus, seen: LoadBalancerCountersSeen): void {
    this.lbDataPlane.set({ data_plane: status.dataPlane }, 1);
    this.lbBackendsReady.set(status.backendsReady);
    this.lbReconcileFailures.inc(status.reconcileFailures - seen.failures);
    seen.failures = status.reconcileFailures;
    for (const backend of status.backends) {
      const name = formatEndpoint(backend.address, backend.port);
      this.lbBackendReady.set({ backend: name }, backend.ready ? 1 : 0);
      this.lbBackendWeight.set({ backend: name }, backend.kernelWeight ?? 0);
      if (backend.activeConnections !== null) this.lbBackendConnections.set({ backend: name, state: 'active' }, backend.activeConnections);
      if (backend.inactiveConnections !== null) this.lbBackendConnections.set({ backend: name, state: 'inactive' }, backend.inactiveConnections);
      const failures = backend.failures - (seen.failedChecks.get(name) ?? 0);
      const successes = backend.checks - backend.failures - ((seen.checks.get(name) ?? 0) - (seen.failedChecks.get(name) ?? 0));
      if (failures > 0) this.lbHealthChecks.inc({ backend: name, result: 'failure' }, failures);
      if (successes > 0) this.lbHealthChecks.inc({ backend: name, result: 'success' }, successes);
      seen.checks.set(name, backend.checks);
      seen.failedChecks.set(name, backend.failures);
    }
  }

  setRole(current: Role): void {
    for (const role of roles) this.role.set({ role }, role === current ? 1 : 0);
  }
}
