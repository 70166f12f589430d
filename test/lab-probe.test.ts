// Goal: pin down the lab's pure analysis without root or namespaces, with hand-made inputs: the
// probe's outage measure ("last success before, first success after"), including its edge cases
// (no success after, a fault before any success, attempts in flight at the fault, overlapping
// attempts, the window end); the name-server response and probe target parsers; VipWatch's
// monitor-line parser, holder intervals and overlap sweep (a sub-millisecond overlap is reported,
// a back-to-back handover is not); the config merge LabCluster applies for extraYaml; the
// loss() BPF program's encoding; and the lab's addressing helpers.

import t from 'tap';
import { holderIntervals, holdersAtTime, parseMonitorAddressLine, simultaneousHolders, type VipAddressEvent } from '../src/lab/address-monitor.js';
import { mergeConfig } from '../src/lab/lab-cluster.js';
import { canonicalAddress, labHostAddress, labHostAddress6, labHostIndex, labHostMac, lossBytecode, lossFromBytecode } from '../src/lab/lab-network.js';
import { attemptRatePerSecond, failedBetween, outageAround } from '../src/lab/probe-analysis.js';
import { nameFromResponse, nameResponse, parseTarget, type ProbeAttempt } from '../src/lab/probe-protocol.js';

const ok = (start: number, end: number, host = 'h1'): ProbeAttempt => ({ start, end, ok: true, host, error: null });
const failed = (start: number, end: number, error = 'ETIMEDOUT'): ProbeAttempt => ({ start, end, ok: false, host: null, error });

t.test('outageAround: last success before, first success after', async (t) => {
  const attempts = [
    ok(0, 1),
    ok(10, 11),
    ok(20, 21), // last success before the fault at 25
    failed(30, 230),
    failed(40, 240),
    ok(250, 251, 'h2'), // first success after
    ok(260, 261, 'h2'),
  ];
  t.same(outageAround(attempts, 25), {
    outageMs: 230,
    lastOkBeforeMs: 21,
    firstOkAfterMs: 251,
    failedAttempts: 2,
    hostsBefore: ['h1'],
    hostsAfter: ['h2'],
  });
  t.same(failedBetween(attempts, 25, 35), [failed(30, 230)], 'failedBetween goes by start');
  t.equal(attemptRatePerSecond(attempts, 0, 100), 50, '5 attempts started in 100 ms');
  t.equal(attemptRatePerSecond(attempts, 100, 100), 0, 'an empty span has no rate');
});

t.test('outageAround: no success after the fault', async (t) => {
  const result = outageAround([ok(0, 1), ok(10, 11), failed(20, 220), failed(30, 230)], 15);
  t.same(result, { outageMs: null, lastOkBeforeMs: 11, firstOkAfterMs: null, failedAttempts: 2, hostsBefore: ['h1'], hostsAfter: [] });
});

t.test('outageAround: a fault before any success (fault at start)', async (t) => {
  const result = outageAround([failed(0, 200), ok(5, 6), ok(10, 11, 'h2')], 0);
  t.same(result, { outageMs: null, lastOkBeforeMs: null, firstOkAfterMs: 6, failedAttempts: 1, hostsBefore: [], hostsAfter: ['h1', 'h2'] });
  t.same(outageAround([], 100), { outageMs: null, lastOkBeforeMs: null, firstOkAfterMs: null, failedAttempts: 0, hostsBefore: [], hostsAfter: [] }, 'no attempts at all');
});

t.test('outageAround: attempts in flight at the fault count for neither side', async (t) => {
  // ok(18, 40) started before the fault at 25 and ended after it: it proves nothing about after.
  const result = outageAround([ok(10, 11), ok(18, 40), ok(100, 101)], 25);
  t.equal(result.lastOkBeforeMs, 11);
  t.equal(result.firstOkAfterMs, 101);
  t.equal(result.outageMs, 90);
});

t.test('outageAround: "first" is the first to finish, not the first to start', async (t) => {
  const result = outageAround([ok(0, 1), ok(30, 90, 'h2'), ok(35, 40, 'h3')], 20);
  t.equal(result.firstOkAfterMs, 40);
  t.same(result.hostsAfter, ['h3', 'h2'], 'hosts after in the order they answered');
});

t.test('outageAround: the window end leaves later attempts out', async (t) => {
  const attempts = [ok(0, 1), failed(10, 210), ok(500, 501)];
  t.equal(outageAround(attempts, 5, { windowEndMs: 400 }).firstOkAfterMs, null);
  t.equal(outageAround(attempts, 5, { windowEndMs: 400 }).failedAttempts, 1);
  t.equal(outageAround(attempts, 5, { windowEndMs: 600 }).outageMs, 500);
});

