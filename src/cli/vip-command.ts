// `raftvip vip ...` in the full command line. `vip release` itself is in vip-release.ts, which
// bin/raftvip also calls directly (without yargs) for speed; here it gets --help and usage errors.

import type { Argv } from 'yargs';
import type { ExitCode } from './exit-code.js';
import { releaseVip } from './vip-release.js';

export interface VipCommandContext {
  run(action: () => Promise<ExitCode>): Promise<void>;
  writeError(line: string): void;
}

/** Adds `vip release` to a yargs instance that has the global `--config` option. */
export function addVipCommand<T extends { config: string }>(y: Argv<T>, context: VipCommandContext): Argv<T> {
  return y.command(
    'vip',
    'Act on the VIP on this host',
    (vip) =>
      vip
        .command(
          'release',
          'Remove every copy of the VIP from this host (for systemd ExecStopPost). Exit 0 whether or not it was there',
          (release) => release.strictCommands(false).strict(),
          async (argv) => {
            await context.run(() => releaseVip({ configFile: String(argv.config), writeError: context.writeError }));
          },
        )
        .demandCommand(1, 'No vip command given (try `raftvip vip release`).'),
  );
}
