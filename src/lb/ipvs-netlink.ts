// The kernel side of the IPVS data plane: one generic netlink socket (the `netlink` package's
// prebuilt shim, `createGenericNetlink()`) speaking the IPVS family. It resolves the family by
// name (the id is assigned at module load and differs between boots), and offers one method per
// IPVS command raftvip needs: info, service and destination dumps, add/edit/delete of services
// and destinations, and the connection timeouts. Message bytes come from ipvs-codec.ts; policy
// (what to change) stays in ipvs-planner.ts; nothing is cached but the family id.
//
// Invariants:
// - Every failure is an IpvsError (RAFTVIP_IPVS_FAILED) carrying the kernel's errno and the
//   operation; nothing else escapes. A kernel without IPVS (the family does not resolve, even
//   after the kernel's on-demand module load) is errno ENOENT on operation `resolve-family`, with
//   a message saying so; `isIpvsUnavailable` recognises it.
// - Every request has a timeout (`ipvsRequestTimeoutMs`); a dump the kernel flags as interrupted
//   (NLM_F_DUMP_INTR: the table changed while it was read) is read again, `ipvsDumpAttemptsMax`
//   times at most.
// - No retries of changes here: an add that finds the entry present fails with EEXIST, a delete
//   of an absent entry with ESRCH (service) or ENOENT (destination). The data plane decides.
//
// The package's own request helpers are bypassed on purpose, as in src/vip/netlink-addresses.ts:
// GenericNetlinkSocket.request throws a plain Error when the reply is an NLMSG_ERROR (its type is
// not the family's), and checkError throws `Error('Request rejected: EEXIST')` without the errno.
// So requests go out on the underlying NetlinkSocket with `checkError: false`, and the replies
// are decoded here.

import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import netlink from 'netlink';
import {
  IpvsMessageError,
  decodeDestinationAttributes,
  decodeInfoAttributes,
  decodeIpvsMessage,
  decodeServiceAttributes,
  decodeTimeoutAttributes,
  encodeDestinationAttributes,
  encodeDestinationKeyAttributes,
  encodeIpvsMessage,
  encodeServiceAttributes,
  encodeServiceKeyAttributes,
  encodeTimeoutAttributes,
  ipvsCommand,
  ipvsFamilyName,
  ipvsGenlVersion,
  type IpvsDestination,
  type IpvsDestinationEntry,
  type IpvsDestinationKey,
  type IpvsInfo,
  type IpvsService,
  type IpvsServiceEntry,
  type IpvsServiceKey,
  type IpvsTimeouts,
} from './ipvs-codec.js';

/** Longest wait for one request (a dump, or a change and its ACK). The kernel answers in
 * microseconds; the first request may load the ip_vs module (tens of milliseconds, seconds under
 * emulation), so this is generous. A request still unanswered after it is lost, not slow. */
export const ipvsRequestTimeoutMs = 5_000;
/** Dumps flagged NLM_F_DUMP_INTR are read again, this many times in all at most. */
export const ipvsDumpAttemptsMax = 3;

const messageTypeError = 2; // NLMSG_ERROR
const genlIdController = 16; // GENL_ID_CTRL
const controllerCommandGetFamily = 3; // CTRL_CMD_GETFAMILY
const controllerVersion = 1; // CTRL_VERSION

export type IpvsOperation =
  | 'open'
  | 'resolve-family'
  | 'get-info'
  | 'list-services'
  | 'list-destinations'
  | 'add-service'
  | 'edit-service'
  | 'delete-service'
  | 'add-destination'
  | 'edit-destination'
  | 'delete-destination'
  | 'get-timeouts'
  | 'set-timeouts'
  // The data plane's own steps around the kernel requests (ipvs-data-plane.ts):
  | 'validate'
  | 'sysctl'
  | 'source-nat';

/** An IPVS request failed or could not be made. `errno` is the positive errno the kernel (or the
 * socket) reported: ENOENT on `resolve-family` when the kernel has no IPVS; EPERM without
 * CAP_NET_ADMIN; EEXIST adding what exists; ESRCH for a service and ENOENT for a destination that
 * does not exist; ENOENT for an unknown scheduler; EINVAL for an attribute the kernel refuses (a
 * real server that is not a routable unicast address, a family mismatch); ETIMEDOUT for a request
 * unanswered within the timeout; EPROTO for a reply that does not parse; EBADF after `close`. */
export class IpvsError extends Error {
  readonly code = 'RAFTVIP_IPVS_FAILED' as const;
  readonly errno: number;
  readonly operation: IpvsOperation;

  constructor(options: { operation: IpvsOperation; errno: number; detail: string }) {
    super(`IPVS ${options.operation} failed: ${errnoName(options.errno)}: ${options.detail}`);
    this.name = 'IpvsError';
    this.errno = options.errno;
    this.operation = options.operation;
  }
}

