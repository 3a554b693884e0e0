/* virtio-blk requests on a temporary image file, the device end to end on a fake host, and its CLI. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_blk.h"
#include "tests/unit/fake_host.h"
#include "tests/unit/images.h"
#include "tests/unit/vring.h"
#include "vmm/cmd/cli.h"
#include "vmm/vm.h"

#define IMG_SECTORS 64
#define IMG_SIZE (IMG_SECTORS * 512)

static char dir[64], img[128];
static struct blk_disk disk;
static uint8_t orig[IMG_SIZE];

static uint8_t pattern(size_t i) { return (uint8_t)(i * 131 + 7); }

static void write_image(const char *path, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	for (size_t i = 0; i < size; i++)
		orig[i % IMG_SIZE] = pattern(i);
	cr_assert_eq(write(fd, orig, size), (ssize_t)size);
	close(fd);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-blk-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	write_image(img, IMG_SIZE);
	disk.fd = -1;
}

static void teardown(void)
{
	blk_disk_close(&disk);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(blk, .init = setup, .fini = teardown);

static void open_disk(bool ro)
{
	char err[128];
	cr_assert_eq(blk_disk_open(&disk, img, ro, NULL, err, sizeof(err)), 0, "%s", err);
}

/* ---- requests built straight into a chain (host buffers, no ring) ---- */

static struct virtq_chain c;
static struct virtio_blk_outhdr hdr;
static uint8_t status;

static void chain_start(uint32_t type, uint64_t sector)
{
	memset(&c, 0, sizeof(c));
	hdr = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	status = 0xee;
}
static void seg(void *p, uint32_t len, bool writable)
{
	c.seg[c.nseg++] = (struct virtq_seg){ p, len, writable };
	if (writable) {
		c.write_len += len;
	} else {
		c.nread++;
		c.read_len += len;
	}
}
static uint32_t submit(void)
{
	seg(&status, 1, true);
	return blk_handle_request(&disk, &c);
}
static void req(uint32_t type, uint64_t sector)
{
	chain_start(type, sector);
	seg(&hdr, sizeof(hdr), false);
}

static void file_bytes(uint8_t *buf)
{
	int fd = open(img, O_RDONLY);
	cr_assert_eq(pread(fd, buf, IMG_SIZE, 0), IMG_SIZE);
	close(fd);
}

Test(blk, read_across_segments)
{
	open_disk(true);
	static uint8_t a[512], b[1024];
	req(VIRTIO_BLK_T_IN, 3);
	seg(a, sizeof(a), true);
	seg(b, sizeof(b), true);
	cr_assert_eq(submit(), 1536 + 1, "used length counts data and status");
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(a, orig + 3 * 512, 512), 0);
	cr_assert_eq(memcmp(b, orig + 4 * 512, 1024), 0);
}

Test(blk, read_with_status_sharing_the_data_buffer)
{
	open_disk(true);
	static uint8_t buf[513];
	req(VIRTIO_BLK_T_IN, 0);
	seg(buf, sizeof(buf), true); /* data and status in one descriptor: any layout is legal */
	cr_assert_eq(blk_handle_request(&disk, &c), 513);
	cr_assert_eq(buf[512], VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(buf, orig, 512), 0);
}

Test(blk, header_split_across_segments)
{
	open_disk(true);
	static uint8_t data[512];
	chain_start(VIRTIO_BLK_T_IN, 5);
	seg(&hdr, 7, false);
	seg((uint8_t *)&hdr + 7, 9, false);
	seg(data, sizeof(data), true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(data, orig + 5 * 512, 512), 0);
}

Test(blk, write_then_read_back)
{
	open_disk(false);
	static uint8_t w[1024], r[1024];
	for (size_t i = 0; i < sizeof(w); i++)
		w[i] = (uint8_t)(i ^ 0x5a);
	req(VIRTIO_BLK_T_OUT, 10);
	seg(w, 512, false);
	seg(w + 512, 512, false);
	cr_assert_eq(submit(), 1);
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	uint8_t now[IMG_SIZE];
	file_bytes(now);
	cr_assert_eq(memcmp(now + 10 * 512, w, 1024), 0, "on the file");
	cr_assert_eq(memcmp(now, orig, 10 * 512), 0, "nothing else touched");
	req(VIRTIO_BLK_T_IN, 10);
	seg(r, sizeof(r), true);
	submit();
	cr_assert_eq(memcmp(r, w, sizeof(w)), 0);
}

/* A host file system that is full (ENOSPC, here /dev/full under the disk): the request gets
 * IOERR at once, and the disk serves the next requests as before. */
