// Ethernet II frames carrying an ICMPv6 Neighbour Advertisement (RFC 4861 §4.4), as the VIP
// holder sends them unsolicited to announce an IPv6 VIP (§7.2.6): to all-nodes ff02::1
// (Ethernet 33:33:00:00:00:01, RFC 2464 §7), hop limit 255, Override set, Solicited and Router
// clear, with a Target Link-Layer Address option carrying our MAC.
//
// Pure and symmetric: the encoder computes the ICMPv6 checksum over the pseudo-header (RFC 8200
// §8.1), the decoder verifies it and applies the receiver checks of RFC 4861 §7.1.2 (hop limit
// 255, code 0, length ≥ 24, target not multicast, Solicited clear when sent to a multicast
// address, no zero-length option). The encoder applies the same checks, so whatever it builds
// decodes, and decode(encode(p)) equals p. `decodeNeighbourAdvertisement` returns a PacketError
// for anything else and never throws. Extension headers are not supported (NDP never needs
// them); options other than the Target Link-Layer Address are skipped, as §7.1.2 requires.

import {
  PacketError,
  defineLayout,
  etherTypeIPv6,
  ethernetHeader,
  isUnicastMac,
  parseIPv6,
  readLayout,
  writeLayout,
} from './packet-layout.js';

/** The fixed IPv6 header (RFC 8200 §3). The first word packs version (4 bits), traffic class
 * (8) and flow label (20). */
export const ipv6Header = defineLayout('ipv6', [
  { name: 'versionClassFlow', offset: 0, size: 4, type: 'u32' },
  { name: 'payloadLength', offset: 4, size: 2, type: 'u16' },
  { name: 'nextHeader', offset: 6, size: 1, type: 'u8' },
  { name: 'hopLimit', offset: 7, size: 1, type: 'u8' },
  { name: 'sourceIp', offset: 8, size: 16, type: 'ipv6' },
  { name: 'destinationIp', offset: 24, size: 16, type: 'ipv6' },
] as const);

/** The ICMPv6 Neighbour Advertisement message before its options (RFC 4861 §4.4). `flags` packs
 * R (bit 31), S (bit 30), O (bit 29) and 29 reserved bits. */
export const neighbourAdvertisementHeader = defineLayout('neighbour-advertisement', [
  { name: 'type', offset: 0, size: 1, type: 'u8' },
  { name: 'code', offset: 1, size: 1, type: 'u8' },
  { name: 'checksum', offset: 2, size: 2, type: 'u16' },
  { name: 'flags', offset: 4, size: 4, type: 'u32' },
  { name: 'targetAddress', offset: 8, size: 16, type: 'ipv6' },
] as const);

/** Type and length (in units of 8 bytes) that open every NDP option (RFC 4861 §4.6). */
export const ndpOptionHeader = defineLayout('ndp-option', [
  { name: 'optionType', offset: 0, size: 1, type: 'u8' },
  { name: 'optionLength', offset: 1, size: 1, type: 'u8' },
] as const);

/** The Source/Target Link-Layer Address option for Ethernet (RFC 4861 §4.6.1, RFC 2464 §8). */
export const linkLayerAddressOption = defineLayout('link-layer-address-option', [
  { name: 'optionType', offset: 0, size: 1, type: 'u8' },
  { name: 'optionLength', offset: 1, size: 1, type: 'u8' },
  { name: 'linkLayerAddress', offset: 2, size: 6, type: 'mac' },
] as const);

export const nextHeaderIcmpV6 = 58;
export const icmpV6TypeNeighbourAdvertisement = 136;
export const ndpHopLimit = 255;
export const ndpOptionTargetLinkLayerAddress = 2;
export const allNodesAddress = 'ff02::1';
/** 33:33 followed by the low 32 bits of ff02::1 (RFC 2464 §7). */
export const allNodesMac = '33:33:00:00:00:01';

const flagRouter = 0x8000_0000;
const flagSolicited = 0x4000_0000;
const flagOverride = 0x2000_0000;

const ethernetLengthBytes = ethernetHeader.lengthBytes;
const icmpOffset = ethernetLengthBytes + ipv6Header.lengthBytes;

export interface NeighbourAdvertisement {
  destinationMac: string;
  sourceMac: string;
  trafficClass: number;
  flowLabel: number;
  sourceIp: string;
  destinationIp: string;
  router: boolean;
  solicited: boolean;
  override: boolean;
  targetAddress: string;
  /** The Target Link-Layer Address option, or null when the advertisement carries none. */
  targetLinkLayerAddress: string | null;
}

/** An unsolicited neighbour advertisement for the VIP (RFC 4861 §7.2.6): to all nodes, Override
 * set so that every cache replaces its entry, target = VIP, TLLA = our MAC. The IPv6 source is
 * `sourceAddress` if given (a link-local address of the interface), else the VIP itself, which
 * is what Linux sends for an address it owns. Throws PacketError on invalid input. */
