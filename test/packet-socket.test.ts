// Goal: show that PacketSocket really puts frames on the wire and that a client acts on them,
// judged independently by the client's neighbour table (`ip -j neigh show`): a gratuitous ARP
// built by arp-packet.ts, in request and reply form, creates the client's entry for the VIP with
// the sender's MAC (as `ip link` reports it) and switches an entry that points at another MAC;
// an unsolicited neighbour advertisement does the same for IPv6. Failures come back as
// RAFTVIP_PACKET_SOCKET_FAILED with the errno and the syscall.
//
// The L2 segment is two throw-away network namespaces, `rvpkt-<random>-h` (the VIP holder, veth
// end v0, 10.251.X.1/24) and `rvpkt-<random>-c` (a client, v1, 10.251.X.2/24), joined by one
// veth pair. They have no route out and are deleted in teardown, pass or fail. The client has
// arp_accept=1, which only matters for creating an entry from a gratuitous ARP (LAB.md). The
// sender runs in a helper process inside the holder's namespace (test/support/packet-probe.ts),
// so this process never touches the host's interfaces. Needs root (CI runs as root); skipped
// otherwise.

import t from 'tap';
import { constants as osConstants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { PacketProbeResult } from './support/packet-probe.js';
import { NetnsSegment, run } from './support/netns-segment.js';

const probePath = fileURLToPath(new URL('./support/packet-probe.js', import.meta.url));
/** How long the client may take to act on an announcement (measured: ~12 ms). */
const neighbourUpdateWaitMs = 1_000;
const neighbourPollIntervalMs = 20;
const otherMac = '02:00:00:00:00:99';

if (process.getuid?.() !== 0) {
  t.skip('packet socket tests need root to create network namespaces (CI runs as root)', () => {});
} else {
  const segment = new NetnsSegment({ prefix: 'rvpkt', network: 251 });
  t.teardown(() => segment.destroy());
  const { holder, client, subnet } = segment;
  const vip = `10.251.${subnet}.100`;
  const vip6 = `fd00:${subnet.toString(16)}::100`;
  const v0Mac = segment.holderMac();
  const probe = (...steps: object[]): PacketProbeResult[] =>
    JSON.parse(run('ip', ['netns', 'exec', holder, process.execPath, probePath, JSON.stringify(steps)])) as PacketProbeResult[];
  const clientEntry = (address: string): string | undefined => segment.clientEntry(address);
  /** Polls the client's neighbour table until the entry for `address` holds `mac`. */
  const waitForEntry = async (address: string, mac: string | undefined): Promise<string | undefined> => {
    const deadline = Date.now() + neighbourUpdateWaitMs;
    for (;;) {
      const lladdr = clientEntry(address);
      if (lladdr === mac || Date.now() >= deadline) return lladdr;
      await sleep(neighbourPollIntervalMs);
    }
  };
  const garp = (kind: string) => ({ op: 'garp', interface: 'v0', ip: vip, kind });

  t.test('hardwareAddress reads the MAC ip link reports', async (t) => {
    t.match(v0Mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, 'ip link reports a MAC for v0');
    t.same(probe({ op: 'hardware-address', interface: 'v0' }), [{ ok: true, value: v0Mac }]);
  });

  for (const kind of ['request', 'reply']) {
    t.test(`a gratuitous ARP (${kind} form) creates the client's entry`, async (t) => {
      run('ip', ['-n', client, 'neigh', 'flush', 'dev', 'v1']);
      t.equal(clientEntry(vip), undefined, 'no entry for the VIP before');
      const results = probe(garp(kind));
      t.match(results, [{ ok: true, value: { mac: v0Mac, bytesSent: 42 } }], 'sent 42 bytes from v0');
      t.equal(await waitForEntry(vip, v0Mac), v0Mac, `the client maps ${vip} to v0's MAC within ${neighbourUpdateWaitMs} ms`);
    });

    t.test(`a gratuitous ARP (${kind} form) switches an entry that points elsewhere`, async (t) => {
      run('ip', ['-n', client, 'neigh', 'replace', vip, 'lladdr', otherMac, 'dev', 'v1', 'nud', 'stale']);
      t.equal(clientEntry(vip), otherMac, 'the entry points at another MAC before');
      t.match(probe(garp(kind)), [{ ok: true }], 'sent');
      t.equal(await waitForEntry(vip, v0Mac), v0Mac, `the entry switched to v0's MAC within ${neighbourUpdateWaitMs} ms`);
    });
  }

  let ipv6Unavailable: string | false = false;
  try {
    run('ip', ['netns', 'exec', holder, 'sysctl', '-qw', 'net.ipv6.conf.v0.disable_ipv6=0']);
    run('ip', ['netns', 'exec', client, 'sysctl', '-qw', 'net.ipv6.conf.v1.disable_ipv6=0']);
    run('ip', ['-n', holder, 'addr', 'add', `fd00:${subnet.toString(16)}::1/64`, 'dev', 'v0', 'nodad']);
    run('ip', ['-n', client, 'addr', 'add', `fd00:${subnet.toString(16)}::2/64`, 'dev', 'v1', 'nodad']);
  } catch (error) {
    ipv6Unavailable = `IPv6 is not available in the namespaces: ${(error as Error).message}`;
  }

  // Without accept_untracked_na the kernel only updates existing entries from an unsolicited NA.
  t.test('an unsolicited neighbour advertisement switches the client\'s IPv6 entry', { skip: ipv6Unavailable }, async (t) => {
    run('ip', ['-n', client, 'neigh', 'replace', vip6, 'lladdr', otherMac, 'dev', 'v1', 'nud', 'stale']);
    t.equal(clientEntry(vip6), otherMac, 'the entry points at another MAC before');
    t.match(probe({ op: 'na', interface: 'v0', targetAddress: vip6 }), [{ ok: true, value: { mac: v0Mac } }], 'sent from v0');
    t.equal(await waitForEntry(vip6, v0Mac), v0Mac, `the entry switched to v0's MAC within ${neighbourUpdateWaitMs} ms`);
  });

  t.test('failures are RAFTVIP_PACKET_SOCKET_FAILED with errno and syscall', async (t) => {
    const [missingOpen, missingAddress, afterClose] = probe(
      { op: 'open', interface: 'nope0' },
      { op: 'hardware-address', interface: 'nope0' },
      { op: 'send-after-close', interface: 'v0' },
    );
    const failure = { ok: false, error: { name: 'PacketSocketError', code: 'RAFTVIP_PACKET_SOCKET_FAILED' } };
    t.match(missingOpen, failure, 'opening a missing interface fails');
    t.match(missingOpen, { error: { syscall: /^(if_nametoindex|bind)$/, errno: osConstants.errno.ENODEV } }, 'with ENODEV from if_nametoindex or bind');
    t.match(missingAddress, { ...failure, error: { ...failure.error, syscall: 'ioctl', errno: osConstants.errno.ENODEV } }, 'hardwareAddress of a missing interface: ioctl ENODEV');
    t.match(afterClose, { ...failure, error: { ...failure.error, syscall: 'send', errno: osConstants.errno.EBADF } }, 'send after close (closed twice): EBADF');
  });
}
