// The `loadBalancer` section of the peer file: which port of the VIP is balanced, over which
// backends (every peer's host by default), by which kernel data plane and scheduler, and how the
// backends' health is checked. Walked through YamlReader like the rest of the schema, so every
// problem carries its file:line:col; the certificate files named under healthCheck are read and
// checked in load-config.ts (readHealthCheckFiles), like cluster.auth's.
//
// The section may be left out: the load balancer is then on, on port 6443, over every peer, with
// the defaults below. `enabled: false` turns it off (and the daemon removes what an earlier run
// programmed).

import type { Node } from 'yaml';
import { dataPlaneKinds, realServerWeightMax, schedulers, type DataPlaneKind, type Scheduler } from '../lb/data-plane.js';
import { nftablesSupports } from '../lb/nftables-ruleset.js';
import { healthCheckPathBytesMax, healthCheckTypes, type HealthCheckType } from '../lb/health-checker.js';
import { parseHostPort, parseIpLiteral, portMax, portMin, type IpFamily } from './host-port.js';
import { indexPath, type Located, type MapView, type YamlReader } from './yaml-reader.js';

// ---- Limits and defaults -------------------------------------------------------------------

/** kube-apiserver's secure port. */
export const loadBalancerPortDefault = 6443;
export const backendsMax = 32;
export const dataPlaneChoices = ['auto', ...dataPlaneKinds] as const;
export type DataPlaneChoice = (typeof dataPlaneChoices)[number];
/** kube-apiserver fails /readyz as soon as it begins shutting down, while it still serves. */
export const healthCheckPathDefault = '/readyz';
export const healthCheckIntervalMsDefault = 500;
export const healthCheckIntervalMsMin = 100;
export const healthCheckIntervalMsMax = 60_000;
export const healthCheckTimeoutMsDefault = 1000;
export const healthCheckTimeoutMsMin = 100;
export const healthCheckTimeoutMsMax = 60_000;
export const healthCheckRiseFallDefault = 2;
export const healthCheckRiseFallMax = 10;
/** How often the data plane is re-read from the kernel and converged. */
export const lbReconcileIntervalMsDefault = 1000;
export const lbReconcileIntervalMsMin = 100;
export const lbReconcileIntervalMsMax = 60_000;
/** IPVS connection timeouts (seconds), when given; absent keeps the kernel's (900 s, 120 s). */
export const ipvsTimeoutSMin = 1;
export const ipvsTimeoutSMax = 86_400 * 7;

// ---- The result ----------------------------------------------------------------------------

export interface ConfigBackend {
  /** Canonical IP literal, no brackets. */
  readonly address: string;
  readonly port: number;
  readonly weight: number;
}

export interface ConfigHealthCheck {
  readonly type: HealthCheckType;
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  /** Absolute paths, or null; their contents are in `tls`. */
  readonly caFile: string | null;
  readonly certFile: string | null;
  readonly keyFile: string | null;
  readonly insecureSkipVerify: boolean;
  readonly tls: { readonly ca: Buffer | null; readonly cert: Buffer | null; readonly key: Buffer | null };
  /** caFile is named but did not exist at load time (kubeadm creates it during `kubeadm init`,
   * after raftvip starts): the health checker reads it once it appears, and until then no
   * backend passes its check. */
  readonly caPending: boolean;
}

export interface ConfigLoadBalancer {
  readonly enabled: boolean;
  readonly port: number;
  readonly dataPlane: DataPlaneChoice;
  readonly scheduler: Scheduler;
  /** The explicit list, or every peer's host of the VIP's family at `port` with weight 1. */
  readonly backends: readonly ConfigBackend[];
  /** True when `backends` came from the peer list. */
  readonly backendsFromPeers: boolean;
  readonly reconcileIntervalMs: number;
  readonly tcpTimeoutS: number | null;
  readonly tcpFinTimeoutS: number | null;
  readonly healthCheck: ConfigHealthCheck;
}

/** The section as the schema pass leaves it: file paths not yet resolved or read. */
export interface DraftLoadBalancer extends Omit<ConfigLoadBalancer, 'healthCheck'> {
  readonly healthCheck: Omit<ConfigHealthCheck, 'caFile' | 'certFile' | 'keyFile' | 'tls' | 'caPending'> & {
    readonly caFile: Located<string> | null;
    readonly certFile: Located<string> | null;
    readonly keyFile: Located<string> | null;
  };
}

