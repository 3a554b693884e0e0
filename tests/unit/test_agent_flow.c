/*
 * Guest agent flow control: the real agent (--serve-fd) and the client library with stdin and
 * output both in full flow, signals and a vanished host behind stdin the command never reads, the
 * stdin window enforced, and nothing of the agent's leaking into the command.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "tests/unit/agent_harness.h"

static pid_t agent_pid;
static char err[512];

/* The agent on a socket pair, its HELLO read; returns the host's end. */
static int flow_start_agent(void)
{
	int fd = agent_spawn(&agent_pid);
	struct agent_hello h;
	cr_assert_eq(agent_hello(fd, &h, err, sizeof(err)), 0, "%s", err);
	return fd;
}

/* A hang guard only: how long a loaded machine may take for the agent to exit or a pid to appear. */
#define FLOW_HANG_MS 20000

/* Waits up to ms for the agent to exit; true if it did. */
static bool flow_agent_gone(int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(agent_pid, NULL, WNOHANG) == agent_pid)
			return true;
		usleep(10000);
	}
	return false;
}

static int flow_tmpfile(void)
{
	char t[] = "/tmp/padcell-agent-flow.XXXXXX";
	int fd = mkstemp(t);
	cr_assert_geq(fd, 0);
	unlink(t);
	return fd;
}

