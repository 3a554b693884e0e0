#!/usr/bin/env bash
# KVM tier: boots guest/testguest under build/padcell on this host's /dev/kvm, once per
# entry protocol, vCPU count, memory size and ending; ends with "N passed, N failed, N skipped".
#
# The guest checks what padcell hands it (boot structure, layout, memory map, command line,
# initrd, ACPI, 8250, i8042, with tg.case=smp the other vCPUs, with tg.case=blk/blk-hostile the
# virtio-blk disks through a polling driver, with tg.case=vsock virtio-vsock against
# build/guest/tg-vsock on the host, with tg.case=nethostile hostile frames and chains to
# virtio-net behind --net) and prints "ok"/"FAIL" per
# check, then SUCCESS, then ends the VM the way tg.case asks (guest/README.md).  This script
# checks the exit code, the protocol line, that every check passed, and that the command line
# the guest saw is byte for byte the one passed.  Negative cases at the end lie to the guest on
# purpose and expect it to catch the lie and panic.
set -uo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.." || exit 1
. tests/kvm/monitor-lib.sh

PADCELL=${PADCELL:-build/padcell}
GUEST=${GUEST:-build/guest/testguest.elf}
MKINITRD=build/guest/tg-mkinitrd
TGVSOCK=build/guest/tg-vsock
TIMEOUT=${TIMEOUT:-30}
HANG=${HANG:-60} # seconds any awaited event (a socket, a console line) may take: a hang guard only
LOGDIR=${LOGDIR:-build/test-logs/kvm}

pass=0 fail=0 skip=0
times=()

skip_all() {
	echo "SKIP: kvm tier: $1"
	echo "0 passed, 0 failed, $(grep -cE '^(run_case|check_blk_files|check_blk_rate_usage|check_vsock|check_api_[a-z_]+|check_snapshot_[a-z]+)$|^(run_case|check_blk_files|check_blk_rate|check_vsock|check_snapshot_count|check_net_hostile) ' "$SELF") skipped"
	exit 0
}

# A missing or unusable /dev/kvm is a visible skip, never a silent pass.
KVM_DEV=${KVM_DEV:-/dev/kvm} # overridable only to exercise the skip path
[ -e "$KVM_DEV" ] || skip_all "$KVM_DEV does not exist (no KVM on this host)"
( exec 3<>"$KVM_DEV" ) 2>/dev/null || skip_all "$KVM_DEV cannot be opened read-write by $(id -un)"

if [ ! -x "$PADCELL" ] || [ ! -f "$GUEST" ] || [ ! -x "$MKINITRD" ] || [ ! -x "$TGVSOCK" ]; then
	make -s "$PADCELL" testguest >/dev/null || { echo "FAIL build: make $PADCELL testguest failed"; echo "0 passed, 1 failed"; exit 1; }
fi

# A clean log directory: cases wait for lines in their logs, and a log left by an earlier run
# could satisfy a wait before this run's process has written (or even truncated) it.
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
# Run private copies: a rebuild during the run (make in another shell) must not swap binaries
# under a case, which shows up as exit 126 "Permission denied" / "Text file busy".
if ! cp "$PADCELL" "$LOGDIR/padcell" || ! cp "$GUEST" "$LOGDIR/testguest.elf"; then
	echo "FAIL build: cannot copy $PADCELL and $GUEST"; echo "0 passed, 1 failed"; exit 1
fi
PADCELL=$LOGDIR/padcell GUEST=$LOGDIR/testguest.elf
INITRD_SIZE=200003 # not a page multiple: the guest must see the exact size
INITRD=$LOGDIR/initrd.img
"$MKINITRD" "$INITRD_SIZE" "$INITRD" || { echo "FAIL build: cannot write $INITRD"; echo "0 passed, 1 failed"; exit 1; }

ms_now() { date +%s%N | cut -b1-13; }

# run_case NAME EXPECTED_EXIT PROTO MEM CPUS INITRD(0|1) CASE [padcell args...]
# Environment for one call: PAD (filler parameter), TG_EXTRA (parameters appended last, so they
# override), INITRD_FILE (another initrd), EXPECT_FAIL (a negative case: the guest must print a
# "FAIL <check>" line matching this regex, and not SUCCESS), CMDLINE_SUFFIX (what padcell appends
# for --drive/--scratch: root= and virtio_mmio.device= entries), TMPDIR (where --scratch goes),
# WRAP (a command padcell runs under, e.g. the vsock helper; split on spaces).
run_case() {
	local name=$1 want_rc=$2 proto=$3 mem=$4 cpus=$5 with_initrd=$6 kase=$7
	shift 7
	local echo_val="hello-padcell-$name-$$"
	local cmdline="tg.mem=$mem tg.cpus=$cpus tg.echo=$echo_val"
	local args=(boot --kernel "$GUEST" --mem "$mem" --cpus "$cpus" "$@")
	[ -n "$kase" ] && cmdline+=" tg.case=$kase"
	if [ "$with_initrd" = 1 ]; then
		cmdline+=" tg.initrd=$INITRD_SIZE"
		args+=(--initrd "${INITRD_FILE:-$INITRD}")
	fi
	[ -n "${PAD:-}" ] && cmdline+=" tg.pad=$PAD"
	[ -n "${TG_EXTRA:-}" ] && cmdline+=" $TG_EXTRA"
	args+=(--cmdline "$cmdline")

	local log=$LOGDIR/$name.log t0 t1 rc
	t0=$(ms_now)
	# shellcheck disable=SC2086 # WRAP is a word list on purpose
	timeout "$TIMEOUT" ${WRAP:-} "$PADCELL" "${args[@]}" </dev/null >"$log.raw" 2>&1
	rc=$?
	t1=$(ms_now)
	tr -d '\r' <"$log.raw" >"$log" && rm -f "$log.raw"

	local why=""
	if [ "$rc" -eq 124 ]; then
		why="timed out after ${TIMEOUT}s"
	elif [ "$rc" -ne "$want_rc" ]; then
		why="exit code $rc, expected $want_rc"
	elif ! grep -qx "boot: $proto" "$log"; then
		why="guest did not report 'boot: $proto'"
	elif [ -n "${EXPECT_FAIL:-}" ]; then
		if ! grep -qE "^FAIL $EXPECT_FAIL" "$log"; then
			why="guest did not catch the fault (no 'FAIL $EXPECT_FAIL' line)"
		elif grep -qx 'SUCCESS' "$log"; then
			why="guest printed SUCCESS despite the fault"
		fi
	elif grep -q '^FAIL' "$log"; then
		why="guest check failed: $(grep -m1 '^FAIL' "$log")"
	elif ! grep -qx 'SUCCESS' "$log"; then
		why="guest never printed SUCCESS"
	elif ! grep -qxF "cmdline: \"$cmdline${CMDLINE_SUFFIX:-}\"" "$log"; then
		why="guest saw a different command line"
	elif ! grep -qF "tg.echo=$echo_val" "$log"; then
		why="guest did not echo tg.echo"
	fi
	if [ -n "$why" ]; then
		echo "FAIL $name: $why ($((t1 - t0)) ms; log $log)"
		local cmd="$PADCELL ${args[*]}"
		[ "${#cmd}" -gt 300 ] && cmd="${cmd:0:300}..."
		echo "  \$ $cmd"
		tail -n 8 "$log" | sed 's/^/  | /'
		fail=$((fail + 1))
	else
		echo "PASS $name ($((t1 - t0)) ms)"
		times+=("$((t1 - t0))")
		pass=$((pass + 1))
	fi
}

