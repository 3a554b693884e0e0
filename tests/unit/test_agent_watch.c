/*
 * Protocol 5's directory watch: WATCH and watch-event encoding with their malformed cases, then
 * the real agent (a host process) watching a temporary directory: create and write events with
 * names relative to it, a recursive watch following a new subdirectory (and not without
 * recursive), the watch's end when the host closes, a removed root's final ERROR, a host that
 * does not read losing events counted exactly in one LOST event, and other connections served
 * while a watch is open; a fake agent's malformed WEVENTS, other frames and hangup.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "vmm/util.h"
#include "tests/unit/agent_harness.h"

/* ---- encoding ---- */

Test(agent_watch_proto, watch_request)
{
	uint8_t b[AGENT_MAX_PAYLOAD];
	char path[AGENT_MAX_PATH];
	uint32_t fl;
	int n = agent_watch_encode(b, sizeof(b), AGENT_WATCH_RECURSIVE, "/tmp/x");
	cr_assert_eq(n, 10);
	cr_assert_eq(agent_watch_decode(b, (size_t)n, &fl, path, sizeof(path)), 0);
	cr_assert_eq(fl, AGENT_WATCH_RECURSIVE);
	cr_assert_str_eq(path, "/tmp/x");
	cr_assert_eq(agent_watch_encode(b, sizeof(b), 2, "/tmp"), -EINVAL, "unknown flag");
	cr_assert_eq(agent_watch_encode(b, sizeof(b), 0, "tmp"), -EINVAL, "relative");
	cr_assert_eq(agent_watch_encode(b, 6, 0, "/tmp/x"), -E2BIG);
	b[0] = 4; /* an unknown flag */
	cr_assert_eq(agent_watch_decode(b, (size_t)n, &fl, path, sizeof(path)), -EPROTO);
	b[0] = 0;
	cr_assert_eq(agent_watch_decode(b, 4, &fl, path, sizeof(path)), -EPROTO, "no path");
	b[4] = 't';
	cr_assert_eq(agent_watch_decode(b, (size_t)n, &fl, path, sizeof(path)), -EPROTO, "relative");
	b[4] = '/';
	b[6] = '\0';
	cr_assert_eq(agent_watch_decode(b, (size_t)n, &fl, path, sizeof(path)), -EPROTO, "a NUL inside");
}

/* One raw event record: kind, declared length, then bytes. */
static size_t rec(uint8_t *out, uint16_t kind, uint16_t len, const void *v, size_t vn)
{
	out[0] = (uint8_t)kind;
	out[1] = (uint8_t)(kind >> 8);
	out[2] = (uint8_t)len;
	out[3] = (uint8_t)(len >> 8);
	memcpy(out + 4, v, vn);
	return 4 + vn;
}

static int decode_one(const uint8_t *p, size_t len)
{
	static struct agent_wevent e;
	size_t off = 0;
	int rc = agent_wevent_next(p, len, &off, &e);
	if (rc == 1 && off != len)
		return -1000; /* a test record is one whole event */
	return rc;
}

