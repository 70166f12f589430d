// Goal: prove the one config path (YAML → validate → defaults → frozen object) accepts the
// documented example and the defaults, and rejects every broken rule with the exact
// `FILE:line:col: path: message` an operator needs — all problems of a file in one run, YAML
// syntax errors included; that node.id is found from the host's addresses; that secret files
// with loose permissions or short keys are refused; and that `raftvip config check` and
// `raftvip generate psk`, run as real processes, behave as documented (exit codes 0/1/2).

import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { runRaftvip } from './support/run-raftvip.js';
import { ConfigError, ConfigReadError, formatConfigIssue, loadConfig, parseConfigText, type Config } from '../src/config/load-config.js';
import { peersMax } from '../src/config/config-schema.js';
import { decodePsk, pskBytesMin } from '../src/config/pre-shared-key.js';
import { votersMax } from '../src/raft/raft.js';
import { tickMsDefault } from '../src/raft/timing.js';

// This file runs as dist/test/config.test.js; the repository root is two levels up.
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = join(repoRoot, 'test/fixtures/config');
const examplePath = join(repoRoot, 'config/raftvip.example.yaml');


/** Addresses of a host that is none of the test peers. */
const noLocalPeer = (): string[] => ['127.0.0.1', '::1'];

/** The part of a tap test the helpers need. */
interface Teardown {
  teardown(fn: () => void): void;
}

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'raftvip-config-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A key file the loader accepts: 32 random-looking bytes as hex, mode 0600. */
function writePsk(options: { dir: string; name?: string; mode?: number; text?: string }): string {
  const file = join(options.dir, options.name ?? 'psk');
  writeFileSync(file, options.text ?? `${'ab'.repeat(32)}\n`);
  chmodSync(file, options.mode ?? 0o600);
  return file;
}

/** A valid insecure config; cases below replace one line or add one. */
const base = [
  'cluster:', //                                        1
  '  name: cp-prod', //                                 2
  '  peers:', //                                        3
  '    - { id: cp1, address: 10.0.0.11:7480 }', //      4
  '    - { id: cp2, address: 10.0.0.12:7480 }', //      5
  '    - { id: cp3, address: 10.0.0.13:7480 }', //      6
  '  auth:', //                                         7
  '    insecure: true', //                              8
  'node:', //                                           9
  '  id: cp1', //                                       10
  'vip:', //                                            11
  '  address: 10.0.0.100', //                           12
  '',
].join('\n');

function edit(text: string, replacements: ReadonlyArray<readonly [string, string]>): string {
  let result = text;
  for (const [from, to] of replacements) {
    if (!result.includes(from)) throw new Error(`test bug: "${from}" is not in the text`);
    result = result.replace(from, to);
  }
  return result;
}

/** The formatted issues of a text that must be rejected. */
async function issuesOf(
  text: string,
  options: { file?: string; nodeId?: string; localAddresses?: () => string[] } = {},
): Promise<string[]> {
  try {
    await parseConfigText(text, options.file ?? 'test.yaml', {
      localAddresses: options.localAddresses ?? noLocalPeer,
      ...(options.nodeId === undefined ? {} : { nodeId: options.nodeId }),
    });
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatConfigIssue);
    throw error;
  }
  throw new Error('the configuration was accepted');
}

function isDeepFrozen(value: unknown, path = 'config'): string | null {
  if (typeof value !== 'object' || value === null || Buffer.isBuffer(value)) return null;
  if (!Object.isFrozen(value)) return path;
  for (const [key, child] of Object.entries(value)) {
    const found = isDeepFrozen(child, `${path}.${key}`);
    if (found !== null) return found;
  }
  return null;
}


/** The example, copied next to a fresh 0600 key file that its pskFile now names. */
function copyExample(t: Teardown): { dir: string; file: string; pskFile: string } {
  const dir = tempDir(t);
  const pskFile = writePsk({ dir });
  const text = readFileSync(examplePath, 'utf8');
  if (!/^ {4}pskFile: \/etc\/raftvip\/psk$/m.test(text)) throw new Error('the example no longer names /etc/raftvip/psk');
  const file = join(dir, 'raftvip.yaml');
  writeFileSync(file, text.replace(/^( {4}pskFile: ).*$/m, `$1${pskFile}`));
  return { dir, file, pskFile };
}

t.test('the example loads: values, defaults and a deeply frozen result', async (t) => {
  const { file, pskFile } = copyExample(t);
  const config: Config = await loadConfig(file, { nodeId: 'cp1', localAddresses: noLocalPeer });
  t.equal(config.file, file);
  t.equal(config.cluster.name, 'cp-prod');
  t.same(
    config.cluster.peers.map((peer) => ({ ...peer })),
    [
      { id: 'cp1', host: '10.0.0.11', port: 7480, address: '10.0.0.11:7480', family: 4 },
      { id: 'cp2', host: '10.0.0.12', port: 7480, address: '10.0.0.12:7480', family: 4 },
      { id: 'cp3', host: '10.0.0.13', port: 7480, address: '10.0.0.13:7480', family: 4 },
    ],
  );
  t.equal(config.cluster.auth.kind, 'psk');
  if (config.cluster.auth.kind === 'psk') {
    t.equal(config.cluster.auth.pskFile, pskFile);
    t.same(config.cluster.auth.psk, Buffer.from('ab'.repeat(32), 'hex'), 'the key is the decoded hex');
  }
  t.same({ ...config.node }, { id: 'cp1', dataDir: '/var/lib/raftvip' });
  t.same({ ...config.vip }, { address: '10.0.0.100', family: 4, interface: null, enabled: true, announceCount: 3, announceIntervalMs: 100, refreshIntervalMs: 10000, reconcileIntervalMs: 1000 });
  t.same({ ...config.raft }, { tickMs: tickMsDefault, heartbeatIntervalMs: 50, electionTimeoutMs: 200, clockDriftBound: 0.05 });
  t.same({ ...config.admin }, { host: '127.0.0.1', port: 7481 });
  t.same({ ...config.log }, { level: 'info' });
  t.equal(isDeepFrozen(config), null, 'every object and array is frozen');
  t.throws(() => {
    (config.raft as { heartbeatIntervalMs: number }).heartbeatIntervalMs = 10;
  }, TypeError);
  t.throws(() => {
    (config.cluster.peers as ConfigPeerArray).push(config.cluster.peers[0]!);
  }, TypeError);
});

