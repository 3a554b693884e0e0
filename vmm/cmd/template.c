/*
 * `padcell template build NAME`: boot an image, run setup commands through the agent, snapshot it
 * when ready into a templates directory that `padcell serve` reads by name.  The build is made in
 * a hidden directory beside the target and renamed into place only when complete.
 */
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/cmd/cli.h"
#include "vmm/cmd/run.h"
#include "vmm/serve/serve_cli.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/util.h"

#define TEMPLATE_MAX_RUN   64
#define TEMPLATE_MAX_ALLOW 64
/* the run argv: fixed options, each pass-through flag with its value, the setup-free rest */
#define TEMPLATE_ARGV_MAX  (32 + 2 * (TEMPLATE_MAX_ALLOW + CLI_MAX_ENV))

enum { T_ROOTFS = 256, T_KERNEL, T_MEM, T_CPUS, T_NET, T_ALLOW, T_RUN, T_DIR, T_FORCE, T_TIMEOUT, T_BOOT_TIMEOUT,
       T_ENV, T_VERBOSE };

struct tmpl_build {
	const char *name;
	const char *rootfs, *kernel, *mem, *cpus, *timeout, *boot_timeout;
	bool net, force, verbose;
	const char *allow[TEMPLATE_MAX_ALLOW];
	unsigned nallow;
	const char *env[CLI_MAX_ENV];
	unsigned nenv;
	const char *run[TEMPLATE_MAX_RUN];
	unsigned nrun;
	char dir[PATH_MAX];        /* the templates directory */
	char target[PATH_MAX + SERVE_NAME_MAX + 16]; /* dir/NAME */
	char tmp[PATH_MAX + SERVE_NAME_MAX + 16];    /* dir/.NAME.XXXXXX: the build, renamed to target at the end */
	char image[PATH_MAX], kern[PATH_MAX];
};

