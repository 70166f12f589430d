// The IPVS generic netlink message codec: the command numbers and attribute tables of
// <linux/ip_vs.h> ("IPVS Generic Netlink interface definitions"), and pure encode/decode pairs
// for what raftvip sends and reads: services, destinations (real servers), connection timeouts
// and the IPVS info block. No sockets here; ipvs-netlink.ts moves the bytes.
//
// A message is the generic netlink payload that follows the nlmsghdr: a 4-byte genlmsghdr
// (cmd, version, reserved) and then netlink attributes. Every attribute set is one declarative
// table (id, name, type) checked when the module loads; one generic pair of functions reads and
// writes any table, so no attribute id or byte offset appears anywhere else.
//
// Invariants:
// - Pure and symmetric: decode(encode(x)) equals x for every value the encoders accept, and the
//   encoders write attributes in ascending id order, each padded to 4 bytes (NLA_ALIGN), so one
//   value has exactly one encoding. test/fixtures/ipvs/*.hex, built by a C program from the UAPI
//   headers alone, pins those bytes.
// - Integers are in host byte order, as netlink's NLA_U16/U32/U64 are; ports are network order
//   (the kernel reads them with nla_get_be16). raftvip runs on little-endian hosts (amd64, arm64);
//   the byte order is taken from the platform, not assumed.
// - Decoding skips attribute ids a table does not know (newer kernels add some) and masks the
//   NLA_F_NESTED / NLA_F_NET_BYTEORDER bits of the type. Anything malformed (a length that runs
//   past the buffer or below the header, a known attribute of the wrong size, a string without
//   its NUL, a missing required attribute, an unknown protocol or forwarding method) throws
//   IpvsMessageError. Nothing else escapes a decoder, whatever the input.

import { assert } from '../raft/assert.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../vip/packet-layout.js';

/** A message received from the kernel, or asked to be built, is not a valid IPVS generic
 * netlink message. */
export class IpvsMessageError extends Error {
  readonly code = 'RAFTVIP_IPVS_MESSAGE_INVALID' as const;

  constructor(detail: string) {
    super(detail);
    this.name = 'IpvsMessageError';
  }
}

// ---------------------------------------------------------------------------------------------
// Constants from <linux/ip_vs.h>, <linux/netlink.h>, <linux/genetlink.h> and <linux/socket.h>

/** IPVS_GENL_NAME: the generic netlink family name the kernel registers. */
export const ipvsFamilyName = 'IPVS';
/** IPVS_GENL_VERSION: the protocol version this codec speaks. */
export const ipvsGenlVersion = 1;

/** The IPVS_CMD_* enum. */
export const ipvsCommand = {
  newService: 1,
  setService: 2,
  deleteService: 3,
  getService: 4,
  newDestination: 5,
  setDestination: 6,
  deleteDestination: 7,
  getDestination: 8,
  newDaemon: 9,
  deleteDaemon: 10,
  getDaemon: 11,
  setConfig: 12,
  getConfig: 13,
  setInfo: 14,
  getInfo: 15,
  zero: 16,
  flush: 17,
} as const;
export type IpvsCommandName = keyof typeof ipvsCommand;

/** GENL_HDRLEN: cmd (u8), version (u8), reserved (u16). */
export const genlHeaderBytes = 4;
/** NLA_HDRLEN: nla_len (u16), nla_type (u16). */
export const attributeHeaderBytes = 4;
/** NLA_ALIGNTO. */
export const attributeAlignBytes = 4;
/** An attribute's nla_len is a u16: no attribute, nested ones included, is longer. */
export const attributeBytesMax = 0xffff;
/** IP_VS_SCHEDNAME_MAXLEN and IP_VS_PENAME_MAXLEN, the terminating NUL included. */
export const schedulerNameBytesMax = 16;
/** IP_VS_IFNAME_MAXLEN, the terminating NUL included. */
export const daemonInterfaceNameBytesMax = 16;
/** sizeof(union nf_inet_addr). */
export const inetAddressBytes = 16;
/** Weights are a signed int in the kernel and an NLA_U32 on the wire; negatives are refused. */
export const destinationWeightMax = 0x7fff_ffff;

const nlaFlagNested = 0x8000; // NLA_F_NESTED
const nlaFlagNetByteOrder = 0x4000; // NLA_F_NET_BYTEORDER
const nlaTypeMask = ~(nlaFlagNested | nlaFlagNetByteOrder) & 0xffff;

const addressFamilyIPv4 = 2; // AF_INET
const addressFamilyIPv6 = 10; // AF_INET6
/** IP_VS_SVC_F_HASHED: set by the kernel on every service it holds; not a setting. */
export const serviceFlagHashed = 0x0002;
/** IP_VS_SVC_F_PERSISTENT. */
export const serviceFlagPersistent = 0x0001;
/** IP_VS_CONN_F_FWD_MASK. */
const forwardingMethodMask = 0x0007;

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Declarative attribute tables

export type AttributeType = 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'flags' | 'binary' | 'string' | 'nested';

