// Goal: show that the IPVS planner turns any observed kernel state into exactly raftvip's
// service with the fewest, correctly ordered operations. Named cases pin the plans: empty → full
// service, scheduler change (an edit, never a re-create), weight change, drain (weight 0 keeps
// the destination), a server removed from the configuration, a destination added by hand and
// one edited by hand (forwarding method, thresholds), a persistence flag set by hand, the
// kernel's hashed flag ignored, and no operation on equal state. A seeded property test then
// plans from random observed states, applies the plan to a model of the kernel and checks that
// the result is the desired service and that planning again yields nothing. Failures print the
// seed and case.

import t from 'tap';
import { schedulers, type RealServer, type Scheduler, type VirtualService } from '../src/lb/data-plane.js';
import type { ForwardingMethod, IpvsDestinationEntry, IpvsServiceEntry } from '../src/lb/ipvs-codec.js';
import {
  checkVirtualService,
  desiredIpvsService,
  ipvsSchedulerName,
  observedServiceFrom,
  planIpvs,
  schedulerFromIpvs,
  type IpvsChange,
  type IpvsObservedState,
} from '../src/lb/ipvs-planner.js';
import { SeededRandom } from '../src/raft/random.js';

const vip = '10.0.0.100';
const port = 6443;
const server = (last: number, weight = 1): RealServer => ({ address: `10.0.0.${last}`, port, weight });

function desired(scheduler: Scheduler, realServers: RealServer[]): VirtualService {
  return { address: vip, port, scheduler, realServers };
}

/** The kernel's view of a service as a dump reports it (with the hashed flag). */
function kernelService(scheduler: string, overrides: Partial<IpvsServiceEntry> = {}): IpvsServiceEntry {
  return {
    key: { kind: 'address', family: 'ipv4', protocol: 'tcp', address: vip, port },
    scheduler,
    flags: 0x0002,
    timeoutSeconds: 0,
    netmask: 0xffff_ffff,
    persistenceEngine: null,
    stats: null,
    ...overrides,
  };
}

function kernelDestination(last: number, weight = 1, overrides: Partial<IpvsDestinationEntry> = {}): IpvsDestinationEntry {
  return {
    family: 'ipv4',
    address: `10.0.0.${last}`,
    port,
    forwardingMethod: 'masquerade',
    weight,
    upperThreshold: 0,
    lowerThreshold: 0,
    activeConnections: 0,
    inactiveConnections: 0,
    persistentConnections: 0,
    tunnel: { type: 0, port: 0, flags: 0 },
    stats: null,
    ...overrides,
  };
}

/** A compact, readable form of a plan. */
function summary(changes: readonly IpvsChange[]): string[] {
  return changes.map((change) => {
    switch (change.kind) {
      case 'add-service':
      case 'edit-service':
        return `${change.kind} ${change.service.scheduler}`;
      case 'add-destination':
      case 'edit-destination':
        return `${change.kind} ${change.destination.address}:${change.destination.port} w${change.destination.weight} ${change.destination.forwardingMethod}`;
      case 'delete-destination':
        return `${change.kind} ${change.destination.address}:${change.destination.port}`;
    }
  });
}

const empty: IpvsObservedState = { service: null, destinations: [] };

t.test('empty kernel → the service, then its destinations in configuration order', async (t) => {
  const changes = planIpvs(desired('rr', [server(13), server(11), server(12, 0)]), empty);
  t.same(summary(changes), [
    'add-service rr',
    'add-destination 10.0.0.13:6443 w1 masquerade',
    'add-destination 10.0.0.11:6443 w1 masquerade',
    'add-destination 10.0.0.12:6443 w0 masquerade',
  ]);
  const add = changes[0]!;
  t.ok(add.kind === 'add-service' && add.service.flags === 0 && add.service.timeoutSeconds === 0 && add.service.netmask === 0xffff_ffff && add.service.persistenceEngine === null, 'no persistence, IPv4 netmask all ones');
  for (const change of changes.slice(1)) t.same(change.kind === 'add-destination' && change.service, { kind: 'address', family: 'ipv4', protocol: 'tcp', address: vip, port });
});

t.test('an IPv6 VIP gets an IPv6 service with netmask 128', async (t) => {
  const service = desiredIpvsService({ address: 'fd00::100', port, scheduler: 'wlc', realServers: [] });
  t.same(service.key, { kind: 'address', family: 'ipv6', protocol: 'tcp', address: 'fd00::100', port });
  t.equal(service.netmask, 128);
});

t.test('equal state plans nothing (the kernel’s hashed flag and destination order do not matter)', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('wrr'), destinations: [kernelDestination(12, 0), kernelDestination(11, 3)] };
  t.same(planIpvs(desired('wrr', [server(11, 3), server(12, 0)]), observed), []);
});

t.test('a scheduler change is one edit of the service, not a re-create', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('rr'), destinations: [kernelDestination(11), kernelDestination(12)] };
  const changes = planIpvs(desired('wlc', [server(11), server(12)]), observed);
  t.same(summary(changes), ['edit-service wlc']);
  t.match(changes[0], { kind: 'edit-service', reason: /scheduler rr → wlc/ });
});

