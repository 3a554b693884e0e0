#!/usr/bin/env bash
# Issue-5 nested test (snapshot, restore, clone): inside an emulated L1 host with real KVM
# (tests/nested/l1.sh), a VM booted from the shipped rootfs-min.ext4 (the agent as init) writes a
# file to tmpfs and its scratch disk, holds a vsock connection open, and is snapshotted through its
# control socket; tests/nested/snap-run.sh then checks from L1's side: 5 sequential and 3 concurrent
# `run --from` clones (each right, each with its own scratch disk), the file still there, two
# clones' /dev/urandom different, the held connection reset and new ones working, run/boot
# --snapshot-when-ready, and a padcell killed while writing a snapshot leaving no valid one.
# Usage: tests/nested/snap-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-min.ext4
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=snap expected=9 timeout_s=600 case_timeout=120
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

for f in build/padcell-static build/kernel/bzImage build/images/rootfs-min.ext4; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static kernel rootfs-min)"
done
debugfs -R "stat /sbin/padcell-agent" "$repo/build/images/rootfs-min.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-min.ext4 has no /sbin/padcell-agent (make rootfs-min rebuilds it with the agent)"
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$repo/build/images/rootfs-min.ext4" "$payload/"
cp "$here/snap-run.sh" "$payload/run.sh"
tier_run
