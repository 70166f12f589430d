// Goal: show that the nftables data plane keeps the kernel's `raftvip_lb` table equal to the
// desired service and touches nothing else, judged by `nft -j list ruleset` (nft's own view of
// the kernel), not by the data plane's own parser: round robin over three servers, an
// idempotent re-apply that leaves the rule (and its round-robin counter) alone, a rule deleted by
// hand put back, a drained server left out of the map, weights as slot ranges, sh as a jhash,
// no ready server as a TCP-reset rule, an IPv6 VIP, forwarding turned on, and a removal that
// leaves a foreign table (kube-proxy's, say) in place. Traffic through the table is the lab's
// test (test/lab-lb.test.ts).
//
// Runs the data plane in a helper process inside a throw-away namespace (`rvnft-<random>`,
// deleted in teardown), so this process never touches the host's nftables. Needs root.

import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { run } from './support/netns-segment.js';

const probePath = fileURLToPath(new URL('./support/data-plane-probe.js', import.meta.url));

interface ProbeResult {
  results: ({ ok: true; value: unknown; ms: number } | { ok: false; error: { code?: string; message: string } })[];
  hostChanges: string[];
}
interface NftItem {
  table?: { family: string; name: string };
  rule?: { family: string; table: string; chain: string; handle: number; expr: unknown[] };
}

