/* Host side of the guest agent protocol: connect, HELLO, SYNC, EXEC with streams, files, poweroff. */
#include "vmm/agent/agent_client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "vmm/err.h"
#include "vmm/util.h"

static uint8_t frame_buf[AGENT_MAX_PAYLOAD];

/* One CONNECT attempt: the fd, -EAGAIN when the guest refused or the VM is not up yet, -errno. */
static int connect_once(const char *path, uint32_t port, double deadline, char *err, size_t errlen)
{
	enum unix_step at;
	int fd = unix_connect(path, 0, &at);
	if (fd < 0) {
		if (at == UNIX_STEP_PATH)
			return errorf(err, errlen, fd, "socket path '%s' is too long", path);
		if (at == UNIX_STEP_SOCKET)
			return errorf(err, errlen, fd, "socket: %s", strerror(-fd));
		if (fd == -ENOENT || fd == -ECONNREFUSED)
			return errorf(err, errlen, -EAGAIN, "nothing listens on %s (is the VM running with --vsock %s?)",
				      path, path);
		return errorf(err, errlen, fd, "cannot connect to %s: %s", path, strerror(-fd));
	}
	char line[40];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return errorf(err, errlen, -EAGAIN, "the VM closed the socket");
	}
	/* "OK <port>\n", one byte at a time: what follows is the agent's, not ours to consume. */
	size_t got = 0;
	while (got < sizeof(line) - 1) {
		int left = (int)(deadline - now_ms());
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) <= 0) {
			close(fd);
			return errorf(err, errlen, -ETIMEDOUT, "no answer to CONNECT %u", port);
		}
		ssize_t r = read(fd, line + got, 1);
		if (r <= 0) {
			close(fd);
			return errorf(err, errlen, -EAGAIN, "the guest refused port %u (is the agent running?)", port);
		}
		if (line[got++] == '\n')
			break;
	}
	line[got] = '\0';
	if (strncmp(line, "OK ", 3)) {
		close(fd);
		return errorf(err, errlen, -EPROTO, "unexpected answer to CONNECT: '%.*s'", (int)strcspn(line, "\n"), line);
	}
	return fd;
}

int agent_connect(const char *vsock_path, uint32_t port, int timeout_ms, char *err, size_t errlen)
{
	double deadline = now_ms() + timeout_ms;
	for (;;) {
		int fd = connect_once(vsock_path, port, deadline, err, errlen);
		if (fd != -EAGAIN || now_ms() >= deadline)
			return fd;
		usleep(20000);
	}
}

/* Reads one frame, turning ERROR into its message. */
static int read_frame(int fd, struct agent_hdr *h, char *err, size_t errlen)
{
	int rc = agent_read_frame(fd, h, frame_buf, sizeof(frame_buf));
	if (rc == -EPIPE)
		return errorf(err, errlen, -EPIPE, "the agent closed the connection");
	if (rc == -EPROTO)
		return errorf(err, errlen, -EPROTO, "malformed frame from the agent");
	if (rc)
		return errorf(err, errlen, rc, "reading from the agent: %s", strerror(-rc));
	if (h->type == AGENT_ERROR)
		return errorf(err, errlen, -EIO, "the agent says: %.*s", (int)(h->len > 400 ? 400 : h->len),
			      (const char *)frame_buf);
	return 0;
}

static int expect_ok(int fd, char *err, size_t errlen)
{
	struct agent_hdr h;
	int rc = read_frame(fd, &h, err, errlen);
	if (rc)
		return rc;
	if (h.type != AGENT_OK || h.len)
		return errorf(err, errlen, -EPROTO, "the agent answered frame type %u where OK was due", h.type);
	return 0;
}

static int send_frame(int fd, uint16_t type, const void *p, uint32_t len, char *err, size_t errlen)
{
	int rc = agent_write_frame(fd, type, p, len);
	return rc ? errorf(err, errlen, rc, "writing to the agent: %s", strerror(-rc)) : 0;
}

int agent_hello(int fd, struct agent_hello *out, char *err, size_t errlen)
{
	struct agent_hdr h;
	int rc = read_frame(fd, &h, err, errlen);
	if (rc)
		return rc;
	if (h.type != AGENT_HELLO || agent_hello_decode(frame_buf, h.len, out))
		return errorf(err, errlen, -EPROTO, "the guest did not greet with the agent's HELLO (not padcell-agent?)");
	if (out->version != AGENT_PROTO_VERSION)
		return errorf(err, errlen, -EPROTO, "the guest agent speaks protocol version %u, this padcell %u: "
			      "rebuild the image with this padcell's agent", out->version, AGENT_PROTO_VERSION);
	return 0;
}

