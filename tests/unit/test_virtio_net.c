/* virtio-net on real rings and a fake host: tx through the gate to a fake backend, rx with EVENT_IDX, hostile chains, libslirp in-process. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "tests/unit/fake_host.h"
#include "vmm/mem.h"
#include "vmm/net/dns.h"

#define QN 64u
#define RXBUF (NET_HDR_LEN + NET_FRAME_MAX)
#define DENIED 0x08080808u  /* 8.8.8.8 */
#define ALLOWED 0x5db8d822u /* 93.184.216.34, allowed on 443 */

static struct guest_mem mem;
static struct fake_host fh;
static struct virtio_net *dev;

/* ---- a fake backend: records what the gate passed, answers with frames on demand ---- */

static struct {
	unsigned opened, sent, closed;
	uint8_t last[NET_FRAME_MAX];
	size_t last_len;
	struct virtio_net *n;
	uint8_t inject[2048];
	size_t inject_len; /* delivered from poll_done when set */
} fb;

static int fb_open(void *ctx, struct virtio_net *n)
{
	fb.opened++;
	fb.n = n;
	return 0;
}
static void fb_send(void *ctx, const uint8_t *frame, size_t len)
{
	fb.sent++;
	memcpy(fb.last, frame, len);
	fb.last_len = len;
}
static unsigned fb_fill(void *ctx, struct pollfd *fds, unsigned max, int *timeout_ms) { return 0; }
static void fb_done(void *ctx, struct pollfd *fds, unsigned n, int rc)
{
	if (fb.inject_len) {
		virtio_net_deliver(fb.n, fb.inject, fb.inject_len);
		fb.inject_len = 0;
	}
}
static void fb_close(void *ctx) { fb.closed++; }
static const struct net_backend_ops fb_ops = { .name = "fake", .open = fb_open, .send = fb_send, .poll_fill = fb_fill, .poll_done = fb_done, .close = fb_close };
static const struct net_backend fake_be = { &fb_ops, NULL };

/* ---- the driver's side: two queues ---- */

struct dq {
	uint64_t desc, avail, used, bufs;
	uint16_t avail_idx;
};
static struct dq dq[2];

static uint32_t rd(uint64_t off)
{
	uint32_t v;
	virtio_mmio_ops.read(&dev->t, off, &v, 4);
	return v;
}
static void wr(uint64_t off, uint32_t v) { virtio_mmio_ops.write(&dev->t, off, &v, 4); }

static void desc_put(struct dq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	gmem_write(&mem, q->desc + 16ULL * i, &d, sizeof(d));
}
static void avail_put(struct dq *q, uint16_t head)
{
	gmem_write(&mem, q->avail + 4 + 2ULL * (q->avail_idx % QN), &head, 2);
	q->avail_idx++;
	gmem_write(&mem, q->avail + 2, &q->avail_idx, 2);
}
static uint16_t used_idx(struct dq *q)
{
	uint16_t v;
	gmem_read(&mem, q->used + 2, &v, 2);
	return v;
}
static struct vring_used_elem used_elem(struct dq *q, uint16_t slot)
{
	struct vring_used_elem e;
	gmem_read(&mem, q->used + 4 + 8ULL * (slot % QN), &e, sizeof(e));
	return e;
}
/* The driver's used_event (EVENT_IDX): interrupt once used idx passes it. */
static void used_event_put(struct dq *q, uint16_t v) { gmem_write(&mem, q->avail + 4 + 2ULL * QN, &v, 2); }

static void rx_post(uint16_t i)
{
	desc_put(&dq[0], i, dq[0].bufs + (uint64_t)i * 0x20000, RXBUF, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[0], i);
}

static uint32_t dev_features_extra; /* more driver features for the next dev_up (MRG_RXBUF) */

static void dev_up(unsigned nrx)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t f0 = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	cr_assert(f0 & (1u << VIRTIO_NET_F_MAC));
	cr_assert(f0 & (1u << VIRTIO_NET_F_MTU));
	cr_assert_not(f0 & (1u << VIRTIO_NET_F_CSUM), "no offloads");
	cr_assert_not(f0 & (1u << VIRTIO_NET_F_GUEST_TSO4), "no offloads");
	cr_assert(f0 & (1u << VIRTIO_NET_F_MRG_RXBUF));
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_MTU) |
						(1u << VIRTIO_RING_F_EVENT_IDX) | dev_features_extra);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	static const uint8_t zero[0x4000];
	for (unsigned q = 0; q < 2; q++) {
		gmem_write(&mem, 0x10000 + 0x10000ULL * q, zero, sizeof(zero)); /* descriptors, avail, used: fresh */
		gmem_write(&mem, 0x14000 + 0x10000ULL * q, zero, sizeof(zero));
		gmem_write(&mem, 0x18000 + 0x10000ULL * q, zero, sizeof(zero));
		dq[q] = (struct dq){ .desc = 0x10000 + 0x10000ULL * q, .avail = 0x14000 + 0x10000ULL * q,
				     .used = 0x18000 + 0x10000ULL * q, .bufs = 0x100000 + 0x1000000ULL * q };
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		wr(VIRTIO_MMIO_QUEUE_NUM, QN);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)dq[q].desc);
		wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)dq[q].avail);
		wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)dq[q].used);
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
				       VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
	for (uint16_t i = 0; i < nrx; i++)
		rx_post(i);
}

/*
 * A fake upstream DNS server on 127.0.0.1, the only resolver the NIC is given (never the host's
 * resolv.conf: no test query leaves the machine).  It answers from the table below, NXDOMAIN for
 * any other name, and records what it was asked; the test serves it between device polls.
 */
static struct {
	int fd;
	char servers[32];
	unsigned queries;
	char last[DNS_TEXT_NAME_MAX + 2];
} up = { .fd = -1 };

static const struct { const char *name; uint32_t addrs[3]; size_t n; } up_zone[] = {
	{ "pypi.org", { 0xcb007107u }, 1 },                                      /* 203.0.113.7 */
	{ "multi.example.com", { 0x0a000005u, 0x7f000001u, 0xcb007109u }, 3 },   /* 10.0.0.5, 127.0.0.1, 203.0.113.9 */
	{ "inner.example.com", { 0xc0a80101u }, 1 },                             /* 192.168.1.1 */
	{ "meta.example.com", { 0xa9fea9feu }, 1 },                              /* 169.254.169.254 */
	{ "a.sni.test", { 0xcb007114u }, 1 },                                    /* 203.0.113.20: "a CDN" */
	{ "b.sni.test", { 0x7f000001u }, 1 },                                    /* the test's server */
};

static void up_start(void)
{
	up.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert_geq(up.fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(up.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	getsockname(up.fd, (struct sockaddr *)&sa, &sl);
	snprintf(up.servers, sizeof(up.servers), "127.0.0.1:%u", ntohs(sa.sin_port));
	up.queries = 0;
	up.last[0] = '\0';
}

static void up_serve(void)
{
	uint8_t q[1500], out[DNS_UDP_MAX];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n;
	while ((n = recvfrom(up.fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl)) > 0) {
		struct dns_query dq_;
		if (dns_parse_query(q, (size_t)n, &dq_) != DNS_QUERY_OK)
			continue;
		up.queries++;
		snprintf(up.last, sizeof(up.last), "%s", dq_.name);
		uint8_t rcode = DNS_RCODE_NXDOMAIN;
		const uint32_t *addrs = NULL;
		size_t na = 0;
		for (size_t i = 0; i < sizeof(up_zone) / sizeof(up_zone[0]); i++)
			if (!strcmp(dq_.name, up_zone[i].name))
				rcode = DNS_RCODE_NOERROR, addrs = up_zone[i].addrs, na = up_zone[i].n;
		int len = dns_build_reply(&dq_, rcode, addrs, na, 30, out, sizeof(out));
		if (len > 0)
			sendto(up.fd, out, (size_t)len, 0, (struct sockaddr *)&from, fl);
		fl = sizeof(from);
	}
}

static void up_stop(void)
{
	if (up.fd >= 0)
		close(up.fd);
	up.fd = -1;
}

static const struct net_publish *mk_publish; /* --publish for the next make_dev */
static size_t mk_npublish;

static void make_dev(const struct net_backend *be, const char *const *rules, size_t nrules)
{
	cr_assert_eq(gmem_init(&mem, 64ULL << 20), 0);
	fake_host_init(&fh);
	memset(&fb, 0, sizeof(fb));
	dev = calloc(1, sizeof(*dev));
	up_start();
	struct net_params p = { .rules = rules, .nrules = nrules, .log_fd = -1, .backend = be,
				.dns_servers = up.servers, .publish = mk_publish, .npublish = mk_npublish };
	char err[256];
	cr_assert_eq(virtio_net_init(dev, &p, &mem, &fh.host, 5, err, sizeof(err)), 0, "%s", err);
}

static void setup(void)
{
	static const char *const rules[] = { "93.184.216.34:443", "pypi.org:443" };
	make_dev(&fake_be, rules, 2);
	dev_up(8);
}

static void teardown(void)
{
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
}

TestSuite(virtio_net, .init = setup, .fini = teardown, .timeout = 30);

/* ---- guest frames ---- */

static const uint8_t guest_mac[6] = NET_GUEST_MAC;
static const uint8_t gw_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };
static uint8_t f[NET_FRAME_MAX + 64];
static size_t flen;

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static uint32_t t_sum(const uint8_t *b, size_t n, uint32_t sum)
{
	for (size_t i = 0; i < n; i++)
		sum += (i % 2 == 0) ? (uint32_t)b[i] * 256 : b[i];
	return sum;
}
static uint16_t t_fold(uint32_t sum)
{
	while (sum > 0xffff)
		sum = (sum >> 16) + (sum & 0xffff);
	return (uint16_t)~sum;
}

static uint8_t *ipv4(uint8_t proto, uint32_t dst, size_t l4len)
{
	memset(f, 0, 14 + 20 + l4len);
	memcpy(f, gw_mac, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0800);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + l4len));
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = proto;
	put32(ip + 12, NET_GUEST_IP);
	put32(ip + 16, dst);
	put16(ip + 10, t_fold(t_sum(ip, 20, 0)));
	flen = 14 + 20 + l4len;
	return ip + 20;
}

