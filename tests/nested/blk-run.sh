#!/bin/sh
# Issue-3 virtio-blk cases, run inside L1 as /payload/run.sh by busybox sh (copied by blk-test.sh).
# One line per case: RESULT blk-<case> PASS|FAIL <detail>; a `STEP blk-<case>` line before each VM
# so a timeout names the hung case.  Guest consoles are echoed to the serial log with a prefix.
cd /payload || exit 1
. ./config # SHA FILE CASE_TIMEOUT MEM SCRATCH_MIB SCRATCH_SHA
fails=0
mkdir -p /run/blk
now() { cut -d' ' -f1 /proc/uptime; }
result() { # result NAME WHY DETAIL: PASS when WHY is empty
	if [ -z "$2" ]; then echo "RESULT blk-$1 PASS $3"; else echo "RESULT blk-$1 FAIL$2"; fails=$((fails + 1)); fi
}
# Where padcell may put its scratch file ($TMPDIR is unset here: /var/tmp, else /tmp).
tmp_listing() { ls -A /tmp /var/tmp 2>/dev/null; }
guest_line() { grep -a "^BLKG $1 " "$2" | tail -n1; }

# vm NAME LOG ARGS...: one padcell run under the case timeout; sets rc (timeout = "timeout") and secs.
vm() {
	name=$1 log=$2
	shift 2
	t0=$(now)
	timeout -k 10 "$CASE_TIMEOUT" ./padcell boot --kernel bzImage --mem "$MEM" "$@" >"$log.raw" 2>&1 </dev/null
	rc=$?
	[ "$rc" = 143 ] && rc=timeout
	secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
	tr -d '\r' <"$log.raw" >"$log"
	sed "s/^/  [$name] /" "$log"
}

# --- one VM per file system: boot, read-only root, sha256, scratch disk, image and temp dirs after --
for fs in ext4 erofs; do
	img=blk-$fs.img log=/run/blk/$fs.log
	before=$(sha256sum <"$img")
	tmp_before=$(tmp_listing)
	echo "STEP blk-$fs-boot"
	vm "$fs" "$log" --drive "$img,ro" --scratch 128M \
		--cmdline "console=ttyS0 reboot=k panic=-1 quiet padcell.selftest=1 blk.file=$FILE blk.sha256=$SHA blk.scratch=$SCRATCH_MIB blk.scratch.sha256=$SCRATCH_SHA"
	after=$(sha256sum <"$img")

	why=""
	if [ "$rc" = timeout ]; then
		why=" timed out after ${CASE_TIMEOUT}s"
	else
		[ "$rc" = 0 ] || why="$why exit $rc (want 0);"
		grep -q '^PADCELL-ROOTFS-OK' "$log" || why="$why no PADCELL-ROOTFS-OK;"
		grep -a '^BLKG-CMDLINE ' "$log" | grep -q ' root=/dev/vda ro ' || why="$why guest command line lacks 'root=/dev/vda ro';"
		grep -a '^BLKG-ROOT ' "$log" | grep -q "^BLKG-ROOT /dev/[^ ]* / $fs ro," || why="$why root not $fs ro on /dev/vda: $(grep -a '^BLKG-ROOT ' "$log");"
	fi
	result "$fs-boot" "$why" "root=/dev/vda ro ($fs), marker, exit 0 in ${secs}s"

	for c in rofs sha256 scratch; do
		l=$(guest_line "$c" "$log")
		case "$l" in
		"BLKG $c PASS"*) result "$fs-$c" "" "${l#BLKG $c PASS }" ;;
		"BLKG $c FAIL"*) result "$fs-$c" " ${l#BLKG $c FAIL }" ;;
		*) result "$fs-$c" " no result from the guest" ;;
		esac
	done

	if [ "$before" = "$after" ]; then
		result "$fs-image-unchanged" "" "sha256 ${after%% *} before and after"
	else
		result "$fs-image-unchanged" " sha256 ${before%% *} before, ${after%% *} after"
	fi
	tmp_after=$(tmp_listing)
	if [ "$tmp_before" = "$tmp_after" ]; then
		result "$fs-no-scratch-left" "" "/tmp and /var/tmp unchanged (padcell's scratch directories)"
	else
		result "$fs-no-scratch-left" " /tmp, /var/tmp before: '$tmp_before' after: '$tmp_after'"
	fi
done

# --- the shipped erofs image boots as it is ---------------------------------------------------
echo "STEP blk-min-erofs-boot"
log=/run/blk/min-erofs.log
before=$(sha256sum <rootfs-min.erofs)
vm min-erofs "$log" --drive rootfs-min.erofs,ro --cmdline "console=ttyS0 reboot=k panic=-1 quiet"
why=""
if [ "$rc" = timeout ]; then why=" timed out after ${CASE_TIMEOUT}s"; else
	[ "$rc" = 0 ] || why="$why exit $rc (want 0);"
	grep -q '^PADCELL-ROOTFS-OK' "$log" || why="$why no PADCELL-ROOTFS-OK;"
	[ "$(sha256sum <rootfs-min.erofs)" = "$before" ] || why="$why image changed;"
fi
result min-erofs-boot "$why" "rootfs-min.erofs: marker, exit 0, image unchanged in ${secs}s"

# --- two VMs share one read-only image at once (the shipped rootfs-min.ext4) -------------------
echo "STEP blk-shared-ro"
before=$(sha256sum <rootfs-min.ext4)
t0=$(now)
for i in 1 2; do
	(
		timeout -k 10 "$CASE_TIMEOUT" ./padcell boot --kernel bzImage --mem "$MEM" --drive rootfs-min.ext4,ro \
			--cmdline "console=ttyS0 reboot=k panic=-1 quiet" >/run/blk/shared$i.raw 2>&1 </dev/null
		echo $? >/run/blk/shared$i.rc
	) &
	eval "pid$i=\$!"
done
# Both padcell processes must be alive at the same time (the second opened the image while the
# first held it): look for two at once while they run.
both=no
while kill -0 "$pid1" 2>/dev/null || kill -0 "$pid2" 2>/dev/null; do
	# (busybox here has no pgrep: count the processes whose name is padcell.)
	[ "$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cx padcell)" -ge 2 ] && both=yes
	[ "$both" = yes ] && break
	sleep 0.2
done
wait "$pid1" "$pid2" 2>/dev/null
wait
secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
why=""
for i in 1 2; do
	tr -d '\r' </run/blk/shared$i.raw >/run/blk/shared$i.log
	sed "s/^/  [shared$i] /" /run/blk/shared$i.log
	r=$(cat /run/blk/shared$i.rc 2>/dev/null)
	[ "$r" = 143 ] && r=timeout
	[ "$r" = 0 ] || why="$why VM $i exit $r (want 0);"
	grep -q '^PADCELL-ROOTFS-OK' /run/blk/shared$i.log || why="$why VM $i no PADCELL-ROOTFS-OK;"
done
[ "$both" = yes ] || why="$why the two padcell processes never ran at the same time;"
[ "$(sha256sum <rootfs-min.ext4)" = "$before" ] || why="$why image changed;"
result shared-ro "$why" "two VMs on rootfs-min.ext4,ro at once: both marker, exit 0, image unchanged (${secs}s)"

[ "$fails" -eq 0 ]
