// The backend health checker: every raftvip host checks every kube-apiserver backend on its own
// (DESIGN.md, "The L4 front end") and the load-balancer controller gives weight 0 to those that
// are not ready. It owns one timer and at most one check per backend, the rise/fall state, and
// the check itself (HTTPS `GET /readyz`, or a TCP connect); nothing about the data plane.
//
// Why /readyz over HTTPS: kube-apiserver fails /readyz as soon as it starts shutting down while it
// still serves requests, so the backend is drained before it goes away; /healthz and a TCP probe
// only notice once it has stopped. A check is a fresh connection every time (no keep-alive), so a
// server that stops accepting is noticed by the next check, not hidden behind an open socket.
//
// State of a backend (invariants):
// - It starts unknown (ready = false, checks = 0). The first check decides at once: ready if it
//   succeeded, not ready if it failed. After that, `rise` consecutive successes make a not-ready
//   backend ready and `fall` consecutive failures make a ready one not ready; anything else
//   changes no state. `onChange` is called for the first decision and every transition, and only
//   then; `since` is the wall-clock time of the last of them (of start() before the first).
// - `lastError` describes the most recent check: null when it succeeded.
// - At most one check per backend is in flight or waiting, and at most `inFlightMax` checks in
//   all are in flight; a backend whose check is due while that many are in flight waits in a
//   FIFO queue (holding at most one entry per backend) and starts when a check finishes. Waiting
//   delays that backend's checks, never skips them.
// - Every check ends within `timeoutMs` (connect, TLS, request and a body capped at
//   `healthCheckBodyBytesMax`): a check that has not succeeded by then fails as
//   `timeout after N ms`.
//
// Scheduling: a backend's next check starts `intervalMs` after its previous check *started*, or
// as soon as it finished if it took longer; checks of one backend never overlap. So a backend
// that starts failing is marked not ready, at worst (plus any wait for a free slot):
// - within fall × intervalMs (plus one round trip) when it fails fast (503, connection refused);
// - within intervalMs + (fall − 1) × max(intervalMs, timeoutMs) + timeoutMs when its checks time
//   out (a host that died): fall × intervalMs + timeoutMs when timeoutMs ≤ intervalMs, and 2.5 s
//   with the config defaults (interval 500 ms, timeout 1000 ms, fall 2).
//
// stop() aborts the checks in flight and clears every timer, so nothing of the checker keeps the
// process alive. Results that arrive after stop() are dropped.

import { request as httpsRequest, type RequestOptions } from 'node:https';
import { connect as netConnect, isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { assert } from '../raft/assert.js';
import { formatEndpoint } from './data-plane.js';
import { readFile } from 'node:fs/promises';

export const healthCheckTypes = ['https', 'tcp'] as const;
/** 'https': GET path must answer 200. 'tcp': a TCP connect must succeed. */
export type HealthCheckType = (typeof healthCheckTypes)[number];

export interface HealthCheckTls {
  /** PEM CA bundle the backend's certificate must chain to. null: Node's built-in CAs (which
   * will not know a cluster CA: the check fails with a message saying what to set). */
  readonly ca: Buffer | null;
  /** PEM client certificate and key, presented to the backend; both or neither. */
  readonly cert: Buffer | null;
  readonly key: Buffer | null;
  /** Skip verifying the backend's certificate (chain and address). Explicit only. */
  readonly insecureSkipVerify: boolean;
  /** A CA file that did not exist when the configuration was loaded (kubeadm's
   * /etc/kubernetes/pki/ca.crt before `kubeadm init`): while `ca` is null, each HTTPS check first
   * tries to read it; until it exists every check fails saying so, and once read it is the CA
   * for good. null or absent: no such file. */
  readonly pendingCaFile?: string | null;
}

/** What the config gives the checker (defaults and validation of user input live in the config
 * loader; the checker asserts the ranges below). */
export interface HealthCheckOptions {
  readonly type: HealthCheckType;
  /** The HTTPS request path, e.g. /readyz. Unused by 'tcp'. */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive successes that make a not-ready backend ready. */
  readonly rise: number;
  /** Consecutive failures that make a ready backend not ready. */
  readonly fall: number;
  readonly tls: HealthCheckTls;
}

export interface HealthCheckBackend {
  /** IP literal (no brackets); a host name is resolved on every check. */
  readonly address: string;
  readonly port: number;
}

export interface BackendHealth {
  readonly address: string;
  readonly port: number;
  readonly ready: boolean;
  /** Wall-clock ms (epoch) of the last transition, or of start() before the first decision. */
  readonly since: number;
  /** Why the most recent check failed ('HTTP 503', 'ECONNREFUSED', 'timeout after 1000 ms',
   * 'certificate verify failed: ...'); null if it succeeded or none finished yet. */
  readonly lastError: string | null;
  /** Duration of the most recent check in ms; null before the first. */
  readonly lastCheckMs: number | null;
  readonly checks: number;
  readonly failures: number;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
}

/** Checks in flight at once, over all backends, unless the caller says otherwise. */
export const healthChecksInFlightMax = 16;
/** Bytes of a response body read; the status decides, the body is only drained (cut here). */
export const healthCheckBodyBytesMax = 4_096;
/** Backends one checker watches (a control plane has a handful). */
export const healthCheckBackendsMax = 256;
/** Bounds the checker asserts; the config loader's own ranges must lie within them. */
export const healthCheckIntervalMsMin = 10;
export const healthCheckIntervalMsMax = 60_000;
export const healthCheckTimeoutMsMin = 10;
export const healthCheckTimeoutMsMax = 60_000;
export const healthCheckThresholdMax = 100;
export const healthCheckPathBytesMax = 1_024;
/** Bound on the inFlightMax option. */
export const healthChecksInFlightMaxLimit = 1_024;

const userAgent = 'raftvip-health-check';

/** OpenSSL verification results as Node reports them in `error.code` (X509_V_ERR_* names, and
 * Node's own name-mismatch code): a failure of these is the certificate's, not the network's. */
const certificateChainErrorCodes = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);
const certificateNameErrorCodes = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);

