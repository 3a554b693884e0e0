/* Snapshot state files: round trips of every section, every kind of corruption, data-file trailers,
 * vm_restore's refusals before KVM is touched, and device state save/load. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_net.h"
#include "devices/virtio_vsock.h"
#include "tests/unit/fake_host.h"
#include "vmm/snapshot.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/snapshot_io.h"
#include "vmm/vm.h"

#define NCPUS 2
#define NDISKS 2

static uint32_t rng = 12345;
static uint8_t rnd8(void)
{
	rng = rng * 1103515245u + 12345u;
	return (uint8_t)(rng >> 16);
}
static void fill(void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)p)[i] = rnd8();
}

struct sec_spec {
	uint32_t type, index;
	size_t len;
};

/* Every section a two-vCPU machine with two disks and a vsock device has, XSAVE and XCRS included. */
static unsigned machine_specs(struct sec_spec *s)
{
	unsigned n = 0;
	for (unsigned c = 0; c < NCPUS; c++) {
		s[n++] = (struct sec_spec){ SNAP_SEC_REGS, c, sizeof(struct kvm_regs) };
		s[n++] = (struct sec_spec){ SNAP_SEC_SREGS, c, sizeof(struct kvm_sregs) };
		s[n++] = (struct sec_spec){ SNAP_SEC_FPU, c, sizeof(struct kvm_fpu) };
		s[n++] = (struct sec_spec){ SNAP_SEC_XSAVE, c, 4096 };
		s[n++] = (struct sec_spec){ SNAP_SEC_XCRS, c, sizeof(struct kvm_xcrs) };
		s[n++] = (struct sec_spec){ SNAP_SEC_MSRS, c, 37 * sizeof(struct kvm_msr_entry) };
		s[n++] = (struct sec_spec){ SNAP_SEC_LAPIC, c, sizeof(struct kvm_lapic_state) };
		s[n++] = (struct sec_spec){ SNAP_SEC_EVENTS, c, sizeof(struct kvm_vcpu_events) };
		s[n++] = (struct sec_spec){ SNAP_SEC_MP_STATE, c, sizeof(struct kvm_mp_state) };
		s[n++] = (struct sec_spec){ SNAP_SEC_DEBUGREGS, c, sizeof(struct kvm_debugregs) };
		s[n++] = (struct sec_spec){ SNAP_SEC_CPUID, c, 61 * sizeof(struct kvm_cpuid_entry2) };
	}
	for (unsigned c = 0; c < 3; c++)
		s[n++] = (struct sec_spec){ SNAP_SEC_IRQCHIP, c, sizeof(struct kvm_irqchip) };
	s[n++] = (struct sec_spec){ SNAP_SEC_PIT2, 0, sizeof(struct kvm_pit_state2) };
	s[n++] = (struct sec_spec){ SNAP_SEC_CLOCK, 0, sizeof(struct kvm_clock_data) };
	s[n++] = (struct sec_spec){ SNAP_SEC_SERIAL, 0, sizeof(struct serial_state) };
	s[n++] = (struct sec_spec){ SNAP_SEC_I8042, 0, sizeof(struct i8042_state) };
	s[n++] = (struct sec_spec){ SNAP_SEC_ACPI_PM, 0, sizeof(struct acpi_pm_state) };
	s[n++] = (struct sec_spec){ SNAP_SEC_PVPANIC, 0, sizeof(uint32_t) };
	for (unsigned d = 0; d < NDISKS; d++) {
		s[n++] = (struct sec_spec){ SNAP_SEC_DISK, d, sizeof(struct snap_disk) };
		s[n++] = (struct sec_spec){ SNAP_SEC_BLK, d, sizeof(struct virtio_blk_state) };
	}
	s[n++] = (struct sec_spec){ SNAP_SEC_VSOCK, NDISKS, sizeof(struct virtio_vsock_state) };
	return n;
}

