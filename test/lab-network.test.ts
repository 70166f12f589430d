// Goal: show that the lab (src/lab/) builds what it says and that its oracles tell the truth, on
// a real kernel: a 3-host L2 segment of network namespaces with the fixed names, MACs and
// addresses and no route out; processes started in a namespace are the commands themselves;
// the client reaches each host's name server at the host's own address (IPv4 and IPv6, by curl
// and by the probe) and learns the host's MAC; cutLink/restoreLink partition and heal a host;
// loss drops frames and is removed (netem where the kernel has it); vipHolders and VipWatch see a VIP added and removed by hand, in
// time order, and a deliberate overlap on two hosts is reported with its duration; a LabCluster
// of 3 real daemons elects a leader whose `raftvip status` says so, and after SIGKILL of the
// leader another is elected and the killed host rejoins; the probe records successes against a
// host address and failures while that host is cut off, and outageAround measures about the
// cut; destroy() leaves no namespace behind, and cleanStale() removes a lab whose owner was
// killed, with the process left inside it.
//
// Every namespace is `rvl-<this pid>-<random>-*`, deleted in teardown pass or fail (and by the
// next run's cleanStale if this process is killed). Needs root; skipped otherwise.

import t from 'tap';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { VipWatch } from '../src/lab/address-monitor.js';
import { LabCluster } from '../src/lab/lab-cluster.js';
import { LabNetwork, labVip } from '../src/lab/lab-network.js';
import { LabProbe } from '../src/lab/lab-probe.js';
import { monotonicNowMs } from '../src/lab/monotonic-clock.js';
import { attemptRatePerSecond } from '../src/lab/probe-analysis.js';

const commandTimeoutMs = 10_000;
/** The lab builds in ~0.04 s here; this only catches something badly wrong. */
const buildTimeMsMax = 2_000;
/** How long a partition lasts in the probe test: longer than the probe's 200 ms timeout. */
const cutDurationMs = 400;
/** How long after restoreLink (port-down) traffic may take to flow again: up to one ARP
 * retransmit interval (1 s; measured ≤ 0.83 s), plus margin. */
const linkReturnMsMax = 1_500;
/** A generous bound on VipWatch's stamping latency (measured: about 0.5 ms). */
const stampLatencyMsMax = 50;
const flipCount = 20;
const flipperScript = fileURLToPath(new URL('./support/address-flipper.js', import.meta.url));
const ownerScript = fileURLToPath(new URL('./support/lab-owner.js', import.meta.url));
const nameServerScript = fileURLToPath(new URL('../src/lab/name-server.js', import.meta.url));

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: commandTimeoutMs });
}