t.test('name-server responses and probe targets', async (t) => {
  const response = nameResponse('h2');
  t.equal(response, 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nh2\n');
  t.equal(nameFromResponse(response), 'h2');
  t.equal(nameFromResponse(response.slice(0, -1)), null, 'not until the name\'s line is complete');
  t.equal(nameFromResponse('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n'), null, 'header only');
  t.equal(nameFromResponse('h3\n'), 'h3', 'a bare name without a header');
  t.equal(nameFromResponse('HTTP/1.0 200 OK\r\n\r\n\n'), null, 'an empty name is no name');
  t.same(parseTarget('10.213.0.100:80'), { host: '10.213.0.100', port: 80 });
  t.same(parseTarget('[fd72:7276::100]:8080'), { host: 'fd72:7276::100', port: 8080 });
  for (const bad of ['10.213.0.100', 'fd72:7276::100:80', 'lab:80', '10.213.0.100:0', '10.213.0.100:70000', '']) {
    t.equal(parseTarget(bad), null, `${JSON.stringify(bad)} is not a target`);
  }
});

t.test('parseMonitorAddressLine reads `ip -o monitor address`', async (t) => {
  t.same(parseMonitorAddressLine('2: eth0    inet 10.213.0.100/32 scope global eth0\\       valid_lft forever preferred_lft forever'), {
    deleted: false,
    interface: 'eth0',
    family: 'inet',
    address: '10.213.0.100',
    prefixLength: 32,
  });
  t.match(parseMonitorAddressLine('Deleted 2: eth0    inet 10.213.0.100/32 scope global deprecated eth0\\       valid_lft forever preferred_lft 0sec'), {
    deleted: true,
    address: '10.213.0.100',
  });
  t.match(parseMonitorAddressLine('[ADDR]2: eth0    inet6 fd72:7276::100/128 scope global nodad \\       valid_lft forever preferred_lft forever'), {
    deleted: false,
    family: 'inet6',
    address: 'fd72:7276::100',
    prefixLength: 128,
  });
  t.equal(parseMonitorAddressLine('3: br0: <BROADCAST,MULTICAST,UP> mtu 1500'), null, 'a link line is not an address line');
  t.equal(canonicalAddress('FD72:7276:0:0::100'), 'fd72:7276::100', 'IPv6 compared in the form ip prints');
});

t.test('holderIntervals: one interval per host while it has any copy', async (t) => {
  const e = (host: string, kind: VipAddressEvent['kind'], at: number, iface = 'eth0', prefixLength = 32): VipAddressEvent => ({ host, kind, interface: iface, prefixLength, at });
  t.same(holderIntervals([e('h1', 'added', 10), e('h1', 'deleted', 20)], 0), [{ host: 'h1', from: 10, to: 20 }]);
  t.same(
    holderIntervals([e('h1', 'added', 10), e('h1', 'added', 12, 'eth0', 24), e('h1', 'deleted', 15), e('h1', 'deleted', 30, 'eth0', 24)], 0),
    [{ host: 'h1', from: 10, to: 30 }],
    'two copies on one host are one holder until both are gone',
  );
  t.same(holderIntervals([e('h2', 'deleted', 7)], 5), [{ host: 'h2', from: 5, to: 7 }], 'a copy deleted before it was seen added was there since the start');
  t.same(holderIntervals([e('h3', 'present', 9)], 5), [{ host: 'h3', from: 5, to: null }], 'a copy found by the initial read counts from the start');
  t.same(holderIntervals([e('h1', 'added', 10), e('h1', 'added', 11)], 0), [{ host: 'h1', from: 10, to: null }], 'a repeated add changes nothing');
  const intervals = holderIntervals([e('h1', 'added', 10), e('h2', 'added', 15), e('h1', 'deleted', 20)], 0);
  t.same(holdersAtTime(intervals, 12), ['h1']);
  t.same(holdersAtTime(intervals, 17), ['h1', 'h2']);
  t.same(holdersAtTime(intervals, 20), ['h2'], 'an interval ends at its `to`, exclusive');
});

t.test('simultaneousHolders reports every overlap, however short', async (t) => {
  t.same(
    simultaneousHolders([{ host: 'h1', from: 0, to: 10 }, { host: 'h2', from: 10, to: null }], { from: 0, to: 50 }),
    { max: 1, overlaps: [] },
    'a back-to-back handover is not an overlap',
  );
  const short = simultaneousHolders([{ host: 'h1', from: 0, to: 10.3 }, { host: 'h2', from: 10, to: null }], { from: 0, to: 50 });
  t.equal(short.max, 2);
  t.equal(short.overlaps.length, 1);
  t.same(short.overlaps[0]!.hosts, ['h1', 'h2']);
  t.ok(Math.abs(short.overlaps[0]!.durationMs - 0.3) < 1e-9, 'a 0.3 ms overlap is reported as such');
  const three = simultaneousHolders(
    [{ host: 'h1', from: 0, to: 30 }, { host: 'h2', from: 10, to: 20 }, { host: 'h3', from: 15, to: 40 }],
    { from: 0, to: 50 },
  );
  t.equal(three.max, 3);
  t.same(three.overlaps, [{ from: 10, to: 30, durationMs: 20, hosts: ['h1', 'h2', 'h3'] }], 'adjacent overlapping spans merge into one');
  t.same(
    simultaneousHolders([{ host: 'h1', from: 0, to: 30 }, { host: 'h2', from: 10, to: null }], { from: 0, to: 50, exclude: (host, at) => host === 'h1' && at >= 10 }),
    { max: 1, overlaps: [] },
    'an excluded holder does not count',
  );
  t.same(
    simultaneousHolders([{ host: 'h1', from: 0, to: null }, { host: 'h2', from: 10, to: null }], { from: 20, to: 25 }),
    { max: 2, overlaps: [{ from: 20, to: 25, durationMs: 5, hosts: ['h1', 'h2'] }] },
    'clipped to [from, to); open intervals run to `to`',
  );
});

t.test('mergeConfig: maps merge key by key, null removes, anything else replaces', async (t) => {
  const base = { vip: { address: '10.213.0.100', announceCount: 3 }, log: { level: 'info' }, cluster: { peers: [{ id: 'h1' }, { id: 'h2' }] } };
  t.same(mergeConfig(base, { vip: { announceIntervalMs: 100 }, log: { level: 'debug' } }), {
    vip: { address: '10.213.0.100', announceCount: 3, announceIntervalMs: 100 },
    log: { level: 'debug' },
    cluster: { peers: [{ id: 'h1' }, { id: 'h2' }] },
  });
  t.same(mergeConfig(base, { vip: { announceCount: null }, cluster: { peers: [{ id: 'h9' }] } }), {
    vip: { address: '10.213.0.100' },
    log: { level: 'info' },
    cluster: { peers: [{ id: 'h9' }] },
  });
  t.same(mergeConfig(base, null), base, 'an empty YAML document changes nothing');
});

t.test('loss() BPF program and the addressing plan', async (t) => {
  t.equal(lossBytecode(100), '1,6 0 0 2', '100 % drops everything');
  t.equal(lossBytecode(50), '4,32 0 0 4294963256,53 1 0 2147483648,6 0 0 2,6 0 0 4294967295');
  for (const percent of [0.5, 1, 30, 50, 99.9, 100]) t.equal(lossFromBytecode(lossBytecode(percent)), percent, `${percent} % round-trips`);
  t.equal(lossFromBytecode('1,6 0 0 0'), null, 'another program is not ours');
  t.same([1, 7].map(labHostAddress), ['10.213.0.11', '10.213.0.17']);
  t.same([1, 7].map(labHostAddress6), ['fd72:7276::11', 'fd72:7276::17']);
  t.same([1, 7].map(labHostMac), ['02:72:76:00:00:01', '02:72:76:00:00:07']);
  t.equal(labHostIndex('h3', 3), 3);
  t.equal(labHostIndex('h4', 3), null);
  t.equal(labHostIndex('h0'), null);
  t.equal(labHostIndex('c'), null);
});

t.test('ip -ts monitor lines: the timestamp prefix is split off and read as local time with microseconds', async (t) => {
  const { splitMonitorTimestamp } = await import('../src/lab/address-monitor.js');
  const stamped = splitMonitorTimestamp('[2026-11-21T11:43:03.821337] 2: eth0    inet 10.213.0.100/32 scope global eth0');
  t.equal(stamped.line, '2: eth0    inet 10.213.0.100/32 scope global eth0');
  t.ok(stamped.wallMs !== null && Math.abs(stamped.wallMs - (new Date(2026, 10, 21, 11, 43, 3).getTime() + 821.337)) < 1e-6, 'local time plus 821.337 ms');
  t.same(splitMonitorTimestamp('Deleted 2: eth0 inet 10.213.0.100/32'), { line: 'Deleted 2: eth0 inet 10.213.0.100/32', wallMs: null }, 'no prefix: the line as is');
});

t.test('longestGap: the longest time between consecutive successful completions', async (t) => {
  const { longestGap } = await import('../src/lab/probe-analysis.js');
  const attempt = (start: number, end: number, ok: boolean) => ({ start, end, ok, host: ok ? 'h1' : null, error: ok ? null : 'ETIMEDOUT' });
  const attempts = [attempt(0, 1, true), attempt(5, 6, true), attempt(10, 510, false), attempt(15, 120, true), attempt(125, 126, true), attempt(130, 131, true)];
  t.equal(longestGap(attempts, 0, 1000), 114, 'from 6 to 120: the failed attempt does not split it');
  t.equal(longestGap(attempts, 100, 1000), 6, 'only completions inside the window');
  t.equal(longestGap([attempt(0, 1, true)], 0, 10), null, 'one success is no gap');
  t.equal(longestGap([], 0, 10), null);
});
