#!/usr/bin/env bash
# Issue-12 nested test, cgroup v2 (item 5): inside an emulated L1 host with real KVM and cgroup2
# mounted at /sys/fs/cgroup (tests/nested/l1-init.sh), tests/nested/cgroup-run.sh checks a running
# monitor's leaf and limits (cpu.max, memory.max, pids.max), its removal after exit and after
# SIGKILL (the reaper), the sweep of a leaf whose reaper died too, a guest touching all its RAM
# within memory.max, --cpu-quota 0.5 measured with the leaf's cpu.stat, and --io-limit on a loop
# device drive (io.max, io.stat, a lower bound on the read time).
# Usage: tests/nested/cgroup-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-min.ext4
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=cgroup expected=9 timeout_s=600 case_timeout=120
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

for f in build/padcell-static build/kernel/bzImage build/images/rootfs-min.ext4; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static kernel rootfs-min)"
done
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$repo/build/images/rootfs-min.ext4" "$payload/"
cp "$here/cgroup-run.sh" "$payload/run.sh"
tier_run
