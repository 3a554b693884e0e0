/* The seccomp allow-lists: one table, one row per syscall (or ioctl) and the thread kinds allowed it. */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <unistd.h>

/*
 * Kinds: C control thread (and helper threads it starts), V vCPU, D device worker, P only while
 * the process confines itself (per-thread capability and Landlock steps, loading the next
 * filter).  A thread's filters stack: every thread has the process filter (the union of all
 * rows) and then its kind's.  The control thread starts device threads again at resume, and those
 * inherit its filter, so the control filter includes every D row too.
 */
enum { C = 1 << JAIL_CONTROL, V = 1 << JAIL_VCPU, D = 1 << JAIL_DEVICE, P = 1 << JAIL_KINDS };
#define ALL (C | V | D)

enum arg_test { ANY, EQ, HAS, LACKS, NOT, PID };
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

/* Adding a syscall is one reviewed line here. */
static const struct rule rules[] = {
	/* every thread: memory, locks, time, signals, exit */
	SYS(futex, ALL), SYS(read, ALL), SYS(write, ALL), SYS(close, ALL), SYS(exit, ALL), SYS(exit_group, ALL),
	SYS(rt_sigreturn, ALL), SYS(rt_sigprocmask, ALL), SYS(restart_syscall, ALL), SYS(clock_gettime, ALL),
	SYS(clock_nanosleep, ALL), SYS(nanosleep, ALL), SYS(gettid, ALL), SYS(getpid, ALL), SYS(sched_yield, ALL),
	SYS(madvise, ALL), SYS(munmap, ALL), SYS(brk, ALL), SYS(mremap, ALL),
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
	IOCTL(KVM_RUN, V), IOCTL(KVM_GET_REGS, V), IOCTL(KVM_IRQ_LINE, V | D | C),
	/* device workers: disk I/O, the vsock device's Unix sockets, their event loops */
	SYS(pread64, D | C), SYS(pwrite64, D | C), SYS(preadv, D | C), SYS(pwritev, D | C), SYS(fsync, D | C),
	SYS(fdatasync, D | C), SYS(fallocate, D | C), SYS(readv, D | C), SYS(writev, D | C),
	SYS(epoll_wait, D | C), SYS(epoll_pwait, D | C), SYS(epoll_ctl, V | D | C) /* V: a driver reset closes vsock connections on the vCPU thread */, SYS(poll, D | C), SYS(ppoll, D | C),
	ARG(socket, D | C, EQ, 0, AF_UNIX), SYS(connect, D | C), SYS(accept4, D | C), SYS(recvfrom, D | C),
	SYS(recvmsg, D | C), SYS(sendto, D | C), SYS(sendmsg, D | C), SYS(shutdown, D | C), SYS(getsockopt, D | C),
	SYS(setsockopt, D | C), SYS(fcntl, D | C), SYS(getsockname, D | C), SYS(getpeername, D | C),
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
	/* only while confining: each thread that existed before drops its own capabilities and joins Landlock */
	SYS(capset, P), SYS(capget, P), ARG(prctl, P, EQ, 0, PR_CAPBSET_DROP), ARG(prctl, P, EQ, 0, PR_CAP_AMBIENT),
	SYS(landlock_restrict_self, P),
};

/* The BPF programs, built before confinement (libseccomp allocates) and loaded by raw seccomp(2). */
struct prog {
	struct sock_filter *insns;
	unsigned short len;
};
static struct prog progs[JAIL_KINDS + 2]; /* the kinds, then control (C|D), then the process (union) */
#define PROG_CONTROL (JAIL_KINDS)
#define PROG_PROCESS (JAIL_KINDS + 1)
static const char *names[512];            /* syscall names for the SIGSYS message, resolved ahead */

