// Running a command inside the qemu guest for a scenario, and what is kept of it: the guest
// scenarios record outcomes (they do not assert; the host judges), so a failure is an outcome
// too, never an exception.

import { execFile } from 'node:child_process';
import { monotonicNowMs } from '../../src/lab/monotonic-clock.js';

/** One command in the guest. Under emulation one that loads modules takes a few seconds (nft
 * loading nf_tables, nf_nat, nf_conntrack...); 30 s is a hang. */
export const guestCommandTimeoutMs = 30_000;
/** What an outcome keeps of stdout and stderr each. */
export const guestOutputCharsMax = 16 * 1024;

export interface CommandOutcome {
  /** The command line, or a label for a script. */
  readonly command: string;
  /** Exit code 0. */
  readonly ok: boolean;
  /** null when killed by a signal or not started. */
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

/** `text`, cut to guestOutputCharsMax characters. */
export function clip(text: string): string {
  return text.length > guestOutputCharsMax ? `${text.slice(0, guestOutputCharsMax)}...(clipped)` : text;
}

/** Runs `command args` with `input` on stdin; resolves with the outcome whatever happens. */
export function runCommand(command: string, args: readonly string[], options: { input?: string; label?: string } = {}): Promise<CommandOutcome> {
  const startedAt = monotonicNowMs();
  return new Promise((resolve) => {
    const child = execFile(command, [...args], { encoding: 'utf8', timeout: guestCommandTimeoutMs }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      const exitCode = error === null ? 0 : typeof code === 'number' ? code : null;
      const reason = error !== null && exitCode === null ? `${error.message}\n` : '';
      resolve({
        command: options.label ?? [command, ...args].join(' '),
        ok: error === null,
        exitCode,
        stdout: clip(stdout),
        stderr: clip(reason + stderr),
        durationMs: monotonicNowMs() - startedAt,
      });
    });
    // A command that exits before reading its input closes the pipe: EPIPE is not a finding.
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.input ?? '');
  });
}
