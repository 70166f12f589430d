// Goal: show that the VIP planner enforces the lease rule of DESIGN.md ("the VIP follows the
// lease, not the role") on any input. A table of named situations pins the exact actions and the
// announce schedule (claim, burst, refresh); a seeded property test then throws random observed
// address sets, spellings and schedules at it and checks, after applying the planned actions to
// the observed set: without the lease nothing is added or announced and no copy of the VIP is
// left anywhere; with the lease exactly one copy is left, on the configured interface with the
// configured prefix; other addresses are never touched; the plan is deterministic and a second
// plan on the result is converged. Failures print the seed and case.

import t from 'tap';
import {
  garpBurstCount,
  garpBurstIntervalMs,
  garpRefreshIntervalMs,
  nextAnnounceDueMs,
  planVip,
  type AnnounceSchedule,
  type ObservedAddress,
  type VipAction,
  type VipPlanInput,
} from '../src/vip/vip-planner.js';
import { canonicalIpAddress } from '../src/vip/packet-layout.js';
import { SeededRandom } from '../src/raft/random.js';

const now = 1_000_000;

function schedule(overrides: Partial<AnnounceSchedule> = {}): AnnounceSchedule {
  return {
    lastAnnouncedAtMs: null,
    burstRemaining: 0,
    nowMs: now,
    burstCount: garpBurstCount,
    burstIntervalMs: garpBurstIntervalMs,
    refreshIntervalMs: garpRefreshIntervalMs,
    ...overrides,
  };
}

const v4 = { address: '192.0.2.10', prefixLength: 32 as const };
const eth0 = (address = '192.0.2.10', prefixLength = 32): ObservedAddress => ({ address, prefixLength, interface: 'eth0' });
const eth1 = (address = '192.0.2.10', prefixLength = 32): ObservedAddress => ({ address, prefixLength, interface: 'eth1' });
const hostAddress: ObservedAddress = { address: '192.0.2.21', prefixLength: 24, interface: 'eth0' };

t.test('defaults', async (t) => {
  t.equal(garpBurstCount, 3);
  t.equal(garpBurstIntervalMs, 100);
  t.equal(garpRefreshIntervalMs, 10_000);
});

