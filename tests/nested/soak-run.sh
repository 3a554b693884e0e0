#!/bin/sh
# Issue-11 soak and fault cases, run inside L1 as /payload/run.sh by busybox sh (copied by
# soak-test.sh).  One line per case: RESULT soak-<case> PASS|FAIL <detail>; a `STEP soak-<case>`
# line before each so a timeout names the hung case.  Every wait is a hang guard, never a timing
# assertion.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
W=/run/sk
mkdir -p $W
CLONES=20 CMDS=50
FD_ALLOW=2      # descriptors a monitor may hold more after its last command than after its first
RSS_ALLOW=2048  # KiB of the monitor's own resident memory (guest RAM excluded) it may grow by
MEM_MIB=128     # the snapshotted VM's RAM
R="--kernel bzImage --rootfs rootfs-min.ext4 --mem ${MEM_MIB}M"
AGENT="console=ttyS0 reboot=k panic=-1 quiet init=/sbin/padcell-agent"
alive() { [ "$(awk -v s="$(since "$1")" -v m="$2" 'BEGIN { print (s < m) }')" = 1 ]; }
# wait_agent SOCK PID: until `padcell exec -- true` works (or the VM is gone / the case times out)
wait_agent() {
	t=$(now)
	while alive "$t" "$CASE_TIMEOUT" && kill -0 "$2" 2>/dev/null; do
		./padcell exec --vsock "$1" --no-stdin -- true >/dev/null 2>&1 && return 0
		sleep 0.3
	done
	return 1
}
# vm_end SOCK PID: power the VM off through its agent, wait for padcell to exit; sets rc
vm_end() {
	timeout 20 ./padcell exec --vsock "$1" --no-stdin -- poweroff -f >/dev/null 2>&1
	t=$(now)
	while kill -0 "$2" 2>/dev/null && alive "$t" 30; do sleep 0.2; done
	kill -9 "$2" 2>/dev/null
	wait "$2"
	rc=$?
}
# The monitor: busybox timeout execs padcell in its own pid (a coreutils one would fork it).
monitor_of() {
	if [ "$(cat /proc/$1/comm 2>/dev/null)" = padcell ]; then echo "$1"; return; fi
	for c in $(cat /proc/$1/task/$1/children 2>/dev/null); do
		[ "$(cat /proc/$c/comm 2>/dev/null)" = padcell ] && echo "$c" && return
	done
}
# sample PID: "FDS OWN_KIB TOTAL_KIB": open descriptors (the fewest of three looks 0.3 s apart: a
# connection just ended may still be closing), resident memory outside guest RAM (the mappings of
# at least its size left out, from smaps), and VmRSS with guest RAM
sample() {
	fds=""
	for n in 1 2 3; do
		f=$(ls /proc/$1/fd 2>/dev/null | wc -l)
		[ -z "$fds" ] || [ "$f" -lt "$fds" ] && fds=$f
		[ $n = 3 ] || sleep 0.3
	done
	own=$(awk -v g=$((MEM_MIB * 1024)) '$1 == "Size:" { s = $2 } $1 == "Rss:" && s < g { r += $2 } END { print r + 0 }' /proc/$1/smaps 2>/dev/null)
	total=$(awk '$1 == "VmRSS:" { print $2 }' /proc/$1/status 2>/dev/null)
	echo "$fds $own ${total:-0}"
}
padcells() { cat /proc/[0-9]*/comm 2>/dev/null | grep -cx padcell; }
# no_padcell: until no padcell process is left (the cgroup reaper ends after its monitor), bounded
no_padcell() {
	t=$(now)
	while [ "$(padcells)" != 0 ] && alive "$t" 30; do sleep 0.2; done
	[ "$(padcells)" = 0 ]
}
leftovers() { # what a run leaves in /tmp: private directories and sockets
	{ ls -d /tmp/padcell-run.* 2>/dev/null; find /tmp -type s 2>/dev/null; } | tr '\n' ' '
}