static const uint8_t test_id[SNAP_ID_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static struct snap_header test_header(uint32_t ncpus)
{
	struct snap_header h = { .mem_size = 64ULL << 20, .mem_file_size = (64ULL << 20) + SNAP_DATA_TRAILER,
				 .ncpus = ncpus, .tsc_khz = 2000000 };
	memcpy(h.id, test_id, sizeof(h.id));
	return h;
}

/* Section data: random, except where the checker looks inside (disks). */
static void *section_data(const struct sec_spec *s)
{
	void *p = calloc(1, s->len);
	fill(p, s->len);
	if (s->type == SNAP_SEC_DISK) {
		struct snap_disk *d = p;
		memset(d, 0, sizeof(*d));
		d->size = 1 << 20;
		d->scratch = s->index == NDISKS - 1;
		d->ro = !d->scratch;
		strcpy(d->id, d->scratch ? "scratch" : "root");
		strcpy(d->path, d->scratch ? "state.disk1" : "/images/root.img");
	}
	return p;
}

struct built {
	struct snap_enc e;
	struct sec_spec specs[64];
	void *data[64];
	unsigned n;
};

static void build(struct built *b, uint32_t ncpus_hdr, int skip)
{
	b->n = machine_specs(b->specs);
	struct snap_header h = test_header(ncpus_hdr);
	snap_enc_init(&b->e, &h);
	for (unsigned i = 0; i < b->n; i++) {
		b->data[i] = section_data(&b->specs[i]);
		if ((int)i != skip)
			snap_enc_add(&b->e, b->specs[i].type, b->specs[i].index, b->data[i], b->specs[i].len);
	}
	cr_assert_eq(snap_enc_finish(&b->e), 0);
}

static void built_free(struct built *b)
{
	for (unsigned i = 0; i < b->n; i++)
		free(b->data[i]);
	snap_enc_free(&b->e);
}

/* Recomputes the trailer after a deliberate edit, so the structural checks (not the CRC) must catch it. */
static void reseal(uint8_t *buf, size_t len)
{
	uint32_t crc = snap_crc32(0, buf, len - 8);
	memcpy(buf + len - 8, &crc, 4);
}

static int decode_check(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct snap_view v;
	int rc = snap_decode(buf, len, &v, err, errlen);
	if (!rc) {
		rc = snap_check_machine(&v, err, errlen);
		snap_view_free(&v);
	}
	return rc;
}

Test(snapshot_fmt, crc32_known_value)
{
	cr_assert_eq(snap_crc32(0, "123456789", 9), 0xcbf43926u); /* the standard check value */
	cr_assert_eq(snap_crc32(snap_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
}

Test(snapshot_fmt, round_trip_every_section)
{
	struct built b;
	build(&b, NCPUS, -1);
	struct snap_view v;
	char err[256] = "";
	cr_assert_eq(snap_decode(b.e.buf, b.e.len, &v, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(snap_check_machine(&v, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(v.nsec, b.n);
	cr_assert_eq(v.hdr->ncpus, NCPUS);
	cr_assert_eq(v.hdr->version, SNAP_VERSION);
	cr_assert_eq(memcmp(v.hdr->id, test_id, SNAP_ID_BYTES), 0);
	for (unsigned i = 0; i < b.n; i++) {
		uint64_t len = 0;
		const void *p = snap_find(&v, b.specs[i].type, b.specs[i].index, &len);
		cr_assert_not_null(p, "section %u/%u missing", b.specs[i].type, b.specs[i].index);
		cr_assert_eq(len, b.specs[i].len);
		cr_assert_eq(memcmp(p, b.data[i], len), 0, "section %u/%u differs", b.specs[i].type, b.specs[i].index);
		cr_assert_eq((uintptr_t)p % 8, 0, "section data is 8-aligned");
	}
	cr_assert_null(snap_find(&v, SNAP_SEC_REGS, NCPUS, NULL));
	snap_view_free(&v);
	built_free(&b);
}

Test(snapshot_fmt, every_flipped_byte_is_refused)
{
	struct built b;
	build(&b, NCPUS, -1);
	uint8_t *copy = malloc(b.e.len);
	char err[256];
	for (size_t off = 0; off < b.e.len; off += (off < 512 ? 1 : 61)) {
		memcpy(copy, b.e.buf, b.e.len);
		copy[off] ^= 0x5a;
		err[0] = 0;
		cr_assert_neq(decode_check(copy, b.e.len, err, sizeof(err)), 0, "flip at %zu accepted", off);
		cr_assert(err[0], "flip at %zu: no message", off);
		/* Past the header's identity and size, the checksum is what catches it. */
		if (off >= 24)
			cr_assert(strstr(err, "checksum"), "flip at %zu: %s", off, err);
	}
	free(copy);
	built_free(&b);
}

Test(snapshot_fmt, wrong_magic_and_other_version)
{
	struct built b;
	build(&b, NCPUS, -1);
	char err[256];
	b.e.buf[0] = 'X';
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a padcell snapshot"), "%s", err);
	b.e.buf[0] = 'P';
	struct snap_header *h = (struct snap_header *)b.e.buf;
	h->version = SNAP_VERSION + 1;
	reseal(b.e.buf, b.e.len);
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	char want[64];
	snprintf(want, sizeof(want), "format version %u", SNAP_VERSION + 1);
	cr_assert(strstr(err, want), "%s", err);
	snprintf(want, sizeof(want), "reads version %u", SNAP_VERSION);
	cr_assert(strstr(err, want), "%s", err);
	built_free(&b);
}

Test(snapshot_fmt, truncated_anywhere)
{
	struct built b;
	build(&b, NCPUS, -1);
	char err[256];
	for (size_t len = 0; len < b.e.len; len += (len < 300 ? 1 : 97)) {
		err[0] = 0;
		cr_assert_eq(decode_check(b.e.buf, len, err, sizeof(err)), -EINVAL, "length %zu accepted", len);
		cr_assert(len < 8 || strstr(err, "truncated") || strstr(err, "not a padcell"), "length %zu: %s", len, err);
	}
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), 0, "%s", err);
	built_free(&b);
}

Test(snapshot_fmt, trailing_bytes)
{
	struct built b;
	build(&b, NCPUS, -1);
	uint8_t *big = calloc(1, b.e.len + 8);
	memcpy(big, b.e.buf, b.e.len);
	char err[256];
	cr_assert_eq(decode_check(big, b.e.len + 8, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "corrupt"), "%s", err);
	free(big);
	built_free(&b);
}

/* The first section's length field, made to lie, with a valid checksum over the lie. */
Test(snapshot_fmt, oversize_section_length)
{
	static const uint64_t lies[] = { 1ULL << 20, UINT64_MAX, UINT64_MAX - 3, (1ULL << 63) + 8 };
	for (unsigned i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		struct built b;
		build(&b, NCPUS, -1);
		struct snap_section s;
		memcpy(&s, b.e.buf + sizeof(struct snap_header), sizeof(s));
		s.len = lies[i];
		memcpy(b.e.buf + sizeof(struct snap_header), &s, sizeof(s));
		reseal(b.e.buf, b.e.len);
		char err[256];
		cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "past the end"), "%s", err);
		built_free(&b);
	}
}

Test(snapshot_fmt, too_many_sections)
{
	struct built b;
	build(&b, NCPUS, -1);
	((struct snap_header *)b.e.buf)->nsections = 1u << 30;
	reseal(b.e.buf, b.e.len);
	char err[256];
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "sections"), "%s", err);
	built_free(&b);
}

Test(snapshot_fmt, wrong_ncpus)
{
	char err[256];
	struct built b;
	build(&b, NCPUS + 1, -1); /* the header claims a vCPU nobody saved */
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "for vCPU 2"), "%s", err);
	built_free(&b);
	build(&b, NCPUS - 1, -1); /* sections for a vCPU the header does not count */
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "vCPU 1 of 1"), "%s", err);
	built_free(&b);
	build(&b, 0, -1);
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "0 vCPUs"), "%s", err);
	built_free(&b);
}

