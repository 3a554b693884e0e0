/* The real guest agent as a host process for the unit tests: BUILD/guest/padcell-agent --serve-fd 3
 * on one end of a socket pair (found beside the test binary, BUILD/tests). */
#ifndef PADCELL_TEST_AGENT_HARNESS_H
#define PADCELL_TEST_AGENT_HARNESS_H

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Starts the agent; returns the host's end of the pair, the agent's pid in *pid. */
static inline int agent_spawn(pid_t *pid)
{
	char exe[PATH_MAX], agent[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(agent, sizeof(agent), "%s/../guest/padcell-agent", exe);
	cr_assert_eq(access(agent, X_OK), 0, "%s missing (make agent)", agent);
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

#endif
