#!/bin/sh
# Inside L1 as /payload/run.sh (`make bench`'s serve section, tests/bench/run.sh): `padcell serve`
# for the host's E2B SDK bench client (tests/e2b/bench.mjs), through L1's forwarded port 3000.
# First, in L1 itself, the cold-boot row: `padcell run -- echo` of the same image, 5 times.  Then
# a template snapshot served twice: "pooled" with a warm pool of 5, "plain" without one.  The host
# says "__PSS__" on /dev/ttyS1 while its 20 concurrent sandboxes idle (the Pss of every monitor is
# read then) and "__EOF__" at the end.  Lines: BENCH serve ..., STEP serve-bench-...
cd /payload || exit 1
. ./case-lib.sh
W=/run/sb
S=/run/ps
mkdir -p $W
say() { echo "BENCH serve $*"; }

net_up || say "error L1 network: $net_why"

# the cold boot: a fresh VM of the image, its command's output, the VM gone (ms from the exec)
for i in 1 2 3 4 5; do
	t=$(now)
	out=$(timeout 300 ./padcell run --kernel bzImage --rootfs rootfs-debian.ext4 --mem 256M --no-stdin -- echo cold$i 2>$W/cold.err)
	if [ "$out" = "cold$i" ]; then
		say "cold total_ms=$(awk -v s="$(since "$t")" 'BEGIN { printf "%.0f", s * 1000 }')"
	else
		say "error cold $i: output '$out': $(head -c 200 $W/cold.err)"
	fi
done

timeout 300 ./padcell run --kernel bzImage --rootfs rootfs-debian.ext4 --mem 256M --snapshot-when-ready /run/tpl \
	--no-stdin -- true >$W/tpl.out 2>&1 || say "error template: $(head -c 300 $W/tpl.out)"
./dyn/bin/padcell-dyn serve --padcell "$PWD/padcell" --template pooled=/run/tpl --template plain=/run/tpl \
	--pool pooled=5 --max-sandboxes 32 --max-mem 16G --state-dir $S --listen 10.0.2.15:3000 --verbose \
	>$W/serve.log 2>&1 </dev/null &
dpid=$!
# listening, and the pool full (bounded: a pool that never fills is said, the bench goes on)
t=$(now)
until grep -q 'pool pooled: 5 of 5 ready' $W/serve.log; do
	if ! kill -0 $dpid 2>/dev/null || [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s >= 600) }')" = 1 ]; then
		say "error the daemon or its pool did not come up: $(tail -c 300 $W/serve.log)"
		break
	fi
	sleep 0.5
done
# 20 creates at once from inside L1 (busybox wget, no command run): the daemon's concurrency
# without QEMU's port forward in the way.  Each sandbox's timeout (5 s) ends it afterwards.
KEY=$(cat $S/api-key 2>/dev/null)
t=$(now) wpids=""
for i in $(seq 20); do
	wget -q -O $W/in$i.out --header "X-API-Key: $KEY" --header 'Content-Type: application/json' \
		--post-data '{"templateID":"plain","timeout":5}' http://10.0.2.15:3000/sandboxes 2>$W/in$i.err &
	wpids="$wpids $!"
done
wait $wpids # (not a bare wait: the daemon is a child too)
inl1=$(awk -v s="$(since "$t")" 'BEGIN { printf "%.0f", s * 1000 }')
ok=$(grep -l '"sandboxID"' $W/in*.out 2>/dev/null | wc -l)
say "inl1-concurrent20 ok=$ok wall_ms=$inl1"
[ "$ok" = 20 ] || say "error in-L1 creates: $(cat $W/in*.err $W/in*.out 2>/dev/null | sort | uniq -c | head -c 300)"
t=$(now)
# (the pool's 5 clones have records too: wait for the 20 to end, bounded)
while [ "$(ls $S/sandboxes 2>/dev/null | wc -l)" -gt 5 ] && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 120) }')" = 1 ]; do sleep 1; done
stty -F /dev/ttyS1 raw -echo 115200 || say "error no /dev/ttyS1"
echo "STEP serve-bench-listening key=${KEY:-none}"

# Pss (KiB) of each sandbox monitor, and of the daemon; a page shared by n processes counts 1/n
pss() { awk '/^Pss:/ { print $2 }' /proc/$1/smaps_rollup 2>/dev/null; }
while IFS= read -r line; do
	case "$line" in
	__PSS__)
		# every process of a sandbox (its vsock path names it), summed, per sandbox
		sum=0
		: >$W/ids
		for d in /proc/[0-9]*; do
			args=$(tr '\0' ' ' <$d/cmdline 2>/dev/null)
			case "$args" in *"padcell restore "*) ;; *) continue ;; esac
			k=$(pss ${d#/proc/})
			[ -n "$k" ] || continue
			sum=$((sum + k))
			echo "$args" | grep -o 'run/[0-9a-f]*/vsock' >>$W/ids
		done
		n=$(sort -u $W/ids | wc -l)
		say "pss sandboxes=$n sum_kib=$sum per_kib=$([ "$n" -gt 0 ] && echo $((sum / n)) || echo 0) daemon_kib=$(pss $dpid)"
		echo "STEP serve-bench-pss-done" ;;
	__EOF__) break ;;
	esac
done </dev/ttyS1
kill -TERM $dpid 2>/dev/null
wait $dpid
# what the daemon said of anything that went wrong (its log stays in L1)
grep -iE 'error|fail|refus|limit' $W/serve.log | head -n 10 | sed 's/^/SERVE-LOG /'
echo "STEP serve-bench-end"
