#!/usr/bin/env bash
# `make bench`: padcell beside QEMU microvm, both measured in this run on the same inputs.
#   host  : this machine's /dev/kvm, the PVH benchmark guest (build/spin.elf): exec -> first serial
#           byte (median of 30 / 20 runs), and the VMM's resident memory beside the guest's.
#   nested: inside the emulated L1 host with real KVM, the project's kernel + initramfs:
#           launch -> init marker and launch -> VMM exit (median of 5 each), and resident memory
#           at the marker.
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
row() { rows+=("$(printf '%-46s %14s %14s %10s' "$@")"); }

echo "==== bench: host /dev/kvm"
if [ -c /dev/kvm ] && [ -w /dev/kvm ]; then
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

echo "==== bench: nested tier (QEMU TCG L1 host with real KVM; takes a few minutes)"
payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
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

echo
echo "==== padcell beside QEMU microvm (same run, same inputs; 'QEMU/padcell' > 1 means padcell is better)"
printf '%-46s %14s %14s %10s\n' "measure" "padcell" "QEMU" "QEMU/padcell"
for r in "${rows[@]}"; do echo "$r"; done
