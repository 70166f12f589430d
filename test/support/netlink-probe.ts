// A tiny driver for NetlinkAddresses, run by test/netlink-addresses.test.ts inside a throw-away
// network namespace (`ip netns exec NS node dist/test/support/netlink-probe.js '<json>'`), so the
// test process itself never touches the host's addresses.
//
// Argument: a JSON array of steps, run in order on one NetlinkAddresses, each carried on after a
// failure: {"op":"list"} | {"op":"link-index","interface":"v0"} |
// {"op":"add"|"remove","address":"10.250.7.100","prefixLength":32,"interface":"v0"}.
// Output (stdout, one JSON line): one result per step, {"ok":true,"value":...} or
// {"ok":false,"error":{"name","code","errno","operation","message"}}. Exit status 0 unless the
// argument itself is unusable (2).

import { NetlinkAddresses, type InterfaceAddress } from '../../src/vip/netlink-addresses.js';

type Step = { op: 'list' } | { op: 'link-index'; interface: string } | ({ op: 'add' | 'remove' } & InterfaceAddress);

export type ProbeResult =
  | { ok: true; value: unknown }
  | { ok: false; error: { name: string; code: unknown; errno: unknown; operation: unknown; message: string } };

async function runStep(addresses: NetlinkAddresses, step: Step): Promise<unknown> {
  switch (step.op) {
    case 'list':
      return addresses.list();
    case 'link-index':
      return addresses.linkIndex(step.interface);
    case 'add':
      return addresses.add(step);
    case 'remove':
      return addresses.remove(step);
    default: {
      const unknownStep: never = step;
      throw new Error(`unknown step ${JSON.stringify(unknownStep)}`);
    }
  }
}

async function main(): Promise<void> {
  let steps: Step[];
  try {
    steps = JSON.parse(process.argv[2] ?? '') as Step[];
    if (!Array.isArray(steps)) throw new Error('not an array');
  } catch (error) {
    process.stderr.write(`netlink-probe: the argument must be a JSON array of steps (${(error as Error).message})\n`);
    process.exit(2);
  }
  const addresses = new NetlinkAddresses();
  const results: ProbeResult[] = [];
  try {
    for (const step of steps) {
      try {
        const value = await runStep(addresses, step);
        results.push({ ok: true, value: value ?? null });
      } catch (error) {
        const e = error as Error & { code?: unknown; errno?: unknown; operation?: unknown };
        results.push({ ok: false, error: { name: e.name, code: e.code, errno: e.errno, operation: e.operation, message: e.message } });
      }
    }
  } finally {
    addresses.close();
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

await main();
