/*
 * `padcell serve` without a VM: the sandbox table (vmm/serve/table.c) with a fake spawner and an
 * injected clock — limits, the create/kill state machine, timeouts, state files, re-adoption from
 * a state dir with live, dead and reused-pid records — and the REST API (vmm/serve/api.c) called
 * directly: the key, malformed and wrong-typed bodies, oversized bodies, E2B's shapes and codes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/proc.h"
#include "vmm/serve/api.h"
#include "vmm/serve/serve_cli.h"
#include "vmm/serve/spawn.h"
#include "vmm/serve/spawner.h"
#include "vmm/serve/table.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/util.h"

#define KEY "pc_0123456789abcdef0123456789abcdef01234567"
/* The daemon's one key (the generated api-key's case), as serve_api_handle and envd take keys. */
static const struct serve_keys *keys1(void)
{
	static struct serve_keys k;
	serve_keys_one(&k, KEY);
	return &k;
}

struct fake {
	int starts, stops;
	int fail;                 /* the next start fails with this */
	pid_t next_pid;
	pid_t stopped[16];
	pid_t dead[16];           /* pids the fake says are not alive */
	int ndead;
	double now;
	bool real_procs;          /* alive/stop on real processes (re-adoption) */
	struct serve_table *t;
	int fail_launch;          /* the next start fails before its process exists */
	const char *launched_id;  /* the sandbox whose launch the last start reported */
	int (*hook)(struct fake *f); /* runs inside start, after the launch, without the table's lock */
	int hook_rc;
	int pauses;
	int fail_pause;           /* the next pause fails with this */
	char started_from[PATH_MAX]; /* the directory the last start restored */
	int holds, releases;      /* pool clones' vCPUs parked / let go */
	int fail_hold;            /* the next hold fails with this */
};

static int f_start(void *ctx, const struct serve_template *tp, struct serve_sandbox *sb,
		   int (*launched)(void *arg, const struct serve_sandbox *sb), void *arg, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->starts++;
	snprintf(f->started_from, sizeof(f->started_from), "%s", tp->dir);
	struct stat st;
	cr_assert_eq(stat(sb->dir, &st), 0, "the run directory exists before the start");
	cr_assert(strstr(sb->vsock, sb->id), "the vsock path is the sandbox's own: %s", sb->vsock);
	if (f->fail_launch) {
		int rc = f->fail_launch;
		f->fail_launch = 0;
		snprintf(err, errlen, "fake launch failed");
		return rc;
	}
	sb->pid = f->next_pid++;
	sb->start_time = 1000 + (unsigned long long)sb->pid;
	int lrc = launched(arg, sb);
	if (lrc)
		return snprintf(err, errlen, "launched: %d", lrc), lrc;
	f->launched_id = sb->id;
	if (f->hook)
		f->hook_rc = f->hook(f);
	if (f->fail) {
		int rc = f->fail;
		f->fail = 0;
		snprintf(err, errlen, "fake start failed");
		return rc;
	}
	return 0;
}

static void f_stop(void *ctx, const struct serve_sandbox *sb)
{
	struct fake *f = ctx;
	if (f->real_procs)
		proc_stop(sb->pid, -1, sb->start_time, 5000);
	if (f->stops < 16)
		f->stopped[f->stops] = sb->pid;
	f->stops++;
}

/* As the real one: the snapshot's files in snapdir, then the process gone. */
static int f_pause(void *ctx, const struct serve_sandbox *sb, const char *snapdir, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->pauses++;
	struct stat st;
	cr_assert_eq(stat(snapdir, &st), 0, "the snapshot directory exists before the pause");
	cr_assert(strstr(snapdir, sb->id), "the snapshot is the sandbox's own: %s", snapdir);
	if (f->fail_pause) {
		int rc = f->fail_pause;
		f->fail_pause = 0;
		snprintf(err, errlen, "fake pause failed");
		return rc;
	}
	char p[512];
	snprintf(p, sizeof(p), "%s/state", snapdir);
	fclose(fopen(p, "w"));
	snprintf(p, sizeof(p), "%s/mem", snapdir);
	fclose(fopen(p, "w"));
	if (f->real_procs)
		proc_stop(sb->pid, -1, sb->start_time, 5000);
	return 0;
}

static int f_hold(void *ctx, const struct serve_sandbox *sb, bool paused, char *err, size_t errlen)
{
	struct fake *f = ctx;
	if (f->fail_hold) {
		int rc = f->fail_hold;
		f->fail_hold = 0;
		snprintf(err, errlen, "fake hold failed");
		return rc;
	}
	if (paused)
		f->holds++;
	else
		f->releases++;
	return 0;
}

static bool f_alive(void *ctx, const struct serve_sandbox *sb)
{
	struct fake *f = ctx;
	if (f->real_procs)
		return proc_alive(sb->pid, sb->start_time);
	for (int i = 0; i < f->ndead; i++)
		if (f->dead[i] == sb->pid)
			return false;
	return true;
}

static double f_now(void *ctx)
{
	return ((struct fake *)ctx)->now;
}

/* the tables have the first two; "late" is added by serve_table_templates_grown in one test */
static struct serve_template tmpls[3] = {
	{ .name = "base", .dir = "/nonexistent/base", .mem_bytes = 256ull << 20, .cpus = 1 },
	{ .name = "big", .dir = "/nonexistent/big", .mem_bytes = 1024ull << 20, .cpus = 2 },
	{ .name = "late", .dir = "/nonexistent/late", .mem_bytes = 128ull << 20, .cpus = 1 },
};

static char dir[64];
static struct fake F;
static struct serve_table T;

static void table_up(unsigned max_sb, uint64_t max_mem)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-serve-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	memset(&F, 0, sizeof(F));
	F.next_pid = 4242;
	F.now = 1000.0;
	F.t = &T;
	struct serve_spawner sp = { .ctx = &F, .start = f_start, .stop = f_stop, .pause = f_pause, .hold = f_hold,
				    .alive = f_alive };
	struct serve_clock clk = { .ctx = &F, .now = f_now };
	struct serve_limits lim = { .max_sandboxes = max_sb, .max_mem = max_mem };
	char err[256];
	cr_assert_eq(serve_table_init(&T, dir, &lim, tmpls, 2, &sp, &clk, err, sizeof(err)), 0, "%s", err);
}

static void table_down(void)
{
	serve_table_free(&T);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static bool exists(const char *fmt, const char *id)
{
	char p[256];
	snprintf(p, sizeof(p), fmt, dir, id);
	return access(p, F_OK) == 0;
}

static int create(const char *tmpl, long timeout, struct serve_sandbox *out, char *err, size_t errlen)
{
	return serve_create(&T, tmpl, timeout, NULL, NULL, out, err, errlen);
}

static size_t count_listed(void)
{
	struct serve_sandbox *a;
	size_t n;
	cr_assert_eq(serve_list(&T, &a, &n), 0);
	for (size_t i = 0; i < n; i++)
		serve_sandbox_put(&a[i]);
	free(a);
	return n;
}

TestSuite(serve_table, .init = NULL, .fini = NULL);

Test(serve_table, create_get_list_kill_and_the_files)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a, b;
	json_t *md = json_pack("{s:s}", "user", "abc");
	json_t *env = json_pack("{s:s}", "FOO", "bar");
	cr_assert_eq(serve_create(&T, "base", 30, md, env, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(create("big", 60, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.starts, 2);
	cr_assert_eq(strlen(a.id), SERVE_ID_LEN);
	cr_assert_str_neq(a.id, b.id);
	cr_assert_eq(a.pid, 4242);
	cr_assert_eq(a.deadline, 1030.0);
	cr_assert_eq(a.mem_bytes, 256ull << 20);
	cr_assert_eq(count_listed(), 2);

	/* the record: what a restarted daemon needs */
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, a.id);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	json_error_t je;
	json_t *rec = json_load_file(p, 0, &je);
	cr_assert_not_null(rec, "%s", je.text);
	cr_assert_eq(json_integer_value(json_object_get(rec, "pid")), 4242);
	cr_assert_eq(json_integer_value(json_object_get(rec, "startTime")), 1000 + 4242);
	cr_assert_str_eq(json_string_value(json_object_get(rec, "template")), "base");
	cr_assert_eq(json_real_value(json_object_get(rec, "deadline")), 1030.0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "metadata"), "user")), "abc");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "envVars"), "FOO")), "bar");
	cr_assert(strstr(json_string_value(json_object_get(rec, "vsock")), a.id));
	json_decref(rec);

	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, a.id, &g), 0);
	cr_assert_str_eq(g.tmpl, "base");
	cr_assert_str_eq(json_string_value(json_object_get(g.metadata, "user")), "abc");
	serve_sandbox_put(&g);

	cr_assert_eq(serve_kill(&T, a.id), 0);
	cr_assert_eq(F.stops, 1);
	cr_assert_eq(F.stopped[0], 4242);
	cr_assert_not(exists("%s/sandboxes/%s.json", a.id));
	cr_assert_not(exists("%s/run/%s", a.id));
	cr_assert_eq(serve_get(&T, a.id, &g), -ENOENT);
	cr_assert_eq(serve_kill(&T, a.id), -ENOENT, "killed twice");
	cr_assert_eq(F.stops, 1);
	cr_assert_eq(count_listed(), 1);
	cr_assert(exists("%s/sandboxes/%s.json", b.id));
	json_decref(md);
	json_decref(env);
	serve_sandbox_put(&a);
	serve_sandbox_put(&b);
	table_down();
}

Test(serve_table, max_sandboxes_refused_before_any_start)
{
	table_up(2, 0);
	char err[256];
	struct serve_sandbox a, b, c;
	cr_assert_eq(create("base", 30, &a, err, sizeof(err)), 0);
	cr_assert_eq(create("base", 30, &b, err, sizeof(err)), 0);
	cr_assert_eq(create("base", 30, &c, err, sizeof(err)), -EUSERS);
	cr_assert(strstr(err, "--max-sandboxes"), "%s", err);
	cr_assert_eq(F.starts, 2, "the refused create started nothing");
	cr_assert_eq(serve_kill(&T, a.id), 0);
	cr_assert_eq(create("base", 30, &c, err, sizeof(err)), 0, "a freed slot is usable: %s", err);
	serve_sandbox_put(&a);
	serve_sandbox_put(&b);
	serve_sandbox_put(&c);
	table_down();
}

Test(serve_table, max_mem_is_the_sum_of_guest_ram)
{
	table_up(8, 1300ull << 20);
	char err[256];
	struct serve_sandbox a, b, c;
	cr_assert_eq(create("big", 30, &a, err, sizeof(err)), 0);
	cr_assert_eq(create("base", 30, &b, err, sizeof(err)), 0, "1024 + 256 <= 1300");
	cr_assert_eq(create("base", 30, &c, err, sizeof(err)), -ENOMEM, "1280 + 256 > 1300");
	cr_assert(strstr(err, "--max-mem") && strstr(err, "1280"), "%s", err);
	cr_assert_eq(F.starts, 2);
	cr_assert_eq(serve_kill(&T, a.id), 0);
	cr_assert_eq(create("base", 30, &c, err, sizeof(err)), 0, "%s", err);
	serve_sandbox_put(&a);
	serve_sandbox_put(&b);
	serve_sandbox_put(&c);
	table_down();
}

