/*
 * Protocol version 3's file operations: STAT, LIST, MKDIR, MOVE, REMOVE.  Their encodings with
 * every malformed case, the real agent (--serve-fd, over a socket pair) doing each one on a
 * temporary directory, a hostile agent (a forked fake) flooding or corrupting LIST and STAT
 * replies, and `padcell fs` driven end to end through a CONNECT bridge in front of the real agent.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "vmm/util.h"
#include "tests/unit/agent_harness.h"

static uint8_t buf[AGENT_MAX_PAYLOAD];
static char err[512];

/* ---- encodings ---- */

Test(agent_fs_proto, requests_round_trip)
{
	char a[AGENT_MAX_PATH], b[AGENT_MAX_PATH];
	uint32_t mode, flags;
	int n = agent_mkdir_encode(buf, sizeof(buf), 0750, AGENT_MKDIR_PARENTS, "/a/b/c");
	cr_assert_gt(n, 0);
	cr_assert_eq(agent_mkdir_decode(buf, (size_t)n, &mode, &flags, a, sizeof(a)), 0);
	cr_assert_eq(mode, 0750);
	cr_assert_eq(flags, AGENT_MKDIR_PARENTS);
	cr_assert_str_eq(a, "/a/b/c");
	n = agent_remove_encode(buf, sizeof(buf), AGENT_REMOVE_RECURSIVE, "/x");
	cr_assert_eq(agent_remove_decode(buf, (size_t)n, &flags, a, sizeof(a)), 0);
	cr_assert_eq(flags, AGENT_REMOVE_RECURSIVE);
	n = agent_move_encode(buf, sizeof(buf), "/from", "/to/here");
	cr_assert_eq(n, 5 + 1 + 8);
	cr_assert_eq(agent_move_decode(buf, (size_t)n, a, b, sizeof(a)), 0);
	cr_assert_str_eq(a, "/from");
	cr_assert_str_eq(b, "/to/here");
}

Test(agent_fs_proto, malformed_requests)
{
	char a[AGENT_MAX_PATH], b[AGENT_MAX_PATH];
	uint32_t mode, flags;
	/* encoders refuse what no agent should see */
	cr_assert_eq(agent_mkdir_encode(buf, sizeof(buf), 010000, 0, "/a"), -EINVAL, "mode bits past 07777");
	cr_assert_eq(agent_mkdir_encode(buf, sizeof(buf), 0755, 2, "/a"), -EINVAL, "unknown flag");
	cr_assert_eq(agent_remove_encode(buf, sizeof(buf), 0, "relative"), -EINVAL);
	cr_assert_eq(agent_move_encode(buf, sizeof(buf), "/a", ""), -EINVAL);
	cr_assert_eq(agent_path_encode(buf, 3, "/abcd"), -E2BIG);
	static char longp[AGENT_MAX_PATH + 2];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	cr_assert_eq(agent_path_encode(buf, sizeof(buf), longp), -EINVAL, "overlong path");
	/* decoders: short frames, NUL inside, overlong, bad words */
	cr_assert_eq(agent_mkdir_decode((const uint8_t *)"\xed\x01\0\0\0\0\0\0", 8, &mode, &flags, a, sizeof(a)), -EPROTO,
		     "no path");
	cr_assert_eq(agent_mkdir_decode((const uint8_t *)"\xed\x01\0", 3, &mode, &flags, a, sizeof(a)), -EPROTO, "short");
	cr_assert_eq(agent_mkdir_decode((const uint8_t *)"\0\x10\0\0\0\0\0\0/a", 10, &mode, &flags, a, sizeof(a)), -EPROTO,
		     "mode 010000");
	cr_assert_eq(agent_mkdir_decode((const uint8_t *)"\xed\x01\0\0\2\0\0\0/a", 10, &mode, &flags, a, sizeof(a)), -EPROTO,
		     "flag 2");
	cr_assert_eq(agent_remove_decode((const uint8_t *)"\0\0\0\0/a\0b", 8, &flags, a, sizeof(a)), -EPROTO, "NUL inside");
	cr_assert_eq(agent_remove_decode((const uint8_t *)"\4\0\0\0/a", 6, &flags, a, sizeof(a)), -EPROTO, "flag 4");
	cr_assert_eq(agent_path_decode((const uint8_t *)"a/b", 3, a, sizeof(a)), -EPROTO, "relative");
	memset(buf, 'a', AGENT_MAX_PATH);
	buf[0] = '/';
	cr_assert_eq(agent_path_decode(buf, AGENT_MAX_PATH, a, sizeof(a)), -EPROTO, "overlong");
	cr_assert_eq(agent_path_decode(buf, 10, a, 8), -EPROTO, "past the caller's buffer");
	cr_assert_eq(agent_move_decode((const uint8_t *)"/a/b", 4, a, b, sizeof(a)), -EPROTO, "no NUL");
	cr_assert_eq(agent_move_decode((const uint8_t *)"/a\0/b\0/c", 8, a, b, sizeof(a)), -EPROTO, "two NULs");
	cr_assert_eq(agent_move_decode((const uint8_t *)"/a\0", 3, a, b, sizeof(a)), -EPROTO, "no destination");
	cr_assert_eq(agent_move_decode((const uint8_t *)"\0/b", 3, a, b, sizeof(a)), -EPROTO, "no source");
	cr_assert_eq(agent_move_decode(buf, 0, a, b, sizeof(a)), -EPROTO, "empty");
}

