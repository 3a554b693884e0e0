#!/usr/bin/env bash
# Issue-3 nested test (virtio-blk): inside an emulated L1 host with real KVM (tests/nested/l1.sh),
# padcell boots the stripped guest kernel (no initrd) with `root=/dev/vda ro` from an ext4 and an
# erofs image and checks, per image: the init marker, EROFS on writes under /, a file's sha256 in
# the guest equal to this host's, the scratch disk (--scratch 128M) formatted, mounted and 50 MiB
# written and read back intact, the image byte-identical afterwards and no scratch file left in
# L1's temp directories; then the shipped rootfs-min.erofs boots, and two VMs share the shipped
# rootfs-min.ext4 read-only at once.
#
# The ext4/erofs images under test are a TEST-ONLY variant of build/images/rootfs-min.ext4: its
# tree unpacked with debugfs, tests/nested/blk-guest.sh installed where init's selftest hook runs
# it (/etc/padcell-selftest) and a 4 MiB data file added.  The shipped images are never modified.
# Usage: tests/nested/blk-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-min.{ext4,erofs}
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout_s=420 case_timeout=120 log=$repo/build/nested/blk-test-serial.log verbose=()
expected=14

# tier_retry, tier_l1 (the L1 run, once more when L1 froze with no case failed).
tier=blk
. "$here/tier-lib.sh"
usage() {
	echo "usage: tests/nested/blk-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
	--case-timeout) [ $# -ge 2 ] || usage; case_timeout=$2; shift 2 ;;
	--log) [ $# -ge 2 ] || usage; log=$2; shift 2 ;;
	--verbose | -v) verbose=(--verbose); shift ;;
	*) usage ;;
	esac
done

images=$repo/build/images
for f in "$repo/build/padcell-static" "$repo/build/kernel/bzImage" "$images/rootfs-min.ext4" "$images/rootfs-min.erofs"; do
	[ -f "$f" ] || die "$f missing (run: make build/padcell-static kernel; images/build-rootfs.sh min)"
done
for t in debugfs mkfs.ext4 mkfs.erofs sha256sum; do
	command -v "$t" >/dev/null || die "$t missing (Debian's e2fsprogs / erofs-utils)"
done

payload=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$payload" "$work"' EXIT

# --- the test-only image variant ---------------------------------------------------------------
tree=$work/tree
mkdir -p "$tree"
debugfs -R "rdump / $tree" "$images/rootfs-min.ext4" >"$work/rdump.log" 2>&1 ||
	{ cat "$work/rdump.log" >&2; die "debugfs rdump of rootfs-min.ext4 failed"; }
[ -x "$tree/sbin/init" ] || die "rootfs-min.ext4 has no /sbin/init"
# rdump skips device nodes and the sticky bit; the kernel needs /dev/console before devtmpfs.
mkdir -p "$tree/dev"
[ -e "$tree/dev/console" ] || mknod -m 0600 "$tree/dev/console" c 5 1
[ -e "$tree/dev/null" ] || mknod -m 0666 "$tree/dev/null" c 1 3
chmod 1777 "$tree/tmp"
rm -rf "$tree/lost+found"
install -m 0755 "$here/blk-guest.sh" "$tree/etc/padcell-selftest"
head -c 4194304 /dev/urandom >"$tree/blk-data"
sha=$(sha256sum <"$tree/blk-data" | cut -d' ' -f1)
# The scratch data the guest writes (blk-guest.sh): MiB i is 1 MiB of /blk-data from page 12*i.
scratch_mib=50
scratch_sha=$(for ((i = 0; i < scratch_mib; i++)); do
	dd if="$tree/blk-data" bs=4096 skip=$((12 * i)) count=256 status=none
done | sha256sum | cut -d' ' -f1)
mkfs.ext4 -q -F -t ext4 -b 4096 -m 0 -O ^has_journal -L padcell-blktest -d "$tree" "$payload/blk-ext4.img" 16M \
	>"$work/mkfs.log" 2>&1 || { cat "$work/mkfs.log" >&2; die "mkfs.ext4 of the test image failed"; }
mkfs.erofs --quiet "$payload/blk-erofs.img" "$tree" >"$work/mkfs.log" 2>&1 ||
	{ cat "$work/mkfs.log" >&2; die "mkfs.erofs of the test image failed"; }

cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$images/rootfs-min.ext4" "$images/rootfs-min.erofs" "$payload/"
cp "$here/blk-run.sh" "$payload/run.sh"
cat >"$payload/config" <<CFG
SHA=$sha
FILE=/blk-data
CASE_TIMEOUT=$case_timeout
MEM=256M
SCRATCH_MIB=$scratch_mib
SCRATCH_SHA=$scratch_sha
CFG

echo "blk-test.sh: test images blk-ext4.img $(stat -c %s "$payload/blk-ext4.img") B, blk-erofs.img" \
	"$(stat -c %s "$payload/blk-erofs.img") B; /blk-data sha256 $sha; per-case timeout ${case_timeout}s"
# An L1 that froze with no case failed is said loudly and run once more; a failed case never is.
tier_retry tier_l1

results=$(grep -aE '^RESULT blk-' "$log" | tr -d '\r' || true)
pass=$(grep -c ' PASS' <<<"$results" || true)
fail=$(grep -c ' FAIL' <<<"$results" || true)
missing=$((expected - pass - fail))
[ "$missing" -lt 0 ] && missing=0
echo "==== nested blk test summary ($log) ===="
[ -n "$results" ] && sed 's/^RESULT /  /' <<<"$results"
# Missing cases count as failures.
echo "  $pass passed, $((fail + missing)) failed ($missing missing of $expected)"
if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
	echo "blk-test.sh: L1 did not finish (l1.sh exit $l1_rc, see above)" >&2
	exit "$l1_rc"
fi
[ "$pass" = "$expected" ] && [ "$fail" = 0 ] || exit 1
echo "blk-test.sh: all $expected cases passed"
