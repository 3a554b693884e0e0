/*
 * `padcell serve`'s spawner (vmm/serve/spawner.c): its request check (sizes, magic, strings, ops,
 * ids, templates, pids) and a real spawner process driven through the daemon's client: a start
 * execs the configured program with the sandbox's paths, alive and stop act on it, and a stop of
 * a process that is not one of its monitors is refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/proc.h"
#include "vmm/mcp/spawner.h"
#include "vmm/serve/spawner.h"

static struct serve_template tmpls[] = { { .name = "base", .dir = "/nonexistent/base" } };
static struct spawner_conf conf = { .state_dir = "/tmp/st", .tmpl = tmpls, .ntmpl = 1, .padcell = "/bin/false" };

static struct spawner_req good_start(void)
{
	struct spawner_req q = { .magic = SPAWNER_MAGIC, .op = SPAWNER_START, .tag = 7 };
	snprintf(q.id, sizeof(q.id), "0123456789abcdef0123");
	snprintf(q.tmpl, sizeof(q.tmpl), "base");
	return q;
}

static int check(const void *msg, size_t len, char *err)
{
	struct spawner_req out;
	return spawner_req_check(&conf, msg, len, &out, err, 256);
}

Test(spawner_req, a_good_start_passes)
{
	struct spawner_req q = good_start(), out;
	char err[256] = "";
	cr_assert_eq(spawner_req_check(&conf, &q, sizeof(q), &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(out.tag, 7);
	q.resume = 1;
	q.tmpl[0] = '\0'; /* a resume names no template: the snapshot is the sandbox's own */
	cr_assert_eq(check(&q, sizeof(q), err), 0, "%s", err);
}

Test(spawner_req, wrong_sizes_are_refused)
{
	struct spawner_req q = good_start();
	char big[sizeof(q) + 64];
	memset(big, 0, sizeof(big));
	memcpy(big, &q, sizeof(q));
	char err[256];
	cr_assert_eq(check(&q, sizeof(q) - 1, err), -EINVAL);
	cr_assert(strstr(err, "bytes"), "%s", err);
	cr_assert_eq(check(big, sizeof(big), err), -EINVAL, "an oversized message");
	cr_assert_eq(check(&q, 0, err), -EINVAL);
}

Test(spawner_req, malformed_fields_are_refused)
{
	char err[256];
	struct spawner_req q = good_start();
	q.magic = 0;
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL);
	q = good_start();
	q.op = 99;
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL);
	cr_assert(strstr(err, "unknown request"), "%s", err);
	q = good_start();
	memset(q.tmpl, 'a', sizeof(q.tmpl)); /* no terminator */
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL);
	q = good_start();
	memset(q.id, 'a', sizeof(q.id));
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL);
	const char *bad_ids[] = { "0123456789ABCDEF0123", "0123456789abcdef012", "../../../../etc/pass", "0123456789abcdef012/" };
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		q = good_start();
		snprintf(q.id, sizeof(q.id), "%s", bad_ids[i]);
		cr_assert_eq(check(&q, sizeof(q), err), -EINVAL, "id '%s' passed", bad_ids[i]);
	}
	q = good_start();
	q.resume = 2;
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL);
}

Test(spawner_req, unknown_template_is_refused)
{
	char err[256];
	struct spawner_req q = good_start();
	snprintf(q.tmpl, sizeof(q.tmpl), "../base");
	cr_assert_eq(check(&q, sizeof(q), err), -ENOENT, "unknown (the spawner then reads its templates directory again)");
	cr_assert(strstr(err, "no template"), "%s", err);
}

Test(spawner_req, stop_and_alive_need_a_pid_and_start)
{
	char err[256];
	struct spawner_req q = { .magic = SPAWNER_MAGIC, .op = SPAWNER_STOP, .pid = 1, .start_time = 5 };
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL, "pid 1 is never a sandbox");
	q.pid = 1234;
	q.start_time = 0;
	cr_assert_eq(check(&q, sizeof(q), err), -EINVAL);
	q.op = SPAWNER_ALIVE;
	q.start_time = 9;
	cr_assert_eq(check(&q, sizeof(q), err), 0, "%s", err);
}

/*
 * A real spawner whose "padcell" is /bin/sh: `sh restore --from ... --vsock STATE/run/ID/vsock ...`
 * runs the script ./restore of the working directory, which waits on a sleep, so the process has a
 * monitor's command line.
 */
