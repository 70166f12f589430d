// The nftables data plane's pure half: the one table raftvip owns, rendered as an `nft -f`
// script from a VirtualService, and the kernel's JSON listing (`nft -j list table`) read back
// into an ObservedService. No I/O here; nftables-data-plane.ts runs `nft`.
//
// The table (`ip raftvip_lb`, or `ip6 raftvip_lb` for an IPv6 VIP):
// - `prerouting` (nat, dstnat): `daddr VIP tcp dport PORT dnat to <key> map { ... }`, where the
//   key is `numgen inc mod W` for rr and wrr (each real server owns a run of `weight` slots, so
//   weights are honoured) or `jhash <family> saddr mod W` for sh (a client stays on one server
//   while the set does not change). Drained servers (weight 0) are not in the map.
// - `output` (nat, priority -100): the same rule for connections made on the host itself (the
//   kubelet and kubectl on a control-plane host reach VIP:PORT through it).
// - `postrouting` (nat, srcnat): masquerade of every DNATed connection to the VIP. Without it a
//   backend on the client's own subnet answers the client directly, from its own address, and
//   the client drops the reply (half the connections fail). Backends see the balancer's address
//   as the source; kube-apiserver does not care.
// - With no server to send to (none ready), `input` and `output` filter chains answer new
//   connections to VIP:PORT with a TCP reset, as IPVS does with ICMP: clients fail at once
//   instead of waiting, and a host's own apiserver listening on *:PORT is not reached through
//   the VIP while it is not ready.
//
// Invariants:
// - The script replaces the whole table in one transaction (`table` + `delete table` + the new
//   table, one `nft -f`): the kernel never holds half a table, and a reader never sees a state
//   between the old and the new backends.
// - `parseObservedTable` inverts `renderTable` for every service it renders (round-trip tested);
//   anything else (a table edited by hand) parses to what the kernel would do, or to null when the
//   DNAT rule is not there, so the data plane rewrites it.

import { formatEndpoint, type ObservedRealServer, type ObservedService, type RealServer, type Scheduler, type VirtualService } from './data-plane.js';

/** The table raftvip owns; nothing else is touched. */
export const nftablesTableName = 'raftvip_lb';
/** Sum of weights in one DNAT map: slots of numgen/jhash. Bounds the map's size. */
export const nftablesSlotsMax = 4096;

export type NftFamily = 'ip' | 'ip6';

export function nftFamilyOf(address: string): NftFamily {
  return address.includes(':') ? 'ip6' : 'ip';
}

/** nftables has no connection counts, so lc and wlc cannot be done with a map. */
export function nftablesSupports(scheduler: Scheduler): boolean {
  switch (scheduler) {
    case 'rr':
    case 'wrr':
    case 'sh':
      return true;
    case 'lc':
    case 'wlc':
      return false;
  }
}

