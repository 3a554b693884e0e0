#!/bin/sh
# Issue-2 boot cases, run inside L1 as /payload/run.sh by busybox sh (copied by boot-test.sh).
# For each VMM in $VMMS: boot bzImage with 1 and 2 vCPUs, vmlinux (ELF/PVH) with 1 vCPU, and the
# panic self-test. One line per case: RESULT <vmm>-<case> PASS|FAIL <detail>.
# Before each case a `STEP <vmm>-<case>` line says what runs, so a timeout names the hung case.
cd /payload || exit 1
. ./config # VMMS KVER CASE_TIMEOUT MEM

fails=0
now() { cut -d' ' -f1 /proc/uptime; }

# run_case VMM NAME KERNEL CPUS EXTRA WANT_RC WANT_MARKER WANT_CPUS(- = no check)
run_case() {
	vmm=$1 name=$2 kernel=$3 cpus=$4 extra=$5 want_rc=$6 marker=$7 want_cpus=$8
	log=/tmp/$vmm-$name.log
	echo "STEP $vmm-$name"
	t0=$(now)
	timeout -k 10 "$CASE_TIMEOUT" sh /payload/vmm-run.sh "$vmm" "$kernel" "$cpus" "$extra" >"$log.raw" 2>&1 </dev/null
	rc=$?
	# busybox timeout exits 143 when it had to send SIGTERM.
	[ "$rc" = 143 ] && rc=timeout
	t1=$(now)
	tr -d '\r' <"$log.raw" >"$log"
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	sed "s/^/  [$vmm-$name] /" "$log"

	why=""
	if [ "$rc" = timeout ]; then
		why="timed out after ${CASE_TIMEOUT}s"
	else
		[ "$rc" = "$want_rc" ] || why="$why exit $rc (want $want_rc);"
		grep -q "$marker" "$log" || why="$why no $marker;"
		if [ "$want_cpus" != - ]; then
			grep -q "^cpus: $want_cpus\$" "$log" || why="$why no 'cpus: $want_cpus';"
			grep "^Linux " "$log" | grep -qF " $KVER " || why="$why no 'uname -a' with $KVER;"
		fi
	fi
	if [ -z "$why" ]; then
		echo "RESULT $vmm-$name PASS exit $rc in ${secs}s"
	else
		echo "RESULT $vmm-$name FAIL$why (${secs}s)"
		fails=$((fails + 1))
	fi
}

for vmm in $VMMS; do
	case "$vmm" in
	padcell) panic_rc=3 panic_marker=PADCELL-PANIC-NOW ;;
	qemu) panic_rc=0 panic_marker=PADCELL-PANIC-NOW ;;
	esac
	run_case "$vmm" bzimage-1cpu /payload/bzImage 1 "" 0 PADCELL-INIT-OK 1
	run_case "$vmm" bzimage-2cpu /payload/bzImage 2 "" 0 PADCELL-INIT-OK 2
	run_case "$vmm" vmlinux-pvh-1cpu /payload/vmlinux 1 "" 0 PADCELL-INIT-OK 1
	run_case "$vmm" panic /payload/bzImage 1 " padcell.test=panic" "$panic_rc" "$panic_marker" -
done
[ "$fails" -eq 0 ]
