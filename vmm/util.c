/* Unix-socket listen/connect with the stale-socket probe, now_ms, and the stop signals, written once. */
#include "vmm/util.h"

#include <errno.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fail_at(enum unix_step *at, enum unix_step step, int rc)
{
	if (at)
		*at = step;
	return rc;
}

static int unix_addr(struct sockaddr_un *a, const char *path)
{
	size_t n = strlen(path);
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	/* A NUL must follow: an unterminated sun_path is read up to sizeof(sun_path) by the kernel,
	 * and an empty one would bind an abstract name nobody can see in the file system. */
	if (n == 0 || n >= sizeof(a->sun_path))
		return -ENAMETOOLONG;
	memcpy(a->sun_path, path, n);
	return 0;
}

/*
 * What is at path already: 0 when nothing is (or a stale socket was removed), else -errno.  A
 * socket file is live if someone accepts on it and stale (left by a crash) if the connection is
 * refused.  The probe does not block: a live socket with a full backlog answers EAGAIN instead of
 * stalling the caller, and counts as live.
 */
static int unix_clear_stale(const char *path, const struct sockaddr_un *a, enum unix_step *at)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : fail_at(at, UNIX_STEP_LOOKUP, -errno);
	if (!S_ISSOCK(st.st_mode))
		return fail_at(at, UNIX_STEP_NOT_SOCKET, -EEXIST);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return fail_at(at, UNIX_STEP_SOCKET, -errno);
	int rc = connect(probe, (const struct sockaddr *)a, sizeof(*a));
	int e = errno;
	close(probe);
	if (rc == 0 || e == EAGAIN)
		return fail_at(at, UNIX_STEP_LIVE, -EADDRINUSE);
	if (e != ECONNREFUSED)
		return fail_at(at, UNIX_STEP_PROBE, -e);
	if (unlink(path) < 0)
		return fail_at(at, UNIX_STEP_STALE, -errno);
	return 0;
}

int unix_listen(const char *path, int backlog, mode_t mode, int flags, enum unix_step *at)
{
	struct sockaddr_un a;
	if (unix_addr(&a, path))
		return fail_at(at, UNIX_STEP_PATH, -ENAMETOOLONG);
	int rc = unix_clear_stale(path, &a, at);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return fail_at(at, UNIX_STEP_SOCKET, -errno);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		rc = fail_at(at, UNIX_STEP_BIND, -errno);
		goto err_close;
	}
	if ((mode && chmod(path, mode) < 0) || listen(fd, backlog) < 0) {
		rc = fail_at(at, UNIX_STEP_LISTEN, -errno);
		goto err_unlink;
	}
	return fd;
err_unlink:
	unlink(path); /* ours: bind made it a moment ago */
err_close:
	close(fd);
	return rc;
}

int unix_connect(const char *path, int flags, enum unix_step *at)
{
	struct sockaddr_un a;
	if (unix_addr(&a, path))
		return fail_at(at, UNIX_STEP_PATH, -ENAMETOOLONG);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return fail_at(at, UNIX_STEP_SOCKET, -errno);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		return fail_at(at, UNIX_STEP_CONNECT, -e);
	}
	return fd;
}

double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

int stop_signals_fd(void)
{
	sigset_t set;
	stop_signals(&set);
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}
