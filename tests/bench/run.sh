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
#   restore: this machine's /dev/kvm, the test guest (tg.case=count): exec of `padcell restore`
#           -> the guest's first byte, 128 MiB / 512 MiB / 2 GiB (median of 30), beside QEMU
#           microvm's `-incoming "exec:cat FILE"` of a migrate-to-file of the same guest (median
#           of 20); resident memory of 10 clones restored at once from one 512 MiB snapshot.
#   nested-net: inside L1, the same kernel and a copy of the Debian image (python3, iperf3): TCP
#           throughput guest -> L1 and L1 -> guest (iperf3, 3 x 5 s) and 100 sequential HTTP GETs
#           (busybox httpd in L1, timed by the guest), padcell --net vs QEMU -netdev user (the same
#           libslirp) vs QEMU tap + vhost-net, medians; each VMM's peak resident memory, net on.
#   nested-serve: inside L1, `padcell serve` with a template of the Debian image, the E2B JS SDK on
#           this host: Sandbox.create() -> first output from a warm pool and as a clone, 20 creates
#           at once, Pss per idle sandbox; beside `padcell run` cold in L1 and E2B's published start.
# BENCH_PARTS="host restore jail nested blk vsock snap net serve" (the default) picks the sections to run.
# PADCELL, GUEST, VMMPROBE override build/padcell, build/guest/testguest.elf, build/vmmprobe
# (the restore section's binaries; the host section always uses build/).
# Absolute numbers in the nested tier are ~50x slowed by emulation: compare the columns, not
# the numbers with anything measured elsewhere.
set -uo pipefail
cd "$(dirname "$0")/../.."

probe=${VMMPROBE:-build/vmmprobe} spin=build/spin.elf
# QEMU's default CPU model: `-cpu host` aborts on PVM hosts (an MSR KVM refuses there).
qemu=(qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config -display none
	-serial stdio -no-reboot)
field() { sed -E "s/.*$1=([0-9]+).*/\\1/" <<<"$2"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }

rows=()
parts=" ${BENCH_PARTS:-host restore jail nested blk vsock snap net serve} "
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

echo "==== bench: restore from a snapshot (host /dev/kvm, the test guest; padcell restore vs QEMU -incoming)"
# The test guest (tg.case=count, tg.spin=1) prints a COUNT line about every 0.5 ms, so its first
# stdout byte after exec marks it running again.  It fills 64 MiB first, so the memory file holds
# data.  padcell: boot with --api-sock, snapshot at COUNT 200, time `padcell restore --from DIR`
# (median of 30) and padcell's own --verbose "restore: X ms" (median of 30 more).  QEMU: the same guest
# on microvm, `migrate "exec:cat > FILE"` from its monitor at COUNT 200 (live: a VM stopped first
# stays paused on the other side), then `-incoming "exec:cat FILE"` (median of 20).  Clones: a
# 512 MiB VM fills 256 MiB and reads all of it back in a loop (tg.reread); it is snapshotted after
# one full pass; 10 restores of that snapshot run at once until each has read the whole fill
# again; their summed Pss (file pages shared by n processes count 1/n in each) and RSS are set
# beside the snapshotted VM's touched guest RAM.
rdir=$(mktemp -d)
trap 'rm -rf "$rdir"' EXIT
if ! want restore; then
	echo "SKIP: not in BENCH_PARTS"
elif ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "SKIP: restore part: /dev/kvm is missing or not writable"
elif ! [ -f "${GUEST:-build/guest/testguest.elf}" ]; then
	echo "SKIP: restore part: ${GUEST:-build/guest/testguest.elf} missing (make bench builds it)"
