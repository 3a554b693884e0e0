/* Fuzzes virtio-vsock with its host sockets (devices/virtio_vsock.c): guest packets and host-side socket events from the input, on temporary Unix sockets. */
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "tests/fuzz/fuzz.h"
#include "tests/unit/fake_host.h"
#include "vmm/mem.h"
#include "vmm/util.h"

#define CID   3u
#define QN    16u
#define RXBUF (4096u + 44u)
#define HDR   ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define NPORTS 2   /* host listeners the guest can connect to: PATH_5000, PATH_5001 */
#define NFDS  8    /* host sockets the input can hold on each side */

static struct guest_mem mem;
static struct fake_host fh;
static struct virtio_vsock *dev;
static char dir[64], path[128];
static int port_fd[NPORTS] = { -1, -1 };

struct dq {
	uint64_t desc, avail, used, bufs;
	uint16_t avail_idx, used_seen;
};
static struct dq dq[3];

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

static void rx_post(uint16_t i)
{
	desc_put(&dq[0], i, dq[0].bufs + (uint64_t)i * 0x2000, RXBUF, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[0], i);
}

static void cleanup(void)
{
	for (int i = 0; i < NPORTS; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s_%u", path, 5000 + i);
		close(port_fd[i]);
		unlink(p);
	}
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-fuzz-vsock-XXXXXX");
	if (!mkdtemp(dir) || gmem_init(&mem, 16ULL << 20))
		abort();
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	for (int i = 0; i < NPORTS; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s_%u", path, 5000 + i);
		port_fd[i] = unix_listen(p, 64, 0600, SOCK_NONBLOCK, NULL);
		if (port_fd[i] < 0)
			abort();
	}
	fake_host_init(&fh);
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		abort();
	atexit(cleanup);
	return 0;
}

/* The driver brings the device up: features, three queues of QN, every rx buffer posted. */
static void dev_up(void)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < 3; q++) {
		dq[q] = (struct dq){ .desc = 0x10000 + 0x10000ULL * q, .avail = 0x14000 + 0x10000ULL * q,
				     .used = 0x18000 + 0x10000ULL * q, .bufs = 0x100000 + 0x400000ULL * q };
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		wr(VIRTIO_MMIO_QUEUE_NUM, QN);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)dq[q].desc);
		wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)dq[q].avail);
		wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)dq[q].used);
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
				       VIRTIO_CONFIG_S_DRIVER_OK);
	for (uint16_t i = 0; i < QN; i++)
		rx_post(i);
	/* one event buffer, so a transport reset can be delivered */
	desc_put(&dq[2], 0, dq[2].bufs, 8, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[2], 0);
}

/* The guest takes what the device put on the rx ring and gives the buffers back. */
static void rx_drain(void)
{
	struct dq *q = &dq[0];
	uint16_t used;
	gmem_read(&mem, q->used + 2, &used, 2);
	while (q->used_seen != used) {
		struct vring_used_elem e;
		gmem_read(&mem, q->used + 4 + 8ULL * (q->used_seen % QN), &e, sizeof(e));
		q->used_seen++;
		if (e.id >= QN || e.len > RXBUF)
			abort(); /* the device named a buffer it was never given, or overran one */
		rx_post((uint16_t)e.id);
	}
}

static uint16_t tx_head;

/* One guest packet: the header (maybe cut short) and a payload, in one or two descriptors. */
static void tx(struct fuzz_in *in)
{
	struct virtio_vsock_hdr h;
	fuzz_take(in, &h, HDR);
	uint8_t b = fuzz_u8(in);
	uint32_t hdr_len = b & 0x80 ? (uint32_t)(b % HDR) + 1 : HDR;
	uint32_t len = fuzz_u16(in) % 8192;
	struct dq *q = &dq[1];
	uint16_t d = (uint16_t)((tx_head++ % (QN / 2)) * 2);
	uint64_t buf = q->bufs + (uint64_t)d * 0x10000;
	gmem_write(&mem, buf, &h, hdr_len);
	if (len) {
		uint8_t data[8192];
		size_t got = fuzz_take(in, data, len);
		gmem_write(&mem, buf + 0x1000, data, got ? got : 1);
		desc_put(q, d, buf, hdr_len, VRING_DESC_F_NEXT, d + 1);
		desc_put(q, d + 1, buf + 0x1000, len, 0, 0);
	} else {
		desc_put(q, d, buf, hdr_len, 0, 0);
	}
	avail_put(q, d);
	virtio_vsock_poll(dev, 0);
}

