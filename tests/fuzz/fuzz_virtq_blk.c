/* Fuzzes the virtqueue walker with virtio-blk (devices/virtq.c, devices/virtio_blk.c): rings and requests the input builds in guest memory, served as the device's worker serves a kick. */
#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "devices/virtio_blk.h"
#include "devices/virtq.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/mem.h"

#define MEM_SIZE  GMEM_MIN_SIZE
#define DISK_SIZE (64u * BLK_SECTOR)
#define IMAGE_MAX 0x10000u /* the input writes guest memory [0, 64 KiB) */

static struct guest_mem mem;
static struct blk_disk disk;
static struct virtq q, setup; /* setup: what the driver wrote to the transport */
static struct virtq_chain chain;
static bool event_idx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (gmem_init(&mem, MEM_SIZE))
		abort();
	/* The disk: a memory file, so requests cost no storage I/O. */
	disk.fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (disk.fd < 0 || ftruncate(disk.fd, DISK_SIZE))
		abort();
	disk.size = DISK_SIZE;
	snprintf(disk.id, sizeof(disk.id), "fuzzdisk");
	return 0;
}

/* What the device's worker does with a kick (blk_drain_queue), without the thread. */
static void drain(struct fuzz_in *in)
{
	for (int n = 0; n < 2 * VIRTQ_MAX_SIZE; n++) {
		int rc = virtq_pop(&q, &mem, &chain);
		if (rc < 0) {
			/* The driver broke the ring: the transport sets NEEDS_RESET; the driver resets and
			 * sets the queue up again, the rings as they are. */
			q = setup;
			if (virtq_enable(&q, &mem, event_idx))
				abort();
			return;
		}
		if (rc == 0)
			return;
		if (chain.nread > chain.nseg || chain.nseg > VIRTQ_MAX_SIZE)
			abort();
		uint8_t sel = fuzz_u8(in);
		if (sel == 0xff) {
			virtq_unpop(&q); /* the next pop must give it back */
			continue;
		}
		struct iovec iov[VIRTQ_MAX_SIZE];
		unsigned niov;
		uint64_t skip = fuzz_u16(in), len = fuzz_u16(in);
		uint64_t got = virtq_chain_iov(&chain, sel & 1, skip, len, iov, &niov);
		uint64_t total = 0;
		for (unsigned i = 0; i < niov; i++)
			total += iov[i].iov_len;
		if (got > len || total != got || niov > VIRTQ_MAX_SIZE)
			abort();
		uint32_t used = blk_handle_request(&disk, &chain);
		if (used > chain.write_len)
			abort();
		virtq_push(&q, chain.head, used);
		virtq_should_interrupt(&q);
	}
}

/*
 * Input: u8 queue size (log2, 0..8) with bit 7 = EVENT_IDX and bit 6 = a read-only disk;
 * u16 x3 ring offsets (desc, avail, used, in 16/2/4-byte units); u16 image length and that many
 * bytes of guest memory from address 0; then rounds of { u16 offset, u16 value } driver writes
 * to guest memory, each followed by a kick.  The bytes after each kick steer the walk (unpop,
 * which direction and part of the chain to map).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t cfg = fuzz_u8(&in);
	memset(mem.host, 0, 2 * IMAGE_MAX); /* the image, the rings, the drivers' writes */
	if (ftruncate(disk.fd, 0) || ftruncate(disk.fd, DISK_SIZE))
		abort();
	disk.ro = cfg & 0x40;
	virtq_reset(&setup);
	setup.num = (uint16_t)(1u << ((cfg & 15) % 9));
	/* Rings inside the image (the last one reaching at most 4 KiB past it); buffers anywhere. */
	setup.desc_gpa = 16ULL * (fuzz_u16(&in) % (IMAGE_MAX / 16));
	setup.avail_gpa = 2ULL * (fuzz_u16(&in) % (IMAGE_MAX / 2));
	setup.used_gpa = 4ULL * (fuzz_u16(&in) % (IMAGE_MAX / 4));
	event_idx = cfg & 0x80;
	size_t image = fuzz_u16(&in);
	if (image > IMAGE_MAX)
		image = IMAGE_MAX;
	fuzz_take(&in, mem.host, image);
	q = setup;
	if (virtq_enable(&q, &mem, event_idx))
		abort(); /* every size and offset above is valid */
	drain(&in);
	for (int round = 0; in.len && round < 64; round++) {
		uint16_t off = fuzz_u16(&in), val = fuzz_u16(&in);
		memcpy(mem.host + off, &val, 2);
		drain(&in);
	}
	return 0;
}
