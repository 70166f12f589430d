// The one way a peer file becomes configuration: YAML → validation that collects every error
// with file:line:col → defaults → a deeply frozen Config (STYLE.md rule 8). No environment
// variables, no second source. `raftvip run` and `raftvip config check` both come through here,
// so a file that passes the check is exactly a file the daemon starts with.
//
// Order: YAML syntax (errors and warnings both count), the schema walk (config-schema.ts), the
// files cluster.auth names (auth-files.ts), then which peer this host is (node.id). Every stage
// runs even when an earlier one found problems, so one run reports them all; only a stage whose
// input is broken (node.id detection with an invalid peer list, or after YAML errors) is skipped.

import { open } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { nodeId as toNodeId } from '../raft/types.js';
import { readAuthFiles, readHealthCheckFiles } from './auth-files.js';
import { ConfigError, ConfigReadError, type ConfigIssue } from './config-errors.js';
import { readConfigDocument, type Config, type ConfigDraft } from './config-schema.js';
import { canonicalLocalAddress } from './host-port.js';
import { YamlReader } from './yaml-reader.js';

export type { Config, ConfigAuth, ConfigPeer, LogLevel } from './config-schema.js';
export { configFileDefault } from './config-schema.js';
export { ConfigError, ConfigReadError, formatConfigIssue, type ConfigIssue } from './config-errors.js';

/** Largest peer file read. A real one is a few hundred bytes. */
export const configFileSizeBytesMax = 1024 * 1024;

export interface LoadConfigOptions {
  /** This host's peer id from the command line (`--node-id`), for a file without node.id. */
  readonly nodeId?: string;
  /** The host's IP addresses, to find which peer is this host when neither the file nor
   * `nodeId` says. Default: every address in os.networkInterfaces(). */
  readonly localAddresses?: () => readonly string[];
  /** Default true. False skips opening the secret files (see readAuthFiles): for `status`,
   * `transfer-leadership` and `members`, which need only the admin address. Never for the
   * daemon or `config check`. */
  readonly readSecrets?: boolean;
}

/**
 * Reads and validates a peer file. Rejects with ConfigReadError when the file cannot be read,
 * and with ConfigError (every problem, each with its position) when it is not valid.
 */
export async function loadConfig(file: string, options: LoadConfigOptions = {}): Promise<Config> {
  let bytes: Buffer;
  try {
    const handle = await open(file, 'r');
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw Object.assign(new Error('not a regular file'), { code: stats.isDirectory() ? 'EISDIR' : 'EINVAL' });
      if (stats.size > configFileSizeBytesMax) {
        throw new ConfigError({
          file,
          issues: [issueAtStart(file, `the file is ${stats.size} bytes, more than the ${configFileSizeBytesMax} a peer file may have`)],
        });
      }
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigReadError({ file, cause: error });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError({ file, issues: [issueAtStart(file, 'the file is not UTF-8 text')] });
  }
  return parseConfigText(text, file, options);
}

/**
 * Validates peer-file text. `file` names it in messages and anchors relative paths (pskFile,
 * tls.*) to its directory; it is not read. Rejects with ConfigError.
 */