# --- one VM on the minimal image, snapshotted once its agent is ready ----------------------------
echo "STEP soak-prepare"
rm -rf /run/soak $W/p.sock*
t0=$(now)
timeout $((CASE_TIMEOUT * 2)) ./padcell boot --kernel bzImage --mem ${MEM_MIB}M --drive rootfs-min.ext4,ro --vsock $W/p.sock \
	--snapshot-when-ready /run/soak --cmdline "$AGENT" >$W/p.log 2>&1 </dev/null &
ppid=$!
while [ ! -f /run/soak/state ] && kill -0 $ppid 2>/dev/null && alive "$t0" "$CASE_TIMEOUT"; do sleep 0.3; done
why=""
wait_agent $W/p.sock $ppid || why="$why the agent never answered;"
vm_end $W/p.sock $ppid
[ -f /run/soak/state ] && [ -f /run/soak/mem ] || why="$why no snapshot written;"
[ "$rc" = 0 ] || why="$why boot exit $rc;"
result prepare "$why" "boot --snapshot-when-ready of a ${MEM_MIB} MiB VM, memory file $(du -k /run/soak/mem 2>/dev/null | cut -f1) KiB on disk, $(since "$t0")s"
[ -n "$why" ] && show prep $W/p.log

# --- 20 clones alive at once, each restored with its own vsock socket ----------------------------
echo "STEP soak-clones"
t0=$(now)
i=1
while [ $i -le $CLONES ]; do
	rm -f $W/c$i.sock*
	# the hang guard of the whole soak: each clone's 50 commands run under it
	timeout $((CASE_TIMEOUT * 20)) ./padcell restore --from /run/soak --vsock $W/c$i.sock >$W/c$i.log 2>&1 </dev/null &
	echo $! >$W/c$i.pid
	i=$((i + 1))
done
why=""
i=1
while [ $i -le $CLONES ]; do
	wait_agent $W/c$i.sock "$(cat $W/c$i.pid)" || why="$why clone $i's agent never answered ($(head -c 200 $W/c$i.log));"
	i=$((i + 1))
done
up=0
i=1
while [ $i -le $CLONES ]; do
	kill -0 "$(cat $W/c$i.pid)" 2>/dev/null && up=$((up + 1))
	i=$((i + 1))
done
[ "$up" = $CLONES ] || why="$why only $up of $CLONES clones alive;"
result clones "$why" "$up clones of one snapshot alive at once, each agent answering on its own socket, $(since "$t0")s"

# --- 50 commands against each, the 20 clones side by side ----------------------------------------
# Command k in clone i prints soak-i-k and exits i+k (distinct in each clone, never 124-128);
# the monitor is sampled after its first command and after its last.
echo "STEP soak-commands"
t0=$(now)
loops=""
i=1
while [ $i -le $CLONES ]; do
	(
		mon=$(monitor_of "$(cat $W/c$i.pid)")
		: >$W/c$i.bad
		k=1
		while [ $k -le $CMDS ]; do
			timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock $W/c$i.sock --no-stdin -- sh -c "echo soak-$i-$k; exit $((i + k))" \
				>$W/c$i.out 2>$W/c$i.err </dev/null
			r=$?
			out=$(cat $W/c$i.out)
			[ "$out" = "soak-$i-$k" ] || echo "lost clone $i command $k: stdout '$(head -c 100 $W/c$i.out)' stderr '$(head -c 200 $W/c$i.err)'" >>$W/c$i.bad
			[ "$r" = $((i + k)) ] || echo "code clone $i command $k: exit $r (want $((i + k))) stderr '$(head -c 200 $W/c$i.err)'" >>$W/c$i.bad
			[ $k = 1 ] && sample "$mon" >$W/c$i.first
			[ $k = $CMDS ] && sample "$mon" >$W/c$i.last
			k=$((k + 1))
		done
		# progress on L1's console (a STEP line: a timeout then says how far the soak got)
		echo "STEP soak-commands clone $i: $CMDS done at $(since "$t0")s, $(grep -c . $W/c$i.bad) bad"
	) &
	loops="$loops $!"
	i=$((i + 1))
