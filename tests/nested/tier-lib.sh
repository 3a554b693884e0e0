# Shared by the nested case tiers (run-test.sh, snap-test.sh, debian-test.sh), sourced by bash:
# their options, the payload directory, the L1 run and the summary of its RESULT lines.
# The caller sets `tier` (the RESULT prefix: RESULT <tier>-<case>), `expected` (its case count),
# `timeout_s` and `case_timeout` (defaults), optionally `l1_mem` (L1's memory in MiB, l1.sh's
# default 2048 when unset), then calls tier_args "$@", fills "$payload" (its run.sh, files) and
# calls tier_run.  The payload gets a `config` with CASE_TIMEOUT and TIER, and
# case-lib.sh (the helpers its run.sh sources).
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
me=$(basename "$0")

die() { echo "$me: $*" >&2; exit 1; }

# A tier that cannot run here (a missing capability, not padcell's failure) says so loudly and
# counts one skip.  `tier` names it (nested-<tier>).
tier_skip() {
	echo "SKIP: nested-$tier: $*"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
}

# npm_client NAME PACKAGE: tests/NAME's client (package.json, package-lock.json, client.mjs)
# installed exactly as locked with npm ci into build/NAME-node, reinstalled only when the lock
# changed; sets `sdk` to that directory.  No registry (an offline machine) is a skip.
npm_client() {
	local name=$1 pkg=$2 src=$repo/tests/$1
	sdk=$repo/build/$name-node
	if ! cmp -s "$src/package-lock.json" "$sdk/package-lock.json" || [ ! -d "$sdk/node_modules/$pkg" ]; then
		rm -rf "$sdk"
		mkdir -p "$sdk"
		cp "$src/package.json" "$src/package-lock.json" "$sdk/"
		if ! (cd "$sdk" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund >/dev/null); then
			rm -rf "$sdk"
			tier_skip "npm ci of tests/$name/package-lock.json failed (is the npm registry reachable?)"
		fi
	fi
	cp "$src/client.mjs" "$sdk/client.mjs" # beside node_modules: that is where its imports resolve
}

tier_args() {
	log=$repo/build/nested/$tier-test-serial.log verbose=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--timeout) [ $# -ge 2 ] || tier_usage; timeout_s=$2; shift 2 ;;
		--case-timeout) [ $# -ge 2 ] || tier_usage; case_timeout=$2; shift 2 ;;
		--log) [ $# -ge 2 ] || tier_usage; log=$2; shift 2 ;;
		--verbose | -v) verbose=(--verbose); shift ;;
		*) tier_usage ;;
		esac
	done
	payload=$(mktemp -d)
	trap 'rm -rf "$payload"' EXIT
}

tier_usage() {
	echo "usage: tests/nested/$me [--timeout SEC] [--case-timeout SEC] [--log FILE] [--verbose]" >&2
	exit 2
}

# tier_retry RUN: calls the function RUN, one whole L1 run of the tier (it sets l1_rc; L1's serial
# log is $log; a host client's output, if any, in `out`).  When L1 froze (l1.sh exit 124: its
# freeze detector or the tier timeout; an emulated L1 now and then stops making progress) with no
# case failed, says so on a `!!` line, keeps that serial log as $log.attempt1 and calls RUN once
# more, from the start.  A case that failed is never run again, and a second freeze fails the tier.
# A failed case: a "RESULT <case_prefix>... FAIL" line in the log (case_prefix defaults to
# "<tier>-"), L1's own verdict.  A host client's FAIL lines are not: its peer in L1 froze under it
# (its output is kept as $log.attempt1.client and its FAIL lines counted on the `!!` line).
tier_retry() {
	local attempt where client=""
	for attempt in 1 2; do
		out=""
		"$1"
		[ "$attempt" = 1 ] && [ "$l1_rc" = 124 ] || break
		grep -aqE "^RESULT ${case_prefix-$tier-}.* FAIL" "$log" && break
		cp "$log" "$log.attempt1"
		if [ -n "$out" ]; then
			printf '%s\n' "$out" >"$log.attempt1.client"
			client="; the host client's output, $(grep -c '^FAIL ' <<<"$out" || true) FAIL line(s) against the frozen L1, kept as $log.attempt1.client"
		fi
		where=$(grep -aE "^STEP ${case_prefix-$tier-}" "$log" | tail -n1 | tr -d '\r' | sed 's/^STEP //')
		[ -n "$where" ] || where=$(grep -aoE "^RESULT [^ ]+" "$log" | tail -n1 | sed 's/^RESULT /the case after /')
		echo "!! nested $tier: L1 stopped making progress in ${where:-its first step}" \
			"(l1.sh exit 124, no case failed; serial log kept as $log.attempt1$client): running the tier once more"
	done
}

