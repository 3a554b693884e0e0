#!/usr/bin/env bash
# kvm-faults tier: host and guest faults on /dev/kvm (full disks, a vanishing socket peer, a guest panic, SIGKILL), each must end cleanly with one clear line.
#
# Each case boots build/guest/testguest.elf under build/padcell and causes one fault:
#   guest-panic-mid-work   the count guest panics through pvpanic at COUNT 20 (tg.panicat)
#   snapshot-disk-full     a snapshot into a 2 MiB tmpfs (mounted here, unmounted after)
#   scratch-disk-full      --scratch 16M with TMPDIR on a 2 MiB tmpfs; the guest writes 8 MiB (tg.case=blk-fill)
#   vsock-peer-abort       the host end of a vsock connection closes with data unread, mid-stream
#   kill-mid-snapshot      SIGKILL of the monitor while it writes a snapshot into an empty directory;
#                          the next snapshot there sweeps the dead writer's temporary files
#   kill-mid-run-vsock     SIGKILL of a running monitor; a new boot --vsock at the same path
# and checks the exit code, that padcell said exactly one line about it (stderr, besides this
# host's cgroup v1 warning), and that nothing is left that looks valid.  Waits are for events (a
# line in a log, a file appearing, a process ending) with hang guards only.
# Ends with "N passed, N failed, N skipped".
set -uo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.." || exit 1
. tests/kvm/monitor-lib.sh

PADCELL=${PADCELL:-build/padcell}
GUEST=${GUEST:-build/guest/testguest.elf}
TGVSOCK=build/guest/tg-vsock
HANG=${HANG:-60} # seconds any awaited event may take: a hang guard only
LOGDIR=${LOGDIR:-build/test-logs/kvm-faults}
NCASES=6

pass=0 fail=0 skip=0
result() { # NAME WHY
	if [ -n "$2" ]; then echo "FAIL $1: $2"; fail=$((fail + 1)); else echo "PASS $1"; pass=$((pass + 1)); fi
}
skip_all() { echo "SKIP: kvm-faults tier: $1"; echo "0 passed, 0 failed, $NCASES skipped"; exit 0; }