done
wait $loops # those loops only: a bare wait would wait for the clones too
secs=$(since "$t0")
lost=$(cat $W/c*.bad | grep -c '^lost')
wrong=$(cat $W/c*.bad | grep -c '^code')
why=""
[ "$lost" = 0 ] || why="$why $lost lost or wrong outputs;"
[ "$wrong" = 0 ] || why="$why $wrong wrong exit codes;"
result commands "$why" "$((CLONES * CMDS)) commands ($CMDS in each of $CLONES clones at once): $lost lost outputs, $wrong wrong exit codes, ${secs}s"
[ -n "$why" ] && cat $W/c*.bad | show bad /dev/stdin

# --- each monitor's descriptors and memory: flat from its first command to its last -------------
echo "STEP soak-flat"
why=""
i=1
while [ $i -le $CLONES ]; do
	read -r f1 o1 _ <$W/c$i.first 2>/dev/null
	read -r f2 o2 _ <$W/c$i.last 2>/dev/null
	if [ -z "$f1" ] || [ -z "$f2" ] || [ "$f1" = 0 ] || [ "$o1" = 0 ]; then
		why="$why clone $i not sampled ('$(cat $W/c$i.first 2>/dev/null)' / '$(cat $W/c$i.last 2>/dev/null)');"
	else
		[ "$f2" -le $((f1 + FD_ALLOW)) ] || why="$why clone $i fds $f1 -> $f2;"
		[ "$o2" -le $((o1 + RSS_ALLOW)) ] || why="$why clone $i own RSS $o1 -> $o2 KiB;"
	fi
	i=$((i + 1))
done
# min-max of each figure over the clones
mm() { cat $W/c*.$1 | awk -v c=$2 'NR == 1 || $c < lo { lo = $c } NR == 1 || $c > hi { hi = $c } END { printf "%s-%s", lo, hi }'; }
figs="fds $(mm first 1) after the first command, $(mm last 1) after the last (allowed +$FD_ALLOW);"
figs="$figs RSS outside guest RAM $(mm first 2) -> $(mm last 2) KiB (allowed +$RSS_ALLOW);"
figs="$figs VmRSS with guest RAM $(mm first 3) -> $(mm last 3) KiB"
result flat "$why" "$figs"

# --- every clone powered off by its agent: exit 0, its socket gone ------------------------------
echo "STEP soak-end"
why=""
i=1
while [ $i -le $CLONES ]; do
	vm_end $W/c$i.sock "$(cat $W/c$i.pid)"
	[ "$rc" = 0 ] || why="$why clone $i exit $rc ($(head -c 200 $W/c$i.log));"
	[ -e $W/c$i.sock ] && why="$why clone $i's socket left;"
	i=$((i + 1))
done
no_padcell || why="$why $(padcells) padcell process(es) left;"
result end "$why" "all $CLONES clones powered off from exec, each restore exit 0, sockets removed"

# --- the guest kernel panicking mid-command ------------------------------------------------------
# run: one line naming the panic, exit 125 (the VM failed before the command ended); a restored VM
# whose guest panics under exec: restore exits 3 (the guest kernel panicked), exec 125.
echo "STEP soak-panic"
t0=$(now)
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R -- sh -c 'echo c >/proc/sysrq-trigger; sleep 30; echo survived' \
	>$W/pa.out 2>$W/pa.err </dev/null