interface AttributeSpecBase {
  readonly id: number;
  readonly name: string;
}
export interface FixedAttributeSpec extends AttributeSpecBase {
  readonly type: 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'flags';
}
export interface VariableAttributeSpec extends AttributeSpecBase {
  readonly type: 'binary' | 'string';
  /** Longest payload; for a string the terminating NUL included. */
  readonly maxBytes: number;
}
export interface NestedAttributeSpec extends AttributeSpecBase {
  readonly type: 'nested';
  readonly set: AttributeSet<readonly AttributeSpec[]>;
}
export type AttributeSpec = FixedAttributeSpec | VariableAttributeSpec | NestedAttributeSpec;

export interface AttributeSet<F extends readonly AttributeSpec[]> {
  readonly name: string;
  readonly specs: F;
  readonly byId: ReadonlyMap<number, AttributeSpec>;
}

/** struct ip_vs_flags: the kernel applies `flags` to the bits set in `mask`. */
export interface IpvsFlags {
  flags: number;
  mask: number;
}

const fixedSizeBytes: Record<FixedAttributeSpec['type'], number> = { u8: 1, u16: 2, u32: 4, u64: 8, be16: 2, flags: 8 };

type SpecValue<S> = S extends { readonly type: 'nested'; readonly set: AttributeSet<infer F> }
  ? AttributeValues<F>
  : S extends { readonly type: 'u64' }
    ? bigint
    : S extends { readonly type: 'binary' }
      ? Uint8Array
      : S extends { readonly type: 'string' }
        ? string
        : S extends { readonly type: 'flags' }
          ? IpvsFlags
          : number;

/** The values of an attribute set by name; every attribute is optional on the wire. */
export type AttributeValues<F extends readonly AttributeSpec[]> = {
  -readonly [S in F[number] as S['name']]?: SpecValue<S>;
};

/** Checks a table once, at module load: ids ascending, names unique, sizes sane. A wrong table
 * is a bug, so it crashes on import rather than corrupting messages. */
export function defineAttributeSet<const F extends readonly AttributeSpec[]>(name: string, specs: F): AttributeSet<F> {
  const byId = new Map<number, AttributeSpec>();
  const names = new Set<string>();
  let previousId = 0;
  for (const spec of specs) {
    assert(Number.isInteger(spec.id) && spec.id > previousId && spec.id <= nlaTypeMask, `${name}.${spec.name}: ids must ascend from 1`);
    assert(!names.has(spec.name), `${name}.${spec.name} appears twice`);
    if (spec.type === 'binary' || spec.type === 'string') {
      assert(Number.isInteger(spec.maxBytes) && spec.maxBytes > 0 && spec.maxBytes <= attributeBytesMax - attributeHeaderBytes, `${name}.${spec.name}: bad maxBytes`);
    }
    previousId = spec.id;
    names.add(spec.name);
    byId.set(spec.id, spec);
  }
  return { name, specs, byId };
}

/** IPVS_STATS_ATTR_*, in IPVS_SVC_ATTR_STATS / IPVS_DEST_ATTR_STATS (32-bit counters and rates,
 * 64-bit byte counts). */
export const ipvsStatsAttributes = defineAttributeSet('stats', [
  { id: 1, name: 'connections', type: 'u32' },
  { id: 2, name: 'inPackets', type: 'u32' },
  { id: 3, name: 'outPackets', type: 'u32' },
  { id: 4, name: 'inBytes', type: 'u64' },
  { id: 5, name: 'outBytes', type: 'u64' },
  { id: 6, name: 'connectionsPerSecond', type: 'u32' },
  { id: 7, name: 'inPacketsPerSecond', type: 'u32' },
  { id: 8, name: 'outPacketsPerSecond', type: 'u32' },
  { id: 9, name: 'inBytesPerSecond', type: 'u32' },
  { id: 10, name: 'outBytesPerSecond', type: 'u32' },
  // 11 is IPVS_STATS_ATTR_PAD, alignment filler: skipped as unknown.
] as const);

/** The same ids in IPVS_SVC_ATTR_STATS64 / IPVS_DEST_ATTR_STATS64: every value 64 bits. */
export const ipvsStats64Attributes = defineAttributeSet('stats64', [
  { id: 1, name: 'connections', type: 'u64' },
  { id: 2, name: 'inPackets', type: 'u64' },
  { id: 3, name: 'outPackets', type: 'u64' },
  { id: 4, name: 'inBytes', type: 'u64' },
  { id: 5, name: 'outBytes', type: 'u64' },
  { id: 6, name: 'connectionsPerSecond', type: 'u64' },
  { id: 7, name: 'inPacketsPerSecond', type: 'u64' },
  { id: 8, name: 'outPacketsPerSecond', type: 'u64' },
  { id: 9, name: 'inBytesPerSecond', type: 'u64' },
  { id: 10, name: 'outBytesPerSecond', type: 'u64' },
] as const);

