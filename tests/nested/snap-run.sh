#!/bin/sh
# Issue-5 cases, run inside L1 as /payload/run.sh by busybox sh (copied by snap-test.sh).
# One line per case: RESULT snap-<case> PASS|FAIL <detail>; a `STEP snap-<case>` line before each so
# a timeout names the hung case.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
W=/run/st
mkdir -p $W
R="--kernel bzImage --rootfs rootfs-min.ext4 --mem 256M"
AGENT="console=ttyS0 reboot=k panic=-1 quiet init=/sbin/padcell-agent"
# wait_agent SOCK PID: until `padcell exec -- true` works (or the VM is gone / the case times out)
wait_agent() {
	t=$(now)
	while [ "$(awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ] && kill -0 "$2" 2>/dev/null; do
		./padcell exec --vsock "$1" --no-stdin -- true >/dev/null 2>&1 && return 0
		sleep 0.3
	done
	return 1
}
# vm_end SOCK PID: power the VM off through its agent, wait for padcell to exit; sets rc
vm_end() {
	timeout 20 ./padcell exec --vsock "$1" --no-stdin -- poweroff -f >/dev/null 2>&1
	t=$(now)
	while kill -0 "$2" 2>/dev/null && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 30) }')" = 1 ]; do sleep 0.2; done
	kill -9 "$2" 2>/dev/null
	wait "$2"
	rc=$?
}

# --- a prepared VM: a file in tmpfs, one on its scratch disk, a connection held open; snapshot ---
echo "STEP snap-prepare"
rm -rf /run/snap $W/v.sock*
timeout $((CASE_TIMEOUT * 3)) ./padcell boot --kernel bzImage --mem 256M --drive rootfs-min.ext4,ro --scratch 64M \
	--vsock $W/v.sock --api-sock $W/api.sock --jail-dir /run --cmdline "$AGENT" >$W/prep.log 2>&1 </dev/null &
vmpid=$!
why=""
wait_agent $W/v.sock $vmpid || why="$why the agent never answered;"
./padcell exec --vsock $W/v.sock --no-stdin -- sh -c 'echo before-snapshot >/tmp/marker && echo scratch-data >/scratch/f && sync' \
	>$W/prep.out 2>&1 || why="$why writing the files failed: $(head -c 200 $W/prep.out);"
