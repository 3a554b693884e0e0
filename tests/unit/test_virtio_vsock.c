/* virtio-vsock: packets through real rings, the host's Unix sockets, credit both ways, malformed input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "tests/unit/fake_host.h"
#include "tests/unit/images.h"
#include "vmm/cmd/cli.h"
#include "vmm/mem.h"
#include "vmm/util.h"

#define CID      3u
#define QN       64u
#define RXBUF    (4096u + 44u)
#define HDR      ((uint32_t)sizeof(struct virtio_vsock_hdr))

static char dir[64], path[128];
static int lfd = -1;
static struct guest_mem mem;
static struct fake_host fh;
static struct virtio_vsock *dev;

/* ---- the driver's side: three queues in guest memory ---- */

struct dq {
	uint64_t desc, avail, used, bufs;
	uint16_t avail_idx, used_seen;
};
static struct dq dq[3];

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

static void rx_post(uint16_t i)
{
	desc_put(&dq[0], i, dq[0].bufs + (uint64_t)i * 0x2000, RXBUF, VRING_DESC_F_WRITE, 0);
	avail_put(&dq[0], i);
}

static void dev_up(void)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0);
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
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
	for (uint16_t i = 0; i < QN; i++)
		rx_post(i);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-vsock-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	char err[128];
	lfd = vsock_listen(path, err, sizeof(err));
	cr_assert_geq(lfd, 0, "%s", err);
	cr_assert_eq(gmem_init(&mem, 16ULL << 20), 0);
	fake_host_init(&fh);
	dev = calloc(1, sizeof(*dev));
	cr_assert_eq(virtio_vsock_init(dev, path, lfd, CID, &mem, &fh.host, 5), 0);
	dev_up();
}

static void teardown(void)
{
	virtio_vsock_destroy(dev);
	free(dev);
	gmem_destroy(&mem);
	close(lfd);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(vsock, .init = setup, .fini = teardown, .timeout = 30);

static void pump(int n)
{
	for (int i = 0; i < n; i++)
		virtio_vsock_poll(dev, 5);
}

/* The guest transmits one packet: header (+ payload) in one or two descriptors. */
static uint16_t tx_head;
static void tx_raw(const void *hdr, uint32_t hdr_len, const void *data, uint32_t len)
{
	struct dq *q = &dq[1];
	uint16_t h = (uint16_t)((tx_head++ % (QN / 2)) * 2);
	uint64_t buf = q->bufs + (uint64_t)h * 0x10000;
	gmem_write(&mem, buf, hdr, hdr_len);
	if (len) {
		gmem_write(&mem, buf + 0x1000, data, len);
		desc_put(q, h, buf, hdr_len, VRING_DESC_F_NEXT, h + 1);
		desc_put(q, h + 1, buf + 0x1000, len, 0, 0);
	} else {
		desc_put(q, h, buf, hdr_len, 0, 0);
	}
	avail_put(q, h);
	virtio_vsock_poll(dev, 0); /* the tx ring is served whether or not an fd is ready */
}

static struct virtio_vsock_hdr ghdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len)
{
	return (struct virtio_vsock_hdr){ .src_cid = CID, .dst_cid = 2, .src_port = src_port, .dst_port = dst_port,
					  .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op,
					  .buf_alloc = 256 << 10, .fwd_cnt = 0 };
}
static void tx(struct virtio_vsock_hdr h, const void *data) { tx_raw(&h, HDR, data, h.len); }

/* Next packet the device put on the rx queue, within ~1 s; the buffer goes back to the device. */
static bool rx(struct virtio_vsock_hdr *h, void *data, size_t cap)
{
	struct dq *q = &dq[0];
	for (int i = 0; i < 40 && used_idx(q) == q->used_seen; i++)
		pump(1);
	if (used_idx(q) == q->used_seen)
		return false;
	struct vring_used_elem e = used_elem(q, q->used_seen++);
	cr_assert_geq(e.len, HDR);
	uint64_t buf = q->bufs + (uint64_t)e.id * 0x2000;
	gmem_read(&mem, buf, h, HDR);
	cr_assert_eq(e.len, HDR + h->len);
	cr_assert_leq(h->len, cap);
	if (h->len)
		gmem_read(&mem, buf + HDR, data, h->len);
	rx_post((uint16_t)e.id);
	return true;
}
static struct virtio_vsock_hdr rx_expect(uint16_t op)
{
	static uint8_t scratch[RXBUF];
	struct virtio_vsock_hdr h;
	cr_assert(rx(&h, scratch, sizeof(scratch)), "no packet (wanted op %u)", op);
	cr_assert_eq(h.op, op, "op %u, wanted %u", h.op, op);
	cr_assert_eq(h.src_cid, 2);
	cr_assert_eq(h.dst_cid, CID);
	cr_assert_eq(h.type, VIRTIO_VSOCK_TYPE_STREAM);
	return h;
}
static bool rx_none(void)
{
	struct virtio_vsock_hdr h;
	static uint8_t scratch[RXBUF];
	pump(3);
	return used_idx(&dq[0]) == dq[0].used_seen || !rx(&h, scratch, sizeof(scratch));
}