Test(agent_watch_proto, events_round_trip)
{
	static uint8_t b[AGENT_MAX_PAYLOAD];
	static struct agent_wevent in[4], out;
	in[0] = (struct agent_wevent){.kind = AGENT_WEV_CREATE};
	strcpy(in[0].name, "sub/file.txt");
	in[1] = (struct agent_wevent){.kind = AGENT_WEV_LOST, .lost = 1234567890123ull};
	in[2] = (struct agent_wevent){.kind = AGENT_WEV_OVERFLOW};
	in[3] = (struct agent_wevent){.kind = AGENT_WEV_UNWATCHED};
	strcpy(in[3].name, "deep");
	size_t off = 0;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(agent_wevent_encode(b, sizeof(b), &off, &in[i]), 0);
	cr_assert_eq(off, 4 + 12 + 4 + 8 + 4 + 0 + 4 + 4);
	size_t r = 0;
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(agent_wevent_next(b, off, &r, &out), 1);
		cr_assert_eq(out.kind, in[i].kind);
		cr_assert_eq(out.lost, in[i].lost);
		cr_assert_str_eq(out.name, in[i].name);
	}
	cr_assert_eq(agent_wevent_next(b, off, &r, &out), 0, "the end");
	/* a full frame takes no more */
	off = AGENT_MAX_PAYLOAD - 10;
	cr_assert_eq(agent_wevent_encode(b, sizeof(b), &off, &in[0]), -E2BIG);
	cr_assert_eq(off, AGENT_MAX_PAYLOAD - 10, "nothing written");
	/* what encode refuses */
	struct agent_wevent bad = {.kind = AGENT_WEV_WRITE};
	off = 0;
	const char *names[] = {"", "/abs", "a/", "a//b", ".", "..", "a/./b", "a/../b"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		strcpy(bad.name, names[i]);
		cr_assert_eq(agent_wevent_encode(b, sizeof(b), &off, &bad), -EINVAL, "name '%s'", names[i]);
	}
	bad = (struct agent_wevent){.kind = AGENT_WEV_LOST};
	cr_assert_eq(agent_wevent_encode(b, sizeof(b), &off, &bad), -EINVAL, "LOST of none");
	bad.kind = 0;
	cr_assert_eq(agent_wevent_encode(b, sizeof(b), &off, &bad), -EINVAL, "kind 0");
	bad.kind = 9;
	cr_assert_eq(agent_wevent_encode(b, sizeof(b), &off, &bad), -EINVAL, "kind 9");
	cr_assert_eq(off, 0);
}

Test(agent_watch_proto, malformed_events)
{
	static uint8_t b[AGENT_MAX_PAYLOAD];
	uint8_t z8[8] = {0}, one8[8] = {1};
	cr_assert_eq(decode_one(b, 3), -EPROTO, "a cut header");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CREATE, 5, "abcd", 4)), -EPROTO, "length past the end");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CREATE, 0, "", 0)), -EPROTO, "an empty name");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CREATE, 3, "a\0b", 3)), -EPROTO, "a NUL in the name");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CREATE, 2, "/a", 2)), -EPROTO, "absolute");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_REMOVE, 5, "../up", 5)), -EPROTO, "'..'");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_RENAME, 4, "a//b", 4)), -EPROTO, "an empty component");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CHMOD, 2, "a/", 2)), -EPROTO, "a trailing '/'");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_LOST, 8, z8, 8)), -EPROTO, "LOST of none");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_LOST, 4, z8, 4)), -EPROTO, "LOST of 4 bytes");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_LOST, 8, one8, 8)), 1);
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_OVERFLOW, 1, "x", 1)), -EPROTO, "OVERFLOW with bytes");
	cr_assert_eq(decode_one(b, rec(b, 0, 1, "x", 1)), -EPROTO, "kind 0");
	cr_assert_eq(decode_one(b, rec(b, 0x100 | AGENT_WEV_CREATE, 1, "x", 1)), -EPROTO, "kind 257");
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_UNWATCHED, 1, "x", 1)), 1);
	/* a name of AGENT_MAX_PATH bytes is one too many */
	static char longname[AGENT_MAX_PATH];
	memset(longname, 'a', sizeof(longname));
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CREATE, AGENT_MAX_PATH, longname, AGENT_MAX_PATH)), -EPROTO);
	cr_assert_eq(decode_one(b, rec(b, AGENT_WEV_CREATE, AGENT_MAX_PATH - 1, longname, AGENT_MAX_PATH - 1)), 1);
	/* the header accepts the new types, and no type past them */
	uint8_t h[AGENT_HDR_LEN];
	struct agent_hdr hd;
	agent_hdr_encode(h, 0, AGENT_WEVENTS, 0);
	cr_assert_eq(agent_hdr_decode(h, &hd), 0);
	agent_hdr_encode(h, 0, AGENT_WEVENTS + 1, 0);
	cr_assert_eq(agent_hdr_decode(h, &hd), -EPROTO);
}

/* ---- the real agent ---- */

static char dir[64], err[512];
static pid_t agent_pid = -1;

static void w_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-watch-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void w_teardown(void)
{
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
		agent_pid = -1;
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd)) {
		/* best effort */
	}
}

