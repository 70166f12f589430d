// `raftvip vip release`, the command systemd's ExecStopPost runs after the daemon died: removes
// every copy of the VIP from this host, whatever the lease. Exit 0 whether a copy was removed or
// none was there; 1 only when the config cannot be read or the kernel refused (the message says
// why).
//
// Speed matters here: a daemon killed while holding the VIP leaves it on this host until this
// command has run, and another host may claim it ~200 ms after the kill. So this module imports
// only the config loader and the netlink table (no yargs, no logger, no packet sockets: a release
// never announces), and bin/raftvip calls it directly for exactly `vip release [--config FILE]`
// (measured: ~0.12 s from exec to exit, against ~0.35 s through the full command line).

import { configFileDefault, loadConfig } from '../config/load-config.js';
import { VipExecutor } from '../vip/vip-executor.js';
import { exitCode, type ExitCode } from './exit-code.js';

export async function releaseVip(options: { configFile: string; writeError: (line: string) => void }): Promise<ExitCode> {
  let vipAddress = '(unknown)';
  let addresses: { close(): void } | undefined;
  try {
    const config = await loadConfig(options.configFile, { readSecrets: false });
    vipAddress = config.vip.address;
    const { NetlinkAddresses } = await import('../vip/netlink-addresses.js');
    const table = new NetlinkAddresses();
    addresses = table;
    const executor = new VipExecutor({
      vip: { address: config.vip.address, family: config.vip.family },
      interface: config.vip.interface,
      addresses: table,
      openPacketSocket: () => {
        throw new Error('a release never announces');
      },
      hardwareAddress: () => {
        throw new Error('a release never announces');
      },
      clock: () => performance.now(),
      log: () => {},
    });
    const removed = await executor.releaseCopies();
    if (removed.length === 0) process.stdout.write(`VIP ${config.vip.address} not present\n`);
    for (const copy of removed) process.stdout.write(`removed VIP ${config.vip.address} from ${copy.interface}\n`);
    return exitCode.ok;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    const message = error instanceof Error ? error.message : String(error);
    options.writeError(`raftvip: cannot release VIP ${vipAddress}: ${message}${typeof code === 'string' ? ` (${code})` : ''}`);
    return exitCode.failure;
  } finally {
    addresses?.close();
  }
}

/**
 * The fast path bin/raftvip takes: the arguments, if they are exactly `vip release` with at most
 * one `--config FILE` (or `--config=FILE`), in any order; null for anything else, which goes to
 * the full command line (help, errors and all).
 */
export function fastVipReleaseArgs(args: readonly string[]): { configFile: string } | null {
  const rest: string[] = [];
  let configFile: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--config' && i + 1 < args.length && !args[i + 1]!.startsWith('-')) {
      if (configFile !== null) return null;
      configFile = args[++i]!;
    } else if (arg.startsWith('--config=') && arg.length > '--config='.length) {
      if (configFile !== null) return null;
      configFile = arg.slice('--config='.length);
    } else {
      rest.push(arg);
    }
  }
  if (rest.length !== 2 || rest[0] !== 'vip' || rest[1] !== 'release') return null;
  return { configFile: configFile ?? configFileDefault };
}

/** Entry for bin/raftvip's fast path; sets the exit code. */
export async function main(args: readonly string[]): Promise<boolean> {
  const fast = fastVipReleaseArgs(args);
  if (fast === null) return false;
  process.exitCode = await releaseVip({ configFile: fast.configFile, writeError: (line) => process.stderr.write(`${line}\n`) });
  return true;
}
