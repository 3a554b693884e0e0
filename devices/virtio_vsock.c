/* virtio-vsock: stream connections between the guest and host Unix sockets, on one device thread. */
#include "devices/virtio_vsock.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/util.h"

_Static_assert(sizeof(struct virtio_vsock_hdr) == 44, "vsock packet header is 44 bytes");
_Static_assert(sizeof(struct virtio_vsock_config) == 8, "vsock config is 8 bytes");
_Static_assert(sizeof(struct virtio_vsock_event) == 4, "vsock event is 4 bytes");

#define HDR_LEN ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define TAG_KICK   UINT64_MAX
#define TAG_LISTEN (UINT64_MAX - 1)

/* ---- the host side: the listening socket and the CONNECT line ------------------------- */

int vsock_listen(const char *path, char *err, size_t errlen)
{
	if (!*path || strlen(path) > VSOCK_PATH_MAX) {
		snprintf(err, errlen, "path must be 1 to %u bytes (room is left for _<port>)", VSOCK_PATH_MAX);
		return -ENAMETOOLONG;
	}
	enum unix_step at;
	int fd = unix_listen(path, 128, 0, SOCK_NONBLOCK, &at);
	if (fd >= 0)
		return fd;
	switch (at) {
	case UNIX_STEP_NOT_SOCKET: snprintf(err, errlen, "exists and is not a socket"); break;
	case UNIX_STEP_LIVE: snprintf(err, errlen, "in use: another process listens on it"); break;
	case UNIX_STEP_PROBE: snprintf(err, errlen, "exists and cannot be checked: %s", strerror(-fd)); break;
	case UNIX_STEP_STALE: snprintf(err, errlen, "stale socket cannot be removed: %s", strerror(-fd)); break;
	case UNIX_STEP_SOCKET: snprintf(err, errlen, "socket: %s", strerror(-fd)); break;
	default: snprintf(err, errlen, "%s", strerror(-fd)); break;
	}
	return fd;
}