Test(snapshot_fmt, every_missing_section_is_named)
{
	struct sec_spec specs[64];
	unsigned n = machine_specs(specs);
	for (unsigned skip = 0; skip < n; skip++) {
		if (specs[skip].type == SNAP_SEC_XSAVE || specs[skip].type == SNAP_SEC_XCRS ||
		    specs[skip].type == SNAP_SEC_VSOCK)
			continue; /* optional: hosts without XSAVE, VMs without vsock */
		struct built b;
		build(&b, NCPUS, (int)skip);
		char err[256] = "";
		cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL, "without %u/%u accepted",
			     specs[skip].type, specs[skip].index);
		cr_assert(strstr(err, "corrupt"), "%s", err);
		built_free(&b);
	}
}

Test(snapshot_fmt, wrong_section_size_duplicate_and_unknown)
{
	char err[256];
	struct snap_header h = test_header(1);
	struct snap_enc e;
	uint8_t junk[8192] = { 0 };
	/* a REGS section one byte short */
	snap_enc_init(&e, &h);
	snap_enc_add(&e, SNAP_SEC_REGS, 0, junk, sizeof(struct kvm_regs) - 1);
	cr_assert_eq(snap_enc_finish(&e), 0);
	cr_assert_eq(decode_check(e.buf, e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "REGS section of"), "%s", err);
	snap_enc_free(&e);
	/* twice the same section */
	snap_enc_init(&e, &h);
	snap_enc_add(&e, SNAP_SEC_PIT2, 0, junk, sizeof(struct kvm_pit_state2));
	snap_enc_add(&e, SNAP_SEC_PIT2, 0, junk, sizeof(struct kvm_pit_state2));
	cr_assert_eq(snap_enc_finish(&e), 0);
	cr_assert_eq(decode_check(e.buf, e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "twice"), "%s", err);
	snap_enc_free(&e);
	/* a type this version does not know */
	snap_enc_init(&e, &h);
	snap_enc_add(&e, 999, 0, junk, 8);
	cr_assert_eq(snap_enc_finish(&e), 0);
	cr_assert_eq(decode_check(e.buf, e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "unknown section type 999"), "%s", err);
	snap_enc_free(&e);
	/* MSRs that are not whole entries, and an IRQCHIP for a fourth chip */
	snap_enc_init(&e, &h);
	snap_enc_add(&e, SNAP_SEC_MSRS, 0, junk, sizeof(struct kvm_msr_entry) + 3);
	cr_assert_eq(snap_enc_finish(&e), 0);
	cr_assert_eq(decode_check(e.buf, e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "MSRS section of"), "%s", err);
	snap_enc_free(&e);
	snap_enc_init(&e, &h);
	snap_enc_add(&e, SNAP_SEC_IRQCHIP, 3, junk, sizeof(struct kvm_irqchip));
	cr_assert_eq(snap_enc_finish(&e), 0);
	cr_assert_eq(decode_check(e.buf, e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "chip 3"), "%s", err);
	snap_enc_free(&e);
}

Test(snapshot_fmt, bad_memory_size_and_disk_records)
{
	char err[256];
	struct built b;
	build(&b, NCPUS, -1);
	struct snap_header *h = (struct snap_header *)b.e.buf;
	h->mem_size += 1;
	reseal(b.e.buf, b.e.len);
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "memory size"), "%s", err);
	built_free(&b);

	/* A scratch copy named with a directory: restore would read a file elsewhere. */
	build(&b, NCPUS, -1);
	struct snap_view v;
	cr_assert_eq(snap_decode(b.e.buf, b.e.len, &v, err, sizeof(err)), 0);
	struct snap_disk *d = (struct snap_disk *)snap_find(&v, SNAP_SEC_DISK, NDISKS - 1, NULL);
	strcpy(d->path, "../../etc/passwd");
	snap_view_free(&v);
	reseal(b.e.buf, b.e.len);
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "beside the state file"), "%s", err);
	built_free(&b);

	/* An id without its NUL. */
	build(&b, NCPUS, -1);
	cr_assert_eq(snap_decode(b.e.buf, b.e.len, &v, err, sizeof(err)), 0);
	d = (struct snap_disk *)snap_find(&v, SNAP_SEC_DISK, 0, NULL);
	memset(d->id, 'x', sizeof(d->id));
	snap_view_free(&v);
	reseal(b.e.buf, b.e.len);
	cr_assert_eq(decode_check(b.e.buf, b.e.len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "disk 0"), "%s", err);
	built_free(&b);
}