export function buildUnsolicitedNeighbourAdvertisement(options: {
  mac: string;
  targetAddress: string;
  sourceAddress?: string;
}): Uint8Array {
  return encodeNeighbourAdvertisement({
    destinationMac: allNodesMac,
    sourceMac: options.mac,
    trafficClass: 0,
    flowLabel: 0,
    sourceIp: options.sourceAddress ?? options.targetAddress,
    destinationIp: allNodesAddress,
    router: false,
    solicited: false,
    override: true,
    targetAddress: options.targetAddress,
    targetLinkLayerAddress: options.mac,
  });
}

/** NeighbourAdvertisement → frame with a correct checksum. Throws PacketError on an invalid
 * field. */
export function encodeNeighbourAdvertisement(packet: NeighbourAdvertisement): Uint8Array {
  const problem = checkAdvertisement(packet);
  if (problem !== null) throw new PacketError(problem);
  const { trafficClass, flowLabel } = packet;
  if (!Number.isInteger(trafficClass) || trafficClass < 0 || trafficClass > 0xff) {
    throw new PacketError(`traffic class must be an integer in [0, 255], got ${String(trafficClass)}`);
  }
  if (!Number.isInteger(flowLabel) || flowLabel < 0 || flowLabel > 0xfffff) {
    throw new PacketError(`flow label must be an integer in [0, 1048575], got ${String(flowLabel)}`);
  }
  const optionsLengthBytes = packet.targetLinkLayerAddress === null ? 0 : linkLayerAddressOption.lengthBytes;
  const payloadLength = neighbourAdvertisementHeader.lengthBytes + optionsLengthBytes;
  const frame = new Uint8Array(icmpOffset + payloadLength);
  writeLayout(ethernetHeader, { destinationMac: packet.destinationMac, sourceMac: packet.sourceMac, etherType: etherTypeIPv6 }, frame, 0);
  writeLayout(
    ipv6Header,
    {
      versionClassFlow: ((6 << 28) | (trafficClass << 20) | flowLabel) >>> 0,
      payloadLength,
      nextHeader: nextHeaderIcmpV6,
      hopLimit: ndpHopLimit,
      sourceIp: packet.sourceIp,
      destinationIp: packet.destinationIp,
    },
    frame,
    ethernetLengthBytes,
  );
  const flags = (packet.router ? flagRouter : 0) | (packet.solicited ? flagSolicited : 0) | (packet.override ? flagOverride : 0);
  writeLayout(
    neighbourAdvertisementHeader,
    { type: icmpV6TypeNeighbourAdvertisement, code: 0, checksum: 0, flags: flags >>> 0, targetAddress: packet.targetAddress },
    frame,
    icmpOffset,
  );
  if (packet.targetLinkLayerAddress !== null) {
    writeLayout(
      linkLayerAddressOption,
      { optionType: ndpOptionTargetLinkLayerAddress, optionLength: 1, linkLayerAddress: packet.targetLinkLayerAddress },
      frame,
      icmpOffset + neighbourAdvertisementHeader.lengthBytes,
    );
  }
  const message = frame.subarray(icmpOffset);
  const checksum = icmpV6Checksum({ sourceIp: packet.sourceIp, destinationIp: packet.destinationIp, message });
  new DataView(frame.buffer, frame.byteOffset).setUint16(icmpOffset + 2, checksum);
  return frame;
}

/** Frame → NeighbourAdvertisement, or a PacketError saying why it is not a valid one. Bytes after
 * the IPv6 payload (Ethernet padding) are ignored. Never throws. */
