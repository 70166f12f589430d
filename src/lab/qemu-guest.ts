// The qemu guest: boots Debian's kernel under qemu (software emulation, TCG) and runs one command
// in it as root, for the tests that need what this machine's kernel lacks (IPVS; see LAB.md, "Real
// IPVS in a guest kernel"). It owns finding the guest kernel (`guestKernel`), unpacking it for a
// direct PVH boot (`extractVmlinux`), building the initramfs (`buildInitramfs`: busybox, the
// virtio/9p/overlay modules in dependency order, /init, as a newc cpio archive written by
// `encodeCpioNewc`), the qemu process (started and killed by its PID only), its serial console,
// the timeout, and the per-run temp directory. Nothing here is part of the daemon.
//
// How one run goes (`runInGuest`):
// 1. A fresh temp directory (the *control* directory) receives the initramfs, the uncompressed
//    kernel and the stage-two script. qemu boots with three 9p shares: the host's `/` read-only
//    (tag `root`), the caller's `shareDir` (tag `share`) and the control directory (tag
//    `control`), both writable. The guest has no network device: nothing it does can leave it.
// 2. /init (busybox, in the initramfs) mounts proc, sysfs and devtmpfs, insmods the modules,
//    mounts the host's `/` over 9p, puts an overlay with a tmpfs upper layer on it (the guest may
//    write anywhere; its writes vanish at power-off), mounts a fresh tmpfs on /run (not on /tmp:
//    the checkout may be under the host's /tmp), then the two writable shares at their host
//    paths (a share may be under /tmp), moves /proc /sys
//    /dev into the new root and `exec chroot`s into it, running stage two with the host's /bin/sh.
//    The chroot must be done by PID 1 itself: PID 1 shares its fs_struct with kthreadd
//    (CLONE_FS), so its chroot also moves the root the kernel's usermode helper runs in, and
//    `request_module` then runs the host's /sbin/modprobe against the host's /lib/modules:
//    ip_vs, nf_tables, veth and bridge load on demand. A chroot in a child process leaves the
//    helper looking for modprobe in the initramfs.
// 3. Stage two (still PID 1) mounts /dev/pts, /dev/shm and cgroup2, brings `lo` up, runs the
//    command in `cwd`, writes its exit code to the control directory, syncs and powers off. qemu
//    runs with -no-reboot, so the power-off (or a kernel panic: panic=-1) ends it.
// 4. The host reads the exit code. No exit code (the guest did not boot, or did not finish in time
//    and qemu was killed) is a LAB_GUEST_FAILED error carrying the serial console's tail.
//
// The guest sees the checkout, node_modules and /usr/bin/node at the same paths as the host, so
// the command can be `node dist/...` with `cwd` the repository root. The host's root is cached
// in the guest (9p cache=loose): files changed on the host during a run may not be seen.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { labGuestFailed, labInvalidOption } from './lab-errors.js';
import { monotonicNowMs } from './monotonic-clock.js';

/** The emulator; x86_64 guests only (the Debian kernel this machine's packages install). */
const qemuBinary = 'qemu-system-x86_64';
/** The static busybox from Debian's busybox-static: the initramfs's only program; stage two
 * calls it by this path for mount, hostname and poweroff (it is on the host's root too). */
const busyboxCandidates = ['/bin/busybox', '/usr/bin/busybox'] as const;

/** Guest memory: node processes and the tmpfs overlay share it (LAB.md measured with 1 GiB). */
export const guestMemoryMbDefault = 1024;
export const guestMemoryMbMin = 256;
export const guestMemoryMbMax = 8192;
/** Virtual CPUs; TCG runs one host thread per vCPU (thread=multi), and the VMs have two cores. */
export const guestCpus = 2;
/** Bounds of `timeoutMs`: below the minimum the kernel cannot even boot under emulation. */
export const guestRunTimeoutMsMin = 10_000;
export const guestRunTimeoutMsMax = 30 * 60_000;
/** Serial console text kept per run; older lines are dropped first. */
export const serialLogBytesMax = 8 * 1024 * 1024;
/** Lines of the serial console an error carries. */
export const serialLogTailLinesMax = 80;
/** 9p message size: the default 8 KiB makes every read of node and node_modules cost many round
 * trips; virtio-9p on Linux 6.1 accepts up to about 500 KB. */
