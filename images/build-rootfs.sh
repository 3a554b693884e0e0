#!/usr/bin/env bash
# Build padcell's root filesystem images without privileges: no mount, no loop device, no chroot.
# File ownership is kept by fakeroot, images are written by `mkfs.ext4 -d` and `mkfs.erofs`.
#
# Usage: images/build-rootfs.sh [--out DIR] [--cached-only] [--agent FILE] min|debian
#   min     busybox-static + images/rootfs/init  -> DIR/rootfs-min.ext4, DIR/rootfs-min.erofs
#           (reproducible: same inputs, same bytes)
#   debian  Debian bookworm minbase + images/rootfs/debian-packages, made by mmdebstrap
#           -> DIR/rootfs-debian.ext4, cached by content under $PADCELL_CACHE/images/<key>/
#   --agent FILE  the static guest agent (build/guest/padcell-agent), installed as
#           /sbin/padcell-agent: `padcell run` boots with init=/sbin/padcell-agent.  The Debian
#           image is cached without it and gets it written in afterwards (debugfs), so a new agent
#           never costs an mmdebstrap run.
#   DIR defaults to build/images.  --cached-only (debian): copy the image out if the cache has
#   it, else exit 3 without building (for a test run that must not wait a minute or go online).
# Environment: PADCELL_CACHE (default /var/cache/padcell, else build/cache when that is not
# writable), PADCELL_ROOTFS_MODE=auto|unshare|fakechroot (mmdebstrap's mode; auto tries unshare),
# PADCELL_DEBIAN_MIRROR (default http://deb.debian.org), SOURCE_DATE_EPOCH (timestamps).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
me=images/build-rootfs.sh
die() { echo "$me: $*" >&2; exit 1; }
# Interrupted builds still run the EXIT trap that removes their temporary directory.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

out=$repo/build/images cached_only=0 agent=
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?--out DIR}; shift 2 ;;
	--agent) agent=${2:?--agent FILE}; shift 2 ;;
	--cached-only) cached_only=1; shift ;;
	*) break ;;
	esac
done
what=${1:-}
case "$what" in min | debian) ;; *) die "usage: $me [--out DIR] [--cached-only] [--agent FILE] min|debian" ;; esac
if [ -n "$agent" ]; then
	[ -f "$agent" ] && [ -x "$agent" ] || die "--agent $agent: not an executable file (make $agent builds it)"
	agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
fi

# Fixed inputs for reproducible images.
epoch=${SOURCE_DATE_EPOCH:-1700000000}
busybox=/bin/busybox
suite=bookworm
mirror=${PADCELL_DEBIAN_MIRROR:-http://deb.debian.org}

# Packages: scripts/deps.sh's rootfs group (and debian for the Debian image), then one clear line per missing tool.
if [ "$what" = debian ]; then "$repo/scripts/deps.sh" rootfs debian; else "$repo/scripts/deps.sh" rootfs; fi
need() { # need PACKAGE FILE...
	local pkg=$1 f
	shift
	for f in "$@"; do
		command -v "$f" >/dev/null 2>&1 || [ -x "$f" ] ||
			die "$f missing: install Debian's $pkg (as root: apt-get install --no-install-recommends $pkg)"
	done
}
need busybox-static "$busybox"
need e2fsprogs mkfs.ext4 e2fsck
need erofs-utils mkfs.erofs
need fakeroot fakeroot
[ "$what" = debian ] && need mmdebstrap mmdebstrap

start=$(date +%s)
step() { echo "[$(printf '%4d' $(($(date +%s) - start)))s] $*"; }

# --- helpers ----------------------------------------------------------------------------------

# Directories every image has; the kernel mounts devtmpfs on /dev, init the rest.
skeleton() { # skeleton ROOT
	local d
	for d in dev proc sys tmp run scratch root etc; do mkdir -p "$1/$d"; done
	chmod 1777 "$1/tmp"
	chmod 0700 "$1/root"
	install -m 0755 "$here/rootfs/init" "$1/sbin/init"
	install -m 0755 "$here/rootfs/selftest" "$1/etc/padcell-selftest"
	# The root is read-only: the agent writes the NIC's resolver into /run (tmpfs).
	ln -sfn /run/resolv.conf "$1/etc/resolv.conf"
	if [ -n "$agent" ]; then install -m 0755 "$agent" "$1/sbin/padcell-agent"; fi
}

# busybox with one symlink per applet under DIR; the applets' own subdirectories when FLAT is 0.
busybox_links() { # busybox_links ROOT BINDIR FLAT
	local root=$1 bindir=$2 flat=$3 applet dest
	mkdir -p "$root/$bindir"
	install -m 0755 "$busybox" "$root/$bindir/busybox"
	"$busybox" --list-full | while read -r applet; do
		case "$applet" in bin/busybox | sbin/init | linuxrc) continue ;; esac
		if [ "$flat" = 1 ]; then dest=$root/$bindir/${applet##*/}; else dest=$root/$applet; fi
		[ -e "$dest" ] || [ -L "$dest" ] && continue
		mkdir -p "$(dirname "$dest")"
		ln -s "/$bindir/busybox" "$dest"
	done
}

# A file system UUID derived from the image's name: fixed, and different per image.
uuid_for() {
	local h
	h=$(printf 'padcell-%s' "$1" | sha256sum | cut -c1-32)
	echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}"
}

