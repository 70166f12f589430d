// Ethernet II frames carrying ARP for IPv4 over Ethernet (RFC 826), as the VIP holder sends them
// to announce the VIP (gratuitous ARP, RFC 5227 §3 "ARP Announcement") and as tests read them
// back off the wire.
//
// Pure and symmetric: `encodeArp` and `decodeArp` apply the same checks, so every frame this
// node builds is one `decodeArp` accepts, and decode(encode(p)) equals p. Frames are 42 bytes;
// the driver pads them to Ethernet's 60-byte minimum, and the decoder ignores such padding.
// `decodeArp` returns a PacketError for anything else and never throws.

import {
  PacketError,
  broadcastMac,
  defineLayout,
  etherTypeArp,
  ethernetHeader,
  isUnicastMac,
  readLayout,
  writeLayout,
  zeroMac,
  type LayoutValues,
} from './packet-layout.js';

/** The ARP body for hardware type Ethernet and protocol type IPv4 (RFC 826 "Packet format"). */
export const arpBody = defineLayout('arp', [
  { name: 'hardwareType', offset: 0, size: 2, type: 'u16' }, // ar$hrd: 1 = Ethernet
  { name: 'protocolType', offset: 2, size: 2, type: 'u16' }, // ar$pro: 0x0800 = IPv4
  { name: 'hardwareLength', offset: 4, size: 1, type: 'u8' }, // ar$hln: 6
  { name: 'protocolLength', offset: 5, size: 1, type: 'u8' }, // ar$pln: 4
  { name: 'opcode', offset: 6, size: 2, type: 'u16' }, // ar$op: 1 request, 2 reply
  { name: 'senderMac', offset: 8, size: 6, type: 'mac' }, // ar$sha
  { name: 'senderIp', offset: 14, size: 4, type: 'ipv4' }, // ar$spa
  { name: 'targetMac', offset: 18, size: 6, type: 'mac' }, // ar$tha
  { name: 'targetIp', offset: 24, size: 4, type: 'ipv4' }, // ar$tpa
] as const);

export const arpHardwareTypeEthernet = 1;
export const arpProtocolTypeIPv4 = 0x0800;
/** Bytes of an ARP frame without Ethernet padding: 14 header + 28 body. */
export const arpFrameLengthBytes = ethernetHeader.lengthBytes + arpBody.lengthBytes;

export type ArpOperation = 'request' | 'reply';

const opcodeByOperation: Record<ArpOperation, number> = { request: 1, reply: 2 };

export interface ArpPacket {
  destinationMac: string;
  sourceMac: string;
  operation: ArpOperation;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

/** A gratuitous ARP for the VIP, in one of the two forms hosts and switches honour:
 * - 'request' (RFC 5227 ARP Announcement; Linux `arp_notify`, `arping -U`): opcode 1, sender IP =
 *   target IP = VIP, target MAC all zeros;
 * - 'reply' (`arping -A`): opcode 2, sender IP = target IP = VIP, target MAC = our own MAC.
 * Both go to the broadcast address from our MAC. Throws PacketError on an invalid MAC or IP. */
export function buildGratuitousArp(options: { mac: string; ip: string; kind: ArpOperation }): Uint8Array {
  return encodeArp({
    destinationMac: broadcastMac,
    sourceMac: options.mac,
    operation: options.kind,
    senderMac: options.mac,
    senderIp: options.ip,
    targetMac: options.kind === 'request' ? zeroMac : options.mac,
    targetIp: options.ip,
  });
}

/** True when the packet announces its sender's own binding (sender IP = target IP). */
export function isGratuitousArp(packet: ArpPacket): boolean {
  return packet.senderIp === packet.targetIp;
}

/** ArpPacket → 42-byte frame. Throws PacketError on an invalid field. */
export function encodeArp(packet: ArpPacket): Uint8Array {
  const problem = checkArp(packet);
  if (problem !== null) throw new PacketError(problem);
  const frame = new Uint8Array(arpFrameLengthBytes);
  writeLayout(ethernetHeader, { destinationMac: packet.destinationMac, sourceMac: packet.sourceMac, etherType: etherTypeArp }, frame, 0);
  const body: LayoutValues<typeof arpBody.fields> = {
    hardwareType: arpHardwareTypeEthernet,
    protocolType: arpProtocolTypeIPv4,
    hardwareLength: 6,
    protocolLength: 4,
    opcode: opcodeByOperation[packet.operation],
    senderMac: packet.senderMac,
    senderIp: packet.senderIp,
    targetMac: packet.targetMac,
    targetIp: packet.targetIp,
  };
  writeLayout(arpBody, body, frame, ethernetHeader.lengthBytes);
  return frame;
}

/** Frame → ArpPacket, or a PacketError saying why it is not an Ethernet/IPv4 ARP request or
 * reply. Bytes after the 42nd (Ethernet padding) are ignored. Never throws. */
export function decodeArp(frame: Uint8Array): ArpPacket | PacketError {
  if (!(frame instanceof Uint8Array)) return new PacketError('ARP frame is not a byte array');
  if (frame.length < arpFrameLengthBytes) {
    return new PacketError(`ARP frame is ${frame.length} bytes, shorter than ${arpFrameLengthBytes}`);
  }
  const ethernet = readLayout(ethernetHeader, frame, 0);
  if (ethernet.etherType !== etherTypeArp) return new PacketError(`EtherType 0x${hex4(ethernet.etherType)} is not ARP`);
  const body = readLayout(arpBody, frame, ethernetHeader.lengthBytes);
  if (body.hardwareType !== arpHardwareTypeEthernet) return new PacketError(`ARP hardware type ${body.hardwareType} is not Ethernet`);
  if (body.protocolType !== arpProtocolTypeIPv4) return new PacketError(`ARP protocol type 0x${hex4(body.protocolType)} is not IPv4`);
  if (body.hardwareLength !== 6 || body.protocolLength !== 4) {
    return new PacketError(`ARP address lengths ${body.hardwareLength}/${body.protocolLength} are not 6/4`);
  }
  const operation = body.opcode === 1 ? 'request' : body.opcode === 2 ? 'reply' : null;
  if (operation === null) return new PacketError(`ARP opcode ${body.opcode} is neither request (1) nor reply (2)`);
  const packet: ArpPacket = {
    destinationMac: ethernet.destinationMac,
    sourceMac: ethernet.sourceMac,
    operation,
    senderMac: body.senderMac,
    senderIp: body.senderIp,
    targetMac: body.targetMac,
    targetIp: body.targetIp,
  };
  const problem = checkArp(packet);
  return problem === null ? packet : new PacketError(problem);
}

/** The semantic checks both directions share (the byte layout covers the rest): frames come from
 * a host, so their source and sender MACs are unicast. */
function checkArp(packet: ArpPacket): string | null {
  if (packet.operation !== 'request' && packet.operation !== 'reply') {
    return `ARP operation ${JSON.stringify(packet.operation)} is neither 'request' nor 'reply'`;
  }
  if (!isUnicastMac(packet.sourceMac)) return `Ethernet source ${JSON.stringify(packet.sourceMac)} is not a unicast MAC`;
  if (!isUnicastMac(packet.senderMac)) return `ARP sender ${JSON.stringify(packet.senderMac)} is not a unicast MAC`;
  return null;
}

function hex4(value: number): string {
  return value.toString(16).padStart(4, '0');
}