/* The TCP/UDP checksum over the pseudo-header, for frames the real stack must accept. */
static void l4_csum(unsigned csum_off)
{
	uint8_t *ip = f + 14, *l4 = ip + 20;
	size_t l4len = flen - 34;
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = ip[9];
	put16(ph + 10, (uint16_t)l4len);
	put16(l4 + csum_off, 0);
	put16(l4 + csum_off, t_fold(t_sum(l4, l4len, t_sum(ph, 12, 0))));
}

static void syn(uint32_t dst, uint16_t dport)
{
	uint8_t *t = ipv4(IPPROTO_TCP, dst, 20);
	put16(t, 40000);
	put16(t + 2, dport);
	put32(t + 4, 1000);
	t[12] = 5 << 4;
	t[13] = 0x02; /* SYN */
	put16(t + 14, 65535);
	l4_csum(16);
}

static void arp_request(uint32_t target)
{
	memset(f, 0, 42);
	memset(f, 0xff, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0806);
	uint8_t *a = f + 14;
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 1);
	memcpy(a + 8, guest_mac, 6);
	put32(a + 14, NET_GUEST_IP);
	put32(a + 24, target);
	flen = 42;
}

/* A DNS A query for name to the stack's DNS address. */
static void dns_query(const char *name, uint16_t id)
{
	uint8_t q[300];
	size_t n = 0;
	memset(q, 0, 12);
	put16(q, id);
	put16(q + 2, 0x0100); /* RD */
	put16(q + 4, 1);
	n = 12;
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		q[n++] = (uint8_t)l;
		memcpy(q + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	q[n++] = 0;
	put16(q + n, 1), n += 2;
	put16(q + n, 1), n += 2;
	uint8_t *u = ipv4(IPPROTO_UDP, NET_DNS_IP, 8 + n);
	put16(u, 33333);
	put16(u + 2, 53);
	put16(u + 4, (uint16_t)(8 + n));
	memcpy(u + 8, q, n);
	l4_csum(6);
}

/* ---- tx chains ---- */

static uint16_t tx_next;

/* The frame in f (after a zero virtio_net_hdr) as one device-readable descriptor. */
static void tx_send(void)
{
	uint16_t i = tx_next++ % QN;
	uint64_t buf = dq[1].bufs + (uint64_t)i * 0x20000;
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	gmem_write(&mem, buf, hdr, sizeof(hdr));
	gmem_write(&mem, buf + NET_HDR_LEN, f, flen);
	desc_put(&dq[1], i, buf, (uint32_t)(NET_HDR_LEN + flen), 0, 0);
	avail_put(&dq[1], i);
}

static void pump(void)
{
	for (int i = 0; i < 3; i++)
		virtio_net_poll(dev, 0);
}

static size_t rx_frame(uint16_t slot, uint8_t *out);

/* Polls the device and serves the fake upstream until `want` rx frames were used: bounded (20 s), not timed. */
static void pump_until_rx(uint16_t want)
{
	for (int i = 0; i < 2000 && used_idx(&dq[0]) < want; i++) {
		virtio_net_poll(dev, 10);
		up_serve();
	}
	cr_assert_geq(used_idx(&dq[0]), want, "the answer came back");
}

/* The A records of the DNS reply in rx slot `slot`: rcode returned, addresses into a. */
static unsigned dns_answer(uint16_t slot, uint16_t id, uint32_t *a, size_t *na)
{
	static uint8_t r[NET_FRAME_MAX];
	size_t n = rx_frame(slot, r);
	cr_assert_geq(n, 42 + 12);
	const uint8_t *d = r + 42;
	cr_assert_eq(get16(d), id);
	size_t an = get16(d + 6), o = 12;
	while (d[o]) /* the question's name, uncompressed */
		o += 1u + d[o];
	o += 5;
	*na = 0;
	for (size_t i = 0; i < an; i++, o += 16) {
		cr_assert_leq(42 + o + 16, n);
		cr_assert_eq(get16(d + o + 2), 1, "an A record");
		a[(*na)++] = get32(d + o + 12);
	}
	return get16(d + 2) & 0xf;
}

/* The rx frame in used slot `slot`: its length (after the header) and bytes. */
static size_t rx_frame(uint16_t slot, uint8_t *out)
{
	struct vring_used_elem e = used_elem(&dq[0], slot);
	cr_assert_geq(e.len, NET_HDR_LEN + 14);
	struct virtio_net_hdr_v1 h;
	uint64_t buf = dq[0].bufs + (uint64_t)e.id * 0x20000;
	gmem_read(&mem, buf, &h, sizeof(h));
	cr_assert_eq(h.num_buffers, 1, "VERSION_1 without MRG_RXBUF: num_buffers is 1");
	cr_assert_eq(h.flags, 0);
	cr_assert_eq(h.gso_type, VIRTIO_NET_HDR_GSO_NONE);
	gmem_read(&mem, buf + NET_HDR_LEN, out, e.len - NET_HDR_LEN);
	return e.len - NET_HDR_LEN;
}

Test(virtio_net, config_has_mac_and_mtu)
{
	uint8_t mac[6];
	for (unsigned i = 0; i < 6; i++) {
		uint8_t b;
		virtio_mmio_ops.read(&dev->t, 0x100 + i, &b, 1);
		mac[i] = b;
	}
	cr_assert_arr_eq(mac, guest_mac, 6);
	uint16_t mtu;
	virtio_mmio_ops.read(&dev->t, 0x100 + offsetof(struct virtio_net_config, mtu), &mtu, 2);
	cr_assert_eq(mtu, NET_MTU);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 1u);
}

Test(virtio_net, allowed_frames_reach_the_backend)
{
	arp_request(NET_GATEWAY_IP);
	tx_send();
	syn(ALLOWED, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.opened, 1);
	cr_assert_eq(fb.sent, 2);
	cr_assert_eq(fb.last_len, flen);
	cr_assert_arr_eq(fb.last, f, flen);
	cr_assert_eq(used_idx(&dq[1]), 2, "both tx chains go back");
	cr_assert_eq(used_elem(&dq[1], 0).len, 0, "tx buffers are read, not written");
	cr_assert_eq(dev->stats.tx_passed, 2);
}

Test(virtio_net, denied_syn_is_answered_with_a_reset)
{
	syn(DENIED, 80);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 0, "the stack never hears of it");
	cr_assert_eq(dev->stats.tx_rejected, 1);
	cr_assert_eq(used_idx(&dq[0]), 1, "a reset on rx");
	uint8_t r[NET_FRAME_MAX];
	size_t n = rx_frame(0, r);
	cr_assert_eq(n, GATE_RST_LEN);
	cr_assert_arr_eq(r, guest_mac, 6);
	cr_assert_eq(get32(r + 14 + 12), DENIED, "from the address the guest dialled");
	cr_assert_eq(get32(r + 14 + 16), NET_GUEST_IP);
	cr_assert_eq(get16(r + 34), 80);
	cr_assert_eq(get16(r + 36), 40000);
	cr_assert_eq(r[34 + 13], 0x14, "RST|ACK");
	cr_assert_eq(get32(r + 34 + 8), 1001, "acks the SYN");
	cr_assert_gt(fh.notify_calls, 0, "an interrupt for it");
}

/* A guest TCP segment from sport to dst:dport with the given flags and data (checksummed). */
static void tcp_seg(uint32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
		    const char *data)
{
	size_t dl = data ? strlen(data) : 0;
	uint8_t *t = ipv4(IPPROTO_TCP, dst, 20 + dl);
	put16(t, sport);
	put16(t + 2, dport);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = 5 << 4;
	t[13] = flags;
	put16(t + 14, 65535);
	if (dl)
		memcpy(t + 20, data, dl);
	l4_csum(16);
}

/* The stack's FIN|ACK (with `data` bytes) from src:sport to the guest's port 40000, delivered as the stack would. */
static void stack_fin(uint32_t src, uint16_t sport, uint32_t seq, uint32_t ack, size_t data)
{
	uint8_t *t = ipv4(IPPROTO_TCP, NET_GUEST_IP, 20 + data);
	memcpy(f, guest_mac, 6);
	memcpy(f + 6, gw_mac, 6);
	put32(f + 14 + 12, src);
	put32(f + 14 + 16, NET_GUEST_IP);
	put16(f + 14 + 10, 0);
	put16(f + 14 + 10, t_fold(t_sum(f + 14, 20, 0)));
	put16(t, sport);
	put16(t + 2, 40000);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = 5 << 4;
	t[13] = 0x11; /* FIN|ACK */
	put16(t + 14, 65535);
	l4_csum(16);
	virtio_net_deliver(dev, f, flen);
}

Test(virtio_net, the_guests_fin_after_the_stacks_is_followed_by_a_reset_to_the_stack)
{
	syn(ALLOWED, 443);
	tx_send();
	pump();
	stack_fin(ALLOWED, 443, 5000, 1001, 100); /* the server's last 100 bytes and its FIN: seq 5000..5100 */
	tcp_seg(ALLOWED, 40000, 443, 1001, 5101, 0x10, NULL); /* the guest acks them */
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 2, "an ACK is only passed on");
	tcp_seg(ALLOWED, 40000, 443, 1001, 5101, 0x11, NULL); /* then closes too: the stack would sit in TIME_WAIT */
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 4, "the FIN, then a reset behind it");
	cr_assert_eq(dev->stats.timewait_cut, 1);
	cr_assert_eq(fb.last_len, GATE_RST_LEN);
	const uint8_t *r = fb.last;
	cr_assert_eq(get32(r + 14 + 12), NET_GUEST_IP, "from the guest");
	cr_assert_eq(get32(r + 14 + 16), ALLOWED);
	cr_assert_eq(get16(r + 34), 40000);
	cr_assert_eq(get16(r + 36), 443);
	cr_assert_eq(r[34 + 13], 0x04, "RST alone");
	cr_assert_eq(get32(r + 34 + 4), 1002, "just past the guest's FIN: the stack's rcv_nxt");
	cr_assert_eq(t_fold(t_sum(r + 14, 20, 0)), 0, "a valid IPv4 checksum");
	uint8_t ph[12];
	memcpy(ph, r + 14 + 12, 8);
	ph[8] = 0, ph[9] = IPPROTO_TCP, ph[10] = 0, ph[11] = 20;
	cr_assert_eq(t_fold(t_sum(r + 34, 20, t_sum(ph, 12, 0))), 0, "a valid TCP checksum");
	tcp_seg(ALLOWED, 40000, 443, 1001, 5101, 0x11, NULL); /* a retransmitted FIN: the connection is forgotten */
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 5);
	cr_assert_eq(dev->stats.timewait_cut, 1);
}