# ext4 just above the content: no journal (the root is read-only), no reserved blocks, inodes
# for the files present plus 10%.  Grows the estimate by 10% until mkfs.ext4 -d fits.
# Runs inside the fakeroot session that owns ROOT's metadata.
mkfs_ext4_fit() { # mkfs_ext4_fit ROOT OUT LABEL UUID
	local root=$1 img=$2 label=$3 uuid=$4 files blocks kib tries=0
	files=$(find "$root" | wc -l)
	blocks=$(du -s --block-size=4096 "$root" | cut -f1)
	# data + inode tables (256 B each) + bitmaps, group descriptors, directories: 5% + 1 MiB
	kib=$(((blocks * 4 + files * 11 / 10 * 256 / 1024) * 105 / 100 + 1024))
	while :; do
		rm -f "$img"
		if E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -m 0 \
			-N $((files * 11 / 10 + 64)) -O ^has_journal -L "$label" -U "$uuid" \
			-E hash_seed="$uuid",root_owner=0:0 -d "$root" "$img" "${kib}k" >"$img.log" 2>&1; then
			rm -f "$img.log"
			# mke2fs -d copies each file's atime and ctime from the host, which no tool can set:
			# pin them (inodes are allocated in order from 11, the root is 2).
			local used
			used=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Inode count/ {n=$2} /^Free inodes/ {f=$2} END {print n-f}')
			{
				echo "sif <2> atime @$epoch"
				echo "sif <2> ctime @$epoch"
				seq 11 "$used" | sed "s/.*/sif <&> atime @$epoch\nsif <&> ctime @$epoch/"
			} | E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f - "$img" >/dev/null 2>&1
			return 0
		fi
		tries=$((tries + 1))
		[ $tries -lt 12 ] || { cat "$img.log" >&2; return 1; }
		kib=$((kib * 11 / 10))
	done
}
export -f mkfs_ext4_fit

in_fakeroot() { # in_fakeroot STATE FUNCTION ARGS...: FUNCTION under fakeroot, STATE kept across calls
	local state=$1 fn=$2
	shift 2
	[ -f "$state" ] || : >"$state"
	fakeroot -i "$state" -s "$state" -- bash -euo pipefail -c "epoch=$epoch; $(declare -f "$fn"); $fn \"\$@\"" \
		"$fn" "$@"
}

fsck_ext4() { e2fsck -fn "$1" >"$1.fsck" 2>&1 || { cat "$1.fsck" >&2; rm -f "$1.fsck"; die "e2fsck found errors in $1"; }; rm -f "$1.fsck"; }

mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- minimal ----------------------------------------------------------------------------------
if [ "$what" = min ]; then
	tmp=$(mktemp -d "$out/.rootfs-min.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	root=$tmp/root
	mkdir -p "$root"
	busybox_links "$root" bin 0
	skeleton "$root"
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
		>"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'tty:x:5:' 'nogroup:x:65534:' >"$root/etc/group"
	echo padcell >"$root/etc/hostname"

	min_fix() { # owned by root, fixed timestamps, the two device nodes a console needs early
		chown -R 0:0 "$1"
		mknod -m 0600 "$1/dev/console" c 5 1
		mknod -m 0666 "$1/dev/null" c 1 3
		find "$1" -exec touch -h -d "@$epoch" {} +
	}
	in_fakeroot "$tmp/fakeroot.state" min_fix "$root"

	step "rootfs-min.ext4"
	in_fakeroot "$tmp/fakeroot.state" mkfs_ext4_fit "$root" "$tmp/rootfs-min.ext4" padcell-min "$(uuid_for min-ext4)"
	fsck_ext4 "$tmp/rootfs-min.ext4"

	step "rootfs-min.erofs"
	min_erofs() {
		mkfs.erofs --quiet -T "$epoch" -U "$3" "$2" "$1" >/dev/null
	}
	in_fakeroot "$tmp/fakeroot.state" min_erofs "$root" "$tmp/rootfs-min.erofs" "$(uuid_for min-erofs)"
	if command -v fsck.erofs >/dev/null; then
		fsck.erofs "$tmp/rootfs-min.erofs" >/dev/null 2>&1 || die "fsck.erofs found errors in rootfs-min.erofs"
	fi

	mv "$tmp/rootfs-min.ext4" "$out/rootfs-min.ext4"
	mv "$tmp/rootfs-min.erofs" "$out/rootfs-min.erofs"
	for f in rootfs-min.ext4 rootfs-min.erofs; do
		step "$f: $(stat -c %s "$out/$f") bytes, sha256 $(sha256sum <"$out/$f" | cut -c1-16)"
	done
	exit 0
fi

# --- debian -----------------------------------------------------------------------------------

# mmdebstrap's mode: unshare (user namespaces; as a non-root user this also needs newuidmap and a
# subordinate id range in /etc/subuid and /etc/subgid), else fakechroot.
unshare_works() {
	unshare --user --map-root-user true 2>/dev/null || return 1
	[ "$(id -u)" = 0 ] && return 0
	command -v newuidmap >/dev/null && command -v newgidmap >/dev/null || return 1
	grep -qE "^($(id -un)|$(id -u)):" /etc/subuid 2>/dev/null &&
		grep -qE "^($(id -gn)|$(id -un)|$(id -g)|$(id -u)):" /etc/subgid 2>/dev/null
}
mode=${PADCELL_ROOTFS_MODE:-auto}
case "$mode" in
auto)
	if unshare_works; then mode=unshare
	elif command -v fakechroot >/dev/null; then mode=fakechroot
	else die "no rootless mmdebstrap mode works: user namespaces (or newuidmap + /etc/subuid) are unavailable and fakechroot is not installed (Debian's fakechroot)"
	fi ;;
unshare) ;;
fakechroot) need fakechroot fakechroot ;;
*) die "PADCELL_ROOTFS_MODE must be auto, unshare or fakechroot" ;;
esac

# The cache key: every input that shapes the image.  The suite's Release dates come from the
# host's apt lists (free, offline); they change when the host's `apt-get update` sees a new release.
pkgs=$(sed -e 's/#.*//' "$here/rootfs/debian-packages" | tr -s ' \t\n' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
[ -n "$pkgs" ] || die "images/rootfs/debian-packages lists no package"
release_dates() {
	local f
	for f in /var/lib/apt/lists/*_dists_"$suite"_InRelease /var/lib/apt/lists/*_dists_"$suite"-updates_InRelease \
		/var/lib/apt/lists/*_dists_"$suite"-security_InRelease; do
		[ -f "$f" ] && echo "${f##*/} $(grep -m1 '^Date:' "$f")"
	done
	return 0
}
key=$({
	sha256sum "$0" "$here/rootfs/init" "$here/rootfs/selftest" | cut -d' ' -f1
	echo "packages=$pkgs suite=$suite mirror=$mirror epoch=$epoch mode=$mode"
	dpkg-query -W -f='${Package}=${Version}\n' mmdebstrap apt busybox-static e2fsprogs 2>/dev/null
	release_dates
} | sha256sum | cut -c1-24)

cache=${PADCELL_CACHE:-/var/cache/padcell}
if ! mkdir -p "$cache/images" 2>/dev/null || [ ! -w "$cache/images" ]; then
	[ -n "${PADCELL_CACHE:-}" ] && die "cache directory $cache/images is not writable"
	cache=$repo/build/cache
	mkdir -p "$cache/images"
fi
entry=$cache/images/$key

# The agent goes in after the cache: /usr/sbin/padcell-agent (/sbin is usr/sbin), root-owned, 0755.
add_agent() { # add_agent IMAGE
	[ -n "$agent" ] || return 0
	printf '%s\n' "cd /usr/sbin" "rm padcell-agent" "write $agent padcell-agent" \
		"sif padcell-agent mode 0100755" "sif padcell-agent uid 0" "sif padcell-agent gid 0" \
		"sif padcell-agent mtime @$epoch" |
		E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f - "$1" >/dev/null 2>&1
	debugfs -R "stat /usr/sbin/padcell-agent" "$1" 2>/dev/null | grep -q "Size: $(stat -c %s "$agent")\b" ||
		die "could not write the agent into $1 (is the image full?)"
	fsck_ext4 "$1"
}
copy_out() {
	cp --sparse=always "$entry/rootfs-debian.ext4" "$out/.rootfs-debian.ext4.tmp"
	add_agent "$out/.rootfs-debian.ext4.tmp"
	mv "$out/.rootfs-debian.ext4.tmp" "$out/rootfs-debian.ext4"
	step "rootfs-debian.ext4: $(stat -c %s "$out/rootfs-debian.ext4") bytes (cache $entry)"
}
# A complete entry exists only after the final rename, so its presence is the completeness mark.
if [ -f "$entry/rootfs-debian.ext4" ]; then
	step "cached: $key"
	copy_out
	exit 0
