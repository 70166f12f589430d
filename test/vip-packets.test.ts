// Goal: show that the VIP announcement codecs are exact, symmetric and strict. One gratuitous ARP
// and one unsolicited neighbour advertisement match bytes written out by hand from RFC 826 /
// RFC 5227 and RFC 4861 / RFC 8200 (each field explained), including an ICMPv6 checksum worked
// out by hand; random packets round-trip; the IPv6 text conversion agrees with the WHATWG URL
// serialiser (RFC 5952 form); invalid input to the encoders throws a PacketError; and a seeded
// fuzz loop over random and mutated frames gets from both decoders only a PacketError or a
// packet that re-encodes to the same bytes, never another exception. Failures print the seed.

import t from 'tap';
import {
  arpFrameLengthBytes,
  buildGratuitousArp,
  decodeArp,
  encodeArp,
  isGratuitousArp,
  type ArpPacket,
} from '../src/vip/arp-packet.js';
import {
  buildUnsolicitedNeighbourAdvertisement,
  decodeNeighbourAdvertisement,
  encodeNeighbourAdvertisement,
  icmpV6Checksum,
  type NeighbourAdvertisement,
} from '../src/vip/ndp-packet.js';
import { PacketError, canonicalIpAddress, formatIPv6, formatMac, parseIPv6 } from '../src/vip/packet-layout.js';
import { SeededRandom } from '../src/raft/random.js';

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

// The documentation MAC (RFC 7042 §2.1.2) and addresses (RFC 5737, RFC 3849) used throughout.
const mac = '00:00:5e:00:53:01';

// ---------------------------------------------------------------------------------------------
// Byte-exact fixtures

