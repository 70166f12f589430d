// A two-host L2 segment for root-only tests: a VIP holder namespace (`<prefix>-h`, veth end v0,
// 10.<net>.X.1/24) and a client namespace (`<prefix>-c`, v1, 10.<net>.X.2/24) joined by one
// veth pair, both with `lo` up and no route out. The client has arp_accept=1, which only matters
// for creating a neighbour entry from a gratuitous ARP (LAB.md). `destroy()` deletes both, and
// runs on process exit too, so nothing is left behind even if a test crashes.

import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';

export const commandTimeoutMs = 20_000;

export function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: commandTimeoutMs });
}

export class NetnsSegment {
  readonly holder: string;
  readonly client: string;
  /** The third octet of the segment's addresses, random per run. */
  readonly subnet: number;
  readonly holderAddress: string;
  readonly clientAddress: string;
  private readonly created: string[] = [];
  private readonly onExit = (): void => this.destroy();

  /** `prefix` names the namespaces (`rvpkt`, ...); `network` is the second octet (10.N.X.0/24). */
  constructor(options: { prefix: string; network: number }) {
    const name = `${options.prefix}-${randomBytes(4).toString('hex')}`;
    this.holder = `${name}-h`;
    this.client = `${name}-c`;
    this.subnet = randomInt(1, 255);
    this.holderAddress = `10.${options.network}.${this.subnet}.1`;
    this.clientAddress = `10.${options.network}.${this.subnet}.2`;
    process.once('exit', this.onExit);
    try {
      for (const namespace of [this.holder, this.client]) {
        run('ip', ['netns', 'add', namespace]);
        this.created.push(namespace);
        run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
      }
      run('ip', ['-n', this.holder, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', this.client]);
      run('ip', ['-n', this.holder, 'addr', 'add', `${this.holderAddress}/24`, 'dev', 'v0']);
      run('ip', ['-n', this.client, 'addr', 'add', `${this.clientAddress}/24`, 'dev', 'v1']);
      run('ip', ['netns', 'exec', this.client, 'sysctl', '-qw', 'net.ipv4.conf.v1.arp_accept=1']);
      run('ip', ['-n', this.holder, 'link', 'set', 'v0', 'up']);
      run('ip', ['-n', this.client, 'link', 'set', 'v1', 'up']);
    } catch (error) {
      this.destroy();
      throw error;
    }
  }

  /** v0's MAC, as `ip link` reports it. */
  holderMac(): string | undefined {
    return (JSON.parse(run('ip', ['-n', this.holder, '-j', 'link', 'show', 'v0'])) as { address: string }[])[0]?.address;
  }

  /** The client's neighbour entry (lladdr) for `address` on v1, if any. */
  clientEntry(address: string): string | undefined {
    return (JSON.parse(run('ip', ['-n', this.client, '-j', 'neigh', 'show', address, 'dev', 'v1'])) as { lladdr?: string }[])[0]?.lladdr;
  }

  destroy(): void {
    process.off('exit', this.onExit);
    while (this.created.length > 0) {
      const namespace = this.created.pop()!;
      try {
        run('ip', ['netns', 'del', namespace]);
      } catch (error) {
        process.stderr.write(`could not delete network namespace ${namespace}: ${(error as Error).message}\n`);
      }
    }
  }
}