Test(virtio_net, a_guest_that_closes_first_or_not_acking_the_stacks_fin_gets_no_reset)
{
	tcp_seg(ALLOWED, 40000, 443, 1001, 5000, 0x11, NULL); /* the guest closes first: the stack goes to CLOSE_WAIT, not TIME_WAIT */
	tx_send();
	pump();
	stack_fin(ALLOWED, 443, 5000, 1002, 0);
	tcp_seg(ALLOWED, 40000, 443, 1002, 5001, 0x10, NULL); /* the guest's last ACK */
	tx_send();
	pump();
	stack_fin(ALLOWED, 443, 7000, 1001, 0);
	tcp_seg(ALLOWED, 40000, 443, 1001, 6999, 0x11, NULL); /* simultaneous close: its FIN does not ack the stack's */
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 3);
	cr_assert_eq(dev->stats.timewait_cut, 0);
	cr_assert_neq(fb.last[34 + 13] & 0x04, 0x04, "no reset was sent");
}

Test(virtio_net, runt_and_oversized_frames_are_dropped)
{
	memset(f, 0, 10);
	flen = 10;
	tx_send();
	ipv4(IPPROTO_UDP, ALLOWED, NET_MTU - 20 + 1); /* one byte over the MTU */
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 0);
	cr_assert_eq(dev->stats.tx_dropped, 2);
	cr_assert_eq(used_idx(&dq[1]), 2);
	cr_assert_eq(used_idx(&dq[0]), 0);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_net, dns_for_a_name_no_rule_allows_is_nxdomain)
{
	dns_query("evil.example", 0x4242);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 0, "DNS never goes to the stack");
	cr_assert_eq(used_idx(&dq[0]), 1);
	up_serve();
	cr_assert_eq(up.queries, 0, "a name no rule allows is never asked upstream");
	dns_query("pypi.org", 0x4343);
	tx_send();
	pump_until_rx(2);
	uint8_t r[NET_FRAME_MAX];
	size_t n = rx_frame(0, r);
	cr_assert_geq(n, 42 + 12);
	cr_assert_eq(get32(r + 26), NET_DNS_IP, "from the DNS address");
	cr_assert_eq(get16(r + 34), 53);
	cr_assert_eq(get16(r + 36), 33333);
	const uint8_t *d = r + 42;
	cr_assert_eq(get16(d), 0x4242);
	cr_assert_eq(get16(d + 2) & 0x800f, 0x8000 | DNS_RCODE_NXDOMAIN);
	/* allowed: resolved by the host's resolver (here the fake upstream), once */
	uint32_t a[16];
	size_t na;
	cr_assert_eq(dns_answer(1, 0x4343, a, &na), DNS_RCODE_NOERROR);
	cr_assert_eq(na, 1);
	cr_assert_eq(a[0], 0xcb007107u);
	cr_assert_eq(up.queries, 1);
	cr_assert_str_eq(up.last, "pypi.org");
}

Test(virtio_net, a_resolved_address_is_allowed_on_the_names_ports_only)
{
	syn(0xcb007107u, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 0, "before padcell resolved pypi.org, its address is nobody's");
	cr_assert_eq(used_idx(&dq[0]), 1, "a reset");
	dns_query("pypi.org", 7);
	tx_send();
	pump_until_rx(2);
	syn(0xcb007107u, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1, "the SYN to the resolved address on the rule's port reaches the stack");
	syn(0xcb007107u, 80);
	tx_send();
	syn(0xcb007108u, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1, "another port, another address: refused");
	cr_assert_eq(used_idx(&dq[0]), 4, "two resets");
}

Test(virtio_net, upstream_nxdomain_and_aaaa)
{
	static const char *const rules[] = { "*.example.com:443" };
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
	make_dev(&fake_be, rules, 1);
	dev_up(8);
	dns_query("gone.example.com", 9);
	tx_send();
	pump_until_rx(1);
	uint32_t a[16];
	size_t na;
	cr_assert_eq(dns_answer(0, 9, a, &na), DNS_RCODE_NXDOMAIN, "the upstream's NXDOMAIN");
	cr_assert_eq(up.queries, 1);
	/* AAAA: no data at once, nothing asked upstream (the guest has no IPv6) */
	dns_query("multi.example.com", 10);
	f[flen - 3] = 28; /* QTYPE AAAA */
	l4_csum(6);
	tx_send();
	pump_until_rx(2);
	cr_assert_eq(dns_answer(1, 10, a, &na), DNS_RCODE_NOERROR);
	cr_assert_eq(na, 0);
	cr_assert_eq(up.queries, 1);
}

Test(virtio_net, answers_in_refused_ranges_are_dropped)
{
	static const char *const rules[] = { "*.example.com:443" };
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
	make_dev(&fake_be, rules, 1);
	dev_up(8);
	dns_query("multi.example.com", 1);
	tx_send();
	dns_query("inner.example.com", 2);
	tx_send();
	dns_query("meta.example.com", 3);
	tx_send();
	pump_until_rx(3);
	uint32_t a[16];
	size_t na;
	/* answers may come back in any order: find each by its id */
	for (uint16_t slot = 0; slot < 3; slot++) {
		static uint8_t r[NET_FRAME_MAX];
		rx_frame(slot, r);
		uint16_t id = get16(r + 42);
		cr_assert_eq(dns_answer(slot, id, a, &na), DNS_RCODE_NOERROR);
		if (id == 1) {
			cr_assert_eq(na, 1, "10.0.0.5 and 127.0.0.1 dropped");
			cr_assert_eq(a[0], 0xcb007109u);
		} else {
			cr_assert_eq(na, 0, "id %u: its only address is refused", id);
		}
	}
	cr_assert_eq(dev->stats.dns_rebind_dropped, 4);
	/* and a dropped address was not pinned */
	syn(0xc0a80101u, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 0);
}

Test(virtio_net, rx_waits_for_buffers_and_honours_event_idx)
{
	/* No rx buffers beyond the 8 posted: fill them, then two more wait in the backlog. */
	for (unsigned i = 0; i < 10; i++) {
		fb.inject_len = 60;
		memset(fb.inject, (int)i, 60);
		memcpy(fb.inject, guest_mac, 6);
		virtio_net_poll(dev, 0);
	}
	cr_assert_eq(used_idx(&dq[0]), 8);
	cr_assert_eq(dev->bl.n, 2);
	/* EVENT_IDX: the driver wants no interrupt before used idx passes 20. */
	used_event_put(&dq[0], 20);
	unsigned before = fh.notify_calls;
	rx_post(8);
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 9);
	cr_assert_eq(fh.notify_calls, before, "no interrupt the driver did not ask for");
	used_event_put(&dq[0], 9);
	rx_post(9);
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 10);
	cr_assert_eq(dev->bl.n, 0);
	cr_assert_gt(fh.notify_calls, before);
	uint8_t r[NET_FRAME_MAX];
	cr_assert_eq(rx_frame(9, r), 60);
	cr_assert_eq(r[59], 9, "in order");
}

Test(virtio_net, write_only_and_short_tx_chains_are_dropped)
{
	/* a device-writable tx descriptor */
	desc_put(&dq[1], 0, dq[1].bufs, 100, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[1], 0);
	/* a header cut short */
	desc_put(&dq[1], 1, dq[1].bufs, NET_HDR_LEN - 4, 0, 0);
	avail_put(&dq[1], 1);
	/* a header asking for a checksum offload nobody offered */
	uint8_t h[NET_HDR_LEN + 60] = { VIRTIO_NET_HDR_F_NEEDS_CSUM };
	gmem_write(&mem, dq[1].bufs + 0x1000, h, sizeof(h));
	desc_put(&dq[1], 2, dq[1].bufs + 0x1000, sizeof(h), 0, 0);
	avail_put(&dq[1], 2);
	pump();
	cr_assert_eq(dev->stats.tx_bad, 3);
	cr_assert_eq(fb.sent, 0);
	cr_assert_eq(used_idx(&dq[1]), 3, "each given back");
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* and the queue still works */
	syn(ALLOWED, 443);
	tx_next = 3;
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1);
}

static void expect_needs_reset(void)
{
	pump();
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(fb.sent, 0);
}

Test(virtio_net, zero_length_descriptor_breaks_the_device)
{
	desc_put(&dq[1], 0, dq[1].bufs, 0, 0, 0);
	avail_put(&dq[1], 0);
	expect_needs_reset();
}

Test(virtio_net, looping_chain_breaks_the_device)
{
	desc_put(&dq[1], 0, dq[1].bufs, 16, VRING_DESC_F_NEXT, 1);
	desc_put(&dq[1], 1, dq[1].bufs, 16, VRING_DESC_F_NEXT, 0);
	avail_put(&dq[1], 0);
	expect_needs_reset();
}

Test(virtio_net, out_of_range_address_breaks_the_device)
{
	desc_put(&dq[1], 0, (64ULL << 20) - 8, 64, 0, 0);
	avail_put(&dq[1], 0);
	expect_needs_reset();
}

Test(virtio_net, rx_buffer_too_small_drops_the_frame_keeps_the_buffer)
{
	/* re-post slot 0 as a tiny buffer: a 60-byte frame does not fit 12 + 20 */
	wr(VIRTIO_MMIO_STATUS, 0);
	dev_up(0);
	desc_put(&dq[0], 0, dq[0].bufs, NET_HDR_LEN + 20, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[0], 0);
	fb.inject_len = 60;
	memset(fb.inject, 0, 60);
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 0);
	cr_assert_eq(dev->stats.rx_dropped, 1);
	fb.inject_len = 20;
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 1, "the buffer served the next frame that fits");
}

