// The IPVS planner: diff(desired VirtualService, observed kernel state) → the ordered IPVS
// operations that make the kernel hold exactly the desired service. Pure and deterministic
// (STYLE.md rule 3): no I/O, no clock; the data plane re-reads the kernel before every call
// (level-triggered) and runs the operations in order.
//
// What raftvip's service is: one IPVS virtual service `VIP:port` TCP with the configured
// scheduler, no persistence (flags 0, timeout 0), and one destination per configured real server,
// always forwarded by masquerade (NAT): the balancer rewrites the destination address, so real
// servers need no VIP on a loopback and no ARP tweaks, and the SNAT around it (ipvs-data-plane.ts)
// makes replies come back through the balancer.
//
// Invariants:
// - Planning the observed result of a plan yields no operation (convergence); equal state plans
//   nothing, so an idle reconcile changes nothing in the kernel.
// - Only raftvip's service is touched: the plan names that service in every operation.
// - A real server with weight 0 keeps its destination (drained, IPVS weight 0: no new
//   connections, existing ones continue); only servers gone from the configuration, and ones
//   added by hand, are deleted.
// - Order: the service (add, or edit when the scheduler or a flag differs), then added
//   destinations, then edited ones, then deletions. Adding before deleting keeps the service from
//   passing through a moment without any destination when every server is replaced.

import { formatEndpoint, realServerWeightMax, type RealServer, type Scheduler, type VirtualService, type ObservedService } from './data-plane.js';
import {
  serviceFlagHashed,
  type IpFamily,
  type IpvsAddressServiceKey,
  type IpvsDestination,
  type IpvsDestinationEntry,
  type IpvsDestinationKey,
  type IpvsService,
  type IpvsServiceEntry,
} from './ipvs-codec.js';
import { canonicalIpAddress } from '../vip/packet-layout.js';

/** What the kernel holds for raftvip's service: the service (null if absent) and its
 * destinations (empty if the service is absent). */
export interface IpvsObservedState {
  readonly service: IpvsServiceEntry | null;
  readonly destinations: readonly IpvsDestinationEntry[];
}

export type IpvsChange =
  | { readonly kind: 'add-service'; readonly service: IpvsService }
  | { readonly kind: 'edit-service'; readonly service: IpvsService; readonly reason: string }
  | { readonly kind: 'add-destination'; readonly service: IpvsAddressServiceKey; readonly destination: IpvsDestination }
  | { readonly kind: 'edit-destination'; readonly service: IpvsAddressServiceKey; readonly destination: IpvsDestination; readonly reason: string }
  | { readonly kind: 'delete-destination'; readonly service: IpvsAddressServiceKey; readonly destination: IpvsDestinationKey; readonly reason: string };

/** The IPVS scheduler module for each scheduler raftvip offers (ip_vs_<name>.ko). */
export function ipvsSchedulerName(scheduler: Scheduler): string {
  switch (scheduler) {
    case 'rr':
      return 'rr';
    case 'wrr':
      return 'wrr';
    case 'lc':
      return 'lc';
    case 'wlc':
      return 'wlc';
    case 'sh':
      return 'sh';
  }
}

/** The Scheduler a kernel scheduler name stands for, or null for one raftvip does not offer
 * ("mh", "sed", "none", ...). */
export function schedulerFromIpvs(name: string): Scheduler | null {
  switch (name) {
    case 'rr':
    case 'wrr':
    case 'lc':
    case 'wlc':
    case 'sh':
      return name;
    default:
      return null;
  }
}

export function familyOf(address: string): IpFamily {
  return address.includes(':') ? 'ipv6' : 'ipv4';
}

/** raftvip's service key: TCP on VIP:port. */
export function serviceKeyFor(service: { readonly address: string; readonly port: number }): IpvsAddressServiceKey {
  return { kind: 'address', family: familyOf(service.address), protocol: 'tcp', address: service.address, port: service.port };
}

/** The IPVS service raftvip wants: the scheduler, no persistence. The netmask is the kernel's
 * "no persistence" value per family (all ones for IPv4, prefix length 128 for IPv6), as ipvsadm
 * sends it; the kernel checks it even when persistence is off. */
export function desiredIpvsService(service: VirtualService): IpvsService {
  const key = serviceKeyFor(service);
  return {
    key,
    scheduler: ipvsSchedulerName(service.scheduler),
    flags: 0,
    timeoutSeconds: 0,
    netmask: key.family === 'ipv4' ? 0xffff_ffff : 128,
    persistenceEngine: null,
  };
}

export function desiredIpvsDestination(service: VirtualService, server: RealServer): IpvsDestination {
  return {
    family: familyOf(service.address),
    address: server.address,
    port: server.port,
    forwardingMethod: 'masquerade',
    weight: server.weight,
    upperThreshold: 0,
    lowerThreshold: 0,
  };
}

/** Problems that make `service` impossible to program, as sentences; empty when it is valid.
 * The configuration loader checks the same things; this guards the data plane on its own. */