int vsock_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char word[] = "connect ";
	if (len > VSOCK_CONNECT_LINE || len < sizeof(word) + 1 || line[len - 1] != '\n')
		return -EINVAL;
	for (size_t i = 0; i < sizeof(word) - 1; i++)
		if (tolower((unsigned char)line[i]) != word[i])
			return -EINVAL;
	uint64_t v = 0;
	size_t i = sizeof(word) - 1, digits = 0;
	for (; i < len - 1; i++, digits++) {
		if (line[i] < '0' || line[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(line[i] - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	if (!digits)
		return -EINVAL;
	*port = (uint32_t)v;
	return 0;
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_close_fd(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(v->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
}

static void conn_free(struct virtio_vsock *v, struct vsock_conn *c)
{
	conn_close_fd(v, c);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	v->nconns--;
}

/* The host side is gone or the guest broke the rules: close the socket and owe the guest an RST. */
static void conn_reset(struct virtio_vsock *v, struct vsock_conn *c)
{
	conn_close_fd(v, c);
	if (c->state == VSOCK_LINE) { /* the guest never heard of it */
		conn_free(v, c);
		return;
	}
	c->pending = VSOCK_P_RST;
}

unsigned vsock_conn_cap(void)
{
	unsigned long lim = nofile_limit();
	unsigned long cap = lim > VSOCK_FD_RESERVE + VSOCK_MIN_CONNS ? lim - VSOCK_FD_RESERVE : VSOCK_MIN_CONNS;
	return cap < VSOCK_MAX_CONNS ? (unsigned)cap : VSOCK_MAX_CONNS;
}

static struct vsock_conn *conn_alloc(struct virtio_vsock *v, int fd)
{
	/* The limit is looked up each time: a guest must never take the monitor's last descriptors. */
	if (v->nconns >= vsock_conn_cap())
		return NULL;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state != VSOCK_FREE)
			continue;
		memset(c, 0, sizeof(*c));
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = i };
		if (epoll_ctl(v->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return NULL;
		/* Room for two credit windows in the socket, so a busy stream seldom lands in c->buf. */
		int sndbuf = 2 * VSOCK_BUF_ALLOC;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		c->fd = fd;
		c->state = VSOCK_LINE;
		c->readable = true;
		c->deadline_ms = now_ms() + VSOCK_LINE_MS;
		v->nconns++;
		return c;
	}
	return NULL;
}

static struct vsock_conn *conn_find(struct virtio_vsock *v, uint32_t host_port, uint32_t guest_port)
{
	if (!v->nconns)
		return NULL;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state > VSOCK_LINE && c->host_port == host_port && c->guest_port == guest_port)
			return c;
	}
	return NULL;
}

static bool host_port_used(struct virtio_vsock *v, uint32_t port)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		if (v->conns[i].state > VSOCK_LINE && v->conns[i].host_port == port)
			return true;
	return false;
}

/* An ephemeral host port for a host-initiated connection: never 0..1023 nor u32 max, never in use. */
static uint32_t port_alloc(struct virtio_vsock *v)
{
	for (;;) {
		uint32_t p = v->next_port++;
		if (v->next_port == UINT32_MAX || v->next_port < VSOCK_FIRST_EPHEMERAL)
			v->next_port = VSOCK_FIRST_EPHEMERAL;
		if (!host_port_used(v, p))
			return p;
	}
}

/* Bytes padcell may still send: the guest's buffer less what it has not consumed. */
static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* After fwd_cnt moved: tell the guest once half of its credit has come back, so it keeps sending
 * on the other half while the update travels (no deadlock: a guest stalled on a full window has
 * always earned an update by the time the buffer drains). */
static void conn_maybe_credit(struct vsock_conn *c)
{
	if (c->fwd_cnt - c->fwd_cnt_told >= VSOCK_BUF_ALLOC / 2)
		c->pending |= VSOCK_P_CREDIT;
}

/* Both directions finished (or the guest closed): the connection ends with an RST. */
static void conn_check_done(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != VSOCK_ESTABLISHED || (c->pending & VSOCK_P_RST) || c->buf_len)
		return;
	uint32_t both = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	if ((c->guest_shut & both) == both ||
	    ((c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && c->host_eof && !(c->pending & VSOCK_P_SHUTDOWN)))
		conn_reset(v, c);
}

/* Writes what is buffered for the host socket. */
static void conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
{
	while (c->buf_len && c->fd >= 0) {
		ssize_t n = send(c->fd, c->buf + c->buf_off, c->buf_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_reset(v, c);
			return;
		}
		c->buf_off += (uint32_t)n;
		c->buf_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
		if (!c->buf_len)
			c->buf_off = 0;
	}
	conn_maybe_credit(c);
	if (!c->buf_len && (c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && !c->host_wr_shut && c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	conn_check_done(v, c);
}

/* Guest payload: straight into the socket; what it will not take yet goes into the bounded buffer. */
static void conn_guest_data(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_chain *ch, uint32_t len)
{
	uint64_t off = HDR_LEN;
	c->rx_cnt += len;
	if (!c->buf_len && c->fd >= 0) {
		struct iovec iov[VIRTQ_MAX_SIZE];
		unsigned n;
		virtq_chain_iov(ch, false, off, len, iov, &n);
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w;
		do
			w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			conn_reset(v, c);
			return;
		}
		if (w > 0) {
			off += (uint64_t)w;
			len -= (uint32_t)w;
			c->fwd_cnt += (uint32_t)w;
		}
	}
	if (len) {
		if (!c->buf && !(c->buf = malloc(VSOCK_BUF_ALLOC))) {
			conn_reset(v, c);
			return;
		}
		/* Fits: buf_len + len <= rx_cnt - fwd_cnt <= VSOCK_BUF_ALLOC, checked by the caller. */
		if (c->buf_off + c->buf_len + len > VSOCK_BUF_ALLOC) {
			memmove(c->buf, c->buf + c->buf_off, c->buf_len);
			c->buf_off = 0;
		}
		virtq_chain_read(ch, off, c->buf + c->buf_off + c->buf_len, len);
		c->buf_len += len;
	}
	conn_maybe_credit(c);
}

static void queue_rst(struct virtio_vsock *v, const struct virtio_vsock_hdr *h)
{
	if (v->rst_pending >= sizeof(v->rst_queue) / sizeof(v->rst_queue[0]))
		return; /* a flood of bad packets: the guest loses some RSTs, padcell stays bounded */
	v->rst_queue[v->rst_pending++] = (struct virtio_vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = v->guest_cid, .src_port = h->dst_port, .dst_port = h->src_port,
		.type = VIRTIO_VSOCK_TYPE_STREAM, .op = VIRTIO_VSOCK_OP_RST,
	};
}

/* The guest connects to host port P: padcell connects to PATH_P, or answers RST. */
static void guest_request(struct virtio_vsock *v, const struct virtio_vsock_hdr *h)
{
	char path[VSOCK_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s_%u", v->path, h->dst_port);
	int fd = unix_connect(path, SOCK_NONBLOCK, NULL);
	if (fd < 0) {
		/* Nobody listens (or the backlog is full: a Unix connect does not wait). */
		queue_rst(v, h);
		return;
	}
	struct vsock_conn *c = conn_alloc(v, fd);
	if (!c) {
		close(fd);
		queue_rst(v, h);
		return;
	}
	c->state = VSOCK_ESTABLISHED;
	c->host_port = h->dst_port;
	c->guest_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->pending = VSOCK_P_RESPONSE;
}

static bool op_known(uint16_t op)
{
	return op >= VIRTIO_VSOCK_OP_REQUEST && op <= VIRTIO_VSOCK_OP_CREDIT_REQUEST;
}

void vsock_handle_packet(struct virtio_vsock *v, const struct virtio_vsock_hdr *h, const struct virtq_chain *ch)
{
	/* Not for us, or not from this guest: nothing sensible to answer. */
	if (h->src_cid != v->guest_cid || h->dst_cid != VSOCK_HOST_CID) {
		v->dropped++;
		return;
	}
	if (h->type != VIRTIO_VSOCK_TYPE_STREAM || !op_known(h->op) ||
	    (h->op != VIRTIO_VSOCK_OP_RW && h->len) || h->len > VSOCK_BUF_ALLOC) {
		v->dropped++;
		if (h->op != VIRTIO_VSOCK_OP_RST) {
			struct vsock_conn *c = conn_find(v, h->dst_port, h->src_port);
			if (c && !(c->pending & VSOCK_P_RST))
				conn_reset(v, c);
			else if (!c)
				queue_rst(v, h);
		}
		return;
	}
	struct vsock_conn *c = conn_find(v, h->dst_port, h->src_port);
	if (!c) {
		if (h->op == VIRTIO_VSOCK_OP_REQUEST)
			guest_request(v, h);
		else if (h->op != VIRTIO_VSOCK_OP_RST) {
			v->dropped++;
			queue_rst(v, h);
		}
		return;
	}
	if (c->pending & VSOCK_P_RST) /* already being reset: the guest hears RST soon */
		return;
	if (h->op == VIRTIO_VSOCK_OP_RST) {
		conn_free(v, c);
		return;
	}
	/* Every packet carries the guest's current credit. */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;

	switch (h->op) {
	case VIRTIO_VSOCK_OP_REQUEST: /* a second REQUEST for a live connection */
		v->dropped++;
		conn_reset(v, c);
		break;
	case VIRTIO_VSOCK_OP_RESPONSE: {
		if (c->state != VSOCK_REQ_SENT || (c->pending & VSOCK_P_REQUEST)) {
			v->dropped++;
			conn_reset(v, c);
			break;
		}
		char ok[32];
		int n = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
		if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
			conn_reset(v, c);
			break;
		}
		c->state = VSOCK_ESTABLISHED;
		c->readable = true; /* the client may have written already */
		break;
	}
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (c->state != VSOCK_ESTABLISHED) {
			conn_reset(v, c);
			break;
		}
		c->guest_shut |= h->flags & (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND);
		conn_flush(v, c); /* SHUT_WR once the buffer is out; RST when both sides are done */
		break;
	case VIRTIO_VSOCK_OP_RW:
		if (c->state != VSOCK_ESTABLISHED || (c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) ||
		    c->rx_cnt - c->fwd_cnt + h->len > VSOCK_BUF_ALLOC) {
			/* Data before the handshake, after its own SHUTDOWN, or beyond the credit padcell gave. */
			v->dropped++;
			conn_reset(v, c);
			break;
		}
		if (h->len)
			conn_guest_data(v, c, ch, h->len);
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		break; /* taken above; the rx pass sends if credit reopened */
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->pending |= VSOCK_P_CREDIT;
		break;
	}
}

/* ---- host clients --------------------------------------------------------------------- */

static void listen_accept(struct virtio_vsock *v)
{
	for (;;) {
		int fd = accept_or_shed(v->listen_fd, SOCK_CLOEXEC | SOCK_NONBLOCK, &v->spare_fd);
		if (fd == -ECONNABORTED)
			continue; /* out of descriptors: that client was closed, the next may fit */
		if (fd < 0)
			return; /* EAGAIN (or out of descriptors with no spare: the next edge retries) */
		if (!conn_alloc(v, fd))
			close(fd); /* the connection cap */
	}
}

/* A host client's first line: peeked, so bytes after the newline stay in the socket as data. */
static void conn_read_line(struct virtio_vsock *v, struct vsock_conn *c)
{
	char buf[VSOCK_CONNECT_LINE];
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		c->readable = false;
		return;
	}
	if (n <= 0) {
		conn_free(v, c);
		return;
	}
	char *nl = memchr(buf, '\n', (size_t)n);
	if (!nl) {
		struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };
		if (n == (ssize_t)sizeof(buf) || (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))))
			conn_free(v, c); /* no newline within 32 bytes, or none will ever come */
		else
			c->readable = false; /* more to come; the next edge brings it */
		return;
	}
	size_t len = (size_t)(nl - buf) + 1;
	uint32_t port;
	if (recv(c->fd, buf, len, MSG_DONTWAIT) != (ssize_t)len || vsock_parse_connect(buf, len, &port)) {
		conn_free(v, c);
		return;
	}
	c->guest_port = port;
	c->host_port = port_alloc(v);
	c->host_initiated = true;
	c->state = VSOCK_REQ_SENT;
	c->pending = VSOCK_P_REQUEST;
	c->deadline_ms = now_ms() + VSOCK_CONNECT_MS;
}

