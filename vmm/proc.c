/* Child monitor processes: start times from /proc, and a bounded SIGTERM-then-SIGKILL stop. */
#include "vmm/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/util.h"

/* A killed process's exit after SIGKILL: the kernel's business, bounded all the same. */
#define PROC_KILL_WAIT_MS 5000

static int proc_stat(pid_t pid, char *state, unsigned long long *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	/* comm (field 2) may hold spaces and parentheses: the fields after it follow the last ')' */
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EINVAL;
	p += 2;
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	char *end;
	errno = 0;
	*start = strtoull(p, &end, 10);
	if (errno || end == p)
		return -EINVAL;
	return 0;
}

int proc_start_time(pid_t pid, unsigned long long *start)
{
	char st;
	int rc = proc_stat(pid, &st, start);
	if (rc)
		return rc;
	return st == 'Z' || st == 'X' ? -ESRCH : 0;
}

bool proc_alive(pid_t pid, unsigned long long start)
{
	unsigned long long now;
	return pid > 0 && proc_start_time(pid, &now) == 0 && now == start;
}

static bool wait_exit(int pidfd, int ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	double deadline = now_ms() + ms;
	for (;;) {
		double left = deadline - now_ms();
		if (left <= 0)
			return false;
		int k = poll(&p, 1, (int)left + 1);
		if (k > 0)
			return true;
		if (k < 0 && errno != EINTR)
			return false;
	}
}

int proc_stop(pid_t pid, int pidfd, unsigned long long start, int grace_ms)
{
	if (pid <= 0)
		return -ESRCH;
	int own = -1;
	if (pidfd < 0) {
		own = pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0)
			return -ESRCH;
	}
	/* the pidfd is open: from here on pid cannot name another process, so checking its start is safe */
	int rc = 0;
	if (start && !proc_alive(pid, start)) {
		rc = -ESRCH;
		goto out;
	}
	syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
	if (!wait_exit(pidfd, grace_ms)) {
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		wait_exit(pidfd, PROC_KILL_WAIT_MS);
	}
out:
	/* our child: reap it (ECHILD for one adopted from an earlier daemon, reaped by its parent) */
	while (waitpid(pid, NULL, WNOHANG) < 0 && errno == EINTR)
		;
	if (own >= 0)
		close(own);
	return rc;
}
