#!/usr/bin/env bash
# l1.sh's freeze detector, in one short L1 run with a 20 s bound (tests/nested/watch-run.sh):
#   watch-idle    an L1 idling past the bound, heartbeat alive, is not killed;
#   watch-busy    an L1 busy past the bound with its heartbeat stopped is not killed (QEMU runs);
#   watch-frozen  L1's vCPU stopped by QEMU's monitor `stop` (what a frozen emulated host looks
#                 like: no heartbeat, QEMU at 0 % CPU) is killed by l1.sh well before its timeout,
#                 with exit 124, the FROZEN line naming the step, and the serial log kept;
#   watch-retry   tier-lib.sh's tier_retry with a stand-in for the L1 run (no L1): a 124 with no
#                 case failed is run once more with a `!!` line and the first log kept; a 124
#                 after a failed case, or a 125, is not; a second 124 is the end.
# Usage: tests/nested/watch-test.sh [--timeout SEC] [--log FILE] [--verbose]
# Exit: 0 all cases passed; 1 a case failed.
set -euo pipefail
tier=watch timeout_s=420 bound=20
. "$(dirname "$0")/tier-lib.sh"
tier_args "$@"

# watch-retry first (no L1): fake_l1 writes a log with RESULT line $fake_result and ends with the
# next exit code of $fake_rcs.
fake_l1() {
	fake_runs=$((fake_runs + 1))
	printf 'STEP watch-fake\n%s\n' "$fake_result" >"$log"
	l1_rc=${fake_rcs[$((fake_runs - 1))]}
}
retry_case() { # result "rc rc" runs-wanted
	fake_result=$1 fake_runs=0
	read -r -a fake_rcs <<<"$2"
	rm -f "$log.attempt1"
	tier_retry fake_l1 >"$payload/retry.out"
	[ "$fake_runs" = "$3" ] || retry_why="$retry_why '$1' exits $2: $fake_runs run(s), want $3;"
	if [ "$3" = 2 ]; then
		grep -q '^!! nested watch: L1 stopped making progress in watch-fake' "$payload/retry.out" ||
			retry_why="$retry_why '$1' exits $2: no !! line;"
		[ -f "$log.attempt1" ] || retry_why="$retry_why '$1' exits $2: no .attempt1 log;"
	elif [ -s "$payload/retry.out" ] || [ -f "$log.attempt1" ]; then
		retry_why="$retry_why '$1' exits $2: retried;"
	fi
}
real_log=$log log=$payload/retry.log retry_why=""
retry_case "RESULT watch-a PASS" "124 0" 2
retry_case "RESULT watch-a FAIL broken" "124 0" 1
retry_case "RESULT watch-a PASS" "125 0" 1
retry_case "RESULT watch-a PASS" "124 124" 2
retry_case "RESULT watch-a PASS" "0 0" 1
log=$real_log

cp "$here/watch-run.sh" "$payload/run.sh"
echo "BOUND=$bound" >"$payload/config"
mon=$payload/monitor
mkfifo "$mon.in" "$mon.out"
out=$payload/l1.out
mkdir -p "$(dirname "$log")"
: >"$log"

# l1.sh's lines shown and kept (its exit code through the pipe).
(
	"$here/l1.sh" --payload "$payload" --timeout "$timeout_s" --log "$log" --freeze-bound "$bound" \
		--monitor-pipe "$mon" "${verbose[@]}" 2>&1 | tee "$out"
	exit "${PIPESTATUS[0]}"
) &
l1=$!
trap 'kill "$l1" 2>/dev/null; wait "$l1" 2>/dev/null; rm -rf "$payload"' EXIT
# The last phase: once L1 says it is there, stop its vCPU (the monitor reads PATH.in; QEMU holds
# both FIFOs open, so this open cannot block while QEMU runs, and is bounded if it does not).
while kill -0 "$l1" 2>/dev/null && ! grep -aq '^STEP watch-frozen' "$log"; do sleep 1; done
if grep -aq '^STEP watch-frozen' "$log"; then
	timeout 10 sh -c 'echo stop >"$1"' _ "$mon.in" || echo "$me: could not write to QEMU's monitor" >&2
fi
set +e
wait "$l1"
l1_rc=$?
set -e
trap 'rm -rf "$payload"' EXIT

pass=0 fail=0
result() { # case why detail
	if [ -z "$2" ]; then
		echo "  $1 PASS $3"
		pass=$((pass + 1))
	else
		echo "  $1 FAIL$2"
		fail=$((fail + 1))
	fi
}
echo "==== nested watch test summary ($log) ===="
frozen=$(grep -a '^l1.sh: FROZEN L1' "$out" || true)
why=""
grep -aq '^STEP watch-busy' "$log" || why=" L1 never got past its idle phase;"
[ -z "$frozen" ] || grep -aq "last marker: 'STEP watch-frozen'" <<<"$frozen" ||
	why="$why l1.sh called L1 frozen before the vCPU was stopped: $frozen;"
result watch-idle "$why" "L1 idle past the ${bound}s bound with its heartbeat: not killed"
why=""
grep -aq '^STEP watch-frozen' "$log" || why=" L1 never got past its busy phase;"
result watch-busy "$why" "L1 busy past the bound with its heartbeat stopped: not killed"
why=""
[ "$l1_rc" = 124 ] || why=" l1.sh exit $l1_rc (want 124);"
[ -n "$frozen" ] || why="$why no 'l1.sh: FROZEN L1' line;"
grep -aq "last marker: 'STEP watch-frozen'" <<<"$frozen" || why="$why the FROZEN line does not name the step;"
! grep -aq '^l1.sh: TIMEOUT' "$out" || why="$why l1.sh's timeout fired, not the detector;"
grep -aq '^STEP watch-frozen' "$log" || why="$why the serial log was not kept;"
result watch-frozen "$why" "vCPU stopped: killed as frozen, exit 124 ($(sed -n 's/.*\(no heartbeat for [0-9]*s and QEMU busy only [0-9]* ms\).*/\1/p' <<<"$frozen"))"
result watch-retry "$retry_why" "tier_retry: a 124 with no case failed run once more; a failed case, a 125, a second 124 not"
echo "  $pass passed, $fail failed, 0 skipped"
[ "$fail" = 0 ] || exit 1
echo "$me: all 4 cases passed"
