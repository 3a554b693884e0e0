#!/bin/sh
# Issue-12 cgroup cases, run inside L1 as /payload/run.sh by busybox sh (copied by cgroup-test.sh).
# L1's /init mounts cgroup2 at /sys/fs/cgroup; everything runs in its root cgroup, so padcell makes
# /sys/fs/cgroup/padcell/vm-PID for each monitor.  One line per case: RESULT cgroup-<case> PASS|FAIL.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
W=/run/cg
mkdir -p $W
CG=/sys/fs/cgroup
R="--kernel bzImage --rootfs rootfs-min.ext4 --mem 256M"
MIB=1048576

# wait_until SECS CMD...: polls CMD (every 0.1 s) until it succeeds; 1 when SECS pass first.
wait_until() {
	n=$(($1 * 10))
	shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
has_line() { grep -q "$2" "$1" 2>/dev/null; }
leaf_has() { grep -qx "$2" "$1/cgroup.procs" 2>/dev/null; }
gone() { [ ! -e "$1" ]; }
field() { awk -v k="$2" '$1 == k { print $2 }' "$1"; } # field FILE KEY: "KEY VALUE" files

# start NAME ARGS...: padcell run in the background, stdin from the fifo $W/NAME.in held open on fd 9;
# sets pid and leaf.
start() {
	n=$1
	shift
	rm -f $W/$n.in
	mkfifo $W/$n.in
	timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R "$@" <$W/$n.in >$W/$n.out 2>$W/$n.err &
	pid=$!
	exec 9>$W/$n.in
	leaf=$CG/padcell/vm-$pid
}
# The monitor: busybox timeout execs padcell in its own pid (a coreutils one would fork it), the
# pid its leaf is named after; with the jail (always on here) that process becomes the supervisor
# ("padcell-super") and the monitor is its child, pid 1 of a PID namespace of its own (README "The
# jail"; its other child is the leaf's reaper): the child that is pid 1 of its namespace (the
# last NSpid field).  Nothing until the supervisor has forked it.
monitor_of() {
	for c in $(cat /proc/$1/task/$1/children 2>/dev/null); do
		[ "$(awk '$1 == "NSpid:" && NF > 2 { print $NF }' /proc/$c/status 2>/dev/null)" = 1 ] && { echo "$c"; return; }
	done
}
have_monitor() { mpid=$(monitor_of $pid); [ -n "$mpid" ]; }
start_monitor() { # as start, then waits for the monitor's leaf to hold it
	start "$@"
	wait_until 30 have_monitor
	leaf=$CG/padcell/vm-$pid
	wait_until 30 leaf_has "$leaf" "$mpid"
}
# SIGPIPE ignored: a VM that already ended (a failed case) makes the write fail, not the payload die.
trap '' PIPE
release() { echo go >&9 2>/dev/null; exec 9>&-; wait $pid; rc=$?; }

echo "STEP cgroup-check"
./padcell check >$W/check.out 2>&1
line=$(grep 'cgroup v2 delegated' $W/check.out)
why=""
echo "$line" | grep -q '\[ok' || why="$why check says: $line;"
echo "$line" | grep -q 'cpu memory pids' || why="$why no controllers named: $line;"
result check "$why" "padcell check: ${line#*delegated}"

# --- a running monitor's leaf and its limits --------------------------------------------------
echo "STEP cgroup-limits"
start_monitor limits --cpus 2 -- sh -c 'echo UP; read x; echo "got $x"'
wait_until 60 has_line $W/limits.out UP
mem=$((256 * MIB))
want_mem=$(((mem + 64 * MIB + mem / 64 + 4095) / 4096 * 4096))
why=""
[ -d "$leaf" ] || why="$why no leaf $leaf;"
[ "$(cat $leaf/cpu.max 2>/dev/null)" = "200000 100000" ] || why="$why cpu.max '$(cat $leaf/cpu.max 2>/dev/null)' (want 200000 100000: 2 vCPUs);"
[ "$(cat $leaf/memory.max 2>/dev/null)" = "$want_mem" ] || why="$why memory.max '$(cat $leaf/memory.max 2>/dev/null)' (want $want_mem);"
[ "$(cat $leaf/pids.max 2>/dev/null)" = 66 ] || why="$why pids.max '$(cat $leaf/pids.max 2>/dev/null)' (want 66);"
# the monitor, its supervisor, and KVM's own per-VM worker (kvm-nx-lpage-recovery), which joins its creator's cgroups
grep -qx "$mpid" $leaf/cgroup.procs 2>/dev/null || why="$why the monitor $mpid is not in $leaf/cgroup.procs;"
grep -qx "$pid" $leaf/cgroup.procs 2>/dev/null || why="$why the supervisor $pid is not in $leaf/cgroup.procs;"
[ "$mpid" != "$pid" ] || why="$why no supervisor: the monitor $mpid is not in a PID namespace of its own;"
kworkers=0
for p in $(cat $leaf/cgroup.procs 2>/dev/null); do
	[ "$p" = "$mpid" ] || [ "$p" = "$pid" ] && continue
	case "$(cat /proc/$p/comm 2>/dev/null)" in
	kvm*) kworkers=$((kworkers + 1)) ;;
	*) why="$why process $p ($(cat /proc/$p/comm 2>/dev/null)) in the leaf;" ;;
	esac
