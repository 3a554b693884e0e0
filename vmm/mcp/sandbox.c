/* The sandbox VM of an MCP session: a `padcell boot` its spawner starts, driven through the guest agent. */
#include "vmm/mcp/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/agent/agent_client.h"
#include "vmm/cmd/check.h"
#include "vmm/cmd/run.h"
#include "vmm/err.h"
#include "vmm/mcp/spawner.h"
#include "vmm/proc.h"
#include "vmm/util.h"

#define SANDBOX_CONNECT_MS 5000

/* The message for an agent call that failed: a lost VM says so, a stop signal ends the service. */
static int call_error(struct sandbox *sb, const struct agent_conn *c, int rc, char *err, size_t errlen)
{
	if (rc == -EINTR && c->signo > 0)
		sb->backend->stop_signo = c->signo;
	struct mcp_spawn_rep r;
	int fds[2];
	if (sb->pid > 0 && mcp_spawn_call(sb->spawner_fd, MCP_SPAWN_WAIT, &r, fds) == 0 && r.exited) {
		int st = r.status;
		sb->pid = 0;
		sb->up = false;
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, " (the sandbox VM stopped, %s %d; the next call boots a new one)",
			 WIFEXITED(st) ? "exit code" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
	return rc;
}

static void sandbox_cleanup(struct sandbox *sb)
{
	if (sb->pid > 0 || sb->dir[0]) {
		/* the spawner ends it (SIGTERM, SIGKILL after 10 s), reaps it and removes its directory */
		struct mcp_spawn_rep r;
		int fds[2];
		mcp_spawn_call(sb->spawner_fd, MCP_SPAWN_STOP, &r, fds);
		sb->pid = 0;
		sb->dir[0] = '\0';
	}
	if (sb->pidfd >= 0)
		close(sb->pidfd);
	sb->pidfd = -1;
	sb->up = false;
}

void sandbox_stop(struct sandbox *sb)
{
	sandbox_cleanup(sb);
}

/*
 * Boots the VM: a private directory, the agent's ready socket, the child, then its ready call
 * and HELLO within the boot timeout.  A stop signal or the child's end cut the wait short.
 */
static int sandbox_start(struct sandbox *sb, char *err, size_t errlen)
{
	/* the spawner process boots it (this one cannot execute anything): its directory, the agent's
	 * ready socket (listening, passed here) and the child `padcell boot` */
	double t0 = now_ms();
	struct mcp_spawn_rep r;
	int fds[2];
	int rc = mcp_spawn_call(sb->spawner_fd, MCP_SPAWN_BOOT, &r, fds);
	if (rc)
		return errorf(err, errlen, rc, "the spawner process does not answer: %s", strerror(-rc));
	if (r.rc) {
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		if (r.rc == -EBUSY)
			sandbox_cleanup(sb);
		return errorf(err, errlen, r.rc < 0 ? r.rc : -EIO, "%s", r.err);
	}
	int ready_fd = fds[0];
	pid_t pid = r.pid;
	sb->pid = pid;
	sb->pidfd = fds[1];
	snprintf(sb->dir, sizeof(sb->dir), "%s", r.dir);
	snprintf(sb->vsock, sizeof(sb->vsock), "%s/vsock", sb->dir);
	if (ready_fd < 0 || sb->pidfd < 0) {
		if (ready_fd >= 0)
			close(ready_fd);
		sandbox_cleanup(sb);
		return errorf(err, errlen, -EPROTO, "the spawner sent no ready socket or pidfd for the sandbox VM");
	}
	int code = 0;
	double deadline = t0 + sb->o.boot_timeout * 1e3;
	int conn_fd = -1;
	while (conn_fd < 0) {
		struct pollfd p[3] = { { .fd = ready_fd, .events = POLLIN }, { .fd = sb->sig_fd, .events = POLLIN },
				       { .fd = sb->pidfd, .events = POLLIN } };
		double left = deadline - now_ms();
		if (left <= 0) {
			code = errorf(err, errlen, -ETIMEDOUT, "the sandbox's agent was not ready within %u s of the boot",
				      sb->o.boot_timeout);
			break;
		}
		int n = poll(p, 3, (int)left + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			code = errorf(err, errlen, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sb->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				sb->backend->stop_signo = (int)si.ssi_signo;
				code = errorf(err, errlen, -EINTR, "stopped by signal %u while the sandbox booted", si.ssi_signo);
				break;
			}
		}
		if (p[2].revents) {
			struct mcp_spawn_rep w = { 0 };
			int wf[2];
			int st = mcp_spawn_call(sb->spawner_fd, MCP_SPAWN_WAIT, &w, wf) == 0 && w.exited ? w.status : 0;
			sb->pid = 0;
			code = errorf(err, errlen, -EIO, "the sandbox VM (padcell boot) ended before its agent was ready: %s %d%s",
				      WIFEXITED(st) ? "exit code" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
				      sb->o.verbose ? "" : " (padcell mcp --verbose shows its console)");
			break;
		}
		if (p[0].revents)
			conn_fd = accept4(ready_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	}
	close(ready_fd); /* its socket file goes with the directory */
	if (conn_fd >= 0) {
		/* The ready call: its HELLO says which agent this is; the connection is not needed after. */
		struct agent_conn c;
		struct agent_hello h;
		agent_conn_init(&c, conn_fd, sb->sig_fd, sb->pidfd);
		rc = agent_conn_hello(&c, deadline, &h, err, errlen);
		close(conn_fd);
		if (rc) {
			if (rc == -EINTR)
				sb->backend->stop_signo = c.signo;
			code = rc;
		} else if (sb->o.verbose) {
			fprintf(stderr, "padcell mcp: sandbox ready in %.0f ms\n", now_ms() - t0);
		}
	}
	if (code) {
		sandbox_cleanup(sb);
		return code;
	}
	sb->up = true;
	return 0;
}

/* A connection to the agent, with its HELLO read: 0, or -errno with err set. */
static int sandbox_conn(struct sandbox *sb, struct agent_conn *c, char *err, size_t errlen)
{
	if (!sb->up) {
		int rc = sandbox_start(sb, err, errlen);
		if (rc)
			return rc;
	}
	agent_conn_init(c, -1, sb->sig_fd, sb->pidfd);
	int rc = agent_conn_open(c, sb->vsock, AGENT_PORT, SANDBOX_CONNECT_MS, err, errlen);
	struct agent_hello h;
	if (!rc && (rc = agent_conn_hello(c, now_ms() + AGENT_REPLY_MS, &h, err, errlen))) {
		close(c->fd);
		c->fd = -1;
	}
	return rc ? call_error(sb, c, rc, err, errlen) : 0;
}

/* A memory file that takes at most cap bytes: writes past it fail (F_SEAL_GROW). */
static int bounded_memfd(size_t cap)
{
	int fd = memfd_create("padcell-mcp-out", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)cap) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* What was written to fd (from 0 to its offset), at most MCP_OUTPUT_MAX bytes of it. */
static int take_output(int fd, struct mcp_output *o)
{
	off_t end = lseek(fd, 0, SEEK_CUR);
	if (end < 0)
		return -errno;
	o->truncated = (size_t)end > MCP_OUTPUT_MAX;
	o->len = o->truncated ? MCP_OUTPUT_MAX : (size_t)end;
	o->data = malloc(o->len + 1);
	if (!o->data)
		return -ENOMEM;
	if (pread(fd, o->data, o->len, 0) != (ssize_t)o->len) {
		mcp_output_free(o);
		return -EIO;
	}
	o->data[o->len] = '\0';
	return 0;
}

static int sb_run(void *ctx, const struct mcp_run_req *req, struct mcp_run_res *res, char *err, size_t errlen)
{
	struct sandbox *sb = ctx;
	struct agent_conn c;
	int rc = sandbox_conn(sb, &c, err, errlen);
	if (rc)
		return rc;
	int out = bounded_memfd(MCP_OUTPUT_MAX + 1), errf = bounded_memfd(MCP_OUTPUT_MAX + 1);
	if (out < 0 || errf < 0) {
		rc = errorf(err, errlen, out < 0 ? out : errf, "memfd: %s", strerror(-(out < 0 ? out : errf)));
		goto done;
	}
	struct agent_exec_req r = { .argv = req->argv, .env = req->env, .cwd = req->cwd,
				    .timeout_ms = req->timeout_s * 1000u, .stdin_fd = -1 };
	struct agent_exec_result x;
	rc = agent_conn_exec(&c, &r, out, errf, &x, err, errlen);
	if (rc) {
		call_error(sb, &c, rc, err, errlen);
		goto done;
	}
	res->timed_out = x.how == AGENT_TIMEDOUT;
	res->exit_code = agent_exit_code(x.how, x.code);
	if ((rc = take_output(out, &res->out)) || (rc = take_output(errf, &res->err)))
		errorf(err, errlen, rc, "keeping the output: %s", strerror(-rc));
done:
	if (out >= 0)
		close(out);
	if (errf >= 0)
		close(errf);
	close(c.fd);
	return rc;
}

static int sb_read_file(void *ctx, const char *path, struct mcp_output *o, char *err, size_t errlen)
{
	struct sandbox *sb = ctx;
	struct agent_conn c;
	int rc = sandbox_conn(sb, &c, err, errlen);
	if (rc)
		return rc;
	int fd = memfd_create("padcell-mcp-file", MFD_CLOEXEC);
	if (fd < 0) {
		rc = errorf(err, errlen, -errno, "memfd: %s", strerror(errno));
	} else {
		c.get_max = MCP_OUTPUT_MAX;
		rc = agent_conn_get_file(&c, path, fd, err, errlen);
		if (rc == -EFBIG)
			errorf(err, errlen, rc, "%s is over 1 MiB, read_file's bound", path);
		else if (rc)
			call_error(sb, &c, rc, err, errlen);
		else if ((rc = take_output(fd, o)))
			errorf(err, errlen, rc, "keeping the file: %s", strerror(-rc));
		close(fd);
	}
	close(c.fd);
	return rc;
}

static int sb_write_file(void *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen)
{
	struct sandbox *sb = ctx;
	struct agent_conn c;
	int rc = sandbox_conn(sb, &c, err, errlen);
	if (rc)
		return rc;
	/* The parent directories first (protocol 3's MKDIR), then the file (PUT) from a memory file. */
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", path);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		rc = agent_conn_mkdir(&c, parent, 0755, true, err, errlen);
	}
	int fd = -1;
	if (!rc) {
		fd = memfd_create("padcell-mcp-file", MFD_CLOEXEC);
		if (fd < 0 || write(fd, data, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0)
			rc = errorf(err, errlen, -EIO, "memfd: %s", strerror(errno));
	}
	if (!rc)
		rc = agent_conn_put_file(&c, fd, path, 0644, err, errlen);
	if (rc && rc != -EIO)
		call_error(sb, &c, rc, err, errlen);
	if (fd >= 0)
		close(fd);
	close(c.fd);
	return rc;
}

struct list_acc {
	struct mcp_entry *e;
	size_t n, cap;
};

static int list_each(void *arg, const struct agent_entry *e)
{
	struct list_acc *a = arg;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		struct mcp_entry *p = realloc(a->e, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		a->e = p;
		a->cap = cap;
	}
	static const struct { unsigned fmt; char c; } types[] = {
		{ S_IFREG, '-' }, { S_IFDIR, 'd' }, { S_IFLNK, 'l' }, { S_IFCHR, 'c' },
		{ S_IFBLK, 'b' }, { S_IFIFO, 'p' }, { S_IFSOCK, 's' },
	};
	struct mcp_entry *m = &a->e[a->n++];
	m->type = '?';
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((e->mode & S_IFMT) == types[i].fmt)
			m->type = types[i].c;
	m->mode = e->mode & 07777u;
	m->size = e->size;
	m->mtime_s = e->mtime_ns / 1000000000;
	snprintf(m->name, sizeof(m->name), "%s", e->name);
	return 0;
}

#define SANDBOX_LIST_MAX 100000u

static int sb_list(void *ctx, const char *path, struct mcp_entry **entries, size_t *n, char *err, size_t errlen)
{
	struct sandbox *sb = ctx;
	struct agent_conn c;
	int rc = sandbox_conn(sb, &c, err, errlen);
	if (rc)
		return rc;
	struct list_acc a = { 0 };
	c.list_max = SANDBOX_LIST_MAX;
	rc = agent_conn_list(&c, path, list_each, &a, err, errlen);
	if (rc == -ENOMEM)
		errorf(err, errlen, rc, "out of memory listing %s", path);
	else if (rc && rc != -EIO && rc != -EFBIG)
		call_error(sb, &c, rc, err, errlen);
	close(c.fd);
	if (rc) {
		free(a.e);
		return rc;
	}
	*entries = a.e;
	*n = a.n;
	return 0;
}

void sandbox_init(struct sandbox *sb, const struct sandbox_opts *o, int sig_fd, int spawner_fd, struct mcp_backend *b)
{
	memset(sb, 0, sizeof(*sb));
	sb->o = *o;
	sb->sig_fd = sig_fd;
	sb->spawner_fd = spawner_fd;
	sb->pidfd = -1;
	sb->backend = b;
	*b = (struct mcp_backend){ .ctx = sb, .run = sb_run, .read_file = sb_read_file, .write_file = sb_write_file,
				   .list = sb_list };
}
