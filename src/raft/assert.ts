// Invariant checks that stay on in production. A broken invariant means the process state can
// no longer be trusted: it throws an AssertionError that nothing catches, the process exits, and
// systemd restarts it from durable storage. Operating conditions are never asserted; they are
// typed errors with a stable code (see docs/errors.md).

export class RaftAssertionError extends Error {
  override readonly name = 'RaftAssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new RaftAssertionError(`invariant broken: ${message}`);
}
