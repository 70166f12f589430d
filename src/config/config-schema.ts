// The peer file's schema: which keys exist, their types, limits and defaults, and the checks
// that span keys (unique peers, node.id among the peers, VIP not a peer's address, timing that
// leaves the leader a lease). It walks the YAML document through YamlReader, so every problem is
// reported with its position and none stops the others from being found.
//
// This module is pure: it reads no files. The checks that need the file system (the key and
// certificate files) and the host (which peer is local) are in load-config.ts, on the draft
// this module produces.

import { isAbsolute, normalize } from 'node:path';
import type { Node } from 'yaml';
import { leaseTicksFor } from '../raft/raft.js';
import { timingMsDefault, timingToTicks, type TimingMs } from '../raft/timing.js';
import type { NodeId } from '../raft/types.js';
import {
  isLoopback,
  isMulticastOrBroadcast,
  isUnspecified,
  parseHostPort,
  parseIpLiteral,
  type HostPort,
  type IpFamily,
} from './host-port.js';
import { garpBurstCount, garpBurstIntervalMs, garpRefreshIntervalMs } from '../vip/vip-planner.js';
import { indexPath, type Located, type MapView, type YamlReader } from './yaml-reader.js';
import { readLoadBalancer, type ConfigLoadBalancer, type DraftLoadBalancer } from './load-balancer-schema.js';

// ---- Limits and defaults -------------------------------------------------------------------

/** Where `raftvip run` and `raftvip config check` look when given no file. */
export const configFileDefault = '/etc/raftvip/raftvip.yaml';
/** Voting members; the Raft core allows the same (votersMax in src/raft/raft.ts). */
export const peersMax = 7;
/** Peer ids and the cluster name: a DNS label, so they read well in logs, metrics and paths. */
export const peerIdPattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const heartbeatIntervalMsMin = 10;
export const heartbeatIntervalMsMax = 1000;
/** electionTimeoutMs must be at least this many heartbeat intervals: followers must not time out
 * over one or two delayed heartbeats. */
export const electionTimeoutHeartbeatsMin = 4;
export const electionTimeoutMsMin = electionTimeoutHeartbeatsMin * heartbeatIntervalMsMin;
export const electionTimeoutMsMax = 10_000;
/** The leader lease must outlast this many heartbeat intervals, so one lost heartbeat round
 * does not drop the VIP. */
export const leaseHeartbeatsMin = 2;
export const dataDirDefault = '/var/lib/raftvip';
export const adminListenDefault = '127.0.0.1:7481';
export const logLevels = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof logLevels)[number];
export const logLevelDefault: LogLevel = 'info';
/** Linux IFNAMSIZ (16) less the terminating NUL. */
export const interfaceNameBytesMax = 15;
/** VIP announcements (gratuitous ARP / unsolicited NA) per claim: defaults in vip-planner.ts. */
export const announceCountMin = 1;
export const announceCountMax = 10;
export const announceIntervalMsMin = 10;
export const announceIntervalMsMax = 5000;
/** 0 turns the periodic refresh off. */
export const refreshIntervalMsMin = 1000;
export const refreshIntervalMsMax = 3_600_000;
/** How often the VIP is re-read from the kernel and converged (a VIP deleted by hand comes back). */
export const reconcileIntervalMsDefault = 1000;
export const reconcileIntervalMsMin = 100;
export const reconcileIntervalMsMax = 60_000;

// ---- The result ----------------------------------------------------------------------------

export interface ConfigPeer {
  readonly id: NodeId;
  /** Canonical IP literal, no brackets. */
  readonly host: string;
  readonly port: number;
  /** `host:port`, with brackets for IPv6. */
  readonly address: string;
  readonly family: IpFamily;
}

export type ConfigAuth =
  | { readonly kind: 'psk'; readonly pskFile: string; readonly psk: Buffer }
  | { readonly kind: 'tls'; readonly caFile: string; readonly certFile: string; readonly keyFile: string }
  | { readonly kind: 'insecure' };