Test(serve_table, unknown_template_and_bad_timeouts)
{
	table_up(2, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("nope", 30, &a, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "'nope'"), "%s", err);
	cr_assert_eq(create("base", 0, &a, err, sizeof(err)), -EINVAL);
	cr_assert_eq(create("base", SERVE_TIMEOUT_MAX + 1, &a, err, sizeof(err)), -EINVAL);
	cr_assert_eq(create("base", -5, &a, err, sizeof(err)), -EINVAL);
	cr_assert_eq(F.starts, 0);
	cr_assert_eq(count_listed(), 0);
	table_down();
}

Test(serve_table, a_failed_start_leaves_nothing)
{
	table_up(1, 0);
	char err[256];
	struct serve_sandbox a;
	F.fail = -EIO;
	cr_assert_eq(create("base", 30, &a, err, sizeof(err)), -EIO);
	cr_assert_str_eq(err, "fake start failed");
	cr_assert_eq(count_listed(), 0);
	/* no record, no run directory, and the slot is free again */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test -z \"$(find %s/sandboxes %s/run -mindepth 1)\"", dir, dir);
	cr_assert_eq(system(cmd), 0, "files left behind");
	F.fail_launch = -EAGAIN;
	cr_assert_eq(create("base", 30, &a, err, sizeof(err)), -EAGAIN);
	cr_assert_eq(system(cmd), 0, "files left behind by a failed launch");
	cr_assert_eq(create("base", 30, &a, err, sizeof(err)), 0, "%s", err);
	serve_sandbox_put(&a);
	table_down();
}

/* Inside a start (the lock not held): the sandbox being made is not listed, but counts for the limits. */
static int hook_while_creating(struct fake *f)
{
	f->hook = NULL;
	if (count_listed() != 0)
		return 1;
	/* the process is recorded before the wait for its agent, marked creating */
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, f->launched_id);
	json_error_t je;
	json_t *rec = json_load_file(p, 0, &je);
	bool creating = rec && json_is_true(json_object_get(rec, "creating"));
	json_decref(rec);
	if (!creating)
		return 3;
	struct serve_sandbox b;
	char err[256];
	if (serve_create(f->t, "base", 30, NULL, NULL, &b, err, sizeof(err)) != -EUSERS)
		return 2;
	return 0;
}

Test(serve_table, a_sandbox_being_created_holds_its_slot)
{
	table_up(1, 0);
	char err[256];
	struct serve_sandbox a;
	F.hook = hook_while_creating;
	F.hook_rc = -1;
	cr_assert_eq(create("base", 30, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.hook_rc, 0, "hook step %d failed", F.hook_rc);
	cr_assert_eq(count_listed(), 1);
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, a.id);
	json_error_t je;
	json_t *rec = json_load_file(p, 0, &je);
	cr_assert(rec && json_is_false(json_object_get(rec, "creating")), "running once the start returned");
	json_decref(rec);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_table, timeout_ends_the_sandbox_at_its_deadline)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a, b;
	cr_assert_eq(create("base", 10, &a, err, sizeof(err)), 0);
	cr_assert_eq(create("base", 100, &b, err, sizeof(err)), 0);
	F.now = 1009.9;
	cr_assert_eq(serve_tick(&T), 0);
	cr_assert_eq(F.stops, 0);
	F.now = 1010.0;
	cr_assert_eq(serve_tick(&T), 1);
	cr_assert_eq(F.stops, 1);
	cr_assert_eq(F.stopped[0], a.pid);
	cr_assert_not(exists("%s/sandboxes/%s.json", a.id));
	cr_assert_not(exists("%s/run/%s", a.id));
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, a.id, &g), -ENOENT);
	cr_assert_eq(serve_get(&T, b.id, &g), 0);
	serve_sandbox_put(&g);
	cr_assert_eq(serve_tick(&T), 0, "an ended sandbox is not ended twice");
	serve_sandbox_put(&a);
	serve_sandbox_put(&b);
	table_down();
}

Test(serve_table, set_timeout_moves_the_deadline_from_now)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 10, &a, err, sizeof(err)), 0);
	F.now = 1005.0;
	cr_assert_eq(serve_set_timeout(&T, a.id, 60), 0);
	F.now = 1064.0;
	cr_assert_eq(serve_tick(&T), 0, "extended past its first deadline");
	/* the record has the new deadline: a restarted daemon enforces it */
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, a.id);
	json_error_t je;
	json_t *rec = json_load_file(p, 0, &je);
	cr_assert_not_null(rec);
	cr_assert_eq(json_real_value(json_object_get(rec, "deadline")), 1065.0);
	json_decref(rec);
	/* shortened too: setTimeout sets, it does not only extend */
	cr_assert_eq(serve_set_timeout(&T, a.id, 1), 0);
	F.now = 1065.0;
	cr_assert_eq(serve_tick(&T), 1);
	cr_assert_eq(serve_set_timeout(&T, a.id, 30), -ENOENT);
	cr_assert_eq(serve_set_timeout(&T, "0123456789abcdef0123", 30), -ENOENT);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_table, set_timeout_out_of_range)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 10, &a, err, sizeof(err)), 0);
	cr_assert_eq(serve_set_timeout(&T, a.id, 0), -EINVAL);
	cr_assert_eq(serve_set_timeout(&T, a.id, SERVE_TIMEOUT_MAX + 1), -EINVAL);
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, a.id, &g), 0);
	cr_assert_eq(g.deadline, 1010.0, "unchanged");
	serve_sandbox_put(&g);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_table, a_sandbox_whose_process_died_is_forgotten_without_a_signal)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0);
	F.dead[F.ndead++] = a.pid;
	cr_assert_eq(serve_tick(&T), 1);
	cr_assert_eq(F.stops, 0, "a dead process is not signalled (its pid may be another's now)");
	cr_assert_not(exists("%s/sandboxes/%s.json", a.id));
	cr_assert_eq(count_listed(), 0);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_table, a_state_dir_too_long_for_vsock_paths)
{
	char long_dir[200];
	memset(long_dir, 'a', sizeof(long_dir) - 1);
	long_dir[0] = '/';
	long_dir[sizeof(long_dir) - 1] = '\0';
	struct serve_spawner sp = { .ctx = &F, .start = f_start, .stop = f_stop, .pause = f_pause, .hold = f_hold,
				    .alive = f_alive };
	struct serve_clock clk = { .ctx = &F, .now = f_now };
	struct serve_limits lim = { .max_sandboxes = 1 };
	struct serve_table t;
	char err[256];
	cr_assert_eq(serve_table_init(&t, long_dir, &lim, tmpls, 2, &sp, &clk, err, sizeof(err)), -ENAMETOOLONG);
	cr_assert(strstr(err, "--state-dir"), "%s", err);
}

/* ---- re-adoption: real processes, so the pid + start time check is the real one -------------- */

static pid_t child_sleeping(void)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execlp("sleep", "sleep", "60", (char *)NULL);
		_exit(127);
	}
	/* until it is sleep (exec done), its start time is already final: it is the fork's */
	return pid;
}

static void write_record(const char *id, pid_t pid, unsigned long long start, const char *extra)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, id);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fprintf(f, "{\"id\":\"%s\",\"pid\":%d,\"startTime\":%llu,\"template\":\"base\",\"startedAt\":1000.0,"
		"\"deadline\":2000.0,\"memBytes\":268435456,\"cpus\":1,\"metadata\":{\"k\":\"v\"},\"envVars\":{},"
		"\"vsock\":\"/somewhere/else\"%s}", id, (int)pid, start, extra);
	fclose(f);
	snprintf(p, sizeof(p), "%s/run/%s", dir, id);
	mkdir(p, 0700);
}

Test(serve_table, readoption_keeps_the_live_and_removes_the_rest)
{
	table_up(4, 0);
	F.real_procs = true;
	pid_t live = child_sleeping(), other = child_sleeping();
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	unsigned long long live_start, other_start;
	cr_assert_eq(proc_start_time(live, &live_start), 0);
	cr_assert_eq(proc_start_time(other, &other_start), 0);
	const char *id_live = "aaaaaaaaaaaaaaaaaaaa", *id_dead = "bbbbbbbbbbbbbbbbbbbb",
		   *id_reused = "cccccccccccccccccccc", *id_bad = "dddddddddddddddddddd";
	write_record(id_live, live, live_start, "");
	write_record(id_dead, dead, 12345, "");
	/* a live pid with another start time: the pid was reused, this is not our sandbox */
	write_record(id_reused, other, other_start + 1, "");
	/* a daemon that died while this one started: live, but nobody got its id; ended */
	pid_t half = child_sleeping();
	unsigned long long half_start;
	cr_assert_eq(proc_start_time(half, &half_start), 0);
	const char *id_half = "ffffffffffffffffffff";
	write_record(id_half, half, half_start, ",\"creating\":true");
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, id_bad);
	FILE *f = fopen(p, "w");
	fputs("{\"id\": 12", f);
	fclose(f);
	/* what a daemon killed while writing a record leaves */
	snprintf(p, sizeof(p), "%s/sandboxes/eeeeeeeeeeeeeeeeeeee.json.tmp", dir);
	fclose(fopen(p, "w"));

	unsigned adopted, removed;
	char err[256];
	cr_assert_eq(serve_adopt(&T, &adopted, &removed, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(adopted, 1);
	cr_assert_eq(removed, 4, "dead, reused pid, half-created, malformed (the temporary file is not counted)");
	cr_assert_eq(F.stops, 1, "only the half-created one was signalled: the dead and the reused pid are not ours");
	cr_assert_eq(F.stopped[0], half);
	cr_assert_not(proc_alive(half, half_start), "the half-created sandbox was ended");
	cr_assert_not(exists("%s/sandboxes/%s.json", id_half));
	cr_assert(proc_alive(other, other_start), "the process with the reused pid was left alone");
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, id_live, &g), 0);
	cr_assert_eq(g.pid, live);
	cr_assert_eq(g.deadline, 2000.0);
	cr_assert_str_eq(json_string_value(json_object_get(g.metadata, "k")), "v");
	cr_assert(strstr(g.vsock, dir) && strstr(g.vsock, id_live), "the vsock path is recomputed, not the record's: %s",
		  g.vsock);
	serve_sandbox_put(&g);
	cr_assert(exists("%s/sandboxes/%s.json", id_live));
	cr_assert_not(exists("%s/sandboxes/%s.json", id_dead));
	cr_assert_not(exists("%s/run/%s", id_dead));
	cr_assert_not(exists("%s/sandboxes/%s.json", id_reused));
	cr_assert_not(exists("%s/sandboxes/%s.json", id_bad));
	cr_assert_not(exists("%s/sandboxes/%s", "eeeeeeeeeeeeeeeeeeee.json.tmp"));

	/* the adopted one is ended like any other: its deadline passed */
	F.now = 2000.0;
	cr_assert_eq(serve_tick(&T), 1);
	cr_assert_eq(F.stops, 2);
	int st;
	cr_assert_eq(waitpid(live, &st, WNOHANG), -1, "proc_stop reaped our child already");
	cr_assert_not(proc_alive(live, live_start));
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	table_down();
}