/** IPVS_SVC_ATTR_*, nested in IPVS_CMD_ATTR_SERVICE. */
export const ipvsServiceAttributes = defineAttributeSet('service', [
  { id: 1, name: 'family', type: 'u16' }, // AF_INET / AF_INET6
  { id: 2, name: 'protocol', type: 'u16' }, // IPPROTO_*
  { id: 3, name: 'address', type: 'binary', maxBytes: inetAddressBytes }, // union nf_inet_addr
  { id: 4, name: 'port', type: 'be16' },
  { id: 5, name: 'fwmark', type: 'u32' },
  { id: 6, name: 'schedulerName', type: 'string', maxBytes: schedulerNameBytesMax },
  { id: 7, name: 'flags', type: 'flags' }, // struct ip_vs_flags
  { id: 8, name: 'timeout', type: 'u32' }, // persistence timeout, seconds
  { id: 9, name: 'netmask', type: 'u32' }, // persistence netmask (IPv4) or prefix length (IPv6)
  { id: 10, name: 'stats', type: 'nested', set: ipvsStatsAttributes },
  { id: 11, name: 'persistenceEngineName', type: 'string', maxBytes: schedulerNameBytesMax },
  { id: 12, name: 'stats64', type: 'nested', set: ipvsStats64Attributes },
] as const);

/** IPVS_DEST_ATTR_*, nested in IPVS_CMD_ATTR_DEST. */
export const ipvsDestinationAttributes = defineAttributeSet('destination', [
  { id: 1, name: 'address', type: 'binary', maxBytes: inetAddressBytes },
  { id: 2, name: 'port', type: 'be16' },
  { id: 3, name: 'forwardingMethod', type: 'u32' }, // IP_VS_CONN_F_* & IP_VS_CONN_F_FWD_MASK
  { id: 4, name: 'weight', type: 'u32' },
  { id: 5, name: 'upperThreshold', type: 'u32' },
  { id: 6, name: 'lowerThreshold', type: 'u32' },
  { id: 7, name: 'activeConnections', type: 'u32' },
  { id: 8, name: 'inactiveConnections', type: 'u32' },
  { id: 9, name: 'persistentConnections', type: 'u32' },
  { id: 10, name: 'stats', type: 'nested', set: ipvsStatsAttributes },
  { id: 11, name: 'family', type: 'u16' },
  { id: 12, name: 'stats64', type: 'nested', set: ipvsStats64Attributes },
  { id: 13, name: 'tunnelType', type: 'u8' },
  { id: 14, name: 'tunnelPort', type: 'be16' },
  { id: 15, name: 'tunnelFlags', type: 'u16' },
] as const);

/** IPVS_DAEMON_ATTR_*, nested in IPVS_CMD_ATTR_DAEMON (the connection sync daemon; raftvip does
 * not run it, the table is here so a dump of it decodes). */
export const ipvsDaemonAttributes = defineAttributeSet('daemon', [
  { id: 1, name: 'state', type: 'u32' },
  { id: 2, name: 'multicastInterface', type: 'string', maxBytes: daemonInterfaceNameBytesMax },
  { id: 3, name: 'syncId', type: 'u32' },
  { id: 4, name: 'syncMaxLength', type: 'u16' },
  { id: 5, name: 'multicastGroup', type: 'binary', maxBytes: 4 },
  { id: 6, name: 'multicastGroup6', type: 'binary', maxBytes: 16 },
  { id: 7, name: 'multicastPort', type: 'u16' },
  { id: 8, name: 'multicastTtl', type: 'u8' },
] as const);

/** IPVS_CMD_ATTR_*: the first level of every command except the GET_INFO reply. */
export const ipvsCommandAttributes = defineAttributeSet('command', [
  { id: 1, name: 'service', type: 'nested', set: ipvsServiceAttributes },
  { id: 2, name: 'destination', type: 'nested', set: ipvsDestinationAttributes },
  { id: 3, name: 'daemon', type: 'nested', set: ipvsDaemonAttributes },
  { id: 4, name: 'timeoutTcp', type: 'u32' }, // seconds
  { id: 5, name: 'timeoutTcpFin', type: 'u32' },
  { id: 6, name: 'timeoutUdp', type: 'u32' },
] as const);

/** IPVS_INFO_ATTR_*: the first level of the GET_INFO reply (command SET_INFO). */
export const ipvsInfoAttributes = defineAttributeSet('info', [
  { id: 1, name: 'version', type: 'u32' }, // IP_VS_VERSION_CODE, 0x010201 = 1.2.1
  { id: 2, name: 'connectionTableSize', type: 'u32' },
] as const);

// ---------------------------------------------------------------------------------------------
// Generic attribute reading and writing

/** Encodes `values` in the table's (ascending id) order; absent values are left out. Throws
 * IpvsMessageError on a value that does not fit its attribute. */
export function encodeAttributes<F extends readonly AttributeSpec[]>(set: AttributeSet<F>, values: AttributeValues<F>): Uint8Array {
  const parts: Uint8Array[] = [];
  const record = values as Record<string, unknown>;
  for (const spec of set.specs) {
    const value = record[spec.name];
    if (value === undefined) continue;
    parts.push(encodeAttribute(set.name, spec, value));
  }
  return concat(parts);
}