/* ---- rx: packets to the guest ------------------------------------------------------------ */

static void hdr_for(const struct virtio_vsock *v, struct vsock_conn *c, struct virtio_vsock_hdr *h, uint16_t op)
{
	*h = (struct virtio_vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = v->guest_cid, .src_port = c->host_port,
		.dst_port = c->guest_port, .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = VSOCK_BUF_ALLOC, .fwd_cnt = c->fwd_cnt,
	};
	c->fwd_cnt_told = c->fwd_cnt;
}

/* Does c have something for the guest right now? */
static bool conn_wants_rx(const struct virtio_vsock *v, const struct vsock_conn *c)
{
	if (c->state <= VSOCK_LINE)
		return false;
	if (v->reset_wait && c->pending == VSOCK_P_REQUEST)
		return false; /* the guest is still tearing down its old connections */
	if (c->pending)
		return true;
	return c->state == VSOCK_ESTABLISHED && c->readable && c->fd >= 0 && !c->host_eof &&
	       !(c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) && peer_credit(c) > 0;
}

/*
 * Fills one popped rx chain from c.  Returns the used length, or -1 when nothing was
 * written (the chain is to be given back).
 */
static int64_t conn_fill(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_chain *ch)
{
	struct virtio_vsock_hdr h;
	if (c->pending) {
		static const unsigned order[] = { VSOCK_P_RST, VSOCK_P_REQUEST, VSOCK_P_RESPONSE, VSOCK_P_CREDIT,
						  VSOCK_P_SHUTDOWN };
		static const uint16_t ops[] = { VIRTIO_VSOCK_OP_RST, VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_RESPONSE,
						VIRTIO_VSOCK_OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_SHUTDOWN };
		for (unsigned i = 0; i < 5; i++) {
			if (!(c->pending & order[i]))
				continue;
			hdr_for(v, c, &h, ops[i]);
			if (order[i] == VSOCK_P_SHUTDOWN)
				h.flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
			virtq_chain_write(ch, 0, &h, HDR_LEN);
			if (order[i] == VSOCK_P_RST) {
				conn_free(v, c);
			} else {
				c->pending &= ~order[i];
				if (order[i] == VSOCK_P_SHUTDOWN)
					conn_check_done(v, c);
			}
			return HDR_LEN;
		}
	}
	/* Payload: read from the socket straight into the chain, no more than the guest's credit. */
	uint64_t room = ch->write_len - HDR_LEN, want = peer_credit(c);
	if (want > room)
		want = room;
	if (want > VSOCK_BUF_ALLOC)
		want = VSOCK_BUF_ALLOC;
	struct iovec iov[VIRTQ_MAX_SIZE];
	unsigned n;
	virtq_chain_iov(ch, true, HDR_LEN, want, iov, &n);
	ssize_t r;
	do
		r = readv(c->fd, iov, n);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		return -1;
	}
	if (r < 0) {
		conn_reset(v, c);
		return -1;
	}
	if (r == 0) {
		/* The host will send no more: half-close toward the guest. */
		c->host_eof = true;
		c->readable = false;
		c->pending |= VSOCK_P_SHUTDOWN;
		return -1;
	}
	hdr_for(v, c, &h, VIRTIO_VSOCK_OP_RW);
	h.len = (uint32_t)r;
	c->tx_cnt += (uint32_t)r;
	virtq_chain_write(ch, 0, &h, HDR_LEN);
	return HDR_LEN + r;
}

