#!/usr/bin/env bash
# Build libslirp.a from Debian's own source package (Debian ships only libslirp.so), for the static padcell.
# Cached in $PADCELL_CACHE/libslirp-<version> (default /var/cache/padcell), keyed by the package version
# of the installed libslirp-dev, built under a flock so parallel builds wait instead of racing.
# Output: prints the install prefix (with include/slirp/libslirp.h and lib/libslirp.a) on stdout.
set -euo pipefail

die() { echo "scripts/libslirp-static.sh: $*" >&2; exit 1; }

cache=${PADCELL_CACHE:-/var/cache/padcell}
version=$(dpkg-query -W -f='${Version}' libslirp-dev 2>/dev/null) ||
	die "libslirp-dev is not installed (run scripts/deps.sh build)"
prefix=$cache/libslirp-$version

[ -f "$prefix/.padcell-complete" ] && { echo "$prefix"; exit 0; }

# Cold: the build's packages and deb-src entries (idempotent; installing needs root).
"$(dirname "$0")/deps.sh" build slirp-src >&2
for tool in meson ninja dpkg-source; do
	command -v "$tool" >/dev/null || die "$tool missing (run scripts/deps.sh build)"
done
mkdir -p "$cache"
exec 9>"$cache/libslirp.lock"
flock 9
# Someone else may have built it while this one waited for the lock.
[ -f "$prefix/.padcell-complete" ] && { echo "$prefix"; exit 0; }

tmp=$(mktemp -d "$cache/.libslirp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/build.log
echo "building libslirp $version (static) in $tmp ..." >&2
# The exact version installed: the headers padcell compiles against match the library it links.
(cd "$tmp" && apt-get source -q --download-only "libslirp=$version") >"$log" 2>&1 || {
	cat "$log" >&2
	die "apt-get source libslirp=$version failed (deb-src entries: run scripts/deps.sh slirp-src)"
}
dsc=$(ls "$tmp"/libslirp_*.dsc)
dpkg-source -x "$dsc" "$tmp/src" >>"$log" 2>&1 || { cat "$log" >&2; die "dpkg-source -x failed"; }
# Static, position-dependent like the rest of padcell, optimised, no tests; --libdir=lib keeps
# the path free of the multiarch triplet.
meson setup "$tmp/build" "$tmp/src" --prefix="$tmp/install" --libdir=lib --default-library=static \
	--buildtype=release -Db_staticpic=false >>"$log" 2>&1 || { cat "$log" >&2; die "meson setup failed"; }
ninja -C "$tmp/build" -j "${JOBS:-2}" install >>"$log" 2>&1 || { cat "$log" >&2; die "ninja failed"; }
[ -f "$tmp/install/lib/libslirp.a" ] || die "the build made no libslirp.a"

rm -rf "$prefix"
mv "$tmp/install" "$prefix"
cp "$log" "$prefix/build.log"
touch "$prefix/.padcell-complete"
printf 'libslirp %s: %s bytes -> %s\n' "$version" "$(stat -c %s "$prefix/lib/libslirp.a")" "$prefix" >&2
echo "$prefix"