function encodeAttribute(setName: string, spec: AttributeSpec, value: unknown): Uint8Array {
  const where = `${setName}.${spec.name}`;
  let payload: Uint8Array;
  let type = spec.id;
  switch (spec.type) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'be16': {
      const sizeBytes = fixedSizeBytes[spec.type];
      const max = 2 ** (8 * sizeBytes) - 1;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
        throw new IpvsMessageError(`${where} must be an integer in [0, ${max}], got ${String(value)}`);
      }
      payload = new Uint8Array(sizeBytes);
      const view = viewOf(payload);
      if (spec.type === 'u8') view.setUint8(0, value);
      else if (spec.type === 'u16') view.setUint16(0, value, littleEndian);
      else if (spec.type === 'be16') view.setUint16(0, value, false);
      else view.setUint32(0, value, littleEndian);
      break;
    }
    case 'u64': {
      if (typeof value !== 'bigint' || value < 0n || value > 0xffff_ffff_ffff_ffffn) {
        throw new IpvsMessageError(`${where} must be a bigint in [0, 2^64), got ${String(value)}`);
      }
      payload = new Uint8Array(8);
      viewOf(payload).setBigUint64(0, value, littleEndian);
      break;
    }
    case 'flags': {
      const flags = value as Partial<IpvsFlags> | null;
      if (typeof flags !== 'object' || flags === null || !isU32(flags.flags) || !isU32(flags.mask)) {
        throw new IpvsMessageError(`${where} must be {flags, mask} of unsigned 32-bit integers`);
      }
      payload = new Uint8Array(8);
      viewOf(payload).setUint32(0, flags.flags, littleEndian);
      viewOf(payload).setUint32(4, flags.mask, littleEndian);
      break;
    }
    case 'binary': {
      if (!(value instanceof Uint8Array) || value.length > spec.maxBytes) {
        throw new IpvsMessageError(`${where} must be at most ${spec.maxBytes} bytes`);
      }
      payload = value;
      break;
    }
    case 'string': {
      if (typeof value !== 'string' || value.includes('\u0000')) throw new IpvsMessageError(`${where} must be a string without NUL`);
      const text = Buffer.from(value, 'utf8');
      if (text.length + 1 > spec.maxBytes) throw new IpvsMessageError(`${where} must be at most ${spec.maxBytes - 1} bytes, got ${JSON.stringify(value)}`);
      payload = new Uint8Array(text.length + 1);
      payload.set(text, 0);
      break;
    }
    case 'nested': {
      if (typeof value !== 'object' || value === null) throw new IpvsMessageError(`${where} must be an object`);
      payload = encodeAttributes(spec.set, value as AttributeValues<readonly AttributeSpec[]>);
      type |= nlaFlagNested;
      break;
    }
  }
  const length = attributeHeaderBytes + payload.length;
  if (align(length) > attributeBytesMax) throw new IpvsMessageError(`${where} is too long (${length} bytes)`);
  const bytes = new Uint8Array(align(length));
  const view = viewOf(bytes);
  view.setUint16(0, length, littleEndian);
  view.setUint16(2, type, littleEndian);
  bytes.set(payload, attributeHeaderBytes);
  return bytes;
}

/** Decodes a run of attributes against `set`. Unknown ids are skipped; a repeated id keeps the
 * last copy, as the kernel's nla_parse does. */
export function decodeAttributes<F extends readonly AttributeSpec[]>(set: AttributeSet<F>, bytes: Uint8Array): AttributeValues<F> {
  const values: Record<string, unknown> = {};
  const view = viewOf(bytes);
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < attributeHeaderBytes) {
      throw new IpvsMessageError(`${set.name}: ${bytes.length - offset} trailing bytes, shorter than an attribute header`);
    }
    const length = view.getUint16(offset, littleEndian);
    const id = view.getUint16(offset + 2, littleEndian) & nlaTypeMask;
    if (length < attributeHeaderBytes || offset + length > bytes.length) {
      throw new IpvsMessageError(`${set.name}: attribute ${id} at byte ${offset} has length ${length}, ${bytes.length - offset} bytes left`);
    }
    const payload = bytes.subarray(offset + attributeHeaderBytes, offset + length);
    const spec = set.byId.get(id);
    if (spec !== undefined) values[spec.name] = decodeAttribute(set.name, spec, payload);
    // The last attribute's padding may be left off by the sender.
    offset = Math.min(offset + align(length), bytes.length);
  }
  return values as AttributeValues<F>;
}

function decodeAttribute(setName: string, spec: AttributeSpec, payload: Uint8Array): unknown {
  const where = `${setName}.${spec.name}`;
  const view = viewOf(payload);
  switch (spec.type) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'be16':
    case 'u64':
    case 'flags': {
      const sizeBytes = fixedSizeBytes[spec.type];
      if (payload.length !== sizeBytes) throw new IpvsMessageError(`${where} has ${payload.length} bytes, expected ${sizeBytes}`);
      if (spec.type === 'u8') return view.getUint8(0);
      if (spec.type === 'u16') return view.getUint16(0, littleEndian);
      if (spec.type === 'be16') return view.getUint16(0, false);
      if (spec.type === 'u32') return view.getUint32(0, littleEndian);
      if (spec.type === 'u64') return view.getBigUint64(0, littleEndian);
      return { flags: view.getUint32(0, littleEndian), mask: view.getUint32(4, littleEndian) } satisfies IpvsFlags;
    }
    case 'binary':
      if (payload.length > spec.maxBytes) throw new IpvsMessageError(`${where} has ${payload.length} bytes, at most ${spec.maxBytes} allowed`);
      return Uint8Array.from(payload);
    case 'string': {
      const nul = payload.indexOf(0);
      if (nul < 0) throw new IpvsMessageError(`${where} is not NUL-terminated`);
      if (nul + 1 > spec.maxBytes) throw new IpvsMessageError(`${where} is longer than ${spec.maxBytes - 1} bytes`);
      return Buffer.from(payload.subarray(0, nul)).toString('utf8');
    }
    case 'nested':
      return decodeAttributes(spec.set, payload);
  }
}

