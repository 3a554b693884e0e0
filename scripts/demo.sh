#!/usr/bin/env bash
# `make demo`: boot the project's guest kernel and initramfs with padcell and show the guest's
# `uname -a`.  Directly on a host with hardware KVM; inside the nested tier where /dev/kvm is PVM
# or missing (a standard kernel cannot boot on PVM: see `padcell check`).
set -euo pipefail
cd "$(dirname "$0")/.."

kernel=build/kernel/bzImage
initrd=build/images/initramfs.cpio.gz
cmdline="console=ttyS0 reboot=k panic=-1 quiet"
for f in build/padcell build/padcell-static "$kernel" "$initrd"; do
	[ -f "$f" ] || { echo "demo: $f is missing (run: make demo)" >&2; exit 1; }
done

hardware_kvm() {
	[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo
}

if hardware_kvm; then
	echo "demo: hardware KVM here; booting with padcell (2 vCPUs, 256 MiB)"
	exec build/padcell boot --kernel "$kernel" --initrd "$initrd" --cmdline "$cmdline" --cpus 2 --mem 256M
fi

if [ -e /sys/module/kvm_pvm ]; then why="this host's /dev/kvm is PVM (software virtualization)"; else why="this host has no hardware KVM"; fi
echo "demo: $why, where a standard kernel cannot boot; running the same boot inside the nested tier (QEMU-emulated AMD host with real KVM, about a minute)"

payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
cp build/padcell-static "$payload/padcell"
cp "$kernel" "$initrd" "$payload/"
cat >"$payload/run.sh" <<RUN
#!/bin/sh
cd /payload
echo "demo: padcell boot --kernel bzImage --initrd initramfs.cpio.gz --cpus 2 --mem 256M"
./padcell boot --kernel bzImage --initrd initramfs.cpio.gz --cmdline "$cmdline" --cpus 2 --mem 256M </dev/null
rc=\$?
echo "demo: padcell exited with \$rc"
exit \$rc
RUN
chmod +x "$payload/run.sh"
tests/nested/l1.sh --payload "$payload" --timeout 600 --verbose
