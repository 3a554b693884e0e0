/* Fuzzes virtio-net (devices/virtio_net.c) with a fake backend: rings the input builds in guest memory, tx frames through the gate on kicks, rx frames injected from the host side. */
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "tests/fuzz/fuzz.h"
#include "tests/unit/fake_host.h"
#include "vmm/mem.h"
#include "vmm/net/gate.h"

#define MEM_SIZE   GMEM_MIN_SIZE
#define IMAGE_MAX  0x10000u  /* the input writes guest memory [0, 64 KiB): the rings live here */
#define TXBUFS     0x20000u  /* op-built tx frames, 4 KiB a slot */
#define RXBUFS     0x120000u /* op-built rx buffers, 4 KiB a slot */
#define SLOT       0x1000u
#define FRAME_MAX  (SLOT - NET_HDR_LEN)

static struct guest_mem mem;
static struct fake_host fh;
static struct virtio_net *dev;
static int log_fd;

/* ---- the fake backend: every frame it is given must be one the gate passes ---- */

static struct {
	struct virtio_net *n;
	uint64_t sent;
	uint8_t inject[2048];
	size_t inject_len;
} fb;

static int fb_open(void *ctx, struct virtio_net *n)
{
	fb.n = n;
	return 0;
}
static void fb_send(void *ctx, const uint8_t *frame, size_t len)
{
	struct gate_result r;
	if (len > NET_FRAME_MAX || gate_inspect(&fb.n->gate, &fb.n->policy, frame, len, &r) != GATE_PASS)
		abort(); /* the backend saw a frame the gate does not pass */
	fb.sent++;
}
static unsigned fb_fill(void *ctx, struct pollfd *fds, unsigned max, int *timeout_ms) { return 0; }
static void fb_done(void *ctx, struct pollfd *fds, unsigned n, int rc)
{
	if (fb.inject_len) {
		size_t l = fb.inject_len;
		fb.inject_len = 0;
		virtio_net_deliver(fb.n, fb.inject, l); /* the stack answering, from inside its hook */
	}
}
static void fb_close(void *ctx) {}
static const struct net_backend_ops fb_ops = { .name = "fake", .open = fb_open, .send = fb_send, .poll_fill = fb_fill, .poll_done = fb_done, .close = fb_close };
static const struct net_backend fake_be = { &fb_ops, NULL };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (gmem_init(&mem, MEM_SIZE))
		abort();
	fake_host_init(&fh);
	dev = calloc(1, sizeof(*dev));
	log_fd = open("/dev/null", O_WRONLY | O_CLOEXEC); /* the decision log is written, and thrown away */
	if (!dev || log_fd < 0)
		abort();
	return 0;
}

static uint32_t rd(uint64_t off)
{
	uint32_t v;
	virtio_mmio_ops.read(&dev->t, off, &v, 4);
	return v;
}
static void wr(uint64_t off, uint32_t v) { virtio_mmio_ops.write(&dev->t, off, &v, 4); }

/* What the driver wrote to the transport for each queue. */
static struct {
	uint16_t num;
	uint64_t desc, avail, used;
} dq[2];
static bool event_idx, mrg_rxbuf;

static void dev_up(void)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_MTU) |
						(event_idx ? 1u << VIRTIO_RING_F_EVENT_IDX : 0) |
						(mrg_rxbuf ? 1u << VIRTIO_NET_F_MRG_RXBUF : 0));
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < 2; q++) {
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		wr(VIRTIO_MMIO_QUEUE_NUM, dq[q].num);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)dq[q].desc);
		wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)dq[q].avail);
		wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)dq[q].used);
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
				       VIRTIO_CONFIG_S_DRIVER_OK);
}

/* One descriptor at slot d of queue q, and d offered on its avail ring (as the driver would). */
static void offer(unsigned q, uint16_t d, uint64_t addr, uint32_t len, uint16_t flags)
{
	d %= dq[q].num;
	struct vring_desc desc = { .addr = addr, .len = len, .flags = flags, .next = 0 };
	uint16_t idx;
	gmem_write(&mem, dq[q].desc + 16ULL * d, &desc, sizeof(desc));
	gmem_read(&mem, dq[q].avail + 2, &idx, 2);
	gmem_write(&mem, dq[q].avail + 4 + 2ULL * (idx % dq[q].num), &d, 2);
	idx++;
	gmem_write(&mem, dq[q].avail + 2, &idx, 2);
}

static void kick(unsigned q)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, q);
	virtio_net_poll(dev, 0);
}

/* The device's counters add up: every tx chain is bad, passed, dropped, rejected or a DNS query. */
static void check_stats(uint64_t sent0)
{
	const struct net_stats *s = &dev->stats;
	if (s->tx_frames != s->tx_bad + s->tx_passed + s->tx_dropped + s->tx_rejected + s->dns_queries)
		abort();
	if (fb.sent - sent0 != s->tx_passed)
		abort();
}

