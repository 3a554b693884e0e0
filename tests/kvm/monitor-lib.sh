# Sourced by the kvm tiers.  With the jail on, the pid a caller starts is padcell's supervisor
# ("padcell-super") and the monitor is its child, pid 1 of a PID namespace of its own (README "The
# jail"; the supervisor's other child, if any, is the cgroup leaf's reaper).  monitor_find PID sets
# MON to the child that is pid 1 of its namespace (its NSpid line's last field), or to PID itself
# when there is none (--no-jail, no namespace, not forked yet); shell builtins only, as the soak
# tier samples with hundreds of guests spinning.
monitor_find() {
	local c k v cs=() ids
	MON=$1
	read -r -a cs <"/proc/$1/task/$1/children" 2>/dev/null
	for c in "${cs[@]}"; do
		while read -r k v; do
			[ "$k" = NSpid: ] || continue
			read -r -a ids <<<"$v"
			[ "${#ids[@]}" -gt 1 ] && [ "${ids[-1]}" = 1 ] && { MON=$c; return 0; }
			break
		done <"/proc/$c/status" 2>/dev/null
	done
	return 0
}
# monitor_of PID: the same, printed.
monitor_of() { monitor_find "$1"; echo "$MON"; }
# monitor_gone MON: waits (bounded: HANG s) until the monitor MON holds no file any more: reaped,
# or a zombie whose threads all ended.  (Its fd directory is no guide: it empties as soon as the
# leader thread exits, while its vCPU and device threads, still exiting, hold the files: the API
# socket stays live until the last of them is gone.)  SIGKILL of the supervisor ends the monitor
# through PR_SET_PDEATHSIG a moment after the supervisor itself, so a caller that reuses the VM's
# socket paths at once waits for this too.
monitor_gone() {
	local n=$((${HANG:-30} * 20)) t=() st
	while [ "$n" -gt 0 ]; do
		[ -d "/proc/$1" ] || return 0
		t=("/proc/$1/task/"*)
		if [ "${#t[@]}" -le 1 ]; then
			st=$(<"/proc/$1/stat") 2>/dev/null || return 0
			st=${st##*) }
			case "${st%% *}" in Z | X) return 0 ;; esac
		fi
		sleep 0.05; n=$((n - 1))
	done
	return 1
}
# kill_wait SIG PID: signals the padcell started as PID, waits for it and for its monitor.
kill_wait() {
	monitor_find "$2"
	local mon=$MON
	kill -"$1" "$2" 2>/dev/null; wait "$2" 2>/dev/null
	monitor_gone "$mon"
}
