/*
 * Protocol 4, background processes: the encodings with their refusals, the real agent
 * (padcell-agent --listen-fd, with its process manager) driven over fresh connections by the
 * client library, malformed frames sent to the agent, and a fake agent's malformed answers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "vmm/util.h"
#include "tests/unit/agent_harness.h"

static uint8_t buf[AGENT_MAX_PAYLOAD];
static struct agent_start st;
static char err[400];

/* ---- encodings ---- */

Test(agent_procs_proto, start_round_trip_and_refusals)
{
	const char *argv[] = { "sh", "-c", "x", NULL };
	const char *env[] = { "A=1", NULL };
	int n = agent_start_encode(buf, sizeof(buf), AGENT_START_PTY, 30, 100, argv, env, "/tmp", "nobody");
	cr_assert_gt(n, 8);
	cr_assert_eq(agent_start_decode(buf, (size_t)n, &st), 0);
	cr_assert_eq(st.flags, AGENT_START_PTY);
	cr_assert_eq(st.rows, 30);
	cr_assert_eq(st.cols, 100);
	cr_assert_str_eq(st.e.argv[2], "x");
	cr_assert_str_eq(st.e.envv[0], "A=1");
	cr_assert_eq(agent_start_encode(buf, sizeof(buf), 4, 0, 0, argv, NULL, NULL, NULL), -EINVAL, "unknown flag");
	cr_assert_eq(agent_start_encode(buf, sizeof(buf), 0, 5000, 0, argv, NULL, NULL, NULL), -EINVAL, "rows");
	/* decode: an unknown flag, huge rows, a timeout, a cut payload */
	n = agent_start_encode(buf, sizeof(buf), 0, 0, 0, argv, NULL, NULL, NULL);
	buf[0] = 8;
	cr_assert_eq(agent_start_decode(buf, (size_t)n, &st), -EPROTO);
	buf[0] = 0;
	buf[5] = 0xff;
	cr_assert_eq(agent_start_decode(buf, (size_t)n, &st), -EPROTO);
	buf[5] = 0;
	buf[8] = 1; /* the EXEC payload's timeout_ms */
	cr_assert_eq(agent_start_decode(buf, (size_t)n, &st), -EPROTO);
	buf[8] = 0;
	cr_assert_eq(agent_start_decode(buf, (size_t)n - 1, &st), -EPROTO);
	cr_assert_eq(agent_start_decode(buf, 7, &st), -EPROTO);
	cr_assert_eq(agent_start_decode(buf, (size_t)n, &st), 0);
}

Test(agent_procs_proto, small_frames)
{
	uint8_t b[12];
	uint32_t id, v, stream;
	uint16_t r, c;
	uint64_t bytes;
	agent_id2_encode(b, 5, 9);
	cr_assert_eq(agent_id2_decode(b, 8, &id, &v), 0);
	cr_assert(id == 5 && v == 9);
	cr_assert_eq(agent_id2_decode(b, 7, &id, &v), -EPROTO);
	agent_id2_encode(b, 0, 9);
	cr_assert_eq(agent_id2_decode(b, 8, &id, &v), -EPROTO, "id 0");
	agent_resize_encode(b, 3, 40, 120);
	cr_assert_eq(agent_resize_decode(b, 8, &id, &r, &c), 0);
	cr_assert(id == 3 && r == 40 && c == 120);
	agent_resize_encode(b, 3, 0, 120);
	cr_assert_eq(agent_resize_decode(b, 8, &id, &r, &c), -EPROTO, "0 rows");
	agent_resize_encode(b, 3, 40, 60000);
	cr_assert_eq(agent_resize_decode(b, 8, &id, &r, &c), -EPROTO, "huge cols");
	agent_gap_encode(b, AGENT_STDERR, 77);
	cr_assert_eq(agent_gap_decode(b, 12, &stream, &bytes), 0);
	cr_assert(stream == AGENT_STDERR && bytes == 77);
	agent_gap_encode(b, AGENT_EXIT, 77);
	cr_assert_eq(agent_gap_decode(b, 12, &stream, &bytes), -EPROTO, "not a stream");
	agent_gap_encode(b, AGENT_STDOUT, 0);
	cr_assert_eq(agent_gap_decode(b, 12, &stream, &bytes), -EPROTO, "an empty gap");
}