// ---------------------------------------------------------------------------------------------
// Messages: genlmsghdr + attributes

export interface IpvsMessage {
  /** One of `ipvsCommand`'s values (decoding keeps unknown numbers; the caller checks). */
  command: number;
  version: number;
  /** The attributes after the generic netlink header, not yet decoded. */
  attributes: Uint8Array;
}

export function encodeIpvsMessage(message: IpvsMessage): Uint8Array {
  if (!isU8(message.command) || !isU8(message.version)) throw new IpvsMessageError('command and version must be integers in [0, 255]');
  const bytes = new Uint8Array(genlHeaderBytes + message.attributes.length);
  bytes[0] = message.command;
  bytes[1] = message.version;
  // bytes 2..3: genlmsghdr.reserved, zero.
  bytes.set(message.attributes, genlHeaderBytes);
  return bytes;
}

export function decodeIpvsMessage(bytes: Uint8Array): IpvsMessage {
  if (bytes.length < genlHeaderBytes) throw new IpvsMessageError(`a generic netlink message of ${bytes.length} bytes`);
  return { command: bytes[0]!, version: bytes[1]!, attributes: bytes.subarray(genlHeaderBytes) };
}

// ---------------------------------------------------------------------------------------------
// Domain values

export type IpFamily = 'ipv4' | 'ipv6';
export type IpvsProtocol = 'tcp' | 'udp' | 'sctp';
/** IP_VS_CONN_F_MASQ, _LOCALNODE, _TUNNEL, _DROUTE, _BYPASS. raftvip itself uses masquerade. */
export type ForwardingMethod = 'masquerade' | 'local' | 'tunnel' | 'direct-route' | 'bypass';

const familyNumbers: Record<IpFamily, number> = { ipv4: addressFamilyIPv4, ipv6: addressFamilyIPv6 };
const protocolNumbers: Record<IpvsProtocol, number> = { tcp: 6, udp: 17, sctp: 132 };
const forwardingMethodNumbers: Record<ForwardingMethod, number> = { masquerade: 0, local: 1, tunnel: 2, 'direct-route': 3, bypass: 4 };

/** A service is identified either by protocol, address and port, or by a firewall mark. */
export type IpvsServiceKey = IpvsAddressServiceKey | IpvsFwmarkServiceKey;

export interface IpvsAddressServiceKey {
  readonly kind: 'address';
  readonly family: IpFamily;
  readonly protocol: IpvsProtocol;
  /** Canonical text (dotted quad or RFC 5952). */
  readonly address: string;
  readonly port: number;
}

export interface IpvsFwmarkServiceKey {
  readonly kind: 'fwmark';
  readonly family: IpFamily;
  /** Non-zero. */
  readonly fwmark: number;
}

/** What IPVS_CMD_NEW_SERVICE and _SET_SERVICE carry. */
export interface IpvsService {
  readonly key: IpvsServiceKey;
  /** The kernel's scheduler name ("rr", "wlc", "mh", ...; "none" if it has none). */
  readonly scheduler: string;
  /** IP_VS_SVC_F_* bits; sent with mask ~0, so they replace the service's flags. */
  readonly flags: number;
  /** Persistence timeout; 0 without persistence. */
  readonly timeoutSeconds: number;
  /** Persistence netmask: 0xffffffff for IPv4, the prefix length 1..128 for IPv6 (the kernel
   * checks those ranges even without persistence). */
  readonly netmask: number;
  /** The persistence engine ("sip"), or null. */
  readonly persistenceEngine: string | null;
}

export interface IpvsStats {
  connections: bigint;
  inPackets: bigint;
  outPackets: bigint;
  inBytes: bigint;
  outBytes: bigint;
  connectionsPerSecond: bigint;
  inPacketsPerSecond: bigint;
  outPacketsPerSecond: bigint;
  inBytesPerSecond: bigint;
  outBytesPerSecond: bigint;
}

/** A service as a dump reports it. */
export interface IpvsServiceEntry extends IpvsService {
  /** Preferring the 64-bit block when the kernel sends both; null if it sent neither. */
  readonly stats: IpvsStats | null;
}

export interface IpvsDestinationKey {
  readonly family: IpFamily;
  /** Canonical text. */
  readonly address: string;
  readonly port: number;
}

/** What IPVS_CMD_NEW_DEST and _SET_DEST carry. */
export interface IpvsDestination extends IpvsDestinationKey {
  readonly forwardingMethod: ForwardingMethod;
  /** 0 drains: no new connections. */
  readonly weight: number;
  /** Connection thresholds; 0 means none. */
  readonly upperThreshold: number;
  readonly lowerThreshold: number;
}

