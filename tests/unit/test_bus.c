/* The address-range bus: registration rules and dispatch by offset. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "devices/bus.h"

/* A device that records its last access and answers reads with a fixed byte pattern. */
struct rec {
	unsigned reads, writes;
	uint64_t offset;
	uint32_t len;
	uint8_t wdata[8];
	uint8_t rbyte;
};

static void rec_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct rec *r = opaque;
	r->reads++;
	r->offset = offset;
	r->len = len;
	memset(data, r->rbyte, len);
}

static void rec_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct rec *r = opaque;
	r->writes++;
	r->offset = offset;
	r->len = len;
	memcpy(r->wdata, data, len < 8 ? len : 8);
}

static const struct bus_ops rec_ops = { .read = rec_read, .write = rec_write };
static const struct bus_ops write_only_ops = { .write = rec_write };

static struct bus b;
static void setup(void) { bus_init(&b); }
TestSuite(bus, .init = setup);

Test(bus, register_and_overlap)
{
	cr_assert_eq(bus_register(&b, 0x3f8, 8, &rec_ops, NULL, "com1"), 0);
	cr_assert_eq(bus_register(&b, 0x3f8, 8, &rec_ops, NULL, "same"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x3f8, 1, &rec_ops, NULL, "same base"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x3ff, 1, &rec_ops, NULL, "last byte"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x3fa, 2, &rec_ops, NULL, "inside"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x3f0, 9, &rec_ops, NULL, "tail over base"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x3fc, 8, &rec_ops, NULL, "head over end"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x300, 0x200, &rec_ops, NULL, "covers"), -EEXIST);
	cr_assert_eq(b.count, 1, "failed registrations leave the bus unchanged");
}

Test(bus, adjacent_ranges_are_fine)
{
	cr_assert_eq(bus_register(&b, 0x3f8, 8, &rec_ops, NULL, "com1"), 0);
	cr_assert_eq(bus_register(&b, 0x3f0, 8, &rec_ops, NULL, "below"), 0);
	cr_assert_eq(bus_register(&b, 0x400, 1, &rec_ops, NULL, "above"), 0);
	cr_assert_eq(b.count, 3);
	for (unsigned i = 1; i < b.count; i++)
		cr_assert_lt(b.ranges[i - 1].base, b.ranges[i].base, "ranges stay sorted");
	/* Something between two adjacent neighbours overlaps both. */
	cr_assert_eq(bus_register(&b, 0x3f7, 2, &rec_ops, NULL, "seam"), -EEXIST);
}

Test(bus, invalid_ranges)
{
	cr_assert_eq(bus_register(&b, 0x100, 0, &rec_ops, NULL, "empty"), -EINVAL);
	cr_assert_eq(bus_register(&b, UINT64_MAX, 2, &rec_ops, NULL, "wraps"), -EINVAL);
	cr_assert_eq(bus_register(&b, 0x10, UINT64_MAX, &rec_ops, NULL, "wraps"), -EINVAL);
	cr_assert_eq(bus_register(&b, 0x100, 1, NULL, NULL, "no ops"), -EINVAL);
	cr_assert_eq(b.count, 0);
	/* The very top of the address space is a legal one-byte range. */
	cr_assert_eq(bus_register(&b, UINT64_MAX, 1, &rec_ops, NULL, "top"), 0);
	cr_assert_not_null(bus_find(&b, UINT64_MAX, 1));
}

Test(bus, full_bus)
{
	for (unsigned i = 0; i < BUS_MAX_RANGES; i++)
		cr_assert_eq(bus_register(&b, 0x1000 + 0x10 * (BUS_MAX_RANGES - i), 0x10, &rec_ops, NULL, "x"), 0,
			     "range %u", i);
	cr_assert_eq(b.count, BUS_MAX_RANGES);
	cr_assert_eq(bus_register(&b, 0x9000, 1, &rec_ops, NULL, "one too many"), -ENOSPC);
	cr_assert_eq(b.count, BUS_MAX_RANGES);
	for (unsigned i = 1; i < b.count; i++)
		cr_assert_lt(b.ranges[i - 1].base, b.ranges[i].base);
}

