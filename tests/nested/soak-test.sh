#!/usr/bin/env bash
# Issue-11 nested soak and faults: inside an emulated L1 host with real KVM (tests/nested/l1.sh),
# one VM booted from the shipped rootfs-min.ext4 (the agent as init) is snapshotted when its agent
# is ready; tests/nested/soak-run.sh then keeps 20 clones of it alive at once (`padcell restore`,
# each its own vsock socket), runs 50 `padcell exec` commands against each (each its own output and
# exit code: none lost, none wrong), and checks every monitor's descriptors and resident memory
# flat from its first command to its last; then the faults: the guest kernel panicking mid-command
# (run and exec exit 125 with one line, the clone's restore 3), and `padcell run` (cold and
# --from) killed by SIGKILL while its command runs, leaving no directory and no socket behind.
# Usage: tests/nested/soak-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-min.ext4
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
# 20 guests of 128 MiB with their monitors: more room than l1.sh's default 2 GiB. The L1 run takes
# 90-130 s; 1200 s bounds a frozen L1 (QEMU TCG) so the retry comes before a CI run runs out of time.
tier=soak expected=8 timeout_s=1200 case_timeout=120 l1_mem=3072
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

for f in build/padcell-static build/kernel/bzImage build/images/rootfs-min.ext4; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static kernel rootfs-min)"
done
debugfs -R "stat /sbin/padcell-agent" "$repo/build/images/rootfs-min.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-min.ext4 has no /sbin/padcell-agent (make rootfs-min rebuilds it with the agent)"
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$repo/build/images/rootfs-min.ext4" "$payload/"
cp "$here/soak-run.sh" "$payload/run.sh"
tier_run