Test(serve_table, readoption_past_max_sandboxes_ends_the_extra)
{
	table_up(1, 0);
	F.real_procs = true;
	pid_t a = child_sleeping(), b = child_sleeping();
	unsigned long long sa, sb;
	cr_assert_eq(proc_start_time(a, &sa), 0);
	cr_assert_eq(proc_start_time(b, &sb), 0);
	write_record("aaaaaaaaaaaaaaaaaaaa", a, sa, "");
	write_record("bbbbbbbbbbbbbbbbbbbb", b, sb, "");
	unsigned adopted, removed;
	char err[256];
	cr_assert_eq(serve_adopt(&T, &adopted, &removed, err, sizeof(err)), 0);
	cr_assert_eq(adopted, 1);
	cr_assert_eq(removed, 1);
	cr_assert_eq(F.stops, 1);
	cr_assert_eq(proc_alive(a, sa) + proc_alive(b, sb), 1, "one runs on, one was ended");
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	waitpid(a, NULL, 0);
	waitpid(b, NULL, 0);
	table_down();
}

/* ---- the REST API ----------------------------------------------------------------------------- */

static struct serve_reply call(const char *method, const char *path, const char *key, const char *body)
{
	struct serve_request rq = { .method = method, .path = path, .api_key = key, .body = body,
				    .len = body ? strlen(body) : 0 };
	struct serve_reply rp;
	serve_api_handle(&T, keys1(), &rq, &rp);
	return rp;
}

/* The reply's JSON (the caller frees it), checked to be E2B's Error when status >= 400. */
static json_t *reply_json(struct serve_reply *rp, unsigned want)
{
	cr_assert_eq(rp->status, want, "status %u, want %u: %s", rp->status, want, rp->body ? rp->body : "(no body)");
	if (want == 204) {
		cr_assert_null(rp->body);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loads(rp->body, 0, &je);
	cr_assert_not_null(j, "not JSON: %s", rp->body);
	free(rp->body);
	if (want >= 400) {
		cr_assert_eq(json_integer_value(json_object_get(j, "code")), want);
		cr_assert(json_is_string(json_object_get(j, "message")));
	}
	return j;
}

static void expect(const char *method, const char *path, const char *key, const char *body, unsigned want,
		   const char *in_message)
{
	struct serve_reply rp = call(method, path, key, body);
	json_t *j = reply_json(&rp, want);
	if (in_message) {
		const char *m = json_string_value(json_object_get(j, "message"));
		cr_assert(m && strstr(m, in_message), "%s %s '%s': message '%s' lacks '%s'", method, path,
			  body ? body : "", m, in_message);
	}
	json_decref(j);
}

Test(serve_api, the_key_is_required_and_compared)
{
	table_up(2, 0);
	expect("GET", "/sandboxes", NULL, NULL, 401, "X-API-Key");
	expect("GET", "/sandboxes", "wrong", NULL, 401, "invalid");
	expect("GET", "/sandboxes", KEY "x", NULL, 401, NULL);
	char shorter[] = KEY;
	shorter[strlen(shorter) - 1] = '\0';
	expect("GET", "/sandboxes", shorter, NULL, 401, NULL);
	expect("GET", "/sandboxes", "", NULL, 401, NULL);
	/* a wrong key is refused before anything else is looked at */
	expect("POST", "/sandboxes", "wrong", "{\"templateID\":\"base\"}", 401, NULL);
	expect("GET", "/nowhere", NULL, NULL, 401, NULL);
	cr_assert_eq(F.starts, 0);
	struct serve_reply rp = call("GET", "/sandboxes", KEY, NULL);
	json_t *j = reply_json(&rp, 200);
	cr_assert(json_is_array(j) && json_array_size(j) == 0);
	json_decref(j);
	table_down();
}

Test(serve_api, create_bodies_malformed_or_wrong_typed)
{
	table_up(2, 0);
	expect("POST", "/sandboxes", KEY, "", 400, "malformed JSON");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":", 400, "malformed JSON");
	expect("POST", "/sandboxes", KEY, "[\"base\"]", 400, "JSON object");
	expect("POST", "/sandboxes", KEY, "\"base\"", 400, NULL);
	expect("POST", "/sandboxes", KEY, "{}", 400, "'templateID' is required");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":7}", 400, "'templateID' must be a string");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"templateID\":\"big\"}", 400, "malformed JSON");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":\"30\"}", 400, "'timeout' must be an integer");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":1.5}", 400, "'timeout' must be an integer");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":0}", 400, "1 to 86400");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":86401}", 400, "1 to 86400");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":99999999999999999}", 400, NULL);
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"metadata\":[]}", 400, "'metadata' must be an object");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"metadata\":{\"a\":1}}", 400, "'metadata' must map");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"envVars\":\"A=1\"}", 400, "'envVars' must be an object");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"envVars\":{\"A\":null}}", 400, "'envVars' must map");
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"nope\"}", 400, "template 'nope' not found");
	cr_assert_eq(F.starts, 0, "no invalid request started anything");
	table_down();
}

Test(serve_api, oversized_bodies_are_413)
{
	table_up(2, 0);
	struct serve_request rq = { .method = "POST", .path = "/sandboxes", .api_key = KEY, .body = "{}",
				    .len = SERVE_BODY_MAX + 1 };
	struct serve_reply rp;
	serve_api_handle(&T, keys1(), &rq, &rp);
	json_decref(reply_json(&rp, 413));
	rq.len = 2;
	rq.overflow = true;
	serve_api_handle(&T, keys1(), &rq, &rp);
	json_decref(reply_json(&rp, 413));
	cr_assert_eq(F.starts, 0);
	table_down();
}

Test(serve_api, create_get_list_timeout_delete_in_e2b_shapes)
{
	table_up(2, 0);
	/* fields E2B's SDKs send that padcell does not use yet are ignored, not refused */
	struct serve_reply rp = call("POST", "/sandboxes", KEY,
				     "{\"templateID\":\"base\",\"timeout\":300,\"metadata\":{\"user\":\"abc\"},"
				     "\"envVars\":{\"FOO\":\"bar\"},\"autoPause\":false,\"secure\":true}");
	json_t *j = reply_json(&rp, 201);
	const char *id = json_string_value(json_object_get(j, "sandboxID"));
	cr_assert(id && strlen(id) == SERVE_ID_LEN);
	cr_assert_str_eq(json_string_value(json_object_get(j, "templateID")), "base");
	cr_assert(json_is_string(json_object_get(j, "clientID")));
	cr_assert(json_is_string(json_object_get(j, "envdVersion")));
	char sid[SERVE_ID_LEN + 1], path[64];
	snprintf(sid, sizeof(sid), "%s", id);
	json_decref(j);

	snprintf(path, sizeof(path), "/sandboxes/%s", sid);
	rp = call("GET", path, KEY, NULL);
	j = reply_json(&rp, 200);
	cr_assert_str_eq(json_string_value(json_object_get(j, "sandboxID")), sid);
	cr_assert_str_eq(json_string_value(json_object_get(j, "templateID")), "base");
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "running");
	cr_assert_eq(json_integer_value(json_object_get(j, "cpuCount")), 1);
	cr_assert_eq(json_integer_value(json_object_get(j, "memoryMB")), 256);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "metadata"), "user")), "abc");
	/* the clock said 1000 s after the epoch: RFC 3339 in UTC */
	cr_assert_str_eq(json_string_value(json_object_get(j, "startedAt")), "1970-01-01T00:16:40.000Z");
	cr_assert_str_eq(json_string_value(json_object_get(j, "endAt")), "1970-01-01T00:21:40.000Z");
	cr_assert_null(json_object_get(j, "envVars"), "env vars are not shown back");
	json_decref(j);

	rp = call("GET", "/sandboxes", KEY, NULL);
	j = reply_json(&rp, 200);
	cr_assert_eq(json_array_size(j), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "sandboxID")), sid);
	json_decref(j);

	char tpath[80];
	snprintf(tpath, sizeof(tpath), "/sandboxes/%s/timeout", sid);
	expect("POST", tpath, KEY, "{\"timeout\":60}", 204, NULL);
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, sid, &g), 0);
	cr_assert_eq(g.deadline, 1060.0);
	serve_sandbox_put(&g);
	expect("POST", tpath, KEY, "{}", 400, "'timeout' is required");
	expect("POST", tpath, KEY, "{\"timeout\":\"60\"}", 400, "must be an integer");
	expect("POST", tpath, KEY, "nope", 400, "malformed JSON");
	expect("GET", tpath, KEY, NULL, 405, NULL);
	snprintf(tpath, sizeof(tpath), "/sandboxes/%s/refreshes", sid);
	expect("POST", tpath, KEY, "{\"duration\":120}", 204, NULL);
	cr_assert_eq(serve_get(&T, sid, &g), 0);
	cr_assert_eq(g.deadline, 1120.0);
	serve_sandbox_put(&g);
	expect("POST", tpath, KEY, NULL, 204, NULL);

	expect("PUT", path, KEY, NULL, 405, NULL);
	expect("DELETE", path, KEY, NULL, 204, NULL);
	cr_assert_eq(F.stops, 1);
	expect("DELETE", path, KEY, NULL, 404, "not found");
	expect("GET", path, KEY, NULL, 404, "not found");
	snprintf(tpath, sizeof(tpath), "/sandboxes/%s/timeout", sid);
	expect("POST", tpath, KEY, "{\"timeout\":60}", 404, "not found");
	expect("GET", "/sandboxes/0123456789abcdef0123456789", KEY, NULL, 404, NULL);
	expect("GET", "/sandboxes/", KEY, NULL, 200, NULL);
	expect("GET", "/templates", KEY, NULL, 404, "no such endpoint");
	expect("PATCH", "/sandboxes", KEY, NULL, 405, NULL);
	table_down();
}

Test(serve_api, limits_answer_429_and_start_failures_500)
{
	table_up(1, 0);
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\"}", 201, NULL);
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\"}", 429, "--max-sandboxes");
	serve_table_free(&T);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	table_up(2, 0);
	F.fail = -EIO;
	expect("POST", "/sandboxes", KEY, "{\"templateID\":\"base\"}", 500, "fake start failed");
	table_down();
}