export function checkVirtualService(service: VirtualService): string[] {
  const problems: string[] = [];
  const family = canonicalIpAddress(service.address) === service.address ? familyOf(service.address) : null;
  if (family === null) problems.push(`VIP ${JSON.stringify(service.address)} is not a canonical IP address`);
  if (!isPort(service.port)) problems.push(`port ${String(service.port)} is not in 1..65535`);
  if (schedulerFromIpvs(service.scheduler) === null) problems.push(`unknown scheduler ${JSON.stringify(service.scheduler)}`);
  const seen = new Set<string>();
  for (const server of service.realServers) {
    const name = formatEndpoint(server.address, server.port);
    if (canonicalIpAddress(server.address) !== server.address) problems.push(`real server ${JSON.stringify(server.address)} is not a canonical IP address`);
    else if (family !== null && familyOf(server.address) !== family) problems.push(`real server ${name} is not in the VIP's address family (masquerade cannot cross families)`);
    if (!isPort(server.port)) problems.push(`real server ${name}: port is not in 1..65535`);
    if (!Number.isInteger(server.weight) || server.weight < 0 || server.weight > realServerWeightMax) {
      problems.push(`real server ${name}: weight ${String(server.weight)} is not in 0..${realServerWeightMax}`);
    }
    if (seen.has(destinationName(server))) problems.push(`real server ${name} appears twice`);
    seen.add(destinationName(server));
  }
  return problems;
}

/** The operations that turn `observed` into `desired`. `desired` must pass
 * `checkVirtualService`; `observed` is whatever the kernel holds for raftvip's key. */
export function planIpvs(desired: VirtualService, observed: IpvsObservedState): IpvsChange[] {
  const service = desiredIpvsService(desired);
  const key = serviceKeyFor(desired);
  const changes: IpvsChange[] = [];

  if (observed.service === null) {
    changes.push({ kind: 'add-service', service });
  } else {
    const reason = serviceDifference(service, observed.service);
    if (reason !== null) changes.push({ kind: 'edit-service', service, reason });
  }

  // A service just added has no destinations, whatever `observed` says.
  const present = new Map<string, IpvsDestinationEntry>();
  if (observed.service !== null) for (const destination of observed.destinations) present.set(destinationName(destination), destination);

  const edits: IpvsChange[] = [];
  const wanted = new Set<string>();
  for (const server of desired.realServers) {
    const destination = desiredIpvsDestination(desired, server);
    const name = destinationName(destination);
    wanted.add(name);
    const current = present.get(name);
    if (current === undefined) {
      changes.push({ kind: 'add-destination', service: key, destination });
      continue;
    }
    const reason = destinationDifference(destination, current);
    if (reason !== null) edits.push({ kind: 'edit-destination', service: key, destination, reason });
  }
  changes.push(...edits);

  for (const [name, current] of present) {
    if (wanted.has(name)) continue;
    changes.push({
      kind: 'delete-destination',
      service: key,
      destination: { family: current.family, address: current.address, port: current.port },
      reason: 'not a configured real server',
    });
  }
  return changes;
}

/** The contract's view of the kernel state. */
export function observedServiceFrom(key: { readonly address: string; readonly port: number }, observed: IpvsObservedState): ObservedService | null {
  if (observed.service === null) return null;
  return {
    address: key.address,
    port: key.port,
    scheduler: schedulerFromIpvs(observed.service.scheduler),
    realServers: observed.destinations.map((destination) => ({
      address: destination.address,
      port: destination.port,
      weight: destination.weight,
      activeConnections: destination.activeConnections,
      inactiveConnections: destination.inactiveConnections,
    })),
  };
}

function serviceDifference(desired: IpvsService, observed: IpvsServiceEntry): string | null {
  const differences: string[] = [];
  if (observed.scheduler !== desired.scheduler) differences.push(`scheduler ${observed.scheduler} → ${desired.scheduler}`);
  // The kernel sets IP_VS_SVC_F_HASHED on every service it holds; it is state, not a setting.
  const flags = (observed.flags & ~serviceFlagHashed) >>> 0;
  if (flags !== desired.flags) differences.push(`flags 0x${flags.toString(16)} → 0x${desired.flags.toString(16)}`);
  if (observed.timeoutSeconds !== desired.timeoutSeconds) differences.push(`persistence timeout ${observed.timeoutSeconds} s → ${desired.timeoutSeconds} s`);
  if (observed.netmask !== desired.netmask) differences.push(`netmask 0x${observed.netmask.toString(16)} → 0x${desired.netmask.toString(16)}`);
  if (observed.persistenceEngine !== desired.persistenceEngine) differences.push(`persistence engine ${String(observed.persistenceEngine)} → ${String(desired.persistenceEngine)}`);
  return differences.length === 0 ? null : differences.join(', ');
}

function destinationDifference(desired: IpvsDestination, observed: IpvsDestinationEntry): string | null {
  const differences: string[] = [];
  if (observed.forwardingMethod !== desired.forwardingMethod) differences.push(`forwarding ${observed.forwardingMethod} → ${desired.forwardingMethod}`);
  if (observed.weight !== desired.weight) differences.push(`weight ${observed.weight} → ${desired.weight}`);
  if (observed.upperThreshold !== desired.upperThreshold || observed.lowerThreshold !== desired.lowerThreshold) {
    differences.push(`thresholds ${observed.lowerThreshold}/${observed.upperThreshold} → ${desired.lowerThreshold}/${desired.upperThreshold}`);
  }
  return differences.length === 0 ? null : differences.join(', ');
}

function destinationName(destination: { readonly address: string; readonly port: number }): string {
  return formatEndpoint(destination.address, destination.port);
}

function isPort(port: unknown): boolean {
  return typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65_535;
}
