// Goal: show that VipExecutor runs the planner's actions against the kernel level-triggered, with
// fakes for every piece of I/O (an in-memory address table, recording packet sockets, a manual
// clock): with the lease it adds the VIP and announces it in a burst at the planned times (a GARP
// pair per announcement, an NA for IPv6), then refreshes; without it, it removes every copy and
// never announces, and the next claim starts a fresh burst; a VIP removed by hand is restored and
// re-announced; a copy on the wrong interface is removed; the interface is auto-detected from the
// host's subnets, and a missing or ambiguous one is RAFTVIP_VIP_INTERFACE_UNKNOWN; a failed send
// reopens the socket; release() removes every copy and is idempotent.

import t from 'tap';
import { decodeArp } from '../src/vip/arp-packet.js';
import { decodeNeighbourAdvertisement } from '../src/vip/ndp-packet.js';
import type { InterfaceAddress, KernelAddress } from '../src/vip/netlink-addresses.js';
import { PacketError, etherTypeArp, etherTypeIPv6 } from '../src/vip/packet-layout.js';
import { VipExecutor, VipInterfaceError, type VipExecutorOptions, type VipPacketSocket } from '../src/vip/vip-executor.js';
import { garpBurstIntervalMs, garpRefreshIntervalMs } from '../src/vip/vip-planner.js';

const mac = '02:00:00:00:00:01';

class FakeAddresses {
  addresses: KernelAddress[];
  calls: string[] = [];
  constructor(addresses: KernelAddress[]) {
    this.addresses = addresses;
  }
  async list(): Promise<KernelAddress[]> {
    return this.addresses.map((address) => ({ ...address }));
  }
  async add(spec: InterfaceAddress): Promise<void> {
    this.calls.push(`add ${spec.address}/${spec.prefixLength} ${spec.interface}`);
    this.addresses = this.addresses.filter((a) => !same(a, spec));
    this.addresses.push({ ...spec, family: spec.address.includes(':') ? 'ipv6' : 'ipv4' });
  }
  async remove(spec: InterfaceAddress): Promise<void> {
    this.calls.push(`remove ${spec.address}/${spec.prefixLength} ${spec.interface}`);
    this.addresses = this.addresses.filter((a) => !same(a, spec));
  }
}

function same(a: InterfaceAddress, b: InterfaceAddress): boolean {
  return a.address === b.address && a.prefixLength === b.prefixLength && a.interface === b.interface;
}

interface Sent {
  interface: string;
  protocol: number;
  frame: Uint8Array;
  atMs: number;
}

function setup(options: { addresses: KernelAddress[]; vip?: VipExecutorOptions['vip']; interface?: string | null }) {
  const addresses = new FakeAddresses(options.addresses);
  const sent: Sent[] = [];
  const opened: string[] = [];
  let nowMs = 5_000;
  let failNextSend = false;
  const openPacketSocket = (interfaceName: string, protocol: number): VipPacketSocket => {
    opened.push(`${interfaceName}/${protocol}`);
    let closed = false;
    return {
      send(frame) {
        if (closed) throw new Error('closed');
        if (failNextSend) {
          failNextSend = false;
          throw new Error('ENETDOWN');
        }
        sent.push({ interface: interfaceName, protocol, frame, atMs: nowMs });
        return frame.length;
      },
      close() {
        closed = true;
      },
    };
  };
  const executor = new VipExecutor({
    vip: options.vip ?? { address: '10.0.0.100', family: 4 },
    interface: options.interface === undefined ? 'eth0' : options.interface,
    addresses,
    openPacketSocket,
    hardwareAddress: () => mac,
    clock: () => nowMs,
    log: () => {},
  });
  return {
    executor,
    addresses,
    sent,
    opened,
    advance: (ms: number) => (nowMs += ms),
    failNextSend: () => (failNextSend = true),
  };
}

const host: KernelAddress = { address: '10.0.0.1', prefixLength: 24, interface: 'eth0', family: 'ipv4' };
const other: KernelAddress = { address: '192.168.1.1', prefixLength: 24, interface: 'eth1', family: 'ipv4' };
const vipOn = (iface: string, prefixLength = 32): KernelAddress => ({ address: '10.0.0.100', prefixLength, interface: iface, family: 'ipv4' });
const kinds = (actions: { kind: string }[]) => actions.map((action) => action.kind);

