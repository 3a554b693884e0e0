#!/bin/sh
# Nested net cases (issue 10) on the Debian image, inside L1 as /payload/run.sh.  "The internet" is a
# network namespace on a veth pair (net-inet.sh, TEST-NET-2 addresses); L1's own resolv.conf names
# its DNS server, and L1's /etc/hosts one more name.  The guest's checks are net-guest.py (CHECK lines).
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
W=/run/net
mkdir -p $W /etc /srv/a /srv/b /srv/c /srv/lo
cp -r pypi /srv/pypi # net-wheel.py's package index, served on 198.51.100.12:8080
ip link set lo up
echo "nameserver 198.51.100.53" >/etc/resolv.conf
printf '127.0.0.1 localhost\n198.51.100.10 hosts.example.test\n' >/etc/hosts
echo hello-a >/srv/a/hello.txt
echo hello-b >/srv/b/hello.txt
echo hello-c >/srv/c/hello.txt
echo host-loopback-secret >/srv/lo/hello.txt
dd if=/dev/urandom of=/srv/a/big.bin bs=1048576 count=64 2>/dev/null
ln /srv/a/big.bin /srv/b/big.bin # the same bytes by name (web.example.test serves /srv/b)
big_sha=$(sha256sum /srv/a/big.bin | cut -d' ' -f1)
# a server on L1's loopback: what a guest must never reach through the stack's gateway address
httpd -f -p 127.0.0.1:8080 -h /srv/lo &
unshare -n sh ./net-inet.sh &
inet=$!
veth_up $inet
t=$(now)
until [ -f $W/inet-ready ] && ./upstream get 198.51.100.10 80 /hello.txt >/dev/null 2>&1; do
	awk -v s="$(since "$t")" 'BEGIN { exit !(s > 60) }' && break
	sleep 0.2
done
[ -f $W/inet-ready ] || echo "net-run: the test network did not come up"

R="--kernel bzImage --rootfs rootfs-debian.ext4 --mem 512M"
RULES="--allow 198.51.100.10:80 --allow web.example.test:80 --allow web.example.test:443 --allow web.example.test:8081 --allow hosts.example.test:80 --allow rebind.example.test:80"
# CHECK lines of the guest's output, as RESULT lines
results() { # results FILE NAME...
	f=$1
	shift
	for c in "$@"; do
		line=$(grep -a "^CHECK $c " "$f" | head -n1)
		case "$line" in
		"CHECK $c ok "*) result "$c" "" "${line#CHECK $c ok }" ;;
		"CHECK $c fail "*) result "$c" " ${line#CHECK $c fail }" "" ;;
		*) result "$c" " no CHECK line (guest: $(tail -c 300 "$f" | tr '\n' ' '); stderr: $(tail -c 300 "$f.err" | tr '\n' ' '))" "" ;;
		esac
	done
}

echo "STEP net-main"
t=$(now)
timeout -k 10 $((CASE_TIMEOUT * 2)) ./padcell run $R $RULES --net-log $W/decisions.log -- \
	python3 -c "$(cat net-guest.py)" main >$W/main.out 2>$W/main.out.err </dev/null
rc=$?
main_s=$(since "$t")
[ "$rc" = 0 ] || echo "net-run: padcell run exited $rc: $(tail -c 400 $W/main.out.err)"
results $W/main.out eth0 by-ip name-only-before-dns dns-allowed by-name sni-own sni-other host-other host-keepalive name-other-port \
	dns-etc-hosts dns-denied dns-rebind denied refused-ranges

why=""
peeks=$(wc -l <$W/peek.log 2>/dev/null || echo 0)
[ "$peeks" = 1 ] || why="$why the TLS stand-in saw $peeks connection(s) (want 1: the own SNI's);"
grep -q '"dst":"other.example.test:443","verdict":"reject","why":"sni mismatch: TLS SNI' $W/decisions.log ||
	why="$why no reject for other.example.test:443 in --net-log;"
grep -q '"dst":"secret.example.test:80","verdict":"reject","why":"sni mismatch: HTTP Host' $W/decisions.log ||
	why="$why no reject for secret.example.test:80 in --net-log;"
grep -q '"dst":"web.example.test:443","verdict":"allow","why":"TLS SNI' $W/decisions.log ||
	why="$why no allow for web.example.test:443 in --net-log;"
[ -n "$why" ] && why="$why (log: $(grep -a 'sni\|SNI\|Host' $W/decisions.log | tail -n 4 | tr '\n' ' '))"
result sni-logged "$why" "the own SNI reached the server once; both foreign names cut, logged as 'sni mismatch'"

