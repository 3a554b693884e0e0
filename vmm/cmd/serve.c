/* `padcell serve`: the daemon owning one host's sandboxes (each a child `padcell restore`), with a REST API. */
#include "vmm/cmd/cmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/cmd/cli.h"
#include "vmm/serve/api.h"
#include "vmm/serve/http.h"
#include "vmm/serve/serve_cli.h"
#include "vmm/jail/jail.h"
#include "vmm/serve/spawn.h"
#include "vmm/serve/spawner.h"
#include "vmm/serve/table.h"
#include "vmm/util.h"

#define SERVE_TEMPLATES_MAX 32
#define SERVE_TICK_MS       500 /* how often timeouts and dead sandboxes are looked at */

enum { S_LISTEN = 256, S_STATE_DIR, S_MAX_SB, S_MAX_MEM, S_TEMPLATE, S_READY_TIMEOUT, S_PADCELL, S_VERBOSE, S_POOL, S_TEMPLATES, S_API_KEYS,
       S_NO_JAIL, S_SECCOMP };

static double wall_now(void *ctx)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The warm pools' filler: one clone at a time while a pool is short, until the daemon stops. */
struct filler {
	struct serve_table *t;
	int quit_fd;
	pthread_t thread;
};

/* A wait of ms that the daemon's stop cuts short: true when it is stopping. */
static bool quit_wait(int quit_fd, int ms)
{
	struct pollfd p = { .fd = quit_fd, .events = POLLIN };
	return poll(&p, 1, ms) > 0;
}

static void *filler_run(void *arg)
{
	struct filler *f = arg;
	while (!quit_wait(f->quit_fd, 0)) {
		char err[512];
		int rc = serve_pool_fill_one(f->t, err, sizeof(err));
		if (rc > 0) {
			for (size_t i = 0; i < f->t->npool; i++)
				printf("padcell serve: pool %s: %u of %u ready\n", f->t->pool[i].tmpl->name,
				       serve_pool_ready(f->t, f->t->pool[i].tmpl->name), f->t->pool[i].size);
			fflush(stdout);
			continue;
		}
		if (rc < 0 && !quit_wait(f->quit_fd, 0)) {
			fprintf(stderr, "padcell: serve: a pool clone did not start: %s (retried in 5 s)\n", err);
			if (quit_wait(f->quit_fd, 5000))
				break;
			continue;
		}
		/* full, or the limits leave no room: looked at again soon (a create took one) */
		if (quit_wait(f->quit_fd, 250))
			break;
	}
	return NULL;
}

