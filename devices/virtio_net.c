/* virtio-net: tx frames copied once, judged by the gate on that copy, then handed to the backend; rx frames from it. */
#include "devices/virtio_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/jail/jail.h"
#include "vmm/net/dns.h"
#include "vmm/snapshot_fmt.h"

_Static_assert(sizeof(struct virtio_net_hdr_v1) == 12, "VERSION_1 header is 12 bytes");
_Static_assert(NET_MTU <= 65535, "the config's mtu field is 16 bits");
_Static_assert(sizeof(struct net_redirect) % _Alignof(struct net_pin) == 0, "the pins follow the redirects aligned");

/* ---- the decision log ------------------------------------------------------------------ */

/* A JSON string body: quotes, backslashes and control bytes escaped; the rule text is the user's. */
static size_t json_str(char *out, size_t outlen, const char *s)
{
	size_t o = 0;
	for (; *s && o + 7 < outlen; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, outlen - o, "\\%c", c);
		else if (c < 0x20)
			o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return o;
}

/* One more decision with this --net-log verdict. */
static void net_count(struct virtio_net *n, const char *verdict)
{
	struct policy_counts *c = &n->counts;
	uint64_t *v = !strcmp(verdict, "allow")	   ? &c->allowed
		      : !strcmp(verdict, "reject")   ? &c->rejected
		      : !strcmp(verdict, "drop")     ? &c->dropped
		      : !strcmp(verdict, "resolved") ? &c->resolved
		      : !strcmp(verdict, "nxdomain") ? &c->nxdomain
		      : !strcmp(verdict, "servfail") ? &c->servfail
						     : NULL;
	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED); /* the API thread reads them while this one counts */
}

/*
 * One JSON line per decision: {"time":…,"proto":…,"dst":…,"verdict":…,"why":…}.  One write()
 * each, so lines from several VMs sharing a file (O_APPEND) never interleave.
 */
