/* vmm/util: the Unix-socket helpers (live, stale and foreign files at the path), now_ms, the stop signals, text_escape. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/util.h"

static char dir[64], path[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-util-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s", dir);
}

static void teardown(void)
{
	unlink(path);
	rmdir(dir);
}

TestSuite(unix_sock, .init = setup, .fini = teardown);

Test(unix_sock, listen_then_connect)
{
	enum unix_step at = UNIX_STEP_CONNECT;
	int l = unix_listen(path, 4, 0, SOCK_NONBLOCK, &at);
	cr_assert_geq(l, 0, "%s", strerror(-l));
	cr_assert_eq(at, UNIX_STEP_CONNECT, "*at is left alone on success");
	cr_assert(fcntl(l, F_GETFD) & FD_CLOEXEC);
	cr_assert(fcntl(l, F_GETFL) & O_NONBLOCK);
	int c = unix_connect(path, 0, NULL);
	cr_assert_geq(c, 0, "%s", strerror(-c));
	cr_assert(fcntl(c, F_GETFD) & FD_CLOEXEC);
	cr_assert_not(fcntl(c, F_GETFL) & O_NONBLOCK);
	int a = accept(l, NULL, NULL);
	cr_assert_geq(a, 0);
	cr_assert_eq(write(c, "x", 1), 1);
	char b;
	cr_assert_eq(read(a, &b, 1), 1);
	cr_assert_eq(b, 'x');
	close(a);
	close(c);
	close(l);
}

Test(unix_sock, listen_refuses_a_live_socket)
{
	int live = unix_listen(path, 4, 0, 0, NULL);
	cr_assert_geq(live, 0);
	enum unix_step at;
	cr_assert_eq(unix_listen(path, 4, 0, 0, &at), -EADDRINUSE);
	cr_assert_eq(at, UNIX_STEP_LIVE);
	/* still the first listener's: a client reaches it */
	int c = unix_connect(path, 0, NULL);
	cr_assert_geq(c, 0, "the live socket was taken over: %s", strerror(-c));
	close(c);
	close(live);
}

Test(unix_sock, listen_refuses_a_live_socket_with_a_full_backlog)
{
	/* A backlog of 0 still admits one connection on Linux; fill it with non-blocking clients. */
	int live = unix_listen(path, 0, 0, 0, NULL);
	cr_assert_geq(live, 0);
	int cs[8], n = 0;
	while (n < 8 && (cs[n] = unix_connect(path, SOCK_NONBLOCK, NULL)) >= 0)
		n++;
	cr_assert_lt(n, 8, "the backlog never filled");
	enum unix_step at;
	cr_assert_eq(unix_listen(path, 4, 0, 0, &at), -EADDRINUSE, "a busy listener is still live");
	cr_assert_eq(at, UNIX_STEP_LIVE);
	while (n)
		close(cs[--n]);
	close(live);
}

Test(unix_sock, listen_refuses_other_files_and_leaves_them)
{
	FILE *f = fopen(path, "w");
	fputs("keep me", f);
	fclose(f);
	enum unix_step at;
	cr_assert_eq(unix_listen(path, 4, 0, 0, &at), -EEXIST);
	cr_assert_eq(at, UNIX_STEP_NOT_SOCKET);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 7, "the file is left alone");
	unlink(path);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(unix_listen(path, 4, 0, 0, &at), -EEXIST);
	cr_assert_eq(at, UNIX_STEP_NOT_SOCKET);
	rmdir(path);
	cr_assert_eq(symlink("/nonexistent", path), 0);
	cr_assert_eq(unix_listen(path, 4, 0, 0, &at), -EEXIST, "a dangling symlink is not followed");
	cr_assert_eq(at, UNIX_STEP_NOT_SOCKET);
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
}

Test(unix_sock, listen_replaces_a_stale_socket)
{
	int old = unix_listen(path, 4, 0, 0, NULL);
	cr_assert_geq(old, 0);
	close(old); /* the file stays behind, as after a crash: nobody listens */
	cr_assert_eq(unix_connect(path, 0, NULL), -ECONNREFUSED);
	int fd = unix_listen(path, 4, 0, 0, NULL);
	cr_assert_geq(fd, 0, "stale socket not replaced: %s", strerror(-fd));
	int c = unix_connect(path, 0, NULL);
	cr_assert_geq(c, 0);
	close(c);
	close(fd);
}