/* Sends what is due while the guest has rx buffers: stray RSTs, then connections round-robin. */
static bool rx_fill(struct virtio_vsock *v)
{
	struct virtio_mmio *t = &v->t;
	bool pushed = false;
	unsigned idle = 0; /* connections visited in a row with nothing to send */
	while (v->rst_pending || (v->nconns && idle < VSOCK_MAX_CONNS)) {
		struct vsock_conn *c = NULL;
		if (!v->rst_pending) {
			c = &v->conns[v->rr];
			if (!conn_wants_rx(v, c)) {
				v->rr = (v->rr + 1) % VSOCK_MAX_CONNS;
				idle++;
				continue;
			}
		}
		struct virtq *q = virtio_mmio_queue(t, VSOCK_Q_RX);
		if (!q)
			break;
		int rc = virtq_pop(q, t->mem, &v->chain);
		if (rc < 0) {
			virtio_mmio_needs_reset(t);
			break;
		}
		if (rc == 0)
			break; /* no buffers: readable flags and pending bits wait for the next kick */
		if (v->chain.write_len <= HDR_LEN || v->chain.nread) {
			/* A buffer the device cannot use: give it back empty rather than stall. */
			v->dropped++;
			virtq_push(q, v->chain.head, 0);
			pushed = true;
			continue;
		}
		int64_t used;
		if (!c) {
			virtq_chain_write(&v->chain, 0, &v->rst_queue[0], HDR_LEN);
			memmove(&v->rst_queue[0], &v->rst_queue[1], --v->rst_pending * sizeof(v->rst_queue[0]));
			used = HDR_LEN;
		} else {
			used = conn_fill(v, c, &v->chain);
			v->rr = (v->rr + 1) % VSOCK_MAX_CONNS; /* one packet per connection per turn */
			idle = 0;
		}
		if (used < 0) {
			virtq_unpop(q); /* nothing was written: the buffer stays the driver's, next in line */
			continue;
		}
		virtq_push(q, v->chain.head, (uint32_t)used);
		pushed = true;
	}
	return pushed;
}