static void net_log(struct virtio_net *n, const char *proto, const char *dst, const char *verdict, const char *why)
{
	net_count(n, verdict);
	if (n->log_fd < 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char t[40], d[300], w[2 * POLICY_TEXT_MAX + 200], line[1024];
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	json_str(d, sizeof(d), dst);
	json_str(w, sizeof(w), why);
	int len = snprintf(line, sizeof(line), "{\"time\":\"%s.%03ldZ\",\"proto\":\"%s\",\"dst\":\"%s\",\"verdict\":\"%s\",\"why\":\"%s\"}\n",
			   t, ts.tv_nsec / 1000000, proto, d, verdict, w);
	if (len > 0 && (size_t)len < sizeof(line) && write(n->log_fd, line, (size_t)len) < 0) {
		/* a full disk loses log lines, never the guest's traffic */
	}
}

static const char *proto_name(uint8_t p)
{
	return p == 6 ? "tcp" : p == 17 ? "udp" : p == 1 ? "icmp" : "other";
}

static void log_gate(struct virtio_net *n, const struct gate_result *r)
{
	/*
	 * Segments of known connections are not decisions, nor is a DNS query: tx_dns() logs its
	 * decision (resolved, nxdomain, servfail).  Everything else is.
	 */
	if ((r->verdict == GATE_PASS && !r->policy_checked) || r->verdict == GATE_DNS)
		return;
	const char *v = r->verdict == GATE_PASS ? "allow" : r->verdict == GATE_REJECT_TCP ? "reject" : "drop";
	if (n->log_fd < 0) {
		net_count(n, v);
		return;
	}
	char dst[64];
	struct in_addr a = { .s_addr = htonl(r->dst) };
	if (r->proto == 6 || r->proto == 17)
		snprintf(dst, sizeof(dst), "%s:%u", inet_ntoa(a), r->dport);
	else if (r->proto)
		snprintf(dst, sizeof(dst), "%s", inet_ntoa(a));
	else
		snprintf(dst, sizeof(dst), "-");
	net_log(n, proto_name(r->proto), dst, v, r->policy_checked ? r->decision.why : r->reason);
}

/* ---- rx: frames for the guest ---------------------------------------------------------- */

/* The rx limiter's word on a frame about to go out: false holds it back (the caller gives its buffers back). */
static bool rx_rate_ok(struct virtio_net *n, size_t len)
{
	if (!ratelimit_active(&n->rx_rl))
		return true;
	uint64_t now = n->clock(), wait;
	if (!ratelimit_consume(&n->rx_rl, 1, len, now, &wait)) {
		n->rx_until_ns = now + wait;
		n->stats.rx_throttled++;
		__atomic_fetch_add(&n->counts.rx_throttled, 1, __ATOMIC_RELAXED);
		return false;
	}
	n->rx_until_ns = 0;
	return true;
}

static void rx_unpop(struct virtq *q, unsigned nbuf)
{
	while (nbuf--)
		virtq_unpop(q);
}

/*
 * MRG_RXBUF: the frame spread over as many buffers as it needs (the driver posts page-sized
 * ones, one descriptor each, instead of one 64 KiB chain per frame), the header's num_buffers
 * saying how many; they reach the used ring together.  Same results as rx_put.
 */
static int rx_put_merged(struct virtio_net *n, struct virtq *q, const uint8_t *frame, size_t len, bool *pushed)
{
	struct virtio_mmio *t = &n->t;
	struct vring_used_elem used[VIRTQ_MAX_SIZE];
	size_t total = NET_HDR_LEN + len, off = 0;
	unsigned nbuf = 0;
	while (off < total) {
		if (nbuf == q->num) {
			/* the whole ring is not enough (the driver posts tiny buffers): this frame can never go */
			rx_unpop(q, nbuf);
			n->stats.rx_dropped++;
			return 1;
		}
		struct virtq_chain *c = nbuf ? &n->chain : &n->rx_first;
		int rc = virtq_pop(q, t->mem, c);
		if (rc < 0) {
			virtio_mmio_needs_reset(t);
			n->stats.rx_dropped++;
			return 1;
		}
		if (rc == 0) {
			rx_unpop(q, nbuf); /* not enough yet: the frame waits for more */
			return 0;
		}
		if (c->read_len || (!nbuf && c->write_len < NET_HDR_LEN)) {
			/* a device-readable buffer, or a first one without room for the header, breaks the spec */
			virtio_mmio_needs_reset(t);
			n->stats.rx_dropped++;
			return 1;
		}
		size_t take = c->write_len < total - off ? (size_t)c->write_len : total - off;
		if (nbuf) /* the first buffer is written once the count is known */
			virtq_chain_write(c, 0, frame + (off - NET_HDR_LEN), take);
		used[nbuf++] = (struct vring_used_elem){ .id = c->head, .len = (uint32_t)take };
		off += take;
	}
	if (!rx_rate_ok(n, len)) {
		rx_unpop(q, nbuf);
		return 0;
	}
	struct virtio_net_hdr_v1 h = { .num_buffers = (uint16_t)nbuf };
	virtq_chain_write(&n->rx_first, 0, &h, sizeof(h));
	virtq_chain_write(&n->rx_first, NET_HDR_LEN, frame, used[0].len - NET_HDR_LEN);
	virtq_push_many(q, used, nbuf);
	*pushed = true;
	n->stats.rx_frames++;
	return 1;
}

/*
 * Puts one frame on the rx queue.  1: delivered, or dropped for good (no driver, a broken
 * ring, a buffer too small for it); 0: no buffer yet, keep it.  With t.lock held.
 */
static int rx_put(struct virtio_net *n, const uint8_t *frame, size_t len, bool *pushed)
{
	struct virtio_mmio *t = &n->t;
	struct virtq *q = virtio_mmio_queue(t, NET_Q_RX);
	if (!q) {
		n->stats.rx_dropped++; /* no driver (yet): a NIC that is down drops */
		return 1;
	}
	if (t->driver_features & (1ULL << VIRTIO_NET_F_MRG_RXBUF))
		return rx_put_merged(n, q, frame, len, pushed);
	int rc = virtq_pop(q, t->mem, &n->chain);
	if (rc < 0) {
		virtio_mmio_needs_reset(t);
		n->stats.rx_dropped++;
		return 1;
	}
	if (rc == 0)
		return 0;
	const struct virtq_chain *c = &n->chain;
	if (c->read_len) {
		/* a device-readable rx buffer breaks the spec: give it back empty, drop nothing else */
		virtq_push(q, c->head, 0);
		*pushed = true;
		n->stats.rx_dropped++;
		return 1;
	}
	if (c->write_len < NET_HDR_LEN + len) {
		/* Smaller than the frame (the driver lowered its MTU): the frame goes, the buffer stays. */
		virtq_unpop(q);
		n->stats.rx_dropped++;
		return 1;
	}
	if (!rx_rate_ok(n, len)) {
		virtq_unpop(q); /* held back: the buffer goes back to the ring, the frame waits in the backlog */
		return 0;
	}
	/* No offloads negotiated: flags, GSO and checksum fields zero; one buffer per frame. */
	struct virtio_net_hdr_v1 h = { .num_buffers = 1 };
	virtq_chain_write(c, 0, &h, sizeof(h));
	virtq_chain_write(c, NET_HDR_LEN, frame, len);
	virtq_push(q, c->head, (uint32_t)(NET_HDR_LEN + len));
	*pushed = true;
	n->stats.rx_frames++;
	return 1;
}

static void rx_interrupt(struct virtio_net *n, bool pushed)
{
	struct virtq *q = virtio_mmio_queue(&n->t, NET_Q_RX);
	if (pushed && q && virtq_should_interrupt(q))
		virtio_mmio_interrupt(&n->t, VIRTIO_MMIO_INT_VRING);
}

/* ---- the rx backlog: one ring of NET_RX_BACKLOG_BYTES, records of [u32 length][frame][pad] ---- */

#define BL_WRAP UINT32_MAX /* in a length's place: the records go on at offset 0 */

static size_t bl_record(size_t len)
{
	return 4 + ((len + 3) & ~(size_t)3);
}

/* Appends a frame; false when the ring has no room for it.  With t.lock held. */
static bool bl_push(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	size_t need = bl_record(len), at;
	if (!n->bl.n) {
		n->bl.head = n->bl.tail = 0;
		n->bl.wrapped = false;
	}
	if (!n->bl.wrapped && n->bl.tail + need <= NET_RX_BACKLOG_BYTES) {
		at = n->bl.tail;
	} else if (!n->bl.wrapped && need <= n->bl.head) {
		/* no room before the end: mark the rest unused (when a length fits there) and go on at 0 */
		if (n->bl.tail + 4 <= NET_RX_BACKLOG_BYTES) {
			uint32_t w = BL_WRAP;
			memcpy(n->bl.buf + n->bl.tail, &w, 4);
		}
		n->bl.wrapped = true;
		at = 0;
	} else if (n->bl.wrapped && n->bl.tail + need <= n->bl.head) {
		at = n->bl.tail;
	} else {
		return false;
	}
	uint32_t l = (uint32_t)len;
	memcpy(n->bl.buf + at, &l, 4);
	memcpy(n->bl.buf + at + 4, frame, len);
	n->bl.tail = at + need;
	n->bl.n++;
	n->bl.bytes += len;
	return true;
}

/* The oldest frame (n->bl.n > 0), its length in *len.  With t.lock held. */
static const uint8_t *bl_peek(struct virtio_net *n, size_t *len)
{
	uint32_t l = BL_WRAP;
	if (n->bl.head + 4 <= NET_RX_BACKLOG_BYTES)
		memcpy(&l, n->bl.buf + n->bl.head, 4);
	if (l == BL_WRAP) {
		n->bl.head = 0; /* only ever reached with the ring wrapped */
		n->bl.wrapped = false;
		memcpy(&l, n->bl.buf, 4);
	}
	*len = l;
	return n->bl.buf + n->bl.head + 4;
}

static void bl_pop(struct virtio_net *n, size_t len)
{
	n->bl.head += bl_record(len);
	n->bl.bytes -= len;
	if (!--n->bl.n) {
		n->bl.head = n->bl.tail = 0;
		n->bl.wrapped = false;
	}
}

/* Backlogged frames onto the queue while it has buffers.  With t.lock held. */
static void rx_flush(struct virtio_net *n)
{
	bool pushed = false;
	while (n->bl.n) {
		size_t len;
		const uint8_t *frame = bl_peek(n, &len);
		if (!rx_put(n, frame, len, &pushed))
			break;
		bl_pop(n, len);
	}
	rx_interrupt(n, pushed);
}

static void backlog_clear(struct virtio_net *n)
{
	n->bl.n = 0;
	n->bl.bytes = 0;
	n->bl.head = n->bl.tail = 0;
	n->bl.wrapped = false;
}

static const uint8_t *redirect_rx(struct virtio_net *n, const uint8_t *frame, size_t len);

static void fin_seen(struct virtio_net *n, const uint8_t *frame, size_t len);

void virtio_net_deliver(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	if (len <= NET_FRAME_MAX) {
		frame = redirect_rx(n, frame, len); /* the device thread's, as the redirect table is */
		fin_seen(n, frame, len);
	}
	pthread_mutex_lock(&n->t.lock);
	bool pushed = false;
	if (len < 14 || len > NET_FRAME_MAX) {
		n->stats.rx_dropped++;
	} else if (n->bl.n || !rx_put(n, frame, len, &pushed)) {
		/* In order: behind what already waits.  A full backlog drops, as a full NIC ring would. */
		if (!bl_push(n, frame, len)) {
			n->stats.rx_dropped++;
			n->stats.rx_overrun++;
		}
	}
	rx_interrupt(n, pushed);
	pthread_mutex_unlock(&n->t.lock);
}

bool virtio_net_rx_paused(const struct virtio_net *n)
{
	return n->rx_paused;
}

/* ---- tx: frames from the guest --------------------------------------------------------- */

/* ---- DNS: padcell answers the guest itself ----------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Remembers that addr was resolved for name (refreshing an existing pin, or replacing the oldest). */
static void pin_add(struct virtio_net *n, uint32_t addr, const char *name)
{
	int64_t exp = now_ms() + NET_PIN_MS;
	struct net_pin *slot = NULL;
	for (unsigned i = 0; i < n->npins; i++) {
		struct net_pin *p = &n->pins[i];
		if (p->addr == addr && !strcmp(p->name, name)) {
			p->expire_ms = exp;
			return;
		}
		if (!slot || p->expire_ms < slot->expire_ms)
			slot = p;
	}
	if (n->npins < NET_PINS_MAX)
		slot = &n->pins[n->npins++];
	slot->addr = addr;
	slot->expire_ms = exp;
	size_t len = strnlen(name, sizeof(slot->name) - 1); /* a normalised name: at most 253 */
	memcpy(slot->name, name, len);
	slot->name[len] = '\0';
}

/*
 * A SYN no address rule allows, to an address padcell resolved for an allowed name: the name's
 * rules decide, on the SYN's port.  True (d filled) if one allows it.
 */
static bool pin_allows(struct virtio_net *n, uint32_t addr, uint16_t port, struct policy_decision *d, const char **via)
{
	int64_t now = now_ms();
	for (unsigned i = 0; i < n->npins; i++) {
		struct net_pin *p = &n->pins[i];
		if (p->addr == addr && p->expire_ms > now && policy_check_name(&n->policy, p->name, port, d)) {
			char why[sizeof(d->why) + sizeof(p->name) + 32];
			int len = snprintf(why, sizeof(why), "%s (resolved for %s)", d->why, p->name);
			size_t keep = len < 0 ? 0 : (size_t)len < sizeof(d->why) ? (size_t)len : sizeof(d->why) - 1;
			memcpy(d->why, why, keep); /* cut to the log's field if need be */
			d->why[keep] = '\0';
			*via = p->name;
			return true;
		}
	}
	return false;
}

/* ---- names checked by TLS SNI / HTTP Host: connections padcell terminates itself ---------- */

#define LOOPBACK_IP 0x7f000001u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

/* An IPv4 TCP frame's fields, if it is one whole (first fragment or none); offsets of its headers. */
struct tcp4 {
	uint32_t src, dst;
	uint16_t sport, dport;
	size_t ip, tcp;
};

static bool tcp4_parse(const uint8_t *f, size_t len, struct tcp4 *t)
{
	if (len < 14 + 20 || rd16(f + 12) != 0x0800 || (f[14] >> 4) != 4 || f[14 + 9] != IPPROTO_TCP)
		return false;
	size_t ihl = (size_t)(f[14] & 15) * 4;
	if (ihl < 20 || len < 14 + ihl + 20 || (rd16(f + 14 + 6) & 0x1fff))
		return false;
	t->ip = 14;
	t->tcp = 14 + ihl;
	t->src = (uint32_t)rd16(f + 26) << 16 | rd16(f + 28);
	t->dst = (uint32_t)rd16(f + 30) << 16 | rd16(f + 32);
	t->sport = rd16(f + t->tcp);
	t->dport = rd16(f + t->tcp + 2);
	return true;
}

/* RFC 1624: a 16-bit one's complement checksum after one 16-bit word changed from old to new. */
static void csum_replace(uint8_t *sum, uint16_t old, uint16_t new)
{
	uint32_t s = (uint32_t)(uint16_t)~rd16(sum) + (uint16_t)~old + new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	wr16(sum, (uint16_t)~s);
}

/* Rewrites the frame's destination (dst true) or source address and port; IPv4 and TCP checksums follow. */
static void tcp4_rewrite(uint8_t *f, const struct tcp4 *t, bool dst, uint32_t addr, uint16_t port)
{
	uint8_t *a = f + t->ip + (dst ? 16 : 12), *pp = f + t->tcp + (dst ? 2 : 0);
	uint8_t *ipsum = f + t->ip + 10, *tcpsum = f + t->tcp + 16;
	uint16_t w[2] = { (uint16_t)(addr >> 16), (uint16_t)addr };
	for (int i = 0; i < 2; i++) {
		uint16_t old = rd16(a + 2 * i);
		csum_replace(ipsum, old, w[i]);
		csum_replace(tcpsum, old, w[i]); /* the pseudo-header has the addresses */
		wr16(a + 2 * i, w[i]);
	}
	csum_replace(tcpsum, rd16(pp), port);
	wr16(pp, port);
}

/* The TCP flags byte and the segment's sequence-space end (seq + data + SYN + FIN), or false. */
static bool tcp4_seq(const uint8_t *f, size_t len, const struct tcp4 *t, uint8_t *flags, uint32_t *seq,
		     uint32_t *ack, uint32_t *end)
{
	size_t tot = rd16(f + t->ip + 2), hlen = (size_t)(f[t->tcp + 12] >> 4) * 4;
	if (t->tcp + 20 > len || hlen < 20 || t->ip + tot > len || t->tcp + hlen > t->ip + tot)
		return false;
	*flags = f[t->tcp + 13];
	*seq = (uint32_t)rd16(f + t->tcp + 4) << 16 | rd16(f + t->tcp + 6);
	*ack = (uint32_t)rd16(f + t->tcp + 8) << 16 | rd16(f + t->tcp + 10);
	*end = *seq + (uint32_t)(t->ip + tot - t->tcp - hlen) + (*flags & 0x02 ? 1u : 0u) + (*flags & 0x01 ? 1u : 0u);
	return true;
}

static struct net_fin *fin_find(struct virtio_net *n, uint16_t sport, uint32_t dst, uint16_t dport)
{
	for (unsigned i = 0; i < NET_FINS_MAX; i++) {
		struct net_fin *e = &n->fins[i];
		if (e->used && e->sport == sport && e->dst == dst && e->dport == dport)
			return e;
	}
	return NULL;
}

/* A frame for the guest: a FIN from the stack is remembered, a reset forgets the connection. */
static void fin_seen(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	struct tcp4 t;
	uint8_t flags;
	uint32_t seq, ack, end;
	if (!tcp4_parse(frame, len, &t) || !tcp4_seq(frame, len, &t, &flags, &seq, &ack, &end) || !(flags & 0x05))
		return;
	struct net_fin *e = fin_find(n, t.dport, t.src, t.sport);
	if (flags & 0x04) { /* RST */
		if (e)
			e->used = false;
		return;
	}
	if (!e) {
		for (unsigned i = 0; i < NET_FINS_MAX && !e; i++)
			if (!n->fins[i].used)
				e = &n->fins[i];
		if (!e)
			e = &n->fins[n->fin_next++ % NET_FINS_MAX];
	}
	*e = (struct net_fin){ .dst = t.src, .sport = t.dport, .dport = t.sport, .fin_end = end, .used = true };
}

/*
 * After the guest's frame went to the stack: if it was the guest's FIN acking the stack's FIN
 * (the stack closed first and is now in TIME_WAIT), the reset that frees the connection at once.
 * frame is what the stack was given (with a redirect's addresses), t its guest's view.
 */
static void fin_answered(struct virtio_net *n, const uint8_t *frame, size_t len, const struct tcp4 *t)
{
	uint8_t flags;
	uint32_t seq, ack, end;
	if (!tcp4_seq(frame, len, t, &flags, &seq, &ack, &end) || !(flags & 0x05)) /* FIN or RST: else nothing to do */
		return;
	struct net_fin *e = fin_find(n, t->sport, t->dst, t->dport);
	if (!e)
		return;
	if (flags & 0x04) { /* the guest reset it: nothing waits */
		e->used = false;
		return;
	}
	if ((flags & 0x11) != 0x11 || ack != e->fin_end)
		return; /* not yet the guest's FIN, or one that does not ack the stack's: no TIME_WAIT */
	e->used = false;
	uint8_t rst[GATE_RST_LEN];
	if (gate_build_fin_reset(frame, len, rst, sizeof(rst)) == GATE_RST_LEN) {
		n->be.ops->send(n->be.ctx, rst, sizeof(rst));
		n->stats.timewait_cut++;
	}
}

static struct net_redirect *redirect_find(struct virtio_net *n, uint16_t sport, uint32_t dst, uint16_t dport)
{
	for (unsigned i = 0; i < NET_REDIRECTS_MAX; i++) {
		struct net_redirect *r = &n->redirects[i];
		if (r->used && r->sport == sport && r->dst == dst && r->dport == dport)
			return r;
	}
	return NULL;
}

static void redirect_free(struct net_redirect *r)
{
	if (r->lfd >= 0)
		close(r->lfd);
	if (r->px) {
		sniproxy_close(r->px);
		free(r->px);
	}
	memset(r, 0, sizeof(*r));
	r->lfd = -1;
}

/*
 * A pinned SYN: a listener of padcell's on 127.0.0.1 for the stack to dial instead of dst.  The
 * one connection it takes is the stack's for this SYN (it dials while slirp_input() runs).  NULL
 * when the table is full (even after dropping expired entries) or no socket can be had.
 */
static struct net_redirect *redirect_new(struct virtio_net *n, const struct tcp4 *t, const char *via)
{
	int64_t now = now_ms();
	struct net_redirect *r = NULL, *oldest = NULL;
	for (unsigned i = 0; i < NET_REDIRECTS_MAX && !r; i++) {
		struct net_redirect *c = &n->redirects[i];
		if (c->used && c->expire_ms && c->expire_ms <= now)
			redirect_free(c);
		if (!c->used)
			r = c;
		else if (c->expire_ms && !c->resolving && (!oldest || c->expire_ms < oldest->expire_ms))
			oldest = c;
	}
	if (!r && oldest) {
		/* every slot taken: a finished connection's translation goes first (it only waits for stray segments) */
		redirect_free(oldest);
		r = oldest;
	}
	if (!r)
		return NULL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(LOOPBACK_IP) };
	socklen_t sl = sizeof(sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return NULL;
	}
	*r = (struct net_redirect){ .net = n, .used = true, .dst = t->dst, .sport = t->sport, .dport = t->dport,
				    .lport = ntohs(sa.sin_port), .lfd = fd, .accept_by_ms = now + NET_REDIRECT_ACCEPT_MS };
	snprintf(r->via, sizeof(r->via), "%s", via);
	return r;
}