static int usage(const char *fmt, const char *a)
{
	fprintf(stderr, "padcell: template build: ");
	fprintf(stderr, fmt, a);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* Removes a build directory made here: its files (a snapshot's set, the manifest), then itself. */
static void tree_remove(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(path);
}

/* The argv `padcell run` takes for this build (strings owned by b or static). */
static int build_argv(struct tmpl_build *b, char **argv)
{
	int n = 0;
	argv[n++] = (char *)"run";
	argv[n++] = (char *)"--rootfs";
	argv[n++] = b->image;
	argv[n++] = (char *)"--kernel";
	argv[n++] = b->kern;
	const struct { const char *flag, *val; } vals[] = {
		{ "--mem", b->mem }, { "--cpus", b->cpus }, { "--timeout", b->timeout },
		{ "--boot-timeout", b->boot_timeout },
	};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		if (vals[i].val) {
			argv[n++] = (char *)vals[i].flag;
			argv[n++] = (char *)vals[i].val;
		}
	if (b->net)
		argv[n++] = (char *)"--net";
	for (unsigned i = 0; i < b->nallow; i++) {
		argv[n++] = (char *)"--allow";
		argv[n++] = (char *)b->allow[i];
	}
	for (unsigned i = 0; i < b->nenv; i++) {
		argv[n++] = (char *)"--env";
		argv[n++] = (char *)b->env[i];
	}
	if (b->verbose)
		argv[n++] = (char *)"--verbose";
	argv[n++] = (char *)"--no-stdin";
	argv[n++] = (char *)"--snapshot-when-ready";
	argv[n++] = b->tmp;
	argv[n] = NULL;
	return n;
}

/* An image or kernel: the given file (made absolute: the snapshot names its disk by path), else the default. */
static int resolve_file(const char *given, const char *env, const char *defname, const char *flag, char *out)
{
	char err[PATH_MAX + 300];
	if (!given) {
		if (run_default_file(env, defname, out, PATH_MAX, err, sizeof(err)))
			return usage("%s", err);
		given = out;
	}
	char abs[PATH_MAX];
	struct stat st;
	if (!realpath(given, abs) || stat(abs, &st) || access(abs, R_OK)) {
		fprintf(stderr, "padcell: template build: %s '%s': %s\n", flag, given, strerror(errno));
		return EXIT_USAGE;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return usage("%s: not a file", flag);
	snprintf(out, PATH_MAX, "%s", abs);
	return 0;
}

/* The options after NAME.  0, or the exit code (the line said). */
static int parse(struct tmpl_build *b, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rootfs", required_argument, NULL, T_ROOTFS },   { "kernel", required_argument, NULL, T_KERNEL },
		{ "mem", required_argument, NULL, T_MEM },         { "cpus", required_argument, NULL, T_CPUS },
		{ "net", no_argument, NULL, T_NET },               { "allow", required_argument, NULL, T_ALLOW },
		{ "run", required_argument, NULL, T_RUN },         { "dir", required_argument, NULL, T_DIR },
		{ "force", no_argument, NULL, T_FORCE },           { "timeout", required_argument, NULL, T_TIMEOUT },
		{ "boot-timeout", required_argument, NULL, T_BOOT_TIMEOUT },
		{ "env", required_argument, NULL, T_ENV },         { "verbose", no_argument, NULL, T_VERBOSE },
		{ 0 },
	};
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		switch (c) {
		case T_ROOTFS: b->rootfs = optarg; break;
		case T_KERNEL: b->kernel = optarg; break;
		case T_MEM: b->mem = optarg; break;
		case T_CPUS: b->cpus = optarg; break;
		case T_NET: b->net = true; break;
		case T_ALLOW:
			if (b->nallow == TEMPLATE_MAX_ALLOW)
				return usage("at most %s --allow rules", "64");
			b->allow[b->nallow++] = optarg;
			break;
		case T_RUN:
			if (b->nrun == TEMPLATE_MAX_RUN)
				return usage("at most %s --run commands", "64");
			if (!*optarg)
				return usage("--run: an empty command%s", "");
			b->run[b->nrun++] = optarg;
			break;
		case T_DIR:
			if (!*optarg || strlen(optarg) >= sizeof(b->dir) - SERVE_NAME_MAX - 16)
				return usage("--dir '%s': expected a directory", optarg);
			snprintf(b->dir, sizeof(b->dir), "%s", optarg);
			break;
		case T_FORCE: b->force = true; break;
		case T_TIMEOUT: b->timeout = optarg; break;
		case T_BOOT_TIMEOUT: b->boot_timeout = optarg; break;
		case T_ENV:
			if (b->nenv == CLI_MAX_ENV)
				return usage("at most %s --env entries", "256");
			b->env[b->nenv++] = optarg;
			break;
		case T_VERBOSE: b->verbose = true; break;
		case ':': return usage("%s needs a value", argv[optind - 1]);
		default: return usage("unknown option '%s' (see padcell --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s' (a setup command goes in --run CMD)", argv[optind]);
	return 0;
}

/* manifest.json in the build directory: what the template was made from. */
static int manifest_write(const struct tmpl_build *b, double secs)
{
	char state[sizeof(b->tmp) + 8], path[sizeof(b->tmp) + 16];
	snprintf(state, sizeof(state), "%s/state", b->tmp);
	struct snap_header h;
	int fd = open(state, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd >= 0 ? read(fd, &h, sizeof(h)) : -1;
	if (fd >= 0)
		close(fd);
	if (got != (ssize_t)sizeof(h) || memcmp(h.magic, SNAP_MAGIC, sizeof(h.magic))) {
		fprintf(stderr, "padcell: template build: the run ended without a snapshot in %s\n", b->tmp);
		return -EIO;
	}
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char built[32];
	strftime(built, sizeof(built), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *cmds = json_array(), *allow = json_array();
	for (unsigned i = 0; i < b->nrun; i++)
		json_array_append_new(cmds, json_string(b->run[i]));
	for (unsigned i = 0; i < b->nallow; i++)
		json_array_append_new(allow, json_string(b->allow[i]));
	json_t *m = json_pack("{s:s, s:s, s:s, s:I, s:i, s:o, s:b, s:o, s:s, s:f}", "name", b->name, "image", b->image,
			      "kernel", b->kern, "memMiB", (json_int_t)(h.mem_size >> 20), "cpus", (int)h.ncpus,
			      "commands", cmds, "net", b->net, "allow", allow, "built", built, "buildSeconds", secs);
	snprintf(path, sizeof(path), "%s/manifest.json", b->tmp);
	int rc = m ? json_dump_file(m, path, JSON_INDENT(2) | JSON_SORT_KEYS) : -1;
	json_decref(m);
	if (rc) {
		fprintf(stderr, "padcell: template build: cannot write %s\n", path);
		return -EIO;
	}
	return 0;
}

/* Waits for the build's run; a stop signal sent to this process (not a terminal's, which the run got too) is passed on. */
static int child_wait(pid_t pid)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int sfd = stop_signals_fd();
	while (pfd >= 0 && sfd >= 0) {
		struct pollfd p[2] = { { .fd = pfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		struct signalfd_siginfo si;
		if ((p[1].revents & POLLIN) && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) && si.ssi_code == SI_USER)
			kill(pid, (int)si.ssi_signo);
	}
	if (pfd >= 0)
		close(pfd);
	if (sfd >= 0)
		close(sfd);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return EXIT_HOST_ERROR;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int template_build(int argc, char **argv)
{
	static struct tmpl_build b;
	memset(&b, 0, sizeof(b));
	if (argc < 2 || argv[1][0] == '-')
		return usage("expected a NAME: padcell template build NAME [--rootfs IMAGE] [--run CMD]...%s", "");
	b.name = argv[1];
	if (!serve_name_valid(b.name, strlen(b.name)) || b.name[0] == '.')
		return usage("'%s': a template name has letters, digits, '.', '_' and '-' (at most 63, not beginning with '.')",
			     b.name);
	int code = parse(&b, argc - 1, argv + 1);
	if (code)
		return code;
	if ((code = resolve_file(b.rootfs, "PADCELL_ROOTFS", "rootfs.ext4", "--rootfs", b.image)) ||
	    (code = resolve_file(b.kernel, "PADCELL_KERNEL", "vmlinuz", "--kernel", b.kern)))
		return code;
	bool dflt = !b.dir[0];
	if (dflt) {
		char state[PATH_MAX - 32];
		serve_default_state_dir(state, sizeof(state));
		if (mkdir(state, 0700) && errno != EEXIST) {
			fprintf(stderr, "padcell: template build: cannot make %s: %s\n", state, strerror(errno));
			return EXIT_HOST_ERROR;
		}
		snprintf(b.dir, sizeof(b.dir), "%s/" SERVE_TEMPLATES_SUBDIR, state);
	}
	if (mkdir(b.dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "padcell: template build: cannot make %s: %s\n", b.dir, strerror(errno));
		return dflt ? EXIT_HOST_ERROR : EXIT_USAGE;
	}
	if (snprintf(b.target, sizeof(b.target), "%s/%s", b.dir, b.name) >= (int)sizeof(b.target) ||
	    snprintf(b.tmp, sizeof(b.tmp), "%s/.%s.XXXXXX", b.dir, b.name) >= (int)sizeof(b.tmp))
		return usage("%s: path too long", b.dir);
	struct stat st;
	bool exists = lstat(b.target, &st) == 0;
	if (exists && !b.force) {
		fprintf(stderr, "padcell: template build: %s exists (--force replaces it once the new one is built)\n",
			b.target);
		return EXIT_USAGE;
	}
	if (exists && !S_ISDIR(st.st_mode))
		return usage("%s exists and is not a template directory", b.target);

	/* every run option checked before anything is made (the build dir's name is a placeholder here) */
	static char *rargv[TEMPLATE_ARGV_MAX];
	int rargc = build_argv(&b, rargv);
	struct run_opts probe;
	char err[512];
	if (cli_parse_run(rargc, rargv, &probe, err, sizeof(err))) {
		fprintf(stderr, "padcell: template build: %s\n", err);
		return EXIT_USAGE;
	}
	cli_opts_free(&probe.vm);

	if (!mkdtemp(b.tmp)) {
		fprintf(stderr, "padcell: template build: cannot make a directory in %s: %s\n", b.dir, strerror(errno));
		return EXIT_HOST_ERROR;
	}
	chmod(b.tmp, 0755);
	fprintf(stderr, "padcell: template build: %s from %s, %u setup command(s)\n", b.name, b.image, b.nrun);
	double t0 = now_ms();
	fflush(stdout);
	fflush(stderr);
	/* the run confines itself (an empty root): a child does it, and this process does the rename */
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "padcell: template build: fork: %s\n", strerror(errno));
		tree_remove(b.tmp);
		return EXIT_HOST_ERROR;
	}
	if (pid == 0) {
		int rc = run_with_setup(rargc, rargv, b.run, b.nrun);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	code = child_wait(pid);
	if (code || manifest_write(&b, (now_ms() - t0) / 1e3)) {
		tree_remove(b.tmp);
		return code ? code : EXIT_HOST_ERROR;
	}
	/* into place: a new name at once; a rebuilt one swapped with the old, which then goes */
	int rrc = exists ? (int)syscall(SYS_renameat2, AT_FDCWD, b.tmp, AT_FDCWD, b.target, 2 /* RENAME_EXCHANGE */)
			 : (int)syscall(SYS_renameat2, AT_FDCWD, b.tmp, AT_FDCWD, b.target, 1 /* RENAME_NOREPLACE */);
	if (rrc) {
		fprintf(stderr, "padcell: template build: cannot rename %s to %s: %s\n", b.tmp, b.target, strerror(errno));
		tree_remove(b.tmp);
		return EXIT_HOST_ERROR;
	}
	if (exists)
		tree_remove(b.tmp); /* the old template, now under the build's name */
	printf("padcell: template %s built in %s (%.1f s)\n", b.name, b.target, (now_ms() - t0) / 1e3);
	return 0;
}

int cmd_template(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "build"))
		return usage("expected `padcell template build NAME ...` (see padcell --help)%s", "");
	return template_build(argc - 1, argv + 1);
}