t.test('gratuitous ARP request matches the RFC 826 / RFC 5227 layout byte for byte', async (t) => {
  const expected = hex(`
    ffffffffffff   # Ethernet destination: broadcast
    00005e005301   # Ethernet source: our MAC
    0806           # EtherType: ARP
    0001           # ar$hrd: hardware type 1 = Ethernet
    0800           # ar$pro: protocol type 0x0800 = IPv4
    06             # ar$hln: hardware address length 6
    04             # ar$pln: protocol address length 4
    0001           # ar$op: 1 = request (RFC 5227 ARP Announcement)
    00005e005301   # ar$sha: sender MAC = our MAC
    c000020a       # ar$spa: sender IP = VIP 192.0.2.10
    000000000000   # ar$tha: target MAC, zero (ignored in a request)
    c000020a       # ar$tpa: target IP = VIP again: that is what makes it gratuitous
  `.replace(/#[^\n]*/g, ''));
  const frame = buildGratuitousArp({ mac, ip: '192.0.2.10', kind: 'request' });
  t.equal(frame.length, 42);
  t.equal(toHex(frame), toHex(expected));
  const decoded = decodeArp(frame);
  t.same(decoded, {
    destinationMac: 'ff:ff:ff:ff:ff:ff',
    sourceMac: mac,
    operation: 'request',
    senderMac: mac,
    senderIp: '192.0.2.10',
    targetMac: '00:00:00:00:00:00',
    targetIp: '192.0.2.10',
  });
  t.ok(!(decoded instanceof PacketError) && isGratuitousArp(decoded));
});

t.test('gratuitous ARP reply: opcode 2, target MAC = our MAC', async (t) => {
  const frame = buildGratuitousArp({ mac, ip: '192.0.2.10', kind: 'reply' });
  t.equal(
    toHex(frame),
    'ffffffffffff' + '00005e005301' + '0806' + '0001' + '0800' + '06' + '04' + '0002' +
      '00005e005301' + 'c000020a' + '00005e005301' + 'c000020a',
  );
  const decoded = decodeArp(frame);
  t.ok(!(decoded instanceof PacketError) && decoded.operation === 'reply' && isGratuitousArp(decoded));
});

t.test('ARP decoding ignores Ethernet padding up to 60 bytes', async (t) => {
  const frame = buildGratuitousArp({ mac, ip: '192.0.2.10', kind: 'request' });
  const padded = new Uint8Array(60);
  padded.set(frame);
  t.same(decodeArp(padded), decodeArp(frame));
});

t.test('unsolicited neighbour advertisement matches RFC 4861 §4.4 byte for byte', async (t) => {
  // The checksum, by hand (RFC 1071: 16-bit ones' complement sum of the pseudo-header of RFC
  // 8200 §8.1 and the ICMPv6 message with its checksum field zero, then complemented):
  //   pseudo-header  source 2001:db8::10       2001 + 0db8 + 0010          = 2dc9
  //                  destination ff02::1        ff02 + 0001                 = ff03
  //                  upper-layer length 32      0000 + 0020                 = 0020
  //                  zero, next header 58       0000 + 003a                 = 003a
  //   message        type 136, code 0           8800
  //                  checksum (zero)            0000
  //                  flags O                    2000 + 0000                 = 2000
  //                  target 2001:db8::10        (as the source)             = 2dc9
  //                  option type 2, length 1    0201
  //                  MAC 00:00:5e:00:53:01      0000 + 5e00 + 5301          = b101
  //   2dc9 + ff03 + 0020 + 003a + 8800 + 2000 + 2dc9 + 0201 + b101 = 2b5f1
  //   fold the carry: b5f1 + 2 = b5f3; complement: ffff - b5f3 = 4a0c.
  const handChecksum = 0x4a0c;
  const expected = hex(`
    333300000001   # Ethernet destination: 33:33 + low 32 bits of ff02::1 (RFC 2464 §7)
    00005e005301   # Ethernet source: our MAC
    86dd           # EtherType: IPv6
    60000000       # version 6, traffic class 0, flow label 0
    0020           # payload length 32 = 24 (advertisement) + 8 (one option)
    3a             # next header 58 = ICMPv6
    ff             # hop limit 255: receivers drop NDP from beyond the link (§7.1.2)
    20010db8000000000000000000000010   # source: the VIP 2001:db8::10
    ff020000000000000000000000000001   # destination: all-nodes ff02::1
    88             # ICMPv6 type 136 = Neighbour Advertisement
    00             # code 0
    4a0c           # checksum (worked out above)
    20000000       # R=0 S=0 O=1, 29 reserved bits zero
    20010db8000000000000000000000010   # target address: the VIP
    02             # option type 2 = Target Link-Layer Address
    01             # option length 1 (units of 8 bytes)
    00005e005301   # our MAC
  `.replace(/#[^\n]*/g, ''));
  const frame = buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '2001:db8::10' });
  t.equal(frame.length, 86);
  t.equal(toHex(frame), toHex(expected));
  const message = frame.subarray(54);
  const zeroed = Uint8Array.from(message);
  zeroed[2] = 0;
  zeroed[3] = 0;
  t.equal(icmpV6Checksum({ sourceIp: '2001:db8::10', destinationIp: 'ff02::1', message: zeroed }), handChecksum, 'checksum to write');
  t.equal(icmpV6Checksum({ sourceIp: '2001:db8::10', destinationIp: 'ff02::1', message }), 0, 'verifies to zero');
  t.same(decodeNeighbourAdvertisement(frame), {
    destinationMac: '33:33:00:00:00:01',
    sourceMac: mac,
    trafficClass: 0,
    flowLabel: 0,
    sourceIp: '2001:db8::10',
    destinationIp: 'ff02::1',
    router: false,
    solicited: false,
    override: true,
    targetAddress: '2001:db8::10',
    targetLinkLayerAddress: mac,
  });
});

t.test('neighbour advertisement from a link-local source', async (t) => {
  const frame = buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '2001:db8::10', sourceAddress: 'fe80::200:5eff:fe00:5301' });
  const decoded = decodeNeighbourAdvertisement(frame);
  t.ok(!(decoded instanceof PacketError));
  if (decoded instanceof PacketError) return;
  t.equal(decoded.sourceIp, 'fe80::200:5eff:fe00:5301');
  t.equal(decoded.targetAddress, '2001:db8::10');
});