Test(agent_fs_proto, entries_round_trip_and_refusals)
{
	struct agent_entry e = { .mode = S_IFREG | 0644, .size = 1ull << 40, .mtime_ns = -5, .name = "file" }, d;
	size_t off = 0;
	cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &e), 0);
	struct agent_entry r = { .mode = S_IFDIR | 0755, .name = "/" };
	cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &r), 0);
	size_t len = off;
	off = 0;
	cr_assert_eq(agent_entry_next(buf, len, &off, &d), 1);
	cr_assert_eq(d.mode, S_IFREG | 0644);
	cr_assert_eq(d.size, 1ull << 40);
	cr_assert_eq(d.mtime_ns, -5);
	cr_assert_str_eq(d.name, "file");
	cr_assert_eq(agent_entry_next(buf, len, &off, &d), 1);
	cr_assert_str_eq(d.name, "/");
	cr_assert_eq(agent_entry_next(buf, len, &off, &d), 0, "the end");
	/* a truncated entry, a name running past the frame, bad names and types */
	off = 0;
	cr_assert_eq(agent_entry_next(buf, 10, &off, &d), -EPROTO, "shorter than the fixed part");
	off = 0;
	cr_assert_eq(agent_entry_next(buf, AGENT_ENTRY_FIXED + 3, &off, &d), -EPROTO, "name cut short");
	static const char *const bad_names[] = { ".", "..", "a/b", "", "//" };
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		struct agent_entry x = e;
		snprintf(x.name, sizeof(x.name), "%s", bad_names[i]);
		off = 0;
		cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &x), -EINVAL, "name '%s'", bad_names[i]);
		/* the same on the wire, forged */
		off = 0;
		cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &e), 0);
		size_t n = strlen(bad_names[i]);
		buf[20] = (uint8_t)n;
		memcpy(buf + AGENT_ENTRY_FIXED, bad_names[i], n);
		off = 0;
		cr_assert_eq(agent_entry_next(buf, AGENT_ENTRY_FIXED + n, &off, &d), -EPROTO, "forged name '%s'", bad_names[i]);
	}
	off = 0;
	cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &e), 0);
	buf[AGENT_ENTRY_FIXED + 1] = '\0';
	off = 0;
	cr_assert_eq(agent_entry_next(buf, AGENT_ENTRY_FIXED + 4, &off, &d), -EPROTO, "NUL in a name");
	off = 0;
	cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &e), 0);
	buf[20] = 0;
	buf[21] = 1; /* a 256-byte name */
	off = 0;
	cr_assert_eq(agent_entry_next(buf, AGENT_ENTRY_FIXED + 256, &off, &d), -EPROTO, "name over 255 bytes");
	off = 0;
	struct agent_entry t = e;
	t.mode = 0170000 | 0644; /* no such file type */
	cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &t), -EINVAL);
	off = 0;
	cr_assert_eq(agent_entry_encode(buf, sizeof(buf), &off, &e), 0);
	buf[2] = 0x01; /* bits past 07777 that are not the type */
	buf[1] = 0x80;
	off = 0;
	cr_assert_eq(agent_entry_next(buf, AGENT_ENTRY_FIXED + 4, &off, &d), -EPROTO, "stray mode bits");
	off = 0;
	cr_assert_eq(agent_entry_encode(buf, AGENT_ENTRY_FIXED + 3, &off, &e), -E2BIG, "does not fit");
	cr_assert_eq(off, 0, "nothing written");
}