/** The validated peer file with defaults applied. Deeply frozen (but for the psk Buffer's bytes,
 * which JavaScript cannot freeze). File paths are absolute. */
export interface Config {
  /** Absolute path of the peer file. */
  readonly file: string;
  readonly cluster: {
    readonly name: string;
    readonly peers: readonly ConfigPeer[];
    readonly auth: ConfigAuth;
  };
  readonly node: {
    /** This host's peer id. */
    readonly id: NodeId;
    readonly dataDir: string;
  };
  readonly vip: {
    readonly address: string;
    readonly family: IpFamily;
    /** null: the one interface with an address whose subnet contains the VIP (vip-executor.ts). */
    readonly interface: string | null;
    /** false: a dry run; raftvip elects and reports who would hold the VIP, touching no address. */
    readonly enabled: boolean;
    /** Announcements per claim, the first one at once. */
    readonly announceCount: number;
    readonly announceIntervalMs: number;
    /** 0: no periodic refresh. */
    readonly refreshIntervalMs: number;
    readonly reconcileIntervalMs: number;
  };
  /** The L4 front end for VIP:port (load-balancer-schema.ts). */
  readonly loadBalancer: ConfigLoadBalancer;
  /** Usable as TimingMs (src/raft/timing.ts); tickMs and clockDriftBound are fixed, not read. */
  readonly raft: TimingMs;
  readonly admin: { readonly host: string; readonly port: number };
  readonly log: { readonly level: LogLevel };
}

/** What the schema pass found: each field is undefined when it was invalid (and reported). */
export interface ConfigDraft {
  readonly clusterName: string | undefined;
  /** undefined unless every peer is valid and the list is unique. */
  readonly peers: readonly DraftPeer[] | undefined;
  /** Where errors about the peer list as a whole are reported. */
  readonly peersNode: Node;
  readonly auth: DraftAuth | undefined;
  /** node.id: `absent` (to be resolved), a valid id, or `invalid` (reported). */
  readonly nodeId: Located<string> | 'absent' | 'invalid';
  readonly dataDir: string | undefined;
  readonly vip: Config['vip'] | undefined;
  readonly loadBalancer: DraftLoadBalancer | undefined;
  readonly raft: TimingMs | undefined;
  readonly admin: Config['admin'] | undefined;
  readonly logLevel: LogLevel | undefined;
}

export interface DraftPeer {
  readonly id: string;
  readonly hostPort: HostPort;
  readonly idNode: Node;
  readonly addressNode: Node;
}

/** File paths as written (relative to the peer file's directory, or absolute). */
export type DraftAuth =
  | { readonly kind: 'psk'; readonly pskFile: Located<string> }
  | {
      readonly kind: 'tls';
      readonly caFile: Located<string>;
      readonly certFile: Located<string>;
      readonly keyFile: Located<string>;
    }
  | { readonly kind: 'insecure' };

// ---- Key tables ----------------------------------------------------------------------------

const rootSpec = { keys: ['cluster', 'node', 'vip', 'loadBalancer', 'raft', 'admin', 'log'] } as const;
const clusterSpec = { keys: ['name', 'peers', 'auth'] } as const;
const peerSpec = { keys: ['id', 'address'] } as const;
const authSpec = { keys: ['pskFile', 'tls', 'insecure'] } as const;
const tlsSpec = { keys: ['caFile', 'certFile', 'keyFile'] } as const;
const nodeSpec = { keys: ['id', 'dataDir'] } as const;
const vipSpec = {
  keys: ['address', 'interface', 'enabled', 'announceCount', 'announceIntervalMs', 'refreshIntervalMs', 'reconcileIntervalMs'],
} as const;
const raftSpec = {
  keys: ['heartbeatIntervalMs', 'electionTimeoutMs'],
  hints: {
    tickMs: `tickMs is fixed at ${timingMsDefault.tickMs} ms and cannot be configured`,
    clockDriftBound: 'clockDriftBound is fixed and cannot be configured',
  },
} as const;
const adminSpec = { keys: ['listen'] } as const;
const logSpec = { keys: ['level'] } as const;

