#!/bin/sh
# Guest half of the nested virtio-blk test: installed as /etc/padcell-selftest in the TEST-ONLY
# image variant that tests/nested/blk-test.sh builds (never in a shipped image), and run by the
# image's /sbin/init when the command line has padcell.selftest=1.
# Parameters from the kernel command line:
#   blk.file=PATH blk.sha256=HEX   a file in the image and the digest the build host computed
#   blk.scratch=MIB blk.scratch.sha256=HEX  write MIB MiB to /scratch (made from blk.file, see 3.)
#                                  and read it back (MIB 0: skip)
# One line per check: BLKG <check> PASS|FAIL <detail>; exits with the number of failures.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
fails=0
res() { echo "BLKG $*"; [ "$2" = PASS ] || fails=$((fails + 1)); }
arg() { # arg NAME: the value of NAME= on the kernel command line
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
	done
	return 1
}

echo "BLKG-CMDLINE $(cat /proc/cmdline)"
echo "BLKG-ROOT $(grep '^[^ ]* / ' /proc/mounts | tail -n1)"

# 1. The root file system is read-only: creating, writing and removing under / fail with EROFS.
ro_why=""
for probe in "touch /blk-probe" "mkdir /etc/blk-probe" "rm -f /etc/hostname"; do
	if out=$($probe 2>&1); then
		ro_why="$ro_why '$probe' succeeded;"
	else
		case "$out" in
		*"Read-only file system"*) ;;
		*) ro_why="$ro_why '$probe': $out;" ;;
		esac
	fi
done
if [ -z "$ro_why" ]; then res rofs PASS "touch, mkdir, rm under / all fail with EROFS"; else res rofs FAIL "$ro_why"; fi

# 2. A file's digest inside the guest equals the build host's.
file=$(arg blk.file) want=$(arg blk.sha256)
if [ -z "$file" ] || [ -z "$want" ]; then
	res sha256 FAIL "blk.file / blk.sha256 missing from the command line"
elif got=$(sha256sum <"$file" 2>&1) && got=${got%% *} && [ "$got" = "$want" ]; then
	res sha256 PASS "$file $(wc -c <"$file") bytes $got"
else
	res sha256 FAIL "$file: got $got, want $want"
fi

# 3. The scratch disk: formatted by init, mounted on /scratch, N MiB written and read back intact
#    after the page cache is dropped.  The data: MiB i is 1 MiB of blk.file from page 12*i (cheap to
#    make under emulation, unlike /dev/urandom); the build host computed its digest
#    (blk.scratch.sha256), so the guest hashes the data once, as read back.
mib=$(arg blk.scratch || echo 50)
swant=$(arg blk.scratch.sha256 || echo none)
if [ "$mib" != 0 ]; then
	m=$(grep ' /scratch ' /proc/mounts)
	case "$m" in
	/dev/vd*" /scratch ext4 "*rw,*)
		dev=${m%% *}
		size=$(($(cat "/sys/block/${dev#/dev/}/size") * 512))
		serial=$(cat "/sys/block/${dev#/dev/}/serial" 2>/dev/null)
		t0=$(cut -d' ' -f1 /proc/uptime)
		i=0
		while [ "$i" -lt "$mib" ]; do
			dd if="$file" bs=4096 skip=$((12 * i)) count=256 2>/dev/null || echo "short read of $file" >&2
			i=$((i + 1))
		done >/scratch/blk-data
		sync
		t1=$(cut -d' ' -f1 /proc/uptime)
		echo 3 >/proc/sys/vm/drop_caches
		r=$(sha256sum </scratch/blk-data)
		r=${r%% *}
		n=$(wc -c </scratch/blk-data)
		t2=$(cut -d' ' -f1 /proc/uptime)
		secs=$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "write+sync %.1fs, read+sha256 %.1fs", b - a, c - b }')
		if [ "$swant" = "$r" ] && [ "$n" = $((mib * 1048576)) ]; then
			res scratch PASS "$dev (serial $serial, $size bytes) ext4 on /scratch; $mib MiB written, read back after drop_caches: sha256 $r as written ($secs)"
		else
			res scratch FAIL "$dev: written sha256 $swant, read $r, $n bytes ($secs)"
		fi
		rm -f /scratch/blk-data
		;;
	*) res scratch FAIL "no ext4 scratch disk mounted rw on /scratch: '$m'" ;;
	esac
fi

echo "BLKG-DONE $fails"
exit "$fails"