Test(unix_sock, listen_sets_the_mode_before_anyone_connects)
{
	mode_t old = umask(0);
	int fd = unix_listen(path, 4, 0600, 0, NULL);
	umask(old);
	cr_assert_geq(fd, 0);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	close(fd);
}

/* The socket is bound under a temporary name and renamed into place once it listens: nothing
 * but the socket is left in its directory. */
Test(unix_sock, listen_leaves_only_the_socket)
{
	int fd = unix_listen(path, 4, 0, 0, NULL);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		cr_expect_str_eq(e->d_name, "s", "an entry other than the socket: %s", e->d_name);
		n++;
	}
	closedir(d);
	cr_assert_eq(n, 1);
	int c = unix_connect(path, 0, NULL);
	cr_assert_geq(c, 0);
	close(c);
	close(fd);
}

/* Monitors are each pid 1 of their own PID namespace: many listening at once in one directory must
 * never meet on a temporary name (the kvm-soak tier's 200 VMs once did, when it held the pid).
 * Eight such processes, let go together, 200 listens each; every one must succeed. */
Test(unix_sock, listen_from_many_pid1s_at_once)
{
	enum { PROCS = 8, EACH = 200 };
	pid_t kids[PROCS];
	int go[2];
	cr_assert_eq(pipe(go), 0);
	for (int i = 0; i < PROCS; i++) {
		kids[i] = fork();
		cr_assert_geq(kids[i], 0);
		if (kids[i] == 0) {
			close(go[1]); /* only the parent holds the start's write end */
			if (unshare(CLONE_NEWPID) < 0)
				_exit(errno == EPERM || errno == EINVAL ? 77 : 2);
			pid_t one = fork();
			if (one == 0) {
				char p[sizeof(dir) + 32], c;
				if (read(go[0], &c, 1) != 0) /* the start: EOF once the parent closes its end */
					_exit(5);
				for (int k = 0; k < EACH; k++) {
					snprintf(p, sizeof(p), "%s/p%d-%d", dir, i, k);
					int fd = unix_listen(p, 1, 0, 0, NULL);
					if (fd < 0)
						_exit(10);
					close(fd);
					unlink(p);
				}
				_exit(getpid() == 1 ? 0 : 3);
			}
			int st;
			_exit(one > 0 && waitpid(one, &st, 0) == one && WIFEXITED(st) ? WEXITSTATUS(st) : 4);
		}
	}
	close(go[0]);
	close(go[1]);
	int skipped = 0;
	for (int i = 0; i < PROCS; i++) {
		int st;
		cr_assert_eq(waitpid(kids[i], &st, 0), kids[i]);
		cr_assert(WIFEXITED(st));
		if (WEXITSTATUS(st) == 77) {
			skipped++;
			continue;
		}
		cr_expect_eq(WEXITSTATUS(st), 0, "process %d: exit %d (10: a listen failed)", i, WEXITSTATUS(st));
	}
	if (skipped)
		cr_skip_test("no PID namespaces here (unshare refused)");
}

/* Where the temporary name would not fit sun_path (a short name deep down), the socket is bound at
 * its path directly, and still works. */
Test(unix_sock, listen_where_no_temporary_name_fits)
{
	char deep[sizeof(dir) + 80], p[sizeof(deep) + 8];
	snprintf(deep, sizeof(deep), "%s/%070d", dir, 0);
	cr_assert_eq(mkdir(deep, 0700), 0);
	snprintf(p, sizeof(p), "%s/s", deep);
	int fd = unix_listen(p, 4, 0, 0, NULL);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	int c = unix_connect(p, 0, NULL);
	cr_assert_geq(c, 0);
	close(c);
	close(fd);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(rmdir(deep), 0, "something besides the socket was left in %s", deep);
}

