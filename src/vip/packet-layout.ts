// Shared machinery of the VIP packet codecs (arp-packet.ts, ndp-packet.ts): the typed
// PacketError, declarative field layouts (name, offset, size, type) read and written by one
// generic pair of functions, and the address conversions those fields need (MAC, IPv4, IPv6).
//
// Everything here is pure: no sockets, clocks or randomness. Every header is described once, as a
// table checked when the module loads (sizes match types, fields are contiguous and start at 0),
// so no byte offset is written anywhere else. Addresses are carried as canonical strings
// (lowercase colon-separated MACs, dotted-quad IPv4, RFC 5952 IPv6), so a decoded packet compares
// with `===` and re-encodes to the same bytes.

import { isIPv4, isIPv6 } from 'node:net';
import { assert } from '../raft/assert.js';

/** A frame received, or a packet asked to be built, is not a valid ARP / neighbour advertisement
 * packet. Decoders return it (they never throw); encoders throw it on invalid input. */
export class PacketError extends Error {
  readonly code = 'RAFTVIP_PACKET_INVALID' as const;

  constructor(detail: string) {
    super(detail);
    this.name = 'PacketError';
  }
}

// ---------------------------------------------------------------------------------------------
// Declarative layouts

export type FieldType = 'u8' | 'u16' | 'u32' | 'mac' | 'ipv4' | 'ipv6';

const fieldTypeSizeBytes: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, mac: 6, ipv4: 4, ipv6: 16 };

export interface FieldSpec {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly type: FieldType;
}

export interface Layout<F extends readonly FieldSpec[]> {
  readonly name: string;
  readonly fields: F;
  readonly lengthBytes: number;
}

type ValueOf<T extends FieldType> = T extends 'u8' | 'u16' | 'u32' ? number : string;

/** The values of a layout's fields, by name: numbers for integers, canonical strings for
 * addresses. */
export type LayoutValues<F extends readonly FieldSpec[]> = {
  -readonly [S in F[number] as S['name']]: ValueOf<S['type']>;
};

/** Checks a layout table once, at module load: a wrong offset is a bug, not an operating
 * condition, so it crashes on import rather than corrupting frames. */
export function defineLayout<const F extends readonly FieldSpec[]>(name: string, fields: F): Layout<F> {
  let offset = 0;
  const names = new Set<string>();
  for (const field of fields) {
    assert(field.offset === offset, `${name}.${field.name} starts at ${field.offset}, expected ${offset}`);
    assert(field.size === fieldTypeSizeBytes[field.type], `${name}.${field.name} size does not match ${field.type}`);
    assert(!names.has(field.name), `${name}.${field.name} appears twice`);
    names.add(field.name);
    offset += field.size;
  }
  return { name, fields, lengthBytes: offset };
}

