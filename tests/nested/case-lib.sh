# Sourced by the L1 side of the nested case tiers (run-run.sh, snap-run.sh, debian-run.sh), after
# ./config (CASE_TIMEOUT, TIER).  One line per case: RESULT <TIER>-<case> PASS|FAIL <detail>.
fails=0
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
result() { # result NAME WHY DETAIL: PASS when WHY is empty
	if [ -z "$2" ]; then echo "RESULT $TIER-$1 PASS $3"; else echo "RESULT $TIER-$1 FAIL$2"; fails=$((fails + 1)); fi
}
show() { sed "s/^/  [$1] /" "$2" | head -n 40; }
# veth_up PID: the link to a test network in the network namespace of process PID (started with
# `unshare -n`, it waits for veth0): a veth pair whose far end, veth0, goes there; this end, va, gets
# 198.51.100.1/24 (TEST-NET-2, never a real outside address).  False when a step failed.
veth_up() {
	ip link add va type veth && # busybox names the peer veth0
		ip link set veth0 netns "$1" && ip addr add 198.51.100.1/24 dev va && ip link set va up
}
# L1's NIC on QEMU's user network (l1.sh --hostfwd): loads the driver staged in ./netmods by
# tests/nested/l1-netmods.sh and gives eth0 10.0.2.15/24.  False with the reasons in $net_why.
net_up() {
	net_why=""
	ip link set lo up 2>/dev/null
	local m err t
	while read -r m; do
		# a module the stage loaded already (virtio, virtio_ring) answers "File exists"
		err=$(insmod "netmods/$m.ko" 2>&1) || case "$err" in *"File exists"*) ;; *) net_why="$net_why insmod $m: $err;" ;; esac
	done <netmods/load-order
	t=$(now)
	while ! ip link show eth0 >/dev/null 2>&1 && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 30) }')" = 1 ]; do sleep 0.2; done
	ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up ||
		net_why="$net_why no eth0 to configure: $(ip link 2>&1 | head -c 300);"
	[ -z "$net_why" ]
}
