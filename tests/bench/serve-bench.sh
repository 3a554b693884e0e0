#!/usr/bin/env bash
# `make bench`'s serve section, host side: L1 (tests/nested/l1.sh --hostfwd) runs `padcell serve`
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
: >"$log"
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" --mem 4096 --serial2 "$payload/serial2.sock" \
	--hostfwd "$port:3000" >"$repo/build/nested/bench-serve.out" 2>&1 &
l1=$!
trap 'kill "$l1" 2>/dev/null; wait "$l1" 2>/dev/null; rm -rf "$payload"' EXIT
line=""
while [ -z "$line" ] && kill -0 "$l1" 2>/dev/null; do
	sleep 1
	line=$(grep -a -m1 '^STEP serve-bench-listening' "$log" | tr -d '\r' || true)
done
key=$(sed -n 's/.*key=\(e2b_[0-9a-f]*\).*/\1/p' <<<"$line")
out=""
if [ -n "$key" ]; then
	out=$(cd "$sdk" && timeout -k 10 "$case_timeout" node bench.mjs --url "http://127.0.0.1:$port" --key "$key" \
		--log "$log" --serial2 "$payload/serial2.sock" 2>&1) || out="$out"$'\n'"BENCH serve error the client exited $?"
else
	out="BENCH serve error L1 never listened (see $log)"
fi
set +e
wait "$l1"
l1_rc=$?
set -e
trap 'rm -rf "$payload"' EXIT
{ grep -ao 'BENCH serve .*' "$log" | tr -d '\r'; grep '^BENCH serve ' <<<"$out"; } >"$lines" || true
[ "$l1_rc" = 0 ] || echo "BENCH serve error l1.sh exit $l1_rc (see $log)" >>"$lines"
grep -v '^BENCH serve ' <<<"$out" | sed 's/^/  [client] /' | head -n 20 >&2 || true
grep -a '^SERVE-LOG ' "$log" | tr -d '\r' | sed 's/^SERVE-LOG /  [serve.log in L1] /' >&2 || true