static int listen_at(const char *p)
{
	int fd = unix_listen(p, 2048, 0, 0, NULL);
	cr_assert_geq(fd, 0, "listen on %s: %s", p, strerror(-fd));
	return fd;
}
static int connect_to(const char *p)
{
	int fd = unix_connect(p, 0, NULL);
	cr_assert_geq(fd, 0, "connect to %s: %s", p, strerror(-fd));
	return fd;
}
static int64_t test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Pumps the device until fd is readable, then reads it; -2 when ms of wall-clock time passed
 * first.  Wall-clock, like the device's own deadlines: counting pumps instead would let a
 * loaded machine (each 5 ms poll taking longer) run past a device deadline early.
 */
static ssize_t read_timeout(int fd, void *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	for (int64_t until = test_now_ms() + ms; test_now_ms() < until;) {
		pump(1);
		if (poll(&p, 1, 0) == 1)
			return read(fd, buf, len);
	}
	return -2;
}

/* A hang guard only, for what the device owes at once (data, EOF): generous for a loaded machine. */
#define WAIT_MS 10000

/* ---- CONNECT lines and the listening socket ---- */

static int parse(const char *s, uint32_t *port) { return vsock_parse_connect(s, strlen(s), port); }

Test(vsock_line, connect_lines)
{
	uint32_t p = 0;
	cr_assert_eq(parse("CONNECT 1234\n", &p), 0);
	cr_assert_eq(p, 1234);
	cr_assert_eq(parse("connect 52\n", &p), 0);
	cr_assert_eq(p, 52);
	cr_assert_eq(parse("CoNnEcT 4294967295\n", &p), 0);
	cr_assert_eq(p, 4294967295u);
	cr_assert_eq(parse("CONNECT 0\n", &p), 0);
	/* 32 bytes with the newline is the limit; 33 is too long */
	cr_assert_eq(parse("CONNECT 00000000000000000001234\n", &p), 0);
	cr_assert_eq(p, 1234);
	cr_assert_eq(parse("CONNECT 000000000000000000001234\n", &p), -EINVAL);
	const char *bad[] = { "CONNECT 1234", "CONNECT 1234\r\n", "CONNECT\n", "CONNECT \n", "CONNECT x12\n",
			      "CONNECT -1\n", "CONNECT 4294967296\n", "CONNECT  12\n", " CONNECT 12\n", "CONNEC 12\n",
			      "CONNECTX12\n", "LISTEN 12\n", "CONNECT 12 \n", "CONNECT 0x10\n", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse(bad[i], &p), -EINVAL, "'%s' accepted", bad[i]);
}

Test(vsock_line, listen_refuses_live_and_non_sockets_and_replaces_stale)
{
	char d[64], p[128], err[128];
	snprintf(d, sizeof(d), "/tmp/padcell-vsl-XXXXXX");
	cr_assert_not_null(mkdtemp(d));
	snprintf(p, sizeof(p), "%s/s", d);
	int fd = vsock_listen(p, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	cr_assert_eq(vsock_listen(p, err, sizeof(err)), -EADDRINUSE); /* live */
	cr_assert(strstr(err, "listens"), "%s", err);
	close(fd); /* the file stays behind, as after a crash: stale */
	fd = vsock_listen(p, err, sizeof(err));
	cr_assert_geq(fd, 0, "stale socket not replaced: %s", err);
	close(fd);
	unlink(p);
	FILE *f = fopen(p, "w");
	fclose(f);
	cr_assert_eq(vsock_listen(p, err, sizeof(err)), -EEXIST);
	struct stat st;
	cr_assert_eq(stat(p, &st), 0, "a regular file was removed");
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	longp[sizeof(longp) - 1] = 0;
	cr_assert_lt(vsock_listen(longp, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/no/such/dir", d);
	cr_assert_lt(vsock_listen(p, err, sizeof(err)), 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	cr_assert_eq(system(cmd), 0);
}

Test(vsock_line, cli_option)
{
	struct boot_opts o;
	char err[256];
	char *ok[] = { "boot", "--kernel", "k", "--vsock", "/tmp/v.sock", NULL };
	cr_assert_eq(cli_parse_boot(5, ok, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(o.vsock_path, "/tmp/v.sock");
	cr_assert_eq(o.vsock_cid, 3);
	char *cid[] = { "boot", "--kernel", "k", "--vsock", "/tmp/v.sock,cid=77", NULL };
	cr_assert_eq(cli_parse_boot(5, cid, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(o.vsock_cid, 77);
	cli_opts_free(&o);
	const char *bad[] = { "/tmp/v,cid=0", "/tmp/v,cid=1", "/tmp/v,cid=2", "/tmp/v,cid=4294967295",
			      "/tmp/v,cid=4294967296", "/tmp/v,cid=", "/tmp/v,cid=-3", "/tmp/v,cid=3x", "/tmp/v,foo",
			      ",cid=3", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { "boot", "--kernel", "k", "--vsock", (char *)bad[i], NULL };
		cr_assert_eq(cli_parse_boot(5, argv, &o, err, sizeof(err)), -EINVAL, "'%s' accepted", bad[i]);
	}
	char *twice[] = { "boot", "--kernel", "k", "--vsock", "/a", "--vsock", "/b", NULL };
	cr_assert_eq(cli_parse_boot(7, twice, &o, err, sizeof(err)), -EINVAL);
}

/* ---- the device ---- */

Test(vsock, config_space_and_queues)
{
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 19);
	uint32_t lo = rd(VIRTIO_MMIO_CONFIG), hi = rd(VIRTIO_MMIO_CONFIG + 4);
	cr_assert_eq(lo, CID);
	cr_assert_eq(hi, 0);
	for (unsigned q = 0; q < 3; q++) {
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		cr_assert_gt(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	}
	wr(VIRTIO_MMIO_QUEUE_SEL, 3);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
}

Test(vsock, guest_connect_without_listener_gets_rst)
{
	tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 40000, 5000, 0), NULL);
	struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(h.src_port, 5000);
	cr_assert_eq(h.dst_port, 40000);
	cr_assert_eq(dev->nconns, 0);
}

/* Guest connects to host port 5000; returns the host end padcell connected to. */
static int guest_connect(int *srv, uint32_t gport, uint32_t buf_alloc)
{
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", path);
	if (*srv < 0)
		*srv = listen_at(p);
	struct virtio_vsock_hdr h = ghdr(VIRTIO_VSOCK_OP_REQUEST, gport, 5000, 0);
	h.buf_alloc = buf_alloc;
	tx(h, NULL);
	h = rx_expect(VIRTIO_VSOCK_OP_RESPONSE);
	cr_assert_eq(h.src_port, 5000);
	cr_assert_eq(h.dst_port, gport);
	cr_assert_eq(h.buf_alloc, VSOCK_BUF_ALLOC);
	int fd = accept(*srv, NULL, NULL);
	cr_assert_geq(fd, 0);
	return fd;
}

Test(vsock, guest_connect_data_both_ways_and_close)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40001, 256 << 10);
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40001, 5000, 5), "hello");
	char buf[64];
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 5);
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	cr_assert_eq(write(fd, "greetings", 9), 9);
	struct virtio_vsock_hdr h;
	uint8_t data[RXBUF];
	cr_assert(rx(&h, data, sizeof(data)));
	cr_assert_eq(h.op, VIRTIO_VSOCK_OP_RW);
	cr_assert_eq(h.len, 9);
	cr_assert_eq(memcmp(data, "greetings", 9), 0);
	cr_assert_eq(h.fwd_cnt, 5, "padcell tells the guest what it forwarded");
	/* the host half-closes: the guest hears SHUTDOWN(SEND) */
	shutdown(fd, SHUT_WR);
	h = rx_expect(VIRTIO_VSOCK_OP_SHUTDOWN);
	cr_assert_eq(h.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	/* the guest can still send */
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40001, 5000, 3), "abc");
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 3);
	/* the guest closes: SHUTDOWN both ways, padcell answers RST and the host sees EOF */
	struct virtio_vsock_hdr s = ghdr(VIRTIO_VSOCK_OP_SHUTDOWN, 40001, 5000, 0);
	s.flags = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	tx(s, NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 0);
	cr_assert_eq(dev->nconns, 0);
	close(fd);
	close(srv);
}

