/*
 * Every wait on the agent is bounded and interruptible (issue 11, class 1): a fake hostile agent
 * on a Unix socket speaks Firecracker's CONNECT line and then misbehaves — half a frame header,
 * HELLO and silence, EXEC and no EXIT, an absurd length — against build/padcell exec and cp, and
 * the same waits in-process with short bounds.  No assertion depends on speed: each checks that
 * padcell ended, with which code and message; a hang guard (HANG_S) is the only clock.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "vmm/cmd/run.h"
#include "vmm/util.h"
#include "vmm/vm.h"

#define HANG_S 40 /* a hang guard, not a speed test: a slow machine must not fail a correct program */

/* ---- the fake agent ---- */

enum fake_mode {
	FAKE_HALF_HEADER,  /* 3 bytes of a frame header, then silence */
	FAKE_HELLO_SILENT, /* HELLO, then reads and answers nothing */
	FAKE_NO_EXIT,      /* HELLO, takes EXEC (and SIGNALs), never sends EXIT */
	FAKE_ABSURD_LEN,   /* HELLO, then a header with length 0xffffffff */
	FAKE_ERROR_ESC,    /* HELLO, then ERROR with terminal escapes for the first request */
	FAKE_BAD_CONNECT,  /* answers CONNECT with terminal escapes instead of OK */
	FAKE_GET_FOREVER,  /* HELLO, then DATA for a GET without end (until the host hangs up) */
};

/* What a hostile agent would like the host's terminal to do: clear it, set its title, overwrite. */
#define HOSTILE_TEXT "\x1b[2J\x1b]0;pwned\x07\rgone\b\x9b" "31m"

struct fake {
	pid_t pid;
	int report; /* what the fake did: 'S' it went silent, 'G' a SIGNAL frame came, 'E' its peer hung up */
	char dir[64];
	char path[96];
};

static void fake_put(int rep, char c)
{
	if (write(rep, &c, 1) != 1)
		_exit(3);
}

