/*
 * The seccomp allow-lists: one table, one row per syscall (or ioctl) and the thread kinds allowed
 * it.  Only the build-time generator (vmm/jail/mkfilters.c) includes this: it turns the table into
 * BPF programs with libseccomp, and the monitor loads those (vmm/jail/seccomp.c).
 *
 * Kinds: C control thread (and helper threads it starts), V vCPU, D device worker, N the NIC's
 * network-stack thread (libslirp), P only while the process confines itself (per-thread
 * capability and Landlock steps, loading the next filter), S the supervisor (vmm/jail/pidns.c:
 * the process the user started, outside the monitor's PID namespace; a program of its own), H
 * `padcell serve`'s HTTP daemon (every thread of it: libmicrohttpd's, the API's, envd's workers;
 * a program of its own, loaded before its first thread; no exec, no fork), M `padcell mcp`'s server
 * (one thread: JSON-RPC on stdio, the agent client; a program of its own).  A thread's filters stack: every
 * thread has the process filter (the union of all rows) and then its kind's.  The control thread
 * starts device threads (and the NIC's) again at resume, and those inherit its filter, so the
 * control filter includes every D row too, and every N row when the VM has a NIC.
 */
#ifndef PADCELL_JAIL_SECCOMP_RULES_H
#define PADCELL_JAIL_SECCOMP_RULES_H

#include "vmm/jail/jail.h"
#include "vmm/jail/seccomp_bpf.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

enum {
	C = 1 << JAIL_CONTROL, V = 1 << JAIL_VCPU, D = 1 << JAIL_DEVICE, N = 1 << JAIL_NET, P = 1 << JAIL_KINDS,
	S = 1 << (JAIL_KINDS + 1), H = 1 << JAIL_SERVE, M = 1 << JAIL_MCP
};
#define ALL (C | V | D | N)

/*
 * PID: the argument is the monitor's own pid (as the caller sees it: 1 inside its PID namespace), patched into the program at start (JAIL_BPF_PID_MAGIC).
 * FAIL: not allowed but not fatal either: the call fails with errno val, in that kind's own
 * program only (where another kind of the same program allows it, it is allowed).
 */
enum arg_test { ANY, EQ, HAS, LACKS, NOT, PID, FAIL };
struct rule {
	int nr;
	unsigned kinds;
	enum arg_test test;
	unsigned arg;
	uint64_t val;
};
#define SYS(name, kinds)             { SCMP_SYS(name), kinds, ANY, 0, 0 }
#define ARG(name, kinds, t, a, v)    { SCMP_SYS(name), kinds, t, a, v }
#define IOCTL(req, kinds)            { SCMP_SYS(ioctl), kinds, EQ, 1, req }
#define FAILS(name, kinds, err)      { SCMP_SYS(name), kinds, FAIL, 0, err }