Test(agent_procs_proto, proc_entries)
{
	struct agent_proc a = { .id = 1, .pid = 10, .state = AGENT_PROC_RUNNING }, b = { .id = 2, .pid = 11,
		.state = AGENT_PROC_EXITED, .how = AGENT_EXITED, .code = 3 }, e;
	snprintf(a.summary, sizeof(a.summary), "sleep 100");
	size_t off = 0;
	cr_assert_eq(agent_proc_encode(buf, sizeof(buf), &off, &a), 0);
	cr_assert_eq(agent_proc_encode(buf, sizeof(buf), &off, &b), 0);
	size_t len = off;
	off = 0;
	cr_assert_eq(agent_proc_next(buf, len, &off, &e), 1);
	cr_assert_str_eq(e.summary, "sleep 100");
	cr_assert_eq(agent_proc_next(buf, len, &off, &e), 1);
	cr_assert(e.id == 2 && e.code == 3 && e.summary[0] == '\0');
	cr_assert_eq(agent_proc_next(buf, len, &off, &e), 0);
	/* a summary length past the frame, a running entry with a code, exited with code 300, id 0 */
	off = 0;
	buf[20] = 0xff;
	cr_assert_eq(agent_proc_next(buf, len, &off, &e), -EPROTO);
	buf[20] = 9;
	buf[16] = 1;
	cr_assert_eq(agent_proc_next(buf, len, &off, &e), -EPROTO);
	buf[16] = 0;
	struct agent_proc bad = b;
	bad.code = 300;
	off = 0;
	cr_assert_eq(agent_proc_encode(buf, sizeof(buf), &off, &bad), -EINVAL);
	bad = a;
	bad.id = 0;
	cr_assert_eq(agent_proc_encode(buf, sizeof(buf), &off, &bad), -EINVAL);
	off = 0;
	cr_assert_eq(agent_proc_next(buf, 21, &off, &e), -EPROTO, "cut short");
}

/* ---- the real agent ---- */

static pid_t agent_pid;
static const char *name;

static void agent_up(const char *n)
{
	name = n;
	agent_pid = agent_spawn_listen(n);
}

static void agent_down(void)
{
	kill(agent_pid, SIGTERM);
	waitpid(agent_pid, NULL, 0);
}

static void dial(struct agent_conn *c)
{
	agent_conn_init(c, agent_dial(name), -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(c, now_ms() + 20000, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c->version, AGENT_PROTO_VERSION);
}

static uint32_t start(const char *const *argv, bool pty, bool keep_stdin, uint16_t rows, uint16_t cols)
{
	struct agent_conn c;
	dial(&c);
	struct agent_start_req r = { .exec = { .argv = (char *const *)argv }, .pty = pty, .keep_stdin = keep_stdin,
				     .rows = rows, .cols = cols };
	uint32_t id, pid;
	cr_assert_eq(agent_conn_start(&c, &r, &id, &pid, err, sizeof(err)), 0, "%s", err);
	cr_assert_gt(id, 0);
	cr_assert_gt(pid, 0);
	close(c.fd); /* the process outlives this connection */
	return id;
}

struct capture {
	char out[1 << 16], err[1 << 16];
	size_t nout, nerr;
	struct agent_attach_result res;
};

/* Reads a pipe to its end into b. */
static size_t slurp(int fd, char *b, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	while ((r = read(fd, b + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	b[n] = '\0';
	close(fd);
	return n;
}

/* Attaches on a fresh connection; stdout and stderr go through pipes read afterwards (small output). */
static int attach(uint32_t id, struct capture *cap)
{
	struct agent_conn c;
	dial(&c);
	int po[2], pe[2];
	cr_assert_eq(pipe(po), 0);
	cr_assert_eq(pipe(pe), 0);
	int rc = agent_conn_attach(&c, id, po[1], pe[1], &cap->res, err, sizeof(err));
	close(po[1]);
	close(pe[1]);
	cap->nout = slurp(po[0], cap->out, sizeof(cap->out));
	cap->nerr = slurp(pe[0], cap->err, sizeof(cap->err));
	close(c.fd);
	return rc;
}

/* A raw connection attached to id (the OK read), for holding an attachment. */
static int raw_attach(uint32_t id)
{
	int fd = agent_dial(name);
	struct agent_hdr h;
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), 0);
	uint8_t b[4];
	agent_u32_encode(b, id);
	cr_assert_eq(agent_write_frame(fd, AGENT_ATTACH, b, 4), 0);
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), 0);
	cr_assert_eq(h.type, AGENT_OK);
	return fd;
}

struct pslist {
	struct agent_proc p[AGENT_MAX_PROCS];
	unsigned n;
};