Test(blk, host_write_error_is_ioerr_and_the_disk_goes_on)
{
	open_disk(false);
	int full = open("/dev/full", O_RDWR | O_CLOEXEC);
	cr_assert_geq(full, 0);
	int real = disk.fd;
	disk.fd = full;
	static uint8_t w[4096], r[512];
	memset(w, 0x77, sizeof(w));
	for (int i = 0; i < 3; i++) {
		req(VIRTIO_BLK_T_OUT, 8);
		seg(w, sizeof(w), false);
		cr_assert_eq(submit(), 1, "only the status byte is written back");
		cr_assert_eq(status, VIRTIO_BLK_S_IOERR, "ENOSPC becomes IOERR (request %d)", i);
	}
	struct virtio_blk_discard_write_zeroes range = { .sector = 0, .num_sectors = 8 };
	req(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	seg(&range, sizeof(range), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR, "write-zeroes on a full disk: IOERR");
	disk.fd = real;
	close(full);
	req(VIRTIO_BLK_T_IN, 0);
	seg(r, sizeof(r), true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK, "the disk still reads");
	cr_assert_eq(memcmp(r, orig, sizeof(r)), 0);
}

Test(blk, read_only_drive_refuses_writes_and_file_is_unchanged)
{
	open_disk(true);
	static uint8_t w[512];
	memset(w, 0xab, sizeof(w));
	req(VIRTIO_BLK_T_OUT, 0);
	seg(w, sizeof(w), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	struct virtio_blk_discard_write_zeroes range = { .sector = 0, .num_sectors = 8 };
	req(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	seg(&range, sizeof(range), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_UNSUPP, "not offered on a read-only drive");
	req(VIRTIO_BLK_T_DISCARD, 0);
	seg(&range, sizeof(range), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_UNSUPP);
	uint8_t now[IMG_SIZE];
	file_bytes(now);
	cr_assert_eq(memcmp(now, orig, IMG_SIZE), 0, "byte for byte unchanged");
	int fl = fcntl(disk.fd, F_GETFL);
	cr_assert_eq(fl & O_ACCMODE, O_RDONLY, "opened read-only on the host");
}

Test(blk, flush)
{
	open_disk(false);
	req(VIRTIO_BLK_T_FLUSH, 0);
	cr_assert_eq(submit(), 1);
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
}

Test(blk, get_id_default_and_given)
{
	char longname[160];
	snprintf(longname, sizeof(longname), "%s/a-very-long-image-name-indeed.img", dir);
	cr_assert_eq(rename(img, longname), 0);
	char err[128];
	cr_assert_eq(blk_disk_open(&disk, longname, true, NULL, err, sizeof(err)), 0, "%s", err);
	char id[VIRTIO_BLK_ID_BYTES + 4];
	memset(id, 'Z', sizeof(id));
	req(VIRTIO_BLK_T_GET_ID, 0);
	seg(id, VIRTIO_BLK_ID_BYTES, true);
	cr_assert_eq(submit(), VIRTIO_BLK_ID_BYTES + 1);
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(id, "a-very-long-image-na", 20), 0, "basename cut to 20 bytes");
	blk_disk_close(&disk);

	cr_assert_eq(blk_disk_open(&disk, longname, true, "root-disk", err, sizeof(err)), 0, "%s", err);
	memset(id, 'Z', sizeof(id));
	req(VIRTIO_BLK_T_GET_ID, 0);
	seg(id, VIRTIO_BLK_ID_BYTES, true);
	submit();
	cr_assert_eq(memcmp(id, "root-disk\0\0\0\0\0\0\0\0\0\0\0", 20), 0, "NUL-padded");
}

Test(blk, discard_punches_and_write_zeroes_zero)
{
	open_disk(false);
	struct virtio_blk_discard_write_zeroes r[2] = {
		{ .sector = 2, .num_sectors = 2, .flags = 0 },
		{ .sector = 8, .num_sectors = 1, .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP },
	};
	req(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	seg(r, sizeof(r), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	uint8_t now[IMG_SIZE], zero[1024] = { 0 };
	file_bytes(now);
	cr_assert_eq(memcmp(now + 2 * 512, zero, 1024), 0);
	cr_assert_eq(memcmp(now + 8 * 512, zero, 512), 0);
	cr_assert_eq(memcmp(now + 4 * 512, orig + 4 * 512, 4 * 512), 0, "between the ranges untouched");
	cr_assert_eq(memcmp(now + 9 * 512, orig + 9 * 512, IMG_SIZE - 9 * 512), 0);

	struct virtio_blk_discard_write_zeroes d = { .sector = 16, .num_sectors = 8 };
	req(VIRTIO_BLK_T_DISCARD, 0);
	seg(&d, sizeof(d), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	file_bytes(now);
	cr_assert_eq(memcmp(now + 24 * 512, orig + 24 * 512, IMG_SIZE - 24 * 512), 0, "discard stays in range");

	d.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP; /* not meaningful for DISCARD */
	req(VIRTIO_BLK_T_DISCARD, 0);
	seg(&d, sizeof(d), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_UNSUPP);
}

Test(blk, discard_limits)
{
	open_disk(false);
	struct virtio_blk_discard_write_zeroes r[BLK_DISCARD_SEG_MAX + 1] = { 0 };
	req(VIRTIO_BLK_T_DISCARD, 0);
	seg(r, sizeof(r), false); /* one range more than max_discard_seg */
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	r[0] = (struct virtio_blk_discard_write_zeroes){ .sector = IMG_SECTORS - 1, .num_sectors = 2 };
	req(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	seg(r, sizeof(r[0]), false);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR, "past the end");
	req(VIRTIO_BLK_T_DISCARD, 0);
	seg(r, 8, false); /* not a whole range */
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	uint8_t now[IMG_SIZE];
	file_bytes(now);
	cr_assert_eq(memcmp(now, orig, IMG_SIZE), 0, "a refused request changes nothing");
}

Test(blk, out_of_range_sectors)
{
	open_disk(false);
	static uint8_t buf[1024];
	uint64_t sectors[] = { IMG_SECTORS, IMG_SECTORS - 1, UINT64_MAX / 512, UINT64_MAX };
	for (unsigned i = 0; i < sizeof(sectors) / sizeof(sectors[0]); i++) {
		req(VIRTIO_BLK_T_IN, sectors[i]);
		seg(buf, sizeof(buf), true);
		submit();
		cr_assert_eq(status, VIRTIO_BLK_S_IOERR, "read at sector %llu", (unsigned long long)sectors[i]);
		req(VIRTIO_BLK_T_OUT, sectors[i]);
		seg(buf, sizeof(buf), false);
		submit();
		cr_assert_eq(status, VIRTIO_BLK_S_IOERR, "write at sector %llu", (unsigned long long)sectors[i]);
	}
	req(VIRTIO_BLK_T_IN, IMG_SECTORS - 2); /* the last two sectors exactly */
	seg(buf, sizeof(buf), true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
}

Test(blk, unknown_types_unsupported)
{
	open_disk(false);
	uint32_t types[] = { VIRTIO_BLK_T_SCSI_CMD, 3, 5, VIRTIO_BLK_T_SECURE_ERASE, 0x80000000u, 0xffffffffu };
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		req(types[i], 0);
		cr_assert_eq(submit(), 1);
		cr_assert_eq(status, VIRTIO_BLK_S_UNSUPP, "type 0x%x", types[i]);
	}
}

Test(blk, read_into_device_readable_buffer_fails)
{
	open_disk(false);
	static uint8_t buf[512];
	memset(buf, 0x77, sizeof(buf));
	req(VIRTIO_BLK_T_IN, 0);
	seg(buf, sizeof(buf), false); /* the driver asks us to write into a read-only buffer */
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	cr_assert_eq(buf[0], 0x77, "and we did not");
}

Test(blk, write_with_device_writable_data_fails)
{
	open_disk(false);
	static uint8_t buf[512];
	req(VIRTIO_BLK_T_OUT, 0);
	seg(buf, sizeof(buf), true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
}

Test(blk, segment_limits)
{
	open_disk(false);
	static uint8_t buf[(BLK_SEG_MAX + 1) * 512];
	req(VIRTIO_BLK_T_IN, 0);
	for (unsigned i = 0; i < BLK_SEG_MAX + 1; i++)
		seg(buf + 512 * i, 512, true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR, "seg_max + 1 data segments");
	/* seg_max segments are fine; 126 sectors would run past the 64-sector image, so the
	 * segments are half sectors: 63 sectors in 126 segments. */
	req(VIRTIO_BLK_T_IN, 0);
	for (unsigned i = 0; i < BLK_SEG_MAX; i++)
		seg(buf + 256 * i, 256, true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(buf, orig, BLK_SEG_MAX * 256), 0);
}

Test(blk, segment_larger_than_size_max_fails)
{
	char err[128];
	char big[160];
	snprintf(big, sizeof(big), "%s/big.img", dir);
	int fd = open(big, O_RDWR | O_CREAT, 0644);
	cr_assert_eq(ftruncate(fd, 4 << 20), 0);
	close(fd);
	cr_assert_eq(blk_disk_open(&disk, big, true, NULL, err, sizeof(err)), 0, "%s", err);
	uint8_t *buf = malloc(BLK_SIZE_MAX + 512);
	req(VIRTIO_BLK_T_IN, 0);
	seg(buf, BLK_SIZE_MAX + 512, true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	req(VIRTIO_BLK_T_IN, 0);
	seg(buf, BLK_SIZE_MAX, true);
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_OK);
	free(buf);
}

Test(blk, malformed_requests)
{
	open_disk(false);
	static uint8_t buf[600];
	req(VIRTIO_BLK_T_IN, 0);
	seg(buf, 100, true); /* not a whole sector */
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	chain_start(VIRTIO_BLK_T_IN, 0);
	seg(&hdr, 8, false); /* header cut short */
	submit();
	cr_assert_eq(status, VIRTIO_BLK_S_IOERR);
	req(VIRTIO_BLK_T_FLUSH, 0); /* no status byte at all: nothing to say, nothing written */
	cr_assert_eq(blk_handle_request(&disk, &c), 0);
}

/* ---- backing files ---- */

Test(blk, open_errors)
{
	char err[128], path[160];
	snprintf(path, sizeof(path), "%s/missing.img", dir);
	cr_assert_eq(blk_disk_open(&disk, path, true, NULL, err, sizeof(err)), -ENOENT);
	cr_assert_eq(blk_disk_open(&disk, dir, true, NULL, err, sizeof(err)), -EISDIR);
	cr_assert_eq(blk_disk_open(&disk, dir, false, NULL, err, sizeof(err)), -EISDIR);
	snprintf(path, sizeof(path), "%s/odd.img", dir);
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
	cr_assert_eq(blk_disk_open(&disk, path, true, NULL, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "512"), "%s", err);
	cr_assert_eq(blk_disk_open(&disk, "/dev/null", true, NULL, err, sizeof(err)), -EINVAL, "not a file");
	cr_assert_eq(blk_disk_open(&disk, img, true, "123456789012345678901", err, sizeof(err)), -EINVAL);
	cr_assert_eq(disk.fd, -1);
}

Test(blk, writable_image_is_locked_against_a_second_vm)
{
	char err[128];
	struct blk_disk other;
	open_disk(false);
	cr_assert_eq(blk_disk_open(&other, img, false, NULL, err, sizeof(err)), -EBUSY);
	cr_assert_eq(blk_disk_open(&other, img, true, NULL, err, sizeof(err)), -EBUSY);
	blk_disk_close(&disk);
	open_disk(true);
	cr_assert_eq(blk_disk_open(&other, img, true, NULL, err, sizeof(err)), 0, "read-only images are shared");
	blk_disk_close(&other);
}

static unsigned dir_entries(const char *d)
{
	unsigned n = 0;
	DIR *dh = opendir(d);
	struct dirent *e;
	while ((e = readdir(dh)))
		n += e->d_name[0] != '.';
	closedir(dh);
	return n;
}

Test(blk, scratch_is_sparse_unlinked_and_sized)
{
	char err[128], sdir[128];
	snprintf(sdir, sizeof(sdir), "%s/scratch", dir);
	cr_assert_eq(mkdir(sdir, 0700), 0);
	setenv("TMPDIR", sdir, 1);
	int rc = blk_disk_scratch(&disk, 1ULL << 30, err, sizeof(err));
	unsetenv("TMPDIR");
	cr_assert_eq(rc, 0, "%s", err);
	struct stat st;
	cr_assert_eq(fstat(disk.fd, &st), 0);
	cr_assert_eq(st.st_nlink, 0, "no name on disk");
	cr_assert_eq(st.st_size, 1LL << 30);
	cr_assert_lt(st.st_blocks, 64, "sparse");
	cr_assert_eq(dir_entries(sdir), 0);
	cr_assert_not(disk.ro);
	cr_assert_str_eq(disk.id, "scratch");
	blk_disk_close(&disk);
	cr_assert_eq(blk_disk_scratch(&disk, 1000, err, sizeof(err)), -EINVAL);
	cr_assert_eq(blk_disk_scratch(&disk, 0, err, sizeof(err)), -EINVAL);
}

/* ---- the device: transport, worker thread and fake host ---- */

static struct guest_mem mem;
static struct fake_host fh;
static struct virtio_blk dev;
static struct tv tv;

static uint32_t rd(uint64_t off)
{
	uint32_t v;
	virtio_mmio_ops.read(&dev.t, off, &v, 4);
	return v;
}
static void wr(uint64_t off, uint32_t v) { virtio_mmio_ops.write(&dev.t, off, &v, 4); }

static void dev_up(void)
{
	tv = (struct tv){ .m = &mem, .num = 16 };
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, lo & ~(1u << VIRTIO_RING_F_EVENT_IDX));
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 16);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)TV_DESC);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)TV_AVAIL);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)TV_USED);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
				       VIRTIO_CONFIG_S_DRIVER_OK);
}

