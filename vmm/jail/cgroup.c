/* cgroup v2 limits for the monitor: its leaf, the limits, the reaper that removes the leaf. */
#include "vmm/jail/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "vmm/cmd/cli.h"
#include "vmm/jail/jail.h"
#include "vmm/util.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif

#define CGROUP_MOUNT "/sys/fs/cgroup"
#define CPU_PERIOD_US 100000
/* The monitor's own threads besides the vCPUs: disk workers, vsock, NIC, console, API, snapshot. */
#define PIDS_SPARE 64

/* ---- options -------------------------------------------------------------------------------- */

int cgroup_opt_parse(struct cgroup_opts *o, int opt, const char *arg, int *rc, char *err, size_t errlen)
{
	*rc = 0;
	switch (opt) {
	case CGROUP_OPT_CPU_QUOTA: {
		char *end;
		errno = 0;
		double q = strtod(arg, &end);
		/* cpu.max's quota is at least 1 ms of a 100 ms period */
		if (errno || end == arg || *end || !isfinite(q) || q < 0.01 || q > 4096) {
			snprintf(err, errlen, "--cpu-quota '%s': expected a number of CPUs from 0.01 to 4096, like 0.5 or 2", arg);
			*rc = -EINVAL;
		} else {
			o->cpu_quota = q;
		}
		return 1;
	}
	case CGROUP_OPT_MEM_LIMIT:
	case CGROUP_OPT_IO_LIMIT: {
		uint64_t v;
		bool mem = opt == CGROUP_OPT_MEM_LIMIT;
		if (cli_parse_size(arg, &v) || v < (mem ? 4ull << 20 : 4096)) {
			snprintf(err, errlen, mem ? "--mem-limit '%s': expected a size of at least 4M, like 512M or 2G"
						  : "--io-limit '%s': expected bytes per second, at least 4K, like 50M",
				 arg);
			*rc = -EINVAL;
		} else if (mem) {
			o->mem_limit = v;
		} else {
			o->io_bps = v;
		}
		return 1;
	}
	default: return 0;
	}
}

bool cgroup_opts_explicit(const struct cgroup_opts *o)
{
	return o->cpu_quota > 0 || o->mem_limit || o->io_bps;
}

/* ---- limits ---------------------------------------------------------------------------------- */

/*
 * 64 MiB for the monitor (measured: ~1-2 MiB resident, and its vsock buffers, up to 256 KiB a
 * connection, only while a host reader lags) plus 1/64 of RAM for what KVM allocates per guest
 * page and charges to us (memory-slot metadata, nested page tables).
 */
uint64_t cgroup_mem_overhead(uint64_t mem_size)
{
	return (64ull << 20) + mem_size / 64;
}

void cgroup_limits_compute(const struct cgroup_opts *o, uint64_t mem_size, unsigned vcpus, uint64_t tmpfs_bytes,
			   bool snapshots, struct cgroup_limits *l)
{
	double q = o->cpu_quota > 0 ? o->cpu_quota : (double)(vcpus ? vcpus : 1);
	l->cpu_period_us = CPU_PERIOD_US;
	l->cpu_quota_us = (uint64_t)(q * CPU_PERIOD_US + 0.5);
	if (o->mem_limit) {
		l->mem_max = o->mem_limit;
	} else {
		/*
		 * Pages the monitor writes to tmpfs (a scratch disk's nameless file there, a snapshot)
		 * are charged to it and cannot be reclaimed: a snapshot can be as big as RAM again.
		 */
		l->mem_max = mem_size + cgroup_mem_overhead(mem_size) + tmpfs_bytes + (snapshots ? mem_size + tmpfs_bytes : 0);
		l->mem_max = (l->mem_max + 4095) & ~4095ull;
	}
	l->pids_max = vcpus + PIDS_SPARE;
	l->io_bps = o->io_bps;
}

static int write_at(int dirfd, const char *name, const char *text)
{
	/* O_CREAT only matters for a test's directory */
	return write_text_at(dirfd, name, text, O_CREAT | O_TRUNC);
}

static int write_path(const char *dir, const char *name, const char *text)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = write_at(dfd, name, text);
	close(dfd);
	return rc;
}

static int read_path(const char *dir, const char *name, char *buf, size_t len)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = '\0';
	return (int)n;
}

