/* Host side of the guest agent protocol: connect, HELLO, SYNC, EXEC with streams, files, poweroff. */
#include "vmm/agent/agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "vmm/err.h"
#include "vmm/util.h"

/*
 * One frame's payload (AGENT_MAX_PAYLOAD bytes), per thread: `padcell serve` runs envd calls on
 * many threads at once (a Start's stream receiving output while a SendInput on another thread
 * sends to the same process).  Only the pointer is thread-local, the buffer comes from the heap
 * on a thread's first frame and goes at its exit: a 64 KiB _Thread_local array was static TLS,
 * which every thread of the monitor (vCPUs, devices) has zeroed, so resident, on its stack.
 */
static _Thread_local uint8_t *frame_buf;
static pthread_key_t frame_key;
static pthread_once_t frame_once = PTHREAD_ONCE_INIT;
static bool frame_key_ok;

static void frame_key_make(void)
{
	frame_key_ok = pthread_key_create(&frame_key, free) == 0;
}

/* 0 once this thread has its frame_buf, else -ENOMEM. */
static int frame_buf_alloc(void)
{
	if (frame_buf)
		return 0;
	pthread_once(&frame_once, frame_key_make);
	if (!frame_key_ok || !(frame_buf = malloc(AGENT_MAX_PAYLOAD)))
		return -ENOMEM;
	if (pthread_setspecific(frame_key, frame_buf)) {
		free(frame_buf);
		frame_buf = NULL;
		return -ENOMEM;
	}
	return 0;
}

void agent_conn_init(struct agent_conn *c, int fd, int sig_fd, int abort_fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->sig_fd = sig_fd;
	c->abort_fd = abort_fd;
	c->frame_ms = AGENT_FRAME_MS;
	c->reply_ms = AGENT_REPLY_MS;
	c->grace_ms = AGENT_SIGNAL_GRACE_MS;
	c->slack_ms = AGENT_TIMEOUT_SLACK_MS;
	c->get_max = AGENT_GET_MAX_DEFAULT;
	c->list_max = AGENT_LIST_MAX_DEFAULT;
}

#define CONN_POLL_MAX 6

/*
 * The one wait of this client: until one of p[0..n) has its events, a stop signal arrives on
 * c->sig_fd (-EINTR, c->signo set), c->abort_fd is readable and none of p is (-ECONNABORTED), or
 * deadline (now_ms(); 0: none) passes (-ETIMEDOUT).  A signal wins over ready fds, so a stream
 * that never pauses cannot starve it.  Returns how many of p are ready, with their revents.
 */
static int conn_poll(struct agent_conn *c, struct pollfd *p, int n, double deadline)
{
	struct pollfd all[CONN_POLL_MAX];
	if (n)
		memcpy(all, p, (size_t)n * sizeof(*p));
	int i_sig = n, i_abort = n + 1;
	all[i_sig] = (struct pollfd){ .fd = c->sig_fd, .events = POLLIN };     /* poll skips a negative fd */
	all[i_abort] = (struct pollfd){ .fd = c->abort_fd, .events = POLLIN };
	for (;;) {
		int timeout = -1;
		if (deadline > 0) {
			double left = deadline - now_ms();
			timeout = left <= 0 ? 0 : (int)left + 1;
		}
		int k = poll(all, (nfds_t)n + 2, timeout);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (all[i_sig].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(c->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				c->signo = (int)si.ssi_signo;
				return -EINTR;
			}
		}
		int ready = 0;
		for (int i = 0; i < n; i++) {
			p[i].revents = all[i].revents;
			ready += p[i].revents != 0;
		}
		if (ready)
			return ready;
		if (all[i_abort].revents)
			return -ECONNABORTED;
		if (deadline > 0 && now_ms() >= deadline)
			return -ETIMEDOUT;
	}
}

/* A pause of ms that a stop signal or the abort fd cut short: 0 when it ran its course. */
static int conn_sleep(struct agent_conn *c, int ms)
{
	int rc = conn_poll(c, NULL, 0, now_ms() + ms);
	return rc == -ETIMEDOUT ? 0 : rc;
}

/* The message for a wait that ended early; `what` says what was being waited for. */
static int wait_error(struct agent_conn *c, int rc, const char *what, char *err, size_t errlen)
{
	if (rc == -EINTR)
		return errorf(err, errlen, rc, "stopped by signal %d while waiting for %s", c->signo, what);
	if (rc == -ECONNABORTED)
		return errorf(err, errlen, rc, "the VM stopped while padcell waited for %s", what);
	if (rc == -ETIMEDOUT)
		return errorf(err, errlen, rc, "the agent sent no %s within %d s", what, c->reply_ms / 1000);
	return errorf(err, errlen, rc, "waiting for %s: %s", what, strerror(-rc));
}