export function decodeNeighbourAdvertisement(frame: Uint8Array): NeighbourAdvertisement | PacketError {
  if (!(frame instanceof Uint8Array)) return new PacketError('NDP frame is not a byte array');
  if (frame.length < icmpOffset + neighbourAdvertisementHeader.lengthBytes) {
    return new PacketError(`NDP frame is ${frame.length} bytes, too short for a neighbour advertisement`);
  }
  const ethernet = readLayout(ethernetHeader, frame, 0);
  if (ethernet.etherType !== etherTypeIPv6) return new PacketError(`EtherType 0x${ethernet.etherType.toString(16)} is not IPv6`);
  const ip = readLayout(ipv6Header, frame, ethernetLengthBytes);
  if (ip.versionClassFlow >>> 28 !== 6) return new PacketError(`IP version ${ip.versionClassFlow >>> 28} is not 6`);
  if (ip.nextHeader !== nextHeaderIcmpV6) return new PacketError(`IPv6 next header ${ip.nextHeader} is not ICMPv6 (58)`);
  if (ip.hopLimit !== ndpHopLimit) return new PacketError(`hop limit ${ip.hopLimit} is not 255: not from the local link`);
  if (ip.payloadLength < neighbourAdvertisementHeader.lengthBytes) {
    return new PacketError(`ICMPv6 length ${ip.payloadLength} is shorter than a neighbour advertisement (24)`);
  }
  if (icmpOffset + ip.payloadLength > frame.length) {
    return new PacketError(`IPv6 payload length ${ip.payloadLength} runs past the end of the ${frame.length}-byte frame`);
  }
  const message = frame.subarray(icmpOffset, icmpOffset + ip.payloadLength);
  const header = readLayout(neighbourAdvertisementHeader, message, 0);
  if (header.type !== icmpV6TypeNeighbourAdvertisement) return new PacketError(`ICMPv6 type ${header.type} is not a neighbour advertisement (136)`);
  if (header.code !== 0) return new PacketError(`ICMPv6 code ${header.code} is not 0`);
  if (icmpV6Checksum({ sourceIp: ip.sourceIp, destinationIp: ip.destinationIp, message }) !== 0) {
    return new PacketError(`ICMPv6 checksum 0x${header.checksum.toString(16)} does not match`);
  }

  let targetLinkLayerAddress: string | null = null;
  for (let at = neighbourAdvertisementHeader.lengthBytes; at < message.length; ) {
    if (at + ndpOptionHeader.lengthBytes > message.length) return new PacketError(`truncated NDP option at ICMPv6 byte ${at}`);
    const option = readLayout(ndpOptionHeader, message, at);
    const optionBytes = option.optionLength * 8;
    if (optionBytes === 0) return new PacketError(`NDP option ${option.optionType} at ICMPv6 byte ${at} has length 0`);
    if (at + optionBytes > message.length) return new PacketError(`NDP option ${option.optionType} at ICMPv6 byte ${at} runs past the message`);
    if (option.optionType === ndpOptionTargetLinkLayerAddress && targetLinkLayerAddress === null) {
      if (optionBytes !== linkLayerAddressOption.lengthBytes) {
        return new PacketError(`Target Link-Layer Address option is ${optionBytes} bytes, not 8 (Ethernet)`);
      }
      targetLinkLayerAddress = readLayout(linkLayerAddressOption, message, at).linkLayerAddress;
    }
    at += optionBytes;
  }

  const packet: NeighbourAdvertisement = {
    destinationMac: ethernet.destinationMac,
    sourceMac: ethernet.sourceMac,
    trafficClass: (ip.versionClassFlow >>> 20) & 0xff,
    flowLabel: ip.versionClassFlow & 0xfffff,
    sourceIp: ip.sourceIp,
    destinationIp: ip.destinationIp,
    router: (header.flags & flagRouter) !== 0,
    solicited: (header.flags & flagSolicited) !== 0,
    override: (header.flags & flagOverride) !== 0,
    targetAddress: header.targetAddress,
    targetLinkLayerAddress,
  };
  const problem = checkAdvertisement(packet);
  return problem === null ? packet : new PacketError(problem);
}

/** The Internet checksum (RFC 1071) of an ICMPv6 message under its pseudo-header (RFC 8200
 * §8.1: source, destination, upper-layer length as 32 bits, 3 zero bytes, next header 58).
 * With the message's checksum field zeroed this is the value to write; over a message with a
 * correct checksum it is 0. Throws PacketError if an address does not parse. */
export function icmpV6Checksum(options: { sourceIp: string; destinationIp: string; message: Uint8Array }): number {
  const source = parseIPv6(options.sourceIp);
  const destination = parseIPv6(options.destinationIp);
  if (source === null || destination === null) throw new PacketError('checksum needs two IPv6 addresses');
  const length = options.message.length;
  const pseudoHeader = new Uint8Array(40);
  pseudoHeader.set(source, 0);
  pseudoHeader.set(destination, 16);
  new DataView(pseudoHeader.buffer).setUint32(32, length);
  pseudoHeader[39] = nextHeaderIcmpV6;
  let sum = 0;
  for (const chunk of [pseudoHeader, options.message]) {
    for (let i = 0; i < chunk.length; i += 2) sum += (chunk[i]! << 8) | (chunk[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/** Checks both directions share (RFC 4861 §7.1.2 and unicast senders). */
function checkAdvertisement(packet: NeighbourAdvertisement): string | null {
  if (!isUnicastMac(packet.sourceMac)) return `Ethernet source ${JSON.stringify(packet.sourceMac)} is not a unicast MAC`;
  const target = parseIPv6(packet.targetAddress);
  if (target === null) return `target ${JSON.stringify(packet.targetAddress)} is not an IPv6 address`;
  if (target[0] === 0xff) return `target ${packet.targetAddress} is a multicast address`;
  const source = parseIPv6(packet.sourceIp);
  if (source === null) return `IPv6 source ${JSON.stringify(packet.sourceIp)} is not an IPv6 address`;
  if (source[0] === 0xff) return `IPv6 source ${packet.sourceIp} is a multicast address`;
  const destination = parseIPv6(packet.destinationIp);
  if (destination === null) return `IPv6 destination ${JSON.stringify(packet.destinationIp)} is not an IPv6 address`;
  if (destination[0] === 0xff && packet.solicited) return 'a solicited advertisement sent to a multicast address';
  if (packet.targetLinkLayerAddress !== null && !isUnicastMac(packet.targetLinkLayerAddress)) {
    return `Target Link-Layer Address ${JSON.stringify(packet.targetLinkLayerAddress)} is not a unicast MAC`;
  }
  return null;
}
