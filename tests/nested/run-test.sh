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
tier=run expected=14 timeout_s=600 case_timeout=90
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

for f in build/padcell-static build/kernel/bzImage build/images/rootfs-min.ext4 build/rawconnect; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static build/rawconnect kernel rootfs-min)"
done
debugfs -R "stat /sbin/padcell-agent" "$repo/build/images/rootfs-min.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-min.ext4 has no /sbin/padcell-agent (make rootfs-min rebuilds it with the agent)"
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$repo/build/images/rootfs-min.ext4" "$repo/build/rawconnect" "$payload/"
cp "$here/run-run.sh" "$payload/run.sh"
tier_run