/** What the operator is told when the certificate did not chain to the CAs it was checked against. */
const defaultCaHint =
  "checked against Node's built-in CAs because no CA is configured: set loadBalancer.healthCheck.caFile " +
  'to the CA that signed the kube-apiserver serving certificate (kubeadm: /etc/kubernetes/pki/ca.crt), ' +
  'or set loadBalancer.healthCheck.insecureSkipVerify: true';
const nameHint = "the serving certificate must list the backend's address as an IP subjectAltName";
const clientCertificateRequiredHint = 'the backend requires a client certificate: set loadBalancer.healthCheck.certFile and keyFile';
const clientCertificateRefusedHint = 'the backend refused our client certificate: it must be signed by a CA the backend trusts (kube-apiserver --client-ca-file)';

export type HealthCheckResult = { readonly ok: true; readonly error: null } | { readonly ok: false; readonly error: string };

const success: HealthCheckResult = { ok: true, error: null };
const failure = (error: string): HealthCheckResult => ({ ok: false, error });

/** Asserts the options are within the checker's bounds (the config loader validated user input). */
export function assertHealthCheckOptions(options: HealthCheckOptions): void {
  assert((healthCheckTypes as readonly string[]).includes(options.type), `health check type ${String(options.type)}`);
  // As the config loader accepts it; characters HTTP cannot carry fail each check instead.
  assert(
    options.path.startsWith('/') && Buffer.byteLength(options.path) <= healthCheckPathBytesMax && !/[\s\0]/.test(options.path),
    `health check path ${JSON.stringify(options.path)}`,
  );
  assert(isIntegerIn(options.intervalMs, healthCheckIntervalMsMin, healthCheckIntervalMsMax), `intervalMs ${options.intervalMs}`);
  assert(isIntegerIn(options.timeoutMs, healthCheckTimeoutMsMin, healthCheckTimeoutMsMax), `timeoutMs ${options.timeoutMs}`);
  assert(isIntegerIn(options.rise, 1, healthCheckThresholdMax), `rise ${options.rise}`);
  assert(isIntegerIn(options.fall, 1, healthCheckThresholdMax), `fall ${options.fall}`);
  assert((options.tls.cert === null) === (options.tls.key === null), 'tls.cert and tls.key come together');
}

function isIntegerIn(value: number, min: number, max: number): boolean {
  return Number.isInteger(value) && value >= min && value <= max;
}

/** `10.0.0.11:6443` or `[fd00::11]:6443`, as the Host header and messages spell a backend. */
export function formatBackend(backend: HealthCheckBackend): string {
  return formatEndpoint(backend.address, backend.port);
}