/* ---- tx and event queues -------------------------------------------------------------------- */

static bool tx_drain(struct virtio_vsock *v)
{
	struct virtio_mmio *t = &v->t;
	bool pushed = false;
	for (;;) {
		struct virtq *q = virtio_mmio_queue(t, VSOCK_Q_TX);
		if (!q)
			break;
		int rc = virtq_pop(q, t->mem, &v->chain);
		if (rc < 0) {
			virtio_mmio_needs_reset(t);
			break;
		}
		if (rc == 0)
			break;
		struct virtio_vsock_hdr h;
		if (v->chain.read_len < HDR_LEN) {
			v->dropped++; /* too short to be a packet */
		} else {
			virtq_chain_read(&v->chain, 0, &h, HDR_LEN);
			if ((uint64_t)h.len != v->chain.read_len - HDR_LEN)
				v->dropped++; /* the header lies about the payload */
			else
				vsock_handle_packet(v, &h, &v->chain);
		}
		virtq_push(q, v->chain.head, 0);
		pushed = true;
	}
	return pushed;
}

static bool event_send(struct virtio_vsock *v)
{
	struct virtio_mmio *t = &v->t;
	struct virtq *q = virtio_mmio_queue(t, VSOCK_Q_EVENT);
	if (!v->reset_pending || !q)
		return false;
	int rc = virtq_pop(q, t->mem, &v->chain);
	if (rc < 0)
		virtio_mmio_needs_reset(t);
	if (rc <= 0)
		return false;
	struct virtio_vsock_event ev = { .id = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET };
	uint32_t used = v->chain.write_len >= sizeof(ev) ? (uint32_t)sizeof(ev) : 0;
	if (used)
		virtq_chain_write(&v->chain, 0, &ev, sizeof(ev));
	virtq_push(q, v->chain.head, used);
	v->reset_pending = false;
	v->reset_wait = true;
	v->reset_wait_until = now_ms() + VSOCK_RESET_WAIT_MS;
	v->reset_avail = virtq_avail_idx(q);
	return true;
}

