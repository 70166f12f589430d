// Goal: replay every golden Raft scenario in test/golden/*.txt (see test/support/interaction.ts
// for the commands) and prove that the core still does, message for message, what each file
// records, and that every `expect-*` assertion in them holds.
//
// To regenerate the expected outputs after an intended change to the core, run
//   npx tsc -p tsconfig.json && RAFTVIP_REWRITE=1 npx tap dist/test/golden.test.js
// and review the diff of test/golden/ line by line before keeping it: a rewrite records
// whatever the core does, right or wrong. A failing `expect-*` fails in rewrite mode too, and
// its block keeps the output written in the file.
//
// A file with a `# known-bug: <reason>` comment is written as Raft requires and records a
// core bug that is not fixed yet: its failures are reported as TODO (the suite stays green),
// and once it passes completely the harness fails until the known-bug line is removed. Such a
// file is never rewritten: the outputs after the bug are written by hand, as Raft requires.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ExpectationError, InteractionEnv, parseScenario, renderScenario } from './support/interaction.js';

// This file runs as dist/test/golden.test.js; the scenarios stay in the source tree.
const goldenDir = fileURLToPath(new URL('../../test/golden', import.meta.url));
const rewrite = process.env['RAFTVIP_REWRITE'] === '1';

const files = readdirSync(goldenDir)
  .filter((name) => name.endsWith('.txt'))
  .sort();

t.ok(files.length > 0, `scenario files in ${goldenDir}`);

for (const name of files) {
  t.test(name, async (t) => {
    const path = join(goldenDir, name);
    const scenario = parseScenario(readFileSync(path, 'utf8'));
    const knownBug = scenario.knownBugs.length > 0 ? scenario.knownBugs.join('; ') : null;
    const todo = knownBug === null ? {} : { todo: `known core bug: ${knownBug}` };
    const env = new InteractionEnv();
    const outputs: string[] = [];
    let failures = 0;
    for (const block of scenario.blocks) {
      const where = `${name}:${block.lineNumber}: ${block.command.line}`;
      let actual: string;
      try {
        actual = env.run(block.command);
      } catch (error) {
        failures++;
        t.fail(`${where}: ${(error as Error).message}`, todo);
        if (!(error instanceof ExpectationError)) return;
        // The expectation changed nothing: go on, and keep what the file says it should print.
        actual = block.expected ?? 'ok';
      }
      outputs.push(actual);
      if (rewrite || actual === block.expected) continue;
      failures++;
      // Only a mismatch is an assertion of its own, so that tap shows the diff.
      t.equal(actual, block.expected ?? '', `${where}: output differs`, todo);
    }
    if (!rewrite && failures === 0) t.pass(`${name}: ${scenario.blocks.length} commands as recorded`);
    if (rewrite && knownBug !== null) {
      t.pass(`${name}: not rewritten (known-bug file; its outputs are written by hand)`);
    } else if (rewrite) {
      writeFileSync(path, renderScenario(scenario, outputs));
      t.pass(`${name}: rewrote ${outputs.length} outputs`);
    }
    if (knownBug !== null && failures === 0 && !rewrite) {
      t.fail(`${name} passes: the known bug (${knownBug}) looks fixed; remove its known-bug line`);
    }
  });
}
