/*
 * The monitor's confinement: after everything the VM needs is open and the VM exists, padcell
 * takes away its own ability to do anything else (seccomp, Landlock, namespaces, no capabilities,
 * no privileges, bounded rlimits) and only then runs the guest.
 *
 * The sequence, called from the commands (boot, run, restore):
 *   jail_prepare()    at the command's start, single-threaded: closes inherited fds, forks the
 *                     monitor into its PID namespace, unshares the other namespaces, arms the
 *                     gate that holds device threads until confinement;
 *   jail_allow_path() for each path the VM still touches at run time (Landlock's allow-list);
 *   jail_confine()    once the VM is built, before its first vCPU runs;
 *   jail_control_narrow() on the control thread once the vCPU threads exist;
 *   jail_abort()      on error paths between prepare and confine (the gate opens unconfined).
 * Threads call jail_thread_begin() first thing; it is a no-op when the jail is not armed (unit
 * tests, in-process tests, --no-jail).
 *
 * The jail is process state by nature (one process, one jail), so it lives in this module's
 * statics rather than in the VM handle.
 */
#ifndef PADCELL_JAIL_H
#define PADCELL_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "vmm/jail/cgroup.h"

/* A seccomp violation: the process ends with 128 + SIGSYS, as a shell shows a SIGSYS death. */
#define EXIT_JAIL_VIOLATION 159

#define JAIL_MAX_DIRS 8

/* Thread kinds, each with its own seccomp allow-list (vmm/jail/seccomp.c). */
enum jail_kind {
	JAIL_CONTROL, /* the main thread: event loop, API, agent client, snapshots; and its helpers */
	JAIL_VCPU,    /* KVM_RUN and the device models' exit handlers */
	JAIL_DEVICE,  /* device workers: virtio-blk, virtio-vsock */
	JAIL_NET,     /* the NIC's worker: virtio-net and libslirp's host sockets (AF_INET, AF_INET6) */
	JAIL_SERVE,   /* `padcell serve`'s HTTP daemon, every thread of it (jail_confine_daemon) */
	JAIL_MCP,     /* `padcell mcp`'s server (jail_confine_daemon) */
	JAIL_KINDS
};

enum jail_seccomp_mode { JAIL_SECCOMP_KILL, JAIL_SECCOMP_LOG };

struct jail_opts {
	bool off;                      /* --no-jail */
	enum jail_seccomp_mode seccomp; /* --seccomp=kill|log */
	long uid, gid;                 /* --uid/--gid; -1 = keep the invoking user's */
	long uid_start, uid_count;     /* --uid-range START:COUNT (or $PADCELL_UID_RANGE): a free uid per VM; count 0 = none */
	const char *dirs[JAIL_MAX_DIRS]; /* --jail-dir DIR: more directories the VM may write at run time */
	unsigned ndirs;
	bool host_net;                 /* a NIC's user-mode stack dials out: keep the host's network namespace */
	struct cgroup_opts cgroup;     /* --cpu-quota, --mem-limit, --io-limit (vmm/jail/cgroup.h) */
};

/* Options shared by boot, run and restore: getopt_long rows and their handler. */
enum { JAIL_OPT_NO_JAIL = 1000, JAIL_OPT_SECCOMP, JAIL_OPT_UID, JAIL_OPT_GID, JAIL_OPT_DIR, JAIL_OPT_UID_RANGE };
/* Where the per-uid lock files of --uid-range live (root only). */
#define JAIL_UID_LOCK_DIR "/run/padcell/uids"
#define JAIL_LONG_OPTS                                                                   \
	{ "no-jail", no_argument, NULL, JAIL_OPT_NO_JAIL },                              \
		{ "seccomp", required_argument, NULL, JAIL_OPT_SECCOMP },                \
		{ "uid", required_argument, NULL, JAIL_OPT_UID },                        \
		{ "gid", required_argument, NULL, JAIL_OPT_GID },                        \
		{ "jail-dir", required_argument, NULL, JAIL_OPT_DIR },                   \
		{ "uid-range", required_argument, NULL, JAIL_OPT_UID_RANGE },            \
		CGROUP_LONG_OPTS
void jail_opts_init(struct jail_opts *o);
/* 1 when opt is a jail option (then 0 or -EINVAL with err set is in *rc), 0 when it is not. */
int jail_opt_parse(struct jail_opts *o, int opt, const char *arg, int *rc, char *err, size_t errlen);

/*
 * Starts the sequence (see above).  Returns 0, or -errno with err set (the command should stop).
 * With the jail on it returns in a new process, the monitor, pid 1 of a PID namespace of its own;
 * the calling process stays behind as its supervisor and exits with the monitor's status
 * (vmm/jail/pidns.c).
 */
int jail_prepare(const struct jail_opts *o, char *err, size_t errlen);

/* A path the VM uses after confinement: its directory (dir itself when is_dir) stays writable. */
void jail_allow_path(const char *path, bool is_dir);
/*
 * The directory dir (one of the VM's own, made before confinement) is removed at exit: Landlock
 * then needs REMOVE_DIR on its parent, and only that (empty directories, as rmdir allows).
 */
void jail_allow_rmdir(const char *dir);

/*
 * After confinement the root is an empty tmpfs (when the namespaces could be made): a host path
 * the VM still uses is reached through the held fd of one of the directories above.
 * jail_at: the dirfd and the rest of path for an *at() call (AT_FDCWD and path itself when the
 * root was not swapped), or -EACCES when path lies beneath none of them.
 * jail_unix_path: what to put in sun_path for connect(2) (beneath jail_allow_connect's directory).
 * jail_unlink/jail_rmdir: unlink(2)/rmdir(2) through them; 0 or -errno.
 */
