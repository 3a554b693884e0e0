/*
 * The jail's BPF programs, made at build time from the one rule table (vmm/jail/seccomp_rules.h)
 * by vmm/jail/mkfilters.c with libseccomp, so a start builds nothing: it patches in its pid and
 * loads them with seccomp(2).  The generated file (build/vmm/jail/seccomp_bpf.c) defines these.
 */
#ifndef PADCELL_JAIL_SECCOMP_BPF_H
#define PADCELL_JAIL_SECCOMP_BPF_H

#include <linux/filter.h>
#include <stdint.h>

enum jail_prog {
	JAIL_PROG_VCPU,
	JAIL_PROG_DEVICE,
	JAIL_PROG_NET,
	JAIL_PROG_CONTROL,     /* the control thread: its rows and the device rows (it restarts them) */
	JAIL_PROG_CONTROL_NET, /* ... and the network-stack rows, with a NIC */
	JAIL_PROG_PROCESS,     /* every thread's outer filter: the union, and the confinement steps */
	JAIL_PROG_PROCESS_NET,
	JAIL_PROG_SUPERVISOR,  /* the supervisor outside the monitor's PID namespace (vmm/jail/pidns.c) */
	JAIL_PROG_SERVE,       /* `padcell serve`'s HTTP daemon, all its threads (vmm/cmd/serve.c) */
	JAIL_PROG_MCP,         /* `padcell mcp`'s server (vmm/cmd/mcp.c) */
	JAIL_PROGS
};

/* The generator makes each program with both default actions: trap (kill) and log. */
enum { JAIL_BPF_KILL, JAIL_BPF_LOG, JAIL_BPF_MODES };

/*
 * A comparison with the monitor's pid (tgkill's first argument; kill's in the supervisor, which
 * knows the monitor by its pid outside the namespace) is made with this stand-in,
 * above any pid_max (2^22), and the generator records where it landed (a BPF_JEQ's k).
 */
#define JAIL_BPF_PID_MAGIC 0x5ecc0a1du
#define JAIL_BPF_PID_SITES 4

struct jail_bpf {
	struct sock_filter *insns; /* writable: the pid goes in at start */
	unsigned short len;
	unsigned short npid;
	unsigned short pid_at[JAIL_BPF_PID_SITES];
};

extern struct jail_bpf jail_bpf[JAIL_BPF_MODES][JAIL_PROGS];

/* Syscall names by number for the SIGSYS message (NULL for a number with no name). */
extern const char *const jail_bpf_syscall_names[];
extern const unsigned jail_bpf_syscall_count;

#endif