static int ps_each(void *arg, const struct agent_proc *p)
{
	struct pslist *l = arg;
	l->p[l->n++] = *p;
	return 0;
}

static struct agent_proc *ps_find(struct pslist *l, uint32_t id)
{
	struct agent_conn c;
	dial(&c);
	l->n = 0;
	cr_assert_eq(agent_conn_ps(&c, ps_each, l, err, sizeof(err)), 0, "%s", err);
	close(c.fd);
	for (unsigned i = 0; i < l->n; i++)
		if (l->p[i].id == id)
			return &l->p[i];
	return NULL;
}

/* Until process id has exited (a hang guard of 20 s, never a timing assertion). */
static struct agent_proc wait_exited(uint32_t id)
{
	static struct pslist l;
	for (int i = 0; i < 2000; i++) {
		struct agent_proc *p = ps_find(&l, id);
		cr_assert_not_null(p, "process %u is listed", id);
		if (p->state == AGENT_PROC_EXITED)
			return *p;
		usleep(10000);
	}
	cr_assert_fail("process %u did not exit in 20 s", id);
	return l.p[0];
}

static struct capture cap;
static struct pslist pl;

Test(agent_procs, outlives_its_connection_and_is_collected_by_attach)
{
	agent_up("outlive");
	const char *argv[] = { "sh", "-c", "echo out; echo err >&2; read x </dev/null; exit 7", NULL };
	uint32_t id = start(argv, false, false, 0, 0);
	struct agent_proc p = wait_exited(id);
	cr_assert_eq(p.how, AGENT_EXITED);
	cr_assert_eq(p.code, 7);
	cr_assert_str_eq(p.summary, "sh -c echo out; echo err >&2; read x </dev/null; exit 7");
	cr_assert_eq(attach(id, &cap), 0, "%s", err);
	cr_assert_str_eq(cap.out, "out\n");
	cr_assert_str_eq(cap.err, "err\n");
	cr_assert_eq(cap.res.how, AGENT_EXITED);
	cr_assert_eq(cap.res.code, 7);
	cr_assert_eq(cap.res.gap[0] + cap.res.gap[1], 0);
	cr_assert_null(ps_find(&pl, id), "collected by the attach that saw its EXIT");
	cr_assert_neq(attach(id, &cap), 0, "attaching to a collected process fails");
	cr_assert(strstr(err, "no process"), "%s", err);
	agent_down();
}

Test(agent_procs, live_output_stdin_streamed_and_a_second_attacher_refused)
{
	agent_up("stdin");
	const char *argv[] = { "sh", "-c", "while read l; do echo \"got $l\"; done; echo done", NULL };
	uint32_t id = start(argv, false, true, 0, 0);
	/* A child sends (no assertions in it: it is not criterion's) while this side is attached. */
	static char big[60000];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\n';
	int probe = agent_dial(name);
	pid_t kid = fork();
	if (kid == 0) {
		struct agent_conn c;
		agent_conn_init(&c, probe, -1, -1);
		struct agent_hello h;
		if (agent_conn_hello(&c, 0, &h, err, sizeof(err)))
			_exit(10);
		for (int i = 0; i < 3; i++) {
			char line[32];
			int n = snprintf(line, sizeof(line), "line%d\n", i);
			if (agent_conn_send(&c, id, line, (size_t)n, err, sizeof(err)))
				_exit(11);
		}
		/* A big write through the flow-controlled SEND too (more than a pipe holds at once). */
		if (agent_conn_send(&c, id, big, sizeof(big), err, sizeof(err)) ||
		    agent_conn_send(&c, id, NULL, 0, err, sizeof(err)))
			_exit(12);
		if (agent_conn_send(&c, id, "x", 1, err, sizeof(err)) != -EIO)
			_exit(13); /* stdin is closed */
		if (agent_conn_send(&c, 9999, "x", 1, err, sizeof(err)) != -EIO || !strstr(err, "no process 9999"))
			_exit(14);
		_exit(0);
	}
	close(probe);
	struct agent_conn a;
	dial(&a);
	int po[2];
	cr_assert_eq(pipe(po), 0);
	struct agent_attach_result r;
	int rc = agent_conn_attach(&a, id, po[1], -1, &r, err, sizeof(err));
	close(po[1]);
	int stt;
	cr_assert_eq(waitpid(kid, &stt, 0), kid);
	cr_assert(WIFEXITED(stt) && WEXITSTATUS(stt) == 0, "the sender ended with %x", stt);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(r.code, 0);
	/* A second attacher is refused while one is attached: shown with a process that stays. */
	const char *sl[] = { "sleep", "1000", NULL };
	uint32_t id2 = start(sl, false, false, 0, 0);
	int held = raw_attach(id2);
	cr_assert_neq(attach(id2, &cap), 0);
	cr_assert(strstr(err, "attached on another connection"), "%s", err);
	close(held);
	close(a.fd);
	static char out[1 << 17];
	size_t n = slurp(po[0], out, sizeof(out));
	cr_assert(!strncmp(out, "got line0\ngot line1\ngot line2\ngot bbb", 37), "%.60s", out);
	cr_assert_eq(n, 30 + 4 + sizeof(big) + 5, "all of it: %zu", n);
	cr_assert_str_eq(out + n - 5, "done\n");
	agent_down();
}