Test(serve_api, key_file_made_once_0600_then_read_back)
{
	char d[] = "/tmp/padcell-serve-key.XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	char k1[SERVE_KEY_MAX], k2[SERVE_KEY_MAX], err[256];
	bool created;
	cr_assert_eq(serve_key_load(d, k1, sizeof(k1), &created, err, sizeof(err)), 0, "%s", err);
	cr_assert(created);
	cr_assert_eq(strlen(k1), 44, "e2b_ and 40 hex digits: %s", k1);
	cr_assert_eq(strncmp(k1, "e2b_", 4), 0, "E2B's form, which its JS SDK checks: %s", k1);
	cr_assert_eq(strspn(k1 + 4, "0123456789abcdef"), 40, "%s", k1);
	char p[128];
	snprintf(p, sizeof(p), "%s/api-key", d);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(serve_key_load(d, k2, sizeof(k2), &created, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(created);
	cr_assert_str_eq(k1, k2);
	/* a key others can read is not used */
	chmod(p, 0644);
	cr_assert_eq(serve_key_load(d, k2, sizeof(k2), &created, err, sizeof(err)), -EPERM);
	cr_assert(strstr(err, "0600"), "%s", err);
	unlink(p);
	rmdir(d);
}

/* ---- the command line's values ---------------------------------------------------------------- */

Test(serve_cli, listen_addresses)
{
	struct sockaddr_in a;
	cr_assert_eq(serve_parse_listen("127.0.0.1:3000", &a), 0);
	cr_assert_eq(ntohs(a.sin_port), 3000);
	cr_assert_eq(ntohl(a.sin_addr.s_addr), INADDR_LOOPBACK);
	cr_assert_eq(serve_parse_listen("0.0.0.0:0", &a), 0);
	const char *bad[] = { "3000", ":3000", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "localhost:3000",
			      "127.0.0.1:30x", "::1:3000", "127.0.0.1:+5" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(serve_parse_listen(bad[i], &a), -EINVAL, "%s", bad[i]);
}

Test(serve_cli, templates)
{
	char d[] = "/tmp/padcell-serve-tpl.XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	struct serve_template t;
	char why[512], arg[128];
	snprintf(arg, sizeof(arg), "base=%s", d);
	cr_assert_eq(serve_template_parse(arg, &t, why, sizeof(why)), -ENOENT, "no state file");
	cr_assert(strstr(why, "state"), "%s", why);
	char p[128];
	snprintf(p, sizeof(p), "%s/state", d);
	FILE *f = fopen(p, "w");
	fputs("not a snapshot at all, but long enough to fill a whole header of one hundred and twenty bytes.....", f);
	fclose(f);
	cr_assert_eq(serve_template_parse(arg, &t, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "not a padcell snapshot"), "%s", why);
	struct snap_header h = { .version = SNAP_VERSION, .header_size = sizeof(h), .mem_size = 512ull << 20, .ncpus = 2 };
	memcpy(h.magic, SNAP_MAGIC, sizeof(h.magic));
	f = fopen(p, "w");
	fwrite(&h, sizeof(h), 1, f);
	fclose(f);
	cr_assert_eq(serve_template_parse(arg, &t, why, sizeof(why)), -ENOENT, "no mem file: %s", why);
	snprintf(p, sizeof(p), "%s/mem", d);
	fclose(fopen(p, "w"));
	cr_assert_eq(serve_template_parse(arg, &t, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(t.name, "base");
	cr_assert_str_eq(t.dir, d);
	cr_assert_eq(t.mem_bytes, 512ull << 20);
	cr_assert_eq(t.cpus, 2);
	const char *bad[] = { "base", "=dir", "base=", "a b=/tmp", "a/b=/tmp", "x=/nonexistent/dir" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_lt(serve_template_parse(bad[i], &t, why, sizeof(why)), 0, "%s", bad[i]);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	cr_assert_eq(system(cmd), 0);
}

/* A fake template directory tdir/name: a snapshot header of mem MiB and cpus, and a mem file (want_mem). */
static void fake_template(const char *tdir, const char *name, unsigned mib, unsigned cpus, bool want_mem)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", tdir, name);
	cr_assert_eq(mkdir(p, 0755), 0, "%s", p);
	snprintf(p, sizeof(p), "%s/%s/state", tdir, name);
	struct snap_header h = { .version = SNAP_VERSION, .header_size = sizeof(h), .mem_size = (uint64_t)mib << 20,
				 .ncpus = cpus };
	memcpy(h.magic, SNAP_MAGIC, sizeof(h.magic));
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fwrite(&h, sizeof(h), 1, f);
	fclose(f);
	if (want_mem) {
		snprintf(p, sizeof(p), "%s/%s/mem", tdir, name);
		fclose(fopen(p, "w"));
	}
}

struct skipped {
	unsigned n;
	char last[512];
};
static void note_skip(void *arg, const char *line)
{
	struct skipped *s = arg;
	s->n++;
	snprintf(s->last, sizeof(s->last), "%s", line);
}

/* The templates directory template build fills: by name, in order; builds under way, broken ones and names given already left out. */
Test(serve_cli, templates_directory_scan)
{
	char d[] = "/tmp/padcell-serve-tpls.XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	struct serve_template t[4];
	size_t n = 0;
	struct skipped sk = { 0 };
	char why[512], p[256];
	snprintf(p, sizeof(p), "%s/none", d);
	cr_assert_eq(serve_templates_scan(p, t, &n, 4, note_skip, &sk, why, sizeof(why)), -ENOENT);
	cr_assert_eq(n, 0);
	fake_template(d, "py", 128, 1, true);
	fake_template(d, "base", 256, 2, true);
	fake_template(d, ".py.Ab12Cd", 64, 1, true);   /* a build under way: never looked at */
	fake_template(d, "half", 64, 1, false);        /* no mem: skipped, said */
	snprintf(p, sizeof(p), "%s/bad name", d);
	cr_assert_eq(mkdir(p, 0755), 0);
	/* an explicit --template base=... given first wins over the directory's base */
	snprintf(t[0].name, sizeof(t[0].name), "base");
	t[0].mem_bytes = 1;
	n = 1;
	cr_assert_eq(serve_templates_scan(d, t, &n, 4, note_skip, &sk, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 2, "taken: %zu", n);
	cr_assert_eq(t[0].mem_bytes, 1, "the explicit base kept");
	cr_assert_str_eq(t[1].name, "py");
	cr_assert_eq(t[1].mem_bytes, 128ull << 20);
	cr_assert_eq(t[1].cpus, 1);
	snprintf(p, sizeof(p), "%s/py", d);
	cr_assert_str_eq(t[1].dir, p);
	cr_assert_eq(sk.n, 2, "skipped %u (last: %s)", sk.n, sk.last);
	/* more templates than room: refused, not cut silently */
	n = 0;
	cr_assert_eq(serve_templates_scan(d, t, &n, 1, note_skip, &sk, why, sizeof(why)), -E2BIG);
	cr_assert(strstr(why, "more than 1"), "%s", why);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	cr_assert_eq(system(cmd), 0);
}

/* ---- per-key scoping (--api-keys) ---------------------------------------------------------------- */

#define KEY_A "e2b_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "e2b_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static struct serve_reply call_keys(const struct serve_keys *ks, const char *method, const char *path, const char *key,
				    const char *body)
{
	struct serve_request rq = { .method = method, .path = path, .api_key = key, .body = body,
				    .len = body ? strlen(body) : 0 };
	struct serve_reply rp;
	serve_api_handle(&T, ks, &rq, &rp);
	return rp;
}

static unsigned status_keys(const struct serve_keys *ks, const char *method, const char *path, const char *key,
			    const char *body, char **out)
{
	struct serve_reply rp = call_keys(ks, method, path, key, body);
	if (out)
		*out = rp.body;
	else
		free(rp.body);
	return rp.status;
}

/* Writes text to a fresh file in dir with mode; its path in out. */
static void keys_file(const char *text, mode_t mode, char *out, size_t len)
{
	snprintf(out, len, "%s/keys", dir);
	unlink(out);
	int fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	cr_assert_eq(chmod(out, mode), 0);
}

Test(serve_keys, the_keys_file_parsed_and_checked)
{
	table_up(2, 0);
	char p[256], err[512];
	struct serve_keys ks;
	keys_file("# two clients\n\nalice " KEY_A "\nbob " KEY_B "\n", 0600, p, sizeof(p));
	cr_assert_eq(serve_keys_load(p, &ks, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ks.n, 2);
	cr_assert_str_eq(ks.k[0].name, "alice");
	cr_assert_str_eq(ks.k[1].key, KEY_B);
	cr_assert_eq(serve_keys_find(&ks, KEY_B), &ks.k[1]);
	cr_assert_null(serve_keys_find(&ks, "e2b_cccccccccccccccccccccccccccccccccccccccc"));
	cr_assert_null(serve_keys_find(&ks, NULL));
	cr_assert_null(serve_keys_find(&ks, KEY_A "x"), "a longer key is another key");
	keys_file("alice " KEY_A "\n", 0644, p, sizeof(p));
	cr_assert_eq(serve_keys_load(p, &ks, err, sizeof(err)), -EPERM, "a file others can read");
	cr_assert(strstr(err, "0600"), "%s", err);
	const char *bad[] = {
		"alice\n", "alice short\n", "al/ice " KEY_A "\n", " " KEY_A "\n",
		"alice " KEY_A "\nalice " KEY_B "\n", "alice " KEY_A "\nbob " KEY_A "\n", "# none\n",
		"alice e2b_aaaaaaaa\taaaaaaaaaaaaaaaa\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		keys_file(bad[i], 0600, p, sizeof(p));
		cr_assert_eq(serve_keys_load(p, &ks, err, sizeof(err)), -EINVAL, "accepted: %s", bad[i]);
		cr_assert(strstr(err, p), "the file is named: %s", err);
	}
	snprintf(p, sizeof(p), "%s/no-such-keys", dir);
	cr_assert_eq(serve_keys_load(p, &ks, err, sizeof(err)), -ENOENT);
	table_down();
}

/* Each key sees only its own sandboxes: another's is a missing one (404) on every route, its data never shown. */
Test(serve_keys, a_foreign_key_gets_404_and_nothing_of_it)
{
	table_up(4, 0);
	struct serve_keys ks = { .n = 2 };
	snprintf(ks.k[0].name, sizeof(ks.k[0].name), "alice");
	snprintf(ks.k[0].key, sizeof(ks.k[0].key), KEY_A);
	snprintf(ks.k[1].name, sizeof(ks.k[1].name), "bob");
	snprintf(ks.k[1].key, sizeof(ks.k[1].key), KEY_B);
	char *body;
	cr_assert_eq(status_keys(&ks, "POST", "/sandboxes", KEY_A, "{\"templateID\":\"base\",\"timeout\":60,"
				 "\"metadata\":{\"secret\":\"alice-only\"}}", &body), 201, "%s", body);
	json_t *j = json_loads(body, 0, NULL);
	free(body);
	char id[SERVE_ID_LEN + 1], path[128];
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "sandboxID")));
	cr_assert_str_eq(json_string_value(json_object_get(j, "envdAccessToken")), KEY_A, "the creator's key is its token");
	json_decref(j);
	/* the record names its owner, so a restarted daemon keeps the scoping */
	struct serve_sandbox s;
	cr_assert_eq(serve_get(&T, id, &s), 0);
	cr_assert_str_eq(s.owner, "alice");
	serve_sandbox_put(&s);
	cr_assert_eq(serve_get_owned(&T, "bob", id, &s), -ENOENT);

	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", KEY_B, NULL, &body), 200);
	cr_assert_str_eq(body, "[]", "bob's list shows alice's: %s", body);
	free(body);
	cr_assert_eq(status_keys(&ks, "GET", "/v2/sandboxes", KEY_B, NULL, &body), 200);
	cr_assert(!strstr(body, id) && !strstr(body, "alice-only"), "%s", body);
	free(body);
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	cr_assert_eq(status_keys(&ks, "GET", path, KEY_B, NULL, &body), 404);
	cr_assert(!strstr(body, "alice-only") && !strstr(body, "base"), "%s", body);
	free(body);
	const char *posts[] = { "timeout", "refreshes", "pause", "resume", "connect" };
	for (size_t i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
		snprintf(path, sizeof(path), "/sandboxes/%s/%s", id, posts[i]);
		cr_assert_eq(status_keys(&ks, "POST", path, KEY_B, "{\"timeout\":1}", NULL), 404, "%s", posts[i]);
	}
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/connect", id);
	cr_assert_eq(status_keys(&ks, "POST", path, KEY_B, "{\"timeout\":1}", NULL), 404);
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	cr_assert_eq(status_keys(&ks, "DELETE", path, KEY_B, NULL, NULL), 404);
	/* nothing bob did reached it: running, its deadline as alice set it */
	cr_assert_eq(serve_get(&T, id, &s), 0);
	cr_assert_eq(s.state, SERVE_RUNNING);
	cr_assert_eq(s.deadline, F.now + 60);
	serve_sandbox_put(&s);
	cr_assert_eq(status_keys(&ks, "GET", path, KEY_A, NULL, &body), 200);
	cr_assert(strstr(body, "alice-only"), "%s", body);
	free(body);
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", KEY_A, NULL, &body), 200);
	cr_assert(strstr(body, id), "%s", body);
	free(body);
	/* bob's own sandbox is bob's; each list has one */
	cr_assert_eq(status_keys(&ks, "POST", "/sandboxes", KEY_B, "{\"templateID\":\"base\"}", NULL), 201);
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", KEY_B, NULL, &body), 200);
	j = json_loads(body, 0, NULL);
	free(body);
	cr_assert_eq(json_array_size(j), 1);
	cr_assert_str_neq(json_string_value(json_object_get(json_array_get(j, 0), "sandboxID")), id);
	json_decref(j);
	cr_assert_eq(status_keys(&ks, "DELETE", path, KEY_A, NULL, NULL), 204);
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", "e2b_cccccccccccccccccccccccccccccccccccccccc", NULL, NULL), 401);
	table_down();
}

/* ---- child processes (vmm/proc.c) -------------------------------------------------------------- */

Test(serve_proc, start_time_alive_and_stop)
{
	pid_t pid = child_sleeping();
	unsigned long long st;
	cr_assert_eq(proc_start_time(pid, &st), 0);
	cr_assert(proc_alive(pid, st));
	cr_assert_not(proc_alive(pid, st + 1), "another start time is another process");
	/* a wrong start time: nothing is signalled */
	cr_assert_eq(proc_stop(pid, -1, st + 1, 1000), -ESRCH);
	cr_assert(proc_alive(pid, st));
	cr_assert_eq(proc_stop(pid, -1, st, 5000), 0);
	cr_assert_not(proc_alive(pid, st));
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), -1, "reaped by proc_stop");
	cr_assert_eq(proc_start_time(pid, &st), -ESRCH);
}

Test(serve_proc, a_child_ignoring_sigterm_is_killed)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		signal(SIGTERM, SIG_IGN);
		for (;;)
			pause();
	}
	unsigned long long st;
	cr_assert_eq(proc_start_time(pid, &st), 0);
	cr_assert_eq(proc_stop(pid, -1, st, 100), 0);
	cr_assert_not(proc_alive(pid, st));
}