export async function parseConfigText(text: string, file: string, options: LoadConfigOptions = {}): Promise<Config> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    keepSourceTokens: true,
    prettyErrors: false,
    uniqueKeys: true,
    strict: true,
    version: '1.2',
    schema: 'core',
    merge: false,
  });
  const reader = new YamlReader({ file, doc, lineCounter });
  for (const problem of [...doc.errors, ...doc.warnings]) {
    const message =
      problem.code === 'MULTIPLE_DOCS'
        ? "the file holds more than one YAML document ('---'); a peer file is one document"
        : problem.message;
    reader.report({ at: problem.pos[0], path: '', message: `invalid YAML: ${message}` });
  }
  if (doc.contents === null) {
    reader.report({ at: 0, path: '', message: 'the file holds no configuration; it needs at least cluster and vip' });
    throw new ConfigError({ file, issues: reader.issues });
  }

  const draft = readConfigDocument(reader, doc.contents);
  const auth =
    draft.auth === undefined ? undefined : await readAuthFiles({ auth: draft.auth, baseDir: dirname(resolve(file)), reader, readSecrets: options.readSecrets ?? true });
  // Which peer is local is only worth asking of a file that parsed: with YAML errors the peer
  // list may be a fragment, and the answer would be noise next to the real problem.
  const id = doc.errors.length > 0 ? undefined : resolveNodeId({ draft, reader, options });
  const loadBalancer =
    draft.loadBalancer === undefined
      ? undefined
      : await readHealthCheckFiles({ loadBalancer: draft.loadBalancer, baseDir: dirname(resolve(file)), reader, readSecrets: options.readSecrets ?? true });

  const { clusterName, peers, dataDir, vip, raft, admin, logLevel } = draft;
  if (
    reader.issues.length > 0 ||
    clusterName === undefined ||
    peers === undefined ||
    auth === undefined ||
    id === undefined ||
    dataDir === undefined ||
    vip === undefined ||
    loadBalancer === undefined ||
    raft === undefined ||
    admin === undefined ||
    logLevel === undefined
  ) {
    // Every undefined field above was reported; an empty list here would be a bug.
    if (reader.issues.length === 0) throw new Error('configuration incomplete without a reported issue');
    throw new ConfigError({ file, issues: reader.issues });
  }

  const config: Config = {
    file: resolve(file),
    cluster: {
      name: clusterName,
      peers: peers.map((peer) => ({
        id: toNodeId(peer.id),
        host: peer.hostPort.host,
        port: peer.hostPort.port,
        address: peer.hostPort.address,
        family: peer.hostPort.family,
      })),
      auth,
    },
    node: { id: toNodeId(id), dataDir },
    vip,
    loadBalancer,
    raft,
    admin,
    log: { level: logLevel },
  };
  return deepFreeze(config);
}

/** node.id from the file, else from the command line, else the one peer whose host is local. */
function resolveNodeId(options: { draft: ConfigDraft; reader: YamlReader; options: LoadConfigOptions }): string | undefined {
  const { draft, reader } = options;
  const given = options.options.nodeId;
  if (draft.nodeId === 'invalid') return undefined;
  if (draft.nodeId !== 'absent') {
    if (given !== undefined && given !== draft.nodeId.value) {
      reader.report({
        at: draft.nodeId.node,
        path: 'node.id',
        message: `is "${draft.nodeId.value}" but the command line asks for node "${given}"; remove one of the two`,
      });
      return undefined;
    }
    return draft.nodeId.value;
  }
  const peers = draft.peers;
  if (peers === undefined) return undefined;
  const ids = peers.map((peer) => peer.id).join(', ');
  if (given !== undefined) {
    if (peers.some((peer) => peer.id === given)) return given;
    reader.report({
      at: draft.peersNode,
      path: 'node.id',
      message: `"${given}" (from the command line) is not the id of any peer (peers: ${ids})`,
    });
    return undefined;
  }

  let local: string[];
  try {
    local = (options.options.localAddresses ?? systemLocalAddresses)()
      .map(canonicalLocalAddress)
      .filter((address): address is string => address !== null);
  } catch (error) {
    reader.report({
      at: draft.peersNode,
      path: 'node.id',
      message: `is not set, and this host's addresses cannot be listed (${error instanceof Error ? error.message : String(error)}); set node.id`,
    });
    return undefined;
  }
  const matches = peers.filter((peer) => local.includes(peer.hostPort.host));
  const [only] = matches;
  if (matches.length === 1 && only !== undefined) return only.id;
  const hosts = peers.map((peer) => `${peer.id} ${peer.hostPort.host}`).join(', ');
  const localText = local.length === 0 ? 'none' : [...new Set(local)].join(', ');
  const advice = 'set node.id in the file (or pass --node-id) to say which peer this host is';
  reader.report({
    at: draft.peersNode,
    path: 'node.id',
    message:
      matches.length === 0
        ? `is not set, and no peer's address is on this host (peers: ${hosts}; local addresses: ${localText}); ${advice}`
        : `is not set, and several peers' addresses are on this host (${matches.map((peer) => peer.id).join(', ')}); ${advice}`,
  });
  return undefined;
}

function systemLocalAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((addresses) => (addresses ?? []).map((address) => address.address));
}

function issueAtStart(file: string, message: string): ConfigIssue {
  return { file, line: 1, col: 1, path: '', message };
}

/** Freezes every object and array reachable from `value`. Buffers (typed arrays) cannot be
 * frozen; the reference to them is, through their frozen parent. */
function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value)) return value;
  for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key]);
  return Object.freeze(value);
}
