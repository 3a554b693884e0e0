#!/usr/bin/env bash
# Nested tier (design-notes §2): boot an emulated L1 host (QEMU TCG, AMD SVM + NPT) whose /dev/kvm
# comes from Debian's cloud kernel, and run a payload in it.
# Usage: tests/nested/l1.sh --payload DIR [--timeout SEC] [--log FILE] [--mem MIB] [--serial2 SOCK]
#                           [--hostfwd HOSTPORT:L1PORT] [--freeze-bound SEC] [--monitor-pipe PATH]
#                           [--verbose]
#   DIR is copied to /payload in L1 and DIR/run.sh is run there by busybox sh.
#   --serial2 SOCK: L1's second serial port (/dev/ttyS1) is the Unix socket SOCK on the host (QEMU
#   listens; a host program connects): a byte stream between a host program and the payload.  (Any
#   -serial turns off -nographic's default one, so ttyS0 is named again as -nographic makes it.)
#   --hostfwd HOSTPORT:L1PORT: L1 gets a virtio-net NIC on QEMU's user network, restricted (no
#   way out of it), with the host's 127.0.0.1:HOSTPORT forwarded to L1's 10.0.2.15:L1PORT; the
#   payload loads the NIC's driver and configures eth0 itself (the L1 stage has no network modules).
#   --freeze-bound SEC (default 150, 0 = off): the freeze detector.  L1's /init beats on QEMU's
#   isa-debugcon every 5 s (a file here, not the serial console); when no beat came for SEC seconds
#   AND QEMU's threads neither ran nor waited for a CPU for more than 2 % of that window, L1 is frozen
#   (an emulated host that lost an interrupt: its vCPU halted for good, QEMU at 0 % CPU): QEMU is
#   killed, one line says so with the step, the serial log is kept, and l1.sh exits 124 like a
#   timeout.  A slow or busy L1 keeps beating, and a starved QEMU waits for a CPU: neither is frozen.
#   --monitor-pipe PATH: QEMU's human monitor on the FIFOs PATH.in and PATH.out (made by the
#   caller); only tests/nested/watch-test.sh uses it, to stop L1's vCPU on purpose.
# Exit: the payload's exit code; 124 = timeout or a frozen L1 (an emulator hang or a hung payload:
#   see the step printed), 125 = L1 failed (no /dev/kvm, module load, L1 crash) or harness error,
#   64 = bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PADCELL_CACHE:-/var/cache/padcell}/l1
gen=${GEN_INIT_CPIO:-$repo/build/kernel/gen_init_cpio}
busybox=/bin/busybox
# KVM is required; the rest is staged for later issues (vsock, networking) and loaded if present.
required_mods="irqbypass kvm kvm-amd"
optional_mods="vhost vsock vmw_vsock_virtio_transport_common vhost_vsock tun veth bridge loop vhost_net"

payload="" timeout_s=600 log="$repo/build/nested/l1-serial.log" mem=2048 verbose=0 serial2=() nic=(-nic none)
freeze_bound=150 monitor=()

die() { echo "l1.sh: $*" >&2; exit 125; }
usage() {
	echo "usage: tests/nested/l1.sh --payload DIR [--timeout SEC] [--log FILE] [--mem MIB] [--serial2 SOCK]" \
		"[--hostfwd HOSTPORT:L1PORT] [--freeze-bound SEC] [--monitor-pipe PATH] [--verbose]" >&2
	exit 64
}
while [ $# -gt 0 ]; do
	case "$1" in
	--payload) [ $# -ge 2 ] || usage; payload=$2; shift 2 ;;
	--timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
	--log) [ $# -ge 2 ] || usage; log=$2; shift 2 ;;
	--mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
	--serial2) [ $# -ge 2 ] || usage; serial2=(-serial mon:stdio -chardev "socket,id=serial2,path=$2,server=on,wait=off" -serial chardev:serial2); shift 2 ;;
	--hostfwd)
		[ $# -ge 2 ] || usage
		[[ $2 =~ ^[0-9]+:[0-9]+$ ]] || usage
		nic=(-nic "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:${2%%:*}-10.0.2.15:${2##*:}")
		shift 2 ;;
	--freeze-bound) [ $# -ge 2 ] || usage; freeze_bound=$2; shift 2 ;;
	--monitor-pipe) [ $# -ge 2 ] || usage; monitor=(-monitor "pipe:$2"); shift 2 ;;
	--verbose | -v) verbose=1; shift ;;
	-h | --help) usage ;;
	*) echo "l1.sh: unknown argument '$1'" >&2; usage ;;
	esac