function labNamespacesLeft(prefix: string): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}-`));
}

/** Resolves with the child's first stdout line. */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline !== -1) resolve(text.slice(0, newline));
    });
    child.once('exit', (code) => reject(new Error(`exited ${code} before its first line: ${text}`)));
  });
}

if (process.getuid?.() !== 0) {
  t.skip('lab tests need root to create network namespaces (CI runs as root)', () => {});
} else {
  t.test('LabNetwork rejects a lab size outside 1..7', async (t) => {
    t.throws(() => LabNetwork.create({ hosts: 0 }), { code: 'LAB_INVALID_OPTION' });
    t.throws(() => LabNetwork.create({ hosts: 8 }), { code: 'LAB_INVALID_OPTION' });
  });

  const buildStart = monotonicNowMs();
  const lab = LabNetwork.create({ hosts: 3 });
  const buildMs = monotonicNowMs() - buildStart;
  t.teardown(() => lab.destroy());
  const client = lab.clientNamespace;
  const curl = (url: string, options: { maxTimeS: number }) =>
    spawnSync('ip', ['netns', 'exec', client, 'curl', '-sg', '--max-time', String(options.maxTimeS), '-w', '%{time_connect}', url], {
      encoding: 'utf8',
      timeout: commandTimeoutMs,
    });

  t.test('builds the segment: names, MACs, addresses, sysctls, no route out', async (t) => {
    t.comment(`3-host lab built in ${buildMs.toFixed(1)} ms`);
    t.ok(buildMs < buildTimeMsMax, `built in under ${buildTimeMsMax} ms`);
    t.match(lab.prefix, new RegExp(`^rvl-${process.pid}-[0-9a-f]{4}$`));
    t.same(lab.hosts, ['h1', 'h2', 'h3']);
    t.same(labNamespacesLeft(lab.prefix).sort(), [`${lab.prefix}-br`, `${lab.prefix}-c`, `${lab.prefix}-h1`, `${lab.prefix}-h2`, `${lab.prefix}-h3`]);
    const bridge = JSON.parse(run('ip', ['-n', lab.bridgeNamespace, '-j', '-d', 'link', 'show', 'br0'])) as { operstate: string; linkinfo: { info_data: { stp_state: number; forward_delay: number } } }[];
    t.match(bridge[0], { linkinfo: { info_data: { stp_state: 0, forward_delay: 0 } } }, 'br0 has STP off and no forward delay');
    const ports = JSON.parse(run('ip', ['-n', lab.bridgeNamespace, '-j', 'link', 'show', 'master', 'br0'])) as { ifname: string }[];
    t.same(ports.map((p) => p.ifname).sort(), ['c', 'h1', 'h2', 'h3'], 'bridge ports h1..h3 and c');
    const ends = [...lab.hosts.map((h) => ({ ns: lab.hostNamespace(h), mac: lab.hostMac(h), v4: lab.hostAddress(h), v6: lab.hostAddress6(h) })), { ns: client, mac: lab.clientMac, v4: '10.213.0.200', v6: 'fd72:7276::200' }];
    t.same(ends.map((e) => e.mac), ['02:72:76:00:00:01', '02:72:76:00:00:02', '02:72:76:00:00:03', '02:72:76:00:00:c8']);
    t.same(ends.map((e) => e.v4), ['10.213.0.11', '10.213.0.12', '10.213.0.13', '10.213.0.200']);
    for (const end of ends) {
      const links = JSON.parse(run('ip', ['-n', end.ns, '-j', 'addr', 'show'])) as { ifname: string; address: string; flags: string[]; addr_info: { local: string; prefixlen: number; family: string; scope: string }[] }[];
      const eth0 = links.find((l) => l.ifname === 'eth0');
      const lo = links.find((l) => l.ifname === 'lo');
      t.ok(lo?.flags.includes('UP'), `${end.ns}: lo is up`);
      t.equal(eth0?.address, end.mac, `${end.ns}: eth0 MAC`);
      t.same(
        eth0?.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`),
        [`${end.v4}/24`, `${end.v6}/64`],
        `${end.ns}: eth0 addresses`,
      );
      t.equal(run('ip', ['-n', end.ns, 'route', 'show', 'default']).trim(), '', `${end.ns}: no IPv4 default route`);
      t.equal(run('ip', ['-n', end.ns, '-6', 'route', 'show', 'default']).trim(), '', `${end.ns}: no IPv6 default route`);
    }
    const sysctl = (ns: string, key: string) => run('ip', ['netns', 'exec', ns, 'sysctl', '-n', key]).trim();
    for (const host of lab.hosts) {
      const ns = lab.hostNamespace(host);
      t.same(
        ['all', 'eth0'].flatMap((dev) => [sysctl(ns, `net.ipv4.conf.${dev}.arp_ignore`), sysctl(ns, `net.ipv4.conf.${dev}.arp_announce`)]),
        ['1', '2', '1', '2'],
        `${host}: arp_ignore=1, arp_announce=2`,
      );
    }
    t.equal(sysctl(client, 'net.ipv4.conf.eth0.arp_accept'), '1', 'client: arp_accept=1');
    t.throws(() => lab.hostNamespace('h4'), { code: 'LAB_INVALID_OPTION' }, 'h4 is not a host of a 3-host lab');
    t.equal(lab.macToHost('02:72:76:00:00:02'), 'h2');
    t.equal(lab.macToHost('02:72:76:00:00:C8'), null, 'the client MAC names no host');
  });

  t.test('spawnIn: the child is the command itself, inside the namespace', async (t) => {
    const child = lab.spawnIn(lab.hostNamespace('h2'), 'sleep', ['30'], { stdio: 'ignore' });
    const pid = child.pid!;
    // `ip netns exec` enters the namespace, then execs: poll until the exec has happened.
    const deadline = Date.now() + commandTimeoutMs;
    while (run('readlink', [`/proc/${pid}/exe`]).trim() !== '/usr/bin/sleep' && Date.now() < deadline) await sleep(5);
    t.equal(run('readlink', [`/proc/${pid}/exe`]).trim(), '/usr/bin/sleep', 'the PID is the command\'s own');
    t.equal(run('ip', ['netns', 'identify', String(pid)]).trim(), lab.hostNamespace('h2'), 'and it runs in h2\'s namespace');
    t.ok(run('ip', ['netns', 'pids', lab.hostNamespace('h2')]).split('\n').includes(String(pid)), 'ip netns pids lists it');
    const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGTERM');
    t.equal(await exited, 'SIGTERM', 'a signal sent to the PID reaches the command');
  });

  t.test('the client reaches each host\'s name server at its own address', async (t) => {
    const servers = lab.hosts.map((host) => lab.spawnIn(lab.hostNamespace(host), process.execPath, [nameServerScript, '--name', host, '--port', '80'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    t.teardown(() => servers.forEach((s) => s.kill('SIGTERM')));
    for (const [i, server] of servers.entries()) t.match(JSON.parse(await firstLine(server)), { listening: { name: lab.hosts[i], port: 80 } });

    for (const host of lab.hosts) {
      const v4 = curl(`http://${lab.hostAddress(host)}/`, { maxTimeS: 2 });
      t.equal(v4.status, 0, `curl ${lab.hostAddress(host)} succeeds`);
      t.match(v4.stdout, new RegExp(`^${host}\n`), `and reads ${host}`);
      const v6 = curl(`http://[${lab.hostAddress6(host)}]/`, { maxTimeS: 2 });
      t.match(v6.stdout, new RegExp(`^${host}\n`), `curl [${lab.hostAddress6(host)}] reads ${host}`);
      const neighbour = await lab.clientNeighbour(lab.hostAddress(host));
      t.equal(neighbour?.mac, lab.hostMac(host), `the client maps ${lab.hostAddress(host)} to ${host}'s MAC (${neighbour?.state})`);
      t.equal(lab.macToHost(neighbour?.mac ?? ''), host);
    }
    t.equal(await lab.clientNeighbour('10.213.0.99'), null, 'no entry for an address nobody asked for');

    // A raw connect + read, without sending anything: the probe.
    const probe = await LabProbe.start({ network: lab, target: `[${lab.hostAddress6('h3')}]:80`, intervalMs: 10, timeoutMs: 200 });
    const attempt = await probe.waitForAttempt((a) => a.ok, commandTimeoutMs);
    t.equal(attempt.host, 'h3', 'the probe reads h3 over IPv6');
    await probe.stop();

    t.test('cutLink makes a host unreachable and restoreLink brings it back', async (t) => {
      lab.cutLink('h1');
      const cut = curl(`http://${lab.hostAddress('h1')}/`, { maxTimeS: 0.5 });
      t.equal(cut.status, 28, 'curl to h1 times out while its port is down');
      t.match(curl(`http://${lab.hostAddress('h2')}/`, { maxTimeS: 2 }).stdout, /^h2\n/, 'h2 still answers');
      t.match(run('ip', ['-n', lab.hostNamespace('h1'), 'link', 'show', 'eth0']), /NO-CARRIER/, 'h1\'s eth0 lost carrier');
      lab.restoreLink('h1');
      t.match(curl(`http://${lab.hostAddress('h1')}/`, { maxTimeS: 2 }).stdout, /^h1\n/, 'h1 answers again after restoreLink');

      lab.cutLink('h3', { mode: 'port-disabled' });
      t.equal(curl(`http://${lab.hostAddress('h3')}/`, { maxTimeS: 0.5 }).status, 28, 'curl to h3 times out while its port forwards nothing');
      t.notMatch(run('ip', ['-n', lab.hostNamespace('h3'), 'link', 'show', 'eth0']), /NO-CARRIER/, 'h3\'s eth0 keeps its carrier');
      lab.restoreLink('h3');
      t.match(curl(`http://${lab.hostAddress('h3')}/`, { maxTimeS: 2 }).stdout, /^h3\n/, 'h3 answers again after restoreLink');
      t.doesNotThrow(() => lab.restoreLink('h3'), 'restoring twice is a no-op');
    });

    t.test('netem delays a host and is removed (where the kernel has netem)', async (t) => {
      if (!LabNetwork.netemSupported()) {
        t.comment('this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM unset): netem() must say so');
        t.throws(() => lab.netem('h2', ['delay', '60ms']), { code: 'LAB_UNSUPPORTED' });
        t.doesNotThrow(() => lab.netem('h2', null), 'removing is still a no-op');
        return;
      }
      const connectS = () => Number(curl(`http://${lab.hostAddress('h2')}/`, { maxTimeS: 2 }).stdout.split('\n').at(-1));
      lab.netem('h2', ['delay', '60ms']);
      t.match(lab.netemShown('h2'), /netem .*delay 60ms/);
      t.ok(connectS() >= 0.06, 'the TCP handshake takes at least the 60 ms delay');
      lab.netem('h2', ['loss', '1%', 'delay', '1ms', '1ms']);
      t.match(lab.netemShown('h2'), /delay 1ms\s+1ms loss 1%/, 'replaced in place');
      lab.netem('h2', null);
      t.equal(lab.netemShown('h2'), null, 'removed');
      t.ok(connectS() < 0.06, 'the handshake is fast again');
      t.doesNotThrow(() => lab.netem('h2', null), 'removing twice is a no-op');
      t.throws(() => lab.netem('h2', ['delay 1ms']), { code: 'LAB_INVALID_OPTION' });
    });

    t.test('loss drops a share of a host\'s frames and is removed', async (t) => {
      lab.loss('h2', 100);
      t.equal(lab.lossShown('h2'), 100);
      t.equal(curl(`http://${lab.hostAddress('h2')}/`, { maxTimeS: 0.5 }).status, 28, 'at 100 % nothing gets through');
      lab.loss('h2', 50);
      t.equal(lab.lossShown('h2'), 50, 'replaced in place');
      const probe = await LabProbe.start({ network: lab, target: `${lab.hostAddress('h2')}:80`, intervalMs: 5, timeoutMs: 100 });
      await sleep(1000);
      await probe.stop();
      const ok = probe.attempts().filter((a) => a.ok).length;
      const failed = probe.attempts().length - ok;
      t.comment(`at 50 % loss on h2's egress: ${ok} attempts succeeded, ${failed} failed`);
      t.ok(ok > 0 && failed > 0, 'some attempts get through, some do not');
      lab.loss('h2', null);
      t.equal(lab.lossShown('h2'), null, 'removed');
      t.match(curl(`http://${lab.hostAddress('h2')}/`, { maxTimeS: 2 }).stdout, /^h2\n/, 'h2 answers again');
      t.doesNotThrow(() => lab.loss('h2', null), 'removing twice is a no-op');
      t.throws(() => lab.loss('h2', 0), { code: 'LAB_INVALID_OPTION' });
      t.throws(() => lab.loss('h2', 101), { code: 'LAB_INVALID_OPTION' });
    });
  });

  t.test('vipHolders and VipWatch see a VIP added and removed by hand', async (t) => {
    const addVip = (host: string) => run('ip', ['-n', lab.hostNamespace(host), 'addr', 'add', `${labVip}/32`, 'dev', 'eth0']);
    const delVip = (host: string) => run('ip', ['-n', lab.hostNamespace(host), 'addr', 'del', `${labVip}/32`, 'dev', 'eth0']);
    const watch = await VipWatch.start({ network: lab });
    t.teardown(() => watch.stop());
    t.same(await lab.vipHolders(), [], 'nobody holds the VIP');
    t.same(watch.holders(), []);

    // Stamping latency: the changes a helper makes by rtnetlink, stamped around each request.
    const flipper = lab.spawnIn(lab.hostNamespace('h2'), process.execPath, [flipperScript, JSON.stringify({ interface: 'eth0', address: labVip, count: flipCount, intervalMs: 10 })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let flipperOutput = '';
    flipper.stdout!.setEncoding('utf8').on('data', (chunk: string) => (flipperOutput += chunk));
    const flipperExit = await new Promise<number | null>((resolve) => flipper.once('close', resolve));
    t.equal(flipperExit, 0, 'the helper added and removed the VIP');
    const changes = flipperOutput.trim().split('\n').map((line) => JSON.parse(line) as { op: 'add' | 'remove'; before: number; after: number });
    const events = watch.events().filter((e) => e.host === 'h2' && e.at >= changes[0]!.before);
    t.same(events.map((e) => e.kind), changes.map((c) => (c.op === 'add' ? 'added' : 'deleted')), 'every change was seen, in order');
    const low = events.map((e, i) => e.at - changes[i]!.after).sort((a, b) => a - b);
    const high = events.map((e, i) => e.at - changes[i]!.before).sort((a, b) => a - b);
    const median = (values: number[]) => values[values.length >> 1]!.toFixed(2);
    t.comment(`VipWatch stamping latency over ${events.length} changes: median between ${median(low)} and ${median(high)} ms, worst at most ${high.at(-1)!.toFixed(2)} ms`);
    t.ok(events.every((e, i) => e.at >= changes[i]!.before), 'no stamp precedes the request that caused it');
    t.ok(high.at(-1)! < stampLatencyMsMax, `every stamp within ${stampLatencyMsMax} ms of its request`);

    const beforeAdd = monotonicNowMs();
    addVip('h2');
    const added = await watch.waitForHolder('h2', 1000);
    t.same(await lab.vipHolders(), ['h2'], 'vipHolders: h2');
    t.same(watch.holdersAt(added + 0.001), ['h2'], 'holdersAt just after the add: h2');
    t.same(watch.holdersAt(beforeAdd), [], 'holdersAt before the add: nobody');
    const beforeDel = monotonicNowMs();
    delVip('h2');
    const removed = await watch.waitForHolder(null, 1000);
    t.same(await lab.vipHolders(), [], 'vipHolders: nobody');
    const last = watch.timeline().at(-1)!;
    t.equal(last.host, 'h2');
    t.ok(beforeAdd <= last.from && last.from < beforeDel && beforeDel <= last.to! && last.to === removed, 'the interval is stamped in order, inside the commands that made it');
    t.match(watch.maxSimultaneousHolders({ from: watch.startedAt, to: monotonicNowMs() }), { max: 1, overlaps: [] }, 'one holder at a time so far');

    // A deliberate overlap: h1 and h3 both hold the VIP for ~30 ms.
    const overlapStart = monotonicNowMs();
    addVip('h1');
    addVip('h3');
    await watch.waitForHolders(['h1', 'h3'], 1000);
    await sleep(30);
    delVip('h1');
    await watch.waitForHolder('h3', 1000);
    delVip('h3');
    await watch.waitForHolder(null, 1000);
    const result = watch.maxSimultaneousHolders({ from: overlapStart, to: monotonicNowMs() });
    t.equal(result.max, 2, 'two hosts held the VIP at once');
    t.equal(result.overlaps.length, 1);
    t.same(result.overlaps[0]?.hosts, ['h1', 'h3']);
    t.ok((result.overlaps[0]?.durationMs ?? 0) >= 30, `the overlap lasted ${result.overlaps[0]?.durationMs.toFixed(2)} ms`);
    t.match(watch.maxSimultaneousHolders({ from: overlapStart, to: monotonicNowMs(), exclude: (host) => host === 'h3' }), { max: 1, overlaps: [] }, 'excluding h3 leaves no overlap');
    t.same(watch.health(), { failures: [], droppedEvents: 0 });
    await watch.stop();

    // A VIP already there when a watch starts is held since the watch's start.
    addVip('h1');
    const second = await VipWatch.start({ network: lab });
    t.same(second.timeline(), [{ host: 'h1', from: second.startedAt, to: null }], 'found by the initial read');
    t.match(second.events(), [{ host: 'h1', kind: 'present', interface: 'eth0', prefixLength: 32 }]);
    delVip('h1');
    await second.waitForHolder(null, 1000);
    await second.stop();
  });

  t.test('a LabCluster of 3 real daemons', async (t) => {
    const cluster = new LabCluster({ network: lab });
    t.teardown(() => cluster.stop());
    t.teardown(() => {
      // On failure, the daemons' own words.
      if (t.passing()) return;
      for (const host of lab.hosts) t.comment(`--- ${host}\n${cluster.logTail(host, 30)}`);
    });
    const startedAt = monotonicNowMs();
    await cluster.start();
    const leader = await cluster.waitForLeader({ timeoutMs: 10_000 });
    t.comment(`leader ${leader} ${(monotonicNowMs() - startedAt).toFixed(0)} ms after start`);
    const status = await cluster.status(leader);
    t.match(status, { id: leader, role: 'leader', cluster: 'lab' }, 'raftvip status on the leader says leader');
    for (const host of lab.hosts) {
      t.match(cluster.view(host), { running: true, paused: false }, `${host} runs`);
      t.ok(cluster.view(host).pid, `${host} has a PID`);
    }

    t.test('the probe sees a follower\'s address fail while it is cut off', async (t) => {
      const follower = lab.hosts.find((h) => h !== cluster.leader())!;
      const probe = await LabProbe.start({ network: lab, target: `${lab.hostAddress(follower)}:80`, intervalMs: 5, timeoutMs: 200 });
      t.teardown(() => probe.stop());
      await probe.waitForAttempt((a) => a.ok, 2000);
      await sleep(500);
      // The fault is in effect once cutLink returns: an attempt started while `ip` ran may
      // still have got through.
      lab.cutLink(follower);
      const faultAt = monotonicNowMs();
      await sleep(cutDurationMs);
      // The cut lasted at least from faultAt to restoreStart, whatever `ip` took either side.
      const restoreStart = monotonicNowMs();
      lab.restoreLink(follower);
      const restoredAt = monotonicNowMs();
      await probe.waitForAttempt((a) => a.ok && a.start >= restoredAt, 5000);
      await sleep(200);
      const summary = await probe.stop();
      const outage = probe.outageAround(faultAt);
      const rate = attemptRatePerSecond(probe.attempts(), probe.attempts()[0]!.start, faultAt);
      t.comment(`probe: ${summary.attempts} attempts (${summary.skipped} skipped), ${rate.toFixed(0)} attempts/s before the cut; outage ${outage.outageMs?.toFixed(1)} ms for a ${(restoreStart - faultAt).toFixed(1)} ms cut, ${outage.failedAttempts} failed attempts`);
      t.ok(probe.attempts().filter((a) => a.ok && a.end < faultAt).length > 20, 'successes before the cut');
      t.ok(probe.failedBetween(faultAt, restoredAt).length > 0, 'failures during the cut');
      t.ok(probe.failedBetween(faultAt, restoredAt).every((a) => a.error === 'ETIMEDOUT'), 'they time out (the bridge drops the SYN)');
      t.same(outage.hostsBefore, [follower]);
      t.same(outage.hostsAfter, [follower]);
      // The host answers within a few ms of restoreLink, or, when its ARP for the client began
      // during the cut, up to ~1 s later (lab-network.ts, cutLink).
      t.ok(outage.outageMs !== null && outage.outageMs >= restoreStart - faultAt && outage.outageMs < restoredAt - faultAt + linkReturnMsMax, 'the outage is about the cut');
      t.ok(rate > 100, 'the probe starts well over 100 attempts per second at a 5 ms interval');
    });

    t.test('SIGKILL of the leader: another is elected, and the killed host rejoins', async (t) => {
      const before = await cluster.waitForLeader({ timeoutMs: 10_000 });
      const killedAt = monotonicNowMs();
      cluster.kill(before, 'SIGKILL');
      t.match(await cluster.waitForExit(before, 5000), { signal: 'SIGKILL' });
      t.equal(cluster.view(before).running, false, `${before} is no longer running`);
      const after = await cluster.waitForLeader({ timeoutMs: 10_000, exclude: [before] });
      t.not(after, before, `${after} took over`);
      t.comment(`new leader ${after} ${(monotonicNowMs() - killedAt).toFixed(0)} ms after SIGKILL of ${before}`);
      t.equal(cluster.leader(), after, 'leader() names it (the killed host does not count)');
      await cluster.start(before);
      t.equal(cluster.view(before).running, true, `${before} runs again on its data directory`);
      const rejoined = await cluster.status(before);
      t.ok(['follower', 'candidate', 'leader'].includes(rejoined.role), `its status answers (${rejoined.role}, term ${rejoined.term})`);
    });

    t.test('transfer-leadership and vip release run through the CLI in the namespace', async (t) => {
      const from = await cluster.waitForLeader({ timeoutMs: 10_000 });
      const handover = await cluster.transferLeadership(from);
      t.equal(handover.code, 0, `raftvip transfer-leadership on ${from} succeeds: ${handover.stdout.trim()}${handover.stderr.trim()}`);
      const to = await cluster.waitForLeader({ timeoutMs: 10_000, exclude: [from] });
      t.not(to, from, `${to} leads now`);
      const release = await cluster.vipRelease(lab.hosts.find((h) => h !== to)!);
      t.equal(release.code, 0, 'raftvip vip release exits 0');
      t.match(release.stdout, labVip, 'and speaks of the lab VIP');
    });

    t.test('SIGSTOP and SIGCONT pause and resume a daemon', async (t) => {
      const host = lab.hosts.find((h) => h !== cluster.leader())!;
      cluster.kill(host, 'SIGSTOP');
      t.equal(cluster.view(host).paused, true);
      cluster.kill(host, 'SIGCONT');
      t.equal(cluster.view(host).paused, false);
      t.match(await cluster.status(host), { id: host });
    });

    t.test('stop() ends every process and removes the files', async (t) => {
      const pids = lab.hosts.map((h) => cluster.view(h).pid!);
      await cluster.stop();
      t.same(lab.hosts.map((h) => cluster.view(h).running), [false, false, false]);
      t.same(pids.filter((pid) => existsSync(`/proc/${pid}`)), [], 'no daemon PID is left');
      t.notOk(existsSync(cluster.dir), 'the temp directory is gone');
      t.equal(lab.allNamespaces().flatMap((ns) => run('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)).length, 0, 'no process is left in any lab namespace');
    });
  });

  t.test('LabCluster writes one peer file per host, with the vip option and extraYaml merged', async (t) => {
    const cluster = new LabCluster({
      network: lab,
      vip: { announceIntervalMs: 100 },
      extraYaml: (host) => (host === 'h2' ? 'raft:\n  electionTimeoutMs: 400\nlog:\n  level: debug\n' : ''),
    });
    t.teardown(() => cluster.stop());
    t.equal(statSync(cluster.dir).mode & 0o777, 0o700, 'the directory is private');
    t.equal(statSync(cluster.pskFile).mode & 0o777, 0o600, 'the key file is 0600');
    t.match(readFileSync(cluster.pskFile, 'utf8'), /^[0-9a-f]{64}\n$/, '32 random bytes as hex');
    const h1 = parseYaml(readFileSync(cluster.configFile('h1'), 'utf8')) as Record<string, unknown>;
    t.same(h1, {
      cluster: {
        name: 'lab',
        peers: [
          { id: 'h1', address: '10.213.0.11:7480' },
          { id: 'h2', address: '10.213.0.12:7480' },
          { id: 'h3', address: '10.213.0.13:7480' },
        ],
        auth: { pskFile: cluster.pskFile },
      },
      node: { id: 'h1', dataDir: cluster.dataDir('h1') },
      vip: { address: labVip, announceIntervalMs: 100 },
      loadBalancer: { enabled: false },
      admin: { listen: '127.0.0.1:7481' },
      log: { level: 'info' },
    });
    const h2 = parseYaml(readFileSync(cluster.configFile('h2'), 'utf8')) as { raft: unknown; log: unknown };
    t.same([h2.raft, h2.log], [{ electionTimeoutMs: 400 }, { level: 'debug' }], 'extraYaml adds and overrides');
    await cluster.stop();
    t.notOk(existsSync(cluster.dir), 'stop() removes the files of a cluster that never started');
  });

  t.test('destroy() deletes every namespace of the lab; a second destroy is a no-op', async (t) => {
    lab.destroy();
    t.same(labNamespacesLeft(lab.prefix), []);
    t.doesNotThrow(() => lab.destroy());
    t.throws(() => lab.cutLink('h1'), { code: 'LAB_STOPPED' });
  });

  t.test('cleanStale() removes a lab whose owner was killed, and what ran inside it', async (t) => {
    const owner = spawn(process.execPath, [ownerScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    const { prefix, sleepPid } = JSON.parse(await firstLine(owner)) as { prefix: string; sleepPid: number };
    const ownerExited = new Promise((resolve) => owner.once('exit', resolve));
    owner.kill('SIGKILL');
    await ownerExited;
    t.equal(labNamespacesLeft(prefix).length, 3, 'a killed owner leaves its namespaces behind');
    t.ok(existsSync(`/proc/${sleepPid}`), 'and the process it started inside');
    const removed = LabNetwork.cleanStale().filter((s) => s.namespace.startsWith(`${prefix}-`));
    t.same(removed.map((s) => s.namespace).sort(), [`${prefix}-br`, `${prefix}-c`, `${prefix}-h1`]);
    t.ok(removed.every((s) => s.ownerPid === owner.pid));
    t.ok(removed.some((s) => s.killedPids.includes(sleepPid)), 'the sleep inside was killed');
    t.same(labNamespacesLeft(prefix), [], 'nothing left');
    const deadline = Date.now() + 2000;
    while (existsSync(`/proc/${sleepPid}/exe`) && Date.now() < deadline) await sleep(10);
    t.notOk(existsSync(`/proc/${sleepPid}/exe`), 'the sleep is gone');
  });
}
