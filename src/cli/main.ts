// The raftvip command line: parses argv with yargs, runs one command, and sets the exit code.
//
// Owns the top-level help text, strict parsing (an unknown command or option is a usage error,
// exit 2, never silently ignored) and the mapping of outcomes to exit codes (see exit-code.ts).
// Each command lives in its own module; this one only wires them together. Commands only appear
// here once they do something.

import yargs from 'yargs';
import { readVersion } from '../version.js';
import { configFileDefault } from '../config/config-schema.js';
import { addConfigCommand } from './config-command.js';
import { exitCode, type ExitCode } from './exit-code.js';
import { addDaemonCommands } from './daemon-commands.js';
import { addGenerateCommand } from './generate-command.js';
import { addLabCommand } from './lab-command.js';
import { addSimCommand } from './sim-command.js';
import { addVipCommand } from './vip-command.js';

/** Widest help text, in columns, whatever the terminal. */
const helpWidthColumnsMax = 100;

const description =
  'raftvip gives a bare-metal Kubernetes control plane one stable virtual IP before Kubernetes ' +
  'exists. Every control-plane host runs the raftvip daemon from the same YAML peer file; the ' +
  'daemons form their own Raft group over authenticated TCP. The Raft leader, and only while its ' +
  'lease is valid, holds the VIP (announced with gratuitous ARP) and forwards VIP:6443 in the ' +
  'kernel (IPVS or nftables) to every kube-apiserver that is ready. raftvip needs no Kubernetes ' +
  'credentials.';

/** Names of the commands and their subcommands, for the "see `raftvip <command> --help`" hint
 * after a usage error. */
const commandNames: Readonly<Record<string, readonly string[]>> = {
  run: [],
  status: [],
  'transfer-leadership': [],
  members: [],
  sim: [],
  config: ['check'],
  generate: ['psk'],
  vip: ['release'],
  lab: ['demo'],
};

/**
 * Runs the CLI and resolves to the process exit code. Never rejects: every failure is reported
 * on stderr and turned into an exit code, so callers (bin/raftvip, tests) need no handler.
 */
export async function runCli(argv: readonly string[]): Promise<ExitCode> {
  const writeError = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };

  let version: string;
  try {
    version = readVersion();
  } catch (error) {
    writeError(`raftvip: cannot read the version: ${describeError(error)}`);
    return exitCode.failure;
  }

  // yargs may report several usage problems for one command line ("no command" and "unknown
  // argument"); all of them are shown, once each.
  const usageErrors: string[] = [];
  let commandExitCode: ExitCode = exitCode.ok;

  const parser = yargs([...argv])
    .scriptName('raftvip')
    // A fixed locale keeps messages identical on every host (and in docs and tests).
    .locale('en')
    .usage(`${description}\n\nUsage: $0 <command> [options]`)
    .version(version)
    .help()
    .alias('help', 'h')
    .strictCommands()
    .strictOptions()
    .demandCommand(1, 'No command given.')
    .wrap(helpWidthColumnsMax)
    .option('config', {
      type: 'string',
      requiresArg: true,
      default: configFileDefault,
      describe: 'The peer file',
    })
    // yargs must not call process.exit: output could be cut short, and the exit code is ours.
    .exitProcess(false)
    .showHelpOnFail(false)
    .fail((message, error) => {
      // Called for usage errors (message set) and for a throwing handler (error only); commands
      // catch their own errors in run() below, so the second case is unexpected but still handled.
      const text = message ?? describeError(error);
      if (!usageErrors.includes(text)) usageErrors.push(text);
    });

  const commandContext = {
    run: async (action: () => Promise<ExitCode>): Promise<void> => {
      if (usageErrors.length > 0) return;
      try {
        commandExitCode = await action();
      } catch (error) {
        commandExitCode = exitCode.failure;
        // An operating condition (a typed error with a RAFTVIP_* code: no interface for the VIP,
        // netlink refused, a corrupt log) is one line that says what to do; anything else is a
        // bug, and its stack is what the bug report needs.
        const code = (error as { code?: unknown } | null)?.code;
        if (error instanceof Error && typeof code === 'string' && /^(RAFTVIP|LAB)_/.test(code)) writeError(`raftvip: ${error.message} (${code})`);
        else writeError(`raftvip: ${error instanceof Error && error.stack ? error.stack : String(error)}`);
      }
    },
    writeError,
  };
  addDaemonCommands(parser, commandContext);
  addSimCommand(parser, commandContext);
  addConfigCommand(parser, commandContext);
  addGenerateCommand(parser, commandContext);
  addVipCommand(parser, commandContext);
  addLabCommand(parser, commandContext);

  try {
    await parser.parseAsync();
  } catch (error) {
    writeError(`raftvip: ${describeError(error)}`);
    return exitCode.failure;
  }

  if (usageErrors.length > 0) {
    for (const text of usageErrors) writeError(`raftvip: ${text}`);
    writeError(`Run '${helpCommandFor(argv)}' for usage.`);
    return exitCode.usage;
  }
  return commandExitCode;
}

/** `raftvip sim --help` (or `raftvip config check --help`) when the command line names a known
 * command, else `raftvip --help`. */
function helpCommandFor(argv: readonly string[]): string {
  const [first, second] = argv.filter((word) => !word.startsWith('-'));
  const subcommands = first === undefined ? undefined : commandNames[first];
  if (subcommands === undefined) return 'raftvip --help';
  return second !== undefined && subcommands.includes(second) ? `raftvip ${first} ${second} --help` : `raftvip ${first} --help`;
}

/** Entry point used by bin/raftvip. Sets the exit code and lets Node exit once output is flushed. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await runCli(argv);
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
