/*
 * cgroup v2 resource limits for one VM: a leaf cgroup per monitor (cpu.max, memory.max, pids.max,
 * io.max), made at the command's start and removed when the monitor ends, however it ends.
 *
 * The tree, under the cgroup B the monitor starts in (the root, or a delegated cgroup padcell has
 * to itself):  B/padcell/            padcell's own, controllers enabled for its children
 *              B/padcell/vm-PID      the monitor's leaf, with the limits
 *              B/padcell/reapers     where each leaf's reaper waits (outside the leaf it removes)
 * A cgroup with processes of its own cannot enable controllers for its children (cgroup v2's "no
 * internal processes" rule, the root excepted): so a non-root B must hold nothing but this padcell,
 * which moves itself and its reaper out of it before enabling them.
 *
 * Only cgroup v2 is used; a v1 hierarchy is never written.
 */
#ifndef PADCELL_CGROUP_H
#define PADCELL_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --cpu-quota N, --mem-limit SIZE, --io-limit RATE (shared by boot, run and restore). */
struct cgroup_opts {
	double cpu_quota;   /* CPUs, fractional; 0 = the VM's vCPU count */
	uint64_t mem_limit; /* bytes; 0 = guest RAM plus the monitor's overhead */
	uint64_t io_bps;    /* bytes/s read and written on each disk's block device; 0 = no io.max */
};
enum { CGROUP_OPT_CPU_QUOTA = 1100, CGROUP_OPT_MEM_LIMIT, CGROUP_OPT_IO_LIMIT };
#define CGROUP_LONG_OPTS                                                              \
	{ "cpu-quota", required_argument, NULL, CGROUP_OPT_CPU_QUOTA },               \
		{ "mem-limit", required_argument, NULL, CGROUP_OPT_MEM_LIMIT },       \
		{ "io-limit", required_argument, NULL, CGROUP_OPT_IO_LIMIT }
/* 1 when opt is one of these (then 0 or -EINVAL with err set is in *rc), 0 when it is not. */
int cgroup_opt_parse(struct cgroup_opts *o, int opt, const char *arg, int *rc, char *err, size_t errlen);
/* The user asked for a limit by name: without cgroup v2 that is an error, not a warning. */
bool cgroup_opts_explicit(const struct cgroup_opts *o);

/*
 * At the command's start, single-threaded, before the namespaces: makes the leaf, forks its
 * reaper and moves the monitor in.  required: the user named a limit, or the jail is on and the
 * default limits apply (want_default).  Where cgroup v2 is missing or not ours, an explicit limit
 * is an error (-ENOTSUP, err set, nothing made); otherwise 0 and cgroup_apply warns once.
 */
int cgroup_prepare(const struct cgroup_opts *o, bool want_default, char *err, size_t errlen);

/*
 * Once the VM is built (its RAM, vCPUs and disks known), before the confinement: writes the limits
 * and lets go of the leaf.  snapshots: the monitor may write snapshots (their pages are charged to
 * it, and on tmpfs they cannot be reclaimed).  0, or -errno with err set.
 */
int cgroup_apply(uint64_t mem_size, unsigned vcpus, bool snapshots, char *err, size_t errlen);

/* ---- the parts, with the cgroup mount injectable (unit tests use a directory) ---- */

struct cgroup_limits {
	uint64_t cpu_quota_us, cpu_period_us; /* cpu.max */
	uint64_t mem_max;                     /* memory.max */
	unsigned pids_max;                    /* pids.max */
	uint64_t io_bps;                      /* io.max rbps and wbps per device; 0 = not written */
};
/* The limits for a VM: tmpfs_bytes is what the monitor's open writable files on tmpfs/ramfs hold. */
void cgroup_limits_compute(const struct cgroup_opts *o, uint64_t mem_size, unsigned vcpus, uint64_t tmpfs_bytes,
			   bool snapshots, struct cgroup_limits *l);
/* Overhead allowed above guest RAM: the monitor itself, KVM's per-page metadata, vsock buffers. */
uint64_t cgroup_mem_overhead(uint64_t mem_size);

struct cgroup_place {
	char base[512];        /* B */
	char ctl[32];          /* the controllers B offers (its cgroup.controllers) we use: "cpu memory pids io" */
	bool root;             /* B is the hierarchy's root */
	char detail[700];      /* why not, or what */
	bool usable;
};
/*
 * Where the leaf can go: mount is the cgroup2 mount, self the process's cgroup ("0::" in
 * /proc/self/cgroup), pid the monitor's (alone in a non-root B, or B is unusable).  Reads only.
 */
void cgroup_place_find(const char *mount, const char *self, int pid, struct cgroup_place *p);
/*
 * Makes B/padcell, B/padcell/reapers and the leaf B/padcell/vm-PID[.N] (name written to leaf),
 * after removing stale leaves (empty, their PID gone).  Then moves reaper_pid (if > 0) into
 * reapers and the writer into the leaf (cgroup.procs "0"), and enables the controllers in B and
 * B/padcell.  0, or -errno with err set (what was made is removed again).
 */
int cgroup_tree_make(const struct cgroup_place *p, int pid, int reaper_pid, char *leaf, size_t leaflen, char *err,
		     size_t errlen);
/* Writes l into the leaf directory dirfd; devs are "MAJ:MIN" for io.max. */
int cgroup_limits_write(int dirfd, const struct cgroup_limits *l, const char *const *devs, unsigned ndevs, char *err,
			size_t errlen);
/* The whole-disk "MAJ:MIN" of the block device a file lives on, or -ENODEV (tmpfs, overlay, ...). */
int cgroup_disk_of(uint64_t st_dev, char *out, size_t outlen);
/* Kills what is left in a leaf (cgroup.kill) and removes it, waiting up to wait_ms for it to empty. */
int cgroup_leaf_remove(const char *leaf, int wait_ms);
/* Removes the empty leaves under B/padcell whose monitor (vm-PID) is gone.  The count removed. */
int cgroup_sweep(const char *padcell_dir, int self_pid);

#endif