int jail_at(const char *path, char *rel, size_t rellen);
int jail_unix_path(const char *path, char *out, size_t outlen);
int jail_unlink(const char *path);
int jail_rmdir(const char *path);
/* stat(2), mkdir(2), rename(2), open(2) the same way; 0 (an fd for jail_open) or -errno. */
int jail_stat(const char *path, struct stat *st);
int jail_mkdir(const char *path, mode_t mode);
int jail_rename(const char *from, const char *to);
int jail_open(const char *path, int flags, mode_t mode);
/* Like jail_allow_path(path, false); Unix sockets beside path are connected to after confinement. */
void jail_allow_connect(const char *path);

/* A file of the VM's own (its private directory, its sockets): chowned to --uid when that switches. */
void jail_own_path(const char *path);

/* Confines the process (mem_size bounds RLIMIT_FSIZE).  0, or -errno with err set. */
int jail_confine(uint64_t mem_size, char *err, size_t errlen);

/* What the jail cost this start: jail_prepare's and jail_confine's time (0 when off). */
void jail_cost(uint64_t *prepare_ns, uint64_t *confine_ns);

/* The control thread's own, narrower seccomp filter, once the vCPU threads are started. */
void jail_control_narrow(void);

/* Opens the gate without confining: an error path before jail_confine. */
void jail_abort(void);

/*
 * The monitor's pid as its callers know it: with the jail on, the monitor runs as pid 1 of a PID
 * namespace of its own, the child of the process the user started (its supervisor, which stays:
 * vmm/jail/pidns.c); this is that process's pid.  getpid() otherwise.
 */
pid_t jail_pid(void);

/* True between jail_prepare (jail on) and the end of the process. */
bool jail_armed(void);
/* True once jail_confine succeeded: a thread created now inherits the confinement. */
bool jail_confined(void);

/* Called by a thread's creator just before pthread_create; the result goes to jail_thread_begin. */
bool jail_thread_born(void);
/* ... and this when pthread_create failed after jail_thread_born said false. */
void jail_thread_unborn(void);

/*
 * First thing in a thread of this kind.  born_confined: the thread was created after
 * jail_confine (it inherits everything and only narrows its filter); otherwise it waits for the
 * confinement and applies the per-thread parts (capabilities, Landlock) itself.
 */
void jail_thread_begin(enum jail_kind kind, bool born_confined);

/*
 * A daemon's own confinement (`padcell serve` or `padcell mcp`, once everything it needs is open
 * and before its first thread): rlimits, no new privileges, every capability dropped (bounding and ambient too),
 * Landlock (the rw directories read-write, the ro ones read-only, nothing else; TCP bind on
 * bind_port alone, no TCP connect), the environment cleared, then kind's seccomp program with
 * the same SIGSYS report as the monitor's (exit 159).  Call single-threaded.  0, or -errno with
 * err set.  PADCELL_TEST_HOOKS builds read PADCELL_JAIL_TEST_VIOLATION=KIND (a forbidden call
 * right after) and PADCELL_JAIL_TEST_OPEN=PATH (an open of PATH, its result on stderr).
 */
struct jail_daemon {
	const char *rw[4];
	unsigned nrw;
	const char *ro[4];
	unsigned nro;
	unsigned bind_port;            /* 0: bind is not restricted by Landlock */
	enum jail_seccomp_mode seccomp;
	enum jail_kind kind;
};
int jail_confine_daemon(const struct jail_daemon *d, char *err, size_t errlen);

/* For `padcell check`. */
struct jail_support {
	bool seccomp;         /* seccomp filter mode available */
	bool userns;          /* an unprivileged user namespace can be made */
	bool pidns;           /* this user can run the monitor as pid 1 of a PID namespace of its own */
	int landlock_abi;     /* 0 = none */
	bool cgroup2;         /* a cgroup v2 hierarchy is mounted */
	bool cgroup2_delegated; /* ... and this user may make a leaf in it */
	char cgroup_detail[300];
};
void jail_probe(struct jail_support *s);

/* ---- inside vmm/jail ---- */
int jail_seccomp_build(enum jail_seccomp_mode mode, bool net, char *err, size_t errlen);
int jail_seccomp_load_process(char *err, size_t errlen);
int jail_seccomp_load(enum jail_kind kind);
int jail_seccomp_load_control(void);
const char *jail_syscall_name(int nr);
int jail_landlock_abi(void);
int jail_landlock_make(const char *const *dirs, unsigned ndirs, const char *const *rmdir_parents, unsigned nrmdir,
		       char *err, size_t errlen);
int jail_landlock_restrict(int ruleset_fd);
int jail_landlock_daemon(const struct jail_daemon *d, char *err, size_t errlen);
int jail_seccomp_load_daemon(enum jail_kind kind, enum jail_seccomp_mode mode);
int jail_ns_user(char *what, size_t whatlen);
int jail_ns_enter(bool host_net, char *what, size_t whatlen);
int jail_pidns_fork(bool keep_kill, enum jail_seccomp_mode mode, char *what, size_t whatlen);
void jail_pidns_rearm(void);
int jail_seccomp_load_supervisor(enum jail_seccomp_mode mode, pid_t monitor);
/* The supervisor's SIGSYS reporter (before its filter: it cannot install one after), and the test hook's call. */
void jail_supervisor_trap(enum jail_seccomp_mode mode);
void jail_supervisor_test_hook(void);
int jail_ns_wait(char *what, size_t whatlen);
int jail_ns_net_status(void);
int jail_ns_net_join(void);
int jail_ns_join(int cwd_fd);
void jail_ns_done(void);
int jail_ns_pivot(const char *mountpoint, char *what, size_t whatlen);
void jail_cgroup_probe(struct jail_support *s);
bool jail_pidns_probe(void);

#endif