static void redirect_log(struct virtio_net *n, struct net_redirect *r)
{
	struct sniproxy *px = r->px;
	/* once for the check, and once more if a later HTTP request on an allowed connection is refused */
	if (!px || !px->decided || r->logged_reject || (r->logged && !px->rejected))
		return;
	r->logged = true;
	r->logged_reject = px->rejected;
	char dst[POLICY_NAME_MAX + 32];
	struct in_addr a = { .s_addr = htonl(r->dst) };
	if (px->info.name[0])
		snprintf(dst, sizeof(dst), "%s:%u", px->info.name, r->dport);
	else
		snprintf(dst, sizeof(dst), "%s:%u", inet_ntoa(a), r->dport);
	if (px->rejected)
		n->stats.sni_rejected++;
	else
		n->stats.sni_allowed++;
	__atomic_fetch_add(px->rejected ? &n->counts.sni_refused : &n->counts.sni_accepted, 1, __ATOMIC_RELAXED);
	net_log(n, "tcp", dst, px->rejected ? "reject" : "allow", px->why);
}

static void redirect_resolved(void *arg, int status, const uint32_t *addrs, size_t naddrs)
{
	struct net_redirect *r = arg;
	r->resolving = false;
	if (r->px)
		sniproxy_resolved(r->px, &r->net->policy, status, addrs, naddrs, now_ms());
}

