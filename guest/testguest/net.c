/* tg.case=nethostile: a polling virtio-net driver that sends hostile frames and chains, then proves the NIC still works. */
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "tg.h"

#define QN          16
#define RXB         2048
#define HDR         12u /* struct virtio_net_hdr_v1 under VERSION_1 */
#define WAIT_SPINS  1000000ul
#define INGRESS_PORT 8080 /* the harness publishes a host port to it (--publish) */
/* TSC ticks a reply may take: hang guards only (tens of seconds at any clock rate). */
#define REPLY_TICKS   30000000000ull
#define INGRESS_TICKS 150000000000ull

struct vq_mem {
	struct vring_desc desc[QN];
	struct { uint16_t flags, idx, ring[QN], used_event; } avail;
	uint8_t pad[4096 - 16 * QN - (4 + 2 * QN + 2)];
	struct { uint16_t flags, idx; struct vring_used_elem ring[QN]; uint16_t avail_event; } used;
} __attribute__((aligned(4096)));

/* Uncleared (.noclear): clearing memory costs ~2 us a word under PVM. */
static struct vq_mem nq[2] __attribute__((section(".noclear"), aligned(4096)));
static uint8_t rxbufs[QN][RXB] __attribute__((section(".noclear"), aligned(64)));
static uint8_t txb[72 * 1024] __attribute__((section(".noclear"), aligned(4096)));
static struct vring_desc itab[QN + 1] __attribute__((section(".noclear"), aligned(16)));

static const uint8_t my_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
#define MY_IP  0x0a00020fu
#define GW_IP  0x0a000202u
#define DNS_IP 0x0a000203u

struct vnet {
	uint64_t base;
	uint16_t avail[2], seen[2];
	uint8_t gw_mac[6];
	bool have_gw_mac;
};

static uint32_t rd(const struct vnet *d, uint32_t off) { return *(volatile uint32_t *)(d->base + off); }
static void wr(const struct vnet *d, uint32_t off, uint32_t v) { *(volatile uint32_t *)(d->base + off) = v; }
static uint64_t addr(const void *p) { return (uint64_t)p; }
static uint64_t tsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static void vq_avail(struct vnet *d, unsigned q, uint16_t head)
{
	nq[q].avail.ring[d->avail[q] % QN] = head;
	__asm__ volatile("" ::: "memory");
	nq[q].avail.idx = ++d->avail[q];
	__asm__ volatile("" ::: "memory");
	wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static void rx_post(struct vnet *d, uint16_t i)
{
	nq[0].desc[i] = (struct vring_desc){ .addr = addr(rxbufs[i]), .len = RXB, .flags = VRING_DESC_F_WRITE };
	vq_avail(d, 0, i);
}

/* Reset, VERSION_1 (and MAC) only, both queues, DRIVER_OK, every rx buffer posted. */
static const char *vnet_init(struct vnet *d)
{
	if (rd(d, VIRTIO_MMIO_MAGIC_VALUE) != 0x74726976 || rd(d, VIRTIO_MMIO_VERSION) != 2)
		return "not a virtio-mmio v2 device";
	if (rd(d, VIRTIO_MMIO_DEVICE_ID) != VIRTIO_ID_NET)
		return "not a network device";
	wr(d, VIRTIO_MMIO_STATUS, 0);
	if (rd(d, VIRTIO_MMIO_STATUS) != 0)
		return "status not 0 after reset";
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	if (!(rd(d, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << (VIRTIO_F_VERSION_1 - 32))))
		return "VERSION_1 not offered";
	if (!(lo & (1u << VIRTIO_NET_F_MAC)))
		return "VIRTIO_NET_F_MAC not offered";
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_NET_F_MAC);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
	wr(d, VIRTIO_MMIO_STATUS, s);
	if (!(rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK))
		return "FEATURES_OK refused";
	for (unsigned q = 0; q < 2; q++) {
		wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
		if (rd(d, VIRTIO_MMIO_QUEUE_READY))
			return "queue ready after reset";
		if (rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX) < QN)
			return "queue too small";
		nq[q].avail.flags = nq[q].avail.idx = nq[q].avail.used_event = 0;
		nq[q].used.flags = nq[q].used.idx = 0;
		d->avail[q] = d->seen[q] = 0;
		wr(d, VIRTIO_MMIO_QUEUE_NUM, QN);
		wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)addr(nq[q].desc));
		wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)addr(&nq[q].avail));
		wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
		wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)addr(&nq[q].used));
		wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
		wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(d, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
	if ((rd(d, VIRTIO_MMIO_STATUS) & 0xff) != (s | VIRTIO_CONFIG_S_DRIVER_OK))
		return "DRIVER_OK did not stick";
	for (unsigned i = 0; i < 6; i++)
		if (*(volatile uint8_t *)(d->base + VIRTIO_MMIO_CONFIG + i) != my_mac[i])
			return "config MAC is not 52:54:00:12:34:56";
	for (uint16_t i = 0; i < QN; i++)
		rx_post(d, i);
	return NULL;
}

