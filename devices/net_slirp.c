/* The built-in network backend: one libslirp instance per NIC, driven by the NIC's own thread (poll and a timer list). */
#include "devices/virtio_net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/err.h"

#ifndef PADCELL_SLIRP

bool net_slirp_built_in(void)
{
	return false;
}

int net_slirp_backend(struct net_backend *be, char *err, size_t errlen)
{
	(void)be;
	return errorf(err, errlen, -ENOTSUP,
		      "this padcell was built without libslirp (make SLIRP=0); build it with SLIRP=1 for networking");
}

#else

#include <arpa/inet.h>
#include <libslirp.h>
#include <malloc.h>
#include <time.h>

/*
 * libslirp gives every TCP connection two socket buffers, 128 KiB each and then grown to
 * 128 KiB + one MSS (192 KiB at our MTU), and keeps them until the socket is freed, seconds
 * after the connection closed.  glibc maps a block that large on its own, but after the first
 * such block is freed it raises its mmap threshold past it (the dynamic threshold), so later
 * buffers come from the heap, are copied whole when grown and stay resident: measured in the
 * nested bench, 100 sequential GETs held 39 MiB of socket buffers.  A fixed threshold, between
 * slirp's 64 KiB mbufs (reused from its free list) and its socket buffers, keeps each buffer
 * its own mapping: grown with mremap, only the pages written become resident (a page or two for
 * a short connection), and freeing returns it.  That holds only while the heap's top chunk is
 * smaller than a buffer (glibc serves from the top before it considers mapping), and by default
 * every growth of the main heap leaves 128 KiB + a few bytes spare at its top (M_TOP_PAD): enough
 * for a 128 KiB buffer.  Half that keeps the top below a buffer (a free trims it back to the pad
 * once it reaches the 128 KiB trim threshold) while still sparing the heap a grow and a trim
 * (and the page faults after them) for every mbuf freed and taken again.
 */
#define NET_SLIRP_MMAP_THRESHOLD (96 * 1024)
#define NET_SLIRP_TOP_PAD        (64 * 1024)

/* A timer slirp asked for; fired from the device loop through slirp_handle_timer(). */
struct slirp_timer {
	SlirpTimerId id;
	void *cb_opaque;
	int64_t expire_ms; /* on clock_get_ns()'s clock, in ms */
	bool armed;
	struct slirp_timer *next;
};

struct net_slirp {
	Slirp *slirp;
	struct virtio_net *net;
	struct slirp_timer *timers;
	struct pollfd *fds; /* while slirp_pollfds_fill/poll run */
	unsigned nfds, maxfds;
	bool rx_paused;     /* this pass: ask for no host socket's input */
};

bool net_slirp_built_in(void)
{
	return true;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* slirp -> guest: straight onto the rx queue (or its backlog); slirp_input() may call it too. */
static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;
	virtio_net_deliver(s->net, buf, len);
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	(void)msg, (void)opaque; /* the gate already dropped what would be worth telling */
}

static int64_t cb_clock_get_ns(void *opaque)
{
	return mono_ns();
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct net_slirp *s = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->id = id;
	t->cb_opaque = cb_opaque;
	t->next = s->timers;
	s->timers = t;
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct net_slirp *s = opaque;
	for (struct slirp_timer **p = &s->timers; *p; p = &(*p)->next)
		if (*p == timer) {
			*p = ((struct slirp_timer *)timer)->next;
			free(timer);
			return;
		}
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct slirp_timer *t = timer;
	t->expire_ms = expire_ms;
	t->armed = true;
}

/* Every pass of the loop asks slirp for its fds again, so there is nothing to register. */
static void cb_register_poll_fd(int fd, void *opaque) {}
static void cb_unregister_poll_fd(int fd, void *opaque) {}
/* The loop runs slirp_pollfds_fill() again right after the call that caused this. */
static void cb_notify(void *opaque) {}

static const SlirpCb slirp_cbs = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
	.timer_new_opaque = cb_timer_new_opaque,
};

static struct in_addr in4(uint32_t host_order)
{
	return (struct in_addr){ .s_addr = htonl(host_order) };
}

static int slirp_open(void *ctx, struct virtio_net *n)
{
	struct net_slirp *s = ctx;
	s->net = n;
	/*
	 * Not slirp's "restricted" mode: that would refuse every outbound connection, and the
	 * gate in front of slirp_input() is what decides which ones exist.  Off: IPv6, DHCP (the
	 * guest's address is fixed), slirp's DNS forwarder (padcell answers DNS), TFTP, the
	 * FTP/IRC emulations, and the host's loopback behind the gateway address.
	 */
	SlirpConfig cfg = {
		.version = 4,
		.restricted = 0,
		.in_enabled = true,
		.vnetwork = in4(NET_NETWORK),
		.vnetmask = in4(~0u << (32 - NET_PREFIX)),
		.vhost = in4(NET_GATEWAY_IP),
		.in6_enabled = false,
		.vdhcp_start = in4(NET_GUEST_IP),
		.vnameserver = in4(NET_DNS_IP),
		.if_mtu = NET_MTU,
		.if_mru = NET_MTU,
		.disable_host_loopback = true,
		.enable_emu = false,
		.disable_dns = true,
		.disable_dhcp = true,
	};
	s->slirp = slirp_new(&cfg, &slirp_cbs, s);
	return s->slirp ? 0 : -ENOMEM;
}