int agent_sync(int fd, char *err, size_t errlen)
{
	struct agent_sync s;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s.realtime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	if (getrandom(s.seed, sizeof(s.seed), 0) != (ssize_t)sizeof(s.seed))
		return errorf(err, errlen, -EIO, "getrandom: %s", strerror(errno));
	uint8_t b[AGENT_SYNC_LEN];
	agent_sync_encode(b, &s);
	int rc = send_frame(fd, AGENT_SYNC, b, sizeof(b), err, errlen);
	return rc ? rc : expect_ok(fd, err, errlen);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
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

int agent_exec(int fd, const struct agent_exec_req *req, int out_fd, int err_fd, int sig_fd,
	       struct agent_exec_result *res, char *err, size_t errlen)
{
	int n = agent_exec_encode(frame_buf, sizeof(frame_buf), (const char *const *)req->argv,
				  (const char *const *)req->env, req->cwd, req->user, req->timeout_ms,
				  req->stdin_fd >= 0 ? AGENT_EXEC_STDIN : 0);
	if (n < 0)
		return errorf(err, errlen, n, n == -E2BIG ? "the command and its environment are over %u bytes"
							 : "the command is empty or an --env entry has no '='",
			      AGENT_MAX_PAYLOAD);
	int rc = send_frame(fd, AGENT_EXEC, frame_buf, (uint32_t)n, err, errlen);
	if (rc)
		return rc;
	int in = req->stdin_fd;
	bool out_ok = true, err_ok = true; /* a closed host stdout (head) must not stop the command's stderr */
	static struct outq q;
	q.off = q.len = 0;
	uint32_t in_flight = 0; /* stdin bytes sent and not yet acknowledged (AGENT_STDIN_WINDOW) */
	static uint8_t inbuf[AGENT_MAX_PAYLOAD];
	for (;;) {
		struct pollfd p[3];
		int np = 0, i_conn, i_in = -1, i_sig = -1;
		i_conn = np;
		p[np++] = (struct pollfd){ .fd = fd, .events = (short)(POLLIN | (q.off < q.len ? POLLOUT : 0)) };
		/* More stdin only when the last frame is out and the agent's window has room. */
		if (in >= 0 && q.off == q.len && in_flight < AGENT_STDIN_WINDOW) {
			i_in = np;
			p[np++] = (struct pollfd){ .fd = in, .events = POLLIN };
		}
		if (sig_fd >= 0) {
			i_sig = np;
			p[np++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
		}
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			return errorf(err, errlen, -errno, "poll: %s", strerror(errno));
		}
		if (i_sig >= 0 && (p[i_sig].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				uint8_t b[4];
				agent_u32_encode(b, si.ssi_signo);
				outq_add(&q, AGENT_SIGNAL, b, 4); /* beyond OUTQ_SIGNALS queued, more of them add nothing */
			}
		}
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
		if (q.off < q.len && outq_flush(fd, &q)) {
			/* The agent stopped reading (it may have sent EXIT and closed): what it sent still
			 * decides the outcome, so read on instead of failing here. */
			q.off = q.len = 0;
			in = -1;
			sig_fd = -1;
		}
		if (p[i_conn].revents & (POLLIN | POLLHUP | POLLERR)) {
			struct agent_hdr h;
			if ((rc = read_frame(fd, &h, err, errlen)))
				return rc;
			switch (h.type) {
			case AGENT_STDOUT:
				if (out_ok && write_all(out_fd, frame_buf, h.len))
					out_ok = false;
				break;
			case AGENT_STDERR:
				if (err_ok && write_all(err_fd, frame_buf, h.len))
					err_ok = false;
				break;
			case AGENT_STDIN_ACK: {
				uint32_t acked;
				if (agent_u32_decode(frame_buf, h.len, &acked) || acked > in_flight)
					return errorf(err, errlen, -EPROTO, "malformed STDIN_ACK from the agent");
				in_flight -= acked;
				break;
			}
			case AGENT_EXIT: {
				uint32_t how;
				int32_t code;
				if (agent_exit_decode(frame_buf, h.len, &how, &code))
					return errorf(err, errlen, -EPROTO, "malformed EXIT from the agent");
				res->how = (int)how;
				res->code = code;
				return 0;
			}
			default:
				return errorf(err, errlen, -EPROTO, "unexpected frame type %u from the agent", h.type);
			}
		}
	}
}

int agent_put_file(int fd, int src_fd, const char *guest_path, unsigned mode, char *err, size_t errlen)
{
	int n = agent_put_encode(frame_buf, sizeof(frame_buf), mode & 07777u, guest_path);
	if (n < 0)
		return errorf(err, errlen, -EINVAL, "guest path '%s' is not absolute, or too long", guest_path);
	int rc = send_frame(fd, AGENT_PUT, frame_buf, (uint32_t)n, err, errlen);
	if (rc || (rc = expect_ok(fd, err, errlen)))
		return rc;
	static uint8_t buf[AGENT_MAX_PAYLOAD];
	for (;;) {
		ssize_t r = read(src_fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errorf(err, errlen, -errno, "reading the source: %s", strerror(errno));
		if ((rc = send_frame(fd, AGENT_DATA, buf, (uint32_t)r, err, errlen)))
			return rc;
		if (r == 0)
			break;
	}
	return expect_ok(fd, err, errlen);
}

int agent_get_file(int fd, const char *guest_path, int dst_fd, char *err, size_t errlen)
{
	size_t len = strlen(guest_path);
	if (len == 0 || len >= AGENT_MAX_PATH || guest_path[0] != '/')
		return errorf(err, errlen, -EINVAL, "guest path '%s' is not absolute, or too long", guest_path);
	int rc = send_frame(fd, AGENT_GET, guest_path, (uint32_t)len, err, errlen);
	if (rc)
		return rc;
	for (;;) {
		struct agent_hdr h;
		if ((rc = read_frame(fd, &h, err, errlen)))
			return rc;
		if (h.type != AGENT_DATA)
			return errorf(err, errlen, -EPROTO, "unexpected frame type %u during a download", h.type);
		if (h.len == 0)
			return 0;
		if ((rc = write_all(dst_fd, frame_buf, h.len)))
			return errorf(err, errlen, rc, "writing the copy: %s", strerror(-rc));
	}
}

int agent_poweroff(int fd, char *err, size_t errlen)
{
	int rc = send_frame(fd, AGENT_POWEROFF, NULL, 0, err, errlen);
	return rc ? rc : expect_ok(fd, err, errlen);
}
