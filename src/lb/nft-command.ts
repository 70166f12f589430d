// Runs the `nft` command (the nftables package's CLI), which both data planes use: the
// nftables one for its whole `raftvip_lb` table, the IPVS one for its `raftvip_ipvs` masquerade
// table. One place for the process handling: a script on stdin (one transaction), output capped,
// a timeout that kills it. The callers turn the result into their own typed errors.

import { spawn } from 'node:child_process';

/** Longest wait for one `nft` run; it normally takes a few milliseconds. */
export const nftRunTimeoutMs = 5_000;
/** Most output kept from one `nft` run, per stream (a listing of our table is a few KiB). */
export const nftOutputBytesMax = 1024 * 1024;

export interface NftResult {
  /** null when nft was killed (timeout). */
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `nft ARGS` with `input` on stdin. Resolves with how it ended; rejects only when nft
 * cannot be run at all (ENOENT: the nftables package is missing). */
export function runNft(args: readonly string[], input: string, options: { nftPath?: string } = {}): Promise<NftResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.nftPath ?? 'nft', [...args], { stdio: ['pipe', 'pipe', 'pipe'], timeout: nftRunTimeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (stdout.length < nftOutputBytesMax) stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < nftOutputBytesMax) stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ exitCode, stdout, stderr }));
    child.stdin.on('error', () => {}); // nft exiting early shows in its exit code
    child.stdin.end(input);
  });
}

/** nft's complaint in one line (its first lines joined), for an error message. */
export function nftStderrSummary(stderr: string): string {
  return stderr.trim().split('\n').slice(0, 6).join(' | ');
}
