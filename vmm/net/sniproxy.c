/* The SNI/Host check state machine: bounded reads, the policy's name check, non-blocking dials, a two-way splice. */
#include "vmm/net/sniproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void reject(struct sniproxy *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
	p->decided = true;
	p->rejected = true;
	p->reset = true;
	p->state = SNIPROXY_DONE;
}

void sniproxy_init(struct sniproxy *p, int gfd, const char *via, uint16_t port, int64_t now_ms)
{
	memset(p, 0, offsetof(struct sniproxy, g2h));
	p->g2h.off = p->g2h.len = 0;
	p->h2g.off = p->h2g.len = 0;
	p->g_eof = p->h_eof = p->g_shut = p->h_shut = false;
	p->decided = p->rejected = p->reset = false;
	p->why[0] = '\0';
	p->to_host = p->to_guest = 0;
	p->state = SNIPROXY_HELLO;
	p->gfd = gfd;
	p->hfd = -1;
	p->port = port;
	snprintf(p->via, sizeof(p->via), "%s", via ? via : "");
	p->deadline_ms = now_ms + SNIPROXY_HELLO_MS;
	set_nonblock(gfd);
}

static int min_timeout(int t, int64_t deadline, int64_t now)
{
	int64_t left = deadline > now ? deadline - now : 0;
	if (left > 60000)
		left = 60000;
	return t < 0 || t > left ? (int)left : t;
}

unsigned sniproxy_poll_fill(struct sniproxy *p, struct pollfd *fds, unsigned max, int64_t now_ms, int *timeout_ms)
{
	if (max < 2)
		return 0;
	unsigned n = 0;
	switch (p->state) {
	case SNIPROXY_HELLO:
		fds[n++] = (struct pollfd){ .fd = p->gfd, .events = POLLIN };
		*timeout_ms = min_timeout(*timeout_ms, p->deadline_ms, now_ms);
		break;
	case SNIPROXY_RESOLVE:
		*timeout_ms = min_timeout(*timeout_ms, p->deadline_ms, now_ms);
		break;
	case SNIPROXY_CONNECT:
		fds[n++] = (struct pollfd){ .fd = p->hfd, .events = POLLOUT };
		*timeout_ms = min_timeout(*timeout_ms, p->deadline_ms, now_ms);
		break;
	case SNIPROXY_SPLICE: {
		short ge = 0, he = 0;
		if (!p->g_eof && p->g2h.len < SNIPROXY_BUF)
			ge |= POLLIN;
		if (p->h2g.len)
			ge |= POLLOUT;
		if (!p->h_eof && p->h2g.off + p->h2g.len < SNIPROXY_BUF)
			he |= POLLIN;
		if (p->g2h_clear)
			he |= POLLOUT;
		/*
		 * A side with nothing to wait for is left out (fd -1): poll() would report its hangup
		 * (the peer closed, our EOF passed on) at once on every pass while the other side still
		 * drains.  Its errors show at the next write to it.
		 */
		fds[n++] = (struct pollfd){ .fd = ge ? p->gfd : -1, .events = ge };
		fds[n++] = (struct pollfd){ .fd = he ? p->hfd : -1, .events = he };
		break;
	}
	case SNIPROXY_DONE:
		break;
	}
	return n;
}

/* One read into b's free tail.  >0 bytes, 0 EOF, -EAGAIN, or -errno. */
static ssize_t buf_read(int fd, struct sniproxy_buf *b, size_t limit)
{
	if (b->len == 0)
		b->off = 0;
	size_t end = b->off + b->len;
	if (end >= limit && b->off) {
		/* bytes held back (an HTTP head not yet complete) move to the front to make room */
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
		end = b->len;
	}
	size_t room = (limit < SNIPROXY_BUF ? limit : SNIPROXY_BUF) - end;
	if (end >= limit || room == 0)
		return -EAGAIN;
	ssize_t r = recv(fd, b->data + end, room, MSG_DONTWAIT);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
	b->len += (size_t)r;
	return r;
}

/*
 * Writes what b holds, or only its first *clear bytes (lowered as they go) when clear is given.
 * 0 (some or none written: wait for POLLOUT), or -errno.
 */
