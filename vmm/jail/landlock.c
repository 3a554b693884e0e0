/* Landlock: after confinement the monitor may touch files only beneath the VM's own directories. */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's ABI, spelled out here for versions newer than the build machine's headers. */
#define LL_FS_V1 ((1ull << 13) - 1) /* EXECUTE .. MAKE_SYM */
#define LL_FS_REFER (1ull << 13)    /* ABI 2 */
#define LL_FS_TRUNCATE (1ull << 14) /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ull << 15) /* ABI 5 */
#define LL_NET_ALL 3ull              /* ABI 4: BIND_TCP, CONNECT_TCP */
#define LL_NET_BIND 1ull
#define LL_SCOPE_ALL 3ull            /* ABI 6: abstract Unix sockets, signals */
#define LL_RULE_PATH_BENEATH 1

struct ll_attr {
	uint64_t fs, net, scoped;
};
struct ll_path_beneath {
	uint64_t allowed;
	int32_t parent_fd;
} __attribute__((packed));

int jail_landlock_abi(void)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, 1u /* LANDLOCK_CREATE_RULESET_VERSION */);
	return v < 0 ? 0 : (int)v;
}

static uint64_t fs_handled(int abi)
{
	uint64_t fs = LL_FS_V1;
	if (abi >= 2)
		fs |= LL_FS_REFER;
	if (abi >= 3)
		fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LL_FS_IOCTL_DEV;
	return fs;
}

/*
 * A ruleset handling every filesystem access this kernel knows, the TCP accesses in net (ABI 4)
 * and, with ABI 6, signals and abstract sockets; *a what it handles, *abi_out the ABI (may be NULL).
 * The fd, or -errno with err set (-ENOSYS: no Landlock).
 */
static int ruleset_new(uint64_t net, struct ll_attr *a, int *abi_out, char *err, size_t errlen)
{
	int abi = jail_landlock_abi();
	if (abi_out)
		*abi_out = abi;
	if (abi <= 0) {
		snprintf(err, errlen, "Landlock is not available in this kernel");
		return -ENOSYS;
	}
	*a = (struct ll_attr){ .fs = fs_handled(abi) };
	size_t size = 8;
	if (abi >= 4) {
		a->net = net;
		size = 16;
	}
	if (abi >= 6) {
		a->scoped = LL_SCOPE_ALL;
		size = 24;
	}
	int rs = syscall(SYS_landlock_create_ruleset, a, size, 0);
	if (rs < 0) {
		snprintf(err, errlen, "landlock_create_ruleset: %s", strerror(errno));
		return -errno;
	}
	return rs;
}

static int add_dir(int ruleset, const char *path, uint64_t allowed)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct ll_path_beneath pb = { .allowed = allowed, .parent_fd = fd };
	int rc = syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/*
 * A ruleset that handles every filesystem access this kernel knows and allows, beneath each of
 * dirs, what the VM's run-time files need (sockets removed at exit, snapshot files made, synced
 * and renamed), never execute; and /proc/self read-only (snapshots read its pagemap).  TCP is
 * refused outright; with ABI 6, so are signals and abstract sockets outside the process.
 * Returns the ruleset fd, or -errno.
 */
int jail_landlock_make(const char *const *dirs, unsigned ndirs, const char *const *rmdir_parents, unsigned nrmdir,
		       char *err, size_t errlen)
{
	struct ll_attr a;
	int rs = ruleset_new(LL_NET_ALL, &a, NULL, err, errlen);
	if (rs < 0)
		return rs;
	uint64_t rw = a.fs & ~(uint64_t)LANDLOCK_ACCESS_FS_EXECUTE & ~(uint64_t)LL_FS_IOCTL_DEV;
	for (unsigned i = 0; i < ndirs; i++) {
		int rc = add_dir(rs, dirs[i], rw);
		if (rc && rc != -ENOENT) {
			snprintf(err, errlen, "Landlock rule for %s: %s", dirs[i], strerror(-rc));
			close(rs);
			return rc;
		}
	}
	for (unsigned i = 0; i < nrmdir; i++) {
		int rc = add_dir(rs, rmdir_parents[i], LANDLOCK_ACCESS_FS_REMOVE_DIR);
		if (rc && rc != -ENOENT) {
			snprintf(err, errlen, "Landlock rule for %s: %s", rmdir_parents[i], strerror(-rc));
			close(rs);
			return rc;
		}
	}
	/* the host's /proc, where this process is not pid 1 of its PID namespace: /proc/self resolves */
	add_dir(rs, "/proc/self", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR);
	return rs;
}

struct ll_net_port {
	uint64_t allowed;
	uint64_t port;
} __attribute__((packed));
#define LL_RULE_NET_PORT 2

/*
 * A daemon's Landlock domain (jail_confine_daemon), on this thread and every thread it makes
 * later: its rw directories read-write (never execute), its ro ones read-only, no other file;
 * TCP bind on its port only (any port when it is 0), TCP connect nowhere; with ABI 6 no signal
 * and no abstract socket outside it.  0; -ENOSYS (err set) when the kernel has no Landlock.
 */
int jail_landlock_daemon(const struct jail_daemon *d, char *err, size_t errlen)
{
	struct ll_attr a;
	int abi;
	int rs = ruleset_new(d->bind_port ? LL_NET_ALL : LL_NET_ALL & ~LL_NET_BIND, &a, &abi, err, errlen);
	if (rs < 0)
		return rs;
	uint64_t rw = a.fs & ~(uint64_t)LANDLOCK_ACCESS_FS_EXECUTE & ~(uint64_t)LL_FS_IOCTL_DEV;
	uint64_t ro = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
	int rc = 0;
	for (unsigned i = 0; !rc && i < d->nrw + d->nro; i++) {
		const char *p = i < d->nrw ? d->rw[i] : d->ro[i - d->nrw];
		rc = add_dir(rs, p, i < d->nrw ? rw : ro);
		if (rc == -ENOENT && i >= d->nrw)
			rc = 0; /* a templates directory that is not there: nothing to read */
		if (rc)
			snprintf(err, errlen, "Landlock rule for %s: %s", p, strerror(-rc));
	}
	if (!rc && abi >= 4 && d->bind_port) {
		struct ll_net_port np = { .allowed = LL_NET_BIND, .port = d->bind_port };
		if (syscall(SYS_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0) < 0) {
			rc = -errno;
			snprintf(err, errlen, "Landlock rule for TCP port %u: %s", d->bind_port, strerror(errno));
		}
	}
	if (!rc && (rc = jail_landlock_restrict(rs)))
		snprintf(err, errlen, "landlock_restrict_self: %s", strerror(-rc));
	close(rs);
	return rc;
}

int jail_landlock_restrict(int ruleset_fd)
{
	return syscall(SYS_landlock_restrict_self, ruleset_fd, 0) < 0 ? -errno : 0;
}