/* ---- pause / resume / connect: the state machine with the fake spawner and the injected clock ---- */

static json_t *record_of(const char *id)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/sandboxes/%s.json", dir, id);
	json_error_t je;
	json_t *rec = json_load_file(p, 0, &je);
	cr_assert_not_null(rec, "%s: %s", p, je.text);
	return rec;
}

static enum serve_state state_of(const char *id)
{
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, id, &g), 0);
	enum serve_state st = g.state;
	serve_sandbox_put(&g);
	return st;
}

Test(serve_pause, pause_keeps_the_snapshot_stops_the_clock_and_resume_restores_it)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0, "%s", err);
	F.now = 1040.0; /* 60 s of its timeout left */
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.pauses, 1);
	cr_assert_eq(state_of(a.id), SERVE_PAUSED);
	cr_assert(exists("%s/run/%s/snap/state", a.id), "a paused sandbox keeps its memory file");
	json_t *rec = record_of(a.id);
	cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "paused");
	cr_assert_eq(json_integer_value(json_object_get(rec, "pid")), 0, "no process while paused");
	cr_assert_eq(json_real_value(json_object_get(rec, "remaining")), 60.0);
	json_decref(rec);
	cr_assert_eq(count_listed(), 1, "a paused sandbox is listed");

	/* a duplicate pause: 409's errno, nothing done */
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), -EALREADY);
	cr_assert(strstr(err, "already paused"), "%s", err);
	cr_assert_eq(F.pauses, 1);

	/* paused time does not count: long past its old deadline, nothing ends it */
	F.now = 5000.0;
	cr_assert_eq(serve_tick(&T), 0);
	cr_assert_eq(F.stops, 0);

	struct serve_sandbox r;
	cr_assert_eq(serve_resume(&T, a.id, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.starts, 2);
	cr_assert(strstr(F.started_from, a.id) && strstr(F.started_from, "/snap"), "restored from its own snapshot: %s",
		  F.started_from);
	cr_assert_str_eq(r.vsock, a.vsock, "the same vsock socket");
	cr_assert_eq(r.deadline, 5060.0, "the 60 s it had left, from the resume");
	cr_assert_eq(r.state, SERVE_RUNNING);
	cr_assert_eq(r.pid, 4243, "the new monitor's process");
	serve_sandbox_put(&r);
	rec = record_of(a.id);
	cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "running");
	cr_assert_eq(json_integer_value(json_object_get(rec, "pid")), 4243);
	cr_assert_eq(json_real_value(json_object_get(rec, "deadline")), 5060.0);
	json_decref(rec);
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), -EALREADY, "a duplicate resume");
	cr_assert(strstr(err, "already running"), "%s", err);
	cr_assert_eq(F.starts, 2);

	/* the resumed sandbox ends at its moved deadline */
	F.now = 5059.0;
	cr_assert_eq(serve_tick(&T), 0);
	F.now = 5060.0;
	cr_assert_eq(serve_tick(&T), 1);
	cr_assert_not(exists("%s/run/%s", a.id));
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_pause, unknown_ids_and_an_explicit_resume_timeout)
{
	table_up(4, 0);
	char err[256];
	cr_assert_eq(serve_pause(&T, "0123456789abcdef0123", err, sizeof(err)), -ENOENT);
	cr_assert_eq(serve_resume(&T, "0123456789abcdef0123", 0, NULL, err, sizeof(err)), -ENOENT);
	cr_assert_eq(serve_pause(&T, "", err, sizeof(err)), -ENOENT);
	struct serve_sandbox a;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_resume(&T, a.id, SERVE_TIMEOUT_MAX + 1, NULL, err, sizeof(err)), -EINVAL);
	cr_assert_eq(serve_resume(&T, a.id, -5, NULL, err, sizeof(err)), -EINVAL);
	cr_assert_eq(F.starts, 1, "a bad timeout starts nothing");
	/* a timeout set while paused counts from the resume */
	cr_assert_eq(serve_set_timeout(&T, a.id, 30), 0);
	F.now = 2000.0;
	struct serve_sandbox r;
	cr_assert_eq(serve_resume(&T, a.id, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.deadline, 2030.0);
	serve_sandbox_put(&r);
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_resume(&T, a.id, 500, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.deadline, 2500.0, "resume's own timeout wins");
	serve_sandbox_put(&r);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_pause, failures_leave_the_state_it_had)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0, "%s", err);
	F.fail_pause = -EIO;
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "fake pause failed"), "%s", err);
	cr_assert_eq(state_of(a.id), SERVE_RUNNING, "a failed pause leaves it running");
	json_t *rec = record_of(a.id);
	cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "running");
	json_decref(rec);
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	F.fail = -EIO;
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), -EIO);
	cr_assert_eq(state_of(a.id), SERVE_PAUSED, "a failed resume leaves it paused");
	rec = record_of(a.id);
	cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "paused");
	cr_assert_eq(json_integer_value(json_object_get(rec, "pid")), 0);
	json_decref(rec);
	cr_assert(exists("%s/run/%s/snap/mem", a.id), "its snapshot is untouched");
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), 0, "%s", err);
	serve_sandbox_put(&a);
	table_down();
}

static int hook_pause_while_resuming(struct fake *f)
{
	char err[256];
	const char *id = f->launched_id;
	if (serve_pause(f->t, id, err, sizeof(err)) != -EBUSY)
		return 1;
	if (serve_resume(f->t, id, 0, NULL, err, sizeof(err)) != -EBUSY)
		return 2;
	if (serve_kill(f->t, id) != -EBUSY)
		return 3;
	if (serve_set_timeout(f->t, id, 10) != -EBUSY)
		return 4;
	return 0;
}