/* Adds each live redirect's fds; idx[i]/cnt[i] say where they are. */
static unsigned redirect_poll_fill(struct virtio_net *n, struct pollfd *fds, unsigned max, int *timeout_ms,
				   unsigned *idx, unsigned *cnt)
{
	unsigned used = 0;
	int64_t now = now_ms();
	for (unsigned i = 0; i < NET_REDIRECTS_MAX; i++) {
		struct net_redirect *r = &n->redirects[i];
		idx[i] = used;
		cnt[i] = 0;
		if (!r->used || max - used < 2)
			continue;
		if (r->lfd >= 0) {
			fds[used] = (struct pollfd){ .fd = r->lfd, .events = POLLIN };
			cnt[i] = 1;
			int64_t left = r->accept_by_ms > now ? r->accept_by_ms - now : 0;
			if (*timeout_ms < 0 || *timeout_ms > left)
				*timeout_ms = (int)left;
		} else if (r->px && r->px->state != SNIPROXY_DONE) {
			cnt[i] = sniproxy_poll_fill(r->px, fds + used, max - used, now, timeout_ms);
		} else if (r->expire_ms) {
			int64_t left = r->expire_ms > now ? r->expire_ms - now : 0;
			if (*timeout_ms < 0 || *timeout_ms > left)
				*timeout_ms = (int)(left > 60000 ? 60000 : left);
		}
		used += cnt[i];
	}
	return used;
}

static void redirect_poll_done(struct virtio_net *n, const struct pollfd *fds, const unsigned *idx,
			       const unsigned *cnt)
{
	int64_t now = now_ms();
	for (unsigned i = 0; i < NET_REDIRECTS_MAX; i++) {
		struct net_redirect *r = &n->redirects[i];
		if (!r->used)
			continue;
		if (r->lfd >= 0) {
			int c = cnt[i] && fds[idx[i]].revents ? accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC) : -1;
			if (c >= 0) {
				close(r->lfd);
				r->lfd = -1;
				r->px = malloc(sizeof(*r->px));
				if (!r->px) {
					close(c);
					r->expire_ms = now + NET_REDIRECT_LINGER_MS;
					continue;
				}
				n->stats.sni_checked++;
				sniproxy_init(r->px, c, r->via, r->dport, now);
				continue; /* the revents were the listener's: the next poll asks for the guest's bytes */
			} else if (now >= r->accept_by_ms) {
				redirect_free(r); /* the stack never dialled (its connect failed, or the guest gave up) */
				continue;
			} else {
				continue;
			}
		}
		struct sniproxy *px = r->px;
		if (px && px->state != SNIPROXY_DONE) {
			enum sniproxy_state before = px->state;
			sniproxy_step(px, &n->policy, fds + idx[i], cnt[i], now);
			if (px->state == SNIPROXY_RESOLVE && before != SNIPROXY_RESOLVE && !r->resolving) {
				redirect_log(n, r);
				r->resolving = true;
				int rc = n->resolver ? net_resolve_start(n->resolver, px->info.name, redirect_resolved, r) : -EIO;
				if (rc) {
					r->resolving = false;
					sniproxy_resolved(px, &n->policy, -EIO, NULL, 0, now);
				}
			}
		}
		if (px && px->state == SNIPROXY_DONE && !r->expire_ms && !r->resolving) {
			redirect_log(n, r);
			sniproxy_close(px);
			r->expire_ms = now + NET_REDIRECT_LINGER_MS;
		}
		if (r->expire_ms && r->expire_ms <= now && !r->resolving)
			redirect_free(r);
	}
}

/* A frame the stack sends from a redirect's listener: its source becomes the address the guest dialled. */
static const uint8_t *redirect_rx(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	struct tcp4 t;
	if (!n->rxnat || !tcp4_parse(frame, len, &t) || t.src != LOOPBACK_IP)
		return frame;
	for (unsigned i = 0; i < NET_REDIRECTS_MAX; i++) {
		struct net_redirect *r = &n->redirects[i];
		if (r->used && r->lport == t.sport && r->sport == t.dport) {
			memcpy(n->rxnat, frame, len);
			tcp4_rewrite(n->rxnat, &t, false, r->dst, r->dport);
			return n->rxnat;
		}
	}
	return frame;
}