done
reaper=""
for p in $(cat $CG/padcell/reapers/cgroup.procs 2>/dev/null); do
	[ "$(cat /proc/$p/comm 2>/dev/null)" = padcell-reaper ] && reaper=$p
done
[ -n "$reaper" ] || why="$why no padcell-reaper in $CG/padcell/reapers;"
threads=$(ls /proc/$mpid/task | wc -l)
[ "$(cat $leaf/pids.current 2>/dev/null)" = $((threads + kworkers + 1)) ] || why="$why pids.current $(cat $leaf/pids.current 2>/dev/null), the monitor has $threads threads, its supervisor 1 and KVM $kworkers;"
t0=$(now)
release
why_l=$why
result limits "$why" "cpu.max 200000 100000, memory.max $want_mem (RAM + $(((want_mem - mem) / MIB)) MiB), pids.max 66 ($threads threads + the supervisor + $kworkers KVM worker), reaper $reaper outside the leaf"
[ -n "$why_l" ] && show limits $W/limits.err

echo "STEP cgroup-gone-exit"
why=""
[ "$rc" = 0 ] || why="$why exit $rc;"
grep -q '^got go' $W/limits.out || why="$why the command did not finish;"
wait_until 30 gone "$leaf" || why="$why $leaf still there 30 s after exit;"
result gone-exit "$why" "leaf gone $(since "$t0") s after the command was released (exit 0)"

# --- SIGKILL of the monitor's known pid (its supervisor; the monitor dies with it): the reaper removes the leaf
echo "STEP cgroup-gone-kill"
start_monitor kill -- sleep 300
why=""
[ -d "$leaf" ] || why="$why no leaf;"
t0=$(now)
kill -KILL "$pid"
exec 9>&-
wait $pid
wait_until 30 gone "$leaf" || why="$why $leaf still there 30 s after SIGKILL ($(cat $leaf/cgroup.events 2>/dev/null | tr '\n' ' '));"
result gone-kill "$why" "leaf gone $(since "$t0") s after SIGKILL of the monitor's pid"

# --- the reaper killed too: the next start sweeps the stale leaf ------------------------------
echo "STEP cgroup-stale-swept"
start_monitor stale -- sleep 300
old=$leaf
why=""
reaper=""
for p in $(cat $CG/padcell/reapers/cgroup.procs 2>/dev/null); do
	[ "$(cat /proc/$p/comm 2>/dev/null)" = padcell-reaper ] && reaper=$p
done
if [ -z "$reaper" ]; then
	why="$why no reaper to kill;"