const ninepMessageBytes = 512 * 1024;
/** /init retries a 9p mount while the virtio devices are still being probed: 50 × 0.1 s. */
const initMountAttemptsMax = 50;
const initMountRetryIntervalS = 0.1;
/** The largest module file (decompressed) the initramfs takes; the biggest here is ~300 KB. */
const moduleBytesMax = 64 * 1024 * 1024;
/**
 * The guest kernel's command line:
 * - console=ttyS0: every kernel and guest line goes to the serial port, which is qemu's stdout;
 * - panic=-1: a panic reboots at once, and -no-reboot turns that into qemu's exit;
 * - quiet: only warnings and errors from the kernel (each serial byte is slow under TCG);
 * - mitigations=off: no speculative-execution workarounds in a throw-away test guest.
 */
const guestKernelCommandLine = 'console=ttyS0 panic=-1 quiet mitigations=off';

/** The modules /init loads: the virtio PCI transport, 9p over virtio, overlayfs. Their
 * dependencies (virtio, virtio_ring, netfs, fscache, ...) come from modules.dep. */
export const initramfsModules = ['virtio_pci', '9pnet', '9pnet_virtio', '9p', 'overlay'] as const;

/** Lines the guest itself prints on the serial console start with this (the host stamps them). */
export const guestMarkerPrefix = 'raftvip-guest:';
const markerInitStarted = `${guestMarkerPrefix} init started`;
const markerCommandStarting = `${guestMarkerPrefix} starting the command`;
/** The control directory's file names. */
const initramfsFileName = 'initramfs.cpio';
const stageTwoFileName = 'stage-two.sh';
const exitCodeFileName = 'exit-code';
const vmlinuxFileName = 'vmlinux';

/** A kernel the guest can boot: its image and the modules directory of the same release. */
export interface GuestKernel {
  /** `uname -r` inside the guest, e.g. `6.1.0-56-amd64`. */
  readonly release: string;
  /** The bzImage (/boot/vmlinuz-RELEASE). */
  readonly imagePath: string;
  readonly modulesDir: string;
  /** /boot/config-RELEASE says CONFIG_PVH=y: qemu can start the uncompressed kernel directly. */
  readonly pvh: boolean;
}

/** How qemu loaded the kernel: the uncompressed vmlinux through its PVH entry point, or the
 * bzImage (firmware, real-mode setup, then the kernel decompresses itself under emulation). */
export type GuestBootImage = 'vmlinux-pvh' | 'bzimage';

export interface RunInGuestOptions {
  /** argv of the command, run as root in the guest; `command[0]` is looked up in PATH. */
  readonly command: readonly string[];
  /** A host directory mounted writable at the same path in the guest: the command's results. */
  readonly shareDir: string;
  /** The command's working directory (a host path; the guest sees the host's files). */
  readonly cwd: string;
  /** From qemu's start to its exit; then qemu is killed and the run fails. */
  readonly timeoutMs: number;
  readonly memoryMb?: number;
  /** Every line of the serial console (the kernel's, /init's and the command's), without the
   * line end, as it arrives. */
  readonly onSerialLine?: (line: string) => void;
}

/** When the run's phases ended, in ms (CLOCK_MONOTONIC, host side). */
export interface GuestTimings {
  /** Finding the kernel, resolving the modules and writing the initramfs. */
  readonly initramfsBuildMs: number;
  /** Unpacking the uncompressed kernel from the bzImage (see `extractVmlinux`). */
  readonly kernelExtractMs: number;
  /** From spawning qemu to /init's first line (qemu start and the kernel's boot). */
  readonly qemuStartToInitMs: number | null;
  /** From spawning qemu to stage two's "starting the command" line. */
  readonly qemuStartToCommandMs: number | null;
  /** From "starting the command" to qemu's exit (the command, then sync and power-off). */
  readonly commandToExitMs: number | null;
}

