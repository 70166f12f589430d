// The kernel side of the VIP executor: read every address of the current network namespace, add
// the VIP, remove it. It owns one rtnetlink socket (the `netlink` package's prebuilt shim) and
// nothing else: no cache of what the kernel holds, so every reconcile re-reads (STYLE.md rule 3,
// level-triggered), and no policy, which stays in vip-planner.ts.
//
// Invariants:
// - `add` and `remove` are idempotent: adding an address that is there, or removing one that is
//   not, succeeds. Two reconciles racing each other, or a retry after a timeout whose request did
//   reach the kernel, therefore converge instead of failing.
// - An added VIP is never preferred as a source address: it carries preferred_lft 0 and
//   valid_lft forever (`ip addr add ... preferred_lft 0`). Otherwise the host would start its own
//   outgoing connections (to peers, to the API server) from the VIP, and they would break when
//   the VIP moves to another host.
// - Every failure is a `NetlinkError` (RAFTVIP_NETLINK_FAILED) carrying the kernel's errno and
//   the operation; nothing else escapes, so the executor can log it and plan again.
//
// The package's own error handling is bypassed on purpose: its `checkError` throws a plain
// `Error('Request rejected: EEXIST')` without the errno, so requests go out with
// `checkError: false` and the NLMSG_ERROR reply is decoded here.

import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import netlink from 'netlink';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './packet-layout.js';

/** Longest wait for one rtnetlink request (a dump or an add/remove and its ACK). The kernel
 * answers in microseconds; a request still unanswered after this is lost, not slow. */
export const netlinkRequestTimeoutMs = 2_000;
/** Dumps of links and addresses are two requests; a link added, renamed or removed between them
 * (or a dump the kernel flags as interrupted) makes us dump again, this many times at most. */
export const listAttemptsMax = 3;
/** IFNAMSIZ (16) minus the terminating NUL. */
export const interfaceNameBytesMax = 15;

/** `ifa_valid` meaning "forever" (INFINITY_LIFE_TIME in the kernel). */
const lifetimeForever = 0xffff_ffff;
const addressFamilyIPv4 = 2; // AF_INET
const addressFamilyIPv6 = 10; // AF_INET6
const messageTypeError = 2; // NLMSG_ERROR
const messageTypeNewLink = 16; // RTM_NEWLINK
const messageTypeGetLink = 18; // RTM_GETLINK
const messageTypeNewAddress = 20; // RTM_NEWADDR
const messageTypeDeleteAddress = 21; // RTM_DELADDR
const messageTypeGetAddress = 22; // RTM_GETADDR

export type AddressFamily = 'ipv4' | 'ipv6';

/** What `list` reports: one address of one interface. `address` is canonical text (dotted quad,
 * RFC 5952 IPv6), so it compares with `===` against `canonicalIpAddress(...)`. */
export interface KernelAddress {
  address: string;
  prefixLength: number;
  interface: string;
  family: AddressFamily;
}

/** What `add` and `remove` take: an address with its prefix length, on an interface by name. */
export interface InterfaceAddress {
  address: string;
  prefixLength: number;
  interface: string;
}

export type NetlinkOperation = 'open' | 'list' | 'add' | 'remove' | 'link-index';

/** An rtnetlink request failed, or could not be made. `errno` is the positive errno the kernel
 * (or the socket) reported: ENODEV for an unknown interface, EPERM without CAP_NET_ADMIN,
 * ETIMEDOUT for a request unanswered within `netlinkRequestTimeoutMs`, EINVAL for an address or
 * prefix length refused before anything was sent, EPROTO for a reply that does not parse. */
export class NetlinkError extends Error {
  readonly code = 'RAFTVIP_NETLINK_FAILED' as const;
  readonly errno: number;
  readonly operation: NetlinkOperation;

  constructor(options: { operation: NetlinkOperation; errno: number; detail: string }) {
    super(`netlink ${options.operation} failed: ${errnoName(options.errno)}: ${options.detail}`);
    this.name = 'NetlinkError';
    this.errno = options.errno;
    this.operation = options.operation;
  }
}

export interface NetlinkAddressesOptions {
  /** Defaults to `netlinkRequestTimeoutMs`. */
  requestTimeoutMs?: number;
}

type RtNetlinkSocket = ReturnType<typeof netlink.createRtNetlink>;
type RawMessage = { type: number; flags: number; data: Buffer };

interface EncodedAddress {
  family: number;
  bytes: Buffer;
}

/** Reads and changes the addresses of the network namespace the process runs in. */
export class NetlinkAddresses {
  readonly #socket: RtNetlinkSocket;
  readonly #requestTimeoutMs: number;
  #closed = false;

