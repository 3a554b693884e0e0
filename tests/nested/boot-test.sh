#!/usr/bin/env bash
# Issue-2 nested test: inside an emulated L1 host with real KVM (tests/nested/l1.sh), boot the
# padcell guest kernel with padcell (and/or QEMU microvm, the reference VMM) and check each case.
# Usage: tests/nested/boot-test.sh [--vmm padcell|qemu|both] [--timeout SEC] [--case-timeout SEC]
#                                  [--log FILE] [--verbose]
# Needs: build/padcell-static (for padcell), build/kernel/{bzImage,vmlinux}, build/images/initramfs.cpio.gz
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself timed out/failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmm=padcell timeout_s=900 case_timeout=120 log=$repo/build/nested/boot-test-serial.log verbose=()

# tier_retry, tier_l1 (the L1 run, once more when L1 froze with no case failed).
tier=boot case_prefix=""
. "$here/tier-lib.sh"
usage() {
	echo "usage: tests/nested/boot-test.sh [--vmm padcell|qemu|both] [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--vmm) [ $# -ge 2 ] || usage; vmm=$2; shift 2 ;;
	--timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
	--case-timeout) [ $# -ge 2 ] || usage; case_timeout=$2; shift 2 ;;
	--log) [ $# -ge 2 ] || usage; log=$2; shift 2 ;;
	--verbose | -v) verbose=(--verbose); shift ;;
	*) usage ;;
	esac
done
case "$vmm" in
padcell) vmms=padcell ;;
qemu) vmms=qemu ;;
both) vmms="padcell qemu" ;;
*) usage ;;
esac

kernel=$repo/build/kernel images=$repo/build/images
for f in "$kernel/bzImage" "$kernel/vmlinux" "$images/initramfs.cpio.gz"; do
	[ -f "$f" ] || die "$f missing (run: make kernel initramfs)"
done
case " $vmms " in *" padcell "*)
	[ -x "$repo/build/padcell-static" ] || die "build/padcell-static missing (run: make build/padcell-static)" ;;
esac
# The release string the guest's `uname -a` must show.
kver=$(grep -aoE -m1 'Linux version [0-9][^ ]*' "$kernel/vmlinux" | head -n1 | cut -d' ' -f3)
[ -n "$kver" ] || die "cannot read the kernel version from $kernel/vmlinux"

payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
cp "$kernel/bzImage" "$kernel/vmlinux" "$images/initramfs.cpio.gz" "$payload/"
cp "$here/boot-run.sh" "$payload/run.sh"
cp "$here/vmm-run.sh" "$payload/vmm-run.sh"
case " $vmms " in *" padcell "*) cp "$repo/build/padcell-static" "$payload/padcell" ;; esac
case " $vmms " in *" qemu "*) "$here/stage-qemu.sh" "$payload/qemu" ;; esac
cat >"$payload/config" <<CFG
VMMS="$vmms"
KVER="$kver"
CASE_TIMEOUT=$case_timeout
MEM=128M
CFG

echo "boot-test.sh: VMM(s): $vmms; guest kernel $kver; per-case timeout ${case_timeout}s"
tier_retry tier_l1

# Summary from the RESULT lines of the serial log.
expected=$(( $(wc -w <<<"$vmms") * 4 ))
results=$(grep -aE '^RESULT ' "$log" | tr -d '\r' || true)
pass=$(grep -c ' PASS' <<<"$results" || true)
fail=$(grep -c ' FAIL' <<<"$results" || true)
echo "==== nested boot test summary ($log) ===="
[ -n "$results" ] && sed 's/^RESULT /  /' <<<"$results"
echo "  $pass passed, $fail failed, $((expected - pass - fail)) missing of $expected"
if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
	echo "boot-test.sh: L1 did not finish (l1.sh exit $l1_rc, see above)" >&2
	exit "$l1_rc"
fi
[ "$pass" = "$expected" ] && [ "$fail" = 0 ] || exit 1
echo "boot-test.sh: all $expected cases passed"