/* Polls like a guest driver: until used idx reaches want or NEEDS_RESET shows (a 30 s hang guard). */
static bool dev_wait(uint16_t want)
{
	for (int i = 0; i < 30000; i++) {
		if (tv_used_idx(&tv) == want)
			return true;
		if (rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
			return false;
		usleep(1000);
	}
	cr_assert_fail("device did not answer");
	return false;
}

static void dev_setup(void)
{
	setup();
	cr_assert_eq(gmem_init(&mem, TV_MEM), 0);
	fake_host_init(&fh);
	open_disk(false);
	cr_assert_eq(virtio_blk_init(&dev, &disk, &mem, &fh.host, 5), 0);
	cr_assert_eq(virtio_blk_start(&dev), 0);
	dev_up();
}
static void dev_teardown(void)
{
	virtio_blk_destroy(&dev);
	gmem_destroy(&mem);
	teardown();
}
TestSuite(blk_dev, .init = dev_setup, .fini = dev_teardown);

/* A read of `sectors` at `sector` as three descriptors at head. */
static void ring_read(uint16_t head, uint64_t sector, uint32_t sectors)
{
	struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_IN, .sector = sector };
	uint64_t base = TV_BUF + 0x10000ULL * head;
	gmem_write(&mem, base, &h, sizeof(h));
	uint8_t st = 0xee;
	gmem_write(&mem, base + 0x1000, &st, 1);
	tv_desc(&tv, head, base, 16, VRING_DESC_F_NEXT, head + 1);
	tv_desc(&tv, head + 1, base + 0x2000, 512 * sectors, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, head + 2);
	tv_desc(&tv, head + 2, base + 0x1000, 1, VRING_DESC_F_WRITE, 0);
	tv_avail(&tv, head);
}

