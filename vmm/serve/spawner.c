/* `padcell serve`'s spawner process (starts, signals and reaps monitors) and the daemon's client of it. */
#include "vmm/serve/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/proc.h"
#include "vmm/serve/serve_cli.h"
#include "vmm/util.h"

#define SPAWNER_GRACE_MS   10000 /* SIGTERM, then SIGKILL: as proc_stop */
#define SPAWNER_KILL_MS    5000
#define SPAWNER_PENDING    256   /* stops under way at once (more wait their turn inline) */
/* the daemon's waits for a reply: a stop can take the grace and the kill wait */
#define SPAWNER_WAIT_MS    ((SPAWNER_GRACE_MS + SPAWNER_KILL_MS) + 10000)

static bool id_ok(const char *id)
{
	for (int i = 0; i < SERVE_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return id[SERVE_ID_LEN] == '\0';
}

static const struct serve_template *tmpl_find(const struct spawner_conf *c, const char *name)
{
	for (size_t i = 0; i < c->ntmpl; i++)
		if (!strcmp(c->tmpl[i].name, name))
			return &c->tmpl[i];
	return NULL;
}

int spawner_req_check(const struct spawner_conf *c, const void *msg, size_t len, struct spawner_req *out, char *err,
		      size_t errlen)
{
	if (len != sizeof(*out))
		return errorf(err, errlen, -EINVAL, "a request of %zu bytes (not %zu)", len, sizeof(*out));
	memcpy(out, msg, sizeof(*out));
	if (out->magic != SPAWNER_MAGIC)
		return errorf(err, errlen, -EINVAL, "a request without the magic number");
	if (!memchr(out->id, '\0', sizeof(out->id)) || !memchr(out->tmpl, '\0', sizeof(out->tmpl)))
		return errorf(err, errlen, -EINVAL, "a request whose strings are not terminated");
	switch (out->op) {
	case SPAWNER_START:
		if (!id_ok(out->id))
			return errorf(err, errlen, -EINVAL, "START: a malformed sandbox id");
		if (out->resume > 1)
			return errorf(err, errlen, -EINVAL, "START: resume is neither 0 nor 1");
		if (!out->resume && !tmpl_find(c, out->tmpl))
			return errorf(err, errlen, -ENOENT, "START: no template is named '%.*s'", SERVE_NAME_MAX, out->tmpl);
		return 0;
	case SPAWNER_STOP:
	case SPAWNER_ALIVE:
		if (out->pid <= 1 || !out->start_time)
			return errorf(err, errlen, -EINVAL, "%s: pid %d start %llu", out->op == SPAWNER_STOP ? "STOP" : "ALIVE",
				      (int)out->pid, (unsigned long long)out->start_time);
		return 0;
	default: return errorf(err, errlen, -EINVAL, "an unknown request %u", out->op);
	}
}

/* ---- the spawner process ------------------------------------------------------------------- */

struct pending {
	bool used, killed;
	uint32_t tag;
	pid_t pid;
	int pidfd;
	double deadline;
};

static struct {
	struct spawner_conf *c;
	int fd;
	struct pending stop[SPAWNER_PENDING];
} SP;

static void reply(uint32_t tag, int rc, pid_t pid, unsigned long long start, int pass_fd, const char *err)
{
	struct spawner_rep r = { .magic = SPAWNER_MAGIC, .tag = tag, .rc = rc, .pid = pid, .start_time = start };
	if (err)
		snprintf(r.err, sizeof(r.err), "%s", err);
	struct iovec iov = { .iov_base = &r, .iov_len = sizeof(r) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (pass_fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof(cm.buf);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &pass_fd, sizeof(int));
	}
	while (sendmsg(SP.fd, &m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/*
 * Whether pid is a sandbox monitor of this state dir: its command line `PADCELL restore ...
 * --vsock STATE/run/ID/vsock ...`, as this spawner starts them.  A request to signal anything
 * else (a compromised daemon's) is refused.
 */
static bool is_monitor(pid_t pid)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *arg[16];
	int argc = 0;
	for (char *p = buf; p < buf + n && argc < 16; p += strlen(p) + 1)
		arg[argc++] = p;
	/* argv[1], or argv[2] under a script's interpreter (`sh SCRIPT restore ...`) */
	if (argc < 4 || (strcmp(arg[1], "restore") && strcmp(arg[2], "restore")))
		return false;
	size_t sl = strlen(SP.c->state_dir);
	for (int i = 2; i + 1 < argc; i++) {
		const char *v = arg[i + 1];
		if (strcmp(arg[i], "--vsock") || strncmp(v, SP.c->state_dir, sl) || strncmp(v + sl, "/run/", 5))
			continue;
		char id[SERVE_ID_LEN + 1];
		memcpy(id, v + sl + 5, SERVE_ID_LEN);
		id[SERVE_ID_LEN] = '\0';
		if (strlen(v + sl + 5) == SERVE_ID_LEN + strlen("/vsock") && id_ok(id) &&
		    !strcmp(v + sl + 5 + SERVE_ID_LEN, "/vsock"))
			return true;
	}
	return false;
}

/* The sandbox's directory STATE/run/ID, opened without following a link the daemon may have put there. */
static int run_dir_open(const char *id)
{
	int s = open(SP.c->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s < 0)
		return -errno;
	int r = openat(s, "run", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(s);
	if (r < 0)
		return -errno;
	int d = openat(r, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int e = errno;
	close(r);
	return d < 0 ? -e : d;
}

static void do_start(const struct spawner_req *q)
{
	char err[256];
	const struct spawner_conf *c = SP.c;
	char from[PATH_MAX], vsock[PATH_MAX], api[PATH_MAX];
	const struct serve_template *t = q->resume ? NULL : tmpl_find(c, q->tmpl);
	if (t)
		snprintf(from, sizeof(from), "%s", t->dir);
	else
		snprintf(from, sizeof(from), "%s/run/%s/snap", c->state_dir, q->id);
	snprintf(vsock, sizeof(vsock), "%s/run/%s/vsock", c->state_dir, q->id);
	snprintf(api, sizeof(api), "%s/run/%s/api", c->state_dir, q->id);
	int dfd = run_dir_open(q->id);
	if (dfd < 0) {
		snprintf(err, sizeof(err), "cannot open %s/run/%s: %s", c->state_dir, q->id, strerror(-dfd));
		return reply(q->tag, dfd, 0, 0, -1, err);
	}
	int logfd = openat(dfd, "log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	int e = errno;
	close(dfd);
	if (logfd < 0) {
		snprintf(err, sizeof(err), "cannot create %s/run/%s/log: %s", c->state_dir, q->id, strerror(e));
		return reply(q->tag, -e, 0, 0, -1, err);
	}
	/* its API socket beside the vsock one: a pause writes the snapshot through it, beneath its directory */
	const char *argv[] = { c->padcell, "restore", "--from", from, "--vsock", vsock, "--api-sock", api, NULL };
	/* closed by the child's exec (or carrying its errno): the reply names a process that runs padcell */
	int ex[2];
	if (pipe2(ex, O_CLOEXEC)) {
		e = errno;
		close(logfd);
		snprintf(err, sizeof(err), "pipe: %s", strerror(e));
		return reply(q->tag, -e, 0, 0, -1, err);
	}
	pid_t pid = fork();
	if (pid < 0) {
		e = errno;
		close(logfd);
		close(ex[0]);
		close(ex[1]);
		snprintf(err, sizeof(err), "fork: %s", strerror(e));
		return reply(q->tag, -e, 0, 0, -1, err);
	}
	if (pid == 0) {
		/* its own session, signals unblocked (the daemon blocks the stop signals), stdio the log */
		setsid();
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		int null = open("/dev/null", O_RDWR);
		dup2(null, STDIN_FILENO);
		if (!c->verbose) {
			dup2(logfd, STDOUT_FILENO);
			dup2(logfd, STDERR_FILENO);
		}
		if (ex[1] != 3) {
			dup3(ex[1], 3, O_CLOEXEC);
		}
		close_range(4, ~0u, 0);
		execv(c->padcell, (char *const *)argv);
		int ee = errno;
		if (write(3, &ee, sizeof(ee)) < 0)
			_exit(127);
		_exit(127);
	}
	close(logfd);
	close(ex[1]);
	int ee = 0;
	ssize_t en;
	while ((en = read(ex[0], &ee, sizeof(ee))) < 0 && errno == EINTR)
		;
	close(ex[0]);
	if (en == (ssize_t)sizeof(ee)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		snprintf(err, sizeof(err), "cannot execute %s: %s", c->padcell, strerror(ee));
		return reply(q->tag, -ee, 0, 0, -1, err);
	}
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	unsigned long long start = 0;
	if (pidfd < 0 || proc_start_time(pid, &start)) {
		proc_stop(pid, pidfd, 0, SPAWNER_GRACE_MS);
		if (pidfd >= 0)
			close(pidfd);
		return reply(q->tag, -ESRCH, 0, 0, -1, "the sandbox's monitor (padcell restore) ended at once");
	}
	reply(q->tag, 0, pid, start, pidfd, NULL);
	close(pidfd);
}

static void stop_done(struct pending *p)
{
	while (waitpid(p->pid, NULL, WNOHANG) < 0 && errno == EINTR)
		; /* our child: reaped; ECHILD for one an earlier daemon's spawner started */
	close(p->pidfd);
	reply(p->tag, 0, p->pid, 0, -1, NULL);
	p->used = false;
}

static void do_stop(const struct spawner_req *q)
{
	int pidfd = (int)syscall(SYS_pidfd_open, q->pid, 0);
	if (pidfd < 0)
		return reply(q->tag, -ESRCH, 0, 0, -1, NULL);
	/* the pidfd holds the process: its start time and command line are that process's */
	if (!proc_alive(q->pid, q->start_time) || !is_monitor(q->pid)) {
		close(pidfd);
		while (waitpid(q->pid, NULL, WNOHANG) < 0 && errno == EINTR)
			;
		return reply(q->tag, -ESRCH, 0, 0, -1, NULL);
	}
	struct pending *p = NULL;
	for (int i = 0; !p && i < SPAWNER_PENDING; i++)
		if (!SP.stop[i].used)
			p = &SP.stop[i];
	if (!p) { /* that many stops at once: this one inline */
		proc_stop(q->pid, pidfd, 0, SPAWNER_GRACE_MS);
		close(pidfd);
		return reply(q->tag, 0, 0, 0, -1, NULL);
	}
	syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
	*p = (struct pending){ .used = true, .tag = q->tag, .pid = q->pid, .pidfd = pidfd,
			       .deadline = now_ms() + SPAWNER_GRACE_MS };
}

static void scan_skip(void *arg, const char *line)
{
	(void)arg;
	(void)line; /* the daemon says it when it scans */
}

static void serve_one(void)
{
	unsigned char buf[sizeof(struct spawner_req) + 1];
	ssize_t n = recv(SP.fd, buf, sizeof(buf), MSG_TRUNC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
		_exit(0); /* the daemon is gone: the monitors run on, re-adopted by the next one */
	struct spawner_req q;
	char err[256];
	int rc = spawner_req_check(SP.c, buf, (size_t)n, &q, err, sizeof(err));
	if (rc == -ENOENT && SP.c->templates_dir) {
		/* a template built since: the spawner reads the templates directory itself, never the daemon's word */
		char why[PATH_MAX + 200];
		serve_templates_scan(SP.c->templates_dir, SP.c->tmpl, &SP.c->ntmpl, SP.c->max, scan_skip, NULL, why,
				     sizeof(why));
		rc = spawner_req_check(SP.c, buf, (size_t)n, &q, err, sizeof(err));
	}
	if (rc) {
		uint32_t tag = (size_t)n >= 12 ? ((struct spawner_req *)(void *)buf)->tag : 0;
		if (rc != -ENOENT)
			fprintf(stderr, "padcell: serve: spawner: refused %s\n", err);
		return reply(tag, rc, 0, 0, -1, err);
	}
	switch (q.op) {
	case SPAWNER_START: do_start(&q); break;
	case SPAWNER_STOP: do_stop(&q); break;
	case SPAWNER_ALIVE: reply(q.tag, proc_alive(q.pid, q.start_time), 0, 0, -1, NULL); break;
	}
}

static void __attribute__((noreturn)) spawner_main(void)
{
	for (;;) {
		struct pollfd p[1 + SPAWNER_PENDING];
		int map[1 + SPAWNER_PENDING], np = 1;
		p[0] = (struct pollfd){ .fd = SP.fd, .events = POLLIN };
		double now = now_ms(), next = now + 500; /* children that ended by themselves are reaped twice a second */
		for (int i = 0; i < SPAWNER_PENDING; i++) {
			if (!SP.stop[i].used)
				continue;
			p[np] = (struct pollfd){ .fd = SP.stop[i].pidfd, .events = POLLIN };
			map[np++] = i;
			if (SP.stop[i].deadline < next)
				next = SP.stop[i].deadline;
		}
		int k = poll(p, np, next > now ? (int)(next - now) + 1 : 0);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (k < 0)
			continue;
		for (int j = 1; j < np; j++) {
			struct pending *s = &SP.stop[map[j]];
			if (p[j].revents) {
				stop_done(s);
			} else if (now_ms() >= s->deadline) {
				if (s->killed) {
					stop_done(s); /* bounded, as proc_stop: the kernel's business now */
				} else {
					syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
					s->killed = true;
					s->deadline = now_ms() + SPAWNER_KILL_MS;
				}
			}
		}
		if (p[0].revents)
			serve_one();
	}
}

int spawner_fork_child(int *fd, pid_t *pid, char *err, size_t errlen)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return errorf(err, errlen, -errno, "socketpair: %s", strerror(errno));
	fflush(NULL);
	pid_t p = fork();
	if (p < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return errorf(err, errlen, -e, "cannot fork the spawner: %s", strerror(e));
	}
	if (p > 0) {
		close(sv[1]);
		*fd = sv[0];
		*pid = p;
		return 0;
	}
	/* only its end of the channel and stdio: nothing of the server's (a listener, a key) */
	if (sv[1] != 3) {
		dup2(sv[1], 3);
		close(sv[1]);
	}
	close_range(4, ~0u, 0);
	prctl(PR_SET_NAME, "padcell-spawner", 0, 0, 0);
	/* nothing it runs gains privileges by exec; no core file of it; it ends with its server */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	*fd = 3;
	return 1;
}

int spawner_fork(struct spawner_conf *c, int *fd, pid_t *pid, char *err, size_t errlen)
{
	int rc = spawner_fork_child(fd, pid, err, errlen);
	if (rc == 1) {
		SP.c = c;
		SP.fd = *fd;
		spawner_main();
	}
	return rc;
}

/* ---- the daemon's client ------------------------------------------------------------------- */

struct spawner_waiter {
	struct spawner_waiter *next;
	uint32_t tag;
	bool done;
	struct spawner_rep rep;
	int fd;
};

void spawner_client_init(struct spawner_client *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
}

/* One reply off the channel (the lock not held): 1, 0 none within ms, -errno the spawner is gone. */
static int recv_one(struct spawner_client *c, int ms, struct spawner_rep *r, int *fd)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int k = poll(&p, 1, ms);
	if (k <= 0)
		return k < 0 && errno != EINTR ? -errno : 0;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = r, .iov_len = sizeof(*r) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
	ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0)
		return n < 0 ? -errno : -EPIPE;
	*fd = -1;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS && h->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(h), sizeof(int));
	if (n != (ssize_t)sizeof(*r) || r->magic != SPAWNER_MAGIC) {
		if (*fd >= 0)
			close(*fd);
		return -EPROTO;
	}
	return 1;
}

static void waiter_unlink(struct spawner_client *c, struct spawner_waiter *w)
{
	for (struct spawner_waiter **p = &c->waiters; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			return;
		}
}

/* A request and its reply: whichever waiting thread holds the reader's role hands out every reply. */
static int call(struct spawner_client *c, struct spawner_req *q, struct spawner_rep *r, int *fd)
{
	struct spawner_waiter w = { .fd = -1 };
	q->magic = SPAWNER_MAGIC;
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return -EPIPE;
	}
	q->tag = w.tag = ++c->next_tag;
	w.next = c->waiters;
	c->waiters = &w;
	ssize_t n;
	while ((n = send(c->fd, q, sizeof(*q), MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	int rc = n == (ssize_t)sizeof(*q) ? 0 : -EPIPE;
	double deadline = now_ms() + SPAWNER_WAIT_MS;
	while (!rc && !w.done) {
		if (c->dead) {
			rc = -EPIPE;
		} else if (now_ms() >= deadline) {
			rc = -ETIMEDOUT;
		} else if (!c->reading) {
			c->reading = true;
			pthread_mutex_unlock(&c->lock);
			struct spawner_rep got;
			int gfd = -1;
			int k = recv_one(c, 500, &got, &gfd);
			pthread_mutex_lock(&c->lock);
			c->reading = false;
			if (k < 0 && k != -EPROTO)
				c->dead = true;
			if (k == 1) {
				struct spawner_waiter *to = c->waiters;
				while (to && to->tag != got.tag)
					to = to->next;
				if (to) {
					to->rep = got;
					to->fd = gfd;
					to->done = true;
				} else if (gfd >= 0) {
					close(gfd); /* its caller gave up waiting */
				}
			}
			pthread_cond_broadcast(&c->cond);
		} else {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 500 * 1000000L;
			if (ts.tv_nsec >= 1000000000L)
				ts.tv_sec++, ts.tv_nsec -= 1000000000L;
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
	}
	waiter_unlink(c, &w);
	pthread_mutex_unlock(&c->lock);
	if (rc) {
		if (w.fd >= 0)
			close(w.fd);
		return rc;
	}
	*r = w.rep;
	if (fd)
		*fd = w.fd;
	else if (w.fd >= 0)
		close(w.fd);
	return 0;
}

int spawner_start(struct spawner_client *c, const char *id, const char *tmpl, bool resume, pid_t *pid,
		  unsigned long long *start_time, int *pidfd, char *err, size_t errlen)
{
	struct spawner_req q = { .op = SPAWNER_START, .resume = resume };
	snprintf(q.id, sizeof(q.id), "%s", id);
	snprintf(q.tmpl, sizeof(q.tmpl), "%s", tmpl);
	struct spawner_rep r;
	int fd = -1;
	int rc = call(c, &q, &r, &fd);
	if (rc)
		return errorf(err, errlen, rc, "the spawner process does not answer: %s", strerror(-rc));
	if (r.rc) {
		if (fd >= 0)
			close(fd);
		r.err[sizeof(r.err) - 1] = '\0';
		return errorf(err, errlen, r.rc < 0 ? r.rc : -EIO, "%s", r.err[0] ? r.err : strerror(-r.rc));
	}
	if (fd < 0)
		return errorf(err, errlen, -EPROTO, "the spawner sent no pidfd for the sandbox's monitor");
	*pid = r.pid;
	*start_time = r.start_time;
	*pidfd = fd;
	return 0;
}

void spawner_stop(struct spawner_client *c, pid_t pid, unsigned long long start_time)
{
	if (pid <= 1 || !start_time)
		return;
	struct spawner_req q = { .op = SPAWNER_STOP, .pid = pid, .start_time = start_time };
	struct spawner_rep r;
	call(c, &q, &r, NULL);
}

bool spawner_alive(struct spawner_client *c, pid_t pid, unsigned long long start_time)
{
	if (pid <= 1 || !start_time)
		return false;
	struct spawner_req q = { .op = SPAWNER_ALIVE, .pid = pid, .start_time = start_time };
	struct spawner_rep r;
	/* a spawner that does not answer: alive, so nothing is forgotten that still runs */
	return call(c, &q, &r, NULL) ? true : r.rc == 1;
}