/* Sends the reply to the query in frame (the guest's UDP datagram to 10.0.2.3:53). */
static void dns_reply(struct virtio_net *n, const uint8_t *frame, size_t len, const struct dns_query *q, uint8_t rcode,
		      const uint32_t *addrs, size_t naddrs)
{
	uint8_t reply[DNS_UDP_MAX], out[ETH_HLEN + 28 + DNS_UDP_MAX];
	int rlen = dns_build_reply(q, rcode, addrs, naddrs, NET_DNS_TTL, reply, sizeof(reply));
	if (rlen < 0)
		return;
	int flen = gate_build_udp_reply(frame, len, reply, (size_t)rlen, out, sizeof(out));
	if (flen > 0)
		virtio_net_deliver(n, out, (size_t)flen);
}

/* A query waiting for the host's resolver: the guest's frame (for the reply's headers) and its question. */
struct dns_pending {
	struct virtio_net *n;
	struct dns_query q;
	size_t len;
	uint8_t frame[];
};

/*
 * The host's answer: addresses in ranges the policy refuses are dropped (DNS rebinding: an
 * allowed name must not lead the guest to the host, its LAN or the metadata service), unless an
 * address rule opens them; the rest are pinned to the name and sent to the guest.
 */
static void dns_resolved(void *arg, int status, const uint32_t *addrs, size_t naddrs)
{
	struct dns_pending *p = arg;
	struct virtio_net *n = p->n;
	if (status == -ECANCELED) {
		free(p); /* the NIC is going away: nobody to answer */
		return;
	}
	uint32_t keep[NET_RESOLVE_MAX_ADDRS];
	size_t nkeep = 0, dropped = 0;
	for (size_t i = 0; i < naddrs; i++) {
		struct policy_decision d;
		if (policy_refused_range(&n->policy, addrs[i]) && !policy_check_addr(&n->policy, addrs[i], 0, IPPROTO_ICMP, &d))
			dropped++;
		else
			keep[nkeep++] = addrs[i];
	}
	n->stats.dns_rebind_dropped += dropped;
	uint8_t rcode;
	char why[128];
	const char *verdict;
	if (status == 0) {
		rcode = DNS_RCODE_NOERROR;
		n->stats.dns_resolved++;
		for (size_t i = 0; i < nkeep; i++)
			pin_add(n, keep[i], p->q.name);
		verdict = "resolved";
		if (dropped)
			snprintf(why, sizeof(why), "%zu address(es), %zu in refused ranges dropped", nkeep, dropped);
		else
			snprintf(why, sizeof(why), "%zu address(es)", nkeep);
	} else if (status == -ENOENT) {
		rcode = DNS_RCODE_NXDOMAIN;
		verdict = "nxdomain";
		snprintf(why, sizeof(why), "the host's resolver: no such name");
	} else {
		rcode = DNS_RCODE_SERVFAIL;
		n->stats.dns_failed++;
		verdict = "servfail";
		snprintf(why, sizeof(why), "the host's resolver: %s", status == -ETIMEDOUT ? "timed out" : "failed");
	}
	net_log(n, "dns", p->q.name, verdict, why);
	dns_reply(n, p->frame, p->len, &p->q, rcode, keep, nkeep);
	free(p);
}

/* padcell's own answer to a DNS query the gate handed over: only names a rule allows go to the host's resolver. */
static void tx_dns(struct virtio_net *n, const uint8_t *frame, size_t len, const struct gate_result *r)
{
	struct dns_query q;
	uint8_t rcode;
	n->stats.dns_queries++;
	switch (dns_parse_query(frame + r->payload_off, r->payload_len, &q)) {
	case DNS_QUERY_OK: {
		struct policy_decision d;
		if (!policy_check_dns(&n->policy, q.name, &d)) {
			rcode = DNS_RCODE_NXDOMAIN; /* no rule allows it: no upstream query either */
			net_log(n, "dns", q.name, "nxdomain", d.why);
			break;
		}
		if (q.qtype != DNS_TYPE_A || q.qclass != DNS_CLASS_IN) {
			rcode = DNS_RCODE_NOERROR; /* AAAA and the rest: "no data", so the guest uses IPv4 */
			break;
		}
		if (!n->resolver || len > NET_DNS_FRAME_MAX) {
			rcode = n->resolver ? DNS_RCODE_REFUSED : DNS_RCODE_SERVFAIL;
			net_log(n, "dns", q.name, "servfail", n->resolver ? "query frame too long" : "no host resolver");
			break;
		}
		struct dns_pending *p = malloc(sizeof(*p) + len);
		if (!p) {
			rcode = DNS_RCODE_SERVFAIL;
			break;
		}
		p->n = n;
		p->q = q;
		p->len = len;
		memcpy(p->frame, frame, len);
		if (net_resolve_start(n->resolver, q.name, dns_resolved, p) == 0)
			return; /* answered from dns_resolved() */
		free(p);
		rcode = DNS_RCODE_SERVFAIL; /* too many in flight: resolvers retry SERVFAIL later */
		net_log(n, "dns", q.name, "servfail", "too many queries in flight");
		break;
	}
	case DNS_QUERY_BADNAME:
		rcode = DNS_RCODE_NXDOMAIN;
		break;
	case DNS_QUERY_FORMERR:
		rcode = DNS_RCODE_FORMERR;
		break;
	case DNS_QUERY_NOTIMP:
		rcode = DNS_RCODE_NOTIMP;
		break;
	default:
		return; /* too short, or a response: silence */
	}
	dns_reply(n, frame, len, &q, rcode, NULL, 0);
}

/* The frame in n->txbuf after its header: through the gate, then wherever the verdict says. */
static void tx_frame(struct virtio_net *n)
{
	uint8_t *frame = n->txbuf + NET_HDR_LEN; /* padcell's own copy: the address translation writes here */
	size_t len = n->txlen - NET_HDR_LEN;
	struct gate_result r;
	enum gate_verdict v = gate_inspect(&n->gate, &n->policy, frame, len, &r);
	struct net_redirect *rd = NULL;
	struct tcp4 t;
	bool tcp = v == GATE_PASS || v == GATE_REJECT_TCP ? tcp4_parse(frame, len, &t) : false;
	/* A SYN to an address resolved for an allowed name, outside every refused range: the name decides. */
	const char *via = NULL;
	if (v == GATE_REJECT_TCP && r.policy_checked && !policy_refused_range(&n->policy, r.dst) &&
	    pin_allows(n, r.dst, r.dport, &r.decision, &via)) {
		r.decision.allow = true;
		r.verdict = v = GATE_PASS;
		if (n->be_ok && n->be.ops->dials_loopback && tcp) {
			/* ...by the name the connection asks for: padcell takes it over (a retransmitted SYN: the same) */
			rd = redirect_find(n, t.sport, t.dst, t.dport);
			if (rd && rd->expire_ms) {
				redirect_free(rd); /* a new connection on an old one's ports */
				rd = NULL;
			}
			if (!rd && !(rd = redirect_new(n, &t, via))) {
				r.decision.allow = false;
				r.verdict = v = GATE_REJECT_TCP;
				snprintf(r.decision.why, sizeof(r.decision.why),
					 "too many connections to allowed names open at once (%u, each checked by its TLS SNI / HTTP Host)",
					 NET_REDIRECTS_MAX);
			} else {
				size_t l = strlen(r.decision.why);
				snprintf(r.decision.why + l, sizeof(r.decision.why) - l, "; its TLS SNI / HTTP Host is checked next");
			}
		}
	} else if (v == GATE_PASS && tcp) {
		rd = redirect_find(n, t.sport, t.dst, t.dport);
	}
	log_gate(n, &r);
	switch (v) {
	case GATE_PASS:
		n->stats.tx_passed++;
		if (rd)
			tcp4_rewrite(frame, &t, true, LOOPBACK_IP, rd->lport);
		if (n->be_ok) {
			n->be.ops->send(n->be.ctx, frame, len);
			if (tcp)
				fin_answered(n, frame, len, &t);
		}
		break;
	case GATE_REJECT_TCP: {
		/* Refused before any host socket exists, and said so at once: the guest's connect() fails. */
		n->stats.tx_rejected++;
		uint8_t rst[GATE_RST_LEN];
		if (gate_build_rst(frame, len, rst, sizeof(rst)) == GATE_RST_LEN)
			virtio_net_deliver(n, rst, sizeof(rst));
		break;
	}
	case GATE_DNS:
		tx_dns(n, frame, len, &r);
		break;
	case GATE_DROP:
	default:
		n->stats.tx_dropped++;
		break;
	}
}