static void fake_serve(int c, enum fake_mode m, int rep)
{
	char line[64];
	size_t got = 0;
	while (got < sizeof(line) - 1 && read(c, line + got, 1) == 1 && line[got++] != '\n')
		;
	if (m == FAKE_BAD_CONNECT) {
		static const char bad[] = "\x1b[2J\x1b]0;pwned\x07\n";
		if (write(c, bad, sizeof(bad) - 1) != (ssize_t)sizeof(bad) - 1)
			return;
		fake_put(rep, 'S');
		while (read(c, line, sizeof(line)) > 0)
			;
		fake_put(rep, 'E');
		return;
	}
	if (write(c, "OK 1\n", 5) != 5)
		return;
	uint8_t hdr[AGENT_HDR_LEN], hb[AGENT_HELLO_LEN];
	if (m == FAKE_HALF_HEADER) {
		agent_hdr_encode(hdr, AGENT_HELLO_LEN, AGENT_HELLO, 0);
		if (write(c, hdr, 3) != 3)
			return;
	} else {
		struct agent_hello h = { .version = AGENT_PROTO_VERSION };
		agent_hello_encode(hb, &h);
		agent_write_frame(c, AGENT_HELLO, hb, sizeof(hb));
	}
	if (m == FAKE_ABSURD_LEN) {
		memset(hdr, 0xff, 4);
		hdr[4] = AGENT_STDOUT, hdr[5] = hdr[6] = hdr[7] = 0;
		if (write(c, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
			return;
	}
	static uint8_t p[AGENT_MAX_PAYLOAD];
	struct agent_hdr h;
	if (m == FAKE_ERROR_ESC || m == FAKE_GET_FOREVER) {
		if (agent_read_frame(c, &h, p, sizeof(p)))
			return;
		fake_put(rep, 'S');
		if (m == FAKE_ERROR_ESC) {
			agent_write_frame(c, AGENT_ERROR, HOSTILE_TEXT, sizeof(HOSTILE_TEXT) - 1);
		} else {
			memset(p, 'x', sizeof(p));
			while (agent_write_frame(c, AGENT_DATA, p, sizeof(p)) == 0)
				;
		}
		while (read(c, p, sizeof(p)) > 0)
			;
		fake_put(rep, 'E');
		return;
	}
	/* NO_EXIT is silent once the command is under way: after the EXEC */
	if (m == FAKE_NO_EXIT && (agent_read_frame(c, &h, p, sizeof(p)) || h.type != AGENT_EXEC))
		return;
	fake_put(rep, 'S');
	if (m == FAKE_NO_EXIT) {
		/* frames until the host hangs up: the EXEC, stdin, SIGNALs; never an answer */
		while (agent_read_frame(c, &h, p, sizeof(p)) == 0)
			if (h.type == AGENT_SIGNAL)
				fake_put(rep, 'G');
	} else {
		while (read(c, p, sizeof(p)) > 0)
			;
	}
	fake_put(rep, 'E');
}

static void fake_start(struct fake *f, enum fake_mode m)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/padcell-hostile.XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/v.sock", f->dir);
	int lfd = unix_listen(f->path, 4, 0600, 0, NULL);
	cr_assert_geq(lfd, 0, "listen %s: %s", f->path, strerror(-lfd));
	int rp[2];
	cr_assert_eq(pipe2(rp, O_CLOEXEC), 0);
	f->pid = fork();
	cr_assert_geq(f->pid, 0);
	if (f->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave its fake behind */
		signal(SIGPIPE, SIG_IGN);
		close(rp[0]);
		for (;;) {
			int c = accept(lfd, NULL, NULL);
			if (c < 0)
				_exit(2);
			fake_serve(c, m, rp[1]);
			close(c);
		}
	}
	close(lfd);
	close(rp[1]);
	f->report = rp[0];
}

/* Waits (hang guard) for the fake to report `want`; false if it never did. */
static bool fake_saw(struct fake *f, char want)
{
	for (;;) {
		struct pollfd p = { .fd = f->report, .events = POLLIN };
		if (poll(&p, 1, HANG_S * 1000) <= 0)
			return false;
		char c;
		if (read(f->report, &c, 1) != 1)
			return false;
		if (c == want)
			return true;
	}
}

static void fake_stop(struct fake *f)
{
	kill(f->pid, SIGKILL);
	waitpid(f->pid, NULL, 0);
	close(f->report);
	unlink(f->path);
	rmdir(f->dir);
}

/* ---- padcell as a user runs it ---- */

struct outcome {
	int status; /* exit code, 128+signal, or -1 when the hang guard had to kill it */
	double secs;
	char err[2048];
	unsigned err_lines;
};

static const char *padcell_bin(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("PADCELL");
	if (env)
		return env;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s/../padcell", dirname(self));
	return path;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t padcell_spawn(char *const argv[], int *errfd)
{
	const char *bin = padcell_bin();
	cr_assert_eq(access(bin, X_OK), 0, "%s not built (make padcell)", bin);
	char errp[] = "/tmp/padcell-hostile-err-XXXXXX";
	*errfd = mkstemp(errp);
	cr_assert_geq(*errfd, 0);
	unlink(errp);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDWR);
		dup2(in, 0);
		dup2(in, 1);
		dup2(*errfd, 2);
		for (int i = 0; i < 100; i++) { /* a concurrent relink: the file briefly missing */
			execv(bin, argv);
			usleep(20000);
		}
		_exit(127);
	}
	return pid;
}

static void padcell_wait(pid_t pid, int errfd, double t0, struct outcome *o)
{
	int st = 0;
	o->status = -1;
	while (mono_s() - t0 < HANG_S) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
		usleep(5000);
	}
	if (o->status == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	o->secs = mono_s() - t0;
	cr_assert_neq(kill(pid, 0), 0, "padcell %d is still there", pid);
	ssize_t n = pread(errfd, o->err, sizeof(o->err) - 1, 0);
	o->err[n > 0 ? n : 0] = '\0';
	close(errfd);
	o->err_lines = 0;
	for (const char *p = o->err; *p; p++)
		o->err_lines += *p == '\n';
}

/*
 * Runs padcell argv against fake f; with sig, sends it (and then sig2, if set) once the fake
 * reported `stage` — by then padcell is connected, long past blocking its signals.
 */
static void padcell_against(struct fake *f, char *const argv[], char stage, int sig, int sig2, struct outcome *o)
{
	int errfd;
	double t0 = mono_s();
	pid_t pid = padcell_spawn(argv, &errfd);
	if (sig) {
		cr_assert(fake_saw(f, stage), "the fake never reached stage '%c'", stage);
		t0 = mono_s();
		kill(pid, sig);
		if (sig2) {
			usleep(100000);
			kill(pid, sig2);
		}
	}
	padcell_wait(pid, errfd, t0, o);
}

