#!/usr/bin/env bash
# Nested test of the Debian root image, `padcell run`'s default (images/build-rootfs.sh debian:
# bookworm + python3, the agent written in): inside L1, python3 runs with its streams and exit code,
# --user/--env/--cwd on a real /etc/passwd, and the root is read-only.
# Usage: tests/nested/debian-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-debian.ext4
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout_s=600 case_timeout=90 log=$repo/build/nested/debian-test-serial.log verbose=()
expected=3

die() { echo "debian-test.sh: $*" >&2; exit 1; }
usage() {
	echo "usage: tests/nested/debian-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]" >&2
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

# The image needs Debian's mirror once (then it is cached): without it the tier is skipped, loudly.
if [ ! -f "$repo/build/images/rootfs-debian.ext4" ]; then
	echo "SKIP: nested-debian: build/images/rootfs-debian.ext4 is missing (make rootfs-debian failed or was not run; it needs the Debian mirror once)"
	echo "0 passed, 0 failed, $expected skipped"
	exit 0
fi
for f in build/padcell-static build/kernel/bzImage build/images/rootfs-debian.ext4; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static kernel rootfs-debian)"
done
debugfs -R "stat /usr/sbin/padcell-agent" "$repo/build/images/rootfs-debian.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-debian.ext4 has no /sbin/padcell-agent (make rootfs-debian writes it in)"

payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$payload/"
cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
cp "$here/debian-run.sh" "$payload/run.sh"
echo "CASE_TIMEOUT=$case_timeout" >"$payload/config"

set +e
"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" "${verbose[@]}"
l1_rc=$?
set -e

results=$(grep -aE '^RESULT debian-' "$log" | tr -d '\r' || true)
pass=$(grep -c ' PASS' <<<"$results" || true)
fail=$(grep -c ' FAIL' <<<"$results" || true)
missing=$((expected - pass - fail))
[ "$missing" -lt 0 ] && missing=0
echo "==== nested Debian image test summary ($log) ===="
[ -n "$results" ] && sed 's/^RESULT /  /' <<<"$results"
echo "  $pass passed, $((fail + missing)) failed ($missing missing of $expected)"
if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
	echo "debian-test.sh: L1 did not finish (l1.sh exit $l1_rc, see above)" >&2
	exit "$l1_rc"
fi
[ "$pass" = "$expected" ] && [ "$fail" = 0 ] || exit 1
echo "debian-test.sh: all $expected cases passed"
