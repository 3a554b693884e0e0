#!/usr/bin/env bash
# The unit tests under ASan + UBSan (build/san/tests/unit-tests, `make unit-san-bin`).  Any report
# fails: a report during a test crashes it (abort_on_error), and a LeakSanitizer report when a
# test's process exits (Criterion calls that a crash in teardown and would let it pass) is counted
# as that test's failure here.  Ends with "unit-san: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=build/san/tests/unit-tests
if [ ! -x "$bin" ]; then
	echo "$bin missing (make unit-san-bin)"
	echo "unit-san: 0 passed, 1 failed, 0 skipped"
	exit 1
fi
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}
export LSAN_OPTIONS=suppressions=$PWD/tests/unit/lsan.supp:${LSAN_OPTIONS:-}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$bin" --jobs 2 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
line=$(grep -E 'Synthesis: Tested: ' "$log" | tail -n1)
if [ -z "$line" ]; then
	echo "unit-san: 0 passed, 1 failed, 0 skipped (no Criterion synthesis; exit $rc)"
	exit 1
fi
tested=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$line")
p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$line")
s=$((tested - p - f)); [ "$s" -lt 0 ] && s=0
late=$(grep -cE 'crashed during its setup or teardown' "$log")
if [ "$late" -gt 0 ]; then
	grep -E 'crashed during its setup or teardown' "$log" | sed 's/^/  sanitizer report at exit: /'
	p=$((p - late)); [ "$p" -lt 0 ] && p=0
	f=$((f + late))
fi
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
	echo "the run exited with $rc (a report in Criterion's runner?)"
	f=1
fi
echo "unit-san: $p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