/** The TLS material of the checks, parsed once. Throws what `tls.createSecureContext` throws for
 * PEM it cannot load; the config loader is expected to have tried that already. */
export function healthCheckSecureContext(tls: HealthCheckTls): SecureContext {
  return createSecureContext({ ca: tls.ca ?? undefined, cert: tls.cert ?? undefined, key: tls.key ?? undefined });
}

/**
 * One check of one backend. Never rejects: every outcome is a HealthCheckResult, and an aborted
 * `signal` ends it at once as `aborted`. `secureContext` (from healthCheckSecureContext) saves
 * parsing the PEM on every check; without it the check parses `options.tls` itself.
 */
export function checkBackendOnce(check: {
  backend: HealthCheckBackend;
  options: HealthCheckOptions;
  signal: AbortSignal;
  secureContext?: SecureContext;
}): Promise<HealthCheckResult> {
  const { backend, options, signal } = check;
  return new Promise<HealthCheckResult>((resolve) => {
    if (signal.aborted) {
      resolve(failure('aborted'));
      return;
    }
    let settled = false;
    let cleanup: () => void = () => {};
    const finish = (result: HealthCheckResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      cleanup();
      resolve(result);
    };
    const onAbort = (): void => finish(failure('aborted'));
    const timer = setTimeout(() => finish(failure(`timeout after ${options.timeoutMs} ms`)), options.timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      switch (options.type) {
        case 'https':
          cleanup = startHttpsCheck(backend, options, check.secureContext ?? healthCheckSecureContext(options.tls), finish);
          break;
        case 'tcp':
          cleanup = startTcpCheck(backend, finish);
          break;
        default: {
          const unknown: never = options.type;
          throw new Error(`unknown health check type ${String(unknown)}`);
        }
      }
    } catch (error) {
      finish(failure(describeCheckError(error, options.tls)));
    }
    // Should a result have come before the teardown was known, tear down now.
    if (settled) cleanup();
  });
}

/** Starts `GET path`; calls `finish` once with the result; returns what tears the request down. */
function startHttpsCheck(
  backend: HealthCheckBackend,
  options: HealthCheckOptions,
  secureContext: SecureContext,
  finish: (result: HealthCheckResult) => void,
): () => void {
  const family = isIP(backend.address);
  const requestOptions: RequestOptions & { secureContext: SecureContext } = {
    host: backend.address,
    port: backend.port,
    path: options.path,
    method: 'GET',
    headers: { Host: formatBackend(backend), 'User-Agent': userAgent, Accept: '*/*', Connection: 'close' },
    // A fresh connection per check, closed after it: a server that stops accepting is noticed.
    agent: false,
    secureContext,
    rejectUnauthorized: !options.tls.insecureSkipVerify,
    // No SNI for an address (RFC 6066 forbids IP literals there); a name is sent as SNI.
    servername: family === 0 ? backend.address : '',
    // kube-apiserver's serving certificate lists the hosts' IPs: check the backend's own address,
    // whatever the Host header or SNI say.
    checkServerIdentity: (_host: string, certificate: PeerCertificate) => checkServerIdentity(backend.address, certificate),
  };
  const request = httpsRequest(requestOptions);
  request.on('error', (error) => finish(failure(describeCheckError(error, options.tls))));
  request.on('response', (response) => {
    let bodyBytes = 0;
    const status = response.statusCode ?? 0;
    const decide = (): void => finish(status === 200 ? success : failure(`HTTP ${status}`));
    response.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length;
      if (bodyBytes >= healthCheckBodyBytesMax) decide();
    });
    response.on('end', decide);
    response.on('error', (error) => finish(failure(describeCheckError(error, options.tls))));
  });
  request.end();
  return () => request.destroy();
}

function startTcpCheck(backend: HealthCheckBackend, finish: (result: HealthCheckResult) => void): () => void {
  const socket = netConnect({ host: backend.address, port: backend.port });
  socket.on('connect', () => finish(success));
  socket.on('error', (error) => finish(failure(describeCheckError(error, null))));
  return () => socket.destroy();
}

/** A short, stable description of why a check failed: the errno name for network errors
 * ('ECONNREFUSED'), 'certificate verify failed: ...' with what to do for certificate errors. */