Test(serve_pause, a_sandbox_being_resumed_is_busy)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	F.hook = hook_pause_while_resuming;
	F.hook_rc = -1;
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.hook_rc, 0, "hook step %d failed", F.hook_rc);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_pause, kill_of_a_paused_sandbox_removes_its_snapshot_and_signals_nothing)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_kill(&T, a.id), 0);
	cr_assert_eq(F.stops, 0, "no process to stop");
	cr_assert_not(exists("%s/run/%s", a.id));
	cr_assert_not(exists("%s/sandboxes/%s.json", a.id));
	cr_assert_eq(serve_kill(&T, a.id), -ENOENT);
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), -ENOENT);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_pause, a_paused_sandbox_holds_a_slot_but_no_ram)
{
	table_up(3, 512ull << 20);
	char err[256];
	struct serve_sandbox a, b, c;
	cr_assert_eq(create("base", 100, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(create("base", 100, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(create("base", 100, &c, err, sizeof(err)), -ENOMEM);
	cr_assert_eq(serve_pause(&T, a.id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(create("base", 100, &c, err, sizeof(err)), 0, "its RAM is free once paused: %s", err);
	int starts = F.starts;
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), -ENOMEM);
	cr_assert(strstr(err, "--max-mem"), "%s", err);
	cr_assert_eq(F.starts, starts, "refused before any start");
	cr_assert_eq(state_of(a.id), SERVE_PAUSED);
	struct serve_sandbox d;
	cr_assert_eq(create("base", 100, &d, err, sizeof(err)), -EUSERS, "but it keeps its slot");
	cr_assert_eq(serve_kill(&T, c.id), 0);
	cr_assert_eq(serve_resume(&T, a.id, 0, NULL, err, sizeof(err)), 0, "%s", err);
	serve_sandbox_put(&a);
	serve_sandbox_put(&b);
	serve_sandbox_put(&c);
	table_down();
}

static void write_snapshot(const char *id)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/run/%s/snap", dir, id);
	cr_assert_eq(mkdir(p, 0700), 0);
	strcat(p, "/state");
	fclose(fopen(p, "w"));
}

Test(serve_pause, readoption_keeps_paused_sandboxes_paused)
{
	table_up(4, 0);
	F.real_procs = true;
	const char *id_paused = "aaaaaaaaaaaaaaaaaaaa", *id_nosnap = "bbbbbbbbbbbbbbbbbbbb",
		   *id_resuming = "cccccccccccccccccccc", *id_badpid = "dddddddddddddddddddd";
	write_record(id_paused, 0, 0, ",\"state\":\"paused\",\"remaining\":42.0");
	write_snapshot(id_paused);
	write_record(id_nosnap, 0, 0, ",\"state\":\"paused\",\"remaining\":42.0");
	/* a daemon that died while resuming: the half-started monitor is ended, the sandbox stays paused */
	pid_t half = child_sleeping();
	unsigned long long half_start;
	cr_assert_eq(proc_start_time(half, &half_start), 0);
	write_record(id_resuming, half, half_start, ",\"state\":\"resuming\",\"remaining\":7.0");
	write_snapshot(id_resuming);
	/* paused with a pid: malformed */
	write_record(id_badpid, 4242, 99, ",\"state\":\"paused\"");
	write_snapshot(id_badpid);
	unsigned adopted, removed;
	char err[256];
	cr_assert_eq(serve_adopt(&T, &adopted, &removed, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(adopted, 2);
	cr_assert_eq(removed, 2, "the paused one without a snapshot and the malformed one");
	cr_assert_not(proc_alive(half, half_start), "the half-resumed monitor was ended");
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, id_paused, &g), 0);
	cr_assert_eq(g.state, SERVE_PAUSED);
	cr_assert_eq(g.remaining, 42.0);
	serve_sandbox_put(&g);
	cr_assert_eq(state_of(id_resuming), SERVE_PAUSED);
	json_t *rec = record_of(id_resuming);
	cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "paused");
	json_decref(rec);
	cr_assert_not(exists("%s/run/%s", id_nosnap));
	cr_assert_not(exists("%s/run/%s", id_badpid));
	/* an adopted paused sandbox is not timed, and is resumed from its snapshot */
	F.now = 1e6;
	cr_assert_eq(serve_tick(&T), 0);
	F.real_procs = false;
	struct serve_sandbox r;
	cr_assert_eq(serve_resume(&T, id_paused, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.deadline, 1e6 + 42.0);
	serve_sandbox_put(&r);
	table_down();
}

Test(serve_api, pause_resume_connect_in_e2b_codes)
{
	table_up(2, 0);
	struct serve_reply rp = call("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":100}");
	json_t *j = reply_json(&rp, 201);
	char sid[SERVE_ID_LEN + 1], path[96], gpath[64];
	snprintf(sid, sizeof(sid), "%s", json_string_value(json_object_get(j, "sandboxID")));
	json_decref(j);
	snprintf(gpath, sizeof(gpath), "/sandboxes/%s", sid);

	snprintf(path, sizeof(path), "/sandboxes/%s/pause", sid);
	expect("GET", path, KEY, NULL, 405, NULL);
	expect("POST", path, KEY, NULL, 204, NULL);
	expect("POST", path, KEY, NULL, 409, "already paused");
	rp = call("GET", gpath, KEY, NULL);
	j = reply_json(&rp, 200);
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "paused");
	json_decref(j);
	rp = call("GET", "/sandboxes", KEY, NULL);
	j = reply_json(&rp, 200);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "state")), "paused");
	json_decref(j);

	snprintf(path, sizeof(path), "/sandboxes/%s/resume", sid);
	expect("POST", path, KEY, "{\"timeout\":", 400, "malformed JSON");
	expect("POST", path, KEY, "[]", 400, "JSON object");
	expect("POST", path, KEY, "{\"timeout\":\"10\"}", 400, "must be an integer");
	expect("POST", path, KEY, "{\"timeout\":0}", 400, "1 to 86400");
	cr_assert_eq(F.starts, 1, "no bad request resumed anything");
	/* E2B's SDK sends autoPause too: ignored */
	rp = call("POST", path, KEY, "{\"timeout\":50,\"autoPause\":false}");
	j = reply_json(&rp, 201);
	cr_assert_str_eq(json_string_value(json_object_get(j, "sandboxID")), sid);
	cr_assert_str_eq(json_string_value(json_object_get(j, "templateID")), "base");
	json_decref(j);
	expect("POST", path, KEY, NULL, 409, "already running");

	/* connect: a running sandbox is returned (200) with its timeout set; a paused one resumed (201) */
	snprintf(path, sizeof(path), "/sandboxes/%s/connect", sid);
	expect("POST", path, KEY, NULL, 400, "malformed JSON");
	expect("POST", path, KEY, "{}", 400, "'timeout' is required");
	F.now = 1010.0;
	rp = call("POST", path, KEY, "{\"timeout\":300}");
	json_decref(reply_json(&rp, 200));
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, sid, &g), 0);
	cr_assert_eq(g.deadline, 1310.0);
	serve_sandbox_put(&g);
	cr_assert_eq(F.starts, 2);
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", sid);
	expect("POST", path, KEY, NULL, 204, NULL);
	snprintf(path, sizeof(path), "/sandboxes/%s/connect", sid);
	rp = call("POST", path, KEY, "{\"timeout\":20}");
	json_decref(reply_json(&rp, 201));
	cr_assert_eq(F.starts, 3);
	cr_assert_eq(serve_get(&T, sid, &g), 0);
	cr_assert_eq(g.state, SERVE_RUNNING);
	cr_assert_eq(g.deadline, 1030.0);
	serve_sandbox_put(&g);

	/* a failing pause is the host's error; unknown ids are 404 on every route */
	F.fail_pause = -EIO;
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", sid);
	expect("POST", path, KEY, NULL, 500, "fake pause failed");
	expect("POST", "/sandboxes/0123456789abcdef0123/pause", KEY, NULL, 404, "not found");
	expect("POST", "/sandboxes/0123456789abcdef0123/resume", KEY, NULL, 404, "not found");
	expect("POST", "/sandboxes/0123456789abcdef0123/connect", KEY, "{\"timeout\":5}", 404, "not found");
	expect("POST", "/sandboxes/0123456789abcdef0123456789/pause", KEY, NULL, 404, NULL);
	expect("POST", "/sandboxes/x/pause", "wrong", NULL, 401, NULL);
	expect("DELETE", gpath, KEY, NULL, 204, NULL);
	table_down();
}

/* E2B's v2 routes the current JS SDK calls: create, list and connect with the v1 shapes */
Test(serve_api, v2_create_list_connect)
{
	table_up(2, 0);
	F.now = 1000.0;
	struct serve_reply rp = call("POST", "/v2/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":100,"
				     "\"network\":{},\"iam\":null,\"autoResume\":{\"enabled\":false}}");
	json_t *j = reply_json(&rp, 201);
	char sid[SERVE_ID_LEN + 1], path[96];
	snprintf(sid, sizeof(sid), "%s", json_string_value(json_object_get(j, "sandboxID")));
	json_decref(j);
	rp = call("GET", "/v2/sandboxes", KEY, NULL);
	j = reply_json(&rp, 200);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "sandboxID")), sid);
	json_decref(j);
	/* v2's connect may leave the timeout out: a running sandbox keeps its deadline */
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/connect", sid);
	rp = call("POST", path, KEY, "{}");
	json_decref(reply_json(&rp, 200));
	struct serve_sandbox g;
	cr_assert_eq(serve_get(&T, sid, &g), 0);
	cr_assert_eq(g.deadline, 1100.0);
	serve_sandbox_put(&g);
	expect("POST", path, KEY, "{\"timeout\":\"5\"}", 400, "must be an integer");
	snprintf(path, sizeof(path), "/sandboxes/%s/pause", sid);
	expect("POST", path, KEY, "{}", 204, NULL);
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/connect", sid);
	rp = call("POST", path, KEY, "{}");
	json_decref(reply_json(&rp, 201));
	cr_assert_eq(serve_get(&T, sid, &g), 0);
	cr_assert_eq(g.state, SERVE_RUNNING);
	serve_sandbox_put(&g);
	/* only those three: the rest of v2 is unknown, as are malformed paths */
	snprintf(path, sizeof(path), "/v2/sandboxes/%s", sid);
	expect("GET", path, KEY, NULL, 404, "no such endpoint");
	snprintf(path, sizeof(path), "/v2/sandboxes/%s/pause", sid);
	expect("POST", path, KEY, NULL, 404, "no such endpoint");
	expect("POST", "/v2/sandboxes//connect", KEY, "{}", 404, "no such endpoint");
	expect("GET", "/v2/sandboxesx", KEY, NULL, 404, "no such endpoint");
	expect("GET", "/v2/templates", KEY, NULL, 404, "no such endpoint");
	expect("POST", "/v2/sandboxes/0123456789abcdef0123/connect", KEY, "{}", 404, "not found");
	expect("GET", "/v2/sandboxes", "wrong", NULL, 401, NULL);
	table_down();
}

/* ---- GET /sandboxes' filters (E2B's query: state=running,paused, metadata=key%3Dvalue) ---------- */

static struct serve_reply call_q(const char *path, const struct serve_query_arg *q, size_t n, bool overflow)
{
	struct serve_request rq = { .method = "GET", .path = path, .api_key = KEY, .query = q, .nquery = n,
				    .query_overflow = overflow };
	struct serve_reply rp;
	serve_api_handle(&T, keys1(), &rq, &rp);
	return rp;
}

/* How many sandboxes a filtered list shows (want 200), or the status when it is an error. */
static size_t listed_q(const struct serve_query_arg *q, size_t n)
{
	struct serve_reply rp = call_q("/sandboxes", q, n, false);
	json_t *j = reply_json(&rp, 200);
	size_t k = json_array_size(j);
	json_decref(j);
	return k;
}

static void expect_q_400(const struct serve_query_arg *q, size_t n, const char *in_message)
{
	struct serve_reply rp = call_q("/sandboxes", q, n, false);
	json_t *j = reply_json(&rp, 400);
	const char *m = json_string_value(json_object_get(j, "message"));
	cr_assert(m && strstr(m, in_message), "message '%s' lacks '%s'", m, in_message);
	json_decref(j);
}

