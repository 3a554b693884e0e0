#!/usr/bin/env bash
# Nested test of `padcell serve` with the real E2B JS SDK (`e2b`, pinned by tests/e2b/package-lock.json,
# installed here with npm ci into build/e2b-node): in L1, where real KVM runs the clones, a template
# snapshot of the Debian image (the SDK runs every command as /bin/bash -l -c) is served by the
# dynamic padcell; L1's port 3000 is forwarded to a loopback port of the host (l1.sh --hostfwd, QEMU's
# restricted user network), where the SDK client (tests/e2b/client.mjs) runs its cases through it.
# The host then says "__EOF__" on L1's second serial line, and L1 checks that no sandbox monitor is
# left and that the daemon ends on SIGTERM (tests/nested/e2b-run.sh).
# L1's stage has no network driver: tests/nested/l1-netmods.sh stages virtio_net and what it needs
# from the same Debian kernel package, and the payload loads them (case-lib.sh's net_up).
# Usage: tests/nested/e2b-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/padcell-dyn, build/kernel/bzImage, build/images/rootfs-debian.ext4,
#        node and npm, apt-get (the kernel package's network modules)
# Exit: 0 all cases passed; 1 a case failed or is missing; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=e2b timeout_s=1500 case_timeout=1200 l1_mem=3072
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"
# The client's cases (tests/e2b/client.mjs) and L1's own (template, cleanup).
client_cases=22 l1_cases=2

[ -f "$repo/build/images/rootfs-debian.ext4" ] ||
	tier_skip "build/images/rootfs-debian.ext4 is missing (it needs the Debian mirror once)"
for t in node npm; do
	command -v "$t" >/dev/null || tier_skip "$t is missing (scripts/deps.sh mcp)"
done
for f in build/padcell-static build/padcell-dyn build/kernel/bzImage; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static build/padcell-dyn kernel)"
done

npm_client e2b e2b


cp "$repo/build/padcell-static" "$payload/padcell"
"$here/stage-bin.sh" "$repo/build/padcell-dyn" "$payload/dyn" >/dev/null
cp "$repo/build/kernel/bzImage" "$payload/"
cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
"$here/l1-netmods.sh" "$payload/netmods" || die "cannot stage L1's network driver (the line above says why)"
cp "$here/e2b-run.sh" "$payload/run.sh"
printf 'CASE_TIMEOUT=%s\nTIER=%s\n' "$case_timeout" "$tier" >"$payload/config"
cp "$here/case-lib.sh" "$payload/case-lib.sh"

mkdir -p "$(dirname "$log")"

# One L1 run with the client (tier_retry's RUN): sets l1_rc, client_rc, out.
e2b_l1() {
	tier_l1_serve e2b-listening --mem "$l1_mem" "${verbose[@]}"
	client_rc=0
	if [ -n "$key" ]; then
		tier_client "$sdk" timeout -k 10 "$case_timeout" node client.mjs --url "http://127.0.0.1:$port" --key "$key"
		# the end of the session, on L1's second serial line (a host program connects; QEMU
		# listens), unless l1.sh already ended (an L1 killed as frozen)
		if kill -0 "$l1" 2>/dev/null; then
			node -e 'const c = require("net").connect(process.argv[1], () => c.end("__EOF__\n"));' "$sock" ||
				echo "$me: could not say __EOF__ on $sock (L1 ends at its case timeout)" >&2
		fi
	fi
	tier_l1_wait
}
tier_retry e2b_l1
results=$(grep -aE "^RESULT $tier-" "$log" | tr -d '\r' || true)
echo "==== nested e2b test summary ($log) ===="
[ -n "$out" ] && sed 's/^/  /' <<<"$out"
[ -n "$results" ] && sed 's/^RESULT /  /' <<<"$results"
pass=$(( $(grep -c '^PASS ' <<<"$out" || true) + $(grep -c ' PASS' <<<"$results" || true) ))
fail=$(( $(grep -c '^FAIL ' <<<"$out" || true) + $(grep -c ' FAIL' <<<"$results" || true) ))
missing=$((client_cases + l1_cases - pass - fail))
[ "$missing" -lt 0 ] && missing=0
if [ "$missing" -gt 0 ]; then
	step=$(grep -aE "^STEP $tier-" "$log" | tail -n1 | tr -d '\r' | sed 's/^STEP //')
	echo "  ${step:-$tier-start} FAIL $missing case(s) never reported (client exit $client_rc, l1.sh exit $l1_rc;" \
		"L1's last lines below)"
	tail -n 25 "$log" | tr -d '\r' | sed 's/^/    | /'
fi
echo "  $pass passed, $((fail + missing)) failed ($missing missing of $((client_cases + l1_cases)))"
if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
	echo "$me: L1 did not finish (l1.sh exit $l1_rc)" >&2
	exit "$l1_rc"
fi
[ "$fail" = 0 ] && [ "$missing" = 0 ] || die "$((fail + missing)) cases failed or are missing"
echo "$me: the E2B SDK passed all its cases against padcell serve"
