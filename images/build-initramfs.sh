#!/usr/bin/env bash
# Build padcell's test initramfs (busybox-static + images/init.sh) without root: the archive is
# written by the kernel's gen_init_cpio from a list file, so /dev/console needs no mknod.
# Usage: images/build-initramfs.sh [OUTPUT]   (default build/images/initramfs.cpio.gz)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$repo/build/images/initramfs.cpio.gz}
gen=${GEN_INIT_CPIO:-$repo/build/kernel/gen_init_cpio}
busybox=/bin/busybox

die() { echo "images/build-initramfs.sh: $*" >&2; exit 1; }
[ -x "$gen" ] || die "$gen missing (run: make kernel)"
[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] && [ -x "$busybox" ] ||
	die "busybox-static is not installed (run: scripts/deps.sh images)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The list: directories, the console node, busybox with one symlink per applet, /init.
{
	echo "dir /dev 0755 0 0"
	echo "nod /dev/console 0600 0 0 c 5 1"
	for d in /proc /sys /tmp /root /bin /sbin /usr /usr/bin /usr/sbin; do
		echo "dir $d 0755 0 0"
	done
	echo "file /bin/busybox $busybox 0755 0 0"
	# --list-full names each applet with its usual directory (bin/ls, sbin/poweroff, ...).
	"$busybox" --list-full | while read -r applet; do
		[ "$applet" = bin/busybox ] && continue
		echo "slink /$applet /bin/busybox 0777 0 0"
	done
	echo "file /init $here/init.sh 0755 0 0"
} >"$tmp/list"

mkdir -p "$(dirname "$out")"
"$gen" "$tmp/list" | gzip -9 -n >"$tmp/initramfs.cpio.gz"
mv "$tmp/initramfs.cpio.gz" "$out"
echo "initramfs: ${out#"$repo"/} ($(stat -c %s "$out") bytes)"
