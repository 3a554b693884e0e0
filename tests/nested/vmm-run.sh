#!/bin/sh
# Boot one L2 guest inside L1 (busybox sh): vmm-run.sh VMM KERNEL CPUS EXTRA_CMDLINE.
# The guest console goes to stdout; the exit code is the VMM's.
. /payload/config # MEM
vmm=$1 kernel=$2 cpus=$3 extra=$4
case "$vmm" in
padcell)
	exec /payload/padcell boot --kernel "$kernel" --initrd /payload/initramfs.cpio.gz \
		--cmdline "console=ttyS0 reboot=k panic=-1 quiet$extra" --cpus "$cpus" --mem "$MEM"
	;;
qemu)
	# Reference VMM. microvm has no i8042 (reboot=t: triple fault) and its ACPI tables do not
	# describe pvpanic, so a guest panic ends as a reboot that -no-reboot turns into exit 0.
	exec /payload/qemu/bin/qemu-system-x86_64 -L /payload/qemu/share/qemu \
		-M microvm,acpi=on -accel kvm -cpu host -m "$MEM" -smp "$cpus" \
		-nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-kernel "$kernel" -initrd /payload/initramfs.cpio.gz \
		-append "console=ttyS0 reboot=t panic=-1 quiet$extra"
	;;
*)
	echo "vmm-run.sh: unknown VMM '$vmm'" >&2
	exit 2
	;;
esac