type ConfigPeerArray = Config['cluster']['peers'][number][];

t.test('only the required keys: every default applies', async (t) => {
  const config = await loadConfig(join(fixtures, 'minimal.yaml'), { localAddresses: () => ['10.9.9.9', '2001:db8::2'] });
  t.equal(config.node.id, 'b', 'node.id found from the IPv6 local address');
  t.equal(config.node.dataDir, '/var/lib/raftvip');
  t.same(config.cluster.peers[1], { id: 'b', host: '2001:db8::2', port: 7480, address: '[2001:db8::2]:7480', family: 6 });
  t.same(config.cluster.auth, { kind: 'insecure' });
  t.same({ ...config.raft }, { tickMs: 10, heartbeatIntervalMs: 50, electionTimeoutMs: 200, clockDriftBound: 0.05 });
  t.same({ ...config.admin }, { host: '127.0.0.1', port: 7481 });
  t.equal(config.log.level, 'info');
  t.equal(config.vip.interface, null);
  const lb = config.loadBalancer;
  t.same(
    { enabled: lb.enabled, port: lb.port, dataPlane: lb.dataPlane, scheduler: lb.scheduler, fromPeers: lb.backendsFromPeers },
    { enabled: true, port: 6443, dataPlane: 'auto', scheduler: 'rr', fromPeers: true },
    'the load balancer is on by default',
  );
  t.same(lb.backends.map((backend) => `${backend.address}:${backend.port}/${backend.weight}`), ['192.0.2.1:6443/1', '192.0.2.3:6443/1'], 'backends default to the peers of the VIP\'s family, at 6443');
  t.match(lb.healthCheck, { type: 'https', path: '/readyz', intervalMs: 500, timeoutMs: 1000, rise: 2, fall: 2, caFile: null, insecureSkipVerify: false });
});

t.test('every key of the schema is in the example file and in docs/configuration.md', async (t) => {
  const example = readFileSync(examplePath, 'utf8');
  const reference = readFileSync(join(repoRoot, 'docs/configuration.md'), 'utf8');
  const keys = [
    'cluster.name',
    'cluster.peers',
    'cluster.peers[].id',
    'cluster.peers[].address',
    'cluster.auth.pskFile',
    'cluster.auth.tls.caFile',
    'cluster.auth.tls.certFile',
    'cluster.auth.tls.keyFile',
    'cluster.auth.insecure',
    'node.id',
    'node.dataDir',
    'vip.address',
    'vip.interface',
    'vip.enabled',
    'vip.announceCount',
    'vip.announceIntervalMs',
    'vip.refreshIntervalMs',
    'vip.reconcileIntervalMs',
    'loadBalancer.enabled',
    'loadBalancer.port',
    'loadBalancer.dataPlane',
    'loadBalancer.scheduler',
    'loadBalancer.backends',
    'loadBalancer.reconcileIntervalMs',
    'loadBalancer.tcpTimeoutS',
    'loadBalancer.tcpFinTimeoutS',
    'loadBalancer.healthCheck.type',
    'loadBalancer.healthCheck.path',
    'loadBalancer.healthCheck.intervalMs',
    'loadBalancer.healthCheck.timeoutMs',
    'loadBalancer.healthCheck.rise',
    'loadBalancer.healthCheck.fall',
    'loadBalancer.healthCheck.caFile',
    'loadBalancer.healthCheck.certFile',
    'loadBalancer.healthCheck.keyFile',
    'loadBalancer.healthCheck.insecureSkipVerify',
    'raft.heartbeatIntervalMs',
    'raft.electionTimeoutMs',
    'admin.listen',
    'log.level',
  ];
  for (const key of keys) {
    const last = key.split('.').at(-1)!.replace('[]', '');
    t.match(example, new RegExp(`\\b${last}:`), `the example shows ${last}`);
    t.match(reference, `\`${key}\``, `docs/configuration.md describes ${key}`);
  }
});

t.test('many errors in one file: all reported, in file order, exactly as config check prints them', async (t) => {
  const file = join(fixtures, 'many-errors.yaml');
  const expected = readFileSync(join(fixtures, 'many-errors.expected'), 'utf8').trimEnd().split('\n');
  const error = await loadConfig(file, { localAddresses: noLocalPeer }).then(
    () => null,
    (caught: unknown) => caught,
  );
  t.ok(error instanceof ConfigError, 'a ConfigError');
  if (!(error instanceof ConfigError)) return;
  t.equal(error.code, 'RAFTVIP_CONFIG_INVALID');
  t.equal(error.issues.length, 13, 'thirteen problems');
  t.same(
    error.issues.map((issue) => formatConfigIssue({ ...issue, file: 'many-errors.yaml' })),
    expected.slice(0, -1),
    'the golden lines',
  );
  t.same(
    { ...error.issues[1] },
    { file, line: 6, col: 13, path: 'cluster.peers[1].id', message: 'duplicate peer id "cp1" (also at cluster.peers[0].id)' },
    'issues carry file, line, col, path and message',
  );
  t.ok(Object.isFrozen(error.issues), 'issues are frozen');
  t.match(error.message, /^.*many-errors\.yaml: 13 errors\n/, 'the message counts them');

  const result = await runRaftvip(['config', 'check', 'many-errors.yaml'], { cwd: fixtures });
  t.equal(result.code, 1, 'config check exits 1');
  t.equal(result.stdout, '', 'nothing on stdout');
  t.same(result.stderr.trimEnd().split('\n'), expected, 'config check prints every line');
});

