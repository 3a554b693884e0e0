#!/bin/sh
# The steps of `make demo` (scripts/demo.sh), run where padcell can boot a real Linux guest: on the
# host when its KVM is hardware, or in the nested tier's L1 (busybox sh) otherwise.  POSIX sh.
# Usage: [DEMO_MARKERS=1] demo-steps.sh PADCELL SNAPSHOT_DIR STEP_TIMEOUT_S
#   PADCELL finds its default kernel and Debian image in share/padcell beside it (`make images`).
# Every step prints what it runs, the command's output, and its wall time; a step that does not end
# within STEP_TIMEOUT_S is killed and named.  Exit 0 when every step did what it should, else 1.
padcell=$1 snap=$2 limit=$3
[ -n "$limit" ] || { echo "usage: demo-steps.sh PADCELL SNAPSHOT_DIR STEP_TIMEOUT_S" >&2; exit 2; }
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT

# Seconds, as finely as this system tells: date's %N (GNU) or /proc/uptime (busybox, 10 ms).
now() {
	t=$(date +%s.%N 2>/dev/null)
	case "$t" in *N* | "") cut -d' ' -f1 /proc/uptime ;; *) echo "$t" ;; esac
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { d = b - a; printf(d < 10 ? "%.2f" : "%.1f", d) }'; }

n=0 total=4 t_all=$(now)
# step TITLE -- COMMAND...: runs COMMAND bounded by the step timeout, its output indented;
# sets rc and secs, and leaves the output in $out/$n.
step() {
	n=$((n + 1))
	title=$1
	shift 2
	# In L1 a marker names the step if the whole nested run times out (tests/nested/l1.sh).
	[ -z "${DEMO_MARKERS:-}" ] || echo "STEP demo-$n"
	echo "demo: [$n/$total] $title"
	t=$(now)
	{ timeout -s TERM "$limit" "$@" </dev/null 2>&1; echo $? >"$out/rc"; } | tee "$out/$n" |
		while IFS= read -r l; do echo "demo:       $l"; done
	rc=$(cat "$out/rc") secs=$(elapsed "$t")
	if awk -v s="$secs" -v m="$limit" 'BEGIN { exit !(s >= m) }'; then
		echo "demo: [$n/$total] HUNG: this step did not end within ${limit} s and was killed"
		exit 1
	fi
}
ok() { echo "demo: [$n/$total] ${secs} s  $1"; }
fail() { echo "demo: [$n/$total] FAILED after ${secs} s (exit $rc): $1"; exit 1; }

py_vm='import os, platform; u = os.uname(); print("Python", platform.python_version(), "on", u.sysname, u.release, u.machine, "in VM", repr(u.nodename) + ",", os.cpu_count(), "vCPU,", os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20, "MiB"); print("sum(i*i for i in range(10**5)) =", sum(i * i for i in range(10**5)))'
step "padcell run -- python3 -c '...platform, uname, a sum...'   (a cold boot of the default Debian image)" -- \
	"$padcell" run -- python3 -c "$py_vm"
[ "$rc" = 0 ] && grep -q '^Python 3' "$out/$n" || fail "no Python in the VM"
ok "for a fresh VM: boot, python3, power-off, all of it gone"

rm -rf "$snap"
step "padcell run --snapshot-when-ready $snap   (boot, snapshot once the agent is ready)" -- \
	"$padcell" run --snapshot-when-ready "$snap"
[ "$rc" = 0 ] && [ -f "$snap/state" ] && [ -f "$snap/mem" ] || fail "no snapshot in $snap"
ok "to boot and snapshot: $snap holds $(du -sk "$snap" | cut -f1) KiB on disk (memory written sparsely)"

py_clone='import os, uuid; seen = os.path.exists("/tmp/clone-was-here"); open("/tmp/clone-was-here", "w").close(); print("clone: uuid4", uuid.uuid4(), "| /tmp/clone-was-here there before me:", seen)'
for c in 1 2; do
	step "padcell run --from $snap -- python3 -c '...a uuid4, a file in /tmp...'   (clone $c)" -- \
		"$padcell" run --from "$snap" -- python3 -c "$py_clone"
	[ "$rc" = 0 ] && grep -q '^clone: uuid4 .* there before me: False' "$out/$n" || fail "clone $c did not run or saw another clone's file"
	ok "for clone $c: restore, python3, gone"
done
[ "$(cut -d' ' -f3 "$out/3")" != "$(cut -d' ' -f3 "$out/4")" ] ||
	{ echo "demo: the two clones drew the same uuid4: their randomness was not reseeded"; exit 1; }
echo "demo: all $total steps in $(elapsed "$t_all") s; each clone had its own memory, /tmp and randomness"