[ -e /dev/kvm ] || skip_all "/dev/kvm does not exist (no KVM on this host)"
( exec 3<>/dev/kvm ) 2>/dev/null || skip_all "/dev/kvm cannot be opened read-write by $(id -un)"
if [ ! -x "$PADCELL" ] || [ ! -f "$GUEST" ] || [ ! -x "$TGVSOCK" ]; then
	make -s "$PADCELL" testguest >/dev/null || { echo "FAIL build: make $PADCELL testguest failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
fi
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
cp "$PADCELL" "$LOGDIR/padcell" && cp "$GUEST" "$LOGDIR/testguest.elf" && cp "$TGVSOCK" "$LOGDIR/tg-vsock" ||
	{ echo "FAIL build: cannot copy the binaries to $LOGDIR"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
PADCELL=$LOGDIR/padcell GUEST=$LOGDIR/testguest.elf TGVSOCK=$LOGDIR/tg-vsock

# Small tmpfs mounts for the full-disk cases, unmounted whatever happens.
MOUNTS=()
cleanup() { for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done; }
trap cleanup EXIT
small_fs() { # DIR: a 2 MiB tmpfs there, or fails
	mkdir -p "$1" && mount -t tmpfs -o size=2m,mode=0755 padcell-faults "$1" 2>/dev/null && MOUNTS+=("$1")
}
CAN_MOUNT=1
small_fs "$LOGDIR/probe" && umount "$LOGDIR/probe" || CAN_MOUNT=0

wait_line() { # FILE REGEX
	for _ in $(seq $((HANG * 20))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1
}
wait_pid() { # PID SECONDS: its exit code, or 124 (after SIGKILL) when it outlives SECONDS
	local n=$(($2 * 20))
	while kill -0 "$1" 2>/dev/null && [ "$n" -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
	if kill -0 "$1" 2>/dev/null; then kill -KILL "$1"; wait "$1" 2>/dev/null; return 124; fi
	wait "$1"
}
# What padcell said, minus the warning every VM prints on a cgroup v1 host (README: cgroup v2 limits).
said() { grep -v '^padcell: warning: no cgroup v2 limits' "$1" | tr -d '\r'; }
one_line() { # FILE REGEX: exactly one line, and it matches
	local s n
	s=$(said "$1"); n=$(printf '%s' "$s" | grep -c '')
	[ "$n" -eq 1 ] && grep -qE "$2" <<<"$s" && return 0
	echo "padcell said $n lines, wanted one matching '$2': $(head -c 300 <<<"$s" | tr '\n' '|')"
	return 1
}

# ---- the guest panics in the middle of its work --------------------------------------------------
case_panic() {
	local out=$LOGDIR/panic.out err=$LOGDIR/panic.err rc why=""
	timeout $((HANG * 2)) "$PADCELL" boot --kernel "$GUEST" --mem 64M --cmdline "tg.case=count tg.count=1000 tg.panicat=20" \
		</dev/null >"$out" 2>"$err"
	rc=$?
	if [ "$rc" -ne 3 ]; then why="exit $rc, expected 3 (guest panic)"
	elif ! grep -q '^panic: at COUNT 20' "$out" || grep -q '^COUNT 21' "$out"; then why="the guest did not die at COUNT 20"
	elif grep -q '^SUCCESS' "$out"; then why="SUCCESS after a panic"
	else why=$(one_line "$err" '^padcell: guest kernel panicked \(pvpanic\)$'); fi
	result guest-panic-mid-work "$why"
}

# ---- a snapshot into a full file system -----------------------------------------------------------
case_snapshot_full() {
	local d=$LOGDIR/snapfs sock=$LOGDIR/snapfs.sock out=$LOGDIR/snapfs.out err=$LOGDIR/snapfs.err why="" pid rc
	if [ "$CAN_MOUNT" = 0 ]; then echo "SKIP snapshot-disk-full: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)"; skip=$((skip + 1)); return; fi
	small_fs "$d" || { result snapshot-disk-full "cannot mount a tmpfs on $d"; return; }
	# 64 MiB of RAM with 8 MiB of it written (tg.fill): the memory file needs more than the 2 MiB there is.
	"$PADCELL" boot --kernel "$GUEST" --mem 64M --api-sock "$sock" --jail-dir "$d" \
		--cmdline "tg.case=count tg.count=300 tg.fill=8" </dev/null >"$out" 2>"$err" &
	pid=$!
	if ! wait_line "$out" '^COUNT 5[[:space:]]*$'; then why="the guest never reached COUNT 5"
	else
		"$PADCELL" snapshot --api-sock "$sock" --to "$d/snap" >"$LOGDIR/snapfs.client" 2>&1
		rc=$?
		if [ "$rc" -ne 1 ]; then why="padcell snapshot exited $rc on a full disk, expected 1"
		elif ! why=$(one_line "$LOGDIR/snapfs.client" '^padcell: snapshot failed: .*No space left on device'); then :
		elif [ -n "$(find "$d" -mindepth 1 | head -3)" ]; then why="left in the full file system: $(find "$d" -mindepth 1 | head -3 | tr '\n' ' ')"
		elif [ "$("$PADCELL" status --api-sock "$sock" 2>&1)" != Running ]; then why="the VM is not Running after the failed snapshot"
		else
			"$PADCELL" restore --from "$d/snap" </dev/null >"$LOGDIR/snapfs.restore" 2>&1
			rc=$?
			if [ "$rc" -ne 2 ]; then why="a restore of what the failed snapshot left exited $rc, expected 2"
			else why=$(one_line "$LOGDIR/snapfs.restore" '^padcell: .*(No such file|not found)'); fi
		fi
	fi
	wait_pid "$pid" $((HANG * 2))
	rc=$?
	if [ -n "$why" ]; then :
	elif [ "$rc" -ne 0 ]; then why="the VM exited $rc after the failed snapshot, expected 0"
	elif ! grep -q '^SUCCESS' "$out"; then why="the guest never printed SUCCESS after the failed snapshot"
	elif [ -e "$sock" ]; then why="$sock left behind"
	fi
	umount "$d"
	result snapshot-disk-full "$why"
}

# ---- scratch writes into a full file system -----------------------------------------------------------
case_scratch_full() {
	local d=$LOGDIR/scratchfs out=$LOGDIR/scratchfs.out err=$LOGDIR/scratchfs.err why="" rc line ok n ioerr
	if [ "$CAN_MOUNT" = 0 ]; then echo "SKIP scratch-disk-full: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)"; skip=$((skip + 1)); return; fi
	small_fs "$d" || { result scratch-disk-full "cannot mount a tmpfs on $d"; return; }
	TMPDIR=$d timeout $((HANG * 2)) "$PADCELL" boot --kernel "$GUEST" --mem 64M --scratch 16M \
		--cmdline "tg.case=blk-fill tg.blkfill=8" </dev/null >"$out" 2>"$err"
	rc=$?
	tr -d '\r' <"$out" >"$out.tmp" && mv "$out.tmp" "$out"
	line=$(grep -m1 '^blk-fill: ' "$out")
	read -r ok n ioerr < <(sed -E 's/^blk-fill: ([0-9]+) of ([0-9]+) writes OK, ([0-9]+) IOERR.*/\1 \2 \3/' <<<"$line")
	if [ "$rc" -ne 0 ]; then why="exit $rc, expected 0 (the VM runs on through I/O errors)"
	elif grep -q '^FAIL' "$out"; then why="$(grep -m1 '^FAIL' "$out")"
	elif [ -z "$line" ] || ! grep -q '^ok blk-fill' "$out"; then why="no blk-fill result from the guest"
	elif [ "${ioerr:-0}" -eq 0 ]; then why="no write got IOERR on a full disk ($line)"
	elif [ "${ok:-0}" -eq 0 ]; then why="not one write succeeded before the disk filled ($line)"
	elif ! grep -q '^SUCCESS' "$out"; then why="no SUCCESS"
	elif [ -n "$(said "$err")" ]; then why="padcell said: $(said "$err" | head -c 200)"
	elif [ -n "$(ls -A "$d")" ]; then why="left in TMPDIR: $(ls -A "$d" | head -3)"
	else echo "scratch-disk-full: $line"; fi
	umount "$d"
	result scratch-disk-full "$why"
}

# ---- the host end of a vsock connection vanishes mid-stream -----------------------------------------
case_vsock_abort() {
	local sock=$LOGDIR/abort.sock log=$LOGDIR/abort.log why="" rc
	timeout $((HANG * 2)) "$TGVSOCK" --rounds 2 --abort-after 16384 --deadline "$HANG" "$sock" 65536 -- \
		"$PADCELL" boot --kernel "$GUEST" --mem 32M --vsock "$sock" --cmdline "tg.case=vsock tg.vsockecho=2" \
		</dev/null >"$log" 2>&1
	rc=$?
	tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
	if [ "$rc" -ne 0 ]; then why="exit $rc, expected 0: $(grep -m1 FAIL "$log")"
	elif ! grep -q '^tg-vsock: ok abort' "$log"; then why="the host end never aborted"
	elif ! grep -q '^vsock-echo: reset by the host after [0-9]* bytes echoed (round 1)' "$log"; then why="the guest did not see a reset in round 1"
	elif ! grep -q '^ok vsock-echo: .*(round 2)' "$log" || ! grep -q '^tg-vsock: ok echo: .*(round 2)' "$log"; then
		why="the connection after the abort did not work"
	elif ! grep -q '^tg-vsock: ok greeting' "$log"; then why="the guest's own connection out failed"
	elif grep -q '^FAIL' "$log" || ! grep -q '^SUCCESS' "$log"; then why="the guest did not end with SUCCESS"
	elif [ -n "$(said "$log" | grep '^padcell: ')" ]; then why="padcell said: $(said "$log" | grep '^padcell: ' | head -c 200)"
	elif [ -e "$sock" ]; then why="$sock left behind"
	else echo "vsock-peer-abort: $(grep -m1 '^vsock-echo: reset' "$log")"; fi
	result vsock-peer-abort "$why"
}

# ---- SIGKILL while a snapshot is being written ---------------------------------------------------------
case_kill_snapshot() {
	local sock=$LOGDIR/ks.sock dir=$LOGDIR/ks-snap out=$LOGDIR/ks.out why="" pid cpid rc
	"$PADCELL" boot --kernel "$GUEST" --mem 1G --api-sock "$sock" \
		--cmdline "tg.case=count tg.count=100000 tg.fill=512" </dev/null >"$out" 2>&1 &
	pid=$!
	if ! wait_line "$out" '^COUNT 3[[:space:]]*$'; then why="the guest never started counting"; kill -KILL "$pid"
	else
		"$PADCELL" snapshot --api-sock "$sock" --to "$dir" >"$LOGDIR/ks.client" 2>&1 &
		cpid=$!
		# The kill lands while the files are written: after a temporary file appeared.
		for _ in $(seq $((HANG * 100))); do ls -a "$dir" 2>/dev/null | grep -q '\.tmp-' && break; sleep 0.01; done
		monitor_find "$pid"
		kill -KILL "$pid"
		wait_pid "$cpid" "$HANG"
		rc=$?
		if ! ls -a "$dir" 2>/dev/null | grep -q '\.tmp-'; then why="no temporary file seen: the kill did not land mid-write"
		elif [ -e "$dir/state" ]; then why="a state file exists after a kill mid-snapshot"
		elif [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then why="padcell snapshot exited $rc after its VM was killed"
		elif ! why=$(one_line "$LOGDIR/ks.client" '^padcell: snapshot failed: '); then why="the snapshot client: $why"
		else
			"$PADCELL" restore --from "$dir" </dev/null >"$LOGDIR/ks.restore" 2>&1
			rc=$?
			if [ "$rc" -ne 2 ]; then why="a restore of what the kill left exited $rc, expected 2"
			elif ! why=$(one_line "$LOGDIR/ks.restore" '^padcell: '); then why="restore: $why"
			else echo "kill-mid-snapshot: left $(ls -A "$dir" | tr '\n' ' '); snapshot client: $(cat "$LOGDIR/ks.client"); restore: $(said "$LOGDIR/ks.restore")"; fi
		fi
	fi
	wait "$pid" 2>/dev/null
	[ -n "$why" ] || monitor_gone "$MON" || why="the monitor $MON outlived its supervisor's SIGKILL by $HANG s"
	# The API socket the killed monitor left is taken over by the next one (the kvm tier checks
	# that too); the next snapshot into the same directory works.
	if [ -z "$why" ]; then
		"$PADCELL" boot --kernel "$GUEST" --mem 64M --api-sock "$sock" --cmdline "tg.case=count tg.count=300" \
			</dev/null >"$out.2" 2>&1 &
		pid=$!
		if ! wait_line "$out.2" '^COUNT 3[[:space:]]*$'; then why="a new boot on the stale API socket never counted: $(head -c 200 "$out.2")"
		elif ! "$PADCELL" snapshot --api-sock "$sock" --to "$dir" >"$LOGDIR/ks.client2" 2>&1; then why="the next snapshot into $dir failed: $(cat "$LOGDIR/ks.client2")"
		elif [ ! -s "$dir/state" ]; then why="the next snapshot wrote no state"
		# the killed writer's temporary files (no lock holder any more) are swept by the next snapshot
		elif ls -A "$dir" | grep -q '\.tmp-'; then why="the killed snapshot's temporary files are still there: $(ls -A "$dir" | tr '\n' ' ')"
		fi
		wait_pid "$pid" $((HANG * 2)) || [ -n "$why" ] || why="the second VM did not end with exit 0"
	fi
	rm -rf "$dir"
	result kill-mid-snapshot "$why"
}

# ---- SIGKILL of a running monitor with a vsock socket; the next boot at that path -------------------
case_kill_vsock() {
	local sock=$LOGDIR/kv.sock out=$LOGDIR/kv.out log=$LOGDIR/kv.log why="" pid rc
	"$PADCELL" boot --kernel "$GUEST" --mem 64M --vsock "$sock" --cmdline "tg.case=count tg.count=100000" \
		</dev/null >"$out" 2>&1 &
	pid=$!
	if ! wait_line "$out" '^COUNT 3[[:space:]]*$'; then why="the guest never started counting"; fi
	kill_wait KILL "$pid" || [ -n "$why" ] || why="the monitor outlived its supervisor's SIGKILL by $HANG s"
	if [ -n "$why" ]; then :
	elif [ ! -S "$sock" ]; then why="SIGKILL left no socket at $sock to test with"
	else
		timeout $((HANG * 2)) "$TGVSOCK" --deadline "$HANG" "$sock" 65536 -- \
			"$PADCELL" boot --kernel "$GUEST" --mem 32M --vsock "$sock" --cmdline "tg.case=vsock" </dev/null >"$log" 2>&1
		rc=$?
		if [ "$rc" -ne 0 ]; then why="a new boot --vsock at the killed monitor's path exited $rc: $(grep -m1 -E 'FAIL|padcell: [^w]' "$log")"
		elif ! grep -q '^tg-vsock: ok echo' "$log"; then why="no echo through the new VM"
		elif [ -e "$sock" ]; then why="$sock left behind by the second VM"
		fi
	fi
	result kill-mid-run-vsock "$why"
}

case_panic
case_snapshot_full
case_scratch_full
case_vsock_abort
case_kill_snapshot
case_kill_vsock
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
