/* The real guest agent as a host process for the unit tests: BUILD/guest/padcell-agent --serve-fd 3
 * on one end of a socket pair, or --listen-fd 3 on a Unix listening socket (found beside the test
 * binary, BUILD/tests). */
#ifndef PADCELL_TEST_AGENT_HARNESS_H
#define PADCELL_TEST_AGENT_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static inline void agent_path(char *agent, size_t cap)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(agent, cap, "%s/../guest/padcell-agent", exe);
	cr_assert_eq(access(agent, X_OK), 0, "%s missing (make agent)", agent);
}

/* Starts the agent; returns the host's end of the pair, the agent's pid in *pid. */
static inline int agent_spawn(pid_t *pid)
{
	char agent[PATH_MAX + 32];
	agent_path(agent, sizeof(agent));
	int sp[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	*pid = fork();
	cr_assert_geq(*pid, 0);
	if (*pid == 0) {
		dup2(sp[1], 3); /* not close-on-exec: the agent must not hand it to the command */
		execl(agent, agent, "--serve-fd", "3", (char *)NULL);
		_exit(127);
	}
	close(sp[1]);
	return sp[0];
}

/*
 * Starts the agent accepting connections (with its process manager) on a Unix socket bound in
 * the abstract namespace under name; agent_dial connects there.  Ends when the agent is killed.
 */
static inline void agent_listen_addr(struct sockaddr_un *sa, socklen_t *len, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "padcell-test-%d-%s", (int)getpid(), name);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static inline pid_t agent_spawn_listen(const char *name)
{
	char agent[PATH_MAX + 32];
	agent_path(agent, sizeof(agent));
	struct sockaddr_un sa;
	socklen_t len;
	agent_listen_addr(&sa, &len, name);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(l, 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, len), 0);
	cr_assert_eq(listen(l, 16), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that fails midway leaves no agent behind */
		dup2(l, 3);
		execl(agent, agent, "--listen-fd", "3", (char *)NULL);
		_exit(127);
	}
	close(l);
	return pid;
}

static inline int agent_dial(const char *name)
{
	struct sockaddr_un sa;
	socklen_t len;
	agent_listen_addr(&sa, &len, name);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, len), 0, "connect: %s", strerror(errno));
	return fd;
}

#endif
