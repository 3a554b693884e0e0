/* The jail's sequence: prepare, confine, narrow per thread; privileges, rlimits, fds, environment. */
#include "vmm/jail/jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * ARMED: threads born now wait (with the empty bounding set they inherit).  JOIN: they set
 * NO_NEW_PRIVS, enter the namespaces and join Landlock while they still may (before the uid
 * switch and the capability drop), then report.
 * CONFINED: the process filter is on everywhere; they drop the rest and narrow their filter.
 * OPEN: no confinement after all (an error path); they just run.
 */
enum gate { GATE_UNARMED, GATE_ARMED, GATE_JOIN, GATE_OPEN, GATE_CONFINED };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum gate gate;
	struct jail_opts o;
	int cap_last;
	int ruleset_fd;          /* Landlock, until every thread born before confinement joined it */
	unsigned unjoined;       /* threads born before confinement that have not joined yet */
	char dirs[JAIL_MAX_DIRS * 2 + 8][4096];
	unsigned ndirs;
	char rmdir_parents[4][4096]; /* where a directory of the VM's own is removed at exit */
	unsigned nrmdir;
	char owned[4][4096];     /* the VM's own files, handed to --uid when it switches */
	unsigned nowned;
	int test_kind;           /* PADCELL_TEST_HOOKS: the kind that makes a forbidden call, or -1 */
	uint64_t prepare_ns, confine_ns; /* what the jail cost the start (--verbose) */
	bool ns;                 /* the namespaces are being made (ns.c): enter them at confinement */
	bool pivoted;            /* the root is the empty jail: host paths go through reach[] */
	bool mnt_joined;         /* the main thread entered the jail's namespaces (ns.c): the others follow */
	int cwd_fd;              /* ... and change to this directory there (-1: the root) */
	bool cwd_owned;          /* cwd_fd is not one of reach[]'s: closed once every thread joined */
	char cwd[4096];          /* the working directory at start, for relative paths */
	struct reach {           /* a host directory the VM still uses, by name and by an fd held from before */
		char path[4096]; /* absolute, no ".", "..", "//" */
		int fd;
		bool connect;    /* Unix sockets are connected to beneath it: it is the working directory */
	} reach[JAIL_MAX_DIRS * 4 + 12];
	unsigned nreach;
} J;

/*
 * J has no initializer: with one, its ~316 KiB of path tables were .data, file-backed pages
 * that every touch of a field faulted in by the dozen (the kernel maps a file's pages around
 * a fault); in .bss only the pages written are resident.  Its non-zero fields are set here,
 * before main and before any thread.
 */
__attribute__((constructor)) static void jail_state_init(void)
{
	pthread_mutex_init(&J.lock, NULL);
	pthread_cond_init(&J.cond, NULL);
	J.gate = GATE_UNARMED;
	J.ruleset_fd = -1;
	J.test_kind = -1;
	J.cwd_fd = -1;
}

/* The kinds' names, and the supervisor's (pidns.c: no thread kind of the monitor, one program of its own). */
enum { JAIL_SUPERVISOR = JAIL_KINDS };
static __thread int thread_kind = JAIL_CONTROL;
static const char *const kind_names[JAIL_KINDS + 1] = { "control", "vCPU", "device", "network", "serve", "mcp", "supervisor" };
/* What a violation ends, for its message: the VM, or a daemon confined by jail_confine_daemon. */
static const char *violation_ends = "the VM is stopped";

void jail_opts_init(struct jail_opts *o)
{
	*o = (struct jail_opts){ .uid = -1, .gid = -1 };
}

static int parse_id(const char *arg, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < 0 || v > 0x7fffffff)
		return -EINVAL;
	*out = v;
	return 0;
}

/* START:COUNT, both decimal, COUNT >= 1, the range within uids 1..2^31-2 (never root, never -1). */
static int parse_range(const char *arg, long *start, long *count)
{
	char *end;
	errno = 0;
	long s = strtol(arg, &end, 10);
	if (errno || end == arg || *end != ':' || s < 1)
		return -EINVAL;
	const char *c = end + 1;
	long n = strtol(c, &end, 10);
	if (errno || end == c || *end || n < 1 || n > 0x7ffffffe - s)
		return -EINVAL;
	*start = s;
	*count = n;
	return 0;
}