export interface GuestRunResult {
  /** The command's exit status as the guest's shell reported it (128 + N for signal N). */
  readonly exitCode: number;
  /** Everything the serial console printed (up to `serialLogBytesMax`, the newest kept). */
  readonly serialLog: string;
  /** From the call to qemu's exit. */
  readonly durationMs: number;
  readonly kernel: GuestKernel;
  readonly bootImage: GuestBootImage;
  readonly timings: GuestTimings;
}

// ---- Kernel and modules -------------------------------------------------------------------------

/** The newest /boot/vmlinuz-RELEASE whose /lib/modules/RELEASE/modules.dep exists. */
export function guestKernel(options: { bootDir?: string; modulesRoot?: string } = {}): GuestKernel {
  const bootDir = options.bootDir ?? '/boot';
  const modulesRoot = options.modulesRoot ?? '/lib/modules';
  const names = existsSync(bootDir) ? readdirSync(bootDir) : [];
  const kernels = names
    .filter((name) => name.startsWith('vmlinuz-'))
    .map((name): GuestKernel => {
      const release = name.slice('vmlinuz-'.length);
      const configPath = join(bootDir, `config-${release}`);
      const pvh = existsSync(configPath) && /^CONFIG_PVH=y$/m.test(readFileSync(configPath, 'utf8'));
      return { release, imagePath: join(bootDir, name), modulesDir: join(modulesRoot, release), pvh };
    })
    .filter((kernel) => existsSync(join(kernel.modulesDir, 'modules.dep')))
    .sort((a, b) => b.release.localeCompare(a.release, 'en', { numeric: true }));
  const newest = kernels[0];
  if (newest === undefined) {
    throw labGuestFailed(
      `no guest kernel: no ${bootDir}/vmlinuz-RELEASE with ${modulesRoot}/RELEASE/modules.dep (found: ${names.join(', ') || 'nothing'}); ` +
        'scripts/setup.sh installs linux-image-amd64',
    );
  }
  return newest;
}

/** A module's name as modprobe spells it: `kernel/net/9p/9pnet_virtio.ko.xz` → `9pnet_virtio`. */
function moduleName(path: string): string {
  return basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

interface ModuleEntry {
  readonly name: string;
  /** Relative to the modules directory. */
  readonly path: string;
  readonly dependencies: readonly string[];
}

/** The modules to insmod for `wanted`, each after its dependencies, with their files. Modules
 * built into the kernel (modules.builtin) need no file and are left out. */
export function resolveModules(kernel: GuestKernel, wanted: readonly string[]): ModuleEntry[] {
  const entries = new Map<string, ModuleEntry>();
  for (const line of readFileSync(join(kernel.modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const dependencies = line.slice(colon + 1).trim().split(/\s+/).filter((dep) => dep !== '').map(moduleName);
    entries.set(moduleName(path), { name: moduleName(path), path, dependencies });
  }
  const builtinFile = join(kernel.modulesDir, 'modules.builtin');
  const builtin = new Set(existsSync(builtinFile) ? readFileSync(builtinFile, 'utf8').split('\n').filter(Boolean).map(moduleName) : []);
  const ordered: ModuleEntry[] = [];
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (name: string, neededBy: string): void => {
    const normal = name.replaceAll('-', '_');
    if (done.has(normal)) return;
    if (visiting.has(normal)) throw labGuestFailed(`modules.dep of ${kernel.release} has a dependency cycle through ${normal}`);
    const entry = entries.get(normal);
    if (entry === undefined) {
      if (builtin.has(normal)) {
        done.add(normal);
        return;
      }
      throw labGuestFailed(`kernel ${kernel.release} has no module ${normal} (needed by ${neededBy}) in ${kernel.modulesDir}`);
    }
    visiting.add(normal);
    for (const dependency of entry.dependencies) visit(dependency, normal);
    visiting.delete(normal);
    done.add(normal);
    ordered.push(entry);
  };
  for (const name of wanted) visit(name, 'the initramfs');
  return ordered;
}

/** A module file, uncompressed: busybox insmod hands the bytes to init_module as they are. */
function readModule(path: string): Buffer {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.ko.gz')) return gunzipSync(readFileSync(path));
  const decompressor = path.endsWith('.ko.xz') ? 'xz' : path.endsWith('.ko.zst') ? 'zstd' : null;
  if (decompressor === null) throw labGuestFailed(`module ${path}: unknown compression`);
  return execFileSync(decompressor, ['-dc', path], { maxBuffer: moduleBytesMax });
}

// ---- Uncompressed kernel ------------------------------------------------------------------------

/** Offsets in a bzImage's setup header (Documentation/x86/boot.rst, boot protocol >= 2.08). */
const bzImageSetupSectorsOffset = 0x1f1;
const bzImageHeaderMagicOffset = 0x202;
const bzImageHeaderMagic = 'HdrS';
const bzImageVersionOffset = 0x206;
const bzImagePayloadVersionMin = 0x208;
const bzImagePayloadOffsetOffset = 0x248;
const bzImagePayloadLengthOffset = 0x24c;
/** The compressed payload ends with the uncompressed size (4 bytes) that the decompressors
 * refuse as trailing garbage. */
const bzImagePayloadSizeTrailerBytes = 4;
/** Payload compressions this can undo, by their magic bytes: Debian's is xz, Ubuntu's zstd. */
const payloadDecompressors = [
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), command: 'xz', args: ['-dc', '--single-stream'] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), command: 'zstd', args: ['-dc'] },
] as const;
const elfMagic = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * Writes the kernel inside a bzImage, uncompressed (an ELF vmlinux), to `outputPath`. Returns
 * false when the image is not a bzImage this can unpack (an old boot protocol, an unknown
 * compression, a decompressor that fails): the caller then boots the bzImage itself.
 *
 * Why: under TCG the firmware's real-mode setup and the kernel decompressing itself cost about
 * 2.2 s of every boot; xz on the host takes about 0.8 s for Debian's 66 MB kernel (measured).
 */