Test(agent_procs, signal_reaches_the_process_group)
{
	agent_up("signal");
	const char *argv[] = { "sh", "-c", "sleep 1000 & wait", NULL };
	uint32_t id = start(argv, false, false, 0, 0);
	struct agent_conn c;
	dial(&c);
	cr_assert_eq(agent_conn_kill(&c, id, SIGTERM, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_kill(&c, 4242, SIGTERM, err, sizeof(err)), -EIO);
	close(c.fd);
	/* The group's sleep is killed too, else its stdout would hold the attach open. */
	cr_assert_eq(attach(id, &cap), 0, "%s", err);
	cr_assert_eq(cap.res.how, AGENT_SIGNALED);
	cr_assert_eq(cap.res.code, SIGTERM);
	agent_down();
}

Test(agent_procs, pty_is_a_terminal_and_resize_is_seen)
{
	agent_up("pty");
	if (access("/dev/ptmx", R_OK | W_OK)) {
		agent_down();
		cr_skip_test("SKIP: no /dev/ptmx here, so no PTY to test");
	}
	const char *argv[] = { "sh", "-c", "test -t 0 && test -t 1 && echo istty; stty size; read x; stty size", NULL };
	uint32_t id = start(argv, true, false, 30, 100);
	struct agent_conn c;
	dial(&c);
	/* The first `stty size` may run before or after this resize; the one after `read` runs after it. */
	cr_assert_eq(agent_conn_resize(&c, id, 40, 120, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_send(&c, id, "go\n", 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_resize(&c, id, 0, 120, err, sizeof(err)), -EINVAL, "refused before sending");
	close(c.fd);
	cr_assert_eq(attach(id, &cap), 0, "%s", err);
	cr_assert_eq(cap.res.code, 0, "output: %s", cap.out);
	cr_assert(strstr(cap.out, "istty"), "%s", cap.out);
	cr_assert(strstr(cap.out, "40 120\r\n"), "the resize is seen: %s", cap.out);
	cr_assert_str_eq(cap.err, "", "a PTY's output is all stdout");
	/* RESIZE of a process without a terminal is an ERROR that leaves the connection usable. */
	const char *sl[] = { "sleep", "1000", NULL };
	uint32_t id2 = start(sl, false, false, 0, 0);
	dial(&c);
	cr_assert_eq(agent_conn_resize(&c, id2, 10, 10, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "no terminal"), "%s", err);
	cr_assert_eq(agent_conn_kill(&c, id2, SIGKILL, err, sizeof(err)), 0, "%s", err);
	close(c.fd);
	agent_down();
}

Test(agent_procs, ring_keeps_the_newest_and_counts_the_gap)
{
	agent_up("ring");
	const char *argv[] = { "sh", "-c", "head -c 2000000 /dev/zero; echo tail >&2", NULL };
	uint32_t id = start(argv, false, false, 0, 0);
	wait_exited(id);
	struct agent_conn c;
	dial(&c);
	int devnull = open("/dev/null", O_WRONLY);
	struct agent_attach_result r;
	cr_assert_eq(agent_conn_attach(&c, id, devnull, devnull, &r, err, sizeof(err)), 0, "%s", err);
	close(devnull);
	close(c.fd);
	cr_assert_eq(r.gap[0], 2000000 - AGENT_PROC_RING, "dropped: %llu", (unsigned long long)r.gap[0]);
	cr_assert_eq(r.gap[1], 0);
	agent_down();
}

Test(agent_procs, table_full_then_an_exited_one_makes_room)
{
	agent_up("full");
	const char *sl[] = { "sleep", "1000", NULL };
	const char *tr[] = { "true", NULL };
	uint32_t first = start(tr, false, false, 0, 0);
	wait_exited(first);
	for (unsigned i = 1; i < AGENT_MAX_PROCS; i++)
		start(sl, false, false, 0, 0);
	/* Full: the 65th drops the exited `true`. */
	uint32_t last = start(sl, false, false, 0, 0);
	cr_assert_null(ps_find(&pl, first), "the exited one made room");
	cr_assert_eq(pl.n, AGENT_MAX_PROCS);
	struct agent_conn c;
	dial(&c);
	struct agent_start_req req = { .exec = { .argv = (char *const *)sl } };
	uint32_t id, pid;
	cr_assert_eq(agent_conn_start(&c, &req, &id, &pid, err, sizeof(err)), -EIO, "all run: refused");
	cr_assert(strstr(err, "table is full"), "%s", err);
	/* The connection goes on after that ERROR. */
	cr_assert_eq(agent_conn_kill(&c, last, SIGKILL, err, sizeof(err)), 0, "%s", err);
	close(c.fd);
	agent_down();
}

Test(agent_procs, serve_fd_mode_has_no_process_manager)
{
	pid_t pid;
	int fd = agent_spawn(&pid);
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_ps(&c, NULL, NULL, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "process manager"), "%s", err);
	close(fd);
	waitpid(pid, NULL, 0);
}

/* ---- malformed frames to the agent ---- */

/* Sends one raw frame on c and reads the answer's header type. */
static uint16_t raw(int fd, uint16_t type, const void *p, uint32_t len)
{
	cr_assert_eq(agent_write_frame(fd, type, p, len), 0);
	struct agent_hdr h;
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), 0);
	return h.type;
}

