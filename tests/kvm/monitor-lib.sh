# Sourced by the kvm tiers.  With the jail on, the pid a caller starts is padcell's supervisor
# ("padcell-super") and the monitor is its child, pid 1 of a PID namespace of its own (README "The
# jail"; the supervisor's other child, if any, is the cgroup leaf's reaper).  monitor_find PID sets
# MON to that child, or to PID itself when PID is no supervisor (--no-jail, no namespace); shell
# builtins only, as the soak tier samples with hundreds of guests spinning.
monitor_find() {
	local c comm cs=()
	MON=$1
	read -r comm <"/proc/$1/comm" 2>/dev/null && [ "$comm" = padcell-super ] || return 0
	read -r -a cs <"/proc/$1/task/$1/children" 2>/dev/null
	for c in "${cs[@]}"; do
		read -r comm <"/proc/$c/comm" 2>/dev/null && [ "$comm" != padcell-reaper ] && { MON=$c; return 0; }
	done
}
# monitor_of PID: the same, printed.
monitor_of() { monitor_find "$1"; echo "$MON"; }