const loadBalancerSpec = {
  keys: ['enabled', 'port', 'dataPlane', 'scheduler', 'backends', 'reconcileIntervalMs', 'tcpTimeoutS', 'tcpFinTimeoutS', 'healthCheck'],
} as const;
const backendSpec = { keys: ['address', 'weight'] } as const;
const healthCheckSpec = {
  keys: ['type', 'path', 'intervalMs', 'timeoutMs', 'rise', 'fall', 'caFile', 'certFile', 'keyFile', 'insecureSkipVerify'],
} as const;

/** Reads `loadBalancer`; undefined when it is invalid (every problem reported). `peers` are the
 * peer hosts when the peer list is valid, `vipFamily` the VIP's family when it is valid. */
export function readLoadBalancer(
  reader: YamlReader,
  top: MapView,
  context: { peerHosts: readonly string[] | undefined; vipFamily: IpFamily | undefined },
): DraftLoadBalancer | undefined {
  const section = top.has('loadBalancer') ? top.map('loadBalancer', loadBalancerSpec) : null;
  if (section === undefined) return undefined;
  let valid = true;
  const fail = <T>(value: T | undefined): T | undefined => {
    if (value === undefined) valid = false;
    return value;
  };

  const enabled = section === null || !section.has('enabled') ? true : fail(section.boolean('enabled')?.value);
  const port = section === null ? loadBalancerPortDefault : fail(readRanged(reader, section, 'port', { fallback: loadBalancerPortDefault, min: portMin, max: portMax }));
  const dataPlane = section === null ? 'auto' : fail(readChoice(reader, section, 'dataPlane', dataPlaneChoices, 'auto'));
  const scheduler = section === null ? 'rr' : fail(readChoice(reader, section, 'scheduler', schedulers, 'rr'));
  const reconcileIntervalMs =
    section === null
      ? lbReconcileIntervalMsDefault
      : fail(readRanged(reader, section, 'reconcileIntervalMs', { fallback: lbReconcileIntervalMsDefault, min: lbReconcileIntervalMsMin, max: lbReconcileIntervalMsMax }));
  const tcpTimeoutS = section === null || !section.has('tcpTimeoutS') ? null : fail(readRanged(reader, section, 'tcpTimeoutS', { fallback: 0, min: ipvsTimeoutSMin, max: ipvsTimeoutSMax }));
  const tcpFinTimeoutS =
    section === null || !section.has('tcpFinTimeoutS') ? null : fail(readRanged(reader, section, 'tcpFinTimeoutS', { fallback: 0, min: ipvsTimeoutSMin, max: ipvsTimeoutSMax }));

  if (section !== null && dataPlane === 'nftables' && scheduler !== undefined && !nftablesSupports(scheduler)) {
    reader.report({
      at: section.positionOf('scheduler'),
      path: section.keyPath('scheduler'),
      message: `${scheduler} needs IPVS's connection counts; with dataPlane nftables use rr, wrr or sh`,
    });
    valid = false;
  }

  const healthCheck = readHealthCheck(reader, section);
  if (healthCheck === undefined) valid = false;

  let backends: ConfigBackend[] | undefined;
  let backendsFromPeers = false;
  if (section !== null && section.has('backends')) {
    backends = readBackends(reader, section, { port: port ?? loadBalancerPortDefault, vipFamily: context.vipFamily });
    if (backends === undefined) valid = false;
  } else if (context.peerHosts !== undefined && port !== undefined) {
    // Every peer of the VIP's family: the kernel forwards within one family, so a peer known
    // only by an address of the other family cannot be a backend of this VIP.
    backendsFromPeers = true;
    backends = context.peerHosts
      .filter((host) => context.vipFamily === undefined || familyOf(host) === context.vipFamily)
      .map((host) => ({ address: host, port, weight: 1 }));
    if (enabled === true && backends.length === 0) {
      reader.report({
        at: section?.node ?? top.positionOf('vip'),
        path: 'loadBalancer.backends',
        message: `the backends default to the peers' hosts of the VIP's family, but no peer has an IPv${context.vipFamily ?? '?'} address; list loadBalancer.backends explicitly`,
      });
      valid = false;
    }
  }

  if (
    !valid ||
    enabled === undefined ||
    port === undefined ||
    dataPlane === undefined ||
    scheduler === undefined ||
    reconcileIntervalMs === undefined ||
    tcpTimeoutS === undefined ||
    tcpFinTimeoutS === undefined ||
    healthCheck === undefined ||
    backends === undefined
  ) {
    return undefined;
  }
  return { enabled, port, dataPlane, scheduler, backends, backendsFromPeers, reconcileIntervalMs, tcpTimeoutS, tcpFinTimeoutS, healthCheck };
}

