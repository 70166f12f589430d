// The IPVS data plane: keeps one IPVS virtual service `VIP:port` TCP equal to the desired
// VirtualService, over generic netlink (ipvs-netlink.ts), with what masquerade forwarding needs
// around it: three sysctls and a small nftables table for source NAT. `apply` is observe → plan
// (ipvs-planner.ts, pure) → execute.
//
// Why source NAT (kube-vip issue #767): with masquerade, IPVS rewrites only the destination, so a
// real server sees the client's own address as the source. A real server on the client's subnet
// (on a control plane: every other control-plane host, and every kubelet) then answers the client
// directly, from its own address; the client expects the VIP and resets the connection. So every
// connection IPVS forwards to another host is masqueraded to the balancer's address, and the
// reply comes back through the balancer, where IPVS turns its source back into the VIP. The rule
// lives in raftvip's own table, `ip raftvip_ipvs` (`ip6` for an IPv6 VIP):
//
//     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//       ct original ip daddr VIP ct original protocol tcp ct original proto-dst PORT masquerade }
//
// It matches on the conntrack entry's original direction, client → VIP:PORT, which IPVS leaves
// as it is when it rewrites the destination (it alters only the reply direction, to come from
// the real server), so exactly the connections of raftvip's service are masqueraded, whichever
// real server IPVS picked. A real server on the balancer itself is delivered locally and never
// reaches postrouting. Real servers see the balancer's address, not the client's:
// kube-apiserver does not need the client address (authentication is by certificate or token).
//
// The sysctls (per network namespace; checked on every apply, written only when they differ, and
// reported through `onHostChange`):
// - net.ipv4.vs.conntrack = 1: without it IPVS marks the packets it forwards as untracked
//   (ip_vs_notrack), so no conntrack entry and no NAT rule ever sees them: the masquerade above
//   would silently not happen. It is the one switch for IPv4 and IPv6 services alike.
// - net.ipv4.ip_forward = 1 (net.ipv6.conf.all.forwarding = 1 for an IPv6 VIP): the real
//   server's reply, un-NATed back to the client's address, is forwarded: it crosses the FORWARD
//   hook, where IPVS rewrites its source to the VIP (ip_vs_reply4/6). Without forwarding the
//   kernel drops it. (kubeadm's preflight demands ip_forward anyway. For IPv6 note that
//   forwarding makes interfaces with accept_ra=1 ignore router advertisements; hosts that learn
//   their default route by RA need accept_ra=2.)
// - net.ipv4.vs.expire_nodest_conn = 1: when a real server is removed from the configuration
//   (deleted, not drained), the next packet of each of its connections expires the entry and is
//   dropped, so the client sees the failure at once and reconnects to a live server, instead of
//   sending into a destination that no longer exists until the IPVS timeout (15 min for an
//   established TCP connection). Drained servers (weight 0) keep their destination, so their
//   connections continue.
// Not set, on purpose: conn_reuse_mode (its 1 s stall on reused client ports with conntrack=1 was
// fixed in 5.9), sloppy_tcp/sloppy_sctp (only for a balancer that sees one direction; ours sees
// both), and anything for persistence (raftvip uses none).
//
// Invariants:
// - Level-triggered and idempotent (data-plane.ts): every apply re-reads the sysctls, the nft
//   table, the timeouts (when configured) and the IPVS service, and changes only what differs.
//   Applying the same service twice makes no IPVS request that changes anything, rewrites no
//   sysctl and does not touch the nft table the second time.
// - Order: sysctls, then the SNAT table, then timeouts, then the IPVS service. A connection
//   forwarded before its masquerade rule existed would be stuck with a conntrack entry without
//   NAT, so forwarding is set up before IPVS gets the service.
// - raftvip's service is fixed at construction (the configured VIP and port): `apply` of another
//   VIP:port is refused (EINVAL), `observe` and `remove` look only at that service, and `remove`
//   deletes it and the `raftvip_ipvs` tables, nothing else. Sysctls and timeouts are left as they
//   are: they are shared with whatever else balances on this host (kube-proxy needs the same).
// - Every failure is an IpvsError (RAFTVIP_IPVS_FAILED) with an errno and an operation.