Test(virtio_net, save_load_keeps_queues_and_identity)
{
	struct virtio_net_state st;
	virtio_net_save(dev, &st);
	cr_assert_arr_eq(st.mac, guest_mac, 6);
	struct virtio_net *other = calloc(1, sizeof(*other));
	struct net_params p = { .log_fd = -1, .backend = &fake_be };
	char err[256];
	cr_assert_eq(virtio_net_init(other, &p, &mem, &fh.host, 5, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(virtio_net_load(other, &st), 0);
	cr_assert(other->t.queues[NET_Q_RX].ready);
	st.mtu = 1500;
	cr_assert_eq(virtio_net_load(other, &st), -EINVAL);
	virtio_net_destroy(other);
	free(other);
}

Test(virtio_net, bad_rule_is_refused)
{
	struct virtio_net *other = calloc(1, sizeof(*other));
	static const char *const rules[] = { "10.0.0.0/33" };
	struct net_params p = { .rules = rules, .nrules = 1, .log_fd = -1, .backend = &fake_be };
	char err[256] = "";
	cr_assert_eq(virtio_net_init(other, &p, &mem, &fh.host, 5, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "10.0.0.0/33"), "%s", err);
	free(other);
}

Test(virtio_net, decisions_are_logged_as_json_lines)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	dev->log_fd = p[1];
	syn(DENIED, 80);
	tx_send();
	dns_query("evil.example", 1);
	tx_send();
	pump();
	close(p[1]);
	dev->log_fd = -1;
	char buf[4096] = "";
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	cr_assert_gt(n, 0);
	cr_assert(strstr(buf, "\"dst\":\"8.8.8.8:80\",\"verdict\":\"reject\""), "%s", buf);
	cr_assert(strstr(buf, "\"dst\":\"evil.example\",\"verdict\":\"nxdomain\""), "%s", buf);
	cr_assert(strstr(buf, "{\"time\":\""), "%s", buf);
}

/* ---- the real stack, in process ---- */

TestSuite(net_slirp, .timeout = 30);

/*
 * A listener on host loopback, and the device on the real libslirp with a rule naming exactly it
 * (host loopback is refused unless a rule does).  Returns the listener; *port is its port.
 */
static int slirp_dev_with_listener(uint16_t *port)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 4), 0);
	socklen_t sl = sizeof(sa);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	*port = ntohs(sa.sin_port);
	char rule[32];
	snprintf(rule, sizeof(rule), "127.0.0.1:%u", *port);
	const char *rules[] = { rule };
	make_dev(NULL, rules, 1);
	dev_up(16);
	return l;
}

/* Polls the device until the stack's connection to listener l arrives: the accepted socket. */
static int slirp_accept(int l)
{
	int c = -1;
	for (int i = 0; i < 200 && c < 0; i++) {
		virtio_net_poll(dev, 10);
		struct pollfd pl = { .fd = l, .events = POLLIN };
		if (poll(&pl, 1, 0) == 1)
			c = accept(l, NULL, NULL);
	}
	return c;
}

Test(net_slirp, arp_and_an_allowed_connection_through_libslirp)
{
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	/* A listener on host loopback: refused unless a rule names it exactly, as this one does. */
	uint16_t port;
	int l = slirp_dev_with_listener(&port);

	arp_request(NET_GATEWAY_IP);
	tx_send();
	pump();
	cr_assert_geq(used_idx(&dq[0]), 1, "slirp answered the ARP");
	uint8_t r[NET_FRAME_MAX];
	size_t n = rx_frame(0, r);
	cr_assert_geq(n, 42);
	cr_assert_eq(get16(r + 12), 0x0806);
	cr_assert_eq(get16(r + 14 + 6), 2, "an ARP reply");
	cr_assert_eq(get32(r + 14 + 14), NET_GATEWAY_IP);

	/* A denied SYN never reaches slirp; the allowed one makes slirp connect on the host. */
	syn(DENIED, 80);
	tx_send();
	syn(0x7f000001, port);
	tx_send();
	uint16_t seen = used_idx(&dq[0]);
	int c = slirp_accept(l);
	cr_assert_geq(c, 0, "slirp connected to the allowed listener");
	/* and the guest hears a SYN-ACK (after the gate's RST for the denied one) */
	bool synack = false;
	for (int i = 0; i < 100 && !synack; i++) {
		virtio_net_poll(dev, 10);
		for (uint16_t s = seen; s != used_idx(&dq[0]); s++) {
			n = rx_frame(s, r);
			if (n >= 54 && get16(r + 12) == 0x0800 && r[23] == IPPROTO_TCP && get16(r + 34) == port &&
			    (r[47] & 0x12) == 0x12)
				synack = true;
		}
	}
	cr_assert(synack, "SYN-ACK from the stack");
	cr_assert_eq(dev->stats.tx_rejected, 1);
	close(c);
	close(l);
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
}

/* A free port on host loopback (bound and closed again: nothing else on this machine takes it meanwhile). */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	return ntohs(sa.sin_port);
}

Test(net_slirp, a_published_port_reaches_the_guest)
{
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	struct net_publish pub;
	char spec[32], err[256];
	uint16_t port = free_port();
	snprintf(spec, sizeof(spec), "%u:8000", port);
	cr_assert_eq(net_publish_parse(spec, &pub, err, sizeof(err)), 0, "%s", err);
	mk_publish = &pub, mk_npublish = 1;
	make_dev(NULL, NULL, 0);
	mk_publish = NULL, mk_npublish = 0;
	dev_up(16);
	arp_request(NET_GATEWAY_IP); /* slirp learns the guest's MAC */
	tx_send();
	pump();
	uint16_t seen = used_idx(&dq[0]);

	/* The stack listens from init on: a host client connects, and the guest is offered a SYN to port 8000. */
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int rc = connect(c, (struct sockaddr *)&sa, sizeof(sa));
	cr_assert(rc == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
	bool syn_seen = false;
	uint8_t r[NET_FRAME_MAX];
	for (int i = 0; i < 200 && !syn_seen; i++) {
		virtio_net_poll(dev, 10);
		for (uint16_t s = seen; s != used_idx(&dq[0]); s++) {
			size_t n = rx_frame(s, r);
			if (n >= 54 && get16(r + 12) == 0x0800 && r[23] == IPPROTO_TCP && get32(r + 30) == NET_GUEST_IP &&
			    get16(r + 36) == 8000 && (r[47] & 0x12) == 0x02)
				syn_seen = true;
		}
		seen = used_idx(&dq[0]);
	}
	cr_assert(syn_seen, "a SYN to 10.0.2.15:8000");
	close(c);
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
}

Test(net_slirp, a_port_that_cannot_be_published_fails_at_init)
{
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 1), 0);
	socklen_t sl = sizeof(sa);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	struct net_publish pub;
	char spec[32], err[256] = "";
	snprintf(spec, sizeof(spec), "127.0.0.1:%u:80", ntohs(sa.sin_port));
	cr_assert_eq(net_publish_parse(spec, &pub, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gmem_init(&mem, 64ULL << 20), 0);
	fake_host_init(&fh);
	struct virtio_net *n = calloc(1, sizeof(*n));
	struct net_params p = { .log_fd = -1, .dns_servers = "127.0.0.1:9", .publish = &pub, .npublish = 1 };
	cr_assert_neq(virtio_net_init(n, &p, &mem, &fh.host, 5, err, sizeof(err)), 0, "a port in use was published");
	cr_assert(strstr(err, "cannot listen on 127.0.0.1:"), "%s", err);
	free(n);
	gmem_destroy(&mem);
	close(l);
}

/* ---- the command line ---- */

#include "vmm/cmd/cli.h"