t.test('YAML syntax errors are reported with their positions, next to schema errors', async (t) => {
  const lines = await issuesOf(readFileSync(join(fixtures, 'syntax-error.yaml'), 'utf8'), { file: 'syntax-error.yaml' });
  t.same(lines, [
    'syntax-error.yaml:2:3: cluster.auth: is required; set pskFile (a pre-shared key file) or tls (caFile, certFile, keyFile); insecure: true runs without authentication',
    'syntax-error.yaml:3:3: invalid YAML: Map keys must be unique',
    'syntax-error.yaml:5:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    'syntax-error.yaml:7:1: invalid YAML: Missing closing "quote',
  ]);
  t.same(await issuesOf('a: [1, 2\n'), [
    'test.yaml:1:1: a: unknown key (known keys here: cluster, node, vip, loadBalancer, raft, admin, log)',
    'test.yaml:1:1: cluster: is required; give name, peers and auth',
    'test.yaml:1:1: vip: is required; give address, the virtual IP, e.g. address: 10.0.0.100',
    'test.yaml:2:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
  ]);
  t.same(await issuesOf(`${base}---\nmore: 1\n`), ["test.yaml:13:1: invalid YAML: the file holds more than one YAML document ('---'); a peer file is one document"]);
  t.same(await issuesOf(''), ['test.yaml:1:1: the file holds no configuration; it needs at least cluster and vip']);
  t.same(await issuesOf('# only a comment\n'), ['test.yaml:1:1: the file holds no configuration; it needs at least cluster and vip']);
  t.same(await issuesOf('- a\n- b\n'), ['test.yaml:1:1: the top level must be a map of keys (cluster, node, vip, loadBalancer, raft, admin, log), got a list']);
});

