#!/usr/bin/env bash
# Check build/kernel + build/images without padcell or KVM: boot them in QEMU microvm under TCG.
# Cases: bzImage with 2 vCPUs (marker, uname, cpus: 2, power-off ends QEMU), the panic self-test,
# and vmlinux through its PVH note. Usage: images/qemu-smoke.sh [--timeout SEC]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
timeout_s=60
[ "${1:-}" = --timeout ] && timeout_s=${2:?--timeout SEC}
kernel=$repo/build/kernel initrd=$repo/build/images/initramfs.cpio.gz
for f in "$kernel/bzImage" "$kernel/vmlinux" "$initrd"; do
	[ -f "$f" ] || { echo "qemu-smoke.sh: $f missing (run: make kernel initramfs)" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-smoke.sh: qemu-system-x86_64 missing (scripts/deps.sh nested)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fails=0

# smoke NAME KERNEL CPUS EXTRA_CMDLINE PATTERN...: every PATTERN (grep -E) must be in the console output.
smoke() {
	local name=$1 k=$2 cpus=$3 extra=$4 rc start secs p missing="" try
	shift 4
	# Seen on this host: about 1 run in 5 under TCG prints nothing at all and hangs (before the
	# first console byte, so before the guest kernel runs its console). Such a run is retried once
	# and reported as an emulator hang; any output at all means the guest got control and counts.
	for try in 1 2; do
		start=$(date +%s.%N)
		set +e
		timeout -k 5 "$timeout_s" qemu-system-x86_64 -M microvm,acpi=on -accel tcg -cpu max -m 256 -smp "$cpus" \
			-nodefaults -no-user-config -display none -serial stdio -no-reboot \
			-kernel "$k" -initrd "$initrd" -append "console=ttyS0 reboot=t panic=-1 quiet$extra" \
			</dev/null >"$out" 2>&1
		rc=$?
		set -e
		if [ "$rc" = 124 ] && ! grep -qv '^qemu-system-x86_64: terminating on signal' "$out"; then
			echo "note: $name: no output at all in ${timeout_s}s (TCG emulator hang), retry $try"
			continue
		fi
		break
	done
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
	for p in "$@"; do grep -qE "$p" "$out" || missing="$missing '$p'"; done
	if [ "$rc" = 0 ] && [ -z "$missing" ]; then
		echo "PASS $name (${secs}s)"
	else
		echo "FAIL $name (qemu exit $rc, ${secs}s; missing:${missing:- none})"
		sed 's/^/  | /' "$out" | tail -n 25
		fails=$((fails + 1))
	fi
}

smoke bzImage-2cpu "$kernel/bzImage" 2 "" '^PADCELL-INIT-OK' '^Linux .* x86_64' '^cpus: 2'
smoke panic "$kernel/bzImage" 1 " padcell.test=panic" '^PADCELL-PANIC-NOW' 'Kernel panic'
smoke vmlinux-pvh "$kernel/vmlinux" 1 "" '^PADCELL-INIT-OK' '^cpus: 1'
[ "$fails" = 0 ]