# held open across the snapshot: reset by the restore in every clone
./padcell exec --vsock $W/v.sock --no-stdin -- sleep 300 >/dev/null 2>&1 &
holder=$!
# the snapshot waits until that command runs in the guest (not a fixed second: a loaded host may
# take longer).  /proc/PID/cmdline separates the arguments with NULs: compare it whole, so this
# probe's own command line (which holds the words, not that byte string) never matches.
HELD='for f in /proc/[0-9]*/cmdline; do [ "$( { tr "\000" " " <$f; } 2>/dev/null)" = "sleep 300 " ] && exit 0; done; exit 1'
t=$(now)
until ./padcell exec --vsock $W/v.sock --no-stdin -- sh -c "$HELD" >/dev/null 2>&1; do
	[ "$(awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ] || { why="$why the held command never started;"; break; }
	sleep 0.3
done
t0=$(now)
./padcell snapshot --api-sock $W/api.sock --to /run/snap >$W/snap.out 2>&1 || why="$why padcell snapshot failed: $(head -c 300 $W/snap.out);"
ssecs=$(since "$t0")
[ -f /run/snap/state ] && [ -f /run/snap/mem ] || why="$why no state/mem files;"
mem_kib=$(du -k /run/snap/mem 2>/dev/null | cut -f1)
[ -n "$mem_kib" ] && [ "$mem_kib" -lt 200000 ] || why="$why memory file uses ${mem_kib} KiB of a 256 MiB VM (not sparse?);"
vm_end $W/v.sock $vmpid
kill $holder 2>/dev/null
wait $holder 2>/dev/null
[ "$rc" = 0 ] || why="$why the prepared VM ended with $rc;"
result prepare "$why" "boot, files written, a connection held, snapshot in ${ssecs}s, memory file ${mem_kib} KiB on disk for 256 MiB"
[ -n "$why" ] && show prep $W/prep.log

# --- 5 clones one after another: each sees the files and runs its own command ----------------
echo "STEP snap-sequential"
t0=$(now)
why=""
i=1
while [ $i -le 5 ]; do
	timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from /run/snap -- sh -c "cat /tmp/marker /scratch/f; echo clone-$i; exit $((i + 20))" \
		>$W/seq.out 2>$W/seq.err </dev/null
	rc=$?
	[ "$rc" = $((i + 20)) ] || why="$why clone $i exit $rc;"
	[ "$(cat $W/seq.out)" = "$(printf 'before-snapshot\nscratch-data\nclone-%s' $i)" ] ||
		why="$why clone $i printed '$(tr '\n' '|' <$W/seq.out | head -c 200)' stderr '$(head -c 300 $W/seq.err)';"
	i=$((i + 1))
done
secs=$(since "$t0")
result sequential "$why" "5 clones in a row: tmpfs and scratch files from before the snapshot, own output and exit code, ${secs}s"

# --- 3 clones at once, each with its own scratch disk --------------------------------------------
echo "STEP snap-concurrent"
t0=$(now)
for i in 1 2 3; do
	( timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from /run/snap -- sh -c "echo mine-$i >/scratch/mine; sleep 1; cat /scratch/mine; ls /scratch | tr '\n' ' '" \
		>$W/c$i.out 2>$W/c$i.err </dev/null; echo $? >$W/c$i.rc ) &
done
wait
secs=$(since "$t0")
why=""
for i in 1 2 3; do
	[ "$(cat $W/c$i.rc)" = 0 ] || why="$why clone $i exit $(cat $W/c$i.rc) ($(head -c 200 $W/c$i.err));"
	[ "$(head -n1 $W/c$i.out)" = "mine-$i" ] || why="$why clone $i read '$(head -c 100 $W/c$i.out)' from its scratch disk;"
done
result concurrent "$why" "3 clones at once, each its own scratch disk and output, ${secs}s"

# --- two clones' randomness differs (the agent reseeds from the host) --------------------------
echo "STEP snap-urandom"
for i in 1 2; do
	timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from /run/snap -- sh -c 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n"' \
		>$W/r$i.out 2>$W/r$i.err </dev/null
done
why=""
[ "$(wc -c <$W/r1.out)" = 64 ] && [ "$(wc -c <$W/r2.out)" = 64 ] || why="$why no 32 random bytes: '$(cat $W/r1.out)' '$(cat $W/r2.out)';"
[ "$(cat $W/r1.out)" != "$(cat $W/r2.out)" ] || why="$why both clones read the same bytes $(cat $W/r1.out);"
result urandom "$why" "first 32 bytes of /dev/urandom: $(head -c 16 $W/r1.out)... vs $(head -c 16 $W/r2.out)..."

# --- the connection open at snapshot time was reset: its command is gone; new ones work ----------
echo "STEP snap-vsock-reset"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from /run/snap -- sh -c \
	"i=0; while [ \$i -lt 600 ]; do sh -c '$HELD' || { echo gone after \$i; exit 0; }; sleep 0.1; i=\$((i + 1)); done; echo still running; exit 1" \
	>$W/reset.out 2>$W/reset.err </dev/null
rc=$?
why=""
[ "$rc" = 0 ] || why="$why exit $rc: $(cat $W/reset.out) $(head -c 200 $W/reset.err);"
result vsock-reset "$why" "the exec connection held at snapshot time was reset in the clone (its sleep $(cat $W/reset.out) x 0.1 s); a new connection ran this check"

# --- run --from timing beside a cold run ---------------------------------------------------------
echo "STEP snap-timing"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --verbose --from /run/snap -- true >$W/tf.out 2>$W/tf.err </dev/null
rf=$?
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --verbose $R -- true >$W/tc.out 2>$W/tc.err </dev/null
rcold=$?
tf=$(sed -n 's/^padcell: teardown .*total \([0-9.]*\) ms.*/\1/p' $W/tf.err)
tc=$(sed -n 's/^padcell: teardown .*total \([0-9.]*\) ms.*/\1/p' $W/tc.err)
why=""
[ "$rf" = 0 ] && [ "$rcold" = 0 ] || why="$why exit $rf (from) / $rcold (cold);"
[ -n "$tf" ] && [ -n "$tc" ] || why="$why no --verbose totals;"
[ -n "$tf" ] && [ -n "$tc" ] && ! awk -v a="$tf" -v b="$tc" 'BEGIN { exit !(a < b) }' && why="$why run --from (${tf} ms) not faster than a cold run (${tc} ms);"
result timing "$why" "run --from -- true ${tf} ms, cold run -- true ${tc} ms"

# --- run --snapshot-when-ready, then a clone of it -------------------------------------------
echo "STEP snap-run-when-ready"
rm -rf /run/snap2
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R --snapshot-when-ready /run/snap2 -- echo first >$W/w1.out 2>$W/w1.err </dev/null
r1=$?
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from /run/snap2 -- echo second >$W/w2.out 2>$W/w2.err </dev/null
r2=$?
why=""
[ "$r1" = 0 ] && [ "$(cat $W/w1.out)" = first ] || why="$why snapshotting run: exit $r1 '$(cat $W/w1.out)' $(head -c 200 $W/w1.err);"
[ "$r2" = 0 ] && [ "$(cat $W/w2.out)" = second ] || why="$why clone: exit $r2 '$(cat $W/w2.out)' $(head -c 200 $W/w2.err);"
result run-when-ready "$why" "run --snapshot-when-ready ran its command; run --from that snapshot ran another"

# --- boot --snapshot-when-ready ------------------------------------------------------------------
echo "STEP snap-boot-when-ready"
rm -rf /run/snap3 $W/b.sock*
timeout $((CASE_TIMEOUT * 2)) ./padcell boot --kernel bzImage --mem 256M --drive rootfs-min.ext4,ro --vsock $W/b.sock \
	--snapshot-when-ready /run/snap3 --cmdline "$AGENT" >$W/bw.log 2>&1 </dev/null &
bpid=$!
t0=$(now)
while [ ! -f /run/snap3/state ] && kill -0 $bpid 2>/dev/null && [ "$(awk -v s="$(since "$t0")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ]; do sleep 0.3; done
wait_agent $W/b.sock $bpid
vm_end $W/b.sock $bpid
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from /run/snap3 -- echo third >$W/w3.out 2>$W/w3.err </dev/null
r3=$?
why=""
[ -f /run/snap3/state ] || why="$why no snapshot written;"
[ "$rc" = 0 ] || why="$why boot exit $rc;"
[ "$r3" = 0 ] && [ "$(cat $W/w3.out)" = third ] || why="$why clone: exit $r3 '$(cat $W/w3.out)' $(head -c 200 $W/w3.err);"
result boot-when-ready "$why" "boot --snapshot-when-ready wrote it, the VM kept running, a clone ran"
[ -n "$why" ] && show bw $W/bw.log

# --- padcell killed while writing a snapshot: nothing that looks valid ---------------------------
echo "STEP snap-kill"
rm -rf /run/snapk $W/k.sock* $W/kapi.sock
timeout $((CASE_TIMEOUT * 2)) ./padcell boot --kernel bzImage --mem 1G --drive rootfs-min.ext4,ro --vsock $W/k.sock \
	--api-sock $W/kapi.sock --jail-dir /run --cmdline "$AGENT" >$W/k.log 2>&1 </dev/null &
kpid=$!
why=""
wait_agent $W/k.sock $kpid || why="$why the agent never answered;"
# 300 MiB of random data in guest RAM: a memory file that takes a while to write
timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock $W/k.sock --no-stdin -- sh -c 'head -c 314572800 /dev/urandom >/dev/shm/big' >/dev/null 2>&1
./padcell snapshot --api-sock $W/kapi.sock --to /run/snapk >$W/ks.out 2>&1 &
spid=$!
# the kill lands mid-write on any machine: once the first temporary file exists (the state file,
# renamed last, cannot be in place yet), not after a fixed 0.3 s a fast host may finish in
t=$(now)
until ls -a /run/snapk 2>/dev/null | grep -q '\.tmp-'; do
	[ "$(awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ] || break
	sleep 0.05
done
kill -9 $kpid
wait $kpid 2>/dev/null
wait $spid 2>/dev/null
ls -la /run/snapk >$W/kls.out 2>&1
timeout -k 10 "$CASE_TIMEOUT" ./padcell restore --from /run/snapk >$W/kr.out 2>&1 </dev/null
krc=$?
[ -f /run/snapk/state ] && why="$why a state file exists after the kill;"
[ "$krc" = 2 ] || why="$why restore exit $krc (want 2, refused): $(head -c 200 $W/kr.out);"
result kill "$why" "SIGKILL while a 300 MiB snapshot is written: no state file, restore refused: $(head -n1 $W/kr.out)"
[ -n "$why" ] && show kill $W/kls.out

[ "$fails" -eq 0 ]
