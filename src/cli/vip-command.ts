// `raftvip vip release`: removes every copy of the VIP from this host, whatever the lease, for
// systemd's ExecStopPost (so a daemon that died without releasing cannot leave the VIP behind).
// Idempotent: exit 0 whether a copy was removed or none was there; exit 1 only when the kernel
// could not be read or changed (the message says why), 2 for a wrong command line.

import type { Argv } from 'yargs';
import { loadConfig } from '../config/load-config.js';
import { VipExecutor } from '../vip/vip-executor.js';
import { exitCode, type ExitCode } from './exit-code.js';

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

async function releaseVip(options: { configFile: string; writeError: (line: string) => void }): Promise<ExitCode> {
  const config = await loadConfig(options.configFile, { readSecrets: false });
  // Loaded here, not at the top: the rest of the CLI must not need the native shims.
  const { NetlinkAddresses } = await import('../vip/netlink-addresses.js');
  const packetSocket = await import('../vip/packet-socket.js');
  let addresses: InstanceType<typeof NetlinkAddresses> | undefined;
  let executor: VipExecutor | undefined;
  try {
    addresses = new NetlinkAddresses();
    executor = new VipExecutor({
      vip: { address: config.vip.address, family: config.vip.family },
      interface: config.vip.interface,
      addresses,
      openPacketSocket: (interfaceName, protocol) => packetSocket.PacketSocket.open(interfaceName, protocol),
      hardwareAddress: packetSocket.hardwareAddress,
      clock: () => performance.now(),
      log: () => {},
    });
    const removed = await executor.releaseCopies();
    if (removed.length === 0) process.stdout.write(`VIP ${config.vip.address} not present\n`);
    for (const copy of removed) process.stdout.write(`removed VIP ${config.vip.address} from ${copy.interface}\n`);
    return exitCode.ok;
  } catch (error) {
    options.writeError(`raftvip: cannot release VIP ${config.vip.address}: ${error instanceof Error ? error.message : String(error)}`);
    return exitCode.failure;
  } finally {
    executor?.close();
    addresses?.close();
  }
}
