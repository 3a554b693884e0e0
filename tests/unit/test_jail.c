/* The jail's build-time seccomp programs, loaded for real in the test's own process (Criterion forks one per test). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/jail/jail.h"

static volatile sig_atomic_t trapped_nr = -1;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	trapped_nr = si->si_syscall;
}

/* Violations trap into on_sigsys, which records the call. */
static void trap_sigsys(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGSYS, &sa, NULL), 0);
}

/* The process filter, then the kind's own, as a thread of that kind has them; violations trap here. */
static void confine_as(enum jail_kind kind, bool net)
{
#ifdef __SANITIZE_ADDRESS__
	/*
	 * LeakSanitizer's check when the test's process exits stops the world with ptrace from a new
	 * thread, which a real filter (rightly) forbids: under the sanitizers these tests would crash
	 * in teardown.  The unit tier runs them unsanitized.
	 */
	cr_skip_test("loads a real seccomp filter, under which LeakSanitizer's exit check cannot run (the unit tier runs it)");
#endif
	trap_sigsys();
	char err[160];
	cr_assert_eq(jail_seccomp_build(JAIL_SECCOMP_KILL, net, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(jail_seccomp_load_process(err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(jail_seccomp_load(kind), 0);
}

Test(jail_seccomp, network_thread_sockets)
{
	confine_as(JAIL_NET, true);
	int s4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int u6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert(s4 >= 0 && u6 >= 0, "libslirp's TCP and UDP sockets are allowed");
	int one = 1;
	cr_assert_eq(setsockopt(s4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	cr_assert_eq(fcntl(s4, F_SETFL, O_NONBLOCK), 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int rc = connect(s4, (struct sockaddr *)&a, sizeof(a));
	cr_assert(rc == 0 || errno == EINPROGRESS || errno == ECONNREFUSED, "connect is allowed (%s)", strerror(errno));
	cr_assert_eq(trapped_nr, -1, "nothing trapped so far (%d)", (int)trapped_nr);
	/* glib's /dev/urandom: refused, not fatal */
	cr_assert_eq(syscall(SYS_openat, AT_FDCWD, "/dev/urandom", O_RDONLY), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(trapped_nr, -1);
	/* anything else a network stack has no business with traps */
	syscall(SYS_socket, AF_NETLINK, SOCK_RAW, 0);
	cr_assert_eq(trapped_nr, SYS_socket, "a netlink socket traps");
	close(s4);
	close(u6);
}

Test(jail_seccomp, device_thread_has_no_inet)
{
	confine_as(JAIL_DEVICE, false);
	int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(u >= 0, "the vsock device's Unix sockets are allowed");
	close(u);
	cr_assert_eq(trapped_nr, -1);
	syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(trapped_nr, SYS_socket, "AF_INET traps outside the network thread");
}

Test(jail_seccomp, control_without_a_nic_has_no_inet)
{
	confine_as(JAIL_CONTROL, false);
	syscall(SYS_socket, AF_INET6, SOCK_DGRAM, 0);
	cr_assert_eq(trapped_nr, SYS_socket);
	trapped_nr = -1;
	syscall(SYS_personality, 0xffffffffUL);
	cr_assert_eq(trapped_nr, SYS_personality, "a call no row names traps");
}

/* (a device thread: a vCPU's filter has no sendmsg, which Criterion's own reporting needs) */
Test(jail_seccomp, kick_only_to_our_own_pid)
{
	confine_as(JAIL_DEVICE, false);
	/* the pid patched into the program at start: tgkill to ourselves (signal 0) passes, to another traps */
	cr_assert_eq(syscall(SYS_tgkill, getpid(), gettid(), 0), 0);
	cr_assert_eq(trapped_nr, -1);
	syscall(SYS_tgkill, getpid() + 1, getpid() + 1, 0);
	cr_assert_eq(trapped_nr, SYS_tgkill);
}

static void *thread_nop(void *arg)
{
	return arg;
}

/* `padcell serve`'s daemon: its own program, for all its threads: TCP and Unix sockets, threads, no exec, no fork */
Test(jail_seccomp, serve_daemon_program)
{
#ifdef __SANITIZE_ADDRESS__
	cr_skip_test("loads a real seccomp filter, under which LeakSanitizer's exit check cannot run (the unit tier runs it)");
#endif
	trap_sigsys();
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(jail_seccomp_load_daemon(JAIL_SERVE, JAIL_SECCOMP_KILL), 0);
	int fds[3] = { socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0),
		       socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0) };
	cr_assert(fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0, "the listener's and the sandboxes' sockets are allowed");
	struct sockaddr_in a = { .sin_family = AF_INET };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	cr_assert_eq(bind(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fds[0], 4), 0);
	int mfd = memfd_create("envd-put", MFD_CLOEXEC);
	cr_assert(mfd >= 0, "envd's file transfers go through a memfd");
	close(mfd);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, thread_nop, NULL), 0, "threads are allowed");
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(trapped_nr, -1, "nothing trapped so far (%d)", (int)trapped_nr);
	syscall(SYS_socket, AF_NETLINK, SOCK_RAW, 0);
	cr_assert_eq(trapped_nr, SYS_socket, "a netlink socket traps");
	trapped_nr = -1;
	char *argv[] = { "true", NULL };
	syscall(SYS_execve, "/bin/true", argv, NULL);
	cr_assert_eq(trapped_nr, SYS_execve, "execve traps");
	trapped_nr = -1;
	syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
	cr_assert_eq(trapped_nr, SYS_clone, "a new process traps");
	trapped_nr = -1;
	syscall(SYS_kill, getppid(), 0);
	cr_assert_eq(trapped_nr, SYS_kill, "no signal to another process");
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

Test(jail_seccomp, names_for_the_reporter)
{
	cr_assert_str_eq(jail_syscall_name(SYS_openat), "openat");
	cr_assert_str_eq(jail_syscall_name(SYS_personality), "personality");
	cr_assert_null(jail_syscall_name(-1));
	cr_assert_null(jail_syscall_name(100000));
}

/*
 * The supervisor's program (vmm/jail/pidns.c), in a child: Criterion's reporting needs calls it
 * refuses.  It may write (its violation line), wait, signal the monitor's pid alone and exit;
 * anything else traps.  The child's exit code says which check failed (0: none).
 */
Test(jail_seccomp, supervisor_program)
{
#ifdef __SANITIZE_ADDRESS__
	cr_skip_test("loads a real seccomp filter (see confine_as)");
#endif
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t monitor = getpid(); /* stands in for the monitor: the one pid kill(2) may name */
	fflush(NULL);
	pid_t child = fork();
	cr_assert(child >= 0);
	if (child == 0) {
		struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSYS, &sa, NULL) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    jail_seccomp_load_supervisor(JAIL_SECCOMP_KILL, monitor))
			_exit(10);
		if (write(p[1], "x", 1) != 1)
			_exit(11);
		if (kill(monitor, 0) != 0 || trapped_nr != -1)
			_exit(12);
		kill(monitor + 1, 0);
		if (trapped_nr != SYS_kill)
			_exit(13);
		trapped_nr = -1;
		syscall(SYS_personality, 0xffffffffUL);
		_exit(trapped_nr == SYS_personality ? 0 : 14);
	}
	close(p[1]);
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st), "the child was killed (signal %d)", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	cr_assert_eq(WEXITSTATUS(st), 0, "check %d failed (10 load, 11 write, 12 kill the monitor, 13 kill another, 14 personality)",
		     WEXITSTATUS(st));
	char c;
	cr_assert_eq(read(p[0], &c, 1), 1);
	close(p[0]);
}