int cgroup_limits_write(int dirfd, const struct cgroup_limits *l, const char *const *devs, unsigned ndevs, char *err,
			size_t errlen)
{
	char v[96];
	int rc;
	snprintf(v, sizeof(v), "%llu %llu", (unsigned long long)l->cpu_quota_us, (unsigned long long)l->cpu_period_us);
	if ((rc = write_at(dirfd, "cpu.max", v)))
		return snprintf(err, errlen, "cpu.max '%s': %s", v, strerror(-rc)), rc;
	snprintf(v, sizeof(v), "%llu", (unsigned long long)l->mem_max);
	if ((rc = write_at(dirfd, "memory.max", v)))
		return snprintf(err, errlen, "memory.max '%s': %s", v, strerror(-rc)), rc;
	/* the guest's memory is its own business; the monitor's is never swapped out behind it */
	snprintf(v, sizeof(v), "%u", l->pids_max);
	if ((rc = write_at(dirfd, "pids.max", v)))
		return snprintf(err, errlen, "pids.max '%s': %s", v, strerror(-rc)), rc;
	for (unsigned i = 0; l->io_bps && i < ndevs; i++) {
		snprintf(v, sizeof(v), "%s rbps=%llu wbps=%llu", devs[i], (unsigned long long)l->io_bps,
			 (unsigned long long)l->io_bps);
		if ((rc = write_at(dirfd, "io.max", v)))
			return snprintf(err, errlen, "io.max '%s': %s", v, strerror(-rc)), rc;
	}
	return 0;
}

int cgroup_disk_of(uint64_t st_dev, char *out, size_t outlen)
{
	unsigned maj = major(st_dev), min = minor(st_dev);
	if (maj == 0)
		return -ENODEV; /* an anonymous device: tmpfs, overlayfs, a btrfs subvolume */
	char p[128], real[1024], buf[32];
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u", maj, min);
	if (!realpath(p, real))
		return -ENODEV;
	/* a partition's directory sits in its disk's; io.max takes whole disks only */
	if (read_path(real, "partition", buf, sizeof(buf)) > 0) {
		char *slash = strrchr(real, '/');
		if (!slash)
			return -ENODEV;
		*slash = '\0';
	}
	if (read_path(real, "dev", buf, sizeof(buf)) <= 0)
		return -ENODEV;
	buf[strcspn(buf, "\n")] = '\0';
	snprintf(out, outlen, "%s", buf);
	return 0;
}

/* ---- the place and the tree ------------------------------------------------------------------ */

static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; (p = strstr(p, w)); p += n)
		if ((p == list || p[-1] == ' ' || p[-1] == '\n') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

void cgroup_place_find(const char *mount, const char *self, int pid, struct cgroup_place *p)
{
	memset(p, 0, sizeof(*p));
	p->root = !strcmp(self, "/");
	snprintf(p->base, sizeof(p->base), "%s%s", mount, p->root ? "" : self);
	char buf[4096];
	if (read_path(p->base, "cgroup.controllers", buf, sizeof(buf)) < 0) {
		snprintf(p->detail, sizeof(p->detail), "%s has no cgroup.controllers", p->base);
		return;
	}
	static const char *const want[] = { "cpu", "memory", "pids", "io" };
	for (unsigned i = 0; i < 4; i++)
		if (has_word(buf, want[i]))
			snprintf(p->ctl + strlen(p->ctl), sizeof(p->ctl) - strlen(p->ctl), "%s%s", p->ctl[0] ? " " : "", want[i]);
	char ctl[600], procs[600];
	snprintf(ctl, sizeof(ctl), "%s/cgroup.subtree_control", p->base);
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", p->base);
	if (access(p->base, W_OK) || access(ctl, W_OK) || access(procs, W_OK)) {
		snprintf(p->detail, sizeof(p->detail), "%s is not delegated to this user", p->base);
		return;
	}
	if (!p->root) {
		/* no internal processes: padcell empties B, so it must be the only one there */
		if (read_path(p->base, "cgroup.procs", buf, sizeof(buf)) < 0) {
			snprintf(p->detail, sizeof(p->detail), "cannot read %s", procs);
			return;
		}
		for (char *s = buf, *e; *s; s = e) {
			long v = strtol(s, &e, 10);
			if (e == s)
				break;
			if (v != pid) {
				snprintf(p->detail, sizeof(p->detail),
					 "%s holds other processes (run padcell in a delegated cgroup of its own, "
					 "e.g. systemd-run --scope -p Delegate=yes)", p->base);
				return;
			}
		}
	}
	if (!p->ctl[0]) {
		snprintf(p->detail, sizeof(p->detail), "%s offers none of cpu, memory, pids, io", p->base);
		return;
	}
	p->usable = true;
	snprintf(p->detail, sizeof(p->detail), "%s (%s)", p->base, p->ctl);
}

static bool leaf_empty(const char *leaf)
{
	char buf[256];
	if (read_path(leaf, "cgroup.events", buf, sizeof(buf)) < 0)
		return false;
	return strstr(buf, "populated 0") != NULL;
}

int cgroup_leaf_remove(const char *leaf, int wait_ms)
{
	char p[1024];
	write_path(leaf, "cgroup.kill", "1"); /* 5.14 and later; the monitor never forks, so usually nothing */
	snprintf(p, sizeof(p), "%s/cgroup.events", leaf);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (rmdir(leaf) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long left = wait_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0)
			return -EBUSY;
		/* the kernel signals cgroup.events (POLLPRI) when "populated" changes */
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		char buf[128];
		if (read(fd, buf, sizeof(buf)) < 0) {
			/* nothing: the poll below waits for the next change */
		}
		struct pollfd pfd = { .fd = fd, .events = POLLPRI };
		poll(&pfd, 1, left < 100 ? (int)left : 100);
		close(fd);
	}
}

