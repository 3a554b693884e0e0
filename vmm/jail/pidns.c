/*
 * The PID namespace: the monitor runs as pid 1 of a namespace of its own, as the child of the
 * process the user started, which stays behind as its supervisor (README "The jail").
 */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/util.h"

/*
 * unshare(CLONE_NEWPID) moves only the caller's children, so the process the user started forks
 * the monitor into the namespace and supervises it.  Everything that knows the VM by its pid
 * (serve's table, the cgroup leaf vm-PID, `run`'s callers, a shell's $!) keeps that pid: the
 * supervisor's.  It lives exactly as long as the monitor: it ends with the monitor's status, and
 * the monitor has PR_SET_PDEATHSIG SIGKILL, so SIGKILL of the known pid kills the monitor, and
 * with its init the kernel kills the whole namespace.  The cleanup after a SIGKILL is then what
 * it always was: the mount namespace (the jail) vanishes, the cgroup reaper removes the leaf (the
 * supervisor holds the reaper's pipe too, so the reaper's cgroup.kill never ends the supervisor
 * before it reported the monitor's end).
 */
static struct {
	bool on;      /* this process is the monitor, pid 1 of its own PID namespace */
	pid_t known;  /* the supervisor's pid: the one callers know */
	int alive_r;  /* EOF once the supervisor is gone (PDEATHSIG is re-armed at the uid switch) */
} PN = { .alive_r = -1 };

pid_t jail_pid(void)
{
	return PN.on ? PN.known : getpid();
}

/* The stop signals are the monitor's to handle: handed on, unless the kernel sent them (a
 * terminal's ^C or hangup reaches the whole process group, the monitor included). */
static _Noreturn void supervise(pid_t monitor, bool keep_kill, enum jail_seccomp_mode mode)
{
	prctl(PR_SET_NAME, "padcell-super", 0, 0, 0);
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	sigset_t wait_set;
	stop_signals(&wait_set);
	sigaddset(&wait_set, SIGCHLD);
	/*
	 * No privileges: no new ones, no capabilities (the bounding set went before the fork) but
	 * CAP_KILL when the monitor switches to another uid (signalling it needs it then), and a
	 * filter that allows waiting, kill(2) to the monitor alone, and exit.  A failure here leaves
	 * the supervisor less confined than it should be, never the monitor: it is said once.
	 */
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { 0 };
	if (keep_kill)
		d[0].effective = d[0].permitted = 1u << CAP_KILL;
	int rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
	/* a violation is said as the monitor's threads say theirs (jail.c), and ends the supervisor with
	 * 159: the monitor follows it (PR_SET_PDEATHSIG) */
	jail_supervisor_trap(mode);
	if (!rc)
		rc = jail_seccomp_load_supervisor(mode, monitor);
	if (rc)
		fprintf(stderr, "padcell: jail: the supervisor cannot confine itself: %s\n", strerror(-rc));
	else
		jail_supervisor_test_hook();
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&wait_set, &si);
		if (sig == SIGCHLD) {
			int st;
			if (waitpid(monitor, &st, WNOHANG) == monitor)
				_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		} else if (sig > 0 && si.si_code != SI_KERNEL) {
			kill(monitor, sig);
		}
	}
}

/* Whether the supervisor is gone (it may have died before PDEATHSIG was armed). */
static bool supervisor_gone(void)
{
	struct pollfd p = { .fd = PN.alive_r, .events = POLLIN };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
}

/*
 * Forks the monitor into a new PID namespace (single-threaded, after the user namespace).
 * Returns 0 in the monitor; the supervisor never returns.  -errno with what set when no
 * namespace could be made: the caller goes on as the monitor, in the host's PID namespace.
 */
int jail_pidns_fork(bool keep_kill, enum jail_seccomp_mode mode, char *what, size_t whatlen)
{
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0) {
		snprintf(what, whatlen, "pipe");
		return -errno;
	}
	if (unshare(CLONE_NEWPID) < 0) {
		int e = errno;
		close(alive[0]), close(alive[1]);
		snprintf(what, whatlen, "unshare");
		return -e;
	}
	sigset_t chld, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old); /* the supervisor waits for it with sigwaitinfo */
	pid_t known = getpid();
	fflush(NULL);
	/*
	 * The monitor is born on this CPU, the one its parent runs on and soon leaves (the supervisor
	 * blocks at once), and both are given their CPUs back right after the fork.  Left to itself
	 * the kernel may queue the new process behind another task on the other CPU: on our 2-core
	 * hosts with the other core busy, the monitor then started 0.4-3 ms after the fork instead
	 * of ~0.2 ms (README "The jail", what it costs).
	 */
	cpu_set_t cpus, here;
	int cpu = sched_getcpu();
	bool pinned = false;
	if (cpu >= 0 && sched_getaffinity(0, sizeof(cpus), &cpus) == 0) {
		CPU_ZERO(&here);
		CPU_SET(cpu, &here);
		pinned = sched_setaffinity(0, sizeof(here), &here) == 0;
	}
	pid_t pid = fork();
	if (pinned)
		sched_setaffinity(0, sizeof(cpus), &cpus);
	if (pid < 0) {
		int e = errno;
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(alive[0]), close(alive[1]);
		snprintf(what, whatlen, "fork");
		return -e;
	}
	if (pid > 0) {
		close(alive[0]); /* alive[1] stays open until the supervisor ends */
		supervise(pid, keep_kill, mode);
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(alive[1]);
	PN.alive_r = alive[0];
	if (supervisor_gone())
		_exit(128 + SIGKILL); /* as PDEATHSIG would have: nobody waits for this VM any more */
	PN.on = true;
	PN.known = known;
	return 0;
}

/* After the uid switch, which clears PR_SET_PDEATHSIG: armed again, and no longer needed to ask. */
void jail_pidns_rearm(void)
{
	if (!PN.on)
		return;
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (supervisor_gone())
		_exit(128 + SIGKILL);
	close(PN.alive_r);
	PN.alive_r = -1;
}

/* For `padcell check`: what jail_prepare does, in a child that ends at once (a grandchild as pid 1). */
bool jail_pidns_probe(void)
{
	fflush(NULL);
	pid_t probe = fork();
	if (probe == 0) {
		char what[32];
		if ((geteuid() != 0 && jail_ns_user(what, sizeof(what))) || unshare(CLONE_NEWPID) < 0)
			_exit(1);
		pid_t first = fork();
		if (first == 0)
			_exit(getpid() == 1 ? 0 : 1);
		int st;
		_exit(first > 0 && waitpid(first, &st, 0) == first && WIFEXITED(st) ? WEXITSTATUS(st) : 1);
	}
	int st;
	return probe > 0 && waitpid(probe, &st, 0) == probe && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}
