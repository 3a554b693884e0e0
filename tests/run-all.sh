#!/usr/bin/env bash
# Runs every test tier, keeps each tier's log, and ends with one "N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=build/test-logs
mkdir -p "$logs"

total_pass=0 total_fail=0 total_skip=0
summary=()
failed_cases=()

# Adds one tier's counts.  A tier that printed no counts at all counts as one failure.
count_tier() {
	local name=$1 log=$2 rc=$3 p=0 f=0 s=0 line
	# The plain line first: it counts skips, which Criterion's synthesis leaves out.
	if line=$(grep -E '^[[:space:]]*([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1) && [ -n "$line" ]; then
		p=$(sed -E 's/^[[:space:]]*([A-Za-z-]+: )?([0-9]+) passed.*/\2/' <<<"$line")
		f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
		if grep -qE '[0-9]+ skipped' <<<"$line"; then s=$(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line"); fi
	elif line=$(grep -E 'Synthesis: Tested: ' "$log" | tail -n1) && [ -n "$line" ]; then
		# Criterion: [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N
		# (Failing already counts the crashed tests.)
		p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
		f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$line")
		s=$(( $(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$line") - p - f ))
		[ "$s" -lt 0 ] && s=0
	else
		echo "!! $name tier printed no result line (exit code $rc): counted as 1 failure; see $log"
		f=1
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "!! $name tier exited with $rc but reported no failure: counted as 1 failure; see $log"
		f=1
	fi
	total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
	# The failing cases by name, so the summary alone says what broke.
	if [ "$f" -gt 0 ]; then
		failed_cases+=("$name: $(grep -E '\[FAIL\]|^[[:space:]]*[A-Za-z0-9_.-]+ +FAIL |crashed|sanitizer report' "$log" | sed -E 's/\x1b\[[0-9;]*m//g' | head -n 12 | tr '\n' ';')")
	fi
	summary+=("$(printf '%-8s %4d passed, %3d failed, %3d skipped' "$name" "$p" "$f" "$s")")
}

run_tier() {
	local name=$1; shift
	echo "==== tier: $name ($*)"
	local log="$logs/$name.log" rc
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	count_tier "$name" "$log" "$rc"
}

run_tier unit   build/tests/unit-tests --jobs 2
run_tier unit-san tests/unit/run-san.sh
run_tier fuzz   tests/fuzz/run.sh --seconds 10
run_tier kvm    tests/kvm/run.sh
run_tier jail   tests/kvm/jail.sh
run_tier kvm-soak tests/kvm/soak.sh
run_tier kvm-faults tests/kvm/faults.sh
run_tier kvm-inproc build/tests/kvm-inproc --jobs 1
run_tier nested-watch tests/nested/watch-test.sh
run_tier nested tests/nested/boot-test.sh
run_tier nested-blk tests/nested/blk-test.sh
run_tier nested-run tests/nested/run-test.sh
run_tier nested-snap tests/nested/snap-test.sh
run_tier nested-soak tests/nested/soak-test.sh
run_tier nested-debian tests/nested/debian-test.sh
run_tier nested-net tests/nested/net-test.sh
run_tier nested-cgroup tests/nested/cgroup-test.sh
run_tier nested-mcp tests/nested/mcp-test.sh
run_tier nested-serve tests/nested/serve-test.sh
run_tier nested-e2b tests/nested/e2b-test.sh

echo "==== summary"
for l in "${summary[@]}"; do echo "  $l"; done
for l in "${failed_cases[@]}"; do echo "  failed in $l"; done
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