run_case linux64-1cpu-initrd   0 linux64 256M  1 1 ""        --entry linux64
run_case linux64-2cpu          0 linux64 256M  2 0 ""        --entry linux64
run_case pvh-1cpu              0 pvh     256M  1 0 ""        --entry pvh
run_case pvh-2cpu-initrd       0 pvh     256M  2 1 ""        --entry pvh
run_case auto-entry-is-pvh     0 pvh     128M  1 0 ""
run_case mem64m-linux64-initrd 0 linux64 64M   1 1 ""        --entry linux64
run_case mem3584m-pvh-initrd   0 pvh     3584M 2 1 ""        --entry pvh
run_case mem3584m-linux64      0 linux64 3584M 1 0 ""        --entry linux64
PAD=$(head -c 3000 /dev/zero | tr '\0' x) \
run_case long-cmdline          0 linux64 256M  1 0 ""        --entry linux64
run_case poweroff-linux64      0 linux64 256M  1 0 poweroff  --entry linux64
run_case poweroff-pvh          0 pvh     256M  2 1 poweroff  --entry pvh
run_case panic-linux64         3 linux64 256M  1 0 panic     --entry linux64
run_case panic-pvh             3 pvh     256M  1 0 panic     --entry pvh
run_case tripfault-linux64     4 linux64 256M  1 0 tripfault --entry linux64
run_case tripfault-pvh         4 pvh     256M  1 0 tripfault --entry pvh
run_case smp-linux64           0 linux64 256M  2 0 smp       --entry linux64
run_case smp-pvh               0 pvh     256M  2 1 smp       --entry pvh
run_case smp4-linux64          0 linux64 256M  4 0 smp       --entry linux64

# Negative cases: a wrong promise on the command line (or a damaged initrd) must be caught by
# the guest, which then panics (exit 3).  They prove the checks above are not vacuous.
BAD_INITRD=$LOGDIR/initrd-bad.img
cp "$INITRD" "$BAD_INITRD" && printf '\x00' | dd of="$BAD_INITRD" bs=1 seek=150001 conv=notrunc 2>/dev/null
TG_EXTRA="tg.mem=128M" EXPECT_FAIL="memmap" \
run_case neg-wrong-mem         3 linux64 256M  1 0 ""        --entry linux64
TG_EXTRA="tg.cpus=1" EXPECT_FAIL="madt" \
run_case neg-wrong-cpus        3 pvh     256M  2 0 ""        --entry pvh
TG_EXTRA="tg.initrd=$INITRD_SIZE" EXPECT_FAIL="initrd" \
run_case neg-missing-initrd    3 linux64 256M  1 0 ""        --entry linux64
INITRD_FILE=$BAD_INITRD EXPECT_FAIL="initrd: content differs" \
run_case neg-corrupt-initrd    3 pvh     256M  1 1 ""        --entry pvh

# virtio-blk (tg.case=blk): a read-only 1 MiB image holding the initrd pattern, a writable image and
# a scratch disk; the guest's polling driver reads, writes, flushes and asks GET_ID.  Afterwards the
# host checks the files: the read-only image byte for byte unchanged, the guest's write in the
# writable image (sectors 2-3 = the pattern shifted by 7), and no scratch file left in TMPDIR.
BLK_SIZE=1048576
BLK_RO=$LOGDIR/blk-ro.img BLK_RW=$LOGDIR/blk-rw.img BLK_TMP=$LOGDIR/blk-tmp
BLK_BAD=$LOGDIR/blk-ro-bad.img
rm -rf "$BLK_TMP" "$BLK_RW" && mkdir -p "$BLK_TMP" && truncate -s 64K "$BLK_RW" &&
	"$MKINITRD" "$BLK_SIZE" "$BLK_RO" && cp "$BLK_RO" "$LOGDIR/blk-ro.orig" && cp "$BLK_RO" "$BLK_BAD" &&
	printf '\x00' | dd of="$BLK_BAD" bs=1 seek=2600 conv=notrunc 2>/dev/null ||
	{ echo "FAIL build: cannot write the disk images in $LOGDIR"; fail=$((fail + 1)); }
VIRTIO1=" virtio_mmio.device=4K@0xd0000000:5"
VIRTIO3=" root=/dev/vda ro$VIRTIO1 virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=4K@0xd0002000:7"

check_blk_files() {
	local name=$1 why=""
	if ! cmp -s "$BLK_RO" "$LOGDIR/blk-ro.orig"; then
		why="the read-only image changed"
	elif ! cmp -s <(dd if="$BLK_RW" bs=512 skip=2 count=2 2>/dev/null) \
		<(dd if="$BLK_RO" bs=1 skip=7 count=1024 2>/dev/null); then
		why="the guest's write is not in sectors 2-3 of $BLK_RW"
	elif [ -n "$(ls -A "$BLK_TMP")" ]; then
		why="a scratch file was left in $BLK_TMP: $(ls -A "$BLK_TMP" | head -3)"
	fi
	if [ -n "$why" ]; then
		echo "FAIL $name: $why"
		fail=$((fail + 1))
	else
		echo "PASS $name"
		pass=$((pass + 1))
	fi
}

