#!/usr/bin/env bash
# `make bench`'s serve section, host side: L1 (tier-lib.sh's tier_l1_serve: l1.sh --hostfwd) runs `padcell serve`
# with tests/bench/serve-l1.sh; the E2B JS SDK on this host (tests/e2b/bench.mjs, the pinned `e2b`
# that nested-e2b installs into build/e2b-node) times its creates through the forwarded port.
# Writes the BENCH serve lines of both sides to build/nested/bench-serve.lines.
# Exit: 0 ran (the lines say what was measured; "BENCH serve error" lines what was not); 1 could
# not run (one line why).
set -euo pipefail
tier=serve-bench timeout_s=1500 case_timeout=1200
. "$(dirname "$0")/../nested/tier-lib.sh"
here=$repo/tests/nested # tier-lib.sh took this script's own directory
tier_skip() { echo "$me: cannot run: $*" >&2; exit 1; }
for f in build/padcell-static build/padcell-dyn build/kernel/bzImage build/images/rootfs-debian.ext4; do
	[ -f "$repo/$f" ] || die "$f missing (make bench builds it)"
done
command -v node >/dev/null || die "node is missing (scripts/deps.sh mcp)"
npm_client e2b e2b
cp "$repo/tests/e2b/bench.mjs" "$sdk/bench.mjs"

payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
"$here/l1-netmods.sh" "$payload/netmods"
cp "$repo/build/padcell-static" "$payload/padcell"
"$here/stage-bin.sh" "$repo/build/padcell-dyn" "$payload/dyn" >/dev/null
cp "$repo/build/kernel/bzImage" "$here/case-lib.sh" "$payload/"
cp --sparse=always "$repo/build/images/rootfs-debian.ext4" "$payload/"
cp "$repo/tests/bench/serve-l1.sh" "$payload/run.sh"

log=$repo/build/nested/bench-serve.log lines=$repo/build/nested/bench-serve.lines
mkdir -p "$(dirname "$log")"
tier_l1_serve serve-bench-listening --mem 4096 >"$repo/build/nested/bench-serve.out" 2>&1
out=""
if [ -n "$key" ]; then
	out=$(cd "$sdk" && timeout -k 10 "$case_timeout" node bench.mjs --url "http://127.0.0.1:$port" --key "$key" \
		--log "$log" --serial2 "$sock" 2>&1) || out="$out"$'\n'"BENCH serve error the client exited $?"
else
	out="BENCH serve error L1 never listened (see $log)"
fi
tier_l1_wait
{ grep -ao 'BENCH serve .*' "$log" | tr -d '\r'; grep '^BENCH serve ' <<<"$out"; } >"$lines" || true
[ "$l1_rc" = 0 ] || echo "BENCH serve error l1.sh exit $l1_rc (see $log)" >>"$lines"
grep -v '^BENCH serve ' <<<"$out" | sed 's/^/  [client] /' | head -n 20 >&2 || true
grep -a '^SERVE-LOG ' "$log" | tr -d '\r' | sed 's/^SERVE-LOG /  [serve.log in L1] /' >&2 || true