t.test('decoders name what is wrong', async (t) => {
  const arp = buildGratuitousArp({ mac, ip: '192.0.2.10', kind: 'request' });
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty', new Uint8Array(0), /shorter than 42/],
    ['truncated', arp.subarray(0, 41), /shorter than 42/],
    ['IPv6 EtherType', patch(arp, 12, [0x86, 0xdd]), /not ARP/],
    ['token ring', patch(arp, 14, [0x00, 0x06]), /not Ethernet/],
    ['opcode 3 (RARP)', patch(arp, 20, [0x00, 0x03]), /opcode 3/],
    ['hln 8', patch(arp, 18, [8]), /address lengths/],
    ['multicast sender', patch(arp, 22, [0x01]), /sender .* not a unicast MAC/],
  ];
  for (const [name, frame, pattern] of cases) {
    const result = decodeArp(frame);
    t.ok(result instanceof PacketError && result.code === 'RAFTVIP_PACKET_INVALID' && pattern.test(result.message), `${name}: ${String(result)}`);
  }
  const na = buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '2001:db8::10' });
  const naCases: Array<[string, Uint8Array, RegExp]> = [
    ['short', na.subarray(0, 70), /too short/],
    ['hop limit 64', patch(na, 21, [64]), /hop limit 64/],
    ['next header 17', patch(na, 20, [17]), /next header 17/],
    ['version 4', patch(na, 14, [0x40]), /version 4/],
    ['payload past end', patch(na, 18, [0x00, 0x28]), /runs past/],
    ['bad checksum', patch(na, 56, [0x4a, 0x0d]), /checksum/],
    ['type 135', withChecksum(patch(na, 54, [135])), /type 135/],
    ['code 1', withChecksum(patch(na, 55, [1])), /code 1/],
    ['zero-length option', withChecksum(patch(na, 79, [0])), /length 0/],
    ['option past end', withChecksum(patch(na, 79, [2])), /runs past/],
    ['multicast target', withChecksum(patch(na, 62, [0xff])), /multicast/],
    ['solicited to all-nodes', withChecksum(patch(na, 58, [0x60])), /solicited/],
  ];
  for (const [name, frame, pattern] of naCases) {
    const result = decodeNeighbourAdvertisement(frame);
    t.ok(result instanceof PacketError && result.code === 'RAFTVIP_PACKET_INVALID' && pattern.test(result.message), `${name}: ${String(result)}`);
  }
});

t.test('encoders throw a PacketError on invalid input', async (t) => {
  const bad: Array<[string, () => unknown]> = [
    ['MAC with dashes', () => buildGratuitousArp({ mac: '00-00-5e-00-53-01', ip: '192.0.2.10', kind: 'request' })],
    ['multicast MAC', () => buildGratuitousArp({ mac: '01:00:5e:00:00:01', ip: '192.0.2.10', kind: 'request' })],
    ['zero MAC', () => buildGratuitousArp({ mac: '00:00:00:00:00:00', ip: '192.0.2.10', kind: 'request' })],
    ['IPv6 in ARP', () => buildGratuitousArp({ mac, ip: '2001:db8::10', kind: 'request' })],
    ['octet 256', () => buildGratuitousArp({ mac, ip: '192.0.2.256', kind: 'request' })],
    ['unknown kind', () => buildGratuitousArp({ mac, ip: '192.0.2.10', kind: 'probe' as 'request' })],
    ['IPv4 target in NA', () => buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '192.0.2.10' })],
    ['zone index', () => buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '2001:db8::10', sourceAddress: 'fe80::1%eth0' })],
    ['multicast target', () => buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: 'ff02::2' })],
    ['solicited to all-nodes', () => encodeNeighbourAdvertisement({ ...naOf('2001:db8::10'), solicited: true })],
    ['flow label too wide', () => encodeNeighbourAdvertisement({ ...naOf('2001:db8::10'), flowLabel: 0x100000 })],
  ];
  for (const [name, build] of bad) {
    t.throws(build, { name: 'PacketError', code: 'RAFTVIP_PACKET_INVALID' }, name);
  }
});