// One rule broken per case, from the valid base. `expected` is the only issue, exactly.
const ruleCases: ReadonlyArray<{ name: string; text: string; expected: string | RegExp }> = [
  {
    name: 'unknown top-level key, with a suggestion',
    text: `${base}clustr: {}\n`,
    expected: 'test.yaml:13:1: clustr: unknown key; did you mean cluster? (known keys here: cluster, node, vip, loadBalancer, raft, admin, log)',
  },
  {
    name: 'unknown nested key',
    text: edit(base, [['    insecure: true', '    insecure: true\n    pskfile: x']]),
    expected: 'test.yaml:9:5: cluster.auth.pskfile: unknown key; did you mean pskFile? (known keys here: pskFile, tls, insecure)',
  },
  {
    name: 'unknown key inside a flow map in a list',
    text: edit(base, [['{ id: cp2, address: 10.0.0.12:7480 }', '{ id: cp2, address: 10.0.0.12:7480, weight: 1 }']]),
    expected: 'test.yaml:5:43: cluster.peers[1].weight: unknown key (known keys here: id, address)',
  },
  {
    name: 'tickMs is not configurable',
    text: `${base}raft:\n  tickMs: 10\n`,
    expected: 'test.yaml:14:3: raft.tickMs: unknown key: tickMs is fixed at 10 ms and cannot be configured',
  },
  {
    name: 'missing required key points at the parent map',
    text: edit(base, [['  name: cp-prod\n', '']]),
    expected: 'test.yaml:2:3: cluster.name: is required',
  },
  {
    name: 'missing vip',
    text: edit(base, [['vip:\n  address: 10.0.0.100\n', '']]),
    expected: 'test.yaml:1:1: vip: is required; give address, the virtual IP, e.g. address: 10.0.0.100',
  },
  {
    name: 'empty value',
    text: `${base}  interface:\n`,
    expected: 'test.yaml:13:13: vip.interface: is empty; give a value, or remove the key to use the default',
  },
  {
    name: 'cluster name not a DNS label',
    text: edit(base, [['name: cp-prod', 'name: -prod']]),
    expected: /^test\.yaml:2:9: cluster\.name: "-prod" is not a valid name: lower-case letters/,
  },
  {
    name: 'no peers',
    text: base.replace(/ {4}- \{.*\n/g, '').replace('  peers:\n', '  peers: []\n'),
    expected: 'test.yaml:3:10: cluster.peers: must list 1 to 7 peers, got 0',
  },
  {
    name: 'more than peersMax peers',
    text: edit(base, [
      [
        '    - { id: cp3, address: 10.0.0.13:7480 }\n',
        Array.from({ length: 6 }, (_, i) => `    - { id: cp${i + 3}, address: 10.0.0.${i + 13}:7480 }\n`).join(''),
      ],
    ]),
    expected: 'test.yaml:4:5: cluster.peers: must list 1 to 7 peers, got 8',
  },
  {
    name: 'peers not a list',
    text: base.replace(/ {4}- \{.*\n/g, '').replace('  peers:\n', '  peers: cp1\n'),
    expected: /^test\.yaml:3:10: cluster\.peers: must be a list, got "cp1" \(a string\)$/,
  },
  {
    name: 'peer id with upper case',
    text: edit(base, [['id: cp2,', 'id: CP2,']]),
    expected: /^test\.yaml:5:13: cluster\.peers\[1\]\.id: "CP2" is not a valid peer id/,
  },
  {
    name: 'peer id that YAML reads as a number',
    text: edit(base, [['id: cp2,', 'id: 2,']]),
    expected: 'test.yaml:5:13: cluster.peers[1].id: must be a string, got 2; quote it: "2"',
  },
  {
    name: 'duplicate peer id',
    text: edit(base, [['id: cp3,', 'id: cp1,']]),
    expected: 'test.yaml:6:13: cluster.peers[2].id: duplicate peer id "cp1" (also at cluster.peers[0].id)',
  },
  {
    name: 'duplicate peer address',
    text: edit(base, [['10.0.0.13:7480', '10.0.0.12:7480']]),
    expected: 'test.yaml:6:27: cluster.peers[2].address: duplicate peer address 10.0.0.12:7480 (also at cluster.peers[1].address)',
  },
  {
    name: 'duplicate IPv6 peer address in another spelling',
    text: edit(base, [
      ['10.0.0.12:7480', '"[fd00::12]:7480"'],
      ['10.0.0.13:7480', '"[FD00:0:0::12]:7480"'],
    ]),
    expected: 'test.yaml:6:27: cluster.peers[2].address: duplicate peer address [fd00::12]:7480 (also at cluster.peers[1].address)',
  },
  {
    name: 'hostname instead of an IP',
    text: edit(base, [['10.0.0.12:7480', 'cp2.example.com:7480']]),
    expected: /cluster\.peers\[1\]\.address: "cp2\.example\.com" is not an IP address literal; hostnames are not accepted/,
  },
  {
    name: 'IPv6 without brackets',
    text: edit(base, [['10.0.0.12:7480', '"fd00::12:7480"']]),
    expected: /cluster\.peers\[1\]\.address: .*an IPv6 address needs brackets/,
  },
  { name: 'no port', text: edit(base, [['10.0.0.12:7480', '10.0.0.12']]), expected: /cluster\.peers\[1\]\.address: "10\.0\.0\.12" has no port/ },
  { name: 'port 0', text: edit(base, [['10.0.0.12:7480', '10.0.0.12:0']]), expected: /cluster\.peers\[1\]\.address: port 0 is out of range 1 to 65535/ },
  {
    name: 'port too large',
    text: edit(base, [['10.0.0.12:7480', '10.0.0.12:65536']]),
    expected: /cluster\.peers\[1\]\.address: port 65536 is out of range/,
  },
  {
    name: 'IPv4 with leading zeros',
    text: edit(base, [['10.0.0.12:7480', '10.0.0.012:7480']]),
    expected: /cluster\.peers\[1\]\.address: "10\.0\.0\.012" is not a valid IPv4 address/,
  },
  {
    name: 'no authentication',
    text: edit(base, [['    insecure: true\n', '    {}\n']]).replace('  auth:\n    {}', '  auth: {}'),
    expected: /^test\.yaml:7:9: cluster\.auth: no authentication configured; set pskFile/,
  },
  {
    name: 'insecure: false alone',
    text: edit(base, [['insecure: true', 'insecure: false']]),
    expected: /^test\.yaml:8:15: cluster\.auth\.insecure: insecure: false configures no authentication; set pskFile .* or tls/,
  },
  {
    name: 'insecure not a boolean',
    text: edit(base, [['insecure: true', 'insecure: yes']]),
    expected: 'test.yaml:8:15: cluster.auth.insecure: must be true or false, got "yes" (a string)',
  },
  {
    name: 'two auth methods',
    text: edit(base, [['    insecure: true', '    insecure: true\n    pskFile: /nonexistent/psk']]),
    expected: 'test.yaml:8:5: cluster.auth: give exactly one of pskFile, tls or insecure: true; found pskFile and insecure: true',
  },
  {
    name: 'tls without keyFile',
    text: edit(base, [['    insecure: true', '    tls: { caFile: ca.crt, certFile: peer.crt }']]),
    expected: 'test.yaml:8:10: cluster.auth.tls.keyFile: is required; give the path of a PEM file',
  },
  {
    name: 'node.id not among the peers',
    text: edit(base, [['  id: cp1', '  id: cp9']]),
    expected: 'test.yaml:10:7: node.id: "cp9" is not the id of any peer (peers: cp1, cp2, cp3)',
  },
  {
    name: 'relative dataDir',
    text: `${base.replace('  id: cp1\n', '  id: cp1\n  dataDir: data\n')}`,
    expected: 'test.yaml:11:12: node.dataDir: must be an absolute path, e.g. /var/lib/raftvip, got "data"',
  },
  {
    name: 'VIP is a peer address',
    text: edit(base, [['address: 10.0.0.100', 'address: 10.0.0.13']]),
    expected: 'test.yaml:12:12: vip.address: 10.0.0.13 is the address of peer cp3; the VIP must be an address that no host owns',
  },
  {
    name: 'VIP with a port',
    text: edit(base, [['address: 10.0.0.100', 'address: 10.0.0.100:6443']]),
    expected: 'test.yaml:12:12: vip.address: "10.0.0.100:6443" has a port; give the address alone',
  },
  {
    name: 'VIP not an address',
    text: edit(base, [['address: 10.0.0.100', 'address: vip.example.com']]),
    expected: /vip\.address: "vip\.example\.com" is not an IP address literal/,
  },
  {
    name: 'VIP unspecified',
    text: edit(base, [['address: 10.0.0.100', 'address: 0.0.0.0']]),
    expected: /vip\.address: 0\.0\.0\.0 cannot be a virtual IP/,
  },
  {
    name: 'interface name too long',
    text: `${base}  interface: a-very-long-interface-name\n`,
    expected: /^test\.yaml:13:14: vip\.interface: "a-very-long-interface-name" is not a network interface name/,
  },
  {
    name: 'vip.enabled not a boolean',
    text: `${base}  enabled: "no"\n`,
    expected: /^test\.yaml:13:12: vip\.enabled: .*true or false/,
  },
  {
    name: 'announceCount out of range',
    text: `${base}  announceCount: 0\n`,
    expected: 'test.yaml:13:18: vip.announceCount: must be from 1 to 10, got 0',
  },
  {
    name: 'announceIntervalMs out of range',
    text: `${base}  announceIntervalMs: 5\n`,
    expected: 'test.yaml:13:23: vip.announceIntervalMs: must be from 10 to 5000, got 5',
  },
  {
    name: 'refreshIntervalMs neither 0 nor in range',
    text: `${base}  refreshIntervalMs: 500\n`,
    expected: 'test.yaml:13:22: vip.refreshIntervalMs: must be from 1000 to 3600000 (or 0 for none), got 500',
  },
  {
    name: 'reconcileIntervalMs out of range',
    text: `${base}  reconcileIntervalMs: 99\n`,
    expected: 'test.yaml:13:24: vip.reconcileIntervalMs: must be from 100 to 60000, got 99',
  },
  {
    name: 'heartbeat below the minimum',
    text: `${base}raft:\n  heartbeatIntervalMs: 0\n`,
    expected: 'test.yaml:14:24: raft.heartbeatIntervalMs: must be from 10 to 1000, got 0',
  },
  {
    name: 'heartbeat above the maximum',
    text: `${base}raft:\n  heartbeatIntervalMs: 2000\n  electionTimeoutMs: 10000\n`,
    expected: 'test.yaml:14:24: raft.heartbeatIntervalMs: must be from 10 to 1000, got 2000',
  },
  {
    name: 'heartbeat not a whole number',
    text: `${base}raft:\n  heartbeatIntervalMs: 50.5\n`,
    expected: 'test.yaml:14:24: raft.heartbeatIntervalMs: must be a whole number, got 50.5',
  },
  {
    name: 'heartbeat as a string',
    text: `${base}raft:\n  heartbeatIntervalMs: "50"\n`,
    expected: 'test.yaml:14:24: raft.heartbeatIntervalMs: must be a whole number, got "50" (a string)',
  },
  {
    name: 'heartbeat not a multiple of the tick',
    text: `${base}raft:\n  heartbeatIntervalMs: 55\n`,
    expected: 'test.yaml:14:24: raft.heartbeatIntervalMs: must be a multiple of the 10 ms tick, got 55',
  },
  {
    name: 'election timeout not a multiple of the tick',
    text: `${base}raft:\n  electionTimeoutMs: 205\n`,
    expected: 'test.yaml:14:22: raft.electionTimeoutMs: must be a multiple of the 10 ms tick, got 205',
  },
  {
    name: 'election timeout under 4 heartbeats',
    text: `${base}raft:\n  heartbeatIntervalMs: 100\n  electionTimeoutMs: 300\n`,
    expected:
      'test.yaml:15:22: raft.electionTimeoutMs: electionTimeoutMs (300) must be at least 4 × heartbeatIntervalMs (100), i.e. at least 400',
  },
  {
    name: 'heartbeat raised past a default election timeout',
    text: `${base}raft:\n  heartbeatIntervalMs: 100\n`,
    expected:
      'test.yaml:14:24: raft.heartbeatIntervalMs: electionTimeoutMs (200) must be at least 4 × heartbeatIntervalMs (100), i.e. at least 400',
  },
  {
    name: 'election timeout above the maximum',
    text: `${base}raft:\n  electionTimeoutMs: 20000\n`,
    expected: 'test.yaml:14:22: raft.electionTimeoutMs: must be from 40 to 10000, got 20000',
  },
  {
    name: 'timing that leaves no lease',
    text: `${base}raft:\n  heartbeatIntervalMs: 10\n  electionTimeoutMs: 40\n`,
    expected: /^test\.yaml:15:22: raft\.electionTimeoutMs: electionTimeoutMs 40 leaves the leader a lease of 0 ms, .* use electionTimeoutMs 70 or more$/,
  },
  {
    name: 'admin listen not loopback',
    text: `${base}admin:\n  listen: 0.0.0.0:7481\n`,
    expected: /^test\.yaml:14:11: admin\.listen: 0\.0\.0\.0 is not a loopback address/,
  },
  {
    name: 'admin listen without port',
    text: `${base}admin:\n  listen: 127.0.0.1\n`,
    expected: /^test\.yaml:14:11: admin\.listen: "127\.0\.0\.1" has no port/,
  },
  {
    name: 'log level unknown',
    text: `${base}log:\n  level: verbose\n`,
    expected: 'test.yaml:14:10: log.level: must be one of trace, debug, info, warn, error, got "verbose"',
  },
  {
    name: 'load balancer: unknown scheduler',
    text: `${base}loadBalancer:\n  scheduler: random\n`,
    expected: 'test.yaml:14:14: loadBalancer.scheduler: must be one of rr, wrr, lc, wlc, sh, got "random"',
  },
  {
    name: 'load balancer: lc with nftables',
    text: `${base}loadBalancer:\n  dataPlane: nftables\n  scheduler: lc\n`,
    expected: "test.yaml:15:14: loadBalancer.scheduler: lc needs IPVS's connection counts; with dataPlane nftables use rr, wrr or sh",
  },
  {
    name: 'load balancer: backend of the wrong family',
    text: `${base}loadBalancer:\n  backends: [ 10.0.0.11:6443, "[fd00::12]:6443" ]\n`,
    expected: 'test.yaml:14:31: loadBalancer.backends[1]: fd00::12 is not IPv4 like the VIP; the kernel forwards within one family',
  },
  {
    name: 'load balancer: duplicate backend',
    text: `${base}loadBalancer:\n  backends: [ 10.0.0.11, "10.0.0.11:6443" ]\n`,
    expected: 'test.yaml:14:26: loadBalancer.backends[1]: duplicate backend 10.0.0.11:6443 (also at loadBalancer.backends[0])',
  },
  {
    name: 'load balancer: backend weight out of range',
    text: `${base}loadBalancer:\n  backends: [ { address: 10.0.0.11, weight: 0 } ]\n`,
    expected: 'test.yaml:14:45: loadBalancer.backends[0].weight: must be from 1 to 65535, got 0',
  },
  {
    name: 'load balancer: caFile and insecureSkipVerify together',
    text: `${base}loadBalancer:\n  healthCheck: { caFile: /x/ca.crt, insecureSkipVerify: true }\n`,
    expected: /^test\.yaml:14:\d+: loadBalancer\.healthCheck\.insecureSkipVerify: give caFile .* or insecureSkipVerify: true .*not both$/,
  },
  {
    name: 'load balancer: https-only key on a tcp check',
    text: `${base}loadBalancer:\n  healthCheck: { type: tcp, path: /readyz }\n`,
    expected: 'test.yaml:14:35: loadBalancer.healthCheck.path: applies to type https only; remove it, or set type: https',
  },
  {
    name: 'load balancer: client certificate without its key',
    text: `${base}loadBalancer:\n  healthCheck: { certFile: /x/c.crt }\n`,
    expected: 'test.yaml:14:28: loadBalancer.healthCheck.keyFile: a client certificate needs both certFile and keyFile; keyFile is missing',
  },
  {
    name: 'load balancer: interval out of range',
    text: `${base}loadBalancer:\n  healthCheck:\n    intervalMs: 5\n`,
    expected: 'test.yaml:15:17: loadBalancer.healthCheck.intervalMs: must be from 100 to 60000, got 5',
  },
  {
    name: 'section not a map',
    text: `${base}raft: fast\n`,
    expected: 'test.yaml:13:7: raft: must be a map of keys (heartbeatIntervalMs, electionTimeoutMs), got "fast" (a string)',
  },
];

t.test('loadBalancer.healthCheck.caFile that does not exist yet is pending, not an error; one that is not PEM is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'raftvip-lb-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'raftvip.yaml');
  const config = await parseConfigText(`${base}loadBalancer:\n  healthCheck: { caFile: pki/ca.crt }\n`, file, { localAddresses: noLocalPeer });
  t.equal(config.loadBalancer.healthCheck.caPending, true, 'pending');
  t.equal(config.loadBalancer.healthCheck.caFile, join(dir, 'pki/ca.crt'), 'resolved against the file');
  t.equal(config.loadBalancer.healthCheck.tls.ca, null);
  mkdirSync(join(dir, 'pki'));
  writeFileSync(join(dir, 'pki/ca.crt'), 'not a certificate\n');
  const lines = await issuesOf(`${base}loadBalancer:\n  healthCheck: { caFile: pki/ca.crt }\n`, { file });
  t.match(lines, [/loadBalancer\.healthCheck\.caFile: .*ca\.crt does not hold a PEM certificate/], 'a file that exists must be a certificate');
});