/* One clear line: "padcell: ...", containing `what`. */
static void assert_one_line(const struct outcome *o, const char *what)
{
	cr_assert_eq(o->err_lines, 1, "%u lines on stderr:\n%s", o->err_lines, o->err);
	cr_assert_eq(strncmp(o->err, "padcell: ", 9), 0, "%s", o->err);
	cr_assert_not_null(strstr(o->err, what), "'%s' not in: %s", what, o->err);
}

#define EXEC_ARGV(f, ...) ((char *const[]){ "padcell", "exec", "--vsock", (f)->path, __VA_ARGS__, NULL })

/* (a) half a frame header, then silence: the frame bound ends it with 125. */
Test(agent_hostile, exec_half_header_ends_at_the_frame_bound, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_HALF_HEADER);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "true"), 0, 0, 0, &o);
	cr_assert_eq(o.status, 125, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "nothing for 10 s");
	cr_assert(fake_saw(&f, 'E'), "padcell left its connection open");
	fake_stop(&f);
}

Test(agent_hostile, exec_half_header_sigterm_is_143, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_HALF_HEADER);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "true"), 'S', SIGTERM, 0, &o);
	cr_assert_eq(o.status, 143, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "signal 15");
	cr_assert_lt(o.secs, 20.0, "%.1f s after the signal", o.secs); /* loosely: not the 10 s bound's doing alone */
	cr_assert(fake_saw(&f, 'E'));
	fake_stop(&f);
}

/* (b) HELLO, then silence: exec's command is simply silent, and a signal ends it after the grace. */
Test(agent_hostile, exec_hello_then_silence_sigint_is_130, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_HELLO_SILENT);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "sleep", "1000"), 'S', SIGINT, 0, &o);
	cr_assert_eq(o.status, 130, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "signal 2");
	cr_assert(fake_saw(&f, 'E'));
	fake_stop(&f);
}

/* (b) for cp: a download that never comes; SIGHUP ends it at once, leaving no partial file. */
Test(agent_hostile, cp_hello_then_silence_sighup_is_129, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_HELLO_SILENT);
	char dst[128];
	snprintf(dst, sizeof(dst), "%s/copy", f.dir);
	struct outcome o;
	padcell_against(&f, (char *const[]){ "padcell", "cp", "--vsock", f.path, "vm:/etc/hostname", dst, NULL }, 'S',
			SIGHUP, 0, &o);
	cr_assert_eq(o.status, 129, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "signal 1");
	cr_assert(fake_saw(&f, 'E'));
	/* nothing but the socket is left in the directory: no copy, no temporary */
	unlink(f.path);
	cr_assert_eq(rmdir(f.dir), 0, "%s not empty after the interrupted copy", f.dir);
	mkdir(f.dir, 0700);
	fake_stop(&f);
}

Test(agent_hostile, cp_upload_hello_then_silence_sigterm_is_143, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_HELLO_SILENT);
	struct outcome o;
	padcell_against(&f, (char *const[]){ "padcell", "cp", "--vsock", f.path, "/etc/hostname", "vm:/tmp/x", NULL }, 'S',
			SIGTERM, 0, &o);
	cr_assert_eq(o.status, 143, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "signal 15");
	fake_stop(&f);
}

/* (c) EXEC taken, no EXIT: the signal is forwarded first (the fake sees it), then the grace ends it. */
Test(agent_hostile, exec_no_exit_forwards_then_ends_143, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_NO_EXIT);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "sleep", "1000"), 'S', SIGTERM, 0, &o);
	cr_assert_eq(o.status, 143, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "did not end within 2 s");
	cr_assert(fake_saw(&f, 'G'), "the SIGNAL frame never reached the agent");
	cr_assert(fake_saw(&f, 'E'), "the connection (and with it the command) was not closed");
	fake_stop(&f);
}

/* A second signal does not wait for the grace: 128 + the second one. */
Test(agent_hostile, exec_no_exit_second_signal_ends_it, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_NO_EXIT);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "sleep", "1000"), 'S', SIGTERM, SIGINT, &o);
	cr_assert_eq(o.status, 130, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "second signal 2");
	fake_stop(&f);
}