t.test('a weight change is one edit of that destination', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('wrr'), destinations: [kernelDestination(11, 1), kernelDestination(12, 1)] };
  const changes = planIpvs(desired('wrr', [server(11, 1), server(12, 5)]), observed);
  t.same(summary(changes), ['edit-destination 10.0.0.12:6443 w5 masquerade']);
  t.match(changes[0], { reason: /weight 1 → 5/ });
});

t.test('drain: weight 0 edits the destination and keeps it', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('rr'), destinations: [kernelDestination(11), kernelDestination(12), kernelDestination(13)] };
  const changes = planIpvs(desired('rr', [server(11), server(12, 0), server(13)]), observed);
  t.same(summary(changes), ['edit-destination 10.0.0.12:6443 w0 masquerade']);
  t.notOk(changes.some((change) => change.kind === 'delete-destination'), 'a drained server is never deleted');
});

t.test('a server gone from the configuration is deleted', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('rr'), destinations: [kernelDestination(11), kernelDestination(12), kernelDestination(13)] };
  const changes = planIpvs(desired('rr', [server(11), server(13)]), observed);
  t.same(summary(changes), ['delete-destination 10.0.0.12:6443']);
  t.match(changes[0], { kind: 'delete-destination', reason: /not a configured real server/ });
});

t.test('a destination added by hand is removed; one edited by hand is put back', async (t) => {
  const observed: IpvsObservedState = {
    service: kernelService('rr'),
    destinations: [
      kernelDestination(11, 1, { forwardingMethod: 'direct-route' }),
      kernelDestination(12, 1, { upperThreshold: 100 }),
      kernelDestination(99, 7),
      { ...kernelDestination(11), port: 8080 }, // same address, other port: a different destination
    ],
  };
  const changes = planIpvs(desired('rr', [server(11), server(12)]), observed);
  t.same(summary(changes), [
    'edit-destination 10.0.0.11:6443 w1 masquerade',
    'edit-destination 10.0.0.12:6443 w1 masquerade',
    'delete-destination 10.0.0.99:6443',
    'delete-destination 10.0.0.11:8080',
  ]);
  t.match(changes[0], { reason: /forwarding direct-route → masquerade/ });
  t.match(changes[1], { reason: /thresholds 0\/100 → 0\/0/ });
});

t.test('persistence set by hand is undone by an edit of the service', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('rr', { flags: 0x0003, timeoutSeconds: 300 }), destinations: [kernelDestination(11)] };
  const changes = planIpvs(desired('rr', [server(11)]), observed);
  t.same(summary(changes), ['edit-service rr']);
  t.match(changes[0], { reason: /flags 0x1 → 0x0, persistence timeout 300 s → 0 s/ });
});

t.test('order: service, then adds, then edits, then deletes (never a moment without servers)', async (t) => {
  const observed: IpvsObservedState = { service: kernelService('rr'), destinations: [kernelDestination(11), kernelDestination(12)] };
  const changes = planIpvs(desired('wrr', [server(12, 0), server(13, 2), server(14, 1)]), observed);
  t.same(summary(changes), [
    'edit-service wrr',
    'add-destination 10.0.0.13:6443 w2 masquerade',
    'add-destination 10.0.0.14:6443 w1 masquerade',
    'edit-destination 10.0.0.12:6443 w0 masquerade',
    'delete-destination 10.0.0.11:6443',
  ]);
});

t.test('observed destinations are ignored when the service itself is absent', async (t) => {
  const changes = planIpvs(desired('rr', [server(11)]), { service: null, destinations: [kernelDestination(11)] });
  t.same(summary(changes), ['add-service rr', 'add-destination 10.0.0.11:6443 w1 masquerade']);
});

t.test('schedulers map one to one, and unknown kernel schedulers observe as null', async (t) => {
  for (const scheduler of schedulers) {
    t.equal(schedulerFromIpvs(ipvsSchedulerName(scheduler)), scheduler, `${scheduler} round-trips`);
  }
  for (const name of ['mh', 'sed', 'nq', 'none', '']) t.equal(schedulerFromIpvs(name), null, `${JSON.stringify(name)} is not ours`);
  const observed = observedServiceFrom({ address: vip, port }, { service: kernelService('mh'), destinations: [kernelDestination(11, 2, { activeConnections: 4, inactiveConnections: 1 })] });
  t.same(observed, { address: vip, port, scheduler: null, realServers: [{ address: '10.0.0.11', port, weight: 2, activeConnections: 4, inactiveConnections: 1 }] });
  t.equal(observedServiceFrom({ address: vip, port }, empty), null);
});