export function describeCheckError(error: unknown, tls: HealthCheckTls | null): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === 'string' && certificateChainErrorCodes.has(code)) {
    return `certificate verify failed: ${message} (${code})${tls !== null && tls.ca === null ? `; ${defaultCaHint}` : ''}`;
  }
  if (typeof code === 'string' && certificateNameErrorCodes.has(code)) return `certificate verify failed: ${message}; ${nameHint}`;
  if (typeof code === 'string' && code.startsWith('ERR_SSL_')) {
    // OpenSSL's message carries its internal error stack; its `reason` is the readable part.
    const reason = (error as { reason?: unknown }).reason;
    const hint = code.endsWith('_ALERT_CERTIFICATE_REQUIRED')
      ? `; ${clientCertificateRequiredHint}`
      : /_ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE)$/.test(code)
        ? `; ${clientCertificateRefusedHint}`
        : '';
    return `TLS: ${typeof reason === 'string' ? reason : message} (${code})${hint}`;
  }
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  if (typeof code === 'string') return `${code}: ${message}`;
  return message;
}

export interface HealthCheckerOptions {
  /** In the order snapshot() reports them; unique by address and port. */
  readonly backends: readonly HealthCheckBackend[];
  readonly options: HealthCheckOptions;
  /** Called on the first decision and on every ready/not-ready transition. Must not throw. */
  readonly onChange?: (backend: BackendHealth) => void;
  /** Checks in flight at once (default healthChecksInFlightMax). */
  readonly inFlightMax?: number;
  /** Wall clock for `since`, ms since the epoch (default Date.now). Never used for timing. */
  readonly now?: () => number;
}

