// A tiny driver for a real data plane (nftables here; the IPVS one runs in the qemu guest), run
// by test/nftables-data-plane.test.ts inside a throw-away network namespace
// (`ip netns exec NS node dist/test/support/data-plane-probe.js '<json>'`), so the test process
// itself never touches the host's nftables or sysctls.
//
// Argument: JSON {"steps": [...]}, each step {"op":"apply","service":VirtualService} |
// {"op":"observe"} | {"op":"remove"}, run in order on one data plane, stopping at the first
// failure. Output (stdout, one JSON line): one result per step run, {"ok":true,"value":...,"ms"}
// or {"ok":false,"error":{"name","code","message"}}. Exit status 0 unless the argument is
// unusable (2).

import type { VirtualService } from '../../src/lb/data-plane.js';
import { NftablesDataPlane } from '../../src/lb/nftables-data-plane.js';

type Step = { op: 'apply'; service: VirtualService } | { op: 'observe' } | { op: 'remove' };

let input: { steps: Step[] };
try {
  input = JSON.parse(process.argv[2] ?? '') as typeof input;
  if (!Array.isArray(input.steps)) throw new Error('steps is not an array');
} catch (error) {
  process.stderr.write(`data-plane-probe: bad argument (${(error as Error).message})\n`);
  process.exit(2);
}

const hostChanges: string[] = [];
const plane = new NftablesDataPlane({ onHostChange: (message) => hostChanges.push(message) });
const results: unknown[] = [];
for (const step of input.steps) {
  const started = performance.now();
  try {
    const value = step.op === 'apply' ? await plane.apply(step.service) : step.op === 'observe' ? await plane.observe() : await plane.remove();
    results.push({ ok: true, value: value ?? null, ms: performance.now() - started });
  } catch (error) {
    const e = error as Error & { code?: unknown };
    results.push({ ok: false, error: { name: e.name, code: e.code, message: e.message } });
    break;
  }
}
plane.close();
process.stdout.write(`${JSON.stringify({ results, hostChanges })}\n`);