t.test('each rule, broken alone, gives exactly its FILE:line:col: path: message', async (t) => {
  t.same(await parseConfigText(base, 'test.yaml', { localAddresses: noLocalPeer }).then(() => 'ok'), 'ok', 'the base is valid');
  for (const { name, text, expected } of ruleCases) {
    const lines = await issuesOf(text);
    t.equal(lines.length, 1, `${name}: one issue (${lines.join(' | ')})`);
    if (typeof expected === 'string') t.equal(lines[0], expected, name);
    else t.match(lines[0], expected, name);
  }
});

t.test('accepted variants: IPv6 everywhere, aliases, a single peer, loopback admin on ::1, VIP keys at their limits', async (t) => {
  const config = await parseConfigText(
    [
      'cluster:',
      '  name: v6',
      '  peers:',
      '    - id: &me only',
      '      address: "[FD00:0::1]:7480"',
      '  auth: { insecure: true }',
      'node: { id: *me }',
      'vip: { address: "fd00::100", interface: br0, enabled: false, announceCount: 1, announceIntervalMs: 5000, refreshIntervalMs: 0, reconcileIntervalMs: 60000 }',
      'raft: { heartbeatIntervalMs: 100, electionTimeoutMs: 1000 }',
      'admin: { listen: "[::1]:9000" }',
      'log: { level: debug }',
      '',
    ].join('\n'),
    'v6.yaml',
    { localAddresses: noLocalPeer },
  );
  t.equal(config.node.id, 'only', 'node.id read through an alias');
  t.equal(config.cluster.peers[0]?.address, '[fd00::1]:7480', 'canonical IPv6 spelling');
  t.same(
    { ...config.vip },
    { address: 'fd00::100', family: 6, interface: 'br0', enabled: false, announceCount: 1, announceIntervalMs: 5000, refreshIntervalMs: 0, reconcileIntervalMs: 60000 },
    'every VIP key at an edge of its range, refresh off',
  );
  t.same({ ...config.admin }, { host: '::1', port: 9000 });
  t.equal(config.raft.electionTimeoutMs, 1000);
  t.equal(config.log.level, 'debug');
  t.equal(peersMax, votersMax, 'peersMax matches what the Raft core allows');
});