const authChoiceHint = 'set pskFile (a pre-shared key file) or tls (caFile, certFile, keyFile); insecure: true runs without authentication';
const labelRule = "lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit";

// ---- The walk ------------------------------------------------------------------------------

/** Validates the document's root node. Problems go to `reader.issues`. */
export function readConfigDocument(reader: YamlReader, root: Node): ConfigDraft {
  const top = reader.map(root, '', rootSpec) ?? undefined;
  const cluster = top?.map('cluster', clusterSpec, { required: true, hint: 'give name, peers and auth' });
  const clusterName = cluster === undefined ? undefined : readLabel(reader, cluster, 'name', { required: true })?.value;
  const peersNode = cluster?.positionOf('peers') ?? top?.node ?? root;
  const peerList = cluster === undefined ? undefined : readPeers(reader, cluster);
  const peers = peerList?.peers;
  const auth = cluster === undefined ? undefined : readAuth(reader, cluster);

  const node = top?.map('node', nodeSpec);
  let nodeId: ConfigDraft['nodeId'] = 'absent';
  let dataDir: string | undefined = top === undefined ? undefined : dataDirDefault;
  if (node !== undefined) {
    if (node.has('id')) nodeId = readLabel(reader, node, 'id', { required: false }) ?? 'invalid';
    if (node.has('dataDir')) dataDir = readDataDir(reader, node);
  } else if (top?.has('node') === true) {
    nodeId = 'invalid';
    dataDir = undefined;
  }
  if (typeof nodeId === 'object' && peers !== undefined) {
    const id = nodeId.value;
    if (!peers.some((peer) => peer.id === id)) {
      reader.report({
        at: nodeId.node,
        path: 'node.id',
        message: `"${id}" is not the id of any peer (peers: ${peers.map((peer) => peer.id).join(', ')})`,
      });
      nodeId = 'invalid';
    }
  }

  const vip = top === undefined ? undefined : readVip(reader, top, peerList?.hosts ?? []);
  const loadBalancer =
    top === undefined ? undefined : readLoadBalancer(reader, top, { peerHosts: peers?.map((peer) => peer.hostPort.host), vipFamily: vip?.family });
  const raft = top === undefined ? undefined : readRaft(reader, top);
  const admin = top === undefined ? undefined : readAdmin(reader, top);
  const logLevel = top === undefined ? undefined : readLogLevel(reader, top);
  return { clusterName, peers, peersNode, auth, nodeId, dataDir, vip, loadBalancer, raft, admin, logLevel };
}

function readLabel(reader: YamlReader, map: MapView, key: string, options: { required: boolean }): Located<string> | undefined {
  const located = map.string(key, { required: options.required });
  if (located === undefined) return undefined;
  if (!peerIdPattern.test(located.value)) {
    reader.report({ at: located.node, path: map.keyPath(key), message: `"${located.value}" is not a valid name: ${labelRule}` });
    return undefined;
  }
  return located;
}

/** `peers` is undefined unless the whole list is valid; `hosts` holds every peer address that
 * parsed, so the VIP can be checked against them even while other peers are broken. */
