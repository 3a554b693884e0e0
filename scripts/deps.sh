#!/usr/bin/env bash
# Install the Debian packages a padcell build/test group needs, only those that are missing.
# Usage: scripts/deps.sh GROUP...   (groups: build kernel images nested rootfs debian fuzz)
# Safe to run repeatedly, non-interactively (CI, no stdin); installing needs root.
set -euo pipefail

die() { echo "scripts/deps.sh: $*" >&2; exit 1; }

group_pkgs() {
	case "$1" in
	build)  echo gcc make libcriterion-dev acpica-tools pkg-config libjansson-dev libseccomp-dev libslirp-dev ;;
	kernel) echo linux-source-6.1 flex bison bc libelf-dev libssl-dev cpio xz-utils ;;
	images) echo busybox-static cpio ;;
	nested) echo qemu-system-x86 cpio kmod busybox-static ;;
	rootfs) echo busybox-static e2fsprogs erofs-utils fakeroot ;;
	debian) echo mmdebstrap fakechroot fakeroot uidmap ;;
	# The nested-mcp tier's client: the official MCP SDK, from the npm registry (tests/mcp/package-lock.json).
	mcp)    echo nodejs npm ;;
	# libFuzzer (-fsanitize=fuzzer) and its ASan/UBSan runtimes come with clang, not gcc.
	fuzz)   echo clang libclang-rt-14-dev ;;
	*) return 1 ;;
	esac
}

[ $# -gt 0 ] || die "usage: scripts/deps.sh GROUP... (build kernel images nested rootfs debian mcp fuzz)"

missing=()
for group in "$@"; do
	pkgs=$(group_pkgs "$group") || die "unknown group '$group' (build kernel images nested rootfs debian mcp fuzz)"
	for pkg in $pkgs; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
		if [ "$status" != "install ok installed" ]; then
			case " ${missing[*]:-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
		fi
	done
done

[ ${#missing[@]} -eq 0 ] && exit 0

echo "scripts/deps.sh: installing ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "need root to install: ${missing[*]}"
	as_root=(sudo -n)
else
	as_root=()
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update </dev/null ||
	die "apt-get update failed"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}" </dev/null ||
	die "apt-get install ${missing[*]} failed"