# the kept-alive connection: the server saw the first request only, the second was cut and logged
why=""
reqs=$(cat $W/keepalive.log 2>/dev/null | tr '\n' ';')
[ "$reqs" = "request 1 1 host web.example.test:8081;" ] || why="$why the kept-alive server saw '$reqs' (want only the first request);"
grep -q '"dst":"web.example.test:8081","verdict":"reject","why":"sni mismatch: HTTP Host .secret.example.test. on port 8081.*request 2' $W/decisions.log ||
	why="$why no reject for request 2's Host in --net-log ($(grep -a 8081 $W/decisions.log | tail -n 2 | tr '\n' ' '));"
result host-keepalive-logged "$why" "the server saw only request 1; request 2 (Host secret.example.test) cut and logged"

why=""
grep -q '^secret.example.test ' $W/dns.log && why="$why the upstream was asked for secret.example.test;"
grep -q '^hosts.example.test ' $W/dns.log && why="$why the upstream was asked for hosts.example.test (/etc/hosts first);"
grep -q '^web.example.test ' $W/dns.log || why="$why the upstream never saw web.example.test (is its log working?);"
result upstream-queries "$why" "upstream saw: $(cut -d' ' -f1 $W/dns.log | sort -u | tr '\n' ' ')"

why=""
grep -q 'udp-sent ok' $W/main.out || why="$why the guest did not send its datagrams;"
[ -s $W/udp.log ] && why="$why $(wc -l <$W/udp.log) datagram(s) reached the sink;"
grep -q '"proto":"udp","dst":"198.51.100.10:9999","verdict":"drop"' $W/decisions.log ||
	why="$why no drop decision logged for 198.51.100.10:9999;"
result udp-dropped "$why" "3 datagrams to 198.51.100.10:9999: none arrived, logged as dropped"

for tag in ip name; do
	why=""
	set -- $(grep -a "^SHA $tag " $W/main.out | head -n1) "" "" "" ""
	[ "$3" = "$big_sha" ] || why="$why sha256 $3 (want $big_sha);"
	[ "$4" = 67108864 ] || why="$why $4 bytes (want 67108864);"
	mbps=$(awk -v b="$4" -v s="$5" 'BEGIN { if (s > 0) printf "%.1f", b * 8 / s / 1e6; else print "?" }')
	case $tag in
	ip) c=download-64m via="198.51.100.10 (an address rule: libslirp dials it)" ;;
	*) c=download-64m-by-name via="web.example.test (its Host checked, padcell dials the name and splices)" ;;
	esac
	result $c "$why" "64 MiB intact (sha256 ${big_sha%"${big_sha#????????????}"}...) from $via in $5 s: $mbps Mbit/s (nested, TCG L1)"
done

# --- pip from a local index served at an allowed name ---------------------------------------------
# First without a rule for the name: pip fails at once (padcell's DNS answers the name with NXDOMAIN and
# never asks upstream), then with --allow pypi.example.test:8080: the wheel installs and imports.
echo "STEP net-pip-denied"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R $RULES --net-log $W/pip-denied.log -- python3 -c "$(cat net-guest.py)" pip-denied \
	>$W/pip-denied.out 2>$W/pip-denied.out.err </dev/null
line=$(grep -a "^CHECK pip-denied " $W/pip-denied.out | head -n1)
why=""
case "$line" in
"CHECK pip-denied ok "*) ;;
"") why=" no CHECK line (guest: $(tail -c 300 $W/pip-denied.out | tr '\n' ' '); stderr: $(tail -c 300 $W/pip-denied.out.err | tr '\n' ' '))" ;;
*) why=" ${line#CHECK pip-denied fail };" ;;
esac
grep -q '^pypi.example.test ' $W/dns.log && why="$why the upstream was asked for pypi.example.test;"
grep -q '"dst":"pypi.example.test","verdict":"nxdomain"' $W/pip-denied.log ||
	why="$why no nxdomain for pypi.example.test in --net-log ($(tail -n 2 $W/pip-denied.log | tr '\n' ' '));"
result pip-denied "$why" "${line#CHECK pip-denied ok }; upstream never asked for the name"
echo "STEP net-pip-install"
timeout -k 10 $((CASE_TIMEOUT * 2)) ./padcell run $R --allow pypi.example.test:8080 --net-log $W/pip.log -- \
	python3 -c "$(cat net-guest.py)" pip-install >$W/pip.out 2>$W/pip.out.err </dev/null
results $W/pip.out pip-install

# --- ingress: --publish to a server the guest starts ------------------------------------------
echo "STEP net-publish"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R --publish 18080:8000 --net-log $W/pub.log -- python3 -c "$(cat net-guest.py)" serve \
	>$W/pub.out 2>$W/pub.out.err </dev/null &