/** True for the error a kernel without IPVS gives (the family does not resolve). */
export function isIpvsUnavailable(error: unknown): error is IpvsError {
  return error instanceof IpvsError && error.operation === 'resolve-family' && error.errno === osConstants.errno.ENOENT;
}

export interface IpvsFamily {
  /** The generic netlink family id the kernel assigned to IPVS. */
  readonly id: number;
  /** The family's version (IPVS_GENL_VERSION, 1 since 2.6.28). */
  readonly version: number;
}

export interface IpvsNetlinkOptions {
  /** Defaults to `ipvsRequestTimeoutMs`. */
  requestTimeoutMs?: number;
}

/** What the data plane needs from the kernel; IpvsNetlink is the real one, tests inject fakes. */
export interface IpvsClient {
  getInfo(): Promise<IpvsInfo>;
  listServices(): Promise<IpvsServiceEntry[]>;
  listDestinations(service: IpvsServiceKey): Promise<IpvsDestinationEntry[]>;
  addService(service: IpvsService): Promise<void>;
  editService(service: IpvsService): Promise<void>;
  deleteService(service: IpvsServiceKey): Promise<void>;
  addDestination(service: IpvsServiceKey, destination: IpvsDestination): Promise<void>;
  editDestination(service: IpvsServiceKey, destination: IpvsDestination): Promise<void>;
  deleteDestination(service: IpvsServiceKey, destination: IpvsDestinationKey): Promise<void>;
  getTimeouts(): Promise<Required<IpvsTimeouts>>;
  setTimeouts(timeouts: IpvsTimeouts): Promise<void>;
  close(): void;
}

type GenericNetlinkSocket = ReturnType<typeof netlink.createGenericNetlink>;
type RawMessage = { type: number; flags: number; data: Buffer };

/** Talks to the IPVS of the network namespace the process runs in. */
export class IpvsNetlink implements IpvsClient {
  readonly #socket: GenericNetlinkSocket;
  readonly #requestTimeoutMs: number;
  #family: Promise<IpvsFamily> | null = null;
  #closed = false;