/* Adding a syscall is one reviewed line here. */
static const struct rule rules[] = {
	/* every thread: memory, locks, time, signals, exit */
	SYS(futex, ALL), SYS(read, ALL), SYS(write, ALL | S) /* S: its SIGSYS line */, SYS(close, ALL), SYS(exit, ALL), SYS(exit_group, ALL | S),
	SYS(rt_sigreturn, ALL | S), SYS(rt_sigprocmask, ALL), SYS(restart_syscall, ALL | S), SYS(clock_gettime, ALL),
	SYS(clock_nanosleep, ALL), SYS(nanosleep, ALL), SYS(gettid, ALL), SYS(getpid, ALL), SYS(sched_yield, ALL),
	SYS(madvise, ALL), SYS(munmap, ALL), SYS(brk, ALL), SYS(mremap, ALL),
	/* glib's g_get_real_time (libslirp's timers) is gettimeofday: the vDSO answers it unless the host's
	 * clocksource has no vDSO clock (a TSC marked unstable, as in a TCG L1), then it is a real syscall */
	SYS(gettimeofday, ALL),
	ARG(mmap, ALL, LACKS, 2, PROT_EXEC), ARG(mprotect, ALL, LACKS, 2, PROT_EXEC),
	ARG(tgkill, ALL, PID, 0, 0), /* pthread_kill: the vCPU kick, only to our own threads */
	ARG(rt_sigaction, C, NOT, 0, SIGSYS), /* nobody replaces the violation handler */
	SYS(getrandom, ALL), SYS(fstat, ALL), SYS(newfstatat, ALL), SYS(lseek, ALL), SYS(sigaltstack, ALL),
	SYS(rseq, ALL), SYS(set_robust_list, ALL), /* a new thread's first calls, under its creator's filter */
	/* reading a limit (new_limit NULL): the vsock device sizes its connection cap from RLIMIT_NOFILE */
	ARG(prlimit64, V | D, EQ, 2, 0),
	/* the console: a UART write on a vCPU thread goes to a socket with send (stdout under a supervisor) */
	SYS(sendto, V),
	/* vCPU threads: the run loop and the devices behind its exits */
	IOCTL(KVM_RUN, V), IOCTL(KVM_GET_REGS, V), IOCTL(KVM_IRQ_LINE, V | D | N | C),
	/* device workers: disk I/O, the vsock device's Unix sockets, their event loops */
	SYS(pread64, D | C), SYS(pwrite64, D | C), SYS(preadv, D | C), SYS(pwritev, D | C), SYS(fsync, D | C),
	SYS(fdatasync, D | C), SYS(fallocate, D | C), SYS(readv, D | N | C), SYS(writev, D | N | C),
	SYS(epoll_wait, D | C), SYS(epoll_pwait, D | C), SYS(epoll_ctl, V | D | C) /* V: a driver reset closes vsock connections on the vCPU thread */, SYS(poll, D | N | C), SYS(ppoll, D | N | C),
	ARG(socket, D | C, EQ, 0, AF_UNIX), SYS(connect, D | N | C), SYS(accept4, D | N | C), SYS(recvfrom, D | N | C),
	SYS(recvmsg, D | N | C), SYS(sendto, D | N | C), SYS(sendmsg, D | N | C), SYS(shutdown, D | N | C),
	SYS(getsockopt, D | N | C), SYS(setsockopt, D | N | C), SYS(fcntl, D | N | C), SYS(getsockname, D | N | C),
	SYS(getpeername, D | N | C),
	/* the NIC's network stack: libslirp's host sockets for the guest's TCP, UDP and ICMP (ping) flows,
	 * IPv4 and IPv6, never raw (no CAP_NET_RAW anyway); bind for a UDP socket's local port */
	ARG(socket, N, EQ, 0, AF_INET), ARG(socket, N, EQ, 0, AF_INET6), SYS(bind, N),
	IOCTL(FIONREAD, N), IOCTL(FIONBIO, N),
	/* --publish: libslirp accepts the forwarded host port's connections on its own thread */
	SYS(accept, N),
	/* a connection to an address resolved for an allowed name: padcell listens on 127.0.0.1 for the
	 * stack's dial, to check its TLS SNI / HTTP Host before dialling the name itself */
	SYS(listen, N),
	/* glib's g_rand_new (libslirp seeds from it) tries /dev/urandom, which the empty root has not:
	 * told ENOENT it seeds from the time and pids instead, and never tries again */
	FAILS(openat, N, ENOENT), SYS(getppid, N),
	/* control: threads, the event loop, the API, the agent client, snapshots, teardown */
	ARG(clone, C, HAS, 0, CLONE_THREAD), /* threads only, never a new process */
	SYS(openat, C), SYS(mkdirat, C), SYS(mkdir, C), SYS(unlink, C), SYS(unlinkat, C), SYS(rmdir, C),
	SYS(rename, C), SYS(renameat, C), SYS(renameat2, C), SYS(ftruncate, C), SYS(statx, C), SYS(access, C),
	SYS(faccessat, C), SYS(faccessat2, C), SYS(readlink, C), SYS(getdents64, C), SYS(copy_file_range, C),
	SYS(sendfile, C), SYS(splice, C), SYS(pipe2, C), SYS(eventfd2, C), SYS(signalfd4, C), SYS(timerfd_create, C),
	SYS(timerfd_settime, C), SYS(epoll_create1, C), SYS(listen, C), SYS(bind, C), SYS(socketpair, C),
	SYS(dup, C), SYS(dup3, C), SYS(select, C), SYS(pselect6, C), SYS(wait4, C), SYS(getuid, C), SYS(geteuid, C),
	SYS(getgid, C), SYS(getegid, C), SYS(getppid, C), SYS(uname, C), SYS(sched_getaffinity, C),
	SYS(getrusage, C), SYS(sysinfo, C), SYS(prlimit64, C), SYS(mincore, C), SYS(msync, C),
	ARG(prctl, C, EQ, 0, PR_SET_NAME),
	ARG(seccomp, C | P, EQ, 0, SECCOMP_SET_MODE_FILTER), /* device threads born at resume narrow themselves */
	IOCTL(TCGETS, C), IOCTL(TCSETS, C), IOCTL(TCSETSW, C), IOCTL(TCSETSF, C), IOCTL(TIOCGWINSZ, C),
	IOCTL(FIONREAD, C | D), IOCTL(FIONBIO, C | D),
	/* control: the state a snapshot reads, and the ioctls of teardown */
	IOCTL(KVM_CHECK_EXTENSION, C), IOCTL(KVM_GET_SREGS, C), IOCTL(KVM_GET_REGS, C), IOCTL(KVM_GET_FPU, C),
	IOCTL(KVM_GET_XSAVE, C), IOCTL(KVM_GET_XCRS, C), IOCTL(KVM_GET_LAPIC, C), IOCTL(KVM_GET_MSRS, C),
	IOCTL(KVM_GET_MSR_INDEX_LIST, C), IOCTL(KVM_GET_VCPU_EVENTS, C), IOCTL(KVM_GET_MP_STATE, C),
	IOCTL(KVM_GET_DEBUGREGS, C), IOCTL(KVM_GET_CPUID2, C), IOCTL(KVM_GET_TSC_KHZ, C), IOCTL(KVM_GET_IRQCHIP, C),
	IOCTL(KVM_GET_PIT2, C), IOCTL(KVM_GET_CLOCK, C), IOCTL(KVM_GET_SUPPORTED_CPUID, C),
	IOCTL(KVM_GET_VCPU_MMAP_SIZE, C), IOCTL(KVM_IRQFD, C), IOCTL(KVM_IOEVENTFD, C),
#ifdef KVM_GET_XSAVE2
	IOCTL(KVM_GET_XSAVE2, C),
#endif
	/* the supervisor: waits for the monitor, hands it the stop signals, ends with its status */
	SYS(rt_sigtimedwait, S), SYS(wait4, S), ARG(kill, S, PID, 0, 0),
	/* only while confining: each thread that existed before drops its own capabilities and joins Landlock */
	SYS(capset, P), SYS(capget, P), ARG(prctl, P, EQ, 0, PR_CAPBSET_DROP), ARG(prctl, P, EQ, 0, PR_CAP_AMBIENT),
	SYS(landlock_restrict_self, P),
	/*
	 * `padcell serve`'s daemon (H): HTTP from clients (libmicrohttpd, a thread per connection), the
	 * sandbox table's records under the state dir, agent and API clients on the sandboxes' Unix
	 * sockets, the spawner's socketpair (replies carry pidfds, which it polls).  Sockets AF_UNIX,
	 * AF_INET, AF_INET6 only; threads only (clone with CLONE_THREAD); no execve, no signals but to
	 * its own threads.
	 */
	SYS(futex, H), SYS(read, H), SYS(write, H), SYS(close, H), SYS(exit, H), SYS(exit_group, H),
	SYS(rt_sigreturn, H), SYS(rt_sigprocmask, H), SYS(restart_syscall, H), SYS(clock_gettime, H),
	SYS(clock_getres, H), SYS(clock_nanosleep, H), SYS(nanosleep, H), SYS(gettid, H), SYS(getpid, H),
	SYS(sched_yield, H), SYS(madvise, H), SYS(munmap, H), SYS(brk, H), SYS(mremap, H), SYS(gettimeofday, H),
	ARG(mmap, H, LACKS, 2, PROT_EXEC), ARG(mprotect, H, LACKS, 2, PROT_EXEC),
	ARG(tgkill, H, PID, 0, 0), ARG(rt_sigaction, H, NOT, 0, SIGSYS),
	SYS(getrandom, H), SYS(fstat, H), SYS(newfstatat, H), SYS(statx, H), SYS(lseek, H), SYS(sigaltstack, H),
	SYS(rseq, H), SYS(set_robust_list, H), ARG(prlimit64, H, EQ, 2, 0), SYS(sched_getaffinity, H),
	ARG(clone, H, HAS, 0, CLONE_THREAD), ARG(prctl, H, EQ, 0, PR_SET_NAME),
	/* the state dir: records written and renamed, run directories made and removed */
	SYS(openat, H), SYS(mkdir, H), SYS(mkdirat, H), SYS(unlink, H), SYS(unlinkat, H), SYS(rmdir, H),
	SYS(rename, H), SYS(renameat, H), SYS(renameat2, H), SYS(fsync, H), SYS(fdatasync, H), SYS(ftruncate, H),
	SYS(access, H), SYS(faccessat, H), SYS(faccessat2, H), SYS(getdents64, H), SYS(pread64, H), SYS(pwrite64, H),
	SYS(readv, H), SYS(writev, H),
	/* realpath() of a template the daemon finds on a re-read (SIGHUP, the templates directory changed) */
	SYS(readlink, H), SYS(readlinkat, H),
	/* envd's file up- and download: the file's bytes in a memfd between the HTTP body and the agent */
	SYS(memfd_create, H),
	/* the listener and its connections, the Unix sockets of the sandboxes and of the spawner */
	ARG(socket, H, EQ, 0, AF_UNIX), ARG(socket, H, EQ, 0, AF_INET), ARG(socket, H, EQ, 0, AF_INET6),
	SYS(bind, H), SYS(listen, H), SYS(accept, H), SYS(accept4, H), SYS(connect, H), SYS(shutdown, H),
	SYS(recvfrom, H), SYS(recvmsg, H), SYS(sendto, H), SYS(sendmsg, H), SYS(getsockopt, H), SYS(setsockopt, H),
	SYS(getsockname, H), SYS(getpeername, H), SYS(fcntl, H), SYS(dup, H), SYS(dup3, H), SYS(pipe2, H),
	SYS(socketpair, H), SYS(eventfd2, H), SYS(timerfd_create, H), SYS(timerfd_settime, H), SYS(timerfd_gettime, H),
	SYS(signalfd4, H), SYS(poll, H), SYS(ppoll, H), SYS(select, H), SYS(pselect6, H), SYS(epoll_create1, H),
	SYS(epoll_ctl, H), SYS(epoll_wait, H), SYS(epoll_pwait, H), IOCTL(FIONREAD, H), IOCTL(FIONBIO, H),
	/* the spawner, its child: noticed when it ends */
	SYS(wait4, H),
	SYS(getuid, H), SYS(geteuid, H), SYS(getgid, H), SYS(getegid, H), SYS(uname, H), SYS(sysinfo, H),
	/*
	 * `padcell mcp`'s server (M): JSON-RPC on stdin/stdout, the guest agent's client on the VM's
	 * Unix sockets (the ready socket's listener comes from the spawner), tool output in sealed
	 * memfds.  Unix sockets only, no threads, no files (Landlock refuses every path), no exec.
	 */
	SYS(futex, M), SYS(read, M), SYS(write, M), SYS(close, M), SYS(exit, M), SYS(exit_group, M),
	SYS(rt_sigreturn, M), SYS(rt_sigprocmask, M), SYS(restart_syscall, M), SYS(clock_gettime, M),
	SYS(clock_nanosleep, M), SYS(nanosleep, M), SYS(gettid, M), SYS(getpid, M), SYS(madvise, M), SYS(munmap, M),
	SYS(brk, M), SYS(mremap, M), SYS(gettimeofday, M), ARG(mmap, M, LACKS, 2, PROT_EXEC),
	ARG(mprotect, M, LACKS, 2, PROT_EXEC), ARG(tgkill, M, PID, 0, 0), ARG(rt_sigaction, M, NOT, 0, SIGSYS),
	SYS(getrandom, M), SYS(fstat, M), SYS(newfstatat, M), SYS(lseek, M), SYS(sigaltstack, M),
	ARG(prlimit64, M, EQ, 2, 0), SYS(openat, M), SYS(memfd_create, M), SYS(ftruncate, M), SYS(pread64, M),
	SYS(pwrite64, M), SYS(readv, M), SYS(writev, M), SYS(fcntl, M), SYS(dup, M), SYS(dup3, M),
	ARG(socket, M, EQ, 0, AF_UNIX), SYS(connect, M), SYS(accept4, M), SYS(shutdown, M), SYS(recvfrom, M),
	SYS(recvmsg, M), SYS(sendto, M), SYS(sendmsg, M), SYS(getsockopt, M), SYS(setsockopt, M),
	SYS(poll, M), SYS(ppoll, M), SYS(epoll_create1, M), SYS(epoll_ctl, M), SYS(epoll_wait, M),
	SYS(epoll_pwait, M), SYS(timerfd_create, M), SYS(timerfd_settime, M), SYS(eventfd2, M), SYS(pipe2, M),
	IOCTL(FIONREAD, M), IOCTL(FIONBIO, M),
	SYS(wait4, M), /* its spawner, reaped at the end */
};

/* The programs and the kinds each allows (enum jail_prog's order). */
static const unsigned prog_kinds[JAIL_PROGS] = {
	[JAIL_PROG_VCPU] = V,
	[JAIL_PROG_DEVICE] = D,
	[JAIL_PROG_NET] = N,
	[JAIL_PROG_CONTROL] = C | D,
	[JAIL_PROG_CONTROL_NET] = C | D | N,
	[JAIL_PROG_PROCESS] = C | V | D | P,
	[JAIL_PROG_PROCESS_NET] = ALL | P,
	[JAIL_PROG_SUPERVISOR] = S,
	[JAIL_PROG_SERVE] = H,
	[JAIL_PROG_MCP] = M,
};

#endif