t.test('lease held: add, then a burst of three announcements 100 ms apart, then refresh', async (t) => {
  const { executor, addresses, sent, advance } = setup({ addresses: [host, other] });
  const first = await executor.reconcile(true);
  t.same(kinds(first.actions), ['add-address', 'announce'], 'claims and announces at once');
  t.equal(first.held, true);
  t.same(addresses.calls, ['add 10.0.0.100/32 eth0']);
  t.equal(sent.length, 2, 'one announcement is a GARP pair');
  const decoded = sent.map((s) => decodeArp(s.frame));
  t.match(decoded, [{ operation: 'request', senderMac: mac, senderIp: '10.0.0.100', targetIp: '10.0.0.100' }, { operation: 'reply', senderMac: mac }]);
  t.ok(decoded.every((d) => !(d instanceof PacketError)));
  t.ok(sent.every((s) => s.interface === 'eth0' && s.protocol === etherTypeArp), 'ARP EtherType on eth0');
  t.equal(executor.nextAnnounceDueMs(), 5_000 + garpBurstIntervalMs);

  t.same((await executor.reconcile(true)).actions, [], 'converged before the burst interval');
  advance(garpBurstIntervalMs - 1);
  t.same((await executor.reconcile(true)).actions, [], 'still nothing 1 ms before');
  advance(1);
  t.same((await executor.reconcile(true)).actions, [{ kind: 'announce', reason: 'burst', burstRemaining: 1 }]);
  advance(garpBurstIntervalMs);
  t.same((await executor.reconcile(true)).actions, [{ kind: 'announce', reason: 'burst', burstRemaining: 0 }]);
  t.same(sent.map((s) => s.atMs), [5000, 5000, 5100, 5100, 5200, 5200], 'burst timing');
  advance(garpBurstIntervalMs);
  t.same((await executor.reconcile(true)).actions, [], 'burst over');
  t.equal(executor.nextAnnounceDueMs(), 5_200 + garpRefreshIntervalMs);
  advance(garpRefreshIntervalMs - garpBurstIntervalMs);
  t.same((await executor.reconcile(true)).actions, [{ kind: 'announce', reason: 'refresh', burstRemaining: 0 }]);
  t.same(executor.counters, { claims: 1, releases: 0, announcements: 4 });
  t.equal(addresses.calls.length, 1, 'the address was added once');
});

t.test('lease lost: remove, no announcement; the next claim starts a fresh burst', async (t) => {
  const { executor, addresses, sent, advance } = setup({ addresses: [host] });
  await executor.reconcile(true);
  advance(garpBurstIntervalMs);
  await executor.reconcile(true);
  const sentWhileHeld = sent.length;
  const lost = await executor.reconcile(false);
  t.same(lost.actions, [{ kind: 'remove-address', interface: 'eth0', prefixLength: 32 }]);
  t.equal(lost.held, false);
  t.equal(executor.held, false);
  t.equal(executor.nextAnnounceDueMs(), null);
  t.same(addresses.addresses, [host], 'the VIP is gone');
  t.same((await executor.reconcile(false)).actions, [], 'idempotent');
  advance(garpRefreshIntervalMs);
  t.same((await executor.reconcile(false)).actions, [], 'no refresh without the lease');
  t.equal(sent.length, sentWhileHeld, 'nothing sent without the lease');
  const again = await executor.reconcile(true);
  t.same(again.actions, [{ kind: 'add-address' }, { kind: 'announce', reason: 'claim', burstRemaining: 2 }], 'a fresh burst');
  t.same(executor.counters, { claims: 2, releases: 1, announcements: 3 });
});

t.test('a VIP removed by hand is restored and re-announced as a claim', async (t) => {
  const { executor, addresses, advance } = setup({ addresses: [host] });
  await executor.reconcile(true);
  advance(garpBurstIntervalMs * 3);
  await executor.reconcile(true);
  await executor.reconcile(true);
  addresses.addresses = addresses.addresses.filter((a) => a.address !== '10.0.0.100');
  advance(10);
  const restored = await executor.reconcile(true);
  t.same(restored.actions, [{ kind: 'add-address' }, { kind: 'announce', reason: 'claim', burstRemaining: 2 }]);
  t.ok(addresses.addresses.some((a) => a.address === '10.0.0.100' && a.interface === 'eth0'));
});

t.test('a copy on the wrong interface (or prefix) is removed there', async (t) => {
  const { executor, addresses } = setup({ addresses: [host, other, vipOn('eth1'), vipOn('eth0', 24)] });
  const result = await executor.reconcile(true);
  t.same(result.actions.slice(0, 3), [
    { kind: 'remove-address', interface: 'eth1', prefixLength: 32 },
    { kind: 'remove-address', interface: 'eth0', prefixLength: 24 },
    { kind: 'add-address' },
  ]);
  t.same(
    addresses.addresses.filter((a) => a.address === '10.0.0.100'),
    [vipOn('eth0')],
  );
  t.same(executor.counters.releases, 0, 'removing a stray copy while holding the lease is not a release');
});

