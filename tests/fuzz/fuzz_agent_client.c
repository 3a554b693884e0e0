/* Fuzzes the host's agent client (vmm/agent/agent_client.c): HELLO, SYNC, EXEC with its streams, file copies, a watch and poweroff against agent frames from the input. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/agent/agent_client.h"

static int null_rd = -1, null_wr = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	null_rd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	null_wr = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null_rd < 0 || null_wr < 0)
		abort();
	return 0;
}

/*
 * Input: u8 op, then what "the agent" sends: frames, written to the agent's end of a socket pair
 * before the call (the end then shut for writing, so every call finishes).  op bit 7: read the
 * HELLO first, as every command does; bits 0-2: the call (7 with bit 6: a watch instead of a LIST).
 */
/* What a watch hands on is what the protocol allows, whatever the agent sent. */
static int watch_each(void *arg, const struct agent_wevent *e)
{
	bool named = (e->kind >= AGENT_WEV_CREATE && e->kind <= AGENT_WEV_CHMOD) || e->kind == AGENT_WEV_UNWATCHED;
	if (named ? !agent_wevent_name_ok(e->name, strlen(e->name)) : e->name[0])
		abort();
	if ((e->kind == AGENT_WEV_LOST) != (e->lost != 0) || (!named && e->kind != AGENT_WEV_LOST && e->kind != AGENT_WEV_OVERFLOW))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_fds_begin();
	uint8_t op = data[0];
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
		abort();
	/* Room for what the client sends back (an EXEC frame, a few STDIN frames). */
	int big = 1 << 20;
	setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	size_t off = 1;
	while (off < size) {
		ssize_t w = send(sp[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	shutdown(sp[1], SHUT_WR);

	char err[512];
	int rc = 0;
	if (op & 0x80) {
		struct agent_hello hello;
		rc = agent_hello(sp[0], &hello, err, sizeof(err));
	}
	if (rc == 0) {
		switch (op & 7) {
		case 0:
			agent_sync(sp[0], err, sizeof(err));
			break;
		case 1:
		case 2: {
			char *argv[] = { "/bin/sh", "-c", "echo hi", NULL };
			char *env[] = { "A=b", NULL };
			struct agent_exec_req req = { .argv = argv, .env = env, .cwd = "/tmp", .user = "1000:1000",
						      .timeout_ms = 1000, .stdin_fd = (op & 7) == 2 ? null_rd : -1 };
			struct agent_exec_result res;
			if (agent_exec(sp[0], &req, null_wr, null_wr, -1, &res, err, sizeof(err)) == 0 &&
			    (res.how < AGENT_EXITED || res.how > AGENT_TIMEDOUT))
				abort();
			break;
		}
		case 3:
			agent_put_file(sp[0], null_rd, "/tmp/x", 0644, err, sizeof(err));
			break;
		case 4:
			agent_get_file(sp[0], "/etc/hostname", null_wr, err, sizeof(err));
			break;
		case 5:
			agent_poweroff(sp[0], err, sizeof(err));
			break;
		case 6: {
			struct agent_conn c;
			struct agent_entry e;
			agent_conn_init(&c, sp[0], -1, -1);
			if (agent_conn_stat(&c, "/etc", &e, err, sizeof(err)) == 0 && !e.name[0])
				abort();
			break;
		}
		default: {
			struct agent_conn c;
			agent_conn_init(&c, sp[0], -1, -1);
			if (op & 0x40) {
				c.version = AGENT_PROTO_VERSION;
				if (agent_conn_watch(&c, "/tmp", true, err, sizeof(err)) == 0)
					agent_conn_watch_read(&c, 0, watch_each, NULL, err, sizeof(err));
				break;
			}
			c.list_max = 4096;
			agent_conn_list(&c, "/", NULL, NULL, err, sizeof(err));
			break;
		}
		}
	}
	close(sp[0]);
	close(sp[1]);
	fuzz_fds_end();
	return 0;
}
