#!/bin/sh
# Inside L1 as /payload/run.sh (copied by tests/nested/e2b-test.sh): `padcell serve` for the host's
# E2B SDK client.  L1's NIC (virtio_net, loaded here) is on QEMU's user network, whose host port is
# forwarded to 10.0.2.15:3000; the daemon listens there with a template snapshot of the Debian image.
# "STEP e2b-listening key=KEY" tells the host to start (key=none when the setup failed); the host's
# "__EOF__" on /dev/ttyS1 ends the session.  Then: no sandbox monitor left (the client killed one
# sandbox and let the other's timeout end it), and the daemon ends 0 on SIGTERM.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
W=/run/e2b
S=/run/ps # the state dir (short: the sandboxes' vsock paths are under it)
mkdir -p $W

echo "STEP e2b-template"
why=""
net_up || why="$why$net_why"
timeout "$CASE_TIMEOUT" ./padcell run --kernel bzImage --rootfs rootfs-debian.ext4 --mem 256M --snapshot-when-ready /run/tpl \
	--no-stdin -- true >$W/tpl.out 2>&1 || why="$why run --snapshot-when-ready failed: $(head -c 300 $W/tpl.out);"
./dyn/bin/padcell-dyn serve --padcell "$PWD/padcell" --template base=/run/tpl --state-dir $S \
	--listen 10.0.2.15:3000 --max-sandboxes 3 >$W/serve.log 2>&1 </dev/null &
dpid=$!
t=$(now)
until grep -q 'listening on' $W/serve.log; do
	if ! kill -0 $dpid 2>/dev/null || [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s >= 30) }')" = 1 ]; then
		why="$why the daemon did not start: $(head -c 300 $W/serve.log);"
		break
	fi
	sleep 0.2
done
KEY=$(cat $S/api-key 2>/dev/null)
[ -n "$KEY" ] || why="$why no $S/api-key;"
result template "$why" "snapshot of the Debian image taken, daemon listening on 10.0.2.15:3000"
stty -F /dev/ttyS1 raw -echo 115200 || echo "L1-WARN no /dev/ttyS1: the session ends at the case timeout"
echo "STEP e2b-listening key=${KEY:-none}"

# the host's client runs now; its end is a line on the second serial port
timeout "$CASE_TIMEOUT" sh -c 'while IFS= read -r line; do [ "$line" = __EOF__ ] && exit 0; done </dev/ttyS1'
echo "STEP e2b-cleanup $?"
why=""
# the sandbox whose timeout the client set to 1 s, and the one it killed: both ended
restores() { ps -o args | grep '[p]adcell restore' | grep -o 'run/[0-9a-f]*/vsock' | sort -u | wc -l; }
t=$(now)
while [ "$(restores)" != 0 ] && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 60) }')" = 1 ]; do sleep 0.5; done
[ "$(restores)" = 0 ] || why=" monitors left: $(ps -o pid,args | grep '[p]adcell restore' | head -c 300);"
kill -TERM $dpid 2>/dev/null
wait $dpid
drc=$?
[ "$drc" = 0 ] || why="$why the daemon exited $drc on SIGTERM: $(tail -c 300 $W/serve.log);"
grep -q 'envd\|error\|jail' $W/serve.log && echo "  [serve.log] $(grep 'envd\|error\|jail' $W/serve.log | head -n 5)"
result cleanup "$why" "no sandbox monitor left; the daemon ended 0 on SIGTERM"
[ "$fails" -eq 0 ]