done
[ -n "$payload" ] || usage
[ -f "$payload/run.sh" ] || die "$payload/run.sh not found"
case "$timeout_s" in '' | *[!0-9]*) usage ;; esac
case "$freeze_bound" in '' | *[!0-9]*) usage ;; esac
# The heartbeat comes every 5 s: a bound under three beats could take a late one for a freeze.
[ "$freeze_bound" = 0 ] || [ "$freeze_bound" -ge 15 ] || { echo "l1.sh: --freeze-bound is 0 (off) or at least 15 s" >&2; usage; }
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (run: scripts/deps.sh nested)"
command -v modinfo >/dev/null || die "modinfo missing (run: scripts/deps.sh nested)"
[ -x "$busybox" ] || die "$busybox missing (run: scripts/deps.sh nested)"
[ -x "$gen" ] || die "$gen missing (run: make kernel)"
# L1's heartbeat writer (tests/nested/l1-beat.c), static, built here when missing or older than its
# source (a temporary name, then renamed: tiers starting at once never see half a file).
beat_bin=$repo/build/nested/l1-beat
if [ ! -x "$beat_bin" ] || [ "$here/l1-beat.c" -nt "$beat_bin" ]; then
	mkdir -p "$(dirname "$beat_bin")"
	cc -std=gnu11 -O2 -Wall -Wextra -Werror -static -s -o "$beat_bin.$$" "$here/l1-beat.c" ||
		{ rm -f "$beat_bin.$$"; die "cannot build $beat_bin (a C compiler and static libc: scripts/deps.sh build)"; }
	mv -f "$beat_bin.$$" "$beat_bin"
fi