/* --timeout holds even when the agent never reports it: 124. */
Test(agent_hostile, exec_no_exit_timeout_is_124, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_NO_EXIT);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--timeout", "1", "--", "sleep", "1000"), 0, 0, 0, &o);
	cr_assert_eq(o.status, 124, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "timed out");
	cr_assert(fake_saw(&f, 'E'));
	fake_stop(&f);
}

/* (d) an absurd length: refused at once, 125. */
Test(agent_hostile, exec_and_cp_absurd_length_is_125, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_ABSURD_LEN);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "true"), 0, 0, 0, &o);
	cr_assert_eq(o.status, 125, "exec: exit %d: %s", o.status, o.err);
	assert_one_line(&o, "malformed frame");
	char dst[128];
	snprintf(dst, sizeof(dst), "%s/copy", f.dir);
	padcell_against(&f, (char *const[]){ "padcell", "cp", "--vsock", f.path, "vm:/etc/hostname", dst, NULL }, 0, 0,
			0, &o);
	cr_assert_eq(o.status, 125, "cp: exit %d: %s", o.status, o.err);
	assert_one_line(&o, "malformed frame");
	cr_assert_neq(access(dst, F_OK), 0, "a failed copy left %s", dst);
	fake_stop(&f);
}

/* ---- guest text reaches the terminal escaped; a download has a bound (issue 11, class 6) ---- */

/* Nothing in o's stderr a terminal would act on: ESC, CR, BS, BEL, raw C1; one line only. */
static void assert_no_controls(const struct outcome *o)
{
	for (const unsigned char *p = (const unsigned char *)o->err; *p; p++)
		cr_assert(!((*p < 0x20 && *p != '\n') || *p == 0x7f || (*p >= 0x80 && *p <= 0x9f)),
			  "byte 0x%02x reached the terminal: %s", *p, o->err);
}

Test(agent_hostile, exec_and_cp_show_an_error_with_escapes_escaped, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_ERROR_ESC);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "true"), 0, 0, 0, &o);
	cr_assert_eq(o.status, 125, "exec: exit %d: %s", o.status, o.err);
	assert_one_line(&o, "the agent says: \\x1b[2J\\x1b]0;pwned\\x07\\rgone\\b\\x9b31m");
	assert_no_controls(&o);
	char dst[128];
	snprintf(dst, sizeof(dst), "%s/copy", f.dir);
	padcell_against(&f, (char *const[]){ "padcell", "cp", "--vsock", f.path, "vm:/etc/hostname", dst, NULL }, 0, 0,
			0, &o);
	cr_assert_eq(o.status, 125, "cp: exit %d: %s", o.status, o.err);
	assert_one_line(&o, "the agent says: \\x1b[2J");
	assert_no_controls(&o);
	cr_assert_neq(access(dst, F_OK), 0, "a failed copy left %s", dst);
	fake_stop(&f);
}

Test(agent_hostile, an_answer_to_connect_with_escapes_is_escaped, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_BAD_CONNECT);
	struct outcome o;
	padcell_against(&f, EXEC_ARGV(&f, "--", "true"), 0, 0, 0, &o);
	cr_assert_eq(o.status, 125, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "unexpected answer to CONNECT: '\\x1b[2J\\x1b]0;pwned\\x07'");
	assert_no_controls(&o);
	fake_stop(&f);
}

/* An agent that streams a download without end: the bound refuses it, and no file is left. */
Test(agent_hostile, cp_out_over_max_size_is_refused_and_leaves_nothing, .timeout = 60)
{
	struct fake f;
	fake_start(&f, FAKE_GET_FOREVER);
	char dst[128];
	snprintf(dst, sizeof(dst), "%s/copy", f.dir);
	struct outcome o;
	padcell_against(&f, (char *const[]){ "padcell", "cp", "--vsock", f.path, "--max-size", "1M", "vm:/dev/zero", dst,
					     NULL }, 0, 0, 0, &o);
	cr_assert_eq(o.status, 125, "exit %d: %s", o.status, o.err);
	assert_one_line(&o, "'/dev/zero' is over 1048576 bytes, the bound of this copy (cp --max-size)");
	cr_assert(fake_saw(&f, 'E'), "padcell left its connection open");
	/* nothing but the socket is left in the directory: no copy, no temporary */
	unlink(f.path);
	cr_assert_eq(rmdir(f.dir), 0, "%s not empty after the refused copy", f.dir);
	mkdir(f.dir, 0700);
	fake_stop(&f);
}

