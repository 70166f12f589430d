#!/usr/bin/env node
// Runs tap (configured by .taprc), passes its output through unchanged, and ends with one plain
// line, "tests: N passed, N failed[, N skipped]", that any CI log reader understands. The exit
// code is tap's own; a run whose summary cannot be found fails.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const tapBin = fileURLToPath(new URL('../node_modules/.bin/tap', import.meta.url));
const child = spawn(tapBin, process.argv.slice(2), { stdio: ['ignore', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4096);
});
child.on('close', (code, signal) => {
  const match = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: \d+)? \}/.exec(tail);
  if (!match) {
    console.log('tests: no summary from tap; treating the run as failed');
    process.exit(code === 0 ? 1 : (code ?? 1));
  }
  const passed = Number(match[2]);
  const failed = Number(match[3] ?? 0);
  const skipped = Number(match[4] ?? 0);
  console.log(`tests: ${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
  if (signal) process.exit(1);
  process.exit(code ?? 1);
});