import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { nftRunTimeoutMs, nftStderrSummary, runNft } from './nft-command.js';
import { readSysctl, writeSysctl } from './sysctl.js';
import { formatEndpoint, type DataPlane, type ObservedService, type VirtualService } from './data-plane.js';
import type { IpFamily, IpvsAddressServiceKey, IpvsServiceEntry, IpvsTimeouts } from './ipvs-codec.js';
import { IpvsError, IpvsNetlink, isIpvsUnavailable, type IpvsClient } from './ipvs-netlink.js';
import { checkVirtualService, familyOf, observedServiceFrom, planIpvs, serviceKeyFor, type IpvsChange, type IpvsObservedState } from './ipvs-planner.js';
import { canonicalIpAddress } from '../vip/packet-layout.js';

export { ipvsAvailable } from './ipvs-netlink.js';

/** The nftables table raftvip owns for the IPVS data plane's source NAT (in family `ip` or
 * `ip6`). Distinct from the nftables data plane's `raftvip_lb`, so each data plane's `remove`
 * leaves the other's table alone. */
export const ipvsNatTableName = 'raftvip_ipvs';
/** An apply whose change races another writer (EEXIST on add, ENOENT/ESRCH on edit or delete)
 * observes and plans again, this many times in all at most. */
export const applyAttemptsMax = 3;
/** IPVS keeps timeouts in jiffies in an int: seconds × HZ must stay below 2^31. 2,147,483 s
 * (24.8 days) is safe for every HZ up to 1000. */
export const ipvsTimeoutSecondsMax = 2_147_483;

export interface IpvsDataPlaneTimeouts {
  /** Established TCP connections (ipvsadm --set tcp); null keeps the kernel's (900 s). */
  readonly tcpS: number | null;
  /** TCP connections after FIN (ipvsadm --set tcpfin); null keeps the kernel's (120 s). */
  readonly tcpFinS: number | null;
  /** UDP (ipvsadm --set udp); null or absent keeps the kernel's (300 s). raftvip's service is
   * TCP, but the setting is the namespace's. */
  readonly udpS?: number | null;
}

/** The host facilities the data plane uses besides IPVS; tests inject fakes. */
export interface IpvsHost {
  /** The value of /proc/sys/<path> without the newline, or null if the file does not exist. */
  readSysctl(path: string): Promise<string | null>;
  writeSysctl(path: string, value: string): Promise<void>;
  /** Runs nft with `input` on stdin. Resolves with the exit code and output; rejects only when
   * nft cannot be run at all. */
  runNft(args: readonly string[], input: string): Promise<{ exitCode: number | null; stdout: string; stderr: string }>;
}

export interface IpvsDataPlaneOptions {
  /** raftvip's service: the configured VIP (canonical text) and port. */
  readonly vip: { readonly address: string; readonly port: number };
  readonly timeouts?: IpvsDataPlaneTimeouts;
  /** Told about changes to the host outside the IPVS service: a sysctl or a timeout changed. */
  readonly onHostChange?: (message: string) => void;
  /** Defaults to a new IpvsNetlink. The data plane closes it on `close`. */
  readonly ipvs?: IpvsClient;
  /** Defaults to /proc/sys and the `nft` binary from PATH. */
  readonly host?: IpvsHost;
}

/** What the last `apply` did; for logs, metrics and tests. */
export interface IpvsApplyReport {
  /** IPVS changes made, in order (empty when the service was already right). */
  readonly changes: readonly IpvsChange[];
  /** Sysctls written, as `path=value`. */
  readonly sysctlsChanged: readonly string[];
  readonly timeoutsChanged: boolean;
  /** Whether the SNAT table was (re)written. */
  readonly sourceNatWritten: boolean;
  readonly durationMs: number;
}

interface Sysctl {
  readonly path: string;
  readonly value: string;
}

export class IpvsDataPlane implements DataPlane {
  readonly kind = 'ipvs' as const;
  readonly #key: IpvsAddressServiceKey;
  readonly #family: IpFamily;
  readonly #timeouts: IpvsTimeouts | null;
  readonly #onHostChange: (message: string) => void;
  readonly #ipvs: IpvsClient;
  readonly #host: IpvsHost;
  /** What `nft list table` printed right after raftvip last wrote the table, keyed by the script
   * written: nft's canonical form of our own rules, to compare later listings with. */
  #natListing: { script: string; listing: string } | null = null;
  #lastApply: IpvsApplyReport | null = null;
  /** IPVS answered once: the module is loaded and /proc/sys/net/ipv4/vs exists. */
  #ipvsLoaded = false;
  #closed = false;