Test(unix_sock, bad_paths)
{
	enum unix_step at;
	cr_assert_eq(unix_listen("", 4, 0, 0, &at), -ENAMETOOLONG);
	cr_assert_eq(at, UNIX_STEP_PATH);
	cr_assert_eq(unix_connect("", 0, &at), -ENAMETOOLONG);
	cr_assert_eq(at, UNIX_STEP_PATH);
	char longp[109];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[108] = '\0';
	cr_assert_eq(unix_listen(longp, 4, 0, 0, &at), -ENAMETOOLONG, "108 bytes leave no room for the NUL");
	cr_assert_eq(unix_connect(longp, 0, &at), -ENAMETOOLONG);
	char nodir[160];
	snprintf(nodir, sizeof(nodir), "%s/no/such", dir);
	cr_assert_eq(unix_listen(nodir, 4, 0, 0, &at), -ENOENT);
	cr_assert_eq(at, UNIX_STEP_BIND);
	cr_assert_eq(unix_connect(nodir, 0, &at), -ENOENT);
	cr_assert_eq(at, UNIX_STEP_CONNECT);
	cr_assert_eq(unix_connect(path, 0, NULL), -ENOENT, "nothing at the path");
}

Test(now_ms, monotonic_and_in_milliseconds)
{
	double a = now_ms();
	struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	double b = now_ms();
	cr_assert_geq(b - a, 19.9, "slept 20 ms, clock moved %.3f ms", b - a);
	cr_assert_lt(b - a, 5000);
	cr_assert_geq(now_ms(), b);
}

Test(stop_signals, the_set_and_its_signalfd)
{
	sigset_t set;
	stop_signals(&set);
	cr_assert(sigismember(&set, SIGINT) && sigismember(&set, SIGTERM) && sigismember(&set, SIGHUP));
	cr_assert_not(sigismember(&set, SIGPIPE) || sigismember(&set, SIGKILL) || sigismember(&set, SIGCHLD));
	/* As main() does: blocked, so a raised SIGTERM waits on the signalfd instead of ending us. */
	sigset_t old;
	cr_assert_eq(sigprocmask(SIG_BLOCK, &set, &old), 0);
	int fd = stop_signals_fd();
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	struct signalfd_siginfo si;
	cr_assert_eq(read(fd, &si, sizeof(si)), -1, "non-blocking: nothing pending yet");
	cr_assert_eq(errno, EAGAIN);
	raise(SIGTERM);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 1000), 1);
	cr_assert_eq(read(fd, &si, sizeof(si)), (ssize_t)sizeof(si));
	cr_assert_eq(si.ssi_signo, SIGTERM);
	close(fd);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* The vsock socket and PATH_1024 (mode 0) are owner-only whatever the umask, like the API socket. */
Test(unix_sock, listen_makes_the_socket_owner_only_whatever_the_umask)
{
	char d[] = "/tmp/padcell-umask-XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	char p[64];
	snprintf(p, sizeof(p), "%s/s", d);
	mode_t old = umask(0);
	int fd = unix_listen(p, 4, 0, 0, NULL);
	umask(old);
	cr_assert_geq(fd, 0);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	close(fd);
	unlink(p);
	rmdir(d);
}

/* ---- text_escape: guest text made safe for the host terminal ---- */

static const char *esc(const char *in, size_t len, unsigned flags)
{
	static char out[512];
	size_t n = text_escape(out, sizeof(out), in, len, flags);
	cr_assert_eq(n, strlen(out));
	return out;
}
#define ESC(lit, flags) esc(lit, sizeof(lit) - 1, flags)

/* No byte a terminal acts on survives: below 0x20 but newline (multi-line), DEL, raw 0x80-0x9f. */
static void assert_inert(const char *s, bool multi)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		cr_assert(!((*p < 0x20 && !(multi && (*p == '\n' || *p == '\t'))) || *p == 0x7f),
			  "control byte 0x%02x at %zu in '%s'", *p, (size_t)(p - (const unsigned char *)s), s);
}

Test(text_escape, plain_text_and_utf8_stay)
{
	cr_assert_str_eq(ESC("disk full: /tmp/x", 0), "disk full: /tmp/x");
	cr_assert_str_eq(ESC("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80", 0), "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80");
	cr_assert_str_eq(ESC("a\\x1b", 0), "a\\\\x1b"); /* a backslash cannot fake an escape */
	cr_assert_str_eq(ESC("", 0), "");
}

