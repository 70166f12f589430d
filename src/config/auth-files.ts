// Checks of the files cluster.auth names: they must exist, be regular files readable by this
// user, hold what they claim (a key, a certificate), and the secret ones (pskFile, tls.keyFile)
// must not be open to group or others. Run at load time so the daemon refuses to start, and
// `raftvip config check` complains, before any peer connection could fail for the same reason.

import { constants } from 'node:fs';
import { access, open } from 'node:fs/promises';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { resolve } from 'node:path';
import { describeFsError } from './config-errors.js';
import type { ConfigAuth, DraftAuth } from './config-schema.js';
import type { ConfigLoadBalancer, DraftLoadBalancer } from './load-balancer-schema.js';
import { decodePsk, pskFileSizeBytesMax } from './pre-shared-key.js';
import type { Located, YamlReader } from './yaml-reader.js';

/** Largest certificate or key file read. */
export const pemFileSizeBytesMax = 1024 * 1024;

type ReadResult = { readonly ok: true; readonly data: Buffer } | { readonly ok: false };

/** Reads and checks the auth files; problems go to `reader`. */
export async function readAuthFiles(options: {
  auth: DraftAuth;
  /** Relative paths are resolved against this (the peer file's directory). */
  baseDir: string;
  reader: YamlReader;
  /** False for commands that only talk to the local admin API: the secret files are named but
   * neither opened nor checked (the PSK comes back empty), so they run without root. */
  readSecrets?: boolean;
}): Promise<ConfigAuth | undefined> {
  const { auth, baseDir, reader } = options;
  if (options.readSecrets === false) {
    switch (auth.kind) {
      case 'insecure':
        return { kind: 'insecure' };
      case 'psk':
        return { kind: 'psk', pskFile: resolve(baseDir, auth.pskFile.value), psk: Buffer.alloc(0) };
      case 'tls':
        return {
          kind: 'tls',
          caFile: resolve(baseDir, auth.caFile.value),
          certFile: resolve(baseDir, auth.certFile.value),
          keyFile: resolve(baseDir, auth.keyFile.value),
        };
    }
  }
  switch (auth.kind) {
    case 'insecure':
      return { kind: 'insecure' };
    case 'psk': {
      const path = resolve(baseDir, auth.pskFile.value);
      const where = { reader, located: auth.pskFile, path: 'cluster.auth.pskFile' };
      const read = await readCheckedFile({ ...where, file: path, secret: true, sizeBytesMax: pskFileSizeBytesMax });
      if (!read.ok) return undefined;
      const decoded = decodePsk(read.data.toString('latin1'));
      if (!decoded.ok) {
        report({ ...where, message: `${path} ${decoded.message}` });
        return undefined;
      }
      return { kind: 'psk', pskFile: path, psk: decoded.key };
    }
    case 'tls': {
      const caFile = resolve(baseDir, auth.caFile.value);
      const certFile = resolve(baseDir, auth.certFile.value);
      const keyFile = resolve(baseDir, auth.keyFile.value);
      const caWhere = { reader, located: auth.caFile, path: 'cluster.auth.tls.caFile' };
      const certWhere = { reader, located: auth.certFile, path: 'cluster.auth.tls.certFile' };
      const keyWhere = { reader, located: auth.keyFile, path: 'cluster.auth.tls.keyFile' };
      const [ca, cert, key] = await Promise.all([
        readCheckedFile({ ...caWhere, file: caFile, secret: false, sizeBytesMax: pemFileSizeBytesMax }),
        readCheckedFile({ ...certWhere, file: certFile, secret: false, sizeBytesMax: pemFileSizeBytesMax }),
        readCheckedFile({ ...keyWhere, file: keyFile, secret: true, sizeBytesMax: pemFileSizeBytesMax }),
      ]);
      const caCertificate = ca.ok ? parseCertificate({ ...caWhere, file: caFile, data: ca.data }) : undefined;
      const certificate = cert.ok ? parseCertificate({ ...certWhere, file: certFile, data: cert.data }) : undefined;
      const privateKey = key.ok ? parsePrivateKey({ ...keyWhere, file: keyFile, data: key.data }) : undefined;
      if (certificate !== undefined && privateKey !== undefined && !certificate.checkPrivateKey(privateKey)) {
        report({ ...keyWhere, message: `${keyFile} is not the private key of the certificate in ${certFile}` });
        return undefined;
      }
      if (caCertificate === undefined || certificate === undefined || privateKey === undefined) return undefined;
      return { kind: 'tls', caFile, certFile, keyFile };
    }
  }
}

/** Reads and checks the files loadBalancer.healthCheck names (caFile, certFile, keyFile) and
 * returns the section with absolute paths and the files' contents; problems go to `reader`. */
