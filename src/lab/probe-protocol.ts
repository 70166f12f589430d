// What the lab's name server (name-server.ts), its probe (probe.ts) and the controller
// (lab-probe.ts) say to each other: the name server's response, the probe's target syntax, its
// output line and its limits. Pure, and free of side effects on import (the two scripts run
// main() when loaded), so the controller and unit tests can import it.

/** Attempts in flight at once; a probe tick that finds this many starts none. */
export const probeAttemptsInFlightMax = 256;
export const probeIntervalMsMin = 1;
export const probeIntervalMsMax = 60_000;
export const probeTimeoutMsMin = 1;
export const probeTimeoutMsMax = 60_000;

/** What the name server writes on every connection: a complete HTTP/1.0 response whose body is
 * the name and a newline (so `curl` and a raw read both see it). */
export function nameResponse(name: string): string {
  return `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${name}\n`;
}

/** The name in a name-server response: the body's first line once it is complete; null while
 * it is not (or when there is no name). Text without an HTTP header is taken as the body. */
export function nameFromResponse(text: string): string | null {
  const headerEnd = text.indexOf('\r\n\r\n');
  let body: string;
  if (headerEnd !== -1) body = text.slice(headerEnd + 4);
  else if (text.startsWith('HTTP/')) return null;
  else body = text;
  const newline = body.indexOf('\n');
  if (newline === -1) return null;
  const name = body.slice(0, newline).trim();
  return name.length > 0 ? name : null;
}

/** `10.213.0.100:80` or `[fd72:7276::100]:80`; null for anything else. */
export function parseTarget(target: string): { host: string; port: number } | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(target);
  if (!match) return null;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  return { host: match[1] ?? match[2]!, port };
}

/** One finished probe attempt, one JSON line on the probe's stdout. `start` and `end` are
 * CLOCK_MONOTONIC ms; `host` is the name read (null when the attempt failed); `error` an errno
 * code such as ECONNREFUSED, ETIMEDOUT (the probe's own timeout) or EPROTO (closed without a
 * name), null on success. */
export interface ProbeAttempt {
  start: number;
  end: number;
  ok: boolean;
  host: string | null;
  error: string | null;
}