export interface IpvsTunnel {
  /** IP_VS_CONN_F_TUNNEL_TYPE_*: 0 IPIP, 1 GUE, 2 GRE. */
  readonly type: number;
  readonly port: number;
  readonly flags: number;
}

/** A destination as a dump reports it. */
export interface IpvsDestinationEntry extends IpvsDestination {
  readonly activeConnections: number;
  readonly inactiveConnections: number;
  readonly persistentConnections: number;
  /** Null when the kernel did not send the tunnel attributes (before 5.2). */
  readonly tunnel: IpvsTunnel | null;
  readonly stats: IpvsStats | null;
}

/** Connection timeouts in seconds, as IPVS_CMD_SET_CONFIG / GET_CONFIG carry them. An absent
 * value is left as it is by the kernel; 0 is also "leave as it is" (ip_vs_set_timeout). */
export interface IpvsTimeouts {
  tcpSeconds?: number;
  tcpFinSeconds?: number;
  udpSeconds?: number;
}

export interface IpvsInfo {
  /** IP_VS_VERSION_CODE: (major << 16) | (minor << 8) | patch. */
  readonly version: number;
  readonly connectionTableSize: number;
}

// ---------------------------------------------------------------------------------------------
// Encode/decode pairs

type ServiceValues = AttributeValues<typeof ipvsServiceAttributes.specs>;
type DestinationValues = AttributeValues<typeof ipvsDestinationAttributes.specs>;
type StatsValues = AttributeValues<typeof ipvsStatsAttributes.specs>;
type Stats64Values = AttributeValues<typeof ipvsStats64Attributes.specs>;

/** The attributes of NEW_SERVICE / SET_SERVICE: IPVS_CMD_ATTR_SERVICE with the full entry. */
export function encodeServiceAttributes(service: IpvsService): Uint8Array {
  if (typeof service.scheduler !== 'string' || service.scheduler.length === 0) throw new IpvsMessageError('service.scheduler must be a scheduler name');
  const values: ServiceValues = {
    ...serviceKeyValues(service.key),
    schedulerName: service.scheduler,
    flags: { flags: requireU32('service.flags', service.flags), mask: 0xffff_ffff },
    timeout: requireU32('service.timeoutSeconds', service.timeoutSeconds),
    netmask: requireU32('service.netmask', service.netmask),
    ...(service.persistenceEngine === null ? {} : { persistenceEngineName: service.persistenceEngine }),
  };
  return encodeAttributes(ipvsCommandAttributes, { service: values });
}

/** Decodes a service entry (a dump reply, or what `encodeServiceAttributes` wrote). The flags
 * are reported as the kernel holds them, `flags & mask`. */
export function decodeServiceAttributes(bytes: Uint8Array): IpvsServiceEntry {
  const service = decodeAttributes(ipvsCommandAttributes, bytes).service;
  if (service === undefined) throw new IpvsMessageError('no IPVS_CMD_ATTR_SERVICE');
  const key = decodeServiceKey(service);
  if (service.schedulerName === undefined || service.flags === undefined || service.timeout === undefined || service.netmask === undefined) {
    throw new IpvsMessageError('a service entry without scheduler, flags, timeout or netmask');
  }
  return {
    key,
    scheduler: service.schedulerName,
    flags: (service.flags.flags & service.flags.mask) >>> 0,
    timeoutSeconds: service.timeout,
    netmask: service.netmask,
    persistenceEngine: service.persistenceEngineName ?? null,
    stats: decodeStats(service.stats, service.stats64),
  };
}

/** The attributes of DEL_SERVICE and of a GET_DEST dump request: the service's identity only. */
export function encodeServiceKeyAttributes(key: IpvsServiceKey): Uint8Array {
  return encodeAttributes(ipvsCommandAttributes, { service: serviceKeyValues(key) });
}

export function decodeServiceKeyAttributes(bytes: Uint8Array): IpvsServiceKey {
  const service = decodeAttributes(ipvsCommandAttributes, bytes).service;
  if (service === undefined) throw new IpvsMessageError('no IPVS_CMD_ATTR_SERVICE');
  return decodeServiceKey(service);
}

/** The attributes of NEW_DEST / SET_DEST: the service's identity and the full destination. */
export function encodeDestinationAttributes(service: IpvsServiceKey, destination: IpvsDestination): Uint8Array {
  const values: DestinationValues = {
    ...destinationKeyValues(destination),
    forwardingMethod: forwardingMethodNumbers[requireMember('destination.forwardingMethod', forwardingMethodNumbers, destination.forwardingMethod)],
    weight: requireInteger('destination.weight', destination.weight, 0, destinationWeightMax),
    upperThreshold: requireU32('destination.upperThreshold', destination.upperThreshold),
    lowerThreshold: requireU32('destination.lowerThreshold', destination.lowerThreshold),
  };
  return encodeAttributes(ipvsCommandAttributes, { service: serviceKeyValues(service), destination: values });
}

/** Decodes a destination: a dump reply entry (no service attribute) or a NEW_DEST / SET_DEST
 * message. `family` is used when the kernel leaves out IPVS_DEST_ATTR_ADDR_FAMILY (before 4.x)
 * and no service attribute says otherwise. */