static int buf_write(int fd, struct sniproxy_buf *b, size_t *clear, uint64_t *count)
{
	size_t all = b->len, *todo = clear ? clear : &all;
	while (*todo) {
		ssize_t w = send(fd, b->data + b->off, *todo, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
		b->off += (size_t)w;
		b->len -= (size_t)w;
		*todo -= (size_t)w;
		*count += (uint64_t)w;
	}
	if (!b->len)
		b->off = 0;
	return 0;
}

static const char *kind_name(enum sni_kind k)
{
	return k == SNI_KIND_TLS ? "TLS SNI" : k == SNI_KIND_HTTP ? "HTTP Host" : "first bytes";
}

static void step_hello(struct sniproxy *p, const struct policy *pol, short revents, int64_t now_ms)
{
	if (revents) {
		ssize_t r = buf_read(p->gfd, &p->g2h, SNI_MAX_INPUT);
		if (r == 0) {
			reject(p, "the guest closed before naming a host");
			return;
		}
		if (r < 0 && r != -EAGAIN) {
			reject(p, "the guest's connection failed: %s", strerror((int)-r));
			return;
		}
	}
	switch (sni_parse(p->g2h.data, p->g2h.len, &p->info)) {
	case SNI_NEED_MORE:
		if (now_ms >= p->deadline_ms)
			reject(p, "no TLS SNI or HTTP Host within %d ms", SNIPROXY_HELLO_MS);
		return;
	case SNI_NONE:
		reject(p, "no %s", p->info.kind == SNI_KIND_HTTP ? "HTTP Host" : "TLS SNI");
		return;
	case SNI_INVALID:
		reject(p, "not a TLS ClientHello or HTTP request with a host name");
		return;
	case SNI_FOUND:
		break;
	}
	if (!policy_check_name(pol, p->info.name, p->port, &p->decision)) {
		reject(p, "sni mismatch: %s '%s' on port %u: %s (resolved for %s)", kind_name(p->info.kind), p->info.name,
		       p->port, p->decision.why, p->via);
		return;
	}
	p->decided = true;
	if (p->info.kind == SNI_KIND_HTTP) {
		p->framing = true; /* this first request is framed again, with the rest, once the server is dialled */
		httpreq_init(&p->http);
	}
	snprintf(p->why, sizeof(p->why), "%s '%s': %s (resolved for %s)", kind_name(p->info.kind), p->info.name,
		 p->decision.why, p->via);
	p->state = SNIPROXY_RESOLVE;
	p->deadline_ms = now_ms + SNIPROXY_RESOLVE_MS;
}

/* Starts a connect to the next answer; DONE (rejected) when none is left. */
static void dial_next(struct sniproxy *p, int64_t now_ms)
{
	while (p->next < p->naddrs) {
		uint32_t a = p->addrs[p->next++];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->port), .sin_addr.s_addr = htonl(a) };
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS) {
			p->hfd = fd;
			p->state = SNIPROXY_CONNECT;
			return;
		}
		close(fd);
	}
	p->rejected = true;
	p->reset = true;
	snprintf(p->why, sizeof(p->why), "cannot connect to %s:%u (%zu addresses tried)", p->info.name, p->port,
		 p->naddrs);
	p->state = SNIPROXY_DONE;
	(void)now_ms;
}

enum sniproxy_state sniproxy_resolved(struct sniproxy *p, const struct policy *pol, int status, const uint32_t *addrs,
				      size_t n, int64_t now_ms)
{
	if (p->state != SNIPROXY_RESOLVE)
		return p->state;
	if (status) {
		reject(p, "resolving %s: %s", p->info.name,
		       status == -ENOENT ? "no such name" : status == -ETIMEDOUT ? "timed out" : "failed");
		return p->state;
	}
	p->naddrs = p->next = 0;
	for (size_t i = 0; i < n && p->naddrs < SNIPROXY_MAX_ADDRS; i++) {
		struct policy_decision d;
		if (policy_refused_range(pol, addrs[i]) && !policy_check_addr(pol, addrs[i], 0, IPPROTO_ICMP, &d))
			continue; /* a name resolving into a refused range: rebinding */
		p->addrs[p->naddrs++] = addrs[i];
	}
	if (!p->naddrs) {
		reject(p, "resolving %s: no address outside the refused ranges", p->info.name);
		return p->state;
	}
	p->deadline_ms = now_ms + SNIPROXY_CONNECT_MS;
	dial_next(p, now_ms);
	return p->state;
}

static void step_connect(struct sniproxy *p, short revents, int64_t now_ms)
{
	if (!revents) {
		if (now_ms >= p->deadline_ms) {
			p->rejected = p->reset = true;
			snprintf(p->why, sizeof(p->why), "connecting to %s:%u timed out", p->info.name, p->port);
			p->state = SNIPROXY_DONE;
		}
		return;
	}
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(p->hfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		p->state = SNIPROXY_SPLICE; /* the hello waits in g2h and goes first */
		return;
	}
	close(p->hfd);
	p->hfd = -1;
	dial_next(p, now_ms);
}

/* Reads from fd into b when poll said so.  0, or -errno. */
static int dir_read(int fd, struct sniproxy_buf *b, short revents, bool *eof, ssize_t *got)
{
	*got = 0;
	if (!(revents & (POLLIN | POLLHUP | POLLERR)) || *eof)
		return 0;
	ssize_t r = buf_read(fd, b, SNIPROXY_BUF);
	if (r == 0)
		*eof = true;
	else if (r < 0 && r != -EAGAIN)
		return (int)r;
	else if (r > 0)
		*got = r;
	return 0;
}

