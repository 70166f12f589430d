// `raftvip run`, `raftvip status` and `raftvip transfer-leadership`: the daemon and the two
// commands that talk to it through its admin API (the address comes from the same config file).

import { formatEndpoint } from '../lb/data-plane.js';
import type { Argv } from 'yargs';
import { loadConfig } from '../config/load-config.js';
import { Daemon, type DaemonStatus } from '../daemon/daemon.js';
import { exitCode, type ExitCode } from './exit-code.js';

export interface CommandContext {
  run(action: () => Promise<ExitCode>): Promise<void>;
  writeError(line: string): void;
}

/** How long the CLI waits for the admin API. */
export const adminRequestTimeoutMs = 3000;

export function addDaemonCommands(parser: Argv, context: CommandContext): void {
  parser.command(
    'run',
    'Run the raftvip daemon in the foreground (systemd runs this). SIGTERM hands leadership over first',
    (run) =>
      run
        .option('node-id', { type: 'string', requiresArg: true, describe: 'This host\'s peer id, when the config has no node.id and it cannot be detected' })
        .option('join', { type: 'boolean', default: false, describe: 'Join an existing cluster (start without bootstrap membership; wait to be added)' })
        .strict(),
    async (argv) => {
      await context.run(() => runDaemon({ configFile: String(argv.config), nodeId: argv['node-id'] as string | undefined, join: Boolean(argv.join) }));
    },
  );
  parser.command(
    'status',
    'Show this node\'s view of the cluster: role, term, leader, lease, peers',
    (status) =>
      status
        .option('json', { type: 'boolean', default: false, describe: 'Print the admin API\'s JSON' })
        .option('node-id', { type: 'string', requiresArg: true, describe: 'This host\'s peer id, if it cannot be detected' })
        .strict(),
    async (argv) => {
      await context.run(async () => {
        const config = await loadConfig(String(argv.config), { nodeId: argv['node-id'] as string | undefined, readSecrets: false });
        const response = await adminRequest(config.admin, 'GET', '/status');
        if (response.status !== 200) {
          context.writeError(`raftvip: the admin API answered ${response.status}: ${response.text.trim()}`);
          return exitCode.failure;
        }
        if (argv.json) process.stdout.write(response.text);
        else process.stdout.write(formatStatus(JSON.parse(response.text) as DaemonStatus));
        return exitCode.ok;
      });
    },
  );
  parser.command(
    'transfer-leadership',
    'Hand leadership and its lease to another voter (the most up-to-date one unless --to is given); run on the leader',
    (transfer) =>
      transfer
        .option('to', { type: 'string', requiresArg: true, describe: 'The peer id to hand over to' })
        .option('node-id', { type: 'string', requiresArg: true, describe: 'This host\'s peer id, if it cannot be detected' })
        .strict(),
    async (argv) => {
      await context.run(async () => {
        const config = await loadConfig(String(argv.config), { nodeId: argv['node-id'] as string | undefined, readSecrets: false });
        const status = JSON.parse((await adminRequest(config.admin, 'GET', '/status')).text) as DaemonStatus;
        if (status.role !== 'leader') {
          context.writeError(
            `raftvip: ${status.id} is not the leader (${status.leader === null ? 'no leader known' : `the leader is ${status.leader}`}); run this on the leader`,
          );
          return exitCode.failure;
        }
        const body = argv.to === undefined ? '' : JSON.stringify({ to: argv.to });
        const response = await adminRequest(config.admin, 'POST', '/leadership/transfer', body);
        const result = JSON.parse(response.text) as { ok: boolean; transferee?: string; code?: string; message?: string };
        if (!result.ok) {
          context.writeError(`raftvip: ${result.code ?? 'error'}: ${result.message ?? response.text}`);
          return exitCode.failure;
        }
        process.stdout.write(`handing leadership from ${status.id} to ${result.transferee ?? '?'}\n`);
        return exitCode.ok;
      });
    },
  );  addMembersCommand(parser, context);
}

function addMembersCommand(parser: Argv, context: CommandContext): void {
  parser.command(
    'members <action> <id>',
    'Add or remove one voter through the Raft log (run on the leader). A new host first runs `raftvip run --join`',
    (members) =>
      members
        .positional('action', { choices: ['add', 'remove'] as const, describe: 'add or remove' })
        .positional('id', { type: 'string', describe: 'The peer id' })
        .option('address', { type: 'string', requiresArg: true, describe: 'With add: HOST:PORT of a peer not in the peer file' })
        .option('node-id', { type: 'string', requiresArg: true, describe: 'This host\'s peer id, if it cannot be detected' })
        .strict(),
    async (argv) => {
      await context.run(async () => {
        const config = await loadConfig(String(argv.config), { nodeId: argv['node-id'] as string | undefined, readSecrets: false });
        const body = JSON.stringify({ action: argv.action, id: argv.id, ...(argv.address !== undefined ? { address: argv.address } : {}) });
        const response = await adminRequest(config.admin, 'POST', '/members', body, { timeoutMs: 15_000 });
        const result = JSON.parse(response.text) as { ok: boolean; voters?: string[]; index?: number; code?: string; message?: string };
        if (!result.ok) {
          context.writeError(`raftvip: ${result.code ?? 'error'}: ${result.message ?? response.text}`);
          return exitCode.failure;
        }
        process.stdout.write(`${argv.action === 'add' ? 'added' : 'removed'} ${String(argv.id)} at index ${result.index ?? '?'}; voters now: ${(result.voters ?? []).join(', ')}\n`);
        return exitCode.ok;
      });
    },
  );
}

