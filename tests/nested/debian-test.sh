#!/usr/bin/env bash
# Nested test of the Debian root image, `padcell run`'s default (images/build-rootfs.sh debian:
# bookworm + python3, the agent written in): inside L1, python3 runs with its streams and exit code,
# --user/--env/--cwd on a real /etc/passwd, and the root is read-only.
# Usage: tests/nested/debian-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-debian.ext4
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=debian expected=3 timeout_s=600 case_timeout=90
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

# The image needs Debian's mirror once (then it is cached): without it the tier is skipped, loudly.
if [ ! -f "$repo/build/images/rootfs-debian.ext4" ]; then
	echo "SKIP: nested-debian: build/images/rootfs-debian.ext4 is missing (make rootfs-debian failed or was not run; it needs the Debian mirror once)"
	echo "0 passed, 0 failed, $expected skipped"
	exit 0
fi
for f in build/padcell-static build/kernel/bzImage; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static kernel)"
done
debugfs -R "stat /usr/sbin/padcell-agent" "$repo/build/images/rootfs-debian.ext4" 2>/dev/null | grep -q 'Type: regular' ||
	die "build/images/rootfs-debian.ext4 has no /sbin/padcell-agent (make rootfs-debian writes it in)"
cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$payload/"
cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
cp "$here/debian-run.sh" "$payload/run.sh"
tier_run
