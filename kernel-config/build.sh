#!/usr/bin/env bash
# Build padcell's guest kernel from Debian's linux-source-6.1: tinyconfig + kernel-config/padcell.config.
# The source tree and the build are cached outside the repo; a warm cache only copies the results.
# Output: build/kernel/{bzImage,vmlinux,gen_init_cpio,config}.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
fragment=$here/padcell.config
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${PADCELL_CACHE:-/var/cache/padcell}/kernel
out=$repo/build/kernel
jobs=${JOBS:-$(nproc)}

die() { echo "kernel-config/build.sh: $*" >&2; exit 1; }

[ -r "$tarball" ] || die "$tarball missing (run scripts/deps.sh kernel)"
version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) ||
	die "linux-source-6.1 is not installed (run scripts/deps.sh kernel)"
hash=$( { cat "$fragment"; printf '%s' "$version"; } | sha256sum | cut -c1-16)
src=$cache/src-$version
obj=$cache/$hash

copy_out() {
	mkdir -p "$out"
	cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$obj/usr/gen_init_cpio" "$out/"
	cp "$obj/.config" "$out/config"
	printf 'kernel %s (%s): bzImage %s bytes, vmlinux %s bytes -> %s\n' "$version" "$hash" \
		"$(stat -c %s "$out/bzImage")" "$(stat -c %s "$out/vmlinux")" "${out#"$repo"/}"
}

if [ -f "$obj/.padcell-complete" ]; then
	copy_out
	exit 0
fi

mkdir -p "$cache"
# One build at a time per cache: two checkouts (or a parallel make) sharing the cache would
# otherwise extract and configure into the same directories at once.
exec 8>"$cache/.build.lock"
flock 8 || die "cannot lock $cache/.build.lock"
if [ -f "$obj/.padcell-complete" ]; then
	copy_out
	exit 0
fi
# One pristine source tree per package version; builds go to O=<hash> so a fragment change
# does not re-extract. Extract into a temporary directory and rename, so an interrupted
# extraction never looks complete.
if [ ! -f "$src/Makefile" ]; then
	echo "extracting $tarball ..."
	tmp=$(mktemp -d "$cache/.extract.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	tar -C "$tmp" -xf "$tarball"
	rm -rf "$src"
	mv "$tmp/linux-source-6.1" "$src"
	rm -rf "$tmp"
	trap - EXIT
fi

# A new fragment starts from the newest complete build of the same source, if any: Kbuild
# tracks which objects depend on which options, so only what the change touches is rebuilt.
if [ ! -d "$obj" ]; then
	# (No complete build yet is the normal cold case: the glob then matches nothing, and ls's
	# failure must not end the script under pipefail.)
	seed=$( { ls -td "$cache"/*/.padcell-complete 2>/dev/null || true; } | head -n1 | xargs -r dirname)
	if [ -n "$seed" ] && [ "$(cat "$seed/.padcell-source" 2>/dev/null)" = "$version" ]; then
		echo "seeding from $seed (incremental rebuild)"
		cp -a "$seed" "$obj.tmp" && rm -f "$obj.tmp/.padcell-complete" && mv "$obj.tmp" "$obj"
	fi
fi
mkdir -p "$obj"
echo "$version" >"$obj/.padcell-source"
kmake() { make -C "$src" O="$obj" ARCH=x86_64 "$@"; }

echo "configuring ($obj) ..."
kmake -s tinyconfig >"$obj/config.log" 2>&1 || { cat "$obj/config.log" >&2; die "tinyconfig failed"; }
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >>"$obj/config.log" 2>&1 ||
	{ cat "$obj/config.log" >&2; die "merge_config.sh failed"; }
kmake -s olddefconfig >>"$obj/config.log" 2>&1 || { cat "$obj/config.log" >&2; die "olddefconfig failed"; }

# Every CONFIG_X=value of the fragment must survive: Kconfig silently drops options whose
# dependencies are not met, and a silently missing driver is a confusing boot failure later.
dropped=$(grep -E '^CONFIG_[A-Za-z0-9_]+=' "$fragment" | while IFS= read -r line; do
	grep -qxF "$line" "$obj/.config" || printf '  %s (final: %s)\n' "$line" \
		"$(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo absent)"
done)
# ... and every `# CONFIG_X is not set` must stay unset.
dropped="$dropped$(sed -nE 's/^# (CONFIG_[A-Za-z0-9_]+) is not set$/\1/p' "$fragment" | while IFS= read -r opt; do
	grep -qE "^$opt=" "$obj/.config" && printf '  # %s is not set (final: %s)\n' "$opt" "$(grep -E "^$opt=" "$obj/.config")"
done || true)"
if [ -n "$dropped" ]; then
	echo "kernel-config/build.sh: these fragment options did not survive olddefconfig (fix kernel-config/padcell.config):" >&2
	echo "$dropped" >&2
	exit 1
fi
echo "config verified: $(grep -cE '^CONFIG_[A-Za-z0-9_]+=' "$fragment") fragment options set," \
	"$(grep -cE '^# CONFIG_[A-Za-z0-9_]+ is not set$' "$fragment") unset"
[ "${1:-}" = "--config-only" ] && exit 0

echo "building vmlinux + bzImage with -j$jobs (a few minutes cold) ..."
start=$(date +%s)
log=$obj/build.log
# Quiet build; show one progress line every 500 compiled files.
set +e
# (usr/gen_init_cpio is built on the way, for the built-in initramfs.)
kmake -j"$jobs" vmlinux bzImage 2>&1 | tee "$log" |
	awk '/^  CC /{ n++; if (n % 500 == 0) { printf "  ... %d files compiled\n", n; fflush() } }'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ] || [ ! -f "$obj/arch/x86/boot/bzImage" ]; then
	tail -n 30 "$log" >&2
	die "kernel build failed (full log: $log)"
fi
echo "built in $(( $(date +%s) - start )) s"
touch "$obj/.padcell-complete"
copy_out