else
	tg=${GUEST:-build/guest/testguest.elf} pad=${PADCELL:-build/padcell}
	# wait_line FILE REGEX: up to 30 s for a line of FILE to match.
	wait_line() { for _ in $(seq 600); do grep -qaE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
	# pad_snapshot MIB CMDLINE MARKER DIR: boot, wait for MARKER, snapshot into DIR, stop the VM.
	# The snapshotted VM's resident split (vmmprobe memof) goes to DIR.mem.
	pad_snapshot() {
		local log=$rdir/boot.log bp ok=1
		rm -f "$rdir/api.sock"
		$pad boot --kernel $tg --mem "$1M" --api-sock "$rdir/api.sock" --cmdline "$2" </dev/null >"$log" 2>&1 &
		bp=$!
		if ! wait_line "$log" "$3"; then echo "padcell: the guest never printed '$3' (see below)"; tail -3 "$log"; ok=0
		else
			$probe memof "$bp" "$1" >"$4.mem" || ok=0
			$pad snapshot --api-sock "$rdir/api.sock" --to "$4" || ok=0
		fi
		kill "$bp" 2>/dev/null; wait "$bp" 2>/dev/null
		[ $ok = 1 ] && [ -s "$4/state" ]
	}
	# qemu_snapshot MIB CMDLINE MARKER FILE: the same with QEMU's migrate-to-file.
	qemu_snapshot() {
		local log=$rdir/qboot.log qp ok=1
		rm -f "$rdir/q.sock"
		"${qemu[@]}" -m "$1" -kernel $tg -append "$2" -monitor "unix:$rdir/q.sock,server=on,wait=off" \
			</dev/null >"$log" 2>"$log.err" &
		qp=$!
		if ! wait_line "$log" "$3"; then why="the guest never printed '$3' ($(head -c 200 "$log.err"))"; ok=0
		elif ! $probe hmp "$rdir/q.sock" "migrate \"exec:cat > $4\"" "info migrate" quit >"$rdir/hmp.out" 2>&1 ||
			! grep -q 'Migration status: completed' "$rdir/hmp.out"; then
			why="migrate to file failed: $(grep -a -m1 -iE 'error|fail|status' "$rdir/hmp.out" | tr -d '\r')"; ok=0
		fi
		kill "$qp" 2>/dev/null; wait "$qp" 2>/dev/null
		[ $ok = 1 ] && [ -s "$4" ]
	}
	# verbose_ms DIR: padcell's own "restore: X ms from start to vCPUs running", median of 30
	# restores run the same way as the exec timing (vmmprobe first, stderr kept).
	verbose_ms() {
		rm -f "$rdir/verbose.err"
		VMMPROBE_STDERR=$rdir/verbose.err $probe first 30 $pad restore --from "$1" --verbose >/dev/null || return
		sed -nE 's/.*restore: ([0-9.]+) ms from start to vCPUs running.*/\1/p' "$rdir/verbose.err" | sort -n |
			awk '{ v[NR] = $1 } END { if (NR) printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
	}
	command -v "${qemu[0]}" >/dev/null || echo "SKIP: QEMU restore: ${qemu[0]} is not installed"
	for mib in 128 512 2048; do
		cmd="tg.case=count tg.mem=${mib}M tg.count=100000000 tg.spin=1 tg.fill=64"
		pr="" pv="" qr="" why=""
		if pad_snapshot $mib "$cmd" '^COUNT 200' "$rdir/p$mib"; then
			pr=$($probe first 30 $pad restore --from "$rdir/p$mib") || pr=""
			pv=$(verbose_ms "$rdir/p$mib")
			echo "padcell restore $mib MiB: $pr (own figure: ${pv:-?} ms; memory file $(du -k "$rdir/p$mib/mem" | cut -f1) KiB on disk)"
		else
			echo "padcell restore $mib MiB: the snapshot failed"
		fi
		if ! command -v "${qemu[0]}" >/dev/null; then :
		elif qemu_snapshot $mib "$cmd" '^COUNT 200' "$rdir/q$mib"; then
			qr=$($probe first 20 "${qemu[@]}" -m $mib -kernel $tg -append "$cmd" -incoming "exec:cat $rdir/q$mib") || qr=""
			echo "qemu    restore $mib MiB: $qr (migration file $(du -k "$rdir/q$mib" | cut -f1) KiB)"
			[ -n "$qr" ] || echo "SKIP: QEMU restore $mib MiB: the restored guest printed nothing"
		else
			echo "SKIP: QEMU restore $mib MiB: $why"
		fi
		rm -rf "$rdir/p$mib" "$rdir/q$mib"
		if [ -n "$pr" ]; then
			qcol=SKIP
			[ -n "$qr" ] && qcol=$(ms "$(field median_us "$qr")")
			row "host: restore $mib MiB, exec -> running (ms)" "$(ms "$(field median_us "$pr")")" "$qcol" \
				"$([ -n "$qr" ] && ratio "$(field median_us "$qr")" "$(field median_us "$pr")")"
			[ -n "$pv" ] && row "  padcell's own: start -> vCPUs running (ms)" "$pv" "" ""
		fi
	done
	ccmd="tg.case=count tg.mem=512M tg.count=100000000 tg.spin=1 tg.fill=256 tg.reread=1024"
	if pad_snapshot 512 "$ccmd" 'count: fill checked' "$rdir/clone"; then
		one=$(field guest_rss_kib "$(cat "$rdir/clone.mem")")
		cl=$($probe clones 10 'count: fill checked' $pad restore --from "$rdir/clone") || cl=""
		echo "snapshotted VM: $(cat "$rdir/clone.mem"); 10 clones: ${cl:-failed}"
		if [ -n "$cl" ] && [ -n "$one" ]; then
			row "host: one 512 MiB VM, guest RAM touched (MiB)" "$(mib "$one")" "" ""
			row "host: 10 clones of it, sum of Pss (MiB)" "$(mib "$(field pss_kib "$cl")")" "" ""
			row "host: 10 clones of it, sum of RSS (MiB)" "$(mib "$(field rss_kib "$cl")")" "" ""
			row "host: 10 clones' Pss / one VM's touched RAM" \
				"$(awk -v a="$(field pss_kib "$cl")" -v b="$one" 'BEGIN { printf "%.2fx", a / b }')" "" ""
		fi
	else
		echo "clones: the 512 MiB snapshot failed"
	fi
	rm -rf "$rdir/clone"
fi

payload=$(mktemp -d) bpayload=$(mktemp -d) vpayload=$(mktemp -d)
trap 'rm -rf "$rdir" "$payload" "$bpayload" "$vpayload"' EXIT
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

echo "==== bench: nested networking (padcell --net vs QEMU -netdev user vs QEMU tap + vhost-net; iperf3, 100 HTTP GETs)"
# A BENCHMARK-ONLY copy of the Debian image with tests/bench/net-guest.sh as init's selftest hook
# (debugfs writes it into the copy; the shipped image is not modified).  In L1: iperf3 -s (staged
# from the host's Debian package) and busybox httpd on 198.51.100.1, an address on L1's loopback
# that every backend reaches: libslirp dials it from L1 (padcell's rule names it exactly, as its
# policy asks for a host address), the tap's traffic is routed to it.  Each VMM boots the same
# kernel and image with 512 MiB; the guest runs iperf3 -c (guest -> L1) and -c -R (L1 -> guest) and
# times 100 sequential GETs with python3's urllib, net.runs times; medians.  Each VMM's resident
# memory outside guest RAM is read after every measurement, the peak kept.  MTUs: padcell's own
# (16384, offered by VIRTIO_NET_F_MTU), QEMU's default 1500 on both of its backends.
if want net; then
	nruns=3 nsecs=5
	if [ -f build/images/rootfs-debian.ext4 ] && command -v iperf3 >/dev/null; then
		npayload=$(mktemp -d)
		cp --sparse=always build/images/rootfs-debian.ext4 "$npayload/root.img"
		printf 'cd /etc\nrm padcell-selftest\nwrite %s padcell-selftest\nset_inode_field padcell-selftest mode 0100755\n' \
			"$PWD/tests/bench/net-guest.sh" >"$npayload/debugfs.cmds"
		debugfs -w -f "$npayload/debugfs.cmds" "$npayload/root.img" >/dev/null 2>&1
		rm -f "$npayload/debugfs.cmds"
		if ! debugfs -R "cat /etc/padcell-selftest" "$npayload/root.img" 2>/dev/null | cmp -s - tests/bench/net-guest.sh ||
			! debugfs -R "cat /usr/bin/iperf3" "$npayload/root.img" 2>/dev/null | head -c 4 | grep -q ELF; then
			echo "nested net: the image copy lacks the guest script or /usr/bin/iperf3 (is iperf3 in images/rootfs/debian-packages and the image rebuilt?)"
		fi
		cp build/padcell-static "$npayload/padcell"
		cp $probe build/kernel/bzImage "$npayload/"
		tests/nested/stage-qemu.sh "$npayload/qemu" >/dev/null
		tests/nested/stage-bin.sh iperf3 "$npayload/iperf3" >/dev/null
		cat >"$npayload/run.sh" <<RUN
#!/bin/sh
cd /payload
H=198.51.100.1
ip link set lo up
ip addr add \$H/32 dev lo
mkdir -p /srv/nb
echo padcell-netbench >/srv/nb/small.txt
httpd -f -p \$H:8080 -h /srv/nb &
./iperf3/bin/iperf3 -s -B \$H -p 5201 >/tmp/iperf3-server.log 2>&1 &
args="console=ttyS0 reboot=k panic=-1 quiet padcell.selftest=1 nb.host=\$H nb.runs=$nruns nb.secs=$nsecs"
Q="./qemu/bin/qemu-system-x86_64 -L ./qemu/share/qemu -M microvm,acpi=on -accel kvm -cpu host -m 512M -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel bzImage -drive id=r,file=root.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=r"
# measure NAME CMD...: runs the VMM (up to 900 s); after each guest line it reads the VMM's resident
# memory outside guest RAM and keeps the peak; then prints the guest's BENCHG lines as BENCH net NAME.
measure() {
	name=\$1
	shift
	echo "STEP bench-net-\$name"
	"\$@" >/tmp/\$name.log 2>&1 </dev/null &
	pid=\$!
	peak=0 seen=0 n=0
	while kill -0 \$pid 2>/dev/null; do
		if [ \$n -ge 900 ]; then echo "BENCH net \$name timeout"; kill \$pid; break; fi
		c=\$(grep -ac BENCHG /tmp/\$name.log)
		if [ "\$c" != "\$seen" ]; then
			seen=\$c
			# a jailed padcell's monitor is the child of the pid started here (its supervisor), pid 1
			# of its own PID namespace (README "The jail"); QEMU has no such child
			mon=\$pid
			for k in \$(cat /proc/\$pid/task/\$pid/children 2>/dev/null); do
				grep -q '^NSpid:.*[[:space:]]1\$' /proc/\$k/status 2>/dev/null && mon=\$k
			done
			v=\$(./vmmprobe memof \$mon 512 2>/dev/null | sed -n 's/.*vmm_rss_kib=\([0-9]*\).*/\1/p')
			if [ -n "\$v" ] && [ "\$v" -gt "\$peak" ]; then
				peak=\$v
				# where the peak sits: the largest mappings by Rss (KiB), guest RAM first
				awk '/^[0-9a-f]+-[0-9a-f]+ /{ m = (NF >= 6) ? \$6 : "anon" } /^Rss:/{ if (\$2 > 0) print \$2 "K:" m }' \
					/proc/\$mon/smaps 2>/dev/null | sort -rn | head -n 5 | tr '\n' ' ' >/tmp/\$name.maps
			fi
		fi
		sleep 1
		n=\$((n + 1))
	done
	wait \$pid
	echo "BENCH net \$name exit \$? peak_vmm_rss_kib=\$peak"
	echo "BENCH net \$name at the peak, largest mappings: \$(cat /tmp/\$name.maps 2>/dev/null)"
	tr -d '\r' </tmp/\$name.log | sed -n "s/^.*BENCHG /BENCH net \$name /p"
}
measure padcell ./padcell boot --kernel bzImage --mem 512M --drive root.img,ro --allow \$H:5201 --allow \$H:8080 \\
	--cmdline "\$args nb.mtu=16384"
measure qemu-user \$Q -netdev user,id=n0 -device virtio-net-device,netdev=n0 -append "\$args nb.mtu=1500 root=/dev/vda ro"
if [ -c /dev/net/tun ] && [ -c /dev/vhost-net ] && tunctl -t tap0 >/dev/null; then
	ip addr add 10.0.2.2/24 dev tap0
	ip link set tap0 up
	measure qemu-tap \$Q -netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=on -device virtio-net-device,netdev=n0 \\
		-append "\$args nb.mtu=1500 root=/dev/vda ro"
else
	echo "BENCH net qemu-tap skipped: /dev/net/tun or /dev/vhost-net missing in L1 (modules tun, vhost_net)"
fi
RUN
		chmod +x "$npayload/run.sh"
		nlog=build/nested/bench-net.log
		mkdir -p build/nested
		tests/nested/l1.sh --payload "$npayload" --timeout 1800 --mem 2560 --log "$nlog" >build/nested/bench-net.out 2>&1
		netrc=$?
		rm -rf "$npayload"
		grep -ao 'BENCH net .*' "$nlog" | tr -d '\r' >build/nested/bench-net.lines || true
		cat build/nested/bench-net.lines
		# nmed VMM PATTERN FIELD: the median of FIELD over that VMM's lines matching PATTERN.
		nmed() { median_of build/nested/bench-net.lines "^BENCH net $1 $2" "$3"; }
		slower=()
		for d in tx rx; do
			[ $d = tx ] && what="guest->L1" || what="L1->guest"
			p=$(nmed padcell "iperf $d " mbits) q=$(nmed qemu-user "iperf $d " mbits) t=$(nmed qemu-tap "iperf $d " mbits)
			if [ -n "$p" ] && [ -n "$q" ]; then
				row "nested net: TCP $what, iperf3 (Mbit/s)" "$p" "$q" "$(ratio "$p" "$q")"
				awk -v a="$p" -v b="$q" 'BEGIN { exit !(a < b) }' && slower+=("TCP $what")
			else
				echo "nested net: iperf3 $what figures incomplete (l1.sh exit $netrc); see build/nested/bench-net.out and $nlog"
			fi
			[ -n "$p" ] && [ -n "$t" ] && row "  beside QEMU tap + vhost-net (Mbit/s)" "$p" "$t" "$(ratio "$p" "$t")"
		done
		p=$(nmed padcell "http " ms) q=$(nmed qemu-user "http " ms) t=$(nmed qemu-tap "http " ms)
		if [ -n "$p" ] && [ -n "$q" ]; then
			row "nested net: 100 sequential HTTP GETs (ms)" "$p" "$q" "$(ratio "$q" "$p")"
			awk -v a="$p" -v b="$q" 'BEGIN { exit !(a > b) }' && slower+=("HTTP GETs")
		else
			echo "nested net: HTTP figures incomplete (l1.sh exit $netrc); see build/nested/bench-net.out and $nlog"
		fi
		[ -n "$p" ] && [ -n "$t" ] && row "  beside QEMU tap + vhost-net (ms)" "$p" "$t" "$(ratio "$t" "$p")"
		pm=$(nmed padcell "exit " peak_vmm_rss_kib) qm=$(nmed qemu-user "exit " peak_vmm_rss_kib) tm=$(nmed qemu-tap "exit " peak_vmm_rss_kib)
		if [ -n "$pm" ] && [ "$pm" != 0 ] && [ -n "$qm" ] && [ "$qm" != 0 ]; then
			row "nested net: VMM resident, net on, peak (MiB)" "$(mib "$pm")" "$(mib "$qm")" "$(ratio "$qm" "$pm")"
			[ -n "$tm" ] && [ "$tm" != 0 ] && row "  beside QEMU tap + vhost-net (MiB)" "$(mib "$pm")" "$(mib "$tm")" "$(ratio "$tm" "$pm")"
			[ "$pm" -lt 3072 ] || slower+=("monitor RSS $(mib "$pm") MiB >= 3 MiB target")
		fi
		grep -q '^BENCH net [a-z-]* error' build/nested/bench-net.lines &&
			echo "nested net: the guest reported errors (BENCH net ... error lines above)"
		if [ ${#slower[@]} -gt 0 ]; then
			netnote="nested net: padcell misses the target (QEMU user-net) on: $(IFS=,; echo "${slower[*]}")"
			echo "$netnote"
		fi
	else
		echo "SKIP: build/images/rootfs-debian.ext4 or the host's iperf3 missing (make bench builds/installs them)"
	fi
else
	echo "SKIP: not in BENCH_PARTS"
fi

echo "==== bench: nested restore (padcell snapshot + restore vs QEMU migrate-to-file + -incoming; run --from vs cold run)"
# tests/bench/restore-l1.sh runs in L1: the same tick guest restored by each VMM, exec -> first
# byte (median of 5); then padcell run -- true from a snapshot and cold, 5 each.
if want snap; then
	if [ -x build/usock ] && [ -f build/images/rootfs-min.ext4 ]; then
		spayload=$(mktemp -d)
		cp build/padcell-static "$spayload/padcell"
		cp $probe build/usock build/kernel/bzImage build/images/initramfs.cpio.gz build/images/rootfs-min.ext4 "$spayload/"
		cp tests/bench/restore-l1.sh "$spayload/run.sh"
		tests/nested/stage-qemu.sh "$spayload/qemu" >/dev/null
		slog=build/nested/bench-restore.log
		mkdir -p build/nested
		tests/nested/l1.sh --payload "$spayload" --timeout 900 --log "$slog" >build/nested/bench-restore.out 2>&1
		src=$?
		rm -rf "$spayload"
		grep -ao 'BENCH \(restore\|runfrom\) .*' "$slog" | tr -d '\r' >build/nested/bench-restore.lines || true
		cat build/nested/bench-restore.lines
		pr=$(grep '^BENCH restore padcell median_us=' build/nested/bench-restore.lines | tail -n1)
		qr=$(grep '^BENCH restore qemu median_us=' build/nested/bench-restore.lines | tail -n1)
		if [ -n "$pr" ] && [ -n "$qr" ]; then
			row "nested: restore, exec -> guest running (ms)" "$(ms "$(field median_us "$pr")")" \
				"$(ms "$(field median_us "$qr")")" "$(ratio "$(field median_us "$qr")" "$(field median_us "$pr")")"
		else
			echo "nested restore: figures incomplete (l1.sh exit $src); see build/nested/bench-restore.out and $slog"
		fi
		rf=$(median_of build/nested/bench-restore.lines '^BENCH runfrom from total=' total)
		rc=$(median_of build/nested/bench-restore.lines '^BENCH runfrom cold total=' total)
		if [ -n "$rf" ] && [ -n "$rc" ]; then
			row "nested: run -- true from a snapshot (ms)" "$rf" "" ""
			row "nested: run -- true, cold boot (ms)" "$rc" "" "cold/--from $(ratio "$rc" "$rf")"
		fi
	else
		echo "SKIP: build/usock or build/images/rootfs-min.ext4 missing (make bench builds them)"
	fi
else
	echo "SKIP: not in BENCH_PARTS"
fi

echo "==== bench: nested sandbox service (padcell serve + the E2B JS SDK: create -> first output; 20 at once; Pss)"
# tests/bench/serve-bench.sh: L1 serves one template snapshot of the Debian image twice, with and
# without a warm pool of 5; the SDK on this host times Sandbox.create() -> `echo`'s output (5 each,
# one at a time), then 20 creates at once, whose idle monitors' Pss L1 reads; the cold-boot row is
# `padcell run -- echo` of the same image in L1.  The peer is E2B's published figure (its own
# hardware, no emulation): an anchor, not a same-run measurement (E2B cannot run here).
srows=()
if ! want serve; then
	echo "SKIP: not in BENCH_PARTS"
elif ! [ -f build/images/rootfs-debian.ext4 ] || ! command -v node >/dev/null; then
	echo "SKIP: build/images/rootfs-debian.ext4 or node missing (make bench builds / installs them)"
elif ! tests/bench/serve-bench.sh; then
	echo "nested serve: the bench could not run (the line above says why)"
else
	sl=build/nested/bench-serve.lines
	cat "$sl"
	srow() { srows+=("$(printf '%-46s %14s %14s' "$@")"); }
	v=$(median_of "$sl" '^BENCH serve pool ' total_ms); [ -n "$v" ] && srow "create -> output, warm pool (ms, median 5)" "$v" "~150 (start)"
	v=$(median_of "$sl" '^BENCH serve clone ' total_ms); [ -n "$v" ] && srow "create -> output, clone restore (ms, median 5)" "$v" ""
	v=$(median_of "$sl" '^BENCH serve cold ' total_ms); [ -n "$v" ] && srow "run -- echo, cold boot (ms, median 5, in L1)" "$v" ""
	c=$(grep '^BENCH serve concurrent20 ' "$sl" | tail -n1)
	if [ -n "$c" ]; then
		srow "20 creates at once: all outputs in (ms)" "$(field wall_ms "$c")" ""
		v=$(median_of "$sl" '^BENCH serve concurrent1 ' total_ms); [ -n "$v" ] && srow "  each: create -> output, median (ms)" "$v" ""
		srow "  of them succeeded" "$(field ok "$c")/20" ""
	fi
	c=$(grep '^BENCH serve inl1-concurrent20 ' "$sl" | tail -n1)
	[ -n "$c" ] && srow "20 creates at once from inside L1 (wget; ms)" "$(field wall_ms "$c")" "" &&
		srow "  of them succeeded" "$(field ok "$c")/20" ""
	p=$(grep '^BENCH serve pss ' "$sl" | tail -n1)
	[ -n "$p" ] && srow "Pss per idle sandbox, $(field sandboxes "$p") alive (MiB)" "$(mib "$(field per_kib "$p")")" ""
	[ -n "$p" ] && srow "  the daemon itself, Pss (MiB)" "$(mib "$(field daemon_kib "$p")")" ""
	grep -q '^BENCH serve error' "$sl" && echo "nested serve: figures incomplete (the BENCH serve error lines above)"
fi

echo "==== bench: the jail (host /dev/kvm): exec -> first byte and restore, jail on vs --no-jail"
# The same padcell, the same inputs, with and without --no-jail, median of 30 each: the jail's
# cost on the start-up path (seccomp filters built and loaded, Landlock, namespaces, privileges).
# "QEMU" columns hold the --no-jail figure here; the last column is jail/no-jail.
jrows=()
if ! want jail; then
	echo "SKIP: not in BENCH_PARTS"
elif ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ] || ! [ -f "${GUEST:-build/guest/testguest.elf}" ]; then
	echo "SKIP: jail part: /dev/kvm or the test guest missing"
else
	tg=${GUEST:-build/guest/testguest.elf} pad=${PADCELL:-build/padcell} jdir=$(mktemp -d)
	jon=$($probe first 30 $pad boot --kernel $spin --mem 128M) || jon=""
	joff=$($probe first 30 $pad boot --kernel $spin --mem 128M --no-jail) || joff=""
	rm -f "$jdir/api.sock"
	$pad boot --kernel $tg --mem 128M --api-sock "$jdir/api.sock" --cmdline "tg.case=count tg.spin=1 tg.count=1000000" \
		</dev/null >"$jdir/boot.log" 2>&1 &
	jp=$!
	for _ in $(seq 600); do grep -qa '^COUNT 200' "$jdir/boot.log" 2>/dev/null && break; sleep 0.05; done
	$pad snapshot --api-sock "$jdir/api.sock" --to "$jdir/snap" >/dev/null 2>&1
	kill "$jp" 2>/dev/null; wait "$jp" 2>/dev/null
	ron="" roff=""
	if [ -s "$jdir/snap/state" ]; then
		ron=$($probe first 30 $pad restore --from "$jdir/snap") || ron=""
		roff=$($probe first 30 $pad restore --from "$jdir/snap" --no-jail) || roff=""
	fi
	rm -rf "$jdir"
	echo "jail on  first byte: $jon"; echo "--no-jail first byte: $joff"
	echo "jail on  restore:    $ron"; echo "--no-jail restore:    $roff"
	jrow() { jrows+=("$(printf '%-46s %14s %14s %10s' "$1" "$(ms "$(field median_us "$2")")" "$(ms "$(field median_us "$3")")" \
		"$(awk -v a="$(field median_us "$2")" -v b="$(field median_us "$3")" 'BEGIN { printf "+%.2f ms", (a - b) / 1000 }')")"); }
	[ -n "$jon" ] && [ -n "$joff" ] && jrow "host: exec -> first byte, jail on / off (ms)" "$jon" "$joff"
	[ -n "$ron" ] && [ -n "$roff" ] && jrow "host: restore 128 MiB -> first byte, on / off" "$ron" "$roff"
fi

echo
echo "==== padcell beside QEMU microvm (same run, same inputs; 'QEMU/padcell' > 1 means padcell is better)"
printf '%-46s %14s %14s %10s\n' "measure" "padcell" "QEMU" "QEMU/padcell"
for r in "${rows[@]}"; do echo "$r"; done
if [ ${#jrows[@]} -gt 0 ]; then
	printf '%-46s %14s %14s %10s\n' "the jail (same padcell)" "jail on" "--no-jail" "jail costs"
	for r in "${jrows[@]}"; do echo "$r"; done
fi
if [ ${#srows[@]} -gt 0 ]; then
	printf '%-46s %14s %14s\n' "the sandbox service (nested, E2B JS SDK)" "padcell serve" "E2B states"
	for r in "${srows[@]}"; do echo "$r"; done
	echo "(E2B's figure is its own published sandbox start on its hardware, an anchor only; padcell's run in the"
	echo " emulated L1, ~50x slowed: the warm-pool row against the clone and cold rows is the comparison this run makes)"
fi
if want net; then
	echo "(nested net rows: the QEMU column is -netdev user, the same libslirp; '  beside' rows put QEMU tap + vhost-net"
	echo " there. Throughput rows' last column is padcell/QEMU, the rest QEMU/padcell: > 1 is padcell better everywhere)"
	[ -n "${netnote:-}" ] && echo "$netnote"
fi
if want blk || want vsock; then echo "(nested blk and vsock rows are throughput: their last column is padcell/QEMU, so > 1 still means padcell is better)"; fi
if want restore; then
	echo "(restore rows: exec of the restoring VMM -> the restored guest's first serial byte; padcell's own figure is its"
	echo " --verbose 'start -> vCPUs running'; QEMU restores a migrate-to-file with -incoming \"exec:cat FILE\". Clone rows:"
	echo " 10 restores of one 512 MiB snapshot, each having read the guest's 256 MiB fill again, summed; Pss counts a"
	echo " page shared by n clones 1/n in each, RSS counts it in full in each; targets: restore < 5 ms, Pss/touched < 2x)"
fi
