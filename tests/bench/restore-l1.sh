#!/bin/sh
# L1 half of the nested restore benchmark (tests/bench/run.sh, BENCH_PARTS snap), run as
# /payload/run.sh by busybox sh inside the emulated L1 host:
#   1. restore latency of the same VM (the test initramfs with padcell.test=tick, which prints
#      PADCELL-TICK lines without end): padcell snapshot + `padcell restore` vs QEMU's
#      `migrate "exec:cat > FILE"` + `-incoming "exec:cat FILE"`; exec -> first byte on stdout
#      (the restored guest printing again), vmmprobe first, median of 5 each;
#   2. `padcell run -- true` from a snapshot (--from) beside a cold run, 5 each, --verbose totals.
cd /payload || exit 1
TICK="console=ttyS0 reboot=k panic=-1 quiet padcell.test=tick"
R="--kernel bzImage --rootfs rootfs-min.ext4 --mem 256M"
Q="./qemu/bin/qemu-system-x86_64 -L ./qemu/share/qemu -M microvm,acpi=on -accel kvm -cpu host -m 256M -nodefaults
   -no-user-config -display none -serial stdio -no-reboot -kernel bzImage -initrd initramfs.cpio.gz"
wait_for() { # wait_for FILE TEXT: up to 60 s
	i=0
	while [ $i -lt 600 ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; i=$((i + 1)); done
	return 1
}

echo "STEP bench-restore-padcell"
./padcell boot --kernel bzImage --initrd initramfs.cpio.gz --mem 256M --api-sock /tmp/p.api --cmdline "$TICK" \
	>/tmp/pb.log 2>&1 </dev/null &
pb=$!
wait_for /tmp/pb.log PADCELL-TICK || echo "BENCH restore padcell error: the guest never ticked"
./padcell snapshot --api-sock /tmp/p.api --to /tmp/psnap >/tmp/ps.log 2>&1 || echo "BENCH restore padcell error: $(cat /tmp/ps.log)"
kill $pb
wait $pb
rm -f /tmp/pb.log
echo "BENCH restore padcell $(./vmmprobe first 5 ./padcell restore --from /tmp/psnap 2>&1 | tail -n1)"
echo "BENCH restore padcell-files mem_kib=$(du -k /tmp/psnap/mem | cut -f1) state_bytes=$(wc -c </tmp/psnap/state)"

echo "STEP bench-restore-qemu"
$Q -monitor unix:/tmp/qm.sock,server=on,wait=off -append "$TICK" >/tmp/qb.log 2>&1 </dev/null &
qb=$!
wait_for /tmp/qb.log PADCELL-TICK || echo "BENCH restore qemu error: the guest never ticked"
./usock /tmp/qm.sock 'migrate "exec:cat > /tmp/q.mig"' >/dev/null
i=0
while [ $i -lt 300 ]; do
	./usock /tmp/qm.sock "info migrate" | grep -q "Migration status: completed" && break
	sleep 0.2
	i=$((i + 1))
done
[ $i -lt 300 ] || echo "BENCH restore qemu error: migration did not complete"
kill $qb
wait $qb
rm -f /tmp/qb.log
echo "BENCH restore qemu $(./vmmprobe first 5 $Q -append "$TICK" -incoming "exec:cat /tmp/q.mig" 2>&1 | tail -n1)"
echo "BENCH restore qemu-files mig_kib=$(du -k /tmp/q.mig | cut -f1)"
rm -rf /tmp/psnap /tmp/q.mig

echo "STEP bench-run-from"
./padcell run $R --snapshot-when-ready /tmp/rsnap -- true >/dev/null 2>&1 </dev/null || echo "BENCH runfrom error: snapshot run failed"
i=0
while [ $i -lt 5 ]; do
	for kind in from cold; do
		if [ $kind = from ]; then set -- --from /tmp/rsnap; else set -- $R; fi
		t=$(timeout 120 ./padcell run --verbose "$@" -- true 2>&1 </dev/null | sed -n 's/^padcell: teardown .*total \([0-9.]*\) ms.*/\1/p')
		echo "BENCH runfrom $kind total=$t"
	done
	i=$((i + 1))
done