  constructor(options: IpvsNetlinkOptions = {}) {
    const requestTimeoutMs = options.requestTimeoutMs ?? ipvsRequestTimeoutMs;
    if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs <= 0) {
      throw new IpvsError({ operation: 'open', errno: osConstants.errno.EINVAL, detail: `requestTimeoutMs must be a positive integer, got ${String(requestTimeoutMs)}` });
    }
    this.#requestTimeoutMs = requestTimeoutMs;
    try {
      // ref: false (the default): an idle socket does not keep the process alive.
      this.#socket = netlink.createGenericNetlink();
    } catch (error) {
      throw toIpvsError('open', error, 'cannot open a generic netlink socket');
    }
    // A receive error (ENOBUFS after an overrun) is emitted as an 'error' event, which would
    // crash the process without a listener. The request it belonged to times out instead.
    this.#socket.socket.on('error', () => {});
  }

  /** Resolves the IPVS family by name (CTRL_CMD_GETFAMILY) once; the kernel loads ip_vs on
   * demand for this lookup if it is a module. A failed lookup is not cached. */
  family(): Promise<IpvsFamily> {
    if (this.#family === null) {
      const pending = this.#resolveFamily();
      this.#family = pending;
      pending.catch(() => {
        if (this.#family === pending) this.#family = null;
      });
    }
    return this.#family;
  }

  async getInfo(): Promise<IpvsInfo> {
    const replies = await this.#request('get-info', ipvsCommand.getInfo, new Uint8Array(0), {});
    const reply = expectOne('get-info', replies, ipvsCommand.setInfo);
    return decodeOrFail('get-info', () => decodeInfoAttributes(reply));
  }

  /** Every virtual service in this network namespace, raftvip's or not. */
  async listServices(): Promise<IpvsServiceEntry[]> {
    const replies = await this.#dump('list-services', ipvsCommand.getService, new Uint8Array(0));
    return replies.filter((reply) => reply.command === ipvsCommand.newService).map((reply) => decodeOrFail('list-services', () => decodeServiceAttributes(reply.attributes)));
  }

  /** The destinations of one service; empty if the service does not exist (the kernel ends the
   * dump without an error then). */
  async listDestinations(service: IpvsServiceKey): Promise<IpvsDestinationEntry[]> {
    const request = encodeOrFail('list-destinations', () => encodeServiceKeyAttributes(service));
    const replies = await this.#dump('list-destinations', ipvsCommand.getDestination, request);
    return replies
      .filter((reply) => reply.command === ipvsCommand.newDestination)
      .map((reply) => decodeOrFail('list-destinations', () => decodeDestinationAttributes(reply.attributes, { family: service.family }).destination));
  }

  async addService(service: IpvsService): Promise<void> {
    await this.#change('add-service', ipvsCommand.newService, () => encodeServiceAttributes(service));
  }

  /** Changes the scheduler, flags, persistence timeout and netmask of an existing service. */
  async editService(service: IpvsService): Promise<void> {
    await this.#change('edit-service', ipvsCommand.setService, () => encodeServiceAttributes(service));
  }

  /** Deletes the service and its destinations. */
  async deleteService(service: IpvsServiceKey): Promise<void> {
    await this.#change('delete-service', ipvsCommand.deleteService, () => encodeServiceKeyAttributes(service));
  }

  async addDestination(service: IpvsServiceKey, destination: IpvsDestination): Promise<void> {
    await this.#change('add-destination', ipvsCommand.newDestination, () => encodeDestinationAttributes(service, destination));
  }

  async editDestination(service: IpvsServiceKey, destination: IpvsDestination): Promise<void> {
    await this.#change('edit-destination', ipvsCommand.setDestination, () => encodeDestinationAttributes(service, destination));
  }

  async deleteDestination(service: IpvsServiceKey, destination: IpvsDestinationKey): Promise<void> {
    await this.#change('delete-destination', ipvsCommand.deleteDestination, () => encodeDestinationKeyAttributes(service, destination));
  }

  async getTimeouts(): Promise<Required<IpvsTimeouts>> {
    const replies = await this.#request('get-timeouts', ipvsCommand.getConfig, new Uint8Array(0), {});
    const timeouts = decodeOrFail('get-timeouts', () => decodeTimeoutAttributes(expectOne('get-timeouts', replies, ipvsCommand.setConfig)));
    const { tcpSeconds, tcpFinSeconds, udpSeconds } = timeouts;
    if (tcpSeconds === undefined || tcpFinSeconds === undefined || udpSeconds === undefined) {
      throw new IpvsError({ operation: 'get-timeouts', errno: osConstants.errno.EPROTO, detail: 'the reply lacks a timeout' });
    }
    return { tcpSeconds, tcpFinSeconds, udpSeconds };
  }

  /** Sets the given timeouts; absent ones stay as they are. */
  async setTimeouts(timeouts: IpvsTimeouts): Promise<void> {
    await this.#change('set-timeouts', ipvsCommand.setConfig, () => encodeTimeoutAttributes(timeouts));
  }

  /** Closes the socket. Idempotent; later calls fail with EBADF. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.socket.close();
  }

  async #resolveFamily(): Promise<IpvsFamily> {
    const attributes = new netlink.AttrStream();
    attributes.emit(netlink.genl.formatMessage({ familyName: ipvsFamilyName }));
    const header = netlink.formatGenlHeader({ cmd: controllerCommandGetFamily, version: controllerVersion });
    const messages = await this.#send('resolve-family', genlIdController, [header, ...attributes.bufs], 0);
    for (const message of messages) {
      if (message.type === messageTypeError) {
        const errno = errnoOf('resolve-family', message);
        if (errno === osConstants.errno.ENOENT) {
          throw new IpvsError({
            operation: 'resolve-family',
            errno,
            detail: 'IPVS is not available in this kernel: the generic netlink family "IPVS" does not exist (no CONFIG_IP_VS, or the ip_vs module cannot be loaded); use the nftables data plane',
          });
        }
        if (errno !== 0) throw new IpvsError({ operation: 'resolve-family', errno, detail: 'the kernel refused the family lookup' });
        continue;
      }
      if (message.type !== genlIdController) continue;
      const parsed = decodeOrFail('resolve-family', () => netlink.genl.parseMessage(message.data.subarray(4)));
      if (parsed.familyName === ipvsFamilyName && parsed.familyId !== undefined) {
        return { id: parsed.familyId, version: parsed.version ?? ipvsGenlVersion };
      }
    }
    throw new IpvsError({ operation: 'resolve-family', errno: osConstants.errno.EPROTO, detail: 'no IPVS family in the controller reply' });
  }

  async #change(operation: IpvsOperation, command: number, encode: () => Uint8Array): Promise<void> {
    const attributes = encodeOrFail(operation, encode);
    await this.#request(operation, command, attributes, {});
  }

  async #dump(operation: IpvsOperation, command: number, attributes: Uint8Array): Promise<DecodedReply[]> {
    for (let attempt = 1; attempt <= ipvsDumpAttemptsMax; attempt++) {
      const replies = await this.#request(operation, command, attributes, { dump: true });
      if (!replies.some((reply) => reply.interrupted)) return replies;
    }
    throw new IpvsError({ operation, errno: osConstants.errno.EAGAIN, detail: `the table kept changing during ${ipvsDumpAttemptsMax} dumps` });
  }

  /** Sends one IPVS command; returns the decoded replies of the family (ACKs and the dump's
   * NLMSG_DONE are consumed). An NLMSG_ERROR with a non-zero errno throws. */
  async #request(operation: IpvsOperation, command: number, attributes: Uint8Array, options: { dump?: boolean }): Promise<DecodedReply[]> {
    const family = await this.family();
    const payload = encodeOrFail(operation, () => encodeIpvsMessage({ command, version: family.version, attributes }));
    const messages = await this.#send(operation, family.id, [payload], options.dump === true ? netlink.FlagsGet.DUMP : 0);
    const replies: DecodedReply[] = [];
    for (const message of messages) {
      if (message.type === messageTypeError) {
        const errno = errnoOf(operation, message);
        if (errno !== 0) throw new IpvsError({ operation, errno, detail: 'the kernel refused the request' });
        continue;
      }
      if (message.type !== family.id) continue;
      const decoded = decodeOrFail(operation, () => decodeIpvsMessage(message.data));
      replies.push({ ...decoded, interrupted: (message.flags & netlink.Flags.DUMP_INTR) !== 0 });
    }
    return replies;
  }

  async #send(operation: IpvsOperation, type: number, data: Uint8Array[], flags: number): Promise<RawMessage[]> {
    if (this.#closed) throw new IpvsError({ operation, errno: osConstants.errno.EBADF, detail: 'the socket is closed' });
    try {
      const [messages] = await this.#socket.socket.request(type, data, { flags, timeout: this.#requestTimeoutMs, checkError: false });
      return messages;
    } catch (error) {
      throw toIpvsError(operation, error, 'request failed');
    }
  }
}