static int raw_dial(void)
{
	int fd = agent_dial(name);
	struct agent_hdr h;
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), 0);
	cr_assert_eq(h.type, AGENT_HELLO);
	return fd;
}

Test(agent_procs, malformed_frames_to_the_agent)
{
	agent_up("malformed");
	uint8_t b[16] = { 0 };
	struct agent_hdr h;
	/* An unknown id: ERROR, and the connection goes on. */
	int fd = raw_dial();
	agent_u32_encode(b, 12345);
	cr_assert_eq(raw(fd, AGENT_ATTACH, b, 4), AGENT_ERROR);
	cr_assert_eq(raw(fd, AGENT_PLIST, NULL, 0), AGENT_PROCS, "the list's end at once: nothing runs");
	/* Malformed: ERROR, then the connection ends. */
	cr_assert_eq(raw(fd, AGENT_ATTACH, b, 3), AGENT_ERROR, "a cut id");
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), -EPIPE);
	close(fd);
	struct { uint16_t type; uint32_t len; uint8_t fill; } bad[] = {
		{ AGENT_START, 8, 0 },        /* no EXEC payload */
		{ AGENT_START, 40, 0xff },    /* flags and counts all set */
		{ AGENT_KILL, 8, 0 },         /* id 0, signal 0 */
		{ AGENT_RESIZE, 8, 0 },       /* id 0 */
		{ AGENT_SEND, 2, 1 },         /* shorter than its id */
		{ AGENT_PLIST, 1, 0 },        /* PLIST carries nothing */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = raw_dial();
		static uint8_t p[64];
		memset(p, bad[i].fill, sizeof(p));
		cr_assert_eq(raw(fd, bad[i].type, p, bad[i].len), AGENT_ERROR, "case %u", i);
		cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), -EPIPE, "case %u ends the connection", i);
		close(fd);
	}
	/* A KILL with signal 65, and a v3 frame once the connection is the process manager's. */
	fd = raw_dial();
	agent_id2_encode(b, 1, 65);
	cr_assert_eq(raw(fd, AGENT_KILL, b, 8), AGENT_ERROR);
	close(fd);
	fd = raw_dial();
	cr_assert_eq(raw(fd, AGENT_PLIST, NULL, 0), AGENT_PROCS);
	cr_assert_eq(raw(fd, AGENT_STAT, "/", 1), AGENT_ERROR, "only process frames now");
	close(fd);
	/* A frame on an attached connection ends it; the process stays. */
	const char *sl[] = { "sleep", "1000", NULL };
	uint32_t id = start(sl, false, false, 0, 0);
	fd = raw_dial();
	agent_u32_encode(b, id);
	cr_assert_eq(raw(fd, AGENT_ATTACH, b, 4), AGENT_OK);
	cr_assert_eq(raw(fd, AGENT_PLIST, NULL, 0), AGENT_ERROR);
	close(fd);
	cr_assert_not_null(ps_find(&pl, id));
	agent_down();
}

/* ---- a hostile agent's answers ---- */