function readPeers(
  reader: YamlReader,
  cluster: MapView,
): { peers: DraftPeer[] | undefined; hosts: { id: string | undefined; host: string }[] } | undefined {
  const list = cluster.list('peers', { required: true, hint: `give 1 to ${peersMax} entries of { id, address }` });
  if (list === undefined) return undefined;
  const hosts: { id: string | undefined; host: string }[] = [];
  const path = cluster.keyPath('peers');
  let valid = true;
  if (list.value.length === 0 || list.value.length > peersMax) {
    reader.report({
      at: list.node,
      path,
      message: `must list 1 to ${peersMax} peers, got ${list.value.length}`,
    });
    valid = false;
  }
  const peers: DraftPeer[] = [];
  const ids = new Map<string, string>();
  const addresses = new Map<string, string>();
  list.value.forEach((item, index) => {
    const itemPath = indexPath(path, index);
    const peer = reader.map(item ?? list.node, itemPath, peerSpec);
    if (peer === null) {
      valid = false;
      return;
    }
    const id = peer.string('id', { required: true });
    const address = peer.string('address', { required: true, hint: 'give host:port, e.g. 10.0.0.11:7480' });
    let peerValid = true;
    if (id !== undefined) {
      if (!peerIdPattern.test(id.value)) {
        reader.report({ at: id.node, path: peer.keyPath('id'), message: `"${id.value}" is not a valid peer id: ${labelRule}` });
        peerValid = false;
      } else {
        const first = ids.get(id.value);
        if (first !== undefined) {
          reader.report({ at: id.node, path: peer.keyPath('id'), message: `duplicate peer id "${id.value}" (also at ${first})` });
          peerValid = false;
        } else {
          ids.set(id.value, peer.keyPath('id'));
        }
      }
    } else {
      peerValid = false;
    }
    let hostPort: HostPort | undefined;
    if (address !== undefined) {
      const parsed = parseHostPort(address.value);
      if (!parsed.ok) {
        reader.report({ at: address.node, path: peer.keyPath('address'), message: parsed.message });
        peerValid = false;
      } else {
        hosts.push({ id: id?.value, host: parsed.value.host });
        const first = addresses.get(parsed.value.address);
        if (first !== undefined) {
          reader.report({
            at: address.node,
            path: peer.keyPath('address'),
            message: `duplicate peer address ${parsed.value.address} (also at ${first})`,
          });
          peerValid = false;
        } else {
          addresses.set(parsed.value.address, peer.keyPath('address'));
          hostPort = parsed.value;
        }
      }
    } else {
      peerValid = false;
    }
    if (!peerValid || id === undefined || address === undefined || hostPort === undefined) {
      valid = false;
      return;
    }
    peers.push({ id: id.value, hostPort, idNode: id.node, addressNode: address.node });
  });
  return { peers: valid ? peers : undefined, hosts };
}

function readAuth(reader: YamlReader, cluster: MapView): DraftAuth | undefined {
  const auth = cluster.map('auth', authSpec, { required: true, hint: authChoiceHint });
  if (auth === undefined) return undefined;
  const pskFile = auth.has('pskFile') ? readFilePath(reader, auth, 'pskFile') : undefined;
  let tls: DraftAuth | undefined;
  let tlsValid = true;
  if (auth.has('tls')) {
    const map = auth.map('tls', tlsSpec);
    const hint = 'give the path of a PEM file';
    const caFile = map === undefined ? undefined : readFilePath(reader, map, 'caFile', { required: true, hint });
    const certFile = map === undefined ? undefined : readFilePath(reader, map, 'certFile', { required: true, hint });
    const keyFile = map === undefined ? undefined : readFilePath(reader, map, 'keyFile', { required: true, hint });
    if (caFile !== undefined && certFile !== undefined && keyFile !== undefined) {
      tls = { kind: 'tls', caFile, certFile, keyFile };
    } else {
      tlsValid = false;
    }
  }
  const insecure = auth.has('insecure') ? auth.boolean('insecure') : undefined;
  const insecureValid = !auth.has('insecure') || insecure !== undefined;

  const chosen = [
    auth.has('pskFile') ? 'pskFile' : null,
    auth.has('tls') ? 'tls' : null,
    insecure?.value === true ? 'insecure: true' : null,
  ].filter((name): name is string => name !== null);
  if (chosen.length > 1) {
    reader.report({
      at: auth.node,
      path: auth.path,
      message: `give exactly one of pskFile, tls or insecure: true; found ${chosen.join(' and ')}`,
    });
    return undefined;
  }
  if (chosen.length === 0) {
    if (insecure?.value === false) {
      reader.report({
        at: insecure.node,
        path: auth.keyPath('insecure'),
        message: `insecure: false configures no authentication; ${authChoiceHint}`,
      });
    } else if (insecureValid) {
      reader.report({ at: auth.node, path: auth.path, message: `no authentication configured; ${authChoiceHint}` });
    }
    return undefined;
  }
  if (!insecureValid) return undefined;
  if (pskFile !== undefined) return { kind: 'psk', pskFile };
  if (tls !== undefined && tlsValid) return tls;
  if (insecure?.value === true) return { kind: 'insecure' };
  return undefined;
}

