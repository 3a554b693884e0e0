/*
 * The real spawner: a `padcell restore --from TEMPLATE --vsock RUN/ID/vsock` in its own session
 * (so the daemon's end, or a terminal's ^C, does not take it along), jailed as every monitor is,
 * started, signalled and reaped by the spawner process (vmm/serve/spawner.c) on the daemon's
 * request; ready when its agent answers HELLO and takes SYNC.  The daemon runs no guest code.
 */
#include "vmm/serve/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/api/api_client.h"
#include "vmm/agent/agent_client.h"
#include "vmm/err.h"
#include "vmm/serve/spawner.h"
#include "vmm/util.h"

/* The last line the monitor wrote to its log (its one-line error), for an error message: the log goes with the run directory. */
static void log_last_line(const char *log, char *out, size_t len)
{
	out[0] = '\0';
	int fd = open(log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[2048];
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	char *line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	text_escape(out, len, line, strlen(line), 0);
}

static int spawn_start(void *ctx, const struct serve_template *t, struct serve_sandbox *sb,
		       int (*launched)(void *arg, const struct serve_sandbox *sb), void *arg, char *err, size_t errlen)
{
	struct serve_spawn_opts *o = ctx;
	char log[PATH_MAX + 8];
	snprintf(log, sizeof(log), "%s/log", sb->dir);
	double t0 = now_ms();
	/* the spawner process execs the monitor (this daemon cannot): the request names the sandbox
	 * and its template, the spawner makes every path from its own state dir and template list */
	pid_t pid = 0;
	int pidfd = -1;
	int rc = spawner_start(o->rpc, sb->id, t->name, t->resume, &pid, &sb->start_time, &pidfd, err, errlen);
	if (rc)
		return rc;
	sb->pid = pid;
	if ((rc = launched(arg, sb))) {
		errorf(err, errlen, rc, "cannot record the sandbox's process: %s", strerror(-rc));
		goto fail;
	}
	/* a restored agent is listening already; its connections from before the snapshot were reset */
	double deadline = t0 + o->ready_timeout * 1e3;
	struct agent_conn c;
	/* not the daemon's signalfd: a start on another thread must not read the SIGTERM its main loop waits for */
	agent_conn_init(&c, -1, -1, pidfd);
	for (;;) {
		rc = agent_conn_open(&c, sb->vsock, AGENT_PORT, 1000, err, errlen);
		if (rc == 0 || rc == -EINTR || rc == -ECONNABORTED || now_ms() >= deadline)
			break;
		struct pollfd q = { .fd = o->quit_fd, .events = POLLIN };
		if (o->quit_fd >= 0 && poll(&q, 1, 0) > 0) {
			/* the daemon is stopping (its signal was read by its main loop, not here) */
			rc = errorf(err, errlen, -EINTR, "the daemon is stopping");
			break;
		}
	}
	struct agent_hello h;
	if (!rc && !(rc = agent_conn_hello(&c, deadline, &h, err, errlen)))
		rc = agent_conn_sync(&c, err, errlen);
	if (c.fd >= 0)
		close(c.fd);
	if (rc) {
		size_t n = strlen(err);
		if (!spawner_alive(o->rpc, pid, sb->start_time)) {
			char last[512];
			log_last_line(log, last, sizeof(last));
			snprintf(err + n, errlen - n, " (the sandbox's monitor ended%s%s)", last[0] ? ": " : "", last);
		}
		else if (rc != -EINTR)
			snprintf(err + n, errlen - n, " (the restored agent did not answer within %u s)", o->ready_timeout);
		goto fail;
	}
	close(pidfd);
	return 0;
fail:
	spawner_stop(o->rpc, pid, sb->start_time);
	close(pidfd);
	sb->pid = 0;
	return rc;
}

/* Paused, snapshotted, then ended: the snapshot is complete once the API answers 204. */
static int spawn_pause(void *ctx, const struct serve_sandbox *sb, const char *snapdir, char *err, size_t errlen)
{
	char api[PATH_MAX], state[PATH_MAX + 8], mem[PATH_MAX + 8];
	snprintf(api, sizeof(api), "%s/api", sb->dir);
	snprintf(state, sizeof(state), "%s/state", snapdir);
	snprintf(mem, sizeof(mem), "%s/mem", snapdir);
	struct serve_spawn_opts *o = ctx;
	if (!spawner_alive(o->rpc, sb->pid, sb->start_time))
		return errorf(err, errlen, -ESRCH, "the sandbox's monitor is gone");
	struct api_client c;
	int rc = api_client_connect(&c, api, err, errlen);
	if (rc)
		return rc;
	if ((rc = api_client_set_paused(&c, true, err, errlen))) {
		api_client_close(&c);
		return rc;
	}
	rc = api_client_snapshot(&c, state, mem, err, errlen);
	if (rc) {
		/* the sandbox runs on as it was */
		char rerr[256];
		api_client_set_paused(&c, false, rerr, sizeof(rerr));
		api_client_close(&c);
		return rc;
	}
	api_client_close(&c);
	spawner_stop(o->rpc, sb->pid, sb->start_time);
	return 0;
}

/* A pool clone's vCPUs parked (it costs no CPU while it waits) or let go. */
static int spawn_hold(void *ctx, const struct serve_sandbox *sb, bool paused, char *err, size_t errlen)
{
	char api[PATH_MAX];
	snprintf(api, sizeof(api), "%s/api", sb->dir);
	struct api_client c;
	int rc = api_client_connect(&c, api, err, errlen);
	if (!rc)
		rc = api_client_set_paused(&c, paused, err, errlen);
	api_client_close(&c);
	return rc;
}

static void spawn_stop(void *ctx, const struct serve_sandbox *sb)
{
	struct serve_spawn_opts *o = ctx;
	spawner_stop(o->rpc, sb->pid, sb->start_time);
}

static bool spawn_alive(void *ctx, const struct serve_sandbox *sb)
{
	struct serve_spawn_opts *o = ctx;
	return spawner_alive(o->rpc, sb->pid, sb->start_time);
}

void serve_spawner_real(struct serve_spawner *sp, struct serve_spawn_opts *o)
{
	*sp = (struct serve_spawner){ .ctx = o, .start = spawn_start, .stop = spawn_stop, .pause = spawn_pause, .hold = spawn_hold,
				  .alive = spawn_alive };
}
