#!/usr/bin/env bash
# `make demo`: build what is missing (padcell, the guest kernel, the Debian image), then run padcell's
# main job and print each step's wall time (scripts/demo-steps.sh): `padcell run -- python3 -c ...`
# on the default Debian image, a snapshot of a VM once its agent is ready, and two clones from it.
# Directly on a host with hardware KVM; where /dev/kvm is PVM or missing (a standard kernel cannot
# boot there: `padcell check`) the same steps run inside the nested tier (tests/nested/l1.sh).
# Exit: 0 when every step did what it should; 1 when a build or a step failed or hung (the message
# says which); l1.sh's 124/125 when the nested tier's L1 itself hung or failed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'demo: %s\n' "$*"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$EPOCHREALTIME

# --- 1. build (every part is cached: a warm run takes seconds) ------------------------------------
say "building what is missing: padcell, the guest kernel, the Debian image with python3 (10-20 min cold on 2 cores, seconds warm)"
t=$EPOCHREALTIME
scripts/deps.sh build kernel images rootfs debian
"${MAKE:-make}" --no-print-directory images build/padcell-static || { say "the build failed (above)"; exit 1; }
say "build: $(since "$t") s; padcell run's defaults are build/share/padcell/{vmlinuz,rootfs.ext4}"

# --- 2. which KVM: padcell check decides (vmm/cmd/check.c) ----------------------------------------
step_timeout=60
if build/padcell check >build/demo-check.log 2>&1; then
	say "$(sed -n 's/^ *\[ok *\] virtualization *//p' build/demo-check.log | head -n1) KVM here: running the steps with padcell directly"
	snapdir=$(mktemp -d)
	trap 'rm -rf "$snapdir"' EXIT
	rc=0
	scripts/demo-steps.sh build/padcell "$snapdir/snap" "$step_timeout" || rc=$?
	say "demo finished in $(since "$t_start") s, exit $rc"
	exit "$rc"
fi

log=build/demo-check.log
if grep -q '\] /dev/kvm .*missing' "$log"; then
	why="this host has no /dev/kvm"
elif grep -q '\] /dev/kvm .*not accessible' "$log"; then
	why="/dev/kvm is not accessible to you"
elif grep -q '\] virtualization .*PVM' "$log"; then
	why="this host's /dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V), where a standard Linux kernel cannot boot"
else
	why="padcell check found a problem ($(grep '^result:' "$log" | head -n1))"
fi
say "$why: running the same steps inside the nested tier (QEMU TCG emulates an AMD host whose real KVM boots the guest; everything is slower there; under a minute)"

# --- 3. the nested tier: the same steps in L1, with padcell's defaults beside it --------------------
scripts/deps.sh nested
payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
mkdir -p "$payload/share/padcell"
cp build/padcell-static "$payload/padcell"
cp build/share/padcell/vmlinuz "$payload/share/padcell/vmlinuz"
cp --sparse=always build/share/padcell/rootfs.ext4 "$payload/share/padcell/rootfs.ext4"
cp scripts/demo-steps.sh "$payload/demo-steps.sh"
step_timeout=240
printf '#!/bin/sh\ncd /payload && DEMO_MARKERS=1 sh ./demo-steps.sh ./padcell /run/demo-snap %s\n' "$step_timeout" >"$payload/run.sh"

# l1.sh prints the L1 console (--verbose); only the demo's lines and l1.sh's own are shown, plus
# when L1 is up.  Its timeout names the last step marker if the emulator hangs.
t=$EPOCHREALTIME
set +e
tests/nested/l1.sh --payload "$payload" --timeout $((4 * step_timeout + 300)) \
	--log build/nested/demo-serial.log --verbose |
	while IFS= read -r line; do
		case "$line" in
		demo:* | l1.sh:*) printf '%s\n' "$line" ;;
		L1-KVM-OK*) say "L1 is up with /dev/kvm (${line#L1-KVM-OK }) after $(since "$t") s (staging and its boot); the steps run there now" ;;
		L1-FAIL*) printf '%s\n' "$line" ;;
		esac
	done
rc=${PIPESTATUS[0]}
set -e
say "demo finished in $(since "$t_start") s (through the nested tier), exit $rc"
[ "$rc" = 0 ] || exit "$rc"