enum tx_result { TX_TAKEN, TX_NEEDS_RESET, TX_TIMED_OUT };

/* Makes tx chain `head` available, kicks, and polls for its return or for NEEDS_RESET. */
static enum tx_result tx_submit(struct vnet *d, uint16_t head)
{
	vq_avail(d, 1, head);
	for (unsigned long i = 0; i < WAIT_SPINS; i++) {
		if (*(volatile uint16_t *)&nq[1].used.idx != d->seen[1]) {
			d->seen[1]++;
			return TX_TAKEN;
		}
		if (!(i & 63) && (rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET))
			return TX_NEEDS_RESET;
		cpu_relax();
	}
	return TX_TIMED_OUT;
}

/* The header (all zero: no offloads) and `len` bytes of frame, in txb, as one descriptor. */
static enum tx_result tx_frame(struct vnet *d, uint32_t len)
{
	memset(txb, 0, HDR);
	nq[1].desc[0] = (struct vring_desc){ .addr = addr(txb), .len = HDR + len };
	return tx_submit(d, 0);
}

/* Ethernet header at txb + HDR; returns where the payload goes. */
static uint8_t *eth(const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	uint8_t *f = txb + HDR;
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, type);
	return f + 14;
}

static uint16_t ip_csum(const uint8_t *p, unsigned len)
{
	uint32_t s = 0;
	for (unsigned i = 0; i + 1 < len; i += 2)
		s += get16(p + i);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* An IPv4 header (20 bytes, or 24 with one NOP option word) at ip; returns its length. */
static unsigned ipv4(uint8_t *ip, uint8_t proto, uint32_t src, uint32_t dst, unsigned l4len, uint16_t frag, bool opts)
{
	unsigned hl = opts ? 24 : 20;
	memset(ip, 0, hl);
	ip[0] = (uint8_t)(0x40 | hl / 4);
	put16(ip + 2, (uint16_t)(hl + l4len));
	put16(ip + 4, 0x4242);
	put16(ip + 6, frag);
	ip[8] = 64;
	ip[9] = proto;
	put32(ip + 12, src);
	put32(ip + 16, dst);
	if (opts)
		memset(ip + 20, 1, 4); /* NOPs */
	put16(ip + 10, ip_csum(ip, hl));
	return hl;
}

/* A UDP datagram with `plen` payload bytes already behind its headers (ip + 28, or ip + 32 with the option word); returns the frame's length. */
static uint32_t udp_frame(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, unsigned plen, uint16_t frag,
			  bool opts)
{
	uint8_t *ip = eth(bcast, my_mac, 0x0800);
	unsigned hl = opts ? 24 : 20;
	uint8_t *u = ip + hl;
	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + plen));
	put16(u + 6, 0); /* no checksum: legal for UDP over IPv4 */
	ipv4(ip, 17, src, dst, 8 + plen, frag, opts);
	return 14 + hl + 8 + plen;
}

static uint32_t tcp_syn(uint32_t dst, uint16_t sport, uint16_t dport)
{
	uint8_t *ip = eth(bcast, my_mac, 0x0800);
	uint8_t *t = ip + 20;
	memset(t, 0, 20);
	put16(t, sport);
	put16(t + 2, dport);
	put32(t + 4, 0x01020304);
	t[12] = 5 << 4;
	t[13] = 0x02; /* SYN */
	put16(t + 14, 8192);
	ipv4(ip, 6, MY_IP, dst, 20, 0, false);
	return 14 + 20 + 20;
}

static uint32_t arp_request(uint32_t target)
{
	uint8_t *a = eth(bcast, my_mac, 0x0806);
	put16(a, 1), put16(a + 2, 0x0800), a[4] = 6, a[5] = 4, put16(a + 6, 1);
	memcpy(a + 8, my_mac, 6), put32(a + 14, MY_IP);
	memset(a + 18, 0, 6), put32(a + 24, target);
	return 14 + 28;
}

