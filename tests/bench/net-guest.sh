#!/bin/sh
# Guest half of the nested networking benchmark (tests/bench/run.sh, section net): installed as
# /etc/padcell-selftest in a BENCHMARK-ONLY copy of the Debian image, run by init with
# padcell.selftest=1.  The same script behind every backend: eth0 gets 10.0.2.15/24 with the gateway
# 10.0.2.2 (padcell's and QEMU user-net's fixed network; L1's tap has 10.0.2.2 too) and the MTU
# nb.mtu=; the host side is L1's address nb.host= (iperf3 -s on 5201, busybox httpd on 8080).
# nb.runs= times each: iperf3 guest -> L1 and L1 -> guest (-R) for nb.secs= s, and 100 sequential
# HTTP GETs timed here with python3's urllib.  Lines "BENCHG KIND value" go to the console.
PATH=/usr/lib/padcell/bin:/usr/sbin:/usr/bin:/sbin:/bin
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac; done; echo "$2"; }
# The image's busybox has only init's applet links; ip is called through it.
ip() { /usr/lib/padcell/bin/busybox ip "$@"; }
mtu=$(arg nb.mtu 1500) host=$(arg nb.host 198.51.100.1) runs=$(arg nb.runs 3) secs=$(arg nb.secs 5)
ip link set lo up
ip link set eth0 mtu "$mtu" || echo "BENCHG error: eth0: mtu $mtu refused"
ip link set eth0 up || echo "BENCHG error: eth0 does not come up"
ip addr add 10.0.2.15/24 dev eth0 || echo "BENCHG error: eth0: no address"
ip route add default via 10.0.2.2 || echo "BENCHG error: no default route"
echo "BENCHG net-up mtu=$(cat /sys/class/net/eth0/mtu)"
# bps: iperf3 -J's received Mbit/s (what reached the receiver), or "error: WHY".
bps() {
	python3 -c 'import json,sys
d = json.load(sys.stdin)
if "error" in d:
    print("error: " + d["error"])
else:
    print("mbits=%.1f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))' 2>&1 | tail -n 1
}
i=0
while [ "$i" -lt "$runs" ]; do
	for dir in tx rx; do
		r=""
		[ $dir = rx ] && r=-R
		out=$(timeout $((secs + 30)) iperf3 -J -c "$host" -p 5201 -t "$secs" --connect-timeout 10000 $r 2>&1)
		m=$(printf '%s' "$out" | bps)
		case "$m" in
		mbits=*) echo "BENCHG iperf $dir $m" ;;
		*) echo "BENCHG error: iperf3 $dir: $m" ;;
		esac
	done
	timeout 120 python3 -c 'import sys, time, urllib.request
url = "http://%s:8080/small.txt" % sys.argv[1]
t = time.monotonic()
for _ in range(100):
    with urllib.request.urlopen(url, timeout=20) as r:
        if r.read() != b"padcell-netbench\n":
            sys.exit("wrong body")
print("BENCHG http gets=100 ms=%.1f" % ((time.monotonic() - t) * 1e3))' "$host" || echo "BENCHG error: http run $i failed"
	i=$((i + 1))
done
echo "BENCHG done"