else
	kill -KILL "$reaper"
	kill -KILL "$pid"
	exec 9>&-
	wait $pid
	wait_until 30 sh -c "grep -q 'populated 0' $old/cgroup.events" || why="$why the stale leaf never emptied;"
	[ -d "$old" ] || why="$why the leaf went without its reaper (nothing left to sweep);"
	timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R -- true >$W/sweep.out 2>$W/sweep.err </dev/null
	r=$?
	[ "$r" = 0 ] || why="$why the next run exited $r;"
	[ -e "$old" ] && why="$why $old still there after the next start;"
fi
result stale-swept "$why" "a leaf left by a SIGKILLed monitor and reaper is removed by the next start"

# --- a guest touching all its RAM stays within memory.max -------------------------------------
echo "STEP cgroup-memory"
start_monitor mem -- sh -c 'n=$(awk "/MemAvailable/ { print int(\$2 / 1024) - 16 }" /proc/meminfo);
	dd if=/dev/zero of=/dev/null bs=${n}M count=3 2>/dev/null && echo "FILLED $n"; read x; echo "got $x"'
wait_until 120 has_line $W/mem.out FILLED
filled=$(sed -n 's/^FILLED //p' $W/mem.out)
peak=$(cat $leaf/memory.peak 2>/dev/null)
max=$(cat $leaf/memory.max 2>/dev/null)
oom=$(field $leaf/memory.events oom)
oomk=$(field $leaf/memory.events oom_kill)
hits=$(field $leaf/memory.events max)
release
why=""
[ -n "$filled" ] || why="$why the guest never filled its memory ($(head -c 200 $W/mem.out));"
[ "$rc" = 0 ] && grep -q '^got go' $W/mem.out || why="$why exit $rc, the VM did not go on working;"
[ "$oom" = 0 ] && [ "$oomk" = 0 ] || why="$why memory.events oom $oom oom_kill $oomk;"
[ -n "$peak" ] && [ -n "$max" ] && [ "$peak" -le "$max" ] || why="$why memory.peak '$peak' over memory.max '$max';"
[ -n "$peak" ] && [ -n "$filled" ] && [ "$peak" -ge $((filled * MIB)) ] || why="$why memory.peak '$peak' below the $filled MiB the guest touched (not charged to the leaf?);"
result memory "$why" "guest touched $filled MiB of 256 (anon, 3 passes): memory.peak $((${peak:-0} / MIB)) MiB <= memory.max $((${max:-0} / MIB)) MiB, max hits ${hits:-?}, no OOM"
[ -n "$why" ] && show mem $W/mem.err

# --- --cpu-quota 0.5: a CPU-bound guest gets no more than half a CPU --------------------------
echo "STEP cgroup-cpu-quota"
start_monitor cpu --cpu-quota 0.5 --mem-limit 400M -- sh -c 'echo SPIN; while :; do :; done'
wait_until 120 has_line $W/cpu.out SPIN
cpumax=$(cat $leaf/cpu.max 2>/dev/null)
memmax=$(cat $leaf/memory.max 2>/dev/null)
u0=$(field $leaf/cpu.stat usage_usec)
n0=$(field $leaf/cpu.stat nr_throttled)
t0=$(now)
sleep 4 # the measuring window (not a synchronisation): usage over a few seconds of wall time
u1=$(field $leaf/cpu.stat usage_usec)
n1=$(field $leaf/cpu.stat nr_throttled)
t1=$(now)
kill -TERM "$pid" 2>/dev/null
exec 9>&-
wait $pid
ratio=$(awk -v a="$u0" -v b="$u1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", (b - a) / ((e - s) * 1e6) }')
why=""
[ "$cpumax" = "50000 100000" ] || why="$why cpu.max '$cpumax' (want 50000 100000);"
[ "$memmax" = $((400 * MIB)) ] || why="$why memory.max '$memmax' (want --mem-limit's $((400 * MIB)));"
[ -n "$u0" ] && [ -n "$u1" ] || why="$why no cpu.stat;"
awk -v r="$ratio" 'BEGIN { exit !(r <= 0.6) }' || why="$why used $ratio of a CPU (want <= 0.6);"
awk -v r="$ratio" 'BEGIN { exit !(r >= 0.2) }' || why="$why used only $ratio of a CPU: the guest was not CPU-bound;"
[ -n "$n0" ] && [ -n "$n1" ] && [ "$n1" -gt "$n0" ] || why="$why nr_throttled $n0 -> $n1 (never throttled);"
result cpu-quota "$why" "CPU-bound guest: $ratio CPUs over $(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", e - s }') s, throttled $((n1 - n0)) times, cpu.max $cpumax, memory.max $((memmax / MIB)) MiB"
[ -n "$why" ] && show cpu $W/cpu.err

