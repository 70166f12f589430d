// A cluster of real raftvip daemons for tests: one `bin/raftvip run` process per node, each on
// its own loopback address (127.0.0.x) with its own data directory and config file, talking
// TLS-PSK (default) or mutual TLS over real TCP. The harness only starts, signals and ends the
// processes it started, by PID, and reads them through their admin API, as an operator would.
//
// Every node reads its credentials from its own files (psk, or ca.crt/node.crt/node.key) in its
// directory, holding the cluster's by default, so a test can hand one node a wrong key or a
// certificate from another CA (setPsk, issueCertificate) and restart it.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DaemonStatus } from '../../src/daemon/daemon.js';

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const bin = join(repoRoot, 'bin/raftvip');

/** What `GET /status` returns: the daemon's own type, so the tests cannot drift from it. */
export type NodeStatus = DaemonStatus;

/** How the nodes authenticate each other: cluster.auth.pskFile or cluster.auth.tls. */
export type ClusterAuthKind = 'psk' | 'tls';

/** Which CA signs a node's certificate: the cluster's, or a second CA no other node trusts
 * (the node is then configured to trust only that one, so it starts but is refused). */
export type CertificateAuthority = 'cluster' | 'rogue';

export interface ClusterNode {
  readonly id: string;
  readonly configFile: string;
  readonly dataDir: string;
  readonly adminPort: number;
  readonly peerAddress: string;
  /** The node's credential files (only those of the cluster's auth kind exist). */
  readonly pskFile: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  process: ChildProcess | null;
  output: string;
}

export class ProcessCluster {
  readonly dir: string;
  readonly nodes: ClusterNode[] = [];
  readonly auth: ClusterAuthKind;
  /** The cluster's pre-shared key (psk mode), hex. */
  readonly pskHex: string;

  /**
   * `size` nodes; only the first `initial` (default all) form the cluster and list each other in
   * their peer files. The others list everybody and are meant to join with `--join` after a
   * `raftvip members add ID --address ...` on the leader.
   */
  constructor(options: { size: number; initial?: number; basePort?: number; subnet?: number; auth?: ClusterAuthKind }) {
    this.dir = mkdtempSync(join(tmpdir(), 'raftvip-cluster-'));
    this.auth = options.auth ?? 'psk';
    this.pskHex = randomBytes(32).toString('hex');
    if (this.auth === 'tls') {
      makeCertificateAuthority(this.dir, 'cluster-ca');
      makeCertificateAuthority(this.dir, 'rogue-ca');
    }
    // Ports from a range picked per run, so two runs on one machine do not collide.
    const basePort = options.basePort ?? 20000 + Math.floor(Math.random() * 20000);
    const subnet = options.subnet ?? 1 + Math.floor(Math.random() * 200);
    const peers = Array.from({ length: options.size }, (_, i) => ({ id: `n${i + 1}`, address: `127.${subnet}.0.${i + 1}:${basePort + i}` }));
    const initial = options.initial ?? options.size;
    for (let i = 0; i < options.size; i++) {
      const id = `n${i + 1}`;
      const listed = i < initial ? peers.slice(0, initial) : peers;
      const dataDir = join(this.dir, id, 'data');
      mkdirSync(join(this.dir, id), { recursive: true });
      const adminPort = basePort + 100 + i;
      const configFile = join(this.dir, id, 'raftvip.yaml');
      const files = {
        pskFile: join(this.dir, id, 'psk'),
        caFile: join(this.dir, id, 'ca.crt'),
        certFile: join(this.dir, id, 'node.crt'),
        keyFile: join(this.dir, id, 'node.key'),
      };
      const auth =
        this.auth === 'psk'
          ? [`    pskFile: ${files.pskFile}`]
          : ['    tls:', `      caFile: ${files.caFile}`, `      certFile: ${files.certFile}`, `      keyFile: ${files.keyFile}`];
      writeFileSync(
        configFile,
        [
          'cluster:',
          '  name: test',
          '  peers:',
          ...listed.map((p) => `    - { id: ${p.id}, address: "${p.address}" }`),
          '  auth:',
          ...auth,
          'node:',
          `  id: ${id}`,
          `  dataDir: ${dataDir}`,
          'vip:',
          `  address: 127.${subnet}.0.100`,
          // A dry run: these daemons share the host's loopback, whose `lo` must never gain a VIP.
          // The VIP itself is proven by the namespace lab (test/lab-vip.test.ts).
          '  enabled: false',
          // No load balancer either: these daemons would program the host's own nftables. The
          // load balancer is proven in namespaces (test/lab-lb.test.ts) and the guest.
          'loadBalancer:',
          '  enabled: false',
          'admin:',
          `  listen: "127.0.0.1:${adminPort}"`,
          'log:',
          '  level: info',
          '',
        ].join('\n'),
      );
      this.nodes.push({ id, configFile, dataDir, adminPort, peerAddress: peers[i]!.address, ...files, process: null, output: '' });
      if (this.auth === 'psk') this.setPsk(id, null);
      else this.issueCertificate(id, { authority: 'cluster' });
    }
  }

  /** Writes `hex` (null: the cluster's key) as the node's key file; read at its next start. */
  setPsk(id: string, hex: string | null): void {
    if (this.auth !== 'psk') throw new Error('setPsk needs a psk cluster');
    writeFileSync(this.node(id).pskFile, `${hex ?? this.pskHex}\n`, { mode: 0o600 });
  }