/* Answers an ARP request for this guest's address (the stack asks before it sends to us). */
static void arp_answer(struct vnet *d, const uint8_t *f)
{
	uint8_t *a = eth(f + 6, my_mac, 0x0806);
	put16(a, 1), put16(a + 2, 0x0800), a[4] = 6, a[5] = 4, put16(a + 6, 2);
	memcpy(a + 8, my_mac, 6), put32(a + 14, MY_IP);
	memcpy(a + 18, f + 14 + 8, 6), put32(a + 24, get32(f + 14 + 14));
	tx_frame(d, 14 + 28);
}

typedef bool (*rx_match)(const uint8_t *f, uint32_t len, const void *arg);

/*
 * Polls the rx queue until a frame `match` accepts arrives (true), or `ticks` pass (false).
 * Every buffer goes back to the device; ARP requests for our address are answered on the way.
 */
static bool rx_wait(struct vnet *d, rx_match match, const void *arg, uint64_t ticks, unsigned *others)
{
	uint64_t t0 = tsc();
	while (tsc() - t0 < ticks) {
		if (*(volatile uint16_t *)&nq[0].used.idx == d->seen[0]) {
			cpu_relax();
			continue;
		}
		struct vring_used_elem e = nq[0].used.ring[d->seen[0] % QN];
		d->seen[0]++;
		bool hit = false;
		if (e.id < QN && e.len >= HDR + 14 && e.len <= RXB) {
			const uint8_t *f = rxbufs[e.id] + HDR;
			uint32_t len = e.len - HDR;
			if (get16(f + 12) == 0x0806 && len >= 42 && get16(f + 20) == 1 && get32(f + 38) == MY_IP)
				arp_answer(d, f);
			else if (!(hit = match(f, len, arg)) && others)
				(*others)++;
		}
		if (e.id < QN)
			rx_post(d, (uint16_t)e.id);
		if (hit)
			return true;
	}
	return false;
}

static bool is_arp_reply_from_gw(const uint8_t *f, uint32_t len, const void *arg)
{
	struct vnet *d = (struct vnet *)arg;
	if (len < 42 || get16(f + 12) != 0x0806 || get16(f + 20) != 2 || get32(f + 28) != GW_IP || get32(f + 38) != MY_IP)
		return false;
	memcpy(d->gw_mac, f + 22, 6);
	d->have_gw_mac = true;
	return true;
}

/* An IPv4 frame to us with protocol `proto`; returns its L4 header or NULL. */
static const uint8_t *ipv4_to_me(const uint8_t *f, uint32_t len, uint8_t proto)
{
	if (len < 14 + 20 || get16(f + 12) != 0x0800 || (f[14] >> 4) != 4 || f[14 + 9] != proto ||
	    get32(f + 14 + 16) != MY_IP)
		return NULL;
	unsigned hl = (f[14] & 15) * 4u;
	return hl >= 20 && len >= 14 + hl + 20 ? f + 14 + hl : NULL;
}

struct tcp_want { uint32_t src; uint16_t sport, dport; uint8_t flags; };

static bool is_tcp(const uint8_t *f, uint32_t len, const void *arg)
{
	const struct tcp_want *w = arg;
	const uint8_t *t = ipv4_to_me(f, len, 6);
	return t && get32(f + 14 + 12) == w->src && (!w->sport || get16(t) == w->sport) && get16(t + 2) == w->dport &&
	       (t[13] & w->flags) == w->flags;
}

struct dns_want { uint16_t id; uint8_t rcode; };

static bool is_dns_reply(const uint8_t *f, uint32_t len, const void *arg)
{
	struct dns_want *w = (struct dns_want *)arg;
	const uint8_t *u = ipv4_to_me(f, len, 17);
	if (!u || get32(f + 14 + 12) != DNS_IP || get16(u) != 53 || (uint32_t)(u + 8 + 12 - f) > len)
		return false;
	const uint8_t *q = u + 8;
	if (get16(q) != w->id || !(q[2] & 0x80))
		return false;
	w->rcode = q[3] & 15;
	return true;
}

