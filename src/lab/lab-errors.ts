// Typed errors of the lab (src/lab/): the test rig that runs real raftvip hosts in network
// namespaces on one machine. The lab is test tooling, not part of the daemon, so its codes start
// with `LAB_` and are not operator-facing (docs/errors.md lists the daemon's codes only).

/** Codes a LabError can carry. */
export type LabErrorCode =
  /** An option is out of range or names something the lab does not have (a host `h9`). */
  | 'LAB_INVALID_OPTION'
  /** An `ip`, `tc`, `sysctl` or raftvip command failed or did not finish in time. */
  | 'LAB_COMMAND_FAILED'
  /** A condition the caller waits for (a leader, a VIP holder, an exit) did not come in time. */
  | 'LAB_TIMEOUT'
  /** A lab process (daemon, name server, probe, monitor) exited or printed what it should not. */
  | 'LAB_PROCESS_FAILED'
  /** This kernel lacks what the fault needs (netem without CONFIG_NET_SCH_NETEM). */
  | 'LAB_UNSUPPORTED'
  /** The lab was used after destroy() or stop(). */
  | 'LAB_STOPPED'
  /** The qemu guest (qemu-guest.ts) did not boot, did not finish in time, or lost its command's
   * exit code; the message ends with the tail of its serial console. */
  | 'LAB_GUEST_FAILED';

export class LabError extends Error {
  readonly code: LabErrorCode;

  constructor(options: { code: LabErrorCode; detail: string; cause?: unknown }) {
    super(options.detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LabError';
    this.code = options.code;
  }
}

export function labInvalidOption(option: string, detail: string): LabError {
  return new LabError({ code: 'LAB_INVALID_OPTION', detail: `invalid lab option ${option}: ${detail}` });
}

export function labTimeout(detail: string): LabError {
  return new LabError({ code: 'LAB_TIMEOUT', detail });
}

/** A command failed: the message holds the command line and what it wrote on stderr. */
export function labCommandFailed(command: string, args: readonly string[], cause: unknown): LabError {
  const stderr = (cause as { stderr?: unknown } | null)?.stderr;
  const text = typeof stderr === 'string' ? stderr : Buffer.isBuffer(stderr) ? stderr.toString('utf8') : '';
  const reason = text.trim() || (cause instanceof Error ? cause.message : String(cause));
  return new LabError({ code: 'LAB_COMMAND_FAILED', detail: `${command} ${args.join(' ')}: ${reason}`, cause });
}

/** The qemu guest failed: the message holds what went wrong and, once qemu has run, the tail of
 * its serial console (the kernel's and the guest's own lines), where the reason usually is. */
export function labGuestFailed(detail: string, serialLogTail: string | null = null): LabError {
  if (serialLogTail === null) return new LabError({ code: 'LAB_GUEST_FAILED', detail });
  const tail = serialLogTail.trim() === '' ? '(the serial console printed nothing)' : serialLogTail;
  return new LabError({ code: 'LAB_GUEST_FAILED', detail: `${detail}\n--- guest serial console, last lines ---\n${tail}` });
}