Test(vsock, guest_half_close_reaches_the_host_as_eof)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40002, 256 << 10);
	struct virtio_vsock_hdr s = ghdr(VIRTIO_VSOCK_OP_SHUTDOWN, 40002, 5000, 0);
	s.flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
	tx(s, NULL);
	char buf[8];
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 0);
	/* the host can still answer */
	cr_assert_eq(write(fd, "x", 1), 1);
	struct virtio_vsock_hdr h;
	uint8_t data[RXBUF];
	cr_assert(rx(&h, data, sizeof(data)));
	cr_assert_eq(h.op, VIRTIO_VSOCK_OP_RW);
	/* data after its own SHUTDOWN(SEND) is a violation */
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40002, 5000, 1), "y");
	rx_expect(VIRTIO_VSOCK_OP_RST);
	close(fd);
	close(srv);
}

Test(vsock, host_vanishing_resets_the_guest)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40003, 256 << 10);
	close(fd);
	rx_expect(VIRTIO_VSOCK_OP_SHUTDOWN); /* EOF first */
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40003, 5000, 4), "data"); /* into a closed socket: EPIPE */
	rx_expect(VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(dev->nconns, 0);
	close(srv);
}

/* A host client: CONNECT line (plus early data), the guest sees a REQUEST. */
static int host_connect(const char *line, struct virtio_vsock_hdr *req)
{
	int c = connect_to(path);
	cr_assert_eq(write(c, line, strlen(line)), (ssize_t)strlen(line));
	*req = rx_expect(VIRTIO_VSOCK_OP_REQUEST);
	cr_assert_geq(req->src_port, VSOCK_FIRST_EPHEMERAL);
	cr_assert_eq(req->buf_alloc, VSOCK_BUF_ALLOC);
	return c;
}

Test(vsock, host_connect_ok_then_data)
{
	struct virtio_vsock_hdr req;
	int c = host_connect("connect 1234\nearly", &req);
	cr_assert_eq(req.dst_port, 1234);
	tx(ghdr(VIRTIO_VSOCK_OP_RESPONSE, 1234, req.src_port, 0), NULL);
	char buf[64] = { 0 }, want[32];
	snprintf(want, sizeof(want), "OK %u\n", req.src_port);
	cr_assert_eq(read_timeout(c, buf, strlen(want), WAIT_MS), (ssize_t)strlen(want));
	cr_assert_str_eq(buf, want);
	struct virtio_vsock_hdr h;
	uint8_t data[RXBUF];
	cr_assert(rx(&h, data, sizeof(data)));
	cr_assert_eq(h.op, VIRTIO_VSOCK_OP_RW);
	cr_assert_eq(h.len, 5, "the bytes after the CONNECT line are data");
	cr_assert_eq(memcmp(data, "early", 5), 0);
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 1234, req.src_port, 4), "pong");
	cr_assert_eq(read_timeout(c, buf, sizeof(buf), WAIT_MS), 4);
	cr_assert_eq(memcmp(buf, "pong", 4), 0);
	/* a second client gets another host port */
	struct virtio_vsock_hdr req2;
	int c2 = host_connect("CONNECT 1234\n", &req2);
	cr_assert_neq(req2.src_port, req.src_port);
	close(c2);
	close(c);
}