Test(serve_api, list_filters_by_state_and_metadata)
{
	table_up(4, 0);
	char err[256];
	struct serve_sandbox a, b, c;
	json_t *m1 = json_pack("{s:s, s:s}", "user", "alice", "env", "dev");
	json_t *m2 = json_pack("{s:s, s:s}", "user", "bob", "env", "dev");
	json_t *m3 = json_pack("{s:s}", "user", "a b&c=d");
	cr_assert_eq(serve_create(&T, "base", 100, m1, NULL, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_create(&T, "base", 100, m2, NULL, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(serve_create(&T, "base", 100, m3, NULL, &c, err, sizeof(err)), 0, "%s", err);
	json_decref(m1);
	json_decref(m2);
	json_decref(m3);
	cr_assert_eq(serve_pause(&T, b.id, err, sizeof(err)), 0, "%s", err);

	cr_assert_eq(listed_q(NULL, 0), 3, "no filter: all, running and paused");
	struct serve_query_arg q[4];
	q[0] = (struct serve_query_arg){ "state", "running" };
	cr_assert_eq(listed_q(q, 1), 2);
	q[0].value = "paused";
	cr_assert_eq(listed_q(q, 1), 1);
	q[0].value = "running,paused";
	cr_assert_eq(listed_q(q, 1), 3);
	q[0].value = "running";
	q[1] = (struct serve_query_arg){ "state", "paused" };
	cr_assert_eq(listed_q(q, 2), 3, "repeated state arguments add up");
	q[0] = (struct serve_query_arg){ "metadata", "env=dev" };
	cr_assert_eq(listed_q(q, 1), 2);
	q[0].value = "env=dev&user=bob";
	cr_assert_eq(listed_q(q, 1), 1, "every pair must match");
	q[1] = (struct serve_query_arg){ "state", "running" };
	cr_assert_eq(listed_q(q, 2), 0, "bob's is paused");
	q[0].value = "user=a+b%26c%3Dd";
	cr_assert_eq(listed_q(q, 1), 1, "components are form-decoded: + is a space, %%26 an &");
	q[0].value = "user=nobody";
	cr_assert_eq(listed_q(q, 1), 0);
	q[0].value = "missing=x";
	cr_assert_eq(listed_q(q, 1), 0);
	/* arguments the SDK sends that are not filters */
	q[0] = (struct serve_query_arg){ "limit", "100" };
	q[1] = (struct serve_query_arg){ "nextToken", "" };
	cr_assert_eq(listed_q(q, 2), 3);

	/* malformed */
	q[0] = (struct serve_query_arg){ "state", "sleeping" };
	expect_q_400(q, 1, "not one of running, paused");
	q[0].value = "";
	expect_q_400(q, 1, "not one of");
	q[0].value = "running,";
	expect_q_400(q, 1, "not one of");
	q[0].value = "RUNNING";
	expect_q_400(q, 1, "not one of");
	q[0] = (struct serve_query_arg){ "metadata", "" };
	expect_q_400(q, 1, "key=value");
	q[0].value = "user";
	expect_q_400(q, 1, "key=value");
	q[0].value = "=x";
	expect_q_400(q, 1, "key=value");
	q[0].value = "env=dev&";
	expect_q_400(q, 1, "key=value");
	q[0].value = "user=%zz";
	expect_q_400(q, 1, "key=value");
	q[0].value = "user=%2";
	expect_q_400(q, 1, "key=value");
	q[0].value = "us%00er=x";
	expect_q_400(q, 1, "key=value");
	struct serve_reply rp = call_q("/sandboxes", NULL, 0, true);
	json_decref(reply_json(&rp, 400));
	serve_sandbox_put(&a);
	serve_sandbox_put(&b);
	serve_sandbox_put(&c);
	table_down();
}

/* ---- warm pools: clones started ahead, their vCPUs held, handed to creates ------------------------ */

static struct serve_pool pools[1];

static void pool_up(unsigned max_sb, uint64_t max_mem, unsigned size)
{
	table_up(max_sb, max_mem);
	pools[0] = (struct serve_pool){ .tmpl = &tmpls[0], .size = size };
	serve_table_set_pools(&T, pools, 1);
}

static size_t count_records(void)
{
	char p[256];
	snprintf(p, sizeof(p), "ls %s/sandboxes | wc -l", dir);
	FILE *f = popen(p, "r");
	size_t n = 0;
	cr_assert_eq(fscanf(f, "%zu", &n), 1);
	pclose(f);
	return n;
}

Test(serve_pool, fill_take_refill_and_drain)
{
	pool_up(3, 0, 2);
	char err[256];
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 0, "the pool is full");
	cr_assert_eq(F.starts, 2);
	cr_assert_eq(F.holds, 2, "each clone's vCPUs held once it answered");
	cr_assert_eq(serve_pool_ready(&T, "base"), 2);
	cr_assert_eq(serve_pool_ready(&T, "big"), 0);
	cr_assert_eq(count_listed(), 0, "pool clones are nobody's sandboxes");
	cr_assert_eq(count_records(), 2, "recorded, marked creating: a restarted daemon ends them");

	json_t *md = json_pack("{s:s}", "who", "pool");
	F.now = 2000.0;
	struct serve_sandbox a;
	cr_assert_eq(serve_create(&T, "base", 30, md, NULL, &a, err, sizeof(err)), 0, "%s", err);
	json_decref(md);
	cr_assert_eq(F.starts, 2, "no start: a pool clone was taken");
	cr_assert_eq(F.releases, 1);
	cr_assert_eq(a.deadline, 2030.0);
	cr_assert_eq(a.started_at, 2000.0, "started when handed out");
	cr_assert_str_eq(json_string_value(json_object_get(a.metadata, "who")), "pool");
	cr_assert_eq(serve_pool_ready(&T, "base"), 1);
	cr_assert_eq(count_listed(), 1);
	json_t *rec = record_of(a.id);
	cr_assert(json_is_false(json_object_get(rec, "creating")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "metadata"), "who")), "pool");
	json_decref(rec);

	/* the refill; then pool members count against the limits */
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "%s", err);
	struct serve_sandbox b;
	cr_assert_eq(serve_create(&T, "big", 30, NULL, NULL, &b, err, sizeof(err)), -EUSERS);
	cr_assert_eq(F.starts, 3);

	/* a pool clone that died is forgotten; the daemon's drain ends the rest */
	F.dead[F.ndead++] = 4243; /* the second clone: the first was handed out */
	cr_assert_eq(serve_tick(&T), 1);
	cr_assert_eq(serve_pool_ready(&T, "base"), 1);
	int stops = F.stops;
	cr_assert_eq(serve_pool_drain(&T), 1);
	cr_assert_eq(F.stops, stops + 1);
	cr_assert_eq(serve_pool_ready(&T, "base"), 0);
	cr_assert_eq(count_records(), 1, "only the created sandbox is left");
	cr_assert_eq(serve_pool_drain(&T), 0, "a second drain finds nothing");
	cr_assert_eq(count_listed(), 1);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_pool, a_pool_never_exceeds_max_mem)
{
	pool_up(8, 512ull << 20, 4);
	char err[256];
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 0, "--max-mem reached: no more");
	cr_assert_eq(F.starts, 2);
	struct serve_sandbox a;
	cr_assert_eq(serve_create(&T, "base", 30, NULL, NULL, &a, err, sizeof(err)), 0, "from the pool: %s", err);
	cr_assert_eq(F.starts, 2);
	serve_sandbox_put(&a);
	table_down();
}

Test(serve_pool, failed_starts_and_clones_that_do_not_run_again)
{
	pool_up(4, 0, 1);
	char err[256];
	F.fail = -EIO;
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "fake start failed"), "%s", err);
	cr_assert_eq(count_records(), 0, "a failed clone leaves nothing");
	cr_assert_eq(F.stops, 0, "a failed start ends its own process (the spawner's contract)");
	F.fail_hold = -EIO;
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), -EIO);
	cr_assert_eq(F.stops, 1, "a clone whose vCPUs could not be held is ended");
	cr_assert_eq(count_records(), 0);
	cr_assert_eq(serve_pool_ready(&T, "base"), 0);
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "%s", err);
	/* the clone's vCPUs will not go: ended, and the create is served cold */
	F.fail_hold = -EIO;
	int starts = F.starts, stops = F.stops;
	struct serve_sandbox a;
	cr_assert_eq(serve_create(&T, "base", 30, NULL, NULL, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.starts, starts + 1);
	cr_assert_eq(F.stops, stops + 1);
	cr_assert_eq(serve_pool_ready(&T, "base"), 0);
	cr_assert_eq(count_listed(), 1);
	serve_sandbox_put(&a);
	table_down();
}

/* ---- the real spawner's start gives up when the daemon stops (the shutdown is never held up) ---- */

struct start_call {
	struct serve_spawner sp;
	struct serve_template t;
	struct serve_sandbox sb;
	int rc;
	char err[512];
};

static int launched_ok(void *arg, const struct serve_sandbox *sb)
{
	return 0;
}

static void *start_thread(void *arg)
{
	struct start_call *c = arg;
	c->rc = c->sp.start(c->sp.ctx, &c->t, &c->sb, launched_ok, NULL, c->err, sizeof(c->err));
	return NULL;
}