static void open_agent(struct agent_conn *c)
{
	int fd = agent_spawn(&agent_pid);
	agent_conn_init(c, fd, -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(c, 0, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c->version, 5);
}

static void touch(const char *rel, const char *text)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	if (text)
		cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void mkdir_rel(const char *rel)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	cr_assert_eq(mkdir(p, 0755), 0);
}

/* Events seen until the one named `until` of kind `kind` (0: any), as "KIND name" lines. */
struct seen {
	const char *until;
	uint16_t kind;
	char log[8192];
	unsigned creates;
	uint64_t lost;
	unsigned total; /* > 0: stop once creates and lost add up to it */
};

static int seen_each(void *arg, const struct agent_wevent *e)
{
	struct seen *s = arg;
	cr_assert_not_null(e, "no keepalive without idle_ms");
	size_t n = strlen(s->log);
	if (e->kind == AGENT_WEV_LOST) {
		s->lost += e->lost;
		return s->total && s->creates + s->lost >= s->total;
	}
	cr_assert_neq(e->kind, AGENT_WEV_OVERFLOW, "the kernel's queue holds these events");
	s->creates += e->kind == AGENT_WEV_CREATE;
	if (n < sizeof(s->log) - 300)
		snprintf(s->log + n, sizeof(s->log) - n, "%u %s\n", e->kind, e->name);
	if (s->total)
		return s->creates + s->lost >= s->total;
	return s->until && !strcmp(e->name, s->until) && (!s->kind || e->kind == s->kind);
}

Test(agent_watch, create_and_write_named_relative, .init = w_setup, .fini = w_teardown, .timeout = 60)
{
	struct agent_conn c;
	open_agent(&c);
	cr_assert_eq(agent_conn_watch(&c, dir, false, err, sizeof(err)), 0, "%s", err);
	touch("hello.txt", "hi");
	struct seen s = {.until = "hello.txt", .kind = AGENT_WEV_WRITE};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(s.log, "1 hello.txt\n2 hello.txt\n");
	/* not recursive: a subdirectory's file is not seen (the root's later file comes first) */
	mkdir_rel("sub");
	touch("sub/inner", NULL);
	touch("after", NULL);
	s = (struct seen){.until = "after"};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(s.log, "1 sub\n1 after\n");
	/* chmod, rename (its new name is a create), remove */
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof(a), "%s/after", dir);
	snprintf(b, sizeof(b), "%s/renamed", dir);
	cr_assert_eq(chmod(a, 0600), 0);
	cr_assert_eq(rename(a, b), 0);
	cr_assert_eq(unlink(b), 0);
	s = (struct seen){.until = "renamed", .kind = AGENT_WEV_REMOVE};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(s.log, "5 after\n4 after\n1 renamed\n3 renamed\n");
	/* the host closing the connection ends the watch, and the agent with it (--serve-fd) */
	close(c.fd);
	int st;
	cr_assert_eq(waitpid(agent_pid, &st, 0), agent_pid);
	agent_pid = -1;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

Test(agent_watch, recursive_follows_new_subdirectories, .init = w_setup, .fini = w_teardown, .timeout = 60)
{
	mkdir_rel("old");
	struct agent_conn c;
	open_agent(&c);
	cr_assert_eq(agent_conn_watch(&c, dir, true, err, sizeof(err)), 0, "%s", err);
	touch("old/a", NULL);
	struct seen s = {.until = "old/a"};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(s.log, "1 old/a\n");
	/* a directory made now, with a file in it at once: both seen (the new directory is scanned) */
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "mkdir -p %s/new/deeper && : > %s/new/deeper/f", dir, dir);
	cr_assert_eq(system(p), 0);
	s = (struct seen){.until = "new/deeper/f", .kind = AGENT_WEV_CREATE};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert(strstr(s.log, "1 new\n") && strstr(s.log, "1 new/deeper\n"), "%s", s.log);
	touch("new/deeper/g", "x");
	s = (struct seen){.until = "new/deeper/g", .kind = AGENT_WEV_WRITE};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	/* a directory moved away is no longer watched: its file after the move is not named */
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof(a), "%s/new", dir);
	snprintf(b, sizeof(b), "%s-moved", dir);
	cr_assert_eq(rename(a, b), 0);
	snprintf(p, sizeof(p), "%s-moved/deeper/h", dir);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	touch("last", NULL);
	s = (struct seen){.until = "last"};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(s.log, "4 new\n1 last\n");
	snprintf(p, sizeof(p), "rm -rf '%s-moved'", dir);
	cr_assert_eq(system(p), 0);
	close(c.fd);
}

