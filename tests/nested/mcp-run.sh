#!/bin/sh
# Inside L1 as /payload/run.sh: `padcell mcp` with its stdio on L1's second serial port, which the
# host's MCP SDK client reaches (tests/nested/mcp-test.sh).  The host ends the session with a line
# "__EOF__": padcell mcp's stdin then ends, as a client closing its pipe would end it (a serial
# line has no end of its own).  Then: padcell mcp exited 0 and left nothing behind.
cd /payload || exit 1
. ./config # CASE_TIMEOUT TIER
. ./case-lib.sh
stty -F /dev/ttyS1 raw -echo 115200 || { echo "RESULT $TIER-serial FAIL no /dev/ttyS1"; exit 1; }
echo "STEP mcp-listening"
timeout -k 10 "$CASE_TIMEOUT" sh -c '
	while IFS= read -r line; do [ "$line" = __EOF__ ] && break; printf "%s\n" "$line"; done </dev/ttyS1 |
		./padcell mcp --kernel bzImage --rootfs rootfs-debian.ext4 --mem 512M >/dev/ttyS1 2>/tmp/mcp.err'
rc=$?
echo "STEP mcp-ended $rc"
why=""
[ "$rc" = 0 ] || why="$why padcell mcp exit $rc: $(head -c 400 /tmp/mcp.err);"
left=$(ps -o pid,args | grep '[p]adcell boot' || true)
[ -z "$left" ] || why="$why a sandbox VM is still running: $left;"
dirs=$(ls -d /tmp/padcell-mcp.* 2>/dev/null || true)
[ -z "$dirs" ] || why="$why its directory is left: $dirs;"
result cleanup "$why" "padcell mcp ended at the end of its input; no VM, no directory left"
[ "$fails" -eq 0 ]