/* A DNS query (A, IN) for `name` at the UDP payload's place; returns the payload's length. */
static unsigned dns_query(uint8_t *p, uint16_t id, const char *name)
{
	put16(p, id), put16(p + 2, 0x0100), put16(p + 4, 1), put16(p + 6, 0), put16(p + 8, 0), put16(p + 10, 0);
	unsigned n = 12;
	for (const char *s = name; *s;) {
		const char *e = s;
		while (*e && *e != '.')
			e++;
		p[n++] = (uint8_t)(e - s);
		memcpy(p + n, s, (size_t)(e - s));
		n += (unsigned)(e - s);
		s = *e ? e + 1 : e;
	}
	p[n++] = 0;
	put16(p + n, 1), put16(p + n + 2, 1);
	return n + 4;
}

/* ---- the hostile steps ----------------------------------------------------------------- */

/* Frames the gate must drop; each step names the --net-log reason the harness looks for. */
static void step_frames(struct vnet *d)
{
	struct { const char *name; uint32_t len; } s[12];
	unsigned n = 0;
	enum tx_result r;
	uint8_t *ip;

	/* runt: 10 bytes, shorter than an Ethernet header */
	memset(txb + HDR, 0xee, 10);
	s[n].name = "runt", s[n++].len = 10;
	/* over the MTU (16384; and over 65520) but within what the device copies: the gate's "oversized frame" */
	s[n].name = "over-mtu", s[n++].len = 14 + 65521;
	/* over the device's copy buffer (14 + 65535): refused before the gate, the chain still returned */
	s[n].name = "over-buffer", s[n++].len = 14 + 65535 + 100;
	for (unsigned i = 0; i < n; i++) {
		if (i)
			eth(bcast, my_mac, 0x0800);
		if ((r = tx_frame(d, s[i].len)) != TX_TAKEN)
			return tg_fail("net-hostile", "%s (%u bytes): %s", s[i].name, s[i].len,
				       r == TX_NEEDS_RESET ? "NEEDS_RESET" : "chain never returned");
		tg_ok("net-hostile", "%s (%u bytes) sent, chain returned, device fine", s[i].name, s[i].len);
	}
	n = 0;
#define FRAME(nm, expr) do { uint32_t l_ = (expr); s[n].name = nm, s[n].len = l_; \
	if ((r = tx_frame(d, l_)) != TX_TAKEN) \
		return tg_fail("net-hostile", "%s: %s", nm, r == TX_NEEDS_RESET ? "NEEDS_RESET" : "chain never returned"); \
	tg_ok("net-hostile", "%s (%u bytes) sent, chain returned", nm, l_); n++; } while (0)
	/* UDP to the gateway's discard port, bent in one way each */
	ip = eth(bcast, my_mac, 0x0800);
	memset(ip + 28, 'f', 32);
	FRAME("ipv4-fragment", udp_frame(MY_IP, GW_IP, 4000, 9, 32, 0x2000 /* MF */, false));
	ip = eth(bcast, my_mac, 0x0800);
	memset(ip + 32, 'o', 32);
	FRAME("ipv4-options", udp_frame(MY_IP, GW_IP, 4000, 9, 32, 0, true));
	ip = eth(bcast, my_mac, 0x0800);
	memset(ip + 28, 'c', 32);
	{
		uint32_t l = udp_frame(MY_IP, GW_IP, 4000, 9, 32, 0, false);
		ip[10] ^= 0x55; /* header checksum wrong */
		FRAME("ipv4-bad-checksum", l);
	}
	ip = eth(bcast, my_mac, 0x0800);
	memset(ip + 28, 's', 32);
	FRAME("spoofed-source-ip", udp_frame(0x0a000263 /* 10.0.2.99 */, GW_IP, 4000, 9, 32, 0, false));
	{
		static const uint8_t other[6] = { 0x52, 0x54, 0x00, 0x66, 0x66, 0x66 };
		ip = eth(bcast, my_mac, 0x0800);
		memset(ip + 28, 'm', 32);
		uint32_t l = udp_frame(MY_IP, GW_IP, 4000, 9, 32, 0, false);
		memcpy(txb + HDR + 6, other, 6);
		FRAME("spoofed-source-mac", l);
	}
	ip = eth(bcast, my_mac, 0x86dd);
	memset(ip, 0, 40);
	ip[0] = 0x60, ip[6] = 59 /* no next header */, ip[7] = 64;
	FRAME("ipv6", 14 + 40);
	ip = eth(bcast, my_mac, 0x8100);
	put16(ip, 5), put16(ip + 2, 0x0800);
	memset(ip + 4, 'v', 40);
	FRAME("vlan-tagged", 14 + 44);
	/* a header asking for a checksum offload the device never offered: refused before the gate */
	arp_request(GW_IP);
	txb[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	nq[1].desc[0] = (struct vring_desc){ .addr = addr(txb), .len = HDR + 42 };
	if ((r = tx_submit(d, 0)) != TX_TAKEN)
		return tg_fail("net-hostile", "csum-offload-header: %s", r == TX_NEEDS_RESET ? "NEEDS_RESET" : "no return");
	tg_ok("net-hostile", "csum-offload-header (NEEDS_CSUM not negotiated) sent, chain returned");
	/* a tx chain with a device-writable buffer in it */
	arp_request(GW_IP);
	memset(txb, 0, HDR);
	nq[1].desc[0] = (struct vring_desc){ .addr = addr(txb), .len = HDR + 42, .flags = VRING_DESC_F_NEXT, .next = 1 };
	nq[1].desc[1] = (struct vring_desc){ .addr = addr(txb + 4096), .len = 64, .flags = VRING_DESC_F_WRITE };
	if ((r = tx_submit(d, 0)) != TX_TAKEN)
		return tg_fail("net-hostile", "writable-tx-buffer: %s", r == TX_NEEDS_RESET ? "NEEDS_RESET" : "no return");
	tg_ok("net-hostile", "writable-tx-buffer sent, chain returned");
#undef FRAME

	/* A SYN to an address the default-deny policy refuses: padcell's own RST must come back. */
	unsigned others = 0;
	struct tcp_want w = { .src = 0xc0000201 /* 192.0.2.1 */, .sport = 80, .dport = 41000, .flags = 0x04 /* RST */ };
	if ((r = tx_frame(d, tcp_syn(w.src, 41000, 80))) != TX_TAKEN)
		return tg_fail("net-hostile", "refused-syn: the chain did not return");
	if (!rx_wait(d, is_tcp, &w, REPLY_TICKS, &others))
		return tg_fail("net-hostile", "refused-syn: no RST from 192.0.2.1:80 (%u other frames)", others);
	tg_ok("net-hostile", "refused-syn to 192.0.2.1:80 answered with a RST");
}

