// Adds and removes one address on one interface of the namespace it runs in, `count` times, by
// rtnetlink (the daemon's own NetlinkAddresses), and prints one JSON line per change,
// `{"op":"add"|"remove","before":ms,"after":ms}`, stamped on CLOCK_MONOTONIC just before the
// request and just after its acknowledgement. The kernel announces the change to `ip monitor`
// between the two, so a VipWatch stamp minus `after` is a lower bound of its stamping latency and
// minus `before` an upper bound. Used by lab-network.test.ts; run inside a lab host:
//
//   ip netns exec NS node dist/test/support/address-flipper.js '{"interface":"eth0","address":"10.213.0.100","count":20,"intervalMs":20}'

import { NetlinkAddresses } from '../../src/vip/netlink-addresses.js';
import { monotonicNowMs } from '../../src/lab/monotonic-clock.js';

interface FlipperOptions {
  interface: string;
  address: string;
  count: number;
  intervalMs: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as FlipperOptions;
const addresses = new NetlinkAddresses();
const spec = { interface: options.interface, address: options.address, prefixLength: options.address.includes(':') ? 128 : 32 };
try {
  for (let i = 0; i < options.count; i++) {
    for (const op of ['add', 'remove'] as const) {
      const before = monotonicNowMs();
      await (op === 'add' ? addresses.add(spec) : addresses.remove(spec));
      const after = monotonicNowMs();
      process.stdout.write(`${JSON.stringify({ op, before, after })}\n`);
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
  }
} finally {
  addresses.close();
}