static bool pid_alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

int cgroup_sweep(const char *padcell_dir, int self_pid)
{
	DIR *d = opendir(padcell_dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		if (strncmp(e->d_name, "vm-", 3))
			continue;
		long pid = strtol(e->d_name + 3, &end, 10);
		if (end == e->d_name + 3 || (*end && *end != '.') || pid == self_pid || pid_alive(pid))
			continue;
		char leaf[1024];
		snprintf(leaf, sizeof(leaf), "%s/%s", padcell_dir, e->d_name);
		if (leaf_empty(leaf) && rmdir(leaf) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int mkdir_ok(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -errno;
}

int cgroup_tree_make(const struct cgroup_place *p, int pid, int reaper_pid, char *leaf, size_t leaflen, char *err,
		     size_t errlen)
{
	char top[700], reapers[720];
	snprintf(top, sizeof(top), "%s/padcell", p->base);
	snprintf(reapers, sizeof(reapers), "%s/reapers", top);
	int rc;
	if ((rc = mkdir_ok(top)))
		return snprintf(err, errlen, "cannot make %s: %s", top, strerror(-rc)), rc;
	if ((rc = mkdir_ok(reapers)))
		return snprintf(err, errlen, "cannot make %s: %s", reapers, strerror(-rc)), rc;
	cgroup_sweep(top, pid);
	for (unsigned i = 0;; i++) {
		if (i)
			snprintf(leaf, leaflen, "%s/vm-%d.%u", top, pid, i);
		else
			snprintf(leaf, leaflen, "%s/vm-%d", top, pid);
		if (mkdir(leaf, 0755) == 0)
			break;
		if (errno != EEXIST || i == 99)
			return rc = -errno, snprintf(err, errlen, "cannot make %s: %s", leaf, strerror(-rc)), rc;
	}
	char num[24];
	snprintf(num, sizeof(num), "%d", reaper_pid);
	if (reaper_pid > 0 && (rc = write_path(reapers, "cgroup.procs", num))) {
		snprintf(err, errlen, "cannot move the reaper into %s: %s", reapers, strerror(-rc));
		goto fail;
	}
	if ((rc = write_path(leaf, "cgroup.procs", "0"))) {
		snprintf(err, errlen, "cannot move into %s: %s", leaf, strerror(-rc));
		goto fail;
	}
	/* now B is empty of us (or the root): its children may get the controllers, then padcell's */
	char words[4][8];
	int nw = sscanf(p->ctl, "%7s %7s %7s %7s", words[0], words[1], words[2], words[3]);
	const char *levels[2] = { p->base, top };
	for (int lv = 0; lv < 2; lv++)
		for (int i = 0; i < nw; i++) {
			char w[40];
			snprintf(w, sizeof(w), "+%s", words[i]);
			if ((rc = write_path(levels[lv], "cgroup.subtree_control", w))) {
				snprintf(err, errlen, "cannot enable %s in %s/cgroup.subtree_control: %s", words[i], levels[lv],
					 strerror(-rc));
				goto fail_moved;
			}
		}
	return 0;
fail_moved:
	/* back where it came from (B has no controllers yet, so it may hold us again) */
	write_path(p->base, "cgroup.procs", "0");
fail:
	rmdir(leaf);
	return rc;
}

/* ---- the process's leaf: prepare, apply, the reaper -------------------------------------------- */

static struct {
	bool active;       /* in a leaf of our own */
	bool warn;         /* no leaf: cgroup_apply says so once */
	struct cgroup_opts o;
	char leaf[1024];
	char why[700];
	int death_w;       /* held until the monitor ends: its EOF starts the reaper */
} C = { .death_w = -1 };

/* The reaper: waits for the monitor's end (EOF on the pipe), then removes the leaf. */
static void reaper_main(int death_r, int go_r)
{
	setsid(); /* out of the terminal's and the caller's process group: their signals are the monitor's */
	prctl(PR_SET_NAME, "padcell-reaper", 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
	for (int s = 1; s < 32; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_IGN);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int fd = 0; fd < 3; fd++)
		if (null >= 0)
			dup2(null, fd); /* never hold the caller's pipes open past the monitor */
	/* the two pipes to 3 and 4, everything else the monitor had closed */
	int d = fcntl(death_r, F_DUPFD_CLOEXEC, 10), g = fcntl(go_r, F_DUPFD_CLOEXEC, 10);
	if (d < 0 || g < 0 || dup2(d, 3) < 0 || dup2(g, 4) < 0)
		_exit(1);
	death_r = 3, go_r = 4;
	syscall(SYS_close_range, 5u, ~0u, 0u);
	char c;
	/* the monitor says where the leaf is, once it is made (or closes: nothing made) */
	char leaf[1024];
	ssize_t n = read(go_r, leaf, sizeof(leaf) - 1);
	if (n <= 0)
		_exit(0);
	leaf[n] = '\0';
	close(go_r);
	while (read(death_r, &c, 1) < 0 && errno == EINTR)
		; /* nothing is ever written: EOF is the monitor's end */
	_exit(cgroup_leaf_remove(leaf, 30000) ? 1 : 0);
}

static void self_cgroup(char *out, size_t len)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, len, "%.*s", (int)len - 1, line + 3);
		}
	if (f)
		fclose(f);
}

