#!/usr/bin/env bash
# Jail tier: the monitor's confinement, seen from outside on this host's /dev/kvm with the test
# guest.  For a running padcell: /proc/PID/status (Seccomp 2, NoNewPrivs 1, CapEff/CapBnd 0, the
# uid) for every thread, its namespaces (pid 1 of a PID namespace of its own, under a confined
# supervisor that keeps the started pid), its fd table; --uid; --no-jail; a forbidden syscall in
# each thread kind and the supervisor (build/padcell-jailtest); a rootless run; `padcell serve`'s confined daemon and its spawner.  Ends with "N passed, N failed, N skipped".
set -uo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.." || exit 1
. tests/kvm/monitor-lib.sh

LOGDIR=${LOGDIR:-build/test-logs/jail}
HANG=${HANG:-30}
pass=0 fail=0 skip=0
ncases=$(grep -cE '^(case_[a-z_]+)$' "$SELF")

if [ ! -e /dev/kvm ] || ! ( exec 3<>/dev/kvm ) 2>/dev/null; then
	echo "SKIP: jail tier: /dev/kvm is missing or cannot be opened"; echo "0 passed, 0 failed, $ncases skipped"; exit 0
fi
make -s build/padcell build/padcell-jailtest testguest >/dev/null || { echo "FAIL build"; echo "0 passed, 1 failed"; exit 1; }
# The NIC needs libslirp, which links only into a dynamic padcell (README): built beside, in build/dyn.
make -s -j2 STATIC=0 BUILD=build/dyn build/dyn/padcell build/dyn/padcell-jailtest >/dev/null ||
	{ echo "FAIL build (STATIC=0)"; echo "0 passed, 1 failed"; exit 1; }
rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"
chmod 0755 "$LOGDIR"
cp build/padcell build/padcell-jailtest build/guest/testguest.elf "$LOGDIR/" || exit 1
cp build/dyn/padcell "$LOGDIR/padcell-net" && cp build/dyn/padcell-jailtest "$LOGDIR/padcell-net-jailtest" || exit 1
PADCELL=$LOGDIR/padcell JAILTEST=$LOGDIR/padcell-jailtest GUEST=$LOGDIR/testguest.elf
NETPADCELL=$LOGDIR/padcell-net NETJAILTEST=$LOGDIR/padcell-net-jailtest
SOCK=$LOGDIR/api.sock