export function extractVmlinux(options: { imagePath: string; outputPath: string }): boolean {
  const image = readFileSync(options.imagePath);
  if (image.length < bzImagePayloadLengthOffset + 4) return false;
  if (image.toString('latin1', bzImageHeaderMagicOffset, bzImageHeaderMagicOffset + 4) !== bzImageHeaderMagic) return false;
  if (image.readUInt16LE(bzImageVersionOffset) < bzImagePayloadVersionMin) return false;
  const setupSectors = image.readUInt8(bzImageSetupSectorsOffset) || 4;
  const payloadStart = (setupSectors + 1) * 512 + image.readUInt32LE(bzImagePayloadOffsetOffset);
  const payloadEnd = payloadStart + image.readUInt32LE(bzImagePayloadLengthOffset) - bzImagePayloadSizeTrailerBytes;
  if (payloadEnd <= payloadStart || payloadEnd > image.length) return false;
  const payload = image.subarray(payloadStart, payloadEnd);
  const decompressor = payloadDecompressors.find((candidate) => payload.subarray(0, candidate.magic.length).equals(candidate.magic));
  if (decompressor === undefined) return false;
  const output = openSync(options.outputPath, 'w');
  try {
    const result = spawnSync(decompressor.command, [...decompressor.args], { input: payload, stdio: ['pipe', output, 'pipe'] });
    if (result.error !== undefined || result.status !== 0) return false;
  } finally {
    closeSync(output);
  }
  const head = Buffer.alloc(elfMagic.length);
  const fd = openSync(options.outputPath, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  return head.equals(elfMagic);
}

// ---- cpio (newc) ------------------------------------------------------------------------------

/** One member of an initramfs archive. Paths are relative (`bin/busybox`), parents first. */
export type CpioEntry =
  | { readonly kind: 'directory'; readonly path: string; readonly permissions: number }
  | { readonly kind: 'file'; readonly path: string; readonly permissions: number; readonly data: Buffer }
  | { readonly kind: 'characterDevice'; readonly path: string; readonly permissions: number; readonly major: number; readonly minor: number };

const cpioFileTypeBits = { directory: 0o040000, file: 0o100000, characterDevice: 0o020000 } as const;
const cpioTrailerName = 'TRAILER!!!';

/** The "new ASCII" cpio format the kernel unpacks an initramfs from (no compression):
 * a 110-byte header of "070701" and 13 8-digit hex fields, the NUL-terminated name padded to
 * 4 bytes, the data padded to 4 bytes; a member named TRAILER!!! ends the archive. Owner root,
 * mtime 0, so the same input gives the same bytes. */
export function encodeCpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (length: number): void => {
    const padding = (4 - (length % 4)) % 4;
    if (padding > 0) parts.push(Buffer.alloc(padding));
  };
  const member = (inode: number, mode: number, nlink: number, name: string, data: Buffer, rdev: { major: number; minor: number }): void => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    const fields = [inode, mode, 0, 0, nlink, 0, data.length, 0, 0, rdev.major, rdev.minor, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((field) => field.toString(16).padStart(8, '0')).join('')}`, 'ascii');
    parts.push(header, nameBytes);
    pad(header.length + nameBytes.length);
    parts.push(data);
    pad(data.length);
  };
  let inode = 1;
  for (const entry of entries) {
    if (entry.path === '' || entry.path.startsWith('/') || entry.path.split('/').includes('..')) {
      throw labInvalidOption('cpio path', `${JSON.stringify(entry.path)} must be relative, without ..`);
    }
    const mode = cpioFileTypeBits[entry.kind] | (entry.permissions & 0o7777);
    switch (entry.kind) {
      case 'directory':
        member(inode++, mode, 2, entry.path, Buffer.alloc(0), { major: 0, minor: 0 });
        break;
      case 'file':
        member(inode++, mode, 1, entry.path, entry.data, { major: 0, minor: 0 });
        break;
      case 'characterDevice':
        member(inode++, mode, 1, entry.path, Buffer.alloc(0), { major: entry.major, minor: entry.minor });
        break;
      default: {
        const unknown: never = entry;
        throw labInvalidOption('cpio entry', `unknown kind in ${JSON.stringify(unknown)}`);
      }
    }
  }
  member(0, 0, 1, cpioTrailerName, Buffer.alloc(0), { major: 0, minor: 0 });
  return Buffer.concat(parts);
}

// ---- Scripts ------------------------------------------------------------------------------------

/** Single-quotes a word for sh. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Where /init mounts things inside the initramfs before the chroot. */
const initLowerDir = '/lower';
const initOverlayDir = '/overlay';
const initNewRoot = '/newroot';

function initScript(options: { modules: readonly string[]; busybox: string; shareDir: string; controlDir: string }): string {
  const ninepOptions = `trans=virtio,version=9p2000.L,msize=${ninepMessageBytes}`;
  const q = shellQuote;
  return `#!/bin/busybox sh
# PID 1 of the initramfs (built by src/lab/qemu-guest.ts): reach the host's root over 9p, make it
# writable with an overlay, then exec chroot into it as PID 1 (see the module's header for why).
/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
echo ${q(markerInitStarted)}
fail() {
  echo "${guestMarkerPrefix} init failed: $*"
  poweroff -f
  sleep 60
}
mkdir -p /sys /dev ${initLowerDir} ${initOverlayDir} ${initNewRoot}
mount -t sysfs sysfs /sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
for module in ${options.modules.join(' ')}; do
  insmod /modules/$module.ko || fail "insmod $module"
done
# The virtio devices are probed as their drivers load; a mount tag may appear a moment later.
mount_9p() {
  attempt=0
  until mount -t 9p -o "$3" "$1" "$2" 2>/dev/null; do
    attempt=$((attempt + 1))
    [ $attempt -ge ${initMountAttemptsMax} ] && { mount -t 9p -o "$3" "$1" "$2"; fail "mount 9p $1 on $2"; }
    sleep ${initMountRetryIntervalS}
  done
}
mount_9p root ${initLowerDir} ${q(`${ninepOptions},ro,cache=loose`)}
mount -t tmpfs -o mode=0755 tmpfs ${initOverlayDir} || fail "mount tmpfs"
mkdir -p ${initOverlayDir}/upper ${initOverlayDir}/work
mount -t overlay -o lowerdir=${initLowerDir},upperdir=${initOverlayDir}/upper,workdir=${initOverlayDir}/work overlay ${initNewRoot} || fail "mount overlay"
# A fresh /run (ip netns keeps its mounts there) before the shares. /tmp stays the overlay's:
# the checkout itself may live under the host's /tmp (CI clones there), and a tmpfs on /tmp
# would hide it; the overlay's upper layer makes it writable all the same.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs ${initNewRoot}/run || fail "mount /run"
mkdir -p ${q(initNewRoot + options.shareDir)} ${q(initNewRoot + options.controlDir)}
mount_9p share ${q(initNewRoot + options.shareDir)} ${q(ninepOptions)}
mount_9p control ${q(initNewRoot + options.controlDir)} ${q(ninepOptions)}
for dir in proc sys dev; do
  mount --move /$dir ${initNewRoot}/$dir || fail "move /$dir"
done
exec chroot ${initNewRoot} ${hostShell} ${q(join(options.controlDir, stageTwoFileName))}
`;
}

const guestPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Stage two's interpreter: the host's own shell, not busybox's. Debian's static busybox prefers
 * its applets to PATH, so a command run from a busybox shell would get busybox's `ip` and `sh`
 * instead of iproute2 and dash; stage two names busybox explicitly where it wants it. */
const hostShell = '/bin/sh';

function stageTwoScript(options: { busybox: string; command: readonly string[]; cwd: string; controlDir: string }): string {
  const q = shellQuote;
  const bb = q(options.busybox);
  return `# Stage two, PID 1 in the guest's root (the host's root with a tmpfs overlay), written by
# src/lab/qemu-guest.ts: a minimal system for the command, then the command, its exit code, power-off.
bb=${bb}
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
$bb ip link set lo up
$bb hostname raftvip-guest
export PATH=${q(guestPath)} HOME=/root LANG=C.UTF-8 TERM=dumb
if cd ${q(options.cwd)}; then
  echo ${q(markerCommandStarting)}
  ${options.command.map(q).join(' ')} </dev/null
  status=$?
else
  status=127
fi
echo "${guestMarkerPrefix} the command exited with $status"
echo $status > ${q(join(options.controlDir, exitCodeFileName))}
$bb sync
$bb poweroff -f
`;
}

// ---- Initramfs ----------------------------------------------------------------------------------

export interface Initramfs {
  readonly path: string;
  readonly bytes: number;
  /** Module names in load order. */
  readonly modules: readonly string[];
}

function findBusybox(): string {
  const found = busyboxCandidates.find((path) => existsSync(path));
  if (found === undefined) throw labGuestFailed(`no static busybox at ${busyboxCandidates.join(' or ')}; scripts/setup.sh installs busybox-static`);
  return found;
}

/** Writes the initramfs for one run to `outputPath`: busybox, the modules, /dev/console, /init. */
export function buildInitramfs(options: { kernel: GuestKernel; outputPath: string; busybox: string; shareDir: string; controlDir: string }): Initramfs {
  const modules = resolveModules(options.kernel, initramfsModules);
  const entries: CpioEntry[] = [
    { kind: 'directory', path: 'bin', permissions: 0o755 },
    { kind: 'file', path: 'bin/busybox', permissions: 0o755, data: readFileSync(options.busybox) },
    // The kernel opens /dev/console for /init before anything is mounted: without this node
    // /init would run with no stdin, stdout or stderr.
    { kind: 'directory', path: 'dev', permissions: 0o755 },
    { kind: 'characterDevice', path: 'dev/console', permissions: 0o600, major: 5, minor: 1 },
    { kind: 'directory', path: 'modules', permissions: 0o755 },
    ...modules.map((module): CpioEntry => ({
      kind: 'file',
      path: `modules/${module.name}.ko`,
      permissions: 0o644,
      data: readModule(join(options.kernel.modulesDir, module.path)),
    })),
    {
      kind: 'file',
      path: 'init',
      permissions: 0o755,
      data: Buffer.from(initScript({ modules: modules.map((module) => module.name), busybox: options.busybox, shareDir: options.shareDir, controlDir: options.controlDir })),
    },
  ];
  const archive = encodeCpioNewc(entries);
  writeFileSync(options.outputPath, archive);
  return { path: options.outputPath, bytes: archive.length, modules: modules.map((module) => module.name) };
}

// ---- Running ------------------------------------------------------------------------------------

/** A directory given to qemu's -virtfs: commas in option values are written twice. */
function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

function validate(options: RunInGuestOptions): void {
  if (options.command.length === 0 || options.command.some((word) => typeof word !== 'string' || word.includes('\0'))) {
    throw labInvalidOption('command', 'must be a non-empty list of strings without NUL');
  }
  for (const [name, dir] of [['shareDir', options.shareDir], ['cwd', options.cwd]] as const) {
    if (!isAbsolute(dir) || !existsSync(dir) || !statSync(dir).isDirectory()) throw labInvalidOption(name, `${dir} must be an existing directory, as an absolute path`);
  }
  if (resolve(options.shareDir) === '/') throw labInvalidOption('shareDir', 'must not be / (it is mounted over the guest\'s path of the same name)');
  if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < guestRunTimeoutMsMin || options.timeoutMs > guestRunTimeoutMsMax) {
    throw labInvalidOption('timeoutMs', `must be an integer from ${guestRunTimeoutMsMin} to ${guestRunTimeoutMsMax}`);
  }
  const memoryMb = options.memoryMb ?? guestMemoryMbDefault;
  if (!Number.isInteger(memoryMb) || memoryMb < guestMemoryMbMin || memoryMb > guestMemoryMbMax) {
    throw labInvalidOption('memoryMb', `must be an integer from ${guestMemoryMbMin} to ${guestMemoryMbMax}`);
  }
}

/** The serial console so far, bounded by `serialLogBytesMax` (oldest lines dropped). */
class SerialLog {
  private readonly lines: string[] = [];
  private chars = 0;
  private partial = '';

  constructor(private readonly onLine: (line: string) => void) {}

  write(chunk: string): void {
    const pieces = (this.partial + chunk).split('\n');
    this.partial = pieces.pop() ?? '';
    for (const piece of pieces) this.push(piece.replace(/\r+$/, ''));
  }

  end(): void {
    if (this.partial !== '') this.push(this.partial.replace(/\r+$/, ''));
    this.partial = '';
  }

  text(): string {
    return this.lines.join('\n');
  }

  tail(linesMax: number): string {
    return this.lines.slice(-linesMax).join('\n');
  }

  private push(line: string): void {
    this.lines.push(line);
    this.chars += line.length + 1;
    while (this.chars > serialLogBytesMax && this.lines.length > 1) this.chars -= (this.lines.shift() ?? '').length + 1;
    this.onLine(line);
  }
}

/**
 * Boots the guest, runs `command` in it and resolves when qemu has exited, with the command's
 * exit code. Rejects with LAB_GUEST_FAILED (serial tail in the message) when qemu cannot start,
 * the guest does not reach or finish the command within `timeoutMs` (qemu is then killed), or it
 * powers off without the command's exit code; with LAB_INVALID_OPTION for bad options.
 */
export async function runInGuest(options: RunInGuestOptions): Promise<GuestRunResult> {
  validate(options);
  const calledAt = monotonicNowMs();
  const kernel = guestKernel();
  const busybox = findBusybox();
  const controlDir = mkdtempSync(join(tmpdir(), 'raftvip-guest-'));
  const removeControlDir = (): void => rmSync(controlDir, { recursive: true, force: true });
  process.on('exit', removeControlDir);
  try {
    const initramfs = buildInitramfs({ kernel, outputPath: join(controlDir, initramfsFileName), busybox, shareDir: options.shareDir, controlDir });
    writeFileSync(join(controlDir, stageTwoFileName), stageTwoScript({ busybox, command: options.command, cwd: options.cwd, controlDir }));
    const initramfsBuiltAt = monotonicNowMs();
    const vmlinuxPath = join(controlDir, vmlinuxFileName);
    const bootImage: GuestBootImage = kernel.pvh && extractVmlinux({ imagePath: kernel.imagePath, outputPath: vmlinuxPath }) ? 'vmlinux-pvh' : 'bzimage';
    const kernelExtractedAt = monotonicNowMs();
    const virtfs = (path: string, tag: string, readOnly: boolean): string[] => [
      '-virtfs',
      `local,path=${qemuOptionValue(path)},mount_tag=${tag},security_model=none,multidevs=remap${readOnly ? ',readonly=on' : ''}`,
    ];
    const args = [
      '-accel', 'tcg,thread=multi',
      '-cpu', 'max',
      '-smp', String(guestCpus),
      '-m', String(options.memoryMb ?? guestMemoryMbDefault),
      '-nodefaults', '-display', 'none', '-no-reboot',
      '-serial', 'stdio',
      '-kernel', bootImage === 'vmlinux-pvh' ? vmlinuxPath : kernel.imagePath,
      '-initrd', initramfs.path,
      '-append', guestKernelCommandLine,
      ...virtfs('/', 'root', true),
      ...virtfs(options.shareDir, 'share', false),
      ...virtfs(controlDir, 'control', false),
    ];
    let initAtMs: number | null = null;
    let commandAtMs: number | null = null;
    const serial = new SerialLog((line) => {
      const atMs = monotonicNowMs();
      if (line === markerInitStarted) initAtMs ??= atMs;
      if (line === markerCommandStarting) commandAtMs ??= atMs;
      options.onSerialLine?.(line);
    });
    let qemuStderr = '';
    let timedOut = false;

    const qemuStartedAt = monotonicNowMs();
    // stdin stays an open pipe: qemu's `-serial stdio` reads it as the console's input.
    const qemu = spawn(qemuBinary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const killQemu = (): void => {
      if (qemu.pid !== undefined && qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
    };
    process.on('exit', killQemu);
    const timer = setTimeout(() => {
      timedOut = true;
      killQemu();
    }, options.timeoutMs);
    qemu.stdout.setEncoding('utf8').on('data', (chunk: string) => serial.write(chunk));
    qemu.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (qemuStderr.length < serialLogBytesMax) qemuStderr += chunk;
    });
    // Nobody writes to the console; a write error (EPIPE once qemu is gone) is of no interest.
    qemu.stdin.on('error', () => {});
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError: Error | null }>((settle) => {
      // 'error' without 'close' when qemu could not be spawned; 'close' after its stdio is drained.
      qemu.on('error', (error) => settle({ code: null, signal: null, spawnError: error }));
      qemu.on('close', (code, signal) => settle({ code, signal, spawnError: null }));
    });
    clearTimeout(timer);
    process.off('exit', killQemu);
    qemu.stdin.destroy();
    serial.end();
    const exitedAt = monotonicNowMs();

    const tail = (): string => [serial.tail(serialLogTailLinesMax), qemuStderr.trim() === '' ? '' : `--- qemu stderr ---\n${qemuStderr.trim()}`].filter(Boolean).join('\n');
    if (exit.spawnError !== null) throw labGuestFailed(`cannot run ${qemuBinary}: ${exit.spawnError.message} (scripts/setup.sh installs qemu-system-x86)`, tail());
    const reached = commandAtMs !== null ? 'the command had started' : initAtMs !== null ? '/init had started, the command had not' : '/init had not started';
    if (timedOut) throw labGuestFailed(`the guest did not power off within ${options.timeoutMs} ms (${reached}); qemu was killed`, tail());
    const exitCodeFile = join(controlDir, exitCodeFileName);
    const exitCodeText = existsSync(exitCodeFile) ? readFileSync(exitCodeFile, 'utf8').trim() : '';
    if (!/^\d+$/.test(exitCodeText)) {
      throw labGuestFailed(`the guest stopped without the command's exit code (qemu exit ${exit.code ?? exit.signal}; ${reached})`, tail());
    }
    return {
      exitCode: Number(exitCodeText),
      serialLog: serial.text(),
      durationMs: exitedAt - calledAt,
      kernel,
      bootImage,
      timings: {
        initramfsBuildMs: initramfsBuiltAt - calledAt,
        kernelExtractMs: kernelExtractedAt - initramfsBuiltAt,
        qemuStartToInitMs: initAtMs === null ? null : initAtMs - qemuStartedAt,
        qemuStartToCommandMs: commandAtMs === null ? null : commandAtMs - qemuStartedAt,
        commandToExitMs: commandAtMs === null ? null : exitedAt - commandAtMs,
      },
    };
  } finally {
    process.off('exit', removeControlDir);
    removeControlDir();
  }
}