mkdir -p "$cache"
tmp=$(mktemp -d)
watch_pid=""
trap '[ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# --- 1. L1 kernel + modules, staged once per Debian package -------------------------------------
# The concrete package behind the linux-image-cloud-amd64 metapackage.
resolve_pkg() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
pkg=$(resolve_pkg || true)
if [ -z "$pkg" ]; then
	# No package lists: reuse a staged kernel if there is one, else fetch the lists.
	pkg=$( { ls -t "$cache"/*/.complete 2>/dev/null || true; } | head -n1 | xargs -r dirname | xargs -r basename)
	if [ -z "$pkg" ]; then
		echo "l1.sh: apt-get update (no package lists)" >&2
		DEBIAN_FRONTEND=noninteractive apt-get -q update </dev/null >/dev/null || die "apt-get update failed"
		pkg=$(resolve_pkg || true)
		[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 to a kernel package"
	fi
fi
stage=$cache/$pkg

# Module files use '-' or '_' interchangeably with module names; find either spelling.
find_mod() {
	local pat
	pat=$(printf '%s' "$1" | sed 's/[-_]/[-_]/g')
	find "$2/lib/modules" \( -name "$pat.ko" -o -name "$pat.ko.xz" -o -name "$pat.ko.zst" \) | head -n1
}
# Depth-first: dependencies (modinfo -F depends) are written to load-order before the module.
add_mod() { # name required|optional root
	local name=$1 need=$2 root=$3 file dep base
	file=$(find_mod "$name" "$root")
	if [ -z "$file" ]; then
		[ "$need" = required ] && die "module $name not found in $pkg"
		echo "l1.sh: note: optional module $name not in $pkg" >&2
		return 1
	fi
	base=$(basename "$file"); base=${base%.xz}; base=${base%.zst}; base=${base%.ko}
	grep -q "^$base " "$tmp/stage/load-order" 2>/dev/null && return 0
	for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
		add_mod "$dep" "$need" "$root" || return 1
	done
	# busybox insmod takes plain .ko files only.
	case "$file" in
	*.xz) xz -dc "$file" >"$tmp/stage/modules/$base.ko" ;;
	*.zst) zstd -qdc "$file" >"$tmp/stage/modules/$base.ko" ;;
	*) cp "$file" "$tmp/stage/modules/$base.ko" ;;
	esac
	echo "$base $need" >>"$tmp/stage/load-order"
}

# Staged again when the module lists change (a stage made for fewer modules lacks the new ones).
if [ ! -f "$stage/.complete" ] || [ "$(cat "$stage/.modules" 2>/dev/null)" != "$required_mods / $optional_mods" ]; then
	echo "l1.sh: staging L1 kernel $pkg into $stage"
	mkdir -p "$tmp/deb" "$tmp/root" "$tmp/stage/modules"
	(cd "$tmp/deb" && apt-get -q -o APT::Sandbox::User=root download "$pkg" </dev/null >/dev/null) ||
		die "apt-get download $pkg failed"
	dpkg-deb -x "$tmp/deb"/*.deb "$tmp/root"
	cp "$tmp/root"/boot/vmlinuz-* "$tmp/stage/vmlinuz"
	: >"$tmp/stage/load-order"
	for m in $required_mods; do add_mod "$m" required "$tmp/root"; done
	for m in $optional_mods; do add_mod "$m" optional "$tmp/root" || true; done
	rm -rf "$stage"
	mv "$tmp/stage" "$stage"
	echo "$required_mods / $optional_mods" >"$stage/.modules"
	touch "$stage/.complete"
	rm -rf "$tmp/deb" "$tmp/root"
fi

# --- 2. L1 initramfs: busybox + modules + init + payload, archived by gen_init_cpio (no root) --
{
	for d in /dev /proc /sys /tmp /run /root /bin /sbin /usr /usr/bin /usr/sbin /lib /lib/modules; do
		echo "dir $d 0755 0 0"
	done
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "file /bin/busybox $busybox 0755 0 0"
	"$busybox" --list-full | while read -r applet; do
		[ "$applet" = bin/busybox ] || echo "slink /$applet /bin/busybox 0777 0 0"
	done
	echo "file /init $here/l1-init.sh 0755 0 0"
	echo "file /bin/l1-beat $beat_bin 0755 0 0"
	echo "file /lib/modules/load-order $stage/load-order 0644 0 0"
	for ko in "$stage"/modules/*.ko; do
		echo "file /lib/modules/$(basename "$ko") $ko 0644 0 0"
	done
	echo "dir /payload 0755 0 0"
	(cd "$payload" && find . -mindepth 1 | sort) | while IFS= read -r rel; do
		rel=${rel#./}
		case "$rel" in *[[:space:]]*) die "payload path with whitespace: $rel" ;; esac
		src="$payload/$rel"
		mode=$(stat -c %a "$src")
		if [ -L "$src" ]; then
			echo "slink /payload/$rel $(readlink "$src") 0777 0 0"
		elif [ -d "$src" ]; then
			echo "dir /payload/$rel $mode 0 0"
		elif [ -f "$src" ]; then
			echo "file /payload/$rel $(cd "$(dirname "$src")" && pwd)/$(basename "$src") $mode 0 0"
		fi
	done
} >"$tmp/list"
# Uncompressed: L1 runs under TCG, where unpacking plain cpio is much cheaper than inflating it.
"$gen" "$tmp/list" >"$tmp/l1.cpio"

# --- 3. The freeze detector (--freeze-bound) --------------------------------------------------
# One line per QEMU thread: its tid and the ns it ran plus waited for a CPU (schedstat); where the
# host has no schedstat, the whole process's utime+stime as one line (no wait time then).
qemu_sample() {
	local t r w
	if [ -r "/proc/$1/schedstat" ]; then
		for t in /proc/"$1"/task/*; do
			read -r r w _ 2>/dev/null <"$t/schedstat" && echo "${t##*/} $((r + w))"
		done
		return 0 # (a thread that ended between the glob and its read is left out)
	else
		awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "0 %d\n", ($12 + $13) * 1e9 / hz }' "/proc/$1/stat"
	fi
}
# ms of QEMU time between two samples, thread by thread (a thread that ended counts nothing, a new
# one all it has), so threads coming and going never make the sum go back.
qemu_busy_ms() {
	awk 'NR == FNR { old[$1] = $2; next } { d += $2 - ($1 in old ? old[$1] : 0) } END { printf "%d\n", d / 1e6 }' "$1" "$2"
}
# Runs beside QEMU: every 5 s, has the beat file grown?  When it has not for freeze_bound seconds
# (counted from QEMU's start before the first beat), and QEMU was busy (ran or waited to run) for
# under 2 % of that window, L1 is frozen: writes "<seconds without a beat> <QEMU busy ms>" to
# $tmp/frozen and kills QEMU.  Otherwise L1 is only slow and the window starts again.
watch_l1() {
	set +e # (a failed probe never ends the detector; every result is checked here)
	local pid="" beat last=-1 t0 busy i
	for ((i = 0; i < 100; i++)); do
		pid=$(cat "$tmp/qemu.pid" 2>/dev/null) && [ -n "$pid" ] && break
		sleep 0.2
	done
	[ -n "$pid" ] || return 0
	t0=$SECONDS
	qemu_sample "$pid" >"$tmp/cpu0"
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		beat=$(stat -c %s "$tmp/beat" 2>/dev/null || echo 0)
		if [ "$beat" = 0 ] && grep -aq 'L1-WARN no heartbeat' "$log"; then
			return 0 # no heartbeat in this L1 (said on its serial log): no detector
		fi
		if [ "$beat" != "$last" ]; then
			last=$beat t0=$SECONDS
			qemu_sample "$pid" >"$tmp/cpu0"
			continue
		fi
		[ $((SECONDS - t0)) -ge "$freeze_bound" ] || continue
		qemu_sample "$pid" >"$tmp/cpu1"
		busy=$(qemu_busy_ms "$tmp/cpu0" "$tmp/cpu1")
		if [ "$busy" -lt $(((SECONDS - t0) * 20)) ]; then
			echo "$((SECONDS - t0)) $busy" >"$tmp/frozen"
			kill -TERM "$pid" 2>/dev/null
			for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
			kill -KILL "$pid" 2>/dev/null
			return 0
		fi
		t0=$SECONDS
		mv "$tmp/cpu1" "$tmp/cpu0"
	done
}