// ---------------------------------------------------------------------------------------------
// Addresses

t.test('IPv6 text ↔ bytes', async (t) => {
  const cases: Array<[string, string]> = [
    ['::', '::'],
    ['::1', '::1'],
    ['2001:DB8:0:0:0:0:0:10', '2001:db8::10'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    ['2001:0db8::0001', '2001:db8::1'],
    ['::ffff:192.0.2.10', '::ffff:c000:20a'],
    ['fe80::', 'fe80::'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ];
  for (const [input, canonical] of cases) t.equal(canonicalIpAddress(input), canonical, input);
  for (const bad of ['', '1::2::3', '12345::', 'fe80::1%eth0', '192.0.2.1.1', 'g::1', ':::']) {
    t.equal(parseIPv6(bad), null, `refuses ${JSON.stringify(bad)}`);
  }
  t.equal(canonicalIpAddress('192.0.2.010'), null, 'IPv4 with a leading zero is ambiguous (octal?)');
});

t.test('IPv6 formatting agrees with the WHATWG URL serialiser (seeded)', async (t) => {
  const seed = 4242;
  const random = new SeededRandom(seed);
  let mismatches = 0;
  for (let i = 0; i < 2000; i++) {
    const bytes = randomIPv6Bytes(random);
    const text = formatIPv6(bytes);
    const oracle = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    const back = parseIPv6(text);
    if (text !== oracle || back === null || toHex(back) !== toHex(bytes)) {
      mismatches++;
      if (mismatches < 5) t.fail(`seed ${seed} case ${i}: ${toHex(bytes)} → ${text}, URL says ${oracle}`);
    }
  }
  t.equal(mismatches, 0, `seed ${seed}`);
});

// ---------------------------------------------------------------------------------------------
// Round trips

t.test('random ARP packets round-trip (seeded)', async (t) => {
  const seed = 826;
  const random = new SeededRandom(seed);
  for (let i = 0; i < 1000; i++) {
    const packet: ArpPacket = {
      destinationMac: random.nextInt(2) === 0 ? 'ff:ff:ff:ff:ff:ff' : randomMac(random, { unicast: true }),
      sourceMac: randomMac(random, { unicast: true }),
      operation: random.nextInt(2) === 0 ? 'request' : 'reply',
      senderMac: randomMac(random, { unicast: true }),
      senderIp: randomIPv4(random),
      targetMac: randomMac(random, { unicast: false }),
      targetIp: randomIPv4(random),
    };
    const frame = encodeArp(packet);
    const decoded = decodeArp(frame);
    if (!sameJson(decoded, packet)) {
      t.fail(`seed ${seed} case ${i}: ${JSON.stringify(packet)} decoded as ${String(decoded)}`);
      return;
    }
  }
  t.pass(`1000 packets, seed ${seed}`);
});

t.test('random neighbour advertisements round-trip (seeded)', async (t) => {
  const seed = 4861;
  const random = new SeededRandom(seed);
  for (let i = 0; i < 1000; i++) {
    const multicastDestination = random.nextInt(2) === 0;
    let target = formatIPv6(randomIPv6Bytes(random));
    if (target.startsWith('ff')) target = `2001:db8::${i.toString(16)}`;
    let source = formatIPv6(randomIPv6Bytes(random));
    if (source.startsWith('ff')) source = 'fe80::1';
    const packet: NeighbourAdvertisement = {
      destinationMac: multicastDestination ? '33:33:00:00:00:01' : randomMac(random, { unicast: true }),
      sourceMac: randomMac(random, { unicast: true }),
      trafficClass: random.nextInt(256),
      flowLabel: random.nextInt(0x100000),
      sourceIp: source,
      destinationIp: multicastDestination ? 'ff02::1' : formatIPv6(randomIPv6Bytes(random)).replace(/^ff/, 'fe'),
      router: random.nextInt(2) === 0,
      solicited: !multicastDestination && random.nextInt(2) === 0,
      override: random.nextInt(2) === 0,
      targetAddress: target,
      targetLinkLayerAddress: random.nextInt(4) === 0 ? null : randomMac(random, { unicast: true }),
    };
    const frame = encodeNeighbourAdvertisement(packet);
    const decoded = decodeNeighbourAdvertisement(frame);
    if (!sameJson(decoded, packet)) {
      t.fail(`seed ${seed} case ${i}: ${JSON.stringify(packet)} decoded as ${String(decoded)}`);
      return;
    }
  }
  t.pass(`1000 packets, seed ${seed}`);
});

// ---------------------------------------------------------------------------------------------
// Fuzz

t.test('decoders on random and mutated bytes: a PacketError or a packet that re-encodes (seeded)', async (t) => {
  const seed = 20240604;
  const random = new SeededRandom(seed);
  const seeds = [
    buildGratuitousArp({ mac, ip: '192.0.2.10', kind: 'request' }),
    buildGratuitousArp({ mac, ip: '198.51.100.7', kind: 'reply' }),
    buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '2001:db8::10' }),
    buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: '2001:db8::10', sourceAddress: 'fe80::1' }),
    encodeNeighbourAdvertisement({ ...naOf('2001:db8::99'), targetLinkLayerAddress: null }),
  ];
  const counts = { arpValid: 0, naValid: 0, errors: 0 };
  const iterations = 20000;
  for (let i = 0; i < iterations; i++) {
    const frame = fuzzFrame(random, seeds);
    for (const decoder of ['arp', 'na'] as const) {
      let result: unknown;
      try {
        result = decoder === 'arp' ? decodeArp(frame) : decodeNeighbourAdvertisement(frame);
      } catch (error) {
        t.fail(`seed ${seed} case ${i} (${decoder}): threw ${String(error)} on ${toHex(frame)}`);
        return;
      }
      if (result instanceof PacketError) {
        if (result.code !== 'RAFTVIP_PACKET_INVALID') {
          t.fail(`seed ${seed} case ${i}: wrong code ${result.code}`);
          return;
        }
        counts.errors++;
        continue;
      }
      // A valid packet must be stable: re-encoding and decoding it gives the same packet, and an
      // ARP frame re-encodes to its own first 42 bytes.
      const again =
        decoder === 'arp'
          ? decodeArp(encodeArp(result as ArpPacket))
          : decodeNeighbourAdvertisement(encodeNeighbourAdvertisement(result as NeighbourAdvertisement));
      if (!sameJson(again, result)) {
        t.fail(`seed ${seed} case ${i} (${decoder}): unstable round trip of ${toHex(frame)}`);
        return;
      }
      if (decoder === 'arp') {
        counts.arpValid++;
        if (toHex(encodeArp(result as ArpPacket)) !== toHex(frame.subarray(0, arpFrameLengthBytes))) {
          t.fail(`seed ${seed} case ${i}: ARP re-encodes differently: ${toHex(frame)}`);
          return;
        }
      } else {
        counts.naValid++;
      }
    }
  }
  t.ok(counts.arpValid > 100 && counts.naValid > 100 && counts.errors > 1000, `seed ${seed}: ${JSON.stringify(counts)}`);
});

