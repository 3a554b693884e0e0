/* The agent's process manager (protocol 4): one process owning the background processes, their output rings and the connections that drive them. */
#include "guest/agent/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/*
 * One stream's kept output: buf holds the bytes from absolute offset base on; what is older
 * has been dropped.  The buffer grows as output comes, up to AGENT_PROC_RING.
 */
struct ring {
	uint8_t *buf;
	size_t len, cap;
	uint64_t base;
};

struct proc {
	bool used, exited, pty, in_open;
	uint32_t id, how;
	int32_t code;
	pid_t pid;
	int fd[2];  /* stdout (or the PTY's master), stderr; -1 once at end of file */
	int in_fd;  /* stdin's pipe, or the master again for a PTY; -1 for none */
	uint64_t seq;
	struct ring r[2];
	struct agent_proc entry; /* its PROCS entry's tag, flags and argv (as started) */
};

#define OUTQ_CAP (2 * (AGENT_HDR_LEN + AGENT_MAX_PAYLOAD))

struct pconn {
	bool used, closing;
	int fd;
	uint8_t hdr[AGENT_HDR_LEN];
	size_t got;
	struct agent_hdr h;
	uint8_t *in;            /* the frame's payload */
	uint8_t *out;           /* frames to send */
	size_t out_len, out_off;
	uint32_t attached;      /* the process this connection streams, 0: none */
	uint64_t cur[2];        /* the next byte of each stream it is due */
	bool send_pending;      /* a SEND's bytes (in + 4 from send_off) wait to be written */
	size_t send_off;
};

static struct proc procs[AGENT_MAX_PROCS];
static size_t ring_total; /* the bytes all rings hold room for */
static struct pconn conns[AGENT_MAX_ATTACH];
static uint32_t next_id = 1;
static uint64_t next_seq;
static struct agent_start st; /* 64 KiB of pointers: static */
static uint8_t chunk[AGENT_MAX_PAYLOAD];

static struct proc *proc_find(uint32_t id)
{
	for (unsigned i = 0; i < AGENT_MAX_PROCS; i++)
		if (procs[i].used && procs[i].id == id)
			return &procs[i];
	return NULL;
}

static bool proc_attached(uint32_t id)
{
	for (unsigned i = 0; i < AGENT_MAX_ATTACH; i++)
		if (conns[i].used && conns[i].attached == id)
			return true;
	return false;
}

static void proc_free(struct proc *p)
{
	for (int s = 0; s < 2; s++) {
		if (p->fd[s] >= 0)
			close(p->fd[s]);
		free(p->r[s].buf);
		ring_total -= p->r[s].cap;
	}
	if (p->in_fd >= 0 && !p->pty)
		close(p->in_fd);
	memset(p, 0, sizeof(*p));
}

/*
 * Appends n bytes, dropping the oldest past the ring's size.  A ring grows up to AGENT_PROC_RING
 * while all rings together stay within AGENT_PROC_RING_TOTAL (the guest's memory is small); past
 * that it keeps the size it has.  What is dropped shows as a gap all the same.
 */
static void ring_append(struct ring *r, const uint8_t *p, size_t n)
{
	if (r->len + n > r->cap && r->cap < AGENT_PROC_RING) {
		size_t want = r->cap ? r->cap : 16384;
		while (want < r->len + n && want < AGENT_PROC_RING)
			want *= 2;
		if (want > AGENT_PROC_RING)
			want = AGENT_PROC_RING;
		uint8_t *nb = ring_total - r->cap + want <= AGENT_PROC_RING_TOTAL ? realloc(r->buf, want) : NULL;
		if (nb) {
			ring_total += want - r->cap;
			r->buf = nb;
			r->cap = want;
		}
	}
	if (n > r->cap) { /* only the newest r->cap bytes of these fit, if any */
		r->base += r->len + (n - r->cap);
		r->len = 0;
		p += n - r->cap;
		n = r->cap;
	}
	if (r->len + n > r->cap) {
		size_t drop = r->len + n - r->cap;
		memmove(r->buf, r->buf + drop, r->len - drop);
		r->len -= drop;
		r->base += drop;
	}
	if (n)
		memcpy(r->buf + r->len, p, n);
	r->len += n;
}