Test(agent_hostile, cp_max_size_must_be_a_size, .timeout = 60)
{
	static const char *const bad[] = { "0", "-1", "1Q", "" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct outcome o;
		int errfd;
		pid_t pid = padcell_spawn((char *const[]){ "padcell", "cp", "--vsock", "/nonexistent/v.sock", "--max-size",
							   (char *)bad[i], "vm:/x", "/tmp/y", NULL }, &errfd);
		padcell_wait(pid, errfd, mono_s(), &o);
		cr_assert_eq(o.status, 2, "--max-size '%s': exit %d: %s", bad[i], o.status, o.err);
		assert_one_line(&o, "--max-size");
	}
}

/* ---- the same waits in-process, with short bounds ---- */

static char err[512];

static void conn_pair(struct agent_conn *c, int *peer, int sig_fd, int abort_fd)
{
	int sp[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	agent_conn_init(c, sp[0], sig_fd, abort_fd);
	c->frame_ms = c->reply_ms = 200;
	c->grace_ms = 200;
	c->slack_ms = 200;
	*peer = sp[1];
}

static void send_hello(int peer)
{
	uint8_t hb[AGENT_HELLO_LEN];
	struct agent_hello h = { .version = AGENT_PROTO_VERSION };
	agent_hello_encode(hb, &h);
	cr_assert_eq(agent_write_frame(peer, AGENT_HELLO, hb, sizeof(hb)), 0);
}

Test(agent_waits, half_header_hits_the_frame_bound)
{
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, -1);
	cr_assert_eq(write(peer, "\x0c\0\0", 3), 3);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), -ETIMEDOUT, "%s", err);
	cr_assert_not_null(strstr(err, "3 bytes of a frame"), "%s", err);
	close(peer);
	close(c.fd);
}

Test(agent_waits, half_payload_hits_the_frame_bound)
{
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, -1);
	uint8_t hdr[AGENT_HDR_LEN];
	agent_hdr_encode(hdr, AGENT_HELLO_LEN, AGENT_HELLO, 0);
	cr_assert_eq(write(peer, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	cr_assert_eq(write(peer, "abc", 3), 3);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), -ETIMEDOUT, "%s", err);
	close(peer);
	close(c.fd);
}

Test(agent_waits, no_hello_by_the_deadline)
{
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, now_ms() + 100, &h, err, sizeof(err)), -ETIMEDOUT, "%s", err);
	cr_assert_not_null(strstr(err, "HELLO"), "%s", err);
	close(peer);
	close(c.fd);
}

Test(agent_waits, silent_replies_hit_the_reply_bound)
{
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, -1);
	int dst = open("/dev/null", O_WRONLY);
	cr_assert_eq(agent_conn_sync(&c, err, sizeof(err)), -ETIMEDOUT, "sync: %s", err);
	cr_assert_eq(agent_conn_get_file(&c, "/x", dst, err, sizeof(err)), -ETIMEDOUT, "get: %s", err);
	cr_assert_eq(agent_conn_put_file(&c, dst, "/x", 0644, err, sizeof(err)), -ETIMEDOUT, "put: %s", err);
	cr_assert_eq(agent_conn_poweroff(&c, err, sizeof(err)), -ETIMEDOUT, "poweroff: %s", err);
	close(dst);
	close(peer);
	close(c.fd);
}

/* A peer that never reads: a frame padcell sends is bounded too. */
Test(agent_waits, a_peer_that_never_reads_bounds_the_send)
{
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, -1);
	int small = 4096;
	setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	int src = open("/dev/zero", O_RDONLY);
	int rc = agent_write_frame(peer, AGENT_OK, NULL, 0); /* PUT's OK, then no reading at all */
	cr_assert_eq(rc, 0);
	cr_assert_eq(agent_conn_put_file(&c, src, "/x", 0644, err, sizeof(err)), -ETIMEDOUT, "%s", err);
	close(src);
	close(peer);
	close(c.fd);
}

