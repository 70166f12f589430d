// Reading and writing the sysctls the data planes need (forwarding, IPVS's conntrack switch), in
// /proc/sys of the calling process's network namespace. Paths are relative to /proc/sys, with
// slashes: `net/ipv4/ip_forward`.

import { readFile, writeFile } from 'node:fs/promises';

/** The value without its newline, or null when the sysctl does not exist here. Other failures
 * (EACCES, ...) are thrown as they come. */
export async function readSysctl(path: string): Promise<string | null> {
  try {
    return (await readFile(`/proc/sys/${path}`, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

export async function writeSysctl(path: string, value: string): Promise<void> {
  await writeFile(`/proc/sys/${path}`, `${value}\n`);
}