/* Has the guest handled the reset (posted an event buffer since), or waited long enough? */
static void reset_wait_check(struct virtio_vsock *v, int64_t now)
{
	if (!v->reset_wait)
		return;
	struct virtq *q = virtio_mmio_queue(&v->t, VSOCK_Q_EVENT);
	if (!q || virtq_avail_idx(q) != v->reset_avail || now >= v->reset_wait_until)
		v->reset_wait = false;
}

static void interrupt_if_asked(struct virtio_vsock *v, unsigned qi, bool pushed)
{
	struct virtq *q = virtio_mmio_queue(&v->t, qi);
	if (pushed && q && virtq_should_interrupt(q))
		virtio_mmio_interrupt(&v->t, VIRTIO_MMIO_INT_VRING);
}

static void conns_close_all(struct virtio_vsock *v)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS && v->nconns; i++)
		if (v->conns[i].state != VSOCK_FREE)
			conn_free(v, &v->conns[i]);
	v->rst_pending = 0;
}

void virtio_vsock_transport_reset(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->t.lock);
	conns_close_all(v);
	v->reset_pending = true;
	interrupt_if_asked(v, VSOCK_Q_EVENT, event_send(v));
	pthread_mutex_unlock(&v->t.lock);
}

/* ---- the device loop ---------------------------------------------------------------------- */

static int next_timeout(struct virtio_vsock *v, int timeout_ms)
{
	int64_t now = now_ms();
	for (unsigned i = 0; i < VSOCK_MAX_CONNS && v->nconns; i++) {
		const struct vsock_conn *c = &v->conns[i];
		if (c->state != VSOCK_REQ_SENT && c->state != VSOCK_LINE)
			continue;
		int64_t left = c->deadline_ms > now ? c->deadline_ms - now : 0;
		if (timeout_ms < 0 || left < timeout_ms)
			timeout_ms = (int)left;
	}
	if (v->reset_wait) {
		/* The driver may re-post without a kick (its avail_event is stale after a restore): look often. */
		int64_t left = v->reset_wait_until > now ? v->reset_wait_until - now : 0;
		if (left > 5)
			left = 5;
		if (timeout_ms < 0 || left < timeout_ms)
			timeout_ms = (int)left;
	}
	return timeout_ms;
}