Test(blk_dev, config_space)
{
	struct virtio_blk_config cfg;
	for (size_t i = 0; i < sizeof(cfg); i += 4)
		virtio_mmio_ops.read(&dev.t, VIRTIO_MMIO_CONFIG + i, (uint8_t *)&cfg + i, 4);
	cr_assert_eq(cfg.capacity, IMG_SECTORS);
	cr_assert_eq(cfg.seg_max, BLK_SEG_MAX);
	cr_assert_eq(cfg.size_max, BLK_SIZE_MAX);
	cr_assert_eq(cfg.max_discard_seg, BLK_DISCARD_SEG_MAX);
	cr_assert_eq(cfg.max_write_zeroes_sectors, BLK_DISCARD_SECTORS);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 2, "VIRTIO_ID_BLOCK");
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t f = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	cr_assert(f & (1u << VIRTIO_BLK_F_FLUSH) && f & (1u << VIRTIO_BLK_F_SEG_MAX) && f & (1u << VIRTIO_BLK_F_SIZE_MAX));
	cr_assert(f & (1u << VIRTIO_BLK_F_DISCARD) && f & (1u << VIRTIO_BLK_F_WRITE_ZEROES));
	cr_assert_not(f & (1u << VIRTIO_BLK_F_RO));
}

Test(blk_dev, requests_complete_on_the_worker_with_an_interrupt)
{
	ring_read(0, 1, 2);
	ring_read(3, 7, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(2));
	uint8_t data[1024], st;
	gmem_read(&mem, TV_BUF + 0x2000, data, 1024);
	cr_assert_eq(memcmp(data, orig + 512, 1024), 0);
	gmem_read(&mem, TV_BUF + 0x1000, &st, 1);
	cr_assert_eq(st, VIRTIO_BLK_S_OK);
	gmem_read(&mem, TV_BUF + 0x30000 + 0x2000, data, 512);
	cr_assert_eq(memcmp(data, orig + 7 * 512, 512), 0);
	struct vring_used_elem e = tv_used_elem(&tv, 0);
	cr_assert_eq(e.id, 0);
	cr_assert_eq(e.len, 1025);
	cr_assert_geq(__atomic_load_n(&fh.notify_calls, __ATOMIC_SEQ_CST), 1, "irq raised");
	cr_assert_eq(fh.notify_last_irq, 5);
	cr_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
}