t.test('node.id: found from local addresses, or a clear error', async (t) => {
  const withoutId = edit(base, [['node:\n  id: cp1\n', '']]);
  const load = (options: { nodeId?: string; localAddresses: () => string[] }) => parseConfigText(withoutId, 'test.yaml', options);
  t.equal((await load({ localAddresses: () => ['127.0.0.1', '10.0.0.12', 'fe80::1%eth0'] })).node.id, 'cp2', 'the one local peer');
  t.equal((await load({ nodeId: 'cp3', localAddresses: () => ['10.0.0.12'] })).node.id, 'cp3', 'the command line wins over detection');
  t.same(await issuesOf(withoutId, { localAddresses: () => ['127.0.0.1', '192.168.1.5'] }), [
    "test.yaml:4:5: node.id: is not set, and no peer's address is on this host (peers: cp1 10.0.0.11, cp2 10.0.0.12, cp3 10.0.0.13; local addresses: 127.0.0.1, 192.168.1.5); set node.id in the file (or pass --node-id) to say which peer this host is",
  ]);
  t.same(await issuesOf(withoutId, { localAddresses: () => ['10.0.0.11', '10.0.0.13'] }), [
    "test.yaml:4:5: node.id: is not set, and several peers' addresses are on this host (cp1, cp3); set node.id in the file (or pass --node-id) to say which peer this host is",
  ]);
  t.same(await issuesOf(withoutId, { nodeId: 'cp7' }), [
    'test.yaml:4:5: node.id: "cp7" (from the command line) is not the id of any peer (peers: cp1, cp2, cp3)',
  ]);
  t.same(await issuesOf(base, { nodeId: 'cp2' }), [
    'test.yaml:10:7: node.id: is "cp1" but the command line asks for node "cp2"; remove one of the two',
  ]);
  t.equal((await parseConfigText(base, 'test.yaml', { nodeId: 'cp1' })).node.id, 'cp1', 'agreeing sources are fine');
  t.same(
    await issuesOf(withoutId, {
      localAddresses: () => {
        throw new Error('no netlink');
      },
    }),
    ["test.yaml:4:5: node.id: is not set, and this host's addresses cannot be listed (no netlink); set node.id"],
  );
});

