// Certificates for the lab's stand-in kube-apiservers (apiserver-stub.ts) and for tests: one
// self-signed CA and, per host, a serving certificate signed by it whose subjectAltName holds the
// host's IP address, as kubeadm's apiserver.crt does. A client that trusts the CA and checks the
// backend's IP against the certificate (raftvip's health checker) therefore verifies it.
//
// Everything is made by the `openssl` command line, like test/support/process-cluster.ts, in a
// directory the caller owns (and removes): `ca.crt`/`ca.key`, then `<name>.crt`/`<name>.key`.
// Keys are EC P-256 and mode 0600. Each host certificate also carries `DNS:<name>` and both the
// serverAuth and clientAuth extended key usages, so tests can present one as a client
// certificate too. Failures are LabErrors (LAB_INVALID_OPTION, LAB_COMMAND_FAILED).

import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { labCommandFailed, labInvalidOption } from './lab-errors.js';

/** Lab certificates are made per run; a week outlives any lab or test. */
export const labCertificateValidDays = 7;
/** One openssl invocation (key generation included) takes milliseconds; this means it hangs. */
export const opensslTimeoutMs = 10_000;
/** Host certificates per call: the lab has seven hosts, tests a few more. */
export const labCertificateHostsMax = 64;
/** Names become file names and CNs: short and printable. */
const certificateNameBytesMax = 63;

export interface CertificateHost {
  /** The host's name: the certificate's CN and DNS SAN, and its files' base name. */
  readonly name: string;
  /** The host's IP literal (IPv4 or IPv6, no brackets): the certificate's IP SAN. */
  readonly address: string;
}

export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface ServingCertificates {
  /** PEM of the CA that signed every host certificate: what a client trusts. */
  readonly caFile: string;
  /** The CA's private key, for signing more certificates. */
  readonly caKeyFile: string;
  /** Each host's certificate and key, by host name. */
  readonly byName: Readonly<Record<string, CertificateFiles>>;
}

/** A fresh CA in `dir` and one serving certificate per host, signed by it. `dir` must exist.
 * Two calls with two directories give two unrelated CAs (a "wrong CA" for tests). */
export function makeServingCertificates(dir: string, options: { names: readonly CertificateHost[] }): ServingCertificates {
  const hosts = options.names;
  if (hosts.length === 0 || hosts.length > labCertificateHostsMax) {
    throw labInvalidOption('names', `expected 1 to ${labCertificateHostsMax} hosts, got ${hosts.length}`);
  }
  const seen = new Set<string>();
  for (const host of hosts) {
    if (!/^[A-Za-z0-9._-]+$/.test(host.name) || host.name.length > certificateNameBytesMax || host.name === 'ca' || host.name.startsWith('.')) {
      throw labInvalidOption('names', `name "${host.name}" must be 1 to 63 letters, digits, ".", "_" or "-" (not "ca", not starting with ".")`);
    }
    if (seen.has(host.name)) throw labInvalidOption('names', `name "${host.name}" appears twice`);
    seen.add(host.name);
    if (isIP(host.address) === 0) throw labInvalidOption('names', `address "${host.address}" of ${host.name} is not an IP literal`);
  }

  const caFile = join(dir, 'ca.crt');
  const caKeyFile = join(dir, 'ca.key');
  openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', caKeyFile, '-out', caFile, '-days', String(labCertificateValidDays), '-subj', '/CN=raftvip-lab-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  chmodSync(caKeyFile, 0o600);

  const files: Record<string, CertificateFiles> = {};
  for (const host of hosts) {
    const certFile = join(dir, `${host.name}.crt`);
    const keyFile = join(dir, `${host.name}.key`);
    const csrFile = join(dir, `${host.name}.csr`);
    const extFile = join(dir, `${host.name}.ext`);
    writeFileSync(
      extFile,
      [
        `subjectAltName=IP:${host.address},DNS:${host.name}`,
        'extendedKeyUsage=serverAuth,clientAuth',
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature',
        '',
      ].join('\n'),
    );
    openssl(dir, [
      'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${host.name}`,
    ]);
    openssl(dir, [
      'x509', '-req', '-in', csrFile, '-CA', caFile, '-CAkey', caKeyFile, '-CAcreateserial',
      '-out', certFile, '-days', String(labCertificateValidDays), '-extfile', extFile,
    ]);
    chmodSync(keyFile, 0o600);
    files[host.name] = { certFile, keyFile };
  }
  return { caFile, caKeyFile, byName: files };
}

function openssl(cwd: string, args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { cwd, timeout: opensslTimeoutMs, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    throw labCommandFailed('openssl', args, error);
  }
}