Test(blk_dev, ioeventfd_path_kicks_the_worker)
{
	ring_read(0, 0, 1);
	uint64_t one = 1; /* what KVM does when the guest writes QueueNotify with an ioeventfd */
	cr_assert_eq(write(dev.kick_fd, &one, sizeof(one)), 8);
	cr_assert(dev_wait(1));
	ring_read(3, 1, 1);
	virtio_mmio_queue_notify(&dev.t, 0);
	cr_assert(dev_wait(2));
}

Test(blk_dev, kick_before_driver_ok_is_not_lost)
{
	/* A kick through the ioeventfd before DRIVER_OK finds no usable queue; DRIVER_OK looks again. */
	wr(VIRTIO_MMIO_STATUS, 0);
	memset(gmem_ptr(&mem, TV_AVAIL, 0x2000), 0, 0x2000);
	tv = (struct tv){ .m = &mem, .num = 16 };
	ring_read(0, 0, 1);
	uint64_t one = 1;
	cr_assert_eq(write(dev.kick_fd, &one, sizeof(one)), 8);
	usleep(10000);
	cr_assert_eq(tv_used_idx(&tv), 0);
	tv.avail_idx = 0;
	dev_up();
	ring_read(0, 0, 1);
	cr_assert(dev_wait(1));
}