  constructor(options: NetlinkAddressesOptions = {}) {
    const requestTimeoutMs = options.requestTimeoutMs ?? netlinkRequestTimeoutMs;
    if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs <= 0) {
      throw new NetlinkError({ operation: 'open', errno: osConstants.errno.EINVAL, detail: `requestTimeoutMs must be a positive integer, got ${String(requestTimeoutMs)}` });
    }
    this.#requestTimeoutMs = requestTimeoutMs;
    try {
      // ref: false (the default): an idle socket does not keep the process alive.
      this.#socket = netlink.createRtNetlink();
    } catch (error) {
      throw toNetlinkError('open', error, 'cannot open an rtnetlink socket');
    }
  }

  /** Every IPv4 and IPv6 address on every interface of this network namespace. */
  async list(): Promise<KernelAddress[]> {
    for (let attempt = 1; attempt <= listAttemptsMax; attempt++) {
      const links = await this.#request('list', messageTypeGetLink, formatLink({}), { dump: true });
      const addresses = await this.#request('list', messageTypeGetAddress, formatAddress({}), { dump: true });
      if (links.interrupted || addresses.interrupted) continue;

      const names = new Map<number, string>();
      for (const message of links.messages) {
        if (message.type !== messageTypeNewLink) continue;
        const link = parseOrFail('list', () => netlink.rt.parseLinkMessage(message.data));
        if (link.data.index !== undefined && link.attrs.ifname !== undefined) names.set(link.data.index, link.attrs.ifname);
      }

      const result: KernelAddress[] = [];
      let unknownLink = false;
      for (const message of addresses.messages) {
        if (message.type !== messageTypeNewAddress) continue;
        const parsed = parseOrFail('list', () => netlink.rt.parseAddressMessage(message.data));
        const family = parsed.data.family === addressFamilyIPv4 ? 'ipv4' : parsed.data.family === addressFamilyIPv6 ? 'ipv6' : null;
        if (family === null) continue;
        const name = names.get(parsed.data.index ?? -1);
        if (name === undefined) {
          unknownLink = true; // a link that appeared after the link dump
          break;
        }
        // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links and
        // the only one sent for most IPv6 addresses (iproute2 reads them in the same order).
        const bytes = parsed.attrs.local ?? parsed.attrs.address;
        result.push({ address: formatAddressBytes(family, bytes), prefixLength: parsed.data.prefixlen ?? 0, interface: name, family });
      }
      if (!unknownLink) return result;
    }
    throw new NetlinkError({ operation: 'list', errno: osConstants.errno.EAGAIN, detail: `links or addresses kept changing during ${listAttemptsMax} dumps` });
  }

  /** Adds `address/prefixLength` to the interface with preferred_lft 0 and valid_lft forever; an
   * IPv6 address also skips duplicate address detection (IFA_F_NODAD), so it is usable at once
   * instead of `tentative` for about a second: the Raft lease, not DAD, keeps it unique. Already
   * present is success; a copy with other lifetimes (added by hand) gets these lifetimes. */
  async add(spec: InterfaceAddress): Promise<void> {
    const encoded = encodeAddress('add', spec);
    const index = await this.#linkIndex('add', spec.interface);
    const nodad = encoded.family === addressFamilyIPv6;
    const request = formatAddress({
      data: { family: encoded.family, prefixlen: spec.prefixLength, index, scope: 0, ...(nodad ? { flags: { nodad: true } } : {}) },
      attrs: {
        local: encoded.bytes,
        address: encoded.bytes,
        cacheInfo: { ifaPrefered: 0, ifaValid: lifetimeForever },
        ...(nodad ? { flags: { nodad: true } } : {}),
      },
    });
    // NLM_F_REPLACE rather than NLM_F_EXCL: an existing copy is updated to preferred_lft 0 instead
    // of left as it was (level-triggered), and a repeated add is not an error.
    const flags = netlink.FlagsNew.CREATE | netlink.FlagsNew.REPLACE;
    await this.#request('add', messageTypeNewAddress, request, { flags, successErrnos: [osConstants.errno.EEXIST] });
  }

  /** Removes `address/prefixLength` from the interface. Already absent is success; an interface
   * that does not exist is an error (ENODEV), as for `add`. */
  async remove(spec: InterfaceAddress): Promise<void> {
    const encoded = encodeAddress('remove', spec);
    const index = await this.#linkIndex('remove', spec.interface);
    const request = formatAddress({
      data: { family: encoded.family, prefixlen: spec.prefixLength, index },
      attrs: { local: encoded.bytes, address: encoded.bytes },
    });
    await this.#request('remove', messageTypeDeleteAddress, request, {
      successErrnos: [osConstants.errno.EADDRNOTAVAIL, osConstants.errno.ENOENT],
    });
  }

  /** The kernel's index of the interface named `name` (ENODEV if there is none). */
  linkIndex(name: string): Promise<number> {
    return this.#linkIndex('link-index', name);
  }

  /** Closes the socket. Idempotent; later calls fail with EBADF. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.socket.close();
  }

  async #linkIndex(operation: NetlinkOperation, name: string): Promise<number> {
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > interfaceNameBytesMax || name.includes('\u0000')) {
      throw new NetlinkError({ operation, errno: osConstants.errno.EINVAL, detail: `invalid interface name ${JSON.stringify(name)}` });
    }
    const reply = await this.#request(operation, messageTypeGetLink, formatLink({ ifname: name }), {});
    for (const message of reply.messages) {
      if (message.type !== messageTypeNewLink) continue;
      const index = parseOrFail(operation, () => netlink.rt.parseLinkMessage(message.data)).data.index;
      if (index !== undefined && index > 0) return index;
    }
    throw new NetlinkError({ operation, errno: osConstants.errno.EPROTO, detail: `no link in the reply for interface ${name}` });
  }

  async #request(
    operation: NetlinkOperation,
    type: number,
    payload: Uint8Array[],
    options: { dump?: boolean; flags?: number; successErrnos?: readonly number[] },
  ): Promise<{ messages: RawMessage[]; interrupted: boolean }> {
    if (this.#closed) throw new NetlinkError({ operation, errno: osConstants.errno.EBADF, detail: 'the socket is closed' });
    const flags = (options.flags ?? 0) | (options.dump === true ? netlink.FlagsGet.DUMP : 0);
    let messages: RawMessage[];
    try {
      [messages] = await this.#socket.socket.request(type, payload, { flags, timeout: this.#requestTimeoutMs, checkError: false });
    } catch (error) {
      throw toNetlinkError(operation, error, 'request failed');
    }
    let interrupted = false;
    for (const message of messages) {
      if ((message.flags & netlink.Flags.DUMP_INTR) !== 0) interrupted = true;
      if (message.type !== messageTypeError) continue;
      const errno = -parseOrFail(operation, () => netlink.parseError(message.data, message.flags)).errno;
      if (errno === 0 || options.successErrnos?.includes(errno) === true) continue;
      throw new NetlinkError({ operation, errno, detail: 'the kernel refused the request' });
    }
    return { messages, interrupted };
  }
}

function formatAddress(message: { data?: netlink.rt.Address; attrs?: netlink.rt.AddressAttrs }): Uint8Array[] {
  const stream = new netlink.AttrStream();
  netlink.rt.formatAddressMessage({ kind: 'address', data: message.data ?? {}, attrs: message.attrs ?? {} }, stream);
  return stream.bufs;
}

function formatLink(attrs: netlink.ifla.LinkAttrs): Uint8Array[] {
  const stream = new netlink.AttrStream();
  netlink.rt.formatLinkMessage({ kind: 'link', data: {}, attrs }, stream);
  return stream.bufs;
}

function encodeAddress(operation: NetlinkOperation, spec: InterfaceAddress): EncodedAddress {
  const v4 = parseIPv4(spec.address);
  const v6 = v4 === null ? parseIPv6(spec.address) : null;
  const encoded = v4 !== null ? { family: addressFamilyIPv4, bytes: Buffer.from(v4) } : v6 !== null ? { family: addressFamilyIPv6, bytes: Buffer.from(v6) } : null;
  if (encoded === null) {
    throw new NetlinkError({ operation, errno: osConstants.errno.EINVAL, detail: `${JSON.stringify(spec.address)} is not an IPv4 or IPv6 address` });
  }
  const prefixLengthMax = encoded.family === addressFamilyIPv4 ? 32 : 128;
  if (!Number.isInteger(spec.prefixLength) || spec.prefixLength < 0 || spec.prefixLength > prefixLengthMax) {
    throw new NetlinkError({ operation, errno: osConstants.errno.EINVAL, detail: `prefix length ${String(spec.prefixLength)} is not in 0..${prefixLengthMax}` });
  }
  return encoded;
}

function formatAddressBytes(family: AddressFamily, bytes: Buffer | undefined): string {
  const lengthBytes = family === 'ipv4' ? 4 : 16;
  if (bytes === undefined || bytes.length !== lengthBytes) {
    throw new NetlinkError({ operation: 'list', errno: osConstants.errno.EPROTO, detail: `an ${family} address of ${bytes?.length ?? 0} bytes` });
  }
  return family === 'ipv4' ? formatIPv4(bytes) : formatIPv6(bytes);
}

/** Runs one of the package's parsers; a reply it cannot parse is EPROTO, not a crash. */
function parseOrFail<T>(operation: NetlinkOperation, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new NetlinkError({ operation, errno: osConstants.errno.EPROTO, detail: `malformed reply: ${(error as Error).message}` });
  }
}

/** Maps what the package throws to a NetlinkError: its native shim reports `{errno, syscall}`;
 * its request timeout is a plain Error with a fixed message. */
function toNetlinkError(operation: NetlinkOperation, error: unknown, detail: string): NetlinkError {
  if (error instanceof NetlinkError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const errno = (error as { errno?: unknown } | null)?.errno;
  if (typeof errno === 'number' && errno !== 0) return new NetlinkError({ operation, errno: Math.abs(errno), detail: `${detail}: ${message}` });
  if (message === 'Timeout has been reached') {
    return new NetlinkError({ operation, errno: osConstants.errno.ETIMEDOUT, detail: `no reply within the request timeout` });
  }
  return new NetlinkError({ operation, errno: osConstants.errno.EPROTO, detail: `${detail}: ${message}` });
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
