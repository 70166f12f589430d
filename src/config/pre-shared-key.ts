// The pre-shared key file format (cluster.auth.pskFile), shared by the config loader, which reads
// it, and `raftvip generate psk`, which writes it.
//
// Format: one line of text holding the key as hex (even number of digits, either case) or as
// base64 (standard or URL-safe alphabet, padding optional). Whitespace around it, such as the
// final newline, is ignored. Text that is valid hex is read as hex, so 64 hex digits are 32
// bytes, never 48 bytes of base64. The decoded key must be at least pskBytesMin bytes: it keys
// the HMAC that authenticates every peer connection, and 256 bits puts guessing out of reach.

import { randomBytes } from 'node:crypto';

/** Minimum key material after decoding. */
export const pskBytesMin = 32;
/** What `raftvip generate psk` writes. */
export const pskBytesGenerated = 32;
/** Largest key file read; a bigger file is not a key (and is not read into memory). */
export const pskFileSizeBytesMax = 4096;

export type PskDecoded = { readonly ok: true; readonly key: Buffer } | { readonly ok: false; readonly message: string };

const formatHint = `expected one line of hex (${pskBytesMin * 2} or more hex digits) or base64 holding at least ${pskBytesMin} bytes; create one with \`raftvip generate psk --out FILE\``;

/** Decodes the content of a key file. */
export function decodePsk(text: string): PskDecoded {
  const body = text.trim();
  if (body === '') return { ok: false, message: `is empty; ${formatHint}` };
  if (/\s/.test(body)) return { ok: false, message: `holds more than one word or line; ${formatHint}` };
  let key: Buffer;
  let encoding: string;
  if (/^[0-9a-fA-F]+$/.test(body) && body.length % 2 === 0) {
    key = Buffer.from(body, 'hex');
    encoding = 'hex';
  } else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(body) && body.replace(/=+$/, '').length % 4 !== 1) {
    key = Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    encoding = 'base64';
  } else {
    return { ok: false, message: `is neither hex nor base64; ${formatHint}` };
  }
  if (key.length < pskBytesMin) {
    return {
      ok: false,
      message: `holds ${key.length} bytes of key (read as ${encoding}), fewer than the ${pskBytesMin} required; ${formatHint}`,
    };
  }
  return { ok: true, key };
}

/** A fresh key file's content: pskBytesGenerated random bytes as hex, with a final newline. */
export function generatePskText(): string {
  return `${randomBytes(pskBytesGenerated).toString('hex')}\n`;
}
