#!/usr/bin/env bash
# Nested test of `padcell serve` (issue 13's first slice): in L1, where real KVM runs the clones, a
# template snapshot is taken (`run --snapshot-when-ready`), the dynamic padcell (build/padcell-dyn,
# staged with its libraries) serves it with the static padcell as each sandbox's monitor, and curl
# (staged the same way) drives E2B's REST API: create, list, exec through the sandbox's vsock socket,
# the limits, the daemon's SIGTERM leaving the sandboxes running and a new daemon re-adopting them,
# pause keeping a file and a background process, a restart re-adopting a paused sandbox, resume and
# connect, a timeout ending one, DELETE ending another, the key, and a daemon with --pool: a create
# from the pool, its refill, and SIGTERM ending that daemon and its pool clone; `template build` with setup
# commands served by name (--templates), a failing --run leaving nothing; 20 sandboxes at once running 20
# commands each; --max-mem refusing a create; --api-keys scoping two clients; a template of the Debian
# image built with --net --allow whose --run pip-installs net-wheel.py's package from an index in L1
# (tests/nested/serve-run.sh).
# Usage: tests/nested/serve-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/padcell-dyn, build/kernel/bzImage, build/images/rootfs-min.ext4,
#        curl; build/images/rootfs-debian.ext4 for the template-net case (skipped, saying so, without it)
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=serve expected=19 timeout_s=1800 case_timeout=180 l1_mem=3072
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

if ! command -v curl >/dev/null; then
	echo "SKIP: nested-serve: curl is missing on this host (the tier's HTTP client, staged into L1)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
for f in build/padcell-static build/padcell-dyn build/kernel/bzImage build/images/rootfs-min.ext4; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static build/padcell-dyn kernel rootfs-min)"
done
cp "$repo/build/padcell-static" "$payload/padcell"
"$here/stage-bin.sh" "$repo/build/padcell-dyn" "$payload/dyn" >/dev/null
"$here/stage-bin.sh" curl "$payload/dyn" >/dev/null
cp "$repo/build/kernel/bzImage" "$repo/build/images/rootfs-min.ext4" "$payload/"
# the template-net case: the Debian image (python3, pip) and net-wheel.py's index
if [ -f "$repo/build/images/rootfs-debian.ext4" ]; then
	cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
	python3 "$here/net-wheel.py" "$payload/pypi" hello-from-a-template-build
else
	echo "SKIP: nested-serve template-net: build/images/rootfs-debian.ext4 is missing (it needs the Debian mirror once)"
	expected=$((expected - 1))
fi
cp "$here/serve-run.sh" "$payload/run.sh"
tier_run