/*
 * Input: u8 config (bits 0-3 rx queue size log2, bits 4-6 tx queue size log2 + 2, bit 7
 * EVENT_IDX); u16 x6 ring offsets (rx desc, avail, used; tx desc, avail, used, in 16/2/4-byte
 * units within the image); u16 image length and that many bytes of guest memory from 0; then
 * ops, each a byte and its arguments:
 *   0 the device polls; 1 a driver write (u16 offset, u16 value) and a kick of both queues;
 *   2 a tx frame (u8 slot, u8 header flags, u16 length, bytes) after a zero header, kicked;
 *   3 an rx buffer (u8 slot, u16 length) offered, kicked; 4 a frame from the host (u16 length,
 *   bytes) delivered; 5 a frame the backend delivers on its next poll (u16 length, bytes);
 *   6 the driver resets the device and sets it up again.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_fds_begin();
	static const char *const rules[] = { "93.184.216.34:443", "pypi.org:443", "1.1.1.1:53/udp", "8.8.0.0/16" };
	/* An upstream nobody answers on this machine: an allowed name never leaves it, and fails fast. */
	struct net_params p = { .rules = rules, .nrules = 4, .log_fd = log_fd, .backend = &fake_be,
				.dns_servers = "127.0.0.1:9" };
	char err[256];
	memset(mem.host, 0, MEM_SIZE);
	memset(&fb, 0, sizeof(fb));
	if (virtio_net_init(dev, &p, &mem, &fh.host, 5, err, sizeof(err)))
		abort();

	struct fuzz_in in = { data, size };
	uint8_t cfg = fuzz_u8(&in);
	dq[0].num = (uint16_t)(1u << ((cfg & 15) % 9));
	dq[1].num = (uint16_t)(1u << (((cfg >> 4) & 7) + 2 > 8 ? 8 : ((cfg >> 4) & 7) + 2));
	event_idx = cfg & 0x80;
	mrg_rxbuf = (cfg & 15) >= 9; /* the low nibble's values past the nine ring sizes: frames over several buffers */
	for (unsigned q = 0; q < 2; q++) {
		dq[q].desc = 16ULL * (fuzz_u16(&in) % (IMAGE_MAX / 16));
		dq[q].avail = 2ULL * (fuzz_u16(&in) % (IMAGE_MAX / 2));
		dq[q].used = 4ULL * (fuzz_u16(&in) % (IMAGE_MAX / 4));
	}
	size_t image = fuzz_u16(&in);
	if (image > IMAGE_MAX)
		image = IMAGE_MAX;
	fuzz_take(&in, mem.host, image);
	dev_up();
	kick(NET_Q_TX);

	uint8_t frame[SLOT];
	for (int ops = 0; in.len && ops < 128; ops++) {
		uint8_t op = fuzz_u8(&in);
		switch (op % 7) {
		case 0:
			virtio_net_poll(dev, 0);
			break;
		case 1: {
			uint16_t off = fuzz_u16(&in), val = fuzz_u16(&in);
			memcpy(mem.host + off, &val, 2);
			kick(NET_Q_RX);
			kick(NET_Q_TX);
			break;
		}
		case 2: {
			uint8_t slot = fuzz_u8(&in), flags = fuzz_u8(&in);
			size_t len = fuzz_u16(&in) % (FRAME_MAX + 1);
			struct virtio_net_hdr_v1 h = { .flags = flags & 0x80 ? flags & 3 : 0 };
			uint64_t buf = TXBUFS + (uint64_t)(slot % 256) * SLOT;
			fuzz_take(&in, frame, len);
			gmem_write(&mem, buf, &h, sizeof(h));
			gmem_write(&mem, buf + NET_HDR_LEN, frame, len ? len : 1);
			offer(NET_Q_TX, slot, buf, (uint32_t)(NET_HDR_LEN + len), flags & 0x40 ? VRING_DESC_F_WRITE : 0);
			kick(NET_Q_TX);
			break;
		}
		case 3: {
			uint8_t slot = fuzz_u8(&in);
			uint32_t len = fuzz_u16(&in) % (SLOT + 1);
			offer(NET_Q_RX, slot, RXBUFS + (uint64_t)slot * SLOT, len, VRING_DESC_F_WRITE);
			kick(NET_Q_RX);
			break;
		}
		case 4: {
			size_t len = fuzz_u16(&in) % (FRAME_MAX + 1);
			fuzz_take(&in, frame, len);
			virtio_net_deliver(dev, frame, len);
			break;
		}
		case 5:
			fb.inject_len = fuzz_take(&in, fb.inject, fuzz_u16(&in) % sizeof(fb.inject));
			break;
		case 6:
			dev_up();
			break;
		}
		if (rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
			dev_up(); /* the driver broke a ring: it resets and sets the queues up again */
		check_stats(0);
	}
	if (dev->bl.bytes > NET_RX_BACKLOG_BYTES || (dev->bl.n == 0) != (dev->bl.bytes == 0))
		abort();
	virtio_net_destroy(dev);
	fuzz_fds_end();
	return 0;
}