/* Builds bad chain i at tx head 0 (or bends the avail index); false when there is no case i. */
static bool chain_build(struct vnet *d, unsigned i, const char **name, const struct tg_params *p)
{
	uint16_t N = VRING_DESC_F_NEXT;
	arp_request(GW_IP);
	memset(txb, 0, HDR);
	uint64_t beyond = !p->mem ? 0xbffffff0ULL
		: p->mem > 0xc0000000ULL ? 0x100000000ULL + (p->mem - 0xc0000000ULL) : p->mem;
	nq[1].desc[0] = (struct vring_desc){ .addr = addr(txb), .len = HDR, .flags = N, .next = 1 };
	switch (i) {
	case 0:
		*name = "loop";
		nq[1].desc[1] = (struct vring_desc){ .addr = addr(txb + HDR), .len = 42, .flags = N, .next = 0 };
		return true;
	case 1:
		*name = "zero-length";
		nq[1].desc[1] = (struct vring_desc){ .addr = addr(txb + HDR), .len = 0, .flags = 0 };
		return true;
	case 2:
		*name = "address-outside-ram";
		nq[1].desc[1] = (struct vring_desc){ .addr = beyond, .len = 42, .flags = 0 };
		return true;
	case 3:
		*name = "length-beyond-ram";
		nq[1].desc[1] = (struct vring_desc){ .addr = addr(txb + HDR), .len = 0xfffff000u, .flags = 0 };
		return true;
	case 4:
		*name = "next-out-of-range";
		nq[1].desc[1] = (struct vring_desc){ .addr = addr(txb + HDR), .len = 42, .flags = N, .next = QN + 3 };
		return true;
	case 5:
		/* an indirect table of QN + 1 descriptors: a chain longer than the queue */
		*name = "chain-past-queue-size";
		for (unsigned k = 0; k <= QN; k++)
			itab[k] = (struct vring_desc){ .addr = addr(txb + k), .len = 1, .flags = k < QN ? N : 0,
						       .next = (uint16_t)(k + 1) };
		nq[1].desc[0] = (struct vring_desc){ .addr = addr(itab), .len = sizeof(itab), .flags = VRING_DESC_F_INDIRECT };
		return true;
	case 6:
		/* avail.idx claims more new buffers than the ring holds */
		*name = "avail-index-past-queue-size";
		nq[1].desc[0] = (struct vring_desc){ .addr = addr(txb), .len = HDR + 42 };
		d->avail[1] = (uint16_t)(d->avail[1] + QN + 5);
		return true;
	}
	return false;
}