t.test('pskFile: permissions, content and relative paths', async (t) => {
  const dir = tempDir(t);
  const text = edit(base, [['    insecure: true', '    pskFile: psk']]);
  const file = join(dir, 'raftvip.yaml');
  const pskFile = writePsk({ dir, mode: 0o600 });
  const config = await parseConfigText(text, file);
  t.same(config.cluster.auth, { kind: 'psk', pskFile, psk: Buffer.from('ab'.repeat(32), 'hex') }, 'relative to the config file');

  chmodSync(pskFile, 0o644);
  t.same(await issuesOf(text, { file }), [
    `${file}:8:14: cluster.auth.pskFile: ${pskFile} is readable or writable by group or others (mode 0644); it holds a secret: run \`chmod 600 ${pskFile}\``,
  ]);
  chmodSync(pskFile, 0o640);
  t.match((await issuesOf(text, { file }))[0], /mode 0640\); it holds a secret: run `chmod 600 /);
  chmodSync(pskFile, 0o400);
  t.ok(await parseConfigText(text, file), 'read-only for the owner is fine');

  writePsk({ dir, text: 'abcd\n' });
  t.match((await issuesOf(text, { file }))[0], /psk holds 2 bytes of key \(read as hex\), fewer than the 32 required/);
  writePsk({ dir, text: 'not a key at all!\n' });
  t.match((await issuesOf(text, { file }))[0], /psk holds more than one word or line/);
  writePsk({ dir, text: '' });
  t.match((await issuesOf(text, { file }))[0], /psk is empty; expected one line of hex/);
  writePsk({ dir, text: `${Buffer.alloc(32, 7).toString('base64')}\n` });
  t.same(
    (await parseConfigText(text, file)).cluster.auth,
    { kind: 'psk', pskFile, psk: Buffer.alloc(32, 7) },
    'base64 is accepted',
  );
  writePsk({ dir, text: 'x'.repeat(5000) });
  t.match((await issuesOf(text, { file }))[0], /psk is 5000 bytes, more than the 4096/);

  rmSync(pskFile);
  t.same(await issuesOf(text, { file }), [
    `${file}:8:14: cluster.auth.pskFile: cannot read ${pskFile}: no such file or directory (create it with \`raftvip generate psk --out FILE\` and copy it to every peer)`,
  ]);
  t.match((await issuesOf(edit(text, [['pskFile: psk', `pskFile: ${dir}`]]), { file }))[0], /is not a regular file/);
});

t.test('decodePsk: the documented format', async (t) => {
  const hex = 'AB'.repeat(pskBytesMin);
  t.same(decodePsk(`  ${hex}\n`), { ok: true, key: Buffer.from(hex, 'hex') }, 'hex, either case, surrounding whitespace');
  t.equal(decodePsk('ab'.repeat(pskBytesMin - 1)).ok, false, '31 bytes is too short');
  const key = Buffer.alloc(pskBytesMin, 0xfb);
  t.same(decodePsk(key.toString('base64')), { ok: true, key }, 'base64');
  t.same(decodePsk(key.toString('base64url')), { ok: true, key }, 'base64url, unpadded');
  t.equal(decodePsk(`${hex}\n${hex}`).ok, false, 'two lines');
});

t.test('tls: certificates, key permissions and key match', async (t) => {
  const dir = tempDir(t);
  cpSync(join(fixtures, 'tls'), join(dir, 'tls'), { recursive: true });
  copyFileSync(join(fixtures, 'tls.yaml'), join(dir, 'tls.yaml'));
  const keyFile = join(dir, 'tls/peer.key');
  chmodSync(keyFile, 0o600);
  chmodSync(join(dir, 'tls/other.key'), 0o600);
  const file = join(dir, 'tls.yaml');
  const config = await loadConfig(file);
  t.same(config.cluster.auth, {
    kind: 'tls',
    caFile: join(dir, 'tls/ca.crt'),
    certFile: join(dir, 'tls/peer.crt'),
    keyFile,
  });

  const text = readFileSync(file, 'utf8');
  chmodSync(keyFile, 0o604);
  t.same(await issuesOf(text, { file }), [
    `${file}:10:16: cluster.auth.tls.keyFile: ${keyFile} is readable or writable by group or others (mode 0604); it holds a secret: run \`chmod 600 ${keyFile}\``,
  ]);
  chmodSync(keyFile, 0o600);
  t.same(await issuesOf(edit(text, [['keyFile: tls/peer.key', 'keyFile: tls/other.key']]), { file }), [
    `${file}:10:16: cluster.auth.tls.keyFile: ${join(dir, 'tls/other.key')} is not the private key of the certificate in ${join(dir, 'tls/peer.crt')}`,
  ]);
  const lines = await issuesOf(edit(text, [['caFile: tls/ca.crt', 'caFile: tls.yaml'], ['certFile: tls/peer.crt', 'certFile: missing.crt']]), { file });
  t.equal(lines.length, 2, 'both bad files reported');
  t.match(lines[0], /:8:15: cluster\.auth\.tls\.caFile: .*tls\.yaml does not hold a PEM certificate/);
  t.match(lines[1], /:9:17: cluster\.auth\.tls\.certFile: cannot read .*missing\.crt: no such file or directory/);
});