Test(snapshot_fmt, data_trailer)
{
	uint8_t tr[SNAP_DATA_TRAILER], other[SNAP_ID_BYTES];
	char err[256];
	snap_trailer_make(tr, test_id, 1234);
	cr_assert_eq(snap_trailer_check(tr, test_id, 1234, err, sizeof(err)), 0);
	memcpy(other, test_id, sizeof(other));
	other[5] ^= 1;
	cr_assert_eq(snap_trailer_check(tr, other, 1234, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "another snapshot"), "%s", err);
	cr_assert_eq(snap_trailer_check(tr, test_id, 4096, err, sizeof(err)), -EINVAL);
	tr[3] ^= 1;
	cr_assert_eq(snap_trailer_check(tr, test_id, 1234, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "no trailer"), "%s", err);
	memset(tr, 0, sizeof(tr));
	cr_assert_eq(snap_trailer_check(tr, test_id, 1234, err, sizeof(err)), -EINVAL);
}

/* ---- vm_restore's refusals, all before /dev/kvm is opened ------------------------------------------ */

static char dir[64];

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* A state file with no vsock device, `disk` (if not NULL) as disk 0, and a memory file of the right size. */
static void write_snapshot_with(const char *state, const char *mem, const uint8_t *mem_id, uint64_t mem_size,
				const struct snap_disk *disk)
{
	struct sec_spec all[64];
	unsigned n = machine_specs(all);
	struct snap_header h = test_header(NCPUS);
	struct snap_enc e;
	snap_enc_init(&e, &h);
	for (unsigned i = 0; i < n; i++) {
		if (all[i].type == SNAP_SEC_DISK || all[i].type == SNAP_SEC_BLK || all[i].type == SNAP_SEC_VSOCK)
			continue;
		void *p = section_data(&all[i]);
		snap_enc_add(&e, all[i].type, all[i].index, p, all[i].len);
		free(p);
	}
	if (disk) {
		struct virtio_blk_state bs = { .capacity = disk->size / 512, .ro = disk->ro };
		snap_enc_add(&e, SNAP_SEC_DISK, 0, disk, sizeof(*disk));
		snap_enc_add(&e, SNAP_SEC_BLK, 0, &bs, sizeof(bs));
	}
	cr_assert_eq(snap_enc_finish(&e), 0);
	write_file(state, e.buf, e.len);
	snap_enc_free(&e);
	if (mem) {
		int fd = open(mem, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, (off_t)mem_size), 0);
		uint8_t tr[SNAP_DATA_TRAILER];
		snap_trailer_make(tr, mem_id, h.mem_size);
		cr_assert_eq(pwrite(fd, tr, sizeof(tr), (off_t)mem_size - SNAP_DATA_TRAILER), (ssize_t)sizeof(tr));
		close(fd);
	}
}

/* A state file with no disks and no vsock device, and a memory file of the right size. */
static void write_snapshot(const char *state, const char *mem, const uint8_t *mem_id, uint64_t mem_size)
{
	write_snapshot_with(state, mem, mem_id, mem_size, NULL);
}

static void restore_setup(void)
{
	strcpy(dir, "/tmp/padcell-test-snap-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}
static void restore_teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static int try_restore(const char *state, const char *mem, char *err, size_t errlen)
{
	static struct vm vm;
	struct vm_config cfg = { .console_out = -1 };
	int rc = vm_restore(&vm, &cfg, state, mem, err, errlen);
	if (rc == 0)
		vm_destroy(&vm);
	return rc;
}

TestSuite(snapshot_restore, .init = restore_setup, .fini = restore_teardown);

Test(snapshot_restore, memory_file_missing_wrong_size_or_other_snapshot)
{
	char state[128], mem[128], err[512];
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(mem, sizeof(mem), "%s/mem", dir);
	uint64_t good = (64ULL << 20) + SNAP_DATA_TRAILER;

	write_snapshot(state, NULL, NULL, 0);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "memory file") && strstr(err, "No such file"), "%s", err);

	write_snapshot(state, mem, test_id, good - 4096);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "the snapshot needs"), "%s", err);

	uint8_t other[SNAP_ID_BYTES] = { 9 };
	write_snapshot(state, mem, other, good);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "belongs to another snapshot"), "%s", err);

	/* Right size, no trailer: memory from somewhere else entirely. */
	int fd = open(mem, O_WRONLY | O_TRUNC);
	cr_assert_eq(ftruncate(fd, (off_t)good), 0);
	close(fd);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a padcell snapshot data file"), "%s", err);
}

Test(snapshot_restore, state_file_missing_corrupt_or_not_a_file)
{
	char state[128], mem[128], err[512];
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(mem, sizeof(mem), "%s/mem", dir);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "state file") && strstr(err, "No such file"), "%s", err);
	cr_assert_eq(try_restore(dir, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a regular file"), "%s", err);
	write_snapshot(state, mem, test_id, (64ULL << 20) + SNAP_DATA_TRAILER);
	int fd = open(state, O_RDWR);
	struct stat st;
	fstat(fd, &st);
	cr_assert_eq(ftruncate(fd, st.st_size / 2), 0);
	close(fd);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "truncated"), "%s", err);
}

Test(snapshot_restore, vsock_must_match)
{
	char state[128], mem[128], err[512];
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(mem, sizeof(mem), "%s/mem", dir);
	write_snapshot(state, mem, test_id, (64ULL << 20) + SNAP_DATA_TRAILER);
	static struct vm vm;
	struct vm_config cfg = { .console_out = -1, .vsock_path = "/tmp/x.sock", .vsock_listen_fd = -1 };
	cr_assert_eq(vm_restore(&vm, &cfg, state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "no vsock device"), "%s", err);
}

