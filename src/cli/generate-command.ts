// `raftvip generate psk [--out FILE] [--force]`: makes a pre-shared key for cluster.auth.pskFile
// in the format the config loader reads (src/config/pre-shared-key.ts): 32 random bytes as hex.
// With --out the key goes to a new file created with mode 0600, and an existing file is never
// replaced without --force: a changed key shuts this host out until every peer has the same key.

import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Argv } from 'yargs';
import { describeFsError } from '../config/config-errors.js';
import { generatePskText, pskBytesGenerated } from '../config/pre-shared-key.js';
import { exitCode, type ExitCode } from './exit-code.js';

export interface GenerateCommandContext {
  /** Runs the command's work and records its exit code (see sim-command.ts). */
  run(action: () => Promise<ExitCode>): Promise<void>;
  /** Writes one diagnostic line to stderr (without a trailing newline). */
  writeError(line: string): void;
}

/** Mode of a key file: owner read/write only; the loader refuses anything more open. */
const pskFileMode = 0o600;

export function addGenerateCommand<T>(y: Argv<T>, context: GenerateCommandContext): Argv<T> {
  return y.command(
    'generate',
    'Generate secrets for the peer file',
    (generate) =>
      generate
        .command(
          'psk',
          `Generate a pre-shared key (${pskBytesGenerated} random bytes as hex) for cluster.auth.pskFile; ` +
            'copy the same file to every peer',
          (psk) =>
            psk
              .option('out', {
                type: 'string',
                requiresArg: true,
                describe: 'Write the key to this new file (mode 0600) instead of stdout',
              })
              .option('force', {
                type: 'boolean',
                describe: 'With --out: replace the file if it exists',
              })
              .strictCommands(false)
              .strict()
              .check((argv) => {
                for (const name of ['out', 'force'] as const) {
                  if (Array.isArray(argv[name])) throw new Error(`--${name} was given more than once`);
                }
                if (argv.force === true && argv.out === undefined) throw new Error('--force only applies with --out');
                return true;
              }),
          async (argv) => {
            const out = argv.out;
            const force = argv.force === true;
            await context.run(() => generatePsk({ out, force, writeError: context.writeError }));
          },
        )
        .demandCommand(1, 'Say what to generate (try `raftvip generate psk`).'),
  );
}

async function generatePsk(options: {
  out: string | undefined;
  force: boolean;
  writeError: (line: string) => void;
}): Promise<ExitCode> {
  const { out, force, writeError } = options;
  const text = generatePskText();
  if (out === undefined) {
    process.stdout.write(text);
    return exitCode.ok;
  }
  try {
    if (force) {
      // A fresh file renamed over the old one: the result has mode 0600 whatever the old file's
      // mode was, and a crash leaves either the old key or the new one, never half of one.
      const temporary = `${out}.${process.pid}.tmp`;
      try {
        await writeNewFile({ file: temporary, text });
        await rename(temporary, out);
      } catch (error) {
        await unlink(temporary).catch(() => undefined);
        throw error;
      }
      await syncDirectory(dirname(out));
    } else {
      await writeNewFile({ file: out, text });
      await syncDirectory(dirname(out));
    }
  } catch (error) {
    const exists = typeof error === 'object' && error !== null && 'code' in error && error.code === 'EEXIST';
    if (exists) {
      writeError(
        `raftvip: ${out} exists; not replacing it (every peer needs the same key, so a new one locks this ` +
          'host out until all have it). Pass --force to replace it.',
      );
    } else {
      writeError(`raftvip: cannot write ${out}: ${describeFsError(error)}`);
    }
    return exitCode.failure;
  }
  process.stdout.write(
    `wrote a ${pskBytesGenerated}-byte pre-shared key to ${out} (mode 0600); copy it to every peer and ` +
      'point cluster.auth.pskFile at it\n',
  );
  return exitCode.ok;
}

/** Creates `file` (failing with EEXIST if it exists) with mode 0600, writes and fsyncs it. */
async function writeNewFile(options: { file: string; text: string }): Promise<void> {
  const handle = await open(options.file, 'wx', pskFileMode);
  try {
    // The umask can only narrow the mode; this makes it exact.
    await handle.chmod(pskFileMode);
    await handle.writeFile(options.text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
