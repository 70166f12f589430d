#!/usr/bin/env bash
# Installs what raftvip needs to build and test from a checkout; the README points here.
#
# Idempotent: safe to run again at any time. Non-interactive: reads nothing from stdin, so it
# runs the same in CI, over ssh and in a terminal. Works as root (CI and the lab run as root);
# as another user it uses `sudo -n` only if Debian packages are missing.
#
# Steps:
#   1. check Node.js (>= 20.10, as package.json "engines" says) and npm;
#   2. install missing Debian packages from apt_packages;
#   3. `npm ci`, whose `prepare` script compiles the TypeScript into dist/ (see
#      install_node_modules for the one npm defect it works around).
set -euo pipefail

# Debian packages the tests need; later issues add more (nftables, iputils-arping,
# qemu-system-x86, ...). Only the missing ones are installed.
#   iproute2: `ip netns` builds the test namespaces, and `ip -j addr` is the independent judge of
#             what the netlink executor did (test/netlink-addresses.test.ts).
#   openssl: test certificates for the transport's mTLS and the lab's kube-apiserver stand-ins.
#   nftables: the nftables data plane drives `nft` (and the lab tests run it on this kernel).
#   ipvsadm: the independent judge of what the IPVS data plane programmed (in the qemu guest).
#   qemu-system-x86, linux-image-amd64, busybox-static, kmod: this kernel has no IPVS, so the
#             IPVS tests boot Debian's kernel under qemu with a busybox initramfs that loads the
#             virtio/9p modules (kmod's depmod/modinfo resolve their order) and share the host's
#             root read-only (test/guest/).
#   xz-utils: unpacks the guest kernel's vmlinux so qemu boots it directly (~2 s faster than the
#             compressed image; without xz the slower path is taken).
#   keepalived: the peer raftvip is compared with (npm run bench:compare, test/lab-keepalived.test.ts).
apt_packages=(iproute2 openssl nftables ipvsadm qemu-system-x86 linux-image-amd64 busybox-static kmod xz-utils keepalived)

node_major_min=20
node_minor_min=10

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

check_node() {
  command -v node >/dev/null 2>&1 ||
    die "Node.js is not installed; raftvip needs Node.js ${node_major_min}.${node_minor_min} or newer."
  command -v npm >/dev/null 2>&1 ||
    die "npm is not installed (it normally comes with Node.js)."
  local version major minor
  version="$(node -p 'process.versions.node' </dev/null)"
  major="${version%%.*}"
  minor="${version#*.}"
  minor="${minor%%.*}"
  if ((major < node_major_min || (major == node_major_min && minor < node_minor_min))); then
    die "Node.js ${version} is too old; raftvip needs ${node_major_min}.${node_minor_min} or newer."
  fi
  log "Node.js ${version}"
}

# Prints, one per line, the names in apt_packages that are not installed.
missing_apt_packages() {
  local package
  for package in ${apt_packages[@]+"${apt_packages[@]}"}; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s\n' "$package"
    fi
  done
}

install_apt_packages() {
  if ((${#apt_packages[@]} == 0)); then
    return 0
  fi
  command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 ||
    die "these Debian packages are needed, but this host has no apt-get/dpkg: ${apt_packages[*]}"

  local missing=()
  mapfile -t missing < <(missing_apt_packages)
  if ((${#missing[@]} == 0)); then
    log "Debian packages already installed: ${apt_packages[*]}"
    return 0
  fi

  local as_root=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
      die "not root and no sudo; install these Debian packages as root: ${missing[*]}"
    as_root=(sudo -n)
  fi

  log "installing Debian packages: ${missing[*]}"
  # apt-get update once per run, and only when something is actually missing.
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
}

# `npm ci`: exactly the locked dependency tree, then `prepare` compiles TypeScript into dist/.
#
# package-lock.json lists every optional platform build of msgpackr-extract (darwin, win32, arm)
# even though npm could not fetch them here: without those entries npm 11 rejects the lock file
# ("Missing: NAME@ from lock file"). npm skips them at install time by their os/cpu fields. When
# the lock file is regenerated, run scripts/lock-platform-packages.py to add them back.
install_node_modules() {
  # The native AF_PACKET shim (binding.gyp) is built by node-gyp during `npm ci`. Build against
  # the Node.js headers installed with Node itself, so nothing is downloaded.
  if [[ -z "${npm_config_nodedir:-}" && -f /usr/include/node/node_api.h ]]; then
    export npm_config_nodedir=/usr
  fi
  log "npm ci (installs the locked dependencies, builds the native shim, compiles TypeScript into dist/)"
  (cd "$repo_root" && npm ci --no-audit --no-fund </dev/null) ||
    die "npm ci failed; see its output above."
}

main() {
  check_node
  install_apt_packages
  install_node_modules
  log "done; run the tests with: npm test"
}

main "$@"