function readHealthCheck(reader: YamlReader, section: MapView | null): DraftLoadBalancer['healthCheck'] | undefined {
  const defaults: DraftLoadBalancer['healthCheck'] = {
    type: 'https',
    path: healthCheckPathDefault,
    intervalMs: healthCheckIntervalMsDefault,
    timeoutMs: healthCheckTimeoutMsDefault,
    rise: healthCheckRiseFallDefault,
    fall: healthCheckRiseFallDefault,
    caFile: null,
    certFile: null,
    keyFile: null,
    insecureSkipVerify: false,
  };
  if (section === null || !section.has('healthCheck')) return defaults;
  const map = section.map('healthCheck', healthCheckSpec);
  if (map === undefined) return undefined;
  let valid = true;
  const fail = <T>(value: T | undefined): T | undefined => {
    if (value === undefined) valid = false;
    return value;
  };
  const type = fail(readChoice(reader, map, 'type', healthCheckTypes, 'https'));
  let path: string | undefined = healthCheckPathDefault;
  if (map.has('path')) {
    const located = map.string('path');
    path = located?.value;
    if (located !== undefined && (!located.value.startsWith('/') || Buffer.byteLength(located.value) > healthCheckPathBytesMax || /[\s\0]/.test(located.value))) {
      reader.report({
        at: located.node,
        path: map.keyPath('path'),
        message: `must be an absolute URL path without spaces, at most ${healthCheckPathBytesMax} bytes, e.g. /readyz`,
      });
      path = undefined;
    }
    fail(path);
  }
  const intervalMs = fail(readRanged(reader, map, 'intervalMs', { fallback: healthCheckIntervalMsDefault, min: healthCheckIntervalMsMin, max: healthCheckIntervalMsMax }));
  const timeoutMs = fail(readRanged(reader, map, 'timeoutMs', { fallback: healthCheckTimeoutMsDefault, min: healthCheckTimeoutMsMin, max: healthCheckTimeoutMsMax }));
  const rise = fail(readRanged(reader, map, 'rise', { fallback: healthCheckRiseFallDefault, min: 1, max: healthCheckRiseFallMax }));
  const fall = fail(readRanged(reader, map, 'fall', { fallback: healthCheckRiseFallDefault, min: 1, max: healthCheckRiseFallMax }));
  const file = (key: string): Located<string> | null | undefined => {
    if (!map.has(key)) return null;
    const located = map.string(key);
    if (located === undefined) return undefined;
    if (located.value.trim() === '' || located.value.includes('\0')) {
      reader.report({ at: located.node, path: map.keyPath(key), message: 'must be a file path' });
      return undefined;
    }
    return located;
  };
  const caFile = fail(file('caFile'));
  const certFile = fail(file('certFile'));
  const keyFile = fail(file('keyFile'));
  const insecureSkipVerify = map.has('insecureSkipVerify') ? fail(map.boolean('insecureSkipVerify')?.value) : false;

  if (type === 'tcp') {
    const httpsOnly = ['path', 'caFile', 'certFile', 'keyFile', 'insecureSkipVerify'].filter((key) => map.has(key));
    for (const key of httpsOnly) {
      reader.report({ at: map.positionOf(key), path: map.keyPath(key), message: 'applies to type https only; remove it, or set type: https' });
      valid = false;
    }
  }
  if ((certFile === null) !== (keyFile === null) && certFile !== undefined && keyFile !== undefined) {
    const given = certFile !== null ? 'certFile' : 'keyFile';
    const missing = certFile !== null ? 'keyFile' : 'certFile';
    reader.report({ at: map.positionOf(given), path: map.keyPath(missing), message: `a client certificate needs both certFile and keyFile; ${missing} is missing` });
    valid = false;
  }
  if (insecureSkipVerify === true && caFile !== null && caFile !== undefined) {
    reader.report({
      at: map.positionOf('insecureSkipVerify'),
      path: map.keyPath('insecureSkipVerify'),
      message: 'give caFile (verify the apiserver against it) or insecureSkipVerify: true (do not verify), not both',
    });
    valid = false;
  }
  if (
    !valid ||
    type === undefined ||
    path === undefined ||
    intervalMs === undefined ||
    timeoutMs === undefined ||
    rise === undefined ||
    fall === undefined ||
    caFile === undefined ||
    certFile === undefined ||
    keyFile === undefined ||
    insecureSkipVerify === undefined
  ) {
    return undefined;
  }
  return { type, path, intervalMs, timeoutMs, rise, fall, caFile, certFile, keyFile, insecureSkipVerify };
}

