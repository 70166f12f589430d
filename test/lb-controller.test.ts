// Goal: show the load-balancer controller's decisions without a kernel: the desired service is
// every configured backend, drained (weight 0) unless its health check passes, with its
// configured weight when it does; a health change converges at once; reconciles never overlap
// and a request during one runs once after it; a failing data plane is retried within
// lbRetryIntervalMs, counted and shown in status; with no ready backend the service is still
// applied (all drained) and status says so; stop() stops the checks and removes the service.
// The data plane and health source are in-memory fakes; the real ones are tested in the lab
// (test/lab-lb.test.ts), in a namespace (test/nftables-data-plane.test.ts) and in the guest.

import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfigText } from '../src/config/load-config.js';
import type { DataPlane, ObservedService, VirtualService } from '../src/lb/data-plane.js';
import { LoadBalancerController, desiredService, lbRetryIntervalMs, type BackendHealthView, type HealthSource } from '../src/lb/lb-controller.js';

const config = (
  await parseConfigText(
    [
      'cluster:',
      '  name: lb',
      '  peers: [ { id: a, address: 10.0.0.11:7480 }, { id: b, address: 10.0.0.12:7480 }, { id: c, address: 10.0.0.13:7480 } ]',
      '  auth: { insecure: true }',
      'node: { id: a }',
      'vip: { address: 10.0.0.100 }',
      'loadBalancer:',
      '  scheduler: wrr',
      '  backends: [ 10.0.0.11, { address: "10.0.0.12:6443", weight: 3 }, 10.0.0.13:7443 ]',
      '  reconcileIntervalMs: 60000',
      '  healthCheck: { insecureSkipVerify: true }',
      '',
    ].join('\n'),
    'lb.yaml',
  )
).loadBalancer;

class FakeHealth implements HealthSource {
  started = false;
  stopped = false;
  states: BackendHealthView[] = config.backends.map((backend) => ({ address: backend.address, port: backend.port, ready: false, since: 0, lastError: null, checks: 0, failures: 0 }));
  start(): void {
    this.started = true;
  }
  stop(): void {
    this.stopped = true;
  }
  snapshot(): readonly BackendHealthView[] {
    return this.states;
  }
  set(index: number, ready: boolean): void {
    this.states = this.states.map((state, i) => (i === index ? { ...state, ready, lastError: ready ? null : 'HTTP 503' } : state));
  }
}

class FakePlane implements DataPlane {
  readonly kind = 'nftables' as const;
  applied: VirtualService[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failures = 0;
  removed = 0;
  closed = false;
  delayMs = 0;
  async apply(service: VirtualService): Promise<void> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await sleep(this.delayMs);
      if (this.failures > 0) {
        this.failures -= 1;
        throw Object.assign(new Error('nft exploded'), { code: 'RAFTVIP_NFT_FAILED' });
      }
      this.applied.push(service);
    } finally {
      this.inFlight -= 1;
    }
  }
  async observe(): Promise<ObservedService | null> {
    const last = this.applied.at(-1);
    if (last === undefined) return null;
    return {
      address: last.address,
      port: last.port,
      scheduler: last.scheduler,
      realServers: last.realServers.filter((server) => server.weight > 0).map((server) => ({ ...server, activeConnections: null, inactiveConnections: null })),
    };
  }
  async remove(): Promise<void> {
    this.removed += 1;
  }
  close(): void {
    this.closed = true;
  }
}

const weights = (service: VirtualService | undefined) => service?.realServers.map((server) => `${server.address}:${server.port}=${server.weight}`);

t.test('desiredService: every backend, drained unless ready, configured weight when ready', async (t) => {
  const health = new FakeHealth();
  health.set(1, true);
  const service = desiredService({ vipAddress: '10.0.0.100', config, health: health.snapshot() });
  t.same(
    { address: service.address, port: service.port, scheduler: service.scheduler },
    { address: '10.0.0.100', port: 6443, scheduler: 'wrr' },
  );
  t.same(weights(service), ['10.0.0.11:6443=0', '10.0.0.12:6443=3', '10.0.0.13:7443=0']);
});

t.test('start applies at once (all drained), a health change converges at once, status tells', async (t) => {
  const health = new FakeHealth();
  const plane = new FakePlane();
  const logs: string[] = [];
  const controller = new LoadBalancerController({ vipAddress: '10.0.0.100', config, dataPlane: plane, health, log: (level, msg) => logs.push(`${level} ${msg}`) });
  await controller.start();
  t.ok(health.started, 'health checks started');
  t.same(weights(plane.applied[0]), ['10.0.0.11:6443=0', '10.0.0.12:6443=0', '10.0.0.13:7443=0'], 'the service exists from the start, every backend drained');
  t.match(controller.status(), { noReadyBackend: true, backendsReady: 0, backendsTotal: 3, dataPlane: 'nftables', service: '10.0.0.100:6443' });
  t.match(logs.join('\n'), /error .*NO READY BACKEND/, 'said loudly');

  health.set(0, true);
  health.set(2, true);
  controller.kick();
  await sleep(20);
  t.same(weights(plane.applied.at(-1)), ['10.0.0.11:6443=1', '10.0.0.12:6443=0', '10.0.0.13:7443=1']);
  const status = controller.status();
  t.match(status, { noReadyBackend: false, backendsReady: 2 });
  t.same(status.backends.map((b) => [b.ready, b.weight, b.kernelWeight, b.lastError]), [[true, 1, 1, null], [false, 3, 0, null], [true, 1, 1, null]]);
  t.match(logs.at(-1), /info load balancer: 2 of 3 backends ready/);

  await controller.stop();
  t.ok(health.stopped, 'health checks stopped');
  t.equal(plane.removed, 1, 'the service was removed');
  t.ok(plane.closed);
  const count = plane.applied.length;
  controller.kick();
  await sleep(20);
  t.equal(plane.applied.length, count, 'no reconcile after stop');
});

t.test('reconciles never overlap; kicks during one coalesce into one more', async (t) => {
  const health = new FakeHealth();
  const plane = new FakePlane();
  const controller = new LoadBalancerController({ vipAddress: '10.0.0.100', config, dataPlane: plane, health, log: () => {} });
  await controller.start();
  plane.delayMs = 50;
  const before = plane.applied.length;
  controller.kick();
  for (let i = 0; i < 10; i++) controller.kick();
  await sleep(250);
  t.equal(plane.maxInFlight, 1, 'one apply at a time');
  t.equal(plane.applied.length - before, 2, 'the running one and exactly one more');
  await controller.stop();
});

t.test('a failing data plane is retried soon, counted, and shown', async (t) => {
  const health = new FakeHealth();
  const plane = new FakePlane();
  plane.failures = 2;
  const logs: string[] = [];
  const controller = new LoadBalancerController({ vipAddress: '10.0.0.100', config, dataPlane: plane, health, log: (level, msg) => logs.push(`${level} ${msg}`) });
  await controller.start();
  t.equal(plane.applied.length, 0);
  t.match(controller.status(), { reconcileFailures: 1, lastError: { code: 'RAFTVIP_NFT_FAILED', message: 'nft exploded' } });
  await sleep(lbRetryIntervalMs * 2 + 150);
  t.equal(plane.applied.length, 1, 'applied after two retries, well before reconcileIntervalMs (60 s)');
  t.equal(controller.status().reconcileFailures, 2);
  t.equal(logs.filter((line) => line.startsWith('error load balancer: cannot program')).length, 1, 'the same failure is logged once, not per retry');
  await controller.stop();
});