/*
 * Pops one tx chain and copies its frame into n->txbuf; the chain goes back to the guest at
 * once, so the gate and the backend see bytes the guest can no longer change.  1: a frame is
 * in txbuf; 0: the queue is empty (or broken).  With t.lock held.
 */
static int tx_pop(struct virtio_net *n)
{
	struct virtio_mmio *t = &n->t;
	for (;;) {
		struct virtq *q = virtio_mmio_queue(t, NET_Q_TX);
		if (!q)
			return 0;
		int rc = virtq_pop(q, t->mem, &n->chain);
		if (rc < 0) {
			virtio_mmio_needs_reset(t);
			return 0;
		}
		if (rc == 0)
			return 0;
		const struct virtq_chain *c = &n->chain;
		if (ratelimit_active(&n->tx_rl)) {
			/* Every chain costs, a malformed one too: the guest pays for what it makes padcell read. */
			uint64_t now = n->clock(), wait;
			uint64_t bytes = c->read_len > NET_HDR_LEN ? c->read_len - NET_HDR_LEN : 0;
			if (!ratelimit_consume(&n->tx_rl, 1, bytes, now, &wait)) {
				virtq_unpop(q); /* the frame waits in the ring until the tokens are back */
				n->tx_until_ns = now + wait;
				n->stats.tx_throttled++;
				__atomic_fetch_add(&n->counts.tx_throttled, 1, __ATOMIC_RELAXED);
				return 0;
			}
			n->tx_until_ns = 0;
		}
		/* tx buffers are device-readable only; the header must be whole; no frame over the copy's size */
		bool ok = c->write_len == 0 && c->read_len >= NET_HDR_LEN && c->read_len <= NET_HDR_LEN + NET_FRAME_MAX;
		if (ok) {
			n->txlen = (size_t)virtq_chain_read(c, 0, n->txbuf, c->read_len);
			struct virtio_net_hdr_v1 h;
			memcpy(&h, n->txbuf, sizeof(h));
			/* No CSUM or GSO was offered: a header asking for either is the guest's error. */
			ok = n->txlen == c->read_len && h.flags == 0 && h.gso_type == VIRTIO_NET_HDR_GSO_NONE;
		}
		virtq_push(q, c->head, 0);
		if (virtq_should_interrupt(q))
			virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
		n->stats.tx_frames++;
		if (ok)
			return 1;
		n->stats.tx_bad++;
	}
}

static void tx_drain(struct virtio_net *n)
{
	for (;;) {
		pthread_mutex_lock(&n->t.lock);
		int got = tx_pop(n);
		pthread_mutex_unlock(&n->t.lock);
		if (!got)
			return;
		tx_frame(n);
	}
}

/* ---- the device loop ------------------------------------------------------------------- */

#define NET_MAX_POLLFDS 256

/*
 * Puts a set the API handed over in place, between two frames.  The old set is freed outside
 * the lock: only this thread reads it without the lock, and the API reads under it.
 */
static void net_policy_swap(struct virtio_net *n)
{
	pthread_mutex_lock(&n->t.lock);
	struct policy *next = n->policy_next, old = n->policy;
	if (next) {
		n->policy_next = NULL;
		n->policy = *next;
	}
	pthread_mutex_unlock(&n->t.lock);
	if (next) {
		policy_destroy(&old);
		free(next);
	}
}

void virtio_net_poll(struct virtio_net *n, int timeout_ms)
{
	net_policy_swap(n);
	if (!n->be_open && n->be.ops) {
		int rc = n->be.ops->open(n->be.ctx, n);
		if (rc)
			fprintf(stderr, "padcell: virtio-net: the %s stack did not start: %s; frames are dropped\n",
				n->be.ops->name, strerror(-rc));
		n->be_open = true; /* once: a stack that cannot start is not retried on every frame */
		n->be_ok = rc == 0;
	}
	tx_drain(n);
	pthread_mutex_lock(&n->t.lock);
	rx_flush(n);
	/* Frames still wait: the guest has no buffers for more, so the stack reads nothing this pass. */
	n->rx_paused = n->bl.n > 0;
	if (n->rx_paused)
		n->stats.rx_paused++;
	/* Throttled: poll() ends when the first limiter has its tokens back (rounded up to a ms). */
	uint64_t until = n->rx_until_ns;
	if (n->tx_until_ns && (!until || n->tx_until_ns < until))
		until = n->tx_until_ns;
	if (until) {
		uint64_t now = n->clock();
		uint64_t ms = until > now ? (until - now + 999999) / 1000000 : 0;
		if (ms > 60000)
			ms = 60000;
		if (timeout_ms < 0 || (uint64_t)timeout_ms > ms)
			timeout_ms = (int)ms;
	}
	pthread_mutex_unlock(&n->t.lock);

	struct pollfd fds[NET_MAX_POLLFDS];
	fds[0] = (struct pollfd){ .fd = n->kick_fd, .events = POLLIN };
	unsigned nres = n->resolver ? net_resolver_poll_fill(n->resolver, fds + 1, 32, &timeout_ms) : 0;
	unsigned ridx[NET_REDIRECTS_MAX], rcnt[NET_REDIRECTS_MAX];
	/* at most half the fds for checked connections: the stack keeps the rest */
	unsigned nred = redirect_poll_fill(n, fds + 1 + nres, NET_MAX_POLLFDS / 2, &timeout_ms, ridx, rcnt);
	unsigned nfds = 1 + nres + nred;
	if (n->be_ok)
		nfds += n->be.ops->poll_fill(n->be.ctx, fds + nfds, NET_MAX_POLLFDS - nfds, &timeout_ms);
	int rc = poll(fds, nfds, timeout_ms);
	if (rc > 0 && (fds[0].revents & POLLIN)) {
		uint64_t cnt;
		if (read(n->kick_fd, &cnt, sizeof(cnt)) < 0) {
			/* EAGAIN: nothing to drain */
		}
	}
	if (n->resolver)
		net_resolver_poll_done(n->resolver, fds + 1, rc > 0 ? nres : 0);
	if (rc <= 0)
		for (unsigned i = 0; i < nred; i++)
			fds[1 + nres + i].revents = 0;
	redirect_poll_done(n, fds + 1 + nres, ridx, rcnt);
	if (n->be_ok)
		n->be.ops->poll_done(n->be.ctx, fds + 1 + nres + nred, nfds - 1 - nres - nred, rc);
}

static void *net_thread(void *arg)
{
	struct virtio_net *n = arg;
	for (;;) {
		pthread_mutex_lock(&n->t.lock);
		bool stop = n->thread.stop;
		pthread_mutex_unlock(&n->t.lock);
		if (stop)
			break;
		virtio_net_poll(n, -1);
	}
	return NULL;
}