Test(vsock, host_connect_refused_or_silent_closes_the_client)
{
	struct virtio_vsock_hdr req;
	int c = host_connect("CONNECT 77\n", &req);
	tx(ghdr(VIRTIO_VSOCK_OP_RST, 77, req.src_port, 0), NULL);
	char buf[8];
	cr_assert_eq(read_timeout(c, buf, sizeof(buf), WAIT_MS), 0, "refused: socket closed without OK");
	close(c);
	/* silence: closed after 2 s, and the guest is told to forget the half-open connection */
	c = host_connect("CONNECT 78\n", &req);
	struct pollfd p = { .fd = c, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 1500), 0, "closed before 2 s");
	cr_assert_eq(read_timeout(c, buf, sizeof(buf), VSOCK_LINE_MS + WAIT_MS), 0);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	close(c);
	cr_assert_eq(dev->nconns, 0);
}

Test(vsock, bad_connect_lines_close_the_client)
{
	const char *bad[] = { "CONNECT abc\n", "HELLO 12\n", "CONNECT 99999999999\n",
			      "CONNECT 0000000000000000000000000001234\n", "0123456789012345678901234567890123456789" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int c = connect_to(path);
		cr_assert_eq(write(c, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
		char buf[8];
		ssize_t r = read_timeout(c, buf, sizeof(buf), WAIT_MS);
		cr_assert(r == 0 || r == -1, "'%s' not refused (%zd)", bad[i], r); /* EOF, or ECONNRESET */
		close(c);
	}
	/* a line in pieces is fine */
	int c = connect_to(path);
	cr_assert_eq(write(c, "CONN", 4), 4);
	pump(3);
	cr_assert_eq(write(c, "ECT 9\n", 6), 6);
	struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_REQUEST);
	cr_assert_eq(h.dst_port, 9);
	close(c);
	/* no newline, peer gone: closed, nothing sent to the guest */
	c = connect_to(path);
	cr_assert_eq(write(c, "CONNECT 5", 9), 9);
	close(c);
	cr_assert(rx_none());
	pump(5);
	cr_assert_eq(dev->nconns, 1); /* only the REQ_SENT one */
	cr_assert(rx_none());
}

/* A client that connects and never finishes its line gives its slot back after VSOCK_LINE_MS. */
Test(vsock, unfinished_connect_line_times_out)
{
	int c = connect_to(path);
	cr_assert_eq(write(c, "CONNECT 7", 9), 9);
	char buf[8];
	cr_assert_eq(read_timeout(c, buf, sizeof(buf), VSOCK_LINE_MS / 2), -2, "closed too early");
	cr_assert_eq(dev->nconns, 1);
	ssize_t r = read_timeout(c, buf, sizeof(buf), VSOCK_LINE_MS + WAIT_MS);
	cr_assert(r == 0 || r == -1, "still open after %d ms (%zd)", VSOCK_LINE_MS, r);
	cr_assert_eq(dev->nconns, 0);
	cr_assert(rx_none(), "the guest heard of a connection that never was");
	close(c);
}

Test(vsock, padcell_never_exceeds_the_guest_credit)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40010, 100);
	static uint8_t big[1000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	cr_assert_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	struct virtio_vsock_hdr h;
	uint8_t data[RXBUF];
	uint32_t got = 0;
	while (rx(&h, data, sizeof(data))) {
		cr_assert_eq(h.op, VIRTIO_VSOCK_OP_RW);
		cr_assert_eq(memcmp(data, big + got, h.len), 0);
		got += h.len;
	}
	cr_assert_eq(got, 100, "sent %u with 100 bytes of credit", got);
	/* the guest consumed 60: 60 more */
	struct virtio_vsock_hdr cu = ghdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 40010, 5000, 0);
	cu.buf_alloc = 100;
	cu.fwd_cnt = 60;
	tx(cu, NULL);
	while (rx(&h, data, sizeof(data))) {
		cr_assert_eq(memcmp(data, big + got, h.len), 0);
		got += h.len;
	}
	cr_assert_eq(got, 160);
	/* a bigger buffer: the rest */
	cu.buf_alloc = 4096;
	cu.fwd_cnt = 160;
	tx(cu, NULL);
	while (rx(&h, data, sizeof(data))) {
		cr_assert_eq(memcmp(data, big + got, h.len), 0);
		got += h.len;
	}
	cr_assert_eq(got, 1000);
	/* CREDIT_REQUEST gets padcell's own credit */
	tx(ghdr(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 40010, 5000, 0), NULL);
	h = rx_expect(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	cr_assert_eq(h.buf_alloc, VSOCK_BUF_ALLOC);
	close(fd);
	close(srv);
}