Test(serve_spawn, a_start_under_way_ends_on_the_quit_fd)
{
	char d[] = "/tmp/padcell-serve-spawn.XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	/* a "monitor" that never makes its vsock socket: the start waits for an agent that never answers */
	char mon[128], run[160];
	snprintf(mon, sizeof(mon), "%s/monitor", d);
	FILE *f = fopen(mon, "w");
	fputs("#!/bin/sh\ntrap 'kill $!; exit 0' TERM\nsleep 60 &\nwait\n", f);
	fclose(f);
	chmod(mon, 0700);
	snprintf(run, sizeof(run), "%s/run", d);
	cr_assert_eq(mkdir(run, 0700), 0);
	static struct start_call c;
	memset(&c, 0, sizeof(c));
	snprintf(c.t.name, sizeof(c.t.name), "base");
	snprintf(c.t.dir, sizeof(c.t.dir), "%s", d);
	snprintf(c.sb.id, sizeof(c.sb.id), "%s", "aaaaaaaaaaaaaaaaaaaa");
	cr_assert_lt((size_t)snprintf(c.sb.dir, sizeof(c.sb.dir), "%.60s/%.20s", run, c.sb.id), sizeof(c.sb.dir));
	cr_assert_lt((size_t)snprintf(c.sb.vsock, sizeof(c.sb.vsock), "%.80s/vsock", c.sb.dir), sizeof(c.sb.vsock));
	cr_assert_eq(mkdir(c.sb.dir, 0700), 0);
	/* the spawner process the daemon asks (vmm/serve/spawner.c) */
	static struct spawner_conf sc;
	sc = (struct spawner_conf){ .state_dir = d, .tmpl = &c.t, .ntmpl = 1, .padcell = mon };
	static struct spawner_client rpc;
	int rpc_fd;
	pid_t spawner;
	char err[256];
	cr_assert_eq(spawner_fork(&sc, &rpc_fd, &spawner, err, sizeof(err)), 0, "%s", err);
	spawner_client_init(&rpc, rpc_fd);
	struct serve_spawn_opts o = { .rpc = &rpc, .padcell = mon, .ready_timeout = 60, .quit_fd = eventfd(0, EFD_CLOEXEC) };
	cr_assert_geq(o.quit_fd, 0);
	serve_spawner_real(&c.sp, &o);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, start_thread, &c), 0);
	usleep(300 * 1000);
	double t0 = now_ms();
	uint64_t one = 1;
	cr_assert_eq(write(o.quit_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_join(th, NULL);
	double took = now_ms() - t0;
	cr_assert_eq(c.rc, -EINTR, "rc %d: %s", c.rc, c.err);
	cr_assert(strstr(c.err, "stopping"), "%s", c.err);
	/* a generous bound: the start looks at the quit fd between 1 s connection attempts, not 60 s later */
	cr_assert_lt(took, 30000.0, "the start took %.0f ms to give up", took);
	cr_assert_eq(c.sb.pid, 0, "its process was ended");
	close(o.quit_fd);
	close(rpc_fd);
	waitpid(spawner, NULL, 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	cr_assert_eq(system(cmd), 0);
}

static int hook_fill_while_creating(struct fake *f)
{
	char err[256];
	return serve_pool_fill_one(f->t, err, sizeof(err)) == 0 ? 0 : 1;
}

Test(serve_pool, a_refill_waits_for_a_create_under_way)
{
	pool_up(4, 0, 1);
	char err[256];
	F.hook = hook_fill_while_creating;
	F.hook_rc = -1;
	struct serve_sandbox a;
	cr_assert_eq(serve_create(&T, "big", 30, NULL, NULL, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(F.hook_rc, 0, "the pool was filled while a create was starting");
	F.hook = NULL;
	cr_assert_eq(serve_pool_ready(&T, "base"), 0);
	cr_assert_eq(serve_pool_fill_one(&T, err, sizeof(err)), 1, "once it is done: %s", err);
	serve_sandbox_put(&a);
	table_down();
}

/* ---- re-reads while the daemon runs (SIGHUP, a template built) --------------------------------- */

/* A template built while the daemon runs is created from once the table has grown to it. */
Test(serve_table, a_template_added_later_is_created_from)
{
	table_up(4, 0);
	struct serve_sandbox s;
	char err[256];
	cr_assert_eq(create("late", 60, &s, err, sizeof(err)), -ENOENT);
	serve_table_templates_grown(&T, 1); /* never shrinks */
	cr_assert_not_null(serve_template_find(&T, "big"));
	serve_table_templates_grown(&T, 3);
	cr_assert_eq(create("late", 60, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(s.tmpl, "late");
	serve_sandbox_put(&s);
	table_down();
}

static unsigned said_n;
static char said_last[256];
static void said(void *arg, const char *line)
{
	said_n++;
	snprintf(said_last, sizeof(said_last), "%s", line);
}

static void key_set(struct serve_keys *ks, size_t i, const char *name, const char *key)
{
	snprintf(ks->k[i].name, sizeof(ks->k[i].name), "%s", name);
	snprintf(ks->k[i].key, sizeof(ks->k[i].key), "%s", key);
	if (ks->n <= i)
		ks->n = i + 1;
}

/*
 * A re-read keys file merged in: a key added works, one changed works under its name (its
 * sandboxes with it) and the old one no longer, one removed no longer, one unchanged goes on;
 * past the entries' room nothing is revoked.
 */
Test(serve_keys, a_reread_file_adds_changes_and_removes_keys)
{
	table_up(4, 0);
	static struct serve_keys ks, fresh;
	memset(&ks, 0, sizeof(ks));
	key_set(&ks, 0, "alice", KEY_A);
	key_set(&ks, 1, "bob", KEY_B);
	char *body;
	cr_assert_eq(status_keys(&ks, "POST", "/sandboxes", KEY_A, "{\"templateID\":\"base\",\"timeout\":60}", &body), 201);
	json_t *j = json_loads(body, 0, NULL);
	free(body);
	char path[128];
	snprintf(path, sizeof(path), "/sandboxes/%s", json_string_value(json_object_get(j, "sandboxID")));
	json_decref(j);
	const char *key_a2 = "e2b_a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2", *key_c = "e2b_cccccccccccccccccccccccccccccccccccccccc";
	memset(&fresh, 0, sizeof(fresh));
	key_set(&fresh, 0, "alice", key_a2); /* changed */
	key_set(&fresh, 1, "carol", key_c);  /* added; bob removed */
	said_n = 0;
	cr_assert_eq(serve_keys_merge(&ks, &fresh, said, NULL), 0);
	cr_assert_eq(said_n, 3, "changed, added, removed: %u (%s)", said_n, said_last);
	cr_assert_eq(status_keys(&ks, "GET", path, KEY_A, NULL, NULL), 401, "the old key of alice");
	cr_assert_eq(status_keys(&ks, "GET", path, key_a2, NULL, NULL), 200, "alice's sandbox with her new key");
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", KEY_B, NULL, NULL), 401, "bob removed");
	cr_assert_eq(status_keys(&ks, "GET", path, key_c, NULL, NULL), 404, "carol does not see alice's");
	cr_assert_str_eq(serve_keys_find(&ks, key_c)->name, "carol");
	/* the same file again: nothing to say, nothing changes */
	said_n = 0;
	cr_assert_eq(serve_keys_merge(&ks, &fresh, said, NULL), 0);
	cr_assert_eq(said_n, 0);
	cr_assert_eq(status_keys(&ks, "GET", path, key_a2, NULL, NULL), 200);
	/* bob back: a new entry (the revoked one stays revoked) */
	key_set(&fresh, 2, "bob", KEY_B);
	cr_assert_eq(serve_keys_merge(&ks, &fresh, said, NULL), 0);
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", KEY_B, NULL, NULL), 200);
	/* changes until the entries' room is gone: -E2BIG, said, and carol (to be removed) kept */
	int rc = 0;
	char k[64], fitted[64] = "";
	for (unsigned i = 0; i < SERVE_KEYS_SLOTS && !rc; i++) {
		snprintf(k, sizeof(k), "e2b_rotation%032u", i);
		key_set(&fresh, 0, "alice", k);
		if (!(rc = serve_keys_merge(&ks, &fresh, said, NULL)))
			memcpy(fitted, k, sizeof(k));
	}
	cr_assert_eq(rc, -E2BIG);
	cr_assert(strstr(said_last, "restart"), "%s", said_last);
	memset(&fresh, 0, sizeof(fresh));
	key_set(&fresh, 0, "alice", key_a2); /* carol and bob left out, alice changed: no room */
	cr_assert_eq(serve_keys_merge(&ks, &fresh, said, NULL), -E2BIG);
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", key_c, NULL, NULL), 200, "nothing revoked by a merge that failed");
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", fitted, NULL, NULL), 200, "the last key that fitted works");
	cr_assert_eq(status_keys(&ks, "GET", "/sandboxes", k, NULL, NULL), 401, "the one that did not fit");
	table_down();
}

/* build/padcell-dyn (serve's binary) beside build/tests/unit-tests. */
static const char *dyn_path(void)
{
	static char path[PATH_MAX + 16];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(path, sizeof(path), "%s/../padcell-dyn", self);
	return path;
}

/* Reads the daemon's stdout (fd) into buf until it holds want; false when it ends first or 30 s pass (a hang guard). */
static bool out_wait(int fd, char *buf, size_t cap, size_t *len, const char *want)
{
	while (!memmem(buf, *len, want, strlen(want))) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) <= 0 || *len + 1 >= cap)
			return false;
		ssize_t k = read(fd, buf + *len, cap - *len - 1);
		if (k <= 0)
			return false;
		*len += (size_t)k;
		buf[*len] = '\0';
	}
	return true;
}

/* One HTTP/1.1 request to 127.0.0.1:port: the response's status. */
static unsigned http_status(unsigned port, const char *method, const char *path, const char *key, const char *body)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
	char req[1024], resp[512];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", method, path, key,
			 body ? strlen(body) : 0, body ? body : "");
	cr_assert_eq(write(fd, req, (size_t)n), n);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	cr_assert_gt(poll(&p, 1, 60000), 0, "no answer");
	ssize_t k = read(fd, resp, sizeof(resp) - 1);
	close(fd);
	cr_assert_gt(k, 12);
	resp[k] = '\0';
	unsigned st = 0;
	cr_assert_eq(sscanf(resp, "HTTP/1.1 %u", &st), 1, "%s", resp);
	return st;
}

/*
 * The daemon itself: SIGHUP re-reads --api-keys (bob added, alice removed) and does not stop it; a
 * template renamed into the templates directory (as `template build` does) is seen without a
 * signal; SIGTERM then ends it 0.  Its sandboxes' padcell is /bin/false: a create of the new
 * template gets as far as the start (500), where an unknown one is refused (400).
 */
Test(serve_cli, sighup_rereads_the_keys_and_a_new_template_is_seen)
{
	const char *bin = dyn_path();
	if (access(bin, X_OK)) {
		fprintf(stderr, "SKIP serve_cli::sighup_rereads: no %s (make build/padcell-dyn)\n", bin);
		cr_skip_test("no padcell-dyn");
	}
	char d[] = "/tmp/padcell-serve-reload.XXXXXX", tdir[64], sdir[64], kpath[64], spec[200];
	cr_assert_not_null(mkdtemp(d));
	snprintf(tdir, sizeof(tdir), "%s/t", d);
	snprintf(sdir, sizeof(sdir), "%s/s", d);
	snprintf(kpath, sizeof(kpath), "%s/keys", d);
	cr_assert_eq(mkdir(tdir, 0755), 0);
	fake_template(tdir, "base", 64, 1, true);
	FILE *f = fopen(kpath, "w");
	fprintf(f, "alice %s\n", KEY_A);
	fclose(f);
	chmod(kpath, 0600);
	int out[2];
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(out[1], 2);
		execl(bin, bin, "serve", "--templates", tdir, "--state-dir", sdir, "--listen", "127.0.0.1:0", "--api-keys",
		      kpath, "--padcell", "/bin/false", "--ready-timeout", "5", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	static char buf[16384];
	size_t len = 0;
	cr_assert(out_wait(out[0], buf, sizeof(buf), &len, "listening on http://127.0.0.1:"), "%s", buf);
	unsigned port = 0;
	sscanf(strstr(buf, "listening on http://127.0.0.1:") + 30, "%u", &port);
	cr_assert_neq(port, 0);
	cr_assert_eq(http_status(port, "GET", "/sandboxes", KEY_A, NULL), 200);
	cr_assert_eq(http_status(port, "GET", "/sandboxes", KEY_B, NULL), 401);
	f = fopen(kpath, "w");
	fprintf(f, "# alice is gone\nbob %s\n", KEY_B);
	fclose(f);
	cr_assert_eq(kill(pid, SIGHUP), 0);
	cr_assert(out_wait(out[0], buf, sizeof(buf), &len, "key 'alice' removed"), "%s", buf);
	cr_assert(strstr(buf, "key 'bob' added"), "%s", buf);
	cr_assert_eq(http_status(port, "GET", "/sandboxes", KEY_B, NULL), 200, "the daemon runs on, bob's key works");
	cr_assert_eq(http_status(port, "GET", "/sandboxes", KEY_A, NULL), 401);
	cr_assert_eq(http_status(port, "POST", "/sandboxes", KEY_B, "{\"templateID\":\"late\"}"), 400);
	/* built beside, renamed in: the directory's mtime changes */
	char from[128], to[128];
	fake_template(d, "late", 64, 1, true);
	snprintf(from, sizeof(from), "%s/late", d);
	snprintf(to, sizeof(to), "%s/late", tdir);
	cr_assert_eq(rename(from, to), 0);
	snprintf(spec, sizeof(spec), "template late added (%s)", to);
	cr_assert(out_wait(out[0], buf, sizeof(buf), &len, spec), "%s", buf);
	cr_assert_eq(http_status(port, "POST", "/sandboxes", KEY_B, "{\"templateID\":\"late\"}"), 500, "the start failed");
	cr_assert_eq(kill(pid, SIGTERM), 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	close(out[0]);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	cr_assert_eq(system(cmd), 0);
}