/* A fake agent on a socket pair: HELLO of version v, then each reply of script after a request. */
struct fake_frame {
	uint16_t type;
	uint32_t len;
	const void *p;
};

static int fake_agent(uint32_t v, const struct fake_frame *script, unsigned n, pid_t *pid)
{
	int sp[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	*pid = fork();
	if (*pid == 0) {
		close(sp[0]);
		struct agent_hello h = { .version = v };
		uint8_t hb[AGENT_HELLO_LEN];
		agent_hello_encode(hb, &h);
		agent_write_frame(sp[1], AGENT_HELLO, hb, sizeof(hb));
		struct agent_hdr hd;
		if (agent_read_frame(sp[1], &hd, buf, sizeof(buf)))
			_exit(1);
		for (unsigned i = 0; i < n; i++)
			agent_write_frame(sp[1], script[i].type, script[i].p, script[i].len);
		while (read(sp[1], buf, sizeof(buf)) > 0)
			;
		_exit(0);
	}
	close(sp[1]);
	return sp[0];
}

static int fake_run(uint32_t v, const struct fake_frame *script, unsigned n, int (*call)(struct agent_conn *))
{
	pid_t pid;
	struct agent_conn c;
	agent_conn_init(&c, fake_agent(v, script, n, &pid), -1, -1);
	c.reply_ms = 5000;
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), 0, "%s", err);
	int rc = call(&c);
	close(c.fd);
	waitpid(pid, NULL, 0);
	return rc;
}

static int call_start(struct agent_conn *c)
{
	const char *argv[] = { "true", NULL };
	struct agent_start_req r = { .exec = { .argv = (char *const *)argv } };
	uint32_t id, pid;
	return agent_conn_start(c, &r, &id, &pid, err, sizeof(err));
}

static int call_ps(struct agent_conn *c)
{
	return agent_conn_ps(c, NULL, NULL, err, sizeof(err));
}

static int call_attach(struct agent_conn *c)
{
	struct agent_attach_result r;
	return agent_conn_attach(c, 1, -1, -1, &r, err, sizeof(err));
}

Test(agent_procs_hostile, a_v3_agent_is_told_apart)
{
	cr_assert_eq(fake_run(3, NULL, 0, call_start), -EOPNOTSUPP);
	cr_assert(strstr(err, "protocol 4") && strstr(err, "speaks 3"), "%s", err);
	cr_assert_eq(fake_run(3, NULL, 0, call_ps), -EOPNOTSUPP);
}

Test(agent_procs_hostile, malformed_answers)
{
	uint8_t id0[8], ok[8];
	agent_id2_encode(id0, 0, 5);
	agent_id2_encode(ok, 1, 0); /* pid 0 */
	struct fake_frame s1[] = { { AGENT_PROC, 8, id0 } };
	cr_assert_eq(fake_run(4, s1, 1, call_start), -EPROTO, "id 0");
	struct fake_frame s2[] = { { AGENT_PROC, 8, ok } };
	cr_assert_eq(fake_run(4, s2, 1, call_start), -EPROTO, "pid 0");
	struct fake_frame s3[] = { { AGENT_PROC, 4, ok } };
	cr_assert_eq(fake_run(4, s3, 1, call_start), -EPROTO, "cut short");
	/* PROCS: a bad entry; more than AGENT_MAX_PROCS entries over several frames */
	static uint8_t ents[AGENT_MAX_PAYLOAD];
	size_t off = 0;
	struct agent_proc e = { .id = 1, .pid = 2, .state = AGENT_PROC_RUNNING };
	for (unsigned i = 0; i < 40; i++)
		cr_assert_eq(agent_proc_encode(ents, sizeof(ents), &off, &e), 0);
	struct fake_frame s4[] = { { AGENT_PROCS, (uint32_t)off, ents }, { AGENT_PROCS, (uint32_t)off, ents },
				   { AGENT_PROCS, 0, NULL } };
	cr_assert_eq(fake_run(4, s4, 3, call_ps), -EPROTO, "80 entries");
	cr_assert(strstr(err, "more than"), "%s", err);
	struct fake_frame s5[] = { { AGENT_PROCS, (uint32_t)off - 1, ents } };
	cr_assert_eq(fake_run(4, s5, 1, call_ps), -EPROTO, "a cut entry");
	struct fake_frame s6[] = { { AGENT_STDOUT, 3, "abc" } };
	cr_assert_eq(fake_run(4, s6, 1, call_ps), -EPROTO, "not PROCS");
	/* ATTACH: OK, then a bad GAP / an EXIT with a timeout / a foreign frame */
	uint8_t gap[12], x[8];
	agent_gap_encode(gap, AGENT_STDOUT, 0);
	agent_exit_encode(x, AGENT_TIMEDOUT, 0);
	struct fake_frame s7[] = { { AGENT_OK, 0, NULL }, { AGENT_GAP, 12, gap } };
	cr_assert_eq(fake_run(4, s7, 2, call_attach), -EPROTO, "empty gap");
	struct fake_frame s8[] = { { AGENT_OK, 0, NULL }, { AGENT_EXIT, 8, x } };
	cr_assert_eq(fake_run(4, s8, 2, call_attach), -EPROTO, "a background process has no timeout");
	struct fake_frame s9[] = { { AGENT_OK, 0, NULL }, { AGENT_PROCS, 0, NULL } };
	cr_assert_eq(fake_run(4, s9, 2, call_attach), -EPROTO, "a foreign frame");
	struct fake_frame s10[] = { { AGENT_PROC, 8, ok } };
	cr_assert_eq(fake_run(4, s10, 1, call_attach), -EPROTO, "no OK first");
	agent_exit_encode(x, AGENT_EXITED, 4);
	struct fake_frame s11[] = { { AGENT_OK, 0, NULL }, { AGENT_STDOUT, 2, "hi" }, { AGENT_EXIT, 8, x } };
	cr_assert_eq(fake_run(4, s11, 3, call_attach), 0, "%s", err);
}

