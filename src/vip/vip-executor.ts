// The VIP executor: runs what vip-planner.ts plans against the kernel. It owns the announce
// schedule, the cached packet sockets and the counters, and nothing about policy.
//
// Level-triggered (STYLE.md rule 3): every reconcile re-reads the kernel's addresses (`list()`),
// plans from what is there, runs the actions in order and stops at the first failure; the next
// reconcile plans again. A VIP removed by hand is therefore restored (and re-announced as a new
// claim) on the next reconcile, and a copy on the wrong interface is removed. Reconciles are
// serialised: one runs at a time, in call order.
//
// Invariants:
// - Nothing is added or announced without the lease. The planner guarantees it; the executor
//   asserts it too, because a VIP on two hosts is the one failure raftvip exists to prevent.
// - The announce schedule is reset (no announcement yet, no burst) whenever a reconcile runs
//   without the lease, so the next claim starts a fresh burst (vip-planner.ts, AnnounceSchedule).
// - All I/O is injected (addresses, packet sockets, MAC lookup, clock), so tests can use fakes.

import { assert } from '../raft/assert.js';
import type { IpFamily } from '../config/host-port.js';
import { buildGratuitousArp } from './arp-packet.js';
import { buildUnsolicitedNeighbourAdvertisement } from './ndp-packet.js';
import type { InterfaceAddress, KernelAddress } from './netlink-addresses.js';
// The EtherTypes from packet-layout.ts rather than packet-socket.ts, which loads the native shim.
import { canonicalIpAddress, etherTypeArp as ethernetProtocolArp, etherTypeIPv6 as ethernetProtocolIpv6, parseIPv4, parseIPv6 } from './packet-layout.js';
import {
  garpBurstCount,
  garpBurstIntervalMs,
  garpRefreshIntervalMs,
  nextAnnounceDueMs,
  planVip,
  type AnnounceSchedule,
  type ObservedAddress,
  type VipAction,
} from './vip-planner.js';

/** What the executor needs of NetlinkAddresses. */
export interface VipAddressTable {
  list(): Promise<KernelAddress[]>;
  add(spec: InterfaceAddress): Promise<void>;
  remove(spec: InterfaceAddress): Promise<void>;
}

/** What the executor needs of PacketSocket. */
export interface VipPacketSocket {
  send(frame: Uint8Array): number;
  close(): void;
}