result() { # NAME WHY LOG
	if [ -n "$2" ]; then
		echo "FAIL $1: $2 (log $3)"; tail -n 5 "$3" 2>/dev/null | sed 's/^/  | /'; fail=$((fail + 1))
	else
		echo "PASS $1"; pass=$((pass + 1))
	fi
}
wait_sock() { for _ in $(seq $((HANG * 20))); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
wait_line() { for _ in $(seq $((HANG * 20))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# A guest that runs for a while: counting, with a vsock device (a device thread) and an API socket.
LONG=(boot --kernel "$GUEST" --mem 64M --cpus 2 --api-sock "$SOCK" --vsock "$LOGDIR/v.sock"
	--cmdline "tg.case=count tg.count=100000 tg.cpus=2")

# status_of PID FIELD: the field's value from /proc/PID/status, every thread's the same or "mixed".
status_of() {
	local vals
	vals=$(for t in /proc/"$1"/task/*; do awk -v f="$2:" '$1 == f {print $2}' "$t/status"; done | sort -u)
	[ "$(wc -l <<<"$vals")" -eq 1 ] && echo "$vals" || echo mixed
}

# check_supervisor PID MON: why the supervisor PID (the pid the caller started) of the monitor MON is
# not what it should be, or "": one thread outside the monitor's PID namespace with no privileges and
# a filter of its own (CAP_KILL alone when the monitor runs as another uid: it must still signal it).
check_supervisor() {
	local sup=$1 v eff=0000000000000000
	[ "$(awk '$1 == "Uid:" {print $2}' "/proc/$sup/status")" != "$(awk '$1 == "Uid:" {print $2}' "/proc/$2/status")" ] &&
		eff=0000000000000020
	[ "$(cat "/proc/$sup/comm")" = padcell-super ] || { echo "pid $sup is $(cat "/proc/$sup/comm"), not the supervisor"; return; }
	[ "$(ls /proc/"$sup"/task | wc -l)" -eq 1 ] || { echo "the supervisor has more than one thread"; return; }
	for f in Seccomp:2 NoNewPrivs:1 CapEff:$eff CapPrm:$eff CapBnd:0000000000000000 CapAmb:0000000000000000; do
		v=$(awk -v f="${f%%:*}:" '$1 == f {print $2}' "/proc/$sup/status")
		[ "$v" = "${f#*:}" ] || { echo "the supervisor's ${f%%:*} is $v, expected ${f#*:}"; return; }
	done
	[ "$(readlink "/proc/$sup/ns/pid")" = "$(readlink /proc/self/ns/pid)" ] || echo "the supervisor left the host's PID namespace"
}

# check_pidns MON: why the monitor MON is not pid 1 of a PID namespace of its own with nothing else in it, or "".
check_pidns() {
	local pid=$1 v ns p
	ns=$(readlink "/proc/$pid/ns/pid")
	for v in /proc/"$pid"/task/*; do
		[ "$(readlink "$v/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || { echo "thread ${v##*/} is in the host's PID namespace"; return; }
		[ "$(readlink "$v/ns/pid")" = "$ns" ] || { echo "thread ${v##*/} in another PID namespace than the main thread's"; return; }
	done
	v=$(awk '$1 == "NSpid:" {print $2 " " $3 " " $4}' "/proc/$pid/status")
	[ "$v" = "$pid 1 " ] || { echo "NSpid is '$v', expected '$pid 1': not pid 1 of its own namespace"; return; }
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" != "$pid" ] && [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] &&
			{ echo "process ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) shares the monitor's PID namespace"; return; }
	done
}

# check_confined PID UID [host-net]: why the running padcell started as PID (its supervisor; the
# monitor is its child) is not confined as it should be, or "".
# host-net: a VM with a NIC, whose stack dials out from the host's network namespace.
check_confined() {
	local sup=$1 uid=$2 net=${3:-} v pid
	pid=$(monitor_of "$sup")
	[ "$pid" != "$sup" ] || { echo "no monitor child under pid $sup: no PID namespace"; return; }
	v=$(check_supervisor "$sup" "$pid"); [ -z "$v" ] || { echo "$v"; return; }
	v=$(check_pidns "$pid"); [ -z "$v" ] || { echo "$v"; return; }
	for f in Seccomp:2 NoNewPrivs:1 CapEff:0000000000000000 CapPrm:0000000000000000 CapBnd:0000000000000000 \
		CapAmb:0000000000000000; do
		v=$(status_of "$pid" "${f%%:*}")
		[ "$v" = "${f#*:}" ] || { echo "${f%%:*} is $v in /proc/$pid/task/*/status, expected ${f#*:}"; return; }
	done
	v=$(awk '$1 == "Uid:" {print $2 "," $3 "," $4}' "/proc/$pid/status")
	[ "$v" = "$uid,$uid,$uid" ] || { echo "Uid is $v, expected $uid"; return; }
	if [ "$net" = host-net ]; then
		[ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ] || { echo "a NIC's monitor left the host's network namespace"; return; }
	else
		for v in /proc/"$pid"/task/*; do
			[ "$(readlink "$v/ns/net")" != "$(readlink /proc/self/ns/net)" ] || { echo "thread ${v##*/} still in the host's network namespace"; return; }
		done
	fi
	# Every thread, not just the main one, left the host's mount, IPC and UTS namespaces (the
	# mount namespace is made by a helper thread and entered by each thread at confinement), all
	# into the main thread's, and every thread's root is the empty jail.
	for v in /proc/"$pid"/task/*; do
		for n in mnt ipc uts; do
			[ "$(readlink "$v/ns/$n")" != "$(readlink "/proc/self/ns/$n")" ] || { echo "thread ${v##*/} still in the host's $n namespace"; return; }
			[ "$(readlink "$v/ns/$n")" = "$(readlink "/proc/$pid/ns/$n")" ] || { echo "thread ${v##*/} in another $n namespace than the main thread's"; return; }
		done
		[ -z "$(ls -A "$v/root/" 2>&1)" ] || { echo "thread ${v##*/}'s root is not the empty jail"; return; }
	done
	# The root is the empty jail: nothing in it, and it is the only mount the monitor has.
	[ -z "$(ls -A "/proc/$pid/root/" 2>&1)" ] || { echo "/proc/$pid/root is not empty: $(ls -A "/proc/$pid/root/" 2>&1 | head -c 200)"; return; }
	v=$(wc -l <"/proc/$pid/mountinfo")
	[ "$v" -eq 1 ] && grep -q ' / / ro,.* - tmpfs padcell-jail ' "/proc/$pid/mountinfo" ||
		{ echo "mounts in the jail: $(tr '\n' '|' <"/proc/$pid/mountinfo" | head -c 300)"; return; }
	# The fd table: the terminal/stdio, KVM, sockets, eventfds, epoll, pipes, the VM's own directories
	# (held for after confinement), its /proc/PID (snapshots read its pagemap) and with --uid-range its
	# uid's lock file; nothing else.  A file
	# on a mount the jail detached reads relative to that mount (/dev/kvm as /kvm, /proc/PID as /PID).
	local bad
	# /dev/kvm bound onto from another mount namespace (the rootless case's) reads "/": told by its device numbers.
	bad=$(for fd in /proc/"$pid"/fd/*; do
		v=$(readlink "$fd")
		[ "$v" = / ] && [ "$(stat -L -c %F,%t:%T "$fd" 2>/dev/null)" = "character special file,a:e8" ] && v=/dev/kvm
		echo "$v"
	done |
		grep -vE '^((/dev)?/null|(/dev)?/kvm|/dev/pts/[0-9]+|(/proc)?/'"$pid"'|anon_inode:(kvm-vm|kvm-vcpu:[0-9]+|\[eventfd\]|\[eventpoll\]|\[signalfd\]|\[timerfd\]|seccomp notify)|(/run)?/padcell/uids/[0-9]+|socket:\[[0-9]+\]|pipe:\[[0-9]+\]|'"$(readlink -f "$LOGDIR")"'(/.*)?)$')
	[ -z "$bad" ] || { echo "unexpected fds: $(tr '\n' ' ' <<<"$bad")"; return; }
	grep -q "^Seccomp_filters:[[:space:]]*[23]" "/proc/$pid/task/$pid/status" || { echo "the control thread has no filter of its own"; return; }
}

case_status() {
	local log=$LOGDIR/status.log why="" pid
	rm -f "$SOCK"
	exec 7</dev/null 8>/dev/null # inherited fds padcell must close
	"$PADCELL" "${LONG[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	exec 7<&- 8>&-
	if ! wait_sock "$SOCK" || ! wait_line "$log" '^COUNT 3'; then why="the guest never counted"
	else why=$(check_confined "$pid" "$(id -u)"); fi
	kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	[ -z "$why" ] && grep -q 'jail:' "$log" && why="padcell printed a jail warning: $(grep -m1 'jail:' "$log")"
	[ -z "$why" ] && [ -e "$SOCK" ] && why="the API socket is still there after exit"
	result jail-status "$why" "$log"
}

case_uid() {
	local log=$LOGDIR/uid.log why="" pid
	if [ "$(id -u)" != 0 ]; then echo "SKIP jail-uid: needs root"; skip=$((skip + 1)); return; fi
	rm -f "$SOCK"
	"$PADCELL" "${LONG[@]}" --uid 65534 --gid 65534 </dev/null >"$log" 2>&1 &
	pid=$!
	if ! wait_sock "$SOCK" || ! wait_line "$log" '^COUNT 3'; then why="the guest never counted"
	else why=$(check_confined "$pid" 65534); fi
	kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	result jail-uid "$why" "$log"
}

# ns_alive NS: whether any process is still in mount namespace NS (a "mnt:[N]" link).
ns_alive() { for p in /proc/[0-9]*; do [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$1" ] && return 0; done; return 1; }

# The jail (an empty tmpfs in the monitor's own mount namespace) is gone after exit and after
# SIGKILL: no process is left in that namespace and the host never saw the mount (the jail makes
# no host directory at all: the tmpfs is mounted over /tmp inside that namespace); meanwhile a snapshot through the API still lands beside the socket (held directory fds).
jail_gone() { # HOW (TERM or KILL)
	local log=$LOGDIR/gone-$1.log why="" pid ns
	rm -f "$SOCK"; rm -rf "$LOGDIR/snap-$1"
	"$PADCELL" "${LONG[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	if ! wait_sock "$SOCK" || ! wait_line "$log" '^COUNT 3'; then why="the guest never counted"
	else
		ns=$(readlink "/proc/$(monitor_of "$pid")/ns/mnt") # SIGKILL of the supervisor must end the monitor too
		grep -q padcell-jail /proc/self/mountinfo && why="the jail's mount reached the host's mount namespace"
		[ -z "$why" ] && ! "$PADCELL" snapshot --api-sock "$SOCK" --to "$LOGDIR/snap-$1" >>"$log" 2>&1 && why="the snapshot failed"
		[ -z "$why" ] && [ ! -s "$LOGDIR/snap-$1/state" ] && why="no state file after the snapshot"
	fi
	kill -"$1" "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	if [ -z "$why" ]; then
		for _ in $(seq $((HANG * 20))); do ns_alive "$ns" || break; sleep 0.05; done
		if ns_alive "$ns"; then why="a process is still in the jail's mount namespace $ns"
		elif grep -q padcell-jail /proc/self/mountinfo; then why="a padcell-jail mount is left on the host"; fi
	fi
	[ -z "$why" ] && [ "$1" = TERM ] && [ -e "$SOCK" ] && why="the API socket is still there after exit"
	result "jail-gone-after-$1" "$why" "$log"
}
case_gone_exit() { jail_gone TERM; }
case_gone_kill() { jail_gone KILL; }

# A VM with a NIC (libslirp on its own thread, the network-stack filter): confined like any other,
# in the host's network namespace; the NIC thread's forbidden call is reported as such.
case_net() {
	local log=$LOGDIR/net.log why="" pid
	rm -f "$SOCK"
	"$NETPADCELL" "${LONG[@]}" --net </dev/null >"$log" 2>&1 &
	pid=$!
	if ! wait_sock "$SOCK" || ! wait_line "$log" '^COUNT 3'; then why="the guest never counted"
	else why=$(check_confined "$pid" "$(id -u)" host-net); fi
	kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	[ -z "$why" ] && grep -q 'jail:' "$log" && why="padcell printed a jail warning: $(grep -m1 'jail:' "$log")"
	result jail-net "$why" "$log"
}

# --uid-range as root: two VMs at once get two different uids of the range (each holds its uid's
# lock file), a third finds the range full (one line, exit 2, nothing left running); a snapshot
# through the API lands in a directory `padcell snapshot` made and handed to the VM's uid.
case_uid_range() {
	local log=$LOGDIR/uid-range.log why="" p1 p2 u1 u2 rc s1=$LOGDIR/ur1.sock s2=$LOGDIR/ur2.sock
	if [ "$(id -u)" != 0 ]; then echo "SKIP jail-uid-range: needs root"; skip=$((skip + 1)); return; fi
	local range=$((600000 + RANDOM % 1000 * 2)):2
	rm -f "$s1" "$s2"; rm -rf "$LOGDIR/ur-snap"; : >"$log"
	"$PADCELL" boot --kernel "$GUEST" --mem 64M --api-sock "$s1" --uid-range "$range" \
		--cmdline "tg.case=count tg.count=100000" </dev/null >"$log.1" 2>&1 &
	p1=$!
	PADCELL_UID_RANGE=$range "$PADCELL" boot --kernel "$GUEST" --mem 64M --api-sock "$s2" \
		--cmdline "tg.case=count tg.count=100000" </dev/null >"$log.2" 2>&1 &
	p2=$!
	if ! wait_sock "$s1" || ! wait_sock "$s2" || ! wait_line "$log.1" '^COUNT 3' || ! wait_line "$log.2" '^COUNT 3'; then
		why="the guests never counted"
	else
		u1=$(awk '$1 == "Uid:" {print $2}' "/proc/$(monitor_of "$p1")/status")
		u2=$(awk '$1 == "Uid:" {print $2}' "/proc/$(monitor_of "$p2")/status")
		if [ "$u1" = "$u2" ] || [ "$u1" = 0 ] || [ "$u2" = 0 ]; then why="the two VMs run as uids $u1 and $u2"
		else why=$(check_confined "$p1" "$u1"); fi
		if [ -z "$why" ]; then
			timeout 30 "$PADCELL" boot --kernel "$GUEST" --mem 64M --uid-range "$range" </dev/null >>"$log" 2>&1
			rc=$?
			[ "$rc" -eq 2 ] && grep -q 'all 2 uids are in use' "$log" || why="a third VM in a full range: exit $rc"
		fi
		if [ -z "$why" ]; then
			"$PADCELL" snapshot --api-sock "$s1" --to "$LOGDIR/ur-snap" >>"$log" 2>&1 || why="the snapshot of a VM running as uid $u1 failed"
			[ -z "$why" ] && [ ! -s "$LOGDIR/ur-snap/state" ] && why="no state file"
		fi
	fi
	kill -TERM "$p1" "$p2" 2>/dev/null; wait "$p1" "$p2" 2>/dev/null
	cat "$log.1" "$log.2" >>"$log"
	result jail-uid-range "$why" "$log"
}

case_no_jail() {
	local log=$LOGDIR/nojail.log why="" rc
	timeout 30 "$PADCELL" boot --kernel "$GUEST" --mem 64M --no-jail </dev/null >"$log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then why="exit $rc"
	elif [ "$(grep -c 'warning: --no-jail' "$log")" -ne 1 ]; then why="no one-line --no-jail warning"
	elif ! grep -q '^SUCCESS' "$log"; then why="no SUCCESS"; fi
	result jail-no-jail "$why" "$log"
}

# cgroup v2 missing or not delegated (this project's hosts mount v1): one warning line and no limits;
# a limit asked for by name is exit 2 with one line, and no guest runs.  Where v2 is delegated the
# nested-cgroup tier checks the limits themselves.
case_cgroup_missing() {
	local log=$LOGDIR/cgroup.log why="" rc n
	if "$PADCELL" check 2>/dev/null | grep -q '^  \[ok  \] cgroup v2 delegated'; then
		echo "SKIP jail-cgroup-missing: cgroup v2 is delegated here"; skip=$((skip + 1)); return
	fi
	timeout 30 "$PADCELL" boot --kernel "$GUEST" --mem 64M </dev/null >"$log" 2>"$log.err"
	rc=$?
	n=$(grep -c '^padcell: warning: no cgroup v2 limits for this VM: ' "$log.err")
	if [ "$rc" -ne 0 ] || ! grep -q '^SUCCESS' "$log"; then why="the guest did not run to SUCCESS (exit $rc)"
	elif [ "$n" -ne 1 ] || [ "$(wc -l <"$log.err")" -ne 1 ]; then why="stderr is not the one warning line: $(head -c 300 "$log.err")"; fi
	for f in "--cpu-quota 0.5" "--mem-limit 512M" "--io-limit 10M"; do
		[ -n "$why" ] && break
		# shellcheck disable=SC2086
		timeout 30 "$PADCELL" boot --kernel "$GUEST" --mem 64M $f </dev/null >"$log" 2>"$log.err"
		rc=$?
		if [ "$rc" -ne 2 ]; then why="$f: exit $rc, expected 2"
		elif [ "$(wc -l <"$log.err")" -ne 1 ] || ! grep -q '^padcell: .*cgroup v2' "$log.err"; then why="$f: said '$(cat "$log.err")'"
		elif [ -s "$log" ]; then why="$f: the guest ran: $(head -c 100 "$log")"; fi
	done
	cat "$log.err" >>"$log"
	result jail-cgroup-missing "$why" "$log"
}

# A forbidden syscall (personality) in each thread kind, and in the supervisor, ends the VM with
# exit 159, naming it; no monitor is left (the supervisor's monitor dies with it: PDEATHSIG).
violation() { # KIND [BINARY EXTRA-FLAGS...]
	local log=$LOGDIR/violation-$1.log why="" rc kind=$1 bin=${2:-$JAILTEST} left=""
	shift; [ $# -gt 0 ] && shift
	rm -f "$SOCK"
	PADCELL_JAIL_TEST_VIOLATION=$kind timeout 30 "$bin" "${LONG[@]}" "$@" </dev/null >"$log" 2>&1
	rc=$?
	for _ in $(seq $((HANG * 20))); do
		left=$(pgrep -f "^$bin boot --kernel $GUEST" | tr '\n' ' ')
		[ -z "$left" ] && break
		sleep 0.05
	done
	if [ "$rc" -ne 159 ]; then why="exit $rc, expected 159"
	elif ! grep -qi "the $kind thread made a forbidden system call, personality (135)" "$log"; then
		why="no message naming the $kind thread and personality"
	elif [ -n "$left" ]; then why="a padcell process is left after the violation: $left"
	fi
	result "jail-violation-$kind" "$why" "$log"
}
case_violation_vcpu() { violation vcpu; }
case_violation_device() { violation device; }
case_violation_control() { violation control; }
case_violation_network() { violation network "$NETJAILTEST" --net; }
case_violation_supervisor() { violation supervisor; }

# --seccomp=log: the same call is logged, not fatal.
case_seccomp_log() {
	local log=$LOGDIR/seccomp-log.log why="" rc
	PADCELL_JAIL_TEST_VIOLATION=vcpu timeout 30 "$JAILTEST" boot --kernel "$GUEST" --mem 64M --seccomp=log </dev/null >"$log" 2>&1
	rc=$?
	[ "$rc" -eq 0 ] || why="exit $rc, expected 0 (a logged call is not fatal)"
	result jail-seccomp-log "$why" "$log"
}

# Rootless: an unprivileged user with access to /dev/kvm (a private bind mount of a node it may open).
case_rootless() {
	local log=$LOGDIR/rootless.log why="" pid sock=$LOGDIR/rl/api.sock
	if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! command -v unshare >/dev/null; then
		echo "SKIP jail-rootless: needs root, setpriv and unshare to make an unprivileged kvm user"; skip=$((skip + 1)); return
	fi
	mkdir -p "$LOGDIR/rl"; chown 65534:65534 "$LOGDIR/rl"
	unshare -m sh -c "mount --make-rprivate / && mknod -m 0660 '$LOGDIR/rl/kvm' c 10 232 && chgrp 65534 '$LOGDIR/rl/kvm' &&
		mount --bind '$LOGDIR/rl/kvm' /dev/kvm &&
		exec setpriv --reuid 65534 --regid 65534 --clear-groups '$PADCELL' boot --kernel '$GUEST' --mem 64M \
			--api-sock '$sock' --cmdline 'tg.case=count tg.count=100000'" </dev/null >"$log" 2>&1 &
	if ! wait_sock "$sock" || ! wait_line "$log" '^COUNT 3'; then why="the guest never counted"
	else
		# the supervisor (the monitor is its child): both run as the unprivileged user
		pid=$(pgrep -u 65534 -x padcell-super | head -n1)
		if [ -z "$pid" ]; then why="no padcell supervisor running as uid 65534"
		else
			why=$(check_confined "$pid" 65534)
			[ -z "$why" ] && [ "$(readlink "/proc/$(monitor_of "$pid")/ns/user")" = "$(readlink /proc/self/ns/user)" ] && why="no user namespace"
			kill -TERM "$pid"
		fi
	fi
	wait 2>/dev/null
	[ -z "$why" ] && [ -e "$sock" ] && why="the API socket is still there after exit"
	result jail-rootless "$why" "$log"
}

# `padcell serve`'s daemon confines itself (the dynamic jail-test build, which has serve): a template
# snapshot of the test guest served; the daemon's every thread Seccomp 2, NoNewPrivs 1, CapEff and
# CapBnd 0; its spawner child (padcell-spawner) beside it; a file outside its directories refused
# (the test hook's open); a create goes through the spawner (the test guest has no agent: 500 after
# --ready-timeout, its monitor stopped and its files gone); SIGTERM ends daemon and spawner.
serve_template() {
	[ -s "$LOGDIR/serve-tpl/state" ] && return 0
	rm -f "$SOCK"
	"$PADCELL" "${LONG[@]}" </dev/null >"$LOGDIR/serve-tpl.log" 2>&1 &
	local p=$!
	wait_sock "$SOCK" && "$PADCELL" snapshot --api-sock "$SOCK" --to "$LOGDIR/serve-tpl" >>"$LOGDIR/serve-tpl.log" 2>&1
	kill_wait KILL "$p"
	[ -s "$LOGDIR/serve-tpl/state" ]
}
# server_confined PID: why the confined server PID (serve's daemon, mcp's server) is not, or "":
# every thread Seccomp 2, NoNewPrivs 1, no capabilities (bounding set too), a padcell-spawner child.
server_confined() {
	local f v
	for f in Seccomp NoNewPrivs CapEff CapBnd; do
		v=$(status_of "$1" "$f")
		case $f:$v in Seccomp:2 | NoNewPrivs:1 | CapEff:0000000000000000 | CapBnd:0000000000000000) ;;
		*) echo -n " its $f is $v;" ;; esac
	done
	pgrep -P "$1" -x padcell-spawner >/dev/null || echo -n " no padcell-spawner child;"
}
serve_port() { sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$1" | head -n1; }
case_serve() {
	local log=$LOGDIR/serve.log why="" d sp port key code st=$LOGDIR/serve-st
	if ! command -v curl >/dev/null; then echo "SKIP jail-serve: curl is missing"; skip=$((skip + 1)); return; fi
	serve_template || { result jail-serve "no template snapshot of the test guest" "$LOGDIR/serve-tpl.log"; return; }
	rm -rf "$st"
	PADCELL_JAIL_TEST_OPEN=/etc/hostname "$NETJAILTEST" serve --template base="$LOGDIR/serve-tpl" --state-dir "$st" \
		--listen 127.0.0.1:0 --padcell "$PADCELL" --ready-timeout 1 </dev/null >"$log" 2>&1 &
	d=$!
	wait_line "$log" 'listening on' || why="the daemon did not start"
	port=$(serve_port "$log")
	if [ -z "$why" ]; then
		why=$(server_confined "$d")
		sp=$(pgrep -P "$d" -x padcell-spawner | head -n1)
		[ -n "$sp" ] && [ "$(status_of "$sp" NoNewPrivs)" != 1 ] && why="$why the spawner has new privileges;"
		grep -q 'jail: test: open /etc/hostname: Permission denied' "$log" || why="$why a file outside its directories was not refused;"
		key=$(cat "$st/api-key")
		code=$(curl -sS -o "$LOGDIR/serve-body" -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$port/sandboxes")
		[ "$code" = 200 ] || why="$why the list answered $code;"
		code=$(curl -sS -o "$LOGDIR/serve-body" -w '%{http_code}' -X POST -H "X-API-Key: $key" \
			-H 'Content-Type: application/json' --data '{"templateID":"base"}' "http://127.0.0.1:$port/sandboxes")
		[ "$code" = 500 ] && grep -q 'did not answer' "$LOGDIR/serve-body" ||
			why="$why the create answered $code: $(head -c 200 "$LOGDIR/serve-body");"
		[ -z "$(ls "$st/run")" ] && [ -z "$(ls "$st/sandboxes")" ] || why="$why the failed create left files;"
		pgrep -f "restore --from $LOGDIR/serve-tpl" >/dev/null && why="$why the failed create left a monitor;"
		[ -d "/proc/$d" ] || why="$why the daemon died: $(tail -n 2 "$log");"
	fi
	kill -TERM "$d" 2>/dev/null
	wait "$d" 2>/dev/null
	code=$?
	[ -z "$why" ] && [ "$code" != 0 ] && why="the daemon exited $code on SIGTERM"
	[ -n "$sp" ] && [ -d "/proc/$sp" ] && sleep 1 && [ -d "/proc/$sp" ] && why="$why the spawner outlived the daemon;"
	result jail-serve "$why" "$log"
}

# The daemon's forbidden call (personality, the test hook right after its confinement): exit 159 and
# the monitor's kind of message; --no-jail: one warning line, no filter.
case_serve_violation() {
	local log=$LOGDIR/serve-violation.log why="" rc
	serve_template || { result jail-serve-violation "no template snapshot" "$LOGDIR/serve-tpl.log"; return; }
	rm -rf "$LOGDIR/serve-st"
	PADCELL_JAIL_TEST_VIOLATION=serve timeout 30 "$NETJAILTEST" serve --template base="$LOGDIR/serve-tpl" \
		--state-dir "$LOGDIR/serve-st" --listen 127.0.0.1:0 </dev/null >"$log" 2>&1
	rc=$?
	if [ "$rc" -ne 159 ]; then why="exit $rc, expected 159"
	elif ! grep -q 'the serve thread made a forbidden system call, personality (135): the daemon is stopped' "$log"; then
		why="no message naming the serve daemon and personality"
	fi
	result jail-serve-violation "$why" "$log"
}
case_serve_no_jail() {
	local log=$LOGDIR/serve-nojail.log why="" d
	serve_template || { result jail-serve-no-jail "no template snapshot" "$LOGDIR/serve-tpl.log"; return; }
	rm -rf "$LOGDIR/serve-st"
	"$NETPADCELL" serve --no-jail --template base="$LOGDIR/serve-tpl" --state-dir "$LOGDIR/serve-st" \
		--listen 127.0.0.1:0 </dev/null >"$log" 2>&1 &
	d=$!
	if ! wait_line "$log" 'listening on'; then why="the daemon did not start"
	elif [ "$(grep -c 'warning: --no-jail: the serve daemon runs unconfined' "$log")" -ne 1 ]; then why="no one-line warning"
	elif [ "$(status_of "$d" Seccomp)" != 0 ]; then why="a filter is loaded all the same"; fi
	kill -TERM "$d" 2>/dev/null; wait "$d" 2>/dev/null
	result jail-serve-no-jail "$why" "$log"
}

# `padcell mcp`'s server confines itself the same way (kind mcp; no file at all), its spawner beside it;
# its forbidden call is exit 159 naming it.
case_mcp() {
	local log=$LOGDIR/mcp.log why="" m sp rc
	rm -f "$LOGDIR/mcp.in"; mkfifo "$LOGDIR/mcp.in"
	PADCELL_JAIL_TEST_OPEN=/etc/hostname "$JAILTEST" mcp <"$LOGDIR/mcp.in" >"$log" 2>&1 &
	m=$!
	exec 8>"$LOGDIR/mcp.in" # its input stays open until the case closes it
	wait_line "$log" 'jail: test: open' || why="the server did not confine itself"
	if [ -z "$why" ]; then
		why=$(server_confined "$m")
		sp=$(pgrep -P "$m" -x padcell-spawner | head -n1)
		grep -q 'jail: test: open /etc/hostname: Permission denied' "$log" || why="$why a file was not refused;"
	fi
	exec 8>&- # the end of its input ends the session
	wait "$m" 2>/dev/null
	rc=$?
	[ "$rc" -eq 0 ] || why="$why the server exited $rc at the end of its input;"
	[ -n "$sp" ] && sleep 0.5 && [ -d "/proc/$sp" ] && why="$why the spawner outlived the server;"
	printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' |
		PADCELL_JAIL_TEST_VIOLATION=mcp timeout 30 "$JAILTEST" mcp >>"$log" 2>&1
	rc=$?
	[ "$rc" -eq 159 ] || why="$why the violation case exited $rc, expected 159;"
	grep -q 'the mcp thread made a forbidden system call, personality (135): the MCP server is stopped' "$log" ||
		why="$why no message naming the mcp server and personality;"
	result jail-mcp "$why" "$log"
}

case_status
case_uid
case_uid_range
case_gone_exit
case_gone_kill
case_no_jail
case_cgroup_missing
case_violation_vcpu
case_violation_device
case_violation_control
case_violation_network
case_violation_supervisor
case_net
case_seccomp_log
case_rootless
case_serve
case_serve_violation
case_serve_no_jail
case_mcp
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