Test(bus, dispatch_by_offset)
{
	struct rec com1 = { .rbyte = 0x11 }, kbd = { .rbyte = 0x22 };
	cr_assert_eq(bus_register(&b, 0x3f8, 8, &rec_ops, &com1, "com1"), 0);
	cr_assert_eq(bus_register(&b, 0x60, 5, &rec_ops, &kbd, "i8042"), 0);

	uint8_t v = 'x';
	cr_assert(bus_write(&b, 0x3fb, &v, 1));
	cr_assert_eq(com1.writes, 1);
	cr_assert_eq(com1.offset, 3);
	cr_assert_eq(com1.len, 1);
	cr_assert_eq(com1.wdata[0], 'x');
	cr_assert_eq(kbd.writes, 0);

	uint16_t w = 0;
	cr_assert(bus_read(&b, 0x63, &w, 2));
	cr_assert_eq(kbd.reads, 1);
	cr_assert_eq(kbd.offset, 3);
	cr_assert_eq(kbd.len, 2);
	cr_assert_eq(w, 0x2222);
	cr_assert_eq(com1.reads, 0);

	const struct bus_range *r = bus_find(&b, 0x64, 1);
	cr_assert_not_null(r);
	cr_assert_str_eq(r->name, "i8042");
	cr_assert_eq(r->opaque, &kbd);
}

Test(bus, straddling_access_is_unclaimed)
{
	struct rec kbd = { .rbyte = 0x22 };
	cr_assert_eq(bus_register(&b, 0x60, 5, &rec_ops, &kbd, "i8042"), 0);
	cr_assert_eq(bus_register(&b, 0x65, 1, &rec_ops, NULL, "neighbour"), 0);
	uint32_t v = 0;
	cr_assert_not(bus_read(&b, 0x63, &v, 4), "0x63..0x66 crosses the end of 0x60..0x64");
	cr_assert_eq(v, 0xffffffff);
	cr_assert_not(bus_write(&b, 0x64, &v, 2));
	cr_assert_not(bus_read(&b, 0x5f, &v, 2), "starts before the range");
	cr_assert_eq(kbd.reads + kbd.writes, 0, "the device never saw a partial access");
	cr_assert_null(bus_find(&b, 0x64, 2));
	cr_assert_not_null(bus_find(&b, 0x64, 1));
	cr_assert_not_null(bus_find(&b, 0x60, 5));
}

Test(bus, unclaimed_reads_are_all_ones)
{
	struct rec dev = { .rbyte = 0 };
	cr_assert_eq(bus_register(&b, 0x100, 4, &rec_ops, &dev, "dev"), 0);
	uint64_t q = 0;
	cr_assert_not(bus_read(&b, 0x200, &q, 8));
	cr_assert_eq(q, UINT64_MAX);
	uint8_t byte = 0;
	cr_assert_not(bus_read(&b, 0xff, &byte, 1));
	cr_assert_eq(byte, 0xff);
	cr_assert_not(bus_write(&b, 0x104, &byte, 1), "writes to nothing are dropped");
	cr_assert_eq(dev.reads + dev.writes, 0);
}

Test(bus, empty_and_wrapping_lookups)
{
	cr_assert_eq(bus_register(&b, 0, 0x1000, &rec_ops, NULL, "low"), 0);
	cr_assert_null(bus_find(&b, 0x10, 0), "len 0 is no access");
	cr_assert_null(bus_find(&b, UINT64_MAX, 2), "wraps to 0");
	uint16_t w = 0;
	cr_assert_not(bus_read(&b, UINT64_MAX, &w, 2));
	cr_assert_eq(w, 0xffff);
}

Test(bus, missing_read_op_reads_all_ones)
{
	struct rec dev = { 0 };
	cr_assert_eq(bus_register(&b, 0x505, 1, &write_only_ops, &dev, "wo"), 0);
	uint8_t v = 0;
	cr_assert_not(bus_read(&b, 0x505, &v, 1));
	cr_assert_eq(v, 0xff);
	cr_assert(bus_write(&b, 0x505, &v, 1));
	cr_assert_eq(dev.writes, 1);
}

/*
 * Regression (found by this test, fixed in 70a427b): a range may end just below 2^64
 * (base 0, len UINT64_MAX covers 0..UINT64_MAX-1).  bus_find() used to test
 * `(addr - base) + len <= r->len`, which wraps to 0 for an access ending at
 * UINT64_MAX, so it claimed a byte outside the range.
 */
Test(bus, regression_find_end_check_overflow)
{
	cr_assert_eq(bus_register(&b, 0, UINT64_MAX, &rec_ops, NULL, "huge"), 0);
	cr_assert_not_null(bus_find(&b, UINT64_MAX - 4, 4), "ends at UINT64_MAX-1: inside");
	cr_assert_null(bus_find(&b, UINT64_MAX - 3, 4),
		       "access ending at UINT64_MAX is outside [0, UINT64_MAX) but is claimed");
}