/** `backends`: each item "host:port", "host" (at loadBalancer.port) or { address, weight }. */
function readBackends(reader: YamlReader, section: MapView, context: { port: number; vipFamily: IpFamily | undefined }): ConfigBackend[] | undefined {
  const list = section.list('backends');
  if (list === undefined) return undefined;
  const path = section.keyPath('backends');
  if (list.value.length === 0 || list.value.length > backendsMax) {
    reader.report({ at: list.node, path, message: `must list 1 to ${backendsMax} backends, got ${list.value.length}` });
    return undefined;
  }
  const backends: ConfigBackend[] = [];
  const seen = new Map<string, string>();
  let valid = true;
  list.value.forEach((item, index) => {
    const itemPath = indexPath(path, index);
    const resolved = reader.resolve(item);
    let addressText: Located<string> | undefined;
    let weight = 1;
    if (resolved !== null && 'items' in resolved) {
      const map = reader.map(item, itemPath, backendSpec);
      if (map === null) {
        valid = false;
        return;
      }
      addressText = map.string('address', { required: true, hint: 'give host:port or host, e.g. 10.0.0.11:6443' });
      if (map.has('weight')) {
        const located = readRanged(reader, map, 'weight', { fallback: 1, min: 1, max: realServerWeightMax });
        if (located === undefined) valid = false;
        else weight = located;
      }
    } else {
      const scalar = resolved as { value?: unknown } | null;
      if (scalar === null || typeof scalar.value !== 'string') {
        reader.report({ at: item, path: itemPath, message: 'must be "host:port", "host", or { address, weight }' });
        valid = false;
        return;
      }
      addressText = { value: scalar.value, node: item as Node };
    }
    if (addressText === undefined) {
      valid = false;
      return;
    }
    const parsed = parseBackendAddress(addressText.value, context.port);
    if (!parsed.ok) {
      reader.report({ at: addressText.node, path: itemPath, message: parsed.message });
      valid = false;
      return;
    }
    const { address, port } = parsed;
    if (context.vipFamily !== undefined && familyOf(address) !== context.vipFamily) {
      reader.report({ at: addressText.node, path: itemPath, message: `${address} is not IPv${context.vipFamily} like the VIP; the kernel forwards within one family` });
      valid = false;
      return;
    }
    const key = `${address} ${port}`;
    const first = seen.get(key);
    if (first !== undefined) {
      reader.report({ at: addressText.node, path: itemPath, message: `duplicate backend ${addressText.value} (also at ${first})` });
      valid = false;
      return;
    }
    seen.set(key, itemPath);
    backends.push({ address, port, weight });
  });
  return valid ? backends : undefined;
}

function parseBackendAddress(text: string, defaultPort: number): { ok: true; address: string; port: number } | { ok: false; message: string } {
  const literal = parseIpLiteral(text);
  if (literal.ok) return { ok: true, address: literal.value.host, port: defaultPort };
  const hostPort = parseHostPort(text);
  if (hostPort.ok) return { ok: true, address: hostPort.value.host, port: hostPort.value.port };
  return { ok: false, message: `${hostPort.message} (a backend is "host:port", or "host" for port ${defaultPort}; hosts are IP addresses)` };
}

function familyOf(address: string): IpFamily {
  return address.includes(':') ? 6 : 4;
}

function readRanged(reader: YamlReader, map: MapView, key: string, options: { fallback: number; min: number; max: number }): number | undefined {
  if (!map.has(key)) return options.fallback;
  const located = map.integer(key);
  if (located === undefined) return undefined;
  if (located.value < options.min || located.value > options.max) {
    reader.report({ at: located.node, path: map.keyPath(key), message: `must be from ${options.min} to ${options.max}, got ${located.value}` });
    return undefined;
  }
  return located.value;
}

function readChoice<const T extends readonly string[]>(reader: YamlReader, map: MapView, key: string, choices: T, fallback: T[number]): T[number] | undefined {
  if (!map.has(key)) return fallback;
  const located = map.string(key);
  if (located === undefined) return undefined;
  const known = choices.find((choice) => choice === located.value);
  if (known === undefined) {
    reader.report({ at: located.node, path: map.keyPath(key), message: `must be one of ${choices.join(', ')}, got "${located.value}"` });
    return undefined;
  }
  return known;
}

export type { DataPlaneKind };