export type VipLogLevel = 'debug' | 'info' | 'warn' | 'error';
export type VipLog = (level: VipLogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface VipAnnounceTiming {
  burstCount: number;
  burstIntervalMs: number;
  refreshIntervalMs: number;
}

export interface VipExecutorOptions {
  vip: { address: string; family: IpFamily };
  /** null: the interface holding an address whose subnet contains the VIP (see resolveInterface). */
  interface: string | null;
  addresses: VipAddressTable;
  openPacketSocket: (interfaceName: string, protocol: number) => VipPacketSocket;
  hardwareAddress: (interfaceName: string) => string;
  /** Monotonic milliseconds. */
  clock: () => number;
  log: VipLog;
  /** Defaults: garpBurstCount, garpBurstIntervalMs, garpRefreshIntervalMs. */
  announce?: VipAnnounceTiming;
}

export interface VipReconcileResult {
  /** The actions planned and run (all of them: a failure throws instead). */
  actions: VipAction[];
  /** Whether this host holds the VIP on its interface after the reconcile. */
  held: boolean;
}

export interface VipCounters {
  /** VIP additions (with the lease). */
  claims: number;
  /** Copies removed while not holding the lease, or by release(). */
  releases: number;
  /** Announcements (one per planned `announce`: a GARP pair or one NA). */
  announcements: number;
}

/** The VIP's interface is not configured and cannot be found unambiguously from the host's
 * addresses: no interface, or several, hold an address whose subnet contains the VIP. */
export class VipInterfaceError extends Error {
  readonly code = 'RAFTVIP_VIP_INTERFACE_UNKNOWN' as const;
  readonly candidates: readonly string[];

  constructor(options: { vip: string; candidates: readonly string[] }) {
    const which =
      options.candidates.length === 0
        ? 'no interface has an address in its subnet'
        : `several interfaces have an address in its subnet (${options.candidates.join(', ')})`;
    super(`cannot tell which interface should hold VIP ${options.vip}: ${which}; set vip.interface in the peer file`);
    this.name = 'VipInterfaceError';
    this.candidates = options.candidates;
  }
}

export class VipExecutor {
  readonly #options: VipExecutorOptions;
  readonly #vipAddress: string;
  readonly #prefixLength: 32 | 128;
  readonly #timing: VipAnnounceTiming;
  readonly #sockets = new Map<string, VipPacketSocket>();
  #lastAnnouncedAtMs: number | null = null;
  #burstRemaining = 0;
  #held = false;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #counters: VipCounters = { claims: 0, releases: 0, announcements: 0 };

  constructor(options: VipExecutorOptions) {
    const canonical = canonicalIpAddress(options.vip.address);
    const family = parseIPv4(options.vip.address) !== null ? 4 : parseIPv6(options.vip.address) !== null ? 6 : null;
    assert(canonical !== null && family === options.vip.family, `VIP ${options.vip.address} is not an IPv${options.vip.family} address`);
    this.#options = options;
    this.#vipAddress = canonical;
    this.#prefixLength = family === 4 ? 32 : 128;
    this.#timing = options.announce ?? { burstCount: garpBurstCount, burstIntervalMs: garpBurstIntervalMs, refreshIntervalMs: garpRefreshIntervalMs };
  }

  /** A copy of the counters. */
  get counters(): VipCounters {
    return { ...this.#counters };
  }

  /** Whether the last completed reconcile left the VIP held here. */
  get held(): boolean {
    return this.#held;
  }

  /** The configured interface, else the one interface with an address (other than the VIP)
   * whose subnet contains the VIP. Throws VipInterfaceError (none or several), NetlinkError. */
  async resolveInterface(): Promise<string> {
    return this.#resolveFrom(await this.#options.addresses.list());
  }

  /** Converges the kernel on the state the lease demands. `lease` is either the answer or a
   * question asked again right before every add and announcement: if the lease lapsed while the
   * kernel was being read or written, the reconcile turns into a release instead (an address
   * must never be added, nor a GARP sent, after the lease ends). Throws the first action's
   * failure (NetlinkError, PacketSocketError, VipInterfaceError); the next reconcile starts over. */
  reconcile(lease: boolean | (() => boolean)): Promise<VipReconcileResult> {
    const leaseHeld = typeof lease === 'function' ? lease : (): boolean => lease;
    return this.#serialise(() => this.#reconcile(leaseHeld));
  }

  /** Removes every copy of the VIP on every interface, whatever the lease; true if one was removed.
   * For stopping, and for `raftvip vip release`. */
  async release(): Promise<boolean> {
    return (await this.releaseCopies()).length > 0;
  }

  /** As release(), returning the copies removed. */
  releaseCopies(): Promise<ObservedAddress[]> {
    return this.#serialise(async () => {
      const removed = await this.#removeAll(await this.#options.addresses.list());
      this.#resetSchedule();
      this.#held = false;
      return removed;
    });
  }

  /** When the next announcement is due (monotonic ms) for a VIP that stays held; null if not held. */
  nextAnnounceDueMs(): number | null {
    if (!this.#held) return null;
    return nextAnnounceDueMs(this.#schedule(this.#options.clock()));
  }

  /** Closes the cached packet sockets. Idempotent; a later announcement opens new ones. */
  close(): void {
    for (const [key, socket] of this.#sockets) {
      this.#sockets.delete(key);
      this.#closeQuietly(socket);
    }
  }

  async #reconcile(leaseNow: () => boolean): Promise<VipReconcileResult> {
    const observed = await this.#options.addresses.list();
    const leaseHeld = leaseNow();
    if (!leaseHeld) {
      this.#resetSchedule();
      this.#held = false;
    }
    // Without the lease the interface does not matter (every copy goes), so an unknown one is no
    // reason to leave a copy behind.
    const interfaceName = leaseHeld ? this.#resolveFrom(observed) : (this.#options.interface ?? '');
    const nowMs = this.#options.clock();
    const actions = planVip({
      leaseHeld,
      vip: { address: this.#vipAddress, prefixLength: this.#prefixLength },
      observed: { addresses: observed },
      interface: interfaceName,
      announce: this.#schedule(nowMs),
    });
    if (leaseHeld) this.#held = false; // until every action has run
    for (const action of actions) {
      switch (action.kind) {
        case 'remove-address':
          await this.#options.addresses.remove({ address: this.#vipAddress, prefixLength: action.prefixLength, interface: action.interface });
          if (!leaseHeld) this.#counters.releases++;
          this.#options.log(leaseHeld ? 'warn' : 'info', leaseHeld ? 'removed a stray copy of the VIP' : 'released the VIP', {
            vip: this.#vipAddress,
            interface: action.interface,
            prefixLength: action.prefixLength,
          });
          break;
        case 'add-address':
          assert(leaseHeld, 'the VIP planner added the VIP without the lease');
          if (!leaseNow()) return this.#reconcile(() => false);
          await this.#options.addresses.add({ address: this.#vipAddress, prefixLength: this.#prefixLength, interface: interfaceName });
          this.#counters.claims++;
          this.#options.log('info', 'claimed the VIP', { vip: this.#vipAddress, interface: interfaceName });
          break;
        case 'announce':
          assert(leaseHeld, 'the VIP planner announced the VIP without the lease');
          if (!leaseNow()) return this.#reconcile(() => false);
          this.#announce(interfaceName);
          this.#lastAnnouncedAtMs = nowMs;
          this.#burstRemaining = action.burstRemaining;
          this.#counters.announcements++;
          this.#options.log('debug', 'announced the VIP', { vip: this.#vipAddress, interface: interfaceName, reason: action.reason });
          break;
        default: {
          const unknown: never = action;
          assert(false, `unknown VIP action ${JSON.stringify(unknown)}`);
        }
      }
    }
    this.#held = leaseHeld;
    return { actions, held: leaseHeld };
  }

  async #removeAll(observed: readonly KernelAddress[]): Promise<ObservedAddress[]> {
    const actions = planVip({
      leaseHeld: false,
      vip: { address: this.#vipAddress, prefixLength: this.#prefixLength },
      observed: { addresses: observed },
      interface: this.#options.interface ?? '',
      announce: this.#schedule(this.#options.clock()),
    });
    const removed: ObservedAddress[] = [];
    for (const action of actions) {
      assert(action.kind === 'remove-address', `a plan without the lease holds ${action.kind}`);
      await this.#options.addresses.remove({ address: this.#vipAddress, prefixLength: action.prefixLength, interface: action.interface });
      this.#counters.releases++;
      removed.push({ address: this.#vipAddress, prefixLength: action.prefixLength, interface: action.interface });
      this.#options.log('info', 'released the VIP', { vip: this.#vipAddress, interface: action.interface, prefixLength: action.prefixLength });
    }
    return removed;
  }

  /** Sends one announcement: a gratuitous ARP in request and reply form (IPv4; some hosts act on
   * only one of them), or an unsolicited neighbour advertisement (IPv6). */
  #announce(interfaceName: string): void {
    const mac = this.#options.hardwareAddress(interfaceName);
    if (this.#options.vip.family === 4) {
      for (const kind of ['request', 'reply'] as const) {
        this.#send(interfaceName, ethernetProtocolArp, buildGratuitousArp({ mac, ip: this.#vipAddress, kind }));
      }
    } else {
      this.#send(interfaceName, ethernetProtocolIpv6, buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: this.#vipAddress }));
    }
  }

  /** Sends on the cached socket; after a failure the socket is closed and one fresh socket is
   * tried (the interface may have been re-created under the same name). */
  #send(interfaceName: string, protocol: number, frame: Uint8Array): void {
    const key = `${interfaceName}\u0000${protocol}`;
    const cached = this.#sockets.get(key);
    if (cached !== undefined) {
      try {
        cached.send(frame);
        return;
      } catch (error) {
        this.#sockets.delete(key);
        this.#closeQuietly(cached);
        this.#options.log('warn', 'sending on the cached packet socket failed; reopening it', {
          interface: interfaceName,
          err: error instanceof Error ? error.message : String(error),
        });
      }
    }
    const socket = this.#options.openPacketSocket(interfaceName, protocol);
    try {
      socket.send(frame);
    } catch (error) {
      this.#closeQuietly(socket);
      throw error;
    }
    this.#sockets.set(key, socket);
  }

  #closeQuietly(socket: VipPacketSocket): void {
    try {
      socket.close();
    } catch (error) {
      this.#options.log('warn', 'closing a packet socket failed', { err: error instanceof Error ? error.message : String(error) });
    }
  }

  #resolveFrom(observed: readonly KernelAddress[]): string {
    if (this.#options.interface !== null) return this.#options.interface;
    const vipBytes = this.#options.vip.family === 4 ? parseIPv4(this.#vipAddress) : parseIPv6(this.#vipAddress);
    assert(vipBytes !== null, 'the VIP was checked in the constructor');
    const candidates = new Set<string>();
    for (const address of observed) {
      if (canonicalIpAddress(address.address) === this.#vipAddress) continue;
      const bytes = this.#options.vip.family === 4 ? parseIPv4(address.address) : parseIPv6(address.address);
      if (bytes === null || bytes.length !== vipBytes.length) continue;
      if (prefixContains(bytes, address.prefixLength, vipBytes)) candidates.add(address.interface);
    }
    const [only, ...others] = [...candidates].sort();
    if (only === undefined || others.length > 0) throw new VipInterfaceError({ vip: this.#vipAddress, candidates: [...candidates].sort() });
    return only;
  }

  #schedule(nowMs: number): AnnounceSchedule {
    return { lastAnnouncedAtMs: this.#lastAnnouncedAtMs, burstRemaining: this.#burstRemaining, nowMs, ...this.#timing };
  }

  #resetSchedule(): void {
    this.#lastAnnouncedAtMs = null;
    this.#burstRemaining = 0;
  }

  #serialise<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(work, work);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

/** Whether `network/prefixLength` contains `address` (both the same length in bytes). */
function prefixContains(network: Uint8Array, prefixLength: number, address: Uint8Array): boolean {
  const bits = Math.max(0, Math.min(Math.floor(prefixLength), network.length * 8));
  for (let bit = 0; bit < bits; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if (((network[byte] ?? 0) & mask) !== ((address[byte] ?? 0) & mask)) return false;
  }
  return true;
}
