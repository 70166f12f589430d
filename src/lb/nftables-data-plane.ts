// The nftables data plane: keeps the kernel's `raftvip_lb` table equal to the desired virtual
// service by running `nft` (the nftables package's own CLI; no maintained Node.js binding for
// nf_tables exists, and `nft -f` gives us the atomic transaction we need). The rules themselves
// are rendered and parsed in nftables-ruleset.ts.
//
// Invariants:
// - Level-triggered: `apply` lists the table (`nft -j list table`), parses it and replaces the
//   whole table when what the kernel forwards differs from the desired service (servers, weights,
//   scheduler, or a rule edited or deleted by hand). Equal state costs one listing, no change,
//   so the numgen counter (the round-robin position) is not reset by idle reconciles.
// - Every change is one `nft -f -` transaction: delete and re-create in one commit.
// - Forwarding is on: DNAT to another host needs `net.ipv4.ip_forward` (or IPv6 forwarding for an
//   IPv6 VIP). kubeadm's preflight requires the same; if it is off, it is turned on and logged.
// - `remove` deletes `raftvip_lb` in both families and nothing else.
// - Every failure is an NftablesError (RAFTVIP_NFT_FAILED) with nft's own message.

import { readSysctl, writeSysctl } from './sysctl.js';
import type { DataPlane, ObservedService, VirtualService } from './data-plane.js';
import { nftRunTimeoutMs, nftStderrSummary, runNft, type NftResult } from './nft-command.js';
import { nftablesTableName, nftFamilyOf, parseObservedTable, renderRemoval, renderTable, type NftFamily } from './nftables-ruleset.js';

export type NftablesOperation = 'list' | 'apply' | 'remove' | 'sysctl';

export class NftablesError extends Error {
  readonly code = 'RAFTVIP_NFT_FAILED' as const;
  readonly operation: NftablesOperation;

  constructor(options: { operation: NftablesOperation; detail: string }) {
    super(`nftables ${options.operation} failed: ${options.detail}`);
    this.name = 'NftablesError';
    this.operation = options.operation;
  }
}

export interface NftablesDataPlaneOptions {
  /** The `nft` binary; default "nft" from PATH. */
  nftPath?: string;
  /** Told when forwarding had to be turned on, and similar one-off host changes. */
  onHostChange?: (message: string) => void;
}

export class NftablesDataPlane implements DataPlane {
  readonly kind = 'nftables' as const;
  readonly #nftPath: string;
  readonly #onHostChange: (message: string) => void;
  /** The service last applied, so `observe` knows which VIP:port to look for. */
  #service: { address: string; port: number } | null = null;

  constructor(options: NftablesDataPlaneOptions = {}) {
    this.#nftPath = options.nftPath ?? 'nft';
    this.#onHostChange = options.onHostChange ?? (() => {});
  }

  async apply(service: VirtualService): Promise<void> {
    this.#service = { address: service.address, port: service.port };
    await this.#ensureForwarding(nftFamilyOf(service.address));
    const observed = await this.observe();
    if (observed !== null && sameForwarding(service, observed)) return;
    let script: string;
    try {
      script = renderTable(service);
    } catch (error) {
      throw new NftablesError({ operation: 'apply', detail: (error as Error).message });
    }
    await this.#run('apply', ['-f', '-'], script);
  }

  async observe(): Promise<ObservedService | null> {
    const service = this.#service;
    if (service === null) return null;
    const family = nftFamilyOf(service.address);
    const result = await this.#run('list', ['-j', 'list', 'table', family, nftablesTableName], '', { missingIsEmpty: true });
    if (result === null) return null;
    try {
      return parseObservedTable(result, service);
    } catch (error) {
      throw new NftablesError({ operation: 'list', detail: `unreadable listing: ${(error as Error).message}` });
    }
  }

  async remove(): Promise<void> {
    // Both families: a VIP changed from IPv4 to IPv6 between runs leaves no table behind.
    await this.#run('remove', ['-f', '-'], renderRemoval('ip') + renderRemoval('ip6'));
  }

  close(): void {}

  async #ensureForwarding(family: NftFamily): Promise<void> {
    const path = family === 'ip' ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding';
    const file = `/proc/sys/${path}`;
    try {
      const value = await readSysctl(path);
      if (value === null) throw new Error(`${file} does not exist`);
      if (value === '1') return;
      await writeSysctl(path, '1');
      this.#onHostChange(`turned on ${file} (was ${value}): DNAT to other hosts needs forwarding`);
    } catch (error) {
      throw new NftablesError({ operation: 'sysctl', detail: `cannot turn on ${file}: ${(error as Error).message}` });
    }
  }

  /** Runs nft with `input` on stdin; its stdout, or null for a missing table when allowed. */
  async #run(operation: NftablesOperation, args: readonly string[], input: string, options: { missingIsEmpty?: boolean } = {}): Promise<string | null> {
    let result: NftResult;
    try {
      result = await runNft(args, input, { nftPath: this.#nftPath });
    } catch (error) {
      const hint = (error as NodeJS.ErrnoException).code === 'ENOENT' ? ` (is the nftables package installed? looked for ${this.#nftPath})` : '';
      throw new NftablesError({ operation, detail: `cannot run nft: ${(error as Error).message}${hint}` });
    }
    if (result.exitCode === 0) return result.stdout;
    if (options.missingIsEmpty === true && /No such file or directory/.test(result.stderr)) return null;
    const why = result.exitCode === null ? `killed (timeout ${nftRunTimeoutMs} ms?)` : `exit code ${result.exitCode}`;
    throw new NftablesError({ operation, detail: `nft ${args.join(' ')}: ${why}: ${nftStderrSummary(result.stderr)}` });
  }
}

/** True when the kernel forwards exactly as `desired` asks: same servers with the same weights,
 * same key (numgen or jhash). rr and wrr render alike and are compared by weights only. */
export function sameForwarding(desired: VirtualService, observed: ObservedService): boolean {
  const active = desired.realServers.filter((server) => server.weight > 0);
  if (active.length !== observed.realServers.length) return false;
  if (active.length === 0) return observed.scheduler === null;
  const hashed = desired.scheduler === 'sh';
  if (hashed !== (observed.scheduler === 'sh')) return false;
  return active.every((server, index) => {
    const seen = observed.realServers[index];
    return seen !== undefined && seen.address === server.address && seen.port === server.port && seen.weight === server.weight;
  });
}