Test(blk_dev, malformed_chain_sets_needs_reset_and_reset_recovers)
{
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, TV_BUF, 16, VRING_DESC_F_NEXT, 0); /* loop */
	tv_avail(&tv, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_not(dev_wait(1), "no completion for a loop");
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	/* A broken device ignores further kicks until reset. */
	ring_read(4, 0, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	usleep(20000);
	cr_assert_eq(tv_used_idx(&tv), 0);
	memset(gmem_ptr(&mem, TV_AVAIL, 0x2000), 0, 0x2000);
	dev_up();
	ring_read(0, 2, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(1), "works again after reset");
}

Test(blk_dev, resets_racing_requests_in_flight)
{
	/* The vCPU resets while the worker is busy: no deadlock, no answer after the reset, and
	 * the device works afterwards.  Racy by nature; 200 rounds make the overlap likely. */
	for (unsigned round = 0; round < 200; round++) {
		ring_read(0, round % IMG_SECTORS, 4);
		ring_read(3, 0, 8);
		ring_read(6, 9, 16);
		wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		if (round & 1)
			usleep(round % 50);
		wr(VIRTIO_MMIO_STATUS, 0);
		cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
		uint16_t used = tv_used_idx(&tv);
		usleep(100);
		cr_assert_eq(tv_used_idx(&tv), used, "round %u: an answer after the reset", round);
		memset(gmem_ptr(&mem, TV_AVAIL, 0x2000), 0, 0x2000);
		dev_up();
	}
	ring_read(0, 2, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(1));
}

Test(blk_dev, hundreds_of_requests_through_the_ring)
{
	/* The ring wraps many times; every answer must land where its request asked. */
	for (unsigned round = 0; round < 100; round++) {
		ring_read(0, round % IMG_SECTORS, 1);
		ring_read(3, (round * 7) % IMG_SECTORS, 1);
		wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		cr_assert(dev_wait((uint16_t)(2 * round + 2)));
		uint8_t d[512];
		gmem_read(&mem, TV_BUF + 0x30000 + 0x2000, d, 512);
		cr_assert_eq(memcmp(d, orig + ((round * 7) % IMG_SECTORS) * 512, 512), 0, "round %u", round);
	}
	cr_assert_eq(dev.completed, 200);
}

/* ---- command line and CLI ---- */

Test(blk_cli, kernel_command_line)
{
	char out[512];
	cr_assert_eq(vm_virtio_cmdline(out, sizeof(out), "console=ttyS0", 2, 1), 0);
	cr_assert_str_eq(out, "console=ttyS0 root=/dev/vda ro virtio_mmio.device=4K@0xd0000000:5 "
			      "virtio_mmio.device=4K@0xd0001000:6");
	cr_assert_eq(vm_virtio_cmdline(out, sizeof(out), "quiet", 1, 0), 0);
	cr_assert_str_eq(out, "quiet root=/dev/vda virtio_mmio.device=4K@0xd0000000:5");
	cr_assert_eq(vm_virtio_cmdline(out, sizeof(out), "root=/dev/vdb quiet", 2, 1), 0);
	cr_assert_null(strstr(out, "/dev/vda"), "the user's root= wins: %s", out);
	cr_assert_eq(vm_virtio_cmdline(out, sizeof(out), "quiet noroot=1", 1, 0), 0);
	cr_assert_not_null(strstr(out, " root=/dev/vda"), "noroot= is not root=");
	cr_assert_eq(vm_virtio_cmdline(out, sizeof(out), "x", 1, -1), 0);
	cr_assert_str_eq(out, "x virtio_mmio.device=4K@0xd0000000:5", "a scratch disk alone is not root");
	cr_assert_eq(vm_virtio_cmdline(out, 40, "x", 8, 0), -ENAMETOOLONG);
}

Test(blk_cli, slots_skip_irqs_in_use)
{
	for (unsigned i = 0; i < LAYOUT_VIRTIO_MAX; i++) {
		uint64_t base;
		unsigned irq;
		vm_virtio_slot(i, &base, &irq);
		cr_assert_eq(base, LAYOUT_VIRTIO_MMIO_BASE + 0x1000ULL * i);
		cr_assert(irq >= 5 && irq <= 15, "irq %u", irq);
		cr_assert(irq != LAYOUT_COM1_IRQ && irq != LAYOUT_ACPI_SCI_IRQ && irq != 8 && irq != 12, "irq %u", irq);
		for (unsigned j = 0; j < i; j++) {
			uint64_t b2;
			unsigned irq2;
			vm_virtio_slot(j, &b2, &irq2);
			cr_assert_neq(irq, irq2);
		}
	}
}

static struct boot_opts o;
static char perr[256];
#define PARSE(...) \
	cli_parse_boot((int)(sizeof((char *[]){ "boot", __VA_ARGS__ }) / sizeof(char *)), \
		       (char *[]){ "boot", __VA_ARGS__, NULL }, &o, perr, sizeof(perr))

Test(blk_cli, drive_options)
{
	cr_assert_eq(PARSE("--kernel", "k", "--drive", "a.img", "--drive", "b.img,ro,id=base", "--scratch", "64M"), 0,
		     "%s", perr);
	cr_assert_eq(o.ndrives, 2);
	cr_assert_str_eq(o.drives[0].path, "a.img");
	cr_assert_not(o.drives[0].ro);
	cr_assert_str_eq(o.drives[0].id, "");
	cr_assert_str_eq(o.drives[1].path, "b.img");
	cr_assert(o.drives[1].ro);
	cr_assert_str_eq(o.drives[1].id, "base");
	cr_assert_eq(o.scratch, 64ULL << 20);
	cli_opts_free(&o);
	cr_assert_eq(PARSE("--kernel", "k", "--drive", "c.img,id=x,ro"), 0, "%s", perr);
	cr_assert(o.drives[0].ro);
	cr_assert_eq(o.scratch, 0, "state does not leak between parses");
	cli_opts_free(&o);
}

Test(blk_cli, drive_errors)
{
	cr_assert_neq(PARSE("--kernel", "k", "--drive", "a.img,rw"), 0);
	cr_assert(strstr(perr, "rw"), "%s", perr);
	cr_assert_neq(PARSE("--kernel", "k", "--drive", ",ro"), 0);
	cr_assert_neq(PARSE("--kernel", "k", "--drive", "a.img,id="), 0);
	cr_assert_neq(PARSE("--kernel", "k", "--drive", "a.img,id=123456789012345678901"), 0);
	cr_assert_neq(PARSE("--kernel", "k", "--scratch", "1000B"), 0);
	cr_assert(strstr(perr, "512"), "%s", perr);
	cr_assert_neq(PARSE("--kernel", "k", "--scratch", "0"), 0);
	cr_assert_neq(PARSE("--kernel", "k", "--scratch", "lots"), 0);
	cr_assert_neq(PARSE("--kernel", "k", "--drive", "1", "--drive", "2", "--drive", "3", "--drive", "4", "--drive",
			    "5", "--drive", "6", "--drive", "7", "--drive", "8", "--drive", "9"), 0);
	cr_assert(strstr(perr, "too many"), "%s", perr);
	cr_assert_neq(PARSE("--kernel", "k", "--drive", "1", "--drive", "2", "--drive", "3", "--drive", "4", "--drive",
			    "5", "--drive", "6", "--drive", "7", "--drive", "8", "--scratch", "1M"), 0);
	cr_assert(strstr(perr, "too many"), "%s", perr);
	cr_assert_eq(PARSE("--kernel", "k", "--drive", "1", "--drive", "2", "--drive", "3", "--drive", "4", "--drive",
			   "5", "--drive", "6", "--drive", "7", "--scratch", "1M"), 0, "8 devices fit: %s", perr);
}

/* padcell itself: bad drives are one line, exit 2, and no scratch file stays behind. */
static int run_padcell(char *const argv[], const char *tmpdir, char *errbuf, size_t errlen)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		setenv("TMPDIR", tmpdir, 1);
		for (int i = 0; i < 50; i++) { /* a concurrent make may be relinking padcell */
			execv(argv[0], argv);
			usleep(100000);
		}
		_exit(127);
	}
	close(p[1]);
	ssize_t n = 0, r;
	while ((r = read(p[0], errbuf + n, errlen - 1 - n)) > 0)
		n += r;
	errbuf[n] = '\0';
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A file next to build/tests/unit-tests's directory (build/padcell, build/guest/...), or $PADCELL. */
static const char *build_path(const char *rel, char *out, size_t outlen)
{
	const char *env = getenv("PADCELL");
	if (env && !strcmp(rel, "padcell"))
		return env;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(out, outlen, "%s/../%s", dirname(self), rel);
	return out;
}