static int rule_add(scmp_filter_ctx ctx, const struct rule *r)
{
	struct scmp_arg_cmp cmp;
	switch (r->test) {
	case ANY: return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 0);
	case EQ:
		/* the kernel reads ioctl commands and socket families as 32-bit ints: compare only those bits */
		cmp = SCMP_CMP(r->arg, SCMP_CMP_MASKED_EQ, 0xffffffffu, r->val);
		break;
	case HAS: cmp = SCMP_CMP(r->arg, SCMP_CMP_MASKED_EQ, r->val, r->val); break;
	case LACKS: cmp = SCMP_CMP(r->arg, SCMP_CMP_MASKED_EQ, r->val, 0); break;
	case NOT: cmp = SCMP_CMP(r->arg, SCMP_CMP_NE, r->val, 0); break;
	case PID: cmp = SCMP_CMP(r->arg, SCMP_CMP_EQ, (uint64_t)getpid(), 0); break;
	default: return -EINVAL;
	}
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, r->nr, 1, &cmp);
}

static int build_one(unsigned mask, uint32_t deny, struct prog *out, char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(deny);
	if (!ctx) {
		snprintf(err, errlen, "seccomp_init failed");
		return -ENOMEM;
	}
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* set once, by the jail, for every thread */
	if (!rc)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (!rc)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); /* a binary tree, not a linear list */
	/* glibc tries clone3 first and falls back to clone, whose flags a filter can see */
	if (!rc && (mask & C))
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	for (size_t i = 0; !rc && i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rules[i].kinds & mask)
			rc = rule_add(ctx, &rules[i]);
	if (!rc)
		seccomp_syscall_priority(ctx, SCMP_SYS(ioctl), 255); /* KVM_RUN first */
	int fd = -1;
	if (!rc && (fd = memfd_create("padcell-bpf", MFD_CLOEXEC)) < 0)
		rc = -errno;
	if (!rc)
		rc = seccomp_export_bpf(ctx, fd);
	seccomp_release(ctx);
	off_t len = rc ? 0 : lseek(fd, 0, SEEK_END);
	if (!rc && (len <= 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS))
		rc = -EINVAL;
	if (!rc && !(out->insns = malloc(len)))
		rc = -ENOMEM;
	if (!rc && pread(fd, out->insns, len, 0) != len)
		rc = -EIO;
	if (fd >= 0)
		close(fd);
	if (rc) {
		snprintf(err, errlen, "cannot build the seccomp filter: %s", strerror(-rc));
		return rc;
	}
	out->len = len / sizeof(struct sock_filter);
	return 0;
}

int jail_seccomp_build(enum jail_seccomp_mode mode, char *err, size_t errlen)
{
	uint32_t deny = mode == JAIL_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
	for (int k = 0; k < JAIL_KINDS; k++)
		if (build_one(1u << k, deny, &progs[k], err, errlen))
			return -EINVAL;
	if (build_one(C | D, deny, &progs[PROG_CONTROL], err, errlen) ||
	    build_one(ALL | P, deny, &progs[PROG_PROCESS], err, errlen))
		return -EINVAL;
	/* The names, now: resolving allocates, and the SIGSYS handler must not. */
	for (int nr = 0; nr < (int)(sizeof(names) / sizeof(names[0])); nr++)
		names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	return 0;
}

const char *jail_syscall_name(int nr)
{
	return nr >= 0 && nr < (int)(sizeof(names) / sizeof(names[0])) ? names[nr] : NULL;
}

static int load(const struct prog *p, unsigned flags)
{
	struct sock_fprog f = { .len = p->len, .filter = p->insns };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &f) < 0 ? -errno : 0;
}

int jail_seccomp_load_process(char *err, size_t errlen)
{
	/* TSYNC: the threads that already exist (device workers waiting at the gate) get it too. */
	long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
			  &(struct sock_fprog){ .len = progs[PROG_PROCESS].len, .filter = progs[PROG_PROCESS].insns });
	if (rc < 0) {
		snprintf(err, errlen, "cannot load the seccomp filter: %s", strerror(errno));
		return -errno;
	}
	if (rc > 0) {
		snprintf(err, errlen, "cannot load the seccomp filter: thread %ld has another one", rc);
		return -EBUSY;
	}
	return 0;
}

int jail_seccomp_load(enum jail_kind kind)
{
	return load(&progs[kind], 0);
}

int jail_seccomp_load_control(void)
{
	return load(&progs[PROG_CONTROL], 0);
}
