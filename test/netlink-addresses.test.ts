// Goal: show that NetlinkAddresses really changes the kernel's addresses, judged independently by
// iproute2 (`ip -j addr show`): the VIP is added with preferred_lft 0 and valid_lft forever (and
// IPv6 without DAD), adding twice and removing twice succeed, list() reports what the kernel
// holds, a copy added by hand with other lifetimes converges, and failures come back as
// RAFTVIP_NETLINK_FAILED with the kernel's errno.
//
// Everything happens in a throw-away network namespace `rvtest-<random>` holding one veth pair
// (v0, v1) and private addresses (10.250.X.0/24, fd00:X::/64); it has no route out and is deleted
// in teardown, pass or fail. NetlinkAddresses runs in a helper process inside the namespace
// (test/support/netlink-probe.ts), so this process never touches the host's interfaces. Needs
// root (CI runs as root); skipped otherwise.
//
// One kernel fact shapes the IPv4 checks: for an address with valid_lft forever the kernel
// reports preferred_lft as forever too (it prints the IFA_F_PERMANENT lifetimes), even for
// `ip addr add ... preferred_lft 0`; what preferred_lft 0 leaves visible is the `deprecated`
// flag. So IPv4 is judged by that flag and by comparison with an address iproute2 itself added
// with preferred_lft 0; IPv6 reports preferred_life_time 0 directly.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ProbeResult } from './support/netlink-probe.js';

const probePath = fileURLToPath(new URL('./support/netlink-probe.js', import.meta.url));
const commandTimeoutMs = 20_000;
const lifetimeForever = 4_294_967_295;

interface AddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  deprecated?: boolean;
  tentative?: boolean;
  nodad?: boolean;
  valid_life_time: number;
  preferred_life_time: number;
}

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: commandTimeoutMs });
}