/* A signalfd record on sig_fd (a pipe standing in) ends a wait outside a command at once. */
Test(agent_waits, a_signal_ends_hello_at_once)
{
	int sp[2];
	cr_assert_eq(pipe(sp), 0);
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, sp[0], -1);
	struct signalfd_siginfo si = { .ssi_signo = SIGHUP };
	cr_assert_eq(write(sp[1], &si, sizeof(si)), (ssize_t)sizeof(si));
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), -EINTR, "%s", err);
	cr_assert_eq(c.signo, SIGHUP);
	close(sp[0]);
	close(sp[1]);
	close(peer);
	close(c.fd);
}

/* The abort fd (the VM's stop eventfd) ends a wait, but only once what was sent is read. */
Test(agent_waits, abort_fd_ends_the_wait_after_the_buffered_frames)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, efd);
	send_hello(peer);
	uint64_t one = 1;
	cr_assert_eq(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), 0, "the buffered HELLO was lost: %s", err);
	char *argv[] = { "true", NULL };
	struct agent_exec_req req = { .argv = argv, .stdin_fd = -1 };
	struct agent_exec_result res;
	cr_assert_eq(agent_conn_exec(&c, &req, 1, 2, &res, err, sizeof(err)), -ECONNABORTED, "%s", err);
	close(efd);
	close(peer);
	close(c.fd);
}

/* A silent command: the first signal is forwarded, the grace then ends the wait with -EINTR. */
Test(agent_waits, signal_grace_then_eintr)
{
	int sp[2];
	cr_assert_eq(pipe(sp), 0);
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, sp[0], -1);
	struct signalfd_siginfo si = { .ssi_signo = SIGTERM };
	cr_assert_eq(write(sp[1], &si, sizeof(si)), (ssize_t)sizeof(si));
	char *argv[] = { "sleep", "1000", NULL };
	struct agent_exec_req req = { .argv = argv, .stdin_fd = -1 };
	struct agent_exec_result res;
	cr_assert_eq(agent_conn_exec(&c, &req, 1, 2, &res, err, sizeof(err)), -EINTR, "%s", err);
	cr_assert_eq(c.signo, SIGTERM);
	/* what the agent got: EXEC, then the SIGNAL */
	static uint8_t p[AGENT_MAX_PAYLOAD];
	struct agent_hdr h;
	cr_assert_eq(agent_read_frame(peer, &h, p, sizeof(p)), 0);
	cr_assert_eq(h.type, AGENT_EXEC);
	cr_assert_eq(agent_read_frame(peer, &h, p, sizeof(p)), 0);
	cr_assert_eq(h.type, AGENT_SIGNAL);
	uint32_t signo;
	cr_assert_eq(agent_u32_decode(p, h.len, &signo), 0);
	cr_assert_eq(signo, SIGTERM);
	close(sp[0]);
	close(sp[1]);
	close(peer);
	close(c.fd);
}

/* Output to a pipe nobody reads holds the output back, never the signal. */
Test(agent_waits, stalled_host_stdout_stays_interruptible)
{
	int sp[2], op[2];
	cr_assert_eq(pipe(sp), 0);
	cr_assert_eq(pipe(op), 0);
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, sp[0], -1);
	static uint8_t chunk[AGENT_MAX_PAYLOAD];
	memset(chunk, 'o', sizeof(chunk));
	/* more than the pipe holds (64 KiB): padcell would block in write() */
	for (int i = 0; i < 2; i++)
		cr_assert_eq(agent_write_frame(peer, AGENT_STDOUT, chunk, sizeof(chunk)), 0);
	struct signalfd_siginfo si = { .ssi_signo = SIGINT };
	cr_assert_eq(write(sp[1], &si, sizeof(si)), (ssize_t)sizeof(si));
	cr_assert_eq(write(sp[1], &si, sizeof(si)), (ssize_t)sizeof(si));
	char *argv[] = { "yes", NULL };
	struct agent_exec_req req = { .argv = argv, .stdin_fd = -1 };
	struct agent_exec_result res;
	cr_assert_eq(agent_conn_exec(&c, &req, op[1], 2, &res, err, sizeof(err)), -EINTR, "%s", err);
	cr_assert_eq(c.signo, SIGINT);
	close(sp[0]);
	close(sp[1]);
	close(op[0]);
	close(op[1]);
	close(peer);
	close(c.fd);
}

/* ---- --snapshot-when-ready: a ready caller that sends nothing cannot hold the join ---- */

struct finisher {
	struct ready_snap *s;
	int done_efd;
};