/* ---- a drive is reopened only if it is the file the snapshot was taken with (issue 11, class 6) ---- */

/* A 1 MiB image at path (made anew: a new inode). */
static void make_image(const char *path, char fill_byte)
{
	static char buf[1 << 20];
	memset(buf, fill_byte, sizeof(buf));
	unlink(path);
	write_file(path, buf, sizeof(buf));
}

/* The snapshot's record of the image at path, as blk_disk_save_backing writes it. */
static struct snap_disk disk_record(const char *path, bool ro)
{
	struct blk_disk d;
	char why[256];
	cr_assert_eq(blk_disk_open(&d, path, ro, NULL, why, sizeof(why)), 0, "%s", why);
	struct snap_disk sd = { .size = d.size, .ro = ro, .dev = d.dev, .ino = d.ino, .btime_ns = d.btime_ns };
	strcpy(sd.id, "disk");
	snprintf(sd.path, sizeof(sd.path), "%s", d.path);
	blk_disk_close(&d);
	return sd;
}

static const struct snap_disk *rec_disk;
static const void *rec_find(const struct dev_snap_in *in, uint32_t type, uint32_t index, uint64_t *len)
{
	if (type != SNAP_SEC_DISK || index != 0)
		return NULL;
	if (len)
		*len = sizeof(*rec_disk);
	return rec_disk;
}

/* virtio_blk_disk_restore of `sd` as slot 0 (user_path: restore --drive 0=PATH): its rc; the disk closed. */
static int disk_restore(const struct snap_disk *sd, const char *user_path, char *err, size_t errlen)
{
	rec_disk = sd;
	struct dev_snap_in in = { .find = rec_find, .dir = dir };
	struct blk_disk d;
	int rc = virtio_blk_disk_restore(&in, 0, user_path, &d, err, errlen);
	if (rc == 0)
		blk_disk_close(&d);
	return rc;
}