Test(vsock, guest_exceeding_credit_is_reset_and_padcell_stays_bounded)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40011, 256 << 10);
	/* the host never reads: the socket fills, then padcell's 64 KiB, then the guest is over its credit */
	static uint8_t chunk[4096];
	bool reset = false;
	uint64_t sent = 0;
	for (int i = 0; i < 4096 && !reset; i++) {
		tx(ghdr(VIRTIO_VSOCK_OP_RW, 40011, 5000, sizeof(chunk)), chunk);
		sent += sizeof(chunk);
		for (unsigned k = 0; k < VSOCK_MAX_CONNS; k++)
			cr_assert_leq(dev->conns[k].buf_len, VSOCK_BUF_ALLOC);
		while (used_idx(&dq[0]) != dq[0].used_seen) {
			struct virtio_vsock_hdr h;
			static uint8_t d[RXBUF];
			cr_assert(rx(&h, d, sizeof(d)));
			if (h.op == VIRTIO_VSOCK_OP_RST)
				reset = true;
			else
				cr_assert_eq(h.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
		}
	}
	cr_assert(reset, "no RST after %llu bytes", (unsigned long long)sent);
	cr_assert_eq(dev->nconns, 0);
	/* a single packet larger than any credit */
	close(fd);
	fd = guest_connect(&srv, 40012, 256 << 10);
	static uint8_t huge[VSOCK_BUF_ALLOC + 1];
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40012, 5000, sizeof(huge)), huge);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	close(fd);
	close(srv);
}

Test(vsock, credit_update_when_the_host_drains)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40013, 256 << 10);
	static uint8_t chunk[4096];
	for (unsigned i = 0; i < VSOCK_BUF_ALLOC / 2 / sizeof(chunk) + 2; i++)
		tx(ghdr(VIRTIO_VSOCK_OP_RW, 40013, 5000, sizeof(chunk)), chunk);
	/* half the window forwarded straight into the socket: a CREDIT_UPDATE told the guest */
	struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	cr_assert_geq(h.fwd_cnt, VSOCK_BUF_ALLOC / 2);
	close(fd);
	close(srv);
}

Test(vsock, malformed_packets)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40020, 256 << 10);
	uint64_t d0 = dev->dropped;
	/* header too short: dropped silently */
	struct virtio_vsock_hdr h = ghdr(VIRTIO_VSOCK_OP_RW, 40020, 5000, 0);
	tx_raw(&h, 20, NULL, 0);
	cr_assert_eq(dev->dropped, d0 + 1);
	cr_assert(rx_none());
	/* len says more (or less) than the chain holds: dropped */
	h.len = 100;
	tx_raw(&h, HDR, "abc", 3);
	h.len = 1;
	tx_raw(&h, HDR, "abc", 3);
	cr_assert_eq(dev->dropped, d0 + 3);
	cr_assert(rx_none());
	/* wrong source or destination CID: dropped, no answer, the connection lives on */
	h = ghdr(VIRTIO_VSOCK_OP_RW, 40020, 5000, 1);
	h.src_cid = 4;
	tx(h, "a");
	h = ghdr(VIRTIO_VSOCK_OP_RW, 40020, 5000, 1);
	h.dst_cid = 1;
	tx(h, "a");
	h.dst_cid = 0xffffffffffffffffULL;
	tx(h, "a");
	cr_assert_eq(dev->dropped, d0 + 6);
	cr_assert(rx_none());
	cr_assert_eq(dev->nconns, 1);
	/* data for a connection nobody has: RST */
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 41000, 5000, 2), "zz");
	h = rx_expect(VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(h.dst_port, 41000);
	tx(ghdr(VIRTIO_VSOCK_OP_SHUTDOWN, 41001, 5000, 0), NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	tx(ghdr(VIRTIO_VSOCK_OP_RESPONSE, 41002, 5000, 0), NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	tx(ghdr(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 41003, 5000, 0), NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	/* an RST for nobody is not answered */
	tx(ghdr(VIRTIO_VSOCK_OP_RST, 41004, 5000, 0), NULL);
	cr_assert(rx_none());
	/* unknown op, seqpacket, op 0, payload on a control op: RST */
	uint16_t ops[] = { 0, 8, 99, 0xffff };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		tx(ghdr(ops[i], 42000 + (uint32_t)i, 5000, 0), NULL);
		rx_expect(VIRTIO_VSOCK_OP_RST);
	}
	h = ghdr(VIRTIO_VSOCK_OP_REQUEST, 42100, 5000, 0);
	h.type = VIRTIO_VSOCK_TYPE_SEQPACKET;
	tx(h, NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	h = ghdr(VIRTIO_VSOCK_OP_REQUEST, 42101, 5000, 3);
	tx(h, "abc");
	rx_expect(VIRTIO_VSOCK_OP_RST);
	/* the good connection survived all that */
	cr_assert_eq(dev->nconns, 1);
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40020, 5000, 2), "ok");
	char buf[8];
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 2);
	/* a bad type on a live connection resets it */
	h = ghdr(VIRTIO_VSOCK_OP_RW, 40020, 5000, 0);
	h.type = 7;
	tx(h, NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(dev->nconns, 0);
	/* the device is still fine */
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	close(fd);
	close(srv);
}

Test(vsock, unusable_rx_buffers_and_bad_rings)
{
	/* an rx buffer too small for a header comes back empty; the next good one is used */
	struct dq *q = &dq[0];
	/* dev_up posted QN good buffers, none used yet: make buffer 0 tiny */
	desc_put(q, 0, q->bufs, 8, VRING_DESC_F_WRITE, 0);
	tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 40030, 6000, 0), NULL); /* no listener: RST */
	pump(3);
	cr_assert_geq(used_idx(q), 2);
	cr_assert_eq(used_elem(q, 0).len, 0);
	cr_assert_eq(used_elem(q, 1).len, HDR);
	/* a broken tx chain (descriptor outside RAM) sets NEEDS_RESET, padcell goes on */
	desc_put(&dq[1], 0, 1ULL << 40, 44, 0, 0);
	avail_put(&dq[1], 0);
	pump(2);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(vsock, connection_limit_is_1023)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max < 2300)
		cr_skip_test("RLIMIT_NOFILE hard limit %llu is below what the test needs", (unsigned long long)rl.rlim_max);
	rl.rlim_cur = rl.rlim_max > 4096 ? 4096 : rl.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", path);
	int srv = listen_at(p);
	for (uint32_t i = 0; i < VSOCK_MAX_CONNS; i++) {
		tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 50000 + i, 5000, 0), NULL);
		struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_RESPONSE);
		cr_assert_eq(h.dst_port, 50000 + i);
	}
	cr_assert_eq(dev->nconns, VSOCK_MAX_CONNS);
	tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 60000, 5000, 0), NULL);
	rx_expect(VIRTIO_VSOCK_OP_RST);
	/* a host client beyond the limit is closed at once */
	int c = connect_to(path);
	char buf[8];
	cr_assert_eq(read_timeout(c, buf, sizeof(buf), WAIT_MS), 0);
	close(c);
	/* one closes, one more fits */
	tx(ghdr(VIRTIO_VSOCK_OP_RST, 50000, 5000, 0), NULL);
	cr_assert_eq(dev->nconns, VSOCK_MAX_CONNS - 1);
	tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 60001, 5000, 0), NULL);
	rx_expect(VIRTIO_VSOCK_OP_RESPONSE);
	close(srv);
}

