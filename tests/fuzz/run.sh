#!/usr/bin/env bash
# Runs every libFuzzer harness (build/fuzz/bin/fuzz_*) for a bounded time on its seed corpus and
# ends with one "N passed, N failed" line: one test per harness, passed = its time ran out with
# no crash, leak, timeout or out-of-memory.  New inputs, crash reproducers and logs go under
# build/fuzz/, never into the source tree.
# Usage: tests/fuzz/run.sh [--seconds N] [HARNESS...]
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=60
names=()
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) seconds=$2; shift 2 ;;
	--seconds=*) seconds=${1#--seconds=}; shift ;;
	-h|--help) sed -n '2,7p' "$0"; exit 0 ;;
	*) names+=("$1"); shift ;;
	esac
done

bin=build/fuzz/bin
work=build/fuzz/run
if [ ${#names[@]} -eq 0 ]; then
	for b in "$bin"/fuzz_*; do
		[ -x "$b" ] && names+=("$(basename "$b" | sed 's/^fuzz_//')")
	done
fi
if [ ${#names[@]} -eq 0 ]; then
	echo "no harnesses in $bin (make fuzz-bin)"
	echo "0 passed, 1 failed"
	exit 1
fi

# Inputs larger than a harness's parser can take only slow it down.
max_len_of() {
	case "$1" in
	http|api) echo 20000 ;;
	snapshot) echo 65536 ;;
	loader|virtq_blk|virtio_net) echo 65536 ;;
	sni|httpreq) echo 20000 ;; # past SNI_MAX_INPUT (HTTPREQ_HEAD_MAX), where the parsers must give up
	agent_client|agent_proto) echo 140000 ;;
	*) echo 16384 ;;
	esac
}

pass=0 fail=0
for n in "${names[@]}"; do
	exe=$bin/fuzz_$n
	seeds=tests/fuzz/corpus/$n
	dir=$work/$n
	mkdir -p "$dir/corpus" "$dir/artifacts"
	log=$dir/log
	if [ ! -x "$exe" ]; then
		echo "fuzz $n: FAILED (no binary $exe)"
		fail=$((fail + 1))
		continue
	fi
	# The first corpus directory takes the new inputs; the seeds in the tree are only read.
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
	"$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len_of "$n")" \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
		"$dir/corpus" $([ -d "$seeds" ] && echo "$seeds") >"$log" 2>&1
	rc=$?
	execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n1)
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | sed 's/cov: //')
	if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
		printf 'fuzz %-13s passed: %10s executions in %ss, coverage %s\n' "$n" "$execs" "$seconds" "${cov:-?}"
		pass=$((pass + 1))
	else
		printf 'fuzz %-13s FAILED (exit %d) after %s executions; log %s\n' "$n" "$rc" "${execs:-?}" "$log"
		grep -E '^==[0-9]+==ERROR|SUMMARY|^fuzz:|runtime error|Test unit written' "$log" | head -n 8 | sed 's/^/    /'
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