Test(blk_cli, padcell_rejects_bad_drives, .init = setup, .fini = teardown, .timeout = 30)
{
	char binbuf[PATH_MAX];
	const char *bin = build_path("padcell", binbuf, sizeof(binbuf));
	cr_assert_eq(access(bin, X_OK), 0, "%s must be built (make unit builds it)", bin);
	char kernel[160], odd[160], missing[160], unreadable[160], tmp[160], e[512];
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	write_image(kernel, 4096);
	snprintf(odd, sizeof(odd), "%s/odd.img", dir);
	write_image(odd, 1000);
	snprintf(missing, sizeof(missing), "%s/missing.img", dir);
	snprintf(unreadable, sizeof(unreadable), "%s/unreadable.img", dir);
	write_image(unreadable, 512);
	chmod(unreadable, 0);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	mkdir(tmp, 0700);
	/* A loadable kernel (a 2-byte ELF: ud2), so the only thing wrong is the drive. */
	static const uint8_t ud2[] = { 0x0f, 0x0b };
	struct elf_spec spec = { .code = ud2, .code_len = sizeof(ud2), .entry = 0x100000 };
	size_t klen;
	uint8_t *kimg = img_elf(&spec, &klen);
	int kfd = open(kernel, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(kfd, kimg, klen), (ssize_t)klen);
	close(kfd);
	free(kimg);
	const char *k = kernel;

	struct { const char *a1, *a2, *want; } cases[] = {
		{ "--drive", missing, "No such file" },
		{ "--drive", dir, "directory" },
		{ "--drive", odd, "512" },
		{ "--drive", "/dev/null", "regular file" },
		{ "--drive", "x.img,bogus", "bogus" },
		{ "--scratch", "1000B", "512" },
		{ "--scratch", "nope", "--scratch" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[] = { (char *)bin, "boot", "--kernel", (char *)k, "--scratch", "1M", (char *)cases[i].a1,
				 (char *)cases[i].a2, NULL };
		if (!strcmp(cases[i].a1, "--scratch"))
			argv[4] = "--mem", argv[5] = "64M";
		int rc = run_padcell(argv, tmp, e, sizeof(e));
		cr_assert_eq(rc, 2, "%s %s: exit %d (%s)", cases[i].a1, cases[i].a2, rc, e);
		cr_assert(!strncmp(e, "padcell: ", 9) && strchr(e, '\n') == e + strlen(e) - 1, "one line: %s", e);
		cr_assert(strstr(e, cases[i].want), "%s %s: %s", cases[i].a1, cases[i].a2, e);
		cr_assert_eq(dir_entries(tmp), 0, "nothing left in TMPDIR after %s %s", cases[i].a1, cases[i].a2);
	}
	if (geteuid() != 0) { /* root reads anything */
		char *argv[] = { (char *)bin, "boot", "--kernel", (char *)k, "--drive", unreadable, NULL };
		cr_assert_eq(run_padcell(argv, tmp, e, sizeof(e)), 2, "%s", e);
	}
	chmod(unreadable, 0600);
}

Test(blk_cli, padcell_with_disks_leaves_nothing_behind, .init = setup, .fini = teardown, .timeout = 30)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		cr_skip_test("needs /dev/kvm");
	char binbuf[PATH_MAX], kernel[160], tmp[160], e[512];
	const char *bin = build_path("padcell", binbuf, sizeof(binbuf));
	/* mov $0x64,%dx; mov $0xfe,%al; out %al,%dx (i8042 reset: exit 0); hlt; jmp .-1 */
	static const uint8_t reset[] = { 0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd };
	struct elf_spec spec = { .code = reset, .code_len = sizeof(reset), .entry = 0x100000 };
	size_t klen;
	uint8_t *kimg = img_elf(&spec, &klen);
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	int kfd = open(kernel, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(write(kfd, kimg, klen), (ssize_t)klen);
	close(kfd);
	free(kimg);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	mkdir(tmp, 0700);
	char drive[200];
	snprintf(drive, sizeof(drive), "%s,ro", img);
	char *argv[] = { (char *)bin, "boot", "--kernel", kernel, "--mem", "16M", "--drive", drive,
			 "--scratch", "64M", NULL };
	int rc = run_padcell(argv, tmp, e, sizeof(e));
	cr_assert_eq(rc, 0, "exit %d: %s", rc, e);
	cr_assert_eq(dir_entries(tmp), 0, "no scratch file after the VM");
	uint8_t now[IMG_SIZE];
	file_bytes(now);
	cr_assert_eq(memcmp(now, orig, IMG_SIZE), 0);
}

/* ---- differential: random I/O through virtio-blk against a plain model file ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

Test(blk, differential_random_io_against_a_model)
{
	open_disk(false);
	static uint8_t model[IMG_SIZE], data[16 * 512], back[16 * 512];
	memcpy(model, orig, IMG_SIZE);
	for (unsigned op = 0; op < 3000; op++) {
		uint64_t sector = rnd() % IMG_SECTORS;
		uint32_t count = 1 + rnd() % 16;
		bool fits = sector + count <= IMG_SECTORS;
		uint32_t len = count * 512;
		unsigned kind = rnd() % 4;
		/* Split the data at random points into up to 4 segments. */
		uint32_t cut[5] = { 0, 0, 0, 0, len };
		for (int k = 1; k < 4; k++)
			cut[k] = (uint32_t)(rnd() % (len + 1));
		for (int a = 1; a < 4; a++) /* sort the cuts */
			for (int b = a; b > 0 && cut[b] < cut[b - 1]; b--) {
				uint32_t t = cut[b];
				cut[b] = cut[b - 1];
				cut[b - 1] = t;
			}
		if (kind == 0 || kind == 1) { /* read (twice as often) */
			req(VIRTIO_BLK_T_IN, sector);
			for (int k = 0; k < 4; k++)
				if (cut[k + 1] > cut[k])
					seg(back + cut[k], cut[k + 1] - cut[k], true);
			submit();
			cr_assert_eq(status, fits ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, "op %u", op);
			if (fits)
				cr_assert_eq(memcmp(back, model + sector * 512, len), 0, "op %u: read differs", op);
		} else if (kind == 2) {
			for (uint32_t i = 0; i < len; i++)
				data[i] = (uint8_t)rnd();
			req(VIRTIO_BLK_T_OUT, sector);
			for (int k = 0; k < 4; k++)
				if (cut[k + 1] > cut[k])
					seg(data + cut[k], cut[k + 1] - cut[k], false);
			submit();
			cr_assert_eq(status, fits ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, "op %u", op);
			if (fits)
				memcpy(model + sector * 512, data, len);
		} else {
			struct virtio_blk_discard_write_zeroes r = { .sector = sector, .num_sectors = count,
								     .flags = (uint32_t)(rnd() & 1) };
			req(VIRTIO_BLK_T_WRITE_ZEROES, 0);
			seg(&r, sizeof(r), false);
			submit();
			cr_assert_eq(status, fits ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, "op %u", op);
			if (fits)
				memset(model + sector * 512, 0, len);
		}
	}
	uint8_t now[IMG_SIZE];
	file_bytes(now);
	cr_assert_eq(memcmp(now, model, IMG_SIZE), 0, "the file equals the model");
}