int jail_opt_parse(struct jail_opts *o, int opt, const char *arg, int *rc, char *err, size_t errlen)
{
	if (cgroup_opt_parse(&o->cgroup, opt, arg, rc, err, errlen))
		return 1;
	*rc = 0;
	switch (opt) {
	case JAIL_OPT_UID_RANGE:
		if (parse_range(arg, &o->uid_start, &o->uid_count)) {
			snprintf(err, errlen, "--uid-range takes START:COUNT (uids START..START+COUNT-1, START >= 1), not '%s'", arg);
			*rc = -EINVAL;
		}
		return 1;
	case JAIL_OPT_NO_JAIL: o->off = true; return 1;
	case JAIL_OPT_SECCOMP:
		if (!strcmp(arg, "kill"))
			o->seccomp = JAIL_SECCOMP_KILL;
		else if (!strcmp(arg, "log"))
			o->seccomp = JAIL_SECCOMP_LOG;
		else {
			snprintf(err, errlen, "--seccomp takes kill or log, not '%s'", arg);
			*rc = -EINVAL;
		}
		return 1;
	case JAIL_OPT_UID:
	case JAIL_OPT_GID:
		if (parse_id(arg, opt == JAIL_OPT_UID ? &o->uid : &o->gid)) {
			snprintf(err, errlen, "%s takes a numeric id, not '%s'", opt == JAIL_OPT_UID ? "--uid" : "--gid", arg);
			*rc = -EINVAL;
		}
		return 1;
	case JAIL_OPT_DIR:
		if (o->ndirs >= JAIL_MAX_DIRS) {
			snprintf(err, errlen, "at most %u --jail-dir", JAIL_MAX_DIRS);
			*rc = -EINVAL;
		} else {
			o->dirs[o->ndirs++] = arg;
		}
		return 1;
	default: return 0;
	}
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void jail_cost(uint64_t *prepare_ns, uint64_t *confine_ns)
{
	*prepare_ns = J.prepare_ns;
	*confine_ns = J.confine_ns;
}

bool jail_armed(void)
{
	return J.gate != GATE_UNARMED;
}

bool jail_confined(void)
{
	return J.gate == GATE_CONFINED;
}

static void gate_set(enum gate g)
{
	pthread_mutex_lock(&J.lock);
	J.gate = g;
	pthread_cond_broadcast(&J.cond);
	pthread_mutex_unlock(&J.lock);
}

static void caps_drop_bounding(void);

static int read_int(const char *path, int dflt)
{
	FILE *f = fopen(path, "r");
	int v = dflt;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

/*
 * A uid of --uid-range no other running VM has: each uid's lock file under JAIL_UID_LOCK_DIR is
 * flock'ed for the life of the process (the kernel lets go of it however the process ends, also
 * on SIGKILL), trying from a random place in the range so starts rarely contend.  The gid is the
 * uid's number too.
 */
static int uid_pick(char *err, size_t errlen)
{
	if (mkdir("/run/padcell", 0755) < 0 && errno != EEXIST)
		return snprintf(err, errlen, "--uid-range: cannot make /run/padcell: %s", strerror(errno)), -errno;
	if (mkdir(JAIL_UID_LOCK_DIR, 0700) < 0 && errno != EEXIST)
		return snprintf(err, errlen, "--uid-range: cannot make %s: %s", JAIL_UID_LOCK_DIR, strerror(errno)), -errno;
	int dfd = open(JAIL_UID_LOCK_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return snprintf(err, errlen, "--uid-range: cannot open %s: %s", JAIL_UID_LOCK_DIR, strerror(errno)), -errno;
	uint32_t r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)getpid();
	for (long i = 0; i < J.o.uid_count; i++) {
		long uid = J.o.uid_start + (long)((r + (uint64_t)i) % (uint64_t)J.o.uid_count);
		char name[24];
		snprintf(name, sizeof(name), "%ld", uid);
		int fd = openat(dfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			int e = errno;
			close(dfd);
			return snprintf(err, errlen, "--uid-range: cannot open %s/%s: %s", JAIL_UID_LOCK_DIR, name, strerror(e)), -e;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			close(dfd);
			J.o.uid = J.o.gid = uid; /* fd stays open: the lock is this VM's until it ends */
			return 0;
		}
		close(fd);
	}
	close(dfd);
	return snprintf(err, errlen, "--uid-range %ld:%ld: all %ld uids are in use by running VMs", J.o.uid_start,
			J.o.uid_count, J.o.uid_count), -EBUSY;
}

static int prepare(const struct jail_opts *o, char *err, size_t errlen)
{
	if (o->off) {
		fprintf(stderr, "padcell: warning: --no-jail: the monitor runs unconfined (no seccomp, Landlock, "
				"namespaces or privilege drop; cgroup limits only if named)\n");
		return cgroup_prepare(&o->cgroup, false, err, errlen);
	}
	J.o = *o;
	bool root = geteuid() == 0;
	if (!root && ((o->uid >= 0 && o->uid != (long)getuid()) || (o->gid >= 0 && o->gid != (long)getgid())))
		return snprintf(err, errlen, "--uid/--gid switch users only when padcell runs as root"), -EPERM;
	const char *env = getenv("PADCELL_UID_RANGE");
	if (o->uid < 0 && !o->uid_count && env && *env && parse_range(env, &J.o.uid_start, &J.o.uid_count))
		return snprintf(err, errlen, "PADCELL_UID_RANGE takes START:COUNT, not '%s'", env), -EINVAL;
	if (J.o.uid_count && o->uid >= 0)
		return snprintf(err, errlen, "--uid and --uid-range exclude each other"), -EINVAL;
	if (J.o.uid_count && !root)
		return snprintf(err, errlen, "--uid-range switches users only when padcell runs as root"), -EPERM;
	if (J.o.uid >= 0 && J.o.gid < 0)
		J.o.gid = J.o.uid;
#ifdef PADCELL_TEST_HOOKS
	const char *t = getenv("PADCELL_JAIL_TEST_VIOLATION");
	for (int k = 0; t && k <= JAIL_SUPERVISOR; k++)
		if (!strcasecmp(t, kind_names[k]))
			J.test_kind = k;
#endif
	/* Whatever the parent left open is not the VM's. */
	syscall(SYS_close_range, 3u, ~0u, 0u);
	/* The leaf and its reaper, while the monitor still sees the host's cgroups and has one thread. */
	int crc = cgroup_prepare(&o->cgroup, true, err, errlen);
	if (crc)
		return crc;
	if (J.o.uid_count) {
		int rc = uid_pick(err, errlen);
		if (rc)
			return rc;
	}
	J.cap_last = -1; /* found by the first caps_drop_bounding */
	char what[64];
	if (!getcwd(J.cwd, sizeof(J.cwd)))
		snprintf(J.cwd, sizeof(J.cwd), "/");
	int rc = root ? 0 : jail_ns_user(what, sizeof(what));
	/*
	 * The bounding and ambient sets now, after the user namespace (which fills them again) and
	 * before the PID namespace's fork and any thread: the supervisor and every thread inherit
	 * them empty.  Nothing needs them meanwhile: the monitor never executes a program, and its
	 * effective capabilities, which the namespaces and the uid switch use, stay until confinement.
	 */
	caps_drop_bounding();
	if (!rc) {
		/* the monitor as pid 1 of a PID namespace of its own (pidns.c): this process stays as its
		 * supervisor, and only the monitor returns from here */
		char pwhat[32];
		int prc = jail_pidns_fork(J.o.uid >= 0 && J.o.uid != (long)getuid(), J.o.seccomp, pwhat, sizeof(pwhat));
		if (prc)
			fprintf(stderr, "padcell: jail: no PID namespace (%s: %s); the monitor runs among the host's pids\n",
				pwhat, strerror(-prc));
		rc = jail_ns_enter(o->host_net, what, sizeof(what));
	}
	J.ns = rc == 0;
	if (rc)
		fprintf(stderr, "padcell: jail: no new namespaces (%s: %s); Landlock alone keeps the monitor from host files\n",
			what, strerror(-rc));
	for (unsigned i = 0; i < o->ndirs; i++)
		jail_allow_path(o->dirs[i], true);
	J.gate = GATE_ARMED;
	return 0;
}

/* path made absolute (from the start's working directory) with "." and empty components gone; -EACCES for "..". */
static int lexical(const char *path, char *out, size_t outlen)
{
	char in[8192];
	if ((size_t)snprintf(in, sizeof(in), "%s%s%s", path[0] == '/' ? "" : J.cwd, path[0] == '/' ? "" : "/", path) >=
	    sizeof(in))
		return -ENAMETOOLONG;
	size_t at = 0;
	char *save = NULL;
	for (char *c = strtok_r(in, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		if (!strcmp(c, ".."))
			return -EACCES; /* nothing beneath a held directory needs it, and it could climb out */
		size_t n = strlen(c);
		if (at + 1 + n + 1 > outlen)
			return -ENAMETOOLONG;
		out[at++] = '/';
		memcpy(out + at, c, n);
		at += n;
	}
	if (!at)
		out[at++] = '/';
	out[at] = '\0';
	return 0;
}

static void reach_add(const char *dir, bool connect)
{
	char abs[4096];
	if (lexical(dir, abs, sizeof(abs)))
		return;
	for (unsigned i = 0; i < J.nreach; i++)
		if (!strcmp(J.reach[i].path, abs)) {
			J.reach[i].connect |= connect;
			return;
		}
	if (J.nreach < sizeof(J.reach) / sizeof(J.reach[0])) {
		snprintf(J.reach[J.nreach].path, sizeof(J.reach[0].path), "%s", abs);
		J.reach[J.nreach].fd = -1;
		J.reach[J.nreach++].connect = connect;
	}
}

/* Where a path lies: its held directory's index (the longest that holds it) and the rest, or -EACCES. */
static int reach_find(const char *path, char *rel, size_t rellen)
{
	char abs[4096];
	int rc = lexical(path, abs, sizeof(abs));
	if (rc)
		return rc;
	int best = -1;
	size_t best_len = 0;
	for (unsigned i = 0; i < J.nreach; i++) {
		size_t n = strlen(J.reach[i].path);
		bool root = n == 1;
		if (J.reach[i].fd < 0 || (!root && (strncmp(abs, J.reach[i].path, n) || (abs[n] && abs[n] != '/'))))
			continue;
		if (best < 0 || n > best_len)
			best = (int)i, best_len = n;
	}
	if (best < 0)
		return -EACCES;
	const char *rest = abs + (best_len == 1 ? 1 : best_len + (abs[best_len] == '/'));
	if ((size_t)snprintf(rel, rellen, "%s", *rest ? rest : ".") >= rellen)
		return -ENAMETOOLONG;
	return best;
}

int jail_at(const char *path, char *rel, size_t rellen)
{
	if (!J.pivoted) {
		if ((size_t)snprintf(rel, rellen, "%s", path) >= rellen)
			return -ENAMETOOLONG;
		return AT_FDCWD;
	}
	int i = reach_find(path, rel, rellen);
	return i < 0 ? i : J.reach[i].fd;
}

int jail_unix_path(const char *path, char *out, size_t outlen)
{
	if (!J.pivoted) {
		if ((size_t)snprintf(out, outlen, "%s", path) >= outlen)
			return -ENAMETOOLONG;
		return 0;
	}
	int i = reach_find(path, out, outlen);
	/* connect(2) has no dirfd: only beneath the working directory (the vsock socket's) */
	return i < 0 ? i : J.reach[i].connect ? 0 : -EACCES;
}

int jail_unlink(const char *path)
{
	char rel[4096];
	int dfd = jail_at(path, rel, sizeof(rel));
	if (dfd < 0 && dfd != AT_FDCWD)
		return dfd;
	return unlinkat(dfd, rel, 0) < 0 ? -errno : 0;
}

int jail_rmdir(const char *path)
{
	char parent[4096], rel[4096];
	snprintf(parent, sizeof(parent), "%s", path);
	char *slash = strrchr(parent, '/');
	if (!J.pivoted || !slash || !slash[1])
		return rmdir(path) < 0 ? -errno : 0;
	*slash = '\0';
	/* the directory itself is held (its fd stays open), so name it from its parent's */
	char name[8200];
	int i = reach_find(*parent ? parent : "/", rel, sizeof(rel));
	if (i < 0)
		return i;
	if ((size_t)snprintf(name, sizeof(name), "%s/%s", rel, slash + 1) >= sizeof(name))
		return -ENAMETOOLONG;
	return unlinkat(J.reach[i].fd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int jail_stat(const char *path, struct stat *st)
{
	char rel[4096];
	int dfd = jail_at(path, rel, sizeof(rel));
	if (dfd < 0 && dfd != AT_FDCWD)
		return dfd;
	return fstatat(dfd, rel, st, 0) < 0 ? -errno : 0;
}

int jail_mkdir(const char *path, mode_t mode)
{
	char rel[4096];
	int dfd = jail_at(path, rel, sizeof(rel));
	if (dfd < 0 && dfd != AT_FDCWD)
		return dfd;
	return mkdirat(dfd, rel, mode) < 0 ? -errno : 0;
}

int jail_rename(const char *from, const char *to)
{
	char rfrom[4096], rto[4096];
	int ffd = jail_at(from, rfrom, sizeof(rfrom)), tfd = jail_at(to, rto, sizeof(rto));
	if (ffd < 0 && ffd != AT_FDCWD)
		return ffd;
	if (tfd < 0 && tfd != AT_FDCWD)
		return tfd;
	return renameat(ffd, rfrom, tfd, rto) < 0 ? -errno : 0;
}

int jail_open(const char *path, int flags, mode_t mode)
{
	char rel[4096];
	int dfd = jail_at(path, rel, sizeof(rel));
	if (dfd < 0 && dfd != AT_FDCWD)
		return dfd;
	int fd = openat(dfd, rel, flags, mode);
	return fd < 0 ? -errno : fd;
}

void jail_allow_connect(const char *path)
{
	if (!path)
		return;
	jail_allow_path(path, false);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	reach_add(dir, true);
}

/* A held directory under both names: its real path, and as the user spelt it (a symlink on the way). */
static void reach_spelt(const char *path, bool is_dir, const char *real)
{
	reach_add(real, false);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!is_dir) {
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
	}
	reach_add(dir, false);
}

void jail_allow_path(const char *path, bool is_dir)
{
	if (!jail_armed() && J.o.off)
		return;
	if (!path || J.ndirs >= sizeof(J.dirs) / sizeof(J.dirs[0]))
		return;
	char *d = J.dirs[J.ndirs];
	if (!realpath(path, d)) {
		/* not there yet (a snapshot directory to be made): its parent, then */
		snprintf(d, sizeof(J.dirs[0]), "%s", path);
		is_dir = false;
		char *slash = strrchr(d, '/');
		if (!slash)
			snprintf(d, sizeof(J.dirs[0]), ".");
		else if (slash == d)
			d[1] = '\0';
		else
			*slash = '\0';
		char tmp[4096];
		if (!realpath(d, tmp))
			return;
		snprintf(d, sizeof(J.dirs[0]), "%s", tmp);
		J.ndirs++;
		reach_spelt(path, false, d);
		return;
	}
	if (!is_dir) {
		char *slash = strrchr(d, '/');
		if (slash == d)
			d[1] = '\0';
		else if (slash)
			*slash = '\0';
	}
	J.ndirs++;
	reach_spelt(path, is_dir, d);
}

void jail_allow_rmdir(const char *dir)
{
	if (!jail_armed() && J.o.off)
		return;
	if (!dir || J.nrmdir >= sizeof(J.rmdir_parents) / sizeof(J.rmdir_parents[0]))
		return;
	char real[4096];
	if (!realpath(dir, real))
		return;
	char *slash = strrchr(real, '/');
	if (!slash || slash == real)
		return; /* a directory in / is never the VM's to remove */
	*slash = '\0';
	snprintf(J.rmdir_parents[J.nrmdir++], sizeof(J.rmdir_parents[0]), "%s", real);
	reach_spelt(dir, false, real);
}

void jail_own_path(const char *path)
{
	if (path && J.nowned < sizeof(J.owned) / sizeof(J.owned[0]))
		snprintf(J.owned[J.nowned++], sizeof(J.owned[0]), "%s", path);
}

void jail_abort(void)
{
	if (J.gate == GATE_ARMED || J.gate == GATE_JOIN)
		gate_set(GATE_OPEN);
}

/* ---- privileges ---------------------------------------------------------------------------- */

/*
 * This thread's bounding and ambient sets, while it still has CAP_SETPCAP.  The kernel's last
 * capability is where PR_CAPBSET_DROP says EINVAL (found once, no /proc read); EPERM (no
 * CAP_SETPCAP, checked first by the kernel) means there is nothing this thread could drop.
 */
static void caps_drop_bounding(void)
{
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int c = 0; c < 64 && (J.cap_last < 0 || c <= J.cap_last); c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				J.cap_last = c - 1;
			break; /* EINVAL: past the last; EPERM: no CAP_SETPCAP, nothing to drop */
		}
}

/* This thread's permitted, effective and inheritable sets (its bounding set is already empty). */
static int caps_drop_thread(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { 0 };
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static int ids_switch(char *err, size_t errlen)
{
	if (J.o.uid < 0)
		return 0;
	for (unsigned i = 0; i < J.nowned; i++) {
		char rel[4096];
		int dfd = jail_at(J.owned[i], rel, sizeof(rel)); /* the root may be the empty jail by now */
		int rc = dfd < 0 && dfd != AT_FDCWD ? dfd : fchownat(dfd, rel, J.o.uid, J.o.gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
		if (rc && rc != -ENOENT)
			return snprintf(err, errlen, "cannot hand %s to uid %ld: %s", J.owned[i], J.o.uid, strerror(-rc)), rc;
	}
	/* glibc applies these to every thread of the process */
	if (setgroups(0, NULL) < 0 || setresgid(J.o.gid, J.o.gid, J.o.gid) < 0 || setresuid(J.o.uid, J.o.uid, J.o.uid) < 0)
		return snprintf(err, errlen, "cannot switch to uid %ld gid %ld: %s", J.o.uid, J.o.gid, strerror(errno)), -errno;
	return 0;
}

/* No core files; enough fds for the vsock device's 1023 connections; files no bigger than a snapshot's. */
static void limits_set(uint64_t mem_size)
{
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	uint64_t biggest = mem_size;
	int maxfd = 0;
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		int fd = atoi(e->d_name);
		struct stat st;
		if (fd > maxfd)
			maxfd = fd;
		if (e->d_name[0] != '.' && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > biggest)
			biggest = st.st_size;
	}
	if (dir)
		closedir(dir);
	struct rlimit cur;
	rlim_t nofile = (rlim_t)maxfd + 1024 + 256;
	if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && cur.rlim_max < nofile)
		nofile = cur.rlim_max;
	setrlimit(RLIMIT_NOFILE, &(struct rlimit){ nofile, nofile });
	rlim_t fsize = biggest + (64ull << 20);
	setrlimit(RLIMIT_FSIZE, &(struct rlimit){ fsize, fsize });
}

/* ---- seccomp violations ---------------------------------------------------------------------- */

static size_t put(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at < cap)
		buf[at++] = *s++;
	return at;
}

/* A violation: say which thread and which call, end the process.  Async-signal-safe. */
static void sigsys_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char buf[256], num[16];
	int nr = si->si_syscall, n = 0;
	unsigned u = nr < 0 ? 0 : (unsigned)nr;
	do
		num[n++] = '0' + u % 10;
	while ((u /= 10) && n < 15);
	char digits[16];
	for (int i = 0; i < n; i++)
		digits[i] = num[n - 1 - i];
	digits[n] = '\0';
	const char *name = jail_syscall_name(nr);
	size_t at = put(buf, 0, sizeof(buf), "\r\npadcell: jail: the ");
	at = put(buf, at, sizeof(buf), kind_names[thread_kind]);
	at = put(buf, at, sizeof(buf), " thread made a forbidden system call, ");
	at = put(buf, at, sizeof(buf), name ? name : "?");
	at = put(buf, at, sizeof(buf), " (");
	at = put(buf, at, sizeof(buf), digits);
	at = put(buf, at, sizeof(buf), "): ");
	at = put(buf, at, sizeof(buf), violation_ends);
	at = put(buf, at, sizeof(buf), " (exit 159)\r\n");
	if (write(STDERR_FILENO, buf, at) < 0) {
		/* nothing more to do */
	}
	_exit(EXIT_JAIL_VIOLATION);
}

static void test_hook(int kind)
{
	if (J.test_kind == kind)
		syscall(SYS_personality, 0xffffffffUL); /* a harmless query no thread kind is allowed */
}

static void sigsys_arm(void)
{
	struct sigaction sa = { .sa_sigaction = sigsys_handler, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
}

void jail_supervisor_trap(enum jail_seccomp_mode mode)
{
	thread_kind = JAIL_SUPERVISOR;
	if (mode == JAIL_SECCOMP_KILL)
		sigsys_arm();
}

void jail_supervisor_test_hook(void)
{
	test_hook(JAIL_SUPERVISOR);
}

/* ---- the sequence --------------------------------------------------------------------------- */

/*
 * This thread into the namespaces made meanwhile (ns.c): the network one, then, with every
 * directory the VM still uses held as an fd, the mount one whose root is an empty tmpfs.  What
 * cannot be done is said once, and Landlock alone keeps the monitor from host files (paths are
 * then used as they are).  The threads already there follow at JOIN (jail_thread_begin).
 */
static void net_and_root(void)
{
	char what[96];
	int rc = jail_ns_wait(what, sizeof(what));
	if (!J.o.host_net) { /* a NIC's stack dials out from the host's network namespace */
		int nrc = jail_ns_net_status();
		if (!nrc)
			nrc = jail_ns_net_join();
		if (nrc < 0)
			fprintf(stderr, "padcell: jail: no network namespace (%s); seccomp allows Unix sockets only\n",
				strerror(-nrc));
	}
	reach_add("/proc/self", false); /* snapshots read its pagemap */
	for (unsigned i = 0; i < J.nreach; i++)
		J.reach[i].fd = open(J.reach[i].path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	/* the working directory after the switch: the vsock socket's (connect(2) names PATH_P sockets
	 * from it) in the empty root, the start's own when the root could not be swapped */
	J.cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	J.cwd_owned = true;
	for (unsigned i = 0; !rc && i < J.nreach; i++)
		if (J.reach[i].connect && J.reach[i].fd >= 0) {
			close(J.cwd_fd);
			J.cwd_fd = J.reach[i].fd;
			J.cwd_owned = false;
			break;
		}
	if (!rc) {
		J.pivoted = true;
		if (J.cwd_owned) { /* no vsock socket: the jail's own root */
			if (J.cwd_fd >= 0)
				close(J.cwd_fd);
			J.cwd_fd = -1;
		}
	}
	int jrc = jail_ns_join(J.cwd_fd);
	J.mnt_joined = jrc == 0;
	if (jrc && !rc) {
		rc = jrc;
		snprintf(what, sizeof(what), "enter the namespaces");
	}
	if (rc) {
		fprintf(stderr, "padcell: jail: no empty root (%s: %s); Landlock alone keeps the monitor from host files\n",
			what, strerror(-rc));
		J.pivoted = false;
		for (unsigned i = 0; i < J.nreach; i++)
			if (J.reach[i].fd >= 0 && J.reach[i].fd != J.cwd_fd)
				close(J.reach[i].fd);
		for (unsigned i = 0; i < J.nreach; i++)
			J.reach[i].fd = -1;
	}
}

static int confine(uint64_t mem_size, char *err, size_t errlen)
{
	if (J.gate != GATE_ARMED)
		return 0;
	int rc = jail_seccomp_build(J.o.seccomp, J.o.host_net, err, errlen);
	if (rc)
		goto fail;
	limits_set(mem_size);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		goto fail;
	}
	const char *dirs[sizeof(J.dirs) / sizeof(J.dirs[0])];
	for (unsigned i = 0; i < J.ndirs; i++)
		dirs[i] = J.dirs[i];
	char why[256];
	const char *rmdir_parents[sizeof(J.rmdir_parents) / sizeof(J.rmdir_parents[0])];
	for (unsigned i = 0; i < J.nrmdir; i++)
		rmdir_parents[i] = J.rmdir_parents[i];
	J.ruleset_fd = jail_landlock_make(dirs, J.ndirs, rmdir_parents, J.nrmdir, why, sizeof(why));
	/* The network namespace, then the empty root: both before Landlock, which forbids mounting. */
	if (J.ns)
		net_and_root();
	if (J.ruleset_fd < 0) {
		fprintf(stderr, "padcell: jail: %s: the monitor's file access is not restricted\n", why);
	} else if ((rc = jail_landlock_restrict(J.ruleset_fd))) {
		snprintf(err, errlen, "landlock_restrict_self: %s", strerror(-rc));
		goto fail;
	}
	/* The bounding set went at prepare; the ids, then the rest of the capabilities.  The threads
	 * already there join the jail first; the uid switch waits for them. */
	pthread_mutex_lock(&J.lock);
	J.gate = GATE_JOIN;
	pthread_cond_broadcast(&J.cond);
	while (J.unjoined)
		pthread_cond_wait(&J.cond, &J.lock);
	pthread_mutex_unlock(&J.lock);
	if (J.ruleset_fd >= 0)
		close(J.ruleset_fd);
	J.ruleset_fd = -1;
	jail_ns_done();
	if (J.cwd_owned && J.cwd_fd >= 0)
		close(J.cwd_fd);
	J.cwd_fd = -1;
	if ((rc = ids_switch(err, errlen)))
		goto fail;
	jail_pidns_rearm();
	if ((rc = caps_drop_thread())) {
		snprintf(err, errlen, "cannot drop capabilities: %s", strerror(-rc));
		goto fail;
	}
	clearenv();
	if (J.o.seccomp == JAIL_SECCOMP_KILL)
		sigsys_arm();
	if ((rc = jail_seccomp_load_process(err, errlen)))
		goto fail;
	gate_set(GATE_CONFINED);
	return 0;
fail:
	jail_abort();
	return rc;
}

int jail_prepare(const struct jail_opts *o, char *err, size_t errlen)
{
	uint64_t t0 = now_ns();
	int rc = prepare(o, err, errlen);
	J.prepare_ns = now_ns() - t0;
	return rc;
}

int jail_confine(uint64_t mem_size, char *err, size_t errlen)
{
	uint64_t t0 = now_ns();
	int rc = confine(mem_size, err, errlen);
	J.confine_ns = J.gate == GATE_CONFINED ? now_ns() - t0 : 0;
	return rc;
}

void jail_control_narrow(void)
{
	if (!jail_confined())
		return;
	if (jail_seccomp_load_control())
		fprintf(stderr, "padcell: jail: cannot narrow the control thread's filter\n");
	test_hook(JAIL_CONTROL);
}

bool jail_thread_born(void)
{
	if (J.gate != GATE_ARMED)
		return true;
	pthread_mutex_lock(&J.lock);
	J.unjoined++;
	pthread_mutex_unlock(&J.lock);
	return false;
}

void jail_thread_unborn(void)
{
	pthread_mutex_lock(&J.lock);
	if (J.unjoined)
		J.unjoined--;
	pthread_cond_broadcast(&J.cond);
	pthread_mutex_unlock(&J.lock);
}

/* Waits while the gate is below JOIN, or is JOIN when past_join; the gate then. */
static enum gate gate_wait(bool past_join)
{
	pthread_mutex_lock(&J.lock);
	while (J.gate == GATE_ARMED || (past_join && J.gate == GATE_JOIN))
		pthread_cond_wait(&J.cond, &J.lock);
	enum gate g = J.gate;
	pthread_mutex_unlock(&J.lock);
	return g;
}

static void thread_die(enum jail_kind kind, const char *what, int rc)
{
	fprintf(stderr, "padcell: jail: a %s thread cannot %s: %s\n", kind_names[kind], what, strerror(-rc));
	_exit(EXIT_JAIL_VIOLATION);
}

void jail_thread_begin(enum jail_kind kind, bool born_confined)
{
	if (!jail_armed())
		return;
	thread_kind = kind;
	if (!born_confined) {
		if (gate_wait(false) != GATE_JOIN)
			return; /* OPEN: no confinement */
		/* what the main thread did for itself and cannot do for others */
		int rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
		if (J.ns && !J.o.host_net)
			jail_ns_net_join(); /* the main thread said it if this fails */
		/* the main thread's mount, IPC and UTS namespaces, or nobody's: no thread stays behind */
		if (!rc && J.mnt_joined)
			rc = jail_ns_join(J.cwd_fd);
		if (!rc && J.ruleset_fd >= 0)
			rc = jail_landlock_restrict(J.ruleset_fd);
		if (rc)
			thread_die(kind, "join the jail", rc);
		pthread_mutex_lock(&J.lock);
		J.unjoined--;
		pthread_cond_broadcast(&J.cond);
		pthread_mutex_unlock(&J.lock);
		if (gate_wait(true) != GATE_CONFINED)
			return;
		if ((rc = caps_drop_thread()))
			thread_die(kind, "drop its capabilities", rc);
	} else if (!jail_confined()) {
		return;
	}
	int rc = kind == JAIL_CONTROL ? jail_seccomp_load_control() : jail_seccomp_load(kind);
	if (rc)
		thread_die(kind, "load its seccomp filter", rc);
	test_hook(kind);
}

int jail_confine_daemon(const struct jail_daemon *d, char *err, size_t errlen)
{
	bool violate = false;
	const char *test_open = NULL;
#ifdef PADCELL_TEST_HOOKS
	const char *t = getenv("PADCELL_JAIL_TEST_VIOLATION");
	violate = t && !strcasecmp(t, kind_names[d->kind]);
	test_open = getenv("PADCELL_JAIL_TEST_OPEN");
#endif
	/* no core files; fds for its connections and their agent sockets; no file bigger than a record needs */
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	struct rlimit cur;
	rlim_t nofile = 4096;
	if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && cur.rlim_max < nofile)
		nofile = cur.rlim_max;
	setrlimit(RLIMIT_NOFILE, &(struct rlimit){ nofile, nofile });
	setrlimit(RLIMIT_FSIZE, &(struct rlimit){ 64ull << 20, 64ull << 20 });
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno)), -errno;
	int rc = jail_landlock_daemon(d, err, errlen);
	if (rc == -ENOSYS) {
		fprintf(stderr, "padcell: jail: %s: the daemon's file access is not restricted\n", err);
		rc = 0;
	}
	if (rc)
		return rc;
	J.cap_last = -1;
	caps_drop_bounding();
	if ((rc = caps_drop_thread()))
		return snprintf(err, errlen, "cannot drop capabilities: %s", strerror(-rc)), rc;
	clearenv();
	thread_kind = d->kind;
	violation_ends = d->kind == JAIL_MCP ? "the MCP server is stopped" : "the daemon is stopped";
	if (d->seccomp == JAIL_SECCOMP_KILL) {
		struct sigaction sa = { .sa_sigaction = sigsys_handler, .sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSYS, &sa, NULL);
	}
	if ((rc = jail_seccomp_load_daemon(d->kind, d->seccomp)))
		return snprintf(err, errlen, "cannot load the seccomp filter: %s", strerror(-rc)), rc;
	if (test_open) {
		int fd = open(test_open, O_RDONLY | O_CLOEXEC);
		fprintf(stderr, "padcell: jail: test: open %s: %s\n", test_open, fd < 0 ? strerror(errno) : "opened");
		if (fd >= 0)
			close(fd);
	}
	if (violate)
		syscall(SYS_personality, 0xffffffffUL);
	return 0;
}

void jail_probe(struct jail_support *s)
{
	memset(s, 0, sizeof(*s));
	int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
	/* filter mode is there when asking for it with a NULL program fails with EFAULT, not EINVAL */
	s->seccomp = mode >= 0 && syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, NULL) < 0 && errno == EFAULT;
	s->landlock_abi = jail_landlock_abi();
	int max = read_int("/proc/sys/user/max_user_namespaces", 0);
	int clone = read_int("/proc/sys/kernel/unprivileged_userns_clone", 1);
	s->userns = max > 0 && clone != 0;
	s->pidns = jail_pidns_probe();
	jail_cgroup_probe(s);
}
