#!/bin/sh
# Nested cases on the Debian image (the default image of `padcell run`), inside L1 as /payload/run.sh.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
R="--kernel bzImage --rootfs rootfs-debian.ext4 --mem 512M"
echo "STEP debian-python"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R -- python3 -c 'import sys; print(6*7); print("py", sys.version.split()[0], file=sys.stderr); sys.exit(5)' \
	>/tmp/o 2>/tmp/e </dev/null
rc=$?
why=""
[ "$rc" = 5 ] || why="$why exit $rc (want 5);"
[ "$(cat /tmp/o)" = 42 ] || why="$why stdout '$(head -c 200 /tmp/o)';"
grep -q '^py 3\.' /tmp/e || why="$why stderr '$(head -c 300 /tmp/e)';"
result python "$why" "python3 -c: stdout 42, stderr '$(head -n1 /tmp/e)', exit 5"

echo "STEP debian-user-env-cwd"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R --user nobody --env GREETING=hello --cwd /tmp -- \
	python3 -c 'import os; print(os.getuid(), os.environ["GREETING"], os.getcwd(), os.environ["HOME"])' >/tmp/o 2>/tmp/e </dev/null
rc=$?
why=""
[ "$rc" = 0 ] || why="$why exit $rc: $(head -c 300 /tmp/e);"
[ "$(cat /tmp/o)" = "65534 hello /tmp /nonexistent" ] || why="$why printed '$(head -c 200 /tmp/o)' (want '65534 hello /tmp /nonexistent');"
result user-env-cwd "$why" "--user nobody --env --cwd: $(cat /tmp/o)"

echo "STEP debian-readonly-root"
timeout -k 10 "$CASE_TIMEOUT" ./padcell run $R -- sh -c 'touch /usr/x 2>&1; echo rc=$?; cat /etc/debian_version' >/tmp/o 2>/tmp/e </dev/null
rc=$?
why=""
[ "$rc" = 0 ] || why="$why exit $rc;"
grep -q 'Read-only file system' /tmp/o || why="$why writing under / did not fail read-only: '$(head -c 200 /tmp/o)';"
grep -q '^12\.' /tmp/o || why="$why no bookworm /etc/debian_version: '$(head -c 200 /tmp/o)';"
result readonly-root "$why" "the root is read-only; Debian $(tail -n1 /tmp/o)"
[ "$fails" -eq 0 ]