/** The `nft -f` script that makes the kernel's raftvip table exactly `service`. */
export function renderTable(service: VirtualService): string {
  if (!nftablesSupports(service.scheduler)) {
    throw new RangeError(`nftables cannot schedule ${service.scheduler}; it needs IPVS`);
  }
  const family = nftFamilyOf(service.address);
  const match = `${family} daddr ${service.address} tcp dport ${service.port}`;
  const active = service.realServers.filter((server) => server.weight > 0);
  const slots = active.reduce((sum, server) => sum + server.weight, 0);
  if (slots > nftablesSlotsMax) {
    throw new RangeError(`the weights add up to ${slots}, more than the ${nftablesSlotsMax} slots of an nftables map`);
  }
  const lines = [
    `table ${family} ${nftablesTableName}`,
    `delete table ${family} ${nftablesTableName}`,
    `table ${family} ${nftablesTableName} {`,
    `  comment "raftvip load balancer for ${formatEndpoint(service.address, service.port)}; replaced as a whole by raftvip"`,
  ];
  if (active.length > 0) {
    const key = service.scheduler === 'sh' ? `jhash ${family} saddr mod ${slots}` : `numgen inc mod ${slots}`;
    const dnat = `${match} dnat ${family} to ${key} map { ${renderSlots(active)} }`;
    lines.push(
      '  chain prerouting {',
      '    type nat hook prerouting priority dstnat; policy accept;',
      `    ${dnat}`,
      '  }',
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      `    ${dnat}`,
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ct status dnat ct original ${family} daddr ${service.address} masquerade`,
      '  }',
    );
  } else {
    const reject = `${match} ct state new reject with tcp reset`;
    lines.push(
      '  chain input {',
      '    type filter hook input priority filter; policy accept;',
      `    ${reject}`,
      '  }',
      '  chain output {',
      '    type filter hook output priority filter; policy accept;',
      `    ${reject}`,
      '  }',
    );
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** The script that removes raftvip's table (and only it), present or not. */
export function renderRemoval(family: NftFamily): string {
  return [`table ${family} ${nftablesTableName}`, `delete table ${family} ${nftablesTableName}`, ''].join('\n');
}

function renderSlots(active: readonly RealServer[]): string {
  let next = 0;
  return active
    .map((server) => {
      const first = next;
      next += server.weight;
      const slot = server.weight === 1 ? `${first}` : `${first}-${next - 1}`;
      return `${slot} : ${server.address} . ${server.port}`;
    })
    .join(', ');
}

// ---- Reading the kernel's table back -------------------------------------------------------

/**
 * Reads `nft -j list table FAMILY raftvip_lb` output: the service as the kernel will forward it
 * (the prerouting DNAT rule's map), or null when the table or its DNAT rule for `address:port`
 * is absent and no reject rule for it exists. A table with only the reject rules is the service
 * with no server. Throws SyntaxError on output that is not nft's JSON.
 */
export function parseObservedTable(json: string, expected: { address: string; port: number }): ObservedService | null {
  const document = JSON.parse(json) as unknown;
  const items = isRecord(document) && Array.isArray(document.nftables) ? (document.nftables as unknown[]) : null;
  if (items === null) throw new SyntaxError('nft output has no "nftables" array');
  let dnat: { scheduler: Scheduler; realServers: ObservedRealServer[] } | null = null;
  let rejects = false;
  for (const item of items) {
    if (!isRecord(item) || !isRecord(item.rule)) continue;
    const rule = item.rule;
    if (!Array.isArray(rule.expr) || !matchesService(rule.expr, expected)) continue;
    if (rule.chain === 'prerouting') dnat = parseDnat(rule.expr) ?? dnat;
    if (rule.chain === 'input' && rule.expr.some((expression) => isRecord(expression) && 'reject' in expression)) rejects = true;
  }
  if (dnat !== null) return { address: expected.address, port: expected.port, scheduler: dnat.scheduler, realServers: dnat.realServers };
  if (rejects) return { address: expected.address, port: expected.port, scheduler: null, realServers: [] };
  return null;
}

function matchesService(expressions: unknown[], expected: { address: string; port: number }): boolean {
  let address = false;
  let port = false;
  for (const expression of expressions) {
    if (!isRecord(expression) || !isRecord(expression.match)) continue;
    const { left, right, op } = expression.match;
    if (op !== '==' || !isRecord(left) || !isRecord(left.payload)) continue;
    const { protocol, field } = left.payload;
    if ((protocol === 'ip' || protocol === 'ip6') && field === 'daddr' && right === expected.address) address = true;
    if (protocol === 'tcp' && field === 'dport' && right === expected.port) port = true;
  }
  return address && port;
}

function parseDnat(expressions: unknown[]): { scheduler: Scheduler; realServers: ObservedRealServer[] } | null {
  for (const expression of expressions) {
    if (!isRecord(expression) || !isRecord(expression.dnat)) continue;
    const addr = expression.dnat.addr;
    if (!isRecord(addr) || !isRecord(addr.map) || !isRecord(addr.map.key) || !isRecord(addr.map.data)) return null;
    const key = addr.map.key;
    // numgen: rr and wrr render alike; report rr when every weight is 1, else wrr.
    const hashed = isRecord(key.jhash);
    if (!hashed && !isRecord(key.numgen)) return null;
    const elements = addr.map.data.set;
    if (!Array.isArray(elements)) return null;
    const weights = new Map<string, ObservedRealServer>();
    for (const element of elements) {
      if (!Array.isArray(element) || element.length !== 2) return null;
      const [slot, target] = element as [unknown, unknown];
      const width = slotWidth(slot);
      if (width === null || !isRecord(target) || !Array.isArray(target.concat) || target.concat.length !== 2) return null;
      const [address, port] = target.concat as [unknown, unknown];
      if (typeof address !== 'string' || typeof port !== 'number') return null;
      const id = `${address} ${port}`;
      const previous = weights.get(id);
      weights.set(id, { address, port, weight: (previous?.weight ?? 0) + width, activeConnections: null, inactiveConnections: null });
    }
    const realServers = [...weights.values()];
    const scheduler: Scheduler = hashed ? 'sh' : realServers.every((server) => server.weight === 1) ? 'rr' : 'wrr';
    return { scheduler, realServers };
  }
  return null;
}

function slotWidth(slot: unknown): number | null {
  if (typeof slot === 'number') return 1;
  if (isRecord(slot) && Array.isArray(slot.range) && slot.range.length === 2) {
    const [low, high] = slot.range as [unknown, unknown];
    if (typeof low === 'number' && typeof high === 'number' && high >= low) return high - low + 1;
  }
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