async function runDaemon(options: { configFile: string; nodeId: string | undefined; join: boolean }): Promise<ExitCode> {
  const config = await loadConfig(options.configFile, options.nodeId === undefined ? {} : { nodeId: options.nodeId });
  const daemon = new Daemon({ config, join: options.join });
  let stopRequested: (() => void) | null = null;
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  const stop = (signal: string) => {
    daemon.log.info({ signal }, `received ${signal}: stopping (a leader hands over first)`);
    stopRequested?.();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    loadConfig(options.configFile, options.nodeId === undefined ? {} : { nodeId: options.nodeId }).then(
      (next) => {
        const { applied, needsRestart } = daemon.reload(next);
        daemon.log.info({ applied, needsRestart }, needsRestart.length > 0
          ? `SIGHUP: applied ${applied.join(', ') || 'nothing'}; changed sections that need a restart (systemctl restart raftvip): ${needsRestart.join(', ')}`
          : `SIGHUP: applied ${applied.join(', ') || 'nothing (no change)'}`);
      },
      (error: unknown) => daemon.log.error({ err: error instanceof Error ? error.message : String(error) }, 'SIGHUP: the configuration is invalid; keeping the running one'),
    );
  });
  try {
    await daemon.start();
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  await stopped;
  await daemon.stop();
  return exitCode.ok;
}

async function adminRequest(
  admin: { host: string; port: number },
  method: 'GET' | 'POST',
  path: string,
  body?: string,
  options: { timeoutMs: number } = { timeoutMs: adminRequestTimeoutMs },
): Promise<{ status: number; text: string }> {
  const host = admin.host.includes(':') ? `[${admin.host}]` : admin.host;
  try {
    const response = await fetch(`http://${host}:${admin.port}${path}`, {
      method,
      ...(body ? { body, headers: { 'content-type': 'application/json' } } : {}),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    return { status: response.status, text: await response.text() };
  } catch (error) {
    throw new Error(`cannot reach the raftvip admin API at ${host}:${admin.port} (is the daemon running?): ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function formatStatus(status: DaemonStatus): string {
  const lines = [
    `node      ${status.id} (cluster ${status.cluster}, raftvip ${status.version})`,
    `role      ${status.role}, term ${status.term}`,
    `leader    ${status.leader ?? 'none known'}`,
    `lease     ${status.lease.held ? `held, ${status.lease.expiresInMs ?? 0} ms left` : 'not held'}`,
    `log       commit ${status.commitIndex}, applied ${status.appliedIndex}, last ${status.lastIndex}`,
    `voters    ${status.voters.join(', ')}`,
    `vip       ${status.vip.address} ${status.vip.held ? 'held here' : 'not held here'}`,
    '',
    'peer      address                  voter  connected  match   rtt',
  ];
  for (const peer of status.peers) {
    lines.push(
      `${peer.id.padEnd(9)} ${peer.address.padEnd(24)} ${(peer.voter ? 'yes' : 'no').padEnd(6)} ${(peer.connected ? 'yes' : 'no').padEnd(10)} ` +
        `${String(peer.matchIndex ?? '-').padEnd(7)} ${peer.rttMs === null ? '-' : `${peer.rttMs} ms`}`,
    );
  }
  const lb = status.loadBalancer;
  lines.push('');
  if (!lb.enabled) {
    lines.push('lb        disabled (loadBalancer.enabled: false)');
  } else {
    const warning = lb.noReadyBackend ? '  NO READY BACKEND: new connections are refused' : '';
    lines.push(`lb        ${lb.service} ${lb.dataPlane} ${lb.scheduler}, ${lb.backendsReady} of ${lb.backendsTotal} backends ready${warning}`);
    if (lb.lastError !== null) lines.push(`          last error ${lb.lastError.at}: ${lb.lastError.message}`);
    lines.push('backend                  ready  since                     weight  kernel  conns  last error');
    for (const backend of lb.backends) {
      const conns = backend.activeConnections === null ? '-' : `${backend.activeConnections}/${backend.inactiveConnections ?? 0}`;
      lines.push(
        `${formatEndpoint(backend.address, backend.port).padEnd(24)} ${(backend.ready ? 'yes' : 'no').padEnd(6)} ${backend.since.padEnd(25)} ` +
          `${String(backend.weight).padEnd(7)} ${String(backend.kernelWeight ?? '-').padEnd(7)} ${conns.padEnd(6)} ${backend.lastError ?? '-'}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