Test(net_cli, publish_values)
{
	struct net_publish p;
	char err[256];
	cr_assert_eq(net_publish_parse("8080:80", &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.host_addr, 0x7f000001u, "host loopback by default");
	cr_assert_eq(p.host_port, 8080);
	cr_assert_eq(p.guest_port, 80);
	cr_assert_eq(net_publish_parse("0.0.0.0:1:65535", &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.host_addr, 0);
	cr_assert_eq(p.guest_port, 65535);
	static const char *bad[] = { "", "80", ":80", "80:", "0:80", "80:0", "65536:80", "80:65536", "x:80", "80:8o",
				     "1.2.3:80:80", "localhost:80:80", ":80:80", "1.2.3.4::80", "+80:80", "80:-1",
				     "1.2.3.4:5:6:7", "123456789012345678901234567890123456789012345678:1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(net_publish_parse(bad[i], &p, err, sizeof(err)), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(strstr(err, "--publish"), "%s", err);
	}
}

Test(net_cli, publish_implies_net_and_a_port_once)
{
	char *argv[] = { "boot", "--kernel", "k", "--publish", "8080:80", "--publish", "0.0.0.0:9090:90", NULL };
	struct boot_opts o;
	char err[512];
	cr_assert_eq(cli_parse_boot(7, argv, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert(o.net.net);
	cr_assert_eq(o.net.npublish, 2);
	cr_assert_eq(o.net.publish[1].host_port, 9090);
	cli_opts_free(&o);
	char *dup[] = { "boot", "--kernel", "k", "--publish", "8080:80", "--publish", "0.0.0.0:8080:81", NULL };
	cr_assert_neq(cli_parse_boot(7, dup, &o, err, sizeof(err)), 0);
	cr_assert(strstr(err, "already published"), "%s", err);
}

Test(net_cli, no_nic_unless_asked)
{
	char *argv[] = { "boot", "--kernel", "k", NULL };
	struct boot_opts o;
	char err[512];
	cr_assert_eq(cli_parse_boot(3, argv, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(o.net.net);
	cli_opts_free(&o);
}

Test(net_cli, allow_implies_net_and_rules_are_checked)
{
	char *argv[] = { "boot", "--kernel", "k", "--allow", "pypi.org:443", "--allow", "*.pythonhosted.org:443",
			 "--allow-internet", "--net-log", "/tmp/x.log", NULL };
	struct boot_opts o;
	char err[512];
	cr_assert_eq(cli_parse_boot(10, argv, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert(o.net.net);
	cr_assert(o.net.allow_internet);
	cr_assert_eq(o.net.nallow, 2);
	cr_assert_str_eq(o.net.allow[1], "*.pythonhosted.org:443");
	cr_assert_str_eq(o.net.log, "/tmp/x.log");
	cli_opts_free(&o);
	char *bad[] = { "boot", "--kernel", "k", "--allow", "10.0.0.0/33", NULL };
	cr_assert_eq(cli_parse_boot(5, bad, &o, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "--allow"), "%s", err);
	char *run[] = { "run", "--from", "d", "--allow", "1.2.3.4", "--", "true", NULL };
	struct run_opts r;
	cr_assert_eq(cli_parse_run(7, run, &r, err, sizeof(err)), 0, "network flags go with --from: %s", err);
	cr_assert(r.vm.net.net);
	cli_opts_free(&r.vm);
}

/* ---- rate limiters: a clock the test moves, so nothing here waits on real time ---- */

static uint64_t net_fake_ns;
static uint64_t net_fake_clock(void) { return net_fake_ns; }

/* GET /network/policy's counters, as the API thread reads them. */
static struct policy_counts counts_of_dev(void)
{
	struct policy_view v;
	cr_assert_eq(virtio_net_get_policy(dev, &v), 0);
	struct policy_counts c = v.counts;
	policy_view_free(&v);
	return c;
}

/* Puts the NIC on the fake clock, then sets its limits (a changed bucket starts full at that time). */
static void net_limits(const char *rx, const char *tx)
{
	char err[200];
	struct ratelimit_patch p[2] = { { .bytes_set = true, .ops_set = true }, { .bytes_set = true, .ops_set = true } };
	cr_assert_eq(ratelimit_parse(rx, &p[0].cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ratelimit_parse(tx, &p[1].cfg, err, sizeof(err)), 0, "%s", err);
	net_fake_ns = 1000000000ull;
	pthread_mutex_lock(&dev->t.lock);
	dev->clock = net_fake_clock;
	pthread_mutex_unlock(&dev->t.lock);
	virtio_net_set_rate(dev, &p[0], &p[1]);
}

Test(virtio_net, tx_frames_over_the_budget_wait_in_the_ring_until_refill)
{
	net_limits("none", "ops=2/1000s"); /* two frames, then one every 500 s of fake time */
	for (int i = 0; i < 2; i++) {
		arp_request(NET_GATEWAY_IP);
		tx_send();
	}
	pump();
	cr_assert_eq(fb.sent, 2, "two frames within the budget");
	cr_assert_eq(counts_of_dev().tx_throttled, 0, "frames within the budget never wait");
	for (int i = 0; i < 2; i++) {
		arp_request(NET_GATEWAY_IP);
		tx_send();
	}
	pump();
	cr_assert_eq(fb.sent, 2, "the budget is spent");
	cr_assert_eq(used_idx(&dq[1]), 2, "the others stay in the ring, not taken and dropped");
	cr_assert_geq(dev->stats.tx_throttled, 1);
	struct policy_counts c = counts_of_dev();
	cr_assert_geq(c.tx_throttled, 1, "GET /network/policy counts the wait");
	cr_assert_eq(c.rx_throttled, 0, "the rx limiter has no limit and never waited");
	cr_assert_neq(dev->tx_until_ns, 0, "the loop knows when to look again");
	net_fake_ns += 499ull * 1000000000ull;
	pump();
	cr_assert_eq(fb.sent, 2, "one second short of a token");
	net_fake_ns += 1000000000ull;
	pump();
	cr_assert_eq(fb.sent, 3, "a token is back: one more frame");
	net_fake_ns += 500ull * 1000000000ull;
	pump();
	cr_assert_eq(fb.sent, 4);
	cr_assert_eq(used_idx(&dq[1]), 4, "nothing lost");
	cr_assert_eq(dev->stats.tx_passed, 4);
}

Test(virtio_net, tx_bytes_bucket_counts_frame_bytes_not_headers)
{
	arp_request(NET_GATEWAY_IP); /* 42 bytes of frame */
	char spec[64];
	snprintf(spec, sizeof(spec), "bytes=%zu/1000s", 2 * flen);
	net_limits("none", spec);
	for (int i = 0; i < 3; i++) {
		arp_request(NET_GATEWAY_IP);
		tx_send();
	}
	pump();
	cr_assert_eq(fb.sent, 2, "exactly two frames' bytes: the virtio header is not counted");
	net_fake_ns += 1000ull * 1000000000ull;
	pump();
	cr_assert_eq(fb.sent, 3);
}

Test(virtio_net, rx_is_held_back_and_delivered_in_order_after_refill)
{
	net_limits("ops=3/1000s", "none");
	for (unsigned i = 0; i < 5; i++) {
		fb.inject_len = 60;
		memset(fb.inject, (int)i, 60);
		memcpy(fb.inject, guest_mac, 6);
		virtio_net_poll(dev, 0);
		if (i == 2)
			cr_assert_eq(counts_of_dev().rx_throttled, 0, "three frames within the budget never wait");
	}
	cr_assert_eq(used_idx(&dq[0]), 3, "three frames within the budget");
	cr_assert_eq(dev->bl.n, 2, "the rest wait in the backlog, buffers left in the ring");
	cr_assert_geq(dev->stats.rx_throttled, 1);
	cr_assert_eq(dev->stats.rx_dropped, 0);
	struct policy_counts c = counts_of_dev();
	cr_assert_geq(c.rx_throttled, 1, "GET /network/policy counts the wait");
	cr_assert_eq(c.tx_throttled, 0, "the tx limiter has no limit and never waited");
	net_fake_ns += 1000ull * 1000000000ull; /* the bucket refills to its size, 3 */
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 5);
	cr_assert_eq(dev->bl.n, 0);
	cr_assert_eq(counts_of_dev().rx_throttled, c.rx_throttled, "two frames in a full bucket: no more waits");
	uint8_t r[NET_FRAME_MAX];
	cr_assert_eq(rx_frame(3, r), 60);
	cr_assert_eq(r[59], 3, "in order");
	cr_assert_eq(rx_frame(4, r), 60);
	cr_assert_eq(r[59], 4);
}

Test(virtio_net, a_live_change_lifts_the_limit_at_once)
{
	net_limits("none", "ops=1/1000s");
	for (int i = 0; i < 3; i++) {
		arp_request(NET_GATEWAY_IP);
		tx_send();
	}
	pump();
	cr_assert_eq(fb.sent, 1);
	struct ratelimit_patch off = { .ops_set = true }; /* ops size 0: no limit */
	virtio_net_set_rate(dev, NULL, &off);
	pump();
	cr_assert_eq(fb.sent, 3, "no clock movement needed once the limit is gone");
	cr_assert_eq(dev->tx_until_ns, 0);
}

Test(virtio_net, throttled_poll_sleeps_until_the_tokens_are_back)
{
	/* On the real clock: the loop's own timeout releases the frame, and never before it is due. */
	char err[200];
	struct ratelimit_patch p = { .ops_set = true };
	cr_assert_eq(ratelimit_parse("ops=1/200ms", &p.cfg, err, sizeof(err)), 0, "%s", err);
	virtio_net_set_rate(dev, NULL, &p);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* A fourth frame keeps the limiter's wait armed after the third, so no pass blocks for good. */
	for (int i = 0; i < 4; i++) {
		arp_request(NET_GATEWAY_IP);
		tx_send();
	}
	for (int i = 0; i < 200 && fb.sent < 3; i++)
		virtio_net_poll(dev, -1); /* no timeout of its own: only the limiter's ends the wait */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(fb.sent, 3);
	double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert_geq(ms, 390.0, "two refills of 200 ms at least, took %.1f ms", ms);
}

/* ---- the policy changed live (the API's PUT /network/policy) ---- */

static struct policy_view view_of_dev(void)
{
	struct policy_view v;
	cr_assert_eq(virtio_net_get_policy(dev, &v), 0);
	return v;
}

Test(virtio_net, a_live_policy_change_decides_the_next_connection)
{
	char err[256];
	syn(DENIED, 80);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 0);
	struct policy_view v = view_of_dev();
	cr_assert_eq(v.counts.rejected, 1);
	cr_assert_eq(v.nrules, 2);
	cr_assert_str_eq(v.rules[1], "pypi.org:443");
	cr_assert_eq(v.changes, 0);
	policy_view_free(&v);

	/* allowed now: the next SYN passes */
	static const char *const open8[] = { "8.8.8.8:80" };
	cr_assert_eq(virtio_net_set_policy(dev, open8, 1, false, err, sizeof(err)), 0, "%s", err);
	syn(DENIED, 80);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1, "the SYN reaches the stack after the change");
	syn(ALLOWED, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1, "the old set is gone: its rule no longer allows anything");
	v = view_of_dev();
	cr_assert_eq(v.nrules, 1);
	cr_assert_str_eq(v.rules[0], "8.8.8.8:80");
	cr_assert_eq(v.changes, 1);
	cr_assert_eq(v.counts.allowed, 1);
	cr_assert_eq(v.counts.rejected, 2);
	policy_view_free(&v);

	/* a bad rule among good ones changes nothing and names itself */
	static const char *const bad[] = { "pypi.org:443", "10.0.0.1/8" };
	cr_assert_eq(virtio_net_set_policy(dev, bad, 2, false, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "10.0.0.1/8"), "%s", err);
	syn(DENIED, 80);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 2, "still the set before the bad one");

	/* removed again: refused again */
	cr_assert_eq(virtio_net_set_policy(dev, NULL, 0, false, err, sizeof(err)), 0, "%s", err);
	syn(DENIED, 80);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 2);
	v = view_of_dev();
	cr_assert_eq(v.nrules, 0);
	cr_assert_eq(v.changes, 2, "the refused change is not counted");
	cr_assert_eq(v.counts.rejected, 3);
	cr_assert_eq(v.counts.allowed, 2);
	policy_view_free(&v);
	/* the own addresses survive a change: open mode still does not reach the stack's gateway */
	cr_assert_eq(virtio_net_set_policy(dev, NULL, 0, true, err, sizeof(err)), 0, "%s", err);
	syn(NET_GATEWAY_IP, 80);
	tx_send();
	syn(DENIED, 80);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 3, "open mode: 8.8.8.8 yes, the gateway no");
}

Test(virtio_net, a_name_no_longer_allowed_does_not_keep_its_resolved_address)
{
	char err[256];
	dns_query("pypi.org", 7);
	tx_send();
	pump_until_rx(1);
	syn(0xcb007107u, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1, "resolved for an allowed name: reachable");
	/* the guest still has the answer cached; the rule for its name is gone */
	static const char *const rest[] = { "93.184.216.34:443" };
	cr_assert_eq(virtio_net_set_policy(dev, rest, 1, false, err, sizeof(err)), 0, "%s", err);
	syn(0xcb007107u, 443);
	tx_send();
	pump();
	cr_assert_eq(fb.sent, 1, "re-checked against the new rules: refused");
	cr_assert_eq(used_idx(&dq[0]), 2, "the DNS answer, then a reset");
	dns_query("pypi.org", 8);
	tx_send();
	pump_until_rx(3);
	uint32_t a[16];
	size_t na;
	cr_assert_eq(dns_answer(2, 8, a, &na), DNS_RCODE_NXDOMAIN, "and the name no longer resolves");
	cr_assert_eq(up.queries, 1, "nor is it asked upstream");
	struct policy_view v = view_of_dev();
	cr_assert_eq(v.counts.resolved, 1);
	cr_assert_eq(v.counts.nxdomain, 1);
	cr_assert_eq(v.counts.allowed, 1);
	cr_assert_eq(v.counts.rejected, 1);
	cr_assert_eq(v.counts.dropped, 0, "a DNS query is no drop: its decision is resolved or nxdomain");
	policy_view_free(&v);
}

Test(virtio_net, a_change_waits_for_the_device_thread_between_frames)
{
	/* The API's thread only hands the set over; the device loop's next pass swaps it in. */
	char err[256];
	static const char *const one[] = { "8.8.8.8:80" }, *const two[] = { "8.8.4.4:53/udp" };
	cr_assert_eq(virtio_net_set_policy(dev, one, 1, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(dev->policy.nrules, 2, "not swapped on the caller's thread");
	cr_assert_not_null(dev->policy_next);
	cr_assert_eq(virtio_net_set_policy(dev, two, 1, false, err, sizeof(err)), 0, "%s", err);
	struct policy_view v = view_of_dev();
	cr_assert_eq(v.nrules, 1);
	cr_assert_str_eq(v.rules[0], "8.8.4.4:53/udp", "GET shows the newest set, waiting or not");
	policy_view_free(&v);
	virtio_net_poll(dev, 0);
	cr_assert_null(dev->policy_next);
	cr_assert_eq(dev->policy.nrules, 1);
	cr_assert_str_eq(dev->policy.rules[0].text, "8.8.4.4:53/udp", "the superseded set never applied");
	cr_assert_eq(dev->policy_changes, 2);
}

/* Polls (serving the fake upstream) until the guest is sent a TCP segment from src:sport to dport with all of `flags`. */
static bool wait_tcp(uint16_t *seen, uint32_t src, uint16_t sport, uint16_t dport, uint8_t flags, uint32_t *seq)
{
	uint8_t r[NET_FRAME_MAX];
	for (int i = 0; i < 1000; i++) {
		virtio_net_poll(dev, 10);
		up_serve();
		for (; *seen != used_idx(&dq[0]); (*seen)++) {
			size_t n = rx_frame(*seen, r);
			if (n >= 54 && get16(r + 12) == 0x0800 && r[23] == IPPROTO_TCP && get32(r + 26) == src &&
			    get16(r + 34) == sport && get16(r + 36) == dport && (r[47] & flags) == flags) {
				/* the translated frame's checksums are right: the guest would drop it otherwise */
				cr_assert_eq(t_fold(t_sum(r + 14, 20, 0)), 0, "IPv4 checksum");
				uint8_t ph[12];
				memcpy(ph, r + 26, 8);
				ph[8] = 0, ph[9] = IPPROTO_TCP;
				put16(ph + 10, (uint16_t)(get16(r + 16) - 20));
				cr_assert_eq(t_fold(t_sum(r + 34, get16(r + 16) - 20, t_sum(ph, 12, 0))), 0, "TCP checksum");
				if (seq)
					*seq = get32(r + 38);
				rx_post((uint16_t)used_elem(&dq[0], *seen).id); /* the buffer back, as a driver does */
				(*seen)++;
				return true;
			}
			rx_post((uint16_t)used_elem(&dq[0], *seen).id);
		}
	}
	return false;
}

Test(net_slirp, a_name_s_connection_is_checked_by_its_host_and_dialled_by_name)
{
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 4), 0);
	socklen_t sl = sizeof(sa);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	uint16_t port = ntohs(sa.sin_port);
	char r1[48], r2[48];
	snprintf(r1, sizeof(r1), "*.sni.test:%u", port);
	snprintf(r2, sizeof(r2), "127.0.0.1:%u", port); /* b.sni.test's answer may be dialled */
	const char *rules[] = { r1, r2 };
	make_dev(NULL, rules, 2);
	int logp[2];
	cr_assert_eq(pipe2(logp, O_NONBLOCK), 0);
	dev->log_fd = logp[1];
	dev_up(QN);
	arp_request(NET_GATEWAY_IP);
	tx_send();
	pump();
	uint16_t seen = used_idx(&dq[0]);
	dns_query("a.sni.test", 7);
	tx_send();
	pump_until_rx((uint16_t)(seen + 1));
	seen = used_idx(&dq[0]);
	const uint32_t cdn = 0xcb007114u;

	/* allowed: resolved as a.sni.test, asks for b.sni.test (the wildcard allows it), dialled by that name */
	tcp_seg(cdn, 40010, port, 1000, 0, 0x02, NULL);
	tx_send();
	uint32_t sseq, sseq1;
	cr_assert(wait_tcp(&seen, cdn, port, 40010, 0x12, &sseq), "a SYN-ACK from 203.0.113.20 (translated back)");
	sseq1 = sseq;
	cr_assert_eq(dev->stats.tx_rejected, 0);
	const char *req = "GET /x HTTP/1.1\r\nHost: b.sni.test\r\n\r\n";
	tcp_seg(cdn, 40010, port, 1001, sseq + 1, 0x18, req);
	tx_send();
	int c = -1;
	for (int i = 0; i < 1000 && c < 0; i++) {
		virtio_net_poll(dev, 10);
		up_serve();
		c = accept(l, NULL, NULL);
	}
	cr_assert_geq(c, 0, "padcell dialled b.sni.test's address");
	char got[128] = { 0 };
	size_t have = 0;
	for (int i = 0; i < 1000 && have < strlen(req); i++) {
		virtio_net_poll(dev, 10);
		ssize_t n = recv(c, got + have, sizeof(got) - 1 - have, MSG_DONTWAIT);
		if (n > 0)
			have += (size_t)n;
	}
	cr_assert_str_eq(got, req, "the server got the guest's request");
	cr_assert_str_eq(up.last, "b.sni.test", "the name the connection asked for was resolved");
	cr_assert_eq(dev->stats.sni_allowed, 1);
	struct policy_counts pc = counts_of_dev();
	cr_assert_eq(pc.sni_accepted, 1, "GET /network/policy: one name check passed");
	cr_assert_eq(pc.sni_refused, 0, "and none refused yet");

	/* foreign: the same address, a Host no rule allows: a reset from 203.0.113.20, nothing dialled */
	tcp_seg(cdn, 40011, port, 5000, 0, 0x02, NULL);
	tx_send();
	cr_assert(wait_tcp(&seen, cdn, port, 40011, 0x12, &sseq));
	tcp_seg(cdn, 40011, port, 5001, sseq + 1, 0x18, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
	tx_send();
	cr_assert(wait_tcp(&seen, cdn, port, 40011, 0x04, NULL), "a reset for the foreign Host");
	cr_assert_lt(accept(l, NULL, NULL), 0, "no second connection to the server");
	cr_assert_eq(dev->stats.sni_rejected, 1);
	pc = counts_of_dev();
	cr_assert_eq(pc.sni_refused, 1, "GET /network/policy: the foreign Host refused");
	cr_assert_eq(pc.sni_accepted, 1, "the refusal is not an acceptance");
	char log[8192] = { 0 };
	ssize_t ll = read(logp[0], log, sizeof(log) - 1);
	cr_assert_gt(ll, 0);
	cr_assert(strstr(log, "\"dst\":\"b.sni.test:") && strstr(log, "\"verdict\":\"allow\",\"why\":\"HTTP Host 'b.sni.test'"), "%s", log);
	cr_assert(strstr(log, "\"dst\":\"evil.test:") && strstr(log, "\"verdict\":\"reject\",\"why\":\"sni mismatch: HTTP Host 'evil.test'"), "%s", log);

	/* the allowed connection's second request names a host no rule allows: cut, none of it sent, logged, counted */
	const char *req2 = "GET /y HTTP/1.1\r\nHost: evil2.test\r\n\r\n";
	tcp_seg(cdn, 40010, port, 1001 + (uint32_t)strlen(req), sseq1 + 1, 0x18, req2);
	tx_send();
	cr_assert(wait_tcp(&seen, cdn, port, 40010, 0x04, NULL), "a reset for the second request's Host");
	bool ended = false;
	for (int i = 0; i < 1000 && !ended; i++) {
		virtio_net_poll(dev, 10);
		ssize_t n = recv(c, got, sizeof(got), MSG_DONTWAIT);
		cr_assert_leq(n, 0, "the server got %zd bytes of the refused request", n);
		ended = n == 0 || (n < 0 && errno != EAGAIN);
	}
	cr_assert(ended, "the server's connection was ended");
	cr_assert_eq(dev->stats.sni_rejected, 2);
	pc = counts_of_dev();
	cr_assert_eq(pc.sni_refused, 2, "the later request's refusal is counted");
	cr_assert_eq(pc.sni_accepted, 1);
	memset(log, 0, sizeof(log));
	ll = read(logp[0], log, sizeof(log) - 1);
	cr_assert_gt(ll, 0);
	cr_assert(strstr(log, "\"dst\":\"b.sni.test:") &&
		  strstr(log, "\"verdict\":\"reject\",\"why\":\"sni mismatch: HTTP Host 'evil2.test'") &&
		  strstr(log, "request 2 on this connection"), "%s", log);
	close(c);
	close(l);
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
	close(logp[0]);
	close(logp[1]);
}

Test(net_slirp, finished_name_checked_connections_give_their_slots_back)
{
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	const char *rules[] = { "*.sni.test:443" };
	make_dev(NULL, rules, 1);
	dev_up(QN);
	arp_request(NET_GATEWAY_IP);
	tx_send();
	pump();
	uint16_t seen = used_idx(&dq[0]);
	dns_query("a.sni.test", 9);
	tx_send();
	pump_until_rx((uint16_t)(seen + 1));
	seen = used_idx(&dq[0]);
	const uint32_t cdn = 0xcb007114u;
	/* more connections, one after the other, than there are slots: each one cut (a foreign Host) */
	for (uint16_t i = 0; i < NET_REDIRECTS_MAX + 8; i++) {
		uint16_t sport = (uint16_t)(41000 + i);
		uint32_t sseq;
		tcp_seg(cdn, sport, 443, 100, 0, 0x02, NULL);
		tx_send();
		cr_assert(wait_tcp(&seen, cdn, 443, sport, 0x12, &sseq), "connection %u: a SYN-ACK, not the gate's reset", i);
		tcp_seg(cdn, sport, 443, 101, sseq + 1, 0x18, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
		tx_send();
		cr_assert(wait_tcp(&seen, cdn, 443, sport, 0x04, NULL), "connection %u: reset", i);
	}
	cr_assert_eq(dev->stats.tx_rejected, 0);
	cr_assert_eq(dev->stats.sni_rejected, NET_REDIRECTS_MAX + 8);
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
}

/* ---- rx flow control: a full guest ring stops the backend reading; the backlog is bounded ---- */

/*
 * A backend standing for a host socket with `left` frames to read: it asks poll for input only
 * while the NIC is not paused, as net_slirp.c does, and each read emits a burst of three frames
 * (as one read of slirp's turns into several segments).
 */
#define FLOW_FRAME 40000u
static struct {
	struct virtio_net *n;
	int fd;            /* always readable */
	unsigned left, next, reads, reads_paused;
} fs;
static uint8_t fs_frame[FLOW_FRAME];

static int fs_open(void *ctx, struct virtio_net *n)
{
	fs.n = n;
	return 0;
}
static void fs_send(void *ctx, const uint8_t *frame, size_t len) {}
static unsigned fs_fill(void *ctx, struct pollfd *fds, unsigned max, int *timeout_ms)
{
	if (!fs.left)
		return 0;
	fds[0] = (struct pollfd){ .fd = fs.fd, .events = virtio_net_rx_paused(fs.n) ? 0 : POLLIN };
	return 1;
}
static void fs_done(void *ctx, struct pollfd *fds, unsigned n, int rc)
{
	if (n != 1 || rc <= 0 || !(fds[0].revents & POLLIN))
		return;
	fs.reads++;
	if (virtio_net_rx_paused(fs.n))
		fs.reads_paused++;
	for (unsigned k = 0; k < 3 && fs.left; k++, fs.left--) {
		memcpy(fs_frame, guest_mac, 6);
		put32(fs_frame + 14, fs.next++);
		virtio_net_deliver(fs.n, fs_frame, sizeof(fs_frame));
	}
}
static void fs_close(void *ctx) {}
static const struct net_backend_ops fs_ops = { .name = "flow", .open = fs_open, .send = fs_send, .poll_fill = fs_fill, .poll_done = fs_done, .close = fs_close };
static const struct net_backend flow_be = { &fs_ops, NULL };

/* The guest takes every used rx buffer since *seen, checks the frames' order, and posts the buffers again. */
static void flow_consume(uint16_t *seen, unsigned *got)
{
	static uint8_t r[NET_FRAME_MAX];
	for (; *seen != used_idx(&dq[0]); (*seen)++) {
		cr_assert_eq(rx_frame(*seen, r), FLOW_FRAME);
		cr_assert_eq(get32(r + 14), *got, "frames arrive in order, none missing");
		(*got)++;
		rx_post((uint16_t)used_elem(&dq[0], *seen).id);
	}
}

/*
 * The server closes first (as an HTTP server does): libslirp sends the guest its FIN and, once the
 * guest's FIN comes, would keep the connection and both its socket buffers (mappings of their
 * own, see devices/net_slirp.c) for 10 s of TIME_WAIT.  With padcell's reset behind that FIN they
 * are unmapped at once.
 */
Test(net_slirp, a_connection_the_server_closed_first_frees_its_buffers_at_the_guests_fin)
{
#if defined(__SANITIZE_ADDRESS__)
	cr_skip_test("the sanitizer's allocator has no mmap threshold");
#endif
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	uint16_t port;
	int l = slirp_dev_with_listener(&port);
	uint16_t seen = 0;
	arp_request(NET_GATEWAY_IP);
	tx_send();
	pump();
	size_t idle = mallinfo2().hblkhd;

	tcp_seg(0x7f000001, 40020, port, 1000, 0, 0x02, NULL);
	tx_send();
	uint32_t isn;
	cr_assert(wait_tcp(&seen, 0x7f000001, port, 40020, 0x12, &isn), "a SYN-ACK from the stack");
	tcp_seg(0x7f000001, 40020, port, 1001, isn + 1, 0x10, NULL);
	tx_send();
	int c = slirp_accept(l);
	cr_assert_geq(c, 0, "slirp connected to the listener");
	cr_assert_geq(mallinfo2().hblkhd, idle + (256u << 10), "the connection's two socket buffers are mapped");
	close(c); /* the server's end first */
	uint32_t fin;
	cr_assert(wait_tcp(&seen, 0x7f000001, port, 40020, 0x01, &fin), "the stack passes the server's FIN on");
	tcp_seg(0x7f000001, 40020, port, 1001, fin + 1, 0x11, NULL); /* the guest acks it and closes */
	tx_send();
	pump();
	cr_assert(wait_tcp(&seen, 0x7f000001, port, 40020, 0x10, NULL), "the stack acks the guest's FIN");
	cr_assert_eq(mallinfo2().hblkhd, idle, "no TIME_WAIT: both buffers unmapped at once");
	cr_assert_eq(dev->stats.timewait_cut, 1);
	close(l);
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
}

Test(virtio_net_flow, a_full_ring_stops_the_backend_until_buffers_are_posted)
{
	make_dev(&flow_be, NULL, 0);
	memset(&fs, 0, sizeof(fs));
	fs.fd = eventfd(1, EFD_CLOEXEC);
	cr_assert_geq(fs.fd, 0);
	fs.left = 60; /* 2.4 MB: ten times the backlog */
	dev_up(4);
	uint16_t seen = 0;
	unsigned got = 0;
	for (int round = 0; round < 200 && got < 60; round++) {
		/* the guest is slow: ten passes of the loop between two looks at its ring */
		for (int i = 0; i < 10; i++) {
			unsigned reads = fs.reads;
			virtio_net_poll(dev, 0);
			cr_assert_leq(dev->bl.bytes, NET_RX_BACKLOG_BYTES);
			if (dev->bl.n && i > 0)
				cr_assert_leq(fs.reads, reads + 1, "at most the pass that filled the ring read");
		}
		if (round == 0) {
			cr_assert_eq(used_idx(&dq[0]), 4, "the ring is full");
			cr_assert_gt(dev->bl.n, 0, "the rest of a burst waits");
			cr_assert(virtio_net_rx_paused(dev), "and the backend is told to read nothing");
			cr_assert_lt(fs.reads, 4, "reading stopped with the ring full");
		}
		flow_consume(&seen, &got);
	}
	cr_assert_eq(got, 60, "every frame reached the guest");
	cr_assert_eq(fs.reads_paused, 0, "the backend never read while paused");
	cr_assert_eq(dev->stats.rx_dropped, 0);
	cr_assert_eq(dev->stats.rx_overrun, 0);
	cr_assert_gt(dev->stats.rx_paused, 0);
	virtio_net_poll(dev, 0);
	cr_assert_not(virtio_net_rx_paused(dev), "reading resumes once nothing waits");
	close(fs.fd);
}

Test(virtio_net_flow, the_backlog_is_a_bounded_ring_that_drops_beyond_and_counts)
{
	make_dev(&fake_be, NULL, 0);
	dev_up(0);
	static uint8_t fr[60000];
	memcpy(fr, guest_mac, 6);
	unsigned next = 0;
	/* No buffers: four 60000-byte frames fit in 256 KiB, the fifth is dropped and counted. */
	for (int i = 0; i < 5; i++) {
		put32(fr + 14, next++);
		virtio_net_deliver(dev, fr, sizeof(fr));
	}
	cr_assert_eq(dev->bl.n, 4);
	cr_assert_eq(dev->bl.bytes, 4 * sizeof(fr));
	cr_assert_eq(dev->stats.rx_overrun, 1);
	cr_assert_eq(dev->stats.rx_dropped, 1);
	/* Two go to the guest; two more then fit only by wrapping to the ring's start; a third does not. */
	rx_post(0);
	rx_post(1);
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 2);
	cr_assert_eq(dev->bl.n, 2);
	for (int i = 0; i < 3; i++) {
		put32(fr + 14, next++);
		virtio_net_deliver(dev, fr, sizeof(fr));
	}
	cr_assert_eq(dev->bl.n, 4);
	cr_assert(dev->bl.wrapped);
	cr_assert_eq(dev->stats.rx_overrun, 2);
	cr_assert_leq(dev->bl.bytes, NET_RX_BACKLOG_BYTES);
	/* in order, across the wrap: 0 1 2 3, then 5 6 (4 and 7 were dropped) */
	for (uint16_t i = 2; i < 6; i++)
		rx_post(i);
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 6);
	cr_assert_eq(dev->bl.n, 0);
	cr_assert_eq(dev->bl.bytes, 0);
	static const uint32_t want[6] = { 0, 1, 2, 3, 5, 6 };
	static uint8_t r[NET_FRAME_MAX];
	for (uint16_t s = 0; s < 6; s++) {
		cr_assert_eq(rx_frame(s, r), sizeof(fr));
		cr_assert_eq(get32(r + 14), want[s], "slot %u", s);
	}
	/* a driver reset empties it */
	put32(fr + 14, next++);
	virtio_net_deliver(dev, fr, sizeof(fr));
	cr_assert_eq(dev->bl.n, 1);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(dev->bl.n, 0);
	cr_assert_eq(dev->bl.bytes, 0);
}

TestSuite(virtio_net_flow, .fini = teardown, .timeout = 30);

Test(net_slirp, a_paused_nic_makes_slirp_accept_nothing_until_the_guest_posts_buffers)
{
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	struct net_publish pub;
	char spec[32], err[256];
	uint16_t port = free_port();
	snprintf(spec, sizeof(spec), "%u:8000", port);
	cr_assert_eq(net_publish_parse(spec, &pub, err, sizeof(err)), 0, "%s", err);
	mk_publish = &pub, mk_npublish = 1;
	make_dev(NULL, NULL, 0);
	mk_publish = NULL, mk_npublish = 0;
	dev_up(16);
	arp_request(NET_GATEWAY_IP); /* slirp learns the guest's MAC */
	tx_send();
	pump();
	uint16_t seen = used_idx(&dq[0]);
	cr_assert_eq(seen, 1, "the ARP reply");
	/* The guest's ring fills and one frame waits: the NIC is paused. */
	uint8_t junk[60] = { 0 };
	memcpy(junk, guest_mac, 6);
	for (int i = 0; i < 16; i++)
		virtio_net_deliver(dev, junk, sizeof(junk));
	cr_assert_eq(used_idx(&dq[0]), 16);
	cr_assert_eq(dev->bl.n, 1);
	/* A host client connects to the published port: the kernel completes its handshake, but slirp must not accept. */
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int rc = connect(c, (struct sockaddr *)&sa, sizeof(sa));
	cr_assert(rc == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
	uint64_t paused = dev->stats.rx_paused;
	for (int i = 0; i < 30; i++)
		virtio_net_poll(dev, 10);
	cr_assert_eq(dev->bl.n, 1, "slirp read no socket: no SYN for the guest was made");
	cr_assert_geq(dev->stats.rx_paused, paused + 30);
	/* The guest posts buffers: the backlog drains, slirp accepts, and the guest is offered the SYN. */
	for (uint16_t i = 16; i < 32; i++)
		rx_post(i);
	bool syn_seen = false;
	uint8_t r[NET_FRAME_MAX];
	for (int i = 0; i < 200 && !syn_seen; i++) {
		virtio_net_poll(dev, 10);
		for (uint16_t s = seen; s != used_idx(&dq[0]); s++) {
			size_t n = rx_frame(s, r);
			if (n >= 54 && get16(r + 12) == 0x0800 && r[23] == IPPROTO_TCP && get32(r + 30) == NET_GUEST_IP &&
			    get16(r + 36) == 8000 && (r[47] & 0x12) == 0x02)
				syn_seen = true;
		}
		seen = used_idx(&dq[0]);
	}
	cr_assert(syn_seen, "a SYN to 10.0.2.15:8000 once the guest had buffers");
	cr_assert_eq(dev->stats.rx_dropped, 0);
	close(c);
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
}

/* ---- MRG_RXBUF: one frame over several page-sized buffers ---- */

static void rx_post_len(uint16_t i, uint32_t len)
{
	desc_put(&dq[0], i, dq[0].bufs + (uint64_t)i * 0x20000, len, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[0], i);
}

/* The merged frame starting at used slot `slot`: its buffers' count, the frame (after the header) into out. */
static unsigned rx_merged(uint16_t slot, uint8_t *out, size_t *len)
{
	struct vring_used_elem e = used_elem(&dq[0], slot);
	uint64_t buf = dq[0].bufs + (uint64_t)e.id * 0x20000;
	struct virtio_net_hdr_v1 h;
	gmem_read(&mem, buf, &h, sizeof(h));
	cr_assert_geq(h.num_buffers, 1);
	cr_assert_geq(e.len, NET_HDR_LEN);
	gmem_read(&mem, buf + NET_HDR_LEN, out, e.len - NET_HDR_LEN);
	*len = e.len - NET_HDR_LEN;
	for (uint16_t i = 1; i < h.num_buffers; i++) {
		e = used_elem(&dq[0], (uint16_t)(slot + i));
		gmem_read(&mem, dq[0].bufs + (uint64_t)e.id * 0x20000, out + *len, e.len);
		*len += e.len;
	}
	return h.num_buffers;
}

static void mrg_setup(void)
{
	make_dev(&fake_be, NULL, 0);
	dev_features_extra = 1u << VIRTIO_NET_F_MRG_RXBUF;
	dev_up(0);
	dev_features_extra = 0;
}

TestSuite(virtio_net_mrg, .init = mrg_setup, .fini = teardown, .timeout = 30);

static uint8_t mf[NET_FRAME_MAX];

static void mrg_frame(size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		mf[i] = (uint8_t)(seed + i * 7);
	memcpy(mf, guest_mac, 6);
}

Test(virtio_net_mrg, a_frame_spans_buffers_that_reach_the_used_ring_together)
{
	rx_post_len(0, 2048);
	rx_post_len(1, 2048);
	mrg_frame(5000, 1);
	virtio_net_deliver(dev, mf, 5000); /* 5012 bytes with the header: three buffers, two posted */
	cr_assert_eq(used_idx(&dq[0]), 0, "no part of a frame before all of it fits");
	cr_assert_eq(dev->bl.n, 1);
	rx_post_len(2, 2048);
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 3);
	cr_assert_eq(dev->bl.n, 0);
	cr_assert_eq(used_elem(&dq[0], 0).len, 2048);
	cr_assert_eq(used_elem(&dq[0], 1).len, 2048);
	cr_assert_eq(used_elem(&dq[0], 2).len, 5012 - 4096);
	static uint8_t r[NET_FRAME_MAX];
	size_t n;
	cr_assert_eq(rx_merged(0, r, &n), 3, "num_buffers says three");
	cr_assert_eq(n, 5000);
	cr_assert_eq(memcmp(r, mf, 5000), 0, "the bytes, in order");
	/* a small frame takes one buffer */
	rx_post_len(3, 2048);
	mrg_frame(60, 9);
	virtio_net_deliver(dev, mf, 60);
	cr_assert_eq(used_idx(&dq[0]), 4);
	cr_assert_eq(rx_merged(3, r, &n), 1);
	cr_assert_eq(n, 60);
	cr_assert_eq(memcmp(r, mf, 60), 0);
	cr_assert_eq(dev->stats.rx_dropped, 0);
}

Test(virtio_net_mrg, a_frame_larger_than_the_whole_ring_is_dropped_and_the_buffers_kept)
{
	for (uint16_t i = 0; i < QN; i++)
		rx_post_len(i, 64); /* 4 KiB in all */
	mrg_frame(5000, 2);
	virtio_net_deliver(dev, mf, 5000);
	cr_assert_eq(used_idx(&dq[0]), 0);
	cr_assert_eq(dev->bl.n, 0, "dropped, not waiting for buffers that can never be enough");
	cr_assert_eq(dev->stats.rx_dropped, 1);
	mrg_frame(60, 3);
	virtio_net_deliver(dev, mf, 60);
	cr_assert_eq(used_idx(&dq[0]), 2, "72 bytes: two buffers of 64");
	static uint8_t r[NET_FRAME_MAX];
	size_t n;
	cr_assert_eq(rx_merged(0, r, &n), 2);
	cr_assert_eq(n, 60);
	cr_assert_eq(memcmp(r, mf, 60), 0);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_net_mrg, a_device_readable_rx_buffer_breaks_the_device)
{
	rx_post_len(0, 2048);
	desc_put(&dq[0], 1, dq[0].bufs + 0x20000, 2048, 0, 0);
	avail_put(&dq[0], 1);
	mrg_frame(3000, 4);
	virtio_net_deliver(dev, mf, 3000);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(used_idx(&dq[0]), 0);
}

Test(virtio_net_mrg, a_first_buffer_without_room_for_the_header_breaks_the_device)
{
	rx_post_len(0, NET_HDR_LEN - 2);
	rx_post_len(1, 2048);
	mrg_frame(60, 5);
	virtio_net_deliver(dev, mf, 60);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(used_idx(&dq[0]), 0);
}

Test(virtio_net_mrg, the_rx_limiter_gives_back_every_buffer_of_a_held_frame)
{
	net_limits("ops=1/1000s", "none");
	for (uint16_t i = 0; i < 6; i++)
		rx_post_len(i, 2048);
	mrg_frame(5000, 6);
	virtio_net_deliver(dev, mf, 5000);
	mrg_frame(5000, 7);
	virtio_net_deliver(dev, mf, 5000);
	cr_assert_eq(used_idx(&dq[0]), 3, "one frame within the budget");
	cr_assert_eq(dev->bl.n, 1, "the other waits, its three buffers back in the ring");
	net_fake_ns += 1000ull * 1000000000ull;
	virtio_net_poll(dev, 0);
	cr_assert_eq(used_idx(&dq[0]), 6);
	static uint8_t r[NET_FRAME_MAX];
	size_t n;
	cr_assert_eq(rx_merged(3, r, &n), 3);
	cr_assert_eq(n, 5000);
	cr_assert_eq(memcmp(r, mf, 5000), 0);
}

Test(net_slirp, socket_sized_buffers_stay_their_own_mappings)
{
#if defined(__SANITIZE_ADDRESS__)
	cr_skip_test("the sanitizer's allocator has no mmap threshold");
#endif
	if (!net_slirp_built_in())
		cr_skip_test("built without libslirp");
	make_dev(NULL, NULL, 0);
	/*
	 * A socket buffer's life in libslirp: 128 KiB, grown to 192 KiB, freed.  glibc's dynamic
	 * threshold would move past the first freed block and serve the next ones from the heap.
	 */
	for (int i = 0; i < 3; i++) {
		size_t before = mallinfo2().hblkhd;
		void *p = malloc(128 << 10);
		cr_assert_geq(mallinfo2().hblkhd, before + (128 << 10), "round %d: a mapping of its own", i);
		void *q = realloc(p, 192 << 10);
		cr_assert_geq(mallinfo2().hblkhd, before + (192 << 10), "round %d: grown in place of its mapping", i);
		free(q);
		cr_assert_eq(mallinfo2().hblkhd, before, "round %d: freeing unmapped it", i);
	}
	virtio_net_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	up_stop();
}