fi
if [ "$cached_only" = 1 ]; then
	echo "$me: rootfs-debian is not cached (key $key); run: make rootfs-debian"
	exit 3
fi

step "building $suite + $pkgs with mmdebstrap --mode=$mode (cache key $key; takes a minute or more)"
tmp=$(mktemp -d "$cache/images/.tmp-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/t"
chmod 0755 "$tmp" "$tmp/t" # apt downloads as _apt when it can reach the directory
# Show mmdebstrap's own progress lines with the elapsed time.  The merged-usr hook makes the
# /bin -> usr/bin links itself, instead of the usrmerge package that would pull in perl (~50 MB).
set +e
TMPDIR=$tmp/t SOURCE_DATE_EPOCH=$epoch mmdebstrap --mode="$mode" --variant=minbase --include="$pkgs" \
	--aptopt='APT::Install-Recommends "false"' \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	"$suite" "$tmp/rootfs.tar" \
	"deb $mirror/debian $suite main" "deb $mirror/debian $suite-updates main" \
	"deb $mirror/debian-security $suite-security main" 2>&1 |
	tee "$tmp/mmdebstrap.log" | while IFS= read -r line; do
		case "$line" in [IWE]:*) step "mmdebstrap: $line" ;; esac # its steps; the rest is in the log
	done
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ] || [ ! -s "$tmp/rootfs.tar" ]; then
	tail -n 40 "$tmp/mmdebstrap.log" | sed 's/^/  | /' >&2
	die "mmdebstrap failed (its last 40 lines are above)"
fi
step "rootfs.tar: $(($(stat -c %s "$tmp/rootfs.tar") / 1048576)) MiB"

deb_assemble() { # deb_assemble TAR ROOT HERE BUSYBOX: unpack, add busybox tools and init
	local tar=$1 root=$2 here=$3 bb=$4 applet
	mkdir -p "$root"
	tar -C "$root" --numeric-owner -xpf "$tar"
	# init's tools, from busybox-static, kept out of Debian's own PATH.
	mkdir -p "$root/usr/lib/padcell/bin"
	install -m 0755 "$bb" "$root/usr/lib/padcell/bin/busybox"
	for applet in mount umount mke2fs poweroff setsid cttyhack hostname stat dd tr wc cat grep mkdir \
		chmod sync sha256sum df tail rm touch sh; do
		ln -sf busybox "$root/usr/lib/padcell/bin/$applet"
	done
	for d in dev proc sys tmp run scratch root etc; do mkdir -p "$root/$d"; done
	chmod 1777 "$root/tmp"
	# /sbin is usr/sbin (merged /usr); a relative path inside ROOT resolves through it.
	install -m 0755 "$here/rootfs/init" "$root/sbin/init"
	install -m 0755 "$here/rootfs/selftest" "$root/etc/padcell-selftest"
	echo padcell >"$root/etc/hostname"
	# The root is read-only: the agent writes the NIC's resolver into /run (tmpfs).
	rm -f "$root/etc/resolv.conf"
	ln -s /run/resolv.conf "$root/etc/resolv.conf"
	chown -R 0:0 "$root/usr/lib/padcell" "$root/sbin/init" "$root/etc/padcell-selftest" "$root/etc/hostname" "$root/scratch"
}
step "unpacking and adding init"
in_fakeroot "$tmp/fakeroot.state" deb_assemble "$tmp/rootfs.tar" "$tmp/root" "$here" "$busybox"
rm -f "$tmp/rootfs.tar"
step "writing rootfs-debian.ext4"
in_fakeroot "$tmp/fakeroot.state" mkfs_ext4_fit "$tmp/root" "$tmp/rootfs-debian.ext4" padcell-debian "$(uuid_for debian-ext4)"
fsck_ext4 "$tmp/rootfs-debian.ext4"
rm -rf "$tmp/root" "$tmp/t" "$tmp/fakeroot.state"
{
	echo "key=$key mode=$mode built=$(date -u +%FT%TZ) seconds=$(($(date +%s) - start))"
	echo "packages=$pkgs"
} >"$tmp/info"
mv -T "$tmp" "$entry" 2>/dev/null || { [ -f "$entry/rootfs-debian.ext4" ] || die "could not store $entry"; }
trap - EXIT
rm -rf "$tmp"
copy_out
# Keep the three newest entries; drop temp directories an interrupted build left a day ago.
{ ls -1dt "$cache"/images/[0-9a-f]*/ 2>/dev/null || true; } | tail -n +4 | while read -r old; do rm -rf "$old"; done
find "$cache/images" -maxdepth 1 -name '.tmp-*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
