// The load-balancer controller: decides *when* the data plane converges and *to what*. The
// desired virtual service is a pure function of the configuration and the health checks
// (`desiredService`); the data plane (IPVS or nftables) makes the kernel equal to it.
//
// Every host runs this, leader or not (DESIGN.md: data planes are programmed ahead of time), so a
// host that claims the VIP forwards from its first packet. Leadership plays no part here.
//
// - A health transition (ready ↔ not ready) converges at once: a backend whose /readyz fails is
//   drained (weight 0) within one reconcile of the check that decided it, while it still serves.
// - Every reconcileIntervalMs the kernel is re-read and converged anyway (level-triggered: a rule
//   or real server deleted by hand comes back), and the per-backend connection counts are
//   refreshed for status and metrics.
// - With no ready backend the service stays (every server drained) and status, metrics and the
//   log say so loudly.
// - Reconciles never overlap: one runs at a time, and a request during one runs once after it.
// - stop() ends the health checks and the timers, waits for the reconcile in flight, and removes
//   everything raftvip programmed (only that). Failures are logged (rate-limited), counted, shown
//   in status, and retried.

import type { ConfigLoadBalancer } from '../config/load-balancer-schema.js';
import { formatEndpoint, type DataPlane, type ObservedService, type VirtualService } from './data-plane.js';

/** How soon a failed reconcile is retried (capped by reconcileIntervalMs). */
export const lbRetryIntervalMs = 200;
/** The same failure message is logged at most this often. */
export const lbErrorLogIntervalMs = 10_000;

/** What the controller needs to know about one backend's health (health-checker.ts). */
export interface BackendHealthView {
  readonly address: string;
  readonly port: number;
  readonly ready: boolean;
  /** Wall-clock ms of the last transition (or of the start). */
  readonly since: number;
  readonly lastError: string | null;
  readonly checks: number;
  readonly failures: number;
}

export interface HealthSource {
  start(): void;
  stop(): void | Promise<void>;
  snapshot(): readonly BackendHealthView[];
}

export type LbLog = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface LoadBalancerControllerOptions {
  readonly vipAddress: string;
  readonly config: ConfigLoadBalancer;
  readonly dataPlane: DataPlane;
  readonly health: HealthSource;
  readonly log: LbLog;
  /** Wall clock, for status stamps. Default Date.now. */
  readonly now?: () => number;
}

export interface BackendStatus {
  address: string;
  port: number;
  ready: boolean;
  /** ISO time of the last ready/not-ready transition. */
  since: string;
  lastError: string | null;
  /** Configured weight. */
  weight: number;
  /** The weight the kernel holds now (0: drained); null when the server is not in the kernel's table. */
  kernelWeight: number | null;
  activeConnections: number | null;
  inactiveConnections: number | null;
  checks: number;
  failures: number;
}

export interface LoadBalancerStatus {
  enabled: true;
  dataPlane: DataPlane['kind'];
  service: string;
  scheduler: VirtualService['scheduler'];
  backendsReady: number;
  backendsTotal: number;
  /** True while no backend is ready: the service is kept, and refuses new connections. */
  noReadyBackend: boolean;
  backends: BackendStatus[];
  reconciles: number;
  reconcileFailures: number;
  lastError: { code: string | null; message: string; at: string } | null;
}

/** The service the kernel should hold: every configured backend, drained unless ready. */
export function desiredService(options: { vipAddress: string; config: ConfigLoadBalancer; health: readonly BackendHealthView[] }): VirtualService {
  const { config, health } = options;
  return {
    address: options.vipAddress,
    port: config.port,
    scheduler: config.scheduler,
    realServers: config.backends.map((backend) => {
      const state = health.find((candidate) => candidate.address === backend.address && candidate.port === backend.port);
      return { address: backend.address, port: backend.port, weight: state?.ready === true ? backend.weight : 0 };
    }),
  };
}

export class LoadBalancerController {
  readonly #options: LoadBalancerControllerOptions;
  readonly #now: () => number;
  #started = false;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #observed: ObservedService | null = null;
  #reconciles = 0;
  #failures = 0;
  #lastError: LoadBalancerStatus['lastError'] = null;
  #lastLogged = new Map<string, number>();
  #readyCount: number | null = null;