/* ---- the real agent ---- */

static pid_t agent_pid;
static char dir[64];

static void fs_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-fs-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static pid_t bridge_pid;

static void fs_teardown(void)
{
	if (bridge_pid > 0) { /* a failed test leaves its bridge waiting: it must not outlive the test */
		kill(bridge_pid, SIGKILL);
		waitpid(bridge_pid, NULL, 0);
		bridge_pid = 0;
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd)) {
		/* best effort */
	}
}

static int open_agent(struct agent_conn *c)
{
	int fd = agent_spawn(&agent_pid);
	agent_conn_init(c, fd, -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(c, 0, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(h.version, AGENT_PROTO_VERSION);
	return fd;
}

static void close_agent(int fd)
{
	close(fd);
	int st;
	cr_assert_eq(waitpid(agent_pid, &st, 0), agent_pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the agent ended cleanly: %x", st);
}

static char *p_(const char *rel)
{
	static char paths[4][PATH_MAX];
	static int k;
	char *p = paths[k++ % 4];
	snprintf(p, PATH_MAX, "%s%s", dir, rel);
	return p;
}

struct names {
	unsigned n, dirs;
	uint64_t bytes;
	bool saw_x;
};

static int collect(void *arg, const struct agent_entry *e)
{
	struct names *s = arg;
	s->n++;
	s->dirs += S_ISDIR(e->mode);
	s->bytes += S_ISREG(e->mode) ? e->size : 0;
	if (!strcmp(e->name, "x"))
		s->saw_x = true;
	return 0;
}

Test(agent_fs_e2e, every_operation, .init = fs_setup, .fini = fs_teardown)
{
	struct agent_conn c;
	int fd = open_agent(&c);
	/* mkdir with parents, then without: an existing one is an error only then */
	cr_assert_eq(agent_conn_mkdir(&c, p_("/a/b/c"), 0700, true, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_mkdir(&c, p_("/a/b/c"), 0700, true, err, sizeof(err)), 0, "existing is fine with -p");
	cr_assert_eq(agent_conn_mkdir(&c, p_("/a/b/c"), 0700, false, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "File exists"), "%s", err);
	struct stat st;
	cr_assert_eq(stat(p_("/a/b/c"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	/* a file, stat'ed */
	FILE *f = fopen(p_("/a/x"), "w");
	cr_assert_not_null(f);
	fputs("hello", f);
	fclose(f);
	struct agent_entry e;
	cr_assert_eq(agent_conn_stat(&c, p_("/a/x"), &e, err, sizeof(err)), 0, "%s", err);
	cr_assert(S_ISREG(e.mode));
	cr_assert_eq(e.size, 5);
	cr_assert_str_eq(e.name, "x");
	cr_assert_gt(e.mtime_ns, 1000000000ll * 1600000000ll, "a plausible mtime");
	cr_assert_eq(agent_conn_stat(&c, "/", &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(e.name, "/");
	/* a symlink is described, not followed */
	cr_assert_eq(symlink("/nonexistent", p_("/a/link")), 0);
	cr_assert_eq(agent_conn_stat(&c, p_("/a/link"), &e, err, sizeof(err)), 0, "%s", err);
	cr_assert(S_ISLNK(e.mode));
	/* list */
	struct names s = { 0 };
	cr_assert_eq(agent_conn_list(&c, p_("/a"), collect, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(s.n, 3, "b, x, link");
	cr_assert_eq(s.dirs, 1);
	cr_assert(s.saw_x);
	/* errors do not end the connection */
	cr_assert_eq(agent_conn_stat(&c, p_("/nope"), &e, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "No such file"), "%s", err);
	cr_assert_eq(agent_conn_list(&c, p_("/a/x"), collect, &s, err, sizeof(err)), -EIO, "not a directory");
	/* move */
	cr_assert_eq(agent_conn_move(&c, p_("/a/x"), p_("/a/b/y"), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(access(p_("/a/x"), F_OK), -1);
	cr_assert_eq(access(p_("/a/b/y"), F_OK), 0);
	cr_assert_eq(agent_conn_move(&c, p_("/a/x"), p_("/a/z"), err, sizeof(err)), -EIO, "gone");
	/* remove: a non-empty directory needs the recursive flag, and a link goes, not its target */
	cr_assert_eq(agent_conn_remove(&c, p_("/a"), false, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "not empty"), "%s", err);
	cr_assert_eq(mkdir(p_("/outside"), 0755), 0);
	cr_assert_eq(symlink(p_("/outside"), p_("/a/b/to-outside")), 0);
	f = fopen(p_("/outside/keep"), "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(agent_conn_remove(&c, p_("/a"), true, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(access(p_("/a"), F_OK), -1);
	cr_assert_eq(access(p_("/outside/keep"), F_OK), 0, "a link's target is not removed");
	cr_assert_eq(agent_conn_remove(&c, p_("/outside/keep"), false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_remove(&c, p_("/outside"), false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(access(p_("/outside"), F_OK), -1);
	/* still a working connection: a client-side refusal sends nothing */
	cr_assert_eq(agent_conn_stat(&c, "relative", &e, err, sizeof(err)), -EINVAL);
	cr_assert_eq(agent_conn_sync(&c, err, sizeof(err)), 0, "%s", err);
	close_agent(fd);
}

Test(agent_fs_e2e, a_long_listing_is_streamed_in_frames, .init = fs_setup, .fini = fs_teardown, .timeout = 120)
{
	/* 2000 names of 200 bytes: ~440 KiB of entries, at least 7 frames */
	char name[256];
	memset(name, 'n', 200);
	name[200] = '\0';
	for (int i = 0; i < 2000; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%04d%s", dir, i, name + 4);
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		cr_assert_geq(fd, 0);
		if (i == 7)
			cr_assert_eq(write(fd, "abc", 3), 3);
		close(fd);
	}
	struct agent_conn c;
	int fd = open_agent(&c);
	struct names s = { 0 };
	cr_assert_eq(agent_conn_list(&c, dir, collect, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(s.n, 2000);
	cr_assert_eq(s.bytes, 3);
	/* the bound: past list_max the listing fails, the caller saw no more than that */
	c.list_max = 100;
	memset(&s, 0, sizeof(s));
	cr_assert_eq(agent_conn_list(&c, dir, collect, &s, err, sizeof(err)), -EFBIG);
	cr_assert_eq(s.n, 100);
	cr_assert(strstr(err, "more than 100 entries"), "%s", err);
	close(fd);
	waitpid(agent_pid, NULL, 0);
}

Test(agent_fs_e2e, malformed_requests_end_the_connection_not_the_agent)
{
	struct agent_conn c;
	int fd = open_agent(&c);
	/* a STAT whose path has a NUL inside: the agent says so and hangs up */
	cr_assert_eq(agent_write_frame(fd, AGENT_STAT, "/tmp\0x", 6), 0);
	struct agent_hdr h;
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), 0);
	cr_assert_eq(h.type, AGENT_ERROR);
	cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), -EPIPE);
	close(fd);
	int st;
	waitpid(agent_pid, &st, 0);
	cr_assert(WIFEXITED(st));
	/* a MKDIR too short to hold its words, a MOVE without its NUL */
	static const struct { uint16_t t; const char *p; uint32_t n; } bad[] = {
		{ AGENT_MKDIR, "\xed\x01", 2 }, { AGENT_MOVE, "/a/b", 4 }, { AGENT_REMOVE, "\0\0\0\0rel", 7 },
		{ AGENT_LIST, "", 0 }, { AGENT_ENTRIES, "", 0 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = open_agent(&c);
		cr_assert_eq(agent_write_frame(fd, bad[i].t, bad[i].p, bad[i].n), 0);
		cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), 0);
		cr_assert_eq(h.type, AGENT_ERROR, "case %zu", i);
		cr_assert_eq(agent_read_frame(fd, &h, buf, sizeof(buf)), -EPIPE, "case %zu", i);
		close(fd);
		waitpid(agent_pid, NULL, 0);
	}
}

/* ---- a hostile agent ---- */

enum fake_mode { FAKE_LIST_FLOOD, FAKE_LIST_BAD_ENTRY, FAKE_STAT_TWO, FAKE_STAT_DATA };

/* A forked fake agent on one end of a socket pair: HELLO, one request read, then the answer of mode. */
static pid_t fake_start(enum fake_mode m, int *fd)
{
	int sp[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(sp[0]);
		int c = sp[1];
		signal(SIGPIPE, SIG_IGN);
		uint8_t hb[AGENT_HELLO_LEN];
		struct agent_hello hello = { .version = AGENT_PROTO_VERSION };
		agent_hello_encode(hb, &hello);
		struct agent_hdr h;
		static uint8_t p[AGENT_MAX_PAYLOAD];
		if (agent_write_frame(c, AGENT_HELLO, hb, sizeof(hb)) || agent_read_frame(c, &h, p, sizeof(p)))
			_exit(1);
		struct agent_entry e = { .mode = S_IFREG | 0644, .size = 1, .name = "f" };
		size_t off = 0;
		while (agent_entry_encode(p, sizeof(p), &off, &e) == 0)
			;
		switch (m) {
		case FAKE_LIST_FLOOD: /* full frames of entries, never the empty one, until the host hangs up */
			while (agent_write_frame(c, AGENT_ENTRIES, p, (uint32_t)off) == 0)
				;
			break;
		case FAKE_LIST_BAD_ENTRY:
			/* the last entry's name length runs past the frame: every entry before it is good */
			p[off - (AGENT_ENTRY_FIXED + 1) + 20] = 200;
			agent_write_frame(c, AGENT_ENTRIES, p, (uint32_t)off);
			break;
		case FAKE_STAT_TWO:
			agent_write_frame(c, AGENT_ENTRIES, p, 2 * (AGENT_ENTRY_FIXED + 1));
			break;
		case FAKE_STAT_DATA:
			agent_write_frame(c, AGENT_DATA, "x", 1);
			break;
		}
		while (read(c, p, sizeof(p)) > 0)
			;
		_exit(0);
	}
	close(sp[1]);
	*fd = sp[0];
	return pid;
}

static int count_each(void *arg, const struct agent_entry *e)
{
	(void)e;
	++*(unsigned *)arg;
	return 0;
}

Test(agent_fs_hostile, a_list_flood_is_cut_at_the_bound, .timeout = 60)
{
	int fd;
	pid_t pid = fake_start(FAKE_LIST_FLOOD, &fd);
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), 0, "%s", err);
	c.list_max = 50000;
	unsigned n = 0;
	cr_assert_eq(agent_conn_list(&c, "/", count_each, &n, err, sizeof(err)), -EFBIG);
	cr_assert_eq(n, 50000, "the caller saw exactly the bound");
	close(fd);
	waitpid(pid, NULL, 0);
}

Test(agent_fs_hostile, malformed_replies_are_refused)
{
	static const enum fake_mode modes[] = { FAKE_LIST_BAD_ENTRY, FAKE_STAT_TWO, FAKE_STAT_DATA };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		int fd;
		pid_t pid = fake_start(modes[i], &fd);
		struct agent_conn c;
		agent_conn_init(&c, fd, -1, -1);
		struct agent_hello h;
		cr_assert_eq(agent_conn_hello(&c, 0, &h, err, sizeof(err)), 0, "%s", err);
		int rc;
		unsigned n = 0;
		if (modes[i] == FAKE_LIST_BAD_ENTRY) {
			rc = agent_conn_list(&c, "/", count_each, &n, err, sizeof(err));
			cr_assert_eq(n, 0, "nothing of a bad frame is handed on");
		} else {
			struct agent_entry e;
			rc = agent_conn_stat(&c, "/", &e, err, sizeof(err));
		}
		cr_assert_eq(rc, -EPROTO, "mode %d: %s", (int)modes[i], err);
		close(fd);
		waitpid(pid, NULL, 0);
	}
}

/* ---- padcell fs, end to end: a CONNECT bridge in front of the real agent ---- */

/*
 * A fork that listens on sock, and for each of up to `conns` connections reads the CONNECT line,
 * answers OK and runs the real agent on it (--serve-fd): what a VM's vsock socket does.
 */
static pid_t bridge_start(const char *sock, int conns)
{
	enum unix_step at;
	int l = unix_listen(sock, 4, 0, 0, &at);
	cr_assert_geq(l, 0, "listen %s: %d", sock, l);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char exe[PATH_MAX], agent[PATH_MAX + 32];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(agent, sizeof(agent), "%s/../guest/padcell-agent", exe);
		for (int i = 0; i < conns; i++) {
			int c = accept(l, NULL, NULL);
			if (c < 0)
				_exit(1);
			char line[40];
			size_t got = 0;
			while (got < sizeof(line) - 1 && read(c, line + got, 1) == 1 && line[got++] != '\n')
				;
			if (write(c, "OK 1\n", 5) != 5)
				_exit(1);
			pid_t a = fork();
			if (a == 0) {
				dup2(c, 3);
				execl(agent, agent, "--serve-fd", "3", (char *)NULL);
				_exit(127);
			}
			close(c);
			waitpid(a, NULL, 0);
		}
		_exit(0);
	}
	close(l);
	bridge_pid = pid;
	return pid;
}

/* Runs build/padcell with args; its stdout into out (cap bytes), stderr into errout; its exit code. */
static int run_padcell(char *const *args, char *out, size_t cap, char *errout, size_t errcap)
{
	char self[PATH_MAX], bin[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(bin, sizeof(bin), "%s/../padcell", self);
	int po[2], pe[2];
	cr_assert_eq(pipe(po), 0);
	cr_assert_eq(pipe(pe), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		char *argv[16] = { bin };
		for (int i = 0; args[i] && i < 14; i++)
			argv[i + 1] = args[i];
		execv(bin, argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	size_t got = 0, egot = 0;
	ssize_t r;
	while ((r = read(po[0], out + got, cap - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	while ((r = read(pe[0], errout + egot, errcap - 1 - egot)) > 0)
		egot += (size_t)r;
	errout[egot] = '\0';
	close(po[0]);
	close(pe[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(agent_fs_cli, fs_commands_end_to_end, .init = fs_setup, .fini = fs_teardown, .timeout = 60)
{
	char sock[128], a[128], b[128], out[8192], eout[2048];
	snprintf(sock, sizeof(sock), "%s/vsock", dir);
	snprintf(a, sizeof(a), "%s/made/deep", dir);
	snprintf(b, sizeof(b), "%s/moved", dir);
	pid_t br = bridge_start(sock, 6);
	char *mk[] = { "fs", "mkdir", "--vsock", sock, "-p", "--mode", "700", a, NULL };
	cr_assert_eq(run_padcell(mk, out, sizeof(out), eout, sizeof(eout)), 0, "%s", eout);
	struct stat st;
	cr_assert_eq(stat(a, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	/* a name with a terminal escape in it: shown escaped */
	char evil[160];
	snprintf(evil, sizeof(evil), "%s/made/\x1b[2Jx", dir);
	int fd = open(evil, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "12345", 5), 5);
	close(fd);
	char made[128];
	snprintf(made, sizeof(made), "%s/made", dir);
	char *ls[] = { "fs", "ls", "--vsock", sock, made, NULL };
	cr_assert_eq(run_padcell(ls, out, sizeof(out), eout, sizeof(eout)), 0, "%s", eout);
	cr_assert(strstr(out, "d 0700 "), "%s", out);
	cr_assert(strstr(out, " deep\n"), "%s", out);
	cr_assert(strstr(out, "- 0644 5 "), "%s", out);
	cr_assert(strstr(out, "\\x1b[2Jx\n"), "escaped: %s", out);
	cr_assert_null(strchr(out, '\x1b'), "no raw ESC reaches the terminal");
	char *mv[] = { "fs", "mv", "--vsock", sock, made, b, NULL };
	cr_assert_eq(run_padcell(mv, out, sizeof(out), eout, sizeof(eout)), 0, "%s", eout);
	cr_assert_eq(access(b, F_OK), 0);
	/* stat of two paths, one missing: that one is named, the other printed, exit 1 */
	char *stt[] = { "fs", "stat", "--vsock", sock, made, b, NULL };
	cr_assert_eq(run_padcell(stt, out, sizeof(out), eout, sizeof(eout)), 1);
	cr_assert(strstr(eout, "No such file"), "%s", eout);
	cr_assert(!strncmp(out, "d 0", 3) && strstr(out, "/moved\n"), "%s", out);
	char *rm1[] = { "fs", "rm", "--vsock", sock, b, NULL };
	cr_assert_eq(run_padcell(rm1, out, sizeof(out), eout, sizeof(eout)), 1, "not empty");
	cr_assert(strstr(eout, "padcell: the agent says: cannot remove"), "%s", eout);
	char *rm2[] = { "fs", "rm", "-r", "--vsock", sock, b, NULL };
	cr_assert_eq(run_padcell(rm2, out, sizeof(out), eout, sizeof(eout)), 0, "%s", eout);
	cr_assert_eq(access(b, F_OK), -1);
	/* bad usage: nothing is connected to (the bridge has served all six) */
	char *bad1[] = { "fs", "ls", "--vsock", sock, "relative", NULL };
	cr_assert_eq(run_padcell(bad1, out, sizeof(out), eout, sizeof(eout)), 2);
	char *bad2[] = { "fs", "chmod", "--vsock", sock, "/x", NULL };
	cr_assert_eq(run_padcell(bad2, out, sizeof(out), eout, sizeof(eout)), 2);
	cr_assert(strstr(eout, "unknown operation"), "%s", eout);
	char *bad3[] = { "fs", "ls", "-r", "--vsock", sock, "/", NULL };
	cr_assert_eq(run_padcell(bad3, out, sizeof(out), eout, sizeof(eout)), 2);
	char *bad4[] = { "fs", "mv", "--vsock", sock, "/a", NULL };
	cr_assert_eq(run_padcell(bad4, out, sizeof(out), eout, sizeof(eout)), 2);
	int st2;
	cr_assert_eq(waitpid(br, &st2, 0), br);
	bridge_pid = 0;
}