/* A file of n pseudo-random bytes (seeded), positioned at 0. */
static int flow_pattern_file(size_t n, unsigned seed)
{
	int fd = flow_tmpfile();
	uint8_t *p = malloc(n);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
	free(p);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static bool flow_same(int a, int b)
{
	off_t na = lseek(a, 0, SEEK_END), nb = lseek(b, 0, SEEK_END);
	if (na != nb)
		return false;
	static uint8_t ba[1 << 16], bb[1 << 16];
	for (off_t off = 0; off < na; off += (off_t)sizeof(ba)) {
		size_t n = (size_t)(na - off) < sizeof(ba) ? (size_t)(na - off) : sizeof(ba);
		if (pread(a, ba, n, off) != (ssize_t)n || pread(b, bb, n, off) != (ssize_t)n || memcmp(ba, bb, n))
			return false;
	}
	return true;
}

/*
 * `cat` with megabytes in and out at once: both directions of the connection full at the same
 * time.  A client that blocked writing stdin while the agent blocked writing stdout hung here in
 * about 2 runs out of 5; five runs must all finish, byte for byte.
 */
Test(agent_flow, stdin_and_stdout_in_full_flow, .timeout = 90)
{
	for (unsigned run = 0; run < 5; run++) {
		int in = flow_pattern_file(6u << 20, run), out = flow_tmpfile(), errf = flow_tmpfile();
		int fd = flow_start_agent();
		char *argv[] = { "cat", NULL };
		struct agent_exec_req req = { .argv = argv, .stdin_fd = in };
		struct agent_exec_result res = { 0 };
		cr_assert_eq(agent_exec(fd, &req, out, errf, -1, &res, err, sizeof(err)), 0, "run %u: %s", run, err);
		cr_assert_eq(res.how, AGENT_EXITED);
		cr_assert_eq(res.code, 0);
		cr_assert(flow_same(in, out), "run %u: stdout is not stdin", run);
		close(fd);
		cr_assert(flow_agent_gone(FLOW_HANG_MS));
		close(in);
		close(out);
		close(errf);
	}
}

/* A command that stops reading early (head) still ends, with what it read. */
Test(agent_flow, command_closing_stdin_early, .timeout = 30)
{
	int in = flow_pattern_file(4u << 20, 7), out = flow_tmpfile(), errf = flow_tmpfile();
	int fd = flow_start_agent();
	char *argv[] = { "head", "-c", "1000", NULL };
	struct agent_exec_req req = { .argv = argv, .stdin_fd = in };
	struct agent_exec_result res = { 0 };
	cr_assert_eq(agent_exec(fd, &req, out, errf, -1, &res, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(res.how, AGENT_EXITED);
	cr_assert_eq(res.code, 0);
	cr_assert_eq(lseek(out, 0, SEEK_END), 1000);
	close(fd);
	cr_assert(flow_agent_gone(FLOW_HANG_MS));
}

struct later_signal {
	int fd;
	int signo;
	int ms;
};

/* Writes one signalfd record into a pipe after a delay: agent_exec reads sig_fd as a signalfd. */
static void *flow_signal_later(void *arg)
{
	struct later_signal *l = arg;
	usleep((useconds_t)l->ms * 1000);
	struct signalfd_siginfo si = { .ssi_signo = (uint32_t)l->signo };
	if (write(l->fd, &si, sizeof(si)) != sizeof(si))
		abort();
	return NULL;
}

static double flow_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The command never reads its stdin and megabytes of it wait: a signal from the host must still
 * reach it at once (it used to queue behind the stdin nobody read, forever).
 */
Test(agent_flow, signal_behind_unread_stdin, .timeout = 30)
{
	int in = flow_pattern_file(8u << 20, 3), out = flow_tmpfile(), errf = flow_tmpfile();
	int sp[2];
	cr_assert_eq(pipe(sp), 0);
	int fd = flow_start_agent();
	char *argv[] = { "sleep", "20", NULL };
	struct agent_exec_req req = { .argv = argv, .stdin_fd = in };
	struct agent_exec_result res = { 0 };
	struct later_signal l = { .fd = sp[1], .signo = SIGTERM, .ms = 300 };
	pthread_t t;
	pthread_create(&t, NULL, flow_signal_later, &l);
	double t0 = flow_now();
	cr_assert_eq(agent_exec(fd, &req, out, errf, sp[0], &res, err, sizeof(err)), 0, "%s", err);
	pthread_join(t, NULL);
	cr_assert_eq(res.how, AGENT_SIGNALED);
	cr_assert_eq(res.code, SIGTERM);
	/* Well before `sleep 20` would have ended by itself: the signal did not wait behind stdin. */
	cr_assert_lt(flow_now() - t0, 15.0, "the signal took %.1f s", flow_now() - t0);
	close(fd);
	cr_assert(flow_agent_gone(FLOW_HANG_MS));
}

/* Reads frames until one of type t (true) or the end of the stream (false). */
static bool flow_read_until(int fd, uint16_t t)
{
	static uint8_t p[AGENT_MAX_PAYLOAD];
	struct agent_hdr h;
	while (agent_read_frame(fd, &h, p, sizeof(p)) == 0)
		if (h.type == t)
			return true;
	return false;
}

static pid_t flow_read_pid(const char *path)
{
	for (int i = 0; i < FLOW_HANG_MS / 10; i++) {
		FILE *f = fopen(path, "r");
		int pid = 0;
		if (f && fscanf(f, "%d", &pid) == 1 && pid > 0) {
			fclose(f);
			return pid;
		}
		if (f)
			fclose(f);
		usleep(10000);
	}
	cr_assert(false, "%s never got the command's pid", path);
	return -1;
}

/* Starts `sh -c 'echo $$ > PIDFILE; exec sleep 30'` with stdin on the raw protocol. */
static pid_t flow_raw_exec_sleeper(int fd, char *pidfile, size_t cap)
{
	snprintf(pidfile, cap, "/tmp/padcell-agent-flow-pid.%d", getpid());
	unlink(pidfile);
	char script[256];
	snprintf(script, sizeof(script), "echo $$ > %s; exec sleep 30", pidfile);
	const char *argv[] = { "sh", "-c", script, NULL };
	static uint8_t b[AGENT_MAX_PAYLOAD];
	int n = agent_exec_encode(b, sizeof(b), argv, NULL, NULL, NULL, 0, AGENT_EXEC_STDIN);
	cr_assert_gt(n, 0);
	cr_assert_eq(agent_write_frame(fd, AGENT_EXEC, b, (uint32_t)n), 0);
	return flow_read_pid(pidfile);
}

/*
 * The host vanishes while its stdin waits for a command that never reads it: the agent still sees
 * the connection end and kills the command (it used to stop reading the host and miss it).
 */
Test(agent_flow, host_gone_behind_unread_stdin_kills_the_command, .timeout = 30)
{
	int fd = flow_start_agent();
	char pidfile[128];
	pid_t cmd = flow_raw_exec_sleeper(fd, pidfile, sizeof(pidfile));
	static uint8_t chunk[AGENT_MAX_PAYLOAD];
	memset(chunk, 'x', sizeof(chunk));
	/* The whole window: more than the command's pipe holds. */
	for (unsigned i = 0; i < AGENT_STDIN_WINDOW / sizeof(chunk); i++)
		cr_assert_eq(agent_write_frame(fd, AGENT_STDIN, chunk, sizeof(chunk)), 0);
	usleep(100000);
	cr_assert_eq(kill(cmd, 0), 0, "the command should still run");
	close(fd);
	cr_assert(flow_agent_gone(FLOW_HANG_MS), "the agent did not notice the host left");
	cr_assert_neq(kill(cmd, 0), 0, "the command %d outlived its host", cmd);
	unlink(pidfile);
}

/* A host that sends more stdin than the window without acknowledgement is cut off. */
Test(agent_flow, stdin_window_overrun_is_refused, .timeout = 30)
{
	signal(SIGPIPE, SIG_IGN); /* the agent hangs up mid-overrun */
	int fd = flow_start_agent();
	char pidfile[128];
	pid_t cmd = flow_raw_exec_sleeper(fd, pidfile, sizeof(pidfile));
	static uint8_t chunk[AGENT_MAX_PAYLOAD];
	memset(chunk, 'y', sizeof(chunk));
	/* The agent's window plus what the pipe absorbed: keep going until it refuses. */
	for (unsigned i = 0; i < 64; i++)
		if (agent_write_frame(fd, AGENT_STDIN, chunk, sizeof(chunk)))
			break;
	cr_assert(flow_read_until(fd, AGENT_ERROR), "no ERROR for a window overrun");
	cr_assert(flow_agent_gone(FLOW_HANG_MS));
	cr_assert_neq(kill(cmd, 0), 0, "the command %d survived", cmd);
	close(fd);
	unlink(pidfile);
}

/* The agent's own descriptors (here its --serve-fd connection, fd 3) never reach the command. */
Test(agent_flow, command_inherits_only_stdio, .timeout = 30)
{
	int out = flow_tmpfile(), errf = flow_tmpfile();
	int fd = flow_start_agent();
	char *argv[] = { "sh", "-c", "for f in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$f ] && echo open $f; done; echo end", NULL };
	struct agent_exec_req req = { .argv = argv, .stdin_fd = -1 };
	struct agent_exec_result res = { 0 };
	cr_assert_eq(agent_exec(fd, &req, out, errf, -1, &res, err, sizeof(err)), 0, "%s", err);
	char buf[256] = { 0 };
	cr_assert_gt(pread(out, buf, sizeof(buf) - 1, 0), 0);
	cr_assert_str_eq(buf, "end\n");
	close(fd);
	cr_assert(flow_agent_gone(FLOW_HANG_MS));
}

Test(agent_flow, stdin_ack_and_u32_payloads)
{
	uint8_t b[4];
	uint32_t v = 0;
	agent_u32_encode(b, 0x12345678u);
	cr_assert_eq(agent_u32_decode(b, 4, &v), 0);
	cr_assert_eq(v, 0x12345678u);
	cr_assert_eq(b[0], 0x78, "little-endian");
	cr_assert_eq(agent_u32_decode(b, 3, &v), -EPROTO);
	cr_assert_eq(agent_u32_decode(b, 5, &v), -EPROTO);
	uint8_t h[AGENT_HDR_LEN];
	struct agent_hdr d;
	agent_hdr_encode(h, 4, AGENT_STDIN_ACK, 0);
	cr_assert_eq(agent_hdr_decode(h, &d), 0);
	cr_assert_eq(d.type, AGENT_STDIN_ACK);
}

/* Guest paths are absolute: a relative one would depend on the agent's own working directory. */
Test(agent_flow, guest_paths_are_absolute)
{
	uint8_t b[64];
	char path[64];
	uint32_t mode;
	cr_assert_lt(agent_put_encode(b, sizeof(b), 0644, "tmp/f"), 0);
	b[0] = 0xa4, b[1] = 0x01, b[2] = 0, b[3] = 0;
	memcpy(b + 4, "tmp/f", 5);
	cr_assert_eq(agent_put_decode(b, 9, &mode, path, sizeof(path)), -EPROTO);
	cr_assert_eq(agent_path_decode((const uint8_t *)"tmp/f", 5, path, sizeof(path)), -EPROTO);
	cr_assert_eq(agent_path_decode((const uint8_t *)"/tmp/f", 6, path, sizeof(path)), 0);
	cr_assert_str_eq(path, "/tmp/f");
}