  /** Gives the node a fresh key and a certificate naming it (subjectAltName DNS:<id>) signed by
   * `authority`, and makes that CA the only one it trusts; read at its next start. */
  issueCertificate(id: string, options: { authority: CertificateAuthority }): void {
    if (this.auth !== 'tls') throw new Error('issueCertificate needs a tls cluster');
    const node = this.node(id);
    const ca = `${options.authority}-ca`;
    const work = join(this.dir, id);
    const ext = join(work, 'node.ext');
    writeFileSync(ext, `subjectAltName=DNS:${id}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n`);
    openssl(work, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', node.keyFile, '-out', join(work, 'node.csr'), '-subj', `/CN=${id}`]);
    openssl(work, [
      'x509', '-req', '-in', join(work, 'node.csr'), '-CA', join(this.dir, `${ca}.crt`), '-CAkey', join(this.dir, `${ca}.key`),
      '-CAcreateserial', '-out', node.certFile, '-days', '2', '-extfile', ext,
    ]);
    chmodSync(node.keyFile, 0o600);
    copyFileSync(join(this.dir, `${ca}.crt`), node.caFile);
  }

  node(id: string): ClusterNode {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  start(id: string, options: { join?: boolean } = {}): void {
    const node = this.node(id);
    if (node.process) throw new Error(`${id} already running`);
    const args = [bin, 'run', '--config', node.configFile, ...(options.join ? ['--join'] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    node.process = child;
    const append = (chunk: Buffer) => {
      node.output += chunk.toString();
      if (node.output.length > 200_000) node.output = node.output.slice(-100_000);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    child.once('exit', () => {
      if (node.process === child) node.process = null;
    });
  }

  /** Start every node that is not running; `only` limits it to those ids. */
  startAll(only?: readonly string[]): void {
    for (const node of this.nodes) if (!node.process && (!only || only.includes(node.id))) this.start(node.id);
  }

  /** Send a signal to the node's process (by PID) and wait for it to exit. */
  async signal(id: string, signal: NodeJS.Signals, options: { waitMs?: number } = {}): Promise<number | null> {
    const child = this.node(id).process;
    if (!child || child.exitCode !== null) return null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), options.waitMs ?? 10_000));
    const result = await Promise.race([exited, timeout]);
    if (result === 'timeout') throw new Error(`${id} did not exit within ${options.waitMs ?? 10_000} ms of ${signal}`);
    return result;
  }

  async status(id: string): Promise<NodeStatus | null> {
    const node = this.node(id);
    if (!node.process) return null;
    try {
      const response = await fetch(`http://127.0.0.1:${node.adminPort}/status`, { signal: AbortSignal.timeout(1000) });
      if (!response.ok) return null;
      return (await response.json()) as NodeStatus;
    } catch {
      return null;
    }
  }

  async admin(id: string, path: string, init?: RequestInit): Promise<{ status: number; text: string }> {
    const response = await fetch(`http://127.0.0.1:${this.node(id).adminPort}${path}`, { ...init, signal: AbortSignal.timeout(2000) });
    return { status: response.status, text: await response.text() };
  }

  async statuses(): Promise<Map<string, NodeStatus>> {
    const all = new Map<string, NodeStatus>();
    await Promise.all(
      this.nodes.map(async (node) => {
        const status = await this.status(node.id);
        if (status) all.set(node.id, status);
      }),
    );
    return all;
  }

  /** Wait until the running nodes agree on one leader that holds its lease; return its id. */
  async waitForLeader(options: { timeoutMs: number; exclude?: string[]; minTerm?: number }): Promise<string> {
    const deadline = Date.now() + options.timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const all = await this.statuses();
      const leaders = [...all.values()].filter((s) => s.role === 'leader' && s.lease.held && !(options.exclude ?? []).includes(s.id));
      const leader = leaders[0];
      if (leaders.length === 1 && leader && leader.term >= (options.minTerm ?? 0)) {
        const running = this.nodes.filter((n) => n.process && !(options.exclude ?? []).includes(n.id));
        const agreeing = [...all.values()].filter((s) => s.leader === leader.id && s.term === leader.term);
        if (agreeing.length === running.length) return leader.id;
      }
      last = [...all.values()].map((s) => `${s.id}:${s.role}/t${s.term}/l=${s.leader}`).join(' ');
      await sleep(50);
    }
    throw new Error(`no agreed leader within ${options.timeoutMs} ms (last seen: ${last || 'no status'})`);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => (n.process ? this.signal(n.id, 'SIGKILL').catch(() => null) : null)));
  }

  /** The last lines each node logged, for a failing test's report. */
  logTail(lines = 40): string {
    return this.nodes
      .map((n) => `--- ${n.id}\n${n.output.trimEnd().split('\n').slice(-lines).join('\n')}`)
      .join('\n');
  }

  async destroy(): Promise<void> {
    await this.stopAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(cwd: string, args: readonly string[]): void {
  execFileSync('openssl', args, { cwd, timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** `<name>.crt` and `<name>.key` in `dir`: a self-signed EC P-256 CA valid for two days. */
function makeCertificateAuthority(dir: string, name: string): void {
  openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=raftvip-test-${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
