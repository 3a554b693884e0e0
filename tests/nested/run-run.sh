#!/bin/sh
# Issue-4 cases, run inside L1 as /payload/run.sh by busybox sh (copied by run-test.sh).
# One line per case: RESULT run-<case> PASS|FAIL <detail>; a `STEP run-<case>` line before each so a
# timeout names the hung case.  A failed case shows its stderr (padcell's message and console tail).
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
W=/run/rt
mkdir -p $W
R="--kernel bzImage --rootfs rootfs-min.ext4 --mem 256M"
sha() { sha256sum <"$1" | cut -d' ' -f1; }
# prun NAME ARGS...: padcell run under the case timeout, stdout/stderr to $W/NAME.out/.err; sets rc, secs.
prun() {
	n=$1
	shift
	t0=$(now)
	timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R "$@" >$W/$n.out 2>$W/$n.err
	rc=$?
	secs=$(since "$t0")
}

# --- exit code and the two streams, each on its own side ---------------------------------------
echo "STEP run-streams"
prun streams -- sh -c 'echo out; echo err >&2; exit 3' </dev/null
why=""
[ "$rc" = 3 ] || why="$why exit $rc (want 3);"
[ "$(cat $W/streams.out)" = out ] || why="$why stdout '$(head -c 200 $W/streams.out)' (want 'out');"
[ "$(cat $W/streams.err)" = err ] || why="$why stderr '$(head -c 200 $W/streams.err)' (want 'err');"
result streams "$why" "exit 3, stdout 'out', stderr 'err' in ${secs}s"
[ -n "$why" ] && show streams $W/streams.err

# --- 10 MiB of stdout arrives intact -----------------------------------------------------------
echo "STEP run-10mib"
prun big -- sh -c 'head -c 10485760 /dev/urandom >/tmp/d && sha256sum </tmp/d >&2 && cat /tmp/d' </dev/null
want=$(cut -d' ' -f1 $W/big.err | head -n1)
got=$(sha $W/big.out)
size=$(wc -c <$W/big.out)
why=""
[ "$rc" = 0 ] || why="$why exit $rc;"
[ "$size" = 10485760 ] || why="$why $size bytes (want 10485760);"
[ "$got" = "$want" ] || why="$why sha256 $got on the host, '$want' in the guest;"
result 10mib "$why" "10485760 bytes, sha256 ${got%${got#????????????????}} both sides, ${secs}s"
[ -n "$why" ] && show big $W/big.err
rm -f $W/big.out

# --- stdin is passed through --------------------------------------------------------------------
echo "STEP run-stdin"
head -c 3000000 /dev/urandom >$W/in
prun stdin -- sha256sum <$W/in
why=""
[ "$rc" = 0 ] || why="$why exit $rc;"
[ "$(cut -d' ' -f1 $W/stdin.out)" = "$(sha $W/in)" ] || why="$why guest saw sha256 '$(cat $W/stdin.out)', host sent $(sha $W/in);"
result stdin "$why" "3000000 bytes of stdin, same sha256 in the guest, ${secs}s"
[ -n "$why" ] && show stdin $W/stdin.err

# --- --timeout 2 -- sleep 60: about 2 s after the agent is ready, exit 124 ---------------------
echo "STEP run-timeout"
prun timeout --verbose --timeout 2 -- sleep 60 </dev/null
ready=$(sed -n 's/^padcell: agent ready \([0-9.]*\) ms after start.*/\1/p' $W/timeout.err)
cmd=$(sed -n 's/^padcell: command \([0-9.]*\) ms.*/\1/p' $W/timeout.err)
why=""
[ "$rc" = 124 ] || why="$why exit $rc (want 124);"
[ -n "$ready" ] && [ -n "$cmd" ] || why="$why no timing lines from --verbose;"
# --timeout 2 must fire, not early; the upper bound only says it fired at all (a loaded host is slow)
[ -n "$cmd" ] && awk -v c="$cmd" 'BEGIN { exit !(c >= 1900 && c < 30000) }' || why="$why command took '$cmd' ms (want about 2000);"
result timeout "$why" "exit 124, command ended after ${cmd} ms (agent ready at ${ready} ms), ${secs}s in all"
[ -n "$why" ] && grep -v '^\[' $W/timeout.err | show timeout /dev/stdin