pub=$!
got="" listen="" t=$(now)
while kill -0 $pub 2>/dev/null && awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { exit !(s < m) }'; do
	# before the guest's server listens, the guest resets the forwarded connection: try again
	# (L1's busybox wget cannot be the client: static glibc's NSS lookups crash it)
	if got=$(./upstream get 127.0.0.1 18080 / 2>$W/wget.err) && [ -n "$got" ]; then
		# the guest's server stays up until /quit: what listens now is what padcell published
		listen=$(netstat -ltn 2>/dev/null | grep ':18080 ')
		./upstream get 127.0.0.1 18080 /quit >/dev/null 2>>$W/wget.err
		break
	fi
	conns=$(netstat -tn 2>/dev/null | grep ':18080' | tr -s ' ' | tr '\n' ';')
	sleep 0.5
done
wait $pub
rc=$?
why=""
[ "$got" = published-ok ] || why="$why the host got '$(printf %s "$got" | head -c 100)' (client: $(head -c 100 $W/wget.err); connections: $conns; decisions: $(tail -n 3 $W/pub.log | tr '\n' ' '));"
[ "$rc" = 0 ] || why="$why padcell run exited $rc: $(tail -c 300 $W/pub.out.err);"
grep -q '^CHECK serve ok' $W/pub.out || why="$why guest: $(tail -c 200 $W/pub.out);"
result publish "$why" "host 127.0.0.1:18080 -> guest :8000: '$got', $(grep '^CHECK serve' $W/pub.out | cut -d' ' -f4-)"
why=""
case "$listen" in *127.0.0.1:18080*) ;; *) why=" listening as '$listen' (want 127.0.0.1:18080 only)" ;; esac
result publish-loopback "$why" "listening on $(echo $listen | cut -d' ' -f4)"

# --- a snapshot with a NIC, and clones of it -----------------------------------------------------
echo "STEP net-snapshot"
rm -rf $W/snap
timeout -k 10 $((CASE_TIMEOUT * 2)) ./padcell run $R --allow 198.51.100.10:80 --snapshot-when-ready $W/snap -- true \
	>$W/snap.out 2>$W/snap.err </dev/null
rc=$?
why=""
[ "$rc" = 0 ] || why="$why the snapshot run exited $rc: $(tail -c 300 $W/snap.err);"
[ -d $W/snap ] || why="$why no snapshot directory;"
result snapshot "$why" "run --snapshot-when-ready with a NIC"
echo "STEP net-clone"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from $W/snap --allow 198.51.100.10:80 -- \
	python3 -c "$(cat net-guest.py)" clone-allowed >$W/clone.out 2>$W/clone.out.err </dev/null
results $W/clone.out clone-get
timeout -k 10 "$CASE_TIMEOUT" ./padcell run --from $W/snap -- \
	python3 -c "$(cat net-guest.py)" clone-denied >$W/clone2.out 2>$W/clone2.out.err </dev/null
results $W/clone2.out clone-deny-all

# --- a live policy change through the API socket (padcell net-policy) ------------------------------
echo "STEP net-live"
L=$W/live
rm -f $L.v.sock* $L.api.sock
AGENT="console=ttyS0 reboot=k panic=-1 quiet init=/sbin/padcell-agent"
timeout $((CASE_TIMEOUT * 3)) ./padcell boot --kernel bzImage --mem 512M --drive rootfs-debian.ext4,ro \
	--vsock $L.v.sock --api-sock $L.api.sock --allow web.example.test:80 --net-log $W/live.log \
	--cmdline "$AGENT" >$W/live-boot.log 2>&1 </dev/null &
vmpid=$!
# gexec MODE: net-guest.py MODE in the booted VM, through its agent
gexec() {
	timeout -k 10 "$CASE_TIMEOUT" ./padcell exec --vsock $L.v.sock --no-stdin -- python3 -c "$(cat net-guest.py)" "$1" \
		>$W/live-$1.out 2>$W/live-$1.out.err </dev/null
}
t=$(now) up=no
while [ "$(awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { print (s < m) }')" = 1 ] && kill -0 $vmpid 2>/dev/null; do
	./padcell exec --vsock $L.v.sock --no-stdin -- true >/dev/null 2>&1 && { up=yes; break; }
	sleep 0.3
done
[ $up = yes ] || echo "net-run: the live-policy VM's agent never answered: $(tail -c 400 $W/live-boot.log)"
echo "STEP net-live-before"
gexec live-before
results $W/live-live-before.out live-denied live-name-before
echo "STEP net-live-allow"
./padcell net-policy --api-sock $L.api.sock --allow 198.51.100.20:80 --allow web.example.test:80 >$W/live-put1.err 2>&1
put1=$?
gexec live-allowed
[ $put1 = 0 ] || echo "  [live] net-policy --allow exited $put1: $(head -c 300 $W/live-put1.err)"
results $W/live-live-allowed.out live-allowed
# a bad rule among good ones: refused, named, and nothing changed
./padcell net-policy --api-sock $L.api.sock --allow 198.51.100.10:80 --allow 10.0.0.1/8 >$W/live-bad.err 2>&1
bad=$?
./padcell net-policy --api-sock $L.api.sock >$W/live-get1.json 2>&1
why=""
[ $bad = 2 ] || why="$why net-policy with a bad rule exited $bad (want 2);"
grep -q "10.0.0.1/8" $W/live-bad.err || why="$why the error does not name the rule: $(head -c 200 $W/live-bad.err);"
grep -q '"allow":\["198.51.100.20:80","web.example.test:80"\]' $W/live-get1.json ||
	why="$why the rules changed: $(head -c 300 $W/live-get1.json);"