t.test('interface auto-detection', async (t) => {
  const found = setup({ addresses: [other, host, vipOn('eth7')], interface: null });
  t.equal(await found.executor.resolveInterface(), 'eth0', 'the interface whose subnet holds the VIP (a VIP copy does not count)');
  await found.executor.reconcile(true);
  t.same(found.addresses.calls, ['remove 10.0.0.100/32 eth7', 'add 10.0.0.100/32 eth0']);

  const none = setup({ addresses: [other], interface: null });
  await t.rejects(none.executor.resolveInterface(), { name: 'VipInterfaceError', code: 'RAFTVIP_VIP_INTERFACE_UNKNOWN', candidates: [] });
  await t.rejects(none.executor.reconcile(true), VipInterfaceError, 'a claim needs the interface');
  t.equal(none.executor.held, false);

  const several = setup({ addresses: [host, { ...host, address: '10.0.0.2', interface: 'eth2' }, vipOn('eth2')], interface: null });
  await t.rejects(several.executor.resolveInterface(), { code: 'RAFTVIP_VIP_INTERFACE_UNKNOWN', candidates: ['eth0', 'eth2'] });
  const released = await several.executor.reconcile(false);
  t.same(released.actions, [{ kind: 'remove-address', interface: 'eth2', prefixLength: 32 }], 'without the lease copies go anyway');

  const configured = setup({ addresses: [other], interface: 'bond0' });
  t.equal(await configured.executor.resolveInterface(), 'bond0', 'a configured interface is used as is');
});

t.test('IPv6: an unsolicited NA on the IPv6 EtherType', async (t) => {
  const host6: KernelAddress = { address: 'fd00::1', prefixLength: 64, interface: 'eth0', family: 'ipv6' };
  const { executor, addresses, sent } = setup({ addresses: [host6], vip: { address: 'FD00::0100', family: 6 }, interface: null });
  await executor.reconcile(true);
  t.same(addresses.calls, ['add fd00::100/128 eth0'], 'canonical address, /128');
  t.equal(sent.length, 1);
  t.equal(sent[0]?.protocol, etherTypeIPv6);
  t.match(decodeNeighbourAdvertisement(sent[0]!.frame), { targetAddress: 'fd00::100', targetLinkLayerAddress: mac, override: true });
});

t.test('the packet socket is cached and reopened after a failed send', async (t) => {
  const { executor, opened, advance, failNextSend, sent } = setup({ addresses: [host] });
  await executor.reconcile(true);
  t.same(opened, [`eth0/${etherTypeArp}`], 'one socket for the pair');
  advance(garpBurstIntervalMs);
  failNextSend();
  await executor.reconcile(true);
  t.equal(opened.length, 2, 'reopened after the failure');
  t.equal(sent.length, 4, 'and the announcement still went out');
  executor.close();
  executor.close();
});

t.test('release removes every copy and is idempotent', async (t) => {
  const { executor, addresses, sent } = setup({ addresses: [host, vipOn('eth0'), vipOn('eth1', 24)] });
  t.equal(await executor.release(), true);
  t.same(addresses.addresses, [host]);
  t.equal(await executor.release(), false, 'nothing left to remove');
  t.same(await executor.releaseCopies(), []);
  t.equal(sent.length, 0);
  t.equal(executor.counters.releases, 2);
});

t.test('a lease that lapses while the kernel is being read turns the reconcile into a release', async (t) => {
  const { executor, addresses, sent } = setup({ addresses: [host, vipOn('eth0')] });
  // Held when asked first (after list), gone when asked again right before the announcement.
  let answers = [true, false];
  const lapsing = (): boolean => answers.shift() ?? false;
  const result = await executor.reconcile(lapsing);
  t.same(kinds(result.actions), ['remove-address'], 'released instead of announcing');
  t.equal(result.held, false);
  t.equal(sent.length, 0, 'no GARP after the lease ended');
  t.notOk(addresses.addresses.some((a) => a.address === '10.0.0.100'), 'the copy is gone');

  // Held at the plan, lapsed right before the add: nothing is added.
  addresses.addresses = [host];
  answers = [true, false];
  const second = await executor.reconcile(lapsing);
  t.same(second.actions, [], 'nothing to release, nothing added');
  t.notOk(addresses.calls.some((call) => call.startsWith('add')), 'never added');
  t.equal(executor.held, false);
});