static void net_kick(void *arg)
{
	struct virtio_net *n = arg;
	uint64_t one = 1;
	if (write(n->kick_fd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow: the thread drains it on every pass */
	}
}

static void net_queue_notify(void *opaque, unsigned q)
{
	net_kick(opaque);
}

/* Frames waiting for the old driver are of no use to the next one. */
static void net_reset(void *opaque)
{
	backlog_clear(opaque);
}

static const struct virtio_dev_ops net_ops = { .queue_notify = net_queue_notify, .reset = net_reset };

/* The stack's virtual addresses and the host's own are refused unless a rule names them exactly. */
static void net_own_addrs(struct policy *p)
{
	policy_add_own(p, NET_GATEWAY_IP, POLICY_OWN_STACK);
	policy_add_own(p, NET_DNS_IP, POLICY_OWN_STACK);
	policy_add_own(p, NET_GUEST_IP, POLICY_OWN_STACK);
}

int virtio_net_init(struct virtio_net *n, const struct net_params *p, const struct guest_mem *mem,
		    const struct dev_host *host, unsigned irq, char *err, size_t errlen)
{
	memset(n, 0, sizeof(*n));
	n->kick_fd = -1;
	n->log_fd = p->log_fd;
	policy_init(&n->policy);
	int rc = policy_replace(&n->policy, p->rules, p->nrules, p->open, err, errlen);
	if (rc)
		goto err_policy;
	net_own_addrs(&n->policy);
	if (p->backend) {
		n->be = *p->backend;
	} else if ((rc = net_slirp_backend(&n->be, err, errlen))) {
		goto err_policy;
	}
	/* Now, not on the device thread: c-ares reads resolv.conf at init, before any jail. */
	rc = net_resolver_open(&n->resolver, p->dns_servers, err, errlen);
	if (rc)
		goto err_backend;
	rc = -ENOMEM;
	n->txbuf = malloc(NET_HDR_LEN + NET_FRAME_MAX);
	if (!n->txbuf) {
		errorf(err, errlen, rc, "out of memory");
		goto err_resolver;
	}
	n->rxnat = malloc(NET_FRAME_MAX);
	n->bl.buf = malloc(NET_RX_BACKLOG_BYTES); /* its pages become resident only as frames wait */
	if (!n->rxnat || !n->bl.buf) {
		errorf(err, errlen, rc, "out of memory");
		goto err_txbuf;
	}
	/* Zero pages until written: never memset them, that would make the whole table resident. */
	n->tables_len = NET_PINS_MAX * sizeof(*n->pins) + NET_REDIRECTS_MAX * sizeof(*n->redirects);
	void *tables = mmap(NULL, n->tables_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (tables == MAP_FAILED) {
		errorf(err, errlen, rc, "out of memory");
		goto err_txbuf;
	}
	n->redirects = tables; /* first: its members are the more strictly aligned */
	n->pins = (struct net_pin *)(n->redirects + NET_REDIRECTS_MAX);
	n->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->kick_fd < 0) {
		rc = errorf(err, errlen, -errno, "eventfd: %s", strerror(errno));
		goto err_tables;
	}
	const uint8_t mac[ETH_ALEN] = NET_GUEST_MAC;
	memcpy(n->config.mac, mac, ETH_ALEN);
	n->config.mtu = NET_MTU;
	memcpy(n->gate.guest_mac, mac, ETH_ALEN);
	n->gate.guest_ip = NET_GUEST_IP;
	n->gate.dns_ip = NET_DNS_IP;
	n->gate.mtu = NET_MTU;
	/*
	 * Published ports: the stack is made now, not at the first poll, so a port that cannot be
	 * listened on is the user's error at start, in one line, with nothing left running.
	 */
	for (size_t i = 0; i < p->npublish; i++) {
		if (!n->be_open) {
			n->be_open = true;
			if ((rc = n->be.ops->open(n->be.ctx, n))) {
				errorf(err, errlen, rc, "the %s stack did not start: %s", n->be.ops->name, strerror(-rc));
				goto err_kick;
			}
			n->be_ok = true;
		}
		if (!n->be.ops->publish) {
			rc = errorf(err, errlen, -ENOTSUP, "--publish: the %s stack cannot publish ports", n->be.ops->name);
			goto err_kick;
		}
		if ((rc = n->be.ops->publish(n->be.ctx, &p->publish[i], err, errlen)))
			goto err_kick;
	}
	/* MAC and MTU only: no checksum or segmentation offloads, so every frame is whole and checked. */
	/*
	 * MRG_RXBUF: without it a Linux driver at an MTU over 1500 posts "big" buffers, one chain
	 * of pages per frame as large as the MTU (a 54-byte ACK takes one too), several descriptors
	 * each, and allocates them all at every refill; with it, one page-sized buffer per descriptor.
	 */
	uint64_t features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_MTU) | (1ULL << VIRTIO_NET_F_MRG_RXBUF);
	virtio_mmio_init(&n->t, mem, host, irq, VIRTIO_ID_NET, features, 2, &n->config, sizeof(n->config), &net_ops, n);
	n->clock = ratelimit_clock_ns;
	ratelimit_init(&n->rx_rl, &p->rx_rate, n->clock());
	ratelimit_init(&n->tx_rl, &p->tx_rate, n->clock());
	devthread_init(&n->thread, &n->t.lock, net_thread, net_kick, n);
	n->thread.jail_kind = JAIL_NET; /* libslirp's host sockets: the jail's network-stack filter */
	return 0;

err_kick:
	close(n->kick_fd);
err_tables:
	munmap(n->redirects, n->tables_len);
err_txbuf:
	free(n->bl.buf);
	free(n->rxnat);
	free(n->txbuf);
err_resolver:
	net_resolver_close(n->resolver);
err_backend:
	if (!p->backend && n->be.ops)
		n->be.ops->close(n->be.ctx);
err_policy:
	policy_destroy(&n->policy);
	return rc;
}

int virtio_net_set_policy(struct virtio_net *n, const char *const *rules, size_t nrules, bool open, char *err,
			  size_t errlen)
{
	struct policy *next = malloc(sizeof(*next));
	if (!next)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	policy_init(next);
	int rc = policy_replace(next, rules, nrules, open, err, errlen);
	if (rc) {
		policy_destroy(next);
		free(next);
		return rc;
	}
	net_own_addrs(next); /* the same own addresses as at init: they are the VM's, not the rules' */
	/*
	 * Always through the device loop, even while it is stopped (a paused VM): a resumed thread's
	 * first pass swaps it in before any frame.  Swapping here instead would need to know the
	 * thread is not running, which another thread (pause, resume) may be changing meanwhile.
	 */
	pthread_mutex_lock(&n->t.lock);
	struct policy *superseded = n->policy_next;
	n->policy_next = next;
	n->policy_changes++;
	pthread_mutex_unlock(&n->t.lock);
	if (superseded) {
		policy_destroy(superseded);
		free(superseded);
	}
	net_kick(n);
	return 0;
}

