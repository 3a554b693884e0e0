/* The seccomp filters: the build-time programs (vmm/jail/seccomp_bpf.h) given this process's pid and loaded. */
#include "vmm/jail/jail.h"
#include "vmm/jail/seccomp_bpf.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The mode's programs, chosen once by jail_seccomp_build; the control and process ones with the NIC's rows or not. */
static struct jail_bpf *progs;
static bool with_net;

/* The pid sites of program p of progs set to pid; 0, or -EINVAL with err set. */
static int pid_patch(enum jail_prog p, uint32_t pid, char *err, size_t errlen)
{
	for (unsigned i = 0; i < progs[p].npid; i++) {
		struct sock_filter *f = &progs[p].insns[progs[p].pid_at[i]];
		if (f->code != (BPF_JMP | BPF_JEQ | BPF_K)) {
			snprintf(err, errlen, "the seccomp program %d has no pid comparison at %u", p, progs[p].pid_at[i]);
			return -EINVAL;
		}
		f->k = pid;
	}
	return 0;
}

int jail_seccomp_build(enum jail_seccomp_mode mode, bool net, char *err, size_t errlen)
{
	progs = jail_bpf[mode == JAIL_SECCOMP_LOG ? JAIL_BPF_LOG : JAIL_BPF_KILL];
	with_net = net;
	/* the pid as this process sees itself: 1 when it is its PID namespace's first */
	uint32_t pid = (uint32_t)getpid();
	for (int p = 0; p < JAIL_PROGS; p++) {
		int rc = p == JAIL_PROG_SUPERVISOR || p == JAIL_PROG_SERVE || p == JAIL_PROG_MCP ? 0 : pid_patch(p, pid, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

const char *jail_syscall_name(int nr)
{
	return nr >= 0 && (unsigned)nr < jail_bpf_syscall_count ? jail_bpf_syscall_names[nr] : NULL;
}

static int load(enum jail_prog p, unsigned flags)
{
	struct sock_fprog f = { .len = progs[p].len, .filter = progs[p].insns };
	long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &f);
	return rc < 0 ? -errno : rc > 0 ? -EBUSY : 0;
}

int jail_seccomp_load_process(char *err, size_t errlen)
{
	/* TSYNC: the threads that already exist (device workers waiting at the gate) get it too. */
	int rc = load(with_net ? JAIL_PROG_PROCESS_NET : JAIL_PROG_PROCESS, SECCOMP_FILTER_FLAG_TSYNC);
	if (rc == -EBUSY)
		snprintf(err, errlen, "cannot load the seccomp filter: a thread has another one");
	else if (rc)
		snprintf(err, errlen, "cannot load the seccomp filter: %s", strerror(-rc));
	return rc;
}

int jail_seccomp_load(enum jail_kind kind)
{
	static const enum jail_prog of_kind[JAIL_KINDS] = {
		[JAIL_CONTROL] = JAIL_PROG_CONTROL, [JAIL_VCPU] = JAIL_PROG_VCPU,
		[JAIL_DEVICE] = JAIL_PROG_DEVICE, [JAIL_NET] = JAIL_PROG_NET, [JAIL_SERVE] = JAIL_PROG_SERVE,
		[JAIL_MCP] = JAIL_PROG_MCP,
	};
	if (kind == JAIL_CONTROL)
		return jail_seccomp_load_control();
	return load(of_kind[kind], 0);
}

int jail_seccomp_load_supervisor(enum jail_seccomp_mode mode, pid_t monitor)
{
	progs = jail_bpf[mode == JAIL_SECCOMP_LOG ? JAIL_BPF_LOG : JAIL_BPF_KILL];
	char err[128];
	int rc = pid_patch(JAIL_PROG_SUPERVISOR, (uint32_t)monitor, err, sizeof(err));
	return rc ? rc : load(JAIL_PROG_SUPERVISOR, 0);
}

int jail_seccomp_load_daemon(enum jail_kind kind, enum jail_seccomp_mode mode)
{
	if (kind != JAIL_SERVE && kind != JAIL_MCP)
		return -EINVAL;
	enum jail_prog p = kind == JAIL_SERVE ? JAIL_PROG_SERVE : JAIL_PROG_MCP;
	progs = jail_bpf[mode == JAIL_SECCOMP_LOG ? JAIL_BPF_LOG : JAIL_BPF_KILL];
	char err[128];
	/* tgkill to its own threads only */
	int rc = pid_patch(p, (uint32_t)getpid(), err, sizeof(err));
	return rc ? rc : load(p, 0);
}

int jail_seccomp_load_control(void)
{
	return load(with_net ? JAIL_PROG_CONTROL_NET : JAIL_PROG_CONTROL, 0);
}