# --- a long-lived VM: exec, timeouts leave nothing, cp both ways, the raw CONNECT protocol -------
echo "STEP run-boot-vsock"
rm -f /run/v.sock*
timeout $((CASE_TIMEOUT * 3)) ./padcell boot --kernel bzImage --mem 256M --drive rootfs-min.ext4,ro --vsock /run/v.sock \
	--cmdline "console=ttyS0 reboot=k panic=-1 quiet init=/sbin/padcell-agent" >$W/boot.log 2>&1 </dev/null &
bootpid=$!
t0=$(now)
ok=no
while [ "$(awk -v s="$(since "$t0")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ] && kill -0 $bootpid 2>/dev/null; do
	if ./padcell exec --vsock /run/v.sock --no-stdin -- true >/dev/null 2>$W/probe.err; then ok=yes; break; fi
	sleep 0.3
done
result exec-ready "$([ $ok = yes ] || echo " padcell exec never succeeded: $(tail -n1 $W/probe.err)")" "padcell exec -- true works ${t0:+$(since "$t0")}s after boot"

echo "STEP run-exec-timeout-no-orphans"
t0=$(now)
timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock /run/v.sock --no-stdin --timeout 2 -- sh -c 'sleep 300 & sleep 301' >$W/et.out 2>$W/et.err
rc=$?
secs=$(since "$t0")
timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock /run/v.sock --no-stdin -- \
	sh -c 'for p in /proc/[0-9]*; do tr "\0" " " <$p/cmdline 2>/dev/null; echo; done' >$W/ps.out 2>&1
left=$(grep -c 'sleep 30[01]' $W/ps.out)
why=""
[ "$rc" = 124 ] || why="$why exit $rc (want 124);"
[ "$left" = 0 ] || why="$why $left sleep process(es) still in the guest;"
grep -q '^/sbin/padcell-agent' $W/ps.out || why="$why process listing looks wrong: $(head -c 200 $W/ps.out);"
result exec-timeout "$why" "exit 124 in ${secs}s, no process of the command's group left"

echo "STEP run-cp"
head -c 1234567 /dev/urandom >$W/cpin
timeout -k 10 "$CASE_TIMEOUT" ./padcell cp --vsock /run/v.sock $W/cpin vm:/tmp/copied >$W/cp.err 2>&1
rc1=$?
timeout -k 10 "$CASE_TIMEOUT" ./padcell cp --vsock /run/v.sock vm:/tmp/copied $W/cpback >>$W/cp.err 2>&1
rc2=$?
inguest=$(timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock /run/v.sock --no-stdin -- sha256sum /tmp/copied 2>>$W/cp.err | cut -d' ' -f1)
why=""
[ "$rc1" = 0 ] && [ "$rc2" = 0 ] || why="$why cp exit $rc1/$rc2: $(head -c 300 $W/cp.err);"
[ "$inguest" = "$(sha $W/cpin)" ] || why="$why guest file sha256 '$inguest';"
[ -f $W/cpback ] && [ "$(sha $W/cpback)" = "$(sha $W/cpin)" ] || why="$why copied back differs;"
result cp "$why" "1234567 bytes in and out, sha256 equal on both sides and in the guest"

echo "STEP run-raw-connect"
./rawconnect /run/v.sock >$W/raw.out 2>&1
rc=$?
why=""
[ "$rc" = 0 ] || why="$why rawconnect exit $rc: $(head -c 300 $W/raw.out);"
result raw-connect "$why" "$(tr '\n' ' ' <$W/raw.out)"

echo "STEP run-background"
V="timeout -k 10 $CASE_TIMEOUT ./padcell"
id=$($V exec --vsock /run/v.sock --background -- sh -c 'echo started; read x </dev/null; sleep 1; echo later; exit 5' 2>$W/bg.err)
$V ps --vsock /run/v.sock >$W/bg.ps 2>>$W/bg.err
$V attach --vsock /run/v.sock "$id" >$W/bg.out 2>>$W/bg.err
rc=$?
sid=$($V exec --vsock /run/v.sock --background -- sleep 300 2>>$W/bg.err)
$V kill --vsock /run/v.sock --signal KILL "$sid" 2>>$W/bg.err
$V attach --vsock /run/v.sock "$sid" >/dev/null 2>>$W/bg.err
krc=$?
pty=$($V exec --vsock /run/v.sock --pty -- sh -c 'test -t 0 && test -t 1 && echo tty' </dev/null 2>>$W/bg.err | tr -d '\r')
why=""
[ "$id" = 1 ] || why="$why first id '$id' (want 1): $(head -c 200 $W/bg.err);"
grep -q "^1 .*sh -c echo started" $W/bg.ps || why="$why ps: $(head -c 200 $W/bg.ps);"
[ "$rc" = 5 ] || why="$why attach exit $rc (want 5);"
[ "$(cat $W/bg.out)" = "$(printf 'started\nlater')" ] || why="$why attach output '$(head -c 100 $W/bg.out)';"
[ "$krc" = 137 ] || why="$why attach after kill exit $krc (want 137);"
[ "$pty" = tty ] || why="$why --pty: '$pty' (want tty);"
result background "$why" "exec --background id $id, listed by ps, attach exit 5 with both lines; kill KILL -> 137; --pty is a terminal"

