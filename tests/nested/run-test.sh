#!/usr/bin/env bash
# Issue-4 nested test (guest agent, `padcell run`, `exec`, `cp`, the raw CONNECT protocol): inside an
# emulated L1 host with real KVM (tests/nested/l1.sh), padcell boots the stripped guest kernel with
# the shipped rootfs-min.ext4, whose /sbin/padcell-agent is init, and tests/nested/run-run.sh checks
# each case from L1's side: exit codes, stdout/stderr separation, 10 MiB intact, stdin, timeouts with
# no process left behind, file copies both ways, 20 sequential and 3 concurrent runs, a raw client.
# Usage: tests/nested/run-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-min.ext4, build/rawconnect
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout_s=600 case_timeout=90 log=$repo/build/nested/run-test-serial.log verbose=()
expected=13

die() { echo "run-test.sh: $*" >&2; exit 1; }
usage() {
	echo "usage: tests/nested/run-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]" >&2
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

for f in build/padcell-static build/kernel/bzImage build/images/rootfs-min.ext4 build/rawconnect; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static build/rawconnect kernel rootfs-min)"
done
debugfs -R "stat /sbin/padcell-agent" "$repo/build/images/rootfs-min.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-min.ext4 has no /sbin/padcell-agent (make rootfs-min rebuilds it with the agent)"

payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$repo/build/images/rootfs-min.ext4" "$repo/build/rawconnect" "$payload/"
cp "$here/run-run.sh" "$payload/run.sh"
echo "CASE_TIMEOUT=$case_timeout" >"$payload/config"

set +e
"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" "${verbose[@]}"
l1_rc=$?
set -e

results=$(grep -aE '^RESULT run-' "$log" | tr -d '\r' || true)
pass=$(grep -c ' PASS' <<<"$results" || true)
fail=$(grep -c ' FAIL' <<<"$results" || true)
missing=$((expected - pass - fail))
[ "$missing" -lt 0 ] && missing=0
echo "==== nested run test summary ($log) ===="
[ -n "$results" ] && sed 's/^RESULT /  /' <<<"$results"
echo "  $pass passed, $((fail + missing)) failed ($missing missing of $expected)"
if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
	echo "run-test.sh: L1 did not finish (l1.sh exit $l1_rc, see above)" >&2
	exit "$l1_rc"
fi
[ "$pass" = "$expected" ] && [ "$fail" = 0 ] || exit 1
echo "run-test.sh: all $expected cases passed"
