// Picks and opens the data plane `loadBalancer.dataPlane` asks for: `auto` is IPVS when the
// kernel has it (the generic netlink family "IPVS" resolves, loading the module on demand), else
// nftables. The one not chosen is cleaned of anything an earlier run of raftvip left in it, so
// switching data planes between runs leaves no second forwarder behind.

import type { DataPlaneChoice } from '../config/load-balancer-schema.js';
import type { DataPlane, Scheduler } from './data-plane.js';
import { NftablesDataPlane } from './nftables-data-plane.js';
import { nftablesSupports } from './nftables-ruleset.js';

export class DataPlaneUnavailableError extends Error {
  readonly code = 'RAFTVIP_LB_UNAVAILABLE' as const;
  constructor(message: string) {
    super(message);
    this.name = 'DataPlaneUnavailableError';
  }
}

export interface OpenDataPlaneOptions {
  readonly choice: DataPlaneChoice;
  readonly scheduler: Scheduler;
  readonly vipAddress: string;
  readonly port: number;
  /** IPVS connection timeouts in seconds; null keeps the kernel's. */
  readonly tcpTimeoutS: number | null;
  readonly tcpFinTimeoutS: number | null;
  readonly log: (level: 'info' | 'warn', msg: string) => void;
}

/** Opens the chosen data plane. Throws DataPlaneUnavailableError (a clear, one-line reason)
 * when the choice cannot work on this host. */
export async function openDataPlane(options: OpenDataPlaneOptions): Promise<DataPlane> {
  const ipvs = await import('./ipvs-data-plane.js');
  const nftables = (): DataPlane => new NftablesDataPlane({ onHostChange: (message) => options.log('warn', message) });
  const openIpvs = (): DataPlane =>
    new ipvs.IpvsDataPlane({
      vip: { address: options.vipAddress, port: options.port },
      timeouts: { tcpS: options.tcpTimeoutS, tcpFinS: options.tcpFinTimeoutS },
      onHostChange: (message: string) => options.log('warn', message),
    });
  switch (options.choice) {
    case 'ipvs': {
      const available = await ipvs.ipvsAvailable();
      if (!available.ok) throw new DataPlaneUnavailableError(`loadBalancer.dataPlane is ipvs, but ${available.reason}; use dataPlane: nftables or auto`);
      return openIpvs();
    }
    case 'nftables':
      return nftables();
    case 'auto': {
      const available = await ipvs.ipvsAvailable();
      if (available.ok) return openIpvs();
      if (!nftablesSupports(options.scheduler)) {
        throw new DataPlaneUnavailableError(
          `loadBalancer.scheduler ${options.scheduler} needs IPVS, but ${available.reason}; use scheduler rr, wrr or sh (nftables), or a kernel with IPVS`,
        );
      }
      options.log('info', `IPVS is not available (${available.reason}): using nftables`);
      return nftables();
    }
  }
}

/** Removes what raftvip may have left in the data plane not in use (or in both, when the load
 * balancer is disabled). Failures are reported, not thrown: a host without IPVS or without nft
 * has nothing of ours in it. */
export async function removeLeftovers(options: { except: DataPlane['kind'] | null; vipAddress: string; port: number; log: (level: 'info' | 'warn', msg: string) => void }): Promise<void> {
  if (options.except !== 'nftables') {
    try {
      await new NftablesDataPlane().remove();
    } catch (error) {
      options.log('warn', `could not check nftables for a raftvip_lb table left behind: ${(error as Error).message}`);
    }
  }
  if (options.except !== 'ipvs') {
    const ipvs = await import('./ipvs-data-plane.js');
    const available = await ipvs.ipvsAvailable();
    if (!available.ok) return;
    const plane = new ipvs.IpvsDataPlane({ vip: { address: options.vipAddress, port: options.port }, timeouts: { tcpS: null, tcpFinS: null }, onHostChange: () => {} });
    try {
      await plane.remove();
    } catch (error) {
      options.log('warn', `could not remove an IPVS service left behind: ${(error as Error).message}`);
    } finally {
      plane.close();
    }
  }
}
