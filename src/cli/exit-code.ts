// Process exit codes of the raftvip CLI. A closed vocabulary, so scripts and systemd can tell a
// mistyped command line (2) from a command that ran and failed (1).

export const exitCode = {
  /** The command did what was asked. */
  ok: 0,
  /** The command ran and failed (for `sim`: an invariant broke, or the simulator could not load). */
  failure: 1,
  /** The command line was wrong: unknown command or option, bad value. Nothing was done. */
  usage: 2,
} as const;

export type ExitCode = (typeof exitCode)[keyof typeof exitCode];