/* ---- the CLI: exec --background, ps, attach, kill, exec --pty, through a vsock-style socket ---- */

static struct sockaddr_un agent_sa; /* the agent's address, named after the test's pid: set before forking */
static socklen_t agent_sa_len;

/* Relays one connection: the CONNECT line answered, then bytes both ways until either side ends. */
static void proxy_one(int c)
{
	char line[64];
	size_t n = 0;
	while (n < sizeof(line) - 1 && read(c, line + n, 1) == 1 && line[n] != '\n')
		n++;
	int a = socket(AF_UNIX, SOCK_STREAM, 0);
	if (a < 0 || connect(a, (struct sockaddr *)&agent_sa, agent_sa_len) < 0 || write(c, "OK 1\n", 5) != 5)
		_exit(1);
	static char b[65536];
	for (;;) {
		struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = a, .events = POLLIN } };
		if (poll(p, 2, -1) < 0)
			_exit(1);
		for (int i = 0; i < 2; i++) {
			if (!p[i].revents)
				continue;
			ssize_t r = read(p[i].fd, b, sizeof(b));
			if (r <= 0 || write(p[1 - i].fd, b, (size_t)r) != r)
				_exit(0);
		}
	}
}

static char vsock_path[108];

static pid_t proxy_spawn(void)
{
	agent_listen_addr(&agent_sa, &agent_sa_len, name);
	snprintf(vsock_path, sizeof(vsock_path), "/tmp/padcell-procs-%d.sock", (int)getpid());
	unlink(vsock_path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vsock_path);
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 16), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGCHLD, SIG_IGN);
		for (;;) {
			int c = accept(l, NULL, NULL);
			if (c < 0)
				continue;
			if (fork() == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				proxy_one(c);
				_exit(0);
			}
			close(c);
		}
	}
	close(l);
	return pid;
}