export function decodeDestinationAttributes(bytes: Uint8Array, options: { family: IpFamily }): { service: IpvsServiceKey | null; destination: IpvsDestinationEntry } {
  const command = decodeAttributes(ipvsCommandAttributes, bytes);
  const service = command.service === undefined ? null : decodeServiceKey(command.service);
  const destination = command.destination;
  if (destination === undefined) throw new IpvsMessageError('no IPVS_CMD_ATTR_DEST');
  const key = decodeDestinationKey(destination, service?.family ?? options.family);
  const { forwardingMethod, weight, upperThreshold, lowerThreshold } = destination;
  if (forwardingMethod === undefined || weight === undefined || upperThreshold === undefined || lowerThreshold === undefined) {
    throw new IpvsMessageError('a destination entry without forwarding method, weight or thresholds');
  }
  const tunnel =
    destination.tunnelType === undefined
      ? null
      : { type: destination.tunnelType, port: destination.tunnelPort ?? 0, flags: destination.tunnelFlags ?? 0 };
  return {
    service,
    destination: {
      ...key,
      forwardingMethod: decodeForwardingMethod(forwardingMethod),
      weight: requireDecodedWeight(weight),
      upperThreshold,
      lowerThreshold,
      activeConnections: destination.activeConnections ?? 0,
      inactiveConnections: destination.inactiveConnections ?? 0,
      persistentConnections: destination.persistentConnections ?? 0,
      tunnel,
      stats: decodeStats(destination.stats, destination.stats64),
    },
  };
}

/** The attributes of DEL_DEST: the service's identity and the destination's address and port. */
export function encodeDestinationKeyAttributes(service: IpvsServiceKey, destination: IpvsDestinationKey): Uint8Array {
  return encodeAttributes(ipvsCommandAttributes, { service: serviceKeyValues(service), destination: destinationKeyValues(destination) });
}

export function decodeDestinationKeyAttributes(bytes: Uint8Array): { service: IpvsServiceKey; destination: IpvsDestinationKey } {
  const command = decodeAttributes(ipvsCommandAttributes, bytes);
  if (command.service === undefined || command.destination === undefined) throw new IpvsMessageError('no IPVS_CMD_ATTR_SERVICE or IPVS_CMD_ATTR_DEST');
  const service = decodeServiceKey(command.service);
  return { service, destination: decodeDestinationKey(command.destination, service.family) };
}

/** The attributes of SET_CONFIG (and of the GET_CONFIG reply). */
export function encodeTimeoutAttributes(timeouts: IpvsTimeouts): Uint8Array {
  const check = (name: string, value: number | undefined): number | undefined => (value === undefined ? undefined : requireU32(name, value));
  return encodeAttributes(ipvsCommandAttributes, {
    timeoutTcp: check('timeouts.tcpSeconds', timeouts.tcpSeconds),
    timeoutTcpFin: check('timeouts.tcpFinSeconds', timeouts.tcpFinSeconds),
    timeoutUdp: check('timeouts.udpSeconds', timeouts.udpSeconds),
  });
}

export function decodeTimeoutAttributes(bytes: Uint8Array): IpvsTimeouts {
  const command = decodeAttributes(ipvsCommandAttributes, bytes);
  const timeouts: IpvsTimeouts = {};
  if (command.timeoutTcp !== undefined) timeouts.tcpSeconds = command.timeoutTcp;
  if (command.timeoutTcpFin !== undefined) timeouts.tcpFinSeconds = command.timeoutTcpFin;
  if (command.timeoutUdp !== undefined) timeouts.udpSeconds = command.timeoutUdp;
  return timeouts;
}

/** The attributes of the GET_INFO reply (the kernel sends them; encoding is for tests). */
export function encodeInfoAttributes(info: IpvsInfo): Uint8Array {
  return encodeAttributes(ipvsInfoAttributes, {
    version: requireU32('info.version', info.version),
    connectionTableSize: requireU32('info.connectionTableSize', info.connectionTableSize),
  });
}

export function decodeInfoAttributes(bytes: Uint8Array): IpvsInfo {
  const info = decodeAttributes(ipvsInfoAttributes, bytes);
  if (info.version === undefined || info.connectionTableSize === undefined) throw new IpvsMessageError('an info reply without version or table size');
  return { version: info.version, connectionTableSize: info.connectionTableSize };
}