// ---------------------------------------------------------------------------------------------
// Helpers

function patch(frame: Uint8Array, offset: number, bytes: number[]): Uint8Array {
  const copy = Uint8Array.from(frame);
  copy.set(bytes, offset);
  return copy;
}

/** Recomputes the ICMPv6 checksum of an NA frame whose IPv6 header is intact enough to read, so
 * that mutations reach the checks behind the checksum. */
function withChecksum(frame: Uint8Array): Uint8Array {
  if (frame.length < 58) return frame;
  const payloadLength = (frame[18]! << 8) | frame[19]!;
  if (54 + payloadLength > frame.length || payloadLength < 4) return frame;
  const copy = Uint8Array.from(frame);
  copy[56] = 0;
  copy[57] = 0;
  const checksum = icmpV6Checksum({
    sourceIp: formatIPv6(copy.subarray(22, 38)),
    destinationIp: formatIPv6(copy.subarray(38, 54)),
    message: copy.subarray(54, 54 + payloadLength),
  });
  copy[56] = checksum >> 8;
  copy[57] = checksum & 0xff;
  return copy;
}

function naOf(target: string): NeighbourAdvertisement {
  return {
    destinationMac: '33:33:00:00:00:01',
    sourceMac: mac,
    trafficClass: 0,
    flowLabel: 0,
    sourceIp: target,
    destinationIp: 'ff02::1',
    router: false,
    solicited: false,
    override: true,
    targetAddress: target,
    targetLinkLayerAddress: mac,
  };
}

