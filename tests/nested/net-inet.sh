#!/bin/sh
# "The internet" of the nested net tier, inside L1 as /payload/net-inet.sh: run by net-run.sh under
# `unshare -n` (a network namespace of its own; files shared with L1), it waits for its end of the
# veth pair (veth0), takes the TEST-NET-2 addresses (198.51.100.0/24, never a real outside address)
# and serves: HTTP on .10 (/srv/a), .11 (/srv/b) and .20 (/srv/c), a package index on .12:8080
# (/srv/pypi: net-wheel.py's wheel and PEP 503 pages), DNS on .53 (upstream dns, which
# logs every name it is asked), a UDP sink on .10:9999, and on .11:443 a stand-in for a TLS server
# (upstream peek: logs each connection's first bytes' length and answers it), and on .11:8081 a kept-alive
# HTTP/1.1 server (upstream keepalive: logs each request's Host).  Exits when net-run.sh kills it.
i=0
while ! ip link show veth0 >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 300 ] && { echo "net-inet: veth0 never arrived"; exit 1; }
	sleep 0.1
done
ip link set lo up
for a in 10 11 12 20 53; do ip addr add 198.51.100.$a/24 dev veth0; done
ip link set veth0 up
httpd -f -p 198.51.100.10:80 -h /srv/a &
httpd -f -p 198.51.100.11:80 -h /srv/b &
httpd -f -p 198.51.100.20:80 -h /srv/c &
httpd -f -p 198.51.100.12:8080 -h /srv/pypi &
./upstream udp-sink 198.51.100.10 9999 /run/net/udp.log &
./upstream peek 198.51.100.11 443 /run/net/peek.log &
./upstream keepalive 198.51.100.11 8081 /run/net/keepalive.log &
./upstream dns 198.51.100.53 /run/net/dns.log web.example.test=198.51.100.11 rebind.example.test=127.0.0.1 \
	pypi.example.test=198.51.100.12 &
echo ready >/run/net/inet-ready
wait