static int usage(const char *fmt, const char *a)
{
	fprintf(stderr, "padcell: serve: ");
	fprintf(stderr, fmt, a);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* A template directory entry that is not one: said, and the daemon starts without it. */
static void template_skipped(void *arg, const char *line)
{
	fprintf(stderr, "padcell: serve: warning: --templates: skipped %s\n", line);
}

/* What a reload said: one line each on stdout. */
static void reload_said(void *arg, const char *line)
{
	printf("padcell serve: %s: %s\n", (const char *)arg, line);
}

/* The templates directory's mtime (ns; 0 when it is missing): a build renames a template into it. */
static int64_t dir_mtime(const char *dir)
{
	struct stat st;
	return stat(dir, &st) ? 0 : (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/*
 * The daemon's re-read (SIGHUP, and the templates directory changing): templates built into the
 * directory since are added (the ones known stay as they are); with --api-keys, the file read
 * again and merged (added, changed, removed keys), or kept as it was when the file is refused.
 */
struct reload {
	struct serve_table *t;
	struct serve_template *tmpl;
	size_t *ntmpl;
	const char *templates_dir;
	int64_t templates_mtime;
	const char *keys_file;
	struct serve_keys *keys;
};

static void reload_templates(struct reload *r)
{
	char why[PATH_MAX + 200];
	size_t n = *r->ntmpl;
	r->templates_mtime = dir_mtime(r->templates_dir);
	int rc = serve_templates_scan(r->templates_dir, r->tmpl, &n, SERVE_TEMPLATES_MAX, template_skipped, NULL, why,
				      sizeof(why));
	if (rc && rc != -ENOENT)
		fprintf(stderr, "padcell: serve: warning: %s\n", why);
	for (size_t i = *r->ntmpl; i < n; i++)
		printf("padcell serve: template %s added (%s)\n", r->tmpl[i].name, r->tmpl[i].dir);
	serve_table_templates_grown(r->t, n);
	*r->ntmpl = n;
}

static void reload_keys(struct reload *r)
{
	static struct serve_keys fresh;
	char why[PATH_MAX + 200];
	if (!r->keys_file)
		return;
	if (serve_keys_load(r->keys_file, &fresh, why, sizeof(why)))
		fprintf(stderr, "padcell: serve: warning: %s: the keys stay as they were\n", why);
	else
		serve_keys_merge(r->keys, &fresh, reload_said, "--api-keys");
	explicit_bzero(&fresh, sizeof(fresh));
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, S_LISTEN },
		{ "state-dir", required_argument, NULL, S_STATE_DIR },
		{ "max-sandboxes", required_argument, NULL, S_MAX_SB },
		{ "max-mem", required_argument, NULL, S_MAX_MEM },
		{ "template", required_argument, NULL, S_TEMPLATE },
		{ "ready-timeout", required_argument, NULL, S_READY_TIMEOUT },
		{ "padcell", required_argument, NULL, S_PADCELL },
		{ "verbose", no_argument, NULL, S_VERBOSE },
		{ "pool", required_argument, NULL, S_POOL },
		{ "templates", required_argument, NULL, S_TEMPLATES },
		{ "api-keys", required_argument, NULL, S_API_KEYS },
		{ "no-jail", no_argument, NULL, S_NO_JAIL },
		{ "seccomp", required_argument, NULL, S_SECCOMP },
		{ 0 },
	};
	static struct serve_template tmpl[SERVE_TEMPLATES_MAX];
	size_t ntmpl = 0;
	static struct serve_pool pool[SERVE_TEMPLATES_MAX];
	static const char *pool_arg[SERVE_TEMPLATES_MAX];
	size_t npool = 0;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(SERVE_DEFAULT_PORT),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char state_dir[PATH_MAX];
	serve_default_state_dir(state_dir, sizeof(state_dir));
	struct serve_limits lim = { .max_sandboxes = 16 };
	bool mem_given = false;
	struct serve_spawn_opts so = { .ready_timeout = CLI_DEFAULT_BOOT_TIMEOUT };
	char why[PATH_MAX + 200];
	static char monitor[PATH_MAX];
	static char templates_dir[PATH_MAX];
	const char *keys_file = NULL;
	bool no_jail = false;
	enum jail_seccomp_mode seccomp = JAIL_SECCOMP_KILL;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		switch (c) {
		case S_LISTEN:
			if (serve_parse_listen(optarg, &addr))
				return usage("--listen '%s': expected IPv4ADDR:PORT (e.g. 127.0.0.1:3000)", optarg);
			break;
		case S_STATE_DIR:
			if (!*optarg || strlen(optarg) >= sizeof(state_dir))
				return usage("--state-dir '%s': expected a directory", optarg);
			snprintf(state_dir, sizeof(state_dir), "%s", optarg);
			break;
		case S_MAX_SB:
			if (cli_parse_uint(optarg, 1, 4096, &lim.max_sandboxes))
				return usage("--max-sandboxes '%s': expected 1 to 4096", optarg);
			break;
		case S_MAX_MEM:
			if (cli_parse_size(optarg, &lim.max_mem) || lim.max_mem < (64ull << 20))
				return usage("--max-mem '%s': expected a size of at least 64M", optarg);
			mem_given = true;
			break;
		case S_TEMPLATE:
			if (ntmpl == SERVE_TEMPLATES_MAX)
				return usage("at most %s templates", "32");
			if (serve_template_parse(optarg, &tmpl[ntmpl], why, sizeof(why)))
				return usage("%s", why);
			for (size_t i = 0; i < ntmpl; i++)
				if (!strcmp(tmpl[i].name, tmpl[ntmpl].name))
					return usage("--template: the name '%s' is given twice", tmpl[i].name);
			ntmpl++;
			break;
		case S_READY_TIMEOUT:
			if (cli_parse_uint(optarg, 1, 3600, &so.ready_timeout))
				return usage("--ready-timeout '%s': expected whole seconds, 1 to 3600", optarg);
			break;
		case S_PADCELL:
			/* the padcell each sandbox runs (e.g. a static one beside this dynamic daemon) */
			if (!realpath(optarg, monitor) || access(monitor, X_OK))
				return usage("--padcell '%s': not an executable", optarg);
			so.padcell = monitor;
			break;
		case S_VERBOSE: so.verbose = true; break;
		case S_API_KEYS: keys_file = optarg; break;
		case S_NO_JAIL: no_jail = true; break;
		case S_SECCOMP:
			if (strcmp(optarg, "kill") && strcmp(optarg, "log"))
				return usage("--seccomp takes kill or log, not '%s'", optarg);
			seccomp = strcmp(optarg, "log") ? JAIL_SECCOMP_KILL : JAIL_SECCOMP_LOG;
			break;
		case S_TEMPLATES:
			if (!*optarg || strlen(optarg) >= sizeof(templates_dir))
				return usage("--templates '%s': expected a directory", optarg);
			snprintf(templates_dir, sizeof(templates_dir), "%s", optarg);
			break;
		case S_POOL:
			/* resolved once every --template is known */
			if (npool == SERVE_TEMPLATES_MAX)
				return usage("at most %s pools", "32");
			pool_arg[npool++] = optarg;
			break;
		case ':': return usage("%s needs a value", argv[optind - 1]);
		default: return usage("unknown option '%s' (see padcell --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	/* a uid range would hand each sandbox's sockets (0600) to its own uid, which a daemon without
	 * capabilities cannot connect to: refused, rather than every sandbox failing its ready wait */
	const char *ur = getenv("PADCELL_UID_RANGE");
	if (!no_jail && geteuid() == 0 && ur && *ur)
		return usage("PADCELL_UID_RANGE is set: the sandboxes' sockets would belong to their uids, which the "
			     "confined daemon (no capabilities) cannot reach; unset it, or serve with --no-jail (%s)", ur);
	/* the templates built by `padcell template build`: --templates DIR, or STATE/templates when it exists */
	bool templates_given = templates_dir[0] != '\0';
	if (!templates_given &&
	    snprintf(templates_dir, sizeof(templates_dir), "%s/" SERVE_TEMPLATES_SUBDIR, state_dir) >= (int)sizeof(templates_dir))
		return usage("--state-dir '%s': too long", state_dir);
	int src = serve_templates_scan(templates_dir, tmpl, &ntmpl, SERVE_TEMPLATES_MAX, template_skipped, NULL, why,
				       sizeof(why));
	if (src == -ENOENT && templates_given)
		return usage("--templates '%s': no such directory", templates_dir);
	if (src && src != -ENOENT)
		return usage("%s", why);
	if (!ntmpl)
		return usage("no templates: give --template NAME=SNAPSHOT_DIR (a snapshot taken when the agent was ready: "
			     "run --snapshot-when-ready DIR), or build one into %s (padcell template build NAME)", templates_dir);
	for (size_t i = 0; i < npool; i++) {
		const char *a = pool_arg[i], *eq = strchr(a, '=');
		size_t n = eq ? (size_t)(eq - a) : 0;
		pool[i].tmpl = NULL;
		for (size_t k = 0; eq && k < ntmpl; k++)
			if (strlen(tmpl[k].name) == n && !strncmp(tmpl[k].name, a, n))
				pool[i].tmpl = &tmpl[k];
		if (!eq || cli_parse_uint(eq + 1, 1, 4096, &pool[i].size))
			return usage("--pool '%s': expected TEMPLATE=N (N clones kept ready, at least 1)", a);
		if (!pool[i].tmpl)
			return usage("--pool '%s': no template has that name", a);
		for (size_t k = 0; k < i; k++)
			if (pool[k].tmpl == pool[i].tmpl)
				return usage("--pool: the template '%s' is given twice", pool[i].tmpl->name);
	}
	if (!mem_given) {
		/* by default half the host's RAM: past that a create is refused, not an OOM later */
		struct sysinfo si;
		if (sysinfo(&si) == 0)
			lim.max_mem = (uint64_t)si.totalram * si.mem_unit / 2;
	}
	static char self[PATH_MAX];
	if (!so.padcell) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			fprintf(stderr, "padcell: cannot find padcell's own path: %s\n", strerror(errno));
			return EXIT_HOST_ERROR;
		}
		self[n] = '\0';
		so.padcell = self;
	}
	so.quit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (so.quit_fd < 0) {
		fprintf(stderr, "padcell: eventfd: %s\n", strerror(errno));
		return EXIT_HOST_ERROR;
	}
	/* read by the main loop alone; the threads' starts end on quit_fd */
	int sig_fd = stop_signals_fd();
	if (sig_fd < 0) {
		fprintf(stderr, "padcell: signalfd: %s\n", strerror(-sig_fd));
		return EXIT_HOST_ERROR;
	}
	struct serve_spawner sp;
	static struct spawner_client rpc;
	so.rpc = &rpc;
	serve_spawner_real(&sp, &so);
	struct serve_clock clk = { .now = wall_now };
	static struct serve_table t;
	if (serve_table_init(&t, state_dir, &lim, tmpl, ntmpl, &sp, &clk, why, sizeof(why))) {
		fprintf(stderr, "padcell: serve: %s\n", why);
		return EXIT_USAGE;
	}
	serve_table_set_pools(&t, pool, npool);
	/* one key (STATE/api-key, made at the first start), or --api-keys: several, each seeing its own sandboxes */
	static struct serve_keys keys;
	static char key[SERVE_KEY_MAX];
	bool created = false;
	if (keys_file ? serve_keys_load(keys_file, &keys, why, sizeof(why))
		      : serve_key_load(state_dir, key, sizeof(key), &created, why, sizeof(why))) {
		fprintf(stderr, "padcell: serve: %s\n", why);
		serve_table_free(&t);
		return keys_file ? EXIT_USAGE : EXIT_HOST_ERROR;
	}
	if (!keys_file)
		serve_keys_one(&keys, key);
	explicit_bzero(key, sizeof(key));
	/* privilege separation: what starts and ends monitors goes to a process of its own now, while
	 * this one is single-threaded; this one then confines itself before it reads any request */
	static struct spawner_conf spc;
	spc = (struct spawner_conf){ .state_dir = t.state_dir, .tmpl = tmpl, .ntmpl = ntmpl, .max = SERVE_TEMPLATES_MAX,
				     .templates_dir = templates_dir, .padcell = so.padcell, .verbose = so.verbose };
	int rpc_fd;
	pid_t spawner_pid;
	if (spawner_fork(&spc, &rpc_fd, &spawner_pid, why, sizeof(why))) {
		fprintf(stderr, "padcell: serve: %s\n", why);
		serve_table_free(&t);
		return EXIT_HOST_ERROR;
	}
	spawner_client_init(&rpc, rpc_fd);
	unsigned adopted, removed;
	if (serve_adopt(&t, &adopted, &removed, why, sizeof(why))) {
		fprintf(stderr, "padcell: serve: %s\n", why);
		serve_table_free(&t);
		return EXIT_HOST_ERROR;
	}
	/* Jansson seeds its hash from /dev/urandom at its first object: now, while it may be read */
	json_object_seed(0);
	if (no_jail) {
		fprintf(stderr, "padcell: warning: --no-jail: the serve daemon runs unconfined (no seccomp, Landlock or "
				"privilege drop); its sandboxes' monitors are still jailed\n");
	} else {
		struct jail_daemon jd = { .rw = { t.state_dir }, .nrw = 1, .ro = { templates_dir }, .nro = 1,
					  .bind_port = ntohs(addr.sin_port), .seccomp = seccomp, .kind = JAIL_SERVE };
		/* --api-keys: its directory read-only, where the file can be read again (also once replaced) */
		static char keys_dir[PATH_MAX];
		if (keys_file && realpath(keys_file, keys_dir)) {
			char *slash = strrchr(keys_dir, '/');
			if (slash && slash != keys_dir)
				*slash = '\0';
			jd.ro[jd.nro++] = keys_dir;
		}
		if (jail_confine_daemon(&jd, why, sizeof(why))) {
			fprintf(stderr, "padcell: serve: jail: %s\n", why);
			serve_table_free(&t);
			return EXIT_HOST_ERROR;
		}
	}
	unsigned port;
	struct serve_http *h = serve_http_start(&t, &keys, &addr, &port, why, sizeof(why));
	if (!h) {
		fprintf(stderr, "padcell: serve: %s\n", why);
		serve_table_free(&t);
		return EXIT_HOST_ERROR;
	}
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &addr.sin_addr, a, sizeof(a));
	if (created)
		printf("padcell serve: API key (X-API-Key; shown once, kept in %s/api-key): %s\n", state_dir, keys.k[0].key);
	if (keys_file)
		printf("padcell serve: %zu API keys from %s, each seeing only its own sandboxes\n", keys.n, keys_file);
	if (adopted || removed)
		printf("padcell serve: re-adopted %u sandbox(es) (running or paused), removed %u dead record(s)\n", adopted,
		       removed);
	if (addr.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		fprintf(stderr, "padcell: serve: warning: listening on %s, not loopback: anyone who can reach it and has "
			"the key controls the sandboxes (the API is plain HTTP)\n", a);
	printf("padcell serve: listening on http://%s:%u (state in %s, at most %u sandboxes and %llu MiB)\n", a, port,
	       state_dir, lim.max_sandboxes, (unsigned long long)(lim.max_mem >> 20));
	fflush(stdout);
	struct filler fl = { .t = &t, .quit_fd = so.quit_fd };
	bool filling = npool && pthread_create(&fl.thread, NULL, filler_run, &fl) == 0;
	if (npool && !filling)
		fprintf(stderr, "padcell: serve: cannot start the pools' thread: the pools stay empty\n");

	struct reload rl = { .t = &t, .tmpl = tmpl, .ntmpl = &ntmpl, .templates_dir = templates_dir,
			     .templates_mtime = dir_mtime(templates_dir), .keys_file = keys_file, .keys = &keys };
	int signo = 0;
	while (!signo) {
		struct pollfd p = { .fd = sig_fd, .events = POLLIN };
		int k = poll(&p, 1, SERVE_TICK_MS);
		if (k > 0) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				signo = (int)si.ssi_signo;
		}
		if (signo == SIGHUP) {
			/* SIGHUP re-reads; SIGTERM and SIGINT stop */
			signo = 0;
			reload_templates(&rl);
			reload_keys(&rl);
			fflush(stdout);
		} else if (!signo && dir_mtime(templates_dir) != rl.templates_mtime) {
			reload_templates(&rl);
			fflush(stdout);
		}
		/* the spawner is this daemon's only child: without it no sandbox can start or end */
		if (waitpid(spawner_pid, NULL, WNOHANG) == spawner_pid) {
			fprintf(stderr, "padcell: serve: the spawner process ended: the daemon stops (the sandboxes run on)\n");
			signo = -1;
			break;
		}
		serve_tick(&t);
	}
	/* every start under way (a pool's, a create's) sees this within a second and gives up */
	uint64_t one = 1;
	if (write(so.quit_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		fprintf(stderr, "padcell: serve: eventfd write: %s\n", strerror(errno));
	if (filling)
		pthread_join(fl.thread, NULL);
	/* the sandboxes keep running: the next daemon with this state dir re-adopts them; pool clones,
	 * which nobody has asked for, are ended */
	serve_http_stop(h);
	envd_watchers_end(&t); /* CreateWatcher's watchers live in this daemon only */
	unsigned drained = serve_pool_drain(&t);
	if (drained)
		fprintf(stderr, "padcell: serve: ended %u pool clone(s)\n", drained);
	serve_table_free(&t);
	close(so.quit_fd);
	close(sig_fd);
	/* the spawner ends as its channel closes (bounded: it is not waited for past a second) */
	close(rpc_fd);
	for (int i = 0; i < 20 && waitpid(spawner_pid, NULL, WNOHANG) == 0; i++)
		poll(NULL, 0, 50);
	if (signo < 0)
		return EXIT_HOST_ERROR;
	fprintf(stderr, "padcell: serve: stopped by signal %d; the sandboxes run on (re-adopted at the next start)\n", signo);
	return 0;
}
