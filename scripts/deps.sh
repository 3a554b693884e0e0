#!/usr/bin/env bash
# Install the Debian packages a padcell build/test group needs, only those that are missing.
# Usage: scripts/deps.sh GROUP...   (groups: build kernel images nested rootfs debian mcp bench fuzz slirp-src)
# Safe to run repeatedly, non-interactively (CI, no stdin); installing needs root.
set -euo pipefail

die() { echo "scripts/deps.sh: $*" >&2; exit 1; }

group_pkgs() {
	case "$1" in
	# libglib2.0-dev ships libglib-2.0.a (and libpcre2-dev the libpcre2-8.a it needs): the static
	# libslirp links against them.  libc-ares-dev ships libcares.a: the NIC's host-side resolver.
	# meson/ninja/dpkg-dev build libslirp.a from Debian's source package (scripts/libslirp-static.sh).
	# libmicrohttpd-dev: padcell serve's HTTP server (dynamic builds and the unit tests only).
	build)  echo gcc make libcriterion-dev acpica-tools pkg-config libjansson-dev libseccomp-dev libslirp-dev \
		     libglib2.0-dev libpcre2-dev libc-ares-dev meson ninja-build dpkg-dev libmicrohttpd-dev ;;
	kernel) echo linux-source-6.1 flex bison bc libelf-dev libssl-dev cpio xz-utils ;;
	images) echo busybox-static cpio ;;
	nested) echo qemu-system-x86 cpio kmod busybox-static ;;
	rootfs) echo busybox-static e2fsprogs erofs-utils fakeroot ;;
	debian) echo mmdebstrap fakechroot fakeroot uidmap ;;
	# The nested-mcp tier's client: the official MCP SDK, from the npm registry (tests/mcp/package-lock.json).
	mcp)    echo nodejs npm ;;
	# make bench's networking section: iperf3's server in L1 is staged from the host's package.
	bench)  echo iperf3 ;;
	# libFuzzer (-fsanitize=fuzzer) and its ASan/UBSan runtimes come with clang, not gcc.
	fuzz)   echo clang libclang-rt-14-dev ;;
	# Not packages: a deb-src entry for every deb entry apt has, so `apt-get source libslirp` works.
	slirp-src) echo ;;
	*) return 1 ;;
	esac
}

# Debian ships no libslirp.a: scripts/libslirp-static.sh builds it from the source package, which
# needs deb-src entries.  Each deb822 "Types: deb" stanza of the system's sources is copied as
# "Types: deb-src" into one file of ours (same archives, suites, keys), then apt's lists are updated.
ensure_deb_src() {
	local own=/etc/apt/sources.list.d/padcell-deb-src.sources
	if grep -rqsE '^(Types:.*\bdeb-src\b|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return 0
	fi
	[ "$(id -u)" = 0 ] || die "need root to add deb-src entries ($own)"
	local src
	src=$(awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)Types:[^\n]*deb/ { sub(/Types:[^\n]*/, "Types: deb-src"); print }' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null)
	if [ -z "$src" ] && [ -f /etc/apt/sources.list ]; then
		src=$(sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list)
		own=/etc/apt/sources.list.d/padcell-deb-src.list
	fi
	[ -n "$src" ] || die "no deb entries in apt's sources to copy as deb-src"
	printf '%s\n' "$src" >"$own"
	echo "scripts/deps.sh: added $own; apt-get update"
	DEBIAN_FRONTEND=noninteractive apt-get -q update </dev/null >/dev/null || die "apt-get update failed"
}

[ $# -gt 0 ] || die "usage: scripts/deps.sh GROUP... (build kernel images nested rootfs debian mcp bench fuzz slirp-src)"

missing=()
for group in "$@"; do
	[ "$group" = slirp-src ] && ensure_deb_src
	pkgs=$(group_pkgs "$group") || die "unknown group '$group' (build kernel images nested rootfs debian mcp bench fuzz slirp-src)"
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
