// Goal: show that a real VipExecutor (NetlinkAddresses + PacketSocket) claims, announces and
// releases the VIP on a real kernel, and that `raftvip vip release` is idempotent, judged by
// `ip -j addr` and by a client's neighbour table: with the lease and no configured interface it
// picks v0 (the interface whose subnet holds the VIP), adds VIP/32 there and the client maps the
// VIP to v0's MAC; without the lease the address is gone; `raftvip vip release` removes a copy
// added by hand (exit 0, "removed ...") and, run again, exits 0 with "not present".
//
// The L2 segment is two throw-away network namespaces, `rvexe-<random>-h` (the VIP holder, veth
// end v0, 10.252.X.1/24) and `rvexe-<random>-c` (a client, v1, 10.252.X.2/24, arp_accept=1),
// with no route out; they are deleted in teardown, pass or fail. The executor runs in a helper
// process inside the holder's namespace (test/support/vip-executor-probe.ts), the CLI through
// `ip netns exec`, so this process never touches the host's interfaces. Needs root; skipped
// otherwise.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { binPath } from './support/run-raftvip.js';
import { commandTimeoutMs, NetnsSegment, run } from './support/netns-segment.js';

const probePath = fileURLToPath(new URL('./support/vip-executor-probe.js', import.meta.url));
/** How long the client may take to act on an announcement (measured: ~12 ms). */
const neighbourUpdateWaitMs = 1_000;
const neighbourPollIntervalMs = 20;

if (process.getuid?.() !== 0) {
  t.skip('VIP executor namespace tests need root to create network namespaces (CI runs as root)', () => {});
} else {
  const segment = new NetnsSegment({ prefix: 'rvexe', network: 252 });
  const tempDir = mkdtempSync(join(tmpdir(), 'rvexe-'));
  t.teardown(() => {
    segment.destroy();
    rmSync(tempDir, { recursive: true, force: true });
  });
  const { holder, subnet } = segment;
  const vip = `10.252.${subnet}.100`;
  const v0Mac = segment.holderMac();
  const probe = (...steps: object[]): unknown[] =>
    JSON.parse(run('ip', ['netns', 'exec', holder, process.execPath, probePath, JSON.stringify({ vip, interface: null, steps })])) as unknown[];
  /** Every `address/prefix` on each interface of the holder, as `ip -j addr` reports them. */
  const vipCopies = (): string[] =>
    (JSON.parse(run('ip', ['-n', holder, '-j', 'addr'])) as { ifname: string; addr_info: { local: string; prefixlen: number }[] }[]).flatMap(
      (link) => link.addr_info.filter((info) => info.local === vip).map((info) => `${link.ifname} ${info.local}/${info.prefixlen}`),
    );
  const clientEntry = (): string | undefined => segment.clientEntry(vip);
  const waitForEntry = async (mac: string | undefined): Promise<string | undefined> => {
    const deadline = Date.now() + neighbourUpdateWaitMs;
    for (;;) {
      const lladdr = clientEntry();
      if (lladdr === mac || Date.now() >= deadline) return lladdr;
      await sleep(neighbourPollIntervalMs);
    }
  };
  const raftvip = (...args: string[]) =>
    spawnSync('ip', ['netns', 'exec', holder, process.execPath, binPath, ...args], { encoding: 'utf8', timeout: commandTimeoutMs });

  t.test('reconcile(true) auto-detects v0, adds VIP/32 and the client learns v0\'s MAC', async (t) => {
    t.equal(clientEntry(), undefined, 'no client entry for the VIP before');
    const [resolved, claimed, counters] = probe({ op: 'resolve' }, { op: 'reconcile', leaseHeld: true });
    t.same(resolved, { ok: true, value: 'v0' });
    t.match(claimed, { ok: true, value: { held: true, actions: [{ kind: 'add-address' }, { kind: 'announce', reason: 'claim' }] } });
    t.same(counters, { claims: 1, releases: 0, announcements: 1 });
    t.same(vipCopies(), [`v0 ${vip}/32`], 'ip addr shows VIP/32 on v0');
    t.equal(await waitForEntry(v0Mac), v0Mac, `the client maps ${vip} to v0's MAC within ${neighbourUpdateWaitMs} ms`);
  });

  t.test('reconcile(false) removes the VIP', async (t) => {
    const [released] = probe({ op: 'reconcile', leaseHeld: false });
    t.match(released, { ok: true, value: { held: false, actions: [{ kind: 'remove-address', interface: 'v0', prefixLength: 32 }] } });
    t.same(vipCopies(), [], 'the address is gone');
  });

  t.test('raftvip vip release is idempotent', async (t) => {
    const configFile = join(tempDir, 'raftvip.yaml');
    writeFileSync(
      configFile,
      [
        'cluster:',
        '  name: exe',
        '  peers:',
        `    - { id: h1, address: "10.252.${subnet}.1:7480" }`,
        `  auth: { pskFile: ${join(tempDir, 'missing.psk')} }`,
        'node:',
        '  id: h1',
        `  dataDir: ${join(tempDir, 'data')}`,
        'vip:',
        `  address: ${vip}`,
        '',
      ].join('\n'),
    );
    run('ip', ['-n', holder, 'addr', 'add', `${vip}/32`, 'dev', 'v0']);
    t.same(vipCopies(), [`v0 ${vip}/32`], 'added by hand');
    const first = raftvip('vip', 'release', '--config', configFile);
    t.equal(first.status, 0, `exit 0 (stderr: ${first.stderr})`);
    t.equal(first.stdout, `removed VIP ${vip} from v0\n`);
    t.same(vipCopies(), [], 'the address is gone');
    const second = raftvip('vip', 'release', '--config', configFile);
    t.equal(second.status, 0, `exit 0 again (stderr: ${second.stderr})`);
    t.equal(second.stdout, `VIP ${vip} not present\n`);
  });
}
