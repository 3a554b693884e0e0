#!/bin/sh
# Payload of tests/nested/watch-test.sh (l1.sh's freeze detector, run with --freeze-bound BOUND):
# three phases, each longer than the bound, each announced by a STEP line the host reads:
#   watch-idle    L1 idles (sleep) with its heartbeat alive: must not be taken for a freeze;
#   watch-busy    the heartbeat stopped (SIGSTOP) while L1 is busy (a shell loop): QEMU keeps
#                 running, so L1 is slow, not frozen;
#   watch-frozen  the heartbeat back, L1 idle: the host stops L1's vCPU through QEMU's monitor,
#                 and l1.sh must kill it as frozen.  This step never ends on its own.
. /payload/config
hb=$(cat /run/l1-heartbeat.pid) || exit 1
phase=$((BOUND + 15))

echo "STEP watch-idle ${phase}s"
sleep "$phase"

echo "STEP watch-busy ${phase}s"
kill -STOP "$hb"
end=$(($(date +%s) + phase))
while [ "$(date +%s)" -lt "$end" ]; do :; done
kill -CONT "$hb"

echo "STEP watch-frozen"
while :; do sleep 3600; done
