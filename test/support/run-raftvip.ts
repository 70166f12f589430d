// Runs `bin/raftvip` as a real process for tests and collects its exit code and output.

import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const binPath = join(repoRoot, 'bin/raftvip');

/** A CLI run that has not finished in this time is hung, not slow. */
export const runTimeoutMs = 60_000;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runRaftvip(args: readonly string[], options: { cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], {
      cwd: options.cwd ?? repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: runTimeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
