#!/usr/bin/env bash
# `make bench`: padcell beside QEMU microvm, both measured in this run on the same inputs.
#   host  : this machine's /dev/kvm, the PVH benchmark guest (build/spin.elf): exec -> first serial
#           byte (median of 30 / 20 runs), and the VMM's resident memory beside the guest's.
#   nested: inside the emulated L1 host with real KVM, the project's kernel + initramfs:
#           launch -> init marker and launch -> VMM exit (median of 5 each), and resident memory
#           at the marker.
#   nested-blk: inside L1, the stripped kernel booted from a copy of rootfs-min with a 64 MiB
#           read-only second drive: sequential 1 MiB and random 4 KiB O_DIRECT reads in the guest
#           (tests/bench/blkread.c), padcell --drive vs QEMU virtio-blk-device, median of 5 each.
#   nested-vsock: inside L1, the same kernel and a copy of rootfs-min: guest -> host stream
#           throughput (tests/bench/vsockbench.c, 5 x 64 MiB), padcell --vsock (Unix socket on
#           the host) vs QEMU vhost-vsock-device (AF_VSOCK on the host), median; and
#           `padcell run -- true` end to end with its split (VM running, agent ready, command,
#           teardown), median of 5.
# BENCH_PARTS="host nested blk vsock" (the default) picks the sections to run.
# Absolute numbers in the nested tier are ~50x slowed by emulation: compare the columns, not
# the numbers with anything measured elsewhere.
set -uo pipefail
cd "$(dirname "$0")/../.."

probe=build/vmmprobe spin=build/spin.elf
# QEMU's default CPU model: `-cpu host` aborts on PVM hosts (an MSR KVM refuses there).
qemu=(qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config -display none
	-serial stdio -no-reboot)
field() { sed -E "s/.*$1=([0-9]+).*/\\1/" <<<"$2"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }

rows=()
parts=" ${BENCH_PARTS:-host nested blk vsock} "
want() { [[ "$parts" == *" $1 "* ]]; }
row() { rows+=("$(printf '%-46s %14s %14s %10s' "$@")"); }

echo "==== bench: host /dev/kvm"
if ! want host; then
	echo "SKIP: not in BENCH_PARTS"
elif [ -c /dev/kvm ] && [ -w /dev/kvm ]; then
	kind=$(grep -qwE 'vmx|svm' /proc/cpuinfo && echo hardware || { [ -e /sys/module/kvm_pvm ] && echo PVM || echo unknown; })
	pf=$($probe first 30 build/padcell boot --kernel $spin --mem 128M) || pf=""
	qf=$($probe first 20 "${qemu[@]}" -m 128 -kernel $spin) || qf=""
	pm=$($probe mem 128 "" build/padcell boot --kernel $spin --mem 128M) || pm=""
	qm=$($probe mem 128 "" "${qemu[@]}" -m 128 -kernel $spin) || qm=""
	echo "padcell first byte: $pf"; echo "qemu    first byte: $qf"
	echo "padcell memory:     $pm"; echo "qemu    memory:     $qm"
	if [ -n "$pf" ] && [ -n "$qf" ]; then
		row "host ($kind KVM): exec -> first byte (ms)" "$(ms "$(field median_us "$pf")")" \
			"$(ms "$(field median_us "$qf")")" "$(ratio "$(field median_us "$qf")" "$(field median_us "$pf")")"
	fi
	if [ -n "$pm" ] && [ -n "$qm" ]; then
		row "host: VMM resident, excl. guest RAM (MiB)" "$(mib "$(field vmm_rss_kib "$pm")")" \
			"$(mib "$(field vmm_rss_kib "$qm")")" "$(ratio "$(field vmm_rss_kib "$qm")" "$(field vmm_rss_kib "$pm")")"
		row "host: guest RAM touched (MiB)" "$(mib "$(field guest_rss_kib "$pm")")" "$(mib "$(field guest_rss_kib "$qm")")" ""
	fi
