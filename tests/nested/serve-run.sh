#!/bin/sh
# `padcell serve` cases, run inside L1 as /payload/run.sh by busybox sh (copied by serve-test.sh).
# One line per case: RESULT serve-<case> PASS|FAIL <detail>; a `STEP serve-<case>` line before each.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
ip link set lo up 2>/dev/null
W=/run/sv
S=/run/ps # the state dir (short: the sandboxes' vsock paths are under it)
mkdir -p $W
URL=http://127.0.0.1:3000
SERVE="./dyn/bin/padcell-dyn serve --padcell $PWD/padcell --template base=/run/tpl --state-dir $S --listen 127.0.0.1:3000 --max-sandboxes 2"
curl_() { ./dyn/bin/curl -sS --max-time 60 "$@"; }
# api METHOD PATH [BODY]: sets code and body (the reply's)
api() {
	if [ -n "$3" ]; then
		code=$(curl_ -o $W/body -w '%{http_code}' -X "$1" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
			--data "$3" "$URL$2" 2>$W/curl.err)
	else
		code=$(curl_ -o $W/body -w '%{http_code}' -X "$1" -H "X-API-Key: $KEY" "$URL$2" 2>$W/curl.err)
	fi
	body=$(cat $W/body 2>/dev/null)
}
sandbox_id() { sed -n 's/.*"sandboxID":"\([0-9a-f]*\)".*/\1/p' $W/body; }
# daemon_wait PID LOG: until LOG says the daemon listens; 1 when it ended first or 30 s passed
daemon_wait() {
	t=$(now)
	until grep -q 'listening on' "$2"; do
		kill -0 "$1" 2>/dev/null || return 1
		[ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 30) }')" = 1 ] || return 1
		sleep 0.2
	done
}
# daemon_start LOG: the daemon in the background (pid in $dpid), until it says it listens
daemon_start() {
	$SERVE >"$1" 2>&1 </dev/null &
	dpid=$!
	daemon_wait $dpid "$1"
}
# until_gone ID: its record gone and GET 404, within the case timeout
until_gone() {
	t=$(now)
	while [ "$(awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ]; do
		api GET /sandboxes/$1
		[ "$code" = 404 ] && [ ! -e $S/sandboxes/$1.json ] && [ ! -e $S/run/$1 ] && return 0
		sleep 0.5
	done
	return 1
}
pid_of() { sed -n 's/.*"pid":\([0-9]*\).*/\1/p' $S/sandboxes/$1.json 2>/dev/null; }

# --- the template: a snapshot taken when the agent was ready ---
echo "STEP serve-template"
why=""
timeout "$CASE_TIMEOUT" ./padcell run --kernel bzImage --rootfs rootfs-min.ext4 --mem 256M --snapshot-when-ready /run/tpl \
	--no-stdin -- true >$W/tpl.out 2>&1 || why=" run --snapshot-when-ready failed: $(head -c 300 $W/tpl.out);"
[ -f /run/tpl/state ] || why="$why no /run/tpl/state;"
daemon_start $W/d1.log || why="$why the daemon did not start: $(head -c 300 $W/d1.log);"
KEY=$(cat $S/api-key 2>/dev/null)
[ -n "$KEY" ] || why="$why no $S/api-key;"
grep -q "$KEY" $W/d1.log || why="$why the key was not printed at the first start;"
# the daemon confined itself (vmm/jail/jail.c jail_confine_daemon), its spawner beside it
for f in 'Seccomp:	2' 'NoNewPrivs:	1' 'CapEff:	0000000000000000' 'CapBnd:	0000000000000000'; do
	grep -q "^$f\$" /proc/$dpid/status || why="$why the daemon's status lacks '$f';"
done
grep -qx padcell-spawner /proc/*/comm 2>/dev/null || why="$why no padcell-spawner process;"
result template "$why" "snapshot taken, daemon listening and confined, key made"

# --- create a sandbox, run a command in it through its vsock socket ---
echo "STEP serve-create"
why=""
t0=$(now)
api POST /sandboxes '{"templateID":"base","timeout":600,"metadata":{"who":"nested"}}'
csecs=$(since "$t0")
A=$(sandbox_id)
[ "$code" = 201 ] && [ -n "$A" ] || why=" create answered $code: $body $(cat $W/curl.err);"
out=$(timeout 60 ./padcell exec --vsock $S/run/$A/vsock --no-stdin -- echo hello-from-vm 2>&1)
[ "$out" = hello-from-vm ] || why="$why exec in the sandbox gave: $(echo "$out" | head -c 200);"
pa=$(pid_of $A)
[ -n "$pa" ] && kill -0 "$pa" 2>/dev/null || why="$why its record names no live pid;"
result create "$why" "201 in ${csecs}s, exec through $S/run/ID/vsock works"

# --- list and get ---
echo "STEP serve-list"
why=""
api GET /sandboxes
[ "$code" = 200 ] || why=" list answered $code;"
echo "$body" | grep -q "\"sandboxID\":\"$A\"" || why="$why $A not listed: $body;"
api GET /sandboxes/$A
[ "$code" = 200 ] && echo "$body" | grep -q '"who":"nested"' && echo "$body" | grep -q '"state":"running"' ||
	why="$why get answered $code: $body;"
result list "$why" "listed, metadata kept"

# --- limits: max 2 sandboxes, the third refused and never started ---
echo "STEP serve-limits"
why=""
api POST /sandboxes '{"templateID":"base","timeout":600}'
B=$(sandbox_id)
[ "$code" = 201 ] || why=" the second create answered $code: $body;"
before=$(ps -o args | grep -c '[p]adcell restore')
api POST /sandboxes '{"templateID":"base"}'
[ "$code" = 429 ] && echo "$body" | grep -q max-sandboxes || why="$why the third create answered $code: $body;"
after=$(ps -o args | grep -c '[p]adcell restore')
[ "$before" = "$after" ] || why="$why the refused create started a monitor ($before -> $after);"
result limits "$why" "third create 429, nothing started"

# --- the daemon's SIGTERM leaves the sandboxes; a new daemon re-adopts them ---
echo "STEP serve-readopt"
why=""
kill -TERM $dpid
wait $dpid
drc=$?
[ "$drc" = 0 ] || why=" the daemon exited $drc on SIGTERM;"
pb=$(pid_of $B)
kill -0 "$pa" 2>/dev/null && kill -0 "$pb" 2>/dev/null || why="$why a sandbox died with the daemon;"
daemon_start $W/d2.log || why="$why the second daemon did not start: $(head -c 300 $W/d2.log);"
grep -q 're-adopted 2 sandbox' $W/d2.log || why="$why no re-adoption line: $(head -c 300 $W/d2.log);"
api GET /sandboxes/$A
[ "$code" = 200 ] || why="$why $A after the restart: $code;"
out=$(timeout 60 ./padcell exec --vsock $S/run/$A/vsock --no-stdin -- echo still-here 2>&1)
[ "$out" = still-here ] || why="$why exec after the restart: $(echo "$out" | head -c 200);"
result readopt "$why" "sandboxes ran on through the restart and were re-adopted"

# --- pause: a file and a background process started before it; the monitor ends, the snapshot stays ---
echo "STEP serve-pause"
why=""
ex() { timeout 60 ./padcell exec --vsock $S/run/$A/vsock --no-stdin -- "$@" 2>&1; }
ex sh -c 'echo kept-through-pause >/tmp/pfile' >/dev/null || why=" writing the file failed;"
bg=$(timeout 60 ./padcell exec --vsock $S/run/$A/vsock --background -- sleep 100000 2>&1)
ps1=$(timeout 60 ./padcell ps --vsock $S/run/$A/vsock 2>&1)
echo "$ps1" | grep -q "^$bg .*running" || why="$why no background process before the pause (id '$bg'): $ps1;"
pa=$(pid_of $A)
api POST /sandboxes/$A/pause
[ "$code" = 204 ] || why="$why pause answered $code: $body;"
kill -0 "$pa" 2>/dev/null && why="$why its monitor (pid $pa) still runs;"
[ -f $S/run/$A/snap/state ] && [ -f $S/run/$A/snap/mem ] || why="$why no snapshot in $S/run/$A/snap;"
api GET /sandboxes/$A
echo "$body" | grep -q '"state":"paused"' || why="$why get after pause: $code $body;"
api POST /sandboxes/$A/pause
[ "$code" = 409 ] || why="$why a second pause answered $code;"
ps -o args | grep -q "[p]adcell restore.*$A" && why="$why a monitor of $A still runs;"
result pause "$why" "204, monitor ended, snapshot kept, second pause 409"

# --- a daemon restart while paused: re-adopted as paused ---
echo "STEP serve-readopt-paused"
why=""
kill -TERM $dpid
wait $dpid || why=" the daemon exited $? on SIGTERM;"
daemon_start $W/d3.log || why="$why the third daemon did not start: $(head -c 300 $W/d3.log);"
grep -q 're-adopted 2 sandbox' $W/d3.log || why="$why no re-adoption line: $(head -c 300 $W/d3.log);"
api GET /sandboxes/$A
echo "$body" | grep -q '"state":"paused"' || why="$why $A after the restart: $code $body;"
result readopt-paused "$why" "a paused sandbox is re-adopted as paused"

# --- resume: the file and the background process are there ---
echo "STEP serve-resume"
why=""
t0=$(now)
api POST /sandboxes/$A/resume '{"timeout":600}'
rsecs=$(since "$t0")
[ "$code" = 201 ] || why=" resume answered $code: $body;"
out=$(ex cat /tmp/pfile)
[ "$out" = kept-through-pause ] || why="$why the file after resume: $(echo "$out" | head -c 200);"
ps2=$(timeout 60 ./padcell ps --vsock $S/run/$A/vsock 2>&1)
echo "$ps2" | grep -q "^$bg .*running" || why="$why the background process after resume: $ps2;"
api POST /sandboxes/$A/resume
[ "$code" = 409 ] || why="$why a second resume answered $code;"
pa=$(pid_of $A)
kill -0 "$pa" 2>/dev/null || why="$why no live monitor after resume;"
result resume "$why" "201 in ${rsecs}s; file and background process kept; second resume 409"

# --- connect: resumes a paused sandbox (201), returns a running one (200) ---
echo "STEP serve-connect"
why=""
api POST /sandboxes/$A/pause
[ "$code" = 204 ] || why=" pause answered $code: $body;"
api POST /sandboxes/$A/connect '{"timeout":600}'
[ "$code" = 201 ] || why="$why connect on a paused one answered $code: $body;"
out=$(ex cat /tmp/pfile)
[ "$out" = kept-through-pause ] || why="$why the file after connect: $(echo "$out" | head -c 200);"
api POST /sandboxes/$A/connect '{"timeout":600}'
[ "$code" = 200 ] || why="$why connect on a running one answered $code: $body;"
api POST /sandboxes/iffffffffffffffffff0/connect '{"timeout":60}'
[ "$code" = 404 ] || why="$why connect to an unknown id answered $code;"
pa=$(pid_of $A)
result connect "$why" "paused: 201 and resumed; running: 200; unknown: 404"

# --- a timeout ends a sandbox: the daemon kills it and removes its files ---
echo "STEP serve-timeout"
why=""
api POST /sandboxes/$B/timeout '{"timeout":1}'
[ "$code" = 204 ] || why=" setting the timeout answered $code: $body;"
until_gone $B || why="$why $B still there after its timeout;"
kill -0 "$pb" 2>/dev/null && why="$why its monitor (pid $pb) still runs;"
result timeout "$why" "ended within the case timeout, its files removed"

# --- DELETE ends a sandbox ---
echo "STEP serve-delete"
why=""
api DELETE /sandboxes/$A
[ "$code" = 204 ] || why=" delete answered $code: $body;"
api GET /sandboxes/$A
[ "$code" = 404 ] || why="$why get after delete: $code;"
kill -0 "$pa" 2>/dev/null && why="$why its monitor (pid $pa) still runs;"
[ -e $S/sandboxes/$A.json ] || [ -e $S/run/$A ] && why="$why its files are left;"
left=$(ps -o pid,args | grep '[p]adcell restore' || true)
[ -z "$left" ] || why="$why monitors left: $left;"
result delete "$why" "204, then 404; no monitor and no file left"

# --- the key ---
echo "STEP serve-key"
why=""
code=$(curl_ -o /dev/null -w '%{http_code}' $URL/sandboxes 2>/dev/null)
[ "$code" = 401 ] || why=" no key: $code;"
code=$(curl_ -o /dev/null -w '%{http_code}' -H 'X-API-Key: pc_wrong' -X POST --data '{"templateID":"base"}' $URL/sandboxes 2>/dev/null)
[ "$code" = 401 ] || why="$why a wrong key: $code;"
mode=$(stat -c %a $S/api-key 2>/dev/null)
[ "$mode" = 600 ] || why="$why api-key mode $mode;"
result key "$why" "401 without or with a wrong key; the key file is 0600"

# --- a warm pool: a create takes a ready clone, the pool refills; SIGTERM ends the daemon and the pool ---
echo "STEP serve-pool"
why=""
kill -TERM $dpid
wait $dpid || why=" the daemon exited $? on SIGTERM;"
SERVE="$SERVE --pool base=1"
# until_log FILE PATTERN COUNT: FILE has COUNT lines matching, within the case timeout
until_log() {
	t=$(now)
	while [ "$(grep -c "$2" "$1")" -lt "$3" ]; do
		[ "$(awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ] || return 1
		sleep 0.2
	done
}
# how many sandboxes' monitors run (a monitor can be more than one process: count their vsock paths)
restores() { ps -o args | grep '[p]adcell restore' | grep -o 'run/[0-9a-f]*/vsock' | sort -u | wc -l; }
daemon_start $W/d4.log || why="$why the pool daemon did not start: $(head -c 300 $W/d4.log);"
until_log $W/d4.log 'pool base: 1 of 1 ready' 1 || why="$why the pool did not fill: $(tail -c 300 $W/d4.log);"
t0=$(now)
api POST /sandboxes '{"templateID":"base","timeout":600,"metadata":{"from":"pool"}}'
psecs=$(since "$t0")
P=$(sandbox_id)
[ "$code" = 201 ] && [ -n "$P" ] || why="$why create from the pool answered $code: $body;"
out=$(timeout 60 ./padcell exec --vsock $S/run/$P/vsock --no-stdin -- echo from-the-pool 2>&1)
[ "$out" = from-the-pool ] || why="$why exec in the pool's clone: $(echo "$out" | head -c 200);"
api GET /sandboxes/$P
echo "$body" | grep -q '"from":"pool"' || why="$why its metadata: $body;"
until_log $W/d4.log 'pool base: 1 of 1 ready' 2 || why="$why the pool did not refill: $(tail -c 300 $W/d4.log);"
[ "$(restores)" = 2 ] || why="$why $(restores) monitors, want 2 (the sandbox and the pool's clone);"
pp=$(pid_of $P)
kill -TERM $dpid
t=$(now)
while kill -0 $dpid 2>/dev/null && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 60) }')" = 1 ]; do sleep 0.2; done
if kill -0 $dpid 2>/dev/null; then
	why="$why the daemon with --pool did not exit within 60 s of SIGTERM;"
	kill -KILL $dpid
