// A tiny driver for PacketSocket, run by test/packet-socket.test.ts inside a throw-away network
// namespace (`ip netns exec NS node dist/test/support/packet-probe.js '<json>'`), so the test
// process itself never sends on the host's interfaces.
//
// Argument: a JSON array of steps, run in order, each carried on after a failure:
// {"op":"hardware-address","interface":"v0"} |
// {"op":"garp","interface":"v0","ip":"10.251.7.100","kind":"request"|"reply"} (reads the MAC,
//   builds the gratuitous ARP, opens, sends, closes; value: {mac, bytesSent}) |
// {"op":"na","interface":"v0","targetAddress":"fd00:7::100"} (the same with an unsolicited
//   neighbour advertisement) |
// {"op":"open","interface":"nope0"} |
// {"op":"send-after-close","interface":"v0"} (opens, closes twice, then sends).
// Output (stdout, one JSON line): one result per step, {"ok":true,"value":...} or
// {"ok":false,"error":{"name","code","errno","syscall","message"}}. Exit status 0 unless the
// argument itself is unusable (2).

import { buildGratuitousArp, type ArpOperation } from '../../src/vip/arp-packet.js';
import { buildUnsolicitedNeighbourAdvertisement } from '../../src/vip/ndp-packet.js';
import { PacketSocket, ethernetProtocolArp, ethernetProtocolIpv6, hardwareAddress } from '../../src/vip/packet-socket.js';

type Step =
  | { op: 'hardware-address'; interface: string }
  | { op: 'garp'; interface: string; ip: string; kind: ArpOperation }
  | { op: 'na'; interface: string; targetAddress: string }
  | { op: 'open'; interface: string }
  | { op: 'send-after-close'; interface: string };

export type PacketProbeResult =
  | { ok: true; value: unknown }
  | { ok: false; error: { name: string; code: unknown; errno: unknown; syscall: unknown; message: string } };

function sendOnce(interfaceName: string, protocol: number, frame: Uint8Array): number {
  const socket = PacketSocket.open(interfaceName, protocol);
  try {
    return socket.send(frame);
  } finally {
    socket.close();
  }
}

function runStep(step: Step): unknown {
  switch (step.op) {
    case 'hardware-address':
      return hardwareAddress(step.interface);
    case 'garp': {
      const mac = hardwareAddress(step.interface);
      return { mac, bytesSent: sendOnce(step.interface, ethernetProtocolArp, buildGratuitousArp({ mac, ip: step.ip, kind: step.kind })) };
    }
    case 'na': {
      const mac = hardwareAddress(step.interface);
      const frame = buildUnsolicitedNeighbourAdvertisement({ mac, targetAddress: step.targetAddress });
      return { mac, bytesSent: sendOnce(step.interface, ethernetProtocolIpv6, frame) };
    }
    case 'open':
      PacketSocket.open(step.interface, ethernetProtocolArp).close();
      return null;
    case 'send-after-close': {
      const socket = PacketSocket.open(step.interface, ethernetProtocolArp);
      socket.close();
      socket.close();
      return socket.send(new Uint8Array(60));
    }
    default: {
      const unknownStep: never = step;
      throw new Error(`unknown step ${JSON.stringify(unknownStep)}`);
    }
  }
}

let steps: Step[];
try {
  steps = JSON.parse(process.argv[2] ?? '') as Step[];
  if (!Array.isArray(steps)) throw new Error('not an array');
} catch (error) {
  process.stderr.write(`packet-probe: the argument must be a JSON array of steps (${(error as Error).message})\n`);
  process.exit(2);
}
const results: PacketProbeResult[] = steps.map((step) => {
  try {
    return { ok: true, value: runStep(step) ?? null };
  } catch (error) {
    const e = error as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
    return { ok: false, error: { name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, message: e.message } };
  }
});
process.stdout.write(`${JSON.stringify(results)}\n`);