int virtio_net_get_policy(struct virtio_net *n, struct policy_view *v)
{
	pthread_mutex_lock(&n->t.lock);
	int rc = policy_view_fill(n->policy_next ? n->policy_next : &n->policy, v);
	v->changes = n->policy_changes;
	pthread_mutex_unlock(&n->t.lock);
	struct policy_counts *c = &n->counts;
	v->counts = (struct policy_counts){
		.allowed = __atomic_load_n(&c->allowed, __ATOMIC_RELAXED),
		.rejected = __atomic_load_n(&c->rejected, __ATOMIC_RELAXED),
		.dropped = __atomic_load_n(&c->dropped, __ATOMIC_RELAXED),
		.resolved = __atomic_load_n(&c->resolved, __ATOMIC_RELAXED),
		.nxdomain = __atomic_load_n(&c->nxdomain, __ATOMIC_RELAXED),
		.servfail = __atomic_load_n(&c->servfail, __ATOMIC_RELAXED),
		.sni_accepted = __atomic_load_n(&c->sni_accepted, __ATOMIC_RELAXED),
		.sni_refused = __atomic_load_n(&c->sni_refused, __ATOMIC_RELAXED),
		.rx_throttled = __atomic_load_n(&c->rx_throttled, __ATOMIC_RELAXED),
		.tx_throttled = __atomic_load_n(&c->tx_throttled, __ATOMIC_RELAXED),
	};
	return rc;
}

void virtio_net_set_rate(struct virtio_net *n, const struct ratelimit_patch *rx, const struct ratelimit_patch *tx)
{
	pthread_mutex_lock(&n->t.lock);
	uint64_t now = n->clock();
	if (rx) {
		ratelimit_patch_apply(&n->rx_rl, rx, now);
		n->rx_until_ns = 0;
	}
	if (tx) {
		ratelimit_patch_apply(&n->tx_rl, tx, now);
		n->tx_until_ns = 0;
	}
	pthread_mutex_unlock(&n->t.lock);
	net_kick(n); /* the loop asks the new limits at once */
}

int virtio_net_start(struct virtio_net *n)
{
	return devthread_start(&n->thread);
}

void virtio_net_pause(struct virtio_net *n)
{
	devthread_stop(&n->thread);
}

int virtio_net_resume(struct virtio_net *n)
{
	return devthread_resume(&n->thread);
}

void virtio_net_destroy(struct virtio_net *n)
{
	virtio_net_pause(n);
	net_resolver_close(n->resolver); /* queries in flight are dropped, unanswered */
	n->resolver = NULL;
	for (unsigned i = 0; i < NET_REDIRECTS_MAX; i++)
		if (n->redirects[i].used)
			redirect_free(&n->redirects[i]);
	if (n->be.ops)
		n->be.ops->close(n->be.ctx);
	pthread_mutex_lock(&n->t.lock);
	backlog_clear(n);
	pthread_mutex_unlock(&n->t.lock);
	free(n->bl.buf);
	free(n->txbuf);
	free(n->rxnat);
	munmap(n->redirects, n->tables_len);
	close(n->kick_fd);
	if (n->policy_next) {
		policy_destroy(n->policy_next);
		free(n->policy_next);
		n->policy_next = NULL;
	}
	policy_destroy(&n->policy);
	virtio_mmio_destroy(&n->t);
}

void virtio_net_save(struct virtio_net *n, struct virtio_net_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_mmio_save(&n->t, &st->t);
	memcpy(st->mac, n->config.mac, sizeof(st->mac));
	st->mtu = n->config.mtu;
}

int virtio_net_load(struct virtio_net *n, const struct virtio_net_state *st)
{
	if (memcmp(st->mac, n->config.mac, sizeof(st->mac)) || st->mtu != n->config.mtu)
		return -EINVAL;
	return virtio_mmio_load(&n->t, &st->t);
}

int virtio_net_cmdline(char *out, size_t outlen)
{
	struct in_addr ip = { htonl(NET_GUEST_IP) }, gw = { htonl(NET_GATEWAY_IP) }, dns = { htonl(NET_DNS_IP) };
	char a[16], b[16], c[16];
	snprintf(a, sizeof(a), "%s", inet_ntoa(ip));
	snprintf(b, sizeof(b), "%s", inet_ntoa(gw));
	snprintf(c, sizeof(c), "%s", inet_ntoa(dns));
	int len = snprintf(out, outlen, "padcell.net=%s/%u,%s,%s,%u", a, NET_PREFIX, b, c, NET_MTU);
	return len > 0 && (size_t)len < outlen ? 0 : -ENAMETOOLONG;
}

/* ---- the device interface ---------------------------------------------------------------- */

static int net_dev_start(struct device *d)
{
	return virtio_net_start(d->dev);
}

static void net_dev_pause(struct device *d)
{
	virtio_net_pause(d->dev);
}

static int net_dev_resume(struct device *d)
{
	return virtio_net_resume(d->dev);
}

static void net_dev_save(struct device *d, void *st)
{
	virtio_net_save(d->dev, st);
}

static int net_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	if (virtio_net_load(d->dev, st))
		return errorf(err, errlen, -EINVAL, "corrupt: virtio-net state");
	return 0;
}

/*
 * A restored NIC has a fresh stack: the snapshot's connections are gone, and the guest's next
 * segment on one of them meets a stack that never heard of it (and resets it).
 */
static void net_dev_restored(struct device *d)
{
	virtio_mmio_notify_all(&((struct virtio_net *)d->dev)->t);
}

/* The one NIC is "eth0" (the guest's name for it) or "0"; p[0] changes rx, p[1] tx. */
static int net_dev_set_rate(struct device *d, const char *cls, const char *id, const struct ratelimit_patch *p,
			    unsigned np, char *err, size_t errlen)
{
	if (strcmp(cls, "net") || (strcmp(id, "eth0") && strcmp(id, "0")))
		return -ENOENT;
	if (np != 2)
		return errorf(err, errlen, -EINVAL, "a network interface has two rate limiters, rx and tx");
	virtio_net_set_rate(d->dev, &p[0], &p[1]);
	return 0;
}

static int net_dev_set_policy(struct device *d, const char *const *rules, size_t n, bool open, char *err,
			      size_t errlen)
{
	return virtio_net_set_policy(d->dev, rules, n, open, err, errlen);
}

static int net_dev_get_policy(struct device *d, struct policy_view *v)
{
	return virtio_net_get_policy(d->dev, v);
}

static void net_dev_destroy(struct device *d)
{
	virtio_net_destroy(d->dev);
	free(d->dev);
}

static const struct dev_ops net_dev_ops = {
	.name = "virtio-net",
	.start = net_dev_start,
	.pause = net_dev_pause,
	.resume = net_dev_resume,
	.snap_section = SNAP_SEC_NET,
	.state_size = sizeof(struct virtio_net_state),
	.save = net_dev_save,
	.load = net_dev_load,
	.restored = net_dev_restored,
	.set_rate = net_dev_set_rate,
	.set_policy = net_dev_set_policy,
	.get_policy = net_dev_get_policy,
	.destroy = net_dev_destroy,
};

int virtio_net_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	char err[256]; /* the CLI checked the rules and the backend already: what is left is -ENOMEM and the like */
	int rc = virtio_net_init(n, params, mem, host, d->irq, err, sizeof(err));
	if (rc) {
		free(n);
		return rc;
	}
	d->ops = &net_dev_ops;
	d->dev = n;
	d->virtio = d->bus_opaque = &n->t;
	d->bus_ops = &virtio_mmio_ops;
	d->len = VIRTIO_MMIO_RANGE_LEN;
	/* One pass of the device loop serves both queues: any QueueNotify value wakes it. */
	d->kick_fd = n->kick_fd;
	d->kick_datamatch = false;
	return 0;
}

bool virtio_net_in_snapshot(const struct dev_snap_in *in, unsigned index)
{
	return in->find(in, SNAP_SEC_NET, index, NULL) != NULL;
}