Test(snapshot_restore, a_state_file_naming_another_file_as_a_writable_disk_is_refused)
{
	char state[128], mem[128], disk[128], victim[128], err[1024];
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(mem, sizeof(mem), "%s/mem", dir);
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	make_image(disk, 'd');
	make_image(victim, 'v'); /* the host file a crafted state file would have the guest write */
	struct snap_disk sd = disk_record(disk, false);
	cr_assert_neq(sd.ino, 0);
	/* the path changed to the other file, the identity left as it was */
	snprintf(sd.path, sizeof(sd.path), "%s", victim);
	write_snapshot_with(state, mem, test_id, (64ULL << 20) + SNAP_DATA_TRAILER, &sd);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "writable disk 0") && strstr(err, victim) &&
		  strstr(err, "is not the file the snapshot was taken with"), "%s", err);
	cr_assert_null(strchr(err, '\n'), "one line: %s", err);
	/* a crafted identity of zeros is no better */
	sd.dev = sd.ino = sd.btime_ns = 0;
	write_snapshot_with(state, mem, test_id, (64ULL << 20) + SNAP_DATA_TRAILER, &sd);
	cr_assert_eq(try_restore(state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is not the file the snapshot was taken with"), "%s", err);
	/* the victim is untouched */
	int fd = open(victim, O_RDONLY);
	char c = 0;
	cr_assert_eq(pread(fd, &c, 1, 4096), 1);
	cr_assert_eq(c, 'v');
	close(fd);
}

Test(snapshot_restore, disk_identity_rules)
{
	char disk[128], other[128], err[1024];
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(other, sizeof(other), "%s/other.img", dir);
	make_image(disk, 'd');
	make_image(other, 'o');
	struct snap_disk rw = disk_record(disk, false), ro = disk_record(disk, true);
	/* the very file: reopened, writable or not */
	cr_assert_eq(disk_restore(&rw, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(disk_restore(&ro, NULL, err, sizeof(err)), 0, "%s", err);
	/* writes do not change the identity */
	int fd = open(disk, O_WRONLY);
	cr_assert_eq(pwrite(fd, "x", 1, 512), 1);
	close(fd);
	cr_assert_eq(disk_restore(&rw, NULL, err, sizeof(err)), 0, "%s", err);
	/* a copy under the old name (a new inode): a writable drive is refused, a read-only one is not */
	make_image(disk, 'c');
	cr_assert_eq(disk_restore(&rw, NULL, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is not the file the snapshot was taken with") && strstr(err, "--drive 0="), "%s", err);
	cr_assert_eq(disk_restore(&ro, NULL, err, sizeof(err)), 0, "%s", err);
	/* ... but a read-only one must keep its size */
	fd = open(disk, O_WRONLY);
	cr_assert_eq(ftruncate(fd, 2 << 20), 0);
	close(fd);
	cr_assert_eq(disk_restore(&ro, NULL, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "was 1048576 bytes, now 2097152"), "%s", err);
	/* the user names the file: taken for the writable slot, its size still checked */
	cr_assert_eq(disk_restore(&rw, other, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(disk_restore(&rw, disk, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "--drive 0=") && strstr(err, "2097152 bytes"), "%s", err);
	/* a scratch disk's contents are the snapshot's: not replaceable */
	struct snap_disk scratch = { .size = 1 << 20, .scratch = 1 };
	strcpy(scratch.id, "scratch");
	strcpy(scratch.path, "state.disk0");
	cr_assert_eq(disk_restore(&scratch, other, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "scratch disk"), "%s", err);
}

Test(snapshot_restore, a_drive_override_for_a_slot_without_a_disk_is_refused)
{
	char state[128], mem[128], disk[128], err[1024];
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(mem, sizeof(mem), "%s/mem", dir);
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	make_image(disk, 'd');
	struct snap_disk sd = disk_record(disk, false);
	write_snapshot_with(state, mem, test_id, (64ULL << 20) + SNAP_DATA_TRAILER, &sd);
	const char *drives[LAYOUT_VIRTIO_MAX] = { [3] = disk };
	static struct vm vm;
	struct vm_config cfg = { .console_out = -1, .restore_drives = drives };
	cr_assert_eq(vm_restore(&vm, &cfg, state, mem, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "--drive 3=") && strstr(err, "no disk 3 (1 disk)"), "%s", err);
}

Test(snapshot_fmt, version_2_is_refused_with_a_reason)
{
	struct snap_header h = test_header(NCPUS);
	struct snap_enc e;
	snap_enc_init(&e, &h);
	cr_assert_eq(snap_enc_finish(&e), 0);
	((struct snap_header *)e.buf)->version = 2;
	uint32_t crc = snap_crc32(0, e.buf, e.len - 8);
	memcpy(e.buf + e.len - 8, &crc, 4);
	struct snap_view v;
	char err[512];
	cr_assert_eq(snap_decode(e.buf, e.len, &v, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "version 2, which names its drives by path alone") && strstr(err, "take the snapshot again"),
		  "%s", err);
	snap_enc_free(&e);
}

Test(snapshot_fmt, a_scratch_disk_with_an_identity_or_a_relative_drive_is_corrupt)
{
	struct sec_spec all[64];
	unsigned n = machine_specs(all);
	for (int bad = 0; bad < 2; bad++) {
		struct snap_header h = test_header(NCPUS);
		struct snap_enc e;
		snap_enc_init(&e, &h);
		for (unsigned i = 0; i < n; i++) {
			struct snap_disk *p = section_data(&all[i]);
			if (all[i].type == SNAP_SEC_DISK && p->scratch && bad == 0)
				p->ino = 12;
			if (all[i].type == SNAP_SEC_DISK && !p->scratch && bad == 1)
				strcpy(p->path, "images/root.img");
			snap_enc_add(&e, all[i].type, all[i].index, p, all[i].len);
			free(p);
		}
		cr_assert_eq(snap_enc_finish(&e), 0);
		struct snap_view v;
		char err[512];
		cr_assert_eq(snap_decode(e.buf, e.len, &v, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(snap_check_machine(&v, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, bad == 0 ? "with a host file's identity" : "not absolute"), "%s", err);
		snap_view_free(&v);
		snap_enc_free(&e);
	}
}

/* ---- device state ------------------------------------------------------------------------------------ */

Test(snapshot_devices, serial_round_trip_with_wrapped_fifo)
{
	struct fake_host fh;
	fake_host_init(&fh);
	struct serial a, b;
	serial_init(&a, -1, 4, &fh.host);
	serial_init(&b, -1, 4, &fh.host);
	a.ier = 0x01; /* RDI */
	a.mcr = 0x08; /* OUT2 */
	a.lcr = 0x03;
	a.dll = 0x0c;
	a.scr = 0x5a;
	uint8_t junk[60] = { 0 };
	cr_assert_eq(serial_input(&a, junk, sizeof(junk)), sizeof(junk));
	/* Drain 50 by hand and refill so the FIFO wraps around its end. */
	a.rx_head = (a.rx_head + 50) % SERIAL_FIFO_SIZE;
	a.rx_count -= 50;
	uint8_t more[30];
	for (unsigned i = 0; i < sizeof(more); i++)
		more[i] = (uint8_t)(100 + i);
	cr_assert_eq(serial_input(&a, more, sizeof(more)), sizeof(more));
	struct serial_state st;
	serial_save(&a, &st);
	cr_assert_eq(st.rx_count, 40);
	cr_assert_eq(st.rx[10], 100);
	cr_assert_eq(st.rx[39], 129);
	fh.irq_level[4] = 0;
	cr_assert_eq(serial_load(&b, &st), 0);
	cr_assert_eq(fh.irq_level[4], 1, "loading data with RDI enabled raises the line again");
	struct serial_state st2;
	serial_save(&b, &st2);
	cr_assert_eq(memcmp(&st, &st2, sizeof(st)), 0);
	st.rx_count = SERIAL_FIFO_SIZE + 1;
	cr_assert_eq(serial_load(&b, &st), -EINVAL);
	serial_destroy(&a);
	serial_destroy(&b);
}

#define TMEM (4u << 20)
#define DESC 0x10000
#define AVAIL 0x11000
#define USED 0x12000

static void ready_queue(struct virtio_mmio *t, unsigned q, uint16_t num)
{
	t->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		    VIRTIO_CONFIG_S_DRIVER_OK;
	t->driver_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX);
	struct virtq *vq = &t->queues[q];
	vq->num = num;
	vq->desc_gpa = DESC + q * 0x4000;
	vq->avail_gpa = AVAIL + q * 0x4000;
	vq->used_gpa = USED + q * 0x4000;
	cr_assert_eq(virtq_enable(vq, t->mem, true), 0);
	vq->last_avail = 17;
	vq->used_idx = 15;
	vq->signalled_used = 14;
}

Test(snapshot_devices, virtio_mmio_and_queue_positions)
{
	struct guest_mem mem;
	cr_assert_eq(gmem_init(&mem, TMEM), 0);
	struct fake_host fh;
	fake_host_init(&fh);
	struct virtio_mmio a, b;
	virtio_mmio_init(&a, &mem, &fh.host, 5, VIRTIO_ID_VSOCK, 0, 3, NULL, 0, NULL, NULL);
	virtio_mmio_init(&b, &mem, &fh.host, 5, VIRTIO_ID_VSOCK, 0, 3, NULL, 0, NULL, NULL);
	ready_queue(&a, 0, 128);
	ready_queue(&a, 2, 8);
	a.interrupt_status = 1;
	a.config_generation = 3;
	a.queue_sel = 2;
	struct virtio_mmio_state st, st2;
	virtio_mmio_save(&a, &st);
	cr_assert_eq(virtio_mmio_load(&b, &st), 0);
	virtio_mmio_save(&b, &st2);
	cr_assert_eq(memcmp(&st, &st2, sizeof(st)), 0);
	cr_assert(b.queues[0].ready && b.queues[2].ready && !b.queues[1].ready);
	cr_assert_eq(b.queues[0].last_avail, 17);
	cr_assert_eq(b.queues[0].used_idx, 15);
	cr_assert_eq(b.queues[2].signalled_used, 14);
	cr_assert_eq((uint8_t *)b.queues[0].desc, mem.host + DESC, "rings translated again");
	cr_assert_not_null(virtio_mmio_queue(&b, 0));
	cr_assert_eq(b.interrupt_status, 1);
	cr_assert_eq(b.config_generation, 3);

	/* Refusals: another device, other features, a ring outside RAM, a misaligned ring. */
	struct virtio_mmio_state bad = st;
	bad.device_id = VIRTIO_ID_BLOCK;
	cr_assert_eq(virtio_mmio_load(&b, &bad), -EINVAL);
	bad = st;
	bad.driver_features |= 1ULL << 40;
	cr_assert_eq(virtio_mmio_load(&b, &bad), -EINVAL);
	bad = st;
	bad.queues[0].used_gpa = TMEM - 8;
	cr_assert_eq(virtio_mmio_load(&b, &bad), -EINVAL);
	cr_assert_eq(b.status, 0, "a refused state leaves the device reset");
	cr_assert(!b.queues[0].ready);
	bad = st;
	bad.queues[0].desc_gpa += 4;
	cr_assert_eq(virtio_mmio_load(&b, &bad), -EINVAL);
	bad = st;
	bad.queues[0].num = 1000;
	cr_assert_eq(virtio_mmio_load(&b, &bad), -EINVAL);
	virtio_mmio_destroy(&a);
	virtio_mmio_destroy(&b);
	gmem_destroy(&mem);
}

Test(snapshot_devices, virtio_blk_disk_must_match)
{
	struct guest_mem mem;
	cr_assert_eq(gmem_init(&mem, TMEM), 0);
	struct fake_host fh;
	fake_host_init(&fh);
	struct blk_disk d1, d2;
	char err[128];
	cr_assert_eq(blk_disk_scratch(&d1, 1 << 20, err, sizeof(err)), 0);
	cr_assert_eq(blk_disk_scratch(&d2, 2 << 20, err, sizeof(err)), 0);
	cr_assert(d1.scratch && !strcmp(d1.id, "scratch"));
	struct virtio_blk *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)), *c = calloc(1, sizeof(*c));
	cr_assert_eq(virtio_blk_init(a, &d1, &mem, &fh.host, 5), 0);
	cr_assert_eq(virtio_blk_init(b, &d1, &mem, &fh.host, 5), 0);
	cr_assert_eq(virtio_blk_init(c, &d2, &mem, &fh.host, 5), 0);
	ready_queue(&a->t, 0, 64);
	struct virtio_blk_state st;
	virtio_blk_save(a, &st);
	cr_assert_eq(st.capacity, (1 << 20) / 512);
	cr_assert_eq(virtio_blk_load(b, &st), 0);
	cr_assert_eq(b->t.queues[0].last_avail, 17);
	cr_assert_eq(virtio_blk_load(c, &st), -EINVAL, "a disk of another size is refused");
	/* Pause and resume leave the worker running and the queue where it was. */
	cr_assert_eq(virtio_blk_start(b), 0);
	virtio_blk_pause(b);
	cr_assert(!b->worker.started);
	cr_assert_eq(virtio_blk_resume(b), 0);
	cr_assert(b->worker.started);
	cr_assert_eq(b->t.queues[0].last_avail, 17);
	virtio_blk_destroy(a);
	virtio_blk_destroy(b);
	virtio_blk_destroy(c);
	free(a), free(b), free(c);
	blk_disk_close(&d1);
	blk_disk_close(&d2);
	gmem_destroy(&mem);
}

Test(snapshot_devices, blk_disk_remembers_its_absolute_path)
{
	char path[] = "/tmp/padcell-test-disk-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4096), 0);
	close(fd);
	char cwd[4096];
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir("/tmp"), 0);
	struct blk_disk d;
	char err[128];
	cr_assert_eq(blk_disk_open(&d, path + 5, true, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(d.path, path);
	cr_assert(!d.scratch);
	blk_disk_close(&d);
	cr_assert_eq(chdir(cwd), 0);
	unlink(path);
}

Test(snapshot_devices, vsock_cid)
{
	struct guest_mem mem;
	cr_assert_eq(gmem_init(&mem, TMEM), 0);
	struct fake_host fh;
	fake_host_init(&fh);
	struct virtio_vsock *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)), *c = calloc(1, sizeof(*c));
	cr_assert_eq(virtio_vsock_init(a, "/tmp/none.sock", -1, 42, &mem, &fh.host, 6), 0);
	cr_assert_eq(virtio_vsock_init(b, "/tmp/none.sock", -1, 42, &mem, &fh.host, 6), 0);
	cr_assert_eq(virtio_vsock_init(c, "/tmp/none.sock", -1, 43, &mem, &fh.host, 6), 0);
	ready_queue(&a->t, 2, 8);
	struct virtio_vsock_state st;
	virtio_vsock_save(a, &st);
	cr_assert_eq(st.guest_cid, 42);
	cr_assert_eq(virtio_vsock_load(b, &st), 0);
	cr_assert(b->t.queues[2].ready);
	cr_assert_eq(virtio_vsock_load(c, &st), -EINVAL);
	virtio_vsock_destroy(a);
	virtio_vsock_destroy(b);
	virtio_vsock_destroy(c);
	free(a), free(b), free(c);
	gmem_destroy(&mem);
}

/* A NIC's section sits in the virtio slot after the disks and the vsock device; anywhere else, or twice, is corrupt. */
Test(snapshot_fmt, a_nic_after_the_disks_and_vsock)
{
	static const struct { unsigned idx[2], n; bool ok; } cases[] = {
		{ { NDISKS + 1 }, 1, true },
		{ { NDISKS }, 1, false },            /* the vsock device's slot */
		{ { 0 }, 1, false },                 /* a disk's */
		{ { NDISKS + 2 }, 1, false },        /* a gap */
		{ { LAYOUT_VIRTIO_MAX }, 1, false }, /* past the slots */
		{ { NDISKS + 1, NDISKS + 2 }, 2, false },
	};
	for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct sec_spec all[64];
		unsigned n = machine_specs(all);
		struct snap_header h = test_header(NCPUS);
		struct snap_enc e;
		snap_enc_init(&e, &h);
		for (unsigned i = 0; i < n; i++) {
			void *p = section_data(&all[i]);
			snap_enc_add(&e, all[i].type, all[i].index, p, all[i].len);
			free(p);
		}
		uint8_t st[sizeof(struct virtio_net_state)] = { 0 };
		for (unsigned k = 0; k < cases[c].n; k++)
			snap_enc_add(&e, SNAP_SEC_NET, cases[c].idx[k], st, sizeof(st));
		cr_assert_eq(snap_enc_finish(&e), 0);
		char err[256] = "";
		int rc = decode_check(e.buf, e.len, err, sizeof(err));
		if (cases[c].ok)
			cr_assert_eq(rc, 0, "case %u: %s", c, err);
		else
			cr_assert(rc == -EINVAL && strstr(err, "corrupt"), "case %u accepted (%d, %s)", c, rc, err);
		snap_enc_free(&e);
	}
}

/* ---- temporary files of writers that died ------------------------------------------------------- */

/* A ".mem.tmp-XXXXXX" beside sdir/mem, last written `age` seconds before now (negative: after). */
static void tmp_leftover(const char *sdir, const char *suffix, int age)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/.mem.tmp-%s", sdir, suffix);
	int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "x", 1), 1);
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= age;
	t[1] = t[0];
	cr_assert_eq(futimens(fd, t), 0);
	close(fd);
}

static bool exists_in(const char *sdir, const char *name)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", sdir, name);
	return access(p, F_OK) == 0;
}

