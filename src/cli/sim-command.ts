// `raftvip sim`: the command-line face of the seeded whole-cluster simulator (src/sim).
//
// This module owns only the options, their validation, and the hand-off. The simulator itself
// lives in src/sim/cli.ts and is loaded lazily, by URL, so the CLI compiles and starts even while
// the simulator's module is being changed (and `--help` never pays for loading it).

import type { Argv } from 'yargs';
import { exitCode, type ExitCode } from './exit-code.js';

/** What src/sim/cli.ts accepts; absent fields mean "the simulator's default". */
export interface SimCliArgs {
  seeds?: number;
  seed?: number;
  start?: number;
  nodes?: number;
  verbose?: boolean;
}

/** The part of src/sim/cli.ts this command depends on. Resolves to a process exit code. */
export interface SimCliModule {
  runSimCli(args: SimCliArgs): Promise<number>;
}

/** Upper bound on `--seeds`: a typo (an extra zero or three) fails fast instead of running for days. */
export const seedsMax = 1_000_000;
/** Cluster sizes the simulator supports. */
export const simNodeCounts = [3, 5] as const;

/** Where the compiled simulator entry point sits relative to dist/src/cli/sim-command.js. */
const simCliUrl = new URL('../sim/cli.js', import.meta.url);

export interface SimCommandContext {
  /**
   * Runs the command's work and records its exit code, unless the command line was already
   * found wrong (yargs still calls handlers after a validation failure when it may not exit).
   */
  run(action: () => Promise<ExitCode>): Promise<void>;
  /** Writes one diagnostic line to stderr (without a trailing newline). */
  writeError(line: string): void;
}

/** Adds the `sim` command to a yargs instance. */
export function addSimCommand<T>(y: Argv<T>, context: SimCommandContext): Argv<T> {
  return y.command(
    'sim',
    'Run the seeded whole-cluster simulator (faulty network, disks, clocks and pauses) and ' +
      'check the Raft invariants; a failing run prints its seed for replay with --seed',
    (sim) =>
      sim
        .option('seeds', {
          type: 'number',
          requiresArg: true,
          describe: `Run this many seeds (1 to ${seedsMax})`,
        })
        .option('seed', {
          type: 'number',
          requiresArg: true,
          describe: 'Replay exactly this seed (0 to 4294967295), e.g. one a failed run printed',
        })
        .option('start', {
          type: 'number',
          requiresArg: true,
          describe: 'With --seeds: the first seed (default 1)',
        })
        .option('nodes', {
          type: 'number',
          requiresArg: true,
          choices: simNodeCounts,
          describe: "Cluster size (default: the simulator's)",
        })
        .option('verbose', {
          type: 'boolean',
          describe: 'Print the trace of each run',
        })
        // A leaf command: a stray word is an unknown argument, not an unknown subcommand.
        .strictCommands(false)
        .strict()
        .conflicts('seeds', 'seed')
        .conflicts('start', 'seed')
        .check((argv) => {
          checkInteger({ name: 'seeds', value: argv.seeds, min: 1, max: seedsMax });
          // The simulator's generator takes a 32-bit seed.
          checkInteger({ name: 'seed', value: argv.seed, min: 0, max: 0xffffffff });
          checkInteger({ name: 'start', value: argv.start, min: 0, max: 0xffffffff });
          checkSingle({ name: 'nodes', value: argv.nodes });
          checkSingle({ name: 'verbose', value: argv.verbose });
          return true;
        }),
    async (argv) => {
      const args: SimCliArgs = {};
      if (argv.seeds !== undefined) args.seeds = argv.seeds;
      if (argv.seed !== undefined) args.seed = argv.seed;
      if (argv.start !== undefined) args.start = argv.start;
      if (argv.nodes !== undefined) args.nodes = argv.nodes;
      if (argv.verbose !== undefined) args.verbose = argv.verbose;
      await context.run(() => runSim({ args, writeError: context.writeError }));
    },
  );
}

/** Rejects an option given more than once (yargs would hand over an array). */
function checkSingle(options: { name: string; value: unknown }): void {
  if (Array.isArray(options.value)) throw new Error(`--${options.name} was given more than once`);
}

/**
 * Validates one optional integer option. Throwing here makes yargs treat it as a usage error.
 * Repeating an option makes yargs hand over an array, so that is caught too.
 */
function checkInteger(options: { name: string; value: unknown; min: number; max: number }): void {
  const { name, value, min, max } = options;
  // `true` means the option came without a value, which requiresArg has already reported.
  if (value === undefined || value === true) return;
  checkSingle({ name, value });
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    // yargs turns a non-numeric word into NaN, which would read as gibberish in the message.
    const given =
      typeof value === 'number' && Number.isNaN(value) ? 'something that is not a number' : String(value);
    throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${given}`);
  }
}

async function runSim(options: {
  args: SimCliArgs;
  writeError: (line: string) => void;
}): Promise<ExitCode> {
  const { args, writeError } = options;
  let loaded: unknown;
  try {
    loaded = await import(simCliUrl.href);
  } catch (error) {
    writeError(`raftvip: cannot load the simulator (${simCliUrl.pathname}): ${describeError(error)}`);
    writeError('raftvip: is the project built? Run `npm run build`.');
    return exitCode.failure;
  }
  if (!isSimCliModule(loaded)) {
    writeError(`raftvip: ${simCliUrl.pathname} does not export runSimCli(args)`);
    return exitCode.failure;
  }
  const code = await loaded.runSimCli(args);
  if (code === exitCode.ok) return exitCode.ok;
  if (code !== exitCode.failure && code !== exitCode.usage) {
    writeError(`raftvip: the simulator returned an unexpected exit code ${String(code)}`);
  }
  return code === exitCode.usage ? exitCode.usage : exitCode.failure;
}

function isSimCliModule(value: unknown): value is SimCliModule {
  return (
    typeof value === 'object' &&
    value !== null &&
    'runSimCli' in value &&
    typeof (value as { runSimCli: unknown }).runSimCli === 'function'
  );
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