  constructor(options: IpvsDataPlaneOptions) {
    const address = canonicalIpAddress(options.vip.address);
    if (address === null || address !== options.vip.address || !Number.isInteger(options.vip.port) || options.vip.port < 1 || options.vip.port > 65_535) {
      throw new IpvsError({ operation: 'validate', errno: osConstants.errno.EINVAL, detail: `the VIP must be a canonical IP address and a port in 1..65535, got ${JSON.stringify(options.vip)}` });
    }
    this.#key = serviceKeyFor(options.vip);
    this.#family = familyOf(address);
    this.#timeouts = checkTimeouts(options.timeouts);
    this.#onHostChange = options.onHostChange ?? (() => {});
    this.#host = options.host ?? systemHost;
    this.#ipvs = options.ipvs ?? new IpvsNetlink();
  }

  /** What the last successful `apply` did, or null before one. */
  get lastApply(): IpvsApplyReport | null {
    return this.#lastApply;
  }

  async apply(service: VirtualService): Promise<void> {
    const startedMs = performance.now();
    this.#checkOpen();
    if (service.address !== this.#key.address || service.port !== this.#key.port) {
      throw new IpvsError({
        operation: 'validate',
        errno: osConstants.errno.EINVAL,
        detail: `this data plane manages ${formatEndpoint(this.#key.address, this.#key.port)}, not ${formatEndpoint(service.address, service.port)}`,
      });
    }
    const problems = checkVirtualService(service);
    if (problems.length > 0) throw new IpvsError({ operation: 'validate', errno: osConstants.errno.EINVAL, detail: problems.join('; ') });

    // The first request resolves the family, which loads ip_vs if it is a module; that creates
    // /proc/sys/net/ipv4/vs, so it must come before the sysctls.
    if (!this.#ipvsLoaded) {
      await this.#ipvs.getInfo();
      this.#ipvsLoaded = true;
    }
    const sysctlsChanged = await this.#ensureSysctls();
    const sourceNatWritten = await this.#ensureSourceNat();
    const timeoutsChanged = await this.#ensureTimeouts();

    const made: IpvsChange[] = [];
    for (let attempt = 1; ; attempt++) {
      try {
        for (const change of planIpvs(service, await this.#observeKernel())) {
          await this.#execute(change);
          made.push(change);
        }
        break;
      } catch (error) {
        if (attempt >= applyAttemptsMax || !isRace(error)) throw error;
      }
    }
    this.#lastApply = { changes: made, sysctlsChanged, timeoutsChanged, sourceNatWritten, durationMs: performance.now() - startedMs };
  }

  async observe(): Promise<ObservedService | null> {
    this.#checkOpen();
    return observedServiceFrom(this.#key, await this.#observeKernel());
  }

  async remove(): Promise<void> {
    this.#checkOpen();
    try {
      await this.#ipvs.deleteService(this.#key);
    } catch (error) {
      // Already gone, or a kernel without IPVS at all: nothing of ours is there.
      const gone = error instanceof IpvsError && (error.errno === osConstants.errno.ESRCH || error.errno === osConstants.errno.ENOENT);
      if (!gone && !isIpvsUnavailable(error)) throw error;
    }
    // Both families, so a VIP changed between IPv4 and IPv6 across runs leaves no table behind.
    await this.#nft(['-f', '-'], renderNatRemoval('ip') + renderNatRemoval('ip6'));
    this.#natListing = null;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ipvs.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new IpvsError({ operation: 'validate', errno: osConstants.errno.EBADF, detail: 'the data plane is closed' });
  }

  async #observeKernel(): Promise<IpvsObservedState> {
    const services = await this.#ipvs.listServices();
    const service = services.find((candidate) => isOurService(candidate, this.#key)) ?? null;
    if (service === null) return { service: null, destinations: [] };
    return { service, destinations: await this.#ipvs.listDestinations(this.#key) };
  }

  async #execute(change: IpvsChange): Promise<void> {
    switch (change.kind) {
      case 'add-service':
        return this.#ipvs.addService(change.service);
      case 'edit-service':
        return this.#ipvs.editService(change.service);
      case 'add-destination':
        return this.#ipvs.addDestination(change.service, change.destination);
      case 'edit-destination':
        return this.#ipvs.editDestination(change.service, change.destination);
      case 'delete-destination':
        return this.#ipvs.deleteDestination(change.service, change.destination);
    }
  }

  async #ensureSysctls(): Promise<string[]> {
    const changed: string[] = [];
    for (const sysctl of sysctlsFor(this.#family)) {
      let current: string | null;
      try {
        current = await this.#host.readSysctl(sysctl.path);
      } catch (error) {
        throw new IpvsError({ operation: 'sysctl', errno: errnoOf(error), detail: `cannot read ${sysctl.path}: ${(error as Error).message}` });
      }
      if (current === null) throw new IpvsError({ operation: 'sysctl', errno: osConstants.errno.ENOENT, detail: `${sysctl.path} does not exist (is ip_vs loaded in this network namespace?)` });
      if (current === sysctl.value) continue;
      try {
        await this.#host.writeSysctl(sysctl.path, sysctl.value);
      } catch (error) {
        throw new IpvsError({ operation: 'sysctl', errno: errnoOf(error), detail: `cannot set ${sysctl.path} to ${sysctl.value}: ${(error as Error).message}` });
      }
      changed.push(`${sysctl.path}=${sysctl.value}`);
      this.#onHostChange(`set ${sysctl.path.replaceAll('/', '.')} = ${sysctl.value} (was ${current}) for IPVS masquerade`);
    }
    return changed;
  }

  /** Makes the SNAT table exactly ours; true if it was written. */
  async #ensureSourceNat(): Promise<boolean> {
    const family = this.#family === 'ipv4' ? 'ip' : 'ip6';
    const script = renderNatTable(this.#key);
    const listed = await this.#listNatTable(family);
    if (listed !== null && this.#natListing !== null && this.#natListing.script === script && this.#natListing.listing === listed) return false;
    await this.#nft(['-f', '-'], script);
    const written = await this.#listNatTable(family);
    this.#natListing = written === null ? null : { script, listing: written };
    return true;
  }

  async #listNatTable(family: 'ip' | 'ip6'): Promise<string | null> {
    const result = await this.#runNft(['list', 'table', family, ipvsNatTableName], '');
    if (result.exitCode === 0) return result.stdout;
    if (/No such file or directory/.test(result.stderr)) return null;
    throw nftError(['list', 'table', family, ipvsNatTableName], result);
  }

  async #nft(args: readonly string[], input: string): Promise<void> {
    const result = await this.#runNft(args, input);
    if (result.exitCode !== 0) throw nftError(args, result);
  }

  async #runNft(args: readonly string[], input: string): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
    try {
      return await this.#host.runNft(args, input);
    } catch (error) {
      const hint = errnoOf(error) === osConstants.errno.ENOENT ? ' (is the nftables package installed?)' : '';
      throw new IpvsError({ operation: 'source-nat', errno: errnoOf(error), detail: `cannot run nft: ${(error as Error).message}${hint}` });
    }
  }

  async #ensureTimeouts(): Promise<boolean> {
    const wanted = this.#timeouts;
    if (wanted === null) return false;
    const current = await this.#ipvs.getTimeouts();
    const differs =
      (wanted.tcpSeconds !== undefined && wanted.tcpSeconds !== current.tcpSeconds) ||
      (wanted.tcpFinSeconds !== undefined && wanted.tcpFinSeconds !== current.tcpFinSeconds) ||
      (wanted.udpSeconds !== undefined && wanted.udpSeconds !== current.udpSeconds);
    if (!differs) return false;
    await this.#ipvs.setTimeouts(wanted);
    this.#onHostChange(`set IPVS timeouts ${describeTimeouts(wanted)} (were ${describeTimeouts(current)})`);
    return true;
  }
}

