// Sends Ethernet frames that src/vip built (gratuitous ARP, unsolicited neighbour advertisements)
// out of one interface, through the native AF_PACKET shim native/packet_socket.cc (Node.js core
// has no packet sockets). The shim only makes syscalls; everything about the bytes stays in
// arp-packet.ts and ndp-packet.ts (STYLE.md rule 5).
//
// Invariants:
// - Every failure is a `PacketSocketError` (RAFTVIP_PACKET_SOCKET_FAILED) carrying the errno and
//   the syscall that failed; nothing else escapes, so the executor can log it and plan again.
// - A PacketSocket owns one file descriptor; `close()` releases it once and is idempotent, and
//   any use after it fails with EBADF instead of touching a descriptor number the process may
//   have reused for something else.

import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { etherTypeArp, etherTypeIPv6, formatMac } from './packet-layout.js';

/** EtherTypes to open a socket for: 0x0806 ARP, 0x86dd IPv6 (for neighbour advertisements). */
export const ethernetProtocolArp = etherTypeArp;
export const ethernetProtocolIpv6 = etherTypeIPv6;

export type PacketSocketSyscall = 'socket' | 'bind' | 'send' | 'ioctl' | 'if_nametoindex' | 'close';

interface NativePacketSocket {
  open(interfaceName: string, protocol: number): number;
  send(fd: number, frame: Uint8Array): number;
  hardwareAddress(interfaceName: string): Uint8Array;
  close(fd: number): void;
}

// `npm ci` builds the addon into build/Release at the package root (binding.gyp); this module
// runs compiled from dist/src/vip, three levels below the root.
const addonPath = fileURLToPath(new URL('../../../build/Release/raftvip_packet.node', import.meta.url));
const native = createRequire(import.meta.url)(addonPath) as NativePacketSocket;

/** A packet-socket syscall failed. `errno` is the positive errno, `syscall` the call that
 * returned it. */
export class PacketSocketError extends Error {
  readonly code = 'RAFTVIP_PACKET_SOCKET_FAILED' as const;
  readonly errno: number;
  readonly syscall: PacketSocketSyscall;

  constructor(options: { syscall: PacketSocketSyscall; errno: number; detail: string }) {
    super(`packet socket ${options.syscall} failed: ${errnoName(options.errno)}: ${options.detail}`);
    this.name = 'PacketSocketError';
    this.errno = options.errno;
    this.syscall = options.syscall;
  }
}

/** One AF_PACKET raw socket bound to one interface and EtherType. */
export class PacketSocket {
  readonly interfaceName: string;
  #fd: number | null;

  private constructor(interfaceName: string, fd: number) {
    this.interfaceName = interfaceName;
    this.#fd = fd;
  }

  /** Opens a socket on `interfaceName` for `protocol` (an EtherType). Needs CAP_NET_RAW. */
  static open(interfaceName: string, protocol: number): PacketSocket {
    const fd = callNative('socket', `open ${interfaceName}`, () => native.open(interfaceName, protocol));
    return new PacketSocket(interfaceName, fd);
  }

  /** Sends one whole Ethernet frame (header included) as built; returns the bytes sent. */
  send(frame: Uint8Array): number {
    const fd = this.#fd;
    if (fd === null) throw new PacketSocketError({ syscall: 'send', errno: osConstants.errno.EBADF, detail: `the socket on ${this.interfaceName} is closed` });
    return callNative('send', `send on ${this.interfaceName}`, () => native.send(fd, frame));
  }

  /** Releases the socket; closing twice is a no-op. */
  close(): void {
    const fd = this.#fd;
    if (fd === null) return;
    this.#fd = null;
    callNative('close', `close on ${this.interfaceName}`, () => native.close(fd));
  }
}

/** The interface's MAC address in `aa:bb:cc:dd:ee:ff` form (SIOCGIFHWADDR). */
export function hardwareAddress(interfaceName: string): string {
  return formatMac(callNative('ioctl', `hardware address of ${interfaceName}`, () => native.hardwareAddress(interfaceName)));
}

/** Runs one native call and maps its `{errno, syscall}` error to a PacketSocketError. Anything
 * without an errno (a TypeError for a bad argument) is passed through: it is a bug, not an
 * operating condition. */
function callNative<T>(fallbackSyscall: PacketSocketSyscall, detail: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    const { errno, syscall } = error as { errno?: unknown; syscall?: unknown };
    if (typeof errno !== 'number') throw error;
    const known: PacketSocketSyscall[] = ['socket', 'bind', 'send', 'ioctl', 'if_nametoindex', 'close'];
    const reported = known.find((name) => name === syscall) ?? fallbackSyscall;
    throw new PacketSocketError({ syscall: reported, errno: Math.abs(errno), detail });
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
