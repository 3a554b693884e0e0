#!/bin/sh
# Guest half of the nested vsock benchmark (tests/bench/run.sh): installed as /etc/padcell-selftest
# in a BENCHMARK-ONLY copy of rootfs-min, run by init with padcell.selftest=1.  Sends vsock.mib= MiB
# to the host (CID 2) port vsock.port=, vsock.runs= times, one connection each, with
# /usr/bin/vsockbench (tests/bench/vsockbench.c); the host's sink times each stream.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac; done; echo "$2"; }
mib=$(arg vsock.mib 256) runs=$(arg vsock.runs 5) port=$(arg vsock.port 5001)
i=0
while [ "$i" -lt "$runs" ]; do
	vsockbench send 2 "$port" "$mib" || echo "BENCHG send failed (run $i)"
	i=$((i + 1))
done
echo "BENCHG sent $runs x $mib MiB"
