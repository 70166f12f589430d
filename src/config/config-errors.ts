// Typed errors of the configuration loader. A peer file is either accepted whole or rejected
// with every problem in it at once, each pinned to a line and column, so an operator fixes a
// file in one pass instead of one error per restart. The codes are stable (docs/errors.md).

/** One problem in a peer file. `line` and `col` are 1-based and point at the offending value
 * (at the key for an unknown key, at the enclosing map for a missing key). `path` names the key
 * as `cluster.peers[1].address`; it is empty for YAML syntax errors and file-level problems. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly path: string;
  readonly message: string;
}

/** `FILE:line:col: path: message`, or `FILE:line:col: message` when there is no key path. */
export function formatConfigIssue(issue: ConfigIssue): string {
  const where = `${issue.file}:${issue.line}:${issue.col}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

/** Orders issues as they appear in the file; issues at the same place keep their order. */
export function sortConfigIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  return issues
    .map((issue, order) => ({ issue, order }))
    .sort((a, b) => a.issue.line - b.issue.line || a.issue.col - b.issue.col || a.order - b.order)
    .map(({ issue }) => issue);
}

/** The peer file is not valid: YAML syntax, schema, or a file it names (pskFile, tls.*). */
export class ConfigError extends Error {
  readonly code = 'RAFTVIP_CONFIG_INVALID' as const;
  readonly file: string;
  /** Every problem found, in file order; never empty. */
  readonly issues: readonly ConfigIssue[];

  constructor(options: { file: string; issues: readonly ConfigIssue[] }) {
    const issues = Object.freeze(sortConfigIssues(options.issues).map((issue) => Object.freeze({ ...issue })));
    const count = issues.length === 1 ? '1 error' : `${issues.length} errors`;
    super(`${options.file}: ${count}\n${issues.map(formatConfigIssue).join('\n')}`);
    this.name = 'ConfigError';
    this.file = options.file;
    this.issues = issues;
  }
}

/** The peer file itself could not be read (missing, permissions, a directory). */
export class ConfigReadError extends Error {
  readonly code = 'RAFTVIP_CONFIG_UNREADABLE' as const;
  readonly file: string;

  constructor(options: { file: string; cause: unknown }) {
    super(`cannot read config file ${options.file}: ${describeFsError(options.cause)}`, { cause: options.cause });
    this.name = 'ConfigReadError';
    this.file = options.file;
  }
}

/** `no such file or directory` rather than Node's `ENOENT: no such file or directory, open '…'`,
 * because the caller already names the file. */
export function describeFsError(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    const reason = fsErrorReasons[error.code];
    if (reason !== undefined) return reason;
    return error instanceof Error ? error.message : error.code;
  }
  return error instanceof Error ? error.message : String(error);
}

const fsErrorReasons: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOTDIR: 'a component of the path is not a directory',
  ELOOP: 'too many levels of symbolic links',
  EEXIST: 'file exists',
};