prc=$?
lines=$(grep '^padcell: ' $W/pa.err | grep -v '^padcell: last [0-9]* bytes of the guest console:$')
why=""
[ "$prc" = 125 ] || why="$why run exit $prc (want 125);"
[ "$(printf '%s\n' "$lines" | grep -c .)" = 1 ] || why="$why padcell's lines: '$(printf '%s' "$lines" | tr '\n' '|' | head -c 300)';"
printf '%s\n' "$lines" | grep -q 'panicked' || why="$why its line does not say the guest panicked;"
[ -s $W/pa.out ] && why="$why the command printed '$(head -c 100 $W/pa.out)';"
rm -rf $W/x.sock*
timeout $((CASE_TIMEOUT * 2)) ./padcell restore --from /run/soak --vsock $W/x.sock >$W/px.log 2>&1 </dev/null &
xpid=$!
wait_agent $W/x.sock $xpid || why="$why the clone's agent never answered;"
timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock $W/x.sock --no-stdin -- sh -c 'echo c >/proc/sysrq-trigger; sleep 30' \
	>$W/pe.out 2>$W/pe.err </dev/null
erc=$?
t=$(now)
while kill -0 $xpid 2>/dev/null && alive "$t" "$CASE_TIMEOUT"; do sleep 0.2; done
kill -9 $xpid 2>/dev/null
wait $xpid
xrc=$?
[ "$erc" = 125 ] || why="$why exec exit $erc (want 125): $(head -c 200 $W/pe.err);"
[ "$(grep -c '^padcell: ' $W/pe.err)" = 1 ] || why="$why exec's lines: '$(tr '\n' '|' <$W/pe.err | head -c 300)';"
[ "$xrc" = 3 ] || why="$why restore exit $xrc (want 3);"
grep -q 'padcell: .*panicked' $W/px.log || why="$why restore's output does not say the guest panicked;"
[ -e $W/x.sock ] && why="$why the clone's socket left;"
no_padcell || why="$why $(padcells) padcell process(es) left;"
[ -z "$(leftovers)" ] || why="$why left in /tmp: $(leftovers);"
result panic "$why" "sysrq c mid-command: run exit 125 with '$(printf '%s' "$lines" | head -n1 | head -c 160)'; exec on a clone exit 125 ('$(head -n1 $W/pe.err | head -c 120)'), the clone's restore exit 3; $(since "$t0")s"
[ -n "$why" ] && show panic $W/pa.err

# --- SIGKILL of `padcell run` while its command runs: nothing left behind ------------------------
# kill9 NAME ARGS...: padcell run ARGS in the background (no timeout wrapper: $! is padcell), its
# command running, then kill -9; sets why
kill9() {
	n=$1
	shift
	./padcell run "$@" -- sh -c 'echo started; exec sleep 100' >$W/$n.out 2>$W/$n.err </dev/null &
	kp=$!
	t=$(now)
	while [ "$(cat $W/$n.out 2>/dev/null)" != started ] && kill -0 $kp 2>/dev/null && alive "$t" "$CASE_TIMEOUT"; do sleep 0.1; done
	why=""
	[ "$(cat $W/$n.out)" = started ] || why="$why the command never started ($(head -c 200 $W/$n.err));"
	during=$(leftovers)
	kill -9 $kp
	wait $kp
	krc=$?
	[ "$krc" = 137 ] || why="$why exit $krc (want 137);"
	[ -z "$during" ] || why="$why while the command ran, in /tmp: $during;"
	no_padcell || why="$why $(padcells) padcell process(es) left;"
	[ -z "$(leftovers)" ] || why="$why left in /tmp: $(leftovers);"
}
echo "STEP soak-kill-run"
kill9 k1 $R
result kill-run "$why" "run killed by SIGKILL mid-command (exit $krc): no /tmp/padcell-run.* directory and no socket, during or after, no padcell left"

echo "STEP soak-kill-from"
kill9 k2 --from /run/soak
result kill-from "$why" "run --from killed by SIGKILL mid-command (exit $krc): no /tmp/padcell-run.* directory and no socket, during or after, no padcell left"

[ "$fails" -eq 0 ]