/* ---- the drive's rate limiter: a clock the test moves, and the worker's own timer ---- */

static _Atomic uint64_t blk_fake_ns;
static uint64_t blk_fake_clock(void) { return blk_fake_ns; }

/* Sets the drive's limits from SPEC; on the fake clock unless real (a changed bucket starts full). */
static void blk_limits(const char *spec, bool real)
{
	char err[200];
	struct ratelimit_patch p = { .bytes_set = true, .ops_set = true };
	cr_assert_eq(ratelimit_parse(spec, &p.cfg, err, sizeof(err)), 0, "%s", err);
	if (!real) {
		blk_fake_ns = 1000000000ull;
		pthread_mutex_lock(&dev.t.lock);
		dev.clock = blk_fake_clock;
		pthread_mutex_unlock(&dev.t.lock);
	}
	virtio_blk_set_rate(&dev, &p);
}

static uint64_t blk_throttled(void)
{
	pthread_mutex_lock(&dev.t.lock);
	uint64_t n = dev.throttled;
	pthread_mutex_unlock(&dev.t.lock);
	return n;
}

Test(blk_dev, requests_over_the_ops_budget_stay_in_the_ring_until_refill)
{
	blk_limits("ops=2/1000s", false); /* two requests, then one per 500 s of fake time */
	ring_read(0, 1, 1);
	ring_read(3, 2, 1);
	ring_read(6, 3, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(2));
	for (int i = 0; i < 1000 && !blk_throttled(); i++)
		usleep(1000);
	cr_assert_geq(blk_throttled(), 1, "the third is held back");
	usleep(50000);
	cr_assert_eq(tv_used_idx(&tv), 2, "and not answered while the budget is spent");
	blk_fake_ns += 499ull * 1000000000ull;
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	usleep(50000);
	cr_assert_eq(tv_used_idx(&tv), 2, "one second short of a token");
	blk_fake_ns += 1000000000ull;
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0); /* stands for the worker's timer, which runs on real time */
	cr_assert(dev_wait(3));
	uint8_t d[512], st;
	gmem_read(&mem, TV_BUF + 0x60000 + 0x2000, d, 512);
	cr_assert_eq(memcmp(d, orig + 3 * 512, 512), 0, "the held request is served whole, as the guest made it");
	gmem_read(&mem, TV_BUF + 0x60000 + 0x1000, &st, 1);
	cr_assert_eq(st, VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.completed, 3);
}

Test(blk_dev, bytes_bucket_counts_the_data_of_reads)
{
	blk_limits("bytes=1K/1000s", false); /* 1024 bytes: one read of two sectors */
	ring_read(0, 1, 2);
	ring_read(3, 4, 2);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(1));
	for (int i = 0; i < 1000 && !blk_throttled(); i++)
		usleep(1000);
	cr_assert_eq(tv_used_idx(&tv), 1, "the second read's 1024 bytes must wait");
	blk_fake_ns += 1000ull * 1000000000ull;
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(2));
}

Test(blk_dev, the_worker_wakes_itself_when_tokens_are_back, .timeout = 30)
{
	/* The real clock and no kick after the first: only the worker's timer can serve the rest, and
	 * the limiter guarantees it is not before 3 refills of 100 ms (a lower bound only). */
	blk_limits("ops=1/100ms", true);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ring_read(0, 1, 1);
	ring_read(3, 2, 1);
	ring_read(6, 3, 1);
	ring_read(9, 4, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(4));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert_geq(ms, 290.0, "4 requests at 1 per 100 ms after the first took %.1f ms", ms);
	cr_assert_geq(blk_throttled(), 3);
}

Test(blk_dev, lifting_the_limit_serves_what_waits)
{
	blk_limits("ops=1/1000s", false);
	ring_read(0, 1, 1);
	ring_read(3, 2, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert(dev_wait(1));
	struct ratelimit_patch off = { .ops_set = true };
	virtio_blk_set_rate(&dev, &off); /* wakes the worker itself */
	cr_assert(dev_wait(2));
}