# tier_client DIR CMD...: a host client of the L1 run whose l1.sh is $l1, run in DIR; its output
# into `out`, its exit code into `client_rc`.  Bounded by its own timeout, and ended 10 s after
# l1.sh ended (an L1 killed as frozen leaves the client no one to talk to).
tier_client() {
	local dir=$1 file=$payload/client.out cpid i
	shift
	(cd "$dir" && exec "$@") >"$file" 2>&1 &
	cpid=$!
	while kill -0 "$cpid" 2>/dev/null && kill -0 "$l1" 2>/dev/null; do sleep 1; done
	for ((i = 0; i < 10; i++)); do
		kill -0 "$cpid" 2>/dev/null || break
		sleep 1
	done
	kill "$cpid" 2>/dev/null || true
	client_rc=0
	wait "$cpid" || client_rc=$?
	out=$(cat "$file")
}

# tier_l1_serve STEP [L1.SH-ARGS...]: for a tier whose host client talks to `padcell serve` in L1
# (nested-e2b, make bench's serve section): starts l1.sh on $payload in the background, its second
# serial line on $payload/serial2.sock (`sock`) and a free loopback port of this host (`port`)
# forwarded to L1's port 3000, the daemon's; then waits for L1's "STEP STEP key=KEY" line (the daemon
# listens; l1.sh may first wait for another tier's L1, its lock) or l1.sh's end.  Sets l1 (its pid)
# and key ("" when L1 never said one); until tier_l1_wait, an EXIT trap ends that l1.sh.
tier_l1_serve() {
	local step=$1 line=""
	shift
	sock=$payload/serial2.sock
	: >"$log"
	rm -f "$sock"
	# a free port, asked of the kernel and released for QEMU to bind
	port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
	"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" --serial2 "$sock" --hostfwd "$port:3000" "$@" &
	l1=$!
	trap 'kill "$l1" 2>/dev/null; wait "$l1" 2>/dev/null; rm -rf "$payload"' EXIT
	while [ -z "$line" ] && kill -0 "$l1" 2>/dev/null; do
		sleep 1
		line=$(grep -a -m1 "^STEP $step" "$log" | tr -d '\r' || true)
	done
	key=$(sed -n 's/.*key=\(e2b_[0-9a-f]*\).*/\1/p' <<<"$line")
}

# tier_l1_wait: waits for tier_l1_serve's l1.sh (its exit code into l1_rc) and drops its trap.
tier_l1_wait() {
	set +e
	wait "$l1"
	l1_rc=$?
	set -e
	trap 'rm -rf "$payload"' EXIT
}

# One L1 run of the payload (tier_retry's RUN for tier_run and the tiers driving l1.sh plainly).
tier_l1() {
	local mem=()
	[ -n "${l1_mem:-}" ] && mem=(--mem "$l1_mem")
	set +e
	"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" "${mem[@]}" "${verbose[@]}"
	l1_rc=$?
	set -e
}

# Runs the payload in L1 and reports: exit 0 when all expected cases passed, 1 when one failed or
# is missing, l1.sh's 124/125 when L1 itself did not finish.
tier_run() {
	printf 'CASE_TIMEOUT=%s\nTIER=%s\n' "$case_timeout" "$tier" >"$payload/config"
	cp "$here/case-lib.sh" "$payload/case-lib.sh"
	local results pass fail missing
	tier_retry tier_l1
	results=$(grep -aE "^RESULT $tier-" "$log" | tr -d '\r' || true)
	pass=$(grep -c ' PASS' <<<"$results" || true)
	fail=$(grep -c ' FAIL' <<<"$results" || true)
	missing=$((expected - pass - fail))
	[ "$missing" -lt 0 ] && missing=0
	echo "==== nested $tier test summary ($log) ===="
	[ -n "$results" ] && sed 's/^RESULT /  /' <<<"$results"
	if [ "$missing" -gt 0 ]; then
		# Named like a failed case, so run-all's summary says where the payload stopped and why.
		local step
		step=$(grep -aE "^STEP $tier-" "$log" | tail -n1 | tr -d '\r' | sed 's/^STEP //')
		echo "  ${step:-$tier-start} FAIL $missing case(s) never reported: the payload stopped in this step" \
			"(l1.sh exit $l1_rc$([ "$l1_rc" = 124 ] && echo ', the tier timeout'); L1's last lines below)"
		tail -n 25 "$log" | tr -d '\r' | sed 's/^/    | /'
	fi
	echo "  $pass passed, $((fail + missing)) failed ($missing missing of $expected)"
	if [ "$l1_rc" = 124 ] || [ "$l1_rc" = 125 ]; then
		echo "$me: L1 did not finish (l1.sh exit $l1_rc, see above)" >&2
		exit "$l1_rc"
	fi
	[ "$pass" = "$expected" ] && [ "$fail" = 0 ] || exit 1
	echo "$me: all $expected cases passed"
}