export TMPDIR=$BLK_TMP
TG_EXTRA="tg.blk=$BLK_SIZE" CMDLINE_SUFFIX=$VIRTIO3 \
run_case blk-linux64           0 linux64 256M  1 0 blk       --entry linux64 --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW" --scratch 1M
TG_EXTRA="tg.blk=$BLK_SIZE" CMDLINE_SUFFIX=$VIRTIO3 \
run_case blk-pvh-2cpu          0 pvh     256M  2 1 blk       --entry pvh --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW" --scratch 1M
check_blk_files blk-host-files
CMDLINE_SUFFIX=$VIRTIO1 \
run_case blk-hostile-linux64   0 linux64 256M  1 0 blk-hostile --entry linux64 --scratch 1M
CMDLINE_SUFFIX=" root=/dev/vda$VIRTIO1" \
run_case blk-hostile-pvh       0 pvh     3584M 2 0 blk-hostile --entry pvh --drive "$BLK_RW"
TG_EXTRA="tg.blk=$((2 * BLK_SIZE))" CMDLINE_SUFFIX=$VIRTIO3 EXPECT_FAIL="blk-ro: capacity" \
run_case neg-blk-wrong-size    3 linux64 256M  1 0 blk       --entry linux64 --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW" --scratch 1M
TG_EXTRA="tg.blk=$BLK_SIZE" CMDLINE_SUFFIX=$VIRTIO3 EXPECT_FAIL="blk-ro: sectors 5-7" \
run_case neg-blk-corrupt-image 3 pvh     256M  1 0 blk       --entry pvh --drive "$BLK_BAD,ro,id=tg-ro" --drive "$BLK_RW" --scratch 1M
check_blk_files blk-host-files-after-all