/* Is the cgroup2 hierarchy at /sys/fs/cgroup, and where would our leaf go? */
static void place_probe(struct cgroup_place *p)
{
	memset(p, 0, sizeof(*p));
	struct statfs fs;
	if (statfs(CGROUP_MOUNT, &fs) < 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
		snprintf(p->detail, sizeof(p->detail), CGROUP_MOUNT " is not cgroup2 (v1 or hybrid; never written)");
		return;
	}
	char self[512];
	self_cgroup(self, sizeof(self));
	if (!self[0]) {
		snprintf(p->detail, sizeof(p->detail), "this process is in no cgroup v2 cgroup");
		return;
	}
	cgroup_place_find(CGROUP_MOUNT, self, getpid(), p);
}

int cgroup_prepare(const struct cgroup_opts *o, bool want_default, char *err, size_t errlen)
{
	C.o = *o;
	bool explicit = cgroup_opts_explicit(o);
	if (!explicit && !want_default)
		return 0;
	struct cgroup_place p;
	place_probe(&p);
	const char *need_missing = NULL;
	if (p.usable && o->cpu_quota > 0 && !has_word(p.ctl, "cpu"))
		need_missing = "cpu";
	else if (p.usable && o->mem_limit && !has_word(p.ctl, "memory"))
		need_missing = "memory";
	else if (p.usable && o->io_bps && !has_word(p.ctl, "io"))
		need_missing = "io";
	if (!p.usable || need_missing) {
		if (explicit) {
			if (need_missing)
				return snprintf(err, errlen, "resource limits need cgroup v2's %s controller, which %s does not offer",
						need_missing, p.base), -ENOTSUP;
			return snprintf(err, errlen, "--cpu-quota, --mem-limit and --io-limit need cgroup v2 delegated to padcell: %s",
					p.detail), -ENOTSUP;
		}
		snprintf(C.why, sizeof(C.why), "%s", p.detail);
		C.warn = true;
		return 0;
	}
	int death[2], go[2];
	if (pipe2(death, O_CLOEXEC) < 0)
		return snprintf(err, errlen, "cgroup: pipe: %s", strerror(errno)), -errno;
	if (pipe2(go, O_CLOEXEC) < 0) {
		int e = errno;
		close(death[0]);
		close(death[1]);
		return snprintf(err, errlen, "cgroup: pipe: %s", strerror(e)), -e;
	}
	fflush(NULL);
	pid_t reaper = fork();
	if (reaper < 0) {
		int e = errno;
		close(death[0]), close(death[1]), close(go[0]), close(go[1]);
		return snprintf(err, errlen, "cgroup: cannot start the leaf's reaper: %s", strerror(e)), -e;
	}
	if (reaper == 0) {
		close(death[1]);
		close(go[1]);
		reaper_main(death[0], go[0]);
	}
	close(death[0]);
	close(go[0]);
	char why[600];
	int rc = cgroup_tree_make(&p, getpid(), reaper, C.leaf, sizeof(C.leaf), why, sizeof(why));
	if (rc) {
		close(go[1]); /* the reaper ends: nothing to remove */
		close(death[1]);
		if (explicit)
			return snprintf(err, errlen, "cgroup: %s", why), rc;
		snprintf(C.why, sizeof(C.why), "%s", why); /* the defaults are a best effort: warn, run */
		C.warn = true;
		return 0;
	}
	if (write(go[1], C.leaf, strlen(C.leaf)) != (ssize_t)strlen(C.leaf)) {
		/* the reaper is gone: then nobody removes the leaf but the next start's sweep */
	}
	close(go[1]);
	C.death_w = death[1];
	C.active = true;
	return 0;
}