export async function readHealthCheckFiles(options: {
  loadBalancer: DraftLoadBalancer;
  baseDir: string;
  reader: YamlReader;
  /** As for readAuthFiles: false names the files without opening them. */
  readSecrets?: boolean;
}): Promise<ConfigLoadBalancer | undefined> {
  const { loadBalancer, baseDir, reader } = options;
  const draft = loadBalancer.healthCheck;
  const path = (located: Located<string> | null): string | null => (located === null ? null : resolve(baseDir, located.value));
  const caFile = path(draft.caFile);
  const certFile = path(draft.certFile);
  const keyFile = path(draft.keyFile);
  const section = (tls: ConfigLoadBalancer['healthCheck']['tls'], caPending = false): ConfigLoadBalancer => ({
    ...loadBalancer,
    healthCheck: { ...draft, caFile, certFile, keyFile, tls, caPending },
  });
  if (options.readSecrets === false || !loadBalancer.enabled) return section({ ca: null, cert: null, key: null });
  // A caFile that does not exist yet is allowed: raftvip starts before `kubeadm init` creates
  // the cluster CA. Any other problem with it (not readable, not PEM) is an error as usual.
  let caPending = false;
  if (caFile !== null) {
    try {
      await access(caFile, constants.F_OK);
    } catch (error) {
      caPending = (error as NodeJS.ErrnoException).code === 'ENOENT';
    }
  }

  const prefix = 'loadBalancer.healthCheck';
  const read = async (located: Located<string> | null, file: string | null, key: string, secret: boolean): Promise<Buffer | null | undefined> => {
    if (located === null || file === null) return null;
    const where = { reader, located, path: `${prefix}.${key}` };
    const result = await readCheckedFile({ ...where, file, secret, sizeBytesMax: pemFileSizeBytesMax });
    return result.ok ? result.data : undefined;
  };
  const [ca, cert, key] = await Promise.all([
    caPending ? null : read(draft.caFile, caFile, 'caFile', false),
    read(draft.certFile, certFile, 'certFile', false),
    read(draft.keyFile, keyFile, 'keyFile', true),
  ]);
  let valid = ca !== undefined && cert !== undefined && key !== undefined;
  if (ca && draft.caFile !== null && caFile !== null) {
    valid = parseCertificate({ reader, located: draft.caFile, path: `${prefix}.caFile`, file: caFile, data: ca }) !== undefined && valid;
  }
  const certificate =
    cert && draft.certFile !== null && certFile !== null ? parseCertificate({ reader, located: draft.certFile, path: `${prefix}.certFile`, file: certFile, data: cert }) : null;
  const privateKey =
    key && draft.keyFile !== null && keyFile !== null ? parsePrivateKey({ reader, located: draft.keyFile, path: `${prefix}.keyFile`, file: keyFile, data: key }) : null;
  if (certificate === undefined || privateKey === undefined) valid = false;
  if (certificate && privateKey && draft.keyFile !== null && !certificate.checkPrivateKey(privateKey)) {
    report({ reader, located: draft.keyFile, path: `${prefix}.keyFile`, message: `${keyFile} is not the private key of the certificate in ${certFile}` });
    valid = false;
  }
  if (!valid || ca === undefined || cert === undefined || key === undefined) return undefined;
  return section({ ca, cert, key }, caPending);
}

interface Where {
  readonly reader: YamlReader;
  readonly located: Located<string>;
  readonly path: string;
}

function report(options: Where & { message: string }): void {
  options.reader.report({ at: options.located.node, path: options.path, message: options.message });
}

/** Opens without following the file's own type blindly: O_NONBLOCK so a FIFO cannot hang the
 * loader, fstat on the open handle so the checks and the read see the same file. */
async function readCheckedFile(options: Where & { file: string; secret: boolean; sizeBytesMax: number }): Promise<ReadResult> {
  const { file, secret, sizeBytesMax } = options;
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    report({ ...options, message: `cannot read ${file}: ${describeFsError(error)}${openHint({ error, options })}` });
    return { ok: false };
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      report({ ...options, message: `${file} is not a regular file` });
      return { ok: false };
    }
    // A mode problem is reported, and the content is still checked, so one run shows both;
    // the reported issue alone keeps the configuration from loading.
    if (secret && (stats.mode & 0o077) !== 0) {
      const mode = (stats.mode & 0o777).toString(8).padStart(4, '0');
      report({
        ...options,
        message: `${file} is readable or writable by group or others (mode ${mode}); it holds a secret: run \`chmod 600 ${file}\``,
      });
    }
    if (stats.size > sizeBytesMax) {
      report({ ...options, message: `${file} is ${stats.size} bytes, more than the ${sizeBytesMax} such a file can hold` });
      return { ok: false };
    }
    const data = await handle.readFile();
    return { ok: true, data };
  } catch (error) {
    report({ ...options, message: `cannot read ${file}: ${describeFsError(error)}` });
    return { ok: false };
  } finally {
    await handle.close();
  }
}

function openHint(options: { error: unknown; options: Where }): string {
  const code = typeof options.error === 'object' && options.error !== null && 'code' in options.error ? options.error.code : null;
  if (code === 'ENOENT' && options.options.path === 'cluster.auth.pskFile') {
    return ' (create it with `raftvip generate psk --out FILE` and copy it to every peer)';
  }
  if (code === 'EACCES') return ' (run as the user the daemon runs as, usually root)';
  return '';
}

function parseCertificate(options: Where & { file: string; data: Buffer }): X509Certificate | undefined {
  try {
    return new X509Certificate(options.data);
  } catch (error) {
    report({ ...options, message: `${options.file} does not hold a PEM certificate: ${describeCryptoError(error)}` });
    return undefined;
  }
}

function parsePrivateKey(options: Where & { file: string; data: Buffer }): KeyObject | undefined {
  try {
    return createPrivateKey(options.data);
  } catch (error) {
    const encrypted = /ENCRYPTED/.test(options.data.toString('latin1'));
    const message = encrypted
      ? `${options.file} holds an encrypted private key; raftvip needs it unencrypted (protected by file mode 0600)`
      : `${options.file} does not hold a PEM private key: ${describeCryptoError(error)}`;
    report({ ...options, message });
    return undefined;
  }
}

function describeCryptoError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