Test(agent_watch, refusals_and_the_root_going, .init = w_setup, .fini = w_teardown, .timeout = 60)
{
	struct agent_conn c;
	open_agent(&c);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/missing", dir);
	cr_assert_eq(agent_conn_watch(&c, p, false, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "No such file"), "%s", err);
	close(c.fd);
	waitpid(agent_pid, NULL, 0);
	touch("file", NULL);
	open_agent(&c);
	snprintf(p, sizeof(p), "%s/file", dir);
	cr_assert_eq(agent_conn_watch(&c, p, false, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "Not a directory"), "%s", err);
	close(c.fd);
	waitpid(agent_pid, NULL, 0);
	/* the watched directory removed: its entries' removal, then the agent's final ERROR */
	mkdir_rel("gone");
	touch("gone/x", NULL);
	open_agent(&c);
	snprintf(p, sizeof(p), "%s/gone/", dir); /* a trailing '/' is the same directory */
	cr_assert_eq(agent_conn_watch(&c, p, true, err, sizeof(err)), 0, "%s", err);
	snprintf(p, sizeof(p), "rm -rf '%s/gone'", dir);
	cr_assert_eq(system(p), 0);
	struct seen s = {0};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "removed or moved away"), "%s", err);
	cr_assert_str_eq(s.log, "3 x\n");
	close(c.fd);
	/* the client refuses an older agent's watch */
	struct agent_conn old;
	agent_conn_init(&old, -1, -1, -1);
	old.version = 4;
	cr_assert_eq(agent_conn_watch(&old, dir, false, err, sizeof(err)), -EOPNOTSUPP);
	cr_assert(strstr(err, "protocol 5"), "%s", err);
}

/*
 * A host that does not read: the agent keeps at most AGENT_WATCH_QUEUE bytes and counts the rest,
 * and what is delivered plus what LOST counts is every create exactly.  10000 creates stay below
 * the kernel's own queue (16384 events by default), so none is lost there.
 */