fi
wait $dpid
drc=$?
[ "$drc" = 0 ] || why="$why the pool daemon exited $drc;"
esecs=$(since "$t")
[ "$(restores)" = 1 ] || why="$why $(restores) monitors after the daemon's end, want 1 (the sandbox; the pool's clone ended);"
kill -0 "$pp" 2>/dev/null || why="$why the created sandbox died with the daemon;"
echo "MEASURE serve-pool create from the pool ${psecs}s, cold clone ${csecs}s; daemon exit ${esecs}s after SIGTERM"
result pool "$why" "create from the pool ${psecs}s (cold clone ${csecs}s); refilled; SIGTERM exit in ${esecs}s, the pool's clone ended"
kill -TERM "$pp" 2>/dev/null

# --- template build: setup commands write into /tmp (a tmpfs: RAM, so in the snapshot), serve takes it by name ---
echo "STEP serve-template-build"
why=""
TD=/run/tpls   # the templates directory
S2=/run/pt     # a second daemon's state dir, on port 3001
URL2=http://127.0.0.1:3001
t0=$(now)
timeout "$CASE_TIMEOUT" ./padcell template build py --kernel bzImage --rootfs rootfs-min.ext4 --mem 64M --dir $TD \
	--run 'echo built-by-setup >/tmp/setup-file; echo setup-says-hi' --run 'mkdir -p /tmp/lib && echo 42 >/tmp/lib/answer' \
	--run 'sleep 1000 & echo a-leftover' >$W/tb.out 2>&1 || why=" template build failed ($?): $(tail -c 400 $W/tb.out);"