echo "STEP run-boot-poweroff"
timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock /run/v.sock --no-stdin -- poweroff -f >/dev/null 2>&1
t0=$(now)
while kill -0 $bootpid 2>/dev/null && [ "$(awk -v s="$(since "$t0")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ]; do sleep 0.2; done
kill $bootpid 2>/dev/null
wait $bootpid
rc=$?
why=""
[ "$rc" = 0 ] || why="$why boot exit $rc (want 0 after poweroff);"
[ -e /run/v.sock ] && why="$why /run/v.sock left behind;"
result boot-poweroff "$why" "the agent's VM powered off from exec, padcell boot exit 0, socket removed"
[ -n "$why" ] && show boot $W/boot.log

# --- 20 runs in a row, each its own VM ----------------------------------------------------------
echo "STEP run-sequential"
t0=$(now)
why=""
i=1
while [ $i -le 20 ]; do
	timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R -- sh -c "echo seq-$i; exit $((i % 7))" >$W/seq.out 2>$W/seq.err </dev/null
	rc=$?
	[ "$rc" = $((i % 7)) ] || why="$why run $i exit $rc (want $((i % 7)));"
	[ "$(cat $W/seq.out)" = "seq-$i" ] || why="$why run $i printed '$(head -c 100 $W/seq.out)';"
	[ -s $W/seq.err ] && why="$why run $i stderr: $(head -c 200 $W/seq.err);"
	i=$((i + 1))
done
secs=$(since "$t0")
result sequential "$why" "20 runs, each output and exit code right, ${secs}s ($(awk -v s="$secs" 'BEGIN { printf "%.2f", s / 20 }')s each)"

# --- 3 VMs at once ------------------------------------------------------------------------------
echo "STEP run-concurrent"
t0=$(now)
for i in 1 2 3; do
	( timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R -- sh -c "sleep 2; echo conc-$i; echo e$i >&2; exit $((10 + i))" \
		>$W/c$i.out 2>$W/c$i.err </dev/null; echo $? >$W/c$i.rc ) &
done
wait
secs=$(since "$t0")
why=""
for i in 1 2 3; do
	[ "$(cat $W/c$i.rc)" = $((10 + i)) ] || why="$why VM $i exit $(cat $W/c$i.rc);"
	[ "$(cat $W/c$i.out)" = "conc-$i" ] || why="$why VM $i stdout '$(head -c 100 $W/c$i.out)';"
	[ "$(cat $W/c$i.err)" = "e$i" ] || why="$why VM $i stderr '$(head -c 200 $W/c$i.err)';"
done
result concurrent "$why" "3 VMs at once, each output, stderr and exit code right, ${secs}s"

# --- SIGTERM to padcell run: forwarded to the command, then everything torn down -----------------
echo "STEP run-sigterm"
t0=$(now)
./padcell run $R -- sh -c 'echo started; exec sleep 100' >$W/term.out 2>$W/term.err </dev/null &
tp=$!
i=0
while [ "$(cat $W/term.out 2>/dev/null)" != started ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM $tp
wait $tp
rc=$?
secs=$(since "$t0")
why=""
[ "$(cat $W/term.out)" = started ] || why="$why the command never started;"
[ "$rc" = 143 ] || why="$why exit $rc (want 143: the command killed by the forwarded SIGTERM);"
[ "$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cx padcell)" = 0 ] || why="$why a padcell process is left;"
result sigterm "$why" "SIGTERM reached the command (exit 143), VM gone, ${secs}s"

# --- nothing left behind -------------------------------------------------------------------------
left=$(ls -d /tmp/padcell-run.* 2>/dev/null | wc -l)
result nothing-left "$([ "$left" = 0 ] || echo " $left /tmp/padcell-run.* directories left")" "no private socket directory left in /tmp"

[ "$fails" -eq 0 ]