/* ---- connections ---- */

static void conn_close(struct pconn *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
}

/* Queues one frame (the queue has room: requests are read only when it is empty). */
static void conn_queue(struct pconn *c, uint16_t type, const void *p, uint32_t len)
{
	if (c->out_len + AGENT_HDR_LEN + len > OUTQ_CAP)
		return;
	agent_hdr_encode(c->out + c->out_len, len, type, 0);
	if (len)
		memcpy(c->out + c->out_len + AGENT_HDR_LEN, p, len);
	c->out_len += AGENT_HDR_LEN + len;
}

static void conn_error(struct pconn *c, bool fatal, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void conn_error(struct pconn *c, bool fatal, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	uint32_t n = agent_error_text(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_queue(c, AGENT_ERROR, msg, n);
	if (fatal)
		c->closing = true;
}

/* The table slot for a new process: a free one, or the oldest exited one nobody is attached to. */
static struct proc *proc_slot(void)
{
	struct proc *old = NULL;
	for (unsigned i = 0; i < AGENT_MAX_PROCS; i++) {
		struct proc *p = &procs[i];
		if (!p->used)
			return p;
		if (p->exited && !proc_attached(p->id) && (!old || p->seq < old->seq))
			old = p;
	}
	if (old)
		proc_free(old);
	return old;
}

/* A PTY pair: the master (close-on-exec, non-blocking) and its terminal. */
static int pty_open(int *master, int *slave, uint16_t rows, uint16_t cols)
{
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (m < 0)
		return -errno;
	int unlock = 0;
	int s = ioctl(m, TIOCSPTLCK, &unlock) < 0 ? -1 : ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		int e = errno;
		close(m);
		return -e;
	}
	struct winsize ws = { .ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80 };
	ioctl(m, TIOCSWINSZ, &ws);
	*master = m;
	*slave = s;
	return 0;
}

static void do_start(struct pconn *c)
{
	if (agent_start_decode(c->in, c->h.len, &st)) {
		conn_error(c, true, "malformed START");
		return;
	}
	for (unsigned i = 0; st.tag[0] && i < AGENT_MAX_PROCS; i++)
		if (procs[i].used && !procs[i].exited && !strcmp(procs[i].entry.tag, st.tag)) {
			conn_error(c, false, "the tag is in use by process %u", procs[i].id);
			return;
		}
	struct proc *p = proc_slot();
	if (!p) {
		conn_error(c, false, "the process table is full (%u processes running)", AGENT_MAX_PROCS);
		return;
	}
	bool pty = st.flags & AGENT_START_PTY;
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, master = -1, slave = -1;
	int rc = 0;
	if (pty)
		rc = pty_open(&master, &slave, st.rows, st.cols);
	else if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
		 ((st.flags & AGENT_START_STDIN) ? pipe2(in, O_CLOEXEC) : 0))
		rc = -errno;
	else if (in[0] < 0 && (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		rc = -errno;
	pid_t pid = rc ? -1 : fork();
	if (pid == 0) {
		if (pty)
			agent_child_exec(&st.e, slave, slave, slave, true);
		agent_child_exec(&st.e, in[0], out[1], err[1], false);
	}
	if (pid < 0 && !rc)
		rc = -errno;
	int tmp[] = { in[0], out[1], err[1], slave };
	for (unsigned i = 0; i < sizeof(tmp) / sizeof(tmp[0]); i++)
		if (tmp[i] >= 0)
			close(tmp[i]);
	if (rc) {
		int keep[] = { in[1], out[0], err[0], master };
		for (unsigned i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
			if (keep[i] >= 0)
				close(keep[i]);
		conn_error(c, false, "cannot start %s: %s", st.e.argv[0], strerror(-rc));
		return;
	}
	memset(p, 0, sizeof(*p));
	p->used = true;
	p->id = next_id++;
	if (next_id == 0)
		next_id = 1;
	p->seq = next_seq++;
	p->pid = pid;
	p->pty = pty;
	p->fd[0] = pty ? master : out[0];
	p->fd[1] = pty ? -1 : err[0];
	p->in_fd = pty ? master : in[1];
	p->in_open = p->in_fd >= 0;
	for (int s = 0; s < 2; s++)
		if (p->fd[s] >= 0)
			fcntl(p->fd[s], F_SETFL, O_NONBLOCK);
	if (p->in_fd >= 0)
		fcntl(p->in_fd, F_SETFL, O_NONBLOCK);
	memcpy(p->entry.tag, st.tag, sizeof(p->entry.tag));
	p->entry.flags = pty ? AGENT_PROC_PTY : 0;
	agent_proc_set_argv(&p->entry, st.e.argv, st.e.argc);
	uint8_t b[8];
	agent_id2_encode(b, p->id, (uint32_t)pid);
	conn_queue(c, AGENT_PROC, b, sizeof(b));
}

static void do_plist(struct pconn *c)
{
	if (c->h.len) {
		conn_error(c, true, "malformed PLIST");
		return;
	}
	size_t off = 0;
	for (unsigned i = 0; i < AGENT_MAX_PROCS; i++) {
		struct proc *p = &procs[i];
		if (!p->used)
			continue;
		struct agent_proc *e = &p->entry;
		e->id = p->id;
		e->pid = (uint32_t)p->pid;
		e->state = p->exited ? AGENT_PROC_EXITED : AGENT_PROC_RUNNING;
		e->how = p->exited ? p->how : 0;
		e->code = p->exited ? p->code : 0;
		agent_proc_encode(chunk, sizeof(chunk), &off, e); /* 64 entries always fit one frame */
	}
	if (off)
		conn_queue(c, AGENT_PROCS, chunk, (uint32_t)off);
	conn_queue(c, AGENT_PROCS, NULL, 0);
}

/* The process a request names by its first u32, or NULL with the ERROR queued. */
static struct proc *request_proc(struct pconn *c, const char *what, uint32_t id)
{
	struct proc *p = id ? proc_find(id) : NULL;
	if (!p)
		conn_error(c, false, "%s: no process %u", what, id);
	return p;
}

static void do_attach(struct pconn *c)
{
	uint32_t id;
	if (agent_u32_decode(c->in, c->h.len, &id) || !id) {
		conn_error(c, true, "malformed ATTACH");
		return;
	}
	struct proc *p = request_proc(c, "attach", id);
	if (!p)
		return;
	if (proc_attached(id)) {
		conn_error(c, false, "attach: process %u is attached on another connection", id);
		return;
	}
	conn_queue(c, AGENT_OK, NULL, 0);
	c->attached = id;
	c->cur[0] = c->cur[1] = 0; /* from the oldest byte: what was dropped shows as a GAP */
}

static void do_kill(struct pconn *c)
{
	uint32_t id, sig;
	if (agent_id2_decode(c->in, c->h.len, &id, &sig) || sig < 1 || sig > 64) {
		conn_error(c, true, "malformed KILL");
		return;
	}
	struct proc *p = request_proc(c, "kill", id);
	if (!p)
		return;
	if (p->exited) {
		conn_error(c, false, "kill: process %u has exited", id);
		return;
	}
	if (kill(-p->pid, (int)sig) < 0 && kill(p->pid, (int)sig) < 0) {
		conn_error(c, false, "kill: process %u: %s", id, strerror(errno));
		return;
	}
	conn_queue(c, AGENT_OK, NULL, 0);
}

static void do_resize(struct pconn *c)
{
	uint32_t id;
	uint16_t rows, cols;
	if (agent_resize_decode(c->in, c->h.len, &id, &rows, &cols)) {
		conn_error(c, true, "malformed RESIZE");
		return;
	}
	struct proc *p = request_proc(c, "resize", id);
	if (!p)
		return;
	if (!p->pty || p->fd[0] < 0) {
		conn_error(c, false, "resize: process %u has no terminal%s", id, p->pty ? " any more" : "");
		return;
	}
	struct winsize ws = { .ws_row = rows, .ws_col = cols };
	if (ioctl(p->fd[0], TIOCSWINSZ, &ws) < 0) {
		conn_error(c, false, "resize: %s", strerror(errno));
		return;
	}
	conn_queue(c, AGENT_OK, NULL, 0);
}

/* Closes a process's stdin: the pipe, or for a PTY the terminal's end-of-file character. */
static int proc_close_stdin(struct proc *p)
{
	p->in_open = false;
	if (!p->pty) {
		close(p->in_fd);
		p->in_fd = -1;
		return 0;
	}
	struct termios t;
	uint8_t eof = tcgetattr(p->in_fd, &t) == 0 ? t.c_cc[VEOF] : 4;
	return write(p->in_fd, &eof, 1) == 1 ? 0 : -errno;
}

static void do_send(struct pconn *c)
{
	uint32_t id;
	if (c->h.len < 4 || agent_u32_decode(c->in, 4, &id) || !id) {
		conn_error(c, true, "malformed SEND");
		return;
	}
	struct proc *p = request_proc(c, "send", id);
	if (!p)
		return;
	if (!p->in_open || p->exited) {
		conn_error(c, false, "send: process %u %s", id, p->exited ? "has exited" : "has no stdin open");
		return;
	}
	if (c->h.len == 4) {
		int rc = proc_close_stdin(p);
		if (rc)
			conn_error(c, false, "send: closing the stdin of process %u: %s", id, strerror(-rc));
		else
			conn_queue(c, AGENT_OK, NULL, 0);
		return;
	}
	c->send_pending = true;
	c->send_off = 4;
}

/* Writes what a pending SEND can; its OK (or ERROR) once done. */
static void send_progress(struct pconn *c)
{
	uint32_t id;
	agent_u32_decode(c->in, 4, &id);
	struct proc *p = proc_find(id);
	if (!p || !p->in_open || p->exited) {
		c->send_pending = false;
		conn_error(c, false, "send: process %u %s", id, p && p->exited ? "has exited" : "closed its stdin");
		return;
	}
	while (c->send_off < c->h.len) {
		ssize_t w = write(p->in_fd, c->in + c->send_off, c->h.len - c->send_off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			c->send_pending = false;
			conn_error(c, false, "send: process %u: %s", id, strerror(errno));
			return;
		}
		c->send_off += (size_t)w;
	}
	c->send_pending = false;
	conn_queue(c, AGENT_OK, NULL, 0);
}

static void conn_frame(struct pconn *c)
{
	if (c->attached) {
		conn_error(c, true, "frame type %u on an attached connection (close it to detach)", c->h.type);
		return;
	}
	switch (c->h.type) {
	case AGENT_START: do_start(c); break;
	case AGENT_PLIST: do_plist(c); break;
	case AGENT_ATTACH: do_attach(c); break;
	case AGENT_SEND: do_send(c); break;
	case AGENT_KILL: do_kill(c); break;
	case AGENT_RESIZE: do_resize(c); break;
	default:
		conn_error(c, true, "frame type %u: this connection carries only process frames now", c->h.type);
	}
}

/* Reads what has come of the next frame, serving it once whole; false when the connection ends. */
static bool conn_read(struct pconn *c)
{
	for (;;) {
		bool in_hdr = c->got < AGENT_HDR_LEN;
		uint8_t *dst = in_hdr ? c->hdr + c->got : c->in + (c->got - AGENT_HDR_LEN);
		size_t want = in_hdr ? AGENT_HDR_LEN - c->got : AGENT_HDR_LEN + c->h.len - c->got;
		ssize_t r = want ? recv(c->fd, dst, want, MSG_DONTWAIT) : 0;
		if (want && r < 0 && errno == EINTR)
			continue;
		if (want && r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		if (want && r == 0)
			return false;
		c->got += (size_t)r;
		if (in_hdr && c->got == AGENT_HDR_LEN && agent_hdr_decode(c->hdr, &c->h)) {
			conn_error(c, true, "malformed frame header");
			return true;
		}
		if (c->got >= AGENT_HDR_LEN && c->got == AGENT_HDR_LEN + c->h.len) {
			c->got = 0;
			conn_frame(c);
			return true; /* one request at a time: its answer goes out before the next is read */
		}
	}
}

/* An attached connection with an empty queue: the next GAP, output or EXIT it is due. */
static void conn_fill(struct pconn *c)
{
	struct proc *p = proc_find(c->attached);
	if (!p) {
		conn_error(c, true, "process %u left the table", c->attached);
		c->attached = 0;
		return;
	}
	for (int s = 0; s < 2; s++) {
		struct ring *r = &p->r[s];
		uint16_t type = s ? AGENT_STDERR : AGENT_STDOUT;
		if (c->cur[s] < r->base) {
			uint8_t g[12];
			agent_gap_encode(g, type, r->base - c->cur[s]);
			conn_queue(c, AGENT_GAP, g, sizeof(g));
			c->cur[s] = r->base;
			return;
		}
		uint64_t end = r->base + r->len;
		if (c->cur[s] < end) {
			uint64_t n = end - c->cur[s];
			if (n > AGENT_MAX_PAYLOAD)
				n = AGENT_MAX_PAYLOAD;
			conn_queue(c, type, r->buf + (c->cur[s] - r->base), (uint32_t)n);
			c->cur[s] += n;
			return;
		}
	}
	if (p->exited && p->fd[0] < 0 && p->fd[1] < 0) {
		uint8_t x[8];
		agent_exit_encode(x, p->how, p->code);
		conn_queue(c, AGENT_EXIT, x, sizeof(x));
		c->attached = 0;
		proc_free(p); /* collected */
	}
}

/* Sends what the queue holds; false when the connection ends. */
static bool conn_flush(struct pconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		c->out_off += (size_t)w;
	}
	c->out_len = c->out_off = 0;
	return !c->closing;
}

static void conn_add(int fd, const uint8_t *frame, size_t len)
{
	struct pconn *c = NULL;
	for (unsigned i = 0; i < AGENT_MAX_ATTACH && !c; i++)
		if (!conns[i].used)
			c = &conns[i];
	if (!c) {
		static const char msg[] = "the process manager serves 16 connections at once: try again later";
		agent_write_frame(fd, AGENT_ERROR, msg, sizeof(msg) - 1);
		close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->in = malloc(AGENT_MAX_PAYLOAD);
	c->out = malloc(OUTQ_CAP);
	if (!c->in || !c->out || len < AGENT_HDR_LEN || agent_hdr_decode(frame, &c->h) ||
	    len != AGENT_HDR_LEN + c->h.len) {
		free(c->in);
		free(c->out);
		memset(c, 0, sizeof(*c));
		close(fd);
		return;
	}
	c->used = true;
	c->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	memcpy(c->in, frame + AGENT_HDR_LEN, c->h.len);
	conn_frame(c);
}

/* ---- the loop ---- */

static void procs_reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (unsigned i = 0; i < AGENT_MAX_PROCS; i++) {
			struct proc *p = &procs[i];
			if (!p->used || p->exited || p->pid != pid)
				continue;
			p->exited = true;
			p->how = WIFSIGNALED(status) ? AGENT_SIGNALED : AGENT_EXITED;
			p->code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
			if (p->in_fd >= 0 && !p->pty)
				close(p->in_fd);
			p->in_fd = -1;
			p->in_open = false;
		}
	}
}

static void proc_read(struct proc *p, int s)
{
	for (int rounds = 0; rounds < 4; rounds++) {
		ssize_t n = read(p->fd[s], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* end of file; a PTY whose terminal is closed everywhere answers EIO */
			close(p->fd[s]);
			if (p->pty)
				p->in_fd = -1, p->in_open = false;
			p->fd[s] = -1;
			return;
		}
		ring_append(&p->r[s], chunk, (size_t)n);
	}
}

static void procs_shutdown(void)
{
	for (unsigned i = 0; i < AGENT_MAX_PROCS; i++)
		if (procs[i].used && !procs[i].exited)
			kill(-procs[i].pid, SIGKILL);
	_exit(0);
}

int procs_handoff(int ctl_fd, int conn, const struct agent_hdr *h, const uint8_t *payload)
{
	uint8_t hdr[AGENT_HDR_LEN];
	agent_hdr_encode(hdr, h->len, h->type, 0);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, h->len } };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = h->len ? 2 : 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &conn, sizeof(int));
	for (;;) {
		ssize_t w = sendmsg(ctl_fd, &m, MSG_NOSIGNAL);
		if (w >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

static void ctl_read(int ctl_fd)
{
	static uint8_t msg[AGENT_HDR_LEN + AGENT_MAX_PAYLOAD];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { msg, sizeof(msg) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg(ctl_fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
		procs_shutdown(); /* every agent end is closed: the agent is gone */
	int fd = -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (fd >= 0)
		conn_add(fd, msg, (size_t)n);
}

void procs_main(int ctl_fd)
{
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	enum { K_CTL, K_SIG, K_PROC, K_IN, K_CONN };
	struct pollfd pf[2 + AGENT_MAX_PROCS * 2 + AGENT_MAX_ATTACH * 2];
	struct { int kind; unsigned i; int s; } what[sizeof(pf) / sizeof(pf[0])];
	for (;;) {
		nfds_t n = 0;
		pf[n] = (struct pollfd){ .fd = ctl_fd, .events = POLLIN };
		what[n++].kind = K_CTL;
		pf[n] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		what[n++].kind = K_SIG;
		for (unsigned i = 0; i < AGENT_MAX_PROCS; i++)
			for (int s = 0; s < 2; s++)
				if (procs[i].used && procs[i].fd[s] >= 0) {
					pf[n] = (struct pollfd){ .fd = procs[i].fd[s], .events = POLLIN };
					what[n].kind = K_PROC, what[n].i = i, what[n++].s = s;
				}
		for (unsigned i = 0; i < AGENT_MAX_ATTACH; i++) {
			struct pconn *c = &conns[i];
			if (!c->used)
				continue;
			if (c->attached && c->out_len == 0)
				conn_fill(c);
			if (c->send_pending) {
				uint32_t id;
				agent_u32_decode(c->in, 4, &id);
				struct proc *p = proc_find(id);
				if (p && p->in_fd >= 0) {
					pf[n] = (struct pollfd){ .fd = p->in_fd, .events = POLLOUT };
					what[n].kind = K_IN, what[n++].i = i;
				} else {
					send_progress(c); /* gone: answered at once */
				}
			}
			short ev = 0;
			if (c->out_len)
				ev |= POLLOUT;
			if ((!c->out_len && !c->send_pending) || c->attached)
				ev |= POLLIN; /* attached: only to see the host hang up (or misbehave) */
			pf[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			what[n].kind = K_CONN, what[n++].i = i;
		}
		if (poll(pf, n, -1) < 0) {
			if (errno != EINTR)
				sleep(1);
			continue;
		}
		for (nfds_t k = 0; k < n; k++) {
			if (!pf[k].revents)
				continue;
			switch (what[k].kind) {
			case K_CTL:
				ctl_read(ctl_fd);
				break;
			case K_SIG: {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					if (si.ssi_signo == SIGTERM)
						procs_shutdown();
				procs_reap();
				break;
			}
			case K_PROC:
				if (procs[what[k].i].used && procs[what[k].i].fd[what[k].s] == pf[k].fd)
					proc_read(&procs[what[k].i], what[k].s);
				break;
			case K_IN:
				if (conns[what[k].i].used && conns[what[k].i].send_pending)
					send_progress(&conns[what[k].i]);
				break;
			case K_CONN: {
				struct pconn *c = &conns[what[k].i];
				if (!c->used || c->fd != pf[k].fd)
					break;
				bool alive = true;
				if (pf[k].revents & POLLOUT)
					alive = conn_flush(c);
				if (alive && (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) && (pf[k].events & POLLIN))
					alive = conn_read(c);
				if (alive && (pf[k].revents & (POLLHUP | POLLERR)) && !(pf[k].events & POLLIN))
					alive = false; /* gone while its SEND waits: nobody is left to answer */
				if (alive && c->out_len && !(pf[k].revents & POLLOUT))
					alive = conn_flush(c); /* an answer just queued: out at once when it can */
				if (!alive)
					conn_close(c);
				break;
			}
			}
		}
	}
}