if (process.getuid?.() !== 0) {
  t.skip('nftables data-plane tests need root to create a network namespace (CI runs as root)', () => {});
} else {
  const namespace = `rvnft-${randomBytes(4).toString('hex')}`;
  run('ip', ['netns', 'add', namespace]);
  t.teardown(() => {
    run('ip', ['netns', 'del', namespace]);
  });
  run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);

  const probe = (...steps: object[]): ProbeResult =>
    JSON.parse(run('ip', ['netns', 'exec', namespace, process.execPath, probePath, JSON.stringify({ steps })])) as ProbeResult;
  const ruleset = (): NftItem[] => (JSON.parse(run('ip', ['netns', 'exec', namespace, 'nft', '-j', 'list', 'ruleset'])) as { nftables: NftItem[] }).nftables;
  const rules = (family = 'ip'): NonNullable<NftItem['rule']>[] =>
    ruleset().flatMap((item) => (item.rule && item.rule.table === 'raftvip_lb' && item.rule.family === family ? [item.rule] : []));
  /** The DNAT map of the prerouting rule as "slot -> address . port" strings. */
  const dnatMap = (family = 'ip'): string[] => {
    const rule = rules(family).find((candidate) => candidate.chain === 'prerouting');
    if (rule === undefined) return [];
    const text = JSON.stringify(rule.expr);
    const dnat = rule.expr.find((expression) => typeof expression === 'object' && expression !== null && 'dnat' in expression) as
      | { dnat: { addr: { map: { key: Record<string, unknown>; data: { set: [unknown, { concat: [string, number] }][] } } } } }
      | undefined;
    if (dnat === undefined) return [`no dnat in ${text}`];
    const key = Object.keys(dnat.dnat.addr.map.key)[0];
    return dnat.dnat.addr.map.data.set.map(([slot, target]) => `${key} ${JSON.stringify(slot)} -> ${target.concat[0]} . ${target.concat[1]}`);
  };
  const service = (realServers: [string, number][], scheduler = 'rr', address = '10.254.0.100') => ({
    address,
    port: 6443,
    scheduler,
    realServers: realServers.map(([server, weight]) => ({ address: server, port: 6443, weight })),
  });
  const three = service([
    ['10.254.0.11', 1],
    ['10.254.0.12', 1],
    ['10.254.0.13', 1],
  ]);
  const allOk = (t: Test, result: ProbeResult) => t.same(result.results.map((step) => step.ok), result.results.map(() => true), JSON.stringify(result.results));

  // A foreign table, as kube-proxy would keep one: it must survive every step below.
  run('ip', ['netns', 'exec', namespace, 'nft', 'add table ip foreign; add chain ip foreign c { type nat hook prerouting priority dstnat; }; add rule ip foreign c tcp dport 80 dnat to 10.254.0.50']);
  const foreignPresent = () => ruleset().some((item) => item.table?.name === 'foreign') && ruleset().some((item) => item.rule?.table === 'foreign');

  t.test('apply programs round robin and turns forwarding on; a second apply changes nothing', async (t) => {
    t.equal(run('ip', ['netns', 'exec', namespace, 'cat', '/proc/sys/net/ipv4/ip_forward']).trim(), '0', 'a new namespace starts without forwarding');
    const first = probe({ op: 'apply', service: three }, { op: 'observe' });
    allOk(t, first);
    t.match(first.hostChanges.join('\n'), /ip_forward/, 'turning forwarding on is reported');
    t.equal(run('ip', ['netns', 'exec', namespace, 'cat', '/proc/sys/net/ipv4/ip_forward']).trim(), '1');
    t.same(dnatMap(), ['numgen 0 -> 10.254.0.11 . 6443', 'numgen 1 -> 10.254.0.12 . 6443', 'numgen 2 -> 10.254.0.13 . 6443']);
    t.same(
      rules().map((rule) => rule.chain).sort(),
      ['output', 'postrouting', 'prerouting'],
      'DNAT for traffic arriving and for traffic made on the host, masquerade after DNAT',
    );
    t.match(JSON.stringify(rules().find((rule) => rule.chain === 'postrouting')?.expr), /masquerade/);
    const observed = (first.results[1] as { value: { realServers: { address: string; weight: number }[]; scheduler: string } }).value;
    t.equal(observed.scheduler, 'rr');
    t.same(observed.realServers.map((server) => `${server.address}/${server.weight}`), ['10.254.0.11/1', '10.254.0.12/1', '10.254.0.13/1']);

    const handles = rules().map((rule) => rule.handle);
    const again = probe({ op: 'apply', service: three });
    allOk(t, again);
    t.same(rules().map((rule) => rule.handle), handles, 'the same rules (same handles): nothing was rewritten');
    t.same(again.hostChanges, [], 'forwarding already on: no host change');
    t.ok(foreignPresent(), 'the foreign table is untouched');
  });

  t.test('a rule deleted by hand is put back', async (t) => {
    run('ip', ['netns', 'exec', namespace, 'nft', 'flush chain ip raftvip_lb prerouting']);
    t.same(dnatMap(), [], 'the DNAT rule is gone');
    allOk(t, probe({ op: 'apply', service: three }));
    t.equal(dnatMap().length, 3, 'restored');
  });

  t.test('drain, weights, source hashing, no ready server', async (t) => {
    allOk(t, probe({ op: 'apply', service: service([['10.254.0.11', 1], ['10.254.0.12', 0], ['10.254.0.13', 1]]) }));
    t.same(dnatMap(), ['numgen 0 -> 10.254.0.11 . 6443', 'numgen 1 -> 10.254.0.13 . 6443'], 'a drained server is left out of the map');

    allOk(t, probe({ op: 'apply', service: service([['10.254.0.11', 3], ['10.254.0.12', 1]], 'wrr') }));
    t.same(dnatMap(), ['numgen {"range":[0,2]} -> 10.254.0.11 . 6443', 'numgen 3 -> 10.254.0.12 . 6443'], 'weight 3 owns three slots');

    allOk(t, probe({ op: 'apply', service: service([['10.254.0.11', 1], ['10.254.0.12', 1]], 'sh') }));
    t.same(dnatMap(), ['jhash 0 -> 10.254.0.11 . 6443', 'jhash 1 -> 10.254.0.12 . 6443'], 'sh hashes the client address');

    const none = probe({ op: 'apply', service: service([['10.254.0.11', 0], ['10.254.0.12', 0]]) }, { op: 'observe' });
    allOk(t, none);
    t.same(dnatMap(), [], 'no DNAT with no ready server');
    t.same(rules().map((rule) => rule.chain).sort(), ['input', 'output']);
    t.ok(rules().every((rule) => JSON.stringify(rule.expr).includes('"reject":{"type":"tcp reset"}')), 'new connections are reset');
    t.same((none.results[1] as { value: unknown }).value, { address: '10.254.0.100', port: 6443, scheduler: null, realServers: [] });
  });

  t.test('lc needs IPVS: a typed error, and the kernel keeps what it had', async (t) => {
    const before = JSON.stringify(rules());
    const result = probe({ op: 'apply', service: service([['10.254.0.11', 1]], 'lc') });
    t.equal(result.results[0]?.ok, false);
    t.match(result.results[0], { error: { code: 'RAFTVIP_NFT_FAILED', message: /lc.*IPVS/ } });
    t.equal(JSON.stringify(rules()), before);
  });

  t.test('an IPv6 VIP gets an ip6 table', async (t) => {
    const v6 = { ...service([['fd72:7276::11', 1], ['fd72:7276::12', 2]], 'wrr', 'fd72:7276::100') };
    const result = probe({ op: 'apply', service: v6 }, { op: 'observe' });
    allOk(t, result);
    t.same(dnatMap('ip6'), ['numgen 0 -> fd72:7276::11 . 6443', 'numgen {"range":[1,2]} -> fd72:7276::12 . 6443']);
    t.match((result.results[1] as { value: unknown }).value, { address: 'fd72:7276::100', scheduler: 'wrr', realServers: [{ weight: 1 }, { weight: 2 }] });
  });

  t.test('remove deletes raftvip_lb in both families and nothing else; twice is fine', async (t) => {
    allOk(t, probe({ op: 'remove' }, { op: 'remove' }));
    t.notOk(ruleset().some((item) => item.table?.name === 'raftvip_lb'), 'no raftvip table left');
    t.ok(foreignPresent(), 'the foreign table and its rule remain');
  });
}
