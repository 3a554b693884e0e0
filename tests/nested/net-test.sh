#!/usr/bin/env bash
# Nested net tier (issue 10): the Debian guest's network end to end through padcell's NIC, its gate,
# its DNS and libslirp, inside L1, against servers in a network namespace on TEST-NET-2 addresses
# (tests/nested/net-run.sh, net-inet.sh; the guest's checks: net-guest.py; the pip cases' index: net-wheel.py).
# Usage: tests/nested/net-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/upstream, build/kernel/bzImage, build/images/rootfs-debian.ext4
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=net expected=39 timeout_s=900 case_timeout=150
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

if [ ! -f "$repo/build/images/rootfs-debian.ext4" ]; then
	echo "SKIP: nested-net: build/images/rootfs-debian.ext4 is missing (make rootfs-debian failed or was not run; it needs the Debian mirror once)"
	echo "0 passed, 0 failed, $expected skipped"
	exit 0
fi
for f in build/padcell-static build/upstream build/kernel/bzImage; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static build/upstream kernel)"
done
debugfs -R "stat /usr/sbin/padcell-agent" "$repo/build/images/rootfs-debian.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-debian.ext4 has no /sbin/padcell-agent (make rootfs-debian writes it in)"
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/upstream" "$payload/upstream"
cp "$repo/build/kernel/bzImage" "$payload/"
cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
cp "$here/net-run.sh" "$payload/run.sh"
cp "$here/net-inet.sh" "$here/net-guest.py" "$payload/"
python3 "$here/net-wheel.py" "$payload/pypi" hello-from-local-index
tier_run