  constructor(options: LoadBalancerControllerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get dataPlane(): DataPlane {
    return this.#options.dataPlane;
  }

  /** Starts the health checks and the first reconcile (which programs the service with every
   * backend drained until its first check passes). */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#options.health.start();
    this.kick();
    await this.#running;
  }

  /** Asks for a reconcile now (a health transition). Coalesces with one in flight. */
  kick(): void {
    if (!this.#started || this.#stopped) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    this.#running = this.#reconcile().finally(() => {
      this.#running = null;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        this.kick();
      }
    });
  }

  /** Stops checks and timers and removes what raftvip programmed. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#options.health.stop();
    await this.#running;
    try {
      await this.#options.dataPlane.remove();
      this.#options.log('info', `removed the ${this.#options.dataPlane.kind} service for ${this.#serviceName()}`);
    } finally {
      this.#options.dataPlane.close();
    }
  }

  status(): LoadBalancerStatus {
    const { config } = this.#options;
    const health = this.#options.health.snapshot();
    const backends = config.backends.map((backend): BackendStatus => {
      const state = health.find((candidate) => candidate.address === backend.address && candidate.port === backend.port);
      const kernel = this.#observed?.realServers.find((server) => server.address === backend.address && server.port === backend.port);
      return {
        address: backend.address,
        port: backend.port,
        ready: state?.ready ?? false,
        since: new Date(state?.since ?? this.#now()).toISOString(),
        lastError: state?.lastError ?? null,
        weight: backend.weight,
        kernelWeight: kernel?.weight ?? (this.#observed !== null ? 0 : null),
        activeConnections: kernel?.activeConnections ?? null,
        inactiveConnections: kernel?.inactiveConnections ?? null,
        checks: state?.checks ?? 0,
        failures: state?.failures ?? 0,
      };
    });
    const backendsReady = backends.filter((backend) => backend.ready).length;
    return {
      enabled: true,
      dataPlane: this.#options.dataPlane.kind,
      service: this.#serviceName(),
      scheduler: config.scheduler,
      backendsReady,
      backendsTotal: backends.length,
      noReadyBackend: backendsReady === 0,
      backends,
      reconciles: this.#reconciles,
      reconcileFailures: this.#failures,
      lastError: this.#lastError,
    };
  }

  async #reconcile(): Promise<void> {
    const { dataPlane, config, log } = this.#options;
    const health = this.#options.health.snapshot();
    const desired = desiredService({ vipAddress: this.#options.vipAddress, config, health });
    let delayMs = config.reconcileIntervalMs;
    try {
      await dataPlane.apply(desired);
      this.#observed = await dataPlane.observe();
      this.#reconciles += 1;
      this.#noteReadyCount(desired);
    } catch (error) {
      this.#failures += 1;
      const message = error instanceof Error ? error.message : String(error);
      const code = typeof (error as { code?: unknown } | null)?.code === 'string' ? ((error as { code: string }).code) : null;
      this.#lastError = { code, message, at: new Date(this.#now()).toISOString() };
      const last = this.#lastLogged.get(message) ?? Number.NEGATIVE_INFINITY;
      if (this.#now() - last >= lbErrorLogIntervalMs) {
        this.#lastLogged.set(message, this.#now());
        log('error', `load balancer: cannot program the ${dataPlane.kind} service for ${this.#serviceName()}; retrying`, { err: message, code });
      }
      delayMs = Math.min(lbRetryIntervalMs, config.reconcileIntervalMs);
    }
    this.#arm(delayMs);
  }

  #noteReadyCount(desired: VirtualService): void {
    const ready = desired.realServers.filter((server) => server.weight > 0);
    if (ready.length === this.#readyCount) return;
    const previous = this.#readyCount;
    this.#readyCount = ready.length;
    const names = ready.map((server) => formatEndpoint(server.address, server.port));
    if (ready.length === 0) {
      this.#options.log('error', `load balancer: NO READY BACKEND for ${this.#serviceName()}; the service is kept and refuses new connections`, {
        backends: desired.realServers.length,
      });
    } else {
      this.#options.log(previous === null || ready.length >= previous ? 'info' : 'warn', `load balancer: ${ready.length} of ${desired.realServers.length} backends ready`, {
        ready: names,
      });
    }
  }

  #arm(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.kick();
    }, delayMs);
    this.#timer.unref();
  }

  #serviceName(): string {
    return formatEndpoint(this.#options.vipAddress, this.#options.config.port);
  }
}
