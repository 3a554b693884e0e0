/*
 * A host client that speaks Firecracker's vsock Unix-socket protocol by hand, the way existing
 * tools do: connect to the VM's socket, write "CONNECT 1024\n", read "OK <hostport>\n", then talk to
 * the guest agent on that stream (its HELLO, then `echo raw-ok`).  Used by tests/nested/run-run.sh.
 * Usage: rawconnect VSOCK_PATH     exit 0 and one line of findings, or 1 and what went wrong
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest/agent/proto.h"

static uint8_t buf[AGENT_MAX_PAYLOAD];

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: rawconnect VSOCK_PATH\n");
		return 2;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		return 1;
	}
	if (write(fd, "CONNECT 1024\n", 13) != 13) {
		perror("write");
		return 1;
	}
	char line[64];
	size_t n = 0;
	while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1 && line[n++] != '\n')
		;
	line[n] = '\0';
	unsigned port;
	if (sscanf(line, "OK %u\n", &port) != 1) {
		printf("no OK line: '%s'\n", line);
		return 1;
	}
	struct agent_hdr h;
	struct agent_hello hello;
	if (agent_read_frame(fd, &h, buf, sizeof(buf)) || h.type != AGENT_HELLO || agent_hello_decode(buf, h.len, &hello)) {
		printf("OK %u but no HELLO\n", port);
		return 1;
	}
	const char *cmd[] = { "echo", "raw-ok", NULL };
	int len = agent_exec_encode(buf, sizeof(buf), cmd, NULL, NULL, NULL, 0, 0);
	if (len < 0 || agent_write_frame(fd, AGENT_EXEC, buf, (uint32_t)len))
		return 1;
	char out[64] = "";
	for (;;) {
		if (agent_read_frame(fd, &h, buf, sizeof(buf))) {
			printf("connection ended before EXIT\n");
			return 1;
		}
		if (h.type == AGENT_STDOUT && h.len < sizeof(out) - strlen(out))
			strncat(out, (char *)buf, h.len);
		if (h.type == AGENT_EXIT)
			break;
	}
	out[strcspn(out, "\n")] = '\0';
	printf("CONNECT 1024 -> OK %u, HELLO version %u, echo printed '%s'\n", port, hello.version, out);
	return strcmp(out, "raw-ok") ? 1 : 0;
}