/* What the monitor's open writable files on tmpfs/ramfs hold, and the block devices of the others. */
static uint64_t open_files_scan(char devs[][24], unsigned *ndevs, unsigned maxdevs)
{
	uint64_t tmp = 0;
	*ndevs = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		struct stat st;
		struct statfs fs;
		if (fd == dirfd(d) || fstat(fd, &st) || !S_ISREG(st.st_mode) || fstatfs(fd, &fs))
			continue;
		int fl = fcntl(fd, F_GETFL);
		if (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC) {
			if (fl >= 0 && (fl & O_ACCMODE) != O_RDONLY)
				tmp += st.st_size;
			continue;
		}
		char dev[24];
		if (cgroup_disk_of(st.st_dev, dev, sizeof(dev)))
			continue;
		bool seen = false;
		for (unsigned i = 0; i < *ndevs; i++)
			seen |= !strcmp(devs[i], dev);
		if (!seen && *ndevs < maxdevs)
			snprintf(devs[(*ndevs)++], 24, "%s", dev);
	}
	if (d)
		closedir(d);
	return tmp;
}

int cgroup_apply(uint64_t mem_size, unsigned vcpus, bool snapshots, char *err, size_t errlen)
{
	if (C.warn) {
		fprintf(stderr, "padcell: warning: no cgroup v2 limits for this VM: %s (see padcell check)\n", C.why);
		C.warn = false;
		return 0;
	}
	if (!C.active)
		return 0;
	char devs[8][24];
	const char *dp[8];
	unsigned ndevs;
	uint64_t tmp = open_files_scan(devs, &ndevs, 8);
	for (unsigned i = 0; i < ndevs; i++)
		dp[i] = devs[i];
	struct cgroup_limits l;
	cgroup_limits_compute(&C.o, mem_size, vcpus, tmp, snapshots, &l);
	int dfd = open(C.leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return snprintf(err, errlen, "cgroup %s: %s", C.leaf, strerror(errno)), -errno;
	char why[200];
	int rc = cgroup_limits_write(dfd, &l, dp, ndevs, why, sizeof(why));
	close(dfd);
	if (rc)
		return snprintf(err, errlen, "cgroup %s: %s", C.leaf, why), rc;
	if (l.io_bps && !ndevs)
		fprintf(stderr, "padcell: warning: --io-limit: no disk of this VM is on a block device (tmpfs or none): "
				"io.max not set\n");
	return 0;
}

/* ---- padcell check ----------------------------------------------------------------------------- */

void jail_cgroup_probe(struct jail_support *s)
{
	struct cgroup_place p;
	place_probe(&p);
	s->cgroup2 = p.base[0] != '\0';
	s->cgroup2_delegated = p.usable;
	snprintf(s->cgroup_detail, sizeof(s->cgroup_detail), "%.*s", (int)sizeof(s->cgroup_detail) - 1, p.detail);
}