static void *finish_thread(void *arg)
{
	struct finisher *f = arg;
	ready_snap_finish(f->s);
	uint64_t one = 1;
	if (write(f->done_efd, &one, sizeof(one)) < 0)
		abort();
	return NULL;
}

static void ready_snap_case(const void *junk, size_t junk_len)
{
	static struct vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	char dir[] = "/tmp/padcell-readysnap.XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char vs[96], snapdir[128];
	snprintf(vs, sizeof(vs), "%s/v.sock", dir);
	snprintf(snapdir, sizeof(snapdir), "%s/snap", dir);
	struct ready_snap s = { .ready_fd = -1 };
	cr_assert_eq(ready_snap_listen(&s, vs, snapdir, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ready_snap_start(&s, &vm), 0);
	enum unix_step at;
	int c = unix_connect(s.ready_path, 0, &at);
	cr_assert_geq(c, 0);
	if (junk_len)
		cr_assert_eq(write(c, junk, junk_len), (ssize_t)junk_len);
	usleep(50000); /* let the thread take the connection (either way the join must return) */
	/* the VM ends: teardown joins the thread */
	uint64_t one = 1;
	cr_assert_eq(write(vm.stop_efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	struct finisher f = { .s = &s, .done_efd = eventfd(0, EFD_CLOEXEC) };
	pthread_t t;
	double t0 = mono_s();
	cr_assert_eq(pthread_create(&t, NULL, finish_thread, &f), 0);
	struct pollfd p = { .fd = f.done_efd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, HANG_S * 1000), 1, "ready_snap_finish hung on a silent ready connection");
	pthread_join(t, NULL);
	cr_assert_lt(mono_s() - t0, 20.0);
	cr_assert_neq(access(s.ready_path, F_OK), 0, "the ready socket was left behind");
	cr_assert_neq(access(snapdir, F_OK), 0, "a snapshot was made without a HELLO");
	close(c);
	close(f.done_efd);
	close(vm.stop_efd);
	rmdir(dir);
}

Test(ready_snap, silent_ready_caller_does_not_hold_the_join, .timeout = 60)
{
	ready_snap_case(NULL, 0);
}

Test(ready_snap, half_a_hello_does_not_hold_the_join, .timeout = 60)
{
	ready_snap_case("\x0c\0\0\0\x01", 5);
}

/* The download bound in-process: the frame that would pass it is not written; the bound itself is fine. */
Test(agent_waits, a_download_is_bounded_before_the_frame_that_passes_it)
{
	struct agent_conn c;
	int peer;
	conn_pair(&c, &peer, -1, -1);
	cr_assert_eq(c.get_max, AGENT_GET_MAX_DEFAULT);
	cr_assert_eq(AGENT_GET_MAX_DEFAULT, 1ull << 30);
	char path[] = "/tmp/padcell-hostile-get-XXXXXX";
	int dst = mkstemp(path);
	cr_assert_geq(dst, 0);
	unlink(path);
	static uint8_t data[1000];
	memset(data, 'd', sizeof(data));
	for (int i = 0; i < 3; i++)
		cr_assert_eq(agent_write_frame(peer, AGENT_DATA, data, sizeof(data)), 0);
	cr_assert_eq(agent_write_frame(peer, AGENT_DATA, NULL, 0), 0);
	c.get_max = 2500;
	cr_assert_eq(agent_conn_get_file(&c, "/x", dst, err, sizeof(err)), -EFBIG, "%s", err);
	cr_assert(strstr(err, "over 2500 bytes"), "%s", err);
	struct stat st;
	cr_assert_eq(fstat(dst, &st), 0);
	cr_assert_eq(st.st_size, 2000, "%lld bytes written", (long long)st.st_size);
	close(peer);
	close(c.fd);

	/* exactly the bound: the copy is whole */
	conn_pair(&c, &peer, -1, -1);
	cr_assert_eq(ftruncate(dst, 0), 0);
	cr_assert_eq(lseek(dst, 0, SEEK_SET), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(agent_write_frame(peer, AGENT_DATA, data, sizeof(data)), 0);
	cr_assert_eq(agent_write_frame(peer, AGENT_DATA, NULL, 0), 0);
	c.get_max = 3000;
	cr_assert_eq(agent_conn_get_file(&c, "/x", dst, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(fstat(dst, &st), 0);
	cr_assert_eq(st.st_size, 3000);
	close(peer);
	close(c.fd);
	close(dst);
}