interface DecodedReply {
  command: number;
  version: number;
  attributes: Uint8Array;
  interrupted: boolean;
}

/** Whether this kernel has IPVS: resolves the family once on a throw-away socket. `ok: false`
 * only for a kernel without IPVS; any other failure (EPERM, a timeout) is thrown, since it says
 * nothing about IPVS and must not silently pick another data plane. */
export async function ipvsAvailable(options: IpvsNetlinkOptions = {}): Promise<{ ok: true; family: IpvsFamily } | { ok: false; reason: string }> {
  let client: IpvsNetlink | null = null;
  try {
    client = new IpvsNetlink(options);
    return { ok: true, family: await client.family() };
  } catch (error) {
    if (isIpvsUnavailable(error)) return { ok: false, reason: 'the kernel has no IPVS (generic netlink family "IPVS" not found)' };
    throw error;
  } finally {
    client?.close();
  }
}

function expectOne(operation: IpvsOperation, replies: readonly DecodedReply[], command: number): Uint8Array {
  const reply = replies.find((candidate) => candidate.command === command);
  if (reply === undefined) throw new IpvsError({ operation, errno: osConstants.errno.EPROTO, detail: `no reply with command ${command}` });
  return reply.attributes;
}

function errnoOf(operation: IpvsOperation, message: RawMessage): number {
  return -decodeOrFail(operation, () => netlink.parseError(message.data, message.flags)).errno;
}

/** Runs a decoder; a reply it cannot parse is EPROTO, not a crash. */
function decodeOrFail<T>(operation: IpvsOperation, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    throw new IpvsError({ operation, errno: osConstants.errno.EPROTO, detail: `malformed reply: ${(error as Error).message}` });
  }
}

/** Runs an encoder; a request that cannot be built (an invalid address, weight, name) is EINVAL
 * before anything is sent. */
function encodeOrFail<T>(operation: IpvsOperation, encode: () => T): T {
  try {
    return encode();
  } catch (error) {
    if (error instanceof IpvsMessageError) throw new IpvsError({ operation, errno: osConstants.errno.EINVAL, detail: error.message });
    throw error;
  }
}

/** Maps what the package throws to an IpvsError: its native shim reports `{errno, syscall}`;
 * its request timeout is a plain Error with a fixed message. */
function toIpvsError(operation: IpvsOperation, error: unknown, detail: string): IpvsError {
  if (error instanceof IpvsError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const errno = (error as { errno?: unknown } | null)?.errno;
  if (typeof errno === 'number' && errno !== 0) return new IpvsError({ operation, errno: Math.abs(errno), detail: `${detail}: ${message}` });
  if (message === 'Timeout has been reached') return new IpvsError({ operation, errno: osConstants.errno.ETIMEDOUT, detail: 'no reply within the request timeout' });
  return new IpvsError({ operation, errno: osConstants.errno.EPROTO, detail: `${detail}: ${message}` });
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