Test(spawner_proc, start_alive_stop_and_a_refused_stop)
{
	char dir[] = "/tmp/padcell-spawner-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(chdir(dir), 0);
	FILE *f = fopen("restore", "w");
	cr_assert_not_null(f);
	/* a TERM ends the sleep too: nothing is left running */
	fprintf(f, "trap 'kill $!; exit 0' TERM\nsleep 60 &\nwait\n");
	fclose(f);
	char state[256], run[300], sb[340], log[360];
	snprintf(state, sizeof(state), "%s/st", dir);
	snprintf(run, sizeof(run), "%s/run", state);
	snprintf(sb, sizeof(sb), "%s/0123456789abcdef0123", run);
	cr_assert_eq(mkdir(state, 0700), 0);
	cr_assert_eq(mkdir(run, 0700), 0);
	cr_assert_eq(mkdir(sb, 0700), 0);
	static struct spawner_conf c;
	c = (struct spawner_conf){ .state_dir = state, .tmpl = tmpls, .ntmpl = 1, .padcell = "/bin/sh" };
	int fd;
	pid_t sp;
	char err[256];
	cr_assert_eq(spawner_fork(&c, &fd, &sp, err, sizeof(err)), 0, "%s", err);
	struct spawner_client cl;
	spawner_client_init(&cl, fd);

	pid_t pid = 0;
	unsigned long long start = 0;
	int pidfd = -1;
	cr_assert_eq(spawner_start(&cl, "0123456789abcdef0123", "nope", false, &pid, &start, &pidfd, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "no template"), "%s", err);
	cr_assert_eq(spawner_start(&cl, "0123456789abcdef0123", "base", false, &pid, &start, &pidfd, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert(pid > 1 && start > 0 && pidfd >= 0);
	snprintf(log, sizeof(log), "%s/log", sb);
	cr_assert_eq(access(log, F_OK), 0, "the monitor's log is made in its run directory");
	cr_assert(spawner_alive(&cl, pid, start));
	cr_assert_not(spawner_alive(&cl, pid, start + 1), "another start time is another process");

	/* a process of ours that is no monitor: the spawner will not signal it */
	pid_t other = fork();
	if (other == 0) {
		execl("/bin/sleep", "sleep", "60", (char *)NULL);
		_exit(127);
	}
	unsigned long long ostart = 0;
	for (int i = 0; i < 100 && proc_start_time(other, &ostart); i++)
		usleep(10000);
	spawner_stop(&cl, other, ostart);
	cr_assert(proc_alive(other, ostart), "a stop of a process that is not a sandbox monitor is refused");
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);

	spawner_stop(&cl, pid, start);
	cr_assert_not(spawner_alive(&cl, pid, start), "stopped");
	close(pidfd);
	/* the daemon's end closed: the spawner exits */
	close(fd);
	int status = -1;
	cr_assert_eq(waitpid(sp, &status, 0), sp);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* ---- `padcell mcp`'s spawner (vmm/mcp/spawner.c): its request check ---- */

Test(mcp_spawn_req, sizes_magic_and_ops)
{
	char err[256];
	struct mcp_spawn_req q = { .magic = MCP_SPAWN_MAGIC, .op = MCP_SPAWN_BOOT }, out;
	cr_assert_eq(mcp_spawn_req_check(&q, sizeof(q), &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(out.op, MCP_SPAWN_BOOT);
	char big[sizeof(q) + 8] = { 0 };
	memcpy(big, &q, sizeof(q));
	cr_assert_eq(mcp_spawn_req_check(big, sizeof(big), &out, err, sizeof(err)), -EINVAL, "an oversized message");
	cr_assert_eq(mcp_spawn_req_check(&q, sizeof(q) - 1, &out, err, sizeof(err)), -EINVAL, "a short one");
	q.magic = 1;
	cr_assert_eq(mcp_spawn_req_check(&q, sizeof(q), &out, err, sizeof(err)), -EINVAL);
	q.magic = MCP_SPAWN_MAGIC;
	q.op = 0;
	cr_assert_eq(mcp_spawn_req_check(&q, sizeof(q), &out, err, sizeof(err)), -EINVAL);
	q.op = MCP_SPAWN_WAIT + 1;
	cr_assert_eq(mcp_spawn_req_check(&q, sizeof(q), &out, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "unknown request"), "%s", err);
}