/* Writes b (up to *clear when given) to fd, then passes an EOF on once b is empty. */
static int dir_write(int fd, struct sniproxy_buf *b, size_t *clear, bool eof, bool *shut, uint64_t *count)
{
	int rc = buf_write(fd, b, clear, count);
	if (rc)
		return rc;
	if (eof && !b->len && !*shut) {
		shutdown(fd, SHUT_WR);
		*shut = true;
	}
	return 0;
}

/*
 * HTTP: lets the framer clear what follows g2h_clear; TLS: everything is clear.  An Upgrade
 * request's fate is decided by the server's first bytes (peek), or by its EOF before them.
 */
static void frame_g2h(struct sniproxy *p, const struct policy *pol)
{
	if (!p->framing) {
		p->g2h_clear = p->g2h.len;
		return;
	}
	if (p->http.state == HTTPREQ_UPGRADE_WAIT && (p->peek_len == HTTPREQ_STATUS_PEEK || p->h_eof))
		httpreq_server_began(&p->http, p->peek, p->peek_len);
	if (p->g2h_clear < p->g2h.len)
		p->g2h_clear += httpreq_feed(&p->http, pol, p->port, p->g2h.data + p->g2h.off + p->g2h_clear,
					     p->g2h.len - p->g2h_clear);
}

static void step_splice(struct sniproxy *p, const struct policy *pol, short r0, short r1)
{
	ssize_t got;
	int rc = dir_read(p->gfd, &p->g2h, r0, &p->g_eof, &got);
	if (!rc)
		rc = dir_read(p->hfd, &p->h2g, r1, &p->h_eof, &got);
	if (!rc && got > 0 && p->peek_len < HTTPREQ_STATUS_PEEK) {
		size_t k = HTTPREQ_STATUS_PEEK - p->peek_len < (size_t)got ? HTTPREQ_STATUS_PEEK - p->peek_len : (size_t)got;
		memcpy(p->peek + p->peek_len, p->h2g.data + p->h2g.off + p->h2g.len - (size_t)got, k);
		p->peek_len += k;
	}
	if (!rc) {
		frame_g2h(p, pol);
		rc = dir_write(p->hfd, &p->g2h, &p->g2h_clear, p->g_eof, &p->h_shut, &p->to_host);
	}
	if (!rc)
		rc = dir_write(p->gfd, &p->h2g, NULL, p->h_eof, &p->g_shut, &p->to_guest);
	if (rc) {
		p->reset = true;
		p->state = SNIPROXY_DONE;
		return;
	}
	if (p->framing && p->http.state == HTTPREQ_REFUSED) {
		/* what the framer cleared before the refused request went out above; none of that request */
		reject(p, "%s", p->http.why);
		return;
	}
	if (p->framing && p->g_eof && p->g2h_clear < p->g2h.len && p->http.state != HTTPREQ_UPGRADE_WAIT) {
		reject(p, "request %u: the guest closed inside it", p->http.requests + 1);
		return;
	}
	if (p->g_shut && p->h_shut)
		p->state = SNIPROXY_DONE;
}

enum sniproxy_state sniproxy_step(struct sniproxy *p, const struct policy *pol, const struct pollfd *fds, unsigned n,
				  int64_t now_ms)
{
	short r0 = n > 0 ? fds[0].revents : 0, r1 = n > 1 ? fds[1].revents : 0;
	switch (p->state) {
	case SNIPROXY_HELLO:
		step_hello(p, pol, r0, now_ms);
		break;
	case SNIPROXY_RESOLVE:
		if (now_ms >= p->deadline_ms)
			reject(p, "resolving %s timed out", p->info.name);
		break;
	case SNIPROXY_CONNECT:
		step_connect(p, r0, now_ms);
		if (p->state != SNIPROXY_SPLICE)
			break;
		r0 = r1 = 0; /* the hello goes out at once */
		__attribute__((fallthrough));
	case SNIPROXY_SPLICE:
		step_splice(p, pol, r0, r1);
		break;
	case SNIPROXY_DONE:
		break;
	}
	return p->state;
}

void sniproxy_abort(struct sniproxy *p, const char *why)
{
	if (!p->decided) {
		p->decided = p->rejected = true;
		snprintf(p->why, sizeof(p->why), "%s", why);
	}
	p->reset = true;
	p->state = SNIPROXY_DONE;
	sniproxy_close(p);
}

static void close_reset(int fd)
{
	/* SO_LINGER 0: close sends a reset instead of a FIN (TCP; a no-op for Unix sockets) */
	struct linger l = { .l_onoff = 1, .l_linger = 0 };
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

void sniproxy_close(struct sniproxy *p)
{
	if (p->gfd >= 0) {
		if (p->reset)
			close_reset(p->gfd);
		else
			close(p->gfd);
	}
	if (p->hfd >= 0) {
		if (p->reset)
			close_reset(p->hfd);
		else
			close(p->hfd);
	}
	p->gfd = p->hfd = -1;
	p->state = SNIPROXY_DONE;
}
