// Parsing of the addresses a peer file holds: `host:port` with an IPv4 literal, `[IPv6]:port`,
// and bare IP literals. Hostnames are refused on purpose: raftvip runs before the cluster it
// serves, often before DNS, and an address that resolves differently on two hosts would give two
// peers different views of who is who. Addresses come out in one canonical spelling, so
// `[fd00:0::1]:7480` and `[fd00::1]:7480` compare equal.

import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface IpLiteral {
  /** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, shortest form), no brackets. */
  readonly host: string;
  readonly family: IpFamily;
}

export interface HostPort extends IpLiteral {
  readonly port: number;
  /** `10.0.0.11:7480` or `[fd00::11]:7480`. */
  readonly address: string;
}

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

export const portMin = 1;
export const portMax = 65535;

/** Parses `10.0.0.11:7480` or `[fd00::11]:7480`. Messages say what to write instead. */
export function parseHostPort(text: string): Parsed<HostPort> {
  let hostText: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail(`"${text}" has no closing "]"; write an IPv6 address as [fd00::11]:7480`);
    hostText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest === '') return fail(`"${text}" has no port; write it as [${hostText}]:7480`);
    if (!rest.startsWith(':')) return fail(`"${text}": expected ":port" after "]"`);
    portText = rest.slice(1);
    if (!isIPv6(hostText) || hostText.includes('%')) {
      return fail(`"${hostText}" is not an IPv6 address literal (zone ids like %eth0 are not accepted)`);
    }
  } else {
    const colons = text.split(':').length - 1;
    if (colons === 0) return fail(`"${text}" has no port; write it as host:port, e.g. 10.0.0.11:7480`);
    if (colons > 1) return fail(`"${text}": an IPv6 address needs brackets, e.g. [fd00::11]:7480`);
    const colon = text.indexOf(':');
    hostText = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (!isIPv4(hostText)) return fail(notIpMessage(hostText));
  }
  const port = parsePort(portText);
  if (!port.ok) return port;
  const ip = canonicalIp(hostText);
  const address = ip.family === 6 ? `[${ip.host}]:${port.value}` : `${ip.host}:${port.value}`;
  return { ok: true, value: { ...ip, port: port.value, address } };
}

/** Parses a bare IP literal (`10.0.0.100`, `fd00::100`), as vip.address takes it. */
export function parseIpLiteral(text: string): Parsed<IpLiteral> {
  if (isIPv4(text)) return { ok: true, value: canonicalIp(text) };
  if (isIPv6(text) && !text.includes('%')) return { ok: true, value: canonicalIp(text) };
  if (text.startsWith('[')) return fail(`"${text}": write the address without brackets`);
  if (parseHostPort(text).ok) return fail(`"${text}" has a port; give the address alone`);
  return fail(notIpMessage(text));
}

/** 127.0.0.0/8 or ::1. */
export function isLoopback(ip: IpLiteral): boolean {
  return ip.family === 4 ? ip.host.startsWith('127.') : ip.host === '::1';
}

/** 0.0.0.0 or ::, which no host can own. */
export function isUnspecified(ip: IpLiteral): boolean {
  return ip.host === '0.0.0.0' || ip.host === '::';
}

/** 224.0.0.0/4, 255.255.255.255 or ff00::/8: addresses that cannot be a unicast VIP. */
export function isMulticastOrBroadcast(ip: IpLiteral): boolean {
  if (ip.family === 6) return ip.host.startsWith('ff');
  const first = Number(ip.host.split('.')[0]);
  return (first >= 224 && first <= 239) || ip.host === '255.255.255.255';
}

/**
 * Canonical spelling of an address reported by the operating system (os.networkInterfaces):
 * zone ids are dropped, IPv6 is shortened. Returns null for anything that is not an IP literal.
 */
export function canonicalLocalAddress(text: string): string | null {
  const withoutZone = text.split('%')[0] ?? '';
  if (isIPv4(withoutZone) || isIPv6(withoutZone)) return canonicalIp(withoutZone).host;
  return null;
}

function canonicalIp(text: string): IpLiteral {
  if (isIPv4(text)) return { host: text, family: 4 };
  // The WHATWG URL parser implements RFC 5952 serialisation; the host is known to be valid.
  const host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  return { host, family: 6 };
}

function parsePort(text: string): Parsed<number> {
  if (!/^[0-9]{1,5}$/.test(text)) return fail(`port "${text}" is not a number from ${portMin} to ${portMax}`);
  const port = Number(text);
  if (port < portMin || port > portMax) return fail(`port ${port} is out of range ${portMin} to ${portMax}`);
  return { ok: true, value: port };
}

function notIpMessage(host: string): string {
  if (host === '') return 'the host is empty; give an IP address, e.g. 10.0.0.11';
  if (/^[0-9.]+$/.test(host)) return `"${host}" is not a valid IPv4 address (four numbers 0 to 255, no leading zeros)`;
  return `"${host}" is not an IP address literal; hostnames are not accepted (raftvip must work before DNS does)`;
}

function fail(message: string): { ok: false; message: string } {
  return { ok: false, message };
}
