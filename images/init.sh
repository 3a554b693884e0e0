#!/bin/sh
# /init of padcell's test initramfs (busybox sh as PID 1): report, then power off.
# padcell.test=panic on the kernel command line makes it panic the kernel instead;
# padcell.test=tick keeps printing PADCELL-TICK lines forever (the restore benchmark's guest: after
# a restore, its first output byte says it runs again).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null # may already be mounted by CONFIG_DEVTMPFS_MOUNT
echo PADCELL-INIT-OK
uname -a
echo "cpus: $(grep -c '^processor' /proc/cpuinfo)"
case " $(cat /proc/cmdline) " in
*" padcell.test=tick "*)
	while :; do echo PADCELL-TICK; done
	;;
*" padcell.test=panic "*)
	echo PADCELL-PANIC-NOW
	echo c >/proc/sysrq-trigger
	# Not reached; if sysrq is missing, PID 1 exiting panics the kernel too.
	exit 1
	;;
esac
poweroff -f
# poweroff -f does not return; if it did, exiting PID 1 panics, which is louder than a hang.
echo "PADCELL-INIT-ERROR: poweroff returned"
exit 1
