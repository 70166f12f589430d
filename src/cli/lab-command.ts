// `raftvip lab` and `raftvip lab demo`: real raftvip hosts on this one machine, in network
// namespaces (src/lab). Root only. The lab code is loaded only when one of them runs.

import type { Argv } from 'yargs';
import { exitCode, type ExitCode } from './exit-code.js';
import { labHostsMax, labHostsMin } from '../lab/lab-network.js';

export interface LabCommandContext {
  run(action: () => Promise<ExitCode>): Promise<void>;
  writeError(line: string): void;
}

function needsRoot(context: LabCommandContext): boolean {
  if (process.getuid?.() === 0) return false;
  context.writeError('raftvip: the lab needs root: it creates network namespaces, a bridge and veth pairs (run it with sudo)');
  return true;
}

const output = { write: (text: string) => void process.stdout.write(text), isTTY: process.stdout.isTTY === true };

export function addLabCommand<T>(y: Argv<T>, context: LabCommandContext): Argv<T> {
  return y.command(
    'lab',
    'Run real raftvip hosts on this machine (root): network namespaces on one bridge, a daemon and a name server per host, ' +
      'a client probing the VIP; kept until Ctrl-C, then torn down. `raftvip lab demo` shows a failover',
    (lab) =>
      lab
        .option('hosts', { type: 'number', default: 3, describe: `Hosts in the lab (${labHostsMin} to ${labHostsMax})` })
        .check((argv) => {
          const hosts = argv.hosts;
          if (!Number.isInteger(hosts) || hosts < labHostsMin || hosts > labHostsMax) throw new Error(`--hosts must be a whole number from ${labHostsMin} to ${labHostsMax}`);
          return true;
        })
        .command(
          'demo',
          'Three hosts: show who holds the VIP, then crash, power off and stop the holder in turn, printing the outage the client saw',
          (demo) => demo.strict(),
          async () => {
            await context.run(async () => {
              if (needsRoot(context)) return exitCode.failure;
              const { runLabDemo } = await import('../lab/lab-demo.js');
              return (await runLabDemo(output)) === 0 ? exitCode.ok : exitCode.failure;
            });
          },
        ),
    async (argv) => {
      await context.run(async () => {
        if (needsRoot(context)) return exitCode.failure;
        const { runLab } = await import('../lab/lab-demo.js');
        return (await runLab(output, { hosts: argv.hosts })) === 0 ? exitCode.ok : exitCode.failure;
      });
    },
  );
}
