/* vmm/util: the Unix-socket helpers (live, stale and foreign files at the path), now_ms, the stop signals. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