t.test('table of situations', async (t) => {
  const cases: Array<{
    name: string;
    leaseHeld: boolean;
    observed: ObservedAddress[];
    vip?: VipPlanInput['vip'];
    announce?: Partial<AnnounceSchedule>;
    expected: VipAction[];
  }> = [
    {
      name: 'lease, VIP absent: add and start a burst',
      leaseHeld: true,
      observed: [hostAddress],
      expected: [{ kind: 'add-address' }, { kind: 'announce', reason: 'claim', burstRemaining: 2 }],
    },
    {
      name: 'lease, VIP absent mid-burst (deleted by hand): add and restart the burst',
      leaseHeld: true,
      observed: [hostAddress],
      announce: { lastAnnouncedAtMs: now - 10, burstRemaining: 1 },
      expected: [{ kind: 'add-address' }, { kind: 'announce', reason: 'claim', burstRemaining: 2 }],
    },
    {
      name: 'lease, VIP present but never announced: announce at once',
      leaseHeld: true,
      observed: [hostAddress, eth0()],
      expected: [{ kind: 'announce', reason: 'claim', burstRemaining: 2 }],
    },
    {
      name: 'lease, present, burst step not yet due',
      leaseHeld: true,
      observed: [eth0()],
      announce: { lastAnnouncedAtMs: now - 99, burstRemaining: 2 },
      expected: [],
    },
    {
      name: 'lease, present, burst step due',
      leaseHeld: true,
      observed: [eth0()],
      announce: { lastAnnouncedAtMs: now - 100, burstRemaining: 2 },
      expected: [{ kind: 'announce', reason: 'burst', burstRemaining: 1 }],
    },
    {
      name: 'lease, present, last burst step due',
      leaseHeld: true,
      observed: [eth0()],
      announce: { lastAnnouncedAtMs: now - 150, burstRemaining: 1 },
      expected: [{ kind: 'announce', reason: 'burst', burstRemaining: 0 }],
    },
    {
      name: 'lease, present, burst over, refresh not yet due',
      leaseHeld: true,
      observed: [eth0()],
      announce: { lastAnnouncedAtMs: now - 9_999, burstRemaining: 0 },
      expected: [],
    },
    {
      name: 'lease, present, refresh due',
      leaseHeld: true,
      observed: [eth0()],
      announce: { lastAnnouncedAtMs: now - 10_000, burstRemaining: 0 },
      expected: [{ kind: 'announce', reason: 'refresh', burstRemaining: 0 }],
    },
    {
      name: 'lease, present, clock went backwards: announce rather than go quiet',
      leaseHeld: true,
      observed: [eth0()],
      announce: { lastAnnouncedAtMs: now + 5_000, burstRemaining: 0 },
      expected: [{ kind: 'announce', reason: 'refresh', burstRemaining: 0 }],
    },
    {
      name: 'lease, VIP only on another interface: move it',
      leaseHeld: true,
      observed: [hostAddress, eth1()],
      announce: { lastAnnouncedAtMs: now - 1, burstRemaining: 0 },
      expected: [
        { kind: 'remove-address', interface: 'eth1', prefixLength: 32 },
        { kind: 'add-address' },
        { kind: 'announce', reason: 'claim', burstRemaining: 2 },
      ],
    },
    {
      name: 'lease, VIP held and also on another interface: remove the stray copy only',
      leaseHeld: true,
      observed: [eth0(), eth1()],
      announce: { lastAnnouncedAtMs: now - 1, burstRemaining: 0 },
      expected: [{ kind: 'remove-address', interface: 'eth1', prefixLength: 32 }],
    },
    {
      name: 'lease, VIP on the right interface with the wrong prefix: replace it',
      leaseHeld: true,
      observed: [eth0('192.0.2.10', 24)],
      expected: [
        { kind: 'remove-address', interface: 'eth0', prefixLength: 24 },
        { kind: 'add-address' },
        { kind: 'announce', reason: 'claim', burstRemaining: 2 },
      ],
    },
    {
      name: 'no lease, VIP absent: converged',
      leaseHeld: false,
      observed: [hostAddress],
      expected: [],
    },
    {
      name: 'no lease, VIP present (stale after a crash, or lease lapsed): remove, never announce',
      leaseHeld: false,
      observed: [hostAddress, eth0()],
      announce: { lastAnnouncedAtMs: now - 20_000, burstRemaining: 2 },
      expected: [{ kind: 'remove-address', interface: 'eth0', prefixLength: 32 }],
    },
    {
      name: 'no lease, VIP on two interfaces and two prefixes: remove every copy',
      leaseHeld: false,
      observed: [eth0(), eth1(), eth0('192.0.2.10', 24), eth0()],
      expected: [
        { kind: 'remove-address', interface: 'eth0', prefixLength: 32 },
        { kind: 'remove-address', interface: 'eth1', prefixLength: 32 },
        { kind: 'remove-address', interface: 'eth0', prefixLength: 24 },
      ],
    },
    {
      name: 'IPv6: the same address spelled differently is the same copy',
      leaseHeld: true,
      vip: { address: '2001:DB8::10', prefixLength: 128 },
      observed: [eth0('2001:db8:0:0:0:0:0:10', 128), eth0('2001:db8::11', 128)],
      announce: { lastAnnouncedAtMs: now - 1, burstRemaining: 0 },
      expected: [],
    },
    {
      name: 'IPv6, no lease: removes the differently spelled copy',
      leaseHeld: false,
      vip: { address: '2001:db8::10', prefixLength: 128 },
      observed: [eth1('2001:0DB8::0010', 128), eth1('2001:db8::11', 128)],
      expected: [{ kind: 'remove-address', interface: 'eth1', prefixLength: 128 }],
    },
  ];
  for (const c of cases) {
    const actions = planVip({
      leaseHeld: c.leaseHeld,
      vip: c.vip ?? v4,
      observed: { addresses: c.observed },
      interface: 'eth0',
      announce: schedule(c.announce),
    });
    t.same(actions, c.expected, c.name);
  }
});