Test(vsock, transport_reset_event_closes_everything)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40040, 256 << 10);
	struct virtio_vsock_hdr req;
	int c = host_connect("CONNECT 3\n", &req);
	struct dq *e = &dq[2];
	desc_put(e, 0, e->bufs, 4, VRING_DESC_F_WRITE, 0);
	uint32_t junk = 0xdeadbeef;
	gmem_write(&mem, e->bufs, &junk, 4);
	avail_put(e, 0);
	unsigned irqs = fh.notify_calls;
	virtio_vsock_transport_reset(dev);
	cr_assert_eq(used_idx(e), 1);
	cr_assert_eq(used_elem(e, 0).len, 4);
	uint32_t id;
	gmem_read(&mem, e->bufs, &id, 4);
	cr_assert_eq(id, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	cr_assert_gt(fh.notify_calls, irqs);
	cr_assert_eq(dev->nconns, 0);
	char buf[8];
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 0);
	cr_assert_eq(read_timeout(c, buf, sizeof(buf), WAIT_MS), 0);
	/* no event buffer yet: the event waits for one */
	virtio_vsock_transport_reset(dev);
	cr_assert_eq(used_idx(e), 1);
	desc_put(e, 1, e->bufs + 64, 4, VRING_DESC_F_WRITE, 0);
	avail_put(e, 1);
	pump(1);
	cr_assert_eq(used_idx(e), 2);
	close(fd);
	close(c);
	close(srv);
}

/*
 * Pumps until the device has read a host CONNECT line and holds its REQUEST back, then a few
 * times more; then nothing may be on the rx ring.  The device stops holding back once
 * VSOCK_RESET_WAIT_MS passed, so the check holds only while dev->reset_wait still says the wait
 * is on: a machine so loaded that the pumps took that long is told, not failed.
 */
static void assert_request_held_back(void)
{
	bool held = false;
	for (int i = 0; i < 1000 && !held; i++) {
		pump(1);
		for (unsigned k = 0; k < VSOCK_MAX_CONNS && !held; k++)
			held = dev->conns[k].state > VSOCK_LINE && dev->conns[k].pending == VSOCK_P_REQUEST;
	}
	cr_assert(held, "the device never read the CONNECT line");
	pump(20);
	if (dev->reset_wait)
		cr_assert_eq(used_idx(&dq[0]), dq[0].used_seen, "REQUEST sent before the guest handled the reset");
	else
		cr_log_warn("the %d ms reset wait ran out while pumping (a loaded machine): hold-back not checked",
			    VSOCK_RESET_WAIT_MS);
}

/* After a reset event, a host CONNECT's REQUEST waits until the guest re-posts an event buffer
 * (it has handled the reset) or VSOCK_RESET_WAIT_MS passed: else the guest would reset it unseen. */
