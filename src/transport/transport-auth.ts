// How peers prove who they are: the three auth modes, their validation, and the TLS options
// for each side of a connection. Everything about TLS versions, cipher suites and certificate
// names is decided here; the transport only asks "which node is on the other end?".
//
// - psk: TLS 1.3 with an external pre-shared key (OpenSSL's PSK callbacks), key exchange
//   psk_dhe_ke (X25519), so a leaked key does not decrypt recorded traffic. The PSK identity is
//   the client's node id; the server accepts it only if it names a peer. TLS 1.3 through these
//   callbacks binds the key to SHA-256, so only the SHA-256 suites work (TLS_AES_256_GCM_SHA384
//   fails the handshake in Node 20 / OpenSSL 3.0); see docs/transport.md.
// - tls: mutual TLS 1.3 with a cluster CA. A node's certificate names its node id as a
//   subjectAltName DNS entry (the CN is ignored, as RFC 6125 asks); the same certificate serves
//   as client and server certificate. A client checks that the server it dialled is the peer it
//   meant; a server maps the client certificate to exactly one peer id.
// - insecure: plain TCP, no authentication; the sender's claimed id is trusted. Only for labs.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { ConnectionOptions, PeerCertificate, TlsOptions } from 'node:tls';
import type { NodeId } from '../raft/types.js';
import { TransportOptionError } from './transport-errors.js';
import { pskBytesMax, pskBytesMin } from './transport-limits.js';

export type TransportAuth =
  | { readonly kind: 'psk'; readonly psk: Buffer }
  | { readonly kind: 'tls'; readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer }
  | { readonly kind: 'insecure' };

/** TLS 1.3 suites usable with an external PSK through Node's pskCallback (SHA-256 only). */
export const pskCipherSuites = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
/** Both modes speak TLS 1.3 only: every node runs raftvip, so there is no one to downgrade for. */
export const tlsVersion = 'TLSv1.3';

/** A node id as a DNS label, which is what a certificate can name. */
const dnsLabelPattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Checks the auth option; throws TransportOptionError. */
export function validateAuth(auth: TransportAuth, self: NodeId): void {
  switch (auth.kind) {
    case 'psk':
      if (!Buffer.isBuffer(auth.psk)) throw new TransportOptionError({ option: 'auth.psk', detail: 'is not a Buffer' });
      if (auth.psk.length < pskBytesMin || auth.psk.length > pskBytesMax) {
        throw new TransportOptionError({ option: 'auth.psk', detail: `is ${auth.psk.length} bytes; it must be ${pskBytesMin}..${pskBytesMax} bytes` });
      }
      return;
    case 'tls': {
      const parse = (option: string, pem: Buffer): X509Certificate => {
        try {
          return new X509Certificate(pem);
        } catch (error) {
          throw new TransportOptionError({ option, detail: `is not a PEM certificate (${(error as Error).message})` });
        }
      };
      const ca = parse('auth.ca', auth.ca);
      const cert = parse('auth.cert', auth.cert);
      if (!ca.ca) throw new TransportOptionError({ option: 'auth.ca', detail: 'is not a CA certificate (basicConstraints CA:TRUE)' });
      if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
        throw new TransportOptionError({ option: 'auth.cert', detail: `is not signed by the cluster CA (${ca.subject.replace(/\n/g, ', ')})` });
      }
      if (!certificateNodeIds(cert.subjectAltName).includes(self.toLowerCase())) {
        throw new TransportOptionError({
          option: 'auth.cert',
          detail: `does not name this node: it needs subjectAltName DNS:${self} (it has ${cert.subjectAltName ?? 'no subjectAltName'})`,
        });
      }
      try {
        if (!cert.checkPrivateKey(createPrivateKey(auth.key))) {
          throw new TransportOptionError({ option: 'auth.key', detail: 'does not belong to auth.cert' });
        }
      } catch (error) {
        if (error instanceof TransportOptionError) throw error;
        throw new TransportOptionError({ option: 'auth.key', detail: `is not a PEM private key (${(error as Error).message})` });
      }
      return;
    }
    case 'insecure':
      return;
    default: {
      const unknownAuth: never = auth;
      throw new TransportOptionError({ option: 'auth.kind', detail: `"${String((unknownAuth as { kind: unknown }).kind)}" is not psk, tls or insecure` });
    }
  }
}

/** Checks a node id against what the auth mode can carry (certificates need a DNS label). */
export function validatePeerIdForAuth(auth: TransportAuth, id: string, option: string): void {
  if (auth.kind === 'tls' && !dnsLabelPattern.test(id)) {
    throw new TransportOptionError({ option, detail: `"${id}" is not a lower-case DNS label, so no certificate can name it` });
  }
}

/** The node ids a certificate names: its subjectAltName DNS entries that are DNS labels,
 * lower-cased. Node's `subjectaltname` string quotes entries holding commas or quotes; those
 * never match a label, so they are ignored rather than parsed. */
export function certificateNodeIds(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined || subjectAltName === '') return [];
  const ids: string[] = [];
  for (const part of subjectAltName.split(', ')) {
    if (!part.startsWith('DNS:')) continue;
    const name = part.slice('DNS:'.length).toLowerCase();
    if (dnsLabelPattern.test(name)) ids.push(name);
  }
  return ids;
}

/** Options for the listening side; `pskCallback` maps an identity to the key or null. */
export function serverTlsOptions(
  auth: Exclude<TransportAuth, { kind: 'insecure' }>,
  pskCallback: NonNullable<TlsOptions['pskCallback']>,
): TlsOptions {
  const common: TlsOptions = { minVersion: tlsVersion, maxVersion: tlsVersion };
  switch (auth.kind) {
    case 'psk':
      return { ...common, ciphers: pskCipherSuites, pskCallback };
    case 'tls':
      // The chain is verified, but a failure is judged by the transport (socket.authorized)
      // rather than by Node tearing the socket down silently, so the refusal can be logged
      // with its reason and the remote address. Nothing is read from an unauthorized socket.
      return { ...common, ca: auth.ca, cert: auth.cert, key: auth.key, requestCert: true, rejectUnauthorized: false };
  }
}

/** Options for dialling `peer` (without the socket). */
export function clientTlsOptions(auth: Exclude<TransportAuth, { kind: 'insecure' }>, self: NodeId, peer: NodeId): ConnectionOptions {
  const common: ConnectionOptions = { minVersion: tlsVersion, maxVersion: tlsVersion };
  switch (auth.kind) {
    case 'psk':
      return {
        ...common,
        ciphers: pskCipherSuites,
        pskCallback: () => ({ psk: auth.psk, identity: self }),
        // There is no server certificate: the server proves itself by completing the handshake
        // with the shared key. That it is the peer we dialled is checked by the server's
        // `to === self` rule on every message (a mis-addressed peer drops us and logs it).
        checkServerIdentity: () => undefined,
      };
    case 'tls':
      return {
        ...common,
        ca: auth.ca,
        cert: auth.cert,
        key: auth.key,
        servername: peer,
        rejectUnauthorized: true,
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const names = certificateNodeIds(cert.subjectaltname);
          if (names.includes(peer.toLowerCase())) return undefined;
          return Object.assign(new Error(`the server certificate names ${names.length === 0 ? 'no node id' : names.join(', ')}, not the dialled peer ${peer}`), {
            code: 'ERR_TLS_CERT_ALTNAME_INVALID',
          });
        },
      };
  }
}