t.test('a burst runs claim → burst → burst → refresh at the configured spacing', async (t) => {
  const announcedAt: number[] = [];
  const reasons: string[] = [];
  let observed: ObservedAddress[] = [];
  let state = { lastAnnouncedAtMs: null as number | null, burstRemaining: 0 };
  const pastDue: number[] = [];
  for (let time = 0; time <= 25_000; time += 10) {
    const input: VipPlanInput = {
      leaseHeld: true,
      vip: v4,
      observed: { addresses: observed },
      interface: 'eth0',
      announce: schedule({ ...state, nowMs: time }),
    };
    for (const action of planVip(input)) {
      if (action.kind === 'add-address') observed = [eth0()];
      if (action.kind === 'announce') {
        announcedAt.push(time);
        reasons.push(action.reason);
        state = { lastAnnouncedAtMs: time, burstRemaining: action.burstRemaining };
      }
    }
    const due = nextAnnounceDueMs(schedule({ ...state, nowMs: time }));
    if (due !== null && due <= time) pastDue.push(time);
  }
  t.same(pastDue, [], 'after every step the next announcement is in the future');
  t.same(announcedAt, [0, 100, 200, 10_200, 20_200]);
  t.same(reasons, ['claim', 'burst', 'burst', 'refresh', 'refresh']);
});

// ---------------------------------------------------------------------------------------------
// Property test

interface Copy {
  address: string;
  prefixLength: number;
  interface: string;
}

/** Applies a plan to an observed address set the way an idempotent executor would. */
function apply(input: VipPlanInput, actions: VipAction[]): Copy[] {
  let addresses: Copy[] = input.observed.addresses.map((a) => ({ ...a }));
  const vip = canonicalIpAddress(input.vip.address);
  for (const action of actions) {
    switch (action.kind) {
      case 'remove-address':
        addresses = addresses.filter(
          (a) => !(canonicalIpAddress(a.address) === vip && a.interface === action.interface && a.prefixLength === action.prefixLength),
        );
        break;
      case 'add-address':
        addresses.push({ address: input.vip.address, prefixLength: input.vip.prefixLength, interface: input.interface });
        break;
      case 'announce':
        break;
    }
  }
  return addresses;
}

function randomSpelling(random: SeededRandom, address: string): string {
  if (!address.includes(':')) return address;
  switch (random.nextInt(3)) {
    case 0: return address.toUpperCase();
    case 1: return address.replace('::', ':0:0:0:0:0:'); // 2001:db8::X has 5 zero groups
    default: return address;
  }
}

function randomInput(random: SeededRandom): VipPlanInput {
  const ipv6 = random.nextInt(2) === 0;
  const vipAddress = ipv6 ? `2001:db8::${random.nextInt(4).toString(16)}` : `192.0.2.${random.nextInt(4)}`;
  const vip = { address: vipAddress, prefixLength: (ipv6 ? 128 : 32) as 32 | 128 };
  const interfaces = ['eth0', 'eth1', 'bond0'];
  const addresses: ObservedAddress[] = [];
  const count = random.nextInt(7);
  for (let i = 0; i < count; i++) {
    const isVip = random.nextInt(2) === 0;
    const base = isVip ? vipAddress : ipv6 ? `2001:db8::${(16 + random.nextInt(4)).toString(16)}` : `192.0.2.${16 + random.nextInt(4)}`;
    const prefixes = ipv6 ? [128, 64] : [32, 24];
    const prefixLength = prefixes[random.nextInt(prefixes.length)]!;
    addresses.push({
      address: randomSpelling(random, base),
      prefixLength: random.nextInt(4) === 0 ? vip.prefixLength : prefixLength,
      interface: interfaces[random.nextInt(interfaces.length)]!,
    });
  }
  const odd = [Number.NaN, -1, 0, 0.5, Number.POSITIVE_INFINITY];
  const pick = (normal: number): number => (random.nextInt(10) === 0 ? odd[random.nextInt(odd.length)]! : normal);
  const nowMs = pick(random.nextInt(100_000));
  return {
    leaseHeld: random.nextInt(2) === 0,
    vip,
    observed: { addresses },
    interface: interfaces[random.nextInt(2)]!,
    announce: {
      lastAnnouncedAtMs: random.nextInt(4) === 0 ? null : pick(nowMs - random.nextInt(20_000) + 1_000),
      burstRemaining: pick(random.nextInt(4)),
      nowMs,
      burstCount: pick(1 + random.nextInt(5)),
      burstIntervalMs: pick(random.nextInt(300)),
      refreshIntervalMs: pick(random.nextInt(20_000)),
    },
  };
}

