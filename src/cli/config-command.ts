// `raftvip config check [FILE]`: validates a peer file exactly as the daemon would load it
// (src/config/load-config.ts), prints a one-line summary when it is good, and every problem as
// `FILE:line:col: path: message` when it is not. Exit 0 when good, 1 when not (or unreadable),
// 2 for a wrong command line.

import type { Argv } from 'yargs';
import { ConfigError, ConfigReadError, formatConfigIssue, loadConfig, type Config } from '../config/load-config.js';
import { exitCode, type ExitCode } from './exit-code.js';

export interface ConfigCommandContext {
  /** Runs the command's work and records its exit code (see sim-command.ts). */
  run(action: () => Promise<ExitCode>): Promise<void>;
  /** Writes one diagnostic line to stderr (without a trailing newline). */
  writeError(line: string): void;
}

/** Adds `config check` to a yargs instance that has the global `--config` option. */
export function addConfigCommand<T extends { config: string }>(y: Argv<T>, context: ConfigCommandContext): Argv<T> {
  return y.command(
    'config',
    'Work with the peer file',
    (config) =>
      config
        .command(
          'check [file]',
          'Validate a peer file as the daemon would load it: print "FILE: ok (...)", or every problem as ' +
            'FILE:line:col: key: message (exit 1)',
          (check) =>
            check
              .positional('file', {
                type: 'string',
                describe: 'The peer file (default: the --config file)',
              })
              .option('node-id', {
                type: 'string',
                requiresArg: true,
                describe:
                  "Check the file as this peer's host would load it, when the file has no node.id " +
                  '(default: the peer whose address is on this host)',
              })
              // A leaf command: a stray word is an unknown argument, not an unknown subcommand.
              .strictCommands(false)
              .strict()
              .check((argv) => {
                for (const name of ['config', 'node-id', 'file'] as const) {
                  if (Array.isArray(argv[name])) throw new Error(`--${name} was given more than once`);
                }
                return true;
              }),
          async (argv) => {
            const file = argv.file ?? argv.config;
            const nodeId = argv['node-id'];
            await context.run(() => checkConfig({ file, nodeId, writeError: context.writeError }));
          },
        )
        .demandCommand(1, 'No config command given (try `raftvip config check`).'),
  );
}

async function checkConfig(options: {
  file: string;
  nodeId: string | undefined;
  writeError: (line: string) => void;
}): Promise<ExitCode> {
  const { file, nodeId, writeError } = options;
  let config: Config;
  try {
    config = await loadConfig(file, nodeId === undefined ? {} : { nodeId });
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const issue of error.issues) writeError(formatConfigIssue(issue));
      writeError(`${file}: invalid (${error.issues.length === 1 ? '1 error' : `${error.issues.length} errors`})`);
      return exitCode.failure;
    }
    if (error instanceof ConfigReadError) {
      writeError(`raftvip: ${error.message}`);
      return exitCode.failure;
    }
    throw error;
  }
  const peers = config.cluster.peers.length === 1 ? '1 peer' : `${config.cluster.peers.length} peers`;
  process.stdout.write(`${file}: ok (node ${config.node.id}, ${peers}, auth ${config.cluster.auth.kind})\n`);
  const healthCheck = config.loadBalancer.healthCheck;
  if (config.loadBalancer.enabled && healthCheck.caPending) {
    process.stdout.write(`${file}: note: loadBalancer.healthCheck.caFile ${healthCheck.caFile ?? ''} does not exist yet; backends fail their health check until it does (kubeadm init creates the cluster CA)\n`);
  }
  return exitCode.ok;
}