else
	echo "SKIP: host part: /dev/kvm is missing or not writable"
fi

payload=$(mktemp -d) bpayload=$(mktemp -d) vpayload=$(mktemp -d)
trap 'rm -rf "$payload" "$bpayload" "$vpayload"' EXIT
# median FILE PATTERN FIELD: the median of FIELD=value over the lines of FILE matching PATTERN.
median_of() {
	grep -E "$2" "$1" | sed -nE "s/.* $3=([0-9.]+).*/\\1/p" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "==== bench: nested tier (QEMU TCG L1 host with real KVM; takes a few minutes)"
if want nested; then
cp build/padcell-static "$payload/padcell"
cp $probe build/kernel/bzImage build/images/initramfs.cpio.gz "$payload/"
tests/nested/stage-qemu.sh "$payload/qemu" >/dev/null
cat >"$payload/run.sh" <<'RUN'
#!/bin/sh
cd /payload
cmd="console=ttyS0 reboot=k panic=-1 quiet"
P="./padcell boot --kernel bzImage --initrd initramfs.cpio.gz --mem 256M --cmdline"
Q="./qemu/bin/qemu-system-x86_64 -L ./qemu/share/qemu -M microvm,acpi=on -accel kvm -cpu host -m 256M -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel bzImage -initrd initramfs.cpio.gz -append"
for round in 1 2; do
	for vmm in padcell qemu; do
		if [ $vmm = padcell ]; then set -- $P "$cmd"; else set -- $Q "console=ttyS0 reboot=t panic=-1 quiet"; fi
		[ $round = 1 ] && { echo "BENCH boot $vmm $(./vmmprobe marker 5 PADCELL-INIT-OK "$@" 2>&1)"; continue; }
		echo "BENCH mem $vmm $(./vmmprobe mem 256 PADCELL-INIT-OK "$@" 2>&1)"
	done
done
RUN
chmod +x "$payload/run.sh"
nlog=build/nested/bench.log
mkdir -p build/nested
tests/nested/l1.sh --payload "$payload" --timeout 900 --log "$nlog" >build/nested/bench.out 2>&1
nrc=$?
# The payload's lines are in L1's serial log; keep what follows "BENCH".
grep -ao 'BENCH .*' "$nlog" | tr -d '\r' >build/nested/bench.lines || true
cat build/nested/bench.lines
get() { grep "^BENCH $1 $2 " build/nested/bench.lines | tail -n1; }
pb=$(get boot padcell) qb=$(get boot qemu) pmm=$(get mem padcell) qmm=$(get mem qemu)
if [[ "$pb" == *marker_us=* && "$qb" == *marker_us=* ]]; then
	row "nested: launch -> init marker (ms)" "$(ms "$(field marker_us "$pb")")" "$(ms "$(field marker_us "$qb")")" \
		"$(ratio "$(field marker_us "$qb")" "$(field marker_us "$pb")")"
	row "nested: launch -> VMM exit after poweroff (ms)" "$(ms "$(field exit_us "$pb")")" "$(ms "$(field exit_us "$qb")")" \
		"$(ratio "$(field exit_us "$qb")" "$(field exit_us "$pb")")"
else
	echo "nested boot timing incomplete (l1.sh exit $nrc); see build/nested/bench.out and $nlog"
fi
if [[ "$pmm" == *vmm_rss_kib=* && "$qmm" == *vmm_rss_kib=* ]]; then
	row "nested: VMM resident at init, excl. guest (MiB)" "$(mib "$(field vmm_rss_kib "$pmm")")" \
		"$(mib "$(field vmm_rss_kib "$qmm")")" "$(ratio "$(field vmm_rss_kib "$qmm")" "$(field vmm_rss_kib "$pmm")")"
	row "nested: guest RAM touched at init (MiB)" "$(mib "$(field guest_rss_kib "$pmm")")" "$(mib "$(field guest_rss_kib "$qmm")")" ""
fi

fi # want nested

echo "==== bench: nested virtio-blk (padcell --drive vs QEMU virtio-blk-device, same kernel, image, guest)"
# A BENCHMARK-ONLY copy of rootfs-min: its tree unpacked with debugfs, tests/bench/blk-guest.sh as
# init's selftest hook, blkread added.  The shipped image is not modified.
if want blk; then
	bmib=64 bcount=2000 bruns=5
	if [ -f build/images/rootfs-min.ext4 ] && [ -x build/blkread ]; then
		tree=$bpayload/tree
		mkdir -p "$tree"
		debugfs -R "rdump / $tree" build/images/rootfs-min.ext4 >/dev/null 2>&1
		mkdir -p "$tree/dev" "$tree/usr/bin"
		[ -e "$tree/dev/console" ] || mknod -m 0600 "$tree/dev/console" c 5 1
		[ -e "$tree/dev/null" ] || mknod -m 0666 "$tree/dev/null" c 1 3
		install -m 0755 tests/bench/blk-guest.sh "$tree/etc/padcell-selftest"
		install -m 0755 build/blkread "$tree/usr/bin/blkread"
		mkfs.ext4 -q -F -t ext4 -b 4096 -m 0 -O ^has_journal -d "$tree" "$bpayload/root.img" 16M >/dev/null
		rm -rf "$tree"
		cp build/padcell-static "$bpayload/padcell"
		cp build/kernel/bzImage "$bpayload/"
		tests/nested/stage-qemu.sh "$bpayload/qemu" >/dev/null
		cat >"$bpayload/run.sh" <<RUN
#!/bin/sh
cd /payload
# The benchmark disk: $bmib MiB, written (not sparse) in L1's RAM.
dd if=/dev/zero of=/tmp/bench.img bs=1M count=$bmib 2>/dev/null
args="padcell.selftest=1 blk.mib=$bmib blk.count=$bcount blk.runs=$bruns"
for vmm in padcell qemu; do
	echo "STEP bench-blk-\$vmm"
	if [ \$vmm = padcell ]; then
		timeout 300 ./padcell boot --kernel bzImage --mem 256M --drive root.img,ro --drive /tmp/bench.img,ro,id=bench \\
			--cmdline "console=ttyS0 reboot=k panic=-1 quiet \$args" >/tmp/\$vmm.log 2>&1 </dev/null
	else
		timeout 300 ./qemu/bin/qemu-system-x86_64 -L ./qemu/share/qemu -M microvm,acpi=on -accel kvm -cpu host \\
			-m 256M -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel bzImage \\
			-drive id=r,file=root.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=r \\
			-drive id=b,file=/tmp/bench.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=b,serial=bench \\
			-append "console=ttyS0 reboot=t panic=-1 quiet root=/dev/vda ro \$args" >/tmp/\$vmm.log 2>&1 </dev/null
	fi
	echo "BENCH blk \$vmm exit \$?"
	tr -d '\r' </tmp/\$vmm.log | sed -n "s/^BENCHG /BENCH blk \$vmm /p"
done
RUN
		chmod +x "$bpayload/run.sh"
		blog=build/nested/bench-blk.log
		mkdir -p build/nested
		tests/nested/l1.sh --payload "$bpayload" --timeout 900 --log "$blog" >build/nested/bench-blk.out 2>&1
		brc=$?
		grep -ao 'BENCH blk .*' "$blog" | tr -d '\r' >build/nested/bench-blk.lines || true
		cat build/nested/bench-blk.lines
		# median VMM KIND FIELD: the median of FIELD over that VMM's runs of KIND (seq or rand).
		median() {
			grep "^BENCH blk $1 $2 " build/nested/bench-blk.lines | sed -E "s/.* $3=([0-9.]+).*/\\1/" | sort -n |
				awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
		}
		ps=$(median padcell seq mibs) qs=$(median qemu seq mibs) pr=$(median padcell rand iops) qr=$(median qemu rand iops)
		if [ -n "$ps" ] && [ -n "$qs" ]; then
			row "nested blk: seq 1 MiB O_DIRECT read (MiB/s)" "$ps" "$qs" "$(ratio "$ps" "$qs")"
		else
			echo "nested blk: sequential figures incomplete (l1.sh exit $brc); see build/nested/bench-blk.out and $blog"
		fi
		if [ -n "$pr" ] && [ -n "$qr" ]; then
			row "nested blk: 4 KiB random O_DIRECT read (IOPS)" "$pr" "$qr" "$(ratio "$pr" "$qr")"
		else
			echo "nested blk: random-read figures incomplete (l1.sh exit $brc); see build/nested/bench-blk.out and $blog"
		fi
	else
		echo "SKIP: build/images/rootfs-min.ext4 or build/blkread missing (make bench builds them)"
	fi
else
	echo "SKIP: not in BENCH_PARTS"
fi

echo "==== bench: nested vsock and run (padcell --vsock vs QEMU vhost-vsock-device; padcell run -- true)"
# A BENCHMARK-ONLY copy of rootfs-min (which has the agent): tests/bench/vsock-guest.sh as init's
# selftest hook and vsockbench added.  The shipped image is not modified.
if want vsock; then
	vmib=64 vruns=5
	if [ -f build/images/rootfs-min.ext4 ] && [ -x build/vsockbench ]; then
		tree=$vpayload/tree
		mkdir -p "$tree"
		debugfs -R "rdump / $tree" build/images/rootfs-min.ext4 >/dev/null 2>&1
		mkdir -p "$tree/dev" "$tree/usr/bin"
		[ -e "$tree/dev/console" ] || mknod -m 0600 "$tree/dev/console" c 5 1
		[ -e "$tree/dev/null" ] || mknod -m 0666 "$tree/dev/null" c 1 3
		install -m 0755 tests/bench/vsock-guest.sh "$tree/etc/padcell-selftest"
		install -m 0755 build/vsockbench "$tree/usr/bin/vsockbench"
		mkfs.ext4 -q -F -t ext4 -b 4096 -m 0 -O ^has_journal -d "$tree" "$vpayload/root.img" 24M >/dev/null
		rm -rf "$tree"
		cp build/padcell-static "$vpayload/padcell"
		cp build/vsockbench build/kernel/bzImage build/images/rootfs-min.ext4 "$vpayload/"
		tests/nested/stage-qemu.sh "$vpayload/qemu" >/dev/null
		cat >"$vpayload/run.sh" <<RUN
#!/bin/sh
cd /payload
args="console=ttyS0 reboot=k panic=-1 quiet padcell.selftest=1 vsock.mib=$vmib vsock.runs=$vruns vsock.port=5001"
for vmm in padcell qemu; do
	echo "STEP bench-vsock-\$vmm"
	if [ \$vmm = padcell ]; then
		./vsockbench sink-unix /tmp/v.sock_5001 $vruns >/tmp/sink-\$vmm.txt 2>&1 &
		sink=\$!
		timeout 300 ./padcell boot --kernel bzImage --mem 256M --drive root.img,ro --vsock /tmp/v.sock \\
			--cmdline "\$args" >/tmp/\$vmm.log 2>&1 </dev/null
	else
		./vsockbench sink-vsock 5001 $vruns >/tmp/sink-\$vmm.txt 2>&1 &
		sink=\$!
		timeout 300 ./qemu/bin/qemu-system-x86_64 -L ./qemu/share/qemu -M microvm,acpi=on -accel kvm -cpu host \\
			-m 256M -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel bzImage \\
			-drive id=r,file=root.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=r \\
			-device vhost-vsock-device,guest-cid=3 \\
			-append "\$args root=/dev/vda ro" >/tmp/\$vmm.log 2>&1 </dev/null
	fi
	echo "BENCH vsock \$vmm exit \$?"
	kill \$sink 2>/dev/null; wait \$sink 2>/dev/null
	sed "s/^/BENCH vsock \$vmm /" /tmp/sink-\$vmm.txt
	tr -d '\r' </tmp/\$vmm.log | grep -a BENCHG | sed "s/^/BENCH vsock \$vmm guest /"
done
i=0
while [ \$i -lt 5 ]; do
	echo "STEP bench-run-\$i"
	timeout 120 ./padcell run --verbose --kernel bzImage --rootfs rootfs-min.ext4 --mem 256M -- true >/tmp/run.log 2>&1 </dev/null
	rc=\$?
	tr -d '\r' </tmp/run.log | grep -a '^padcell: \(agent ready\|command\|teardown\)' | tr '\n' ' ' | sed "s/^/BENCH run exit=\$rc /"
	echo
	i=\$((i + 1))
done
RUN
		chmod +x "$vpayload/run.sh"
		vlog=build/nested/bench-vsock.log
		mkdir -p build/nested
		tests/nested/l1.sh --payload "$vpayload" --timeout 900 --log "$vlog" >build/nested/bench-vsock.out 2>&1
		vrc=$?
		grep -ao 'BENCH \(vsock\|run\) .*' "$vlog" | tr -d '\r' >build/nested/bench-vsock.lines || true
		cat build/nested/bench-vsock.lines
		pv=$(median_of build/nested/bench-vsock.lines '^BENCH vsock padcell bytes=' mibs)
		qv=$(median_of build/nested/bench-vsock.lines '^BENCH vsock qemu bytes=' mibs)
		if [ -n "$pv" ] && [ -n "$qv" ]; then
			row "nested vsock: guest->host stream (MiB/s)" "$pv" "$qv" "$(ratio "$pv" "$qv")"
		else
			echo "nested vsock: throughput figures incomplete (l1.sh exit $vrc); see build/nested/bench-vsock.out and $vlog"
		fi
		# padcell: agent ready 123.4 ms after start (VM running at 5.6 ms; ...) command 7.8 ms teardown 9.0 ms, total 140.2 ms
		sed -nE 's/^BENCH run exit=0 .*agent ready ([0-9.]+) ms after start \(VM running at ([0-9.]+) ms.*command ([0-9.]+) ms.*teardown ([0-9.]+) ms, total ([0-9.]+) ms.*/vm=\2 ready=\1 cmd=\3 down=\4 total=\5 x/p' \
			build/nested/bench-vsock.lines | sed 's/^/R /' >build/nested/bench-run.lines
		rt=$(median_of build/nested/bench-run.lines '^R ' total)
		if [ -n "$rt" ]; then
			row "nested: padcell run -- true, total (ms)" "$rt" "" ""
			row "  VM created and running (ms)" "$(median_of build/nested/bench-run.lines '^R ' vm)" "" ""
			row "  agent ready, from start (ms)" "$(median_of build/nested/bench-run.lines '^R ' ready)" "" ""
			row "  command (ms)" "$(median_of build/nested/bench-run.lines '^R ' cmd)" "" ""
			row "  teardown (ms)" "$(median_of build/nested/bench-run.lines '^R ' down)" "" ""
		else
			echo "nested run: no successful padcell run -- true (l1.sh exit $vrc); see $vlog"
		fi
	else
		echo "SKIP: build/images/rootfs-min.ext4 or build/vsockbench missing (make bench builds them)"
	fi
else
	echo "SKIP: not in BENCH_PARTS"
fi

echo
echo "==== padcell beside QEMU microvm (same run, same inputs; 'QEMU/padcell' > 1 means padcell is better)"
printf '%-46s %14s %14s %10s\n' "measure" "padcell" "QEMU" "QEMU/padcell"
for r in "${rows[@]}"; do echo "$r"; done
if want blk || want vsock; then echo "(nested blk and vsock rows are throughput: their last column is padcell/QEMU, so > 1 still means padcell is better)"; fi