void virtio_vsock_poll(struct virtio_vsock *v, int timeout_ms)
{
	struct epoll_event ev[64];
	pthread_mutex_lock(&v->t.lock);
	timeout_ms = next_timeout(v, timeout_ms);
	pthread_mutex_unlock(&v->t.lock);
	int n = epoll_wait(v->epoll_fd, ev, 64, timeout_ms);

	pthread_mutex_lock(&v->t.lock);
	bool accept = false;
	for (int i = 0; i < n; i++) {
		uint64_t tag = ev[i].data.u64;
		if (tag == TAG_KICK) {
			uint64_t cnt;
			if (read(v->kick_fd, &cnt, sizeof(cnt)) < 0) {
				/* EAGAIN: another pass already drained it */
			}
		} else if (tag == TAG_LISTEN) {
			accept = true;
		} else if (tag < VSOCK_MAX_CONNS && v->conns[tag].state != VSOCK_FREE) {
			struct vsock_conn *c = &v->conns[tag];
			if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->readable = true;
			if (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				conn_flush(v, c);
		}
	}
	if (accept)
		listen_accept(v);
	int64_t now = now_ms();
	for (unsigned i = 0; i < VSOCK_MAX_CONNS && v->nconns; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state == VSOCK_LINE && c->readable)
			conn_read_line(v, c);
		if (c->state == VSOCK_LINE && now >= c->deadline_ms)
			conn_reset(v, c); /* no complete CONNECT line in time: the slot goes back */
		else if (c->state == VSOCK_REQ_SENT && now >= c->deadline_ms && !(c->pending & VSOCK_P_RST))
			conn_reset(v, c); /* the guest did not answer in 2 s: the client sees its socket close */
	}
	bool tx = tx_drain(v);
	reset_wait_check(v, now);
	bool rx = rx_fill(v);
	bool evq = event_send(v);
	interrupt_if_asked(v, VSOCK_Q_TX, tx);
	interrupt_if_asked(v, VSOCK_Q_RX, rx);
	interrupt_if_asked(v, VSOCK_Q_EVENT, evq);
	pthread_mutex_unlock(&v->t.lock);
}

static void *vsock_thread(void *arg)
{
	struct virtio_vsock *v = arg;
	for (;;) {
		pthread_mutex_lock(&v->t.lock);
		bool stop = v->thread.stop;
		pthread_mutex_unlock(&v->t.lock);
		if (stop)
			break;
		virtio_vsock_poll(v, -1);
	}
	return NULL;
}

static void vsock_kick(void *arg)
{
	struct virtio_vsock *v = arg;
	uint64_t one = 1;
	if (write(v->kick_fd, &one, sizeof(one)) < 0) {
		/* cannot fail on an eventfd we own short of overflow, which the loop's reads prevent */
	}
}

/* A QueueNotify through a vCPU exit (no ioeventfd): wake the thread the same way KVM would. */
static void vsock_queue_notify(void *opaque, unsigned q)
{
	vsock_kick(opaque);
}

/* The driver reset the device (lock held): every connection ends with it. */
static void vsock_reset(void *opaque)
{
	struct virtio_vsock *v = opaque;
	conns_close_all(v);
	v->reset_pending = false;
	v->reset_wait = false;
}

static const struct virtio_dev_ops vsock_ops = { .queue_notify = vsock_queue_notify, .reset = vsock_reset };

int virtio_vsock_init(struct virtio_vsock *v, const char *path, int listen_fd, uint32_t guest_cid,
		      const struct guest_mem *mem, const struct dev_host *host, unsigned irq)
{
	memset(v, 0, sizeof(*v));
	v->epoll_fd = v->kick_fd = v->spare_fd = -1;
	if (strlen(path) > VSOCK_PATH_MAX || guest_cid <= VSOCK_HOST_CID || guest_cid == UINT32_MAX)
		return -EINVAL;
	strcpy(v->path, path);
	v->guest_cid = guest_cid;
	v->listen_fd = listen_fd;
	v->next_port = VSOCK_FIRST_EPHEMERAL;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		v->conns[i].fd = -1;
	v->config.guest_cid = guest_cid;
	int rc;
	v->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	v->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->epoll_fd < 0 || v->kick_fd < 0)
		goto err_fds;
	struct epoll_event kev = { .events = EPOLLIN, .data.u64 = TAG_KICK };
	struct epoll_event lev = { .events = EPOLLIN | EPOLLET, .data.u64 = TAG_LISTEN };
	if (epoll_ctl(v->epoll_fd, EPOLL_CTL_ADD, v->kick_fd, &kev) < 0 ||
	    (listen_fd >= 0 && epoll_ctl(v->epoll_fd, EPOLL_CTL_ADD, listen_fd, &lev) < 0))
		goto err_fds;
	virtio_mmio_init(&v->t, mem, host, irq, VIRTIO_ID_VSOCK, 0, 3, &v->config, sizeof(v->config), &vsock_ops, v);
	devthread_init(&v->thread, &v->t.lock, vsock_thread, vsock_kick, v);
	v->spare_fd = spare_fd_open();
	return 0;