function fuzzFrame(random: SeededRandom, seeds: Uint8Array[]): Uint8Array {
  const mode = random.nextInt(6);
  if (mode === 0) return Uint8Array.from({ length: random.nextInt(120) }, () => random.nextInt(256));
  const base = Uint8Array.from(seeds[random.nextInt(seeds.length)]!);
  let frame: Uint8Array = base;
  const mutations = 1 + random.nextInt(3);
  for (let m = 0; m < mutations; m++) {
    switch (random.nextInt(5)) {
      case 0: // flip one bit
        if (frame.length > 0) {
          const at = random.nextInt(frame.length);
          frame[at] = frame[at]! ^ (1 << random.nextInt(8));
        }
        break;
      case 1: // overwrite one byte
        if (frame.length > 0) frame[random.nextInt(frame.length)] = random.nextInt(256);
        break;
      case 2: // truncate
        frame = frame.slice(0, random.nextInt(frame.length + 1));
        break;
      case 3: { // extend with padding or junk
        const longer = new Uint8Array(frame.length + random.nextInt(40));
        longer.set(frame);
        if (random.nextInt(2) === 0) for (let i = frame.length; i < longer.length; i++) longer[i] = random.nextInt(256);
        frame = longer;
        break;
      }
      case 4: // rewrite a 16-bit field to a boundary value
        if (frame.length >= 2) {
          const at = random.nextInt(frame.length - 1);
          const value = [0, 1, 2, 0xff, 0xffff, 0x8000][random.nextInt(6)]!;
          frame[at] = value >> 8;
          frame[at + 1] = value & 0xff;
        }
        break;
    }
  }
  // Half the time, fix the checksum so mutations reach the checks behind it.
  return mode >= 3 ? withChecksum(frame) : frame;
}

function randomMac(random: SeededRandom, options: { unicast: boolean }): string {
  const bytes = Uint8Array.from({ length: 6 }, () => random.nextInt(256));
  if (options.unicast) {
    bytes[0] = bytes[0]! & 0xfe;
    bytes[5] = bytes[5]! | 1; // never all zeros
  }
  return formatMac(bytes);
}

function randomIPv4(random: SeededRandom): string {
  return Array.from({ length: 4 }, () => random.nextInt(256)).join('.');
}

/** Random 16 bytes with runs of zero groups, so every compression case comes up. */
function randomIPv6Bytes(random: SeededRandom): Uint8Array {
  const bytes = new Uint8Array(16);
  for (let group = 0; group < 8; group++) {
    if (random.nextInt(2) === 0) continue;
    const width = random.nextInt(3);
    const value = width === 0 ? random.nextInt(16) : width === 1 ? random.nextInt(256) : random.nextInt(65536);
    bytes[2 * group] = value >> 8;
    bytes[2 * group + 1] = value & 0xff;
  }
  return bytes;
}

function sameJson(a: unknown, b: unknown): boolean {
  const sorted = (value: unknown): string => JSON.stringify(value, Object.keys(value as object).sort());
  return !(a instanceof Error) && !(b instanceof Error) && sorted(a) === sorted(b);
}