Test(snapshot_io, a_dead_writers_temporary_files_are_swept_a_live_ones_kept)
{
	char sdir[] = "/tmp/padcell-sweep-XXXXXX";
	cr_assert_not_null(mkdtemp(sdir));
	tmp_leftover(sdir, "DEAD01", 3600);  /* before this process started, nobody holds it: a dead writer's */
	tmp_leftover(sdir, "LIVE01", 3600);  /* as old, but a writer holds its lock */
	tmp_leftover(sdir, "NEW001", -3600); /* written since this process started: maybe between create and lock */
	tmp_leftover(sdir, "DEAD0", 3600);   /* not the name a writer makes (5 characters) */
	char p[512];
	snprintf(p, sizeof(p), "%s/.mem.tmp-LIVE01", sdir);
	int live = open(p, O_RDWR | O_CLOEXEC);
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	cr_assert_eq(fcntl(live, F_OFD_SETLK, &l), 0);

	char final[512], tmp[512];
	snprintf(final, sizeof(final), "%s/mem", sdir);
	int fd = snap_tmp_create(final, tmp, sizeof(tmp));
	cr_assert_geq(fd, 0, "snap_tmp_create: %s", strerror(-fd));
	cr_assert_not(exists_in(sdir, ".mem.tmp-DEAD01"), "a dead writer's file is removed");
	cr_assert(exists_in(sdir, ".mem.tmp-LIVE01"), "a locked file is kept");
	cr_assert(exists_in(sdir, ".mem.tmp-NEW001"), "a file written since the start is kept");
	cr_assert(exists_in(sdir, ".mem.tmp-DEAD0"), "another name is kept");
	/* the new file is locked as long as it is open: another description cannot take the lock */
	int other = open(tmp, O_RDWR | O_CLOEXEC);
	cr_assert_eq(fcntl(other, F_OFD_SETLK, &l), -1);
	cr_assert(errno == EAGAIN || errno == EACCES, "%s", strerror(errno));
	close(other);
	close(fd);
	close(live);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sdir);
	cr_assert_eq(system(cmd), 0);
}
