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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * ARMED: threads born now wait.  JOIN: they drop their bounding set, set NO_NEW_PRIVS and join
 * Landlock while they still may (before the uid switch takes CAP_SETPCAP away), then report.
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
} J = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, GATE_UNARMED, .ruleset_fd = -1, .test_kind = -1 };

static __thread int thread_kind = JAIL_CONTROL;
static const char *const kind_names[JAIL_KINDS] = { "control", "vCPU", "device" };

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

int jail_opt_parse(struct jail_opts *o, int opt, const char *arg, int *rc, char *err, size_t errlen)
{
	if (cgroup_opt_parse(&o->cgroup, opt, arg, rc, err, errlen))
		return 1;
	*rc = 0;
	switch (opt) {
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

int jail_prepare(const struct jail_opts *o, char *err, size_t errlen)
{
	if (o->off) {
		fprintf(stderr, "padcell: warning: --no-jail: the monitor runs unconfined (no seccomp, Landlock, "
				"namespaces or privilege drop; cgroup limits only if named)\n");
		return cgroup_prepare(&o->cgroup, false, err, errlen);
	}
	/*
	 * The NIC's user-mode stack dials out with AF_INET sockets from its device thread, which the
	 * filters do not allow yet: refuse the combination plainly instead of killing the VM later.
	 */
	if (o->host_net)
		return snprintf(err, errlen, "the jail does not cover a NIC yet: --net (and --allow, --allow-internet, "
				"--net-log) need --no-jail for now"), -ENOTSUP;
	J.o = *o;
	bool root = geteuid() == 0;
	if (!root && ((o->uid >= 0 && o->uid != (long)getuid()) || (o->gid >= 0 && o->gid != (long)getgid())))
		return snprintf(err, errlen, "--uid/--gid switch users only when padcell runs as root"), -EPERM;
	if (J.o.uid >= 0 && J.o.gid < 0)
		J.o.gid = J.o.uid;
#ifdef PADCELL_TEST_HOOKS
	const char *t = getenv("PADCELL_JAIL_TEST_VIOLATION");
	for (int k = 0; t && k < JAIL_KINDS; k++)
		if (!strcasecmp(t, kind_names[k]))
			J.test_kind = k;
#endif
	/* Whatever the parent left open is not the VM's. */
	syscall(SYS_close_range, 3u, ~0u, 0u);
	/* The leaf and its reaper, while the monitor still sees the host's cgroups and has one thread. */
	int crc = cgroup_prepare(&o->cgroup, true, err, errlen);
	if (crc)
		return crc;
	J.cap_last = read_int("/proc/sys/kernel/cap_last_cap", 40);
	char what[64];
	int rc = jail_ns_enter(root, o->host_net, what, sizeof(what));
	if (rc)
		fprintf(stderr, "padcell: jail: no new namespaces (%s: %s); Landlock alone keeps the monitor from host files\n",
			what, strerror(-rc));
	for (unsigned i = 0; i < o->ndirs; i++)
		jail_allow_path(o->dirs[i], true);
	J.gate = GATE_ARMED;
	return 0;
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

/* This thread's capabilities, all of them: bounding and ambient sets, then permitted/effective. */
static int caps_drop_thread(void)
{
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int c = 0; c <= J.cap_last; c++)
		prctl(PR_CAPBSET_DROP, c, 0, 0, 0); /* EPERM without CAP_SETPCAP: then there was nothing to drop */
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { 0 };
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static int ids_switch(char *err, size_t errlen)
{
	if (J.o.uid < 0)
		return 0;
	for (unsigned i = 0; i < J.nowned; i++)
		if (lchown(J.owned[i], J.o.uid, J.o.gid) < 0 && errno != ENOENT)
			return snprintf(err, errlen, "cannot hand %s to uid %ld: %s", J.owned[i], J.o.uid, strerror(errno)), -errno;
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
	at = put(buf, at, sizeof(buf), "): the VM is stopped (exit 159)\r\n");
	if (write(STDERR_FILENO, buf, at) < 0) {
		/* nothing more to do */
	}
	_exit(EXIT_JAIL_VIOLATION);
}

static void test_hook(enum jail_kind kind)
{
	if (J.test_kind == (int)kind)
		syscall(SYS_personality, 0xffffffffUL); /* a harmless query no thread kind is allowed */
}

/* ---- the sequence --------------------------------------------------------------------------- */

int jail_confine(uint64_t mem_size, char *err, size_t errlen)
{
	if (J.gate != GATE_ARMED)
		return 0;
	int rc = jail_seccomp_build(J.o.seccomp, err, errlen);
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
	if (J.ruleset_fd < 0) {
		fprintf(stderr, "padcell: jail: %s: the monitor's file access is not restricted\n", why);
	} else if ((rc = jail_landlock_restrict(J.ruleset_fd))) {
		snprintf(err, errlen, "landlock_restrict_self: %s", strerror(-rc));
		goto fail;
	}
	/* Bounding set while CAP_SETPCAP is still there, then the ids, then the rest of the capabilities. */
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int c = 0; c <= J.cap_last; c++)
		prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
	/* The threads already there do the same for themselves; the uid switch waits for them. */
	pthread_mutex_lock(&J.lock);
	J.gate = GATE_JOIN;
	pthread_cond_broadcast(&J.cond);
	while (J.unjoined)
		pthread_cond_wait(&J.cond, &J.lock);
	pthread_mutex_unlock(&J.lock);
	if (J.ruleset_fd >= 0)
		close(J.ruleset_fd);
	J.ruleset_fd = -1;
	if ((rc = ids_switch(err, errlen)))
		goto fail;
	if ((rc = caps_drop_thread())) {
		snprintf(err, errlen, "cannot drop capabilities: %s", strerror(-rc));
		goto fail;
	}
	clearenv();
	if (J.o.seccomp == JAIL_SECCOMP_KILL) {
		struct sigaction sa = { .sa_sigaction = sigsys_handler, .sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSYS, &sa, NULL);
	}
	if ((rc = jail_seccomp_load_process(err, errlen)))
		goto fail;
	gate_set(GATE_CONFINED);
	return 0;
fail:
	jail_abort();
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
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		for (int c = 0; c <= J.cap_last; c++)
			prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
		int rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
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
	jail_cgroup_probe(s);
}
