#!/bin/sh
# /init of the nested tier's L1 host (busybox sh as PID 1, inside QEMU TCG with SVM+NPT):
# load KVM, check /dev/kvm, run /payload/run.sh, report its exit code, power off.
# Markers (one per line, parsed by tests/nested/l1.sh): L1-INIT, L1-MODULES-OK, L1-KVM-OK,
# L1-PAYLOAD-START, L1-PAYLOAD-EXIT <rc>; L1-FAIL <why> on failure.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# cgroup v2, as a systemd host has it: padcell makes each VM's leaf under the root (issue 12 item 5).
mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "L1-WARN no cgroup2 at /sys/fs/cgroup"
echo "L1-INIT $(uname -r)"

# Heartbeat for l1.sh's freeze detector (/bin/l1-beat, tests/nested/l1-beat.c): a byte every 5 s
# on QEMU's isa-debugcon, never on this console.  A frozen L1 (no interrupt delivered, the vCPU
# halted for good) stops it; a slow or busy L1 only delays it.  It prints one "L1-WARN no heartbeat"
# line if it cannot start.  Its pid is in /run/l1-heartbeat.pid (tests/nested/watch-run.sh stops
# it on purpose).
l1-beat </dev/null &
echo $! >/run/l1-heartbeat.pid

l1_fail() {
	echo "L1-FAIL $*"
	poweroff -f
	exit 1
}

# load-order: "<module> required|optional", dependencies first (written by l1.sh from modinfo).
while read -r mod need; do
	if ! err=$(insmod "/lib/modules/$mod.ko" 2>&1); then
		[ "$need" = required ] && l1_fail "insmod $mod: $err"
		echo "L1-WARN insmod $mod (optional): $err"
	fi
done </lib/modules/load-order
echo L1-MODULES-OK
[ -c /dev/kvm ] || l1_fail "no /dev/kvm after loading kvm-amd (does the L1 CPU have svm?)"
echo "L1-KVM-OK npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null || echo ?)"

echo L1-PAYLOAD-START
cd /payload && sh /payload/run.sh
echo "L1-PAYLOAD-EXIT $?"
poweroff -f