/*
 * Input: ops, each a byte and its arguments:
 *   0 a guest packet (header, u8 header cut, u16 length, payload); 1 a host client connects and
 *   sends a line (u8 length, bytes); 2 a host socket writes (u8 which, u8 length, bytes);
 *   3 a host socket shuts down or closes (u8 which, u8 how); 4 a listener on PATH_500x accepts;
 *   5 the device polls; 6 the guest drains rx; 7 a transport reset; 8 the driver resets the device.
 * Host sockets 0..7 are clients (op 1), 8..15 the accepted ends of guest connections (op 4).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_fds_begin();
	char err[256];
	int lfd = vsock_listen(path, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "vsock_listen: %s\n", err);
		abort();
	}
	memset(mem.host + 0x10000, 0, 0x30000); /* the rings; buffers are always written before use */
	if (virtio_vsock_init(dev, path, lfd, CID, &mem, &fh.host, 5))
		abort();
	dev_up();
	tx_head = 0;
	int fds[2 * NFDS];
	for (int i = 0; i < 2 * NFDS; i++)
		fds[i] = -1;
	int nclients = 0, naccepted = 0;
	struct fuzz_in in = { data, size };
	for (int ops = 0; in.len && ops < 256; ops++) {
		uint8_t op = fuzz_u8(&in);
		switch (op % 9) {
		case 0:
			tx(&in);
			break;
		case 1: {
			char line[64];
			size_t n = fuzz_take(&in, line, fuzz_u8(&in) % sizeof(line));
			if (nclients >= NFDS)
				break;
			int fd = unix_connect(path, SOCK_NONBLOCK, NULL);
			if (fd < 0)
				break;
			fds[nclients++] = fd;
			if (n)
				send(fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			virtio_vsock_poll(dev, 0);
			break;
		}
		case 2: {
			uint8_t which = fuzz_u8(&in) % (2 * NFDS);
			char buf[256];
			size_t n = fuzz_take(&in, buf, fuzz_u8(&in));
			if (fds[which] >= 0 && n)
				send(fds[which], buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			virtio_vsock_poll(dev, 0);
			break;
		}
		case 3: {
			uint8_t which = fuzz_u8(&in) % (2 * NFDS), how = fuzz_u8(&in);
			if (fds[which] < 0)
				break;
			if (how % 3 == 2) {
				close(fds[which]);
				fds[which] = -1;
			} else {
				shutdown(fds[which], how % 3 ? SHUT_RD : SHUT_WR);
			}
			virtio_vsock_poll(dev, 0);
			break;
		}
		case 4: {
			int fd = accept4(port_fd[fuzz_u8(&in) % NPORTS], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0)
				break;
			if (naccepted >= NFDS)
				close(fd);
			else
				fds[NFDS + naccepted++] = fd;
			break;
		}
		case 5:
			virtio_vsock_poll(dev, 0);
			break;
		case 6:
			rx_drain();
			virtio_vsock_poll(dev, 0);
			break;
		case 7:
			virtio_vsock_transport_reset(dev);
			break;
		case 8:
			wr(VIRTIO_MMIO_STATUS, 0);
			dev_up();
			break;
		}
		if (dev->nconns > VSOCK_MAX_CONNS || dev->rst_pending > 64)
			abort();
	}
	virtio_vsock_destroy(dev);
	for (int i = 0; i < 2 * NFDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	/* Connections the device made to the listeners and nobody accepted end with the device. */
	for (int i = 0; i < NPORTS; i++) {
		int fd;
		while ((fd = accept4(port_fd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
			close(fd);
	}
	close(lfd);
	fuzz_fds_end();
	return 0;
}
