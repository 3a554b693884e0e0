#!/usr/bin/env bash
# Stage QEMU (qemu-system-x86_64 + libraries + the firmware `-M microvm` loads) into DESTDIR so it
# runs inside L1 as the reference L2 VMM: DESTDIR/bin/qemu-system-x86_64 -L DESTDIR/share/qemu ...
# Usage: tests/nested/stage-qemu.sh DESTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "stage-qemu.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: tests/nested/stage-qemu.sh DESTDIR"
dest=$1
"$here/stage-bin.sh" qemu-system-x86_64 "$dest"
# microvm's default firmware is qboot (bios-microvm.bin); -kernel loads through the linuxboot
# option ROMs, an ELF kernel with a PVH note through pvh.bin; kvmvapic.bin is the APIC TPR
# patching ROM QEMU adds on x86.
mkdir -p "$dest/share/qemu"
for f in bios-microvm.bin qboot.rom linuxboot.bin linuxboot_dma.bin pvh.bin kvmvapic.bin; do
	[ -f "/usr/share/qemu/$f" ] || die "/usr/share/qemu/$f missing (qemu-system-x86 / qemu-system-data)"
	cp -L "/usr/share/qemu/$f" "$dest/share/qemu/"
done
# Debian builds TCG as a loadable module (KVM is built in); stage it so TCG works as a fallback,
# and point QEMU's module loader at it from the wrapper.
moddir=/usr/lib/x86_64-linux-gnu/qemu
if [ -f "$moddir/accel-tcg-x86_64.so" ]; then
	mkdir -p "$dest/lib/qemu"
	cp -L "$moddir/accel-tcg-x86_64.so" "$dest/lib/qemu/"
	sed -i 's|^exec |export QEMU_MODULE_DIR="$d/lib/qemu"\nexec |' "$dest/bin/qemu-system-x86_64"
fi