Test(vsock, connect_after_reset_waits_for_the_guest)
{
	struct dq *e = &dq[2];
	/* Linux keeps several event buffers posted: one more waiting is no sign of anything */
	desc_put(e, 0, e->bufs, 4, VRING_DESC_F_WRITE, 0);
	avail_put(e, 0);
	desc_put(e, 1, e->bufs + 64, 4, VRING_DESC_F_WRITE, 0);
	avail_put(e, 1);
	virtio_vsock_transport_reset(dev);
	cr_assert_eq(used_idx(e), 1);
	cr_assert(dev->reset_wait);
	int c = connect_to(path);
	cr_assert_eq(write(c, "CONNECT 9\n", 10), 10);
	assert_request_held_back();
	/* the driver handled the event and posted its buffer again */
	desc_put(e, 0, e->bufs, 4, VRING_DESC_F_WRITE, 0);
	avail_put(e, 0);
	pump(2);
	struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_REQUEST);
	cr_assert_eq(h.dst_port, 9);
	cr_assert_not(dev->reset_wait);
	close(c);
	/* a guest that never re-posts: the wait ends after VSOCK_RESET_WAIT_MS */
	virtio_vsock_transport_reset(dev);
	cr_assert_eq(used_idx(e), 2);
	cr_assert(dev->reset_wait);
	c = connect_to(path);
	cr_assert_eq(write(c, "CONNECT 10\n", 11), 11);
	assert_request_held_back();
	usleep(VSOCK_RESET_WAIT_MS * 1000);
	pump(2);
	h = rx_expect(VIRTIO_VSOCK_OP_REQUEST);
	cr_assert_eq(h.dst_port, 10);
	close(c);
}

Test(vsock, device_reset_closes_connections)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40050, 256 << 10);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(dev->nconns, 0);
	char buf[8];
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 0);
	close(fd);
	close(srv);
}

Test(vsock, worker_thread_serves_a_kick)
{
	int srv = -1;
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", path);
	srv = listen_at(p);
	cr_assert_eq(virtio_vsock_start(dev), 0);
	struct virtio_vsock_hdr h = ghdr(VIRTIO_VSOCK_OP_REQUEST, 40060, 5000, 0);
	/* as in tx(), but the thread does the work after a QueueNotify */
	uint64_t buf = dq[1].bufs;
	pthread_mutex_lock(&dev->t.lock);
	gmem_write(&mem, buf, &h, HDR);
	desc_put(&dq[1], 0, buf, HDR, 0, 0);
	avail_put(&dq[1], 0);
	pthread_mutex_unlock(&dev->t.lock);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	int fd = -1;
	struct pollfd pf = { .fd = srv, .events = POLLIN };
	if (poll(&pf, 1, WAIT_MS) == 1) /* a hang guard */
		fd = accept(srv, NULL, NULL);
	cr_assert_geq(fd, 0);
	for (int i = 0; i < WAIT_MS && (used_idx(&dq[0]) == 0 || !__atomic_load_n(&fh.notify_calls, __ATOMIC_SEQ_CST)); i++)
		usleep(1000);
	cr_assert_eq(used_idx(&dq[0]), 1);
	cr_assert_gt(fh.notify_calls, 0);
	close(fd);
	close(srv);
}

/* ---- padcell itself: --vsock at start and exit ---- */

static int run_padcell(char *const argv[], char *errbuf, size_t errlen)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		for (int i = 0; i < 50; i++) { /* a concurrent make may be relinking padcell */
			execv(argv[0], argv);
			usleep(100000);
		}
		_exit(127);
	}
	close(p[1]);
	ssize_t n = 0, r;
	while ((r = read(p[0], errbuf + n, errlen - 1 - (size_t)n)) > 0)
		n += r;
	errbuf[n] = '\0';
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(vsock_cli, padcell_claims_and_releases_the_socket_path, .init = setup, .fini = teardown, .timeout = 30)
{
	char bin[PATH_MAX], self[PATH_MAX];
	const char *env = getenv("PADCELL");
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(bin, sizeof(bin), "%s/../padcell", dirname(self));
	if (env)
		snprintf(bin, sizeof(bin), "%s", env);
	cr_assert_eq(access(bin, X_OK), 0, "%s must be built (make unit builds it)", bin);
	/* A loadable kernel (a 2-byte ELF: ud2), so the only thing wrong is the vsock path. */
	char kernel[160], file[160], stale[160], nodir[160], e[512];
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	static const uint8_t ud2[] = { 0x0f, 0x0b };
	struct elf_spec spec = { .code = ud2, .code_len = sizeof(ud2), .entry = 0x100000 };
	size_t klen;
	uint8_t *kimg = img_elf(&spec, &klen);
	int kfd = open(kernel, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(write(kfd, kimg, klen), (ssize_t)klen);
	close(kfd);
	free(kimg);
	snprintf(file, sizeof(file), "%s/file", dir);
	FILE *f = fopen(file, "w");
	fclose(f);
	snprintf(nodir, sizeof(nodir), "%s/no/such", dir);
	char cid2[200];
	snprintf(cid2, sizeof(cid2), "%s/x,cid=2", dir);

	struct { const char *arg, *want; } cases[] = {
		{ path, "another process listens" }, /* the test's own live listener */
		{ file, "not a socket" },
		{ nodir, "No such file" },
		{ cid2, "reserved" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[] = { bin, "boot", "--kernel", kernel, "--mem", "16M", "--vsock", (char *)cases[i].arg, NULL };
		int rc = run_padcell(argv, e, sizeof(e));
		cr_assert_eq(rc, 2, "--vsock %s: exit %d (%s)", cases[i].arg, rc, e);
		cr_assert(!strncmp(e, "padcell: ", 9) && strchr(e, '\n') == e + strlen(e) - 1, "one line: %s", e);
		cr_assert(strstr(e, cases[i].want), "--vsock %s: %s", cases[i].arg, e);
	}
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "the live socket was removed");
	cr_assert_eq(stat(file, &st), 0, "a regular file was removed");

	/* A stale socket (nobody listens) is taken over, and padcell removes it at exit. */
	if (access("/dev/kvm", R_OK | W_OK))
		cr_skip_test("no usable /dev/kvm: the stale-socket run needs a VM");
	snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, stale, strlen(stale) + 1);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	close(s);
	char *argv[] = { bin, "boot", "--kernel", kernel, "--mem", "16M", "--vsock", stale, NULL };
	int rc = run_padcell(argv, e, sizeof(e));
	cr_assert_eq(rc, 4, "the ud2 guest crashes its vCPU: exit %d (%s)", rc, e);
	cr_assert_neq(lstat(stale, &st), 0, "padcell left %s behind", stale);
}

