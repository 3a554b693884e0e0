#!/usr/bin/env bash
# Nested test of `padcell mcp` with the official MCP SDK client (@modelcontextprotocol/sdk, pinned by
# tests/mcp/package-lock.json, installed here with npm ci into build/mcp-node): padcell mcp runs in
# L1 (where real KVM boots the Debian image as its sandbox) with its stdio on L1's second serial
# port; the SDK client runs on the host (node) and reaches it through that port's Unix socket
# (l1.sh --serial2).  The client lists the tools and calls each one (tests/mcp/client.mjs); then L1
# checks that padcell mcp ended at the end of its input and left no VM or directory behind.
# Usage: tests/nested/mcp-test.sh [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]
# Needs: build/padcell-static, build/kernel/bzImage, build/images/rootfs-debian.ext4, node and npm
# Exit: 0 all passed; 1 a check failed; l1.sh's 124/125 when L1 itself failed.
set -euo pipefail
tier=mcp timeout_s=600 case_timeout=400
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

[ -f "$repo/build/images/rootfs-debian.ext4" ] ||
	tier_skip "build/images/rootfs-debian.ext4 is missing (it needs the Debian mirror once)"
for t in node npm; do
	command -v "$t" >/dev/null || tier_skip "$t is missing (scripts/deps.sh mcp)"
done
for f in build/padcell-static build/kernel/bzImage; do
	[ -f "$repo/$f" ] || die "$f missing (run: make build/padcell-static kernel)"
done
npm_client mcp @modelcontextprotocol/sdk

cp "$repo/build/padcell-static" "$payload/padcell"
cp "$repo/build/kernel/bzImage" "$payload/"
cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
cp "$here/mcp-run.sh" "$payload/run.sh"
printf 'CASE_TIMEOUT=%s\nTIER=%s\n' "$case_timeout" "$tier" >"$payload/config"
cp "$here/case-lib.sh" "$payload/case-lib.sh"
sock=$payload/serial2.sock
mkdir -p "$(dirname "$log")"

# One L1 run with the client (tier_retry's RUN): sets l1_rc, client_rc, out.
mcp_l1() {
	: >"$log"
	rm -f "$sock"
	client_rc=0
	"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" --serial2 "$sock" "${verbose[@]}" &
	l1=$!
	trap 'kill "$l1" 2>/dev/null; wait "$l1" 2>/dev/null; rm -rf "$payload"' EXIT
	# L1 says when its end of the line is ready; l1.sh may first wait for another tier's L1 (its lock).
	while kill -0 "$l1" 2>/dev/null && ! grep -aq '^STEP mcp-listening' "$log"; do sleep 1; done
	if grep -aq '^STEP mcp-listening' "$log"; then
		tier_client "$sdk" timeout -k 10 "$case_timeout" node client.mjs --expect sandbox --socket "$sock"
	else
		echo "$me: L1 never got to padcell mcp (see $log)" >&2
		client_rc=1
	fi
	set +e
	wait "$l1"
	l1_rc=$?
	set -e
	trap 'rm -rf "$payload"' EXIT
}
tier_retry mcp_l1
cleanup=$(grep -aE "^RESULT $tier-" "$log" | tr -d '\r' || true)
echo "==== nested mcp test summary ($log) ===="
sed 's/^/  /' <<<"$out"
[ -n "$cleanup" ] && sed 's/^RESULT /  /' <<<"$cleanup"
pass=$(grep -c '^PASS ' <<<"$out" || true)
fail=$(grep -c '^FAIL ' <<<"$out" || true)
if grep -q ' PASS' <<<"$cleanup"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
[ "$client_rc" = 0 ] || grep -q '^RESULT ' <<<"$out" || fail=$((fail + 1)) # the client died before its summary
echo "  $pass passed, $fail failed, 0 skipped"
if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
	echo "$me: L1 did not finish (l1.sh exit $l1_rc)" >&2
	exit "$l1_rc"
fi
[ "$fail" = 0 ] || die "$fail checks failed"
echo "$me: the MCP SDK client passed, and padcell mcp left nothing behind"
