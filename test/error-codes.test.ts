// Goal: every stable error code used in src/ is documented in docs/errors.md, and the
// documentation lists no code that the code no longer uses. Operators match on these codes.

import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const codePattern = /'(RAFTVIP_[A-Z0-9_]+)'/g;
const used = new Set<string>();
for (const file of sourceFiles(join(root, 'src'))) {
  for (const match of readFileSync(file, 'utf8').matchAll(codePattern)) used.add(match[1]!);
}
const documented = new Set([...readFileSync(join(root, 'docs/errors.md'), 'utf8').matchAll(/`(RAFTVIP_[A-Z0-9_]+)`/g)].map((m) => m[1]!));

t.ok(used.size >= 10, `found the codes in src/ (${used.size})`);
for (const code of [...used].sort()) t.ok(documented.has(code), `${code} is documented in docs/errors.md`);
for (const code of [...documented].sort()) t.ok(used.has(code), `${code} in docs/errors.md is used in src/`);