/* Runs padcell with args (a shell word list), stdin from /dev/null; its stdout into out, the exit code. */
static int padcell_sh(char *out, size_t ocap, char *errout, size_t ecap, const char *args)
{
	char exe[PATH_MAX], cmd[PATH_MAX * 2];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	char efile[64];
	snprintf(efile, sizeof(efile), "/tmp/padcell-procs-%d.err", (int)getpid());
	snprintf(cmd, sizeof(cmd), "%s/../padcell %s </dev/null 2>%s", exe, args, efile);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	size_t got = fread(out, 1, ocap - 1, f);
	out[got] = '\0';
	int status = pclose(f);
	FILE *e = fopen(efile, "r");
	size_t eg = e ? fread(errout, 1, ecap - 1, e) : 0;
	errout[eg] = '\0';
	if (e)
		fclose(e);
	unlink(efile);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static char o[8192], e[8192], args[1024];

#define PC(...) (snprintf(args, sizeof(args), __VA_ARGS__), padcell_sh(o, sizeof(o), e, sizeof(e), args))

Test(agent_procs_cli, background_ps_attach_kill_pty_and_usage_errors)
{
	agent_up("cli");
	pid_t proxy = proxy_spawn();
	const char *v = vsock_path;
	cr_assert_eq(PC("exec --vsock %s --background -- sh -c 'echo hi; echo oops >&2; exit 3'", v), 0, "%s", e);
	cr_assert_str_eq(o, "1\n");
	wait_exited(1);
	cr_assert_eq(PC("ps --vsock %s", v), 0, "%s", e);
	cr_assert(strstr(o, "ID") && strstr(o, "exited 3") && strstr(o, "sh -c echo hi;"), "%s", o);
	cr_assert_eq(PC("attach --vsock %s 1", v), 3, "the process's exit code: %s", e);
	cr_assert_str_eq(o, "hi\n");
	cr_assert_str_eq(e, "oops\n");
	cr_assert_eq(PC("attach --vsock %s 1", v), 125, "collected");
	cr_assert(strstr(e, "no process 1"), "%s", e);
	cr_assert_eq(PC("exec --vsock %s --background -- sleep 1000", v), 0, "%s", e);
	cr_assert_str_eq(o, "2\n");
	cr_assert_eq(PC("kill --vsock %s --signal KILL 2", v), 0, "%s", e);
	cr_assert_eq(PC("attach --vsock %s 2", v), 128 + SIGKILL);
	cr_assert_eq(PC("kill --vsock %s 2", v), 125, "gone");
	/* exec --pty with a stdin that is not a terminal: a PTY in the guest all the same */
	cr_assert_eq(PC("exec --vsock %s --pty -- sh -c 'test -t 0 && test -t 1 && echo onatty; exit 4'", v), 4, "%s", e);
	cr_assert_str_eq(o, "onatty\r\n");
	/* exec --pty on a host terminal: its size is the guest's, raw while it runs, restored after */
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	cr_assert_geq(m, 0);
	cr_assert_eq(grantpt(m), 0);
	cr_assert_eq(unlockpt(m), 0);
	int sl = open(ptsname(m), O_RDWR | O_NOCTTY);
	cr_assert_geq(sl, 0);
	struct winsize ws = { .ws_row = 33, .ws_col = 77 };
	cr_assert_eq(ioctl(sl, TIOCSWINSZ, &ws), 0);
	struct termios before, after;
	cr_assert_eq(tcgetattr(sl, &before), 0);
	char exe[PATH_MAX], pc[PATH_MAX + 16];
	ssize_t en = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(en, 0);
	exe[en] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(pc, sizeof(pc), "%s/../padcell", exe);
	pid_t kid = fork();
	if (kid == 0) {
		dup2(sl, 0);
		dup2(sl, 1);
		dup2(sl, 2);
		execl(pc, pc, "exec", "--vsock", v, "--pty", "--", "sh", "-c", "stty size; echo ok", (char *)NULL);
		_exit(127);
	}
	int kst;
	cr_assert_eq(waitpid(kid, &kst, 0), kid);
	cr_assert(WIFEXITED(kst) && WEXITSTATUS(kst) == 0, "exec --pty ended with %x", kst);
	cr_assert_eq(tcgetattr(sl, &after), 0);
	cr_assert_eq(after.c_lflag, before.c_lflag, "the terminal's mode is restored");
	cr_assert_eq(after.c_iflag, before.c_iflag);
	close(sl);
	static char tout[4096];
	size_t tn = 0;
	ssize_t r;
	while (tn < sizeof(tout) - 1 && (r = read(m, tout + tn, sizeof(tout) - 1 - tn)) > 0)
		tn += (size_t)r;
	tout[tn] = '\0';
	close(m);
	cr_assert(strstr(tout, "33 77\r\n") && strstr(tout, "ok\r\n"), "%s", tout);
	/* usage errors: one line, exit 2 */
	const char *bad[] = {
		"attach --vsock %s", "attach --vsock %s abc", "attach --vsock %s 0", "kill --vsock %s --signal BOGUS 1",
		"kill --vsock %s --signal 65 1", "ps --vsock %s extra", "exec --vsock %s --background --timeout 5 -- true",
		"exec --vsock %s --background --no-stdin -- true", "attach 1%s",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(PC(bad[i], i == sizeof(bad) / sizeof(bad[0]) - 1 ? "" : v), 2, "case %u: %s", i, e);
		cr_assert(!strncmp(e, "padcell: ", 9) && strchr(e, '\n') == e + strlen(e) - 1, "one line: %s", e);
	}
	kill(proxy, SIGKILL);
	waitpid(proxy, NULL, 0);
	unlink(vsock_path);
	agent_down();
}