/* One CONNECT attempt: the fd, -EAGAIN when the guest refused or the VM is not up yet, -errno. */
static int connect_once(struct agent_conn *c, const char *path, uint32_t port, double deadline, char *err,
			size_t errlen)
{
	enum unix_step at;
	/* Non-blocking: a listener that never accepts (its backlog full) must not hold connect(). */
	int fd = unix_connect(path, SOCK_NONBLOCK, &at);
	if (fd < 0) {
		if (at == UNIX_STEP_PATH)
			return errorf(err, errlen, fd, "socket path '%s' is too long", path);
		if (at == UNIX_STEP_SOCKET)
			return errorf(err, errlen, fd, "socket: %s", strerror(-fd));
		if (fd == -ENOENT || fd == -ECONNREFUSED)
			return errorf(err, errlen, -EAGAIN, "nothing listens on %s (is the VM running with --vsock %s?)",
				      path, path);
		if (fd == -EAGAIN)
			return errorf(err, errlen, -EAGAIN, "%s accepts no connection (its backlog is full)", path);
		return errorf(err, errlen, fd, "cannot connect to %s: %s", path, strerror(-fd));
	}
	char line[40];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
		close(fd);
		return errorf(err, errlen, -EAGAIN, "the VM closed the socket");
	}
	/* "OK <port>\n", one byte at a time: what follows is the agent's, not ours to consume. */
	size_t got = 0;
	while (got < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int rc = conn_poll(c, &p, 1, deadline);
		if (rc < 0) {
			close(fd);
			if (rc == -ETIMEDOUT)
				return errorf(err, errlen, rc, "no answer to CONNECT %u", port);
			return wait_error(c, rc, "the answer to CONNECT", err, errlen);
		}
		ssize_t r = recv(fd, line + got, 1, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			close(fd);
			return errorf(err, errlen, -EAGAIN, "the guest refused port %u (is the agent running?)", port);
		}
		if (line[got++] == '\n')
			break;
	}
	line[got] = '\0';
	if (strncmp(line, "OK ", 3) || line[got - 1] != '\n') {
		close(fd);
		char shown[4 * sizeof(line) + 4]; /* whoever listens on the socket chose these bytes */
		text_escape(shown, sizeof(shown), line, line[got - 1] == '\n' ? got - 1 : got, 0);
		return errorf(err, errlen, -EPROTO, "unexpected answer to CONNECT: '%s'", shown);
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK); /* every read and write of ours is MSG_DONTWAIT */
	return fd;
}

int agent_conn_open(struct agent_conn *c, const char *vsock_path, uint32_t port, int timeout_ms, char *err,
		    size_t errlen)
{
	double deadline = now_ms() + timeout_ms;
	for (;;) {
		int fd = connect_once(c, vsock_path, port, deadline, err, errlen);
		if (fd >= 0) {
			c->fd = fd;
			c->got = 0;
			return 0;
		}
		if (fd != -EAGAIN || now_ms() >= deadline)
			return fd;
		int rc = conn_sleep(c, 20);
		if (rc)
			return wait_error(c, rc, "the agent to listen", err, errlen);
	}
}

/*
 * Reads what has arrived of the current frame, without waiting: 1 when it is complete (c->h, its
 * payload in frame_buf), 0 when more is due, -EPIPE at a clean end of stream before a frame,
 * -EPROTO for a bad header or a frame cut short, -errno.
 */
