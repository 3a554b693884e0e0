#!/usr/bin/env bash
# Stages L1's network driver for tiers that give L1 a NIC (l1.sh --hostfwd): virtio_pci and
# virtio_net with what they need, taken once from the same Debian kernel package l1.sh boots (its
# own stage keeps only the KVM and vsock modules) into build/e2b-l1/<package>/, then copied to
# DIR with a load-order file (dependencies first).  The payload loads them with insmod.
# Usage: tests/nested/l1-netmods.sh DIR        Exit: 0 staged; 1 with one line saying why.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ $# = 1 ] || { echo "usage: tests/nested/l1-netmods.sh DIR" >&2; exit 64; }
out=$1
die() { echo "l1-netmods.sh: $*" >&2; exit 1; }
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }' || true)
[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 to a kernel package (apt-get update?)"
mods=$repo/build/e2b-l1/$pkg
if [ ! -f "$mods/load-order" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg" </dev/null >/dev/null) ||
		die "apt-get download $pkg failed"
	dpkg-deb -x "$tmp"/*.deb "$tmp/root"
	mkdir -p "$tmp/mods"
	: >"$tmp/mods/load-order"
	# depth first: a module's dependencies (modinfo -F depends) before it
	add() {
		local f dep
		f=$(find "$tmp/root/lib/modules" -name "$1.ko" | head -n1)
		[ -n "$f" ] || die "module $1 not found in $pkg"
		grep -qx "$1" "$tmp/mods/load-order" && return 0
		for dep in $(modinfo -F depends "$f" | tr ',' ' '); do add "$dep"; done
		cp "$f" "$tmp/mods/$1.ko"
		echo "$1" >>"$tmp/mods/load-order"
	}
	add virtio_pci
	add virtio_net
	rm -rf "$mods"
	mkdir -p "$(dirname "$mods")"
	mv "$tmp/mods" "$mods"
fi
mkdir -p "$out"
cp "$mods"/* "$out/"