# Rate limits (--drive-rate): the guest reads its 1 MiB pattern image and then 4 MiB more
# (tg.blkbench=4) from disk 0.  At 1 MiB/s with no burst the bucket starts full (1 MiB), so the
# other 4 MiB and more cannot be read in under 3 s whatever the machine: a lower bound only, never
# an upper one.  The same run without a limit still passes; a limit on a disk the VM does not have
# is one line and exit 2.
check_blk_rate() { # NAME TIMES_BEFORE MIN_MS
	local name=$1 before=$2 min=$3 ms
	if [ "${#times[@]}" -le "$before" ]; then
		echo "SKIP $name: the rate-limited run itself failed (above), so its time says nothing"
		skip=$((skip + 1))
		return
	fi
	ms=${times[$((${#times[@]} - 1))]}
	if [ "$ms" -lt "$min" ]; then
		echo "FAIL $name: the rate-limited run took $ms ms, under the $min ms the limit allows"
		fail=$((fail + 1))
	else
		echo "PASS $name ($ms ms >= $min ms)"
		pass=$((pass + 1))
	fi
}
TG_EXTRA="tg.blk=$BLK_SIZE tg.blkbench=4" CMDLINE_SUFFIX=$VIRTIO3 \
run_case blk-rate-unlimited    0 linux64 256M  1 0 blk       --entry linux64 --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW" --scratch 1M --drive-rate 0=none
n_before=${#times[@]}
TG_EXTRA="tg.blk=$BLK_SIZE tg.blkbench=4" CMDLINE_SUFFIX=$VIRTIO3 \
run_case blk-rate-1mib         0 linux64 256M  1 0 blk       --entry linux64 --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW" --scratch 1M --drive-rate 0=bytes=1M/1s
check_blk_rate blk-rate-lower-bound "$n_before" 3000
check_blk_rate_usage() {
	local name=blk-rate-no-such-disk log=$LOGDIR/blk-rate-no-such-disk.log rc why=""
	timeout "$TIMEOUT" "$PADCELL" boot --kernel "$GUEST" --drive "$BLK_RO,ro" --drive-rate 1=bytes=1M/1s </dev/null >"$log" 2>&1
	rc=$?
	if [ "$rc" -ne 2 ]; then why="exit $rc, not 2"
	elif [ "$(wc -l <"$log")" -ne 1 ] || ! grep -q '^padcell: --drive-rate 1=...: the VM has no disk 1' "$log"; then
		why="not one line naming the disk: $(head -c 300 "$log")"
	fi
	if [ -n "$why" ]; then echo "FAIL $name: $why"; fail=$((fail + 1)); else echo "PASS $name"; pass=$((pass + 1)); fi
}
check_blk_rate_usage
check_blk_files blk-host-files-after-rates

# virtio-vsock (tg.case=vsock): tg-vsock listens on SOCK_5000, runs padcell with --vsock SOCK, sends
# "CONNECT 1234" until the guest's polling driver serves port 1234, checks 100000 bytes come back
# echoed and the greeting the guest sent to CID 2 port 5000 arrives on SOCK_5000.
check_vsock() {
	local name=$1 log=$LOGDIR/$1.log sock=$2 why=""
	for want in "tg-vsock: ok connect" "tg-vsock: ok echo" "tg-vsock: ok greeting" "ok vsock-echo" "ok vsock-connect"; do
		grep -q "^$want" "$log" 2>/dev/null || { why="no '$want' line in $log"; break; }
	done
	[ -z "$why" ] && [ -e "$sock" ] && why="padcell left $sock behind"
	if [ -n "$why" ]; then
		echo "FAIL $name-host: $why"; grep -m3 'FAIL' "$log" 2>/dev/null | sed 's/^/  | /'; fail=$((fail + 1))
	else
		echo "PASS $name-host"; pass=$((pass + 1))
	fi
}
VSOCK=$LOGDIR/vsock.sock
rm -f "$VSOCK" "${VSOCK}_5000"
TG_EXTRA="tg.vsockcid=42" CMDLINE_SUFFIX=" virtio_mmio.device=4K@0xd0000000:5" WRAP="$TGVSOCK $VSOCK 100000 --" \
run_case vsock-linux64         0 linux64 64M   1 0 vsock     --entry linux64 --vsock "$VSOCK,cid=42"
check_vsock vsock-linux64 "$VSOCK"
CMDLINE_SUFFIX=" virtio_mmio.device=4K@0xd0000000:5" WRAP="$TGVSOCK $VSOCK 100000 --" \
run_case vsock-pvh             0 pvh     64M   1 0 vsock     --entry pvh --vsock "$VSOCK"
check_vsock vsock-pvh "$VSOCK"

# Control socket (--api-sock): the guest reads 2 GiB from its first disk (tg.blkbench: seconds of
# polling I/O), and padcell is paused and resumed through the socket mid-run.  While paused nothing is
# read (the process's rchar in /proc/PID/io stands still); after resuming the guest reads again and
# still ends with SUCCESS.  A second padcell on the same live socket is refused; a policy change
# on this VM, which has no NIC, is a 400 saying so (net-policy exit 2); a padcell killed
# with SIGKILL leaves a stale socket that the next one takes over; a paused VM still stops on
# SIGTERM; the socket is gone after every normal exit.
API_SOCK=$LOGDIR/api.sock
API_GUEST=(boot --kernel "$GUEST" --mem 64M --entry linux64 --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW"
	--scratch 1M --api-sock "$API_SOCK" --cmdline "tg.case=blk tg.blk=$BLK_SIZE tg.blkbench=2048")
api_state() { "$PADCELL" status --api-sock "$API_SOCK" 2>&1; }
api_rchar() { awk '/^rchar/ {print $2}' "/proc/$(monitor_of "$1")/io" 2>/dev/null; } # the monitor, not its supervisor
api_wait_sock() { for _ in $(seq $((HANG * 20))); do [ -S "$API_SOCK" ] && return 0; sleep 0.05; done; return 1; }
# The pause goes into the 2 GiB read (blk-bench), after the interrupt checks, so the checks before
# it run undisturbed and the pause lands in seconds of steady disk reads.
api_wait_bench() { for _ in $(seq $((HANG * 20))); do grep -q '^ok blk-irq' "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# api_wait PID SECONDS: its exit code, or 124 (and SIGKILL) when it is still running after SECONDS.
api_wait() {
	local n=$(($2 * 20))
	while kill -0 "$1" 2>/dev/null && [ "$n" -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
	if kill -0 "$1" 2>/dev/null; then kill -KILL "$1"; wait "$1" 2>/dev/null; return 124; fi
	wait "$1"
}
api_result() { # NAME WHY LOG
	if [ -n "$2" ]; then
		echo "FAIL $1: $2 (log $3)"; tail -n 5 "$3" 2>/dev/null | sed 's/^/  | /'; fail=$((fail + 1))
	else
		echo "PASS $1"; pass=$((pass + 1))
	fi
}

check_api_stale() {
	local name=api-stale-socket log=$LOGDIR/api-stale-socket.log why="" pid
	rm -f "$API_SOCK"
	"$PADCELL" "${API_GUEST[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	if ! api_wait_sock; then why="no socket at $API_SOCK"; fi
	kill_wait KILL "$pid" # the monitor too: the next case takes its socket over
	[ -z "$why" ] && [ ! -S "$API_SOCK" ] && why="SIGKILL left no stale socket to test with"
	api_result "$name" "$why" "$log"
}

check_api_pause_resume() {
	local name=api-pause-resume log=$LOGDIR/api-pause-resume.log why="" pid st r0 r1 rc
	[ -S "$API_SOCK" ] || why="no stale socket left by api-stale-socket"
	"$PADCELL" "${API_GUEST[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	if [ -n "$why" ]; then :
	elif ! api_wait_sock; then why="no socket at $API_SOCK"
	elif ! api_wait_bench "$log"; then why="the guest never reached its disk read (no 'ok blk-irq' line)"
	elif ! st=$(api_state) || [ "$st" != Running ]; then why="GET / said '$st', not Running"
	elif command -v curl >/dev/null &&
		! curl -sf --unix-socket "$API_SOCK" http://localhost/ | grep -q '"app_name":"padcell"'; then
		why="curl GET / did not name padcell"
	elif "$PADCELL" "${API_GUEST[@]}" </dev/null >"$log.second" 2>&1; rc=$? && [ "$rc" -ne 2 ]; then
		why="a second padcell on the live socket exited $rc, not 2"
	elif ! grep -q "^padcell: --api-sock '$API_SOCK': in use by another process" "$log.second"; then
		why="the second padcell did not say the socket is in use: $(head -c 200 "$log.second")"
	elif "$PADCELL" net-policy --api-sock "$API_SOCK" --allow 1.2.3.4 >"$log.client" 2>&1; rc=$? && [ "$rc" -ne 2 ] ||
		! grep -q "this VM has no network interface" "$log.client"; then
		why="net-policy on a VM without a NIC: exit $rc, $(head -c 200 "$log.client") (want 2, 'no network interface')"
	elif ! "$PADCELL" pause --api-sock "$API_SOCK" >"$log.client" 2>&1; then
		why="padcell pause failed: $(cat "$log.client")"
	elif ! st=$(api_state) || [ "$st" != Paused ]; then why="GET / after the pause said '$st'"
	else
		sleep 0.2; r0=$(api_rchar "$pid"); sleep 1; r1=$(api_rchar "$pid")
		if [ -z "$r0" ] || [ -z "$r1" ]; then why="cannot read /proc/$pid/io"
		elif [ $((r1 - r0)) -gt 262144 ]; then why="the guest read $((r1 - r0)) bytes in 1 s while paused"
		elif ! kill -0 "$pid" 2>/dev/null; then why="padcell exited while paused"
		elif ! "$PADCELL" resume --api-sock "$API_SOCK" >"$log.client" 2>&1; then
			why="padcell resume failed: $(cat "$log.client")"
		elif ! st=$(api_state) || [ "$st" != Running ]; then why="GET / after resuming said '$st'"
		else
			# reading again: more than 1 MiB once resumed (however long a loaded machine takes)
			r0=$(api_rchar "$pid") r1=$r0
			for _ in $(seq $((HANG * 20))); do
				r1=$(api_rchar "$pid"); [ -n "$r1" ] && [ $((r1 - r0)) -gt 1048576 ] && break
				kill -0 "$pid" 2>/dev/null || break; sleep 0.05
			done
			[ -n "$r1" ] && [ $((r1 - r0)) -gt 1048576 ] || why="the guest read only $((r1 - r0)) bytes after resuming"
		fi
	fi
	api_wait "$pid" "$TIMEOUT"
	rc=$?
	tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 0 ]; then why="exit code $rc, expected 0"
	elif grep -q '^FAIL' "$log"; then why="guest check failed: $(grep -m1 '^FAIL' "$log")"
	elif ! grep -qx SUCCESS "$log"; then why="guest never printed SUCCESS"
	elif [ -e "$API_SOCK" ]; then why="padcell left $API_SOCK behind"
	fi
	api_result "$name" "$why" "$log"
}

check_api_paused_sigterm() {
	local name=api-paused-sigterm log=$LOGDIR/api-paused-sigterm.log why="" pid rc
	"$PADCELL" "${API_GUEST[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	if ! api_wait_sock; then why="no socket at $API_SOCK"
	elif ! "$PADCELL" pause --api-sock "$API_SOCK" >"$log.client" 2>&1; then
		why="padcell pause failed: $(cat "$log.client")"
	fi
	kill -TERM "$pid"
	api_wait "$pid" "$TIMEOUT"
	rc=$?
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 143 ]; then why="exit code $rc after SIGTERM to a paused VM, expected 143"
	elif [ -e "$API_SOCK" ]; then why="padcell left $API_SOCK behind"
	fi
	api_result "$name" "$why" "$log"
}

# padcell snapshot through the socket, mid-run: a snapshot of a running VM is refused by the API
# ("pause it first"); the CLI pauses, writes DIR/state and DIR/mem, resumes; --leave-paused leaves it
# paused; the guest still ends with SUCCESS.
check_api_snapshot() {
	local name=api-snapshot log=$LOGDIR/api-snapshot.log why="" pid st rc dir=$LOGDIR/api-snap
	rm -rf "$dir"
	"$PADCELL" "${API_GUEST[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	if ! api_wait_sock; then why="no socket at $API_SOCK"
	elif ! api_wait_bench "$log"; then why="the guest never reached its disk read (no 'ok blk-irq' line)"
	elif command -v curl >/dev/null &&
		! curl -s --unix-socket "$API_SOCK" -X PUT http://localhost/snapshot/create \
			-d "{\"snapshot_path\":\"$dir-x/state\",\"mem_file_path\":\"$dir-x/mem\"}" | grep -q 'pause it first'; then
		why="PUT /snapshot/create on a running VM was not refused with 'pause it first'"
	elif ! "$PADCELL" snapshot --api-sock "$API_SOCK" --to "$dir/one" >"$log.client" 2>&1; then
		why="padcell snapshot failed: $(cat "$log.client")"
	elif [ ! -s "$dir/one/state" ] || [ ! -s "$dir/one/mem" ]; then why="no $dir/one/state and mem"
	elif ! st=$(api_state) || [ "$st" != Running ]; then why="after the snapshot GET / said '$st', not Running"
	elif ! "$PADCELL" snapshot --api-sock "$API_SOCK" --to "$dir/two" --leave-paused >"$log.client" 2>&1; then
		why="padcell snapshot --leave-paused failed: $(cat "$log.client")"
	elif ! st=$(api_state) || [ "$st" != Paused ]; then why="after --leave-paused GET / said '$st', not Paused"
	elif [ ! -s "$dir/two/state" ]; then why="no $dir/two/state"
	elif ! "$PADCELL" resume --api-sock "$API_SOCK" >"$log.client" 2>&1; then
		why="padcell resume failed: $(cat "$log.client")"
	fi
	api_wait "$pid" "$TIMEOUT"
	rc=$?
	tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 0 ]; then why="exit code $rc, expected 0"
	elif grep -q '^FAIL' "$log"; then why="guest check failed: $(grep -m1 '^FAIL' "$log")"
	elif ! grep -qx SUCCESS "$log"; then why="guest never printed SUCCESS"
	elif [ -e "$dir-x" ]; then why="the refused snapshot left $dir-x"
	fi
	rm -rf "$dir"
	api_result "$name" "$why" "$log"
}

# PATCH /drives/{id} on a running VM: disk 0 starts limited to 16 KiB/s, at which the guest's 5 MiB
# and more would take over 5 minutes; a bad body and a NIC the VM lacks are 400s that change
# nothing, then lifting the limit (size 0) lets the guest finish within the hang guard.
api_patch() { # PATH BODY: prints the HTTP status, the body into $API_BODY
	curl -s -o "$API_BODY" -w '%{http_code}' --unix-socket "$API_SOCK" -X PATCH -H 'Content-Type: application/json' \
		-d "$2" "http://localhost$1"
}
check_api_drive_rate() {
	local name=api-drive-rate log=$LOGDIR/api-drive-rate.log why="" pid rc code
	API_BODY=$LOGDIR/api-drive-rate.body
	if ! command -v curl >/dev/null; then
		echo "SKIP $name: no curl on this host to send PATCH requests with"; skip=$((skip + 1)); return
	fi
	rm -f "$API_SOCK"
	"$PADCELL" boot --kernel "$GUEST" --mem 64M --entry linux64 --drive "$BLK_RO,ro,id=tg-ro" --drive "$BLK_RW" \
		--scratch 1M --api-sock "$API_SOCK" --drive-rate 0=bytes=16K/1s \
		--cmdline "tg.case=blk tg.blk=$BLK_SIZE tg.blkbench=4" </dev/null >"$log" 2>&1 &
	pid=$!
	if ! api_wait_sock; then why="no socket at $API_SOCK"
	elif code=$(api_patch /drives/tg-ro '{"rate_limiter":{"bandwidth":{"size":1}}}') && [ "$code" != 400 ] ||
		! grep -q 'needs \\"refill_time\\"' "$API_BODY"; then
		why="a bucket without refill_time answered $code: $(head -c 200 "$API_BODY")"
	elif code=$(api_patch /network-interfaces/eth0 '{"rx_rate_limiter":{}}') && [ "$code" != 400 ] ||
		! grep -q 'no network interface' "$API_BODY"; then
		why="PATCH of a NIC the VM lacks answered $code: $(head -c 200 "$API_BODY")"
	elif ! kill -0 "$pid" 2>/dev/null; then why="padcell ended while the limit held (it should take minutes)"
	elif code=$(api_patch /drives/tg-ro '{"drive_id":"tg-ro","rate_limiter":{"bandwidth":{"size":0,"refill_time":0}}}') &&
		[ "$code" != 204 ]; then
		why="lifting the limit answered $code: $(head -c 200 "$API_BODY")"
	fi
	api_wait "$pid" "$HANG"
	rc=$?
	tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
	if [ -n "$why" ]; then :
	elif [ "$rc" -eq 124 ]; then why="the guest did not finish within ${HANG}s of the limit being lifted"
	elif [ "$rc" -ne 0 ]; then why="exit code $rc, expected 0"
	elif grep -q '^FAIL' "$log"; then why="guest check failed: $(grep -m1 '^FAIL' "$log")"
	elif ! grep -qx SUCCESS "$log"; then why="guest never printed SUCCESS"
	fi
	api_result "$name" "$why" "$log"
}

# `padcell run --api-sock`: the same socket for a run VM, served while run waits for its agent
# (the test guest has none: run waits until its boot timeout): Running, paused and resumed
# through it; a second run on the live socket is refused in one line (exit 2); a SIGTERM ends
# the run (143) and the socket is gone.
check_api_run_sock() {
	local name=api-run-sock log=$LOGDIR/api-run-sock.log sock=$LOGDIR/run-api.sock why="" pid rc st
	rm -f "$sock"
	"$PADCELL" run --allow-pvm --kernel "$GUEST" --rootfs none --mem 64M --boot-timeout $((HANG * 4)) \
		--api-sock "$sock" --cmdline "tg.case=count tg.count=1000000000" -- true </dev/null >"$log" 2>&1 &
	pid=$!
	for _ in $(seq $((HANG * 20))); do [ -S "$sock" ] && break; sleep 0.05; done
	if [ ! -S "$sock" ]; then why="no socket at $sock: $(head -c 200 "$log")"
	elif ! st=$("$PADCELL" status --api-sock "$sock" 2>&1) || [ "$st" != Running ]; then why="GET / said '$st', not Running"
	elif ! "$PADCELL" pause --api-sock "$sock" >"$log.client" 2>&1; then why="pause failed: $(cat "$log.client")"
	elif ! st=$("$PADCELL" status --api-sock "$sock" 2>&1) || [ "$st" != Paused ]; then why="GET / after the pause said '$st'"
	elif ! "$PADCELL" resume --api-sock "$sock" >"$log.client" 2>&1; then why="resume failed: $(cat "$log.client")"
	elif ! st=$("$PADCELL" status --api-sock "$sock" 2>&1) || [ "$st" != Running ]; then why="GET / after resuming said '$st'"
	elif "$PADCELL" run --allow-pvm --kernel "$GUEST" --rootfs none --api-sock "$sock" -- true \
		</dev/null >"$log.second" 2>&1; rc=$? && [ "$rc" -ne 2 ]; then
		why="a second run on the live socket exited $rc, not 2"
	elif [ "$(wc -l <"$log.second")" -ne 1 ] ||
		! grep -q "^padcell: --api-sock '$sock': in use by another process" "$log.second"; then
		why="the second run did not say the socket is in use, in one line: $(head -c 200 "$log.second")"
	fi
	kill -TERM "$pid" 2>/dev/null
	api_wait "$pid" "$HANG"
	rc=$?
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 143 ]; then why="exit code $rc after SIGTERM, expected 143"
	elif [ -e "$sock" ]; then why="$sock is still there after the run"
	fi
	api_result "$name" "$why" "$log"
}

check_api_stale
check_api_pause_resume
check_api_paused_sigterm
check_api_snapshot
check_api_drive_rate
check_api_run_sock

# Hostile frames through a real monitor (tg.case=nethostile, --net with libslirp): the guest's
# polling virtio-net driver sends frames the gate must drop (runt, over the MTU, over the device's
# copy buffer, an IPv4 fragment, IP options, a bad header checksum, a spoofed source IP and MAC,
# IPv6, a VLAN tag, a checksum-offload header never negotiated, a writable tx buffer), a SYN to a
# refused address (padcell's RST must come back), then chains that lie (a loop, a zero length, an
# address outside RAM, a length beyond it, next out of range, an indirect chain longer than the
# queue, an avail index past the queue size), each of which must set DEVICE_NEEDS_RESET, after
# which the guest resets the device and goes on.  Then real answers: ARP for the gateway from the
# stack, NXDOMAIN from padcell's resolver.  While the guest waits on its published port, the
# harness checks the monitor is Running and GET /network/policy counted exactly the 9 gate drops,
# 1 reset SYN and 1 NXDOMAIN; then connects to the port, whose SYN the guest must see.  Afterwards
# each drop's reason must be in --net-log, the exit code 0, the socket gone.
NET_SOCK=$LOGDIR/net.sock
check_net_hostile() { # NAME ENTRY CPUS
	local name=$1 log=$LOGDIR/$1.log netlog=$LOGDIR/$1.netlog why="" pid rc st pol port reason
	local try
	for try in 1 2 3; do # a random host port; another one if something else holds it
		port=$((20000 + RANDOM % 20000))
		rm -f "$NET_SOCK" "$netlog"
		"$PADCELL" boot --kernel "$GUEST" --mem 256M --cpus "$3" --entry "$2" --net --net-log "$netlog" \
			--api-sock "$NET_SOCK" --publish "127.0.0.1:$port:8080" \
			--cmdline "tg.mem=256M tg.cpus=$3 tg.case=nethostile" </dev/null >"$log" 2>&1 &
		pid=$!
		net_wait_line "$log" '^net-hostile: waiting for the host|^FAIL|^padcell: ' || true
		grep -q "cannot listen on 127.0.0.1:$port: Address already in use" "$log" || break
		wait "$pid" 2>/dev/null
	done
	if ! net_wait_line "$log" '^net-hostile: waiting for the host'; then
		if grep -q 'built without libslirp' "$log"; then
			kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
			echo "SKIP $name: this padcell was built without libslirp (SLIRP=0): no --net"; skip=$((skip + 1)); return
		fi
		why="the guest never reached its ingress wait: $(grep -m1 -E '^FAIL|^padcell' "$log")"
	elif ! kill -0 "$pid" 2>/dev/null; then why="padcell ended after the hostile frames"
	elif ! st=$(api_state_of "$NET_SOCK") || [ "$st" != Running ]; then why="GET / after the hostile frames said '$st'"
	elif ! pol=$("$PADCELL" net-policy --api-sock "$NET_SOCK" 2>&1); then why="padcell net-policy failed: $pol"
	elif ! grep -q '"dropped":9,' <<<"$pol" || ! grep -q '"rejected":1,' <<<"$pol" ||
		! grep -q '"nxdomain":1,' <<<"$pol" || ! grep -q '"allowed":0,' <<<"$pol"; then
		why="counters are not 9 dropped, 1 rejected, 1 nxdomain, 0 allowed: $pol"
	elif ! timeout "$HANG" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
		why="cannot connect to the published port 127.0.0.1:$port"
	fi
	api_wait "$pid" "$HANG"
	rc=$?
	tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 0 ]; then why="exit code $rc, expected 0"
	elif grep -q '^FAIL' "$log"; then why="guest check failed: $(grep -m1 '^FAIL' "$log")"
	elif ! grep -qx SUCCESS "$log"; then why="guest never printed SUCCESS"
	elif [ "$(grep -c '^ok net-hostile: .* -> DEVICE_NEEDS_RESET$' "$log")" -ne 7 ]; then why="not 7 chains ended in NEEDS_RESET"
	elif ! grep -q '^ok net-hostile: refused-syn .* RST' "$log"; then why="no RST for the refused SYN"
	elif ! grep -q '^ok net-valid: ARP' "$log" || ! grep -q '^ok net-valid: DNS: .* NXDOMAIN' "$log"; then
		why="the valid exchanges did not both work"
	elif ! grep -q '^ok net-ingress' "$log"; then why="the host's connection did not reach the guest"
	elif [ -e "$NET_SOCK" ]; then why="padcell left $NET_SOCK behind"
	else
		for reason in "runt frame" "oversized frame" "IPv4 fragment" "IPv4 options" "IPv4 header checksum" \
			"source IP is not the guest's" "source MAC is not the guest's" "IPv6" "VLAN tag"; do
			grep -qF "\"verdict\":\"drop\",\"why\":\"$reason\"" "$netlog" || { why="no drop for '$reason' in $netlog"; break; }
		done
		[ -z "$why" ] && ! grep -qF '"dst":"192.0.2.1:80","verdict":"reject"' "$netlog" && why="no reject for 192.0.2.1:80 in $netlog"
		[ -z "$why" ] && ! grep -qF '"dst":"denied.nethostile.test","verdict":"nxdomain"' "$netlog" && why="no nxdomain line in $netlog"
	fi
	api_result "$name" "$why" "$log"
}
api_state_of() { "$PADCELL" status --api-sock "$1" 2>&1; }
net_wait_line() { # FILE REGEX: up to HANG seconds (a hang guard), or until padcell is gone
	for _ in $(seq $((HANG * 20))); do grep -qE "$2" "$1" 2>/dev/null && return 0; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	grep -qE "$2" "$1" 2>/dev/null
}
check_net_hostile net-hostile-linux64 linux64 1
check_net_hostile net-hostile-pvh-2cpu pvh 2

# Snapshot and restore (tg.case=count: the guest counts in memory and prints "COUNT n" per step).
# The VM is paused mid-run, its serial output so far kept, snapshotted (it stays paused) and
# resumed to the end.  Each restore from the same files must print exactly the rest of that
# uninterrupted run: output-before-snapshot + restored output == the whole run, byte for byte (no
# restart from 0, no gap, no repeat).  The memory file is sparse; a restored VM snapshots again; a
# corrupt state file, another snapshot's memory, a truncated memory file are refused with exit 2;
# and killing padcell while it writes a snapshot never leaves one that restores.
SNAP_DIR=$LOGDIR/snap
SNAP_SOCK=$LOGDIR/snap.sock
snap_wait_line() { # FILE REGEX: wait for a line (up to HANG seconds: a hang guard)
	for _ in $(seq $((HANG * 20))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1
}
# snap_take NAME LOG DIR PID: pause, keep LOG so far as LOG.before, snapshot into DIR, resume.
snap_take() {
	"$PADCELL" pause --api-sock "$SNAP_SOCK" >"$2.client" 2>&1 || { echo "padcell pause failed: $(cat "$2.client")"; return 1; }
	cp "$2" "$2.before"
	"$PADCELL" snapshot --api-sock "$SNAP_SOCK" --to "$3" >"$2.client" 2>&1 || { echo "padcell snapshot failed: $(cat "$2.client")"; return 1; }
	cmp -s "$2" "$2.before" || { echo "the guest printed while paused"; return 1; }
	[ "$("$PADCELL" status --api-sock "$SNAP_SOCK" 2>&1)" = Paused ] || { echo "a paused VM did not stay paused through the snapshot"; return 1; }
	"$PADCELL" resume --api-sock "$SNAP_SOCK" >"$2.client" 2>&1 || { echo "padcell resume failed: $(cat "$2.client")"; return 1; }
}
# snap_restore_check NAME DIR FULL BEFORE N: restore DIR N times; each must continue FULL from BEFORE.
snap_restore_check() {
	local k rc out
	for k in $(seq "$5"); do
		out=$LOGDIR/$1.restore$k
		timeout "$TIMEOUT" "$PADCELL" restore --from "$2" --verbose </dev/null >"$out" 2>"$out.err"
		rc=$?
		[ "$rc" -eq 0 ] || { echo "restore $k exited $rc: $(grep -m1 '^padcell' "$out.err")"; return 1; }
		grep -q '^padcell: restore: .* ms from start to vCPUs running' "$out.err" || { echo "restore $k: no timing line with --verbose"; return 1; }
		cat "$4" "$out" | cmp -s - "$3" || { echo "restore $k did not continue the run exactly (see $out)"; return 1; }
	done
}
# check_snapshot_count NAME MEM CPUS ENTRY
check_snapshot_count() {
	local name=$1 log=$LOGDIR/$1.log why="" pid rc dir=$SNAP_DIR/$1 kib
	rm -rf "$dir" "$SNAP_SOCK"
	"$PADCELL" boot --kernel "$GUEST" --mem "$2" --cpus "$3" --entry "$4" --api-sock "$SNAP_SOCK" \
		--cmdline "tg.case=count tg.count=150" </dev/null >"$log" 2>"$log.err" &
	pid=$!
	if ! snap_wait_line "$log" '^COUNT 30[[:space:]]*$'; then why="the guest never reached COUNT 30"
	else why=$(snap_take "$name" "$log" "$dir" "$pid"); fi
	api_wait "$pid" "$TIMEOUT"
	rc=$?
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 0 ]; then why="the snapshotted run exited $rc"
	elif ! grep -q "^SUCCESS" "$log"; then why="the snapshotted run never printed SUCCESS"
	elif grep -q '^SUCCESS' "$log.before" || ! grep -q '^COUNT 30[[:space:]]*$' "$log.before"; then why="the snapshot was not taken mid-count"
	elif [ "$(stat -c %s "$dir/mem")" -ne $(( $(numfmt --from=iec "$2") + 4096 )) ]; then why="mem is $(stat -c %s "$dir/mem") bytes, not RAM + 4096"
	elif kib=$(du -k "$dir/mem" | cut -f1) && [ "$kib" -gt 8192 ]; then why="mem uses $kib KiB of disk: not sparse"
	else why=$(snap_restore_check "$name" "$dir" "$log" "$log.before" 2); fi
	api_result "$name" "$why" "$log"
}
check_snapshot_count snapshot-restore-linux64 128M 1 linux64
check_snapshot_count snapshot-restore-pvh-2cpu 256M 2 pvh

# A restored VM is paused and snapshotted again (its memory is the first snapshot's file, mapped
# copy-on-write); restoring the second snapshot continues where that one was taken.
check_snapshot_again() {
	local name=snapshot-of-restored log=$LOGDIR/snapshot-of-restored.log why="" pid rc
	local first=$SNAP_DIR/snapshot-restore-linux64 dir=$SNAP_DIR/again full=$LOGDIR/snapshot-restore-linux64.log
	rm -rf "$dir" "$SNAP_SOCK"
	"$PADCELL" restore --from "$first" --api-sock "$SNAP_SOCK" </dev/null >"$log" 2>"$log.err" &
	pid=$!
	if [ ! -s "$first/state" ]; then why="no first snapshot to start from"
	elif ! snap_wait_line "$log" '^COUNT 60[[:space:]]*$'; then why="the restored guest never reached COUNT 60"
	else why=$(snap_take "$name" "$log" "$dir" "$pid"); fi
	api_wait "$pid" "$TIMEOUT"
	rc=$?
	cat "$LOGDIR/snapshot-restore-linux64.log.before" "$log.before" >"$log.prefix"
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 0 ]; then why="the restored run exited $rc"
	elif ! cat "$LOGDIR/snapshot-restore-linux64.log.before" "$log" | cmp -s - "$full"; then why="the restored run did not continue the first run exactly"
	else why=$(snap_restore_check "$name" "$dir" "$full" "$log.prefix" 1); fi
	api_result "$name" "$why" "$log"
}
check_snapshot_again

# Snapshots that must not restore: one line, exit 2, nothing started.
check_snapshot_refusals() {
	local name=snapshot-refusals log=$LOGDIR/snapshot-refusals.log why="" a=$SNAP_DIR/snapshot-restore-linux64 b=$SNAP_DIR/again
	local bad=$SNAP_DIR/bad rc
	: >"$log"
	# refuse DIR STATE MEM REGEX
	refuse() {
		"$PADCELL" restore --state "$2" --mem "$3" </dev/null >>"$log" 2>"$log.err"
		rc=$?
		cat "$log.err" >>"$log"
		if [ "$rc" -ne 2 ]; then echo "$1: exit $rc, expected 2"; return 1; fi
		if [ "$(wc -l <"$log.err")" -ne 1 ] || ! grep -qE "^padcell: .*$4" "$log.err"; then echo "$1: said '$(cat "$log.err")'"; return 1; fi
	}
	rm -rf "$bad" && mkdir -p "$bad"
	if [ ! -s "$a/state" ] || [ ! -s "$b/state" ]; then why="no snapshots to corrupt"
	else
		cp "$a/state" "$bad/flipped" && printf '\x55' | dd of="$bad/flipped" bs=1 seek=4000 conv=notrunc 2>/dev/null
		head -c 3000 "$a/state" >"$bad/short"
		cp --sparse=always "$a/mem" "$bad/mem-short" && truncate -s -4096 "$bad/mem-short"
		why=$(refuse flipped-byte "$bad/flipped" "$a/mem" 'checksum mismatch' &&
			refuse truncated-state "$bad/short" "$a/mem" 'truncated' &&
			refuse other-snapshot-memory "$a/state" "$b/mem" 'belongs to another snapshot' &&
			refuse short-memory "$a/state" "$bad/mem-short" 'the snapshot needs' &&
			refuse missing-memory "$a/state" "$bad/none" 'No such file' &&
			refuse not-a-snapshot "$GUEST" "$a/mem" 'not a padcell snapshot state file')
	fi
	rm -rf "$bad"
	api_result "$name" "$why" "$log"
}
check_snapshot_refusals

# SIGKILL to padcell while it writes a snapshot (512 MiB of guest memory to write) over an existing
# one, at several moments: afterwards DIR/state is either absent or restores a run that continues
# exactly; a state file never pairs with the other snapshot's memory.  At least one kill must land
# while the files were still being written (temporary files left behind), or the case proves nothing:
# the first kill ("tmp") waits for a temporary file to appear, so it lands mid-write on any machine.
check_snapshot_kill() {
	local name=snapshot-kill log=$LOGDIR/snapshot-kill.log why="" pid dir=$SNAP_DIR/kill delay mid=0 out rc
	: >"$log"
	for delay in tmp 0.05 0.2 0.4 0.8; do
		rm -rf "$dir" "$SNAP_SOCK"
		# Emptied here, not only by the background job's redirection, which may happen after the
		# wait below has already found the last iteration's lines in it.
		: >"$log.run"
		"$PADCELL" boot --kernel "$GUEST" --mem 1G --api-sock "$SNAP_SOCK" \
			--cmdline "tg.case=count tg.count=100000 tg.fill=512" </dev/null >"$log.run" 2>&1 &
		pid=$!
		if ! snap_wait_line "$log.run" '^COUNT 3[[:space:]]*$'; then why="the guest never started counting"; kill -KILL "$pid"; wait "$pid" 2>/dev/null; break; fi
		# a complete snapshot first, so a kill has an old one to (not) leave half-replaced
		if ! "$PADCELL" snapshot --api-sock "$SNAP_SOCK" --to "$dir" >>"$log" 2>&1; then why="the first snapshot failed"; kill -KILL "$pid"; wait "$pid" 2>/dev/null; break; fi
		"$PADCELL" snapshot --api-sock "$SNAP_SOCK" --to "$dir" >>"$log" 2>&1 &
		if [ "$delay" = tmp ]; then
			for _ in $(seq $((HANG * 100))); do ls -a "$dir" | grep -q '\.tmp-' && break; sleep 0.01; done
		else
			sleep "$delay"
		fi
		kill_wait KILL "$pid"; wait
		ls -a "$dir" >>"$log"
		ls -a "$dir" | grep -q '\.tmp-' && mid=$((mid + 1))
		if [ -e "$dir/state" ]; then
			out=$LOGDIR/snapshot-kill.restore
			"$PADCELL" restore --from "$dir" </dev/null >"$out" 2>&1 &
			rc=$!
			if ! snap_wait_line "$out" '^COUNT [0-9]+[[:space:]]*$'; then why="after a kill at ${delay}s DIR/state exists but does not restore: $(head -c 300 "$out")"; fi
			kill -KILL "$rc" 2>/dev/null; wait "$rc" 2>/dev/null
			[ -n "$why" ] && break
		fi
	done
	rm -f "$SNAP_SOCK"
	[ -z "$why" ] && [ "$mid" -eq 0 ] && why="no kill landed while the snapshot was being written"
	echo "snapshot-kill: $mid of 5 kills landed mid-write" >>"$log"
	rm -rf "$dir"
	api_result "$name" "$why" "$log"
}
check_snapshot_kill
rm -rf "$SNAP_DIR"

# Not a test: virtio-blk throughput as the polling guest sees it, one request in flight (the run
# time of tg.case=blk with extra reads, minus the run time without; best of 2).  On PVM the guest
# is emulated, so these numbers measure the kick/poll round trip more than the device.
blk_run_ms() {
	local best=999999 t0 t1 i
	for i in 1 2; do
		t0=$(ms_now)
		timeout "$TIMEOUT" "$PADCELL" boot --kernel "$GUEST" --mem 256M --drive "$BLK_RO,ro,id=tg-ro" \
			--drive "$BLK_RW" --scratch 1M --cmdline "tg.case=blk tg.blk=$BLK_SIZE $1" </dev/null >/dev/null 2>&1 || return 1
		t1=$(ms_now)
		[ $((t1 - t0)) -lt "$best" ] && best=$((t1 - t0))
	done
	echo "$best"
}
if base=$(blk_run_ms "") && seq=$(blk_run_ms "tg.blkbench=128") && iops=$(blk_run_ms "tg.blkiops=4000") &&
	[ "$seq" -gt "$base" ] && [ "$iops" -gt "$base" ]; then
	echo "blk: $((128 * 1000 / (seq - base))) MiB/s in 64 KiB reads, $((4000 * 1000 / (iops - base))) 4 KiB reads/s (polling test guest, one request in flight)"
fi
unset TMPDIR

if [ "${#times[@]}" -gt 0 ]; then
	median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (${#times[@]} + 1) / 2 ))p")
	echo "timing: median $median ms per passing run (padcell start to exit, guest included)"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