t.test('the config file itself cannot be read', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'missing.yaml');
  await t.rejects(loadConfig(missing), { code: 'RAFTVIP_CONFIG_UNREADABLE', message: `cannot read config file ${missing}: no such file or directory` });
  await t.rejects(loadConfig(dir), ConfigReadError);
  const binary = join(dir, 'binary.yaml');
  writeFileSync(binary, Buffer.from([0xff, 0xfe, 0x00, 0x41]));
  await t.rejects(loadConfig(binary), { code: 'RAFTVIP_CONFIG_INVALID', message: /1:1: the file is not UTF-8 text/ });
});

t.test('raftvip config check, as a real process', async (t) => {
  const { file } = copyExample(t);
  const ok = await runRaftvip(['config', 'check', file, '--node-id', 'cp1']);
  t.equal(ok.code, 0, 'the example passes: exit 0');
  t.equal(ok.stdout, `${file}: ok (node cp1, 3 peers, auth psk)\n${file}: note: loadBalancer.healthCheck.caFile /etc/kubernetes/pki/ca.crt does not exist yet; backends fail their health check until it does (kubeadm init creates the cluster CA)\n`);
  t.equal(ok.stderr, '');

  const viaOption = await runRaftvip(['--config', file, 'config', 'check', '--node-id', 'cp2']);
  t.equal(viaOption.code, 0, 'FILE defaults to --config');
  t.equal(viaOption.stdout, `${file}: ok (node cp2, 3 peers, auth psk)\n${file}: note: loadBalancer.healthCheck.caFile /etc/kubernetes/pki/ca.crt does not exist yet; backends fail their health check until it does (kubeadm init creates the cluster CA)\n`);

  const minimal = await runRaftvip(['config', 'check', 'minimal.yaml', '--node-id', 'a'], { cwd: fixtures });
  t.equal(minimal.stdout, 'minimal.yaml: ok (node a, 3 peers, auth insecure)\n');

  const bad = await runRaftvip(['config', 'check', 'syntax-error.yaml'], { cwd: fixtures });
  t.equal(bad.code, 1, 'an invalid file: exit 1');
  t.match(bad.stderr, /^syntax-error\.yaml:3:3: invalid YAML: Map keys must be unique$/m);
  t.match(bad.stderr, /^syntax-error\.yaml: invalid \(4 errors\)$/m);

  const missing = await runRaftvip(['config', 'check', join(tempDir(t), 'nope.yaml')]);
  t.equal(missing.code, 1, 'an unreadable file: exit 1');
  t.match(missing.stderr, /^raftvip: cannot read config file .*nope\.yaml: no such file or directory$/m);

  for (const args of [['config'], ['config', 'check', 'a.yaml', 'b.yaml'], ['config', 'check', '--frobnicate'], ['config', 'check', '--node-id']]) {
    const usage = await runRaftvip(args);
    t.equal(usage.code, 2, `usage error: raftvip ${args.join(' ')}`);
    t.equal(usage.stdout, '');
  }
});

t.test('raftvip generate psk, as a real process', async (t) => {
  const dir = tempDir(t);
  const out = join(dir, 'psk');
  const first = await runRaftvip(['generate', 'psk', '--out', out]);
  t.equal(first.code, 0, 'exit 0');
  t.equal(first.stderr, '');
  t.equal(statSync(out).mode & 0o777, 0o600, 'mode 0600');
  const key = readFileSync(out, 'utf8');
  t.match(key, /^[0-9a-f]{64}\n$/, '64 hex digits and a newline');
  t.equal(decodePsk(key).ok, true, 'the loader reads it');

  const again = await runRaftvip(['generate', 'psk', '--out', out]);
  t.equal(again.code, 1, 'refuses to overwrite: exit 1');
  t.match(again.stderr, /exists; not replacing it.*--force/);
  t.equal(readFileSync(out, 'utf8'), key, 'the key is unchanged');

  chmodSync(out, 0o644);
  const forced = await runRaftvip(['generate', 'psk', '--out', out, '--force']);
  t.equal(forced.code, 0, '--force replaces it');
  t.not(readFileSync(out, 'utf8'), key, 'a new key');
  t.equal(statSync(out).mode & 0o777, 0o600, 'mode 0600 again');

  const stdout = await runRaftvip(['generate', 'psk']);
  t.equal(stdout.code, 0);
  t.match(stdout.stdout, /^[0-9a-f]{64}\n$/, 'without --out, the key goes to stdout');

  const usage = await runRaftvip(['generate', 'psk', '--force']);
  t.equal(usage.code, 2, '--force without --out is a usage error');
  t.match(usage.stderr, /--force only applies with --out/);

  const noDir = await runRaftvip(['generate', 'psk', '--out', join(dir, 'missing/psk')]);
  t.equal(noDir.code, 1, 'a missing directory: exit 1');
  t.match(noDir.stderr, /cannot write .*: no such file or directory/);
});