err_fds:
	rc = -errno;
	if (v->epoll_fd >= 0)
		close(v->epoll_fd);
	if (v->kick_fd >= 0)
		close(v->kick_fd);
	return rc;
}

int virtio_vsock_start(struct virtio_vsock *v)
{
	return devthread_start(&v->thread);
}

void virtio_vsock_save(struct virtio_vsock *v, struct virtio_vsock_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_mmio_save(&v->t, &st->t);
	st->guest_cid = v->guest_cid;
}

int virtio_vsock_load(struct virtio_vsock *v, const struct virtio_vsock_state *st)
{
	if (st->guest_cid != v->guest_cid)
		return -EINVAL;
	return virtio_mmio_load(&v->t, &st->t);
}

void virtio_vsock_pause(struct virtio_vsock *v)
{
	devthread_stop(&v->thread);
}

int virtio_vsock_resume(struct virtio_vsock *v)
{
	return devthread_resume(&v->thread);
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	virtio_vsock_pause(v);
	conns_close_all(v);
	close(v->epoll_fd);
	close(v->kick_fd);
	if (v->spare_fd >= 0)
		close(v->spare_fd);
	virtio_mmio_destroy(&v->t);
}

/* ---- the device interface ---------------------------------------------------------------- */

static int vsock_dev_start(struct device *d)
{
	return virtio_vsock_start(d->dev);
}

static void vsock_dev_pause(struct device *d)
{
	virtio_vsock_pause(d->dev);
}

static int vsock_dev_resume(struct device *d)
{
	return virtio_vsock_resume(d->dev);
}

static void vsock_dev_save(struct device *d, void *st)
{
	virtio_vsock_save(d->dev, st);
}

static int vsock_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	if (virtio_vsock_load(d->dev, st))
		return errorf(err, errlen, -EINVAL, "corrupt: virtio-vsock state");
	return 0;
}

/* Connections did not survive: the guest hears so and drops its own; listeners stay. */
static void vsock_dev_restored(struct device *d)
{
	struct virtio_vsock *v = d->dev;
	virtio_vsock_transport_reset(v);
	virtio_mmio_notify_all(&v->t);
}

static void vsock_dev_destroy(struct device *d)
{
	virtio_vsock_destroy(d->dev);
	free(d->dev);
}

static const struct dev_ops vsock_dev_ops = {
	.name = "virtio-vsock",
	.start = vsock_dev_start,
	.pause = vsock_dev_pause,
	.resume = vsock_dev_resume,
	.snap_section = SNAP_SEC_VSOCK,
	.state_size = sizeof(struct virtio_vsock_state),
	.save = vsock_dev_save,
	.load = vsock_dev_load,
	.restored = vsock_dev_restored,
	.destroy = vsock_dev_destroy,
};

int virtio_vsock_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	const struct vsock_params *p = params;
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int rc = virtio_vsock_init(v, p->path, p->listen_fd, p->guest_cid, mem, host, d->irq);
	if (rc) {
		free(v);
		return rc;
	}
	d->ops = &vsock_dev_ops;
	d->dev = v;
	d->virtio = d->bus_opaque = &v->t;
	d->bus_ops = &virtio_mmio_ops;
	d->len = VIRTIO_MMIO_RANGE_LEN;
	/* One pass of the device loop serves all three queues: any QueueNotify value wakes it. */
	d->kick_fd = v->kick_fd;
	d->kick_datamatch = false;
	return 0;
}

int virtio_vsock_cid_restore(const struct dev_snap_in *in, unsigned index, uint32_t *cid)
{
	const struct virtio_vsock_state *st = in->find(in, SNAP_SEC_VSOCK, index, NULL);
	if (!st)
		return -ENOENT;
	*cid = st->guest_cid;
	return 0;
}
