# Sourced by the L1 side of the nested case tiers (run-run.sh, snap-run.sh, debian-run.sh), after
# ./config (CASE_TIMEOUT, TIER).  One line per case: RESULT <TIER>-<case> PASS|FAIL <detail>.
fails=0
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
result() { # result NAME WHY DETAIL: PASS when WHY is empty
	if [ -z "$2" ]; then echo "RESULT $TIER-$1 PASS $3"; else echo "RESULT $TIER-$1 FAIL$2"; fails=$((fails + 1)); fi
}
show() { sed "s/^/  [$1] /" "$2" | head -n 40; }