Test(agent_watch, unread_events_are_counted_lost, .init = w_setup, .fini = w_teardown, .timeout = 120)
{
	struct agent_conn c;
	open_agent(&c);
	cr_assert_eq(agent_conn_watch(&c, dir, false, err, sizeof(err)), 0, "%s", err);
	enum { FILES = 10000 };
	char name[300];
	for (int i = 0; i < FILES; i++) {
		/* long names: the queue and the socket's buffers fill well before the end */
		snprintf(name, sizeof(name), "%05d-%0200d", i, 0);
		touch(name, NULL);
	}
	/* every create is delivered or counted, in order: reading stops once they add up */
	struct seen s = {.total = FILES};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_gt(s.lost, 0);
	cr_assert_lt(s.creates, FILES);
	cr_assert_eq(s.creates + s.lost, FILES, "%u delivered + %llu lost", s.creates, (unsigned long long)s.lost);
	/* the watch goes on */
	touch("sentinel", NULL);
	struct seen t = {.until = "sentinel"};
	cr_assert_eq(agent_conn_watch_read(&c, 0, seen_each, &t, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(t.log, "1 sentinel\n");
	close(c.fd);
}

/* The agent serves other connections while one holds a watch (listen mode, as init does). */
Test(agent_watch, other_work_goes_on, .init = w_setup, .fini = w_teardown, .timeout = 60)
{
	char name[32];
	snprintf(name, sizeof(name), "watch-%d", (int)getpid());
	agent_pid = agent_spawn_listen(name);
	struct agent_conn w, x;
	agent_conn_init(&w, agent_dial(name), -1, -1);
	struct agent_hello h;
	cr_assert_eq(agent_conn_hello(&w, now_ms() + 20000, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_watch(&w, dir, false, err, sizeof(err)), 0, "%s", err);
	/* another connection runs a command that writes into the watched directory */
	agent_conn_init(&x, agent_dial(name), -1, -1);
	cr_assert_eq(agent_conn_hello(&x, now_ms() + 20000, &h, err, sizeof(err)), 0, "%s", err);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "echo from-exec > %s/by-exec", dir);
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	struct agent_exec_req req = {.argv = argv, .stdin_fd = -1};
	struct agent_exec_result res;
	cr_assert_eq(agent_conn_exec(&x, &req, -1, -1, &res, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(res.how, AGENT_EXITED);
	cr_assert_eq(res.code, 0);
	close(x.fd);
	struct seen s = {.until = "by-exec", .kind = AGENT_WEV_WRITE};
	cr_assert_eq(agent_conn_watch_read(&w, 0, seen_each, &s, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(s.log, "1 by-exec\n2 by-exec\n");
	close(w.fd);
}

/* A fake agent on a socket pair: after HELLO and WATCH's OK it sends `frame` (type t, len bytes). */
static int fake_watch(uint16_t t, const uint8_t *p, uint32_t len, struct agent_conn *c)
{
	int sp[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	struct agent_hello h = {.version = 5};
	uint8_t hb[AGENT_HELLO_LEN];
	agent_hello_encode(hb, &h);
	cr_assert_eq(agent_write_frame(sp[1], AGENT_HELLO, hb, sizeof(hb)), 0);
	cr_assert_eq(agent_write_frame(sp[1], AGENT_OK, NULL, 0), 0);
	cr_assert_eq(agent_write_frame(sp[1], t, p, len), 0);
	agent_conn_init(c, sp[0], -1, -1);
	struct agent_hello got;
	cr_assert_eq(agent_conn_hello(c, 0, &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_conn_watch(c, "/w", false, err, sizeof(err)), 0, "%s", err);
	return sp[1];
}

static int count_each(void *arg, const struct agent_wevent *e)
{
	(*(unsigned *)arg)++;
	return 0;
}

/* The host hands on no event of a frame that does not check whole, and no other frame type. */
Test(agent_watch_proto, hostile_frames_fail_the_watch)
{
	static uint8_t b[AGENT_MAX_PAYLOAD];
	struct agent_conn c;
	unsigned n = 0;
	size_t off = rec(b, AGENT_WEV_CREATE, 1, "a", 1);
	off += rec(b + off, AGENT_WEV_CREATE, 2, "..", 2); /* the second event is bad */
	int peer = fake_watch(AGENT_WEVENTS, b, (uint32_t)off, &c);
	cr_assert_eq(agent_conn_watch_read(&c, 0, count_each, &n, err, sizeof(err)), -EPROTO);
	cr_assert_eq(n, 0, "not even the good first event");
	close(peer);
	close(c.fd);
	peer = fake_watch(AGENT_WEVENTS, NULL, 0, &c);
	cr_assert_eq(agent_conn_watch_read(&c, 0, count_each, &n, err, sizeof(err)), -EPROTO, "an empty WEVENTS");
	close(peer);
	close(c.fd);
	peer = fake_watch(AGENT_STDOUT, (const uint8_t *)"x", 1, &c);
	cr_assert_eq(agent_conn_watch_read(&c, 0, count_each, &n, err, sizeof(err)), -EPROTO, "another frame type");
	close(peer);
	close(c.fd);
	peer = fake_watch(AGENT_ERROR, (const uint8_t *)"gone", 4, &c);
	cr_assert_eq(agent_conn_watch_read(&c, 0, count_each, &n, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "gone"), "%s", err);
	close(peer);
	close(c.fd);
	/* the agent hanging up ends it too */
	peer = fake_watch(AGENT_WEVENTS, b, (uint32_t)rec(b, AGENT_WEV_WRITE, 1, "a", 1), &c);
	char watch_frame[64]; /* taken first: a socket closed with unread bytes resets its peer instead */
	cr_assert_eq(read(peer, watch_frame, sizeof(watch_frame)), AGENT_HDR_LEN + 4 + 2);
	close(peer);
	cr_assert_eq(agent_conn_watch_read(&c, 0, count_each, &n, err, sizeof(err)), -EPIPE);
	cr_assert_eq(n, 1);
	close(c.fd);
}