Test(text_escape, esc_csi_osc_and_c0_controls)
{
	const char *s = ESC("\x1b[2J\x1b[H\x1b]0;owned\x07 a\rb\bc\x7f\x00z", 0);
	cr_assert_str_eq(s, "\\x1b[2J\\x1b[H\\x1b]0;owned\\x07 a\\rb\\bc\\x7f\\x00z");
	assert_inert(s, false);
	cr_assert_str_eq(ESC("one\ntwo\tthree", 0), "one\\ntwo\\tthree");
}

Test(text_escape, c1_controls_raw_and_encoded)
{
	/* 0x9b is CSI and 0x9d OSC to a terminal in 8-bit mode; U+009B the same in UTF-8 to some */
	const char *s = ESC("\x9b" "2J\x9d" "0;t\x9c|\xc2\x9b" "2J|\xc2\x80|\xc2\x9f|\xc2\xa0", 0);
	cr_assert_str_eq(s, "\\x9b2J\\x9d0;t\\x9c|\\xc2\\x9b2J|\\xc2\\x80|\\xc2\\x9f|\xc2\xa0");
	assert_inert(s, false);
	/* text that would read backwards: U+202E, U+2067 */
	cr_assert_str_eq(ESC("a\xe2\x80\xae" "b\xe2\x81\xa7", 0), "a\\xe2\\x80\\xaeb\\xe2\\x81\\xa7");
}

Test(text_escape, invalid_utf8)
{
	cr_assert_str_eq(ESC("\xc0\xaf", 0), "\\xc0\\xaf");                 /* overlong '/' */
	cr_assert_str_eq(ESC("\xe0\x80\xaf", 0), "\\xe0\\x80\\xaf");         /* overlong, 3 bytes */
	cr_assert_str_eq(ESC("\xed\xa0\x80", 0), "\\xed\\xa0\\x80");         /* a surrogate */
	cr_assert_str_eq(ESC("\xf4\x90\x80\x80", 0), "\\xf4\\x90\\x80\\x80"); /* beyond U+10FFFF */
	cr_assert_str_eq(ESC("\xff\xfe", 0), "\\xff\\xfe");
	cr_assert_str_eq(ESC("ab\xe2\x82", 0), "ab\\xe2\\x82");             /* cut off at the end */
	cr_assert_str_eq(ESC("\xe2\x82x", 0), "\\xe2\\x82x");               /* cut off by ASCII */
}

Test(text_escape, multiline_keeps_newlines_only)
{
	const char *s = ESC("boot\r\nline two\r\n\x1b[31mred\x1b[0m\rover\n", TEXT_MULTILINE);
	cr_assert_str_eq(s, "boot\nline two\n\\x1b[31mred\\x1b[0m\\rover\n");
	assert_inert(s, true);
}

Test(text_escape, long_input_is_bounded_and_never_cut_inside_an_escape)
{
	static char in[10000], out[64];
	memset(in, 'a', sizeof(in));
	size_t n = text_escape(out, sizeof(out), in, sizeof(in), 0);
	cr_assert_eq(n, sizeof(out) - 1);
	cr_assert_eq(strcmp(out + n - 3, "..."), 0, "%s", out);
	/* all escapes: the output ends in whole \xHH units, then "..." */
	memset(in, 0x1b, sizeof(in));
	for (size_t size = 1; size < sizeof(out); size++) {
		n = text_escape(out, size, in, sizeof(in), 0);
		cr_assert_lt(n, size);
		if (size < 4)
			continue;
		cr_assert_eq(strcmp(out + n - 3, "..."), 0, "size %zu: %s", size, out);
		cr_assert_eq((n - 3) % 4, 0, "size %zu: half an escape in %s", size, out);
	}
	/* input that fits exactly needs no "..." */
	cr_assert_eq(text_escape(out, 5, "\x1b", 1, 0), 4);
	cr_assert_str_eq(out, "\\x1b");
	/* a 4-byte character is not split: it goes whole or not at all */
	memset(in, 0, 16);
	memcpy(in, "ab\xf0\x9f\x98\x80", 6);
	n = text_escape(out, 8, in, 6, 0);
	cr_assert_str_eq(out, "ab\xf0\x9f\x98\x80");
	n = text_escape(out, 7, in, 6, 0);
	cr_assert_str_eq(out, "ab\xf0\x9f\x98\x80"); /* the last unit may use the room kept for "..." */
	n = text_escape(out, 6, in, 6, 0);
	cr_assert_str_eq(out, "ab...");
}