# --- 4. Boot L1 ---------------------------------------------------------------------------------
# Two TCG L1s at once would halve each one's speed and make timeouts fire: serialize them.
exec 9>"$cache/.l1-run.lock"
flock -w "$timeout_s" 9 || die "another L1 run held $cache/.l1-run.lock for ${timeout_s}s"

mkdir -p "$(dirname "$log")"
: >"$log"
echo "l1.sh: booting L1 ($pkg, $(($(stat -c %s "$tmp/l1.cpio") / 1024)) KiB initramfs, timeout ${timeout_s}s," \
	"freeze bound $([ "$freeze_bound" = 0 ] && echo off || echo "${freeze_bound}s"), serial log $log)"
start=$EPOCHREALTIME
if [ "$freeze_bound" != 0 ]; then
	watch_l1 &
	watch_pid=$!
fi
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 -M q35 -accel tcg -cpu EPYC,+svm,+npt -m "$mem" -smp 1 \
	-nographic -no-reboot "${nic[@]}" "${serial2[@]}" "${monitor[@]}" -pidfile "$tmp/qemu.pid" \
	-debugcon "file:$tmp/beat" -kernel "$stage/vmlinuz" -initrd "$tmp/l1.cpio" \
	-append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1 |
	while IFS= read -r line; do
		line=${line%$'\r'}
		printf '%s\n' "$line" >>"$log"
		if [ "$verbose" = 1 ]; then
			printf '%s\n' "$line"
		else
			case "$line" in
			*L1-[A-Z]* | RESULT\ * | STEP\ *)
				printf '[%6.1fs] %s\n' "$(echo "$EPOCHREALTIME - $start" | bc)" "$line" ;;
			esac
		fi
	done
rc=${PIPESTATUS[0]}
set -e
if [ -n "$watch_pid" ]; then
	kill "$watch_pid" 2>/dev/null || true
	wait "$watch_pid" 2>/dev/null || true
	watch_pid=""
fi
elapsed=$(printf '%.1f' "$(echo "$EPOCHREALTIME - $start" | bc)")

last_marker() { grep -aoE '(L1-[A-Z-]+|RESULT|STEP)( .*)?$' "$log" | tail -n1; }
show_tail() {
	echo "---- last 40 lines of the L1 serial log ($log) ----" >&2
	tail -n 40 "$log" >&2
	echo "----" >&2
}

# The step L1 was in when it stopped, from its last marker (sets marker and step).
stuck_step() {
	marker=$(last_marker || true)
	case "$marker" in
	"") step="the L1 kernel boot (no marker: QEMU TCG or the L1 kernel hung before /init)" ;;
	L1-INIT*) step="loading the KVM modules in L1" ;;
	L1-MODULES-OK*) step="the /dev/kvm check" ;;
	L1-KVM-OK*) step="starting the payload" ;;
	L1-PAYLOAD-EXIT*) step="the L1 power-off after the payload finished" ;;
	*) step="the payload, after its last marker" ;;
	esac
}

if [ -f "$tmp/frozen" ]; then
	read -r still busy <"$tmp/frozen"
	stuck_step
	echo "l1.sh: FROZEN L1 after ${elapsed}s: no heartbeat for ${still}s and QEMU busy only ${busy} ms of it" \
		"(an emulated host that lost an interrupt), QEMU killed, in $step; last marker: '${marker:-none}'" >&2
	show_tail
	exit 124
fi
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	stuck_step
	echo "l1.sh: TIMEOUT after ${timeout_s}s in $step; last marker: '${marker:-none}'" >&2
	echo "l1.sh: a hang before L1-KVM-OK, or with no progress inside the emulator, is most likely" \
		"an emulator (TCG) hang; rerun before blaming padcell (design-notes §2)" >&2
	show_tail
	exit 124
fi

exit_line=$(grep -aoE 'L1-PAYLOAD-EXIT [0-9]+' "$log" | tail -n1 || true)
if [ -n "$exit_line" ]; then
	prc=${exit_line##* }
	echo "l1.sh: L1 run ${elapsed}s, payload exit $prc"
	exit "$prc"
fi
fail=$(grep -aoE 'L1-FAIL .*' "$log" | tail -n1 || true)
echo "l1.sh: L1 failed after ${elapsed}s (qemu exit $rc): ${fail:-no L1-PAYLOAD-EXIT marker (L1 crashed?)}" >&2
show_tail
exit 125
