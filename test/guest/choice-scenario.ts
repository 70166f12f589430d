// The data-plane choice on a kernel that has IPVS (the qemu guest): `loadBalancer.dataPlane:
// auto` must pick IPVS there (on this machine's kernel it picks nftables: test/lab-lb.test.ts),
// `ipvs` must open, and `removeLeftovers` must clear what an earlier run left in the plane not in
// use (an nftables `raftvip_lb` table) while keeping the chosen one's service. In the guest it
// records, in a throw-away namespace of its own (the data planes act on the namespace they run
// in, so this process enters none: it runs `ip netns exec` helpers): which kind each choice
// opened and what `nft` and `ipvsadm` list afterwards. The host judges.

import { execFileSync } from 'node:child_process';
import type { Test } from 'tap';
import type { GuestScenario } from './scenario.js';

const namespace = 'rvg-choice';
const vip = '10.216.0.100';
const openDataPlaneModule = new URL('../../src/lb/open-data-plane.js', import.meta.url).href;
const nftablesModule = new URL('../../src/lb/nftables-data-plane.js', import.meta.url).href;
const script = `
import { openDataPlane, removeLeftovers } from '${openDataPlaneModule}';
import { NftablesDataPlane } from '${nftablesModule}';
const log = () => {};
const base = { scheduler: 'rr', vipAddress: '${vip}', port: 6443, tcpTimeoutS: null, tcpFinTimeoutS: null, log };
const auto = await openDataPlane({ ...base, choice: 'auto' });
const explicit = await openDataPlane({ ...base, choice: 'ipvs' });
explicit.close();
// An nftables table an earlier run left, and the IPVS service of this one.
await new NftablesDataPlane().apply({ address: '${vip}', port: 6443, scheduler: 'rr', realServers: [{ address: '10.216.0.11', port: 6443, weight: 1 }] });
await auto.apply({ address: '${vip}', port: 6443, scheduler: 'rr', realServers: [{ address: '10.216.0.11', port: 6443, weight: 1 }] });
await removeLeftovers({ except: auto.kind, vipAddress: '${vip}', port: 6443, log });
const observed = await auto.observe();
auto.close();
process.stdout.write(JSON.stringify({ auto: auto.kind, explicit: explicit.kind, observed }));
`;

interface ChoiceFacts {
  result: { auto: string; explicit: string; observed: { realServers: { address: string }[] } | null } | { error: string };
  nftTables: string;
  ipvsadm: string;
}

function run(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', timeout: 60_000, ...(input === undefined ? {} : { input }) });
}

async function runInGuest(): Promise<ChoiceFacts> {
  run('ip', ['netns', 'add', namespace]);
  try {
    run('ip', ['-n', namespace, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
    run('ip', ['-n', namespace, 'addr', 'add', '10.216.0.1/24', 'dev', 'eth0']);
    run('ip', ['-n', namespace, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', namespace, 'link', 'set', 'eth1', 'up']);
    run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    let result: ChoiceFacts['result'];
    try {
      result = JSON.parse(run('ip', ['netns', 'exec', namespace, process.execPath, '--input-type=module', '-'], script)) as ChoiceFacts['result'];
    } catch (error) {
      result = { error: (error as Error).message };
    }
    return {
      result,
      nftTables: run('ip', ['netns', 'exec', namespace, 'nft', 'list', 'tables']),
      ipvsadm: run('ip', ['netns', 'exec', namespace, 'ipvsadm', '-Ln']),
    };
  } finally {
    run('ip', ['netns', 'del', namespace]);
  }
}

function judge(t: Test, facts: ChoiceFacts): void {
  if ('error' in facts.result) {
    t.fail(`the choice script failed: ${facts.result.error}`);
    return;
  }
  t.equal(facts.result.auto, 'ipvs', 'dataPlane auto picks IPVS on a kernel that has it');
  t.equal(facts.result.explicit, 'ipvs', 'dataPlane ipvs opens');
  t.match(facts.ipvsadm, new RegExp(`TCP\\s+${vip.replaceAll('.', '\\.')}:6443 rr`), 'the IPVS service is there (ipvsadm)');
  t.notMatch(facts.nftTables, /raftvip_lb/, 'the leftover nftables table was removed');
  t.match(facts.nftTables, /raftvip_ipvs/, "the IPVS plane's own masquerade table stays");
  t.same(facts.result.observed?.realServers.map((server) => server.address), ['10.216.0.11']);
}

export const choiceScenario: GuestScenario<ChoiceFacts> = { name: 'data-plane-choice', runInGuest, judge };