bsecs=$(since "$t0")
[ -f $TD/py/state ] && [ -f $TD/py/mem ] && [ -f $TD/py/manifest.json ] || why="$why no state, mem, manifest.json in $TD/py: $(ls -la $TD/py 2>&1 | head -c 300);"
for want in '"name": "py"' '"memMiB": 64' '"cpus": 1' 'built-by-setup' '"image": "/payload/rootfs-min.ext4"' '"built": "'; do
	grep -qF "$want" $TD/py/manifest.json 2>/dev/null || why="$why the manifest lacks $want: $(head -c 400 $TD/py/manifest.json 2>&1);"
done
grep -q 'setup-says-hi' $W/tb.out && grep -q '\[3/3\]' $W/tb.out || why="$why the setup's output was not streamed: $(head -c 300 $W/tb.out);"
[ "$(ls -A $TD)" = py ] || why="$why left in $TD: $(ls -A $TD | tr '\n' ' ');"
ps -o args | grep -q '[p]adcell run' && why="$why a build's monitor still runs;"
# serve: --templates DIR beside an explicit --template; limits for the load case below (20 x 64M)
SERVE2="./dyn/bin/padcell-dyn serve --padcell $PWD/padcell --template base=/run/tpl --templates $TD --state-dir $S2 --listen 127.0.0.1:3001 --max-sandboxes 24 --max-mem 1280M --ready-timeout 600"
$SERVE2 >$W/d5.log 2>&1 </dev/null &
d2pid=$!
daemon_wait $d2pid $W/d5.log || why="$why the daemon with --templates did not start: $(head -c 300 $W/d5.log);"
KEY2=$(cat $S2/api-key 2>/dev/null)
# api2 METHOD PATH [BODY]: api against the second daemon
api2() { su=$URL sk=$KEY; URL=$URL2 KEY=$KEY2; api "$@"; URL=$su KEY=$sk; }
api2 POST /sandboxes '{"templateID":"py","timeout":600}'
T=$(sandbox_id)
[ "$code" = 201 ] && [ -n "$T" ] || why="$why create of py answered $code: $body;"
out=$(timeout 60 ./padcell exec --vsock $S2/run/$T/vsock --no-stdin -- cat /tmp/setup-file /tmp/lib/answer 2>&1)
[ "$out" = "built-by-setup
42" ] || why="$why the sandbox sees: $(echo "$out" | head -c 200);"
out=$(timeout 60 ./padcell exec --vsock $S2/run/$T/vsock --no-stdin -- sh -c 'grep -l "^sleep$" /proc/[0-9]*/comm 2>/dev/null | wc -l' 2>&1)
[ "$out" = 0 ] || why="$why a setup process outlived its command into the template ($out sleep processes);"
api2 GET /sandboxes/$T
echo "$body" | grep -q '"templateID":"py"' && echo "$body" | grep -q '"memoryMB":64' || why="$why get: $code $body;"
api2 DELETE /sandboxes/$T
[ "$code" = 204 ] || why="$why delete answered $code;"
echo "MEASURE serve-template-build 3 setup commands, 64M guest: built in ${bsecs}s"
result template-build "$why" "built in ${bsecs}s with its manifest, nothing beside it; served by name; the sandbox sees the setup's /tmp files, no setup process"

# --- a failing --run: its exit code, one line, nothing left ---
echo "STEP serve-template-fail"
why=""
timeout "$CASE_TIMEOUT" ./padcell template build bad --kernel bzImage --rootfs rootfs-min.ext4 --mem 64M --dir $TD \
	--run 'echo first-ran' --run 'echo about-to-fail; exit 7' --run 'echo never-ran' >$W/tf.out 2>&1
rc=$?
[ "$rc" = 7 ] || why=" exit $rc, want 7 (the command's): $(tail -c 300 $W/tf.out);"
[ "$(grep -c 'nothing was built' $W/tf.out)" = 1 ] && grep -q 'setup command 2 (echo about-to-fail; exit 7) exited with code 7' $W/tf.out ||
	why="$why not one clear line: $(tail -c 300 $W/tf.out);"
grep -q about-to-fail $W/tf.out || why="$why the failing command's output was not shown;"
grep -q '^never-ran' $W/tf.out && why="$why the command after the failing one ran;"
[ "$(ls -A $TD)" = py ] || why="$why left in $TD: $(ls -A $TD | tr '\n' ' ');"
ps -o args | grep -q '[p]adcell run' && why="$why a build's monitor still runs;"
result template-fail "$why" "exit 7, one line, the third command not run, nothing left in $TD"

# --- the load: 20 sandboxes at once, each running 20 commands whose outputs are checked ---
echo "STEP serve-load"
why=""
ids=""
t0=$(now)
i=0
while [ $i -lt 20 ]; do
	api2 POST /sandboxes '{"templateID":"py","timeout":1200}'
	id=$(sandbox_id)
	[ "$code" = 201 ] && [ -n "$id" ] || { why="$why create $i answered $code: $(echo "$body" | head -c 200);"; break; }
	ids="$ids $id"
	i=$((i + 1))
done
lsecs=$(since "$t0")
[ "$(echo $ids | wc -w)" = 20 ] || why="$why $(echo $ids | wc -w) of 20 created;"
[ "$(ls $S2/sandboxes | wc -l)" = 20 ] || why="$why $(ls $S2/sandboxes | wc -l) records, want 20;"
echo "serve-load: $(echo $ids | wc -w) sandboxes created in ${lsecs}s"
# each sandbox runs its 20 commands in turn, all 20 sandboxes at once; every output is compared
t0=$(now)
n=0
pids=""
for id in $ids; do
	(
		bad=0
		j=0
		while [ $j -lt 20 ]; do
			out=$(timeout 120 ./padcell exec --vsock $S2/run/$id/vsock --no-stdin -- \
				sh -c 'echo "$1:$2:$(( $2 * $2 + 7 ))"; cat /tmp/lib/answer' sh "$n" "$j" 2>&1)
			[ "$out" = "$n:$j:$((j * j + 7))
42" ] || { bad=$((bad + 1)); echo "sandbox $n command $j: $(echo "$out" | head -c 120)" >>$W/load.bad; }
			j=$((j + 1))
		done
		echo "$bad" >$W/load.$n
	) &
	pids="$pids $!"
	n=$((n + 1))
done
wait $pids # these only: the daemons run in the background too
csecs=$(since "$t0")
ok=0
n=0
while [ $n -lt 20 ]; do
	b=$(cat $W/load.$n 2>/dev/null)
	[ "$b" = 0 ] && ok=$((ok + 1))
	n=$((n + 1))
done
[ "$ok" = 20 ] || why="$why $ok of 20 sandboxes ran their 20 commands right: $(head -c 400 $W/load.bad 2>/dev/null);"
[ "$(restores)" -ge 20 ] || why="$why $(restores) monitors after the load;"
echo "MEASURE serve-load 20 creates in ${lsecs}s; 20x20 commands (20 sandboxes at once) in ${csecs}s"
result load "$why" "20 sandboxes created (${lsecs}s), 400 commands right (${csecs}s, 20 at once)"

# --- the host limits: past --max-mem a create is refused and nothing starts ---
echo "STEP serve-limits-mem"
why=""
before=$(restores)
api2 POST /sandboxes '{"templateID":"py"}'
[ "$code" = 429 ] && echo "$body" | grep -q max-mem || why=" the 21st create (1280M of --max-mem in use) answered $code: $body;"
[ "$(restores)" = "$before" ] || why="$why the refused create started a monitor;"
for id in $ids; do
	api2 DELETE /sandboxes/$id
	[ "$code" = 204 ] || why="$why delete $id answered $code;"
done
api2 POST /sandboxes '{"templateID":"py","timeout":60}'
[ "$code" = 201 ] || why="$why a create after the deletes answered $code: $body;"
F=$(sandbox_id)
api2 DELETE /sandboxes/$F
kill -TERM $d2pid
wait $d2pid
left=$(ls $S2/sandboxes 2>/dev/null | wc -l)
[ "$left" = 0 ] || why="$why $left records left;"
result limits-mem "$why" "over --max-mem: 429 naming it, nothing started; room again once deleted"

# --- per-key scoping: --api-keys with two clients; bob gets 404 for alice's sandbox, on REST and envd ---
echo "STEP serve-keys"
why=""
KA=e2b_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
KB=e2b_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
printf '# clients\nalice %s\nbob %s\n' $KA $KB >$W/keys
chmod 600 $W/keys
./dyn/bin/padcell-dyn serve --padcell $PWD/padcell --templates $TD --state-dir /run/pk --listen 127.0.0.1:3002 \
	--api-keys $W/keys --max-sandboxes 2 >$W/d6.log 2>&1 </dev/null &
d3pid=$!
daemon_wait $d3pid $W/d6.log && grep -q '2 API keys' $W/d6.log || why=" the daemon with --api-keys did not start: $(head -c 300 $W/d6.log);"
[ -e /run/pk/api-key ] && why="$why an api-key was made beside --api-keys;"
# apik KEY METHOD PATH [BODY]
apik() { su=$URL sk=$KEY; URL=http://127.0.0.1:3002 KEY=$1; shift; api "$@"; URL=$su KEY=$sk; }
apik $KA POST /sandboxes '{"templateID":"py","timeout":600,"metadata":{"who":"alice-secret"}}'
AL=$(sandbox_id)
[ "$code" = 201 ] && [ -n "$AL" ] || why="$why alice's create answered $code: $body;"
echo "$body" | grep -q "\"envdAccessToken\":\"$KA\"" || why="$why alice's envd token is not her key: $body;"
apik $KB GET /sandboxes
[ "$code" = 200 ] && [ "$body" = "[]" ] || why="$why bob's list: $code $body;"
apik $KB GET /sandboxes/$AL
[ "$code" = 404 ] || why="$why bob's get of alice's: $code;"
echo "$body" | grep -q alice-secret && why="$why bob's 404 shows alice's metadata;"
apik $KB DELETE /sandboxes/$AL
[ "$code" = 404 ] || why="$why bob's delete of alice's: $code;"
apik $KB POST /sandboxes/$AL/pause
[ "$code" = 404 ] || why="$why bob's pause of alice's: $code;"
# envd: a file of the template's through alice's token; bob's finds no sandbox
envd_stat() { # TOKEN: sets code, body
	code=$(curl_ -o $W/body -w '%{http_code}' -X POST -H "X-Access-Token: $1" -H "E2b-Sandbox-Id: $AL" \
		-H 'Content-Type: application/json' --data '{"path":"/tmp/setup-file"}' \
		http://127.0.0.1:3002/filesystem.Filesystem/Stat 2>$W/curl.err)
	body=$(cat $W/body 2>/dev/null)
}
envd_stat $KB
[ "$code" = 404 ] && echo "$body" | grep -q not_found || why="$why bob's envd Stat in alice's: $code $body;"
envd_stat $KA
[ "$code" = 200 ] && echo "$body" | grep -q '"name":"setup-file"' || why="$why alice's envd Stat: $code $body;"
apik $KA GET /sandboxes/$AL
[ "$code" = 200 ] && echo "$body" | grep -q alice-secret || why="$why alice's get after bob's tries: $code $body;"
apik $KA DELETE /sandboxes/$AL
[ "$code" = 204 ] || why="$why alice's delete: $code;"
kill -TERM $d3pid
wait $d3pid
result keys "$why" "bob: empty list, 404 on get/delete/pause and envd not_found for alice's sandbox; alice: 200 and 204"

# --- a template built with networking: its --run pip-installs a package from a package index ---
# The index (net-wheel.py's, made by serve-test.sh) is served by httpd in a network namespace of its
# own at the far end of a veth pair, on a TEST-NET-2 address (as nested-net's net-inet.sh: an address
# of L1's own would be refused by the gate as the host's).  The build's --allow names that address
# and port.  The root is read-only and the setup's writes live in the guest's RAM (README "Where setup
# results persist"): pip installs with --target into /tmp/site (with HOME=/tmp), and the snapshot
# holds it.  A sandbox of that template imports the module and prints its VALUE; its NIC, restored
# with a fresh stack and no rule, no longer reaches the index.
template_net() {
echo "STEP serve-template-net"
why=""
TN=/run/tpln
mkdir -p /srv
cp -r pypi /srv/pypi
unshare -n sh -c 'i=0; while ! ip link show veth0 >/dev/null 2>&1; do i=$((i + 1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done
	ip link set lo up && ip addr add 198.51.100.12/24 dev veth0 && ip link set veth0 up && exec httpd -f -p 198.51.100.12:8080 -h /srv/pypi' &
ipid=$!
veth_up $ipid || why=" no veth link to the index's namespace;"
t=$(now)
until curl_ --max-time 5 -o /dev/null http://198.51.100.12:8080/simple/padcell-hello/ 2>/dev/null; do
	kill -0 $ipid 2>/dev/null && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 60) }')" = 1 ] ||
		{ why=" the package index never answered on 198.51.100.12:8080;"; break; }
	sleep 0.2
done
PIP='HOME=/tmp python3 -m pip install --no-cache-dir --disable-pip-version-check --index-url http://198.51.100.12:8080/simple --trusted-host 198.51.100.12 --target /tmp/site padcell-hello'
t0=$(now)
timeout $((CASE_TIMEOUT * 3)) ./padcell template build pip --kernel bzImage --rootfs rootfs-debian.ext4 --mem 512M --dir $TN \
	--net --allow 198.51.100.12:8080 --run "$PIP" >$W/tn.out 2>&1 || why="$why template build failed ($?): $(tail -c 400 $W/tn.out);"
nsecs=$(since "$t0")
grep -q 'Successfully installed padcell-hello' $W/tn.out || why="$why pip did not say it installed the package: $(tail -c 300 $W/tn.out);"
for want in '"net": true' '"198.51.100.12:8080"' 'pip install'; do
	grep -qF "$want" $TN/pip/manifest.json 2>/dev/null || why="$why the manifest lacks $want: $(head -c 400 $TN/pip/manifest.json 2>&1);"
done
./dyn/bin/padcell-dyn serve --padcell $PWD/padcell --templates $TN --state-dir /run/pn --listen 127.0.0.1:3003 \
	--max-sandboxes 1 --ready-timeout 600 >$W/d7.log 2>&1 </dev/null &
d4pid=$!
daemon_wait $d4pid $W/d7.log || why="$why the daemon with the pip template did not start: $(head -c 300 $W/d7.log);"
KEY4=$(cat /run/pn/api-key 2>/dev/null)
apin() { su=$URL sk=$KEY; URL=http://127.0.0.1:3003 KEY=$KEY4; api "$@"; URL=$su KEY=$sk; }
apin POST /sandboxes '{"templateID":"pip","timeout":600}'
N=$(sandbox_id)
[ "$code" = 201 ] && [ -n "$N" ] || why="$why create of pip answered $code: $body;"
out=$(timeout 120 ./padcell exec --vsock /run/pn/run/$N/vsock --no-stdin -- \
	sh -c 'PYTHONPATH=/tmp/site python3 -c "import padcell_hello; print(padcell_hello.VALUE)"' 2>&1)
[ "$out" = hello-from-a-template-build ] || why="$why the sandbox's import printed: $(echo "$out" | head -c 300);"
out=$(timeout 120 ./padcell exec --vsock /run/pn/run/$N/vsock --no-stdin -- python3 -c '
import urllib.request
try:
    urllib.request.urlopen("http://198.51.100.12:8080/simple/", timeout=10).read()
    print("reached")
except Exception as e:
    print("blocked")' 2>&1)
[ "$out" = blocked ] || why="$why the sandbox reached the index without a rule: $(echo "$out" | head -c 200);"
apin DELETE /sandboxes/$N
[ "$code" = 204 ] || why="$why delete answered $code;"
kill -TERM $d4pid
wait $d4pid
kill $ipid 2>/dev/null
wait $ipid 2>/dev/null
ip link del va 2>/dev/null
echo "MEASURE serve-template-net pip install from the local index, 512M Debian guest: built in ${nsecs}s"
result template-net "$why" "built with --net --allow in ${nsecs}s, pip --target /tmp/site; the sandbox imports it; no rule after restore"
}
if [ -f rootfs-debian.ext4 ]; then template_net; else echo "SKIP serve-template-net: no rootfs-debian.ext4 in the payload"; fi
[ "$fails" -eq 0 ]
