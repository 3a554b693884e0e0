#!/bin/sh
# Guest half of the nested virtio-blk benchmark (tests/bench/run.sh): installed as
# /etc/padcell-selftest in a BENCHMARK-ONLY copy of rootfs-min, run by init with padcell.selftest=1.
# Finds the disk whose serial is "bench" and runs /usr/bin/blkread (tests/bench/blkread.c) on it:
# blk.runs= times sequential 1 MiB reads of blk.mib= MiB, then blk.runs= times blk.count= random
# 4 KiB reads, all O_DIRECT.  One "BENCHG <blkread output>" line per run.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac; done; echo "$2"; }
dev=""
for s in /sys/block/vd*; do
	[ "$(cat "$s/serial" 2>/dev/null)" = bench ] && dev=/dev/${s##*/}
done
[ -n "$dev" ] || { echo "BENCHG error: no disk with serial 'bench'"; exit 1; }
mib=$(arg blk.mib 64) count=$(arg blk.count 2000) runs=$(arg blk.runs 3)
echo "BENCHG dev $dev $(($(cat "/sys/block/${dev#/dev/}/size") / 2048)) MiB"
i=0
while [ "$i" -lt "$runs" ]; do echo "BENCHG $(blkread seq "$dev" "$mib" 2>&1)"; i=$((i + 1)); done
i=0
while [ "$i" -lt "$runs" ]; do echo "BENCHG $(blkread rand "$dev" "$count" 2>&1)"; i=$((i + 1)); done