static int conn_recv(struct agent_conn *c)
{
	if (frame_buf_alloc())
		return -ENOMEM;
	for (;;) {
		if (c->got >= AGENT_HDR_LEN && c->got == AGENT_HDR_LEN + c->h.len) {
			c->got = 0;
			return 1;
		}
		bool in_hdr = c->got < AGENT_HDR_LEN;
		uint8_t *dst = in_hdr ? c->hdr + c->got : frame_buf + (c->got - AGENT_HDR_LEN);
		size_t want = in_hdr ? AGENT_HDR_LEN - c->got : AGENT_HDR_LEN + c->h.len - c->got;
		ssize_t r = recv(c->fd, dst, want, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		if (r == 0)
			return c->got ? -EPROTO : -EPIPE;
		if (c->got == 0)
			c->frame_t0 = now_ms();
		c->got += (size_t)r;
		if (in_hdr && c->got == AGENT_HDR_LEN && agent_hdr_decode(c->hdr, &c->h))
			return -EPROTO;
	}
}

/* When the frame being received must be complete; 0 when none is under way. */
static double conn_frame_deadline(const struct agent_conn *c)
{
	return c->got ? c->frame_t0 + c->frame_ms : 0;
}

/* The message for conn_recv's errors, and ERROR frames turned into theirs. */
static int frame_error(struct agent_conn *c, int rc, char *err, size_t errlen)
{
	if (rc == -EPIPE)
		return errorf(err, errlen, -EPIPE, "the agent closed the connection");
	if (rc == -EPROTO)
		return errorf(err, errlen, -EPROTO, "malformed frame from the agent (a bad header or a frame cut short)");
	if (rc == -ETIMEDOUT)
		return errorf(err, errlen, rc, "the agent sent %zu bytes of a frame and then nothing for %d s", c->got,
			      c->frame_ms / 1000);
	return errorf(err, errlen, rc, "reading from the agent: %s", strerror(-rc));
}

/*
 * The agent's own words, made safe for the terminal (util.h text_escape): one line, escapes for
 * control bytes and bad UTF-8, at most AGENT_ERROR_SHOWN bytes of it.
 */
#define AGENT_ERROR_SHOWN 400
static int error_frame(const struct agent_conn *c, char *err, size_t errlen)
{
	char shown[AGENT_ERROR_SHOWN + 1];
	text_escape(shown, sizeof(shown), frame_buf, c->h.len, 0);
	return errorf(err, errlen, -EIO, "the agent says: %s", shown);
}

/*
 * Reads one frame whose first byte must come before deadline (0: none), turning ERROR into its
 * message; what names the frame for a wait that ends early.
 */
static int read_frame(struct agent_conn *c, double deadline, const char *what, char *err, size_t errlen)
{
	for (;;) {
		int rc = conn_recv(c);
		if (rc == 1)
			return c->h.type == AGENT_ERROR ? error_frame(c, err, errlen) : 0;
		if (rc < 0)
			return frame_error(c, rc, err, errlen);
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		double fd_deadline = conn_frame_deadline(c);
		rc = conn_poll(c, &p, 1, fd_deadline ? fd_deadline : deadline);
		if (rc == -ETIMEDOUT && fd_deadline)
			return frame_error(c, rc, err, errlen);
		if (rc < 0)
			return wait_error(c, rc, what, err, errlen);
	}
}

/* A reply: its first byte within reply_ms. */
static int read_reply(struct agent_conn *c, const char *what, char *err, size_t errlen)
{
	return read_frame(c, now_ms() + c->reply_ms, what, err, errlen);
}

static int expect_ok(struct agent_conn *c, const char *what, char *err, size_t errlen)
{
	int rc = read_reply(c, what, err, errlen);
	if (rc)
		return rc;
	if (c->h.type != AGENT_OK || c->h.len)
		return errorf(err, errlen, -EPROTO, "the agent answered frame type %u where OK was due", c->h.type);
	return 0;
}

/* Sends one frame, all of it taken by the agent within reply_ms. */
static int send_frame(struct agent_conn *c, uint16_t type, const void *p, uint32_t len, char *err, size_t errlen)
{
	uint8_t hdr[AGENT_HDR_LEN];
	agent_hdr_encode(hdr, len, type, 0);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)p, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	double deadline = now_ms() + c->reply_ms;
	while (m.msg_iovlen) {
		ssize_t w = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return errorf(err, errlen, -errno, "writing to the agent: %s", strerror(errno));
		if (w < 0) {
			struct pollfd pf = { .fd = c->fd, .events = POLLOUT };
			int rc = conn_poll(c, &pf, 1, deadline);
			if (rc == -ETIMEDOUT)
				return errorf(err, errlen, rc, "the agent took nothing of a frame padcell sent for %d s",
					      c->reply_ms / 1000);
			if (rc < 0)
				return wait_error(c, rc, "the agent to read", err, errlen);
			continue;
		}
		while (m.msg_iovlen && (size_t)w >= m.msg_iov->iov_len) {
			w -= (ssize_t)m.msg_iov->iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen) {
			m.msg_iov->iov_base = (uint8_t *)m.msg_iov->iov_base + w;
			m.msg_iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int agent_conn_hello(struct agent_conn *c, double deadline, struct agent_hello *out, char *err, size_t errlen)
{
	int rc = read_frame(c, deadline, "the agent's HELLO", err, errlen);
	if (rc == -ETIMEDOUT && !c->got)
		return errorf(err, errlen, rc, "the agent sent no HELLO in time");
	if (rc)
		return rc;
	if (c->h.type != AGENT_HELLO || agent_hello_decode(frame_buf, c->h.len, out))
		return errorf(err, errlen, -EPROTO, "the guest did not greet with the agent's HELLO (not padcell-agent?)");
	if (out->version < AGENT_PROTO_MIN || out->version > AGENT_PROTO_VERSION)
		return errorf(err, errlen, -EPROTO, "the guest agent speaks protocol version %u, this padcell %u: "
			      "rebuild the image with this padcell's agent", out->version, AGENT_PROTO_VERSION);
	c->version = out->version;
	return 0;
}

int agent_conn_sync(struct agent_conn *c, char *err, size_t errlen)
{
	struct agent_sync s;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s.realtime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	if (getrandom(s.seed, sizeof(s.seed), 0) != (ssize_t)sizeof(s.seed))
		return errorf(err, errlen, -EIO, "getrandom: %s", strerror(errno));
	uint8_t b[AGENT_SYNC_LEN];
	agent_sync_encode(b, &s);
	int rc = send_frame(c, AGENT_SYNC, b, sizeof(b), err, errlen);
	return rc ? rc : expect_ok(c, "the answer to SYNC", err, errlen);
}

/*
 * Frames waiting to go to the agent: at most one STDIN frame and a few SIGNALs.  The connection is
 * only ever written when poll says it has room (MSG_DONTWAIT), so padcell keeps reading the
 * agent's output while its own sends wait: neither side can end up blocked writing to the other.
 */
#define OUTQ_SIGNALS 32
struct outq {
	uint8_t buf[AGENT_HDR_LEN + AGENT_MAX_PAYLOAD + OUTQ_SIGNALS * (AGENT_HDR_LEN + 4)];
	size_t off, len;
};

static bool outq_add(struct outq *q, uint16_t type, const void *p, uint32_t len)
{
	if (q->off == q->len)
		q->off = q->len = 0;
	if (AGENT_HDR_LEN + (size_t)len > sizeof(q->buf) - q->len)
		return false;
	agent_hdr_encode(q->buf + q->len, len, type, 0);
	if (len)
		memcpy(q->buf + q->len + AGENT_HDR_LEN, p, len);
	q->len += AGENT_HDR_LEN + len;
	return true;
}

static int outq_flush(int fd, struct outq *q)
{
	while (q->off < q->len) {
		ssize_t w = send(fd, q->buf + q->off, q->len - q->off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		q->off += (size_t)w;
	}
	return 0;
}

/*
 * Output on its way to one of the host's fds.  Written only when poll says the fd has room, and
 * then at most PIPE_BUF bytes at a time to anything but a regular file — a pipe with room takes
 * that much without blocking — so a reader that stops (`| less` left alone) holds the output
 * back, never padcell's waits.  While a frame's payload waits here no further frame is read: the
 * agent, and the command behind it, are held back in turn.
 */
struct hostout {
	int fd;
	bool ok;      /* false once a write failed (a closed pipe): the rest is dropped */
	bool regular; /* a file: never blocks, written in one go */
	int error;    /* errno of the failed write */
	const uint8_t *p;
	size_t len;
};

static void hostout_init(struct hostout *o, int fd)
{
	struct stat st;
	o->fd = fd;
	o->ok = true;
	o->error = 0;
	o->regular = fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
	o->len = 0;
}

static void hostout_write(struct hostout *o)
{
	while (o->len) {
		size_t n = o->regular || o->len < PIPE_BUF ? o->len : PIPE_BUF;
		ssize_t w = write(o->fd, o->p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w <= 0) {
			o->error = w < 0 ? errno : EIO;
			o->ok = false; /* a closed host stdout (head) must not stop the command's stderr */
			o->len = 0;
			return;
		}
		o->p += w;
		o->len -= (size_t)w;
		if (!o->regular)
			return; /* back to poll before the next chunk */
	}
}

/* Handles a frame of a running command: 1 when it was EXIT (res filled), 0 to go on, -errno. */
static int exec_frame(struct agent_conn *c, struct hostout *out, struct hostout *errout, uint32_t *in_flight,
		      struct agent_exec_result *res, char *err, size_t errlen)
{
	switch (c->h.type) {
	case AGENT_STDOUT:
	case AGENT_STDERR: {
		struct hostout *o = c->h.type == AGENT_STDOUT ? out : errout;
		if (o->ok && c->h.len) {
			o->p = frame_buf;
			o->len = c->h.len;
		}
		return 0;
	}
	case AGENT_STDIN_ACK: {
		uint32_t acked;
		if (agent_u32_decode(frame_buf, c->h.len, &acked) || acked > *in_flight)
			return errorf(err, errlen, -EPROTO, "malformed STDIN_ACK from the agent");
		*in_flight -= acked;
		return 0;
	}
	case AGENT_EXIT: {
		uint32_t how;
		int32_t code;
		if (agent_exit_decode(frame_buf, c->h.len, &how, &code))
			return errorf(err, errlen, -EPROTO, "malformed EXIT from the agent");
		res->how = (int)how;
		res->code = code;
		return 1;
	}
	case AGENT_ERROR:
		return error_frame(c, err, errlen);
	default:
		return errorf(err, errlen, -EPROTO, "unexpected frame type %u from the agent", c->h.type);
	}
}

/* The earlier of two deadlines, either of which may be unset (0). */
static double earliest(double a, double b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

int agent_exit_code(int how, int code)
{
	switch (how) {
	case AGENT_EXITED: return code;
	case AGENT_SIGNALED: return 128 + code;
	case AGENT_TIMEDOUT: return AGENT_CODE_TIMEDOUT;
	default: return AGENT_CODE_FAILED;
	}
}

int agent_conn_exec(struct agent_conn *c, const struct agent_exec_req *req, int out_fd, int err_fd,
		    struct agent_exec_result *res, char *err, size_t errlen)
{
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_exec_encode(frame_buf, AGENT_MAX_PAYLOAD, (const char *const *)req->argv,
				  (const char *const *)req->env, req->cwd, req->user, req->timeout_ms,
				  req->stdin_fd >= 0 ? AGENT_EXEC_STDIN : 0);
	if (n < 0)
		return errorf(err, errlen, n, n == -E2BIG ? "the command and its environment are over %u bytes"
							 : "the command is empty or an --env entry has no '='",
			      AGENT_MAX_PAYLOAD);
	int rc = send_frame(c, AGENT_EXEC, frame_buf, (uint32_t)n, err, errlen);
	if (rc)
		return rc;
	int in = req->stdin_fd;
	struct hostout out, errout;
	hostout_init(&out, out_fd);
	hostout_init(&errout, err_fd);
	static struct outq q;
	q.off = q.len = 0;
	uint32_t in_flight = 0; /* stdin bytes sent and not yet acknowledged (AGENT_STDIN_WINDOW) */
	static uint8_t inbuf[AGENT_MAX_PAYLOAD];
	/* The agent enforces the timeout; this deadline is only for an agent that never reports it. */
	double timeout_at = req->timeout_ms ? now_ms() + req->timeout_ms + c->slack_ms : 0;
	double grace_at = 0;    /* set once a stop signal has been forwarded */
	int forwarded = 0;      /* that signal */
	bool can_signal = true; /* false once the agent stopped reading: a signal then ends the wait */
	for (;;) {
		struct pollfd p[3];
		int np = 0, i_conn = -1, i_in = -1, i_out = -1;
		struct hostout *pending = out.len ? &out : errout.len ? &errout : NULL;
		/* No further frame while one waits for the host's reader; the queue goes out regardless. */
		short conn_ev = (short)((pending ? 0 : POLLIN) | (q.off < q.len ? POLLOUT : 0));
		if (conn_ev) {
			i_conn = np;
			p[np++] = (struct pollfd){ .fd = c->fd, .events = conn_ev };
		}
		if (pending) {
			i_out = np;
			p[np++] = (struct pollfd){ .fd = pending->fd, .events = POLLOUT };
		}
		/* More stdin only when the last frame is out and the agent's window has room. */
		if (in >= 0 && q.off == q.len && in_flight < AGENT_STDIN_WINDOW) {
			i_in = np;
			p[np++] = (struct pollfd){ .fd = in, .events = POLLIN };
		}
		double deadline = earliest(earliest(timeout_at, grace_at), conn_frame_deadline(c));
		rc = conn_poll(c, p, np, deadline);
		if (rc == -EINTR) {
			if (forwarded || !can_signal)
				return errorf(err, errlen, rc, forwarded ? "stopped by a second signal %d" : "stopped by signal %d",
					      c->signo);
			uint8_t b[4];
			agent_u32_encode(b, (uint32_t)c->signo);
			outq_add(&q, AGENT_SIGNAL, b, 4);
			forwarded = c->signo;
			grace_at = now_ms() + c->grace_ms;
			continue;
		}
		if (rc == -ETIMEDOUT) {
			double now = now_ms();
			if (grace_at && now >= grace_at) {
				c->signo = forwarded;
				return errorf(err, errlen, -EINTR, "stopped by signal %d: the command did not end within %d s of it",
					      forwarded, c->grace_ms / 1000);
			}
			if (conn_frame_deadline(c) && now >= conn_frame_deadline(c))
				return frame_error(c, rc, err, errlen);
			if (timeout_at && now >= timeout_at) {
				res->how = AGENT_TIMEDOUT;
				res->code = 0;
				return 0;
			}
			continue;
		}
		if (rc == -ECONNABORTED)
			return errorf(err, errlen, rc, "the VM stopped while the command ran");
		if (rc < 0)
			return errorf(err, errlen, rc, "poll: %s", strerror(-rc));
		if (i_out >= 0 && p[i_out].revents)
			hostout_write(pending);
		if (i_in >= 0 && p[i_in].revents) {
			size_t room = AGENT_STDIN_WINDOW - in_flight;
			ssize_t r = read(in, inbuf, room < sizeof(inbuf) ? room : sizeof(inbuf));
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (r <= 0)
				in = -1; /* end of input (or an unreadable stdin): tell the command */
			outq_add(&q, AGENT_STDIN, inbuf, r > 0 ? (uint32_t)r : 0);
			if (r > 0)
				in_flight += (uint32_t)r;
		}
		if (q.off < q.len && outq_flush(c->fd, &q)) {
			/* The agent stopped reading (it may have sent EXIT and closed): what it sent still
			 * decides the outcome, so read on instead of failing here. */
			q.off = q.len = 0;
			in = -1;
			can_signal = false;
		}
		if (i_conn >= 0 && (conn_ev & POLLIN) && (p[i_conn].revents & (POLLIN | POLLHUP | POLLERR))) {
			/* Every whole frame that is here, until one's output has to wait for the host. */
			while (!out.len && !errout.len) {
				rc = conn_recv(c);
				if (rc == 0)
					break;
				if (rc < 0)
					return frame_error(c, rc, err, errlen);
				rc = exec_frame(c, &out, &errout, &in_flight, res, err, errlen);
				if (rc)
					return rc < 0 ? rc : 0;
				hostout_write(&out); /* a file, or a pipe with room: at once */
				hostout_write(&errout);
			}
		}
	}
}

int agent_conn_put_file(struct agent_conn *c, int src_fd, const char *guest_path, unsigned mode, char *err,
			size_t errlen)
{
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_put_encode(frame_buf, AGENT_MAX_PAYLOAD, mode & 07777u, guest_path);
	if (n < 0)
		return errorf(err, errlen, -EINVAL, "guest path '%s' is not absolute, or too long", guest_path);
	int rc = send_frame(c, AGENT_PUT, frame_buf, (uint32_t)n, err, errlen);
	if (rc || (rc = expect_ok(c, "the answer to PUT", err, errlen)))
		return rc;
	static uint8_t buf[AGENT_MAX_PAYLOAD];
	for (;;) {
		/* The source may be a pipe that never ends: waiting for it stays interruptible, with no
		 * deadline (what the user feeds padcell is the user's business). */
		struct pollfd p = { .fd = src_fd, .events = POLLIN };
		rc = conn_poll(c, &p, 1, 0);
		if (rc < 0)
			return wait_error(c, rc, "the source to copy", err, errlen);
		ssize_t r = read(src_fd, buf, sizeof(buf));
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return errorf(err, errlen, -errno, "reading the source: %s", strerror(errno));
		if ((rc = send_frame(c, AGENT_DATA, buf, (uint32_t)r, err, errlen)))
			return rc;
		if (r == 0)
			break;
	}
	return expect_ok(c, "the end of the upload", err, errlen);
}

int agent_conn_get_file(struct agent_conn *c, const char *guest_path, int dst_fd, char *err, size_t errlen)
{
	size_t len = strlen(guest_path);
	if (len == 0 || len >= AGENT_MAX_PATH || guest_path[0] != '/')
		return errorf(err, errlen, -EINVAL, "guest path '%s' is not absolute, or too long", guest_path);
	int rc = send_frame(c, AGENT_GET, guest_path, (uint32_t)len, err, errlen);
	if (rc)
		return rc;
	struct hostout o;
	hostout_init(&o, dst_fd);
	uint64_t total = 0;
	for (;;) {
		if ((rc = read_reply(c, "the file's data", err, errlen)))
			return rc;
		if (c->h.type != AGENT_DATA)
			return errorf(err, errlen, -EPROTO, "unexpected frame type %u during a download", c->h.type);
		if (c->h.len == 0)
			return 0;
		/* Checked before writing: what the bound refuses never reaches the host's disk. */
		if (c->h.len > c->get_max - total)
			return errorf(err, errlen, -EFBIG, "'%s' is over %llu bytes, the bound of this copy (cp --max-size)",
				      guest_path, (unsigned long long)c->get_max);
		total += c->h.len;
		/* a file at once; stdout, maybe a pipe, as it makes room, interruptibly */
		o.p = frame_buf;
		o.len = c->h.len;
		while (o.len) {
			if (!o.regular) {
				struct pollfd p = { .fd = dst_fd, .events = POLLOUT };
				rc = conn_poll(c, &p, 1, 0);
				if (rc < 0)
					return wait_error(c, rc, "room to write the copy", err, errlen);
			}
			hostout_write(&o);
			if (!o.ok)
				return errorf(err, errlen, -o.error, "writing the copy: %s", strerror(o.error));
		}
	}
}

/* ---- file operations ---- */

/* A request's encoding failed: the message for it. */
static int fs_encode_error(int n, const char *path, char *err, size_t errlen)
{
	return errorf(err, errlen, -EINVAL, n == -E2BIG ? "guest path '%.200s...' is too long"
						  : "guest path '%.200s' is not absolute, or too long (at most %u bytes)",
		      path, AGENT_MAX_PATH - 1);
}

int agent_conn_stat(struct agent_conn *c, const char *path, struct agent_entry *out, char *err, size_t errlen)
{
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_path_encode(frame_buf, AGENT_MAX_PAYLOAD, path);
	if (n < 0)
		return fs_encode_error(n, path, err, errlen);
	int rc = send_frame(c, AGENT_STAT, frame_buf, (uint32_t)n, err, errlen);
	if (rc || (rc = read_reply(c, "the answer to STAT", err, errlen)))
		return rc;
	size_t off = 0;
	if (c->h.type != AGENT_ENTRIES || agent_entry_next(frame_buf, c->h.len, &off, out) != 1 || off != c->h.len)
		return errorf(err, errlen, -EPROTO, "malformed answer to STAT from the agent (frame type %u, %u bytes)",
			      c->h.type, c->h.len);
	return 0;
}

int agent_conn_list(struct agent_conn *c, const char *path, int (*each)(void *arg, const struct agent_entry *e),
		    void *arg, char *err, size_t errlen)
{
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_path_encode(frame_buf, AGENT_MAX_PAYLOAD, path);
	if (n < 0)
		return fs_encode_error(n, path, err, errlen);
	int rc = send_frame(c, AGENT_LIST, frame_buf, (uint32_t)n, err, errlen);
	if (rc)
		return rc;
	uint64_t count = 0;
	int stopped = 0;
	for (;;) {
		if ((rc = read_reply(c, "the directory's entries", err, errlen)))
			return rc;
		if (c->h.type != AGENT_ENTRIES)
			return errorf(err, errlen, -EPROTO, "unexpected frame type %u while listing", c->h.type);
		if (c->h.len == 0)
			return stopped;
		/* Every entry is checked whole before any of the frame is handed on. */
		size_t off = 0;
		struct agent_entry e;
		while ((rc = agent_entry_next(frame_buf, c->h.len, &off, &e)) == 1)
			;
		if (rc < 0)
			return errorf(err, errlen, -EPROTO, "malformed directory entry from the agent");
		off = 0;
		while (agent_entry_next(frame_buf, c->h.len, &off, &e) == 1) {
			if (++count > c->list_max)
				return errorf(err, errlen, -EFBIG, "'%.200s' has more than %u entries, the bound of a listing",
					      path, c->list_max);
			if (!stopped && each)
				stopped = each(arg, &e);
		}
	}
}

/* Sends a request whose answer is OK (or ERROR). */
static int fs_request_ok(struct agent_conn *c, uint16_t type, int n, const char *path, const char *what, char *err,
			 size_t errlen)
{
	if (n < 0)
		return fs_encode_error(n, path, err, errlen);
	int rc = send_frame(c, type, frame_buf, (uint32_t)n, err, errlen);
	return rc ? rc : expect_ok(c, what, err, errlen);
}

int agent_conn_mkdir(struct agent_conn *c, const char *path, unsigned mode, bool parents, char *err, size_t errlen)
{
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_mkdir_encode(frame_buf, AGENT_MAX_PAYLOAD, mode & 07777u, parents ? AGENT_MKDIR_PARENTS : 0, path);
	return fs_request_ok(c, AGENT_MKDIR, n, path, "the answer to MKDIR", err, errlen);
}

int agent_conn_move(struct agent_conn *c, const char *src, const char *dst, char *err, size_t errlen)
{
	size_t a = strlen(src);
	const char *bad = a == 0 || a >= AGENT_MAX_PATH || src[0] != '/' ? src : dst; /* named if encoding fails */
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_move_encode(frame_buf, AGENT_MAX_PAYLOAD, src, dst);
	return fs_request_ok(c, AGENT_MOVE, n, bad, "the answer to MOVE", err, errlen);
}

int agent_conn_remove(struct agent_conn *c, const char *path, bool recursive, char *err, size_t errlen)
{
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_remove_encode(frame_buf, AGENT_MAX_PAYLOAD, recursive ? AGENT_REMOVE_RECURSIVE : 0, path);
	return fs_request_ok(c, AGENT_REMOVE, n, path, "the answer to REMOVE", err, errlen);
}

/* ---- background processes (version 4) ---- */

static int need_version(const struct agent_conn *c, uint32_t v, const char *what, char *err, size_t errlen)
{
	if (c->version >= v)
		return 0;
	return errorf(err, errlen, -EOPNOTSUPP, "%s needs guest agent protocol %u, and this guest's agent speaks %u: "
		      "rebuild the image with this padcell's agent", what, v, c->version);
}

static int need_v4(const struct agent_conn *c, const char *what, char *err, size_t errlen)
{
	return need_version(c, 4, what, err, errlen);
}

int agent_conn_start(struct agent_conn *c, const struct agent_start_req *req, uint32_t *id, uint32_t *pid,
		     char *err, size_t errlen)
{
	bool tagged = req->tag && req->tag[0];
	int rc = tagged ? need_version(c, 5, "a process tag", err, errlen) : need_v4(c, "a background process", err, errlen);
	if (rc)
		return rc;
	if (tagged && !agent_tag_ok(req->tag, strlen(req->tag)))
		return errorf(err, errlen, -EINVAL, "a process tag is 1 to %u bytes", AGENT_MAX_TAG);
	if (req->exec.timeout_ms)
		return errorf(err, errlen, -EINVAL, "a background process has no timeout (kill it instead)");
	uint32_t flags = (req->pty ? AGENT_START_PTY : 0) | (req->keep_stdin ? AGENT_START_STDIN : 0);
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_start_encode(frame_buf, AGENT_MAX_PAYLOAD, flags, req->rows, req->cols, req->tag,
				   (const char *const *)req->exec.argv, (const char *const *)req->exec.env, req->exec.cwd,
				   req->exec.user);
	if (n < 0)
		return errorf(err, errlen, n, n == -E2BIG ? "the command, its environment and cwd do not fit in %u bytes"
							 : "a malformed command (empty, a bad NAME=VALUE or window size)",
			      AGENT_MAX_PAYLOAD);
	if ((rc = send_frame(c, AGENT_START, frame_buf, (uint32_t)n, err, errlen)) ||
	    (rc = read_reply(c, "the answer to START", err, errlen)))
		return rc;
	if (c->h.type != AGENT_PROC || agent_id2_decode(frame_buf, c->h.len, id, pid) || *pid == 0)
		return errorf(err, errlen, -EPROTO, "malformed answer to START from the agent (frame type %u, %u bytes)",
			      c->h.type, c->h.len);
	return 0;
}

int agent_conn_ps(struct agent_conn *c, int (*each)(void *arg, const struct agent_proc *p), void *arg, char *err,
		  size_t errlen)
{
	/* version 4's entries are laid out otherwise: only a version 5 agent's are read */
	int rc = need_version(c, 5, "listing processes", err, errlen);
	if (rc || (rc = send_frame(c, AGENT_PLIST, NULL, 0, err, errlen)))
		return rc;
	unsigned count = 0;
	int stopped = 0;
	for (;;) {
		if ((rc = read_reply(c, "the process list", err, errlen)))
			return rc;
		if (c->h.type != AGENT_PROCS)
			return errorf(err, errlen, -EPROTO, "unexpected frame type %u in the process list", c->h.type);
		if (c->h.len == 0)
			return stopped;
		size_t off = 0;
		struct agent_proc p;
		unsigned in_frame = 0;
		while ((rc = agent_proc_next(frame_buf, c->h.len, &off, &p)) == 1)
			in_frame++;
		if (rc < 0)
			return errorf(err, errlen, -EPROTO, "malformed process entry from the agent");
		if ((count += in_frame) > AGENT_MAX_PROCS)
			return errorf(err, errlen, -EPROTO, "the agent lists more than %u processes", AGENT_MAX_PROCS);
		off = 0;
		while (agent_proc_next(frame_buf, c->h.len, &off, &p) == 1)
			if (!stopped && each)
				stopped = each(arg, &p);
	}
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int agent_conn_attach(struct agent_conn *c, uint32_t id, int out_fd, int err_fd, struct agent_attach_result *res,
		      char *err, size_t errlen)
{
	memset(res, 0, sizeof(*res));
	int rc = need_v4(c, "attaching to a process", err, errlen);
	if (rc)
		return rc;
	if (!id)
		return errorf(err, errlen, -EINVAL, "process ids start at 1");
	uint8_t b[4];
	agent_u32_encode(b, id);
	if ((rc = send_frame(c, AGENT_ATTACH, b, sizeof(b), err, errlen)) ||
	    (rc = expect_ok(c, "the answer to ATTACH", err, errlen)))
		return rc;
	for (;;) {
		/* Output has no deadline; a frame once begun has frame_ms (read_frame). */
		if ((rc = read_frame(c, 0, "the process's output", err, errlen)))
			return rc;
		switch (c->h.type) {
		case AGENT_STDOUT:
		case AGENT_STDERR: {
			int fd = c->h.type == AGENT_STDOUT ? out_fd : err_fd;
			if (fd >= 0 && (rc = write_all(fd, frame_buf, c->h.len)))
				return errorf(err, errlen, rc, "writing the process's output: %s", strerror(-rc));
			break;
		}
		case AGENT_GAP: {
			uint32_t stream;
			uint64_t bytes;
			if (agent_gap_decode(frame_buf, c->h.len, &stream, &bytes))
				return errorf(err, errlen, -EPROTO, "malformed GAP from the agent");
			uint64_t *g = &res->gap[stream == AGENT_STDERR];
			*g = *g + bytes < *g ? UINT64_MAX : *g + bytes;
			break;
		}
		case AGENT_EXIT: {
			uint32_t how;
			int32_t code;
			if (agent_exit_decode(frame_buf, c->h.len, &how, &code) || how == AGENT_TIMEDOUT)
				return errorf(err, errlen, -EPROTO, "malformed EXIT from the agent");
			res->how = (int)how;
			res->code = code;
			return 0;
		}
		default:
			return errorf(err, errlen, -EPROTO, "unexpected frame type %u while attached", c->h.type);
		}
	}
}

int agent_conn_send(struct agent_conn *c, uint32_t id, const void *buf, size_t len, char *err, size_t errlen)
{
	int rc = need_v4(c, "sending to a process's stdin", err, errlen);
	if (rc)
		return rc;
	if (!id || len > AGENT_MAX_PAYLOAD - 4)
		return errorf(err, errlen, -EINVAL, "send: a bad process id or more than %u bytes", AGENT_MAX_PAYLOAD - 4);
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	agent_u32_encode(frame_buf, id);
	if (len)
		memcpy(frame_buf + 4, buf, len);
	rc = send_frame(c, AGENT_SEND, frame_buf, (uint32_t)(len + 4), err, errlen);
	return rc ? rc : expect_ok(c, "the answer to SEND", err, errlen);
}

int agent_conn_kill(struct agent_conn *c, uint32_t id, int sig, char *err, size_t errlen)
{
	int rc = need_v4(c, "signalling a process", err, errlen);
	if (rc)
		return rc;
	if (!id || sig < 1 || sig > 64)
		return errorf(err, errlen, -EINVAL, "kill: a bad process id or signal %d", sig);
	uint8_t b[8];
	agent_id2_encode(b, id, (uint32_t)sig);
	rc = send_frame(c, AGENT_KILL, b, sizeof(b), err, errlen);
	return rc ? rc : expect_ok(c, "the answer to KILL", err, errlen);
}

int agent_conn_resize(struct agent_conn *c, uint32_t id, uint16_t rows, uint16_t cols, char *err, size_t errlen)
{
	int rc = need_v4(c, "resizing a terminal", err, errlen);
	if (rc)
		return rc;
	if (!id || !rows || !cols || rows > AGENT_MAX_WINSZ || cols > AGENT_MAX_WINSZ)
		return errorf(err, errlen, -EINVAL, "resize: a bad process id or window size %ux%u", rows, cols);
	uint8_t b[8];
	agent_resize_encode(b, id, rows, cols);
	rc = send_frame(c, AGENT_RESIZE, b, sizeof(b), err, errlen);
	return rc ? rc : expect_ok(c, "the answer to RESIZE", err, errlen);
}

/* ---- watching a directory (version 5) ---- */

int agent_conn_watch(struct agent_conn *c, const char *path, bool recursive, char *err, size_t errlen)
{
	int rc = need_version(c, 5, "watching a directory", err, errlen);
	if (rc)
		return rc;
	if (frame_buf_alloc())
		return errorf(err, errlen, -ENOMEM, "out of memory for the agent's frames");
	int n = agent_watch_encode(frame_buf, AGENT_MAX_PAYLOAD, recursive ? AGENT_WATCH_RECURSIVE : 0, path);
	return fs_request_ok(c, AGENT_WATCH, n, path, "the answer to WATCH", err, errlen);
}

int agent_conn_watch_read(struct agent_conn *c, int idle_ms, int (*each)(void *arg, const struct agent_wevent *e),
			  void *arg, char *err, size_t errlen)
{
	int rc;
	struct agent_wevent *e = malloc(sizeof(*e));
	if (!e)
		return errorf(err, errlen, -ENOMEM, "out of memory for a watch event");
	for (;;) {
		/* events have no deadline (a directory may be quiet); a frame once begun has frame_ms */
		rc = read_frame(c, idle_ms > 0 ? now_ms() + idle_ms : 0, "the watch's events", err, errlen);
		if (rc == -ETIMEDOUT && !c->got && idle_ms > 0) {
			if ((rc = each(arg, NULL)))
				break;
			continue;
		}
		if (rc)
			break;
		if (c->h.type != AGENT_WEVENTS || c->h.len == 0) {
			rc = errorf(err, errlen, -EPROTO, "unexpected frame type %u (%u bytes) while watching", c->h.type,
				    c->h.len);
			break;
		}
		size_t off = 0;
		while ((rc = agent_wevent_next(frame_buf, c->h.len, &off, e)) == 1)
			;
		if (rc < 0) {
			rc = errorf(err, errlen, -EPROTO, "malformed watch event from the agent");
			break;
		}
		off = 0;
		while (!rc && agent_wevent_next(frame_buf, c->h.len, &off, e) == 1)
			rc = each(arg, e);
		if (rc)
			break;
	}
	free(e);
	return rc;
}

int agent_conn_poweroff(struct agent_conn *c, char *err, size_t errlen)
{
	int rc = send_frame(c, AGENT_POWEROFF, NULL, 0, err, errlen);
	return rc ? rc : expect_ok(c, "the answer to POWEROFF", err, errlen);
}

/* ---- the same on a bare fd ---- */

int agent_connect(const char *vsock_path, uint32_t port, int timeout_ms, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, -1, -1, -1);
	int rc = agent_conn_open(&c, vsock_path, port, timeout_ms, err, errlen);
	return rc ? rc : c.fd;
}

int agent_hello(int fd, struct agent_hello *out, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	return agent_conn_hello(&c, 0, out, err, errlen);
}

int agent_sync(int fd, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	return agent_conn_sync(&c, err, errlen);
}

int agent_exec(int fd, const struct agent_exec_req *req, int out_fd, int err_fd, int sig_fd,
	       struct agent_exec_result *res, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, fd, sig_fd, -1);
	return agent_conn_exec(&c, req, out_fd, err_fd, res, err, errlen);
}

int agent_put_file(int fd, int src_fd, const char *guest_path, unsigned mode, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	return agent_conn_put_file(&c, src_fd, guest_path, mode, err, errlen);
}

int agent_get_file(int fd, const char *guest_path, int dst_fd, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	return agent_conn_get_file(&c, guest_path, dst_fd, err, errlen);
}

int agent_poweroff(int fd, char *err, size_t errlen)
{
	struct agent_conn c;
	agent_conn_init(&c, fd, -1, -1);
	return agent_conn_poweroff(&c, err, errlen);
}