static void slirp_send(void *ctx, const uint8_t *frame, size_t len)
{
	struct net_slirp *s = ctx;
	if (s->slirp)
		slirp_input(s->slirp, frame, (int)len);
}

static int cb_add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *s = opaque;
	if (s->nfds == s->maxfds)
		return -1; /* that socket waits for a later pass */
	short ev = 0;
	/*
	 * Flow control: while frames wait for guest rx buffers slirp reads none of its sockets, so
	 * a host peer's data stays in its socket and its TCP window closes, instead of slirp
	 * reading on and emitting segments the guest has no room for.
	 */
	if ((events & SLIRP_POLL_IN) && !s->rx_paused)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if ((events & SLIRP_POLL_PRI) && !s->rx_paused)
		ev |= POLLPRI; /* urgent data is read too */
	s->fds[s->nfds] = (struct pollfd){ .fd = fd, .events = ev };
	return (int)s->nfds++;
}

static int cb_get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;
	if (idx < 0 || (unsigned)idx >= s->nfds)
		return 0;
	short re = s->fds[idx].revents;
	int ev = 0;
	if (re & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (re & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (re & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (re & POLLERR)
		ev |= SLIRP_POLL_ERR;
	if (re & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

static unsigned slirp_poll_fill(void *ctx, struct pollfd *fds, unsigned max, int *timeout_ms)
{
	struct net_slirp *s = ctx;
	if (!s->slirp)
		return 0;
	s->fds = fds;
	s->nfds = 0;
	s->maxfds = max;
	s->rx_paused = virtio_net_rx_paused(s->net);
	uint32_t t = *timeout_ms < 0 ? UINT32_MAX : (uint32_t)*timeout_ms;
	slirp_pollfds_fill(s->slirp, &t, cb_add_poll, s);
	int64_t now = mono_ns() / 1000000;
	for (struct slirp_timer *tm = s->timers; tm; tm = tm->next)
		if (tm->armed) {
			int64_t left = tm->expire_ms > now ? tm->expire_ms - now : 0;
			if (left < t)
				t = (uint32_t)left;
		}
	*timeout_ms = t == UINT32_MAX ? -1 : (int)(t > 60000 ? 60000 : t);
	return s->nfds;
}

static void slirp_poll_done(void *ctx, struct pollfd *fds, unsigned n, int rc)
{
	struct net_slirp *s = ctx;
	if (!s->slirp)
		return;
	s->fds = fds;
	s->nfds = n;
	slirp_pollfds_poll(s->slirp, rc < 0, cb_get_revents, s);
	/* Expired timers, one at a time: a handler may re-arm or free any timer. */
	for (bool fired = true; fired;) {
		fired = false;
		int64_t now = mono_ns() / 1000000;
		for (struct slirp_timer *t = s->timers; t; t = t->next)
			if (t->armed && t->expire_ms <= now) {
				t->armed = false;
				slirp_handle_timer(s->slirp, t->id, t->cb_opaque);
				fired = true;
				break;
			}
	}
}

static void slirp_close(void *ctx)
{
	struct net_slirp *s = ctx;
	if (s->slirp)
		slirp_cleanup(s->slirp); /* frees its timers through timer_free */
	while (s->timers) {
		struct slirp_timer *t = s->timers;
		s->timers = t->next;
		free(t);
	}
	free(s);
}

/*
 * slirp listens on the host address and port now and, for each connection there, opens one to
 * the guest's port from its gateway address: the guest sees a client at 10.0.2.2.
 */
static int slirp_publish(void *ctx, const struct net_publish *p, char *err, size_t errlen)
{
	struct net_slirp *s = ctx;
	errno = 0;
	if (slirp_add_hostfwd(s->slirp, 0, in4(p->host_addr), p->host_port, in4(NET_GUEST_IP), p->guest_port) < 0) {
		int e = errno ? errno : EADDRINUSE;
		struct in_addr a = in4(p->host_addr);
		return errorf(err, errlen, -e, "--publish '%s': cannot listen on %s:%u: %s", p->text, inet_ntoa(a),
			      p->host_port, strerror(e));
	}
	return 0;
}

static const struct net_backend_ops slirp_ops = {
	.name = "libslirp",
	.open = slirp_open,
	.send = slirp_send,
	.poll_fill = slirp_poll_fill,
	.poll_done = slirp_poll_done,
	.close = slirp_close,
	.publish = slirp_publish,
	.dials_loopback = true,
};

int net_slirp_backend(struct net_backend *be, char *err, size_t errlen)
{
	struct net_slirp *s = calloc(1, sizeof(*s));
	if (!s)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	mallopt(M_MMAP_THRESHOLD, NET_SLIRP_MMAP_THRESHOLD); /* process-wide; 0 only for a value out of range */
	mallopt(M_TOP_PAD, NET_SLIRP_TOP_PAD);
	be->ops = &slirp_ops;
	be->ctx = s;
	return 0;
}

#endif