static void step_chains(struct vnet *d, const struct tg_params *p)
{
	const char *name;
	unsigned i;
	for (i = 0; chain_build(d, i, &name, p); i++) {
		enum tx_result r = tx_submit(d, 0);
		if (r == TX_TAKEN)
			tg_fail("net-hostile", "%s: the device took it (used entry), expected NEEDS_RESET", name);
		else if (r == TX_TIMED_OUT)
			tg_fail("net-hostile", "%s: no answer and no NEEDS_RESET", name);
		else
			tg_ok("net-hostile", "%s -> DEVICE_NEEDS_RESET", name);
		const char *why = vnet_init(d);
		if (why)
			return tg_fail("net-hostile", "re-init after %s: %s", name, why);
	}
	tg_ok("net-hostile", "device reset and set up again after each of %u malformed chains", i);
}

/* Real answers after all that: ARP for the gateway from the stack, NXDOMAIN from padcell's resolver. */
static void step_valid(struct vnet *d)
{
	unsigned others = 0;
	enum tx_result r;
	if ((r = tx_frame(d, arp_request(GW_IP))) != TX_TAKEN)
		return tg_fail("net-valid", "ARP request: %s", r == TX_NEEDS_RESET ? "NEEDS_RESET" : "no return");
	if (!rx_wait(d, is_arp_reply_from_gw, d, REPLY_TICKS, &others))
		return tg_fail("net-valid", "no ARP reply for 10.0.2.2 (%u other frames)", others);
	tg_ok("net-valid", "ARP: 10.0.2.2 is at %x:%x:%x:%x:%x:%x", d->gw_mac[0], d->gw_mac[1], d->gw_mac[2],
	      d->gw_mac[3], d->gw_mac[4], d->gw_mac[5]);
	uint8_t *ip = eth(d->gw_mac, my_mac, 0x0800);
	unsigned plen = dns_query(ip + 28, 0x7a7a, "denied.nethostile.test");
	struct dns_want w = { .id = 0x7a7a, .rcode = 0xff };
	if ((r = tx_frame(d, udp_frame(MY_IP, DNS_IP, 40053, 53, plen, 0, false))) != TX_TAKEN)
		return tg_fail("net-valid", "DNS query: %s", r == TX_NEEDS_RESET ? "NEEDS_RESET" : "no return");
	if (!rx_wait(d, is_dns_reply, &w, REPLY_TICKS, &others))
		return tg_fail("net-valid", "no DNS reply from 10.0.2.3 (%u other frames)", others);
	if (w.rcode != 3)
		return tg_fail("net-valid", "DNS for a name no rule allows: rcode %u, want 3 (NXDOMAIN)", w.rcode);
	tg_ok("net-valid", "DNS: denied.nethostile.test -> NXDOMAIN from 10.0.2.3");
}

/* The harness reads the API's counters, then connects to the published port: the SYN must reach us. */
static void step_ingress(struct vnet *d)
{
	unsigned others = 0;
	struct tcp_want w = { .src = GW_IP, .dport = INGRESS_PORT, .flags = 0x02 /* SYN */ };
	tg_printf("net-hostile: waiting for the host's connection to port %u\n", INGRESS_PORT);
	if (!rx_wait(d, is_tcp, &w, INGRESS_TICKS, &others))
		return tg_fail("net-ingress", "no SYN to port %u from the host (%u other frames)", INGRESS_PORT, others);
	tg_ok("net-ingress", "the host's connection reached port %u (SYN from 10.0.2.2)", INGRESS_PORT);
}

void tg_check_net_hostile(const struct tg_params *p)
{
	if (p->nvirtio < 1)
		return tg_fail("net-hostile", "no virtio_mmio.device= on the command line");
	struct vnet d = { .base = p->virtio_base[p->nvirtio - 1] };
	const char *why = vnet_init(&d);
	if (why)
		return tg_fail("net-hostile", "init: %s", why);
	step_frames(&d);
	step_chains(&d, p);
	step_valid(&d);
	step_ingress(&d);
}