/** The sysctls masquerade forwarding needs, as /proc/sys paths (see the header for why). */
export function sysctlsFor(family: IpFamily): readonly Sysctl[] {
  return [
    { path: 'net/ipv4/vs/conntrack', value: '1' },
    family === 'ipv4' ? { path: 'net/ipv4/ip_forward', value: '1' } : { path: 'net/ipv6/conf/all/forwarding', value: '1' },
    { path: 'net/ipv4/vs/expire_nodest_conn', value: '1' },
  ];
}

/** The `nft -f` script that replaces raftvip's SNAT table in one transaction: create (so the
 * delete cannot fail), delete, create with the rule. */
export function renderNatTable(key: IpvsAddressServiceKey): string {
  const family = key.family === 'ipv4' ? 'ip' : 'ip6';
  return [
    `table ${family} ${ipvsNatTableName} {}`,
    `delete table ${family} ${ipvsNatTableName}`,
    `table ${family} ${ipvsNatTableName} {`,
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    `\t\tct original ${family} daddr ${key.address} ct original protocol tcp ct original proto-dst ${key.port} masquerade`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** Deletes raftvip's SNAT table of one family if it is there (create-then-delete never fails). */
export function renderNatRemoval(family: 'ip' | 'ip6'): string {
  return `table ${family} ${ipvsNatTableName} {}\ndelete table ${family} ${ipvsNatTableName}\n`;
}

function isOurService(candidate: IpvsServiceEntry, key: IpvsAddressServiceKey): boolean {
  const found = candidate.key;
  return found.kind === 'address' && found.family === key.family && found.protocol === key.protocol && found.address === key.address && found.port === key.port;
}

/** A change that failed because someone else changed the service at the same time. */
function isRace(error: unknown): boolean {
  if (!(error instanceof IpvsError)) return false;
  const { EEXIST, ENOENT, ESRCH } = osConstants.errno;
  return error.errno === EEXIST || error.errno === ENOENT || error.errno === ESRCH;
}

function checkTimeouts(timeouts: IpvsDataPlaneTimeouts | undefined): IpvsTimeouts | null {
  if (timeouts === undefined) return null;
  const result: IpvsTimeouts = {};
  const entries: [keyof IpvsTimeouts, number | null | undefined][] = [
    ['tcpSeconds', timeouts.tcpS],
    ['tcpFinSeconds', timeouts.tcpFinS],
    ['udpSeconds', timeouts.udpS],
  ];
  for (const [name, value] of entries) {
    if (value === null || value === undefined) continue;
    if (!Number.isInteger(value) || value < 1 || value > ipvsTimeoutSecondsMax) {
      throw new IpvsError({ operation: 'validate', errno: osConstants.errno.EINVAL, detail: `timeout ${name} must be an integer in 1..${ipvsTimeoutSecondsMax} s, got ${String(value)}` });
    }
    result[name] = value;
  }
  return Object.keys(result).length === 0 ? null : result;
}

function describeTimeouts(timeouts: IpvsTimeouts): string {
  const parts: string[] = [];
  if (timeouts.tcpSeconds !== undefined) parts.push(`tcp ${timeouts.tcpSeconds} s`);
  if (timeouts.tcpFinSeconds !== undefined) parts.push(`tcpfin ${timeouts.tcpFinSeconds} s`);
  if (timeouts.udpSeconds !== undefined) parts.push(`udp ${timeouts.udpSeconds} s`);
  return parts.join(', ');
}

function nftError(args: readonly string[], result: { exitCode: number | null; stderr: string }): IpvsError {
  const why = result.exitCode === null ? `killed (timeout ${nftRunTimeoutMs} ms?)` : `exit code ${result.exitCode}`;
  const detail = `nft ${args.join(' ')}: ${why}: ${nftStderrSummary(result.stderr)}`;
  return new IpvsError({ operation: 'source-nat', errno: /Operation not permitted/.test(result.stderr) ? osConstants.errno.EPERM : osConstants.errno.EIO, detail });
}

function errnoOf(error: unknown): number {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in osConstants.errno) return osConstants.errno[code as keyof typeof osConstants.errno];
  return osConstants.errno.EIO;
}

/** The real host: /proc/sys of the process's network namespace, and `nft` from PATH. */
export const systemHost: IpvsHost = {
  readSysctl,
  writeSysctl,
  runNft: (args, input) => runNft(args, input),
};
