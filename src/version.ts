// The raftvip version, read from the project's package.json so there is one source of truth.
//
// The path is resolved from this module's own compiled location (dist/src/version.js →
// ../../package.json), not from the working directory, so `bin/raftvip --version` answers the
// same wherever it is started from.

import { readFileSync } from 'node:fs';

/** Where package.json sits relative to the compiled dist/src/version.js. */
export const packageJsonUrl: URL = new URL('../../package.json', import.meta.url);

let cachedVersion: string | undefined;

/**
 * Returns the `version` field of package.json. Throws if the file cannot be read or carries no
 * version string: a checkout without one is broken, and saying so beats printing "undefined".
 */
export function readVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  const text = readFileSync(packageJsonUrl, 'utf8');
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || !('version' in parsed)) {
    throw new Error(`${packageJsonUrl.pathname}: no "version" field`);
  }
  const version = (parsed as { version: unknown }).version;
  if (typeof version !== 'string' || version.length === 0) {
    throw new Error(`${packageJsonUrl.pathname}: "version" is not a non-empty string`);
  }
  cachedVersion = version;
  return version;
}