t.test('checkVirtualService names every problem', async (t) => {
  t.same(checkVirtualService(desired('rr', [server(11), server(12, 0)])), []);
  const problems = checkVirtualService({
    address: '10.0.0.0100',
    port: 0,
    scheduler: 'fo' as Scheduler,
    realServers: [
      { address: 'fd00::1', port, weight: 1 },
      { address: '10.0.0.11', port: 70_000, weight: -1 },
      { address: 'FD00::2', port, weight: 1 },
      { address: '10.0.0.12', port, weight: 1 },
      { address: '10.0.0.12', port, weight: 2 },
    ],
  });
  t.match(problems.join('\n'), /VIP "10.0.0.0100" is not a canonical IP address/);
  t.match(problems.join('\n'), /port 0 is not in 1..65535/);
  t.match(problems.join('\n'), /unknown scheduler "fo"/);
  t.match(problems.join('\n'), /real server 10.0.0.11:70000: port is not in 1..65535/);
  t.match(problems.join('\n'), /weight -1 is not in 0..65535/);
  t.match(problems.join('\n'), /"FD00::2" is not a canonical IP address/);
  t.match(problems.join('\n'), /10.0.0.12:6443 appears twice/);
  t.match(checkVirtualService(desired('rr', [{ address: 'fd00::1', port, weight: 1 }])).join('\n'), /not in the VIP's address family/);
});

// ---------------------------------------------------------------------------------------------
// Property: plan, apply to a model kernel, plan again → nothing

/** Applies a plan to a model of the kernel, as IPVS would (add fails on present entries, edit
 * and delete on absent ones). */
function applyToModel(state: IpvsObservedState, changes: readonly IpvsChange[]): IpvsObservedState {
  let service = state.service;
  const destinations = new Map<string, IpvsDestinationEntry>(service === null ? [] : state.destinations.map((d) => [`${d.address}:${d.port}`, d]));
  for (const change of changes) {
    switch (change.kind) {
      case 'add-service':
        if (service !== null) throw new Error('EEXIST: service');
        service = { ...change.service, flags: change.service.flags | 0x0002, stats: null };
        break;
      case 'edit-service':
        if (service === null) throw new Error('ESRCH: service');
        service = { ...change.service, flags: change.service.flags | 0x0002, stats: null };
        break;
      case 'add-destination':
      case 'edit-destination': {
        const name = `${change.destination.address}:${change.destination.port}`;
        if (service === null) throw new Error('ESRCH: service');
        if (change.kind === 'add-destination' && destinations.has(name)) throw new Error(`EEXIST: ${name}`);
        if (change.kind === 'edit-destination' && !destinations.has(name)) throw new Error(`ENOENT: ${name}`);
        destinations.set(name, { ...kernelDestination(0), ...change.destination });
        break;
      }
      case 'delete-destination': {
        const name = `${change.destination.address}:${change.destination.port}`;
        if (!destinations.delete(name)) throw new Error(`ENOENT: ${name}`);
        break;
      }
    }
  }
  return { service, destinations: [...destinations.values()] };
}

t.test('seeded property: one plan converges, and planning again yields nothing', async (t) => {
  const seed = Number(process.env.IPVS_PLANNER_SEED ?? 0x5eed);
  const random = new SeededRandom(seed);
  const methods: ForwardingMethod[] = ['masquerade', 'masquerade', 'masquerade', 'direct-route', 'tunnel'];
  let failures = 0;
  for (let i = 0; i < 2_000 && failures < 5; i++) {
    const scheduler = schedulers[random.nextInt(schedulers.length)]!;
    const pool = Array.from({ length: 8 }, (_, index) => 11 + index);
    const wanted = pool.filter(() => random.nextInt(2) === 0).map((last) => server(last, random.nextInt(4)));
    const service = random.nextInt(4) === 0 ? null : kernelService(['rr', 'wrr', 'lc', 'wlc', 'sh', 'mh'][random.nextInt(6)]!, { flags: 0x0002 | random.nextInt(2) });
    const destinations = pool
      .filter(() => random.nextInt(2) === 0)
      .map((last) => kernelDestination(last, random.nextInt(4), { forwardingMethod: methods[random.nextInt(methods.length)]!, upperThreshold: random.nextInt(3) === 0 ? 10 : 0 }));
    const observed: IpvsObservedState = { service, destinations };
    const goal = desired(scheduler, wanted);
    try {
      const changes = planIpvs(goal, observed);
      const after = applyToModel(observed, changes);
      const again = planIpvs(goal, after);
      const view = observedServiceFrom({ address: vip, port }, after);
      const sorted = (servers: readonly { address: string; weight: number }[]): string => JSON.stringify([...servers].map((s) => `${s.address}/${s.weight}`).sort());
      const ok = again.length === 0 && view !== null && view.scheduler === scheduler && sorted(view.realServers) === sorted(wanted);
      if (!ok) {
        failures++;
        t.fail(`case ${i} does not converge (seed ${seed})`, { goal, observed, changes: summary(changes), again: summary(again) });
      }
    } catch (error) {
      failures++;
      t.fail(`case ${i}: the plan is not executable: ${String(error)} (seed ${seed})`);
    }
  }
  t.equal(failures, 0, `2000 random states converge in one plan (seed ${seed})`);
});