/** "1.2.1" from IP_VS_VERSION_CODE. */
export function formatIpvsVersion(version: number): string {
  return `${(version >> 16) & 0xff}.${(version >> 8) & 0xff}.${version & 0xff}`;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function serviceKeyValues(key: IpvsServiceKey): ServiceValues {
  if (typeof key !== 'object' || key === null) throw new IpvsMessageError('service key must be an object');
  const family = familyNumbers[requireMember('service.family', familyNumbers, key.family)];
  switch (key.kind) {
    case 'address':
      return {
        family,
        protocol: protocolNumbers[requireMember('service.protocol', protocolNumbers, key.protocol)],
        address: encodeAddress('service.address', key.family, key.address),
        port: requireInteger('service.port', key.port, 0, 0xffff),
      };
    case 'fwmark':
      return { family, fwmark: requireInteger('service.fwmark', key.fwmark, 1, 0xffff_ffff) };
    default:
      throw new IpvsMessageError(`service key kind must be "address" or "fwmark", got ${JSON.stringify((key as { kind: unknown }).kind)}`);
  }
}

function decodeServiceKey(service: ServiceValues): IpvsServiceKey {
  if (service.family === undefined) throw new IpvsMessageError('a service without IPVS_SVC_ATTR_AF');
  const family = decodeFamily(service.family);
  if (service.fwmark !== undefined && service.fwmark !== 0) return { kind: 'fwmark', family, fwmark: service.fwmark };
  if (service.protocol === undefined || service.address === undefined || service.port === undefined) {
    throw new IpvsMessageError('a service without firewall mark, protocol, address or port');
  }
  const protocol = memberFor(protocolNumbers, service.protocol);
  if (protocol === null) throw new IpvsMessageError(`unknown IPVS service protocol ${service.protocol}`);
  return { kind: 'address', family, protocol, address: decodeAddress('service.address', family, service.address), port: service.port };
}

function destinationKeyValues(destination: IpvsDestinationKey): DestinationValues {
  if (typeof destination !== 'object' || destination === null) throw new IpvsMessageError('destination must be an object');
  const family = requireMember('destination.family', familyNumbers, destination.family);
  return {
    address: encodeAddress('destination.address', family, destination.address),
    port: requireInteger('destination.port', destination.port, 0, 0xffff),
    family: familyNumbers[family],
  };
}

function decodeDestinationKey(destination: DestinationValues, fallbackFamily: IpFamily): IpvsDestinationKey {
  if (destination.address === undefined || destination.port === undefined) throw new IpvsMessageError('a destination without address or port');
  const family = destination.family === undefined ? fallbackFamily : decodeFamily(destination.family);
  return { family, address: decodeAddress('destination.address', family, destination.address), port: destination.port };
}

function decodeFamily(value: number): IpFamily {
  const family = memberFor(familyNumbers, value);
  if (family === null) throw new IpvsMessageError(`unknown address family ${value}`);
  return family;
}

function decodeForwardingMethod(value: number): ForwardingMethod {
  const method = memberFor(forwardingMethodNumbers, value & forwardingMethodMask);
  if (method === null) throw new IpvsMessageError(`unknown forwarding method ${value & forwardingMethodMask}`);
  return method;
}

function requireDecodedWeight(value: number): number {
  // The kernel holds the weight in a signed int and refuses negatives, so the top bit is never set.
  if (value > destinationWeightMax) throw new IpvsMessageError(`destination weight ${value} is negative as a signed int`);
  return value;
}

function decodeStats(stats: StatsValues | undefined, stats64: Stats64Values | undefined): IpvsStats | null {
  const source = stats64 ?? stats;
  if (source === undefined) return null;
  const big = (value: number | bigint | undefined): bigint => (value === undefined ? 0n : BigInt(value));
  return {
    connections: big(source.connections),
    inPackets: big(source.inPackets),
    outPackets: big(source.outPackets),
    inBytes: big(source.inBytes),
    outBytes: big(source.outBytes),
    connectionsPerSecond: big(source.connectionsPerSecond),
    inPacketsPerSecond: big(source.inPacketsPerSecond),
    outPacketsPerSecond: big(source.outPacketsPerSecond),
    inBytesPerSecond: big(source.inBytesPerSecond),
    outBytesPerSecond: big(source.outBytesPerSecond),
  };
}

/** union nf_inet_addr: 16 bytes, an IPv4 address in the first 4 (as the kernel and ipvsadm
 * send it). */
function encodeAddress(where: string, family: IpFamily, text: string): Uint8Array {
  const parsed = family === 'ipv4' ? parseIPv4(text) : parseIPv6(text);
  if (parsed === null) throw new IpvsMessageError(`${where} must be an ${family} address, got ${JSON.stringify(text)}`);
  const bytes = new Uint8Array(inetAddressBytes);
  bytes.set(parsed, 0);
  return bytes;
}

function decodeAddress(where: string, family: IpFamily, bytes: Uint8Array): string {
  if (family === 'ipv4') {
    if (bytes.length !== 4 && bytes.length !== inetAddressBytes) throw new IpvsMessageError(`${where}: an IPv4 address of ${bytes.length} bytes`);
    return formatIPv4(bytes.subarray(0, 4));
  }
  if (bytes.length !== inetAddressBytes) throw new IpvsMessageError(`${where}: an IPv6 address of ${bytes.length} bytes`);
  return formatIPv6(bytes);
}

function requireMember<K extends string>(where: string, table: Record<K, number>, value: unknown): K {
  if (typeof value !== 'string' || !Object.hasOwn(table, value)) {
    throw new IpvsMessageError(`${where} must be one of ${Object.keys(table).join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as K;
}

function memberFor<K extends string>(table: Record<K, number>, value: number): K | null {
  for (const [name, number] of Object.entries(table) as [K, number][]) if (number === value) return name;
  return null;
}

function requireInteger(where: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new IpvsMessageError(`${where} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function requireU32(where: string, value: unknown): number {
  return requireInteger(where, value, 0, 0xffff_ffff);
}

function isU32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

function isU8(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xff;
}

function align(length: number): number {
  return (length + attributeAlignBytes - 1) & ~(attributeAlignBytes - 1);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}