Test(vsock, random_packets_never_break_padcell)
{
	/* A listener on PATH_5000 so some random REQUESTs open real connections. */
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", path);
	int srv = listen_at(p);
	srand(4242);
	static uint8_t payload[8192];
	for (int i = 0; i < 3000; i++) {
		struct virtio_vsock_hdr h = ghdr((uint16_t)(rand() % 10), 40000 + (uint32_t)(rand() % 4),
						 rand() % 3 ? 5000 : (uint32_t)rand(), 0);
		if (!(rand() % 8))
			h.type = (uint16_t)(rand() % 4);
		if (!(rand() % 16))
			h.src_cid = (uint64_t)rand();
		if (!(rand() % 16))
			h.dst_cid = (uint64_t)rand() % 4;
		h.flags = (uint32_t)rand() % 5;
		h.buf_alloc = (uint32_t)rand() % 70000;
		h.fwd_cnt = (uint32_t)rand() % 70000;
		uint32_t len = rand() % 4 ? (uint32_t)(rand() % 200) : (uint32_t)(rand() % sizeof(payload));
		h.len = rand() % 8 ? len : (uint32_t)rand();
		if (rand() % 32)
			tx_raw(&h, HDR, payload, len);
		else
			tx_raw(&h, (uint32_t)(rand() % HDR) + 1, NULL, 0);
		cr_assert_leq(dev->nconns, VSOCK_MAX_CONNS);
		cr_assert_leq(dev->rst_pending, 64);
		/* drain the rx ring like a guest would */
		while (used_idx(&dq[0]) != dq[0].used_seen) {
			struct virtio_vsock_hdr r;
			static uint8_t d[RXBUF];
			cr_assert(rx(&r, d, sizeof(d)));
			cr_assert_eq(r.dst_cid, CID);
		}
		/* accept and drop what padcell connected, so the backlog never fills */
		struct pollfd pf = { .fd = srv, .events = POLLIN };
		while (poll(&pf, 1, 0) == 1) {
			int fd = accept(srv, NULL, NULL);
			if (fd < 0)
				break;
			if (rand() % 2)
				close(fd);
			else
				shutdown(fd, SHUT_WR);
		}
	}
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	close(srv);
}

Test(vsock, guest_shutdown_rcv_stops_data_toward_the_guest)
{
	int srv = -1;
	int fd = guest_connect(&srv, 40070, 256 << 10);
	struct virtio_vsock_hdr s = ghdr(VIRTIO_VSOCK_OP_SHUTDOWN, 40070, 5000, 0);
	s.flags = VIRTIO_VSOCK_SHUTDOWN_RCV;
	tx(s, NULL);
	cr_assert_eq(write(fd, "ignored", 7), 7);
	cr_assert(rx_none(), "data sent to a guest that shut down receiving");
	/* it can still send */
	tx(ghdr(VIRTIO_VSOCK_OP_RW, 40070, 5000, 2), "hi");
	char buf[8];
	cr_assert_eq(read_timeout(fd, buf, sizeof(buf), WAIT_MS), 2);
	close(fd);
	close(srv);
}

/*
 * The guest cannot take the monitor's descriptors: with RLIMIT_NOFILE at 1024 it may hold
 * 1024 - VSOCK_FD_RESERVE connections, and one more is refused with a reset (its PATH_P is
 * never even connected).
 */
Test(vsock, connections_capped_below_the_fd_limit)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max < 1024)
		cr_skip_test("RLIMIT_NOFILE hard limit %llu is below 1024", (unsigned long long)rl.rlim_max);
	rl.rlim_cur = 1024;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	unsigned cap = vsock_conn_cap();
	cr_assert_eq(cap, 1024 - VSOCK_FD_RESERVE);
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", path);
	int srv = listen_at(p);
	for (uint32_t i = 0; i < cap; i++) {
		tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 50000 + i, 5000, 0), NULL);
		struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_RESPONSE);
		cr_assert_eq(h.dst_port, 50000 + i);
	}
	cr_assert_eq(dev->nconns, cap);
	tx(ghdr(VIRTIO_VSOCK_OP_REQUEST, 60000, 5000, 0), NULL);
	struct virtio_vsock_hdr h = rx_expect(VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(h.dst_port, 60000);
	cr_assert_eq(dev->nconns, cap);
	/* The monitor still has its reserve: descriptors are there for its own work. */
	int spare[64];
	for (unsigned i = 0; i < 64; i++)
		cr_assert_geq(spare[i] = dup(0), 0, "the guest's connections left the monitor no descriptors");
	for (unsigned i = 0; i < 64; i++)
		close(spare[i]);
	close(srv);
}