t.test('property: the plan follows the lease (seeded)', async (t) => {
  const seed = 3141;
  const random = new SeededRandom(seed);
  const iterations = 20_000;
  let failures = 0;
  const fail = (i: number, input: VipPlanInput, actions: VipAction[], why: string): void => {
    failures++;
    if (failures <= 5) t.fail(`seed ${seed} case ${i}: ${why}\ninput ${JSON.stringify(input)}\nactions ${JSON.stringify(actions)}`);
  };
  const kinds = new Map<string, number>();
  for (let i = 0; i < iterations; i++) {
    const input = randomInput(random);
    let actions: VipAction[];
    try {
      actions = planVip(input);
    } catch (error) {
      fail(i, input, [], `threw ${String(error)}`);
      continue;
    }
    for (const a of actions) kinds.set(`${a.kind}:${input.leaseHeld}`, (kinds.get(`${a.kind}:${input.leaseHeld}`) ?? 0) + 1);
    if (JSON.stringify(planVip(structuredClone(input))) !== JSON.stringify(actions)) fail(i, input, actions, 'not deterministic');

    const vip = canonicalIpAddress(input.vip.address);
    const after = apply(input, actions);
    // The kernel lists each (interface, prefix) copy once; the generator may repeat a row (and
    // spell it differently), which is still one copy.
    const copies = [
      ...new Map(
        after.filter((a) => canonicalIpAddress(a.address) === vip).map((a) => [`${a.interface}/${a.prefixLength}`, a]),
      ).values(),
    ];
    const others = (list: readonly Copy[]): string =>
      JSON.stringify(list.filter((a) => canonicalIpAddress(a.address) !== vip));
    if (others(after) !== others(input.observed.addresses)) fail(i, input, actions, 'touched an address that is not the VIP');

    const order = actions.map((a) => ['remove-address', 'add-address', 'announce'].indexOf(a.kind));
    if (order.some((rank, k) => k > 0 && rank < order[k - 1]!)) fail(i, input, actions, 'actions out of order');
    if (actions.filter((a) => a.kind !== 'remove-address').length > 2) fail(i, input, actions, 'more than one add or announce');

    if (!input.leaseHeld) {
      if (actions.some((a) => a.kind === 'add-address' || a.kind === 'announce')) fail(i, input, actions, 'add or announce without the lease');
      if (copies.length !== 0) fail(i, input, actions, `${copies.length} copies left without the lease`);
    } else {
      const good = copies.filter((c) => c.interface === input.interface && c.prefixLength === input.vip.prefixLength);
      if (good.length !== 1 || copies.length !== 1) fail(i, input, actions, `${copies.length} copies (${good.length} correct) with the lease`);
      const added = actions.some((a) => a.kind === 'add-address');
      const announce = actions.find((a) => a.kind === 'announce');
      if (added && (announce === undefined || announce.reason !== 'claim')) fail(i, input, actions, 'a claim without an announcement');
      if (announce !== undefined && !(announce.burstRemaining >= 0 && Number.isInteger(announce.burstRemaining))) {
        fail(i, input, actions, 'burstRemaining is not a count');
      }
    }

    // Converged: planning again on the result, with the schedule the actions left, at the same
    // instant, asks for nothing more.
    const announced = actions.find((a) => a.kind === 'announce');
    const second = planVip({
      ...input,
      observed: { addresses: after },
      announce: announced === undefined
        ? input.announce
        : { ...input.announce, lastAnnouncedAtMs: input.announce.nowMs, burstRemaining: announced.burstRemaining },
    });
    const secondAddressActions = second.filter((a) => a.kind !== 'announce');
    if (secondAddressActions.length !== 0) fail(i, input, second, 'not converged after one plan');
    if (announced !== undefined && Number.isFinite(input.announce.nowMs) && second.length !== 0) {
      // An announcement just made is due again only with a non-positive interval.
      const next = second[0]!;
      const intervals = [input.announce.burstIntervalMs, input.announce.refreshIntervalMs];
      if (next.kind === 'announce' && !intervals.some((ms) => !(ms > 0))) fail(i, input, second, 'announced twice at one instant');
    }
  }
  t.equal(failures, 0, `seed ${seed}: ${iterations} random inputs`);
  for (const kind of ['remove-address:true', 'remove-address:false', 'add-address:true', 'announce:true']) {
    t.ok((kinds.get(kind) ?? 0) > 100, `exercised ${kind} (${kinds.get(kind) ?? 0})`);
  }
});