/** Reads every field of `layout` at `offset`. The caller has checked that the bytes are there. */
export function readLayout<F extends readonly FieldSpec[]>(layout: Layout<F>, bytes: Uint8Array, offset: number): LayoutValues<F> {
  assert(offset >= 0 && offset + layout.lengthBytes <= bytes.length, `${layout.name} read past the end`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values: Record<string, number | string> = {};
  for (const field of layout.fields) {
    const at = offset + field.offset;
    switch (field.type) {
      case 'u8': values[field.name] = view.getUint8(at); break;
      case 'u16': values[field.name] = view.getUint16(at); break;
      case 'u32': values[field.name] = view.getUint32(at); break;
      case 'mac': values[field.name] = formatMac(bytes.subarray(at, at + 6)); break;
      case 'ipv4': values[field.name] = formatIPv4(bytes.subarray(at, at + 4)); break;
      case 'ipv6': values[field.name] = formatIPv6(bytes.subarray(at, at + 16)); break;
    }
  }
  return values as LayoutValues<F>;
}

/** Writes every field of `layout` at `offset`; throws PacketError on a value that does not fit
 * its field (an integer out of range, an address that does not parse). */
export function writeLayout<F extends readonly FieldSpec[]>(
  layout: Layout<F>,
  values: LayoutValues<F>,
  bytes: Uint8Array,
  offset: number,
): void {
  assert(offset >= 0 && offset + layout.lengthBytes <= bytes.length, `${layout.name} write past the end`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const record = values as Record<string, unknown>;
  for (const field of layout.fields) {
    const at = offset + field.offset;
    const value = record[field.name];
    const where = `${layout.name}.${field.name}`;
    switch (field.type) {
      case 'u8':
      case 'u16':
      case 'u32': {
        const max = 2 ** (8 * field.size) - 1;
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
          throw new PacketError(`${where} must be an integer in [0, ${max}], got ${String(value)}`);
        }
        if (field.type === 'u8') view.setUint8(at, value);
        else if (field.type === 'u16') view.setUint16(at, value);
        else view.setUint32(at, value);
        break;
      }
      case 'mac':
        bytes.set(expectParsed(parseMac(value), where, value, 'a MAC address'), at);
        break;
      case 'ipv4':
        bytes.set(expectParsed(parseIPv4(value), where, value, 'an IPv4 address'), at);
        break;
      case 'ipv6':
        bytes.set(expectParsed(parseIPv6(value), where, value, 'an IPv6 address'), at);
        break;
    }
  }
}

function expectParsed(parsed: Uint8Array | null, where: string, value: unknown, what: string): Uint8Array {
  if (parsed === null) throw new PacketError(`${where} must be ${what}, got ${JSON.stringify(value)}`);
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// Ethernet II header, shared by ARP and IPv6 frames (no 802.1Q tag: AF_PACKET sockets see frames
// with the tag already stripped into metadata).

export const ethernetHeader = defineLayout('ethernet', [
  { name: 'destinationMac', offset: 0, size: 6, type: 'mac' },
  { name: 'sourceMac', offset: 6, size: 6, type: 'mac' },
  { name: 'etherType', offset: 12, size: 2, type: 'u16' },
] as const);

export const etherTypeArp = 0x0806;
export const etherTypeIPv6 = 0x86dd;
export const broadcastMac = 'ff:ff:ff:ff:ff:ff';
export const zeroMac = '00:00:00:00:00:00';

// ---------------------------------------------------------------------------------------------
// Address conversions. Parsers return null (never throw) on anything but a valid value.

const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function parseMac(text: unknown): Uint8Array | null {
  if (typeof text !== 'string' || !macPattern.test(text)) return null;
  return Uint8Array.from(text.split(':'), (part) => Number.parseInt(part, 16));
}

export function formatMac(bytes: Uint8Array): string {
  assert(bytes.length === 6, 'a MAC address is 6 bytes');
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** True for a MAC a host may send from: not all zeros and without the group (multicast) bit. */
export function isUnicastMac(mac: string): boolean {
  const bytes = parseMac(mac);
  return bytes !== null && (bytes[0]! & 1) === 0 && bytes.some((b) => b !== 0);
}

export function parseIPv4(text: unknown): Uint8Array | null {
  // node:net rejects leading zeros and out-of-range octets, so each part is a plain decimal.
  if (typeof text !== 'string' || !isIPv4(text)) return null;
  return Uint8Array.from(text.split('.'), (part) => Number(part));
}

export function formatIPv4(bytes: Uint8Array): string {
  assert(bytes.length === 4, 'an IPv4 address is 4 bytes');
  return Array.from(bytes).join('.');
}

/** Any textual IPv6 address (RFC 4291 §2.2, including `::` and a trailing dotted quad) → 16
 * bytes. A zone index (`fe80::1%eth0`) is refused: it names an interface, not bytes. */
export function parseIPv6(text: unknown): Uint8Array | null {
  if (typeof text !== 'string' || text.includes('%') || !isIPv6(text)) return null;
  const groups: number[][] = text.split('::').map((half) => {
    if (half === '') return [];
    return half.split(':').flatMap((part) => {
      if (part.includes('.')) {
        const v4 = parseIPv4(part);
        return v4 === null ? [Number.NaN] : [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
      }
      return [Number.parseInt(part, 16)];
    });
  });
  const head = groups[0] ?? [];
  const tail = groups[1] ?? [];
  const zeros = groups.length === 2 ? 8 - head.length - tail.length : 0;
  const words = [...head, ...new Array<number>(Math.max(zeros, 0)).fill(0), ...tail];
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return null;
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

/** 16 bytes → the RFC 5952 text form: lowercase hex, no leading zeros, the longest run of two or
 * more zero groups (the first, on a tie) written `::`. No dotted-quad tail, as in WHATWG URLs. */
export function formatIPv6(bytes: Uint8Array): string {
  assert(bytes.length === 16, 'an IPv6 address is 16 bytes');
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let bestStart = -1;
  let bestLength = 1; // a single zero group is never compressed
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/** The canonical text of an IPv4 or IPv6 address, or null if it is neither. Lets callers compare
 * addresses written differently (`2001:DB8:0::10` and `2001:db8::10`). */
export function canonicalIpAddress(text: string): string | null {
  const v4 = parseIPv4(text);
  if (v4 !== null) return formatIPv4(v4);
  const v6 = parseIPv6(text);
  return v6 === null ? null : formatIPv6(v6);
}
