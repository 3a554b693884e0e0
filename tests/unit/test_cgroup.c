/* cgroup v2 limits: option parsing, the limits a VM gets, and the tree written into a fake cgroup mount. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/jail/cgroup.h"
#include "vmm/jail/jail.h"

static char root[64];

/* A fake cgroup mount: the root's interface files as the kernel shows them on a fresh cgroup2. */
static void fake_setup(void)
{
	snprintf(root, sizeof(root), "/tmp/padcell-cgtest.XXXXXX");
	cr_assert_not_null(mkdtemp(root));
}

static void put(const char *dir, const char *name, const char *text)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "%s: %s", p, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static char *get(const char *dir, const char *name)
{
	static char buf[4096];
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void rm_tree(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static void fake_teardown(void)
{
	rm_tree(root);
}

/* ---- options ---- */

Test(cgroup, options_parse)
{
	struct cgroup_opts o = { 0 };
	char err[200];
	int rc;
	cr_assert_eq(cgroup_opt_parse(&o, CGROUP_OPT_CPU_QUOTA, "0.5", &rc, err, sizeof(err)), 1);
	cr_assert_eq(rc, 0);
	cr_assert_float_eq(o.cpu_quota, 0.5, 1e-9);
	cr_assert_eq(cgroup_opt_parse(&o, CGROUP_OPT_MEM_LIMIT, "512M", &rc, err, sizeof(err)), 1);
	cr_assert_eq(rc, 0);
	cr_assert_eq(o.mem_limit, 512ull << 20);
	cr_assert_eq(cgroup_opt_parse(&o, CGROUP_OPT_IO_LIMIT, "50M", &rc, err, sizeof(err)), 1);
	cr_assert_eq(o.io_bps, 50ull << 20);
	cr_assert(cgroup_opts_explicit(&o));
	cr_assert_eq(cgroup_opt_parse(&o, 'x', "1", &rc, err, sizeof(err)), 0, "not ours");

	static const char *const bad_quota[] = { "0", "0.001", "-1", "abc", "1e9", "nan", "inf", "1.5x", "" };
	for (unsigned i = 0; i < sizeof(bad_quota) / sizeof(bad_quota[0]); i++) {
		cgroup_opt_parse(&o, CGROUP_OPT_CPU_QUOTA, bad_quota[i], &rc, err, sizeof(err));
		cr_assert_eq(rc, -EINVAL, "--cpu-quota '%s' taken", bad_quota[i]);
		cr_assert(strstr(err, "--cpu-quota") != NULL, "%s", err);
	}
	static const char *const bad_size[] = { "1K", "abc", "-5M", "3M", "" };
	for (unsigned i = 0; i < sizeof(bad_size) / sizeof(bad_size[0]); i++) {
		cgroup_opt_parse(&o, CGROUP_OPT_MEM_LIMIT, bad_size[i], &rc, err, sizeof(err));
		cr_assert_eq(rc, -EINVAL, "--mem-limit '%s' taken", bad_size[i]);
	}
	cgroup_opt_parse(&o, CGROUP_OPT_IO_LIMIT, "1B", &rc, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "--io-limit of one byte a second taken");

	struct cgroup_opts none = { 0 };
	cr_assert_not(cgroup_opts_explicit(&none));
}

Test(cgroup, jail_options_carry_the_limits)
{
	struct jail_opts o;
	jail_opts_init(&o);
	char err[200];
	int rc;
	cr_assert_eq(jail_opt_parse(&o, CGROUP_OPT_CPU_QUOTA, "1.25", &rc, err, sizeof(err)), 1);
	cr_assert_eq(rc, 0);
	cr_assert_float_eq(o.cgroup.cpu_quota, 1.25, 1e-9);
	/* and getopt knows them, with their arguments */
	static const struct option opts[] = { JAIL_LONG_OPTS, { 0 } };
	bool seen[3] = { false };
	for (const struct option *p = opts; p->name; p++)
		for (int i = 0; i < 3; i++)
			if (p->val == CGROUP_OPT_CPU_QUOTA + i) {
				seen[i] = true;
				cr_assert_eq(p->has_arg, required_argument, "%s", p->name);
			}
	cr_assert(seen[0] && seen[1] && seen[2]);
}

/* ---- the limits ---- */

Test(cgroup, limits_default_from_the_vm)
{
	struct cgroup_opts o = { 0 };
	struct cgroup_limits l;
	cgroup_limits_compute(&o, 256ull << 20, 2, 0, false, &l);
	cr_assert_eq(l.cpu_quota_us, 200000, "two vCPUs: two CPUs' worth");
	cr_assert_eq(l.cpu_period_us, 100000);
	cr_assert_eq(l.mem_max, (256ull << 20) + cgroup_mem_overhead(256ull << 20));
	cr_assert_eq(l.mem_max % 4096, 0);
	cr_assert_geq(l.mem_max - (256ull << 20), 64ull << 20, "room for the monitor above guest RAM");
	cr_assert_eq(l.pids_max, 2 + 64);
	cr_assert_eq(l.io_bps, 0, "no io.max without --io-limit");

	/* a scratch disk on tmpfs, and snapshots (as big as RAM and the disk again) */
	cgroup_limits_compute(&o, 256ull << 20, 1, 64ull << 20, true, &l);
	cr_assert_eq(l.mem_max, (256ull << 20) * 2 + cgroup_mem_overhead(256ull << 20) + (128ull << 20));
}

Test(cgroup, limits_explicit)
{
	struct cgroup_opts o = { .cpu_quota = 0.5, .mem_limit = 300ull << 20, .io_bps = 10ull << 20 };
	struct cgroup_limits l;
	cgroup_limits_compute(&o, 256ull << 20, 4, 1ull << 30, true, &l);
	cr_assert_eq(l.cpu_quota_us, 50000);
	cr_assert_eq(l.mem_max, 300ull << 20, "--mem-limit is taken as given");
	cr_assert_eq(l.io_bps, 10ull << 20);
	o.cpu_quota = 0.01;
	cgroup_limits_compute(&o, 256ull << 20, 4, 0, false, &l);
	cr_assert_eq(l.cpu_quota_us, 1000, "cpu.max's smallest quota");
}

Test(cgroup, limits_written, .init = fake_setup, .fini = fake_teardown)
{
	int dfd = open(root, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(dfd, 0);
	struct cgroup_limits l = { .cpu_quota_us = 50000, .cpu_period_us = 100000, .mem_max = 335544320, .pids_max = 66,
				   .io_bps = 1048576 };
	const char *devs[] = { "8:0", "253:1" };
	char err[200];
	/* io.max takes one device a write: each write names one (a test file just keeps the last) */
	cr_assert_eq(cgroup_limits_write(dfd, &l, devs, 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(get(root, "cpu.max"), "50000 100000");
	cr_assert_str_eq(get(root, "memory.max"), "335544320");
	cr_assert_str_eq(get(root, "pids.max"), "66");
	cr_assert_str_eq(get(root, "io.max"), "8:0 rbps=1048576 wbps=1048576");
	char p[128];
	snprintf(p, sizeof(p), "%s/io.max", root);
	unlink(p);
	l.io_bps = 0;
	cr_assert_eq(cgroup_limits_write(dfd, &l, devs, 2, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(get(root, "io.max"), "no io.max without a rate");
	/* a file the kernel refuses (here: a directory in its place) is named in the error */
	snprintf(p, sizeof(p), "%s/pids.max", root);
	unlink(p);
	mkdir(p, 0755);
	cr_assert_lt(cgroup_limits_write(dfd, &l, devs, 2, err, sizeof(err)), 0);
	cr_assert(strstr(err, "pids.max") != NULL, "%s", err);
	close(dfd);
}

Test(cgroup, disk_of)
{
	char dev[32];
	/* tmpfs and other anonymous devices have no block device to limit */
	cr_assert_eq(cgroup_disk_of(makedev(0, 42), dev, sizeof(dev)), -ENODEV);
	struct stat st;
	cr_assert_eq(stat("/proc/self/exe", &st), 0);
	int rc = cgroup_disk_of(st.st_dev, dev, sizeof(dev));
	if (rc) {
		cr_log_warn("the test binary's file system is not on a block device: only the refusal is checked");
		return;
	}
	char p[128];
	snprintf(p, sizeof(p), "/sys/dev/block/%s/partition", dev);
	cr_assert_neq(access(p, F_OK), 0, "%s is a partition: io.max wants the whole disk", dev);
	snprintf(p, sizeof(p), "/sys/dev/block/%s", dev);
	cr_assert_eq(access(p, F_OK), 0, "%s is no block device", dev);
}

/* ---- where the leaf goes, and the tree ---- */

static void fake_cgroup(const char *dir, const char *controllers, const char *procs)
{
	put(dir, "cgroup.controllers", controllers);
	put(dir, "cgroup.subtree_control", "");
	put(dir, "cgroup.procs", procs);
}

Test(cgroup, place_root, .init = fake_setup, .fini = fake_teardown)
{
	fake_cgroup(root, "cpuset cpu io memory hugetlb pids rdma misc\n", "1\n77\n");
	struct cgroup_place p;
	cgroup_place_find(root, "/", 77, &p);
	cr_assert(p.usable, "%s", p.detail);
	cr_assert(p.root);
	cr_assert_str_eq(p.base, root);
	cr_assert_str_eq(p.ctl, "cpu memory pids io");
	cr_assert(strstr(p.detail, "cpu memory pids io") != NULL, "check names the controllers: %s", p.detail);
}

Test(cgroup, place_delegated_alone_or_not, .init = fake_setup, .fini = fake_teardown)
{
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/user.slice/vm.scope", root);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", sub);
	cr_assert_eq(system(cmd), 0);
	fake_cgroup(sub, "memory pids\n", "4242\n");
	struct cgroup_place p;
	cgroup_place_find(root, "/user.slice/vm.scope", 4242, &p);
	cr_assert(p.usable, "%s", p.detail);
	cr_assert_not(p.root);
	cr_assert_str_eq(p.ctl, "memory pids", "only what the parent offers");
	/* another process there: no internal processes, so padcell cannot use it */
	put(sub, "cgroup.procs", "4242\n4243\n");
	cgroup_place_find(root, "/user.slice/vm.scope", 4242, &p);
	cr_assert_not(p.usable);
	cr_assert(strstr(p.detail, "other processes") != NULL, "%s", p.detail);
	/* no controllers on offer */
	put(sub, "cgroup.procs", "4242\n");
	put(sub, "cgroup.controllers", "cpuset rdma\n");
	cgroup_place_find(root, "/user.slice/vm.scope", 4242, &p);
	cr_assert_not(p.usable);
	/* not a cgroup at all */
	cgroup_place_find(root, "/nowhere", 4242, &p);
	cr_assert_not(p.usable);
	cr_assert(strstr(p.detail, "cgroup.controllers") != NULL, "%s", p.detail);
}

Test(cgroup, tree_made_in_order, .init = fake_setup, .fini = fake_teardown)
{
	fake_cgroup(root, "cpu io memory pids\n", "");
	struct cgroup_place p;
	cgroup_place_find(root, "/", 77, &p);
	cr_assert(p.usable, "%s", p.detail);
	char leaf[1024], err[300];
	cr_assert_eq(cgroup_tree_make(&p, 77, 78, leaf, sizeof(leaf), err, sizeof(err)), 0, "%s", err);
	char want[300], top[300], reapers[300];
	snprintf(want, sizeof(want), "%s/padcell/vm-77", root);
	snprintf(top, sizeof(top), "%s/padcell", root);
	snprintf(reapers, sizeof(reapers), "%s/padcell/reapers", root);
	cr_assert_str_eq(leaf, want);
	cr_assert_str_eq(get(reapers, "cgroup.procs"), "78", "the reaper waits outside the leaf");
	cr_assert_str_eq(get(leaf, "cgroup.procs"), "0", "the monitor moved itself in");
	/* each controller enabled one at a time, last written last: both levels got them all */
	cr_assert_str_eq(get(root, "cgroup.subtree_control"), "+io");
	cr_assert_str_eq(get(top, "cgroup.subtree_control"), "+io");
	/* a second VM of the same pid (a stale leaf still there) gets its own name */
	char leaf2[1024];
	cr_assert_eq(cgroup_tree_make(&p, 77, 0, leaf2, sizeof(leaf2), err, sizeof(err)), 0, "%s", err);
	snprintf(want, sizeof(want), "%s/padcell/vm-77.1", root);
	cr_assert_str_eq(leaf2, want);
}

Test(cgroup, tree_failure_leaves_no_leaf, .init = fake_setup, .fini = fake_teardown)
{
	fake_cgroup(root, "cpu memory pids\n", "");
	struct cgroup_place p;
	cgroup_place_find(root, "/", 77, &p);
	/* the kernel refusing subtree_control (EBUSY in life): here a directory in the file's place */
	char top[300], sc[340];
	snprintf(top, sizeof(top), "%s/padcell", root);
	mkdir(top, 0755);
	snprintf(sc, sizeof(sc), "%s/cgroup.subtree_control", top);
	mkdir(sc, 0755);
	char leaf[1024], err[300];
	cr_assert_lt(cgroup_tree_make(&p, 77, 0, leaf, sizeof(leaf), err, sizeof(err)), 0);
	cr_assert(strstr(err, "subtree_control") != NULL, "%s", err);
	char want[300];
	snprintf(want, sizeof(want), "%s/padcell/vm-77", root);
	struct stat st;
	/* (a real leaf has only kernel files and goes with rmdir; the fake one keeps its cgroup.procs) */
	cr_assert(stat(want, &st) != 0 || get(want, "cgroup.procs") != NULL);
	cr_assert_str_eq(get(root, "cgroup.procs"), "0", "the monitor went back where it came from");
}

Test(cgroup, sweep_keeps_live_and_populated_leaves, .init = fake_setup, .fini = fake_teardown)
{
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	char a[300], b[300], c[300];
	snprintf(a, sizeof(a), "%s/vm-%d", root, getpid());   /* a live monitor's */
	snprintf(b, sizeof(b), "%s/vm-%d", root, (int)dead);  /* a dead one's, still populated */
	snprintf(c, sizeof(c), "%s/vm-%d.2", root, (int)dead); /* a dead one's, empty: an empty directory here */
	mkdir(a, 0755);
	mkdir(b, 0755);
	mkdir(c, 0755);
	put(a, "cgroup.events", "populated 0\nfrozen 0\n");
	put(b, "cgroup.events", "populated 1\nfrozen 0\n");
	/* c has no cgroup.events: not a cgroup, never removed */
	cr_assert_eq(cgroup_sweep(root, 1), 0);
	struct stat st;
	cr_assert_eq(stat(a, &st), 0, "a live monitor's leaf is kept");
	cr_assert_eq(stat(b, &st), 0, "a populated leaf is kept");
	cr_assert_eq(stat(c, &st), 0);
}
