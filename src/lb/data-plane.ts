// The contract between the load-balancer controller and a kernel data plane (IPVS over generic
// netlink, or an nftables table). The controller computes one desired virtual service from the
// configuration and the health checks; a data plane converges the kernel to exactly that service
// and reports what the kernel holds. Both data planes are programmed on every host, leader or
// not, so the host that claims the VIP forwards from its first packet: only the address moves.
//
// Invariants every implementation keeps:
// - `apply` is level-triggered and idempotent: it re-reads the kernel, computes the difference
//   and changes only what differs. Applying the same service twice changes nothing the second
//   time; a real server added or removed by hand is put back or taken away.
// - A real server with weight 0 is drained: it gets no new connections, while connections it
//   already has continue (IPVS weight 0; nftables: left out of the DNAT map, conntrack keeps the
//   existing flows).
// - `remove` deletes what raftvip created and nothing else: other IPVS services and other nft
//   tables (kube-proxy's among them) stay untouched. It is idempotent.
// - Failures are typed errors with a stable `code` (listed in docs/errors.md); nothing else
//   escapes, so the controller can log, count and retry.

export const schedulers = ['rr', 'wrr', 'lc', 'wlc', 'sh'] as const;
/** IPVS scheduler names. nftables implements rr, wrr (numgen with a weighted map) and sh (jhash
 * of the client address); lc and wlc need IPVS's connection counts. */
export type Scheduler = (typeof schedulers)[number];

export const dataPlaneKinds = ['ipvs', 'nftables'] as const;
export type DataPlaneKind = (typeof dataPlaneKinds)[number];

/** Weights as IPVS takes them (a signed 32-bit field; 0 drains). */
export const realServerWeightMax = 65_535;
export const realServerWeightDefault = 1;

export interface RealServer {
  /** Canonical IP literal (dotted quad or RFC 5952), no brackets. */
  readonly address: string;
  readonly port: number;
  /** 0 drains the server: no new connections. */
  readonly weight: number;
}

export interface VirtualService {
  /** The VIP, canonical IP literal. */
  readonly address: string;
  readonly port: number;
  readonly scheduler: Scheduler;
  /** Every configured backend, ready ones with their weight and the others with weight 0, in
   * configuration order. Addresses are unique by `address:port`. */
  readonly realServers: readonly RealServer[];
}

export interface ObservedRealServer {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** Established connections the kernel counts for this server, or null where the data plane
   * does not know them (nftables keeps no per-backend count). */
  readonly activeConnections: number | null;
  /** IPVS's inactive connections (closing, SYN received); null where unknown. */
  readonly inactiveConnections: number | null;
}

export interface ObservedService {
  readonly address: string;
  readonly port: number;
  readonly scheduler: Scheduler | null;
  readonly realServers: readonly ObservedRealServer[];
}

export interface DataPlane {
  readonly kind: DataPlaneKind;
  /** Converges the kernel to exactly `service`: creates the service if missing, fixes its
   * scheduler, adds, updates and removes real servers, and sets up whatever forwarding needs
   * around it (sysctls, source NAT for backends on the VIP's own subnet). */
  apply(service: VirtualService): Promise<void>;
  /** What the kernel holds now for raftvip's service, or null if raftvip's service is absent. */
  observe(): Promise<ObservedService | null>;
  /** Removes everything raftvip created, and nothing else. Idempotent. */
  remove(): Promise<void>;
  /** Releases sockets. Idempotent; does not change the kernel. */
  close(): void;
}

/** `address:port`, with brackets for IPv6: how logs, status and metrics name a service or server. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