function readFilePath(
  reader: YamlReader,
  map: MapView,
  key: string,
  options: { required?: boolean; hint?: string } = {},
): Located<string> | undefined {
  const located = map.string(key, options);
  if (located === undefined) return undefined;
  if (located.value.trim() === '' || located.value.includes('\0')) {
    reader.report({ at: located.node, path: map.keyPath(key), message: 'must be a file path' });
    return undefined;
  }
  return located;
}

function readDataDir(reader: YamlReader, node: MapView): string | undefined {
  const located = node.string('dataDir');
  if (located === undefined) return undefined;
  if (!isAbsolute(located.value) || located.value.includes('\0')) {
    reader.report({
      at: located.node,
      path: node.keyPath('dataDir'),
      message: `must be an absolute path, e.g. ${dataDirDefault}, got "${located.value}"`,
    });
    return undefined;
  }
  const normalized = normalize(located.value);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

function readVip(
  reader: YamlReader,
  top: MapView,
  peerHosts: readonly { id: string | undefined; host: string }[],
): Config['vip'] | undefined {
  const vip = top.map('vip', vipSpec, { required: true, hint: 'give address, the virtual IP, e.g. address: 10.0.0.100' });
  if (vip === undefined) return undefined;
  let valid = true;
  let address: Config['vip']['address'] | undefined;
  let family: IpFamily | undefined;
  const located = vip.string('address', { required: true, hint: 'give an IPv4 or IPv6 address, e.g. 10.0.0.100' });
  if (located !== undefined) {
    const parsed = parseIpLiteral(located.value);
    const path = vip.keyPath('address');
    if (!parsed.ok) {
      reader.report({ at: located.node, path, message: parsed.message });
    } else if (isUnspecified(parsed.value) || isMulticastOrBroadcast(parsed.value)) {
      reader.report({
        at: located.node,
        path,
        message: `${parsed.value.host} cannot be a virtual IP: it is an unspecified, multicast or broadcast address`,
      });
    } else {
      const owner = peerHosts.find((peer) => peer.host === parsed.value.host);
      if (owner !== undefined) {
        const peerName = owner.id === undefined ? 'a peer' : `peer ${owner.id}`;
        reader.report({
          at: located.node,
          path,
          message: `${parsed.value.host} is the address of ${peerName}; the VIP must be an address that no host owns`,
        });
      } else {
        address = parsed.value.host;
        family = parsed.value.family;
      }
    }
  }
  if (address === undefined) valid = false;

  let interfaceName: string | null = null;
  if (vip.has('interface')) {
    const name = vip.string('interface');
    if (name === undefined) {
      valid = false;
    } else if (!isValidInterfaceName(name.value)) {
      reader.report({
        at: name.node,
        path: vip.keyPath('interface'),
        message: `"${name.value}" is not a network interface name (1 to ${interfaceNameBytesMax} bytes, no "/", ":" or whitespace)`,
      });
      valid = false;
    } else {
      interfaceName = name.value;
    }
  }
  let enabled = true;
  if (vip.has('enabled')) {
    const located = vip.boolean('enabled');
    if (located === undefined) valid = false;
    else enabled = located.value;
  }
  const ranged = (key: string, fallback: number, min: number, max: number, options: { zeroAllowed?: boolean } = {}): number | undefined => {
    if (!vip.has(key)) return fallback;
    const located = vip.integer(key);
    if (located === undefined) return undefined;
    if (options.zeroAllowed === true && located.value === 0) return 0;
    if (located.value < min || located.value > max) {
      const zero = options.zeroAllowed === true ? ' (or 0 for none)' : '';
      reader.report({ at: located.node, path: vip.keyPath(key), message: `must be from ${min} to ${max}${zero}, got ${located.value}` });
      return undefined;
    }
    return located.value;
  };
  const announceCount = ranged('announceCount', garpBurstCount, announceCountMin, announceCountMax);
  const announceIntervalMs = ranged('announceIntervalMs', garpBurstIntervalMs, announceIntervalMsMin, announceIntervalMsMax);
  const refreshIntervalMs = ranged('refreshIntervalMs', garpRefreshIntervalMs, refreshIntervalMsMin, refreshIntervalMsMax, { zeroAllowed: true });
  const reconcileIntervalMs = ranged('reconcileIntervalMs', reconcileIntervalMsDefault, reconcileIntervalMsMin, reconcileIntervalMsMax);
  if (
    !valid ||
    address === undefined ||
    family === undefined ||
    announceCount === undefined ||
    announceIntervalMs === undefined ||
    refreshIntervalMs === undefined ||
    reconcileIntervalMs === undefined
  ) {
    return undefined;
  }
  return { address, family, interface: interfaceName, enabled, announceCount, announceIntervalMs, refreshIntervalMs, reconcileIntervalMs };
}

/** The rules of the Linux kernel's dev_valid_name(). */
function isValidInterfaceName(name: string): boolean {
  const bytes = Buffer.byteLength(name);
  return bytes >= 1 && bytes <= interfaceNameBytesMax && name !== '.' && name !== '..' && !/[/:\s]/.test(name);
}

function readRaft(reader: YamlReader, top: MapView): TimingMs | undefined {
  const tickMs = timingMsDefault.tickMs;
  const raft = top.map('raft', raftSpec);
  if (raft === undefined) return top.has('raft') ? undefined : timingMsDefault;

  let heartbeatIntervalMs: number | undefined = timingMsDefault.heartbeatIntervalMs;
  const heartbeat = raft.integer('heartbeatIntervalMs');
  if (raft.has('heartbeatIntervalMs')) heartbeatIntervalMs = heartbeat?.value;
  if (heartbeat !== undefined) {
    const path = raft.keyPath('heartbeatIntervalMs');
    if (heartbeat.value < heartbeatIntervalMsMin || heartbeat.value > heartbeatIntervalMsMax) {
      reader.report({
        at: heartbeat.node,
        path,
        message: `must be from ${heartbeatIntervalMsMin} to ${heartbeatIntervalMsMax}, got ${heartbeat.value}`,
      });
      heartbeatIntervalMs = undefined;
    } else if (heartbeat.value % tickMs !== 0) {
      reader.report({ at: heartbeat.node, path, message: `must be a multiple of the ${tickMs} ms tick, got ${heartbeat.value}` });
      heartbeatIntervalMs = undefined;
    }
  }

  let electionTimeoutMs: number | undefined = timingMsDefault.electionTimeoutMs;
  const election = raft.integer('electionTimeoutMs');
  if (raft.has('electionTimeoutMs')) electionTimeoutMs = election?.value;
  const electionNode = raft.positionOf('electionTimeoutMs');
  const electionPath = raft.keyPath('electionTimeoutMs');
  if (election !== undefined) {
    if (election.value < electionTimeoutMsMin || election.value > electionTimeoutMsMax) {
      reader.report({
        at: electionNode,
        path: electionPath,
        message: `must be from ${electionTimeoutMsMin} to ${electionTimeoutMsMax}, got ${election.value}`,
      });
      electionTimeoutMs = undefined;
    } else if (election.value % tickMs !== 0) {
      reader.report({ at: electionNode, path: electionPath, message: `must be a multiple of the ${tickMs} ms tick, got ${election.value}` });
      electionTimeoutMs = undefined;
    }
  }
  if (heartbeatIntervalMs === undefined || electionTimeoutMs === undefined) return undefined;

  // The cross-key rules are reported at electionTimeoutMs, or at heartbeatIntervalMs when the
  // election timeout is the default.
  const at = election !== undefined ? electionNode : raft.positionOf('heartbeatIntervalMs');
  const path = election !== undefined ? electionPath : raft.keyPath('heartbeatIntervalMs');
  const electionMin = electionTimeoutHeartbeatsMin * heartbeatIntervalMs;
  if (electionTimeoutMs < electionMin) {
    reader.report({
      at,
      path,
      message:
        `electionTimeoutMs (${electionTimeoutMs}) must be at least ${electionTimeoutHeartbeatsMin} × heartbeatIntervalMs ` +
        `(${heartbeatIntervalMs}), i.e. at least ${electionMin}`,
    });
    return undefined;
  }
  const timing: TimingMs = { ...timingMsDefault, heartbeatIntervalMs, electionTimeoutMs };
  const ticks = timingToTicks(timing);
  const leaseTicks = leaseTicksFor(ticks);
  if (leaseTicks < leaseHeartbeatsMin * ticks.heartbeatTicks) {
    reader.report({
      at,
      path,
      message:
        `electionTimeoutMs ${electionTimeoutMs} leaves the leader a lease of ${leaseTicks * tickMs} ms, shorter than ` +
        `${leaseHeartbeatsMin} heartbeat intervals, so the VIP would drop whenever a heartbeat is late; with ` +
        `heartbeatIntervalMs ${heartbeatIntervalMs} use electionTimeoutMs ${electionTimeoutMsForLease(timing)} or more`,
    });
    return undefined;
  }
  return timing;
}

/** The smallest election timeout that gives a lease of leaseHeartbeatsMin heartbeats. */
function electionTimeoutMsForLease(timing: TimingMs): number {
  for (let ms = timing.electionTimeoutMs; ms <= electionTimeoutMsMax; ms += timing.tickMs) {
    const ticks = timingToTicks({ ...timing, electionTimeoutMs: ms });
    if (leaseTicksFor(ticks) >= leaseHeartbeatsMin * ticks.heartbeatTicks) return ms;
  }
  return electionTimeoutMsMax;
}

function readAdmin(reader: YamlReader, top: MapView): Config['admin'] | undefined {
  const admin = top.map('admin', adminSpec);
  if (admin === undefined) return top.has('admin') ? undefined : defaultAdmin();
  if (!admin.has('listen')) return defaultAdmin();
  const listen = admin.string('listen');
  if (listen === undefined) return undefined;
  const path = admin.keyPath('listen');
  const parsed = parseHostPort(listen.value);
  if (!parsed.ok) {
    reader.report({ at: listen.node, path, message: parsed.message });
    return undefined;
  }
  if (!isLoopback(parsed.value)) {
    reader.report({
      at: listen.node,
      path,
      message: `${parsed.value.host} is not a loopback address; the admin API has no authentication, so it listens on 127.0.0.0/8 or [::1] only`,
    });
    return undefined;
  }
  return { host: parsed.value.host, port: parsed.value.port };
}

function defaultAdmin(): Config['admin'] {
  const parsed = parseHostPort(adminListenDefault);
  if (!parsed.ok) throw new Error(`adminListenDefault is invalid: ${parsed.message}`);
  return { host: parsed.value.host, port: parsed.value.port };
}

function readLogLevel(reader: YamlReader, top: MapView): LogLevel | undefined {
  const log = top.map('log', logSpec);
  if (log === undefined) return top.has('log') ? undefined : logLevelDefault;
  if (!log.has('level')) return logLevelDefault;
  const level = log.string('level');
  if (level === undefined) return undefined;
  const known = logLevels.find((candidate) => candidate === level.value);
  if (known === undefined) {
    reader.report({ at: level.node, path: log.keyPath('level'), message: `must be one of ${logLevels.join(', ')}, got "${level.value}"` });
    return undefined;
  }
  return known;
}