if (process.getuid?.() !== 0) {
  t.skip('netlink address tests need root to create a network namespace (CI runs as root)', () => {});
} else {
  const namespace = `rvtest-${randomBytes(4).toString('hex')}`;
  const subnet = randomInt(1, 255);
  const ipv4 = { vip: `10.250.${subnet}.100`, handMade: `10.250.${subnet}.101`, host: `10.250.${subnet}.1` };
  const ipv6 = { vip: `fd00:${subnet.toString(16)}::100`, host: `fd00:${subnet.toString(16)}::1` };

  const ip = (...args: string[]): string => run('ip', ['-n', namespace, ...args]);
  const inNamespace = (command: string, ...args: string[]): string => run('ip', ['netns', 'exec', namespace, command, ...args]);

  let namespaceExists = false;
  const deleteNamespace = (): void => {
    if (!namespaceExists) return;
    namespaceExists = false;
    try {
      run('ip', ['netns', 'del', namespace]);
    } catch (error) {
      process.stderr.write(`could not delete network namespace ${namespace}: ${(error as Error).message}\n`);
    }
  };
  t.teardown(deleteNamespace);
  process.once('exit', deleteNamespace); // also when the test crashes outside tap's control

  run('ip', ['netns', 'add', namespace]);
  namespaceExists = true;
  ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ip('link', 'set', 'v0', 'up');
  ip('link', 'set', 'v1', 'up');
  ip('addr', 'add', `${ipv4.host}/24`, 'dev', 'v0');

  const probe = (...steps: object[]): ProbeResult[] =>
    JSON.parse(inNamespace(process.execPath, probePath, JSON.stringify(steps))) as ProbeResult[];
  const v0Addresses = (): AddrInfo[] => {
    const links = JSON.parse(ip('-j', 'addr', 'show', 'dev', 'v0')) as { addr_info: AddrInfo[] }[];
    return links[0]?.addr_info ?? [];
  };
  const copiesOf = (address: string): AddrInfo[] => v0Addresses().filter((info) => info.local === address);
  const vipStep = (op: string, address: string, prefixLength: number, iface = 'v0') => ({ op, address, prefixLength, interface: iface });

  t.test('IPv4: add with preferred_lft 0, idempotent add and remove, list', async (t) => {
    const added = probe(vipStep('add', ipv4.vip, 32), vipStep('add', ipv4.vip, 32), { op: 'list' });
    t.same(added.map((result) => result.ok), [true, true, true], 'add, add again and list succeed');
    const copies = copiesOf(ipv4.vip);
    t.equal(copies.length, 1, 'the kernel holds exactly one copy of the VIP');
    t.match(copies[0], { family: 'inet', prefixlen: 32, deprecated: true, valid_life_time: lifetimeForever }, 'deprecated (preferred_lft 0), valid forever');

    // iproute2's own `preferred_lft 0` is the reference the kernel output must match.
    ip('addr', 'add', `${ipv4.handMade}/32`, 'dev', 'v0', 'preferred_lft', '0');
    const reference = copiesOf(ipv4.handMade)[0];
    const pick = (info: AddrInfo | undefined) => ({ deprecated: info?.deprecated, valid: info?.valid_life_time, preferred: info?.preferred_life_time });
    t.same(pick(copies[0]), pick(reference), 'same lifetimes and flags as `ip addr add ... preferred_lft 0`');
    ip('addr', 'del', `${ipv4.handMade}/32`, 'dev', 'v0');

    const listed = added[2]?.ok === true ? (added[2].value as object[]) : [];
    t.match(listed, [{ address: ipv4.host, prefixLength: 24, interface: 'v0', family: 'ipv4' }], 'list() holds the host address');
    t.ok(
      listed.some((row) => JSON.stringify(row) === JSON.stringify({ address: ipv4.vip, prefixLength: 32, interface: 'v0', family: 'ipv4' })),
      'list() holds the VIP',
    );

    const removed = probe(vipStep('remove', ipv4.vip, 32), vipStep('remove', ipv4.vip, 32), { op: 'list' });
    t.same(removed.map((result) => result.ok), [true, true, true], 'remove and remove again succeed');
    t.equal(copiesOf(ipv4.vip).length, 0, 'the VIP is gone');
    t.ok(copiesOf(ipv4.host).length === 1, 'the host address is untouched');
    const listedAfter = removed[2]?.ok === true ? (removed[2].value as { address: string }[]) : [];
    t.notOk(listedAfter.some((row) => row.address === ipv4.vip), 'list() no longer holds the VIP');
  });

  t.test('IPv4: a copy added by hand without preferred_lft 0 converges', async (t) => {
    ip('addr', 'add', `${ipv4.vip}/32`, 'dev', 'v0');
    t.notOk(copiesOf(ipv4.vip)[0]?.deprecated, 'the hand-made copy is preferred');
    const results = probe(vipStep('add', ipv4.vip, 32));
    t.equal(results[0]?.ok, true, 'add over an existing copy succeeds');
    t.equal(copiesOf(ipv4.vip).length, 1, 'still one copy');
    t.equal(copiesOf(ipv4.vip)[0]?.deprecated, true, 'and it is now deprecated');
    t.equal(probe(vipStep('remove', ipv4.vip, 32))[0]?.ok, true, 'removed');
    t.equal(copiesOf(ipv4.vip).length, 0, 'the VIP is gone');
  });

  let ipv6Unavailable: string | false = false;
  try {
    inNamespace('sysctl', '-qw', 'net.ipv6.conf.v0.disable_ipv6=0');
  } catch (error) {
    ipv6Unavailable = `IPv6 is not available in the namespace: ${(error as Error).message}`;
  }

  t.test('IPv6: add with preferred_lft 0 and no DAD, idempotent add and remove, list', { skip: ipv6Unavailable }, async (t) => {
    const added = probe(vipStep('add', ipv6.vip, 128), vipStep('add', ipv6.vip, 128), { op: 'list' });
    t.same(added.map((result) => result.ok), [true, true, true], 'add, add again and list succeed');
    const copies = copiesOf(ipv6.vip);
    t.equal(copies.length, 1, 'the kernel holds exactly one copy of the VIP');
    t.match(copies[0], { family: 'inet6', prefixlen: 128, preferred_life_time: 0, valid_life_time: lifetimeForever, nodad: true }, 'preferred_lft 0, valid forever, nodad');
    t.notOk(copies[0]?.tentative, 'not tentative: usable at once');
    const listed = added[2]?.ok === true ? (added[2].value as object[]) : [];
    t.ok(
      listed.some((row) => JSON.stringify(row) === JSON.stringify({ address: ipv6.vip, prefixLength: 128, interface: 'v0', family: 'ipv6' })),
      'list() holds the VIP in RFC 5952 form',
    );

    // The point of preferred_lft 0: source address selection (RFC 6724 rule 3) avoids the VIP.
    ip('addr', 'add', `${ipv6.host}/64`, 'dev', 'v0', 'nodad');
    ip('-6', 'route', 'add', `fd00:${(subnet + 1).toString(16)}::/64`, 'dev', 'v0');
    const route = ip('-6', 'route', 'get', `fd00:${(subnet + 1).toString(16)}::5`);
    t.match(route, ` src ${ipv6.host} `, 'the host address, not the VIP, is the source for new connections');
    ip('-6', 'route', 'del', `fd00:${(subnet + 1).toString(16)}::/64`, 'dev', 'v0');
    ip('addr', 'del', `${ipv6.host}/64`, 'dev', 'v0');

    const removed = probe(vipStep('remove', ipv6.vip, 128), vipStep('remove', ipv6.vip, 128));
    t.same(removed.map((result) => result.ok), [true, true], 'remove and remove again succeed');
    t.equal(copiesOf(ipv6.vip).length, 0, 'the VIP is gone');

    ip('addr', 'add', `${ipv6.vip}/128`, 'dev', 'v0', 'nodad');
    t.not(copiesOf(ipv6.vip)[0]?.preferred_life_time, 0, 'a copy added by hand is preferred');
    t.equal(probe(vipStep('add', ipv6.vip, 128))[0]?.ok, true, 'add over the hand-made copy succeeds');
    t.equal(copiesOf(ipv6.vip)[0]?.preferred_life_time, 0, 'and converges to preferred_lft 0');
    t.equal(probe(vipStep('remove', ipv6.vip, 128))[0]?.ok, true, 'removed');
    t.equal(copiesOf(ipv6.vip).length, 0, 'the VIP is gone');
  });

  t.test('failures are RAFTVIP_NETLINK_FAILED with the errno', async (t) => {
    const v0Index = (JSON.parse(ip('-j', 'link', 'show', 'dev', 'v0')) as { ifindex: number }[])[0]?.ifindex;
    const results = probe(
      vipStep('add', ipv4.vip, 32, 'nope0'),
      vipStep('remove', ipv4.vip, 32, 'nope0'),
      { op: 'link-index', interface: 'nope0' },
      vipStep('add', 'not-an-address', 32),
      vipStep('add', ipv4.vip, 33),
      { op: 'link-index', interface: 'v0' },
    );
    const failure = (operation: string, errno: number) => ({ ok: false, error: { name: 'NetlinkError', code: 'RAFTVIP_NETLINK_FAILED', operation, errno } });
    t.match(results[0], failure('add', osConstants.errno.ENODEV), 'add to a missing interface: ENODEV from the kernel');
    t.match(results[1], failure('remove', osConstants.errno.ENODEV), 'remove from a missing interface: ENODEV');
    t.match(results[2], failure('link-index', osConstants.errno.ENODEV), 'linkIndex of a missing interface: ENODEV');
    t.match(results[3], failure('add', osConstants.errno.EINVAL), 'an address that does not parse: EINVAL');
    t.match(results[4], failure('add', osConstants.errno.EINVAL), 'an IPv4 prefix length of 33: EINVAL');
    t.same(results[5], { ok: true, value: v0Index }, 'linkIndex(v0) matches ip link');
    t.equal(copiesOf(ipv4.vip).length, 0, 'nothing was added');
  });
}
