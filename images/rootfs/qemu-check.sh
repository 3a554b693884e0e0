#!/usr/bin/env bash
# Boot root filesystem images in QEMU microvm under TCG (no padcell, no KVM) and check them:
# read-only root (a write fails with EROFS), /tmp, a blank scratch disk (serial "scratch")
# formatted and mounted on /scratch with 16 MiB written and read back, the guest's sha256 of
# its busybox equal to the host's, python3 where the image has it, the image unchanged after.
# Usage: images/rootfs/qemu-check.sh [--timeout SEC] IMAGE...   (default: the images in build/images)
# One QEMU at a time: waits while another qemu-system process runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout_s=180
[ "${1:-}" = --timeout ] && { timeout_s=${2:?--timeout SEC}; shift 2; }
[ $# -gt 0 ] || set -- "$repo"/build/images/rootfs-*.ext4 "$repo"/build/images/rootfs-*.erofs
kernel=$repo/build/kernel/bzImage
[ -f "$kernel" ] || { echo "qemu-check.sh: $kernel missing (run: make kernel)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-check.sh: qemu-system-x86_64 missing (scripts/deps.sh nested)" >&2; exit 1; }

# Under TCG on a busy host the guest's TSC calibration against the PIT can fail; the kernel then
# calibrates against jiffies and (seen here, 4 of ~12 boots) hangs before init.  TCG's TSC is the
# host's, so tell the guest its frequency and skip the calibration.
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
tsc_arg=${tsc_khz:+ tsc_early_khz=$tsc_khz}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

for img in "$@"; do
	[ -f "$img" ] || { echo "SKIP $img (missing)"; continue; }
	name=${img##*/}
	before=$(sha256sum <"$img")
	truncate -s 0 "$tmp/scratch" && truncate -s 256M "$tmp/scratch"
	while pgrep -f '^qemu-system' >/dev/null; do sleep 2; done
	start=$(date +%s)
	set +e
	timeout -k 5 "$timeout_s" qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256 -nodefaults \
		-no-user-config -display none -serial stdio -no-reboot -kernel "$kernel" \
		-append "console=ttyS0 root=/dev/vda ro reboot=k panic=-1 padcell.selftest=1$tsc_arg" \
		-drive id=d0,file="$img",format=raw,if=none,readonly=on -device virtio-blk-device,drive=d0 \
		-drive id=s0,file="$tmp/scratch",format=raw,if=none -device virtio-blk-device,drive=s0,serial=scratch \
		</dev/null >"$tmp/out" 2>&1
	rc=$?
	set -e
	secs=$(($(date +%s) - start))
	tr -d '\r' <"$tmp/out" >"$tmp/log"
	missing=""
	for p in '^PADCELL-ROOTFS-OK' '^PADCELL-SELFTEST root-ro PASS' '^PADCELL-SELFTEST tmp PASS' \
		'^PADCELL-SELFTEST scratch PASS' '^PADCELL-SELFTEST-DONE 0' '^PADCELL-SELFTEST-EXIT 0'; do
		grep -qE "$p" "$tmp/log" || missing="$missing '$p'"
	done
	case "$name" in *debian*) grep -q '^PADCELL-SELFTEST python3 PASS' "$tmp/log" || missing="$missing 'python3 PASS'" ;; esac
	# The guest's digest of its busybox is the host's busybox-static.
	guest_sum=$(sed -n 's/^PADCELL-SELFTEST sha256 INFO \([0-9a-f]*\) .*/\1/p' "$tmp/log")
	[ "$guest_sum" = "$(sha256sum </bin/busybox | cut -d' ' -f1)" ] || missing="$missing 'sha256 of busybox'"
	[ "$(sha256sum <"$img")" = "$before" ] || missing="$missing 'image unchanged'"
	if [ "$rc" = 0 ] && [ -z "$missing" ]; then
		echo "PASS $name (${secs}s)"
		grep -E '^PADCELL-SELFTEST (scratch|python3)' "$tmp/log" | sed 's/^/  | /'
	else
		echo "FAIL $name (qemu exit $rc, ${secs}s; missing:${missing:- none})"
		grep -q 'Run /sbin/init' "$tmp/log" ||
			echo "  the guest never reached /sbin/init: a kernel/emulator hang, not the image's init"
		sed 's/^/  | /' "$tmp/log" | tail -n 30
		fails=$((fails + 1))
	fi
done
[ "$fails" = 0 ]