interface BackendSlot {
  readonly backend: HealthCheckBackend;
  health: Mutable<BackendHealth>;
  /** False until the first check has finished: the first result decides at once. */
  decided: boolean;
  /** Armed between checks. */
  timer: NodeJS.Timeout | null;
  /** The check in flight. */
  controller: AbortController | null;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export class HealthChecker {
  /** Replaced once, when a pending CA file is read (its `tls.ca` is then set). */
  #options: HealthCheckOptions;
  readonly #onChange: ((backend: BackendHealth) => void) | null;
  readonly #inFlightMax: number;
  readonly #now: () => number;
  #secureContext: SecureContext | undefined;
  /** The CA file still to be read (HealthCheckTls.pendingCaFile), or null. */
  #pendingCaFile: string | null;
  readonly #slots: BackendSlot[];
  /** Backends whose check is due but found inFlightMax checks in flight; FIFO, each at most once. */
  readonly #waiting: BackendSlot[] = [];
  #inFlight = 0;
  #state: 'new' | 'running' | 'stopped' = 'new';

  /** Asserts the options; throws what tls.createSecureContext throws for unloadable PEM. */
  constructor(options: HealthCheckerOptions) {
    assertHealthCheckOptions(options.options);
    assert(options.backends.length <= healthCheckBackendsMax, `${options.backends.length} backends > ${healthCheckBackendsMax}`);
    const keys = new Set(options.backends.map(formatBackend));
    assert(keys.size === options.backends.length, 'backends are unique by address and port');
    for (const backend of options.backends) {
      assert(backend.address.length > 0 && isIntegerIn(backend.port, 1, 65_535), `backend ${formatBackend(backend)}`);
    }
    const inFlightMax = options.inFlightMax ?? healthChecksInFlightMax;
    assert(isIntegerIn(inFlightMax, 1, healthChecksInFlightMaxLimit), `inFlightMax ${inFlightMax}`);
    this.#options = options.options;
    this.#onChange = options.onChange ?? null;
    this.#inFlightMax = inFlightMax;
    this.#now = options.now ?? Date.now;
    this.#secureContext = options.options.type === 'https' ? healthCheckSecureContext(options.options.tls) : undefined;
    this.#pendingCaFile = options.options.type === 'https' && options.options.tls.ca === null ? (options.options.tls.pendingCaFile ?? null) : null;
    const since = this.#now();
    this.#slots = options.backends.map((backend) => ({
      backend: { address: backend.address, port: backend.port },
      health: {
        address: backend.address,
        port: backend.port,
        ready: false,
        since,
        lastError: null,
        lastCheckMs: null,
        checks: 0,
        failures: 0,
        consecutiveSuccesses: 0,
        consecutiveFailures: 0,
      },
      decided: false,
      timer: null,
      controller: null,
    }));
  }

  /** Checks every backend at once (subject to inFlightMax), then every intervalMs. Idempotent
   * while running; a stopped checker does not start again (make a new one). */
  start(): void {
    if (this.#state === 'running') return;
    assert(this.#state === 'new', 'a stopped HealthChecker is not restarted');
    this.#state = 'running';
    const since = this.#now();
    for (const slot of this.#slots) slot.health.since = since;
    for (const slot of this.#slots) this.#due(slot);
  }

  /** Aborts the checks in flight, drops the waiting ones, clears every timer. Idempotent. */
  stop(): void {
    const wasRunning = this.#state === 'running';
    this.#state = 'stopped';
    if (!wasRunning) return;
    this.#waiting.length = 0;
    for (const slot of this.#slots) {
      if (slot.timer !== null) clearTimeout(slot.timer);
      slot.timer = null;
      slot.controller?.abort();
      slot.controller = null;
    }
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  /** Checks in flight now (at most inFlightMax). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Every backend's state, in the order given. Copies: later checks do not change them. */
  snapshot(): readonly BackendHealth[] {
    return this.#slots.map((slot) => Object.freeze({ ...slot.health }));
  }

  #due(slot: BackendSlot): void {
    if (this.#inFlight < this.#inFlightMax) this.#run(slot);
    else this.#waiting.push(slot);
  }

  #run(slot: BackendSlot): void {
    this.#inFlight++;
    assert(this.#inFlight <= this.#inFlightMax, 'health checks in flight exceed inFlightMax');
    assert(slot.controller === null && slot.timer === null, 'one check per backend at a time');
    const controller = new AbortController();
    slot.controller = controller;
    const startedMs = performance.now();
    const check =
      this.#pendingCaFile === null
        ? checkBackendOnce({ backend: slot.backend, options: this.#options, signal: controller.signal, secureContext: this.#secureContext })
        : this.#loadPendingCa().then((error) =>
            error === null
              ? checkBackendOnce({ backend: slot.backend, options: this.#options, signal: controller.signal, secureContext: this.#secureContext })
              : failure(error),
          );
    void check.then(
      (result) => {
        this.#inFlight--;
        if (slot.controller === controller) slot.controller = null;
        if (this.#state !== 'running') return;
        const durationMs = performance.now() - startedMs;
        this.#record(slot, result, durationMs);
        // onChange may have stopped the checker.
        if (this.#state !== 'running') return;
        const next = this.#waiting.shift();
        if (next !== undefined) this.#run(next);
        slot.timer = setTimeout(() => {
          slot.timer = null;
          if (this.#state === 'running') this.#due(slot);
        }, Math.max(0, this.#options.intervalMs - durationMs));
      },
    );
  }

  /** Tries to read the pending CA file: null once the CA is in use (now or before), else why
   * the check cannot verify yet. Concurrent checks may read it twice; the first to finish wins. */
  async #loadPendingCa(): Promise<string | null> {
    const file = this.#pendingCaFile;
    if (file === null) return null;
    let ca: Buffer;
    try {
      ca = await readFile(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return code === 'ENOENT'
        ? `caFile ${file} does not exist yet (kubeadm init creates the cluster CA); no backend is trusted until it does`
        : `cannot read caFile ${file}: ${code ?? (error as Error).message}`;
    }
    if (this.#pendingCaFile === null) return null;
    try {
      this.#secureContext = healthCheckSecureContext({ ...this.#options.tls, ca });
      this.#options = { ...this.#options, tls: { ...this.#options.tls, ca, pendingCaFile: null } };
    } catch (error) {
      return `caFile ${file} does not hold a usable PEM certificate: ${(error as Error).message}`;
    }
    this.#pendingCaFile = null;
    return null;
  }

  #record(slot: BackendSlot, result: HealthCheckResult, durationMs: number): void {
    const health = slot.health;
    health.checks++;
    health.lastCheckMs = Math.round(durationMs * 100) / 100;
    health.lastError = result.error;
    if (result.ok) {
      health.consecutiveSuccesses++;
      health.consecutiveFailures = 0;
    } else {
      health.failures++;
      health.consecutiveFailures++;
      health.consecutiveSuccesses = 0;
    }
    if (!slot.decided) {
      slot.decided = true;
      health.ready = result.ok;
    } else if (!health.ready && health.consecutiveSuccesses >= this.#options.rise) {
      health.ready = true;
    } else if (health.ready && health.consecutiveFailures >= this.#options.fall) {
      health.ready = false;
    } else {
      return;
    }
    health.since = this.#now();
    this.#onChange?.(Object.freeze({ ...health }));
  }
}