result live-bad-rule "$why" "$(head -c 160 $W/live-bad.err)"
echo "STEP net-live-remove"
./padcell net-policy --api-sock $L.api.sock --deny-all >$W/live-put2.err 2>&1
put2=$?
gexec live-removed
[ $put2 = 0 ] || echo "  [live] net-policy --deny-all exited $put2: $(head -c 300 $W/live-put2.err)"
results $W/live-live-removed.out live-removed live-name-removed
./padcell net-policy --api-sock $L.api.sock >$W/live-get2.json 2>&1
num() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" $W/live-get2.json; }
why=""
grep -q '"allow":\[\],"open":false,"changes":2,' $W/live-get2.json || why="$why rules or changes not as set;"
[ "$(num allowed)" -ge 2 ] 2>/dev/null || why="$why allowed $(num allowed) (want >= 2);"
[ "$(num rejected)" -ge 3 ] 2>/dev/null || why="$why rejected $(num rejected) (want >= 3);"
[ "$(num resolved)" -ge 1 ] 2>/dev/null || why="$why resolved $(num resolved) (want >= 1);"
[ "$(num nxdomain)" -ge 1 ] 2>/dev/null || why="$why nxdomain $(num nxdomain) (want >= 1);"
[ -z "$why" ] || why="$why GET: $(head -c 300 $W/live-get2.json)"
result live-counters "$why" "$(sed 's/.*"counters"://' $W/live-get2.json)"
timeout 20 ./padcell exec --vsock $L.v.sock --no-stdin -- poweroff -f >/dev/null 2>&1
t=$(now)
while kill -0 $vmpid 2>/dev/null && [ "$(awk -v s="$(since "$t")" 'BEGIN { print (s < 30) }')" = 1 ]; do sleep 0.2; done
kill -9 $vmpid 2>/dev/null
wait $vmpid

# --- the same through `padcell run --api-sock`: a run VM's policy changed while its command runs ---
echo "STEP net-run-live"
RS=$W/run-api.sock
rm -f $RS
timeout -k 10 $((CASE_TIMEOUT * 2)) ./padcell run $R --api-sock $RS --allow web.example.test:80 -- \
	python3 -c "$(cat net-guest.py)" run-live >$W/run-live.out 2>$W/run-live.out.err </dev/null &
runpid=$!
t=$(now) # until the guest says its first connection was refused
until grep -q "^CHECK run-live-denied " $W/run-live.out 2>/dev/null || ! kill -0 $runpid 2>/dev/null; do
	awk -v s="$(since "$t")" -v m="$CASE_TIMEOUT" 'BEGIN { exit !(s > m) }' && break
	sleep 0.3
done
./padcell net-policy --api-sock $RS --allow 198.51.100.20:80 >$W/run-live-put.err 2>&1
put=$?
# a second run on the socket while the first one serves it: refused in one line, before any VM
./padcell run $R --api-sock $RS -- true >$W/run-live-busy.out 2>$W/run-live-busy.err </dev/null
busy=$?
wait $runpid
rc=$?
results $W/run-live.out run-live-denied run-live-allowed
why=""
[ $put = 0 ] || why="$why net-policy exited $put: $(head -c 200 $W/run-live-put.err);"
[ $rc = 0 ] || why="$why padcell run exited $rc: $(tail -c 200 $W/run-live.out.err);"
[ -e $RS ] && why="$why $RS is still there after the run;"
result run-live-socket "$why" "net-policy through the run's socket exit $put, the run exit $rc, the socket gone after it"
why=""
[ $busy = 2 ] || why="$why a second run on the live socket exited $busy (want 2);"
{ [ "$(wc -l <$W/run-live-busy.err)" = 1 ] &&
	grep -q "^padcell: --api-sock '$RS': in use by another process" $W/run-live-busy.err; } ||
	why="$why its stderr: $(head -c 200 $W/run-live-busy.err);"
result run-live-busy "$why" "$(head -c 160 $W/run-live-busy.err)"

echo "NET-TIMING main-run ${main_s}s"
kill $inet 2>/dev/null
[ "$fails" -eq 0 ]