# --- --io-limit: io.max on the block device under the drive's file, reads charged and held -------
# L1's disks are tmpfs (no block device), so the image sits on an ext2 file system on a loop device,
# mounted afresh before the run so the image is not in the page cache.  Only a lower bound on the
# time: 16 MiB at 4 MiB/s cannot take under ~4 s when io.max holds.
echo "STEP cgroup-io-limit"
why=""
mkdir -p /mnt/io
head -c $((40 * MIB)) /dev/zero >$W/fs.img
loopdev=$(losetup -f 2>$W/losetup.err) && losetup "$loopdev" $W/fs.img 2>>$W/losetup.err &&
	mke2fs -q "$loopdev" >>$W/losetup.err 2>&1 && mount -t ext2 "$loopdev" /mnt/io 2>>$W/losetup.err &&
	head -c $((16 * MIB)) /dev/urandom >/mnt/io/disk.img && umount /mnt/io &&
	mount -t ext2 -o ro "$loopdev" /mnt/io 2>>$W/losetup.err || why=" no loop device file system in L1: $(head -c 300 $W/losetup.err)"
if [ -z "$why" ]; then
	majmin=$(cat /sys/block/${loopdev#/dev/}/dev)
	start_monitor io --io-limit 4M --drive /mnt/io/disk.img,ro -- sh -c 'a=$(cut -d" " -f1 /proc/uptime);
		dd if=/dev/vdb of=/dev/null bs=1M count=16 iflag=direct 2>/dev/null && b=$(cut -d" " -f1 /proc/uptime) &&
		echo "READ $a $b"; read x; echo "got $x"'
	wait_until 120 has_line $W/io.out READ
	iomax=$(grep "^$majmin " $leaf/io.max 2>/dev/null)
	rbytes=$(grep "^$majmin " $leaf/io.stat 2>/dev/null | sed -n 's/.*rbytes=\([0-9]*\).*/\1/p')
	release
	secs=$(awk '/^READ/ { printf "%.2f", $3 - $2 }' $W/io.out)
	[ -n "$secs" ] || why="$why the guest never read its drive ($(head -c 200 $W/io.out));"
	[ "$rc" = 0 ] && grep -q '^got go' $W/io.out || why="$why exit $rc, the VM did not go on working;"
	echo "$iomax" | grep -q "rbps=4194304 wbps=4194304" || why="$why io.max for $majmin is '$iomax' (want rbps=4194304 wbps=4194304);"
	[ -n "$rbytes" ] && [ "$rbytes" -ge $((16 * MIB)) ] || why="$why io.stat rbytes for $majmin '$rbytes' (want >= 16 MiB: the reads not charged to the leaf?);"
	[ -n "$secs" ] && awk -v s="$secs" 'BEGIN { exit !(s >= 3) }' || why="$why 16 MiB read in '$secs' s at io.max 4 MiB/s (want >= 3 s);"
fi
umount /mnt/io 2>/dev/null
[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
rm -f $W/fs.img
result io-limit "$why" "16 MiB from a drive image on a loop device's file system in ${secs:-?} s under io.max '$iomax', io.stat rbytes ${rbytes:-?}"
[ -n "$why" ] && [ -f $W/io.err ] && show io $W/io.err

left=$(ls -d $CG/padcell/vm-* 2>/dev/null | wc -l)
result nothing-left "$([ "$left" = 0 ] || echo " $left leaves left: $(ls -d $CG/padcell/vm-*)")" "no leaf left under $CG/padcell"

[ "$fails" -eq 0 ]
