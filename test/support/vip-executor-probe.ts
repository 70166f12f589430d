// A tiny driver for a real VipExecutor (NetlinkAddresses, PacketSocket), run by
// test/vip-executor-netns.test.ts inside a throw-away network namespace
// (`ip netns exec NS node dist/test/support/vip-executor-probe.js '<json>'`), so the test process
// itself never touches the host's addresses or interfaces.
//
// Argument: JSON {"vip": "10.252.7.100", "interface": null | "v0", "steps": [...]}, each step
// {"op":"resolve"} | {"op":"reconcile","leaseHeld":true|false} | {"op":"release"}, run in order
// on one executor, stopping at the first failure. Output (stdout, one JSON line): one result per
// step run, {"ok":true,"value":...} or {"ok":false,"error":{"name","code","message"}}, then the
// counters as the last element. Exit status 0 unless the argument is unusable (2).

import { NetlinkAddresses } from '../../src/vip/netlink-addresses.js';
import { PacketSocket, hardwareAddress } from '../../src/vip/packet-socket.js';
import { VipExecutor } from '../../src/vip/vip-executor.js';

type Step = { op: 'resolve' } | { op: 'reconcile'; leaseHeld: boolean } | { op: 'release' };

let input: { vip: string; interface: string | null; steps: Step[] };
try {
  input = JSON.parse(process.argv[2] ?? '') as typeof input;
  if (!Array.isArray(input.steps)) throw new Error('steps is not an array');
} catch (error) {
  process.stderr.write(`vip-executor-probe: bad argument (${(error as Error).message})\n`);
  process.exit(2);
}

const addresses = new NetlinkAddresses();
const executor = new VipExecutor({
  vip: { address: input.vip, family: input.vip.includes(':') ? 6 : 4 },
  interface: input.interface,
  addresses,
  openPacketSocket: (interfaceName, protocol) => PacketSocket.open(interfaceName, protocol),
  hardwareAddress,
  clock: () => performance.now(),
  log: () => {},
});
const results: unknown[] = [];
for (const step of input.steps) {
  try {
    const value = step.op === 'resolve' ? await executor.resolveInterface() : step.op === 'release' ? await executor.release() : await executor.reconcile(step.leaseHeld);
    results.push({ ok: true, value });
  } catch (error) {
    const e = error as Error & { code?: unknown };
    results.push({ ok: false, error: { name: e.name, code: e.code, message: e.message } });
    break;
  }
}
results.push(executor.counters);
executor.close();
addresses.close();
process.stdout.write(`${JSON.stringify(results)}\n`);
